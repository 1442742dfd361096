//! Every run manifest of an output directory as Parquet tables an analyst queries with DuckDB
//! or Power BI: `runs/manifest.parquet` (one row per run) and child tables joined on `run_id`.
//!
//! They are derived data: rebuilt whole from the JSON manifests (the record), at the end of
//! every run and by `segflow audit index`, and replaced atomically (temporary file, fsync,
//! rename), so a reader sees the old tables or the new ones. Nested values (arguments, check
//! examples, step parameters) are JSON text: BI tools read flat columns.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use segflow_manifest::{Manifest, RunHistory};

use crate::error::AuditError;

/// The tables, in the order they are written; each is `runs/<name>.parquet`.
pub const TABLES: [&str; 7] = [
    "manifest",
    "manifest_inputs",
    "manifest_steps",
    "manifest_models",
    "manifest_checks",
    "manifest_outputs",
    "manifest_output_files",
];

/// What [`write_tables`] wrote.
#[derive(Debug)]
pub struct TablesWritten {
    pub runs: usize,
    pub files: Vec<PathBuf>,
    /// Manifests that could not be read (and are therefore not in the tables), with why.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Rebuilds every table from the manifests under `runs_dir`. Callers that may run at the same
/// time as another writer (runs of different periods) hold the commit lock around this.
pub fn write_tables(runs_dir: &Path) -> Result<TablesWritten, AuditError> {
    let history = RunHistory::load(runs_dir);
    let runs = history.runs();
    let batches = [
        runs_table(runs),
        inputs_table(runs),
        steps_table(runs),
        models_table(runs),
        checks_table(runs),
        outputs_table(runs),
        output_files_table(runs),
    ];
    let mut files = Vec::with_capacity(TABLES.len());
    for (name, batch) in TABLES.iter().zip(batches) {
        let batch = batch.map_err(|source| AuditError::Arrow {
            table: name.to_string(),
            source,
        })?;
        let path = runs_dir.join(format!("{name}.parquet"));
        let bytes = encode(&batch).map_err(|message| AuditError::Write {
            path: path.clone(),
            message,
        })?;
        segflow_sinks::replace_durably(&path, &bytes).map_err(|e| AuditError::Write {
            path: path.clone(),
            message: e.to_string(),
        })?;
        files.push(path);
    }
    Ok(TablesWritten {
        runs: runs.len(),
        files,
        unreadable: history.unreadable().to_vec(),
    })
}

fn encode(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_created_by(format!("segflow {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut bytes = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).map_err(|e| e.to_string())?;
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(bytes)
}

type Column = (&'static str, ArrayRef, bool);

fn text<'a>(name: &'static str, values: impl IntoIterator<Item = &'a str>) -> Column {
    let array = StringArray::from_iter_values(values);
    (name, Arc::new(array), false)
}

fn opt_text<'a>(name: &'static str, values: impl IntoIterator<Item = Option<&'a str>>) -> Column {
    let array: StringArray = values.into_iter().collect();
    (name, Arc::new(array), true)
}

/// Counts as Int64: BI tools handle signed integers best; no count comes near 2^63.
fn int(name: &'static str, values: impl IntoIterator<Item = u64>) -> Column {
    let array: Int64Array = values
        .into_iter()
        .map(|v| Some(i64::try_from(v).unwrap_or(i64::MAX)))
        .collect();
    (name, Arc::new(array), false)
}

fn opt_int(name: &'static str, values: impl IntoIterator<Item = Option<u64>>) -> Column {
    let array: Int64Array = values
        .into_iter()
        .map(|v| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX)))
        .collect();
    (name, Arc::new(array), true)
}

fn float(name: &'static str, values: impl IntoIterator<Item = f64>) -> Column {
    let array: Float64Array = values.into_iter().map(Some).collect();
    (name, Arc::new(array), false)
}

fn boolean(name: &'static str, values: impl IntoIterator<Item = bool>) -> Column {
    let array: BooleanArray = values.into_iter().map(Some).collect();
    (name, Arc::new(array), false)
}

/// RFC 3339 text as a UTC timestamp in milliseconds (NULL when absent or unparsable).
fn timestamp<'a>(name: &'static str, values: impl IntoIterator<Item = Option<&'a str>>) -> Column {
    let array: TimestampMillisecondArray = values
        .into_iter()
        .map(|v| {
            v.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis())
        })
        .collect();
    (name, Arc::new(array.with_timezone("UTC")), true)
}

