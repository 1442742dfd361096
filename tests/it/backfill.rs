//! Backfills: `segflow run PIPELINE... --period FIRST..LAST` runs each pipeline's periods in
//! order, skips the ones unchanged since their latest successful run, stops at the first
//! failure and says what became of every period.

use std::path::Path;

use crate::common::{Run, Scratch, parquet_files, read_parquet, run_pipeline, segflow};

/// Each year reads its own orders file and the shared region table.
const TOTALS: &str = r#"
pipeline: yearly_totals
period: year
output_dir: out
sources:
  orders:
    path: orders_${period}.csv
    schema: { customer_id: string, amount: "decimal(10,2)" }
  regions:
    path: regions.csv
    schema: { customer_id: string, region: string }
steps:
  - name: totals
    sql: |
      SELECT r.region, sum(o.amount) AS revenue
      FROM orders o JOIN regions r ON r.customer_id = o.customer_id
      WHERE o.amount >= ${MIN_AMOUNT:-0}
      GROUP BY r.region
outputs:
  totals: { from: totals, order_by: [region] }
"#;

const REGIONS: &str = "customer_id,region\nA,North\nB,South\nC,North\n";

fn three_years(s: &Scratch) -> std::path::PathBuf {
    // 2019: North = A 10 + C 5 = 15, South = B 20; 2020: North 1 + 2 = 3, South 30;
    // 2021: North 100, South 7.
    s.write(
        "orders_2019.csv",
        "customer_id,amount\nA,10.00\nB,20.00\nC,5.00\n",
    );
    s.write(
        "orders_2020.csv",
        "customer_id,amount\nA,1.00\nB,30.00\nC,2.00\n",
    );
    s.write("orders_2021.csv", "customer_id,amount\nA,100.00\nB,7.00\n");
    s.write("regions.csv", REGIONS);
    s.write("totals.yaml", TOTALS)
}

fn backfill(pipelines: &[&Path], range: &str, extra: &[&str], cwd: &Path) -> Run {
    let mut args = vec!["run"];
    args.extend(pipelines.iter().map(|p| p.to_str().expect("utf8")));
    args.extend(["--period", range]);
    args.extend(extra);
    segflow(&args, cwd)
}

/// The summary's rows: (pipeline, period, fate, detail).
fn summary(run: &Run) -> Vec<(String, String, String, String)> {
    let mut lines = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("backfill "));
    lines
        .next()
        .unwrap_or_else(|| panic!("no summary in:\n{}", run.stdout));
    lines
        .map(|l| {
            let cells: Vec<&str> = l
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            assert_eq!(cells.len(), 4, "summary row `{l}`");
            (
                cells[0].to_string(),
                cells[1].to_string(),
                cells[2].to_string(),
                cells[3].to_string(),
            )
        })
        .collect()
}

