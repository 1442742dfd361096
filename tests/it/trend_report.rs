//! `segflow report` for a trend pipeline: the four trend tables (written here as Parquet by
//! pyarrow, in the columns the trend steps write) rendered as one self-contained page and
//! checked in headless Chromium. The pipeline's steps are plain SQL over the fixtures, so the
//! test does not depend on the trend steps themselves.

use crate::common::{Scratch, run_python, segflow};
use crate::report::headless;

/// Tier A/B over 2023–2025. Customers: 2023 A 3, B 5; 2024 A 4, B 4; 2025 A 5, B 2.
/// 2024 → 2025: A stayed 3, A lost 1; B → A 1, B stayed 2, B lost 1; 1 new → A
/// (A 2025 = 3 + 1 + 1 = 5, B = 2). 2023 → 2024 is not comparable (tier bounds changed).
const FIXTURES: &str = r#"
import sys, pyarrow as pa, pyarrow.parquet as pq, os
out = sys.argv[1]
def write(name, table):
    d = os.path.join(out, name, "period=2025")
    os.makedirs(d, exist_ok=True)
    pq.write_table(table, os.path.join(d, "part-00000.parquet"))
S, F, I, B = pa.string(), pa.float64(), pa.int64(), pa.bool_()
def t(cols, rows):
    return pa.table({n: pa.array([r[i] for r in rows], type=ty) for i, (n, ty) in enumerate(cols)})
why = "tier bounds changed: A 0.8 -> 0.7"
write("migration", t(
    [("segmentation", S), ("basis", S), ("period_from", S), ("period_to", S), ("segment_from", S), ("segment_to", S),
     ("customers", I), ("share", F), ("revenue_from", F), ("revenue_to", F), ("comparable", B), ("reason", S)],
    [("tier", "previous", "2023", "2024", "A", "A", 3, 1.0, 300.0, 310.0, False, why),
     ("tier", "previous", "2023", "2024", "B", "A", 1, 0.2, 20.0, 90.0, False, why),
     ("tier", "previous", "2023", "2024", "B", "B", 4, 0.8, 180.0, 200.0, False, why),
     ("tier", "previous", "2024", "2025", "A", "A", 3, 0.75, 300.0, 330.0, True, None),
     ("tier", "previous", "2024", "2025", "A", "(lost)", 1, 0.25, 100.0, None, True, None),
     ("tier", "previous", "2024", "2025", "B", "A", 1, 0.25, 50.0, 120.0, True, None),
     ("tier", "previous", "2024", "2025", "B", "B", 2, 0.5, 100.0, 100.0, True, None),
     ("tier", "previous", "2024", "2025", "B", "(lost)", 1, 0.25, 50.0, None, True, None),
     ("tier", "previous", "2024", "2025", "(new)", "A", 1, 1.0, None, 50.0, True, None)]))
write("stability", t(
    [("basis", S), ("period_from", S), ("period_to", S), ("measure", S), ("kind", S), ("psi", F), ("flag", S),
     ("comparable", B), ("reason", S)],
    [("previous", "2023", "2024", "tier", "segments", 0.02, "stable", False, why),
     ("previous", "2024", "2025", "tier", "segments", 0.31, "shifted", True, None),
     ("previous", "2024", "2025", "revenue", "feature", 0.12, "watch", True, None)]))
kpi_cols = [("segmentation", S), ("segment", S), ("for_period", S), ("metric", S), ("value", F), ("previous", F),
    ("change_previous", F), ("change_previous_pct", F), ("first", F), ("change_first", F), ("change_first_pct", F),
    ("comparable", B), ("reason", S)]
