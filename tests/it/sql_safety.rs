//! SQL written by users and SQL segflow generates: the DAG read from queries, variables that
//! stay values, read-only queries, and generated names that cannot clash with users' names
//! (issue 11, items 14–16). Each test is named after the bug it pins.

use crate::common::{Scratch, parquet_files, project, read_parquet, run_pipeline, segflow};

const ORDERS: &str = "order_id,customer_id,region,amount\n1,c1,EU,10\n2,c2,US,20\n3,c3,EU,30\n";

/// A pipeline over `orders.csv` (written here) with the given `steps:` and `outputs:` text.
fn pipeline(s: &Scratch, rest: &str) -> std::path::PathBuf {
    s.write("orders.csv", ORDERS);
    s.write(
        "p.yaml",
        &format!(
            r#"
pipeline: sql_safety
period: year
sources:
  orders:
    path: orders.csv
    schema: {{ order_id: int64, customer_id: string, region: string, amount: int64 }}
{rest}"#
        ),
    )
}

/// The rows of output `name` for 2025, as text, in the given columns.
fn rows(s: &Scratch, name: &str, columns: &[&str]) -> Vec<Vec<String>> {
    let files = parquet_files(&s.path(&format!("out/{name}/period=2025")));
    let (names, rows) = read_parquet(&files[0]);
    project(&names, &rows, columns)
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect()
}

/// `WITH rfm AS (SELECT * FROM rfm …)` reads the step `rfm` inside the CTE's own definition;
/// treating every mention of a CTE name as the CTE ran `late` before `rfm` existed.
#[test]
fn cte_shadowing_a_step_still_depends_on_the_step() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        r#"steps:
  - name: late
    sql: WITH rfm AS (SELECT * FROM rfm WHERE amount > 15) SELECT count(*) AS n FROM rfm
  - name: rfm
    sql: SELECT customer_id, amount FROM orders
outputs:
  late: { from: late }
"#,
    );
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    assert_eq!(rows(&s, "late", &["n"]), strings(&[&["2"]]));
}

/// `FROM Orders` is `orders` to DataFusion (unquoted names are lower-cased); validation called
/// it an unknown source.
#[test]
fn uppercase_table_name_resolves_to_source() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        r#"steps:
  - name: total
    sql: SELECT sum(amount) AS amount FROM Orders
outputs:
  total: { from: total }
"#,
    );
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    assert_eq!(rows(&s, "total", &["amount"]), strings(&[&["60"]]));
}

/// A table function in `FROM` is not a source or step; validation refused it as unknown.
#[test]
fn table_function_is_not_an_unknown_source() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        r#"steps:
  - name: doubled
    sql: SELECT count(*) AS n FROM orders CROSS JOIN generate_series(1, 2)
outputs:
  doubled: { from: doubled }
"#,
    );
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    assert_eq!(rows(&s, "doubled", &["n"]), strings(&[&["6"]]));
}

/// `--var REGION="x' OR '1'='1"` was pasted into the SQL and selected every row.
#[test]
fn var_with_quote_is_a_literal_not_sql_injection() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        r#"steps:
  - name: picked
    sql: |
      SELECT count(*) AS n FROM orders WHERE region = ${REGION}
      UNION ALL SELECT count(*) FROM orders WHERE region = '${REGION}'
outputs:
  picked: { from: picked }
"#,
    );
    let p = p.to_str().expect("utf-8");
    let evil = "REGION=x' OR '1'='1";
    segflow(&["run", p, "--period", "2025", "--var", evil], s.dir.path()).assert_code(0);
    assert_eq!(rows(&s, "picked", &["n"]), strings(&[&["0"], &["0"]]));
    segflow(
        &["run", p, "--period", "2025", "--var", "REGION=EU"],
        s.dir.path(),
    )
    .assert_code(0);
    assert_eq!(rows(&s, "picked", &["n"]), strings(&[&["2"], &["2"]]));
}

