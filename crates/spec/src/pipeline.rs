//! The typed pipeline: what the YAML means, after variables, defaults and validation.
//!
//! Execution code only ever sees these structs, never YAML.

use std::path::PathBuf;

use crate::diagnostic::{Location, Spanned};
use crate::models::{
    ArtifactRef, ClusterSpec, ClvSpec, EnrichSpec, LookalikeSpec, MatrixSpec, ModelsOptions,
    ParetoSpec, PotentialSpec, ProfileSpec, ReportSpec, RfmSpec, RulesSpec, TrendReportSpec,
    VintageSpec,
};
use crate::period::Grain;

/// A validated pipeline, ready to be compiled into DataFusion plans.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub description: Option<String>,
    pub grain: Grain,
    /// Root for outputs without an explicit `path` and for run manifests.
    pub output_dir: String,
    /// Where model artifacts live and whether this pipeline fits or applies them.
    pub models: ModelsOptions,
    /// What `segflow report` shows.
    pub report: Option<ReportSpec>,
    /// What `segflow report` shows for a trend pipeline (`report: { trends: … }`); a report
    /// block has this form or the segment one, never both.
    pub trend_report: Option<TrendReportSpec>,
    pub engine: EngineOptions,
    /// Environment variable holding the key for `pii: hash` columns (never the key itself).
    pub pii_key_env: Option<String>,
    pub sources: Vec<Source>,
    pub steps: Vec<Step>,
    pub outputs: Vec<Output>,
    /// Names of sources and steps in an order where every node comes after what it reads.
    pub execution_order: Vec<String>,
    /// The pipeline file, for messages and the manifest.
    pub file: PathBuf,
    /// Where each key was written, by key path (`steps[2].date`, `outputs.x.order_by[0]`), for
    /// checks made after loading that must still point at the line.
    pub key_locations: std::collections::BTreeMap<String, Location>,
}

impl Pipeline {
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name.value == name)
    }

    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name.value == name)
    }

    /// Where the key at `key_path` was written, if it was.
    pub fn key_location(&self, key_path: &str) -> Option<Location> {
        self.key_locations.get(key_path).copied()
    }
}

/// DataFusion session settings a pipeline may pin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Parallelism; defaults to the number of cores.
    pub target_partitions: Option<usize>,
    /// Memory pool size in bytes; beyond it, operators that can spill do. `None`: a share of
    /// the machine's memory (see the engine's session).
    pub memory_limit: Option<u64>,
    /// Where sorts, joins and aggregations spill and where the run keeps its scratch tables;
    /// `None`: the system's temporary directory.
    pub spill_dir: Option<String>,
}

/// File format of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Parquet,
    JsonLines,
    /// Excel workbook; one sheet is read like a CSV export with a header row.
    Xlsx,
}

impl Format {
    pub fn name(&self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
            Format::JsonLines => "jsonl",
            Format::Xlsx => "xlsx",
        }
    }
}

/// CSV dialect options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub quote: u8,
    pub escape: Option<u8>,
    /// Cell texts read as NULL in addition to the empty cell.
    pub null_values: Vec<String>,
    /// Decimal separator of numbers: `.` or `,` (`1 234,50`).
    pub decimal: u8,
    /// Thousands separator to drop from numbers (`1.234,50` with `thousands: "."`).
    pub thousands: Option<char>,
    pub encoding: TextEncoding,
    /// Quoted fields may contain line breaks (true, the safe default for CRM exports). When a
    /// file is known to have none, `false` lets DataFusion split it and parse it in parallel.
    pub quoted_newlines: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: b',',
            quote: b'"',
            escape: None,
            null_values: Vec::new(),
            quoted_newlines: true,
            decimal: b'.',
            thousands: None,
            encoding: TextEncoding::Utf8,
        }
    }
}

/// What a source column is to the identity steps that read it: the rules its values are
/// normalized by (before `pii: hash` hashes them, and before linking).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdentifierRole {
    Email {
        strip_plus_addressing: bool,
    },
    Phone {
        default_country_code: Option<String>,
    },
    NationalId,
}

