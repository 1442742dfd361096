//! Quarantine tables: a source's bad rows streamed from where the reader left them (a scratch
//! file, or a lazy plan for Parquet/JSON lines) into its staged Parquet table, batch by
//! batch. Memory is one batch whatever the number of bad rows; a wrong delimiter on a large
//! export used to be held as one in-memory batch of every rejected row.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use segflow_sinks::{StagedTable, TableWriter, partition_dir};
use segflow_sources::BadRowSource;
use segflow_spec::Period;

use crate::error::RunError;

/// Rows per quarantine Parquet file.
const MAX_ROWS_PER_FILE: usize = 1_000_000;

/// The rows of one source's quarantine, as handed over by extract.
#[derive(Debug)]
pub(crate) struct Quarantine {
    pub source: String,
    /// Rows the source rejected (what the table must end up with).
    pub rows: usize,
    /// Where they are; `None` when there are none (an empty table still replaces the period).
    pub bad_rows: Option<BadRowSource>,
}

/// `source`, then the columns of the bad-rows file (`file`, `line`, `raw`, `reason`).
fn schema() -> SchemaRef {
    let mut fields = vec![Field::new("source", DataType::Utf8, false)];
    fields.extend(
        segflow_sources::bad_rows_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone()),
    );
    Arc::new(Schema::new(fields))
}

/// Stages the quarantine table of one source under `root` for `period`; returns the table
/// and the rows written, which must be the rows the source rejected.
pub(crate) async fn stage_quarantine(
    quarantine: &Quarantine,
    root: &Path,
    period: Period,
    run_id: &str,
    metadata: &[(String, String)],
) -> Result<(StagedTable, u64), RunError> {
    let source = &quarantine.source;
    let error = |e| RunError::Step {
        step: source.clone(),
        source: Box::new(e),
    };
    let table = StagedTable {
        root: root.to_path_buf(),
        run_id: run_id.to_string(),
        period_dir: partition_dir("period", Some(&period.to_string())),
        files: Vec::new(),
        schema: None,
    };
    let schema = schema();
    let mut writer = TableWriter::new(
        &table.staged_period(),
        Arc::clone(&schema),
        &[],
        MAX_ROWS_PER_FILE,
        metadata,
    )?;
    let mut rows = 0u64;
    if let Some(bad_rows) = &quarantine.bad_rows {
        let mut stream = segflow_sources::bad_row_stream(bad_rows)
            .await
            .map_err(error)?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(error)?;
            let name: ArrayRef = Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                source.as_str(),
                batch.num_rows(),
            )));
            let mut columns = vec![name];
            columns.extend(batch.columns().iter().cloned());
            let batch =
                RecordBatch::try_new(Arc::clone(&schema), columns).map_err(|e| error(e.into()))?;
            writer.push(&batch)?;
            rows += batch.num_rows() as u64;
        }
    }
    if rows != quarantine.rows as u64 {
        return Err(RunError::Accounting {
            source_name: source.clone(),
            message: format!(
                "{} row(s) rejected, {rows} written to the quarantine",
                quarantine.rows
            ),
        });
    }
    let table = StagedTable {
        schema: Some(writer.data_schema()),
        files: writer.finish()?,
        ..table
    };
    Ok((table, rows))
}
