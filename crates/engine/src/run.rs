//! One run: extract → transform → write (staged) → commit, recorded in the manifest whatever
//! happens.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Column;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Expr, SortExpr, cast};
use futures::{StreamExt, TryStreamExt};
use segflow_manifest::{
    CheckRecord, InputRecord, MANIFEST_VERSION, Manifest, ModelRecord, OutputFile, OutputRecord,
    PeriodInfo, PipelineInfo, RunStatus, StepRecord,
};
use segflow_sinks::{StagedTable, partition_dir, write_table};
use segflow_sources::BadRow;
use segflow_spec::{OnBadRow, Output, Period, Pipeline, Source, StepKind, VintageBy, VintageSpec};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::compile::{compile_step, model_parameters};
use crate::error::RunError;
use crate::session::session;

/// What the caller knows about the invocation, for the manifest.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub period: Period,
    /// SHA-256 of the pipeline file's bytes.
    pub pipeline_sha256: String,
    pub arguments: Vec<String>,
}

/// The result of a run: its manifest (always written) and the error, if it failed.
#[derive(Debug)]
pub struct RunOutcome {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    pub error: Option<RunError>,
}

/// Turns `file:///x` or `/x` into a local path; other schemes cannot be written yet.
pub(crate) fn local_path(what: &'static str, location: &str) -> Result<PathBuf, RunError> {
    if let Some(rest) = location.strip_prefix("file://") {
        return Ok(PathBuf::from(rest));
    }
    if location.contains("://") {
        return Err(RunError::UnsupportedLocation {
            what,
            location: location.to_string(),
        });
    }
    Ok(PathBuf::from(location))
}

/// Sortable, unique and readable: `20261123T184000Z-2025-3f9a1c`.
fn new_run_id(period: Period) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!(
        "{}-{period}-{:06x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        h.finish() & 0xff_ffff
    )
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Runs `pipeline` for `request.period`. Never panics on bad data; the manifest is written
/// for failed runs too (to `<output_dir>/runs/<run_id>/manifest.json`).
pub async fn run(pipeline: &Pipeline, request: &RunRequest) -> RunOutcome {
    let period = request.period;
    let run_id = new_run_id(period);
    let mut manifest = Manifest {
        manifest_version: MANIFEST_VERSION,
        run_id: run_id.clone(),
        pipeline: PipelineInfo {
            name: pipeline.name.clone(),
            file: pipeline.file.display().to_string(),
            sha256: request.pipeline_sha256.clone(),
        },
        segflow_version: env!("CARGO_PKG_VERSION").to_string(),
        arguments: request.arguments.clone(),
        period: PeriodInfo {
            label: period.to_string(),
            grain: period.grain().to_string(),
            start: period.start().to_string(),
            end: period.end().to_string(),
        },
        started_at: now(),
        finished_at: None,
        status: RunStatus::Running,
        error: None,
        inputs: Vec::new(),
        steps: Vec::new(),
        outputs: Vec::new(),
        checks: Vec::new(),
        models: Vec::new(),
        timings: BTreeMap::new(),
    };
    let result = execute(pipeline, request, &run_id, &mut manifest).await;
    if result.is_err() {
        let quarantine_roots = local_path("output_dir", &pipeline.output_dir)
            .map(|dir| {
                pipeline
                    .sources
                    .iter()
                    .map(|s| dir.join("quarantine").join(&s.name.value))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let output_roots = pipeline
            .outputs
            .iter()
            .filter_map(|o| local_path("output", &o.path).ok());
        for root in output_roots.chain(quarantine_roots) {
            // Best effort: a leftover hidden staging directory is harmless to readers.
            let _ = segflow_sinks::discard(&root, &run_id);
        }
    }
    manifest.status = match &result {
        Ok(()) => RunStatus::Succeeded,
        Err(RunError::ChecksFailed { .. } | RunError::BadRows { .. }) => RunStatus::ChecksFailed,
        Err(_) => RunStatus::Failed,
    };
    manifest.error = result.as_ref().err().map(ToString::to_string);
    manifest.finished_at = Some(now());
    let (manifest_path, written) = write_manifest(pipeline, &manifest);
    RunOutcome {
        manifest,
        manifest_path,
        // A run error is the more useful one to report; a manifest error only when the run
        // itself succeeded.
        error: result.err().or(written.err()),
    }
}

/// Writes `<output_dir>/runs/<run_id>/manifest.json` via a temporary file and a rename, so a
/// reader never sees half a manifest. Returns the path even when writing failed.
fn write_manifest(pipeline: &Pipeline, manifest: &Manifest) -> (PathBuf, Result<(), RunError>) {
    let dir = match local_path("output_dir", &pipeline.output_dir) {
        Ok(d) => d.join("runs").join(&manifest.run_id),
        Err(e) => return (PathBuf::new(), Err(e)),
    };
    let path = dir.join("manifest.json");
    let tmp = dir.join(".manifest.json.tmp");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&tmp, manifest.to_json()))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| RunError::Manifest {
            path: path.display().to_string(),
            source,
        });
    (path, written)
}

