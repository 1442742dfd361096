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

    #[error(transparent)]
    Audit(#[from] segflow_audit::AuditError),

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
    /// Another run of the same pipeline and period is under way (or a rerun met a scheduled run).
    #[error(
        "another run of period {period} is in progress: {holder} holds `{path}`; wait for it to finish (the lock is released when it ends, however it ends)"
    )]
    Locked {
        period: String,
        path: String,
        holder: String,
    },

    #[error("cannot take the lock `{path}`: {message}")]
    Lock { path: String, message: String },

    /// Optimistic concurrency on the shared identity registry: runs of different periods may
    /// compute at once, but one registry cannot take both runs' new person ids.
    #[error(
        "the identity registry `{path}` was replaced by another run while this one was computing; nothing was committed: run again to link against the new registry"
    )]
    RegistryChanged { path: String },

    #[error("interrupted by {signal}: staging discarded, nothing was committed")]
    Interrupted { signal: &'static str },

    #[error("cannot set up the query engine: {0}")]
    Session(#[source] Box<DataFusionError>),
}

/// Exit codes (see README "Exit codes").
pub mod exit {
    pub const OK: i32 = 0;
    pub const CHECKS_FAILED: i32 = 1;
    pub const RUNTIME: i32 = 2;
    pub const USAGE: i32 = 64;
    /// 128 + the signal number, as shells report a process a signal stopped.
    pub const INTERRUPTED: i32 = 130;
    pub const TERMINATED: i32 = 143;
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
            RunError::Interrupted { signal } => match *signal {
                "SIGINT" => exit::INTERRUPTED,
                _ => exit::TERMINATED,
            },
            _ => exit::RUNTIME,
        }
    }
}
