//! `segflow audit`: verify committed data against the manifests, show a period's lineage, and
//! the manifests as Parquet tables read back with DuckDB.

use std::path::{Path, PathBuf};

use segflow_manifest::{Manifest, RunStatus};

use crate::common::{Run, Scratch, current_artifact, run_python, segflow};

/// A yearly RFM fit and the monthly pipeline that applies it; each run reads the orders file
/// named by `--var ORDERS=…`, so inputs of earlier runs stay as they were.
fn pipeline(grain: &str) -> String {
    format!(
        r#"
pipeline: rfm_{grain}
period: {grain}
output_dir: out
sources:
  orders:
    path: ${{ORDERS}}
    schema: {{ order_id: int64, customer_id: string, order_date: date, amount: "decimal(10,2)" }}
steps:
  - name: rfm
    model: rfm
    input: orders
    order_id: order_id
    scores: {{ bins: 2, method: ntile }}
    segments:
      - {{ name: Top, when: "m = 2" }}
      - {{ name: Rest, when: true }}
outputs:
  rfm: {{ from: rfm, order_by: [customer_id] }}
"#
    )
}

const ORDERS_2025: &str = "order_id,customer_id,order_date,amount\n1,A,2025-03-01,10.00\n2,B,2025-04-01,20.00\n3,C,2025-05-01,30.00\n4,D,2025-06-01,40.00\n";
/// Other amounts: the refit's cut points differ, so its artifact is another version.
const ORDERS_2025_REFIT: &str = "order_id,customer_id,order_date,amount\n1,A,2025-03-01,10.00\n2,B,2025-04-01,20.00\n3,C,2025-05-01,300.00\n4,D,2025-06-01,400.00\n5,D,2025-07-01,5.00\n";
const ORDERS_2026_02: &str =
    "order_id,customer_id,order_date,amount\n11,A,2026-02-01,15.00\n12,E,2026-02-10,25.00\n";

fn run(s: &Scratch, grain: &str, period: &str, orders: &str) -> Run {
    let file = format!("{grain}.yaml");
    s.write(&file, &pipeline(grain));
    let run = segflow(
        &[
            "run",
            &file,
            "--period",
            period,
            "--var",
            &format!("ORDERS={orders}"),
        ],
        s.dir.path(),
    );
    run.assert_code(0);
    run
}

/// A 2025 fit and a February 2026 run applying it.
fn yearly_and_monthly() -> Scratch {
    let s = Scratch::new();
    s.write("orders_2025.csv", ORDERS_2025);
    s.write("orders_2026_02.csv", ORDERS_2026_02);
    run(&s, "year", "2025", "orders_2025.csv");
    run(&s, "month", "2026-02", "orders_2026_02.csv");
    s
}

fn verify(s: &Scratch, extra: &[&str]) -> Run {
    let mut args = vec!["audit", "verify", "out"];
    args.extend_from_slice(extra);
    segflow(&args, s.dir.path())
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes[offset] ^= 0x01;
    std::fs::write(path, bytes).expect("write");
}

fn part(s: &Scratch, period: &str) -> PathBuf {
    s.path(&format!("out/rfm/period={period}/part-00000.parquet"))
}

