//! Bad rows at scale and from self-describing files (issue 11 items 6 and 10): quarantine
//! streamed to Parquet, bad-row limits that stop a read early, and declared types that would
//! lose information of a Parquet or JSON value.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{Field, Schema};

use crate::common::{Scratch, parquet_files, read_parquet, row, run_pipeline, segflow_env};

fn csv_pipeline(extra: &str) -> String {
    format!(
        r#"
pipeline: bad
period: year
output_dir: out
sources:
  orders:
    path: orders.csv
    csv: {{ delimiter: ";" }}
    on_bad_row: quarantine
{extra}
    schema:
      id: {{ type: int64, required: true }}
      amount: "decimal(10,2)"
steps:
  - {{ name: o, sql: "SELECT * FROM orders" }}
outputs:
  o: {{ from: o, order_by: [id] }}
"#
    )
}

/// Regression (issue 11 item 6): every bad row was held in memory and written as one batch.
/// 150 000 bad rows (every row whose id is divisible by 4 of 600 000, so the default ratio
/// of 0.1 is set aside for this one) stream through to the quarantine exactly.
#[test]
fn quarantine_of_many_bad_rows_streams_with_bounded_memory() {
    let s = Scratch::new();
    let mut csv = String::from("id;amount\n");
    for i in 0..600_000u64 {
        if i % 4 == 0 {
            let _ = writeln!(csv, "{i};not-{i}");
        } else {
            let _ = writeln!(csv, "{i};{i}.25");
        }
    }
    s.write("orders.csv", &csv);
    let p = s.write("p.yaml", &csv_pipeline("    max_bad_ratio: 1"));
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(0);
    let m = r.manifest();
    let input = &m.inputs[0];
    assert_eq!((input.rows, input.rows_rejected), (600_000, 150_000));
    let mut quarantined = Vec::new();
    for file in parquet_files(&s.path("out/quarantine/orders")) {
        let (names, rows) = read_parquet(&file);
        assert_eq!(names, ["source", "file", "line", "raw", "reason"]);
        quarantined.extend(rows);
    }
    assert_eq!(quarantined.len(), 150_000);
    // Row i is on line i + 2; the bad ones are i = 0, 4, 8, … in file order.
    for (k, q) in quarantined.iter().enumerate() {
        let i = 4 * k as u64;
        assert_eq!(q[2], (i + 2).to_string());
        assert_eq!(q[3], format!("{i};not-{i}"));
        assert!(q[4].contains("column `amount`"), "{}", q[4]);
    }
    let out: usize = parquet_files(&s.path("out/o"))
        .iter()
        .map(|f| read_parquet(f).1.len())
        .sum();
    assert_eq!(out, 450_000);
    let q = m
        .outputs
        .iter()
        .find(|o| o.output == "quarantine/orders")
        .expect("quarantine output");
    assert_eq!((q.rows, q.committed), (150_000, true));
}

/// Regression (issue 11 item 6): an export written with `,` read with `delimiter: ";"` (its
/// header happens to use `;`) made every row a bad row, all of them read and kept. Now the
/// read stops once a tenth of at least 1000 rows are bad: after the first chunk (1 MB) of
/// the 9 MB file, exit code 1, nothing written, the counts in the manifest.
#[test]
fn wrong_delimiter_stops_early_at_max_bad_ratio() {
    let s = Scratch::new();
    let mut csv = String::from("id;amount\n");
    for i in 0..600_000u64 {
        let _ = writeln!(csv, "{i},{i}.5");
    }
    s.write("orders.csv", &csv);
    let p = s.write("p.yaml", &csv_pipeline(""));
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(1);
    assert!(
        r.stderr.contains("source `orders`: stopped reading at `")
            && r.stderr.contains("orders.csv`")
            && r.stderr.contains("more than max_bad_ratio: 0.1")
            && r.stderr.contains("wrong delimiter or encoding?")
            && r.stderr
                .contains(":2: the row has 1 fields, the header has 2"),
        "{}",
        r.stderr
    );
    let m = r.manifest();
    let input = &m.inputs[0];
    assert!(input.rows > 0 && input.rows < 600_000 / 2, "{}", input.rows);
    assert_eq!(input.rows_rejected, input.rows, "every row read is bad");
    assert_eq!(input.sha256, "", "not read to its end: no checksum");
    let step = m.steps.iter().find(|s| s.name == "orders").expect("source");
    assert_eq!(step.rows_read, step.rows_written + step.rows_rejected);
    assert_eq!(step.rows_read, input.rows);
    assert!(!s.path("out/o").exists() && !s.path("out/quarantine").exists());
}

