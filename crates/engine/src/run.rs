//! One run: extract → transform → write (staged) → commit, recorded in the manifest whatever
//! happens.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use datafusion::execution::context::SessionContext;
use segflow_manifest::{
    EngineRecord, MANIFEST_VERSION, Manifest, ModelRecord, OutputRecord, PeriodInfo, PipelineInfo,
    RunStatus, StepRecord,
};
use segflow_spec::{Period, Pipeline};
use tracing::{info, warn};

use crate::error::RunError;
use crate::extract::extract;
use crate::lifetimes::LastUse;
use crate::materialize::{Scratch, materialize, release};
use crate::output::{file_metadata, inputs_fingerprint, output_files, stage_output};
use crate::quarantine::stage_quarantine;
use crate::session::session;
use crate::steps::model::{commit_artifact, stage_artifact};
use crate::steps::{FitContext, StepContext, runner, write_registry};

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
        engine: None,
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
    let (ctx, settings) = session(&pipeline.engine)?;
    let result = execute_in(&ctx, pipeline, request, run_id, manifest).await;
    manifest.engine = Some(EngineRecord {
        memory_limit: settings.memory_limit,
        target_partitions: settings.target_partitions,
        spilled_bytes: Scratch::of(&ctx).map_or(0, |s| s.spilled_bytes()),
    });
    result
}

async fn execute_in(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    request: &RunRequest,
    run_id: &str,
    manifest: &mut Manifest,
) -> Result<(), RunError> {
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
            ctx,
            source,
            request.period,
            pii_key.as_deref(),
            manifest,
            &mut rows,
        )
        .await?;
        failures.extend(extracted.check_failures);
        bad_rows.extend(extracted.bad_rows_failure);
        quarantined.extend(extracted.quarantine);
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
    let fit_context = FitContext {
        pipeline,
        period: request.period,
        pipeline_sha256: &request.pipeline_sha256,
        inputs_sha256: &inputs_sha256,
    };
    let last_use = LastUse::new(pipeline);
    for name in &pipeline.execution_order {
        let Some(step) = pipeline.step(name) else {
            continue;
        };
        let step_started = Instant::now();
        let cx = StepContext {
            ctx,
            pipeline,
            step,
            period: request.period,
            pii_key: pii_key.as_deref(),
            fit: &fit_context,
        };
        let output = runner(step).run(&cx).await?;
        if let Some(check) = output.check {
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
        if let Some(outcome) = output.model {
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
        }
        registries.extend(output.registry);
        let (df, parameters) = (output.df, output.parameters);
        let step_err = |e| RunError::Step {
            step: name.clone(),
            source: Box::new(e),
        };
        let written = materialize(ctx, name, df).await.map_err(step_err)?;
        for table in last_use.after(name) {
            release(ctx, table).map_err(step_err)?;
        }
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
        crate::contracts::evaluate(ctx, pipeline, request.period, &runs_dir, &rows).await?;
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
    for quarantine in &quarantined {
        let source = &quarantine.source;
        let root = quarantine_root.join(source);
        let (table, rows) =
            stage_quarantine(quarantine, &root, request.period, run_id, &metadata).await?;
        manifest.outputs.push(OutputRecord {
            output: format!("quarantine/{source}"),
            from: source.clone(),
            path: root.display().to_string(),
            rows,
            files: output_files(&table),
            committed: false,
        });
        staged.push(table);
    }
    for output in &pipeline.outputs {
        let table = stage_output(ctx, output, request.period, run_id, &metadata).await?;
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
        match stage_artifact(outcome, run_id) {
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
        commit_artifact(outcome, tmp)?;
        if let Some(record) = manifest.models.get_mut(*index) {
            record.committed = true;
        }
    }
    for (path, resolved) in &registries {
        write_registry(path, resolved)?;
    }
    manifest
        .timings
        .insert("commit".into(), started.elapsed().as_secs_f64());
    Ok(())
}
