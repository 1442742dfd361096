//! Fit time of k-means and k-prototypes on 1,000,000 synthetic customers:
//! `cargo bench -p segflow-models --bench kmeans_fit`.
//!
//! Each variant fits on every available thread and on one thread; the two models must be
//! bit-identical (the chunked reductions make the thread count irrelevant), which the run
//! checks and prints.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use segflow_models::cluster::{self, Features, Model, Options};

const ROWS: usize = 1_000_000;
const CATEGORIES: u32 = 6;

/// Five overlapping blobs of uneven size; the last feature is on a money scale so that
/// z-scoring matters. Also returns a categorical column that follows the blob 80% of the
/// time.
fn customers(seed: u64) -> (Vec<Vec<f64>>, Vec<u32>) {
    let centers = [
        [0.0, 0.0, 0.0, 0.0],
        [4.0, 1.0, 0.0, 2.0],
        [-3.0, 5.0, 1.0, 0.0],
        [2.0, -4.0, 3.0, 1.0],
        [6.0, 6.0, -2.0, -3.0],
    ];
    let cumulative = [0.35, 0.60, 0.80, 0.92, 1.0];
    let scale = [1.0, 1.0, 1.0, 1000.0];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let noise = Normal::new(0.0, 1.0).expect("normal");
    let mut columns: Vec<Vec<f64>> = (0..4).map(|_| Vec::with_capacity(ROWS)).collect();
    let mut category = Vec::with_capacity(ROWS);
    for _ in 0..ROWS {
        let u: f64 = rng.random();
        let blob = cumulative.iter().position(|&c| u < c).unwrap_or(4);
        for (f, column) in columns.iter_mut().enumerate() {
            column.push((centers[blob][f] + noise.sample(&mut rng)) * scale[f]);
        }
        category.push(if rng.random::<f64>() < 0.8 {
            blob as u32
        } else {
            rng.random_range(0..CATEGORIES)
        });
    }
    (columns, category)
}

fn run(name: &str, features: &Features<'_>, options: &Options) -> Model {
    let start = Instant::now();
    let model = cluster::fit(features, options).expect("fit");
    let seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let one_thread = Options {
        threads: Some(1),
        ..options.clone()
    };
    let single = cluster::fit(features, &one_thread).expect("fit");
    let single_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let labels = cluster::assign(&model, features).expect("assign");
    let assign_seconds = start.elapsed().as_secs_f64();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{name}");
    println!(
        "  rows {}  numeric {}  categorical {}  k {}  restarts {}",
        labels.len(),
        features.numeric.len(),
        features.categorical.len(),
        options.k,
        options.restarts
    );
    println!("  fit {seconds:.3} s on {threads} threads, {single_seconds:.3} s on 1 thread");
    println!(
        "  identical on 1 and {threads} threads: {}",
        serde_json::to_string(&model).ok() == serde_json::to_string(&single).ok()
    );
    println!("  assign {assign_seconds:.3} s");
    println!(
        "  iterations {}  converged {}  inertia {:.6}",
        model.iterations, model.converged, model.inertia
    );
    println!("  restart inertias {:?}", model.restart_inertias);
    println!("  sizes {:?}", model.sizes);
    for c in &model.centroids {
        let numeric: Vec<String> = c.numeric.iter().map(|x| format!("{x:.3}")).collect();
        println!(
            "  centroid {}: [{}] {:?}",
            c.id,
            numeric.join(", "),
            c.categorical
        );
    }
    model
}

fn main() {
    let start = Instant::now();
    let (columns, category) = customers(2024);
    println!(
        "generated {ROWS} rows in {:.3} s",
        start.elapsed().as_secs_f64()
    );

    let kmeans = Features {
        numeric: columns.iter().map(Vec::as_slice).collect(),
        categorical: vec![],
    };
    run("k-means, 4 numeric features", &kmeans, &Options::new(5, 42));

    let kprototypes = Features {
        numeric: vec![&columns[0], &columns[1]],
        categorical: vec![&category],
    };
    run(
        "k-prototypes, 2 numeric + 1 categorical feature",
        &kprototypes,
        &Options::new(5, 42),
    );
}
