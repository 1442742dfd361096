//! The subcommands, printing for people on stdout and errors on stderr.

use std::path::Path;

use segflow_engine::{PlanReport, RunError, RunRequest, exit};
use segflow_spec::{Period, Pipeline, Variables};
use sha2::{Digest, Sha256};

use crate::Exit;
use crate::args::{Command, EngineOverrides, PipelineRef};

/// Loads and validates a pipeline — the file, then every step planned against empty tables of
/// the declared schemas — printing every configuration error on failure. Every command that
/// takes a pipeline goes through here, so `run`, `plan` and `explain` refuse what `validate`
/// reports before they read any data.
pub(crate) async fn load(
    pipeline: &PipelineRef,
    period: Option<Period>,
) -> Result<(Pipeline, String), Exit> {
    load_with_variables(pipeline, period)
        .await
        .map(|loaded| (loaded.pipeline, loaded.sha256))
}

/// A loaded pipeline with the digests a run records (and a backfill compares).
pub(crate) struct Loaded {
    pub pipeline: Pipeline,
    /// SHA-256 of the pipeline file's bytes.
    pub sha256: String,
    /// SHA-256 of the user variables the pipeline referenced, with their values.
    pub variables_sha256: String,
}

/// [`load`], also returning the digest of the variables the pipeline used.
pub(crate) async fn load_with_variables(
    pipeline: &PipelineRef,
    period: Option<Period>,
) -> Result<Loaded, Exit> {
    let loaded = load_spec(pipeline, period)?;
    let p = &loaded.pipeline;
    let diagnostics = segflow_engine::validate(p, period).await;
    if !diagnostics.is_empty() {
        let errors = segflow_spec::SpecErrors {
            file: pipeline.path.clone(),
            diagnostics,
        };
        eprintln!("{errors}");
        return Err(Exit(exit::CONFIG));
    }
    Ok(loaded)
}

/// The pipeline file alone, for `recover`: finishing what a dead run left must work even when
/// the pipeline has been edited into one whose steps no longer plan.
pub(crate) fn load_spec(pipeline: &PipelineRef, period: Option<Period>) -> Result<Loaded, Exit> {
    let bytes = match std::fs::read(&pipeline.path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "error: cannot read pipeline `{}`: {e}",
                pipeline.path.display()
            );
            return Err(Exit(exit::CONFIG));
        }
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let vars = Variables::from_env(period, pipeline.vars.clone());
    match segflow_spec::load_bytes(&bytes, &pipeline.path, &vars) {
        Ok(p) => Ok(Loaded {
            pipeline: p,
            sha256,
            variables_sha256: variables_sha256(&vars.used()),
        }),
        Err(errors) => {
            eprintln!("{errors}");
            Err(Exit(exit::CONFIG))
        }
    }
}

/// The digest the manifest records for the variables a pipeline used: SHA-256 of their JSON
/// (a sorted map of name to value, `null` for unset), so no value is written anywhere.
fn variables_sha256(used: &std::collections::BTreeMap<String, Option<String>>) -> String {
    let json = serde_json::to_string(used).unwrap_or_default();
    hex::encode(Sha256::digest(json.as_bytes()))
}

pub(crate) async fn dispatch(command: Command, arguments: Vec<String>) -> Exit {
    let result = match command {
        Command::Run {
            pipeline,
            period,
            engine,
        } => run(&pipeline, period, &engine, arguments).await,
        Command::Backfill {
            pipelines,
            range,
            engine,
            force,
        } => Ok(crate::backfill::backfill(&pipelines, range, &engine, force, arguments).await),
        Command::Validate { pipeline, period } => load(&pipeline, period).await.map(|(p, _)| {
            println!(
                "{}: pipeline `{}` is valid ({} sources, {} steps, {} outputs)",
                pipeline.path.display(),
                p.name,
                p.sources.len(),
                p.steps.len(),
                p.outputs.len()
            );
            Exit(exit::OK)
        }),
        Command::Plan {
            pipeline,
            period,
            json,
        } => plan(&pipeline, period, json).await,
        Command::Explain {
            pipeline,
            period,
            steps,
        } => explain(&pipeline, period, &steps).await,
        Command::Report { pipeline, period } => report(&pipeline, period).await,
        Command::Recover { pipeline } => recover(&pipeline),
        Command::Generate { out, scale, format } => generate(&out, &scale, format),
        Command::Demo { dir, period } => crate::demo::demo(&dir, period, arguments).await,
        Command::Audit(command) => Ok(crate::audit::audit(command)),
    };
    result.unwrap_or_else(|exit| exit)
}

pub(crate) async fn run(
    pipeline: &PipelineRef,
    period: Period,
    engine: &EngineOverrides,
    arguments: Vec<String>,
) -> Result<Exit, Exit> {
    let loaded = load_with_variables(pipeline, Some(period)).await?;
    let (exit, _) = run_loaded(loaded, period, engine, arguments, stop_signal()).await;
    Ok(exit)
}