write("kpis", t(kpi_cols,
    [("tier", "A", "2023", "customers", 3.0, None, None, None, 3.0, 0.0, 0.0, True, None),
     ("tier", "B", "2023", "customers", 5.0, None, None, None, 5.0, 0.0, 0.0, True, None),
     ("tier", "A", "2024", "customers", 4.0, 3.0, 1.0, 1/3, 3.0, 1.0, 1/3, False, why),
     ("tier", "B", "2024", "customers", 4.0, 5.0, -1.0, -0.2, 5.0, -1.0, -0.2, False, why),
     ("tier", "A", "2025", "customers", 5.0, 4.0, 1.0, 0.25, 3.0, 2.0, 2/3, True, None),
     ("tier", "B", "2025", "customers", 2.0, 4.0, -2.0, -0.5, 5.0, -3.0, -0.6, True, None),
     ("tier", "A", "2025", "revenue", 500.0, 400.0, 100.0, 0.25, 300.0, 200.0, 2/3, True, None),
     ("tier", "B", "2025", "revenue", 100.0, 200.0, -100.0, -0.5, 180.0, -80.0, -80/180, True, None)]))
write("shift", t(
    [("model", S), ("kind", S), ("period_from", S), ("period_to", S), ("parameter", S), ("value_from", F),
     ("value_to", F), ("change", F), ("change_pct", F), ("comparable", B), ("reason", S)],
    [("tier", "pareto", "2024", "2025", "A", 100.0, 120.0, 20.0, 0.2, True, None),
     ("tier", "pareto", "2024", "2025", "B", 40.0, 30.0, -10.0, -0.25, True, None)]))
"#;

const PIPELINE: &str = r#"
pipeline: segment_trends
period: year
output_dir: out
sources:
  migration_rows:
    path: out/migration/period=2025/part-00000.parquet
    schema: { segmentation: string, basis: string, period_from: string, period_to: string, segment_from: string,
              segment_to: string, customers: int64, share: float64, revenue_from: float64, revenue_to: float64,
              comparable: bool, reason: string }
  stability_rows:
    path: out/stability/period=2025/part-00000.parquet
    schema: { basis: string, period_from: string, period_to: string, measure: string, kind: string, psi: float64,
              flag: string, comparable: bool, reason: string }
  kpi_rows:
    path: out/kpis/period=2025/part-00000.parquet
    schema: { segmentation: string, segment: string, period: string, metric: string, value: float64,
              previous: float64, change_previous: float64, change_previous_pct: float64, first: float64,
              change_first: float64, change_first_pct: float64, comparable: bool, reason: string }
  shift_rows:
    path: out/shift/period=2025/part-00000.parquet
    schema: { model: string, kind: string, period_from: string, period_to: string, parameter: string,
              value_from: float64, value_to: float64, change: float64, change_pct: float64, comparable: bool,
              reason: string }
steps:
  - { name: migration_step, sql: SELECT * FROM migration_rows }
  - { name: stability_step, sql: SELECT * FROM stability_rows }
  - { name: kpi_step, sql: SELECT * FROM kpi_rows }
  - { name: shift_step, sql: SELECT * FROM shift_rows }
outputs:
  migration: { from: migration_step }
  stability: { from: stability_step }
  kpis: { from: kpi_step }
  shift: { from: shift_step }
report:
  title: Tier trends 2023–2025
  trends: { migration: migration, stability: stability, kpis: kpis, shift: shift }
"#;

