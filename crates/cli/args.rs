//! Command-line arguments: clap parses the raw flags, then [`Command::from_raw`] turns them
//! into validated values (periods parsed, `--var` split), so the commands never see raw text.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use segflow_spec::{Period, PeriodRange};

#[derive(Debug, Parser)]
#[command(
    name = "segflow",
    version,
    about = "Customer segmentation pipelines: YAML in, partitioned Parquet and a run manifest out",
    after_help = "Exit codes: 0 ok, 1 data checks failed (audit verify: something does not match), 2 runtime error (also: another run of the period holds the lock), 64 usage error, 78 configuration error, 130/143 interrupted by SIGINT/SIGTERM."
)]
pub struct RawArgs {
    /// Log progress (-v: per step, -vv: DataFusion internals too). Logs go to stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: RawCommand,
}

#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    /// The pipeline YAML file.
    pub pipeline: PathBuf,

    /// Set a variable for `${NAME}` in the pipeline (repeatable); wins over the environment.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum RawCommand {
    /// Run a pipeline for one period and commit its outputs; or backfill a range of periods
    /// (`--period 2019..2025`), of one pipeline or of several (a yearly fit and the monthly
    /// pipeline applying it), skipping the periods whose inputs and pipeline are unchanged.
    Run {
        /// The pipeline YAML file(s). Several only with a range: each runs its own periods.
        #[arg(required = true, num_args = 1..)]
        pipelines: Vec<PathBuf>,
        /// Set a variable for `${NAME}` in the pipeline (repeatable); wins over the environment.
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// The period to compute: a year (2025) or a month (2025-11); or an inclusive range
        /// (2019..2025, 2024-01..2025-12) to backfill, in order, stopping at the first failure.
        #[arg(long)]
        period: String,
        /// In a backfill, run every period, also those unchanged since their last successful run.
        #[arg(long)]
        force: bool,
        /// Memory for DataFusion's operators (e.g. 4GB, 512MiB); beyond it they spill to disk.
        /// Wins over `engine.memory_limit`; default 60% of physical memory.
        #[arg(long, value_name = "SIZE")]
        memory_limit: Option<String>,
        /// Directory for spill files and the run's scratch tables; wins over `engine.spill_dir`.
        #[arg(long, value_name = "DIR")]
        spill_dir: Option<PathBuf>,
    },
    /// Check a pipeline file and report every error, reading no data.
    Validate {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Also check that the period fits the pipeline's grain.
        #[arg(long)]
        period: Option<String>,
    },
    /// Show the resolved DAG, input files and output locations, reading no data.
    Plan {
        #[command(flatten)]
        pipeline: PipelineArgs,
        #[arg(long)]
        period: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show each step's SQL and DataFusion plans.
    Explain {
        #[command(flatten)]
        pipeline: PipelineArgs,
        #[arg(long)]
        period: String,
        /// Only these steps (repeatable).
        #[arg(long = "step")]
        steps: Vec<String>,
    },
    /// Write the insight report (self-contained HTML) of a period that has been run.
    Report {
        #[command(flatten)]
        pipeline: PipelineArgs,
        #[arg(long)]
        period: String,
    },
    /// Finish or roll back what runs that died (kill -9, crash) left, and remove their
    /// leftovers — what every run does first, on its own.
    Recover {
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
    /// Generate seeded demo or benchmark data (CRM exports and a geodemographic table).
    Generate {
        /// Directory to write `crm/` and `reference/` into.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 5_000)]
        customers: usize,
        /// Average orders per customer over the whole history.
        #[arg(long, default_value_t = 10.0)]
        orders_per_customer: f64,
        #[arg(long, default_value_t = 2021)]
        first_year: i32,
        #[arg(long, default_value_t = 2025)]
        last_year: i32,
        #[arg(long, default_value_t = 400)]
        postal_areas: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = DataFormat::Csv)]
        format: DataFormat,
        /// Plant a known movement for trend checks: every N-th customer (see --lapse-every)
        /// places no order from January 1 of this year on.
        #[arg(long, value_name = "YEAR")]
        lapse_from: Option<i32>,
        /// With --lapse-from: which customers lapse (customer numbers divisible by N).
        #[arg(long, value_name = "N", default_value_t = 10, requires = "lapse_from")]
        lapse_every: usize,
    },
    /// Generate the bundled demo data and run the shipped yearly pipeline on it.
    Demo {
        /// Working directory for the demo's data and output.
        #[arg(long, default_value = "segflow-demo")]
        dir: PathBuf,
        #[arg(long, default_value = "2025")]
        period: String,
    },
    /// Check committed data against the run manifests, show a period's lineage, or rebuild
    /// the manifest tables.
    Audit {
        #[command(subcommand)]
        command: RawAudit,
    },
}

