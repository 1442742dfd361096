use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot write `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot encode Parquet file `{}`: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },

    #[error("cannot split rows into partitions of `{}`: {source}", path.display())]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },

    #[error("partition column `{column}` is not in the output `{}`", path.display())]
    MissingPartitionColumn { path: PathBuf, column: String },

    /// Reopening a finished directory would overwrite its files, so this is an error rather
    /// than lost rows.
    #[error(
        "rows for `{}` arrived after that directory was finished: the output must be sorted by its sub-partition columns",
        path.display()
    )]
    UnsortedPartition { path: PathBuf },

    #[error("commit journal `{}` cannot be read: {message}", path.display())]
    Journal { path: PathBuf, message: String },

    /// The worst case short of a lost disk: the journal stays, and the next run (or
    /// `segflow recover`) rolls the commit back.
    #[error(
        "{cause}; rolling the commit back failed too ({rollback}): the journal `{}` stays, and the next run or `segflow recover` will finish the rollback",
        journal.display()
    )]
    RollbackFailed {
        journal: PathBuf,
        cause: Box<SinkError>,
        rollback: Box<SinkError>,
    },
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io {
        path: path.to_path_buf(),
        source,
    }
}