#[test]
fn verify_passes_on_untouched_output_and_names_every_file_that_changed() {
    let s = yearly_and_monthly();
    let ok = verify(&s, &[]);
    ok.assert_code(0);
    // Two runs; one file per partition; the fit and the artifact the monthly run applied; two
    // input files.
    assert!(
        ok.stdout.contains(
            "2 run(s); 2 output file(s) in 2 partition(s), 2 model artifact(s), 2 input file(s) (0 gone) checked: everything matches"
        ),
        "{}",
        ok.stdout
    );

    // One byte of a committed Parquet file.
    let s = yearly_and_monthly();
    flip_byte(&part(&s, "2025"), 4);
    let bad = verify(&s, &[]);
    bad.assert_code(1);
    assert!(
        bad.stdout.contains(&format!(
            "MISMATCH: {}: SHA-256 is",
            part(&s, "2025").display()
        )),
        "{}",
        bad.stdout
    );
    // The other period alone still verifies.
    verify(&s, &["--period", "2026-02"]).assert_code(0);

    // One byte of the model artifact: both the fit and the monthly run that applied it.
    let s = yearly_and_monthly();
    let artifact = current_artifact(&s.path("out"), "rfm", "2025");
    flip_byte(&artifact, 10);
    let bad = verify(&s, &[]);
    bad.assert_code(1);
    let named = format!("MISMATCH: {}: SHA-256 is", artifact.display());
    assert_eq!(bad.stdout.matches(&named).count(), 2, "{}", bad.stdout);

    // One byte of an input file.
    let s = yearly_and_monthly();
    let input = s.path("orders_2025.csv");
    flip_byte(&input, 30);
    let bad = verify(&s, &[]);
    bad.assert_code(1);
    assert!(
        bad.stdout
            .contains(&format!("{}: SHA-256 is", input.display()))
            && bad.stdout.contains("source `orders`"),
        "{}",
        bad.stdout
    );

    // A deleted partition: its file is missing.
    let s = yearly_and_monthly();
    std::fs::remove_dir_all(s.path("out/rfm/period=2026-02")).expect("rm");
    let bad = verify(&s, &[]);
    bad.assert_code(1);
    assert!(
        bad.stdout.contains(&format!(
            "MISMATCH: {}: missing",
            part(&s, "2026-02").display()
        )),
        "{}",
        bad.stdout
    );

    // A partition, and a file in one, that no manifest accounts for.
    let s = yearly_and_monthly();
    std::fs::create_dir_all(s.path("out/rfm/period=2024")).expect("mkdir");
    std::fs::copy(part(&s, "2025"), part(&s, "2024")).expect("copy");
    std::fs::copy(
        part(&s, "2025"),
        s.path("out/rfm/period=2025/part-00001.parquet"),
    )
    .expect("copy");
    let bad = verify(&s, &[]);
    bad.assert_code(1);
    assert!(
        bad.stdout.contains(&format!(
            "{}: a committed partition that no run manifest accounts for",
            s.path("out/rfm/period=2024").display()
        )) && bad.stdout.contains(&format!(
            "{}: a file in a committed partition that no manifest names",
            s.path("out/rfm/period=2025/part-00001.parquet").display()
        )),
        "{}",
        bad.stdout
    );

    // An input that is gone is a note, not a failure.
    let s = yearly_and_monthly();
    std::fs::remove_file(s.path("orders_2026_02.csv")).expect("rm");
    let gone = verify(&s, &[]);
    gone.assert_code(0);
    assert!(
        gone.stdout.contains("note: ")
            && gone.stdout.contains("orders_2026_02.csv: gone")
            && gone.stdout.contains("(1 gone)"),
        "{}",
        gone.stdout
    );
}

#[test]
fn verify_detects_a_schema_and_row_count_that_differ_from_the_manifest() {
    let s = yearly_and_monthly();
    // Rewrite the monthly manifest as if the file had been written with other columns and
    // rows: the file is intact, so only rows and schema disagree.
    let runs = segflow_manifest::RunHistory::load(&s.path("out/runs"));
    let monthly = runs
        .latest_succeeded(None, "2026-02")
        .expect("monthly run")
        .clone();
    let mut edited = monthly.clone();
    edited.outputs[0].files[0].rows += 1;
    edited.outputs[0].schema[0].data_type = "Int64".into();
    let path = s.path(&format!("out/runs/{}/manifest.json", monthly.run_id));
    std::fs::write(&path, edited.to_json()).expect("write");
    let bad = verify(&s, &["--period", "2026-02"]);
    bad.assert_code(1);
    let file = part(&s, "2026-02").display().to_string();
    assert!(
        bad.stdout.contains(&format!(
            "{file}: 2 rows in its Parquet footer, the manifest says 3"
        )) && bad.stdout.contains(&format!(
            "{file}: columns are (customer_id Utf8, last_order_date Date32"
        )) && bad.stdout.contains("the manifest says (customer_id Int64,"),
        "{}",
        bad.stdout
    );
}