impl IdentifierRole {
    /// The identity rule's name (`email`, `phone`, `national_id`).
    pub fn rule(&self) -> &'static str {
        match self {
            IdentifierRole::Email { .. } => "email",
            IdentifierRole::Phone { .. } => "phone",
            IdentifierRole::NationalId => "national_id",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            IdentifierRole::Email {
                strip_plus_addressing,
            } => format!(
                "an e-mail address (plus addressing {})",
                if *strip_plus_addressing {
                    "stripped"
                } else {
                    "kept"
                }
            ),
            IdentifierRole::Phone {
                default_country_code,
            } => format!(
                "a phone number (default country code {})",
                default_country_code.as_deref().unwrap_or("none")
            ),
            IdentifierRole::NationalId => "a national id".to_string(),
        }
    }
}

/// What happens to a column holding personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pii {
    /// Replaced by HMAC-SHA-256 (hex) under the pipeline's key: joinable, not readable.
    Hash,
    /// Removed right after reading.
    Drop,
    /// Personal data that may appear in outputs, declared so on purpose.
    Allow,
}

/// The character encoding of a text export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// UTF-8, with or without a byte-order mark.
    Utf8,
    Windows1252,
    /// ISO-8859-1: every byte is the code point of the same number.
    Latin1,
    /// UTF-8 (BOM or valid bytes), else Windows-1252; the manifest records what was found.
    Auto,
}

/// What happens to a row that cannot be parsed or typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBadRow {
    /// Stop the run (exit code 1), naming the file, line and reason.
    Fail,
    /// Set the row aside in the source's quarantine table with file, line, raw text and reason.
    Quarantine,
}

/// How many bad rows a source may have before its read stops, under either `on_bad_row`
/// policy. A wrong delimiter or encoding makes (nearly) every row bad: without a limit a 4 GB
/// export would be read to its end, its bad rows written out whole, before anyone is told.
/// The limits are checked while the rows are read, over all rows of the source read so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BadRowLimits {
    /// `max_bad_rows`: more bad rows than this stop the read (none by default).
    pub max_rows: Option<u64>,
    /// `max_bad_ratio`: a larger share of bad rows stops the read, judged once
    /// [`BadRowLimits::RATIO_MIN_ROWS`] rows have been read.
    pub max_ratio: f64,
}

impl BadRowLimits {
    /// One row in ten: far more than real exports have (a few malformed lines per million),
    /// far less than a wrong delimiter or encoding produces (every row).
    pub const DEFAULT_MAX_RATIO: f64 = 0.1;
    /// Rows read before the ratio is judged: three bad rows among the first twenty say
    /// nothing about a file, a tenth of a thousand does.
    pub const RATIO_MIN_ROWS: u64 = 1000;

    /// The limit `rejected` bad rows among `read` rows break, described for a message.
    pub fn exceeded(&self, read: u64, rejected: u64) -> Option<String> {
        if let Some(max) = self.max_rows
            && rejected > max
        {
            return Some(format!("more than max_bad_rows: {max}"));
        }
        #[allow(clippy::cast_precision_loss)]
        let over_ratio =
            read >= Self::RATIO_MIN_ROWS && rejected as f64 > self.max_ratio * read as f64;
        over_ratio.then(|| {
            format!(
                "more than max_bad_ratio: {} of the rows read",
                self.max_ratio
            )
        })
    }
}

impl Default for BadRowLimits {
    fn default() -> Self {
        Self {
            max_rows: None,
            max_ratio: Self::DEFAULT_MAX_RATIO,
        }
    }
}

/// A column type a pipeline can declare; money should be `decimal(p,s)` so sums are exact and
/// reproducible across engines and runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int32,
    Int64,
    Float64,
    Boolean,
    Date,
    /// Microsecond timestamp, normalized to UTC.
    Timestamp,
    Decimal {
        precision: u8,
        scale: i8,
    },
}

