//! The run manifest: one JSON document per run, successful or not, that lets an auditor check
//! what was computed from what — every input file with its checksum, rows in and out of every
//! step, every output file with its checksum, the model definitions used, timings and status.
//!
//! Written to `<output_dir>/runs/<run_id>/manifest.json`. Field names are part of segflow's
//! interface: add fields, never rename them.

use std::collections::BTreeMap;

mod history;

pub use history::{OutputRuns, RunHistory};

use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning.
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub run_id: String,
    pub pipeline: PipelineInfo,
    pub segflow_version: String,
    /// Command-line arguments as given (values of `--var` included; secrets belong in the
    /// environment, which is not recorded).
    pub arguments: Vec<String>,
    /// SHA-256 of the user variables the pipeline referenced and their values (`NAME=value`
    /// lines, sorted; an unset one as `NAME` alone), from `--var` or the environment. A digest,
    /// not the values: environment values may be secrets. A backfill reruns a period when it
    /// differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables_sha256: Option<String>,
    pub period: PeriodInfo,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: RunStatus,
    /// Set when the run failed: the error as shown to the user.
    pub error: Option<String>,
    pub inputs: Vec<InputRecord>,
    pub steps: Vec<StepRecord>,
    pub outputs: Vec<OutputRecord>,
    pub checks: Vec<CheckRecord>,
    /// Model artifacts this run fitted (written at commit) or applied.
    #[serde(default)]
    pub models: Vec<ModelRecord>,
    /// Seconds spent per phase (`extract`, `transform`, `write`, `commit`).
    pub timings: BTreeMap<String, f64>,
    /// How the engine was sized, and what it spilled.
    #[serde(default)]
    pub engine: Option<EngineRecord>,
    /// Runs that had died (killed, crashed) and that this run recovered before starting:
    /// their commits finished or rolled back, their leftovers removed.
    #[serde(default)]
    pub recovered: Vec<RecoveryRecord>,
    /// Set on a run that died, by the run that recovered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_by: Option<String>,
}

/// What recovering one dead run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryRecord {
    pub run_id: String,
    /// `rolled_back` (it died during its commit, before the commit point: the old data was
    /// restored), `completed` (it died after its commit point: its data stands, the replaced
    /// data was removed) or `abandoned` (it died before committing anything).
    pub action: String,
    /// Staging, replaced and temporary files and directories removed.
    pub removed: Vec<String>,
    pub bytes_removed: u64,
}

/// The memory the run was allowed and what it had to put on disk to stay within it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineRecord {
    /// Bytes of DataFusion's memory pool.
    pub memory_limit: u64,
    pub target_partitions: usize,
    /// Bytes sorts, joins and aggregations wrote to the spill directory.
    pub spilled_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineInfo {
    pub name: String,
    pub file: String,
    /// SHA-256 of the pipeline file's bytes.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodInfo {
    pub label: String,
    pub grain: String,
    /// First day of the period.
    pub start: String,
    /// First day after the period.
    pub end: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    /// A data check with severity `error` failed; nothing was committed.
    ChecksFailed,
    Failed,
    /// Stopped by SIGINT or SIGTERM; its staging was discarded, nothing was committed.
    Interrupted,
    /// The run died (killed, crashed, power loss) and a later run found it: nothing of it
    /// was committed (`recovered_by` names that later run).
    Abandoned,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    pub source: String,
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// Records read from the file (accepted + rejected).
    pub rows: u64,
    /// Records set aside (quarantined) or refused (`on_bad_row: fail`).
    pub rows_rejected: u64,
    /// Text encoding as declared or detected (`utf-8`, `windows-1252`…; the format for binary files).
    pub encoding: String,
    /// Set when the file was not read to the end: why it was refused whole, or that the
    /// source stopped at another file first. Its `sha256` is then empty and its counts are 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// One source or step. For sources `rows_read = rows_written + rows_rejected` always holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    /// `source`, `sql`, `rfm`, `pareto`.
    pub kind: String,
    /// Rows of each table the step read (for sources: the files).
    pub inputs: BTreeMap<String, u64>,
    pub rows_read: u64,
    pub rows_written: u64,
    pub rows_rejected: u64,
    pub seconds: f64,
    /// The definitions a model used (reference date, bins, method, tier bounds, rules…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    pub output: String,
    pub from: String,
    /// Root directory of the table.
    pub path: String,
    pub rows: u64,
    pub files: Vec<OutputFile>,
    pub committed: bool,
    /// The columns of the output's files as Arrow reads them back (partition columns live in
    /// directory names and are not among them), so `segflow audit verify` can tell a file
    /// whose schema changed. Empty in manifests written before segflow recorded it.
    #[serde(default)]
    pub schema: Vec<ColumnRecord>,
}

/// One column of an output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnRecord {
    pub name: String,
    /// The Arrow data type as Arrow prints it: `Utf8`, `Int64`, `Decimal128(12, 2)`, `Date32`.
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Relative to the output's root, e.g. `period=2025/part-00000.parquet`.
    pub path: String,
    pub rows: u64,
    pub size: u64,
    pub sha256: String,
}

/// One model step's artifact: fitted by this run or read by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub step: String,
    /// Model kind: `rfm`, `pareto`, `kmeans`, …
    pub model: String,
    /// The model's name in the artifact store.
    pub name: String,
    /// `fit` or `apply`.
    pub mode: String,
    /// The period the artifact was fitted on.
    pub artifact_period: String,
    pub path: String,
    pub sha256: String,
    /// For `fit`: whether the artifact was written (only committed runs write one).
    pub committed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRecord {
    pub name: String,
    pub target: String,
    pub severity: String,
    pub passed: bool,
    pub failing_rows: u64,
    /// A few failing keys (sorted), when the check has keys to show.
    #[serde(default)]
    pub examples: Vec<String>,
    pub message: String,
}

impl Manifest {
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and numbers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
