//! CRM exports as they really are: Windows-1252, `;`, decimal commas, day-first dates, quoted
//! line breaks, CRLF — and bad rows set aside with file, line, raw text and reason.

use crate::common::{Scratch, parquet_files, project, read_parquet, row, run_pipeline};

/// Lines (CRLF), in Windows-1252:
///  1 header with stray spaces and other case
///  2 K1: "Åsa Öberg", 1 234,50, 02.01.2025
///  3-4 K2: a quoted name with `;` and a line break, -0,75, 31.12.2025
///  5 K3: amount `12,3,4` (bad)
///  6 K4: date 31.02.2025 (bad)
///  7 K5: a short row (bad)
///  8 K6: Müller, 1 000 000,00, 15.06.2024, empty city
const EXPORT: &[u8] = b" KundNr ;Namn;Belopp;Datum;Ort\r\n\
K1;\xc5sa \xd6berg;1 234,50;02.01.2025;Malm\xf6\r\n\
K2;\"Bolaget; AB\r\navd. 2\";-0,75;31.12.2025;G\xf6teborg\r\n\
K3;Per;12,3,4;01.01.2025;Lund\r\n\
K4;Eva;10,00;31.02.2025;Lund\r\n\
K5;kort rad\r\n\
K6;M\xfcller;1 000 000,00;15.06.2024;\r\n";

fn pipeline(on_bad_row: &str) -> String {
    format!(
        r#"
pipeline: crm_extract
period: year
output_dir: out
sources:
  kunder:
    path: export/kunder_*.csv
    csv: {{ delimiter: ";", decimal: ",", thousands: " ", encoding: windows-1252 }}
    on_bad_row: {on_bad_row}
    schema:
      kundnr: {{ type: string, required: true }}
      namn: string
      belopp: "decimal(12,2)"
      datum: {{ type: date, format: "%d.%m.%Y" }}
      ort: string
steps:
  - {{ name: kunder_ut, sql: "SELECT * FROM kunder" }}
outputs:
  kunder_ut: {{ from: kunder_ut, order_by: [kundnr] }}
"#
    )
}

#[test]
fn windows_1252_export_loads_exact_values_and_quarantines_bad_rows() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("export")).expect("mkdir");
    std::fs::write(s.path("export/kunder_2025.csv"), EXPORT).expect("write");
    let p = s.write("p.yaml", &pipeline("quarantine"));
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(0);

    let (names, rows) = read_parquet(&parquet_files(&s.path("out/kunder_ut"))[0]);
    assert_eq!(names, vec!["kundnr", "namn", "belopp", "datum", "ort"]);
    assert_eq!(
        rows,
        vec![
            row(&["K1", "Åsa Öberg", "1234.50", "2025-01-02", "Malmö"]),
            row(&[
                "K2",
                "Bolaget; AB\r\navd. 2",
                "-0.75",
                "2025-12-31",
                "Göteborg"
            ]),
            row(&["K6", "Müller", "1000000.00", "2024-06-15", "NULL"]),
        ]
    );

    let (names, rows) = read_parquet(&parquet_files(&s.path("out/quarantine/kunder"))[0]);
    let file = format!("file://{}", s.path("export/kunder_2025.csv").display());
    assert_eq!(
        project(&names, &rows, &["source", "file", "line", "raw", "reason"]),
        vec![
            row(&[
                "kunder",
                &file,
                "5",
                "K3;Per;12,3,4;01.01.2025;Lund",
                "column `belopp`: cannot read `12,3,4` as decimal(12,2): not a number"
            ]),
            row(&[
                "kunder",
                &file,
                "6",
                "K4;Eva;10,00;31.02.2025;Lund",
                "column `datum`: cannot read `31.02.2025` as date: input is out of range (format `%d.%m.%Y`)"
            ]),
            row(&[
                "kunder",
                &file,
                "7",
                "K5;kort rad",
                "the row has 2 fields, the header has 5"
            ]),
        ]
    );

    let m = r.manifest();
    let source = &m.steps[0];
    assert_eq!(
        (source.rows_read, source.rows_written, source.rows_rejected),
        (6, 3, 3)
    );
    assert_eq!(
        (
            m.inputs[0].rows,
            m.inputs[0].rows_rejected,
            m.inputs[0].encoding.as_str()
        ),
        (6, 3, "windows-1252")
    );
    let quarantine = m
        .outputs
        .iter()
        .find(|o| o.output == "quarantine/kunder")
        .expect("quarantine output");
    assert_eq!((quarantine.rows, quarantine.committed), (3, true));

    // Fixed upstream: the next run's quarantine partition replaces the old one, now empty.
    let fixed: Vec<u8> = EXPORT
        .split(|&b| b == b'\n')
        .filter(|line| {
            !line.starts_with(b"K3") && !line.starts_with(b"K4") && !line.starts_with(b"K5")
        })
        .collect::<Vec<_>>()
        .join(&b'\n');
    std::fs::write(s.path("export/kunder_2025.csv"), fixed).expect("write");
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    let (_, rows) = read_parquet(&parquet_files(&s.path("out/quarantine/kunder"))[0]);
    assert!(rows.is_empty());
}