impl std::fmt::Display for ColumnType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnType::String => f.write_str("string"),
            ColumnType::Int32 => f.write_str("int32"),
            ColumnType::Int64 => f.write_str("int64"),
            ColumnType::Float64 => f.write_str("float64"),
            ColumnType::Boolean => f.write_str("bool"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Timestamp => f.write_str("timestamp"),
            ColumnType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
        }
    }
}

/// One declared column of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: String,
    pub data_type: ColumnType,
    /// A required column must be present in every file and may not be NULL.
    pub required: bool,
    /// `chrono` format of a date or timestamp column as written in the file, e.g. `%d.%m.%Y`.
    pub format: Option<String>,
    /// Personal data: how the column is protected, `None` for ordinary columns.
    pub pii: Option<Pii>,
    pub loc: Location,
}

/// An input: files (path, glob or URL) with a declared schema.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: Spanned<String>,
    /// Absolute path, glob or URL (`file://`, later `s3://`…).
    pub location: Spanned<String>,
    pub format: Format,
    pub csv: CsvOptions,
    pub schema: Vec<ColumnSpec>,
    /// Columns identity steps link on, by column name (derived from those steps, not
    /// written in the source): normalized by these rules before `pii: hash`.
    pub identifiers: std::collections::BTreeMap<String, IdentifierRole>,
    pub on_bad_row: OnBadRow,
    /// When a source has so many bad rows that the read stops (under either policy).
    pub bad_row_limits: BadRowLimits,
    pub checks: Vec<Check>,
    pub drift: SchemaDrift,
    /// Excel: the sheet to read (the first one when not given).
    pub sheet: Option<String>,
    /// Reference data in vintages: only the one in effect for the period is read.
    pub vintage: Option<VintageSpec>,
}

/// What to do when a file's columns differ from the declaration: never a silent shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaDrift {
    /// Columns the file has but the schema does not declare (they are never read).
    pub added: DriftAction,
    /// Declared columns the file lacks (read as NULL under `warn`; required ones always fail).
    pub missing: DriftAction,
}

impl Default for SchemaDrift {
    fn default() -> Self {
        Self {
            added: DriftAction::Warn,
            missing: DriftAction::Error,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftAction {
    Ignore,
    Warn,
    Error,
}

/// A node of the pipeline's DAG that computes a table.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: Spanned<String>,
    pub kind: StepKind,
    pub checks: Vec<Check>,
    /// Model steps only: the artifact this step fits or applies.
    pub artifact: Option<ArtifactRef>,
}

impl Step {
    /// Tables (sources or steps) this step reads.
    pub fn inputs(&self) -> Vec<&Spanned<String>> {
        match &self.kind {
            StepKind::Sql(s) => s.reads.iter().collect(),
            StepKind::Rfm(m) => vec![&m.input],
            StepKind::Pareto(m) => vec![&m.input],
            StepKind::Matrix(m) => vec![&m.input],
            StepKind::Rules(m) => vec![&m.input],
            StepKind::Cluster(m) => vec![&m.input],
            StepKind::Clv(m) => vec![&m.input],
            StepKind::Lookalike(m) => vec![&m.customers, &m.prospects],
            StepKind::Potential(m) => vec![&m.customers, &m.market],
            StepKind::Profile(m) => {
                let mut tables = vec![&m.customers];
                tables.extend(m.orders.as_ref().map(|o| &o.table));
                tables.extend(m.market.as_ref().map(|o| &o.table));
                tables
            }
            StepKind::Enrich(m) => {
                let mut tables = vec![&m.input];
                let references = m.keys.iter().map(|k| &k.reference);
                for table in references.chain(m.crosswalk.as_ref().map(|c| &c.table)) {
                    if !tables.iter().any(|t| t.value == table.value) {
                        tables.push(table);
                    }
                }
                tables
            }
            StepKind::Identity(m) => m.inputs.iter().map(|i| &i.from).collect(),
            StepKind::Trend(_) => Vec::new(),
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            StepKind::Sql(_) => "sql",
            StepKind::Rfm(_) => "rfm",
            StepKind::Pareto(_) => "pareto",
            StepKind::Matrix(_) => "matrix",
            StepKind::Rules(_) => "rules",
            StepKind::Cluster(m) if m.categorical.is_empty() => "kmeans",
            StepKind::Cluster(_) => "kprototypes",
            StepKind::Clv(_) => "clv",
            StepKind::Lookalike(_) => "lookalike",
            StepKind::Potential(_) => "potential",
            StepKind::Enrich(_) => "enrich",
            StepKind::Profile(_) => "profile",
            StepKind::Identity(_) => "identity",
            StepKind::Trend(_) => "trend",
        }
    }
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Sql(SqlStep),
    Rfm(RfmSpec),
    Pareto(ParetoSpec),
    Matrix(MatrixSpec),
    Rules(RulesSpec),
    Cluster(ClusterSpec),
    Clv(ClvSpec),
    Lookalike(LookalikeSpec),
    Potential(PotentialSpec),
    Enrich(EnrichSpec),
    Profile(ProfileSpec),
    Identity(IdentitySpec),
    /// Compares committed periods of an output; reads no table of this pipeline.
    Trend(crate::trend::TrendSpec),
}

/// One table of person records for the identity step, with the columns holding identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityInput {
    pub from: Spanned<String>,
    /// The record's own key in that table (customer number, user id).
    pub key: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub national_id: Option<String>,
    pub name: Option<String>,
    pub address: Option<String>,
    pub postal_code: Option<String>,
}

/// Links records about the same person across tables into a stable `person_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySpec {
    pub inputs: Vec<IdentityInput>,
    pub strip_plus_addressing: bool,
    pub default_country_code: Option<String>,
}

