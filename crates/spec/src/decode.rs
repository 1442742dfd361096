//! YAML document → [`Pipeline`] fields, one decoder per section, all errors collected.

use std::path::Path;

use crate::decode_models as models;
use crate::diagnostic::{Diagnostic, Spanned};
use crate::models::{ModelMode, ModelsOptions};
use crate::period::Grain;
use crate::pipeline::{
    BadRowLimits, Check, CheckKind, ColumnSpec, ColumnType, CsvOptions, DriftAction, EngineOptions,
    Format, IdentityInput, IdentitySpec, OnBadRow, Output, Pii, SchemaDrift, Severity, Source,
    SqlStep, Step, StepKind, TextEncoding,
};
use crate::yaml::{self, Ctx, Map, Node, loc};

/// Everything read from the document; cross-references are checked afterwards.
pub(crate) struct Decoded {
    pub name: Option<String>,
    pub description: Option<String>,
    pub grain: Option<Grain>,
    pub grain_loc: crate::diagnostic::Location,
    pub output_dir: Option<String>,
    pub models: ModelsOptions,
    pub report: Option<crate::models::ReportSpec>,
    pub trend_report: Option<crate::models::TrendReportSpec>,
    pub engine: EngineOptions,
    pub pii_key_env: Option<String>,
    pub sources: Vec<Source>,
    pub steps: Vec<Step>,
    pub outputs: Vec<Output>,
    /// Names of sources and steps that had errors of their own (and so are missing above).
    pub broken_sources: Vec<Spanned<String>>,
    pub broken_steps: Vec<Spanned<String>>,
}

pub(crate) fn document(ctx: &mut Ctx<'_>, root: &Node<'_>, base_dir: &Path) -> Decoded {
    let mut out = Decoded {
        name: None,
        description: None,
        grain: None,
        grain_loc: crate::diagnostic::Location::new(1, 1),
        output_dir: None,
        models: ModelsOptions {
            dir: String::new(),
            mode: ModelMode::Auto,
        },
        report: None,
        trend_report: None,
        engine: EngineOptions::default(),
        pii_key_env: None,
        sources: Vec::new(),
        steps: Vec::new(),
        outputs: Vec::new(),
        broken_sources: Vec::new(),
        broken_steps: Vec::new(),
    };
    let Some(mut top) = yaml::map(ctx, root, "") else {
        return out;
    };
    // First: every SQL text below is expanded with these declarations.
    if let Some((n, p)) = top.get("vars") {
        ctx.sql_vars = crate::decode_vars::declared(ctx, n, &p);
    }
    if let Some((n, p)) = top.required(ctx, "pipeline") {
        out.name = yaml::name(ctx, n, &p).map(|s| s.value);
    }
    if let Some((n, p)) = top.get("description") {
        out.description = yaml::string(ctx, n, &p).map(|s| s.value);
    }
    if let Some((n, p)) = top.required(ctx, "period") {
        out.grain_loc = loc(n);
        out.grain = yaml::choice(
            ctx,
            n,
            &p,
            &[("year", Grain::Year), ("month", Grain::Month)],
        );
    }
    if let Some((n, p)) = top.get("output_dir") {
        out.output_dir = yaml::string(ctx, n, &p).map(|s| resolve_location(&s.value, base_dir));
    }
    let mut key_loc = None;
    if let Some((n, p)) = top.get("privacy")
        && let Some(mut m) = yaml::map(ctx, n, &p)
    {
        if let Some((n, p)) = m.required(ctx, "key_env") {
            key_loc = Some((loc(n), p.clone()));
            out.pii_key_env = yaml::name(ctx, n, &p).map(|s| s.value);
        }
        m.finish(ctx);
    }
    if let Some((n, p)) = top.get("engine") {
        out.engine = engine(ctx, n, &p, base_dir);
    }
    // A pipeline of trend steps reads committed outputs only and needs no sources.
    let has_sources = top.has("sources");
    if let Some((n, p)) = top.get("sources")
        && let Some(mut m) = yaml::map(ctx, n, &p)
    {
        for (name, node, path) in m.named_entries() {
            match source(ctx, name.clone(), node, &path, base_dir) {
                Some(s) => out.sources.push(s),
                None => out.broken_sources.push(name),
            }
        }
    }
    if let Some((n, p)) = top.required(ctx, "steps")
        && let Some(items) = yaml::seq(ctx, n, &p)
    {
        for (i, item) in items.iter().enumerate() {
            match step(ctx, item, &format!("steps[{i}]")) {
                Ok(s) => out.steps.push(s),
                Err(Some(name)) => out.broken_steps.push(name),
                Err(None) => {}
            }
        }
        if !has_sources
            && out
                .steps
                .iter()
                .any(|s| !matches!(s.kind, StepKind::Trend(_)))
        {
            ctx.push(
                Diagnostic::new(top.loc, &top.path, "missing required key `sources`")
                    .with_hint("only a pipeline of `trend:` steps, which read committed outputs, needs no sources"),
            );
        }
    }
    let output_dir = out
        .output_dir
        .clone()
        .unwrap_or_else(|| resolve_location("out", base_dir));
    if let Some((n, p)) = top.required(ctx, "outputs")
        && let Some(mut m) = yaml::map(ctx, n, &p)
    {
        for (name, node, path) in m.named_entries() {
            out.outputs
                .extend(output(ctx, name, node, &path, &output_dir, base_dir));
        }
    }
    let models_dir = format!("{}/models", output_dir.trim_end_matches('/'));
    out.models = match top.get("models") {
        Some((n, p)) => models::models_options(ctx, n, &p, base_dir, models_dir),
        None => ModelsOptions {
            dir: models_dir,
            mode: ModelMode::Auto,
        },
    };
    if let Some((n, p)) = top.get("report") {
        match models::report_block(ctx, n, &p) {
            Some(models::ReportBlock::Segments(r)) => out.report = Some(r),
            Some(models::ReportBlock::Trends(t)) => out.trend_report = Some(t),
            None => {}
        }
        if let Some(t) = &out.trend_report {
            for (key, name) in t.outputs() {
                if !out.outputs.iter().any(|o| o.name.value == name.value) {
                    ctx.push(
                        Diagnostic::new(
                            name.loc,
                            format!("report.trends.{key}"),
                            format!("no output named `{}`", name.value),
                        )
                        .with_hint("the trend report reads the committed Parquet of the outputs the trend steps write: name one of `outputs`"),
                    );
                }
            }
        }
        if let Some(r) = &out.report
            && !out
                .outputs
                .iter()
                .any(|o| o.name.value == r.customers.value)
        {
            ctx.push(
                Diagnostic::new(
                    r.customers.loc,
                    "report.customers",
                    format!("no output named `{}`", r.customers.value),
                )
                .with_hint("the report reads an output's committed Parquet: name one of `outputs`"),
            );
        }
    }
    top.finish(ctx);
    check_pii_key(ctx, &out, key_loc);
    out.output_dir = Some(output_dir);
    out
}

