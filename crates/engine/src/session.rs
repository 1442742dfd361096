//! The DataFusion session a pipeline runs in: bounded memory, a spill directory, and the
//! run's scratch space.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::execution::context::SessionContext;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;
use segflow_spec::EngineOptions;

use crate::error::RunError;
use crate::materialize::Scratch;

/// Share of the machine's memory the pool gets when the pipeline sets no limit. The pool
/// covers DataFusion's operators; Arrow buffers in flight, the allocator's slack, model fits
/// and the Parquet writers live beside it, so the process as a whole needs headroom.
const DEFAULT_MEMORY_SHARE: f64 = 0.6;

/// How the session was sized, for the manifest and for the run's own scratch files.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub memory_limit: u64,
    pub target_partitions: usize,
}

/// The limit in force: the pipeline's (or command line's), else a share of physical memory.
fn memory_limit(options: &EngineOptions) -> u64 {
    options.memory_limit.unwrap_or_else(|| {
        // Linux reports physical memory in /proc/meminfo; elsewhere assume 8 GiB.
        let total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(8 << 30, |kib| kib * 1024);
        (total as f64 * DEFAULT_MEMORY_SHARE) as u64
    })
}

/// The directory under which a run keeps scratch tables and spills.
pub(crate) fn scratch_parent(options: &EngineOptions) -> PathBuf {
    options
        .spill_dir
        .as_ref()
        .map_or_else(std::env::temp_dir, PathBuf::from)
}

/// A session for one run (`label` = the run id) or one planning command (any unique label):
/// the label names its scratch directory, so leftovers of a killed run can be told apart.
pub fn session(
    options: &EngineOptions,
    label: &str,
) -> Result<(SessionContext, SessionSettings), RunError> {
    // Globs may span directories (`reference/vintage=*/geo.csv`): files below the glob's base
    // directory are listed, not only those directly in it.
    let mut config = SessionConfig::new().with_information_schema(true).set_bool(
        "datafusion.execution.listing_table_ignore_subdirectory",
        false,
    );
    if let Some(n) = options.target_partitions {
        config = config.with_target_partitions(n);
    }
    let spill_dir = scratch_parent(options);
    let scratch = Arc::new(Scratch::new(spill_dir.clone(), label));
    let spill_root = scratch.spill_root().to_path_buf();
    std::fs::create_dir_all(&spill_root)
        .map_err(|e| RunError::Session(Box::new(datafusion::error::DataFusionError::IoError(e))))?;
    config = config.with_extension(scratch);
    let settings = SessionSettings {
        memory_limit: memory_limit(options),
        target_partitions: config.target_partitions(),
    };
    // A fair pool gives each spilling operator its share instead of letting the first sort
    // take everything and the next one fail; tracking names the biggest consumers when an
    // operator that cannot spill runs out.
    let pool = TrackConsumersPool::new(
        FairSpillPool::new(usize::try_from(settings.memory_limit).unwrap_or(usize::MAX)),
        std::num::NonZeroUsize::new(5).unwrap_or(std::num::NonZeroUsize::MIN),
    );
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![spill_root])),
        )
        .build()
        .map_err(|e| RunError::Session(Box::new(e)))?;
    let ctx = SessionContext::new_with_config_rt(config, Arc::new(runtime));
    crate::key_functions::register(&ctx);
    Ok((ctx, settings))
}