fn fates(run: &Run) -> Vec<(String, String)> {
    summary(run)
        .into_iter()
        .map(|(_, period, fate, _)| (period, fate))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Every run of the output directory, oldest first: (pipeline, period, status).
fn history(s: &Scratch) -> Vec<(String, String, String)> {
    segflow_manifest::RunHistory::load(&s.path("out/runs"))
        .runs()
        .iter()
        .map(|m| {
            (
                m.pipeline.name.clone(),
                m.period.label.clone(),
                format!("{:?}", m.status),
            )
        })
        .collect()
}

fn totals(s: &Scratch, period: &str) -> Vec<Vec<String>> {
    let files = parquet_files(&s.path(&format!("out/totals/period={period}")));
    assert_eq!(files.len(), 1);
    read_parquet(&files[0]).1
}

#[test]
fn a_backfill_runs_in_order_skips_unchanged_periods_and_reruns_what_changed() {
    let s = Scratch::new();
    let p = three_years(&s);
    let cwd = s.dir.path();

    // First backfill: three runs, in order.
    let first = backfill(&[&p], "2019..2021", &[], cwd);
    first.assert_code(0);
    assert_eq!(
        fates(&first),
        pairs(&[("2019", "ran"), ("2020", "ran"), ("2021", "ran")])
    );
    assert!(
        first
            .stdout
            .contains("backfill 2019..2021: 3 period(s): 3 ran, 0 skipped, 0 failed, 0 not run"),
        "{}",
        first.stdout
    );
    let runs = history(&s);
    let periods: Vec<&str> = runs.iter().map(|(_, p, _)| p.as_str()).collect();
    assert_eq!(periods, ["2019", "2020", "2021"], "started in order");
    assert!(runs.iter().all(|(_, _, status)| status == "Succeeded"));
    assert_eq!(totals(&s, "2019"), [["North", "15.00"], ["South", "20.00"]]);
    assert_eq!(totals(&s, "2020"), [["North", "3.00"], ["South", "30.00"]]);
    assert_eq!(totals(&s, "2021"), [["North", "100.00"], ["South", "7.00"]]);
    let first_ids: Vec<String> = summary(&first)
        .into_iter()
        .map(|(_, _, _, detail)| detail.trim_start_matches("run ").to_string())
        .collect();

    // Rerun: nothing changed, every period skipped, naming the run it matches; no new run.
    let again = backfill(&[&p], "2019..2021", &[], cwd);
    again.assert_code(0);
    let rows = summary(&again);
    for (row, id) in rows.iter().zip(&first_ids) {
        assert_eq!(row.2, "skipped");
        assert_eq!(row.3, format!("unchanged since run {id}"));
    }
    assert!(again.stdout.contains("2020: skipped, unchanged since run"));
    assert_eq!(history(&s).len(), 3);

    // Same bytes written again (a new modification time): still unchanged, by content.
    s.write(
        "orders_2020.csv",
        "customer_id,amount\nA,1.00\nB,30.00\nC,2.00\n",
    );
    let touched = backfill(&[&p], "2019..2021", &[], cwd);
    assert_eq!(
        fates(&touched),
        pairs(&[
            ("2019", "skipped"),
            ("2020", "skipped"),
            ("2021", "skipped")
        ])
    );

    // One byte of 2020's own file (same size): exactly 2020 reruns.
    s.write(
        "orders_2020.csv",
        "customer_id,amount\nA,9.00\nB,30.00\nC,2.00\n",
    );
    let one = backfill(&[&p], "2019..2021", &[], cwd);
    one.assert_code(0);
    assert_eq!(
        fates(&one),
        pairs(&[("2019", "skipped"), ("2020", "ran"), ("2021", "skipped")])
    );
    assert!(
        one.stdout
            .contains("yearly_totals 2020: running (input changed: file://"),
        "{}",
        one.stdout
    );
    assert_eq!(totals(&s, "2020"), [["North", "11.00"], ["South", "30.00"]]);

    // The region table is read by every year: all three rerun.
    s.write(
        "regions.csv",
        "customer_id,region\nA,North\nB,South\nC,South\n",
    );
    let all = backfill(&[&p], "2019..2021", &[], cwd);
    all.assert_code(0);
    assert_eq!(
        fates(&all),
        pairs(&[("2019", "ran"), ("2020", "ran"), ("2021", "ran")])
    );
    assert_eq!(totals(&s, "2019"), [["North", "10.00"], ["South", "25.00"]]);

    // A variable the SQL uses is part of what a run computed from.
    let var = backfill(&[&p], "2019..2021", &["--var", "MIN_AMOUNT=6"], cwd);
    var.assert_code(0);
    assert_eq!(
        fates(&var),
        pairs(&[("2019", "ran"), ("2020", "ran"), ("2021", "ran")])
    );
    assert!(var.stdout.contains("the pipeline's variables differ"));
    assert_eq!(totals(&s, "2019"), [["North", "10.00"], ["South", "20.00"]]);
    let same_var = backfill(&[&p], "2019..2021", &["--var", "MIN_AMOUNT=6"], cwd);
    assert_eq!(
        summary(&same_var)
            .iter()
            .filter(|r| r.2 == "skipped")
            .count(),
        3
    );

    // --force reruns everything.
    let forced = backfill(
        &[&p],
        "2019..2021",
        &["--var", "MIN_AMOUNT=6", "--force"],
        cwd,
    );
    forced.assert_code(0);
    assert_eq!(
        fates(&forced),
        pairs(&[("2019", "ran"), ("2020", "ran"), ("2021", "ran")])
    );
    assert_eq!(history(&s).len(), 3 + 1 + 3 + 3 + 3);

    // A single period still runs as before, unchanged or not.
    run_pipeline(&p, "2019", cwd).assert_code(0);
}

#[test]
fn a_failure_stops_the_backfill_with_its_exit_code() {
    let s = Scratch::new();
    let p = three_years(&s);
    // 2020 has a bad row: on_bad_row defaults to fail, exit code 1.
    s.write("orders_2020.csv", "customer_id,amount\nA,1.00\nB,lots\n");
    let r = backfill(&[&p], "2019..2021", &[], s.dir.path());
    r.assert_code(1);
    let rows = summary(&r);
    assert_eq!(
        fates(&r),
        pairs(&[("2019", "ran"), ("2020", "failed"), ("2021", "not run")])
    );
    assert!(rows[1].3.starts_with("exit code 1, run "), "{}", rows[1].3);
    assert!(
        r.stdout
            .contains("backfill 2019..2021: 3 period(s): 1 ran, 0 skipped, 1 failed, 1 not run"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("bad row"), "{}", r.stderr);
    // 2021 was never started.
    let runs = history(&s);
    assert_eq!(
        runs.iter()
            .map(|(_, p, st)| (p.as_str(), st.as_str()))
            .collect::<Vec<_>>(),
        [("2019", "Succeeded"), ("2020", "ChecksFailed")]
    );
    assert!(!s.path("out/totals/period=2021").exists());

    // Fixed, the rerun skips 2019 and runs the rest.
    s.write("orders_2020.csv", "customer_id,amount\nA,1.00\nB,30.00\n");
    let fixed = backfill(&[&p], "2019..2021", &[], s.dir.path());
    fixed.assert_code(0);
    assert_eq!(
        fates(&fixed),
        pairs(&[("2019", "skipped"), ("2020", "ran"), ("2021", "ran")])
    );

    // A range in which the pipeline has no period is a usage error; so is a backwards one.
    backfill(&[&p], "2019-02..2019-12", &[], s.dir.path()).assert_code(64);
    backfill(&[&p], "2021..2019", &[], s.dir.path()).assert_code(64);
}

fn rfm_pipeline(grain: &str, orders: &str) -> String {
    format!(
        r#"
pipeline: rfm_{grain}ly
period: {grain}
output_dir: out
sources:
  orders:
    path: {orders}
    schema: {{ order_id: int64, customer_id: string, order_date: date, amount: "decimal(10,2)" }}
steps:
  - name: rfm
    model: rfm
    input: orders
    order_id: order_id
    lookback: 3 years
    scores: {{ bins: 2, method: ntile }}
    segments:
      - {{ name: High, when: "m = 2" }}
      - {{ name: Low, when: true }}
outputs:
  rfm_{grain}ly: {{ from: rfm, order_by: [customer_id] }}
"#
    )
}

const FIT_ORDERS: &str = "\
order_id,customer_id,order_date,amount
1,A,2022-03-01,10.00
2,B,2023-05-01,20.00
3,C,2023-07-01,30.00
4,D,2024-02-01,40.00
5,A,2024-08-01,50.00
6,B,2024-11-01,60.00
";

#[test]
fn a_yearly_fit_runs_before_the_months_that_apply_it() {
    let s = Scratch::new();
    let cwd = s.dir.path();
    s.write("fit_orders.csv", FIT_ORDERS);
    s.write(
        "orders.csv",
        "order_id,customer_id,order_date,amount\n1,A,2024-01-10,5.00\n2,B,2024-12-10,500.00\n",
    );
    let yearly = s.write("yearly.yaml", &rfm_pipeline("year", "fit_orders.csv"));
    let monthly = s.write("monthly.yaml", &rfm_pipeline("month", "orders.csv"));
    // The months of 2024 apply the 2023 fit, which exists before the backfill.
    run_pipeline(&yearly, "2023", cwd).assert_code(0);

    let r = backfill(&[&monthly, &yearly], "2024..2025-01", &[], cwd);
    r.assert_code(0);
    let rows = summary(&r);
    let shown: Vec<String> = rows.iter().map(|(n, p, _, _)| format!("{n} {p}")).collect();
    let mut expected: Vec<String> = (1..=11)
        .map(|m| format!("rfm_monthly 2024-{m:02}"))
        .collect();
    expected.extend([
        "rfm_yearly 2024".to_string(),
        "rfm_monthly 2024-12".to_string(),
        "rfm_monthly 2025-01".to_string(),
    ]);
    assert_eq!(
        shown, expected,
        "ordered by period end, the year first at equal ends"
    );
    assert!(rows.iter().all(|row| row.2 == "ran"));

    // What each month applied: 2024's months the 2023 fit, January 2025 the 2024 fit that
    // this backfill made just before it.
    let history = segflow_manifest::RunHistory::load(&s.path("out/runs"));
    let applied = |period: &str| {
        let m = history
            .latest_succeeded(Some("rfm_monthly"), period)
            .unwrap_or_else(|| panic!("no run of {period}"));
        (
            m.models[0].mode.clone(),
            m.models[0].artifact_period.clone(),
        )
    };
    assert_eq!(
        applied("2024-12"),
        ("apply".to_string(), "2023".to_string())
    );
    assert_eq!(
        applied("2025-01"),
        ("apply".to_string(), "2024".to_string())
    );
    let order: Vec<String> = history
        .runs()
        .iter()
        .map(|m| m.period.label.clone())
        .collect();
    assert_eq!(order[order.len() - 3..], ["2024", "2024-12", "2025-01"]);

    // Refit data changes: the year reruns and writes another fit; the only month applying
    // it reruns too, although its own input is unchanged. The others still apply 2023's.
    s.write(
        "fit_orders.csv",
        &format!("{FIT_ORDERS}7,C,2024-12-01,900.00\n8,E,2024-12-02,800.00\n"),
    );
    let refit = backfill(&[&monthly, &yearly], "2024..2025-01", &[], cwd);
    refit.assert_code(0);
    let ran: Vec<String> = summary(&refit)
        .into_iter()
        .filter(|row| row.2 == "ran")
        .map(|(n, p, _, _)| format!("{n} {p}"))
        .collect();
    assert_eq!(ran, ["rfm_yearly 2024", "rfm_monthly 2025-01"]);
    assert!(
        refit
            .stdout
            .contains("rfm_monthly 2025-01: running (model `rfm` would apply"),
        "{}",
        refit.stdout
    );
}
