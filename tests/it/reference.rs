//! The shipped pipeline against an independent implementation: the same logic written as
//! plain DuckDB SQL (`scripts/bench/duckdb_yearly.py`), compared customer by customer, every
//! column, on the demo data.

use std::process::Command;

use crate::common::{Scratch, python, repo_root, segflow};

#[test]
fn shipped_pipeline_matches_the_duckdb_reference_for_every_customer() {
    let s = Scratch::new();
    let demo = s.path("demo");
    segflow(
        &["demo", "--dir", demo.to_str().expect("utf8")],
        repo_root(),
    )
    .assert_code(0);
    let scripts = repo_root().join("scripts/bench");
    let reference = Command::new(python())
        .arg(scripts.join("duckdb_yearly.py"))
        .args(["--data", demo.join("data").to_str().expect("utf8")])
        .args([
            "--period",
            "2025",
            "--out",
            s.path("duckdb").to_str().expect("utf8"),
        ])
        .output()
        .expect("python");
    assert!(
        reference.status.success(),
        "{}",
        String::from_utf8_lossy(&reference.stderr)
    );
    let compare = Command::new(python())
        .arg(scripts.join("compare_outputs.py"))
        .arg(demo.join("out/customer_segments"))
        .arg(s.path("duckdb/customer_segments"))
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&compare.stdout);
    assert!(
        compare.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&compare.stderr)
    );
    let n: usize = stdout
        .trim()
        .strip_prefix("equal ")
        .and_then(|n| n.parse().ok())
        .expect("count");
    assert!(n > 3000, "only {n} customers compared");
}
