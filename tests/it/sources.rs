//! Sources: CSV, Parquet and JSON lines with declared schemas, globs, `plan` and `explain`,
//! and the exit codes for bad data and missing files.

use crate::common::{Scratch, parquet_files, project, read_parquet, row, run_pipeline, segflow};

/// Columns in another order, other case and stray spaces, an undeclared column, two files
/// matched by a glob, a quoted field with the delimiter and a newline in it.
#[test]
fn csv_headers_are_matched_by_name_across_a_glob() {
    let s = Scratch::new();
    s.write(
        "crm/customers_1.csv",
        "\u{feff} Postal_Code ;CUSTOMER_ID;note\n11420;A;\"x; y\nz\"\n;B;plain\n",
    );
    s.write(
        "crm/customers_2.csv",
        " postal_code;customer_id;note\n22100;C;\n",
    );
    let p = s.write(
        "p.yaml",
        r#"
pipeline: csv_fixture
period: year
output_dir: out
sources:
  customers:
    path: crm/customers_*.csv
    csv: { delimiter: ";" }
    schema: { customer_id: string, postal_code: string }
steps:
  - { name: listed, sql: "SELECT customer_id, postal_code, length(postal_code) AS len FROM customers" }
outputs:
  listed: { from: listed, order_by: [customer_id] }
"#,
    );
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(0);
    let (names, rows) = read_parquet(&parquet_files(&s.path("out/listed"))[0]);
    assert_eq!(names, vec!["customer_id", "postal_code", "len"]);
    assert_eq!(
        rows,
        vec![
            row(&["A", "11420", "5"]),
            row(&["B", "NULL", "NULL"]),
            row(&["C", "22100", "5"])
        ]
    );
    let m = r.manifest();
    let per_file: Vec<(String, u64)> = m
        .inputs
        .iter()
        .map(|i| (i.path.rsplit('/').next().unwrap_or("").to_string(), i.rows))
        .collect();
    assert_eq!(
        per_file,
        vec![
            ("customers_1.csv".to_string(), 2),
            ("customers_2.csv".to_string(), 1)
        ]
    );
}

#[test]
fn json_lines_load_to_declared_types() {
    let s = Scratch::new();
    s.write(
        "events.jsonl",
        concat!(
            r#"{"customer_id": "A", "amount": 12.5, "day": "2025-01-02", "visits": 3, "vip": true}"#,
            "\n",
            r#"{"customer_id": "B", "amount": 0.25, "day": "2025-12-31", "visits": null, "vip": false, "ignored": 1}"#,
            "\n"
        ),
    );
    let p = s.write(
        "p.yaml",
        r#"
pipeline: json_fixture
period: year
output_dir: out
sources:
  events:
    path: events.jsonl
    schema: { customer_id: string, amount: "decimal(10,2)", day: date, visits: int32, vip: bool }
steps:
  - { name: typed, sql: "SELECT customer_id, amount * 2 AS doubled, day + INTERVAL '1 day' AS next_day, visits, vip FROM events" }
outputs:
  typed: { from: typed }
"#,
    );
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    let (names, rows) = read_parquet(&parquet_files(&s.path("out/typed"))[0]);
    assert_eq!(
        project(
            &names,
            &rows,
            &["customer_id", "doubled", "next_day", "visits", "vip"]
        ),
        vec![
            row(&["A", "25.00", "2025-01-03", "3", "true"]),
            row(&["B", "0.50", "2026-01-01", "NULL", "false"])
        ]
    );
}

/// The same generated data as CSV and as Parquet gives the same segments: two independent
/// readers agree.
#[test]
fn parquet_and_csv_sources_agree() {
    let s = Scratch::new();
    for format in ["csv", "parquet"] {
        let dir = s.path(format);
        segflow(
            &[
                "generate",
                "--out",
                dir.to_str().expect("utf8"),
                "--customers",
                "300",
                "--format",
                format,
            ],
            s.dir.path(),
        )
        .assert_code(0);
    }
    let pipeline = |format: &str| {
        format!(
            r#"
pipeline: format_{format}
period: year
output_dir: out_{format}
sources:
  orders:
    path: {format}/crm/orders.{format}
    schema: {{ order_id: int64, customer_id: string, order_date: date, amount: "decimal(12,2)", category: string }}
steps:
  - name: rfm
    model: rfm
    input: orders
    order_id: order_id
    segments: [ {{ name: All, when: true }} ]
outputs:
  rfm: {{ from: rfm }}
"#
        )
    };
    let mut results = Vec::new();
    for format in ["csv", "parquet"] {
        let p = s.write(&format!("{format}.yaml"), &pipeline(format));
        let r = run_pipeline(&p, "2025", s.dir.path());
        r.assert_code(0);
        assert!(r.manifest().inputs[0].rows > 1000);
        results.push(read_parquet(
            &parquet_files(&s.path(&format!("out_{format}/rfm")))[0],
        ));
    }
    assert!(!results[0].1.is_empty());
    assert_eq!(results[0], results[1]);
}

