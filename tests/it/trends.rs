//! Trend steps over three committed years of a small output whose movements are written by
//! hand: migration counts, shares and revenue, PSI of the mix and of a feature, KPI changes,
//! model shifts, and the periods and definitions that must not be compared.

use std::path::Path;

use crate::common::{Scratch, parquet_files, project, read_parquet, row, run_pipeline};

/// Customers per year: (id, band, revenue, score). C4 leaves after 2023, C2 after 2024; C5
/// arrives in 2024, C6 in 2025.
const YEARS: [(&str, &str); 3] = [
    ("2023", "C1,X,100,1\nC2,X,50,2\nC3,Y,30,3\nC4,Y,20,4\n"),
    ("2024", "C1,X,120,1\nC2,Y,40,1\nC3,Y,10,1\nC5,X,80,5\n"),
    ("2025", "C1,Y,90,2\nC3,X,60,2\nC5,X,70,3\nC6,X,5,3\n"),
];

fn producer(tier_a: f64) -> String {
    format!(
        r#"
pipeline: bands
period: year
output_dir: out
sources:
  people:
    path: data/people_${{period}}.csv
    schema:
      customer_id: {{ type: string, required: true }}
      band: string
      revenue: "decimal(10,2)"
      score: float64
steps:
  - name: tiers
    model: pareto
    input: people
    customer: customer_id
    value: revenue
    tiers: {{ A: {tier_a} }}
    rest: B
  - name: customer_segments
    sql: |
      SELECT p.customer_id, p.band, t.tier, p.revenue, p.score
      FROM people p JOIN tiers t ON t.customer_id = p.customer_id
outputs:
  customer_segments: {{ from: customer_segments, order_by: [customer_id] }}
"#
    )
}

const TRENDS: &str = r#"
pipeline: band_trends
period: year
output_dir: out
steps:
  - name: migration
    trend: migration
    history: { output: customer_segments, periods: "2023..${period}" }
    key: customer_id
    segments: [band, { column: tier, model: tiers }]
    revenue: revenue
    versus_first: true
  - name: stability
    trend: stability
    history: { output: customer_segments, last: 3 }
    segments: [band]
    features: [score]
    psi: { bins: 2 }
  - name: kpis
    trend: kpis
    history: { output: customer_segments, periods: 2023..2025 }
    segments: [band]
    revenue: revenue
    kpis: [score]
  - name: shift
    trend: shift
    history: { output: customer_segments, last: 3 }
    models: [tiers]
outputs:
  band_migration: { from: migration, order_by: [segmentation, basis, period_to, segment_from, segment_to] }
  band_stability: { from: stability, order_by: [basis, period_to, measure] }
  band_kpis: { from: kpis, order_by: [segmentation, segment, metric, for_period] }
  tier_shift: { from: shift, order_by: [model, period_to, parameter] }
"#;

/// Runs the producer for the three years (`tier_a` per year) and then the trends.
fn setup(tier_a: [f64; 3]) -> Scratch {
    let s = Scratch::new();
    for ((year, rows), a) in YEARS.iter().zip(tier_a) {
        s.write(
            &format!("data/people_{year}.csv"),
            &format!("customer_id,band,revenue,score\n{rows}"),
        );
        let p = s.write(&format!("bands_{year}.yaml"), &producer(a));
        run_pipeline(&p, year, s.dir.path()).assert_code(0);
    }
    s
}

fn table(dir: &Path, output: &str, columns: &[&str]) -> Vec<Vec<String>> {
    let files = parquet_files(&dir.join(format!("out/{output}/period=2025")));
    assert_eq!(files.len(), 1, "{files:?}");
    let (names, rows) = read_parquet(&files[0]);
    project(&names, &rows, columns)
}

