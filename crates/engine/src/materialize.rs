//! Tables the run computes once and reads several times (sources, steps, a model's
//! intermediate tables) live in the run's scratch directory as Arrow IPC files, not in memory.
//!
//! Writing a plan's partitions to Arrow files streams: only the batches in flight are in
//! memory, and the memory-hungry operators inside the plan are bounded by the session's pool
//! and spill. Arrow IPC is Arrow's own layout, so writing and reading back cost little more
//! than a copy, and the OS page cache keeps recent tables in memory when there is room for
//! them. The scratch directory is removed when the run ends (or by the next run after a crash).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionContext;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use futures::StreamExt;

/// The run's scratch space, kept in the session so every part of the engine that holds the
/// context can materialize a table. Created on first use inside the spill directory.
#[derive(Debug)]
pub(crate) struct Scratch {
    parent: PathBuf,
    /// `.segflow-scratch-<label>-`: the run id in the name lets the next run remove what a
    /// killed run left here.
    prefix: String,
    /// DataFusion's spill files go below this directory (removed with the scratch space).
    spill_root: PathBuf,
    dir: Mutex<Option<tempfile::TempDir>>,
    next: AtomicUsize,
    /// Directory of each table materialized under a name, so it can be removed when released.
    tables: Mutex<HashMap<String, PathBuf>>,
    spilled_bytes: AtomicU64,
}

impl Scratch {
    pub(crate) fn new(parent: PathBuf, label: &str) -> Self {
        let prefix = format!(".segflow-scratch-{label}-");
        Self {
            spill_root: parent.join(format!("{prefix}spill")),
            prefix,
            parent,
            dir: Mutex::new(None),
            next: AtomicUsize::new(0),
            tables: Mutex::new(HashMap::new()),
            spilled_bytes: AtomicU64::new(0),
        }
    }

    /// The session's scratch space (every session has one: see `session`).
    pub(crate) fn of(ctx: &SessionContext) -> Result<Arc<Scratch>> {
        ctx.state()
            .config()
            .get_extension::<Scratch>()
            .ok_or_else(|| DataFusionError::Internal("session without scratch space".into()))
    }

    pub(crate) fn remember(&self, name: &str, dir: PathBuf) -> Option<PathBuf> {
        self.tables.lock().ok()?.insert(name.to_string(), dir)
    }