#[test]
fn max_bad_rows_stops_the_read_naming_the_count() {
    let s = Scratch::new();
    s.write("orders.csv", "id;amount\n1;1\n2;x\n3;3\n4;y\n5;z\n6;6\n");
    let p = s.write("p.yaml", &csv_pipeline("    max_bad_rows: 2"));
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(1);
    assert!(
        r.stderr
            .contains("3 bad row(s) among the first 6 rows read, more than max_bad_rows: 2"),
        "{}",
        r.stderr
    );
    // Two bad rows are allowed.
    s.write("orders.csv", "id;amount\n1;1\n2;x\n3;3\n4;y\n");
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
}

fn write_parquet(path: &std::path::Path, columns: Vec<(&str, ArrayRef)>) {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        columns.into_iter().map(|c| c.1).collect(),
    )
    .expect("batch");
    let file = std::fs::File::create(path).expect("create");
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

fn lazy_pipeline(path: &str, on_bad_row: &str, pii: &str) -> String {
    format!(
        r#"
pipeline: lossy
period: year
output_dir: out
privacy: {{ key_env: SEGFLOW_PII_KEY }}
sources:
  orders:
    path: {path}
    on_bad_row: {on_bad_row}
    schema:
      id: int64
      amount: {{ type: int64{pii} }}
steps:
  - {{ name: o, sql: "SELECT * FROM orders" }}
outputs:
  o: {{ from: o, order_by: [id] }}
"#
    )
}

fn run_lazy(s: &Scratch, pipeline: &str) -> crate::common::Run {
    let p = s.write("p.yaml", pipeline);
    segflow_env(
        &["run", p.to_str().expect("utf-8"), "--period", "2025"],
        s.dir.path(),
        &[("SEGFLOW_PII_KEY", "k")],
    )
}

fn orders_parquet(s: &Scratch) {
    write_parquet(
        &s.path("orders.parquet"),
        vec![
            (
                "id",
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef,
            ),
            (
                "amount",
                Arc::new(Float64Array::from(vec![
                    Some(21420.5),
                    Some(100.0),
                    None,
                    Some(-7.25),
                ])),
            ),
        ],
    );
}

