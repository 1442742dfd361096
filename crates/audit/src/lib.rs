//! The auditor's side of segflow: everything here reads what runs left behind — the JSON run
//! manifests under `<out>/runs/`, the committed partitions, model artifacts and input files
//! they name — and never changes committed data.
//!
//! - [`verify`]: does every file the latest successful manifests name still have the bytes,
//!   rows and schema they recorded, and is every committed partition accounted for?
//! - [`show`]: the lineage of one period, for people.
//! - [`write_tables`]: all manifests as Parquet tables (one row per run, plus child tables
//!   joined on `run_id`) for DuckDB or Power BI.
//!
//! Manifests are read through [`segflow_manifest::RunHistory`], the one reader every part of
//! segflow shares, so "the latest successful run of a period" means the same everywhere.

mod error;
mod files;
mod show;
mod tables;
mod verify;

pub use error::AuditError;
pub use files::{columns_of, local_path};
pub use show::show;
pub use tables::{TABLES, TablesWritten, write_tables};
pub use verify::{Verification, verify};
