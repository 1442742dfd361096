use datafusion::error::DataFusionError;
use segflow_sinks::SinkError;
use segflow_sources::SourceError;

/// Why a run did not succeed. [`RunError::exit_code`] maps each kind to the exit codes
/// documented in the README, so schedulers can tell bad data from a broken environment.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Source(#[from] SourceError),

    #[error("{} data check(s) failed: {}", failures.len(), failures.join("; "))]
    ChecksFailed { failures: Vec<String> },

    #[error("{}", summaries.join("\n"))]
    BadRows { summaries: Vec<String> },

    #[error("source `{source_name}`: rows do not add up: {message}")]
    Accounting {
        source_name: String,
        message: String,
    },

    #[error("step `{step}`: {message}")]
    StepInput { step: String, message: String },

    /// The identity registry exists but cannot be read: going on would re-key every person.
    #[error("step `{step}`: cannot read the identity registry `{path}`: {message}")]
    Registry {
        step: String,
        path: String,
        message: String,
    },

    #[error("step `{step}`: {source}")]
    Step {
        step: String,
        #[source]
        source: Box<DataFusionError>,
    },

    #[error("output `{output}`: {message}")]
    Output { output: String, message: String },

    #[error("output `{output}`: {source}")]
    OutputQuery {
        output: String,
        #[source]
        source: Box<DataFusionError>,
    },

    #[error(transparent)]
    Sink(#[from] SinkError),

    #[error("{what} `{location}`: only local paths and file:// URLs can be written so far")]
    UnsupportedLocation {
        what: &'static str,
        location: String,
    },

    #[error("cannot write the run manifest `{path}`: {source}")]
    Manifest {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("step `{step}`: {source}")]
    Artifact {
        step: String,
        #[source]
        source: segflow_models::ArtifactError,
    },
    #[error("step `{step}`: cannot fit the model: {message}")]
    Fit { step: String, message: String },
    #[error("cannot write model artifact `{path}`: {source}")]
    ArtifactWrite {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the query engine: {0}")]
    Session(#[source] Box<DataFusionError>),
}

/// Exit codes (see README "Exit codes").
pub mod exit {
    pub const OK: i32 = 0;
    pub const CHECKS_FAILED: i32 = 1;
    pub const RUNTIME: i32 = 2;
    pub const USAGE: i32 = 64;
    pub const CONFIG: i32 = 78;
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::ChecksFailed { .. } | RunError::BadRows { .. } | RunError::Fit { .. } => {
                exit::CHECKS_FAILED
            }
            RunError::UnsupportedLocation { .. }
            | RunError::StepInput { .. }
            | RunError::Artifact {
                source: segflow_models::ArtifactError::NotFound { .. },
                ..
            } => exit::CONFIG,
            _ => exit::RUNTIME,
        }
    }
}
