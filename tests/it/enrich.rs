//! Enrichment with reference data: vintages picked per period, postal codes matched across
//! national writing styles, fallback levels and match rates — against expectations worked
//! out by hand.

use crate::common::{Scratch, parquet_files, project, read_parquet, run_pipeline};

fn output(s: &Scratch, table: &str, period: &str, columns: &[&str]) -> Vec<Vec<String>> {
    let files = parquet_files(&s.path(&format!("out/{table}/period={period}")));
    let (names, rows) = read_parquet(&files[0]);
    project(&names, &rows, columns)
}

fn step_parameters(run: &crate::common::Run, step: &str) -> serde_json::Value {
    let manifest = run.manifest();
    let record = manifest
        .steps
        .iter()
        .find(|s| s.name == step)
        .expect("step record");
    record.parameters.clone().expect("parameters")
}

const CUSTOMERS: &str =
    "customer_id,postal_code\nc1,123 45\nc2,12345\nc3,SE-123 45\nc4,12399\nc5,99999\nc6,ABC\nc7,\n";

fn pipeline(vintage: &str, min_match_rate: &str) -> String {
    format!(
        r#"
pipeline: geo
period: year
sources:
  customers:
    path: customers.csv
    schema: {{ customer_id: string, postal_code: string }}
  geo:
    path: {vintage_path}
    vintage: {vintage_spec}
    schema: {{ postal_code: string, geo_group: string{vintage_column} }}
  geo_areas:
    path: areas.csv
    schema: {{ area: string, geo_group: string }}
steps:
  - name: customers_geo
    enrich:
      input: customers
      country: SE
      keys:
        - {{ level: postal_code, input: postal_code, reference: geo, key: postal_code, normalize: postal_code }}
        - {{ level: postal_area, input: postal_code, reference: geo_areas, key: area, normalize: postal_area }}
      columns: [geo_group]
      {min_match_rate}
outputs:
  customers_geo: {{ from: customers_geo, order_by: [customer_id] }}
"#,
        vintage_path = if vintage == "directory" {
            "ref/**/geo.csv"
        } else {
            "geo.csv"
        },
        vintage_spec = if vintage == "directory" {
            "{ directory: vintage }"
        } else {
            "{ column: year }"
        },
        vintage_column = if vintage == "directory" {
            ""
        } else {
            ", year: int32"
        },
    )
}

/// Vintage 2023 calls 12345 "Suburbs", vintage 2025 "City". A 2024 run must use 2023 (2025's
/// starts after 2024 ends); a 2025 run uses 2025.
fn run_two_periods(vintage: &str) {
    let s = Scratch::new();
    s.write("customers.csv", CUSTOMERS);
    s.write("areas.csv", "area,geo_group\n123,Area 123\n");
    if vintage == "directory" {
        s.write(
            "ref/vintage=2023/geo.csv",
            "postal_code,geo_group\n123 45,Suburbs\n",
        );
        s.write(
            "ref/vintage=2025/geo.csv",
            "postal_code,geo_group\n12345,City\n",
        );
    } else {
        s.write(
            "geo.csv",
            "postal_code,geo_group,year\n123 45,Suburbs,2023\n12345,City,2025\n",
        );
    }
    let p = s.write("p.yaml", &pipeline(vintage, ""));
    for (period, group) in [("2024", "Suburbs"), ("2025", "City")] {
        let run = run_pipeline(&p, period, s.dir.path());
        run.assert_code(0);
        let rows = output(&s, "customers_geo", period, &["customer_id", "geo_group"]);
        assert_eq!(rows[0], ["c1", group], "{vintage} {period}");
        let manifest = run.manifest();
        let geo = manifest
            .steps
            .iter()
            .find(|s| s.name == "geo")
            .expect("geo");
        let v = &geo.parameters.as_ref().expect("vintage")["vintage"];
        let want = if period == "2024" { "2023" } else { "2025" };
        assert_eq!(v["chosen"], want, "{vintage} {period}");
        assert_eq!(v["available"], serde_json::json!(["2023", "2025"]));
        if vintage == "directory" {
            // Only the chosen vintage's file is read and fingerprinted.
            assert_eq!(
                manifest.inputs.iter().filter(|i| i.source == "geo").count(),
                1
            );
            assert!(
                manifest
                    .inputs
                    .iter()
                    .any(|i| i.path.contains(&format!("vintage={want}")))
            );
        }
    }
}