#[test]
fn a_yearly_refit_keeps_the_earlier_monthly_runs_verifiable() {
    let s = yearly_and_monthly();
    let monthly = RunHistoryExt::latest(&s, "2026-02");
    s.write("orders_2025_refit.csv", ORDERS_2025_REFIT);
    let refit = run(&s, "year", "2025", "orders_2025_refit.csv").manifest();
    assert_ne!(refit.models[0].path, monthly.models[0].path);
    let ok = verify(&s, &[]);
    ok.assert_code(0);
    let monthly_only = verify(&s, &["--period", "2026-02"]);
    monthly_only.assert_code(0);
    assert!(
        monthly_only.stdout.contains("1 model artifact(s)"),
        "{}",
        monthly_only.stdout
    );
    // The next monthly run applies the refit.
    let again = run(&s, "month", "2026-02", "orders_2026_02.csv").manifest();
    assert_eq!(again.models[0].path, refit.models[0].path);
    verify(&s, &[]).assert_code(0);
}

struct RunHistoryExt;

impl RunHistoryExt {
    fn latest(s: &Scratch, period: &str) -> Manifest {
        segflow_manifest::RunHistory::load(&s.path("out/runs"))
            .latest_succeeded(None, period)
            .expect("a succeeded run")
            .clone()
    }
}

#[test]
fn show_tells_the_lineage_of_a_period() {
    let s = yearly_and_monthly();
    let monthly = RunHistoryExt::latest(&s, "2026-02");
    let out = segflow(
        &["audit", "show", "out", "--period", "2026-02"],
        s.dir.path(),
    );
    out.assert_code(0);
    let input = &monthly.inputs[0];
    let model = &monthly.models[0];
    for expected in [
        "period 2026-02 (month, 2026-02-01 to 2026-03-01), pipeline rfm_month".to_string(),
        format!("run        {} (succeeded", monthly.run_id),
        format!(
            "pipeline   {} sha256 {}",
            monthly.pipeline.file, monthly.pipeline.sha256
        ),
        format!("segflow    {}", monthly.segflow_version),
        "--var ORDERS=orders_2026_02.csv".to_string(),
        format!(
            "orders {} sha256 {} ({} bytes, 2 rows, 0 rejected, utf-8)",
            input.path, input.sha256, input.size
        ),
        format!(
            "rfm (rfm model `rfm`): applied, period 2025, {} sha256 {}",
            model.path, model.sha256
        ),
        format!(
            "rfm from rfm: 2 rows in 1 file(s), committed by run {}",
            monthly.run_id
        ),
    ] {
        assert!(out.stdout.contains(&expected), "{expected}\n{}", out.stdout);
    }
    assert!(
        model.path.contains("/out/models/rfm/period=2025/model-"),
        "{}",
        model.path
    );
    let yearly = segflow(&["audit", "show", "out", "--period", "2025"], s.dir.path());
    yearly.assert_code(0);
    assert!(
        yearly.stdout.contains(": fitted, period 2025, "),
        "{}",
        yearly.stdout
    );
    let none = segflow(&["audit", "show", "out", "--period", "2019"], s.dir.path());
    none.assert_code(2);
    assert!(
        none.stderr.contains("no run of period 2019"),
        "{}",
        none.stderr
    );
}

#[test]
fn the_manifest_tables_read_back_with_duckdb() {
    let s = yearly_and_monthly();
    // A failed run (its input is missing) is a row too.
    s.write("month.yaml", &pipeline("month"));
    segflow(
        &[
            "run",
            "month.yaml",
            "--period",
            "2026-03",
            "--var",
            "ORDERS=missing.csv",
        ],
        s.dir.path(),
    )
    .assert_code(2);
    let history = segflow_manifest::RunHistory::load(&s.path("out/runs"));
    let runs = history.runs();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[2].status, RunStatus::Failed);

    let runs_dir = s.path("out/runs");
    let query = r#"
