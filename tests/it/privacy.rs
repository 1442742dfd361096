//! Personal data never leaves the extract stage readable: hashed with a keyed HMAC, dropped,
//! and withheld from quarantine rows, error messages, logs and the manifest.

use crate::common::{Scratch, parquet_files, read_parquet, run_python, segflow, segflow_env};

const KEY: &str = "test-key-not-a-secret";

/// Every personal value in the export below.
const PII: &[&str] = &[
    "anna.berg@example.se",
    "Anna Berg",
    "+46701234567",
    "bo.ek@example.se",
    "Bo Ek",
    "+46709876543",
    "cia.lund@example.se",
    "Cia Lund",
    "+46705551234",
    "dan.ost@example.se",
    "Dan Öst",
    "1980-13-45",
];

const EXPORT: &str = "\
customer_id,email,name,phone,birth_date,amount
C1,anna.berg@example.se,Anna Berg,+46701234567,1980-01-02,10.00
C2,bo.ek@example.se,Bo Ek,+46709876543,1975-05-06,oops
C3,cia.lund@example.se,Cia Lund,+46705551234,1990-07-08,30.00
C4,dan.ost@example.se,Dan Öst,+46700000000,1980-13-45,40.00
";

const PIPELINE: &str = r#"
pipeline: privacy
period: year
output_dir: out
privacy: { key_env: SEGFLOW_PII_KEY }
sources:
  customers:
    path: customers.csv
    on_bad_row: quarantine
    schema:
      customer_id: string
      email: { type: string, pii: hash }
      name: { type: string, pii: hash }
      phone: { type: string, pii: drop }
      birth_date: { type: date, pii: hash }
      amount: "decimal(10,2)"
    checks:
      - { unique: email, severity: warn }
      - { accepted_values: { column: name, values: [nobody] }, severity: warn }
steps:
  - { name: everyone, sql: "SELECT * FROM customers" }
outputs:
  everyone: { from: everyone, order_by: [customer_id] }
"#;

#[test]
fn no_personal_value_reaches_outputs_logs_or_the_manifest() {
    let s = Scratch::new();
    s.write("customers.csv", EXPORT);
    let p = s.write("p.yaml", PIPELINE);
    let r = segflow_env(
        &["-v", "run", p.to_str().expect("utf8"), "--period", "2025"],
        s.dir.path(),
        &[("SEGFLOW_PII_KEY", KEY)],
    );
    r.assert_code(0);

    // Everything a person or tool could read: stdout, stderr (with logs), every file under
    // out/ as bytes, and every Parquet value decoded.
    let mut seen = vec![r.stdout.clone(), r.stderr.clone()];
    let mut stack = vec![s.path("out")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("ls") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                seen.push(
                    String::from_utf8_lossy(&std::fs::read(&path).expect("read")).into_owned(),
                );
            }
        }
    }
    let files = parquet_files(&s.path("out"));
    assert_eq!(files.len(), 2, "output and quarantine");
    for file in &files {
        let (names, rows) = read_parquet(file);
        seen.push(names.join(","));
        seen.extend(rows.into_iter().flatten());
    }
    for value in PII {
        for text in &seen {
            assert!(
                !text.contains(value),
                "`{value}` leaked into: {}",
                &text[..text.len().min(400)]
            );
        }
    }

    let out = parquet_files(&s.path("out/everyone"));
    let (names, rows) = read_parquet(&out[0]);
    assert_eq!(
        names,
        vec!["customer_id", "email", "name", "birth_date", "amount"],
        "phone is dropped"
    );
    assert_eq!(
        rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(),
        vec!["C1", "C3"]
    );
    // The tokens are HMAC-SHA-256 under the key, computed independently with Python's hmac.
    let expected = run_python([
        "-c",
        "import hmac, hashlib, sys; print(' '.join(hmac.new(sys.argv[1].encode(), v.encode(), hashlib.sha256).hexdigest() for v in sys.argv[2:]))",
        KEY,
        "anna.berg@example.se",
        "Anna Berg",
        "1980-01-02",
    ]);
    assert_eq!(rows[0][1..4].join(" "), expected);

    let (_, quarantined) = read_parquet(&parquet_files(&s.path("out/quarantine/customers"))[0]);
    let raw_and_reason: Vec<(&str, &str)> = quarantined
        .iter()
        .map(|r| (r[3].as_str(), r[4].as_str()))
        .collect();
    assert_eq!(
        raw_and_reason,
        vec![
            (
                // A source with personal columns shows no field of a bad row: a shifted field
                // could hold a personal value in any column (see csv_file.rs).
                "<withheld>,<withheld>,<withheld>,<withheld>,<withheld>,<withheld>",
                "column `amount`: not a valid decimal(10,2) (value withheld: the source has personal columns, and a shifted field may hold one)"
            ),
            (
                "<withheld>,<withheld>,<withheld>,<withheld>,<withheld>,<withheld>",
                "column `birth_date`: not a valid date (value withheld: personal data)"
            ),
        ]
    );
}

#[test]
fn a_hash_column_without_a_key_is_a_configuration_error() {
    let s = Scratch::new();
    s.write("customers.csv", EXPORT);
    let p = s.write("p.yaml", PIPELINE);
    let r = segflow(&["validate", p.to_str().expect("utf8")], s.dir.path());
    r.assert_code(78);
    assert!(
        r.stderr
            .contains("the PII key variable `SEGFLOW_PII_KEY` is not set in the environment"),
        "{}",
        r.stderr
    );
    let p = s.write(
        "q.yaml",
        &PIPELINE.replace("privacy: { key_env: SEGFLOW_PII_KEY }\n", ""),
    );
    let r = segflow(&["validate", p.to_str().expect("utf8")], s.dir.path());
    r.assert_code(78);
    assert!(r.stderr.contains("`pii: hash` needs a key"), "{}", r.stderr);
}