#[test]
fn vintages_by_directory_follow_the_period() {
    run_two_periods("directory");
}

#[test]
fn vintages_by_column_follow_the_period() {
    run_two_periods("column");
}

/// Seven customers, period 2025 (vintage 2025: 12345 → City; areas: 123 → Area 123):
/// - c1 `123 45`, c2 `12345`, c3 `SE-123 45`: the same code → postal_code level, City
/// - c4 `12399`: no such code, area 123 → postal_area level, "Area 123"
/// - c5 `99999`: valid, but neither code nor area 999 exists → unmatched
/// - c6 `ABC`: not a Swedish postal code → invalid key, unmatched
/// - c7 empty: no key, unmatched
///
/// Rates: postal_code 3/7, postal_area 1/7, matched 4/7; level 1 has 6 keys, 1 invalid.
#[test]
fn postal_codes_match_across_styles_with_fallback_levels_and_rates() {
    let s = Scratch::new();
    s.write("customers.csv", CUSTOMERS);
    s.write("areas.csv", "area,geo_group\n123,Area 123\n");
    s.write("geo.csv", "postal_code,geo_group,year\n12345,City,2025\n");
    let p = s.write(
        "p.yaml",
        &pipeline("column", "min_match_rate: { rate: 0.5, severity: error }"),
    );
    let run = run_pipeline(&p, "2025", s.dir.path());
    run.assert_code(0);
    let rows = output(
        &s,
        "customers_geo",
        "2025",
        &["customer_id", "geo_group", "match_level"],
    );
    let expected = [
        ["c1", "City", "postal_code"],
        ["c2", "City", "postal_code"],
        ["c3", "City", "postal_code"],
        ["c4", "Area 123", "postal_area"],
        ["c5", "NULL", "NULL"],
        ["c6", "NULL", "NULL"],
        ["c7", "NULL", "NULL"],
    ];
    assert_eq!(
        rows,
        expected.map(|r| r.map(String::from).to_vec()).to_vec()
    );
    let params = step_parameters(&run, "customers_geo");
    assert_eq!(params["rows"], 7);
    assert_eq!(params["unmatched"], 3);
    assert!((params["match_rate"].as_f64().expect("rate") - 4.0 / 7.0).abs() < 1e-12);
    let levels = &params["levels"];
    assert_eq!(
        (levels[0]["matched"].clone(), levels[1]["matched"].clone()),
        (3.into(), 1.into())
    );
    assert_eq!(
        (
            levels[0]["rows_with_key"].clone(),
            levels[0]["invalid_keys"].clone()
        ),
        (6.into(), 1.into())
    );
    let check = run
        .manifest()
        .checks
        .into_iter()
        .find(|c| c.name == "min_match_rate")
        .expect("check");
    assert!(check.passed, "{}", check.message);

    // The same data against a 90% minimum: the run fails and commits nothing.
    let strict = s.write(
        "strict.yaml",
        &pipeline("column", "min_match_rate: { rate: 0.9, severity: error }")
            .replace("customers_geo: {", "strict_geo: {"),
    );
    let run = run_pipeline(&strict, "2025", s.dir.path());
    run.assert_code(1);
    assert!(
        run.stderr
            .contains("57.14% of 7 rows matched a reference (minimum 90.00%); 3 unmatched"),
        "{}",
        run.stderr
    );
    assert!(!s.path("out/strict_geo").exists());
}

/// Two reference rows that normalize to the same key would duplicate customers: refused.
#[test]
fn a_reference_key_twice_is_refused() {
    let s = Scratch::new();
    s.write("customers.csv", CUSTOMERS);
    s.write("areas.csv", "area,geo_group\n123,Area 123\n");
    s.write(
        "geo.csv",
        "postal_code,geo_group,year\n12345,City,2025\n123 45,Town,2025\n",
    );
    let p = s.write("p.yaml", &pipeline("column", ""));
    let run = run_pipeline(&p, "2025", s.dir.path());
    run.assert_code(1);
    assert!(
        run.stderr.contains(
            "reference `geo` has key `postal_code` more than once after normalization (e.g. 12345)"
        ),
        "{}",
        run.stderr
    );
}