/// Runs a loaded pipeline for `period`, printing the outcome; returns the exit code and the
/// run's id.
pub(crate) async fn run_loaded(
    loaded: Loaded,
    period: Period,
    engine: &EngineOverrides,
    arguments: Vec<String>,
    stop: impl Future<Output = &'static str>,
) -> (Exit, String) {
    let mut p = loaded.pipeline;
    if let Some(limit) = engine.memory_limit {
        p.engine.memory_limit = Some(limit);
    }
    if let Some(dir) = &engine.spill_dir {
        p.engine.spill_dir = Some(dir.display().to_string());
    }
    let request = RunRequest {
        period,
        pipeline_sha256: loaded.sha256,
        arguments,
        variables_sha256: Some(loaded.variables_sha256),
    };
    let outcome = segflow_engine::run_until(&p, &request, stop).await;
    let m = &outcome.manifest;
    let seconds: f64 = m.timings.values().sum();
    match &outcome.error {
        None => {
            println!(
                "{} {}: succeeded in {seconds:.2} s (run {})",
                m.pipeline.name, m.period.label, m.run_id
            );
            for step in &m.steps {
                println!(
                    "  {:<24} {:>10} rows  {:<7} {:.2} s",
                    step.name, step.rows_written, step.kind, step.seconds
                );
            }
            println!("outputs:");
            for o in &m.outputs {
                println!(
                    "  {:<24} {:>10} rows  {}/period={}/",
                    o.output, o.rows, o.path, m.period.label
                );
            }
        }
        Some(e) => {
            eprintln!("error: {e}");
        }
    }
    println!("manifest: {}", outcome.manifest_path.display());
    (
        Exit(outcome.error.as_ref().map_or(exit::OK, RunError::exit_code)),
        m.run_id.clone(),
    )
}

/// Completes with the name of the first SIGINT or SIGTERM; never, if they cannot be caught.
/// The handlers are installed here, before the run starts, so a signal that arrives while
/// the run is busy is kept for it instead of killing the process.
pub(crate) fn stop_signal() -> impl Future<Output = &'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        let (Ok(mut int), Ok(mut term)) = handlers else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
}

fn recover(pipeline: &PipelineRef) -> Result<Exit, Exit> {
    let p = load_spec(pipeline, None)?.pipeline;
    match segflow_engine::recover(&p) {
        Ok(records) if records.is_empty() => {
            println!("{}: no dead runs to recover", p.name);
            Ok(Exit(exit::OK))
        }
        Ok(records) => {
            for r in &records {
                println!(
                    "run {}: {} ({} leftovers removed, {} bytes)",
                    r.run_id,
                    r.action.replace('_', " "),
                    r.removed.len(),
                    r.bytes_removed
                );
            }
            Ok(Exit(exit::OK))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(Exit(e.exit_code()))
        }
    }
}

fn print_plan(report: &PlanReport) {
    println!(
        "pipeline {} ({}) for period {} [{} .. {})",
        report.pipeline, report.file, report.period, report.period_start, report.period_end
    );
    println!("steps, in execution order:");
    for node in &report.nodes {
        let inputs = if node.inputs.is_empty() {
            String::new()
        } else {
            format!(" <- {}", node.inputs.join(", "))
        };
        println!("  {:<24} {}{inputs}", node.name, node.kind);
        if let Some(location) = &node.location {
            println!("      {location}");
        }
        for f in &node.files {
            println!("      {} ({} bytes)", f.url, f.size);
        }
    }
    println!("outputs:");
    for o in &report.outputs {
        println!(
            "  {:<24} from {:<20} replaces {}",
            o.name, o.from, o.replaces
        );
    }
    for p in &report.problems {
        println!("problem: {p}");
    }
}

async fn plan(pipeline: &PipelineRef, period: Period, json: bool) -> Result<Exit, Exit> {
    let (p, _) = load(pipeline, Some(period)).await?;
    let report = segflow_engine::plan(&p, period).await.map_err(|e| {
        eprintln!("error: {e}");
        Exit(e.exit_code())
    })?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_plan(&report);
    }
    Ok(Exit(if report.problems.is_empty() {
        exit::OK
    } else {
        exit::RUNTIME
    }))
}

async fn explain(pipeline: &PipelineRef, period: Period, steps: &[String]) -> Result<Exit, Exit> {
    let (p, _) = load(pipeline, Some(period)).await?;
    let explanations = segflow_engine::explain(&p, period, steps)
        .await
        .map_err(|e| {
            eprintln!("error: {e}");
            Exit(e.exit_code())
        })?;
    for e in explanations {
        println!("== step {} ==\n{}\n\n{}\n", e.step, e.sql.trim(), e.plan);
    }
    Ok(Exit(exit::OK))
}

pub(crate) async fn report(pipeline: &PipelineRef, period: Period) -> Result<Exit, Exit> {
    let (p, _) = load(pipeline, Some(period)).await?;
    let path = segflow_engine::report(&p, period).await.map_err(|e| {
        eprintln!("error: {e}");
        Exit(e.exit_code())
    })?;
    println!("report: {}", path.display());
    Ok(Exit(exit::OK))
}

fn generate(
    out: &Path,
    scale: &segflow_datagen::Scale,
    format: segflow_datagen::FileFormat,
) -> Result<Exit, Exit> {
    let files = segflow_datagen::generate(out, scale, format).map_err(|e| {
        eprintln!("error: {e}");
        Exit(exit::RUNTIME)
    })?;
    println!(
        "customers:        {} rows  {}",
        files.customer_rows,
        files.customers.display()
    );
    println!(
        "orders:           {} rows  {}",
        files.order_rows,
        files.orders.display()
    );
    println!(
        "geodemographics:  {} rows  {}",
        scale.postal_areas,
        files.geodemographics.display()
    );
    Ok(Exit(exit::OK))
}
