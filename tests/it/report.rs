//! `segflow report`: a self-contained HTML page, rendered in headless Chromium (installed by
//! scripts/test.sh) to prove the charts and numbers are really there.

use std::path::PathBuf;
use std::process::Command;

use crate::common::{Scratch, run_pipeline, segflow};

pub(crate) fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("SEGFLOW_TEST_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(name).output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!("no Chromium found: run `scripts/test.sh` (it installs the Debian package `chromium`)");
}

pub(crate) fn headless(args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("start chromium");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Ten customers, four Champions (c1–c4). Region (through the postal-code enrichment):
/// North = c1, c2, c3, c5, c6 (3 Champions): index (3/4)/(5/10) = 150; South = c4, c7, c8,
/// c9 (1): (1/4)/(4/10) = 62.5; c10's code is unknown: "(none)", index 0. Match rate 9/10.
#[test]
fn the_report_renders_in_headless_chromium_with_its_charts_and_numbers() {
    let s = Scratch::new();
    s.write(
        "customers.csv",
        "customer_id,segment,postal_code
c1,Champions,111 11
c2,Champions,11111
c3,Champions,111 12
c4,Champions,22222
c5,Others,11112
c6,Others,111 11
c7,Others,22222
c8,Others,222 23
c9,Others,22223
c10,Others,99999
",
    );
    s.write("geo.csv", "postal_code,region,geo_group\n11111,North,Urban families\n11112,North,Suburbs\n22222,South,Rural\n22223,South,Suburbs\n");
    let p = s.write(
        "p.yaml",
        r#"
pipeline: insight
period: year
sources:
  customers:
    path: customers.csv
    schema: { customer_id: string, segment: string, postal_code: string }
  geo:
    path: geo.csv
    schema: { postal_code: string, region: string, geo_group: string }
steps:
  - name: customers_geo
    enrich:
      input: customers
      country: SE
      keys: [ { level: postal_code, input: postal_code, reference: geo, key: postal_code, normalize: postal_code } ]
      columns: [region, geo_group]
outputs:
  customers_geo: { from: customers_geo, order_by: [customer_id] }
report:
  customers: customers_geo
  segment: segment
  best: [Champions]
  by: [region, geo_group]
  title: Where our customers live
"#,
    );
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
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
            .contains("http"),
        "self-contained"
    );

    // What Chromium sees after parsing and laying out the page.
    let url = format!("file://{}", html_path.display());
    let dom = String::from_utf8(headless(&["--dump-dom", &url]).stdout).expect("utf8");
    for chart in ["segments", "by-region", "by-geo-group"] {
        assert!(
            dom.contains(&format!(r#"data-chart="{chart}""#)),
            "{chart} missing:\n{dom}"
        );
    }
    assert!(dom.contains(r#"<span id="customers">10</span>"#));
    assert!(dom.contains(r#"<span id="best-customers">4</span>"#));
    assert!(dom.contains(r#"data-label="North" data-customers="5""#));
    assert!(dom.contains("5 (50.0%) · index 150"));
    assert!(dom.contains("4 (40.0%) · index 62")); // 62.5, rounded half to even
    assert!(dom.contains("1 (10.0%) · index 0"));
    assert!(dom.contains("Over-represented among the best customers: North (index 150)."));
    assert!(dom.contains("<td>customers_geo</td><td>postal_code</td><td>9</td><td>90.0%</td>"));
    assert_eq!(
        dom.matches("<rect").count(),
        2 + 3 + 4,
        "bars: 2 segments, 3 regions, 4 groups"
    );

    // The screenshot: a PNG of the requested size with the charts' colours on it.
    let shot = s.path("report.png");
    headless(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=900,1200",
        &url,
    ]);
    let png = std::fs::read(&shot).expect("screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let (width, height) = (
        u32::from_be_bytes(png[16..20].try_into().expect("width")),
        u32::from_be_bytes(png[20..24].try_into().expect("height")),
    );
    assert_eq!((width, height), (900, 1200));
    // A blank page compresses to a few kilobytes; text and bars make it several times larger.
    assert!(
        png.len() > 15_000,
        "screenshot looks empty: {} bytes",
        png.len()
    );
}
