//! The shipped pipeline against an independent implementation: the same logic written as
//! plain DuckDB SQL (`scripts/bench/duckdb_yearly.py`), compared customer by customer, every
//! column, on the demo data.

use crate::common::{Scratch, repo_root, run_python, segflow};

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
    let duckdb_out = s.path("duckdb");
    run_python([
        scripts.join("duckdb_yearly.py").as_os_str(),
        "--data".as_ref(),
        demo.join("data").as_os_str(),
        "--period".as_ref(),
        "2025".as_ref(),
        "--out".as_ref(),
        duckdb_out.as_os_str(),
    ]);
    let compared = run_python([
        scripts.join("compare_outputs.py").as_os_str(),
        demo.join("out/customer_segments").as_os_str(),
        duckdb_out.join("customer_segments").as_os_str(),
    ]);
    let n: usize = compared
        .strip_prefix("equal ")
        .and_then(|n| n.parse().ok())
        .expect(&compared);
    assert!(n > 3000, "only {n} customers compared");
}
