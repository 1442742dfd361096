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