/// Regression (issue 11 item 10): a DOUBLE declared int64 was cast by truncation.
#[test]
fn parquet_double_declared_int64_is_a_bad_row_not_truncated() {
    let s = Scratch::new();
    orders_parquet(&s);
    let r = run_lazy(&s, &lazy_pipeline("orders.parquet", "quarantine", ""));
    r.assert_code(0);
    let (_, out) = read_parquet(&parquet_files(&s.path("out/o"))[0]);
    assert_eq!(out, vec![row(&["2", "100"]), row(&["3", "NULL"])]);
    let (_, q) = read_parquet(&parquet_files(&s.path("out/quarantine/orders"))[0]);
    let file = s.path("orders.parquet").display().to_string();
    let q: Vec<Vec<String>> = q.into_iter().map(|r| r[1..].to_vec()).collect();
    assert_eq!(q.len(), 2, "{q:?}");
    assert!(
        q[0][0].ends_with("orders.parquet") && q[0][0].contains(&file),
        "{:?}",
        q[0]
    );
    assert_eq!((q[0][1].as_str(), q[0][2].as_str()), ("0", "1,21420.5"));
    assert!(
        q[0][3].ends_with(
            "orders.parquet: column `amount`: 21420.5 is not a valid int64 without losing information (the file has Float64)"
        ),
        "{}",
        q[0][3]
    );
    assert_eq!(q[1][2], "4,-7.25");
    let m = r.manifest();
    assert_eq!((m.inputs[0].rows, m.inputs[0].rows_rejected), (4, 2));
    let step = m.steps.iter().find(|s| s.name == "orders").expect("source");
    assert_eq!(
        (step.rows_read, step.rows_written, step.rows_rejected),
        (4, 2, 2)
    );

    // Under `fail`: exit code 1 naming the file, column and value.
    let r = run_lazy(&s, &lazy_pipeline("orders.parquet", "fail", ""));
    r.assert_code(1);
    assert!(
        r.stderr.contains("2 bad row(s) in source `orders`")
            && r.stderr
                .contains("orders.parquet: column `amount`: 21420.5 is not a valid int64"),
        "{}",
        r.stderr
    );
}

/// Regression (issue 11 item 10): JSON numbers were truncated inside the JSON decoder.
#[test]
fn json_fraction_declared_int64_is_a_bad_row_not_truncated() {
    let s = Scratch::new();
    s.write(
        "orders.jsonl",
        "{\"id\": 1, \"amount\": 21420.5}\n{\"id\": 2, \"amount\": 100}\n{\"id\": 3, \"amount\": 12345678901234567}\n{\"id\": 4}\n",
    );
    let r = run_lazy(&s, &lazy_pipeline("orders.jsonl", "quarantine", ""));
    r.assert_code(0);
    let (_, out) = read_parquet(&parquet_files(&s.path("out/o"))[0]);
    // 12345678901234567 is above 2^53: exact, so not decoded through a double.
    assert_eq!(
        out,
        vec![
            row(&["2", "100"]),
            row(&["3", "12345678901234567"]),
            row(&["4", "NULL"])
        ]
    );
    let (_, q) = read_parquet(&parquet_files(&s.path("out/quarantine/orders"))[0]);
    let reasons: Vec<&str> = q.iter().map(|r| r[4].as_str()).collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("column `amount`: 21420.5") && reasons[0].contains("int64"),
        "{reasons:?}"
    );
    let m = r.manifest();
    assert_eq!((m.inputs[0].rows, m.inputs[0].rows_rejected), (4, 1));
}

/// A personal column's lossy value is withheld wherever the bad row shows up.
#[test]
fn lossy_value_of_a_personal_parquet_column_is_withheld() {
    let s = Scratch::new();
    orders_parquet(&s);
    let r = run_lazy(
        &s,
        &lazy_pipeline("orders.parquet", "quarantine", ", pii: hash"),
    );
    r.assert_code(0);
    let (_, q) = read_parquet(&parquet_files(&s.path("out/quarantine/orders"))[0]);
    for bad in &q {
        assert_eq!(bad[3].split(',').nth(1), Some("<pii>"), "{bad:?}");
        assert!(
            bad[4].contains("column `amount`: <withheld> is not a valid int64"),
            "{bad:?}"
        );
        assert!(
            !bad.join(" ").contains("21420") && !bad.join(" ").contains("7.25"),
            "{bad:?}"
        );
    }
    let r = run_lazy(&s, &lazy_pipeline("orders.parquet", "fail", ", pii: hash"));
    r.assert_code(1);
    let manifest = std::fs::read_to_string(r.manifest_path()).expect("manifest");
    assert!(!r.stdout.contains("21420") && !r.stdout.contains("7.25"));
    for text in [&r.stderr, &manifest] {
        assert!(text.contains("<withheld>"), "{text}");
        assert!(!text.contains("21420") && !text.contains("7.25"), "{text}");
    }
}
