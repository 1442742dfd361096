//! End-to-end tests: real pipelines on small data, run through the real `segflow` binary, with
//! expected values worked out by hand or by another tool (DuckDB, pyarrow).
//!
//! One test binary on purpose: every binary links DataFusion.

mod audit;
mod backfill;
mod bad_rows;
mod clustering;
mod clv;
mod common;
mod config_errors;
mod contracts;
mod engine;
mod enrich;
mod extract;
mod faults;
mod identity;
mod model_artifacts;
mod models;
mod outputs;
mod privacy;
mod profiles;
mod reference;
mod report;
mod sources;
mod sql_safety;
mod trend_report;
mod trends;
mod validation;