#[test]
fn the_trend_report_renders_in_headless_chromium_with_its_charts_and_numbers() {
    let s = Scratch::new();
    let script = s.write("fixtures.py", FIXTURES);
    run_python([script, s.path("out")]);
    let p = s.write("trends.yaml", PIPELINE);
    let r = segflow(
        &["report", p.to_str().expect("utf8"), "--period", "2025"],
        s.dir.path(),
    );
    r.assert_code(0);
    let html_path = s.path("out/reports/2025/index.html");
    let html = std::fs::read_to_string(&html_path).expect("report");
    assert!(
        !html
            .replace("http://www.w3.org/2000/svg", "")
            .contains("http")
            && !html.contains("<script"),
        "self-contained"
    );

    let url = format!("file://{}", html_path.display());
    let dom = String::from_utf8(headless(&["--dump-dom", &url]).stdout).expect("utf8");
    for chart in [
        "sizes-tier",
        "migration-tier-previous-2023-2024",
        "migration-tier-previous-2024-2025",
    ] {
        assert!(
            dom.contains(&format!(r#"data-chart="{chart}""#)),
            "{chart} missing:\n{dom}"
        );
    }
    // Sizes: one stacked column per year; totals 8, 8, 7 added up by the report.
    assert_eq!(dom.matches(r#"<rect class="size""#).count(), 6);
    assert!(dom.contains(r#"data-period="2025" data-segment="A" data-customers="5""#));
    for total in ["8", "7"] {
        assert!(
            dom.contains(&format!(r#"text-anchor="middle">{total}</text>"#)),
            "total {total}"
        );
    }
    // The 2024 → 2025 heat map: A, B, (new) × A, B, (lost) = 9 cells.
    let map = &dom[dom
        .find(r#"data-chart="migration-tier-previous-2024-2025""#)
        .expect("map")..];
    let map = &map[..map.find("</svg>").expect("end")];
    assert_eq!(map.matches(r#"<g class="cell""#).count(), 9);
    assert!(map.contains(r#"data-from="B" data-to="A" data-customers="1" data-share="0.2500""#));
    assert!(
        map.contains(r#"data-from="(new)" data-to="A" data-customers="1" data-share="1.0000""#)
    );
    assert!(map.contains(r#"data-from="A" data-to="(lost)" data-customers="1""#));
    assert!(map.contains("3 · 75.0%"));
    // The 2023 → 2024 map is drawn, greyed, and named in the note with its reason.
    assert!(dom.contains(
        r#"class="chart heat-map not-comparable" data-chart="migration-tier-previous-2023-2024""#
    ));
    assert!(
        dom.contains(
            "<li>migration of tier, 2023 → 2024: tier bounds changed: A 0.8 -&gt; 0.7</li>"
        )
    );
    assert!(
        dom.contains(
            "<li>stability of tier, 2023 → 2024: tier bounds changed: A 0.8 -&gt; 0.7</li>"
        )
    );
    assert!(dom.contains("<li>KPIs of tier, 2024: tier bounds changed: A 0.8 -&gt; 0.7</li>"));
    // KPI deltas of 2025 with their marks: A's revenue 400 → 500 (+25%), B's 200 → 100 (−50%).
    assert_eq!(dom.matches(r#"<tr class="kpi""#).count(), 4);
    assert!(dom.contains(
        r#"<tr class="kpi" data-segment="A" data-metric="revenue"><td>A</td><td>revenue</td><td>500</td><td>400</td><td class="up" data-mark="up">▲ 100</td><td class="up">+25.0%</td><td>300</td><td class="up" data-mark="up">▲ 200</td><td class="up">+66.7%</td></tr>"#
    ));
    assert!(
        dom.contains(
            r#"<td class="down" data-mark="down">▼ -100</td><td class="down">-50.0%</td>"#
        )
    );
    // Stability flags and parameter shifts.
    assert!(dom.contains(r#"<span class="flag shifted">shifted</span>"#));
    assert!(dom.contains(r#"<span class="flag watch">watch</span>"#));
    assert!(dom.contains("<td>0.310</td>"));
    assert!(dom.contains(
        r#"data-model="tier" data-parameter="A"><td>tier</td><td>pareto</td><td>2024 → 2025</td><td>A</td><td>100</td><td>120</td><td class="up" data-mark="up">▲ 20</td><td class="up">+20.0%</td>"#
    ));

    let shot = s.path("trends.png");
    headless(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1000,2400",
        &url,
    ]);
    let png = std::fs::read(&shot).expect("screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        (
            u32::from_be_bytes(png[16..20].try_into().expect("width")),
            u32::from_be_bytes(png[20..24].try_into().expect("height"))
        ),
        (1000, 2400)
    );
    assert!(
        png.len() > 30_000,
        "screenshot looks empty: {} bytes",
        png.len()
    );
    if let Ok(dir) = std::env::var("SEGFLOW_TEST_SCREENSHOTS") {
        let _ = std::fs::copy(&shot, std::path::Path::new(&dir).join("trend-report.png"));
    }
}