#[test]
fn migration_counts_shares_and_revenue_match_the_hand_computed_matrices() {
    let s = setup([0.5, 0.5, 0.5]);
    let trends = s.write("trends.yaml", TRENDS);
    let run = run_pipeline(&trends, "2025", s.dir.path());
    run.assert_code(0);
    let rows = table(
        s.dir.path(),
        "band_migration",
        &[
            "segmentation",
            "basis",
            "period_from",
            "period_to",
            "segment_from",
            "segment_to",
            "customers",
            "share",
            "revenue_from",
            "revenue_to",
            "comparable",
        ],
    );
    let band: Vec<Vec<String>> = rows.into_iter().filter(|r| r[0] == "band").collect();
    let expected = [
        // Against the first period: 2023 → 2024 (same as previous) and 2023 → 2025.
        [
            "band", "first", "2023", "2024", "(new)", "X", "1", "1.0", "NULL", "80.0", "true",
        ],
        [
            "band", "first", "2023", "2024", "X", "X", "1", "0.5", "100.0", "120.0", "true",
        ],
        [
            "band", "first", "2023", "2024", "X", "Y", "1", "0.5", "50.0", "40.0", "true",
        ],
        [
            "band", "first", "2023", "2024", "Y", "(lost)", "1", "0.5", "20.0", "NULL", "true",
        ],
        [
            "band", "first", "2023", "2024", "Y", "Y", "1", "0.5", "30.0", "10.0", "true",
        ],
        [
            "band", "first", "2023", "2025", "(new)", "X", "2", "1.0", "NULL", "75.0", "true",
        ],
        [
            "band", "first", "2023", "2025", "X", "(lost)", "1", "0.5", "50.0", "NULL", "true",
        ],
        [
            "band", "first", "2023", "2025", "X", "Y", "1", "0.5", "100.0", "90.0", "true",
        ],
        [
            "band", "first", "2023", "2025", "Y", "(lost)", "1", "0.5", "20.0", "NULL", "true",
        ],
        [
            "band", "first", "2023", "2025", "Y", "X", "1", "0.5", "30.0", "60.0", "true",
        ],
        // Consecutive years.
        [
            "band", "previous", "2023", "2024", "(new)", "X", "1", "1.0", "NULL", "80.0", "true",
        ],
        [
            "band", "previous", "2023", "2024", "X", "X", "1", "0.5", "100.0", "120.0", "true",
        ],
        [
            "band", "previous", "2023", "2024", "X", "Y", "1", "0.5", "50.0", "40.0", "true",
        ],
        [
            "band", "previous", "2023", "2024", "Y", "(lost)", "1", "0.5", "20.0", "NULL", "true",
        ],
        [
            "band", "previous", "2023", "2024", "Y", "Y", "1", "0.5", "30.0", "10.0", "true",
        ],
        [
            "band", "previous", "2024", "2025", "(new)", "X", "1", "1.0", "NULL", "5.0", "true",
        ],
        [
            "band", "previous", "2024", "2025", "X", "X", "1", "0.5", "80.0", "70.0", "true",
        ],
        [
            "band", "previous", "2024", "2025", "X", "Y", "1", "0.5", "120.0", "90.0", "true",
        ],
        [
            "band", "previous", "2024", "2025", "Y", "(lost)", "1", "0.5", "40.0", "NULL", "true",
        ],
        [
            "band", "previous", "2024", "2025", "Y", "X", "1", "0.5", "10.0", "60.0", "true",
        ],
    ];
    let expected: Vec<Vec<String>> = expected.iter().map(|r| row(r)).collect();
    assert_eq!(band, expected);

    // A plain yearly refit of the tiers (same shares, new thresholds) is compared.
    let manifest = run.manifest();
    let migration = manifest
        .steps
        .iter()
        .find(|s| s.name == "migration")
        .expect("step");
    let comparisons = migration.parameters.as_ref().expect("parameters")["comparisons"]
        .as_array()
        .expect("comparisons")
        .clone();
    assert!(
        comparisons.iter().all(|c| c["comparable"] == true),
        "{comparisons:?}"
    );
    // Every committed file the step read is named with its run.
    let periods = &migration.parameters.as_ref().expect("p")["history"]["periods"];
    assert_eq!(periods.as_array().map(Vec::len), Some(3));
    assert!(
        periods[0]["run_id"]
            .as_str()
            .is_some_and(|r| r.contains("2023"))
    );

    // Stability: the band mix is unchanged 2023 → 2024 and shifts 2024 → 2025 (X 2 of 4 → 3
    // of 4); score, binned at the baseline's median, moves both times.
    let stability = table(
        s.dir.path(),
        "band_stability",
        &[
            "basis",
            "period_from",
            "period_to",
            "measure",
            "kind",
            "psi",
            "flag",
        ],
    );
    let psi = |e: &[f64], a: &[f64]| -> f64 {
        e.iter()
            .zip(a)
            .map(|(e, a)| {
                let (e, a) = (e.max(1e-4), a.max(1e-4));
                (a - e) * (a / e).ln()
            })
            .sum()
    };
    let half_to_three_quarters = psi(&[0.5, 0.5], &[0.25, 0.75]);
    // 2024's scores 1,1,1,5 have median cut 1: 3 below, 1 above; 2025's 2,2,3,3 all above.
    let all_above = psi(&[0.75, 0.25], &[0.0, 1.0]);
    let got: Vec<(String, String, f64, String)> = stability
        .iter()
        .map(|r| {
            (
                r[2].clone(),
                r[3].clone(),
                r[5].parse().expect("psi"),
                r[6].clone(),
            )
        })
        .collect();
    let want = [
        ("2024", "band", 0.0, "stable"),
        ("2024", "score", half_to_three_quarters, "shifted"),
        ("2025", "band", half_to_three_quarters, "shifted"),
        ("2025", "score", all_above, "shifted"),
    ];
    assert_eq!(got.len(), want.len(), "{stability:?}");
    for ((period, measure, psi, flag), (wp, wm, wpsi, wflag)) in got.iter().zip(want) {
        assert_eq!(
            (period.as_str(), measure.as_str(), flag.as_str()),
            (wp, wm, wflag)
        );
        assert!(
            (psi - wpsi).abs() < 1e-9,
            "{measure} {period}: {psi} vs {wpsi}"
        );
    }
    assert!((half_to_three_quarters - 0.274_653_072_167_027).abs() < 1e-12);

    // KPIs of band X: revenue 150 → 200 → 135 of totals 200, 250, 225; average score.
    let kpis = table(
        s.dir.path(),
        "band_kpis",
        &[
            "segment",
            "for_period",
            "metric",
            "value",
            "previous",
            "change_previous",
            "change_previous_pct",
            "first",
            "change_first",
        ],
    );
    let check = |segment: &str, period: &str, metric: &str, want: [Option<f64>; 6]| {
        let got = kpis
            .iter()
            .find(|r| r[0] == segment && r[1] == period && r[2] == metric)
            .unwrap_or_else(|| panic!("no {segment} {period} {metric} in {kpis:?}"));
        for (g, w) in got[3..].iter().zip(want) {
            match w {
                None => assert_eq!(g, "NULL", "{segment} {period} {metric}: {got:?}"),
                Some(w) => {
                    let g: f64 = g
                        .parse()
                        .unwrap_or_else(|_| panic!("{segment} {period} {metric}: {got:?}"));
                    assert!(
                        (g - w).abs() < 1e-12,
                        "{segment} {period} {metric}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    };
    check(
        "X",
        "2024",
        "revenue",
        [
            Some(200.0),
            Some(150.0),
            Some(50.0),
            Some(50.0 / 150.0),
            Some(150.0),
            Some(50.0),
        ],
    );
    check(
        "X",
        "2024",
        "revenue_share",
        [
            Some(0.8),
            Some(0.75),
            Some(0.05),
            Some(0.05 / 0.75),
            Some(0.75),
            Some(0.05),
        ],
    );
    check(
        "X",
        "2025",
        "revenue_share",
        [
            Some(135.0 / 225.0),
            Some(0.8),
            Some(135.0 / 225.0 - 0.8),
            Some((135.0 / 225.0 - 0.8) / 0.8),
            Some(0.75),
            Some(135.0 / 225.0 - 0.75),
        ],
    );
    check(
        "X",
        "2025",
        "customers",
        [
            Some(3.0),
            Some(2.0),
            Some(1.0),
            Some(0.5),
            Some(2.0),
            Some(1.0),
        ],
    );
    check(
        "Y",
        "2025",
        "avg_score",
        [
            Some(2.0),
            Some(1.0),
            Some(1.0),
            Some(1.0),
            Some(3.5),
            Some(-1.5),
        ],
    );
    check(
        "X",
        "2023",
        "share",
        [Some(0.5), None, None, None, Some(0.5), Some(0.0)],
    );

    // Shift: the refit moved tier A's threshold and the run says so, comparable.
    let shift = table(
        s.dir.path(),
        "tier_shift",
        &[
            "model",
            "kind",
            "period_from",
            "period_to",
            "parameter",
            "comparable",
        ],
    );
    assert_eq!(
        shift,
        vec![
            row(&[
                "tiers",
                "pareto",
                "2023",
                "2024",
                "tier A.min_value",
                "true"
            ]),
            row(&[
                "tiers",
                "pareto",
                "2024",
                "2025",
                "tier A.min_value",
                "true"
            ]),
        ]
    );
}

#[test]
fn a_changed_definition_a_missing_period_and_a_failed_rerun_are_not_compared() {
    // 2025's tiers split at 60% instead of 50%: another definition, not a refit.
    let s = setup([0.5, 0.5, 0.6]);
    // 2024 is rerun and fails: its committed data is older than its latest run.
    std::fs::remove_file(s.path("data/people_2024.csv")).expect("rm");
    let p = s.path("bands_2024.yaml");
    let failed = run_pipeline(&p, "2024", s.dir.path());
    assert_ne!(failed.code, 0);
    let trends = s.write(
        "trends.yaml",
        &TRENDS.replace(
            "periods: \"2023..${period}\"",
            "periods: \"2022..${period}\"",
        ),
    );
    run_pipeline(&trends, "2025", s.dir.path()).assert_code(0);
    let rows = table(
        s.dir.path(),
        "band_migration",
        &[
            "segmentation",
            "basis",
            "period_from",
            "period_to",
            "segment_from",
            "customers",
            "comparable",
            "reason",
        ],
    );
    let reasons = |seg: &str, from: &str, to: &str| -> Vec<(String, String)> {
        rows.iter()
            .filter(|r| r[0] == seg && r[1] == "previous" && r[2] == from && r[3] == to)
            .map(|r| (r[6].clone(), r[7].clone()))
            .collect()
    };
    // 2022 was never run: one row that says so, no counts.
    let missing = reasons("band", "2022", "2023");
    assert_eq!(missing.len(), 1, "{rows:?}");
    assert_eq!(missing[0].0, "false");
    assert!(
        missing[0]
            .1
            .contains("period 2022: no committed `customer_segments`"),
        "{}",
        missing[0].1
    );
    // 2024's latest run failed.
    let after_failure = reasons("band", "2023", "2024");
    assert!(
        after_failure
            .iter()
            .all(|(c, r)| c == "false" && r.contains("latest run") && r.contains("2024")),
        "{after_failure:?}"
    );
    // The tier definition changed in 2025 (and 2024 failed): named, not compared.
    let tier = reasons("tier", "2024", "2025");
    assert!(!tier.is_empty());
    assert!(
        tier.iter().all(|(c, r)| c == "false"
            && r.contains("definition of model `tiers` changed from 2024 to 2025: tiers[0].share_below: 0.5 → 0.6")),
        "{tier:?}"
    );
    // The band, defined by no model, still compares 2023 → 2025 against the first period.
    let first: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r[0] == "band" && r[1] == "first" && r[2] == "2022")
        .collect();
    assert!(first.iter().all(|r| r[6] == "false"));
}

#[test]
fn a_trend_that_would_overwrite_what_it_reads_is_refused() {
    let s = setup([0.5, 0.5, 0.5]);
    let trends = s.write(
        "trends.yaml",
        &TRENDS.replace(
            "  band_migration: { from: migration",
            "  customer_segments: { from: migration",
        ),
    );
    let run = run_pipeline(&trends, "2025", s.dir.path());
    run.assert_code(78);
    assert!(
        run.stderr.contains("never rewrites the periods it reads"),
        "{}",
        run.stderr
    );
}

#[test]
fn trend_keys_of_another_kind_are_unknown_keys() {
    let s = Scratch::new();
    let p = s.write(
        "t.yaml",
        r#"
pipeline: t
period: year
output_dir: out
steps:
  - name: shift
    trend: shift
    history: { output: x, last: 2 }
    models: [rfm]
    features: [score]
  - name: m
    trend: migration
    history: { output: x, periods: "2023-2025" }
    segments: [band]
outputs:
  s: { from: shift }
"#,
    );
    let run = crate::common::segflow(&["validate", p.to_str().expect("utf8")], s.dir.path());
    run.assert_code(78);
    assert!(
        run.stderr.contains("unknown key `features`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("is not a range of periods"),
        "{}",
        run.stderr
    );
}

/// The shipped pipelines on generated data where every 10th customer stops buying in 2025:
/// segflow's migration matrices equal DuckDB's full outer join of the committed years, the
/// lapsed customers land in the rest tier, the yearly refits are compared, and the PSI of the
/// tier mix equals the one computed from DuckDB's counts.
#[test]
fn shipped_trend_pipeline_follows_planted_lapses_across_three_generated_years() {
    let s = Scratch::new();
    let data = s.path("data");
    let out = s.path("out");
    crate::common::segflow(
        &[
            "generate",
            "--out",
            data.to_str().expect("utf8"),
            "--customers",
            "2000",
            "--lapse-from",
            "2025",
            "--lapse-every",
            "10",
        ],
        s.dir.path(),
    )
    .assert_code(0);
    let vars = [
        format!("DATA_DIR={}", data.display()),
        format!("OUT_DIR={}", out.display()),
    ];
    let yearly = crate::common::repo_root().join("pipelines/yearly_segmentation.yaml");
    let trends = crate::common::repo_root().join("pipelines/segment_trends.yaml");
    for year in ["2023", "2024", "2025"] {
        crate::common::segflow(
            &[
                "run",
                yearly.to_str().expect("utf8"),
                "--period",
                year,
                "--var",
                &vars[0],
                "--var",
                &vars[1],
            ],
            s.dir.path(),
        )
        .assert_code(0);
    }
    let run = crate::common::segflow(
        &[
            "run",
            trends.to_str().expect("utf8"),
            "--period",
            "2025",
            "--var",
            &vars[0],
            "--var",
            &vars[1],
        ],
        s.dir.path(),
    );
    run.assert_code(0);

    let script = r#"
import duckdb, json, math, sys
out = sys.argv[1]
con = duckdb.connect()
con.execute(f"CREATE VIEW seg AS SELECT * FROM read_parquet('{out}/customer_segments/*/*.parquet', hive_partitioning = true, hive_types = {{'period': VARCHAR}})")
rows = []
for col in ['rfm_segment', 'value_tier']:
    for a, b in [('2023', '2024'), ('2024', '2025')]:
        q = f"""
        SELECT CASE WHEN x.customer_id IS NULL THEN '(new)' ELSE x.{col} END,
               CASE WHEN y.customer_id IS NULL THEN '(lost)' ELSE y.{col} END,
               count(*)
        FROM (SELECT * FROM seg WHERE period = '{a}') x
        FULL OUTER JOIN (SELECT * FROM seg WHERE period = '{b}') y ON x.customer_id = y.customer_id
        GROUP BY 1, 2"""
        for f, t, n in con.execute(q).fetchall():
            rows.append([col, a, b, f, t, n])
lapsed = con.execute("""
    SELECT count(*) FILTER (WHERE y.value_tier <> 'C' OR y.period_revenue <> 0),
           count(*) FILTER (WHERE x.value_tier = 'A'), count(*)
    FROM (SELECT * FROM seg WHERE period = '2024') x
    JOIN (SELECT * FROM seg WHERE period = '2025') y USING (customer_id)
    WHERE CAST(substr(customer_id, 2) AS INTEGER) % 10 = 0""").fetchone()
def mix(p):
    return dict(con.execute(f"SELECT value_tier, count(*) FROM seg WHERE period = '{p}' GROUP BY 1").fetchall())
e, a = mix('2024'), mix('2025')
te, ta = sum(e.values()), sum(a.values())
psi = 0.0
for k in sorted(set(e) | set(a)):
    pe, pa = max(e.get(k, 0) / te, 1e-4), max(a.get(k, 0) / ta, 1e-4)
    psi += (pa - pe) * math.log(pa / pe)
print(json.dumps({"rows": rows, "lapsed": lapsed, "psi": psi}))
"#;
    let reference: serde_json::Value = serde_json::from_str(&crate::common::run_python([
        "-c",
        script,
        out.to_str().expect("utf8"),
    ]))
    .expect("json");

    let ours = table(
        s.dir.path(),
        "segment_migration",
        &[
            "segmentation",
            "basis",
            "period_from",
            "period_to",
            "segment_from",
            "segment_to",
            "customers",
            "comparable",
        ],
    );
    let mut got: Vec<Vec<String>> = ours
        .iter()
        .filter(|r| r[1] == "previous")
        .map(|r| {
            vec![
                r[0].clone(),
                r[2].clone(),
                r[3].clone(),
                r[4].clone(),
                r[5].clone(),
                r[6].clone(),
            ]
        })
        .collect();
    let mut want: Vec<Vec<String>> = reference["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect()
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // Plain yearly refits: every pair is compared.
    assert!(ours.iter().all(|r| r[7] == "true"), "{ours:?}");
    // The planted lapse: every lapsed customer is in the rest tier with no revenue in 2025,
    // and the ones that were A in 2024 are among the A → C movers.
    let lapsed = &reference["lapsed"];
    assert_eq!(
        lapsed[0], 0,
        "lapsed customers outside tier C in 2025: {lapsed}"
    );
    assert!(lapsed[2].as_u64().expect("n") > 50, "{lapsed}");
    let a_to_c: u64 = ours
        .iter()
        .filter(|r| {
            r[0] == "value_tier"
                && r[1] == "previous"
                && r[3] == "2025"
                && r[4] == "A"
                && r[5] == "C"
        })
        .map(|r| r[6].parse::<u64>().expect("n"))
        .sum();
    assert!(
        a_to_c >= lapsed[1].as_u64().expect("n"),
        "A → C {a_to_c} < lapsed A {lapsed}"
    );

    let stability = table(
        s.dir.path(),
        "segment_stability",
        &["period_to", "measure", "psi", "flag", "comparable"],
    );
    let tier = stability
        .iter()
        .find(|r| r[0] == "2025" && r[1] == "value_tier")
        .expect("value_tier 2025");
    let psi: f64 = tier[2].parse().expect("psi");
    let want = reference["psi"].as_f64().expect("psi");
    assert!((psi - want).abs() < 1e-12, "{psi} vs {want}");
    let flag = if psi >= 0.25 {
        "shifted"
    } else if psi >= 0.1 {
        "watch"
    } else {
        "stable"
    };
    assert_eq!(tier[3], flag);

    // The refits moved the models' estimates, each reported with its definition unchanged.
    let shift = table(
        s.dir.path(),
        "model_shift",
        &["model", "parameter", "comparable"],
    );
    for (model, parameter) in [
        ("rfm", "cut_points.monetary[0]"),
        ("value_tier", "tier A.min_value"),
        ("value_loyalty", "value.threshold"),
        ("behaviour", "centroid 0.frequency"),
        ("clv", "bgnbd.r"),
    ] {
        assert!(
            shift
                .iter()
                .any(|r| r[0] == model && r[1] == parameter && r[2] == "true"),
            "{model} {parameter} missing in {shift:?}"
        );
    }
}
