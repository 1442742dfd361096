//! Extract: every source read with its declared schema, fingerprinted, counted and checked
//! (bad rows, required columns, schema drift, vintages) before any step sees it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::context::SessionContext;
use segflow_manifest::{CheckRecord, InputRecord, Manifest, StepRecord};
use segflow_sources::BadRow;
use segflow_spec::{OnBadRow, Period, Source, VintageBy, VintageSpec};
use tracing::{info, warn};

use crate::error::RunError;

/// "3 bad row(s) in source `orders`; …: orders.csv:17: column `amount`: …" — the first few
/// rows by file and line, so the message alone says where to look.
pub(crate) fn bad_rows_summary(source: &str, total: usize, sample: &[BadRow]) -> String {
    let first: Vec<String> = sorted_bad_rows(sample)
        .iter()
        .take(3)
        .map(|b| format!("{}:{}: {}", b.file, b.line, b.reason))
        .collect();
    format!(
        "{total} bad row(s) in source `{source}` (on_bad_row: fail): {}",
        first.join("; ")
    )
}

fn sorted_bad_rows(bad_rows: &[BadRow]) -> Vec<&BadRow> {
    let mut rows: Vec<&BadRow> = bad_rows.iter().collect();
    rows.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    rows
}

/// What reading one source left for the later phases.
#[derive(Debug, Default)]
pub(crate) struct Extracted {
    /// Data-check failures (required columns with NULLs).
    pub check_failures: Vec<String>,
    /// Set when rows were refused under `on_bad_row: fail`.
    pub bad_rows_failure: Option<String>,
    /// Rows for the quarantine table, under `on_bad_row: quarantine` (possibly none).
    pub quarantine: Option<Vec<BadRow>>,
}

/// The vintage label of a file under `<dir>=<label>/`, if its path has that level.
fn directory_vintage<'a>(url: &'a str, dir: &str) -> Option<&'a str> {
    url.split('/')
        .find_map(|segment| segment.strip_prefix(dir)?.strip_prefix('='))
}

/// Picks the vintage in effect for `period` (or the fixed one) among `available`.
fn pick_vintage(
    source: &str,
    spec: &VintageSpec,
    available: &[String],
    period: Period,
) -> Result<String, RunError> {
    let chosen = match &spec.fixed {
        Some(fixed) if available.contains(fixed) => Ok(fixed.clone()),
        Some(fixed) => Err(format!(
            "vintage `{fixed}` is not among the available ones ({})",
            available.join(", ")
        )),
        None => segflow_enrich::vintage::choose(available, period.end()).map(str::to_string),
    };
    chosen.map_err(|message| RunError::StepInput {
        step: source.to_string(),
        message,
    })
}