/// A real public table: median household income by US ZIP code (U.S. Census Bureau ACS
/// 2020–2024, shipped by the PyPI package `median-income` 1.0.0), joined to generated
/// customers whose ZIPs are written as exports write them (ZIP+4, leading zero lost), with a
/// fallback to the 3-digit ZIP prefix. Expected values come from pyarrow, not from segflow.
#[test]
fn a_real_zip_code_income_table_joins_through_the_pipeline() {
    let script = r#"
import importlib.util, json, os
import pyarrow.compute as pc, pyarrow.parquet as pq
path = os.path.join(os.path.dirname(importlib.util.find_spec('median_income').origin), 'data', 'US.parquet')
t = pq.read_table(path)
t = t.filter(pc.equal(t['level'], 'zipcode')).filter(pc.is_valid(t.filter(pc.equal(t['level'], 'zipcode'))['median_income']))
income = dict(zip(t['zipcode'].to_pylist(), t['median_income'].to_pylist()))
zips = sorted(income)
zero = next(z for z in zips if z.startswith('00'))
plain, plus4 = zips[1000], zips[2000]
by3 = {}
for z, v in income.items():
    by3.setdefault(z[:3], []).append(v)
missing = next(p + f'{n:02d}' for p in sorted(by3) for n in range(100) if p + f'{n:02d}' not in income)
print(json.dumps({
    'path': path,
    'customers': [
        ['k1', plain, 'zipcode', income[plain]],
        ['k2', plus4 + '-1234', 'zipcode', income[plus4]],
        ['k3', zero.lstrip('0'), 'zipcode', income[zero]],
        ['k4', missing, 'zip3', sum(by3[missing[:3]]) / len(by3[missing[:3]])],
        ['k5', 'ABCDE', None, None],
    ],
}))
"#;
    let expected: serde_json::Value =
        serde_json::from_str(&crate::common::run_python(["-c", script])).expect("json");
    let s = Scratch::new();
    let mut csv = String::from("customer_id,zip\n");
    for c in expected["customers"].as_array().expect("customers") {
        csv.push_str(&format!(
            "{},{}\n",
            c[0].as_str().expect("id"),
            c[1].as_str().expect("zip")
        ));
    }
    s.write("customers.csv", &csv);
    let p = s.write(
        "p.yaml",
        &format!(
            r#"
pipeline: us_income
period: year
sources:
  customers:
    path: customers.csv
    schema: {{ customer_id: string, zip: string }}
  zip_income:
    path: {path}
    schema: {{ level: string, zipcode: string, median_income: double, year: int32 }}
    schema_drift: {{ added: ignore }}
steps:
  - name: by_zip
    sql: SELECT zipcode, median_income FROM zip_income WHERE level = 'zipcode' AND median_income IS NOT NULL
  - name: by_zip3
    sql: SELECT substr(zipcode, 1, 3) AS zip3, avg(median_income) AS median_income FROM by_zip GROUP BY 1
  - name: customers_income
    enrich:
      input: customers
      country: US
      keys:
        - {{ level: zipcode, input: zip, reference: by_zip, key: zipcode, normalize: postal_code }}
        - {{ level: zip3, input: zip, reference: by_zip3, key: zip3, normalize: postal_area }}
      columns: [median_income]
outputs:
  customers_income: {{ from: customers_income, order_by: [customer_id] }}
"#,
            path = expected["path"].as_str().expect("path")
        ),
    );
    let run = run_pipeline(&p, "2025", s.dir.path());
    run.assert_code(0);
    let rows = output(
        &s,
        "customers_income",
        "2025",
        &["customer_id", "median_income", "match_level"],
    );
    for (row, want) in rows
        .iter()
        .zip(expected["customers"].as_array().expect("customers"))
    {
        assert_eq!(row[0], want[0].as_str().expect("id"));
        match want[3].as_f64() {
            Some(income) => {
                let got: f64 = row[1].parse().expect("income");
                assert!((got - income).abs() < 1e-6, "{}: {got} vs {income}", row[0]);
                assert_eq!(row[2], want[2].as_str().expect("level"));
            }
            None => assert_eq!((row[1].as_str(), row[2].as_str()), ("NULL", "NULL")),
        }
    }
    let params = step_parameters(&run, "customers_income");
    assert_eq!(
        (
            params["levels"][0]["invalid_keys"].clone(),
            params["unmatched"].clone()
        ),
        (1.into(), 1.into())
    );
}

