//! Model artifacts: yearly runs fit and store parameters, monthly runs apply them frozen.
//! Expected values are worked out by hand in the comments.

use crate::common::{
    Scratch, current_artifact, parquet_files, project, read_parquet, row, run_pipeline,
};

fn output(s: &Scratch, table: &str, period: &str, columns: &[&str]) -> Vec<Vec<String>> {
    let files = parquet_files(&s.path(&format!("out/{table}/period={period}")));
    assert_eq!(files.len(), 1, "{table} {period}");
    let (names, rows) = read_parquet(&files[0]);
    project(&names, &rows, columns)
}

fn artifact(s: &Scratch, name: &str, period: &str) -> serde_json::Value {
    let path = current_artifact(&s.path("out"), name, period);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("artifact json")
}

fn sha256(path: &std::path::Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("read")))
}

/// The yearly fixture of `models.rs`: cut points (ntile buckets of 2 customers, largest value
/// per bucket; R buckets from most days down) — R: {1096, 366} {306, 61} {1, 1} → [1, 306];
/// F: {1, 1} {1, 2} {2, 3} → [1, 2]; M: {5, 20} {50, 175} {300, 500} → [20, 175].
const YEARLY_ORDERS: &str = "\
order_id,customer_id,order_date,amount
1,A,2025-12-31,100.00
2,A,2025-12-01,50.00
3,A,2025-06-01,25.00
4,B,2025-11-01,300.00
5,C,2025-03-01,20.00
6,C,2025-03-01,30.00
7,D,2024-12-31,500.00
8,E,2025-12-31,10.00
9,E,2025-10-10,10.00
11,F,2023-01-01,5.00
";

/// February 2026 (reference date 2026-03-01):
///
/// | cust | orders                    | R days | F | M    | r (cuts 1, 306) | f (1, 2) | m (20, 175) | segment      |
/// |------|---------------------------|--------|---|------|-----------------|----------|-------------|--------------|
/// | G    | 2026-02-27 1000           | 2      | 1 | 1000 | 2               | 1        | 3           | Big spenders |
/// | H    | 2026-01-15 15, 02-01 15   | 28     | 2 | 30   | 2               | 2        | 2           | Others       |
/// | I    | 2025-06-01 200            | 273    | 1 | 200  | 2               | 1        | 3           | Big spenders |
/// | J    | 2024-01-01 50             | 790    | 1 | 50   | 1               | 1        | 2           | Lost         |
///
/// A refit would differ: ntile over these four puts G alone in R bucket 3 (r = 3).
const MONTHLY_ORDERS: &str = "\
order_id,customer_id,order_date,amount
21,G,2026-02-27,1000.00
22,H,2026-01-15,15.00
23,H,2026-02-01,15.00
24,I,2025-06-01,200.00
25,J,2024-01-01,50.00
";

fn rfm_pipeline(grain: &str, segments: &str) -> String {
    format!(
        r#"
pipeline: rfm_{grain}
period: {grain}
output_dir: out
sources:
  orders:
    path: orders.csv
    schema:
      order_id: int64
      customer_id: string
      order_date: date
      amount: "decimal(10,2)"
steps:
  - name: rfm
    model: rfm
    input: orders
    order_id: order_id
    scores: {{ bins: 3, method: ntile }}
    segments:
{segments}
outputs:
  rfm: {{ from: rfm, order_by: [customer_id] }}
"#
    )
}

const YEARLY_SEGMENTS: &str = r#"      - { name: Champions, when: "r >= 3 AND f >= 3" }
      - { name: Big spenders, when: "m = 3" }
      - { name: Lost, when: "r = 1" }
      - { name: Others, when: true }"#;