/// Relative paths are relative to the pipeline file, so a pipeline behaves the same whatever
/// directory cron or Airflow starts it from. URLs are kept as they are.
pub(crate) fn resolve_location(text: &str, base_dir: &Path) -> String {
    if text.contains("://") || Path::new(text).is_absolute() {
        return text.to_string();
    }
    let trimmed = text.strip_prefix("./").unwrap_or(text);
    base_dir.join(trimmed).to_string_lossy().into_owned()
}

fn engine(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str, base_dir: &Path) -> EngineOptions {
    let mut opts = EngineOptions::default();
    let Some(mut m) = yaml::map(ctx, node, path) else {
        return opts;
    };
    if let Some((n, p)) = m.get("target_partitions") {
        opts.target_partitions =
            yaml::integer(ctx, n, &p, 1..=1024).and_then(|v| usize::try_from(v).ok());
    }
    if let Some((n, p)) = m.get("memory_limit")
        && let Some(text) = yaml::string(ctx, n, &p)
    {
        match parse_bytes(&text.value) {
            Some(b) => opts.memory_limit = Some(b),
            None => ctx.push(
                Diagnostic::new(text.loc, &p, format!("invalid size `{}`", text.value))
                    .with_hint("write a size like `512MiB`, `4GiB` or `2GB`"),
            ),
        }
    }
    if let Some((n, p)) = m.get("spill_dir")
        && let Some(text) = yaml::string(ctx, n, &p)
    {
        opts.spill_dir = Some(resolve_location(&text.value, base_dir));
    }
    m.finish(ctx);
    opts
}

/// `4GiB`, `512 MiB`, `2GB`, `1000000` → bytes.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The format a path names by its extension. Exports are often compressed (`orders.csv.gz`),
/// so a compression suffix is looked through — but only to text the CSV reader decompresses:
/// a `.parquet.gz` or `.jsonl.gz` would be handed undecompressed to DataFusion's readers and
/// fail on the first byte, so it stays unrecognised and the hint asks for `format:`.
fn infer_format(location: &str) -> Option<Format> {
    let lower = location.to_ascii_lowercase();
    let name = lower.rsplit('/').next()?;
    let (stem, ext) = name.rsplit_once('.')?;
    if matches!(ext, "gz" | "zst" | "zstd") {
        let (_, inner) = stem.rsplit_once('.')?;
        return matches!(inner, "csv" | "tsv" | "txt").then_some(Format::Csv);
    }
    match ext {
        "csv" | "tsv" | "txt" => Some(Format::Csv),
        "parquet" | "pq" => Some(Format::Parquet),
        "jsonl" | "ndjson" | "json" => Some(Format::JsonLines),
        "xlsx" => Some(Format::Xlsx),
        _ => None,
    }
}