async fn execute(
    pipeline: &Pipeline,
    request: &RunRequest,
    run_id: &str,
    manifest: &mut Manifest,
) -> Result<(), RunError> {
    let ctx = session(&pipeline.engine)?;
    let mut rows: BTreeMap<String, u64> = BTreeMap::new();
    // Validation made sure the variable is set when a column needs it; the key is only held
    // here, never logged or recorded.
    let pii_key: Option<Vec<u8>> = pipeline
        .pii_key_env
        .as_ref()
        .and_then(|var| std::env::var(var).ok())
        .map(String::into_bytes);

    let started = Instant::now();
    let (mut failures, mut bad_rows, mut quarantined) = (Vec::new(), Vec::new(), Vec::new());
    for source in &pipeline.sources {
        let extracted = extract(
            &ctx,
            source,
            request.period,
            pii_key.as_deref(),
            manifest,
            &mut rows,
        )
        .await?;
        failures.extend(extracted.check_failures);
        bad_rows.extend(extracted.bad_rows_failure);
        if let Some(q) = extracted.quarantine {
            quarantined.push((source.name.value.clone(), q));
        }
    }
    manifest
        .timings
        .insert("extract".into(), started.elapsed().as_secs_f64());
    if !bad_rows.is_empty() {
        return Err(RunError::BadRows {
            summaries: bad_rows,
        });
    }
    if !failures.is_empty() {
        return Err(RunError::ChecksFailed { failures });
    }

    let started = Instant::now();
    let mut registries = Vec::new();
    let mut fitted_models = Vec::new();
    let inputs_sha256 = inputs_fingerprint(manifest);
    let fit_context = crate::models::FitContext {
        pipeline,
        period: request.period,
        pipeline_sha256: &request.pipeline_sha256,
        inputs_sha256: &inputs_sha256,
    };
    for name in &pipeline.execution_order {
        let Some(step) = pipeline.step(name) else {
            continue;
        };
        let step_started = Instant::now();
        let mut parameters = model_parameters(step);
        let df = match &step.kind {
            StepKind::Identity(spec) => {
                let path = crate::identity_step::registry_path(pipeline, name)?;
                let (df, resolved) =
                    crate::identity_step::run_identity(&ctx, name, spec, &path, pii_key.as_deref())
                        .await?;
                if let Some(serde_json::Value::Object(p)) = parameters.as_mut() {
                    p.insert("merges".into(), serde_json::json!(resolved.merges));
                    p.insert("persons".into(), serde_json::json!(resolved.persons));
                    p.insert(
                        "known_persons".into(),
                        serde_json::json!(resolved.known_persons),
                    );
                    p.insert(
                        "registry".into(),
                        serde_json::json!(path.display().to_string()),
                    );
                }
                registries.push((path, resolved));
                df
            }
            StepKind::Enrich(spec) => {
                let enriched = crate::enrich_step::run_enrich(&ctx, name, spec).await?;
                parameters = Some(enriched.parameters);
                if let Some(check) = enriched.check {
                    let failed = !check.passed && check.severity == "error";
                    if !check.passed {
                        warn!(step = %name, "{}", check.message);
                    }
                    let message = format!("step `{name}`: {}", check.message);
                    manifest.checks.push(check);
                    if failed {
                        return Err(RunError::ChecksFailed {
                            failures: vec![message],
                        });
                    }
                }
                enriched.df
            }
            StepKind::Profile(spec) => {
                crate::models::query(
                    &ctx,
                    name,
                    &segflow_profiles::profile_sql(
                        spec,
                        request.period.start(),
                        request.period.end(),
                    ),
                )
                .await?
            }
            _ if crate::models::is_model(step) => {
                let (df, outcome) = crate::models::run_model_step(&ctx, step, &fit_context).await?;
                parameters = Some(outcome.artifact.parameters.clone());
                manifest.models.push(ModelRecord {
                    step: name.clone(),
                    model: outcome.artifact.model.clone(),
                    name: outcome.artifact.name.clone(),
                    mode: outcome.mode.into(),
                    artifact_period: outcome.artifact.period.clone(),
                    path: outcome.path.display().to_string(),
                    sha256: outcome.sha256.clone(),
                    committed: false,
                });
                info!(step = %name, mode = outcome.mode, artifact = %outcome.path.display(), "model");
                fitted_models.push((manifest.models.len() - 1, outcome));
                df
            }
            _ => compile_step(&ctx, step, request.period).await?,
        };
        let step_err = |e| RunError::Step {
            step: name.clone(),
            source: Box::new(e),
        };
        let (table, written) = materialize(df).await.map_err(step_err)?;
        ctx.register_table(name.as_str(), Arc::new(table))
            .map_err(step_err)?;
        let inputs: BTreeMap<String, u64> = step
            .inputs()
            .iter()
            .map(|i| (i.value.clone(), rows.get(&i.value).copied().unwrap_or(0)))
            .collect();
        info!(step = %name, kind = step.kind_name(), rows = written, seconds = step_started.elapsed().as_secs_f64(), "step done");
        manifest.steps.push(StepRecord {
            name: name.clone(),
            kind: step.kind_name().into(),
            rows_read: inputs.values().sum(),
            inputs,
            rows_written: written as u64,
            rows_rejected: 0,
            seconds: step_started.elapsed().as_secs_f64(),
            parameters,
        });
        rows.insert(name.clone(), written as u64);
    }
    manifest
        .timings
        .insert("transform".into(), started.elapsed().as_secs_f64());

    let started = Instant::now();
    let runs_dir = local_path("output_dir", &pipeline.output_dir)?.join("runs");
    let (records, failures) =
        crate::contracts::evaluate(&ctx, pipeline, request.period, &runs_dir, &rows).await?;
    manifest.checks.extend(records);
    manifest
        .timings
        .insert("checks".into(), started.elapsed().as_secs_f64());
    if !failures.is_empty() {
        return Err(RunError::ChecksFailed { failures });
    }

    let started = Instant::now();
    let metadata = file_metadata(pipeline, request, manifest);
    let mut staged = Vec::with_capacity(pipeline.outputs.len() + quarantined.len());
    let quarantine_root = local_path("output_dir", &pipeline.output_dir)?.join("quarantine");
    for (source, bad) in &quarantined {
        let (schema, batch) = quarantine_batch(source, bad)?;
        let root = quarantine_root.join(source);
        let table = stage_batches(
            &root,
            request.period,
            run_id,
            schema,
            &[batch],
            &[],
            1_000_000,
            &metadata,
        )?;
        manifest.outputs.push(OutputRecord {
            output: format!("quarantine/{source}"),
            from: source.clone(),
            path: root.display().to_string(),
            rows: bad.len() as u64,
            files: output_files(&table),
            committed: false,
        });
        staged.push(table);
    }
    for output in &pipeline.outputs {
        let table = stage_output(&ctx, output, request.period, run_id, &metadata).await?;
        manifest.outputs.push(OutputRecord {
            output: output.name.value.clone(),
            from: output.from.value.clone(),
            path: output.path.clone(),
            rows: table.files.iter().map(|f| f.rows).sum(),
            files: output_files(&table),
            committed: false,
        });
        staged.push(table);
    }
    manifest
        .timings
        .insert("write".into(), started.elapsed().as_secs_f64());

    // Artifacts are written (under temporary names) before anything is committed.
    let mut staged_artifacts = Vec::new();
    for (index, outcome) in &fitted_models {
        match crate::models::stage_artifact(outcome, run_id) {
            Ok(Some(tmp)) => staged_artifacts.push((*index, outcome, tmp)),
            Ok(None) => {}
            Err(e) => {
                for (_, _, tmp) in &staged_artifacts {
                    let _ = std::fs::remove_file(tmp);
                }
                return Err(e);
            }
        }
    }
    let started = Instant::now();
    for (table, record) in staged.iter().zip(manifest.outputs.iter_mut()) {
        table.commit()?;
        record.committed = true;
    }
    // Model artifacts and identity registries only move forward with a committed run.
    for (index, outcome, tmp) in &staged_artifacts {
        crate::models::commit_artifact(outcome, tmp)?;
        if let Some(record) = manifest.models.get_mut(*index) {
            record.committed = true;
        }
    }
    for (path, resolved) in &registries {
        crate::identity_step::write_registry(path, resolved)?;
    }
    manifest
        .timings
        .insert("commit".into(), started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs a step's plan once and keeps the result in memory for every consumer.
///
/// The schema is taken from the physical plan, not the logical one: DataFusion 55 can widen a
/// decimal SUM in the final aggregation phase beyond what the logical plan declares. Fields
/// are declared nullable, as a plan's nullability claims are not always what batches carry.
pub(crate) async fn collect_physical(
    df: DataFrame,
) -> datafusion::error::Result<(SchemaRef, Vec<Vec<RecordBatch>>)> {
    let task = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await?;
    let schema = Arc::new(Schema::new(
        plan.schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let mut partitions = Vec::new();
    for part in datafusion::physical_plan::collect_partitioned(plan, task).await? {
        let batches = part
            .into_iter()
            .map(|b| RecordBatch::try_new(Arc::clone(&schema), b.columns().to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        partitions.push(batches);
    }
    Ok((schema, partitions))
}

async fn materialize(df: DataFrame) -> datafusion::error::Result<(MemTable, usize)> {
    let (schema, partitions) = collect_physical(df).await?;
    let rows = partitions.iter().flatten().map(RecordBatch::num_rows).sum();
    Ok((MemTable::try_new(schema, partitions)?, rows))
}

/// "3 bad row(s) in source `orders`; …: orders.csv:17: column `amount`: …" — the first few
/// rows by file and line, so the message alone says where to look.
fn bad_rows_summary(source: &str, bad_rows: &[BadRow]) -> String {
    let first: Vec<String> = sorted_bad_rows(bad_rows)
        .iter()
        .take(3)
        .map(|b| format!("{}:{}: {}", b.file, b.line, b.reason))
        .collect();
    format!(
        "{} bad row(s) in source `{source}` (on_bad_row: fail): {}",
        bad_rows.len(),
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
struct Extracted {
    /// Data-check failures (required columns with NULLs).
    check_failures: Vec<String>,
    /// Set when rows were refused under `on_bad_row: fail`.
    bad_rows_failure: Option<String>,
    /// Rows for the quarantine table, under `on_bad_row: quarantine` (possibly none).
    quarantine: Option<Vec<BadRow>>,
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

async fn extract(
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
    // Fingerprinting and reading overlap: both stream the same files.
    let checksums = futures::stream::iter(files.iter().map(|f| async move {
        segflow_sources::sha256_of(f.store.as_ref(), &f.path)
            .await
            .map_err(|error| segflow_sources::SourceError::Io {
                source_name: name.clone(),
                file: f.url.clone(),
                error,
            })
    }))
    .buffered(4)
    .try_collect::<Vec<String>>();
    let (checksums, loaded) = futures::try_join!(
        checksums,
        segflow_sources::load(ctx, source, &files, pii_key)
    )?;
    for (i, (file, sha256)) in files.iter().zip(checksums).enumerate() {
        manifest.inputs.push(InputRecord {
            source: name.clone(),
            path: file.url.clone(),
            size: file.size,
            sha256,
            rows: loaded.rows_per_file[i] as u64,
            rows_rejected: loaded
                .bad_rows
                .iter()
                .filter(|b| b.file == file.url)
                .count() as u64,
            encoding: loaded.encodings[i].to_string(),
        });
    }
    // The invariant the manifest promises, checked on every source, every run.
    let (read, accepted, rejected) = (
        loaded.rows_read(),
        loaded.rows_accepted(),
        loaded.bad_rows.len(),
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
            extracted.bad_rows_failure = Some(bad_rows_summary(name, &loaded.bad_rows));
        }
        OnBadRow::Fail => {}
        OnBadRow::Quarantine => {
            if rejected > 0 {
                warn!(source = %name, rows = rejected, "rows quarantined");
            }
            extracted.quarantine = Some(loaded.bad_rows.clone());
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
    let batches = crate::models::collect(
        ctx,
        source,
        &format!("SELECT DISTINCT CAST({col} AS VARCHAR) AS v FROM {table} WHERE {col} IS NOT NULL ORDER BY v"),
    )
    .await?;
    let available: Vec<String> = crate::models::string_column(source, &batches, "v")?
        .into_iter()
        .flatten()
        .collect();
    let chosen = pick_vintage(source, spec, &available, period)?;
    let scratch = crate::models::scratch(source, "vintage");
    let kept = crate::models::materialize_as(
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

/// The quarantine table of a source: one row per rejected row, in file and line order.
fn quarantine_batch(
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

/// SHA-256 over the input files' SHA-256s: one value saying "these exact inputs".
fn inputs_fingerprint(manifest: &Manifest) -> String {
    let mut inputs = Sha256::new();
    for input in &manifest.inputs {
        inputs.update(input.sha256.as_bytes());
        inputs.update(b"\n");
    }
    hex::encode(inputs.finalize())
}

/// Parquet key/value metadata. Only values that are the same for the same inputs go here (no
/// run id, no timestamp), so re-runs stay byte-identical; the manifest links files to runs.
fn file_metadata(
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

async fn stage_output(
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
    let (schema, partitions) = collect_physical(df).await.map_err(query_err)?;
    let batches: Vec<RecordBatch> = partitions.into_iter().flatten().collect();
    let root = local_path("output", &output.path)?;
    let table = stage_batches(
        &root,
        period,
        run_id,
        schema,
        &batches,
        &sub_partitions,
        output.max_rows_per_file,
        metadata,
    )?;
    info!(output = %name, rows = table.files.iter().map(|f| f.rows).sum::<u64>(), files = table.files.len(), path = %root.display(), "output staged");
    Ok(table)
}

/// Writes one period of a table into its staging directory.
#[allow(clippy::too_many_arguments)]
fn stage_batches(
    root: &Path,
    period: Period,
    run_id: &str,
    schema: SchemaRef,
    batches: &[RecordBatch],
    sub_partitions: &[String],
    max_rows_per_file: usize,
    metadata: &[(String, String)],
) -> Result<StagedTable, RunError> {
    let table = StagedTable {
        root: root.to_path_buf(),
        run_id: run_id.to_string(),
        period_dir: partition_dir("period", Some(&period.to_string())),
        files: Vec::new(),
    };
    let files = write_table(
        &table.staged_period(),
        schema,
        batches,
        sub_partitions,
        max_rows_per_file,
        metadata,
    )?;
    Ok(StagedTable { files, ..table })
}

fn output_files(table: &StagedTable) -> Vec<OutputFile> {
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