/// A SQL query over sources and earlier steps.
#[derive(Debug, Clone)]
pub struct SqlStep {
    pub sql: Spanned<String>,
    /// Table names the query reads, found by parsing it (CTE names excluded).
    pub reads: Vec<Spanned<String>>,
}

/// A table written as Parquet, one hive-style partition per period.
#[derive(Debug, Clone)]
pub struct Output {
    pub name: Spanned<String>,
    pub from: Spanned<String>,
    /// Absolute path or URL of the table's root directory.
    pub path: String,
    /// Partition columns; always starts with `period`, which segflow adds.
    pub partition_by: Vec<String>,
    /// Row order inside each file; all columns when empty.
    pub order_by: Vec<String>,
    pub max_rows_per_file: usize,
}

/// Whether a failed check stops the run (`error`, exit code 1, nothing committed) or is only
/// recorded (`warn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warn,
}

/// A data contract on a source or step, checked on every run and recorded in the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub kind: CheckKind,
    pub severity: Severity,
    pub loc: Location,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    NotNull {
        column: String,
    },
    /// The combination of the columns is unique.
    Unique {
        columns: Vec<String>,
    },
    AcceptedValues {
        column: String,
        values: Vec<String>,
    },
    /// Every non-NULL `column` exists in `to_table.to_column`, up to a tolerated share of orphans.
    Relationship {
        column: String,
        to_table: Spanned<String>,
        to_column: String,
        max_orphans: f64,
    },
    /// Rows within bounds, and within `max_change` (a share) of the previous period's run.
    RowCount {
        min: Option<u64>,
        max: Option<u64>,
        max_change: Option<f64>,
    },
    /// The latest `column` date is at most `max_age_days` before the period end.
    Freshness {
        column: String,
        max_age_days: u32,
    },
    /// A query returning the failing rows (first column = the key shown as an example).
    Sql {
        name: String,
        query: String,
    },
}

impl CheckKind {
    pub fn name(&self) -> &str {
        match self {
            CheckKind::NotNull { .. } => "not_null",
            CheckKind::Unique { .. } => "unique",
            CheckKind::AcceptedValues { .. } => "accepted_values",
            CheckKind::Relationship { .. } => "relationship",
            CheckKind::RowCount { .. } => "row_count",
            CheckKind::Freshness { .. } => "freshness",
            CheckKind::Sql { name, .. } => name,
        }
    }
}