fn source(
    ctx: &mut Ctx<'_>,
    name: Spanned<String>,
    node: &Node<'_>,
    path: &str,
    base_dir: &Path,
) -> Option<Source> {
    let mut m = yaml::map(ctx, node, path)?;
    let location = m
        .required(ctx, "path")
        .and_then(|(n, p)| yaml::string(ctx, n, &p))
        .map(|s| Spanned::new(resolve_location(&s.value, base_dir), s.loc));
    let formats = [
        ("csv", Format::Csv),
        ("parquet", Format::Parquet),
        ("jsonl", Format::JsonLines),
        ("xlsx", Format::Xlsx),
    ];
    let declared = m
        .get("format")
        .map(|(n, p)| yaml::choice(ctx, n, &p, &formats));
    let format = match (declared, &location) {
        (Some(f), _) => f,
        (None, Some(l)) => {
            let inferred = infer_format(&l.value);
            if inferred.is_none() {
                ctx.push(
                    Diagnostic::new(
                        l.loc,
                        format!("{path}.path"),
                        "cannot tell the file format from the path",
                    )
                    .with_hint("add `format: csv`, `format: parquet` or `format: jsonl`"),
                );
            }
            inferred
        }
        (None, None) => None,
    };
    // Kept (and ignored) for other formats, so one pipeline can read `orders.${FORMAT}`.
    let csv = match m.get("csv") {
        Some((n, p)) => csv_options(ctx, n, &p),
        None => CsvOptions::default(),
    };
    let schema = m
        .required(ctx, "schema")
        .map(|(n, p)| schema(ctx, n, &p))
        .unwrap_or_default();
    let checks = m
        .get("checks")
        .map(|(n, p)| checks(ctx, n, &p))
        .unwrap_or_default();
    let vintage = m
        .get("vintage")
        .and_then(|(n, p)| models::vintage(ctx, n, &p));
    let sheet = m
        .get("sheet")
        .and_then(|(n, p)| yaml::string(ctx, n, &p))
        .map(|s| s.value);
    let drift = m
        .get("schema_drift")
        .map(|(n, p)| drift(ctx, n, &p))
        .unwrap_or_default();
    let on_bad_row = m
        .get("on_bad_row")
        .and_then(|(n, p)| {
            yaml::choice(
                ctx,
                n,
                &p,
                &[
                    ("fail", OnBadRow::Fail),
                    ("quarantine", OnBadRow::Quarantine),
                ],
            )
        })
        .unwrap_or(OnBadRow::Fail);
    let max_rows = m
        .get("max_bad_rows")
        .and_then(|(n, p)| yaml::integer(ctx, n, &p, 0..=i64::MAX))
        .and_then(|i| u64::try_from(i).ok());
    let max_ratio = m
        .get("max_bad_ratio")
        .and_then(|(n, p)| share(ctx, n, &p))
        .unwrap_or(BadRowLimits::DEFAULT_MAX_RATIO);
    m.finish(ctx);
    Some(Source {
        name,
        location: location?,
        format: format?,
        csv,
        schema,
        identifiers: Default::default(),
        on_bad_row,
        bad_row_limits: BadRowLimits {
            max_rows,
            max_ratio,
        },
        checks,
        drift,
        sheet,
        vintage,
    })
}

fn single_byte(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<u8> {
    let text = yaml::string(ctx, node, path)?;
    let value = match text.value.as_str() {
        "\\t" | "tab" => "\t",
        other => other,
    };
    match value.as_bytes() {
        [b] if b.is_ascii() => Some(*b),
        _ => {
            ctx.push(
                Diagnostic::new(
                    text.loc,
                    path,
                    format!("expected a single ASCII character, found `{}`", text.value),
                )
                .with_hint("for a tab write `\"\\t\"`"),
            );
            None
        }
    }
}

fn csv_options(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> CsvOptions {
    let mut opts = CsvOptions::default();
    let Some(mut m) = yaml::map(ctx, node, path) else {
        return opts;
    };
    if let Some((n, p)) = m.get("delimiter") {
        opts.delimiter = single_byte(ctx, n, &p).unwrap_or(b',');
    }
    if let Some((n, p)) = m.get("quote") {
        opts.quote = single_byte(ctx, n, &p).unwrap_or(b'"');
    }
    if let Some((n, p)) = m.get("escape") {
        opts.escape = single_byte(ctx, n, &p);
    }
    if let Some((n, p)) = m.get("decimal") {
        opts.decimal = match single_byte(ctx, n, &p) {
            Some(b) if b == b'.' || b == b',' => b,
            Some(_) => {
                ctx.error(loc(n), &p, "the decimal separator is `.` or `,`");
                b'.'
            }
            None => b'.',
        };
    }
    if let Some((n, p)) = m.get("thousands")
        && let Some(text) = yaml::string(ctx, n, &p)
    {
        let mut chars = text.value.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => opts.thousands = Some(c),
            _ => ctx.push(
                Diagnostic::new(
                    text.loc,
                    &p,
                    format!("expected one character, found `{}`", text.value),
                )
                .with_hint("e.g. `thousands: \".\"` or `thousands: \" \"`"),
            ),
        }
    }
    if let Some((n, p)) = m.get("encoding") {
        opts.encoding = yaml::choice(
            ctx,
            n,
            &p,
            &[
                ("utf-8", TextEncoding::Utf8),
                ("utf8", TextEncoding::Utf8),
                ("windows-1252", TextEncoding::Windows1252),
                ("cp1252", TextEncoding::Windows1252),
                ("iso-8859-1", TextEncoding::Latin1),
                ("latin1", TextEncoding::Latin1),
                ("auto", TextEncoding::Auto),
            ],
        )
        .unwrap_or(TextEncoding::Utf8);
    }
    if let Some((n, p)) = m.get("quoted_newlines") {
        opts.quoted_newlines = yaml::boolean(ctx, n, &p).unwrap_or(true);
    }
    if let Some((n, p)) = m.get("null_values") {
        opts.null_values = yaml::names(ctx, n, &p)
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.value)
            .collect();
    }
    m.finish(ctx);
    opts
}