#[test]
fn on_bad_row_fail_names_file_and_line_and_commits_nothing() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("export")).expect("mkdir");
    std::fs::write(s.path("export/kunder_2025.csv"), EXPORT).expect("write");
    let p = s.write("p.yaml", &pipeline("fail"));
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(1);
    assert!(
        r.stderr
            .contains("3 bad row(s) in source `kunder` (on_bad_row: fail): file://"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("kunder_2025.csv:5: column `belopp`: cannot read `12,3,4` as decimal(12,2)"),
        "{}",
        r.stderr
    );
    assert!(!s.path("out/kunder_ut").exists());
    assert!(!s.path("out/quarantine").exists());
    let m = r.manifest();
    assert_eq!(m.status, segflow_manifest::RunStatus::ChecksFailed);
    assert_eq!(
        (
            m.steps[0].rows_read,
            m.steps[0].rows_written,
            m.steps[0].rows_rejected
        ),
        (6, 3, 3)
    );
}

#[test]
fn undeclared_utf8_errors_name_the_line_and_the_fix() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("export")).expect("mkdir");
    std::fs::write(s.path("export/kunder_2025.csv"), EXPORT).expect("write");
    let p = s.write(
        "p.yaml",
        &pipeline("fail").replace(", encoding: windows-1252", ""),
    );
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(2);
    assert!(
        r.stderr.contains("kunder_2025.csv`: not valid UTF-8 at line 2 (byte 35); declare `encoding: windows-1252`"),
        "{}",
        r.stderr
    );
}

/// A column added and one missing versus the declaration: recorded warnings under a lenient
/// policy (the missing one reads as NULL), errors naming file and column under a strict one.
#[test]
fn schema_drift_is_an_error_or_a_recorded_warning_never_silent() {
    let s = Scratch::new();
    s.write("c.csv", "customer_id,segment_code\nA,x\nB,y\n");
    let pipeline = |policy: &str| {
        format!(
            "pipeline: p\nperiod: year\noutput_dir: out\nsources:\n  c:\n    path: c.csv\n    schema_drift: {policy}\n    schema: {{ customer_id: string, email: string }}\nsteps: [ {{ name: s, sql: \"SELECT customer_id, email FROM c\" }} ]\noutputs: {{ s: {{ from: s, order_by: [customer_id] }} }}\n"
        )
    };
    let p = s.write("lenient.yaml", &pipeline("{ added: warn, missing: warn }"));
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(0);
    let (_, rows) = read_parquet(&parquet_files(&s.path("out/s"))[0]);
    assert_eq!(rows, vec![row(&["A", "NULL"]), row(&["B", "NULL"])]);
    let drift: Vec<String> = r
        .manifest()
        .checks
        .iter()
        .filter(|c| c.name == "schema_drift")
        .map(|c| c.message.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        drift,
        vec![
            "c.csv` lacks declared column `email`; read as NULL",
            "c.csv` has undeclared column(s) `segment_code`; not read"
        ]
    );
    let p = s.write("strict.yaml", &pipeline("{ added: error }"));
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(2);
    assert!(
        r.stderr.contains("c.csv` lacks declared column `email`"),
        "{}",
        r.stderr
    );
    s.write("c.csv", "customer_id,email,segment_code\nA,a@x,x\n");
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(2);
    assert!(
        r.stderr
            .contains("c.csv` has undeclared column(s) `segment_code` (schema_drift.added: error)"),
        "{}",
        r.stderr
    );
}

