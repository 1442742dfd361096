//! Output: each output table sorted into a total order and written as deterministic Parquet
//! into its staging directory (committed later, all at once, by the run).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Column;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Expr, SortExpr, cast};
use datafusion::physical_plan::execute_stream;
use futures::StreamExt;
use segflow_manifest::{Manifest, OutputFile};
use segflow_sinks::{StagedTable, TableWriter, partition_dir};
use segflow_spec::{Output, Period, Pipeline};
use sha2::{Digest, Sha256};
use tracing::info;

use crate::error::RunError;
use crate::materialize::{Scratch, physical, spilled_bytes};
use crate::run::{RunRequest, local_path};

/// SHA-256 over the input files' SHA-256s: one value saying "these exact inputs".
pub(crate) fn inputs_fingerprint(manifest: &Manifest) -> String {
    let mut inputs = Sha256::new();
    for input in &manifest.inputs {
        inputs.update(input.sha256.as_bytes());
        inputs.update(b"\n");
    }
    hex::encode(inputs.finalize())
}

/// Parquet key/value metadata. Only values that are the same for the same inputs go here (no
/// run id, no timestamp), so re-runs stay byte-identical; the manifest links files to runs.
pub(crate) fn file_metadata(
    pipeline: &Pipeline,
    request: &RunRequest,
    manifest: &Manifest,
) -> Vec<(String, String)> {
    vec![
        ("segflow.pipeline".into(), pipeline.name.clone()),
        (
            "segflow.pipeline_sha256".into(),
            request.pipeline_sha256.clone(),
        ),
        ("segflow.period".into(), request.period.to_string()),
        ("segflow.inputs_sha256".into(), inputs_fingerprint(manifest)),
        ("segflow.version".into(), env!("CARGO_PKG_VERSION").into()),
    ]
}

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// BI tools and older readers handle plain `Utf8` best; DataFusion may produce view types.
fn portable_type(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Utf8View | DataType::LargeUtf8 => Some(DataType::Utf8),
        DataType::BinaryView | DataType::LargeBinary => Some(DataType::Binary),
        _ => None,
    }
}

pub(crate) async fn stage_output(
    ctx: &SessionContext,
    output: &Output,
    period: Period,
    run_id: &str,
    metadata: &[(String, String)],
) -> Result<StagedTable, RunError> {
    let name = &output.name.value;
    let query_err = |e| RunError::OutputQuery {
        output: name.clone(),
        source: Box::new(e),
    };
    let df = ctx
        .table(output.from.value.as_str())
        .await
        .map_err(query_err)?;
    let fields: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    if fields.iter().any(|f| f == "period") {
        return Err(RunError::Output {
            output: name.clone(),
            message: format!(
                "step `{}` has a column named `period`, which is the partition column segflow writes; rename it",
                output.from.value
            ),
        });
    }
    let sub_partitions: Vec<String> = output.partition_by.iter().skip(1).cloned().collect();
    for c in sub_partitions.iter().chain(&output.order_by) {
        if !fields.contains(c) {
            return Err(RunError::Output {
                output: name.clone(),
                message: format!(
                    "no column `{c}` in step `{}` (it has: {})",
                    output.from.value,
                    fields.join(", ")
                ),
            });
        }
    }
    // Rows sorted by partition, then by `order_by`, then by every other column: a total order,
    // so files are identical whatever the parallelism.
    let mut order: Vec<String> = sub_partitions.clone();
    order.extend(output.order_by.iter().cloned());
    order.extend(
        fields
            .iter()
            .filter(|f| !order.contains(f))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let sort: Vec<SortExpr> = order.iter().map(|c| column(c).sort(true, false)).collect();
    let projection: Vec<Expr> = df
        .schema()
        .fields()
        .iter()
        .map(|f| match portable_type(f.data_type()) {
            Some(t) => cast(column(f.name()), t).alias(f.name()),
            None => column(f.name()),
        })
        .collect();
    let df = df
        .select(projection)
        .map_err(query_err)?
        .sort(sort)
        .map_err(query_err)?;
    let root = local_path("output", &output.path)?;
    let table = StagedTable {
        root: root.clone(),
        run_id: run_id.to_string(),
        period_dir: partition_dir("period", Some(&period.to_string())),
        files: Vec::new(),
        schema: None,
    };
    // The sorted rows stream into the writer: the sort spills when the output does not fit
    // the memory pool, and the writer holds one write slice per open directory.
    let task = Arc::new(df.task_ctx());
    let (plan, schema) = physical(df).await.map_err(query_err)?;
    let mut stream = execute_stream(Arc::clone(&plan), task).map_err(query_err)?;
    let mut writer = TableWriter::new(
        &table.staged_period(),
        Arc::clone(&schema),
        &sub_partitions,
        output.max_rows_per_file,
        metadata,
    )?;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(query_err)?;
        let batch = RecordBatch::try_new(Arc::clone(&schema), batch.columns().to_vec())
            .map_err(|e| query_err(e.into()))?;
        writer.push(&batch)?;
    }
    let table = StagedTable {
        schema: Some(writer.data_schema()),
        files: writer.finish()?,
        ..table
    };
    if let Ok(scratch) = Scratch::of(ctx) {
        scratch.add_spilled(spilled_bytes(&plan));
    }
    info!(output = %name, rows = table.files.iter().map(|f| f.rows).sum::<u64>(), files = table.files.len(), path = %root.display(), "output staged");
    Ok(table)
}

pub(crate) fn output_files(table: &StagedTable) -> Vec<OutputFile> {
    table
        .files
        .iter()
        .map(|f| OutputFile {
            path: format!("{}/{}", table.period_dir, f.relative_path),
            rows: f.rows,
            size: f.size,
            sha256: f.sha256.clone(),
        })
        .collect()
}
