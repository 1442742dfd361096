//! CLV on real data: the CDNOW sample (2,357 customers, calibration until 1997-09-30, shipped
//! in the PyPI package `lifetimes` 0.11.3), run through a pipeline YAML. The fit must reproduce
//! the published BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma estimates to 3 significant
//! digits, and the per-customer summaries must equal the ones `lifetimes` ships.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::common::{
    Scratch, current_artifact, parquet_files, project, read_parquet, run_pipeline, run_python,
};

fn lifetimes_datasets() -> PathBuf {
    PathBuf::from(run_python([
        "-c",
        "import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec('lifetimes').origin), 'datasets'))",
    ]))
}

/// `CDNOW_sample.txt` is whitespace-aligned text (master id, sample id, YYYYMMDD, CDs,
/// dollars); written as CSV keyed by the sample id, which is the summary file's `ID`.
fn cdnow_csv(datasets: &std::path::Path) -> String {
    let text =
        std::fs::read_to_string(datasets.join("CDNOW_sample.txt")).expect("CDNOW_sample.txt");
    let mut csv = String::from("customer_id,order_date,quantity,amount\n");
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 5, "{line}");
        let id: u32 = f[1].parse().expect("id");
        csv.push_str(&format!("{id},{},{},{}\n", f[2], f[3], f[4]));
    }
    csv
}

const PIPELINE: &str = r#"
pipeline: cdnow_clv
period: year
sources:
  transactions:
    path: cdnow.csv
    schema:
      customer_id: int64
      order_date: { type: date, format: "%Y%m%d" }
      quantity: int64
      amount: double
steps:
  - name: clv
    model: clv
    input: transactions
    customer: customer_id
    date: order_date
    amount: amount
    observation_end: 1997-09-30
    time_unit: weeks
    horizon: 39
    clv_months: 12
    monthly_discount: 0.01
    churn: { p_alive_below: 0.3 }
outputs:
  clv: { from: clv, order_by: [customer_id] }
"#;

fn sig3(value: f64, published: f64) -> bool {
    // Same to 3 significant digits: rounding both to 3 significant digits agrees.
    let round = |v: f64| {
        let scale = 10f64.powi(2 - v.abs().log10().floor() as i32);
        (v * scale).round() / scale
    };
    round(value) == round(published)
}

#[test]
fn bgnbd_and_gamma_gamma_reproduce_the_published_cdnow_estimates() {
    let datasets = lifetimes_datasets();
    let s = Scratch::new();
    s.write("cdnow.csv", &cdnow_csv(&datasets));
    let p = s.write("clv.yaml", PIPELINE);
    let run = run_pipeline(&p, "1997", s.dir.path());
    run.assert_code(0);
    let artifact: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(current_artifact(&s.path("out"), "clv", "1997"))
            .expect("artifact"),
    )
    .expect("json");
    let params = &artifact["parameters"];
    let get = |path: &[&str]| {
        path.iter()
            .fold(params, |v, k| &v[*k])
            .as_f64()
            .unwrap_or_else(|| panic!("{path:?} in {params}"))
    };
    for (path, published) in [
        (["bgnbd", "r"], 0.2426),
        (["bgnbd", "alpha"], 4.4135),
        (["bgnbd", "a"], 0.7929),
        (["bgnbd", "b"], 2.4258),
        (["bgnbd_fit", "log_likelihood"], -9582.4),
        (["gamma_gamma", "p"], 6.2488),
        (["gamma_gamma", "q"], 3.7446),
        (["gamma_gamma", "v"], 15.4477),
    ] {
        let got = get(&path);
        assert!(
            sig3(got, published),
            "{path:?}: {got} vs published {published}"
        );
    }
    assert_eq!(params["bgnbd_fit"]["converged"], true);
    assert_eq!(artifact["fitted_rows"], 2357);

    // Per customer, the summary equals lifetimes' own (x, t_x, T, zbar rounded to 2 places).
    let summary =
        std::fs::read_to_string(datasets.join("cdnow_customers_summary_with_transactions.csv"))
            .expect("summary");
    let expected: BTreeMap<String, Vec<f64>> = summary
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].to_string(),
                f[1..].iter().map(|v| v.parse().expect("number")).collect(),
            )
        })
        .collect();
    assert_eq!(expected.len(), 2357);
    let files = parquet_files(&s.path("out/clv/period=1997"));
    let (names, rows) = read_parquet(&files[0]);
    let rows = project(
        &names,
        &rows,
        &[
            "customer_id",
            "frequency",
            "recency",
            "t",
            "mean_spend",
            "p_alive",
            "churn_risk",
        ],
    );
    assert_eq!(rows.len(), 2357);
    for r in &rows {
        let want = &expected[&r[0]];
        let got: Vec<f64> = r[1..4].iter().map(|v| v.parse().expect("number")).collect();
        for (g, w) in got.iter().zip(&want[..3]) {
            assert!(
                (g - w).abs() <= 0.005 + 1e-9,
                "customer {}: {got:?} vs {want:?}",
                r[0]
            );
        }
        let zbar: f64 = if r[4] == "NULL" {
            0.0
        } else {
            r[4].parse().expect("number")
        };
        assert!(
            (zbar - want[3]).abs() <= 0.005 + 1e-9,
            "customer {} zbar {zbar} vs {}",
            r[0],
            want[3]
        );
        let p_alive: f64 = r[5].parse().expect("number");
        assert!((0.0..=1.0).contains(&p_alive));
        assert_eq!(r[6] == "true", p_alive < 0.3, "customer {}", r[0]);
    }
}
