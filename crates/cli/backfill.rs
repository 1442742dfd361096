//! `segflow run PIPELINE... --period FIRST..LAST`: the periods of each pipeline within the
//! range, in order (a yearly fit before the months applying it), each skipped when nothing
//! that decides its result changed since its latest successful run, stopping at the first
//! failure; then what ran, was skipped, failed and was not run.

use segflow_engine::{Freshness, exit};
use segflow_spec::{Period, PeriodRange, backfill_order};
use tokio::sync::watch;

use crate::Exit;
use crate::args::{EngineOverrides, PipelineRef};
use crate::commands::{load_spec, load_with_variables, run_loaded, stop_signal};

/// What became of one (pipeline, period) of a backfill.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    Ran { run_id: String },
    Skipped { run_id: String },
    Failed { code: i32, run_id: Option<String> },
    NotRun,
}

impl Fate {
    fn word(&self) -> &'static str {
        match self {
            Fate::Ran { .. } => "ran",
            Fate::Skipped { .. } => "skipped",
            Fate::Failed { .. } => "failed",
            Fate::NotRun => "not run",
        }
    }

    fn detail(&self) -> String {
        match self {
            Fate::Ran { run_id } => format!("run {run_id}"),
            Fate::Skipped { run_id } => format!("unchanged since run {run_id}"),
            Fate::Failed {
                code,
                run_id: Some(id),
            } => format!("exit code {code}, run {id}"),
            Fate::Failed { code, run_id: None } => format!("exit code {code}, before a run began"),
            Fate::NotRun => "stopped before it".to_string(),
        }
    }
}

pub(crate) async fn backfill(
    pipelines: &[PipelineRef],
    range: PeriodRange,
    engine: &EngineOverrides,
    force: bool,
    arguments: Vec<String>,
) -> Exit {
    // Each pipeline's grain (and name) first: a configuration error stops the backfill before
    // anything runs.
    let mut grains = Vec::with_capacity(pipelines.len());
    let mut names = Vec::with_capacity(pipelines.len());
    for pipeline in pipelines {
        match load_spec(pipeline, None) {
            Ok(loaded) => {
                grains.push(loaded.pipeline.grain);
                names.push(loaded.pipeline.name);
            }
            Err(exit) => return exit,
        }
    }
    let order = backfill_order(&grains, &range);
    if order.is_empty() {
        eprintln!(
            "error: --period {range}: no {} lies wholly within the range",
            grains
                .iter()
                .map(|g| g.to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        );
        return Exit(exit::USAGE);
    }
    // One signal watcher for the whole backfill: a Ctrl-C between two periods is not lost,
    // and stops the rest.
    let (stopped_tx, stopped) = watch::channel(None::<&'static str>);
    let watcher = tokio::spawn(async move {
        let signal = stop_signal().await;
        let _ = stopped_tx.send(Some(signal));
    });
    let mut fates = vec![Fate::NotRun; order.len()];
    let mut code = exit::OK;
    for (slot, &(index, period)) in order.iter().enumerate() {
        let (pipeline, name) = (&pipelines[index], &names[index]);
        if let Some(signal) = *stopped.borrow() {
            code = if signal == "SIGINT" { 130 } else { 143 };
            fates[slot] = Fate::Failed { code, run_id: None };
            break;
        }
        let fate = one_period(
            pipeline,
            name,
            period,
            engine,
            force,
            arguments.clone(),
            stopped.clone(),
        )
        .await;
        let failed = match &fate {
            Fate::Failed { code: c, .. } => Some(*c),
            _ => None,
        };
        fates[slot] = fate;
        if let Some(c) = failed {
            code = c;
            break;
        }
    }
    watcher.abort();
    print_summary(&range, &order, &names, &fates);
    Exit(code)
}

async fn one_period(
    pipeline: &PipelineRef,
    name: &str,
    period: Period,
    engine: &EngineOverrides,
    force: bool,
    arguments: Vec<String>,
    mut stopped: watch::Receiver<Option<&'static str>>,
) -> Fate {
    let loaded = match load_with_variables(pipeline, Some(period)).await {
        Ok(loaded) => loaded,
        Err(Exit(code)) => return Fate::Failed { code, run_id: None },
    };
    if !force {
        let request = segflow_engine::RunRequest {
            period,
            pipeline_sha256: loaded.sha256.clone(),
            arguments: Vec::new(),
            variables_sha256: Some(loaded.variables_sha256.clone()),
        };
        match segflow_engine::freshness(&loaded.pipeline, &request).await {
            Ok(Freshness::Unchanged { run_id }) => {
                println!("{name} {period}: skipped, unchanged since run {run_id}");
                return Fate::Skipped { run_id };
            }
            Ok(Freshness::Changed { reason }) => println!("{name} {period}: running ({reason})"),
            // Whatever stops the comparison (a glob matching nothing) stops the run too, which
            // reports it properly.
            Err(e) => println!("{name} {period}: running (cannot compare with the last run: {e})"),
        }
    } else {
        println!("{name} {period}: running (--force)");
    }
    let stop = async move {
        match stopped.wait_for(Option::is_some).await {
            Ok(signal) => signal.unwrap_or("SIGTERM"),
            // The watcher ended without a signal: never stop.
            Err(_) => std::future::pending().await,
        }
    };
    let (Exit(code), run_id) = run_loaded(loaded, period, engine, arguments, stop).await;
    if code == exit::OK {
        Fate::Ran { run_id }
    } else {
        Fate::Failed {
            code,
            run_id: Some(run_id),
        }
    }
}

fn print_summary(range: &PeriodRange, order: &[(usize, Period)], names: &[String], fates: &[Fate]) {
    let count = |word: &str| fates.iter().filter(|f| f.word() == word).count();
    println!(
        "backfill {range}: {} period(s): {} ran, {} skipped, {} failed, {} not run",
        fates.len(),
        count("ran"),
        count("skipped"),
        count("failed"),
        count("not run")
    );
    let width = names.iter().map(String::len).max().unwrap_or(0);
    for (&(index, period), fate) in order.iter().zip(fates) {
        println!(
            "  {:<width$}  {:<7}  {:<7}  {}",
            names[index],
            period.to_string(),
            fate.word(),
            fate.detail()
        );
    }
}