fn date<'a>(name: &'static str, values: impl IntoIterator<Item = &'a str>) -> Column {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let array: Date32Array = values
        .into_iter()
        .map(|v| {
            v.parse::<NaiveDate>()
                .ok()
                .and_then(|d| i32::try_from((d - epoch).num_days()).ok())
        })
        .collect();
    (name, Arc::new(array), true)
}

fn batch(columns: Vec<Column>) -> Result<RecordBatch, arrow::error::ArrowError> {
    RecordBatch::try_from_iter_with_nullable(columns)
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn status(m: &Manifest) -> String {
    serde_json::to_value(m.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn runs_table(runs: &[Manifest]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let arguments: Vec<String> = runs.iter().map(|m| json(&m.arguments)).collect();
    let statuses: Vec<String> = runs.iter().map(status).collect();
    batch(vec![
        text("run_id", runs.iter().map(|m| m.run_id.as_str())),
        int(
            "manifest_version",
            runs.iter().map(|m| u64::from(m.manifest_version)),
        ),
        text("pipeline", runs.iter().map(|m| m.pipeline.name.as_str())),
        text(
            "pipeline_file",
            runs.iter().map(|m| m.pipeline.file.as_str()),
        ),
        text(
            "pipeline_sha256",
            runs.iter().map(|m| m.pipeline.sha256.as_str()),
        ),
        text(
            "segflow_version",
            runs.iter().map(|m| m.segflow_version.as_str()),
        ),
        text("arguments", arguments.iter().map(String::as_str)),
        text("period", runs.iter().map(|m| m.period.label.as_str())),
        text("grain", runs.iter().map(|m| m.period.grain.as_str())),
        date("period_start", runs.iter().map(|m| m.period.start.as_str())),
        date("period_end", runs.iter().map(|m| m.period.end.as_str())),
        timestamp(
            "started_at",
            runs.iter().map(|m| Some(m.started_at.as_str())),
        ),
        timestamp("finished_at", runs.iter().map(|m| m.finished_at.as_deref())),
        text("status", statuses.iter().map(String::as_str)),
        opt_text("error", runs.iter().map(|m| m.error.as_deref())),
        opt_text(
            "recovered_by",
            runs.iter().map(|m| m.recovered_by.as_deref()),
        ),
        boolean(
            "committed",
            runs.iter().map(|m| m.outputs.iter().any(|o| o.committed)),
        ),
        int("input_files", runs.iter().map(|m| m.inputs.len() as u64)),
        int(
            "input_rows",
            runs.iter().map(|m| m.inputs.iter().map(|i| i.rows).sum()),
        ),
        int(
            "output_rows",
            runs.iter().map(|m| m.outputs.iter().map(|o| o.rows).sum()),
        ),
        float("seconds", runs.iter().map(|m| m.timings.values().sum())),
        opt_int(
            "memory_limit",
            runs.iter()
                .map(|m| m.engine.as_ref().map(|e| e.memory_limit)),
        ),
        opt_int(
            "spilled_bytes",
            runs.iter()
                .map(|m| m.engine.as_ref().map(|e| e.spilled_bytes)),
        ),
    ])
}

/// One row per element of a list in each manifest, with the run id first.
fn rows<'a, T>(
    runs: &'a [Manifest],
    list: impl Fn(&'a Manifest) -> &'a [T],
) -> Vec<(&'a str, &'a T)> {
    runs.iter()
        .flat_map(|m| list(m).iter().map(move |x| (m.run_id.as_str(), x)))
        .collect()
}

fn inputs_table(runs: &[Manifest]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let r = rows(runs, |m| &m.inputs);
    batch(vec![
        text("run_id", r.iter().map(|(id, _)| *id)),
        text("source", r.iter().map(|(_, i)| i.source.as_str())),
        text("path", r.iter().map(|(_, i)| i.path.as_str())),
        int("size", r.iter().map(|(_, i)| i.size)),
        opt_text(
            "sha256",
            r.iter()
                .map(|(_, i)| Some(i.sha256.as_str()).filter(|s| !s.is_empty())),
        ),
        text("encoding", r.iter().map(|(_, i)| i.encoding.as_str())),
        int("rows", r.iter().map(|(_, i)| i.rows)),
        int("rows_rejected", r.iter().map(|(_, i)| i.rows_rejected)),
        opt_text("refused", r.iter().map(|(_, i)| i.refused.as_deref())),
    ])
}

fn steps_table(runs: &[Manifest]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let r = rows(runs, |m| &m.steps);
    let parameters: Vec<Option<String>> = r
        .iter()
        .map(|(_, s)| s.parameters.as_ref().map(json))
        .collect();
    batch(vec![
        text("run_id", r.iter().map(|(id, _)| *id)),
        text("step", r.iter().map(|(_, s)| s.name.as_str())),
        text("kind", r.iter().map(|(_, s)| s.kind.as_str())),
        int("rows_read", r.iter().map(|(_, s)| s.rows_read)),
        int("rows_written", r.iter().map(|(_, s)| s.rows_written)),
        int("rows_rejected", r.iter().map(|(_, s)| s.rows_rejected)),
        float("seconds", r.iter().map(|(_, s)| s.seconds)),
        opt_text("parameters", parameters.iter().map(Option::as_deref)),
    ])
}

fn models_table(runs: &[Manifest]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let r = rows(runs, |m| &m.models);
    batch(vec![
        text("run_id", r.iter().map(|(id, _)| *id)),
        text("step", r.iter().map(|(_, a)| a.step.as_str())),
        text("model", r.iter().map(|(_, a)| a.model.as_str())),
        text("name", r.iter().map(|(_, a)| a.name.as_str())),
        text("mode", r.iter().map(|(_, a)| a.mode.as_str())),
        text(
            "artifact_period",
            r.iter().map(|(_, a)| a.artifact_period.as_str()),
        ),
        text("path", r.iter().map(|(_, a)| a.path.as_str())),
        text("sha256", r.iter().map(|(_, a)| a.sha256.as_str())),
        boolean("committed", r.iter().map(|(_, a)| a.committed)),
    ])
}

fn checks_table(runs: &[Manifest]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let r = rows(runs, |m| &m.checks);
    let examples: Vec<String> = r.iter().map(|(_, c)| json(&c.examples)).collect();
    batch(vec![
        text("run_id", r.iter().map(|(id, _)| *id)),
        text("check", r.iter().map(|(_, c)| c.name.as_str())),
        text("target", r.iter().map(|(_, c)| c.target.as_str())),
        text("severity", r.iter().map(|(_, c)| c.severity.as_str())),
        boolean("passed", r.iter().map(|(_, c)| c.passed)),
        int("failing_rows", r.iter().map(|(_, c)| c.failing_rows)),
        text("examples", examples.iter().map(String::as_str)),
        text("message", r.iter().map(|(_, c)| c.message.as_str())),
    ])
}

fn outputs_table(runs: &[Manifest]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let r = rows(runs, |m| &m.outputs);
    let schemas: Vec<String> = r.iter().map(|(_, o)| json(&o.schema)).collect();
    batch(vec![
        text("run_id", r.iter().map(|(id, _)| *id)),
        text("output", r.iter().map(|(_, o)| o.output.as_str())),
        text("from", r.iter().map(|(_, o)| o.from.as_str())),
        text("path", r.iter().map(|(_, o)| o.path.as_str())),
        int("rows", r.iter().map(|(_, o)| o.rows)),
        int("files", r.iter().map(|(_, o)| o.files.len() as u64)),
        boolean("committed", r.iter().map(|(_, o)| o.committed)),
        text("columns", schemas.iter().map(String::as_str)),
    ])
}

fn output_files_table(runs: &[Manifest]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let r: Vec<(&str, &str, &segflow_manifest::OutputFile)> = runs
        .iter()
        .flat_map(|m| {
            m.outputs.iter().flat_map(move |o| {
                o.files
                    .iter()
                    .map(move |f| (m.run_id.as_str(), o.output.as_str(), f))
            })
        })
        .collect();
    batch(vec![
        text("run_id", r.iter().map(|(id, _, _)| *id)),
        text("output", r.iter().map(|(_, o, _)| *o)),
        text("file", r.iter().map(|(_, _, f)| f.path.as_str())),
        int("rows", r.iter().map(|(_, _, f)| f.rows)),
        int("size", r.iter().map(|(_, _, f)| f.size)),
        text("sha256", r.iter().map(|(_, _, f)| f.sha256.as_str())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_history_gives_empty_tables_with_their_columns() {
        let dir = tempfile::tempdir().expect("tmp");
        let written = write_tables(dir.path()).expect("write");
        assert_eq!(written.runs, 0);
        assert_eq!(written.files.len(), TABLES.len());
        let runs = runs_table(&[]).expect("batch");
        assert_eq!(runs.num_rows(), 0);
        assert!(runs.schema().field_with_name("started_at").is_ok());
    }
}