import duckdb, json, sys
d = sys.argv[1]
t = lambda name: f"read_parquet('{d}/{name}.parquet')"
con = duckdb.connect()
out = {
  "runs": con.execute(f"select run_id, status, period, committed from {t('manifest')} order by started_at").fetchall(),
  "inputs": con.execute(f"select m.run_id, count(i.run_id), sum(i.rows) from {t('manifest')} m left join {t('manifest_inputs')} i using (run_id) group by m.run_id, m.started_at order by m.started_at").fetchall(),
  "models": con.execute(f"select run_id, mode, path, sha256 from {t('manifest_models')} order by run_id").fetchall(),
  "files": con.execute(f"select run_id, file, rows from {t('manifest_output_files')} order by run_id").fetchall(),
  "steps": con.execute(f"select count(*) from {t('manifest_steps')}").fetchone()[0],
}
print(json.dumps(out))
"#;
    let check = |expected_note: &str| {
        let text = run_python(["-c", query, &runs_dir.display().to_string()]);
        let got: serde_json::Value = serde_json::from_str(&text).expect("json");
        let status = |m: &Manifest| match m.status {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            _ => "other",
        };
        let expected_runs: Vec<serde_json::Value> = runs
            .iter()
            .map(|m| {
                serde_json::json!([
                    m.run_id,
                    status(m),
                    m.period.label,
                    m.outputs.iter().any(|o| o.committed)
                ])
            })
            .collect();
        assert_eq!(
            got["runs"],
            serde_json::json!(expected_runs),
            "{expected_note}"
        );
        // 4 + 2 order rows; the failed run found no file.
        assert_eq!(
            got["inputs"],
            serde_json::json!([
                [runs[0].run_id, 1, 4],
                [runs[1].run_id, 1, 2],
                [runs[2].run_id, 0, null]
            ]),
            "{expected_note}"
        );
        let mut models: Vec<serde_json::Value> = runs
            .iter()
            .flat_map(|m| {
                m.models
                    .iter()
                    .map(|a| serde_json::json!([m.run_id, a.mode, a.path, a.sha256]))
            })
            .collect();
        models.sort_by_key(|v| v[0].as_str().unwrap_or_default().to_string());
        assert_eq!(got["models"], serde_json::json!(models), "{expected_note}");
        assert_eq!(
            got["files"],
            serde_json::json!([
                [runs[0].run_id, "period=2025/part-00000.parquet", 4],
                [runs[1].run_id, "period=2026-02/part-00000.parquet", 2]
            ]),
            "{expected_note}"
        );
        // A source and a model step per successful run.
        assert_eq!(got["steps"], 4, "{expected_note}");
    };
    check("written at the end of each run");

    // Rebuilt on demand.
    for table in segflow_audit::TABLES {
        std::fs::remove_file(runs_dir.join(format!("{table}.parquet"))).expect("rm");
    }
    let index = segflow(&["audit", "index", "out"], s.dir.path());
    index.assert_code(0);
    assert!(
        index.stdout.contains("3 run(s) indexed into 7 table(s)"),
        "{}",
        index.stdout
    );
    check("rebuilt by `audit index`");
    // No temporary file is left beside them.
    let hidden: Vec<String> = std::fs::read_dir(&runs_dir)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn verify_of_a_directory_without_manifests_is_a_runtime_error() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("out")).expect("mkdir");
    let r = verify(&s, &[]);
    r.assert_code(2);
    assert!(r.stderr.contains("no run manifests"), "{}", r.stderr);
    segflow(
        &["audit", "verify", "out", "--period", "2025-13"],
        s.dir.path(),
    )
    .assert_code(64);
}
