//! Segmentation models, compiled to SQL that DataFusion plans and runs in batches.
//!
//! A model turns its typed spec (from `segflow-spec`) and the name of its input table into one
//! `SELECT`. SQL keeps the models readable next to their definitions in DESIGN.md §3 and lets
//! `segflow explain` show the real plans. Models that need an optimizer (clustering, BG/NBD and
//! Gamma-Gamma) fit in Rust on aggregated columns ([`cluster`], [`clv`]); their parameters go
//! into the versioned model artifact either way.

pub mod artifact;
pub mod cluster;
pub mod clv;
pub mod lookalike;
pub mod matrix;
mod parallel;
pub mod pareto;
pub mod potential;
pub mod rfm;
pub mod rules;
mod sql;

pub use artifact::{Artifact, ArtifactError};
pub use sql::{quote_ident, quote_literal};
