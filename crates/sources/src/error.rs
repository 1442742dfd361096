use datafusion::error::DataFusionError;

/// Why a source could not be read. Every variant names the source and, where there is one,
/// the file, so the message alone tells an operator where to look.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source `{source_name}`: invalid location `{location}`: {reason}")]
    InvalidLocation {
        source_name: String,
        location: String,
        reason: String,
    },

    #[error("source `{source_name}`: no files match `{location}`")]
    NoFiles {
        source_name: String,
        location: String,
    },

    #[error("source `{source_name}`: cannot read `{file}`: {error}")]
    Io {
        source_name: String,
        file: String,
        #[source]
        error: object_store::Error,
    },

    #[error("source `{source_name}`: `{file}` has no header row")]
    EmptyFile { source_name: String, file: String },

    #[error(
        "source `{source_name}`: `{file}` lacks declared column `{column}` (the file has: {found})"
    )]
    MissingColumn {
        source_name: String,
        file: String,
        column: String,
        found: String,
    },

    #[error(
        "source `{source_name}`: `{file}` has undeclared column(s) {columns} (schema_drift.added: error)"
    )]
    UndeclaredColumns {
        source_name: String,
        file: String,
        columns: String,
    },

    #[error("source `{source_name}`: `{file}` has column `{column}` twice")]
    DuplicateColumn {
        source_name: String,
        file: String,
        column: String,
    },

    #[error("source `{source_name}`: `{file}`: {message}")]
    Decode {
        source_name: String,
        file: String,
        message: String,
    },

    #[error("source `{source_name}`: cannot write scratch file `{path}`: {error}")]
    Scratch {
        source_name: String,
        path: String,
        #[source]
        error: Box<DataFusionError>,
    },

    #[error("source `{source_name}`: `{file}`: {error}")]
    Read {
        source_name: String,
        file: String,
        #[source]
        error: Box<DataFusionError>,
    },
}

impl SourceError {
    /// The file the error is about, when it is about one file (which was then refused whole).
    pub fn file(&self) -> Option<&str> {
        match self {
            SourceError::Io { file, .. }
            | SourceError::EmptyFile { file, .. }
            | SourceError::MissingColumn { file, .. }
            | SourceError::UndeclaredColumns { file, .. }
            | SourceError::DuplicateColumn { file, .. }
            | SourceError::Decode { file, .. }
            | SourceError::Read { file, .. } => Some(file),
            SourceError::InvalidLocation { .. }
            | SourceError::NoFiles { .. }
            | SourceError::Scratch { .. } => None,
        }
    }
}
