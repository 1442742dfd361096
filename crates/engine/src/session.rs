//! The DataFusion session a pipeline runs in.

use std::sync::Arc;

use datafusion::execution::context::SessionContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;
use segflow_spec::EngineOptions;

use crate::error::RunError;

pub fn session(options: &EngineOptions) -> Result<SessionContext, RunError> {
    // Globs may span directories (`reference/vintage=*/geo.csv`): files below the glob's base
    // directory are listed, not only those directly in it.
    let mut config = SessionConfig::new().with_information_schema(true).set_bool(
        "datafusion.execution.listing_table_ignore_subdirectory",
        false,
    );
    if let Some(n) = options.target_partitions {
        config = config.with_target_partitions(n);
    }
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(bytes) = options.memory_limit {
        runtime = runtime.with_memory_limit(usize::try_from(bytes).unwrap_or(usize::MAX), 1.0);
    }
    let runtime = runtime
        .build()
        .map_err(|e| RunError::Session(Box::new(e)))?;
    let ctx = SessionContext::new_with_config_rt(config, Arc::new(runtime));
    crate::key_functions::register(&ctx);
    Ok(ctx)
}