pub(crate) async fn extract(
    ctx: &SessionContext,
    source: &Source,
    period: Period,
    pii_key: Option<&[u8]>,
    manifest: &mut Manifest,
    rows: &mut BTreeMap<String, u64>,
) -> Result<Extracted, RunError> {
    let started = Instant::now();
    let name = &source.name.value;
    let mut files = segflow_sources::list_files(ctx, source).await?;
    let mut vintage_record = None;
    if let Some(
        spec @ VintageSpec {
            by: VintageBy::Directory(dir),
            ..
        },
    ) = &source.vintage
    {
        let mut available = Vec::new();
        for f in &files {
            let Some(label) = directory_vintage(&f.url, dir) else {
                return Err(RunError::StepInput {
                    step: name.clone(),
                    message: format!("file {} is not under a `{dir}=<vintage>/` directory", f.url),
                });
            };
            if !available.iter().any(|a| a == label) {
                available.push(label.to_string());
            }
        }
        available.sort();
        let chosen = pick_vintage(name, spec, &available, period)?;
        files.retain(|f| directory_vintage(&f.url, dir) == Some(chosen.as_str()));
        vintage_record = Some(
            serde_json::json!({"by": format!("directory {dir}"), "available": available, "chosen": chosen}),
        );
    }
    // CSV and Excel sources are typed into an Arrow file here; the checksums come from the
    // same read (Parquet and JSON lines are hashed while they are counted).
    let space = crate::materialize::Scratch::of(ctx).map_err(|e| RunError::Step {
        step: name.clone(),
        source: Box::new(e),
    })?;
    let scratch = space.table_dir(name).map_err(|e| RunError::Step {
        step: name.clone(),
        source: Box::new(e),
    })?;
    // Remembered, so the source's files go as soon as its last reader has run.
    space.remember(name, scratch.clone());
    let loaded = segflow_sources::load(ctx, source, &files, pii_key, &scratch).await?;
    for (i, (file, sha256)) in files.iter().zip(&loaded.sha256_per_file).enumerate() {
        manifest.inputs.push(InputRecord {
            source: name.clone(),
            path: file.url.clone(),
            size: file.size,
            sha256: sha256.clone(),
            rows: loaded.rows_per_file[i] as u64,
            rows_rejected: loaded.rejected_per_file[i] as u64,
            encoding: loaded.encodings[i].to_string(),
        });
    }
    // The invariant the manifest promises, checked on every source, every run.
    let (read, accepted, rejected) = (
        loaded.rows_read(),
        loaded.rows_accepted(),
        loaded.rows_rejected(),
    );
    if read != accepted + rejected || loaded.rows_in_table != accepted {
        return Err(RunError::Accounting {
            source_name: name.clone(),
            message: format!(
                "read {read}, accepted {accepted} ({} in the table), rejected {rejected}",
                loaded.rows_in_table
            ),
        });
    }
    let mut extracted = Extracted::default();
    for warning in &loaded.drift_warnings {
        warn!(source = %name, "schema drift: {warning}");
        manifest.checks.push(CheckRecord {
            name: "schema_drift".into(),
            target: name.clone(),
            severity: "warn".into(),
            passed: false,
            failing_rows: 0,
            examples: Vec::new(),
            message: warning.clone(),
        });
    }
    match source.on_bad_row {
        OnBadRow::Fail if rejected > 0 => {
            extracted.bad_rows_failure =
                Some(bad_rows_summary(name, rejected, &loaded.bad_row_sample));
        }
        OnBadRow::Fail => {}
        OnBadRow::Quarantine => {
            if rejected > 0 {
                warn!(source = %name, rows = rejected, "rows quarantined");
            }
            extracted.quarantine = Some(quarantined_rows(name, &loaded)?);
        }
    }
    for (column, nulls) in source.schema.iter().zip(&loaded.null_counts) {
        if !column.required {
            continue;
        }
        let passed = *nulls == 0;
        let message = if passed {
            "no NULL values".to_string()
        } else {
            format!(
                "{nulls} row(s) have no `{}`, which is declared required",
                column.name
            )
        };
        if !passed {
            extracted
                .check_failures
                .push(format!("source `{name}`: {message}"));
        }
        manifest.checks.push(CheckRecord {
            name: "required".into(),
            target: format!("{name}.{}", column.name),
            severity: "error".into(),
            passed,
            failing_rows: *nulls as u64,
            examples: Vec::new(),
            message,
        });
    }
    ctx.register_table(name.as_str(), loaded.table)
        .map_err(|e| RunError::Step {
            step: name.clone(),
            source: Box::new(e),
        })?;
    let mut rows_in_use = accepted as u64;
    if let Some(
        spec @ VintageSpec {
            by: VintageBy::Column(column),
            ..
        },
    ) = &source.vintage
    {
        let (chosen, available, kept) =
            filter_column_vintage(ctx, name, spec, column, period).await?;
        rows_in_use = kept;
        vintage_record = Some(
            serde_json::json!({"by": format!("column {column}"), "available": available, "chosen": chosen, "rows": kept}),
        );
    }
    if let Some(v) = &vintage_record {
        info!(source = %name, vintage = %v["chosen"], "vintage");
    }
    info!(source = %name, files = files.len(), rows = read, rejected, seconds = started.elapsed().as_secs_f64(), "source read");
    manifest.steps.push(StepRecord {
        name: name.clone(),
        kind: "source".into(),
        inputs: files
            .iter()
            .zip(&loaded.rows_per_file)
            .map(|(f, r)| (f.url.clone(), *r as u64))
            .collect(),
        rows_read: read as u64,
        rows_written: accepted as u64,
        rows_rejected: rejected as u64,
        seconds: started.elapsed().as_secs_f64(),
        parameters: vintage_record.map(|v| serde_json::json!({ "vintage": v })),
    });
    rows.insert(name.clone(), rows_in_use);
    Ok(extracted)
}

