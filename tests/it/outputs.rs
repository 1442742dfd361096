//! The output contract: hive-partitioned Parquet that DuckDB and pyarrow read as it is,
//! byte-identical re-runs, one period replaced at a time, failed runs change nothing, and a
//! manifest that accounts for every file and row.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::common::{
    Scratch, parquet_files, read_parquet, repo_root, run_pipeline, run_python, segflow,
};

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read")))
}

/// Relative path → checksum of every file under `root`.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    parquet_files(root)
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string(),
                sha256(&p),
            )
        })
        .collect()
}

/// What README's first command does, here in a scratch directory.
#[test]
fn demo_output_is_read_by_duckdb_and_pyarrow_with_hive_partitioning() {
    let s = Scratch::new();
    let demo = s.path("demo");
    let r = segflow(
        &["demo", "--dir", demo.to_str().expect("utf8")],
        repo_root(),
    );
    r.assert_code(0);
    assert!(r.stdout.contains("customer_segments"), "{}", r.stdout);
    let files = parquet_files(&demo.join("out/customer_segments"));
    assert_eq!(files.len(), 1);
    assert!(files[0].ends_with("customer_segments/period=2025/part-00000.parquet"));
    let manifest = r.manifest();
    assert_eq!(manifest.status, segflow_manifest::RunStatus::Succeeded);
    let expected_rows = manifest
        .outputs
        .iter()
        .find(|o| o.output == "customer_segments")
        .expect("output")
        .rows;

    let script = r#"
import sys, duckdb, pyarrow.dataset as ds
root = sys.argv[1]
con = duckdb.connect()
n, periods, tiers = con.execute(
    f"SELECT count(*), list(DISTINCT period), list(DISTINCT value_tier ORDER BY value_tier) "
    f"FROM read_parquet('{root}/*/*.parquet', hive_partitioning = true)").fetchone()
t = ds.dataset(root, format="parquet", partitioning="hive").to_table()
print(n, periods, tiers, t.num_rows, sorted(set(t.column("period").to_pylist())))
"#;
    let root = demo.join("out/customer_segments");
    assert_eq!(
        run_python(["-c", script, root.to_str().expect("utf8")]),
        format!("{expected_rows} [2025] ['A', 'B', 'C'] {expected_rows} [2025]")
    );
}

/// A small pipeline whose second output can be made to fail after the first is staged.
fn fixture(s: &Scratch) -> std::path::PathBuf {
    s.write(
        "orders.csv",
        "order_id,customer_id,order_date,amount\n1,A,2024-05-01,10.00\n2,B,2024-06-01,20.00\n3,A,2025-02-01,30.00\n4,C,2025-03-01,40.00\n",
    );
    s.write(
        "p.yaml",
        r#"
pipeline: fixture
period: year
output_dir: out
vars:
  EXTRA: { raw: true }   # extra SQL columns, to make a run fail on purpose
sources:
  orders:
    path: orders.csv
    schema: { order_id: int64, customer_id: string, order_date: date, amount: "decimal(10,2)" }
steps:
  - name: yearly
    sql: |
      SELECT customer_id, sum(amount) AS revenue FROM orders
      WHERE order_date >= ${period.start} AND order_date < ${period.end}
      GROUP BY customer_id
  - name: counts
    sql: SELECT count(*) AS customers ${EXTRA:-} FROM yearly
outputs:
  yearly: { from: yearly }
  counts: { from: counts }
"#,
    )
}

#[test]
fn reruns_are_byte_identical_and_periods_are_independent() {
    let s = Scratch::new();
    let p = fixture(&s);
    let p = p.to_str().expect("utf8");
    let out = s.path("out");
    segflow(&["run", p, "--period", "2025"], s.dir.path()).assert_code(0);
    let first = snapshot(&out);
    assert_eq!(
        first.keys().cloned().collect::<Vec<_>>(),
        vec![
            "counts/period=2025/part-00000.parquet",
            "yearly/period=2025/part-00000.parquet"
        ]
    );
    let (_, rows) = read_parquet(&out.join("yearly/period=2025/part-00000.parquet"));
    assert_eq!(rows, vec![vec!["A", "30.00"], vec!["C", "40.00"]]);

    let again = segflow(&["run", p, "--period", "2025"], s.dir.path());
    again.assert_code(0);
    assert_eq!(
        snapshot(&out),
        first,
        "a re-run must give byte-identical files"
    );
    let recorded: BTreeMap<String, String> = again
        .manifest()
        .outputs
        .iter()
        .flat_map(|o| {
            o.files
                .iter()
                .map(move |f| (format!("{}/{}", o.output, f.path), f.sha256.clone()))
        })
        .collect();
    assert_eq!(
        recorded, first,
        "the manifest's checksums are the files' checksums"
    );

    segflow(&["run", p, "--period", "2024"], s.dir.path()).assert_code(0);
    let both = snapshot(&out);
    assert_eq!(both.len(), 4);
    for (file, sum) in &first {
        assert_eq!(
            both.get(file),
            Some(sum),
            "{file} changed when another period ran"
        );
    }
    let (_, rows) = read_parquet(&out.join("yearly/period=2024/part-00000.parquet"));
    assert_eq!(rows, vec![vec!["A", "10.00"], vec!["B", "20.00"]]);
}

