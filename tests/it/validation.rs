//! Static validation (issue 11, item 18): every step planned against empty tables of the
//! declared schemas, so column mistakes are configuration errors (exit 78) reported all at
//! once, at their keys, before any data is read. Each test is named after the bug it pins.

use crate::common::{Scratch, segflow};

const SOURCE: &str = "\
pipeline: checked
period: year
sources:
  orders:
    path: orders.csv
    schema:
      order_id: int64
      customer_id: string
      order_date: date
      amount: string
";

/// The data file is garbage: a validation that read it would fail differently.
fn write(s: &Scratch, steps: &str) -> std::path::PathBuf {
    s.write("orders.csv", "\u{0}\u{1}not csv");
    s.write("p.yaml", &format!("{SOURCE}{steps}"))
}

fn lines_with(stderr: &str, needle: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// `date: orderdate` passed `validate`; `run` exited 78 only after reading the data.
#[test]
fn validate_reports_unknown_column_in_model_step_with_position() {
    let s = Scratch::new();
    let p = write(
        &s,
        "steps:
  - name: rfm
    model: rfm
    input: orders
    date: orderdate
    amount: order_id
    segments: [ { name: All, when: true } ]
outputs:
  rfm: { from: rfm }
",
    );
    for command in ["validate", "run"] {
        let mut args = vec![command, p.to_str().expect("utf8")];
        if command == "run" {
            args.extend(["--period", "2025"]);
        }
        let r = segflow(&args, s.dir.path());
        r.assert_code(78);
        assert!(
            r.stderr
                .contains("p.yaml:15:5: steps[0].date: `orders` has no column `orderdate`"),
            "{}",
            r.stderr
        );
        assert!(
            r.stderr.contains("hint: did you mean `order_date`?"),
            "{}",
            r.stderr
        );
        assert!(!s.path("out").exists(), "nothing may be written");
    }
}

/// A text `amount` where a model needs a number was found only by the fit, after reading.
#[test]
fn validate_reports_text_column_where_a_model_needs_a_number() {
    let s = Scratch::new();
    let p = write(
        &s,
        "steps:
  - name: tiers
    model: pareto
    input: orders
    value: amount
    tiers: { A: 0.8 }
    rest: B
outputs:
  tiers: { from: tiers }
",
    );
    let r = segflow(&["validate", p.to_str().expect("utf8")], s.dir.path());
    r.assert_code(78);
    assert!(
        r.stderr.contains(
            "p.yaml:15:5: steps[0].value: column `amount` of `orders` is text, but `value` needs a number"
        ),
        "{}",
        r.stderr
    );
}

/// Every column mistake of the pipeline in one report: models, SQL, outputs and checks.
#[test]
fn validate_reports_all_errors_at_once() {
    let s = Scratch::new();
    let p = write(
        &s,
        "steps:
  - name: rfm
    model: rfm
    input: orders
    date: orderdate
    segments: [ { name: All, when: true } ]
  - name: totals
    sql: SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id
    checks:
      - not_null: [customr_id]
  - name: labelled
    sql: SELECT customer_id, 'x' AS segment FROM orders
  - name: lifecycle
    model: rules
    input: labelled
    segments: [ { name: All, when: true } ]
  - name: downstream
    sql: SELECT * FROM rfm
  - name: typo
    sql: SELECT amont FROM orders
outputs:
  totals: { from: totals, order_by: [custmer_id] }
  downstream: { from: downstream }
",
    );
    let r = segflow(&["validate", p.to_str().expect("utf8")], s.dir.path());
    r.assert_code(78);
    let found = lines_with(&r.stderr, "p.yaml:");
    let wanted = [
        "p.yaml:12:11: steps[0].amount: column `amount` of `orders` is text, but `amount` needs a number (the default of `amount`)",
        "p.yaml:15:5: steps[0].date: `orders` has no column `orderdate`",
        "p.yaml:20:9: steps[1].checks[0]: `totals` has no column `customr_id`",
        "p.yaml:24:5: steps[3].model: input `labelled` already has a column `segment`, which step `lifecycle` adds to its output",
        "p.yaml:30:5: steps[5].sql: unknown column `amont`",
        "p.yaml:32:38: outputs.totals.order_by[0]: `totals` has no column `custmer_id`",
    ];
    for w in wanted {
        assert!(
            found.iter().any(|l| l.contains(w)),
            "missing {w} in\n{}",
            r.stderr
        );
    }
    // `downstream` reads the broken `rfm`: no follow-on error for it.
    assert_eq!(found.len(), wanted.len(), "{}", r.stderr);
    assert!(r.stderr.contains("6 configuration errors"), "{}", r.stderr);
}

/// 4,000 broken steps took 77 s and every hint listed every name (1,000 printed 6 MB).
#[test]
fn hints_are_capped_for_many_broken_steps() {
    let s = Scratch::new();
    let mut text = String::from(
        "pipeline: many\nperiod: year\nsources:\n  orders: { path: orders.csv, schema: { customer_id: string, order_date: date, amount: int64 } }\nsteps:\n",
    );
    for i in 0..4000 {
        text.push_str(&format!(
            "  - {{ name: step_{i:04}, model: rfm, input: ordrs_{i:04}, segments: [ {{ name: All, when: true }} ] }}\n"
        ));
    }
    text.push_str("outputs: { out: { from: step_0000 } }\n");
    let p = s.write("many.yaml", &text);
    let started = std::time::Instant::now();
    let r = segflow(&["validate", p.to_str().expect("utf8")], s.dir.path());
    let took = started.elapsed();
    r.assert_code(78);
    assert!(
        r.stderr.contains("4000 configuration errors"),
        "{}",
        &r.stderr[..500]
    );
    assert!(took.as_secs() < 15, "validation took {took:?}");
    assert!(r.stderr.len() < 1_000_000, "{} bytes", r.stderr.len());
    for line in r.stderr.lines().filter(|l| l.contains("hint:")) {
        assert!(line.matches('`').count() <= 2 * 6, "{line}");
    }
    assert!(
        r.stderr.contains("hint: did you mean `orders`?"),
        "{}",
        &r.stderr[..500]
    );
}

/// A source whose path has an unset variable made every reader an "unknown source" too.
#[test]
fn unset_variable_does_not_add_unknown_source_errors() {
    let s = Scratch::new();
    let p = s.write(
        "p.yaml",
        "pipeline: p\nperiod: year\nsources:\n  orders: { path: '${EXPORTS:?set EXPORTS}/o.csv', schema: { x: int64 } }\nsteps:\n  - { name: a, sql: SELECT x FROM orders }\noutputs: { a: { from: orders } }\n",
    );
    let r = segflow(&["validate", p.to_str().expect("utf8")], s.dir.path());
    r.assert_code(78);
    assert!(
        r.stderr.contains("1 configuration error in"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("unknown source"), "{}", r.stderr);
}

/// A Windows-1252 byte in the pipeline said only "not UTF-8 text".
#[test]
fn non_utf8_pipeline_names_line_and_column() {
    let s = Scratch::new();
    let p = s.path("p.yaml");
    std::fs::write(&p, b"pipeline: p\nperiod: year\n# M\xE4rz\n").expect("write");
    let r = segflow(&["validate", p.to_str().expect("utf8")], s.dir.path());
    r.assert_code(78);
    assert!(
        r.stderr
            .contains("p.yaml:3:4: the pipeline file is not UTF-8 text: byte 0xE4"),
        "{}",
        r.stderr
    );
}

/// `--period 0000` ran and wrote `period=0000`.
#[test]
fn period_0000_is_a_usage_error() {
    let s = Scratch::new();
    for command in ["run", "validate", "plan"] {
        let r = segflow(&[command, "p.yaml", "--period", "0000"], s.dir.path());
        r.assert_code(64);
        assert!(r.stderr.contains("invalid period `0000`"), "{}", r.stderr);
    }
}

/// Every shipped pipeline validates (the demo data need not exist: no data is read).
#[test]
fn shipped_pipelines_validate() {
    for p in [
        "pipelines/yearly_segmentation.yaml",
        "pipelines/monthly_scoring.yaml",
    ] {
        segflow(
            &["validate", p, "--var", "DATA_DIR=/nowhere"],
            crate::common::repo_root(),
        )
        .assert_code(0);
    }
}
