use std::path::PathBuf;

/// Why an audit could not be carried out (as opposed to what it found, which
/// [`crate::Verification`] reports).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("no run manifests under `{}`: is this a segflow output directory?", dir.display())]
    NoManifests { dir: PathBuf },

    #[error("no run of period {period}{} under `{}`", pipeline.as_ref().map(|p| format!(" of pipeline `{p}`")).unwrap_or_default(), dir.display())]
    NoRunsOfPeriod {
        dir: PathBuf,
        period: String,
        pipeline: Option<String>,
    },

    #[error("cannot write `{}`: {message}", path.display())]
    Write { path: PathBuf, message: String },

    #[error("cannot build the manifest table `{table}`: {source}")]
    Arrow {
        table: String,
        #[source]
        source: arrow::error::ArrowError,
    },
}
