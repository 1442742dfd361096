//! Extract: every source read with its declared schema, fingerprinted, counted and checked
//! (bad rows, required columns, schema drift, vintages) before any step sees it.

use std::collections::BTreeMap;
use std::time::Instant;

use datafusion::execution::context::SessionContext;
use segflow_manifest::{CheckRecord, InputRecord, Manifest, StepRecord};
use segflow_sources::BadRow;
use segflow_spec::{OnBadRow, Period, Source, VintageBy, VintageSpec};
use tracing::{info, warn};

use crate::error::RunError;
use crate::quarantine::Quarantine;

/// "3 bad row(s) in source `orders`; …: orders.csv:17: column `amount`: …" — the first few
/// rows by file and line, so the message alone says where to look.
pub(crate) fn bad_rows_summary(source: &str, total: usize, sample: &[BadRow]) -> String {
    let first: Vec<String> = sorted_bad_rows(sample)
        .iter()
        .take(3)
        .map(|b| match b.line {
            // Parquet and JSON lines have no lines; their reasons name the file.
            0 => b.reason.clone(),
            line => format!("{}:{line}: {}", b.file, b.reason),
        })
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
    /// The quarantine table's rows, under `on_bad_row: quarantine` (possibly none).
    pub quarantine: Option<Quarantine>,
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

/// The files a run of `period` reads from `source` — with `vintage: { directory: … }`, only
/// the chosen vintage's — and the vintage record for the manifest. Backfills use it too, to
/// compare what a rerun would read with what the last run read.
pub(crate) async fn files_to_read(
    ctx: &SessionContext,
    source: &Source,
    period: Period,
) -> Result<(Vec<segflow_sources::InputFile>, Option<serde_json::Value>), RunError> {
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
    Ok((files, vintage_record))
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
    let (files, mut vintage_record) = files_to_read(ctx, source, period).await?;
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
    let loaded = match segflow_sources::load(ctx, source, &files, pii_key, &scratch).await {
        Ok(loaded) => loaded,
        Err(e) => {
            // A file refused whole still belongs in the manifest's inputs: the auditor sees
            // what was there and why nothing of the source was used.
            for file in &files {
                let refused = if e.file() == Some(file.url.as_str()) {
                    e.to_string()
                } else {
                    format!(
                        "not used: source `{name}` was refused ({})",
                        e.file().unwrap_or("see the error")
                    )
                };
                manifest.inputs.push(InputRecord {
                    source: name.clone(),
                    path: file.url.clone(),
                    size: file.size,
                    sha256: String::new(),
                    rows: 0,
                    rows_rejected: 0,
                    encoding: String::new(),
                    refused: Some(refused),
                });
            }
            return Err(e.into());
        }
    };
    for (i, (file, sha256)) in files.iter().zip(&loaded.sha256_per_file).enumerate() {
        manifest.inputs.push(InputRecord {
            source: name.clone(),
            path: file.url.clone(),
            size: file.size,
            sha256: sha256.clone(),
            rows: loaded.rows_per_file[i] as u64,
            rows_rejected: loaded.rejected_per_file[i] as u64,
            encoding: loaded.encodings[i].to_string(),
            refused: None,
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
    if let Some(stop) = &loaded.stopped {
        // The read stopped early: what was read is recorded above, the run stops here.
        let message = format!(
            "source `{name}`: stopped reading at `{}`: {rejected} bad row(s) among the first {read} rows read, {} (wrong delimiter or encoding?): {}",
            stop.file,
            stop.limit,
            bad_rows_summary(name, rejected, &loaded.bad_row_sample)
        );
        manifest.steps.push(source_record(
            name,
            &files,
            &loaded.rows_per_file,
            &loaded.rejected_per_file,
            started,
            vintage_record,
        ));
        return Err(RunError::BadRows {
            summaries: vec![message],
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
            let mut bad_rows = loaded.bad_rows;
            if let Some(segflow_sources::BadRowSource::File(path)) = &mut bad_rows {
                // The source's scratch directory goes when its last reader has run; the bad
                // rows are read at the end, when the quarantine is written.
                let kept = space
                    .table_dir(&format!("{name}.quarantine"))
                    .and_then(|dir| {
                        let to = dir.join("bad_rows.arrow");
                        std::fs::rename(&*path, &to)?;
                        Ok(to)
                    })
                    .map_err(|e| RunError::Step {
                        step: name.clone(),
                        source: Box::new(e),
                    })?;
                *path = kept;
            }
            extracted.quarantine = Some(Quarantine {
                source: name.clone(),
                rows: rejected,
                bad_rows,
            });
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
    manifest.steps.push(source_record(
        name,
        &files,
        &loaded.rows_per_file,
        &loaded.rejected_per_file,
        started,
        vintage_record,
    ));
    rows.insert(name.clone(), rows_in_use);
    Ok(extracted)
}

/// The manifest's record of a source: rows read, accepted and rejected, per file read.
fn source_record(
    name: &str,
    files: &[segflow_sources::InputFile],
    rows_per_file: &[usize],
    rejected_per_file: &[usize],
    started: Instant,
    vintage: Option<serde_json::Value>,
) -> StepRecord {
    let read: usize = rows_per_file.iter().sum();
    let rejected: usize = rejected_per_file.iter().sum();
    StepRecord {
        name: name.to_string(),
        kind: "source".into(),
        inputs: files
            .iter()
            .zip(rows_per_file)
            .map(|(f, r)| (f.url.clone(), *r as u64))
            .collect(),
        rows_read: read as u64,
        rows_written: read.saturating_sub(rejected) as u64,
        rows_rejected: rejected as u64,
        seconds: started.elapsed().as_secs_f64(),
        parameters: vintage.map(|v| serde_json::json!({ "vintage": v })),
    }
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