/// The pipeline's author can declare how a variable is written into SQL: a number, a date, or
/// (opted in with `raw: true`) SQL itself; a value that is not of the declared type is refused.
#[test]
fn declared_variables_are_typed_or_raw_sql() {
    let s = Scratch::new();
    let p = s.write(
        "p.yaml",
        r#"
pipeline: vars
period: year
vars:
  MIN_AMOUNT: { type: number }
  FILTER: { raw: true }
sources:
  orders:
    path: orders.csv
    schema: { order_id: int64, customer_id: string, region: string, amount: int64 }
steps:
  - name: picked
    sql: SELECT count(*) AS n FROM orders WHERE amount > ${MIN_AMOUNT} AND ${FILTER:-true}
outputs:
  picked: { from: picked }
"#,
    );
    s.write("orders.csv", ORDERS);
    let p = p.to_str().expect("utf-8");
    let run = |vars: &[&str]| {
        let mut args = vec!["run", p, "--period", "2025"];
        for v in vars {
            args.extend(["--var", v]);
        }
        segflow(&args, s.dir.path())
    };
    run(&["MIN_AMOUNT=15", "FILTER=region = 'EU'"]).assert_code(0);
    assert_eq!(rows(&s, "picked", &["n"]), strings(&[&["1"]]));
    let r = run(&["MIN_AMOUNT=15 OR 1=1"]);
    r.assert_code(78);
    assert!(r.stderr.contains("is not a number"), "{}", r.stderr);

    let bad = s.write(
        "bad.yaml",
        "pipeline: v\nperiod: year\nvars:\n  X: { raw: true, type: number }\n  period: { type: date }\n  Y: { type: text }\nsources: {}\nsteps: []\noutputs: {}\n",
    );
    let r = segflow(&["validate", bad.to_str().expect("utf-8")], s.dir.path());
    r.assert_code(78);
    for wanted in [
        "has no `type`",
        "`period` is set by",
        "unknown value `text`",
    ] {
        assert!(r.stderr.contains(wanted), "{wanted}: {}", r.stderr);
    }
}

/// A contract's query ran through a context that allowed DDL: `SELECT … INTO` created a table
/// (and then panicked on its empty result). Contract SQL is read-only like step SQL.
#[test]
fn contract_sql_cannot_run_ddl() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        r#"steps:
  - name: total
    sql: SELECT sum(amount) AS amount FROM orders
    checks:
      - sql: { name: sneaky, query: "SELECT * INTO evil FROM orders" }
outputs:
  total: { from: total }
"#,
    );
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(78);
    assert!(r.stderr.contains("read-only"), "{}", r.stderr);
}

/// `rules` adds `segment`; an input that already had one gave two `segment` columns (or a
/// DataFusion error about duplicate names) instead of saying what is wrong.
#[test]
fn rules_over_input_with_segment_column_is_refused() {
    let s = Scratch::new();
    let p = pipeline(
        &s,
        r#"steps:
  - name: tagged
    sql: SELECT customer_id, amount, 'old' AS segment FROM orders
  - name: lifecycle
    model: rules
    input: tagged
    segments:
      - { name: Big, when: "amount > 15" }
      - { name: Small, when: true }
outputs:
  lifecycle: { from: lifecycle }
"#,
    );
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(78);
    assert!(
        r.stderr.contains("step `lifecycle`")
            && r.stderr
                .contains("input `tagged` already has a column `segment`"),
        "{}",
        r.stderr
    );
}

/// Lookalike's `p.*` plus `reason` (and `lookalike_score`, `index_<attr>` …) clashed with a
/// prospect column of the same name.
#[test]
fn lookalike_over_prospects_with_reason_column_is_refused() {
    let s = Scratch::new();
    s.write(
        "customers.csv",
        "customer_id,segment,region\nc1,Best,North\nc2,Best,North\nc3,Rest,South\nc4,Rest,South\n",
    );
    s.write(
        "prospects.csv",
        "prospect_id,region,reason\np1,North,referral\n",
    );
    let p = s.write(
        "p.yaml",
        r#"
pipeline: twins
period: year
sources:
  customers:
    path: customers.csv
    schema: { customer_id: string, segment: string, region: string }
  prospects:
    path: prospects.csv
    schema: { prospect_id: string, region: string, reason: string }
steps:
  - name: twins
    model: lookalike
    customers: customers
    prospects: prospects
    key: prospect_id
    segment: segment
    best: [Best]
    attributes: [region]
    min_customers: 1
outputs:
  twins: { from: twins }
"#,
    );
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(78);
    assert!(
        r.stderr.contains("step `twins`")
            && r.stderr
                .contains("input `prospects` already has a column `reason`"),
        "{}",
        r.stderr
    );
}