/// CSV: a required cell left empty makes the row bad (exit 1, `file:line`); JSON lines: the
/// required-column check counts the NULLs. Either way nothing is committed.
#[test]
fn required_columns_fail_with_exit_1_and_commit_nothing() {
    let s = Scratch::new();
    s.write("c.csv", "customer_id,email\nA,a@x\n,b@x\n,c@x\n");
    s.write(
        "c.jsonl",
        "{\"customer_id\": \"A\"}\n{\"customer_id\": null}\n{\"email\": \"c@x\"}\n",
    );
    for (file, message) in [
        ("c.csv", "2 bad row(s) in source `c` (on_bad_row: fail): "),
        (
            "c.jsonl",
            "source `c`: 2 row(s) have no `customer_id`, which is declared required",
        ),
    ] {
        let p = s.write(
            "p.yaml",
            &format!("pipeline: p\nperiod: year\noutput_dir: out\nsources:\n  c:\n    path: {file}\n    schema: {{ customer_id: {{ type: string, required: true }}, email: string }}\nsteps: [ {{ name: s, sql: SELECT customer_id FROM c }} ]\noutputs: {{ s: {{ from: s }} }}\n"),
        );
        let r = run_pipeline(&p, "2025", s.dir.path());
        r.assert_code(1);
        assert!(r.stderr.contains(message), "{}", r.stderr);
        let m = r.manifest();
        assert_eq!(m.status, segflow_manifest::RunStatus::ChecksFailed);
        assert!(!s.path("out/s").exists());
        if file == "c.csv" {
            assert!(
                r.stderr
                    .contains("c.csv:3: column `customer_id` is required but empty; "),
                "{}",
                r.stderr
            );
            assert!(
                r.stderr
                    .contains("c.csv:4: column `customer_id` is required but empty"),
                "{}",
                r.stderr
            );
            assert_eq!(
                (
                    m.steps[0].rows_read,
                    m.steps[0].rows_written,
                    m.steps[0].rows_rejected
                ),
                (3, 1, 2)
            );
        } else {
            let check = &m.checks[0];
            assert_eq!(
                (check.target.as_str(), check.failing_rows, check.passed),
                ("c.customer_id", 2, false)
            );
        }
    }
}

#[test]
fn missing_files_columns_and_short_rows_name_the_file() {
    let s = Scratch::new();
    let p = s.write(
        "p.yaml",
        "pipeline: p\nperiod: year\noutput_dir: out\nsources:\n  c: { path: 'exports/c_*.csv', schema: { customer_id: string, email: string } }\nsteps: [ { name: s, sql: SELECT customer_id FROM c } ]\noutputs: { s: { from: s } }\n",
    );
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(2);
    assert!(
        r.stderr.contains("source `c`: no files match"),
        "{}",
        r.stderr
    );
    s.write("exports/c_1.csv", "customer_id,mail\nA,a@x\n");
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(2);
    assert!(
        r.stderr
            .contains("c_1.csv` lacks declared column `email` (the file has: customer_id, mail)"),
        "{}",
        r.stderr
    );
    s.write("exports/c_1.csv", "customer_id,email\nA,a@x\nB\n");
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(1);
    assert!(
        r.stderr
            .contains("c_1.csv:3: the row has 1 fields, the header has 2"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("c_1.csv"), "{}", r.stderr);
}

#[test]
fn plan_and_explain_read_no_data() {
    let s = Scratch::new();
    // Header only matters to explain; the body is not valid data and is never parsed.
    s.write("o.csv", "customer_id,amount\nA,not-a-number\n");
    let p = s.write(
        "p.yaml",
        "pipeline: p\nperiod: month\noutput_dir: out\nsources:\n  o: { path: o.csv, schema: { customer_id: string, amount: \"decimal(10,2)\" } }\nsteps:\n  - { name: total, sql: \"SELECT customer_id, sum(amount) AS revenue FROM o GROUP BY customer_id\" }\n  - { name: tier, model: pareto, input: total, value: revenue }\noutputs: { tier: { from: tier } }\n",
    );
    let p = p.to_str().expect("utf8");
    let r = segflow(&["plan", p, "--period", "2025-11", "--json"], s.dir.path());
    r.assert_code(0);
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let nodes: Vec<(&str, &str)> = plan["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or(""),
                n["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        vec![("o", "source (csv)"), ("total", "sql"), ("tier", "pareto")]
    );
    assert_eq!(plan["period_end"], "2025-12-01");
    assert!(
        plan["outputs"][0]["replaces"]
            .as_str()
            .unwrap_or("")
            .ends_with("out/tier/period=2025-11")
    );
    assert!(
        plan["nodes"][0]["files"][0]["url"]
            .as_str()
            .unwrap_or("")
            .ends_with("/o.csv")
    );

    let r = segflow(
        &["explain", p, "--period", "2025-11", "--step", "tier"],
        s.dir.path(),
    );
    r.assert_code(0);
    assert!(r.stdout.contains("== step tier =="), "{}", r.stdout);
    assert!(r.stdout.contains("physical_plan"), "{}", r.stdout);
    assert!(
        r.stdout.contains("WindowAggExec") || r.stdout.contains("BoundedWindowAggExec"),
        "{}",
        r.stdout
    );
    assert!(!s.path("out").exists());
}