#[test]
fn a_run_failing_after_staging_leaves_previous_output_intact() {
    let s = Scratch::new();
    let p = fixture(&s);
    let p = p.to_str().expect("utf8");
    let out = s.path("out");
    segflow(&["run", p, "--period", "2025"], s.dir.path()).assert_code(0);
    let before = snapshot(&out);
    // Add a row so a successful run would change `yearly`, then break `counts`, the second
    // output: `yearly` gets staged, then the run fails.
    let mut orders = std::fs::read_to_string(s.path("orders.csv")).expect("read");
    orders.push_str("5,D,2025-04-01,50.00\n");
    std::fs::write(s.path("orders.csv"), orders).expect("write");
    let r = segflow(
        &["run", p, "--period", "2025", "--var", "EXTRA=, 1 AS period"],
        s.dir.path(),
    );
    r.assert_code(2);
    assert!(r.stderr.contains("output `counts`"), "{}", r.stderr);
    assert_eq!(
        snapshot(&out),
        before,
        "a failed run must not change committed output"
    );
    for table in ["yearly", "counts"] {
        let leftovers: Vec<_> = std::fs::read_dir(out.join(table))
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
    }
    let m = r.manifest();
    assert_eq!(m.status, segflow_manifest::RunStatus::Failed);
    assert!(m.error.as_deref().unwrap_or_default().contains("period"));
    assert!(m.outputs.iter().all(|o| !o.committed));
}

#[test]
fn manifest_accounts_for_inputs_steps_and_rows() {
    let s = Scratch::new();
    let p = fixture(&s);
    let r = run_pipeline(&p, "2025", s.dir.path());
    r.assert_code(0);
    let m = r.manifest();
    assert_eq!(m.pipeline.name, "fixture");
    assert_eq!(m.pipeline.sha256, sha256(&p));
    assert_eq!(
        (m.period.start.as_str(), m.period.end.as_str()),
        ("2025-01-01", "2026-01-01")
    );
    assert_eq!(m.inputs.len(), 1);
    assert_eq!(m.inputs[0].sha256, sha256(&s.path("orders.csv")));
    assert_eq!(m.inputs[0].rows, 4);
    let steps: Vec<(&str, &str, u64, u64, u64)> = m
        .steps
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.kind.as_str(),
                s.rows_read,
                s.rows_written,
                s.rows_rejected,
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            ("orders", "source", 4, 4, 0),
            ("yearly", "sql", 4, 2, 0),
            ("counts", "sql", 2, 1, 0)
        ]
    );
    for step in &m.steps {
        assert_eq!(
            step.rows_read,
            step.rows_written + step.rows_rejected,
            "{}",
            step.name
        );
        if step.kind == "source" {
            break;
        }
    }
    assert!(m.outputs.iter().all(|o| o.committed));
    assert_eq!(m.outputs[0].files[0].path, "period=2025/part-00000.parquet");
    assert!(m.arguments.iter().any(|a| a == "--period"));
    assert!(
        ["extract", "transform", "write", "commit"]
            .iter()
            .all(|k| m.timings.contains_key(*k))
    );
    assert_eq!(
        r.manifest_path().parent().and_then(|d| d.parent()),
        Some(s.path("out/runs").as_path())
    );
}

/// Sub-partitions below `period` with awkward values: a `/`, an `=`, and NULL. The directory
/// names are escaped and DuckDB reads the values back.
#[test]
fn sub_partitions_escape_their_values_and_read_back() {
    let s = Scratch::new();
    s.write(
        "c.csv",
        "customer_id,region\nA,Nord/Ost\nB,\nC,a=b\nD,Nord/Ost\n",
    );
    let p = s.write(
        "p.yaml",
        "pipeline: p\nperiod: year\noutput_dir: out\nsources:\n  c: { path: c.csv, schema: { customer_id: string, region: string } }\nsteps: [ { name: s, sql: \"SELECT customer_id, region FROM c\" } ]\noutputs: { s: { from: s, partition_by: [period, region] } }\n",
    );
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    let root = s.path("out/s");
    let files: Vec<String> = parquet_files(&root)
        .iter()
        .map(|f| {
            f.strip_prefix(&root)
                .expect("under root")
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        files,
        vec![
            "period=2025/region=Nord%2FOst/part-00000.parquet",
            "period=2025/region=__HIVE_DEFAULT_PARTITION__/part-00000.parquet",
            "period=2025/region=a%3Db/part-00000.parquet",
        ]
    );
    let script = "import sys, duckdb; print(duckdb.sql(f\"SELECT string_agg(customer_id || ':' || coalesce(region, 'NULL') || ':' || period, ',' ORDER BY customer_id) FROM read_parquet('{sys.argv[1]}/*/*/*.parquet', hive_partitioning = true)\").fetchall()[0][0])";
    assert_eq!(
        run_python(["-c", script, root.to_str().expect("utf8")]),
        "A:Nord/Ost:2025,B:NULL:2025,C:a=b:2025,D:Nord/Ost:2025"
    );
}