/// Potential's `m.*` plus `predicted_value` clashed with a market column of that name.
#[test]
fn potential_over_market_with_predicted_value_column_is_refused() {
    let s = Scratch::new();
    s.write(
        "customers.csv",
        "org_no,employees,revenue\no1,10,1100\no2,20,1200\no3,30,1300\n",
    );
    s.write("market.csv", "org_no,employees,predicted_value\nm1,100,5\n");
    let p = s.write(
        "p.yaml",
        r#"
pipeline: potential
period: year
sources:
  customers:
    path: customers.csv
    schema: { org_no: string, employees: int64, revenue: double }
  market:
    path: market.csv
    schema: { org_no: string, employees: int64, predicted_value: double }
steps:
  - name: potential
    model: potential
    customers: customers
    market: market
    key: org_no
    target: revenue
    numeric: [employees]
outputs:
  potential: { from: potential }
"#,
    );
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(78);
    assert!(
        r.stderr
            .contains("input `market` already has a column `predicted_value`"),
        "{}",
        r.stderr
    );
}

/// Enrichment's generated SQL works with a column `__k0` next to the input's `i.*`; an input
/// column of that name clashed with it instead of being reported.
#[test]
fn enrich_input_with_working_key_column_is_refused() {
    let s = Scratch::new();
    s.write(
        "customers.csv",
        "customer_id,postal_code,__k0\nc1,12345,keep me\n",
    );
    s.write("geo.csv", "postal_code,geo_group\n12345,City\n");
    let p = s.write(
        "p.yaml",
        r#"
pipeline: enrich
period: year
sources:
  customers:
    path: customers.csv
    schema: { customer_id: string, postal_code: string, __k0: string }
  geo:
    path: geo.csv
    schema: { postal_code: string, geo_group: string }
steps:
  - name: customers_geo
    enrich:
      input: customers
      country: SE
      keys:
        - { level: postal_code, input: postal_code, reference: geo, key: postal_code, normalize: postal_code }
      columns: [geo_group]
outputs:
  customers_geo: { from: customers_geo }
"#,
    );
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(78);
    assert!(
        r.stderr
            .contains("input `customers` already has a column `__k0`"),
        "{}",
        r.stderr
    );
}

/// The profile's generated CTEs were named `c`, `o`, `base`, `cells`…: an orders table named
/// `c` was read as the CTE of customers defined before it.
#[test]
fn profile_cte_names_do_not_shadow_user_tables() {
    let s = Scratch::new();
    s.write("customers.csv", "customer_id,segment\nc1,A\nc2,A\nc3,B\n");
    s.write(
        "orders.csv",
        "order_id,customer_id,order_date,amount\no1,c1,2025-02-01,60\no2,c2,2025-03-01,40\no3,c3,2025-04-01,100\n",
    );
    let p = s.write(
        "p.yaml",
        r#"
pipeline: profiles
period: year
sources:
  cells:
    path: customers.csv
    schema: { customer_id: string, segment: string }
  c:
    path: orders.csv
    schema: { order_id: string, customer_id: string, order_date: date, amount: "decimal(10,2)" }
steps:
  - name: segment_profile
    profile:
      customers: cells
      segment: segment
      orders: { table: c, order_id: order_id }
outputs:
  segment_profile: { from: segment_profile, order_by: [segment] }
"#,
    );
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    assert_eq!(
        rows(&s, "segment_profile", &["segment", "customers", "orders"]),
        strings(&[&["A", "2", "2"], &["B", "1", "1"]])
    );
}

/// Model scratch tables are named `__<step>__<part>`: a source of such a name would have been
/// replaced by one. Names starting with `__` are reserved.
#[test]
fn scratch_table_name_cannot_replace_a_user_source() {
    let s = Scratch::new();
    s.write("orders.csv", "x\n1\n");
    let p = s.write(
        "p.yaml",
        "pipeline: p\nperiod: year\nsources:\n  __rfm_measured: { path: orders.csv, schema: { x: int64 } }\nsteps:\n  - { name: s, sql: SELECT x FROM __rfm_measured }\noutputs: { s: { from: s } }\n",
    );
    let r = segflow(&["validate", p.to_str().expect("utf-8")], s.dir.path());
    r.assert_code(78);
    assert!(
        r.stderr.contains("p.yaml:4:3") && r.stderr.contains("reserved"),
        "{}",
        r.stderr
    );
}