/// An Excel export written by openpyxl (as other tools write it): numbers, whole numbers,
/// dates and a bad cell, on a named sheet.
#[test]
fn excel_sheet_loads_typed_values_and_quarantines_bad_cells() {
    let s = Scratch::new();
    let workbook = s.path("export.xlsx");
    crate::common::run_python([
        "-c",
        "import sys, datetime, openpyxl\n\
wb = openpyxl.Workbook(); wb.active.title = 'Notes'; ws = wb.create_sheet('Kunder')\n\
ws.append(['KundNr', 'Belopp', 'Antal', 'Datum'])\n\
ws.append(['K1', 1234.5, 10, datetime.date(2025, 1, 2)])\n\
ws.append(['K2', 'saknas', 3, datetime.date(2025, 2, 3)])\n\
ws.append(['K3', -0.25, 0, datetime.datetime(2025, 12, 31, 0, 0)])\n\
wb.save(sys.argv[1])",
        workbook.to_str().expect("utf8"),
    ]);
    let p = s.write(
        "p.yaml",
        "pipeline: p\nperiod: year\noutput_dir: out\nsources:\n  kunder:\n    path: export.xlsx\n    sheet: Kunder\n    on_bad_row: quarantine\n    schema: { kundnr: string, belopp: \"decimal(10,2)\", antal: int32, datum: date }\nsteps: [ { name: s, sql: SELECT * FROM kunder } ]\noutputs: { s: { from: s, order_by: [kundnr] } }\n",
    );
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(0);
    let (_, rows) = read_parquet(&parquet_files(&s.path("out/s"))[0]);
    assert_eq!(
        rows,
        vec![
            row(&["K1", "1234.50", "10", "2025-01-02"]),
            row(&["K3", "-0.25", "0", "2025-12-31"])
        ]
    );
    let (names, bad) = read_parquet(&parquet_files(&s.path("out/quarantine/kunder"))[0]);
    assert_eq!(
        project(&names, &bad, &["line", "raw", "reason"]),
        vec![row(&[
            "3",
            "K2,saknas,3,2025-02-03",
            "column `belopp`: cannot read `saknas` as decimal(10,2): unexpected `s`"
        ])]
    );
    let m = r.manifest();
    assert_eq!(
        (
            m.inputs[0].encoding.as_str(),
            m.inputs[0].rows,
            m.inputs[0].rows_rejected
        ),
        ("xlsx", 3, 1)
    );
}