#[derive(Debug, Subcommand)]
pub enum RawAudit {
    /// Re-read every committed output file, model artifact and input the latest successful
    /// manifests name; exit 1 naming each file that no longer matches.
    #[command(
        after_help = "Exit codes: 0 everything matches, 1 something does not match (each problem is printed), 2 no manifests to check or the directory cannot be read, 64 usage error."
    )]
    Verify {
        /// The pipeline's output directory (holding `runs/`).
        out_dir: PathBuf,
        /// Only this period (a year, 2025, or a month, 2025-11).
        #[arg(long)]
        period: Option<String>,
    },
    /// Print the lineage of a period: runs, pipeline, inputs, model artifacts, checks, outputs.
    Show {
        out_dir: PathBuf,
        #[arg(long)]
        period: String,
        /// Only this pipeline (by its `pipeline:` name).
        #[arg(long)]
        pipeline: Option<String>,
    },
    /// Rebuild `runs/manifest*.parquet` from the JSON manifests.
    Index { out_dir: PathBuf },
}

/// An `audit` subcommand, validated.
#[derive(Debug, Clone)]
pub enum AuditCommand {
    Verify {
        out_dir: PathBuf,
        period: Option<Period>,
    },
    Show {
        out_dir: PathBuf,
        period: Period,
        pipeline: Option<String>,
    },
    Index {
        out_dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DataFormat {
    Csv,
    Parquet,
}

/// A pipeline with its variables, ready to load.
#[derive(Debug, Clone)]
pub struct PipelineRef {
    pub path: PathBuf,
    pub vars: BTreeMap<String, String>,
}

/// Engine settings given on the command line, which win over the pipeline's `engine:`.
#[derive(Debug, Clone, Default)]
pub struct EngineOverrides {
    pub memory_limit: Option<u64>,
    pub spill_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub enum Command {
    Run {
        pipeline: PipelineRef,
        period: Period,
        engine: EngineOverrides,
    },
    Backfill {
        pipelines: Vec<PipelineRef>,
        range: PeriodRange,
        engine: EngineOverrides,
        force: bool,
    },
    Validate {
        pipeline: PipelineRef,
        period: Option<Period>,
    },
    Plan {
        pipeline: PipelineRef,
        period: Period,
        json: bool,
    },
    Explain {
        pipeline: PipelineRef,
        period: Period,
        steps: Vec<String>,
    },
    Report {
        pipeline: PipelineRef,
        period: Period,
    },
    Recover {
        pipeline: PipelineRef,
    },
    Generate {
        out: PathBuf,
        scale: segflow_datagen::Scale,
        format: segflow_datagen::FileFormat,
    },
    Demo {
        dir: PathBuf,
        period: Period,
    },
    Audit(AuditCommand),
}

fn period(text: &str) -> Result<Period, String> {
    text.parse::<Period>().map_err(|e| format!("--period: {e}"))
}

fn pipeline(raw: PipelineArgs) -> Result<PipelineRef, String> {
    let mut vars = BTreeMap::new();
    for item in raw.vars {
        let Some((name, value)) = item.split_once('=') else {
            return Err(format!("--var `{item}`: expected NAME=VALUE"));
        };
        if name.is_empty() {
            return Err(format!("--var `{item}`: the name is empty"));
        }
        vars.insert(name.to_string(), value.to_string());
    }
    Ok(PipelineRef {
        path: raw.pipeline,
        vars,
    })
}

impl Command {
    /// Validates raw arguments; the error is a usage message (exit code 64).
    pub fn from_raw(raw: RawCommand) -> Result<Self, String> {
        Ok(match raw {
            RawCommand::Run {
                pipelines,
                vars,
                period: t,
                force,
                memory_limit,
                spill_dir,
            } => {
                let engine = EngineOverrides {
                    memory_limit: memory_limit
                        .map(|m| {
                            segflow_spec::parse_bytes(&m).ok_or_else(|| {
                                format!(
                                    "--memory-limit `{m}`: expected a size like 4GB, 512MiB or 2GiB"
                                )
                            })
                        })
                        .transpose()?,
                    spill_dir,
                };
                let range = t
                    .parse::<PeriodRange>()
                    .map_err(|e| format!("--period: {e}"))?;
                let mut refs = Vec::with_capacity(pipelines.len());
                for path in pipelines {
                    refs.push(pipeline(PipelineArgs {
                        pipeline: path,
                        vars: vars.clone(),
                    })?);
                }
                match (refs.pop(), refs.is_empty() && range.is_single()) {
                    (Some(only), true) => Command::Run {
                        pipeline: only,
                        period: range.first,
                        engine,
                    },
                    (last, _) => {
                        refs.extend(last);
                        Command::Backfill {
                            pipelines: refs,
                            range,
                            engine,
                            force,
                        }
                    }
                }
            }
            RawCommand::Validate {
                pipeline: p,
                period: t,
            } => Command::Validate {
                pipeline: pipeline(p)?,
                period: t.as_deref().map(period).transpose()?,
            },
            RawCommand::Plan {
                pipeline: p,
                period: t,
                json,
            } => Command::Plan {
                pipeline: pipeline(p)?,
                period: period(&t)?,
                json,
            },
            RawCommand::Explain {
                pipeline: p,
                period: t,
                steps,
            } => Command::Explain {
                pipeline: pipeline(p)?,
                period: period(&t)?,
                steps,
            },
            RawCommand::Report {
                pipeline: p,
                period: t,
            } => Command::Report {
                pipeline: pipeline(p)?,
                period: period(&t)?,
            },
            RawCommand::Recover { pipeline: p } => Command::Recover {
                pipeline: pipeline(p)?,
            },
            RawCommand::Generate {
                out,
                customers,
                orders_per_customer,
                first_year,
                last_year,
                postal_areas,
                seed,
                format,
                lapse_from,
                lapse_every,
            } => {
                if !(orders_per_customer > 0.0 && orders_per_customer.is_finite()) {
                    return Err("--orders-per-customer must be a positive number".into());
                }
                if lapse_every == 0 {
                    return Err("--lapse-every must be at least 1".into());
                }
                Command::Generate {
                    out,
                    scale: segflow_datagen::Scale {
                        customers,
                        orders_per_customer,
                        first_year,
                        last_year,
                        postal_areas,
                        seed,
                        lapse: lapse_from.map(|from_year| segflow_datagen::Lapse {
                            from_year,
                            every: lapse_every,
                        }),
                    },
                    format: match format {
                        DataFormat::Csv => segflow_datagen::FileFormat::Csv,
                        DataFormat::Parquet => segflow_datagen::FileFormat::Parquet,
                    },
                }
            }
            RawCommand::Demo { dir, period: t } => Command::Demo {
                dir,
                period: period(&t)?,
            },
            RawCommand::Audit { command } => Command::Audit(AuditCommand::from_raw(command)?),
        })
    }
}

impl AuditCommand {
    fn from_raw(raw: RawAudit) -> Result<Self, String> {
        Ok(match raw {
            RawAudit::Verify { out_dir, period: p } => AuditCommand::Verify {
                out_dir,
                period: p.as_deref().map(period).transpose()?,
            },
            RawAudit::Show {
                out_dir,
                period: p,
                pipeline,
            } => AuditCommand::Show {
                out_dir,
                period: period(&p)?,
                pipeline,
            },
            RawAudit::Index { out_dir } => AuditCommand::Index { out_dir },
        })
    }
}
