//! The engine: compiles a validated pipeline into DataFusion plans and runs it.
//!
//! A run is: extract (every source read with its declared schema, fingerprinted and counted),
//! transform (each step planned by DataFusion and materialized once, in DAG order, so every
//! consumer sees the same rows and the manifest gets exact counts), write (sorted, deterministic
//! Parquet into staging), commit (atomic per period). The manifest records all of it, for
//! failed runs too.

mod contracts;
mod error;
mod extract;
mod key_functions;
mod lifetimes;
mod locks;
mod materialize;
mod output;
mod pauses;
mod plan;
mod quarantine;
mod recovery;
mod report;
mod run;
mod session;
mod steps;
mod trend_report;
mod unchanged;
mod validate;

pub use error::{RunError, exit};
pub use plan::{PlanFile, PlanNode, PlanOutput, PlanReport, StepExplanation, explain, plan};
pub use report::report;
pub use run::{RunOutcome, RunRequest, index_manifests, recover, run, run_until};
pub use unchanged::{Freshness, freshness};
pub use validate::validate;