#[test]
fn monthly_runs_score_with_the_frozen_yearly_rfm_model() {
    let s = Scratch::new();
    s.write("orders.csv", YEARLY_ORDERS);
    let yearly = s.write("yearly.yaml", &rfm_pipeline("year", YEARLY_SEGMENTS));
    let run = run_pipeline(&yearly, "2025", s.dir.path());
    run.assert_code(0);
    let model = artifact(&s, "rfm", "2025");
    assert_eq!(model["model"], "rfm");
    assert_eq!(model["period"], "2025");
    assert_eq!(model["fitted_rows"], 6);
    let cuts = &model["parameters"]["cut_points"];
    assert_eq!(cuts["recency_days"], serde_json::json!([1.0, 306.0]));
    assert_eq!(cuts["frequency"], serde_json::json!([1.0, 2.0]));
    assert_eq!(cuts["monetary"], serde_json::json!([20.0, 175.0]));
    assert_eq!(model["parameters"]["segments"][1]["name"], "Big spenders");
    let manifest = run.manifest();
    let record = &manifest.models[0];
    let artifact_file = current_artifact(&s.path("out"), "rfm", "2025");
    assert_eq!(record.path, artifact_file.display().to_string());
    assert_eq!(
        (
            record.mode.as_str(),
            record.committed,
            record.sha256.clone()
        ),
        ("fit", true, sha256(&artifact_file))
    );

    // The monthly pipeline declares other segments: the frozen model's rules win.
    s.write("orders.csv", MONTHLY_ORDERS);
    let monthly = s.write(
        "monthly.yaml",
        &rfm_pipeline("month", "      - { name: Everyone, when: true }"),
    );
    let run = run_pipeline(&monthly, "2026-02", s.dir.path());
    run.assert_code(0);
    let cols = [
        "customer_id",
        "recency_days",
        "frequency",
        "monetary",
        "rfm_code",
        "segment",
    ];
    assert_eq!(
        output(&s, "rfm", "2026-02", &cols),
        vec![
            row(&["G", "2", "1", "1000.00", "213", "Big spenders"]),
            row(&["H", "28", "2", "30.00", "222", "Others"]),
            row(&["I", "273", "1", "200.00", "213", "Big spenders"]),
            row(&["J", "790", "1", "50.00", "112", "Lost"]),
        ]
    );
    let manifest = run.manifest();
    let record = &manifest.models[0];
    assert_eq!(record.mode, "apply");
    assert_eq!(record.artifact_period, "2025");
    assert_eq!(record.sha256, sha256(&artifact_file));
    assert!(
        !s.path("out/models/rfm/period=2026-02").exists(),
        "a monthly run never refits"
    );

    // March: J buys again on 2026-03-10 (reference 2026-04-01): R 22 → r 2, F 2 → f 2,
    // M 150 → m 2: Others. Still the 2025 model.
    s.write(
        "orders.csv",
        &format!("{MONTHLY_ORDERS}26,J,2026-03-10,100.00\n"),
    );
    let run = run_pipeline(&monthly, "2026-03", s.dir.path());
    run.assert_code(0);
    let march = output(&s, "rfm", "2026-03", &cols);
    assert_eq!(march[3], row(&["J", "22", "2", "150.00", "222", "Others"]));
    assert_eq!(run.manifest().models[0].artifact_period, "2025");
    // The yearly artifact is untouched by the monthly runs.
    assert_eq!(record.sha256, sha256(&artifact_file));
}

