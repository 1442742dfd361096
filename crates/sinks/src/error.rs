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
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io {
        path: path.to_path_buf(),
        source,
    }
}