    /// Names of the tables materialized under `prefix` (a step's intermediate tables).
    pub(crate) fn names_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.tables
            .lock()
            .map(|t| {
                t.keys()
                    .filter(|n| n.starts_with(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn forget(&self, name: &str) -> Option<PathBuf> {
        self.tables.lock().ok()?.remove(name)
    }

    /// A new, empty directory for one table.
    pub(crate) fn table_dir(&self, name: &str) -> Result<PathBuf> {
        let mut guard = self
            .dir
            .lock()
            .map_err(|_| DataFusionError::Internal("scratch lock poisoned".into()))?;
        if guard.is_none() {
            std::fs::create_dir_all(&self.parent)?;
            *guard = Some(
                tempfile::Builder::new()
                    .prefix(&self.prefix)
                    .tempdir_in(&self.parent)?,
            );
        }
        let root = guard
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // The name is for people looking at the directory; the number makes it unique.
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let dir = root.join(format!("{n:04}-{safe}"));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// The directory DataFusion's disk manager spills into.
    pub(crate) fn spill_root(&self) -> &Path {
        &self.spill_root
    }

    pub(crate) fn add_spilled(&self, bytes: u64) {
        self.spilled_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes DataFusion's operators spilled to disk so far in this run.
    pub(crate) fn spilled_bytes(&self) -> u64 {
        self.spilled_bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // DataFusion removes its own files inside; this removes the directory they were in.
        let _ = std::fs::remove_dir_all(&self.spill_root);
    }
}

/// Bytes spilled by every operator of an executed plan.
pub(crate) fn spilled_bytes(plan: &Arc<dyn ExecutionPlan>) -> u64 {
    let own = plan.metrics().and_then(|m| m.spilled_bytes()).unwrap_or(0) as u64;
    own + plan
        .children()
        .iter()
        .map(|c| spilled_bytes(c))
        .sum::<u64>()
}

/// The plan of `df` with the schema its batches really have.
///
/// The schema is taken from the physical plan, not the logical one: DataFusion 55 can widen a
/// decimal SUM in the final aggregation phase beyond what the logical plan declares. Fields
/// are declared nullable, as a plan's nullability claims are not always what batches carry.
pub(crate) async fn physical(df: DataFrame) -> Result<(Arc<dyn ExecutionPlan>, SchemaRef)> {
    let plan = df.create_physical_plan().await?;
    let schema = Arc::new(Schema::new(
        plan.schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    Ok((plan, schema))
}

/// Runs `df` and writes each of its partitions to `dir/part-NNNNN.arrow`, each partition on
/// its own task so the plan keeps its parallelism. Returns the schema and each file's rows.
async fn write_partitions(
    ctx: &SessionContext,
    df: DataFrame,
    dir: &Path,
) -> Result<(SchemaRef, HashMap<String, u64>)> {
    let task = Arc::new(df.task_ctx());
    let (plan, schema) = physical(df).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for partition in 0..plan.output_partitioning().partition_count() {
        let mut stream = plan.execute(partition, Arc::clone(&task))?;
        let name = format!("part-{partition:05}.arrow");
        let (schema, path) = (Arc::clone(&schema), dir.join(&name));
        tasks.spawn(async move {
            let mut writer = FileWriter::try_new(
                std::io::BufWriter::new(std::fs::File::create(&path)?),
                &schema,
            )?;
            let mut rows = 0u64;
            while let Some(batch) = stream.next().await {
                let batch = RecordBatch::try_new(Arc::clone(&schema), batch?.columns().to_vec())?;
                rows += batch.num_rows() as u64;
                writer.write(&batch)?;
            }
            writer.finish()?;
            Ok::<(String, u64), DataFusionError>((name, rows))
        });
    }
    let mut files = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (name, rows) = joined.map_err(|e| DataFusionError::External(Box::new(e)))??;
        files.insert(name, rows);
    }
    Scratch::of(ctx)?.add_spilled(spilled_bytes(&plan));
    Ok((schema, files))
}

/// Computes `df` once into scratch files and registers the result as `name` (replacing any
/// table of that name, whose files are removed). Returns the rows written.
pub(crate) async fn materialize(ctx: &SessionContext, name: &str, df: DataFrame) -> Result<u64> {
    let scratch = Scratch::of(ctx)?;
    let dir = scratch.table_dir(name)?;
    let (schema, files) = write_partitions(ctx, df, &dir).await?;
    let rows = files.values().sum();
    ctx.deregister_table(name)?;
    ctx.register_table(name, segflow_sources::scratch_table(&dir, schema, files)?)?;
    if let Some(old) = scratch.remember(name, dir) {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(rows)
}

/// Registers the scratch table `from` as `to`, files and all, without writing its rows again:
/// for a step whose result is a table it already computed.
pub(crate) fn adopt(ctx: &SessionContext, from: &str, to: &str) -> Result<()> {
    let provider = ctx
        .deregister_table(from)?
        .ok_or_else(|| DataFusionError::Internal(format!("no scratch table `{from}` to adopt")))?;
    ctx.deregister_table(to)?;
    ctx.register_table(to, provider)?;
    let scratch = Scratch::of(ctx)?;
    if let Some(dir) = scratch.forget(from)
        && let Some(old) = scratch.remember(to, dir)
    {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(())
}

/// Forgets a table and removes its scratch files: called after its last consumer ran.
pub(crate) fn release(ctx: &SessionContext, name: &str) -> Result<()> {
    ctx.deregister_table(name)?;
    if let Some(dir) = Scratch::of(ctx)?.forget(name) {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}