fn column_type(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<ColumnType> {
    let text = yaml::name(ctx, node, path)?;
    let t = text.value.trim().to_ascii_lowercase();
    let simple = match t.as_str() {
        "string" | "utf8" | "text" => Some(ColumnType::String),
        "int32" | "int" => Some(ColumnType::Int32),
        "int64" | "bigint" => Some(ColumnType::Int64),
        "float64" | "double" => Some(ColumnType::Float64),
        "bool" | "boolean" => Some(ColumnType::Boolean),
        "date" => Some(ColumnType::Date),
        "timestamp" => Some(ColumnType::Timestamp),
        _ => None,
    };
    if simple.is_some() {
        return simple;
    }
    if let Some(args) = t.strip_prefix("decimal(").and_then(|r| r.strip_suffix(')'))
        && let Some((p, s)) = args.split_once(',')
        && let (Ok(precision), Ok(scale)) = (p.trim().parse::<u8>(), s.trim().parse::<i8>())
        && (1..=38).contains(&precision)
        && (0..=precision as i8).contains(&scale)
    {
        return Some(ColumnType::Decimal { precision, scale });
    }
    const TYPES: [&str; 8] = [
        "string",
        "int32",
        "int64",
        "float64",
        "bool",
        "date",
        "timestamp",
        "decimal(18,2)",
    ];
    let hint = if t.starts_with("decimal(") && !t.contains(',') {
        // `{ type: decimal(12,2) }`: the comma ended the value inside a YAML flow mapping.
        "inside `{ ... }` quote the type: `type: \"decimal(12,2)\"`".to_string()
    } else {
        crate::diagnostic::did_you_mean(&t, TYPES)
            .unwrap_or_else(|| format!("expected one of: {}", TYPES.join(", ")))
    };
    ctx.push(
        Diagnostic::new(
            text.loc,
            path,
            format!("unknown column type `{}`", text.value),
        )
        .with_hint(hint),
    );
    None
}

fn schema(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Vec<ColumnSpec> {
    let Some(mut m) = yaml::map(ctx, node, path) else {
        return Vec::new();
    };
    let mut columns = Vec::new();
    for (name, col_node, col_path) in m.named_entries() {
        // `email: string` is shorthand for `email: { type: string }`.
        let data_type = if matches!(col_node.data, saphyr::YamlData::Mapping(_)) {
            let Some(mut c) = yaml::map(ctx, col_node, &col_path) else {
                continue;
            };
            let data_type = c
                .required(ctx, "type")
                .and_then(|(n, p)| column_type(ctx, n, &p));
            let required = c
                .get("required")
                .and_then(|(n, p)| yaml::boolean(ctx, n, &p))
                .unwrap_or(false);
            let pii = c.get("pii").and_then(|(n, p)| {
                yaml::choice(
                    ctx,
                    n,
                    &p,
                    &[
                        ("hash", Pii::Hash),
                        ("drop", Pii::Drop),
                        ("allow", Pii::Allow),
                    ],
                )
            });
            let format = c.get("format").and_then(|(n, p)| {
                let f = yaml::string(ctx, n, &p)?;
                if !matches!(data_type, Some(ColumnType::Date | ColumnType::Timestamp)) {
                    ctx.error(f.loc, &p, "`format` applies to date and timestamp columns");
                }
                if chrono::format::StrftimeItems::new(&f.value)
                    .parse()
                    .is_err()
                {
                    ctx.push(
                        Diagnostic::new(f.loc, &p, format!("invalid date format `{}`", f.value))
                            .with_hint("use chrono/strftime fields, e.g. `%d.%m.%Y` or `%Y%m%d`"),
                    );
                }
                Some(f.value)
            });
            c.finish(ctx);
            (data_type, required, format, pii)
        } else {
            (column_type(ctx, col_node, &col_path), false, None, None)
        };
        let (data_type, required, format, pii) = data_type;
        if let Some(data_type) = data_type {
            columns.push(ColumnSpec {
                name: name.value,
                data_type,
                required,
                format,
                pii,
                loc: name.loc,
            });
        }
    }
    if columns.is_empty() && m.loc.line > 0 {
        ctx.error(m.loc, path, "a schema needs at least one column");
    }
    columns
}

/// The step, or (when it has errors) its name if that much could be read.
fn step(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Result<Step, Option<Spanned<String>>> {
    let mut m = yaml::map(ctx, node, path).ok_or(None)?;
    let name = m
        .required(ctx, "name")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let has_enrich = m.has("enrich") || m.has("profile");
    let has_sql = m.has("sql") || has_enrich;
    let has_model = m.has("model");
    let mut artifact = None;
    let kind = match (has_sql, has_model) {
        (false, false) if m.has("trend") => {
            crate::decode_trend::trend(ctx, &mut m).map(StepKind::Trend)
        }
        _ if m.has("trend") => {
            ctx.error(
                m.loc,
                path,
                "a step has one of `sql`, `model`, `enrich`, `profile` or `trend`",
            );
            None
        }
        (true, true) => {
            ctx.error(
                m.loc,
                path,
                "a step has one of `sql`, `model`, `enrich` or `profile`",
            );
            None
        }
        (false, false) => {
            ctx.push(
                Diagnostic::new(m.loc, path, "a step needs `sql`, `model`, `enrich`, `profile` or `trend`")
                    .with_hint("write `sql: SELECT ...`, `enrich: { input: …, keys: […] }`, `model: rfm` (or pareto, matrix, rules, kmeans, kprototypes, clv, lookalike, potential, identity) or `trend: migration` (or stability, kpis, shift)"),
            );
            None
        }
        (true, false) if has_enrich => {
            if m.has("sql") {
                ctx.error(
                    m.loc,
                    path,
                    "a step has one of `sql`, `model`, `enrich` or `profile`",
                );
            }
            if m.has("enrich") && m.has("profile") {
                ctx.error(
                    m.loc,
                    path,
                    "a step has one of `sql`, `model`, `enrich` or `profile`",
                );
            }
            if m.has("profile") {
                m.get("profile")
                    .and_then(|(n, p)| models::profile(ctx, n, &p))
                    .map(StepKind::Profile)
            } else {
                m.get("enrich")
                    .and_then(|(n, p)| models::enrich(ctx, n, &p))
                    .map(StepKind::Enrich)
            }
        }
        (true, false) => m
            .get("sql")
            .and_then(|(n, p)| yaml::sql(ctx, n, &p))
            .map(|sql| {
                StepKind::Sql(SqlStep {
                    sql,
                    reads: Vec::new(),
                })
            }),
        (false, true) => {
            #[derive(Clone, Copy)]
            enum Model {
                Rfm,
                Pareto,
                Matrix,
                Rules,
                Kmeans,
                Kprototypes,
                Clv,
                Lookalike,
                Potential,
                Identity,
            }
            let model = m.get("model").and_then(|(n, p)| {
                yaml::choice(
                    ctx,
                    n,
                    &p,
                    &[
                        ("rfm", Model::Rfm),
                        ("pareto", Model::Pareto),
                        ("matrix", Model::Matrix),
                        ("rules", Model::Rules),
                        ("kmeans", Model::Kmeans),
                        ("kprototypes", Model::Kprototypes),
                        ("clv", Model::Clv),
                        ("lookalike", Model::Lookalike),
                        ("potential", Model::Potential),
                        ("identity", Model::Identity),
                    ],
                )
            });
            if !matches!(model, Some(Model::Identity) | None)
                && let Some(name) = &name
            {
                artifact = Some(models::artifact_ref(ctx, &mut m, &name.value));
            }
            match model {
                Some(Model::Rfm) => models::rfm(ctx, &mut m).map(StepKind::Rfm),
                Some(Model::Pareto) => models::pareto(ctx, &mut m).map(StepKind::Pareto),
                Some(Model::Matrix) => models::matrix(ctx, &mut m).map(StepKind::Matrix),
                Some(Model::Rules) => models::rules(ctx, &mut m).map(StepKind::Rules),
                Some(Model::Kmeans) => models::cluster(ctx, &mut m, false).map(StepKind::Cluster),
                Some(Model::Kprototypes) => {
                    models::cluster(ctx, &mut m, true).map(StepKind::Cluster)
                }
                Some(Model::Clv) => models::clv(ctx, &mut m).map(StepKind::Clv),
                Some(Model::Lookalike) => models::lookalike(ctx, &mut m).map(StepKind::Lookalike),
                Some(Model::Potential) => models::potential(ctx, &mut m).map(StepKind::Potential),
                Some(Model::Identity) => identity(ctx, &mut m).map(StepKind::Identity),
                None => None,
            }
        }
    };
    let checks = m
        .get("checks")
        .map(|(n, p)| checks(ctx, n, &p))
        .unwrap_or_default();
    m.finish(ctx);
    match (name, kind) {
        (Some(name), Some(kind)) => Ok(Step {
            name,
            kind,
            checks,
            artifact,
        }),
        (name, _) => Err(name),
    }
}

fn output(
    ctx: &mut Ctx<'_>,
    name: Spanned<String>,
    node: &Node<'_>,
    path: &str,
    output_dir: &str,
    base_dir: &Path,
) -> Option<Output> {
    let mut m = yaml::map(ctx, node, path)?;
    let from = m
        .required(ctx, "from")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let location = match m.get("path") {
        Some((n, p)) => yaml::string(ctx, n, &p).map(|s| resolve_location(&s.value, base_dir))?,
        None => format!("{}/{}", output_dir.trim_end_matches('/'), name.value),
    };
    let partition_by: Vec<String> = match m.get("partition_by") {
        Some((n, p)) => {
            let cols = yaml::names(ctx, n, &p).unwrap_or_default();
            if cols.first().is_none_or(|c| c.value != "period") {
                ctx.push(
                    Diagnostic::new(loc(n), &p, "`partition_by` must start with `period`")
                        .with_hint("a run replaces exactly its own period's partition; write `[period, ...]`"),
                );
            }
            cols.into_iter().map(|c| c.value).collect()
        }
        None => vec!["period".to_string()],
    };
    let order_by = m
        .get("order_by")
        .and_then(|(n, p)| yaml::names(ctx, n, &p))
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.value)
        .collect();
    let max_rows_per_file = m
        .get("max_rows_per_file")
        .and_then(|(n, p)| yaml::integer(ctx, n, &p, 1..=i64::from(u32::MAX)))
        .map_or(1_000_000, |v| v as usize);
    m.finish(ctx);
    Some(Output {
        name,
        from: from?,
        path: location,
        partition_by,
        order_by,
        max_rows_per_file,
    })
}

/// `0.1%`, `5 %` or `0.001` → a share in 0..=1.
fn share(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<f64> {
    let value = match &node.data {
        saphyr::YamlData::Value(saphyr::Scalar::String(text)) => text
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
            .map(|pct| pct / 100.0),
        _ => yaml::number(ctx, node, path),
    };
    match value {
        Some(v) if (0.0..=1.0).contains(&v) => Some(v),
        _ => {
            ctx.push(
                Diagnostic::new(loc(node), path, "expected a share")
                    .with_hint("write a percentage like `0.5%` or a fraction like `0.005`"),
            );
            None
        }
    }
}

const CHECK_KINDS: [&str; 7] = [
    "not_null",
    "unique",
    "accepted_values",
    "relationship",
    "row_count",
    "freshness",
    "sql",
];

/// `checks:` of a source or step: each item names one check kind, plus an optional `severity`.
fn checks(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Vec<Check> {
    let Some(items) = yaml::seq(ctx, node, path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(mut m) = yaml::map(ctx, item, &p) else {
            continue;
        };
        let severity = m
            .get("severity")
            .and_then(|(n, p)| {
                yaml::choice(
                    ctx,
                    n,
                    &p,
                    &[("error", Severity::Error), ("warn", Severity::Warn)],
                )
            })
            .unwrap_or(Severity::Error);
        let present = CHECK_KINDS.iter().filter(|k| m.has(k)).count();
        if present != 1 {
            ctx.push(
                Diagnostic::new(
                    m.loc,
                    &p,
                    format!("a check names exactly one kind, found {present}"),
                )
                .with_hint(format!("one of: {}", CHECK_KINDS.join(", "))),
            );
        }
        let mut kinds = Vec::new();
        if let Some((n, p)) = m.get("not_null") {
            for column in yaml::names(ctx, n, &p).unwrap_or_default() {
                kinds.push(CheckKind::NotNull {
                    column: column.value,
                });
            }
        }
        if let Some((n, p)) = m.get("unique") {
            let columns = yaml::names(ctx, n, &p).unwrap_or_default();
            kinds.push(CheckKind::Unique {
                columns: columns.into_iter().map(|c| c.value).collect(),
            });
        }
        if let Some((n, p)) = m.get("accepted_values")
            && let Some(mut a) = yaml::map(ctx, n, &p)
        {
            let column = a
                .required(ctx, "column")
                .and_then(|(n, p)| yaml::name(ctx, n, &p));
            let values = a
                .required(ctx, "values")
                .and_then(|(n, p)| yaml::names(ctx, n, &p));
            a.finish(ctx);
            if let (Some(column), Some(values)) = (column, values) {
                kinds.push(CheckKind::AcceptedValues {
                    column: column.value,
                    values: values.into_iter().map(|v| v.value).collect(),
                });
            }
        }
        if let Some((n, p)) = m.get("relationship")
            && let Some(mut r) = yaml::map(ctx, n, &p)
        {
            let column = r
                .required(ctx, "column")
                .and_then(|(n, p)| yaml::name(ctx, n, &p));
            let to = r.required(ctx, "to").and_then(|(n, p)| {
                let target = yaml::name(ctx, n, &p)?;
                let split = target.value.split_once('.');
                if split.is_none() {
                    ctx.error(
                        target.loc,
                        &p,
                        format!("expected `table.column`, found `{}`", target.value),
                    );
                }
                split.map(|(t, c)| (Spanned::new(t.to_string(), target.loc), c.to_string()))
            });
            let max_orphans = r
                .get("max_orphans")
                .and_then(|(n, p)| share(ctx, n, &p))
                .unwrap_or(0.0);
            r.finish(ctx);
            if let (Some(column), Some((to_table, to_column))) = (column, to) {
                kinds.push(CheckKind::Relationship {
                    column: column.value,
                    to_table,
                    to_column,
                    max_orphans,
                });
            }
        }
        if let Some((n, p)) = m.get("row_count")
            && let Some(mut r) = yaml::map(ctx, n, &p)
        {
            let mut count = |ctx: &mut Ctx<'_>, key: &'static str| {
                r.get(key)
                    .and_then(|(n, p)| yaml::integer(ctx, n, &p, 0..=i64::MAX))
                    .map(|v| v as u64)
            };
            let min = count(ctx, "min");
            let max = count(ctx, "max");
            let max_change = r.get("max_change").and_then(|(n, p)| share(ctx, n, &p));
            r.finish(ctx);
            kinds.push(CheckKind::RowCount {
                min,
                max,
                max_change,
            });
        }
        if let Some((n, p)) = m.get("freshness")
            && let Some(mut f) = yaml::map(ctx, n, &p)
        {
            let column = f
                .required(ctx, "column")
                .and_then(|(n, p)| yaml::name(ctx, n, &p));
            let days = f
                .required(ctx, "max_age_days")
                .and_then(|(n, p)| yaml::integer(ctx, n, &p, 0..=36_500));
            f.finish(ctx);
            if let (Some(column), Some(days)) = (column, days) {
                kinds.push(CheckKind::Freshness {
                    column: column.value,
                    max_age_days: days as u32,
                });
            }
        }
        if let Some((n, p)) = m.get("sql")
            && let Some(mut q) = yaml::map(ctx, n, &p)
        {
            let name = q
                .required(ctx, "name")
                .and_then(|(n, p)| yaml::name(ctx, n, &p));
            let query = q
                .required(ctx, "query")
                .and_then(|(n, p)| yaml::sql(ctx, n, &p));
            q.finish(ctx);
            if let (Some(name), Some(query)) = (name, query) {
                if let Err(e) = crate::sql_refs::table_references(&query.value) {
                    ctx.error(
                        query.loc,
                        &format!("{p}.query"),
                        format!("invalid SQL: {}", e.message),
                    );
                }
                kinds.push(CheckKind::Sql {
                    name: name.value,
                    query: query.value,
                });
            }
        }
        m.finish(ctx);
        out.extend(kinds.into_iter().map(|kind| Check {
            kind,
            severity,
            loc: loc(item),
        }));
    }
    out
}

/// `pii: hash` needs a key, named by `privacy.key_env` and set in the environment: a run must
/// never fall back to unkeyed (reversible by dictionary) hashes.
fn check_pii_key(
    ctx: &mut Ctx<'_>,
    doc: &Decoded,
    key_loc: Option<(crate::diagnostic::Location, String)>,
) {
    let hashed = doc
        .sources
        .iter()
        .flat_map(|s| {
            s.schema
                .iter()
                .filter(|c| c.pii == Some(Pii::Hash))
                .map(move |c| (s, c))
        })
        .next();
    let Some((source, column)) = hashed else {
        return;
    };
    match (&doc.pii_key_env, key_loc) {
        (Some(var), Some((at, path))) if !ctx.vars.env_is_set(var) => ctx.push(
            Diagnostic::new(
                at,
                path,
                format!("the PII key variable `{var}` is not set in the environment"),
            )
            .with_hint(format!(
                "export {var}=<secret>; keep it out of the pipeline file and of `--var`"
            )),
        ),
        (None, _) => ctx.push(
            Diagnostic::new(
                column.loc,
                format!("sources.{}.schema.{}", source.name.value, column.name),
                "`pii: hash` needs a key, but the pipeline has no `privacy: { key_env: ... }`",
            )
            .with_hint("add `privacy: { key_env: SEGFLOW_PII_KEY }` and set that variable"),
        ),
        _ => {}
    }
}

fn drift(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> SchemaDrift {
    let mut policy = SchemaDrift::default();
    let Some(mut m) = yaml::map(ctx, node, path) else {
        return policy;
    };
    let all = [
        ("ignore", DriftAction::Ignore),
        ("warn", DriftAction::Warn),
        ("error", DriftAction::Error),
    ];
    if let Some((n, p)) = m.get("added") {
        policy.added = yaml::choice(ctx, n, &p, &all).unwrap_or(policy.added);
    }
    if let Some((n, p)) = m.get("missing") {
        // Ignoring a missing column would silently turn it into NULLs.
        policy.missing = yaml::choice(ctx, n, &p, &all[1..]).unwrap_or(policy.missing);
    }
    m.finish(ctx);
    policy
}

fn identity(ctx: &mut Ctx<'_>, m: &mut Map<'_, '_>) -> Option<IdentitySpec> {
    let mut inputs = Vec::new();
    if let Some((n, p)) = m.required(ctx, "inputs")
        && let Some(items) = yaml::seq(ctx, n, &p)
    {
        for (i, item) in items.iter().enumerate() {
            let path = format!("{p}[{i}]");
            let Some(mut e) = yaml::map(ctx, item, &path) else {
                continue;
            };
            let from = e
                .required(ctx, "from")
                .and_then(|(n, p)| yaml::name(ctx, n, &p));
            let key = e
                .required(ctx, "key")
                .and_then(|(n, p)| yaml::name(ctx, n, &p));
            let mut optional = |ctx: &mut Ctx<'_>, k: &'static str| {
                e.get(k)
                    .and_then(|(n, p)| yaml::name(ctx, n, &p))
                    .map(|s| s.value)
            };
            let email = optional(ctx, "email");
            let phone = optional(ctx, "phone");
            let national_id = optional(ctx, "national_id");
            let name = optional(ctx, "name");
            let address = optional(ctx, "address");
            let postal_code = optional(ctx, "postal_code");
            e.finish(ctx);
            if let (Some(from), Some(key)) = (from, key) {
                inputs.push(IdentityInput {
                    from,
                    key: key.value,
                    email,
                    phone,
                    national_id,
                    name,
                    address,
                    postal_code,
                });
            }
        }
    }
    let strip_plus_addressing = m
        .get("plus_addressing")
        .and_then(|(n, p)| yaml::choice(ctx, n, &p, &[("strip", true), ("keep", false)]))
        .unwrap_or(true);
    let default_country_code = m.get("default_country_code").and_then(|(n, p)| {
        let code = yaml::string(ctx, n, &p)?;
        let digits = code.value.trim_start_matches('+');
        if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            ctx.error(
                code.loc,
                &p,
                format!(
                    "invalid country calling code `{}`: expected 1-3 digits like `46`",
                    code.value
                ),
            );
            return None;
        }
        Some(digits.to_string())
    });
    if inputs.is_empty() {
        ctx.error(m.loc, &m.path, "an identity step needs at least one input");
    }
    Some(IdentitySpec {
        inputs,
        strip_plus_addressing,
        default_country_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_formats() {
        assert_eq!(parse_bytes("4GiB"), Some(4 << 30));
        assert_eq!(parse_bytes("512 MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("2GB"), Some(2_000_000_000));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(infer_format("/d/orders_*.csv"), Some(Format::Csv));
        assert_eq!(infer_format("s3://b/x/part.PARQUET"), Some(Format::Parquet));
        assert_eq!(infer_format("/d/dir/"), None);
    }

    #[test]
    fn compressed_csv_paths_are_not_refused_as_unknown_format() {
        assert_eq!(infer_format("/d/orders.csv.gz"), Some(Format::Csv));
        assert_eq!(infer_format("/d/orders_*.CSV.GZ"), Some(Format::Csv));
        assert_eq!(infer_format("s3://b/orders.csv.zst"), Some(Format::Csv));
        assert_eq!(infer_format("/d/orders.tsv.gz"), Some(Format::Csv));
        assert_eq!(infer_format("/d/orders.txt.zstd"), Some(Format::Csv));
        // Only the CSV reader decompresses; these need an explicit `format:`.
        assert_eq!(infer_format("/d/p.parquet.gz"), None);
        assert_eq!(infer_format("/d/j.jsonl.gz"), None);
        assert_eq!(infer_format("/d/orders.gz"), None);
        assert_eq!(infer_format("/d.v2/orders.gz"), None);
    }

    #[test]
    fn locations_resolve_against_the_pipeline_directory() {
        let base = Path::new("/srv/pipelines");
        assert_eq!(
            resolve_location("data/x.csv", base),
            "/srv/pipelines/data/x.csv"
        );
        assert_eq!(resolve_location("./x.csv", base), "/srv/pipelines/x.csv");
        assert_eq!(resolve_location("/abs/x.csv", base), "/abs/x.csv");
        assert_eq!(resolve_location("s3://b/k.csv", base), "s3://b/k.csv");
    }
}
