//! One run: lock → recover dead runs → extract → transform → checks → write (staged) →
//! commit (one journaled transaction) → manifest, recorded in the manifest whatever happens.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Instant;

use datafusion::execution::context::SessionContext;
use segflow_manifest::{
    EngineRecord, MANIFEST_VERSION, Manifest, ModelRecord, OutputRecord, PeriodInfo, PipelineInfo,
    RecoveryRecord, RunStatus, StepRecord,
};
use segflow_sinks::Transaction;
use segflow_spec::{Period, Pipeline};
use tracing::{info, warn};

use crate::error::RunError;
use crate::extract::extract;
use crate::lifetimes::LastUse;
use crate::locks::{Holder, lock_commit, lock_period, lock_run, run_lock_path};
use crate::materialize::{Scratch, adopt, materialize, release};
use crate::output::{file_metadata, inputs_fingerprint, output_files, stage_output};
use crate::pauses::Pauses;
use crate::quarantine::stage_quarantine;
use crate::recovery::{record_places, recover_dead_runs, sweep_run};
use crate::session::session;
use crate::steps::model::stage_artifact;
use crate::steps::{FitContext, StepContext, runner};

/// What the caller knows about the invocation, for the manifest.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub period: Period,
    /// SHA-256 of the pipeline file's bytes.
    pub pipeline_sha256: String,
    pub arguments: Vec<String>,
    /// See [`Manifest::variables_sha256`].
    pub variables_sha256: Option<String>,
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

/// A unique label for a session that is not a run (`plan`, `report`).
pub(crate) fn unique_label(what: &str) -> String {
    format!("{what}-{}", new_run_id_for(what))
}

/// Sortable, unique and readable: `20261123T184000Z-2025-3f9a1c`.
fn new_run_id(period: Period) -> String {
    new_run_id_for(&period.to_string())
}

fn new_run_id_for(period: &str) -> String {
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
    run_until(pipeline, request, std::future::pending()).await
}