/// The same three rows as CRM systems write them in other dialects — tab and pipe
/// delimiters, ISO-8859-1, compact dates, zoned timestamps, gzip and zstd — load to the same
/// typed values.
#[test]
fn dialects_and_compression_load_to_the_same_values() {
    use std::io::Write;

    let expected = vec![
        row(&["A", "Ærø", "12.50", "2025-01-02", "2025-01-02T12:00:00Z"]),
        row(&["B", "Köln", "-3.00", "2025-12-31", "2025-12-31T23:59:59Z"]),
        row(&["C", "NULL", "1000.00", "NULL", "NULL"]),
    ];
    let text = |sep: &str, dates: [&str; 2]| {
        format!(
            "id{sep}city{sep}amount{sep}day{sep}at\nA{sep}Ærø{sep}12.5{sep}{}{sep}2025-01-02T13:00:00+01:00\nB{sep}Köln{sep}-3{sep}{}{sep}2025-12-31T23:59:59Z\nC{sep}{sep}1000{sep}{sep}\n",
            dates[0], dates[1]
        )
    };
    let gzip = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).expect("gzip");
        e.finish().expect("gzip")
    };
    let latin1 = |s: &str| {
        s.chars()
            .map(|c| u8::try_from(u32::from(c)).expect("latin-1"))
            .collect::<Vec<u8>>()
    };
    let iso = ["2025-01-02", "2025-12-31"];
    let variants: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "tab.tsv",
            r#"{ delimiter: "\t" }"#,
            text("\t", iso).into_bytes(),
        ),
        (
            "pipe.csv",
            r#"{ delimiter: "|" }"#,
            text("|", ["20250102", "20251231"]).into_bytes(),
        ),
        (
            "latin1.csv",
            "{ encoding: iso-8859-1 }",
            latin1(&text(",", iso)),
        ),
        ("gzip.csv.gz", "{ }", gzip(text(",", iso).as_bytes())),
        (
            "zstd.csv.zst",
            "{ }",
            zstd::encode_all(text(",", iso).as_bytes(), 3).expect("zstd"),
        ),
    ];
    for (file, csv, bytes) in variants {
        let s = Scratch::new();
        std::fs::write(s.path(file), bytes).expect("write");
        let day_format = if file == "pipe.csv" {
            "%Y%m%d"
        } else {
            "%Y-%m-%d"
        };
        let p = s.write(
            "p.yaml",
            &format!(
                "pipeline: p\nperiod: year\noutput_dir: out\nsources:\n  c:\n    path: {file}\n    format: csv\n    csv: {csv}\n    schema: {{ id: string, city: string, amount: \"decimal(10,2)\", day: {{ type: date, format: \"{day_format}\" }}, at: timestamp }}\nsteps: [ {{ name: s, sql: SELECT * FROM c }} ]\noutputs: {{ s: {{ from: s, order_by: [id] }} }}\n"
            ),
        );
        let r = run_pipeline(&p, "2025", s.dir.path());
        r.assert_code(0);
        let (_, rows) = read_parquet(&parquet_files(&s.path("out/s"))[0]);
        assert_eq!(rows, expected, "{file}");
    }
}

/// Regression (issue 11, CSV edge cases): a file refused whole (here: a declared column is
/// missing) was absent from the manifest's `inputs`, so the manifest of the failed run did not
/// say which files were there. Every listed file is recorded, the refused one with its reason.
#[test]
fn a_file_refused_whole_is_in_the_manifest_inputs_with_its_reason() {
    let s = Scratch::new();
    s.write("in/a.csv", "id,amount\n1,2.50\n");
    s.write("in/b.csv", "id\n2\n");
    let p = s.write(
        "p.yaml",
        r#"
pipeline: refused
period: year
output_dir: out
sources:
  orders:
    path: in/*.csv
    schema: { id: int64, amount: "decimal(10,2)" }
steps:
  - { name: all_orders, sql: "SELECT * FROM orders" }
outputs:
  all_orders: { from: all_orders, order_by: [id] }
"#,
    );
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(2);
    let m = r.manifest();
    let by_file: std::collections::BTreeMap<String, Option<String>> = m
        .inputs
        .iter()
        .map(|i| {
            (
                i.path.rsplit('/').next().unwrap_or("").to_string(),
                i.refused.clone(),
            )
        })
        .collect();
    assert_eq!(by_file.len(), 2, "{:?}", m.inputs);
    let b = by_file["b.csv"].as_deref().expect("b.csv refused");
    assert!(b.contains("lacks declared column `amount`"), "{b}");
    assert!(by_file["a.csv"].is_some(), "a.csv was not used either");
    assert!(m.inputs.iter().all(|i| i.sha256.is_empty() && i.rows == 0));
}