/// Keeps only the rows of the vintage in effect (by a column's value) and re-registers the
/// source with them. Returns the chosen label, all labels, and the rows kept; the rows of
/// other vintages are read (and counted in the manifest) but not used.
async fn filter_column_vintage(
    ctx: &SessionContext,
    source: &str,
    spec: &VintageSpec,
    column: &str,
    period: Period,
) -> Result<(String, Vec<String>, u64), RunError> {
    let col = segflow_models::quote_ident(column);
    let table = segflow_models::quote_ident(source);
    let batches = crate::steps::frames::collect(
        ctx,
        source,
        &format!("SELECT DISTINCT CAST({col} AS VARCHAR) AS v FROM {table} WHERE {col} IS NOT NULL ORDER BY v"),
    )
    .await?;
    let available: Vec<String> = crate::steps::frames::string_column(source, &batches, "v")?
        .into_iter()
        .flatten()
        .collect();
    let chosen = pick_vintage(source, spec, &available, period)?;
    let scratch = crate::steps::frames::scratch(source, "vintage");
    let kept = crate::steps::frames::materialize_as(
        ctx,
        source,
        &scratch,
        &format!(
            "SELECT * FROM {table} WHERE CAST({col} AS VARCHAR) = {}",
            segflow_models::quote_literal(&chosen)
        ),
    )
    .await?;
    let provider = ctx
        .table_provider(scratch.as_str())
        .await
        .map_err(|e| RunError::Step {
            step: source.to_string(),
            source: Box::new(e),
        })?;
    ctx.deregister_table(source).map_err(|e| RunError::Step {
        step: source.to_string(),
        source: Box::new(e),
    })?;
    ctx.register_table(source, provider)
        .map_err(|e| RunError::Step {
            step: source.to_string(),
            source: Box::new(e),
        })?;
    Ok((chosen, available, kept))
}

/// Every bad row of a source, read back from the file the reader streamed them to.
fn quarantined_rows(
    source: &str,
    loaded: &segflow_sources::LoadedSource,
) -> Result<Vec<BadRow>, RunError> {
    let Some(path) = &loaded.bad_rows_file else {
        return Ok(Vec::new());
    };
    let error = |e: arrow::error::ArrowError| RunError::Step {
        step: source.to_string(),
        source: Box::new(e.into()),
    };
    let mut rows = Vec::with_capacity(loaded.rows_rejected());
    for batch in segflow_sources::read_bad_rows(path).map_err(error)? {
        let batch = batch.map_err(error)?;
        let text = |i: usize| batch.column(i).as_string_opt::<i32>();
        let (Some(file), Some(line), Some(raw), Some(reason)) = (
            text(0),
            batch.column(1).as_primitive_opt::<Int64Type>(),
            text(2),
            text(3),
        ) else {
            return Err(error(arrow::error::ArrowError::SchemaError(
                "bad-rows file with unexpected columns".into(),
            )));
        };
        rows.extend((0..batch.num_rows()).map(|i| BadRow {
            file: file.value(i).to_string(),
            line: u64::try_from(line.value(i)).unwrap_or_default(),
            raw: raw.value(i).to_string(),
            reason: reason.value(i).to_string(),
        }));
    }
    Ok(rows)
}

/// The quarantine table of a source: one row per rejected row, in file and line order.
pub(crate) fn quarantine_batch(
    source: &str,
    bad_rows: &[BadRow],
) -> Result<(SchemaRef, RecordBatch), RunError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("file", DataType::Utf8, false),
        Field::new("line", DataType::Int64, false),
        Field::new("raw", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
    ]));
    let rows = sorted_bad_rows(bad_rows);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|_| source))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.file.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter()
                .map(|r| i64::try_from(r.line).unwrap_or(i64::MAX)),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.raw.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.reason.as_str()),
        )),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).map_err(|e| RunError::Step {
        step: source.to_string(),
        source: Box::new(e.into()),
    })?;
    Ok((schema, batch))
}