/// [`run`], stopped when `stop` completes (with the name of the signal that stopped it): the
/// run's staging is discarded, its manifest says `interrupted`, nothing is committed. A stop
/// that arrives while the commit's renames are under way waits for them (they do not await).
pub async fn run_until(
    pipeline: &Pipeline,
    request: &RunRequest,
    stop: impl Future<Output = &'static str>,
) -> RunOutcome {
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
        variables_sha256: request.variables_sha256.clone(),
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
        recovered: Vec::new(),
        recovered_by: None,
    };
    let mut pauses = Pauses::from_env();
    let run_dir =
        local_path("output_dir", &pipeline.output_dir).map(|d| d.join("runs").join(&run_id));
    // The run's own lock and first manifest: from here on, a kill leaves a trace the next run
    // finds.
    let alive = run_dir
        .as_ref()
        .map_err(clone_location_err)
        .and_then(|dir| {
            let lock = lock_run(dir, &Holder::me(&run_id, &manifest.started_at))?;
            record_places(pipeline, dir)?;
            write_manifest_at(&dir.join("manifest.json"), &manifest)?;
            Ok(lock)
        });
    let (result, committed) = match alive {
        Err(e) => (Err(e), None),
        Ok(_) => {
            let mut committed = None;
            let result = tokio::select! {
                r = execute(pipeline, request, &run_id, &mut manifest, &mut pauses, &mut committed) => r,
                signal = stop => Err(RunError::Interrupted { signal }),
            };
            (result, committed)
        }
    };
    manifest.status = match &result {
        Ok(()) => RunStatus::Succeeded,
        Err(RunError::ChecksFailed { .. } | RunError::BadRows { .. }) => RunStatus::ChecksFailed,
        Err(RunError::Interrupted { .. }) => RunStatus::Interrupted,
        Err(_) => RunStatus::Failed,
    };
    manifest.error = result.as_ref().err().map(ToString::to_string);
    manifest.finished_at = Some(now());
    let manifest_path = run_dir
        .as_ref()
        .map(|d| d.join("manifest.json"))
        .unwrap_or_default();
    let written = if manifest_path.as_os_str().is_empty() {
        Ok(())
    } else {
        write_manifest_at(&manifest_path, &manifest)
    };
    pauses.point("manifest written");
    // The manifest tables are derived from the JSON manifests; a run whose rollback failed
    // still holds the commit lock (leaked on purpose), so it leaves them to the next run.
    let rollback_failed = matches!(
        &result,
        Err(RunError::Sink(
            segflow_sinks::SinkError::RollbackFailed { .. }
        ))
    );
    if !rollback_failed && let Ok(dir) = &run_dir {
        let runs = dir.parent().unwrap_or(Path::new("."));
        if let Err(e) = index_runs(runs) {
            warn!("cannot rewrite the manifest tables ({e}); `segflow audit index` rebuilds them");
        }
    }
    // What is left to clean. After the commit point, only the replaced data; a failure there
    // (or a commit whose rollback failed) keeps `run.lock`, so the next run finds the journal.
    let keep_for_recovery = match (committed, &result) {
        // Committed, but the manifest still says `running`: the journal and `run.lock` stay,
        // and the next run's recovery completes the commit and marks the manifest succeeded.
        (Some(_), _) if written.is_err() => true,
        (Some(tx), _) => match tx.finish(&mut |label| pauses.point(label)) {
            Ok(()) => false,
            Err(e) => {
                warn!("cannot remove the data this run replaced ({e}); the next run will");
                true
            }
        },
        (None, Err(RunError::Sink(segflow_sinks::SinkError::RollbackFailed { .. }))) => true,
        (None, Err(_)) => {
            sweep_run(pipeline, &run_id);
            false
        }
        (None, Ok(())) => false,
    };
    if let (Ok(dir), false) = (&run_dir, keep_for_recovery) {
        let _ = std::fs::remove_file(dir.join("places.json"));
        let _ = std::fs::remove_file(run_lock_path(dir));
    }
    RunOutcome {
        manifest,
        manifest_path,
        // A run error is the more useful one to report; a manifest error only when the run
        // itself succeeded.
        error: result.err().or(written.err()),
    }
}

fn clone_location_err(e: &RunError) -> RunError {
    match e {
        RunError::UnsupportedLocation { what, location } => RunError::UnsupportedLocation {
            what,
            location: location.clone(),
        },
        other => RunError::Lock {
            path: String::new(),
            message: other.to_string(),
        },
    }
}

/// Writes a manifest via a temporary file, an fsync and a rename, so a reader never sees half
/// of one and a power loss never leaves an empty one.
pub(crate) fn write_manifest_at(path: &Path, manifest: &Manifest) -> Result<(), RunError> {
    segflow_sinks::replace_durably(path, manifest.to_json().as_bytes()).map_err(|e| {
        RunError::Manifest {
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        }
    })
}

/// Recovers the dead runs of `pipeline` (what a run does first), for `segflow recover`.
pub fn recover(pipeline: &Pipeline) -> Result<Vec<RecoveryRecord>, RunError> {
    let runs = local_path("output_dir", &pipeline.output_dir)?.join("runs");
    let _commit = lock_commit(&runs)?;
    let records = recover_dead_runs(pipeline, &runs, &unique_label("recover"), &now())?;
    if !records.is_empty() {
        segflow_audit::write_tables(&runs)?;
    }
    Ok(records)
}

/// Rewrites the manifest tables (`runs/manifest*.parquet`) from every manifest under `runs`,
/// under the commit lock, so two runs ending at once cannot interleave their rewrites (and
/// the one that rewrites last has read both manifests).
fn index_runs(runs: &Path) -> Result<segflow_audit::TablesWritten, RunError> {
    let _commit = lock_commit(runs)?;
    Ok(segflow_audit::write_tables(runs)?)
}

/// `segflow audit index`: rebuilds the manifest tables of an output directory on demand.
pub fn index_manifests(out_dir: &Path) -> Result<segflow_audit::TablesWritten, RunError> {
    let runs = out_dir.join("runs");
    if !runs.is_dir() {
        return Err(segflow_audit::AuditError::NoManifests { dir: runs }.into());
    }
    index_runs(&runs)
}

