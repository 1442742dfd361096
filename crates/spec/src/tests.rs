//! Whole-document tests: a good pipeline decodes to the expected structs, a bad one reports
//! every mistake at its own line and column.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

fn vars() -> Variables {
    let mut v = BTreeMap::new();
    v.insert("DATA_DIR".to_string(), "/data".to_string());
    Variables::new("2025".parse().expect("period"), v)
}

const GOOD: &str = r#"
pipeline: yearly_segmentation
period: year
output_dir: ${OUT_DIR:-out}
sources:
  customers:
    path: ${DATA_DIR}/customers.csv
    csv: { delimiter: ";" }
    schema:
      customer_id: { type: string, required: true }
      postal_code: string
  orders:
    path: ${DATA_DIR}/orders/*.parquet
    schema:
      order_id: int64
      customer_id: string
      order_date: date
      amount: decimal(18,2)
steps:
  - name: segments
    sql: |
      SELECT r.customer_id, r.segment, v.tier
      FROM rfm r JOIN value_tier v USING (customer_id)
  - name: rfm
    model: rfm
    input: orders
    order_id: order_id
    lookback: 3 years
    scores: { bins: 5, method: quantile }
    segments:
      - { name: Champions, when: "r >= 4 AND f >= 4" }
      - { name: Others, when: true }
  - name: activity
    sql: SELECT customer_id, sum(amount) AS revenue FROM orders WHERE order_date < ${period.end} GROUP BY 1
  - name: value_tier
    model: pareto
    input: activity
    value: revenue
outputs:
  customer_segments: { from: segments, order_by: [customer_id] }
"#;

#[test]
fn decodes_a_complete_pipeline() {
    let p = load_str(GOOD, Path::new("/srv/p/yearly.yaml"), &vars()).expect("valid pipeline");
    assert_eq!(p.name, "yearly_segmentation");
    assert_eq!(p.output_dir, "/srv/p/out");
    let customers = p.source("customers").expect("customers");
    assert_eq!(customers.location.value, "/data/customers.csv");
    assert_eq!(customers.format, Format::Csv);
    assert_eq!(customers.csv.delimiter, b';');
    assert_eq!(customers.schema[0].name, "customer_id");
    assert!(customers.schema[0].required);
    assert_eq!(customers.schema[1].data_type, ColumnType::String);
    let orders = p.source("orders").expect("orders");
    assert_eq!(orders.format, Format::Parquet);
    assert_eq!(
        orders.schema[3].data_type,
        ColumnType::Decimal {
            precision: 18,
            scale: 2
        }
    );
    let StepKind::Sql(activity) = &p.step("activity").expect("activity").kind else {
        panic!("activity is SQL");
    };
    assert!(
        activity
            .sql
            .value
            .contains("order_date < DATE '2026-01-01'")
    );
    let StepKind::Rfm(rfm) = &p.step("rfm").expect("rfm").kind else {
        panic!("rfm is a model");
    };
    assert_eq!(rfm.method, ScoreMethod::Quantile);
    assert_eq!(rfm.frequency, FrequencyMeasure::Orders);
    assert_eq!(
        rfm.lookback,
        Some(Lookback {
            amount: 3,
            unit: LookbackUnit::Years
        })
    );
    assert_eq!(rfm.segments[1].when, None);
    let StepKind::Pareto(tier) = &p.step("value_tier").expect("tier").kind else {
        panic!("pareto");
    };
    assert_eq!(
        tier.tiers,
        vec![("A".to_string(), 0.8), ("B".to_string(), 0.95)]
    );
    // Steps are declared out of order; execution follows the data.
    assert_eq!(
        p.execution_order,
        vec![
            "customers",
            "orders",
            "rfm",
            "activity",
            "value_tier",
            "segments"
        ]
    );
    let out = &p.outputs[0];
    assert_eq!(out.path, "/srv/p/out/customer_segments");
    assert_eq!(out.partition_by, vec!["period"]);
}

fn errors(text: &str) -> Vec<(usize, usize, String, String)> {
    let err = load_str(text, Path::new("bad.yaml"), &vars()).expect_err("invalid");
    err.diagnostics
        .into_iter()
        .map(|d| {
            (
                d.loc.line,
                d.loc.col,
                d.key_path,
                format!("{} | {}", d.message, d.hint.unwrap_or_default()),
            )
        })
        .collect()
}

#[test]
fn reports_three_separate_mistakes_together() {
    let text = "\
pipeline: p
period: year
sources:
  orders:
    path: /d/orders.csv
    schema:
      amount: decimal(18,2)
      customer_id: strng
steps:
  - name: rfm
    model: rfm
    input: ordres
    segments:
      - { name: All, when: true }
outputs:
  segments: { from: rfm, partiton_by: [period] }
";
    let errs = errors(text);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert_eq!(
        (errs[0].0, errs[0].1, errs[0].2.as_str()),
        (8, 20, "sources.orders.schema.customer_id")
    );
    assert!(
        errs[0].3.contains("unknown column type `strng`")
            && errs[0].3.contains("did you mean `string`?")
    );
    assert_eq!((errs[1].0, errs[1].1), (12, 12));
    assert!(
        errs[1].3.contains("unknown source or step `ordres`") && errs[1].3.contains("`orders`")
    );
    assert_eq!(
        (errs[2].0, errs[2].1, errs[2].2.as_str()),
        (16, 26, "outputs.segments.partiton_by")
    );
    assert!(errs[2].3.contains("did you mean `partition_by`?"));
}

#[test]
fn reports_cycles_duplicates_and_missing_keys() {
    let text = "\
pipeline: p
period: year
sources:
  a: { path: /d/a.csv, schema: { x: int64 } }
steps:
  - { name: b, sql: SELECT * FROM c }
  - { name: c, sql: SELECT * FROM b }
  - { name: a, sql: SELECT 1 }
  - { name: d }
outputs:
  o: { from: b }
";
    let errs = errors(text);
    let messages: Vec<&str> = errs.iter().map(|e| e.3.as_str()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("step `b` is part of a dependency cycle")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("step `c` is part of a dependency cycle"))
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("the name `a` is used twice"))
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("a step needs `sql`, `model`, `enrich`, `profile` or `trend`"))
    );
}

#[test]
fn reports_unset_variables_and_bad_sql_at_their_values() {
    let text = "\
pipeline: p
period: year
sources:
  a: { path: '${MISSING:?point MISSING at the exports}/a.csv', schema: { x: int64 } }
steps:
  - name: b
    sql: SELEC x FROM a
outputs:
  o: { from: b }
";
    let errs = errors(text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!((errs[0].0, errs[0].2.as_str()), (4, "sources.a.path"));
    assert!(errs[0].3.contains("point MISSING at the exports"));
    assert_eq!(
        (errs[1].0, errs[1].1, errs[1].2.as_str()),
        (7, 10, "steps[0].sql")
    );
    assert!(errs[1].3.starts_with("invalid SQL"));
}

#[test]
fn rejects_yaml_syntax_errors_with_position() {
    let errs = errors("pipeline: p\nsources: [a\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].3.starts_with("invalid YAML"), "{errs:?}");
    let errs = errors("pipeline: p\npipeline: q\n");
    assert!(errs[0].3.starts_with("invalid YAML"), "{errs:?}");
}

#[test]
fn period_grain_must_match_the_pipeline() {
    let monthly = Variables::new("2025-11".parse().expect("period"), BTreeMap::new());
    let err = load_str(
        "pipeline: p\nperiod: year\nsources: {}\nsteps: []\noutputs: {}\n",
        Path::new("p.yaml"),
        &monthly,
    )
    .expect_err("grain mismatch");
    assert!(
        err.to_string()
            .contains("runs per year, but period `2025-11` is a month")
    );
}

#[test]
fn model_steps_report_every_mistake_with_its_key() {
    let text = "\
pipeline: p
period: month
models: { dir: /models, mode: sometimes }
sources:
  t: { path: /d/t.csv, schema: { customer_id: string, revenue: double, orders: int64 } }
steps:
  - name: rfm
    model: rfm
    input: t
    scores: { method: cuts, cuts: { recency: [30, 10], frequency: [1, 2], monetary: [5] } }
    segments:
      - { name: All, when: true }
  - name: m
    model: matrix
    input: t
    x: { expr: revenue, split: middle }
    y: { expr: orders }
    cells: { high_high: A, high_low: B, low_high: C }
  - name: k
    model: kmeans
    input: t
    features: [revenue]
    categorical: [channel]
    k: 1
  - name: twins
    model: lookalike
    customers: t
    prospects: t
    best: [A]
    attributes: []
    artifact: { period: last-year }
outputs:
  o: { from: rfm }
";
    let errs = errors(text);
    let find = |path: &str| {
        errs.iter()
            .find(|e| e.2 == path)
            .unwrap_or_else(|| panic!("no error at {path}: {errs:#?}"))
    };
    assert!(find("models.mode").3.contains("unknown value `sometimes`"));
    assert!(
        find("steps[0].scores.cuts.recency")
            .3
            .contains("strictly increasing")
    );
    assert!(
        find("steps[0].scores")
            .3
            .contains("the same number of cut points (got 2, 2, 1)")
    );
    assert!(
        find("steps[1].x.split")
            .3
            .contains("unknown split `middle`")
    );
    assert!(
        find("steps[1].cells")
            .3
            .contains("missing required key `low_low`")
    );
    assert!(
        find("steps[2].categorical")
            .3
            .contains("unknown key `categorical`")
    );
    assert!(
        find("steps[2].k")
            .3
            .contains("1 is out of range: expected 2..=50")
    );
    assert!(
        find("steps[3].artifact.period")
            .3
            .contains("invalid period `last-year`")
    );
    assert!(
        find("steps[3]")
            .3
            .contains("`attributes` needs at least one column")
    );
}

#[test]
fn models_are_stored_under_the_output_dir_unless_told_otherwise() {
    let p = load_str(GOOD, Path::new("/srv/p/yearly.yaml"), &vars()).expect("valid pipeline");
    assert_eq!(p.models.dir, "/srv/p/out/models");
    assert!(p.models.fits(Grain::Year) && !p.models.fits(Grain::Month));
    let rfm = p.step("rfm").expect("rfm");
    assert_eq!(
        rfm.artifact,
        Some(ArtifactRef {
            name: "rfm".into(),
            period: None
        })
    );
    assert_eq!(p.step("segments").expect("sql").artifact, None);
}

#[test]
fn engine_settings_take_variables_and_sizes() {
    let mut v = BTreeMap::new();
    v.insert("DATA_DIR".to_string(), "/data".to_string());
    v.insert("PARTS".to_string(), "3".to_string());
    let text = format!(
        "{GOOD}\nengine:\n  target_partitions: ${{PARTS}}\n  memory_limit: 512MiB\n  spill_dir: tmp/spill\n"
    );
    let vars = Variables::new("2025".parse().expect("period"), v);
    let p = load_str(&text, Path::new("/srv/p/yearly.yaml"), &vars).expect("valid pipeline");
    assert_eq!(p.engine.target_partitions, Some(3));
    assert_eq!(p.engine.memory_limit, Some(512 << 20));
    assert_eq!(p.engine.spill_dir.as_deref(), Some("/srv/p/tmp/spill"));
    let bad = format!("{GOOD}\nengine:\n  target_partitions: ${{DATA_DIR}}\n");
    let found = errors(&bad);
    assert!(
        found
            .iter()
            .any(|(_, _, key, m)| key == "engine.target_partitions" && m.contains("`/data`")),
        "{found:?}"
    );
}

#[test]
fn bad_row_limits_decode_with_a_default_ratio_and_report_bad_values_at_their_keys() {
    let text = "\
pipeline: p
period: year
sources:
  a:
    path: /d/a.csv
    max_bad_rows: 500
    max_bad_ratio: 2%
    schema: { id: int64 }
  b:
    path: /d/b.parquet
    on_bad_row: quarantine
    schema: { id: int64 }
steps:
  - { name: s, sql: SELECT id FROM a UNION ALL SELECT id FROM b }
outputs:
  out: { from: s }
";
    let p = load_str(text, Path::new("p.yaml"), &vars()).expect("valid pipeline");
    let limits = |name: &str| {
        p.sources
            .iter()
            .find(|s| s.name.value == name)
            .map(|s| s.bad_row_limits)
            .expect("source")
    };
    assert_eq!(
        limits("a"),
        BadRowLimits {
            max_rows: Some(500),
            max_ratio: 0.02
        }
    );
    // Parquet sources quarantine lossy values now; the default ratio applies.
    assert_eq!(limits("b"), BadRowLimits::default());
    assert_eq!(limits("b").max_ratio, 0.1);

    let errs = errors(
        &text
            .replace("max_bad_rows: 500", "max_bad_rows: -1")
            .replace("max_bad_ratio: 2%", "max_bad_ratio: 1.5"),
    );
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(
        (errs[0].0, errs[0].1, errs[0].2.as_str()),
        (6, 19, "sources.a.max_bad_rows")
    );
    assert!(errs[0].3.contains("out of range"), "{}", errs[0].3);
    assert_eq!(
        (errs[1].0, errs[1].1, errs[1].2.as_str()),
        (7, 20, "sources.a.max_bad_ratio")
    );
    assert!(errs[1].3.contains("expected a share"), "{}", errs[1].3);
}

#[test]
fn bad_row_limits_stop_at_the_count_or_at_the_ratio_once_enough_rows_are_read() {
    let limits = BadRowLimits {
        max_rows: Some(10),
        max_ratio: 0.1,
    };
    assert_eq!(limits.exceeded(100_000, 10), None);
    assert!(
        limits
            .exceeded(100_000, 11)
            .is_some_and(|m| m.contains("max_bad_rows: 10"))
    );
    let ratio = BadRowLimits::default();
    // 500 of 999 rows: too few rows to judge; 101 of 1000: over a tenth.
    assert_eq!(ratio.exceeded(999, 500), None);
    assert_eq!(ratio.exceeded(1000, 100), None);
    assert!(
        ratio
            .exceeded(1000, 101)
            .is_some_and(|m| m.contains("max_bad_ratio: 0.1"))
    );
}

/// Item 18: a source whose path had an unset variable was left out, and every step reading it
/// got a second, misleading "unknown source or step" error.
#[test]
fn unset_variable_does_not_add_unknown_source_errors() {
    let text = "pipeline: p\nperiod: year\nsources:\n  orders: { path: '${NOPE}/o.csv', schema: { x: int64 } }\nsteps:\n  - { name: a, sql: SELECT x FROM orders }\n  - { name: b, model: rfm, input: orders, segments: [ { name: All, when: true } ] }\noutputs: { a: { from: orders } }\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].3.contains("`NOPE` is not set"), "{errs:?}");
}

/// Item 18: a pipeline file with a Windows-1252 byte said only "not UTF-8 text".
#[test]
fn non_utf8_pipeline_names_line_and_column() {
    let bytes = b"pipeline: p\nperiod: year\n# caf\xE9\n";
    let err = load_bytes(bytes, Path::new("p.yaml"), &vars()).expect_err("not UTF-8");
    let text = err.to_string();
    assert!(
        text.starts_with("p.yaml:3:6: the pipeline file is not UTF-8 text: byte 0xE9"),
        "{text}"
    );
}

/// Item 18: ordering 4,000 steps scanned every step for every step (cubic); the order is
/// still declaration order among ready steps.
#[test]
fn execution_order_is_linear_and_stable() {
    let mut text = String::from(
        "pipeline: p\nperiod: year\nsources:\n  o: { path: o.csv, schema: { x: int64 } }\nsteps:\n",
    );
    let n = 4000;
    // Step i reads step i+1: the last is ready first, so order is reversed.
    for i in 0..n {
        let from = if i + 1 < n {
            format!("s{}", i + 1)
        } else {
            "o".into()
        };
        text.push_str(&format!(
            "  - {{ name: s{i}, sql: SELECT x FROM {from} }}\n"
        ));
    }
    text.push_str("outputs: { out: { from: s0 } }\n");
    let started = std::time::Instant::now();
    let p = load_str(&text, Path::new("p.yaml"), &vars()).expect("valid");
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    assert_eq!(p.execution_order[1], format!("s{}", n - 1));
    assert_eq!(p.execution_order.last().map(String::as_str), Some("s0"));
    assert_eq!(p.key_location("steps[3].sql"), Some(Location::new(9, 17)));
}

const TREND_PIPELINE: &str = "\
pipeline: trends
period: year
sources:
  m: { path: /d/m.parquet, schema: { segment_from: string } }
steps:
  - { name: moves, sql: SELECT * FROM m }
outputs:
  migration: { from: moves }
";

#[test]
fn a_report_block_is_a_segment_report_or_a_trend_report() {
    let text =
        format!("{TREND_PIPELINE}report:\n  title: Trends\n  trends: {{ migration: migration }}\n");
    let p = load_str(&text, Path::new("t.yaml"), &vars()).expect("valid");
    let t = p.trend_report.expect("trend report");
    assert_eq!(t.migration.map(|m| m.value).as_deref(), Some("migration"));
    assert_eq!((t.kpis, t.title.as_deref()), (None, Some("Trends")));
    assert!(p.report.is_none());

    let both = format!(
        "{TREND_PIPELINE}report:\n  customers: migration\n  segment: s\n  trends: {{ migration: migration }}\n"
    );
    let errs = errors(&both);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!((errs[0].0, errs[0].2.as_str()), (10, "report"));
    assert!(
        errs[0]
            .3
            .starts_with("a report block is either a segment report (customers, segment, best, by) or a trend report (trends), not both: this one has `trends` and `customers`, `segment`"),
        "{}",
        errs[0].3
    );

    let errs = errors(&format!(
        "{TREND_PIPELINE}report:\n  trends: {{ kpis: kpi, migraton: migration }}\n"
    ));
    let messages: Vec<(&str, &str)> = errs.iter().map(|e| (e.2.as_str(), e.3.as_str())).collect();
    assert!(
        messages
            .iter()
            .any(|(k, m)| *k == "report.trends.kpis" && m.starts_with("no output named `kpi` |")),
        "{messages:?}"
    );
    assert!(
        messages.contains(&(
            "report.trends.migraton",
            "unknown key `migraton` | did you mean `migration`?"
        )),
        "{messages:?}"
    );

    let errs = errors(&format!("{TREND_PIPELINE}report:\n  trends: {{}}\n"));
    assert!(errs[0].3.starts_with("no trend output named |"), "{errs:?}");
}