/// Firmographic and behavioural enrichment, declared like the geodemographic one.
///
/// Organisation numbers as CRMs hold them: `556036-0793`, `5560360793` and `165560360793`
/// are one company (Luhn-valid); `556036-0794` fails its check digit (invalid key).
/// Web events in 2025 per customer (the 2024 event does not count):
/// b1: sessions s1, s2 (2), page views 3 + 5 = 8, devices mobile ×2 → mobile, last visit
/// 2025-06-02; b2: one session, 1 page view, desktop, 2025-03-01; b3: none → NULLs.
/// The industry crosswalk re-codes the 2007 code `62.01` to the 2025 code `J62.1`; `47.91`
/// has no row and is kept.
#[test]
fn firmographic_and_behavioural_enrichment() {
    let s = Scratch::new();
    s.write(
        "customers.csv",
        "customer_id,org_no\nb1,556036-0793\nb2,5560360793\nb3,165560360793\nb4,556036-0794\n",
    );
    s.write(
        "companies.csv",
        "org_no,employees,industry\n5560360793,120,62.01\n5569990001,5,47.91\n",
    );
    s.write("industry_crosswalk.csv", "old_code,new_code\n62.01,J62.1\n");
    s.write(
        "events.csv",
        "customer_id,session_id,event_time,device,page_views
b1,s1,2025-06-01T10:00:00,mobile,3
b1,s2,2025-06-02T11:00:00,mobile,5
b2,s3,2025-03-01T09:00:00,desktop,1
b2,s0,2024-12-31T23:00:00,tablet,9
",
    );
    let p = s.write(
        "p.yaml",
        r#"
pipeline: b2b
period: year
sources:
  customers:
    path: customers.csv
    schema: { customer_id: string, org_no: string }
  companies:
    path: companies.csv
    schema: { org_no: string, employees: int64, industry: string }
  industry_crosswalk:
    path: industry_crosswalk.csv
    schema: { old_code: string, new_code: string }
  events:
    path: events.csv
    schema: { customer_id: string, session_id: string, event_time: timestamp, device: string, page_views: int64 }
steps:
  - name: web_activity
    sql: |
      SELECT customer_id, count(DISTINCT session_id) AS sessions, sum(page_views) AS page_views,
             max(event_time) AS last_visit,
             first_value(device ORDER BY device_events DESC, device ASC) AS main_device
      FROM (
        SELECT e.*, count(*) OVER (PARTITION BY customer_id, device) AS device_events
        FROM events e
        WHERE event_time >= ${period.start} AND event_time < ${period.end}
      ) AS t
      GROUP BY customer_id
  - name: with_firmographics
    enrich:
      input: customers
      country: SE
      keys: [ { level: org_number, input: org_no, reference: companies, key: org_no, normalize: org_number } ]
      columns: [employees, industry]
      crosswalk: { table: industry_crosswalk, column: industry, from: old_code, to: new_code }
  - name: with_behaviour
    enrich:
      input: with_firmographics
      keys: [ { level: customer, input: customer_id, reference: web_activity, key: customer_id } ]
      columns: [sessions, page_views, main_device, last_visit]
      match_column: web_match
outputs:
  customers_b2b: { from: with_behaviour, order_by: [customer_id] }
"#,
    );
    let run = run_pipeline(&p, "2025", s.dir.path());
    run.assert_code(0);
    let rows = output(
        &s,
        "customers_b2b",
        "2025",
        &[
            "customer_id",
            "employees",
            "industry",
            "sessions",
            "page_views",
            "main_device",
            "last_visit",
        ],
    );
    let expected = [
        [
            "b1",
            "120",
            "J62.1",
            "2",
            "8",
            "mobile",
            "2025-06-02T11:00:00Z",
        ],
        [
            "b2",
            "120",
            "J62.1",
            "1",
            "1",
            "desktop",
            "2025-03-01T09:00:00Z",
        ],
        ["b3", "120", "J62.1", "NULL", "NULL", "NULL", "NULL"],
        ["b4", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL"],
    ];
    assert_eq!(
        rows,
        expected.map(|r| r.map(String::from).to_vec()).to_vec()
    );
    let firmo = step_parameters(&run, "with_firmographics");
    assert_eq!(firmo["levels"][0]["invalid_keys"], 1);
    assert_eq!(firmo["levels"][0]["matched"], 3);
}