async fn execute(
    pipeline: &Pipeline,
    request: &RunRequest,
    run_id: &str,
    manifest: &mut Manifest,
    pauses: &mut Pauses,
    committed: &mut Option<Transaction>,
) -> Result<(), RunError> {
    let runs = local_path("output_dir", &pipeline.output_dir)?.join("runs");
    let holder = Holder::me(run_id, &manifest.started_at);
    let _period = lock_period(&runs, &request.period.to_string(), &holder)?;
    {
        let _commit = lock_commit(&runs)?;
        manifest.recovered = recover_dead_runs(pipeline, &runs, run_id, &now())?;
    }
    write_manifest_at(&runs.join(run_id).join("manifest.json"), manifest)?;
    pauses.point("period lock held");
    let (ctx, settings) = session(&pipeline.engine, run_id)?;
    let result = execute_in(&ctx, pipeline, request, run_id, manifest, pauses, committed).await;
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
    pauses: &mut Pauses,
    committed: &mut Option<Transaction>,
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
        let written = match output.materialized {
            Some((table, rows)) => {
                adopt(ctx, &table, name).map_err(step_err)?;
                rows
            }
            None => materialize(ctx, name, df).await.map_err(step_err)?,
        };
        // The step's own intermediate tables (a model's measures and scores) were read for
        // the last time just now.
        if let Ok(scratch) = Scratch::of(ctx) {
            for table in scratch.names_with_prefix(&crate::steps::frames::scratch(name, "")) {
                release(ctx, &table).map_err(step_err)?;
            }
        }
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
            schema: table
                .schema
                .as_deref()
                .map(segflow_audit::columns_of)
                .unwrap_or_default(),
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
            schema: table
                .schema
                .as_deref()
                .map(segflow_audit::columns_of)
                .unwrap_or_default(),
        });
        staged.push(table);
    }
    manifest
        .timings
        .insert("write".into(), started.elapsed().as_secs_f64());

    // Artifacts and registries are staged (under this run's temporary names) like tables.
    let mut replacements = Vec::new();
    for table in &staged {
        replacements.push(table.replacement()?);
    }
    let mut staged_models = Vec::new();
    for (index, outcome) in &fitted_models {
        // A fit is committed with the run even when its exact version is in place already
        // (nothing staged then).
        if outcome.pending.is_some() {
            replacements.extend(stage_artifact(outcome, run_id)?);
            staged_models.push(*index);
        }
    }
    for registry in &registries {
        replacements.push((registry.stage(run_id)?, registry.path.clone()));
    }
    pauses.point("everything staged");

    let started = Instant::now();
    let runs = local_path("output_dir", &pipeline.output_dir)?.join("runs");
    let commit_lock = lock_commit(&runs)?;
    for registry in &registries {
        registry.check_unchanged()?;
    }
    // What the run is about to commit, on disk before the journal: a recovery that completes
    // this commit after a kill then has the whole story to mark as succeeded.
    write_manifest_at(&runs.join(run_id).join("manifest.json"), manifest)?;
    let mut tx =
        Transaction::prepare(&runs.join(run_id).join("commit.json"), run_id, replacements)?;
    pauses.point("journal prepared");
    if let Err(e) = tx.commit(&mut |label| pauses.point(label)) {
        if matches!(e, segflow_sinks::SinkError::RollbackFailed { .. }) {
            // Half-applied and still ours: keep the commit lock until the process ends, so
            // no other run builds on it before a recovery (which needs this process gone).
            std::mem::forget(commit_lock);
        }
        return Err(e.into());
    }
    drop(commit_lock);
    for record in &mut manifest.outputs {
        record.committed = true;
    }
    for index in staged_models {
        if let Some(record) = manifest.models.get_mut(index) {
            record.committed = true;
        }
    }
    *committed = Some(tx);
    manifest
        .timings
        .insert("commit".into(), started.elapsed().as_secs_f64());
    Ok(())
}