#[test]
fn a_monthly_run_without_a_yearly_artifact_is_a_configuration_error() {
    let s = Scratch::new();
    s.write("orders.csv", MONTHLY_ORDERS);
    let monthly = s.write("monthly.yaml", &rfm_pipeline("month", YEARLY_SEGMENTS));
    let run = run_pipeline(&monthly, "2026-02", s.dir.path());
    run.assert_code(78);
    assert!(
        run.stderr.contains("no artifact of model `rfm`") && run.stderr.contains("2026-02-01"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_named_artifact_period_is_used_instead_of_the_latest() {
    let s = Scratch::new();
    s.write("orders.csv", YEARLY_ORDERS);
    let yearly = s.write("yearly.yaml", &rfm_pipeline("year", YEARLY_SEGMENTS));
    run_pipeline(&yearly, "2025", s.dir.path()).assert_code(0);
    // 2026 refit on the February data: ntile cut points R [28, 273]... differ from 2025's.
    s.write("orders.csv", MONTHLY_ORDERS);
    run_pipeline(&yearly, "2026", s.dir.path()).assert_code(0);
    let pinned = rfm_pipeline("month", YEARLY_SEGMENTS).replace(
        "    model: rfm\n",
        "    model: rfm\n    artifact: { period: \"2025\" }\n",
    );
    let monthly = s.write("monthly.yaml", &pinned);
    let run = run_pipeline(&monthly, "2027-02", s.dir.path());
    run.assert_code(0);
    assert_eq!(run.manifest().models[0].artifact_period, "2025");
    let latest = s.write("latest.yaml", &rfm_pipeline("month", YEARLY_SEGMENTS));
    let run = run_pipeline(&latest, "2027-02", s.dir.path());
    run.assert_code(0);
    assert_eq!(run.manifest().models[0].artifact_period, "2026");
}

#[test]
fn refitting_the_same_data_gives_the_same_artifact_bytes() {
    let s = Scratch::new();
    s.write("orders.csv", YEARLY_ORDERS);
    let yearly = s.write("yearly.yaml", &rfm_pipeline("year", YEARLY_SEGMENTS));
    run_pipeline(&yearly, "2025", s.dir.path()).assert_code(0);
    let path = current_artifact(&s.path("out"), "rfm", "2025");
    let first = std::fs::read(&path).expect("read");
    run_pipeline(&yearly, "2025", s.dir.path()).assert_code(0);
    // The same version file, the same bytes, and no second version.
    assert_eq!(current_artifact(&s.path("out"), "rfm", "2025"), path);
    let second = std::fs::read(&path).expect("read");
    assert_eq!(first, second);
    let files = std::fs::read_dir(s.path("out/models/rfm/period=2025"))
        .expect("ls")
        .count();
    assert_eq!(files, 2, "one version file and its pointer");
}

/// Explicit cut points, 4 bins: R [30, 90, 365], F [1, 2, 3], M [25, 100, 400].
/// From the yearly fixture: A R1 F3 M175 → r 4, f 1+2 = 3, m 1+2 = 3;
/// D R366 F1 M500 → r 4−3 = 1, f 1, m 4; F R1096 F1 M5 → 1, 1, 1.
#[test]
fn rfm_with_declared_cut_points() {
    let s = Scratch::new();
    s.write("orders.csv", YEARLY_ORDERS);
    let text = rfm_pipeline("year", YEARLY_SEGMENTS).replace(
        "scores: { bins: 3, method: ntile }",
        "scores: { method: cuts, cuts: { recency: [30, 90, 365], frequency: [1, 2, 3], monetary: [25, 100, 400] } }",
    );
    let p = s.write("cuts.yaml", &text);
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    let rows = output(&s, "rfm", "2025", &["customer_id", "rfm_code"]);
    assert_eq!(rows[0], row(&["A", "433"]));
    assert_eq!(rows[3], row(&["D", "114"]));
    assert_eq!(rows[5], row(&["F", "111"]));
    assert_eq!(artifact(&s, "rfm", "2025")["parameters"]["bins"], 4);
}

const VALUES: &str = "\
customer_id,revenue,orders
c01,100,5
c02,90,1
c03,80,4
c04,70,2
c05,60,3
c06,50,1
c07,40,1
c08,30,1
c09,20,1
c10,10,1
";

/// Top 20% / next 30% / rest by customers: share before = (rank − 1) / 10, so ranks 1–2 are
/// Top (share 0, 0.1 < 0.2), ranks 3–5 Middle (0.2, 0.3, 0.4 < 0.5), the rest Rest. Fitted
/// thresholds: Top ≥ 90, Middle ≥ 60. Applied in a month to values 95, 90, 89, 60, 59:
/// Top, Top, Middle, Middle, Rest.
#[test]
fn value_tiers_by_share_of_customers_and_their_frozen_thresholds() {
    let s = Scratch::new();
    s.write("values.csv", VALUES);
    let pipeline = |grain: &str| {
        format!(
            r#"
pipeline: tiers
period: {grain}
sources:
  values:
    path: values.csv
    schema: {{ customer_id: string, revenue: int64, orders: int64 }}
steps:
  - name: tier
    model: pareto
    input: values
    value: revenue
    basis: customers
    tiers: {{ Top: 0.20, Middle: 0.50 }}
    rest: Rest
outputs:
  tier: {{ from: tier, order_by: [customer_id] }}
"#
        )
    };
    let yearly = s.write("yearly.yaml", &pipeline("year"));
    run_pipeline(&yearly, "2025", s.dir.path()).assert_code(0);
    let tiers: Vec<String> = output(&s, "tier", "2025", &["tier"])
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(
        tiers,
        [
            "Top", "Top", "Middle", "Middle", "Middle", "Rest", "Rest", "Rest", "Rest", "Rest"
        ]
    );
    let thresholds = &artifact(&s, "tier", "2025")["parameters"]["tiers"];
    assert_eq!(thresholds[0]["min_value"], 90.0);
    assert_eq!(thresholds[1]["min_value"], 60.0);

    s.write(
        "values.csv",
        "customer_id,revenue,orders\nm1,95,1\nm2,90,1\nm3,89,1\nm4,60,1\nm5,59,1\n",
    );
    let monthly = s.write("monthly.yaml", &pipeline("month"));
    run_pipeline(&monthly, "2026-01", s.dir.path()).assert_code(0);
    let tiers: Vec<String> = output(&s, "tier", "2026-01", &["tier"])
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(tiers, ["Top", "Top", "Middle", "Middle", "Rest"]);
}

/// Median revenue of 10..100 (ten values) = (50 + 60) / 2 = 55; median orders of
/// 5,1,4,2,3,1,1,1,1,1 = 1. High = strictly above: c01 (100, 5) Stars, c02 (90, 1) Big
/// spenders, c03 (80, 4) Stars, c05 (60, 3) Stars, c06 (50, 1) Occasional, c04 (70, 2) Stars.
#[test]
fn value_by_loyalty_matrix_splits_at_the_fitted_medians() {
    let s = Scratch::new();
    s.write("values.csv", VALUES);
    let p = s.write(
        "matrix.yaml",
        r#"
pipeline: matrix
period: year
sources:
  values:
    path: values.csv
    schema: { customer_id: string, revenue: int64, orders: int64 }
steps:
  - name: value_loyalty
    model: matrix
    input: values
    x: { name: value, expr: revenue }
    y: { name: loyalty, expr: "orders", split: median }
    cells: { high_high: Stars, high_low: Big spenders, low_high: Loyal, low_low: Occasional }
outputs:
  matrix: { from: value_loyalty, order_by: [customer_id] }
"#,
    );
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    let rows = output(
        &s,
        "matrix",
        "2025",
        &["customer_id", "value", "loyalty", "cell"],
    );
    assert_eq!(rows[0], row(&["c01", "100.0", "5.0", "Stars"]));
    assert_eq!(rows[1], row(&["c02", "90.0", "1.0", "Big spenders"]));
    assert_eq!(rows[3], row(&["c04", "70.0", "2.0", "Stars"]));
    assert_eq!(rows[5], row(&["c06", "50.0", "1.0", "Occasional"]));
    let params = &artifact(&s, "value_loyalty", "2025")["parameters"];
    assert_eq!(params["x"]["threshold"], 55.0);
    assert_eq!(params["y"]["threshold"], 1.0);
}

/// Rules are frozen too: the monthly YAML's rule change has no effect until the next fit.
#[test]
fn rules_segments_come_from_the_frozen_rules() {
    let s = Scratch::new();
    s.write("values.csv", VALUES);
    let pipeline = |grain: &str, threshold: u32| {
        format!(
            r#"
pipeline: rules
period: {grain}
sources:
  values:
    path: values.csv
    schema: {{ customer_id: string, revenue: int64, orders: int64 }}
steps:
  - name: lifecycle
    model: rules
    input: values
    segments:
      - {{ name: VIP, when: "revenue >= {threshold}" }}
      - {{ name: Repeat, when: "orders > 1" }}
      - {{ name: Other, when: true }}
outputs:
  lifecycle: {{ from: lifecycle, order_by: [customer_id] }}
"#
        )
    };
    run_pipeline(
        &s.write("y.yaml", &pipeline("year", 80)),
        "2025",
        s.dir.path(),
    )
    .assert_code(0);
    run_pipeline(
        &s.write("m.yaml", &pipeline("month", 10)),
        "2026-01",
        s.dir.path(),
    )
    .assert_code(0);
    for period in ["2025", "2026-01"] {
        let segments: Vec<String> = output(&s, "lifecycle", period, &["segment"])
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        // c01–c03 ≥ 80: VIP; c04 (2 orders), c05 (3): Repeat; the rest Other.
        assert_eq!(
            segments,
            [
                "VIP", "VIP", "VIP", "Repeat", "Repeat", "Other", "Other", "Other", "Other",
                "Other"
            ],
            "{period}"
        );
    }
}

/// Index = (share of best customers with the value) / (share of all customers with it) × 100,
/// 10 customers, 4 best (c1–c4):
/// - region North: 4 customers, 3 best → (3/4)/(4/10) = 187.5; South: 5, 1 → (1/4)/(5/10) = 50;
///   East: 1 customer < min_customers 2 → 100
/// - age young: 4, 3 → 187.5; old: 6, 1 → (1/4)/(6/10) = 41.667
///
/// Prospects: p1 North young (187.5 + 187.5)/2 = 187.5; p3 West (unseen → 100) young → 143.75;
/// p4 East old (100 + 41.667)/2 = 70.833; p2 South old (50 + 41.667)/2 = 45.833.
#[test]
fn lookalikes_are_ranked_by_the_mean_index_of_their_attributes() {
    let s = Scratch::new();
    s.write(
        "customers.csv",
        "customer_id,segment,region,age_band
c1,Best,North,young
c2,Best,North,young
c3,Best,North,old
c4,Best,South,young
c5,Rest,North,old
c6,Rest,South,old
c7,Rest,South,old
c8,Rest,South,young
c9,Rest,South,old
c10,Rest,East,old
",
    );
    s.write(
        "prospects.csv",
        "prospect_id,region,age_band\np1,North,young\np2,South,old\np3,West,young\np4,East,old\n",
    );
    let p = s.write(
        "lookalike.yaml",
        r#"
pipeline: twins
period: year
sources:
  customers:
    path: customers.csv
    schema: { customer_id: string, segment: string, region: string, age_band: string }
  prospects:
    path: prospects.csv
    schema: { prospect_id: string, region: string, age_band: string }
steps:
  - name: twins
    model: lookalike
    customers: customers
    prospects: prospects
    key: prospect_id
    segment: segment
    best: [Best]
    attributes: [region, age_band]
    min_customers: 2
outputs:
  twins: { from: twins, order_by: [lookalike_rank] }
"#,
    );
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    let rows = output(
        &s,
        "twins",
        "2025",
        &["prospect_id", "lookalike_rank", "lookalike_score", "reason"],
    );
    let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, ["p1", "p3", "p4", "p2"]);
    let scores: Vec<f64> = rows.iter().map(|r| r[2].parse().expect("score")).collect();
    for (got, want) in scores
        .iter()
        .zip([187.5, 143.75, 70.0 + 5.0 / 6.0, 45.0 + 5.0 / 6.0])
    {
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }
    assert_eq!(rows[0][3], "region=North (index 188)");
    assert_eq!(rows[1][3], "age_band=young (index 188)");
    assert_eq!(rows[2][3], "region=East (index 100)");
    let indexes = &artifact(&s, "twins", "2025")["parameters"]["indexes"];
    assert_eq!(indexes[0]["attribute"], "region");
    assert_eq!(indexes[0]["values"][0]["value"], "East");
    assert_eq!(indexes[0]["values"][0]["index"], 100.0);
    assert_eq!(indexes[0]["values"][1]["index"], 187.5);
}

/// Customers' revenue is exactly 1000 + 10·employees + {A: 0, B: 500, C: −200}[industry], so
/// least squares recovers those coefficients. Market non-customers: m1 (100, A) 2000;
/// m2 (60, B) 2100; m3 (40, C) 1200; m4 (10, D: unseen → baseline) 1100; m5 (2, B) 1520 with
/// the industry term (500) above the employees term (20). o1 is a customer: not scored.
#[test]
fn b2b_potential_regression_predicts_non_customers() {
    let s = Scratch::new();
    s.write(
        "customers.csv",
        "org_no,employees,industry,revenue\no1,10,A,1100\no2,20,A,1200\no3,5,B,1550\no4,30,B,1800\no5,8,C,880\no6,12,C,920\n",
    );
    s.write(
        "market.csv",
        "org_no,employees,industry\no1,10,A\nm1,100,A\nm2,60,B\nm3,40,C\nm4,10,D\nm5,2,B\n",
    );
    let p = s.write(
        "potential.yaml",
        r#"
pipeline: potential
period: year
sources:
  customers:
    path: customers.csv
    schema: { org_no: string, employees: int64, industry: string, revenue: double }
  market:
    path: market.csv
    schema: { org_no: string, employees: int64, industry: string }
steps:
  - name: potential
    model: potential
    customers: customers
    market: market
    key: org_no
    target: revenue
    numeric: [employees]
    categorical: [industry]
  - name: potential_by_industry
    sql: SELECT industry, count(*) AS companies, sum(predicted_value) AS potential FROM potential GROUP BY industry
outputs:
  potential: { from: potential, order_by: [org_no] }
  potential_by_industry: { from: potential_by_industry, order_by: [industry] }
"#,
    );
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    let rows = output(
        &s,
        "potential",
        "2025",
        &["org_no", "predicted_value", "reason"],
    );
    let expected = [
        ("m1", 2000.0, "employees"),
        ("m2", 2100.0, "employees"),
        ("m3", 1200.0, "employees"),
        ("m4", 1100.0, "employees"),
        ("m5", 1520.0, "industry"),
    ];
    assert_eq!(rows.len(), expected.len());
    for (r, (id, value, reason)) in rows.iter().zip(expected) {
        assert_eq!(r[0], id);
        let got: f64 = r[1].parse().expect("number");
        assert!((got - value).abs() < 1e-6, "{id}: {got}");
        assert_eq!(r[2], reason, "{id}");
    }
    let by_industry = output(
        &s,
        "potential_by_industry",
        "2025",
        &["industry", "companies", "potential"],
    );
    let b: f64 = by_industry[1][2].parse().expect("number");
    assert_eq!(by_industry[1][..2], row(&["B", "2"])[..]);
    assert!((b - 3620.0).abs() < 1e-6);
    let params = &artifact(&s, "potential", "2025")["parameters"];
    assert!((params["numeric"][0]["coefficient"].as_f64().expect("f64") - 10.0).abs() < 1e-9);
    assert!((params["r_squared"].as_f64().expect("f64") - 1.0).abs() < 1e-9);
}

/// Centroid method. All six customers: income 50, 70, 10, 30, 40, 40 (mean 40, population sd
/// √(2000/6) = 18.257), age 30, 50, 20, 40, 60, 40 (mean 40, sd √(1000/6) = 12.910). The best
/// (the first two) average income 60 → z 1.0954, age 40 → z 0.
/// q1 (60, 40) sits on the centroid: distance 0, score 100, closest on income (tie → first).
/// q2 (40, 53): z (0, 1.0070); distance √(1.0954² + 1.0070²) = 1.4880; score 100 / 2.4880
/// = 40.19; closest on age.
#[test]
fn lookalikes_by_distance_to_the_best_customers_centroid() {
    let s = Scratch::new();
    s.write(
        "customers.csv",
        "customer_id,segment,income,age\nc1,Best,50,30\nc2,Best,70,50\nc3,Rest,10,20\nc4,Rest,30,40\nc5,Rest,40,60\nc6,Rest,40,40\n",
    );
    s.write(
        "prospects.csv",
        "prospect_id,income,age\nq1,60,40\nq2,40,53\n",
    );
    let p = s.write(
        "lookalike.yaml",
        r#"
pipeline: twins
period: year
sources:
  customers:
    path: customers.csv
    schema: { customer_id: string, segment: string, income: double, age: double }
  prospects:
    path: prospects.csv
    schema: { prospect_id: string, income: double, age: double }
steps:
  - name: twins
    model: lookalike
    method: centroid
    customers: customers
    prospects: prospects
    key: prospect_id
    best: [Best]
    attributes: [income, age]
outputs:
  twins: { from: twins, order_by: [lookalike_rank] }
"#,
    );
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    let rows = output(
        &s,
        "twins",
        "2025",
        &["prospect_id", "lookalike_score", "reason"],
    );
    let sd_income = (2000.0f64 / 6.0).sqrt();
    let sd_age = (1000.0f64 / 6.0).sqrt();
    let distance = ((20.0 / sd_income).powi(2) + (13.0 / sd_age).powi(2)).sqrt();
    assert_eq!(rows[0][0], "q1");
    assert!((rows[0][1].parse::<f64>().expect("score") - 100.0).abs() < 1e-9);
    assert_eq!(rows[0][2], "closest on income");
    assert_eq!(rows[1][0], "q2");
    let q2: f64 = rows[1][1].parse().expect("score");
    assert!((q2 - 100.0 / (1.0 + distance)).abs() < 1e-9, "{q2}");
    assert_eq!(rows[1][2], "closest on age");
}

/// A customer without a value ranks last and lands in the rest tier, in the fit as in apply.
/// With c11 (NULL revenue) added to the ten values, c01 keeps rank 1 and c11 is rank 11.
#[test]
fn a_customer_without_a_value_is_in_the_rest_tier() {
    let s = Scratch::new();
    s.write("values.csv", &format!("{VALUES}c11,,1\n"));
    let p = s.write(
        "p.yaml",
        r#"
pipeline: tiers
period: year
sources:
  values:
    path: values.csv
    schema: { customer_id: string, revenue: int64, orders: int64 }
steps:
  - name: tier
    model: pareto
    input: values
    value: revenue
outputs:
  tier: { from: tier, order_by: [customer_id] }
"#,
    );
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    let rows = output(&s, "tier", "2025", &["customer_id", "value_rank", "tier"]);
    assert_eq!(rows[0], row(&["c01", "1", "A"]));
    assert_eq!(rows[10], row(&["c11", "11", "C"]));
}

/// `monetary: mean` of integer amounts is not an integer division: (100 + 51) / 2 = 75.5.
#[test]
fn rfm_mean_of_integer_amounts() {
    let s = Scratch::new();
    s.write("orders.csv", "order_id,customer_id,order_date,amount\n1,A,2025-03-01,100\n2,A,2025-04-01,51\n3,B,2025-05-01,10\n");
    let p = s.write(
        "p.yaml",
        r#"
pipeline: mean
period: year
sources:
  orders:
    path: orders.csv
    schema: { order_id: int64, customer_id: string, order_date: date, amount: int64 }
steps:
  - name: rfm
    model: rfm
    input: orders
    order_id: order_id
    monetary: mean
    scores: { bins: 2, method: quantile }
    segments: [ { name: All, when: true } ]
outputs:
  rfm: { from: rfm, order_by: [customer_id] }
"#,
    );
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    let rows = output(&s, "rfm", "2025", &["customer_id", "monetary"]);
    assert_eq!(rows, vec![row(&["A", "75.5"]), row(&["B", "10.0"])]);
}

/// A run that fails its checks writes no artifact; the manifest says it was not committed.
#[test]
fn a_failed_run_writes_no_artifact() {
    let s = Scratch::new();
    s.write("orders.csv", YEARLY_ORDERS);
    let text = rfm_pipeline("year", YEARLY_SEGMENTS).replace(
        "    model: rfm\n",
        "    model: rfm\n    checks: [ { row_count: { min: 100 } } ]\n",
    );
    let p = s.write("p.yaml", &text);
    let run = run_pipeline(&p, "2025", s.dir.path());
    run.assert_code(1);
    assert!(!s.path("out/models/rfm/period=2025").exists());
    let manifest = run.manifest();
    assert_eq!(
        (
            manifest.models[0].mode.as_str(),
            manifest.models[0].committed
        ),
        ("fit", false)
    );
}

/// Two steps fitting one model name would overwrite each other's artifact.
#[test]
fn two_fitted_steps_may_not_share_a_model_name() {
    let s = Scratch::new();
    s.write("orders.csv", YEARLY_ORDERS);
    let text = rfm_pipeline("year", YEARLY_SEGMENTS).replace(
        "outputs:",
        "  - name: rfm_again\n    model: rfm\n    input: orders\n    order_id: order_id\n    artifact: { name: rfm }\n    segments: [ { name: All, when: true } ]\noutputs:",
    );
    let p = s.write("p.yaml", &text);
    let run = run_pipeline(&p, "2025", s.dir.path());
    run.assert_code(78);
    assert!(
        run.stderr
            .contains("steps `rfm` and `rfm_again` both fit the model `rfm`"),
        "{}",
        run.stderr
    );
}

/// CLV applied in a month measures time in the fitted model's unit, not the monthly YAML's:
/// fitted with `time_unit: days`, the monthly pipeline (default weeks) still gives T in days —
/// customer X bought first on 2025-01-01, so at the end of January 2026 T = 395.
#[test]
fn clv_applied_monthly_keeps_the_models_time_unit() {
    let s = Scratch::new();
    let mut orders = String::from("customer_id,order_date,amount\n");
    for (i, c) in ["X", "Y", "Z", "W", "V", "U"].iter().enumerate() {
        orders.push_str(&format!("{c},2025-01-0{},{}\n", i + 1, 10 + i));
        for k in 0..i {
            orders.push_str(&format!("{c},2025-{:02}-15,{}\n", 2 + k, 20 + k));
        }
    }
    s.write("orders.csv", &orders);
    let pipeline = |grain: &str, unit: &str| {
        format!(
            r#"
pipeline: clv_{grain}
period: {grain}
sources:
  orders:
    path: orders.csv
    schema: {{ customer_id: string, order_date: date, amount: double }}
steps:
  - name: clv
    model: clv
    input: orders
    {unit}
outputs:
  clv: {{ from: clv, order_by: [customer_id] }}
"#
        )
    };
    run_pipeline(
        &s.write("y.yaml", &pipeline("year", "time_unit: days")),
        "2025",
        s.dir.path(),
    )
    .assert_code(0);
    run_pipeline(
        &s.write("m.yaml", &pipeline("month", "")),
        "2026-01",
        s.dir.path(),
    )
    .assert_code(0);
    let rows = output(&s, "clv", "2026-01", &["customer_id", "t"]);
    let x = rows.iter().find(|r| r[0] == "X").expect("X");
    assert_eq!(x[1], "395.0");
}

/// Regression (issue 11 item 13, lookalike centroids): mean and standard deviation were
/// `avg`/`stddev_pop` over DOUBLEs, whose bits depend on the order partitions arrive in, so
/// the stored model and the scores could differ between parallelism settings and reruns.
/// Many rows of values with long fractions, run at 1, 2 and 8 partitions: the artifact and the
/// scored output are the same bytes, and the mean is the exactly computed one.
#[test]
fn lookalike_centroid_is_the_same_bits_at_any_parallelism() {
    let s = Scratch::new();
    let mut customers = String::from("customer_id,segment,income,age\n");
    let mut sum = 0.0f64;
    for i in 0..120_000u32 {
        // Values with 6 decimals whose float sum is sensitive to order.
        let income = f64::from(i % 977) * 1234.567891 + 0.000001 * f64::from(i % 7);
        sum += income;
        let segment = if i % 10 == 0 { "Best" } else { "Rest" };
        customers.push_str(&format!("c{i},{segment},{income:.6},{}\n", 20 + i % 50));
    }
    s.write("customers.csv", &customers);
    s.write(
        "prospects.csv",
        "prospect_id,income,age\nq1,600000.5,40\nq2,40.25,53\n",
    );
    let pipeline = r#"
pipeline: twins
period: year
engine:
  target_partitions: ${PARTS}
sources:
  customers:
    path: customers.csv
    schema: { customer_id: string, segment: string, income: double, age: double }
  prospects:
    path: prospects.csv
    schema: { prospect_id: string, income: double, age: double }
steps:
  - name: twins
    model: lookalike
    method: centroid
    customers: customers
    prospects: prospects
    key: prospect_id
    best: [Best]
    attributes: [income, age]
outputs:
  twins: { from: twins, order_by: [lookalike_rank] }
"#;
    let mut seen = Vec::new();
    for parts in [1, 2, 8] {
        let dir = s.path(&format!("p{parts}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("p.yaml"), pipeline).expect("write");
        for f in ["customers.csv", "prospects.csv"] {
            std::fs::copy(s.path(f), dir.join(f)).expect("copy");
        }
        crate::common::segflow(
            &[
                "run",
                "p.yaml",
                "--period",
                "2025",
                "--var",
                &format!("PARTS={parts}"),
            ],
            &dir,
        )
        .assert_code(0);
        let model =
            std::fs::read(current_artifact(&dir.join("out"), "twins", "2025")).expect("artifact");
        let scores =
            std::fs::read(&parquet_files(&dir.join("out/twins/period=2025"))[0]).expect("scores");
        seen.push((model, scores));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
    let model: serde_json::Value = serde_json::from_slice(&seen[0].0).expect("json");
    let mean = model["parameters"]["centroid"][0]["mean"]
        .as_f64()
        .expect("mean");
    assert!(
        (mean - sum / 120_000.0).abs() < 1e-6,
        "{mean} vs {}",
        sum / 120_000.0
    );
}

/// Refitting a period adds a version instead of overwriting the one earlier manifests name.
/// The refit data adds order 10 (A, 400.00): M {5, 20} {50, 300} {500, 575} → cuts [20, 300]
/// (R and F cuts unchanged). Applied to February: I's M 200 is now ≤ 300 → m 2, code 212, no
/// rule but the catch-all matches → Others (it was 213, Big spenders under [20, 175]).
#[test]
fn a_refit_keeps_the_earlier_version_and_monthly_runs_apply_the_new_one() {
    let s = Scratch::new();
    let out = s.path("out");
    s.write("orders.csv", YEARLY_ORDERS);
    let yearly = s.write("yearly.yaml", &rfm_pipeline("year", YEARLY_SEGMENTS));
    let monthly = s.write("monthly.yaml", &rfm_pipeline("month", YEARLY_SEGMENTS));
    let first_fit = run_pipeline(&yearly, "2025", s.dir.path());
    first_fit.assert_code(0);
    let first = first_fit.manifest().models[0].clone();
    s.write("orders.csv", MONTHLY_ORDERS);
    let applied_first = run_pipeline(&monthly, "2026-02", s.dir.path());
    applied_first.assert_code(0);
    let cols = ["customer_id", "rfm_code", "segment"];
    assert_eq!(
        output(&s, "rfm", "2026-02", &cols)[2],
        row(&["I", "213", "Big spenders"])
    );
    let applied = applied_first.manifest().models[0].clone();
    assert_eq!(
        (&applied.path, &applied.sha256),
        (&first.path, &first.sha256)
    );

    s.write(
        "orders.csv",
        &format!("{YEARLY_ORDERS}10,A,2025-12-31,400.00\n"),
    );
    let refit = run_pipeline(&yearly, "2025", s.dir.path());
    refit.assert_code(0);
    let second = refit.manifest().models[0].clone();
    assert_ne!(second.path, first.path);
    assert_eq!(
        second.path,
        current_artifact(&out, "rfm", "2025").display().to_string()
    );
    assert_eq!(
        artifact(&s, "rfm", "2025")["parameters"]["cut_points"]["monetary"],
        serde_json::json!([20.0, 300.0])
    );
    // What the earlier runs recorded still resolves, byte for byte.
    for record in [&first, &applied] {
        assert_eq!(sha256(std::path::Path::new(&record.path)), record.sha256);
    }

    s.write("orders.csv", MONTHLY_ORDERS);
    let applied_second = run_pipeline(&monthly, "2026-02", s.dir.path());
    applied_second.assert_code(0);
    let record = applied_second.manifest().models[0].clone();
    assert_eq!(
        (&record.path, &record.sha256),
        (&second.path, &second.sha256)
    );
    assert_eq!(
        output(&s, "rfm", "2026-02", &cols),
        vec![
            row(&["G", "213", "Big spenders"]),
            row(&["H", "222", "Others"]),
            row(&["I", "212", "Others"]),
            row(&["J", "112", "Lost"]),
        ]
    );
}

/// A store written before artifacts were versioned (one `model.json`, no pointer) is still
/// applied, and the manifest names that file.
#[test]
fn a_legacy_model_json_is_applied_when_there_is_no_pointer() {
    let s = Scratch::new();
    s.write("orders.csv", YEARLY_ORDERS);
    let yearly = s.write("yearly.yaml", &rfm_pipeline("year", YEARLY_SEGMENTS));
    run_pipeline(&yearly, "2025", s.dir.path()).assert_code(0);
    let version = current_artifact(&s.path("out"), "rfm", "2025");
    let legacy = s.path("out/models/rfm/period=2025/model.json");
    std::fs::rename(&version, &legacy).expect("to the legacy layout");
    std::fs::remove_file(s.path("out/models/rfm/period=2025/current.json")).expect("rm");
    s.write("orders.csv", MONTHLY_ORDERS);
    let monthly = s.write("monthly.yaml", &rfm_pipeline("month", YEARLY_SEGMENTS));
    let run = run_pipeline(&monthly, "2026-02", s.dir.path());
    run.assert_code(0);
    let record = run.manifest().models[0].clone();
    assert_eq!(record.path, legacy.display().to_string());
    assert_eq!(record.sha256, sha256(&legacy));
    assert_eq!(
        output(&s, "rfm", "2026-02", &["customer_id", "rfm_code"])[0],
        row(&["G", "213"])
    );
}
