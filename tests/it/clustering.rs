//! k-means through a pipeline: known, well-separated clusters are recovered, the same on every
//! run, and cluster ids follow last year's centroids when the model is refitted.

use crate::common::{
    Scratch, current_artifact, parquet_files, project, read_parquet, run_pipeline,
};

/// Blob centres (spend, visits) and sizes; points sit within ±0.2 of their centre, far
/// closer than the ~10 between centres, so any sound k-means recovers the blobs exactly.
fn blobs(sizes: [usize; 3], prefix: &str) -> (String, Vec<(String, usize)>) {
    let centres = [(100.0, 2.0), (500.0, 20.0), (1000.0, 5.0)];
    let mut csv = String::from("customer_id,spend,visits\n");
    let mut truth = Vec::new();
    for (blob, (&(x, y), &n)) in centres.iter().zip(&sizes).enumerate() {
        for i in 0..n {
            let dx = ((i * 7) % 5) as f64 * 0.1 - 0.2;
            let dy = ((i * 3) % 5) as f64 * 0.1 - 0.2;
            let id = format!("{prefix}{blob}_{i:03}");
            csv.push_str(&format!("{id},{},{}\n", x + dx, y + dy));
            truth.push((id, blob));
        }
    }
    (csv, truth)
}

const PIPELINE: &str = r#"
pipeline: clusters
period: year
sources:
  customers:
    path: customers.csv
    schema: { customer_id: string, spend: double, visits: double }
steps:
  - name: clusters
    model: kmeans
    input: customers
    key: customer_id
    features: [spend, visits]
    k: 3
    seed: 7
    restarts: 3
outputs:
  clusters: { from: clusters, order_by: [customer_id] }
"#;

fn clusters(s: &Scratch, period: &str) -> Vec<(String, String)> {
    let files = parquet_files(&s.path(&format!("out/clusters/period={period}")));
    let (names, rows) = read_parquet(&files[0]);
    project(&names, &rows, &["customer_id", "cluster"])
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect()
}

/// Cluster id per blob, checking that every blob maps to exactly one cluster.
fn blob_ids(found: &[(String, String)], truth: &[(String, usize)]) -> [String; 3] {
    let mut ids: [Option<String>; 3] = Default::default();
    for ((id, cluster), (truth_id, blob)) in found.iter().zip(truth) {
        assert_eq!(id, truth_id);
        match &ids[*blob] {
            None => ids[*blob] = Some(cluster.clone()),
            Some(c) => assert_eq!(c, cluster, "blob {blob} split across clusters"),
        }
    }
    let ids = ids.map(|c| c.expect("every blob has points"));
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    ids
}

#[test]
fn kmeans_recovers_known_clusters_deterministically_with_stable_ids() {
    let s = Scratch::new();
    // 2024: sizes 10 / 20 / 30 → ids by descending size: blob 2 → 0, blob 1 → 1, blob 0 → 2.
    let (csv, truth) = blobs([10, 20, 30], "a");
    s.write("customers.csv", &csv);
    let p = s.write("p.yaml", PIPELINE);
    run_pipeline(&p, "2024", s.dir.path()).assert_code(0);
    let first = clusters(&s, "2024");
    assert_eq!(blob_ids(&first, &truth), ["2", "1", "0"].map(String::from));
    let artifact = current_artifact(&s.path("out"), "clusters", "2024");
    let bytes = std::fs::read(&artifact).expect("artifact");
    let model: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(
        model["parameters"]["model"]["sizes"],
        serde_json::json!([30, 20, 10])
    );
    // Same data, same seed: the same bytes.
    run_pipeline(&p, "2024", s.dir.path()).assert_code(0);
    assert_eq!(std::fs::read(&artifact).expect("artifact"), bytes);
    assert_eq!(clusters(&s, "2024"), first);

    // 2025: sizes reversed, so ordering by size alone would swap blob 0's and blob 2's ids;
    // aligned with 2024's centroids each blob keeps its id.
    let (csv, truth) = blobs([30, 20, 10], "b");
    s.write("customers.csv", &csv);
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    assert_eq!(
        blob_ids(&clusters(&s, "2025"), &truth),
        ["2", "1", "0"].map(String::from)
    );
    let model: serde_json::Value = serde_json::from_slice(
        &std::fs::read(current_artifact(&s.path("out"), "clusters", "2025")).expect("artifact"),
    )
    .expect("json");
    assert_eq!(model["parameters"]["aligned_to"], "2024");
}

/// k-prototypes: the categorical feature separates two groups with identical numbers.
#[test]
fn kprototypes_splits_on_a_categorical_feature() {
    let s = Scratch::new();
    let mut csv = String::from("customer_id,spend,channel\n");
    for i in 0..20 {
        let channel = if i % 2 == 0 { "web" } else { "store" };
        csv.push_str(&format!("c{i:02},{},{channel}\n", 100 + (i % 3)));
    }
    s.write("customers.csv", &csv);
    let p = s.write(
        "p.yaml",
        r#"
pipeline: proto
period: year
sources:
  customers:
    path: customers.csv
    schema: { customer_id: string, spend: double, channel: string }
steps:
  - name: clusters
    model: kprototypes
    input: customers
    key: customer_id
    features: [spend]
    categorical: [channel]
    categorical_weight: 5
    k: 2
outputs:
  clusters: { from: clusters, order_by: [customer_id] }
"#,
    );
    run_pipeline(&p, "2025", s.dir.path()).assert_code(0);
    let files = parquet_files(&s.path("out/clusters/period=2025"));
    let (names, rows) = read_parquet(&files[0]);
    let rows = project(&names, &rows, &["channel", "cluster"]);
    let web: Vec<&String> = rows
        .iter()
        .filter(|r| r[0] == "web")
        .map(|r| &r[1])
        .collect();
    let store: Vec<&String> = rows
        .iter()
        .filter(|r| r[0] == "store")
        .map(|r| &r[1])
        .collect();
    assert!(web.iter().all(|c| *c == web[0]) && store.iter().all(|c| *c == store[0]));
    assert_ne!(web[0], store[0]);
}
