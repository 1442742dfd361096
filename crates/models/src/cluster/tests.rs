//! End-to-end tests of fitting, assigning and aligning. Expected values come from how the
//! data were generated or from hand computation, never from running the code.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::*;

/// Small chunks so that a few hundred rows span many chunks and threads.
const TEST_CHUNK: usize = 64;

fn fit_chunked(features: &Features<'_>, options: &Options) -> Result<Model, ClusterError> {
    fit::fit(features, options, TEST_CHUNK)
}

/// `n` points around each center (sd `sd`), interleaved so every chunk mixes the blobs;
/// returns the columns and every row's blob.
fn blobs(centers: &[&[f64]], n: &[usize], sd: f64, seed: u64) -> (Vec<Vec<f64>>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let noise = Normal::new(0.0, sd).expect("normal");
    let dims = centers[0].len();
    let mut columns = vec![Vec::new(); dims];
    let mut blob = Vec::new();
    let mut left = n.to_vec();
    while left.iter().any(|&l| l > 0) {
        for (b, l) in left.iter_mut().enumerate() {
            if *l > 0 {
                *l -= 1;
                blob.push(b);
                for (column, &c) in columns.iter_mut().zip(centers[b]) {
                    column.push(c + noise.sample(&mut rng));
                }
            }
        }
    }
    (columns, blob)
}

fn numeric(columns: &[Vec<f64>]) -> Features<'_> {
    Features {
        numeric: columns.iter().map(Vec::as_slice).collect(),
        categorical: vec![],
    }
}

fn json(model: &Model) -> String {
    serde_json::to_string(model).expect("json")
}

#[test]
fn three_blobs_are_recovered_identically_on_any_thread_count() {
    let centers: [&[f64]; 3] = [&[0.0, 0.0], &[10.0, 0.0], &[0.0, 10.0]];
    let (columns, blob) = blobs(&centers, &[200, 200, 200], 0.5, 11);
    let features = numeric(&columns);
    let options = |threads| Options {
        threads: Some(threads),
        ..Options::new(3, 42)
    };
    let model = fit_chunked(&features, &options(1)).expect("fit");

    let labels = fit::assign(&model, &features, Some(2), TEST_CHUNK).expect("assign");
    let mut id_of_blob = [u32::MAX; 3];
    for (&b, &label) in blob.iter().zip(&labels) {
        if id_of_blob[b] == u32::MAX {
            id_of_blob[b] = label;
        }
        assert_eq!(
            label, id_of_blob[b],
            "every point of blob {b} in one cluster"
        );
    }
    let mut ids = id_of_blob.to_vec();
    ids.sort_unstable();
    assert_eq!(ids, [0, 1, 2]);
    assert_eq!(model.sizes, [200, 200, 200]);
    // The mean of 200 draws with sd 0.5 has sd 0.035; 0.15 is over four of those.
    for (b, center) in centers.iter().enumerate() {
        let c = model
            .centroids
            .iter()
            .find(|c| c.id == id_of_blob[b])
            .expect("centroid");
        for (x, want) in c.numeric.iter().zip(center.iter()) {
            assert!(
                (x - want).abs() < 0.15,
                "blob {b}: {:?} vs {center:?}",
                c.numeric
            );
        }
    }
    assert!(model.converged);
    assert_eq!(model.restart_inertias.len(), 4);
    let best = model
        .restart_inertias
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    assert_eq!(model.inertia, best);

    let again = fit_chunked(&features, &options(1)).expect("fit");
    assert_eq!(json(&again), json(&model));
    for threads in [2, 3, 8] {
        let other = fit_chunked(&features, &options(threads)).expect("fit");
        assert_eq!(other, model, "{threads} threads");
        assert_eq!(json(&other), json(&model), "{threads} threads");
        let other_labels =
            fit::assign(&model, &features, Some(threads), TEST_CHUNK).expect("assign");
        assert_eq!(other_labels, labels);
    }
    for (row, &label) in labels.iter().enumerate() {
        let index = nearest(&model, &[columns[0][row], columns[1][row]], &[]);
        assert_eq!(model.centroids[index].id, label, "row {row}");
    }
    // The public entry point (one chunk here) finds the same clusters.
    let public = fit(&features, &Options::new(3, 42)).expect("fit");
    assert_eq!(public.sizes, model.sizes);
    assert_eq!(assign(&public, &features).expect("assign"), labels);
}

#[test]
fn six_points_by_hand() {
    // 1 2 3 | 10 11 12. Mean 6.5; squared deviations 30.25 20.25 12.25 (twice) sum to
    // 125.5, so the population variance is 125.5 / 6 and sd = √20.916… ≈ 4.5735.
    // Clusters {1,2,3} and {10,11,12} with means 2 and 11; within sum of squares
    // 1 + 0 + 1 per cluster = 4 in the raw unit, 4 / (125.5 / 6) = 24 / 125.5 in z units.
    // Equal sizes, so the cluster with the smaller coordinate comes first.
    let values = [10.0, 1.0, 12.0, 2.0, 11.0, 3.0];
    let features = Features {
        numeric: vec![&values],
        categorical: vec![],
    };
    let model = fit_chunked(&features, &Options::new(2, 1)).expect("fit");
    assert_eq!(model.k, 2);
    assert_eq!(model.means, [6.5]);
    assert!((model.std_devs[0] - (125.5f64 / 6.0).sqrt()).abs() < 1e-12);
    assert_eq!(model.sizes, [3, 3]);
    assert!(
        (model.inertia - 24.0 / 125.5).abs() < 1e-12,
        "{}",
        model.inertia
    );
    let ids: Vec<u32> = model.centroids.iter().map(|c| c.id).collect();
    assert_eq!(ids, [0, 1]);
    assert!((model.centroids[0].numeric[0] - 2.0).abs() < 1e-12);
    assert!((model.centroids[1].numeric[0] - 11.0).abs() < 1e-12);
    assert!((model.centroids[0].numeric_z[0] - (2.0 - 6.5) / model.std_devs[0]).abs() < 1e-12);
    assert_eq!(
        assign(&model, &features).expect("assign"),
        [1, 0, 1, 0, 1, 0]
    );
    assert_eq!(nearest(&model, &[6.4], &[]), 0);
    assert_eq!(nearest(&model, &[6.6], &[]), 1);
}

#[test]
fn categorical_features_decide_the_split() {
    // 40 customers in two groups with the same numeric values (0.0 … 0.9 twice per group),
    // so only the categories tell the groups apart. Column a is the group; column b is
    // mostly 2 in group 0 (three rows with 0) and 1 or 3 in equal numbers in group 1.
    // With weight 2 the category split costs 40 (numeric, z units: the whole variance) +
    // 2 × (3 + 10) = 66, while the best numeric split (0.0–0.4 | 0.5–0.9) leaves about
    // 9.7 in z units but mismatches half of each cluster in a and b: about 9.7 + 80.
    let mut x = Vec::new();
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..40u32 {
        let group = i % 2;
        x.push(f64::from((i / 2) % 10) / 10.0);
        a.push(group);
        b.push(match (group, i / 2) {
            (0, 0 | 7 | 13) => 0,
            (0, _) => 2,
            (_, j) if j % 2 == 0 => 3,
            _ => 1,
        });
    }
    let features = Features {
        numeric: vec![&x],
        categorical: vec![&a, &b],
    };
    let options = Options {
        categorical_weight: Some(2.0),
        ..Options::new(2, 5)
    };
    let model = fit_chunked(&features, &options).expect("fit");
    assert_eq!(model.sizes, [20, 20]);
    let labels = assign(&model, &features).expect("assign");
    let group0 = labels[0];
    for (i, &label) in labels.iter().enumerate() {
        assert_eq!(label == group0, i % 2 == 0, "row {i}");
    }
    let modes = |id: u32| {
        model
            .centroids
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.categorical.clone())
    };
    assert_eq!(modes(group0), Some(vec![0, 2]));
    // Group 1 has ten 1s and ten 3s in column b: the tie goes to the smaller code.
    assert_eq!(modes(1 - group0), Some(vec![1, 1]));
    // Both groups have the same numeric values: the centroid is their mean, 0.45.
    for c in &model.centroids {
        assert!((c.numeric[0] - 0.45).abs() < 1e-12, "{:?}", c.numeric);
    }
    assert!((model.inertia - 66.0).abs() < 1e-9, "{}", model.inertia);
    assert_eq!(model.categorical_weight, 2.0);
}

#[test]
fn categorical_only_features_work() {
    // k-modes: three obvious groups of codes.
    let a: Vec<u32> = (0..30).map(|i| i % 3).collect();
    let b: Vec<u32> = (0..30).map(|i| 10 + i % 3).collect();
    let features = Features {
        numeric: vec![],
        categorical: vec![&a, &b],
    };
    let model = fit_chunked(&features, &Options::new(3, 9)).expect("fit");
    assert_eq!(model.sizes, [10, 10, 10]);
    assert_eq!(model.inertia, 0.0);
    let mut modes: Vec<Vec<u32>> = model
        .centroids
        .iter()
        .map(|c| c.categorical.clone())
        .collect();
    modes.sort();
    assert_eq!(modes, [vec![0, 10], vec![1, 11], vec![2, 12]]);
}

#[test]
fn refits_keep_their_ids_after_alignment() {
    let centers: [&[f64]; 4] = [&[0.0, 0.0], &[8.0, 0.0], &[0.0, 8.0], &[8.0, 8.0]];
    let (last_year, last_blob) = blobs(&centers, &[400, 300, 200, 100], 0.6, 1);
    let previous = fit_chunked(&numeric(&last_year), &Options::new(4, 1)).expect("fit");
    // Sizes in reverse and centers moved a little: ordered by size, the raw ids permute.
    let moved: [&[f64]; 4] = [&[0.3, -0.2], &[8.2, 0.1], &[-0.1, 7.8], &[7.9, 8.3]];
    let (this_year, this_blob) = blobs(&moved, &[100, 200, 300, 400], 0.6, 2);
    let mut refit = fit_chunked(&numeric(&this_year), &Options::new(4, 77)).expect("fit");

    let id_per_blob = |model: &Model, columns: &[Vec<f64>], blob: &[usize]| {
        let labels = assign(model, &numeric(columns)).expect("assign");
        let mut ids = [u32::MAX; 4];
        for (&b, &l) in blob.iter().zip(&labels) {
            ids[b] = l;
        }
        ids
    };
    let before = id_per_blob(&refit, &this_year, &this_blob);
    let reference = id_per_blob(&previous, &last_year, &last_blob);
    assert_eq!(reference, [0, 1, 2, 3], "last year's ids follow the sizes");
    assert_eq!(before, [3, 2, 1, 0], "this year's raw ids follow the sizes");

    let sizes = refit.sizes.clone();
    align_ids(&mut refit, &previous).expect("align");
    assert_eq!(id_per_blob(&refit, &this_year, &this_blob), reference);
    assert_eq!(refit.sizes, sizes, "the order of the centroids is kept");

    // One more cluster than last year: the extra one takes the next free id.
    let (split, _) = blobs(
        &[
            &[0.0, 0.0],
            &[8.0, 0.0],
            &[0.0, 8.0],
            &[8.0, 8.0],
            &[20.0, 20.0],
        ],
        &[100; 5],
        0.6,
        3,
    );
    let mut five = fit_chunked(&numeric(&split), &Options::new(5, 3)).expect("fit");
    align_ids(&mut five, &previous).expect("align");
    let id_near = |model: &Model, point: [f64; 2]| model.centroids[nearest(model, &point, &[])].id;
    assert_eq!(
        [[0.0, 0.0], [8.0, 0.0], [0.0, 8.0], [8.0, 8.0], [20.0, 20.0]].map(|p| id_near(&five, p)),
        [0, 1, 2, 3, 4]
    );
    // One fewer: the three remaining clusters keep their ids, one id goes unused.
    let (three, _) = blobs(&[&[0.0, 8.0], &[8.0, 0.0], &[8.0, 8.0]], &[100; 3], 0.6, 4);
    let mut fewer = fit_chunked(&numeric(&three), &Options::new(3, 4)).expect("fit");
    align_ids(&mut fewer, &previous).expect("align");
    assert_eq!(
        [[0.0, 8.0], [8.0, 0.0], [8.0, 8.0]].map(|p| id_near(&fewer, p)),
        [2, 1, 3]
    );

    let other_shape = fit_chunked(&numeric(&this_year[..1]), &Options::new(2, 1)).expect("fit");
    assert!(matches!(
        align_ids(&mut other_shape.clone(), &previous),
        Err(ClusterError::ShapeMismatch { .. })
    ));
}

#[test]
fn a_restart_does_not_depend_on_how_many_run() {
    let (columns, _) = blobs(
        &[&[0.0, 0.0], &[3.0, 0.0], &[0.0, 3.0]],
        &[50, 50, 50],
        1.5,
        5,
    );
    let features = numeric(&columns);
    let two = fit_chunked(
        &features,
        &Options {
            restarts: 2,
            ..Options::new(4, 3)
        },
    )
    .expect("fit");
    let five = fit_chunked(
        &features,
        &Options {
            restarts: 5,
            ..Options::new(4, 3)
        },
    )
    .expect("fit");
    assert_eq!(two.restart_inertias[..], five.restart_inertias[..2]);
}

#[test]
fn the_model_survives_json() {
    let (columns, _) = blobs(&[&[0.0, 5.0], &[3.0, 1.0]], &[100, 100], 1.0, 6);
    let codes: Vec<u32> = (0..200).map(|i| (i * 7 % 5) as u32).collect();
    let features = Features {
        numeric: columns.iter().map(Vec::as_slice).collect(),
        categorical: vec![&codes],
    };
    let model = fit_chunked(&features, &Options::new(3, 8)).expect("fit");
    let back: Model = serde_json::from_str(&json(&model)).expect("parse");
    assert_eq!(
        assign(&back, &features).expect("assign"),
        assign(&model, &features).expect("assign")
    );
    for (a, b) in back.centroids.iter().zip(&model.centroids) {
        for (x, y) in a.numeric_z.iter().zip(&b.numeric_z) {
            assert!((x - y).abs() <= f64::EPSILON * y.abs(), "{x} vs {y}");
        }
    }
}

#[test]
fn constant_columns_are_scaled_by_one() {
    let x = [1.0, 2.0, 9.0, 10.0];
    let constant = [4.0; 4];
    let features = Features {
        numeric: vec![&x, &constant],
        categorical: vec![],
    };
    let model = fit_chunked(&features, &Options::new(2, 0)).expect("fit");
    assert_eq!((model.means[1], model.std_devs[1]), (4.0, 1.0));
    for c in &model.centroids {
        assert_eq!((c.numeric_z[1], c.numeric[1]), (0.0, 4.0));
    }
    assert_eq!(model.sizes, [2, 2]);
}

#[test]
fn errors_say_what_is_wrong() {
    // Five rows but two distinct values: no three clusters.
    let values = [1.0, 2.0, 1.0, 2.0, 1.0];
    let features = Features {
        numeric: vec![&values],
        categorical: vec![],
    };
    let err = fit_chunked(&features, &Options::new(3, 0)).expect_err("too few distinct");
    assert!(
        matches!(err, ClusterError::TooFewDistinct { k: 3, distinct: 2 }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "cannot form 3 clusters from 2 distinct rows"
    );
    // More clusters than rows.
    let err = fit_chunked(&features, &Options::new(6, 0)).expect_err("k > rows");
    assert!(
        matches!(err, ClusterError::TooFewDistinct { k: 6, distinct: 2 }),
        "{err}"
    );
    // A category makes the rows distinct again.
    let codes = [0u32, 0, 1, 1, 2];
    let mixed = Features {
        numeric: vec![&values],
        categorical: vec![&codes],
    };
    assert!(fit_chunked(&mixed, &Options::new(5, 0)).is_ok());

    let good = [1.0, 2.0, 3.0, 4.0];
    let bad = [1.0, 2.0, 3.0, f64::NAN];
    let features = Features {
        numeric: vec![&good, &bad],
        categorical: vec![],
    };
    let err = fit_chunked(&features, &Options::new(2, 0)).expect_err("NaN");
    assert!(
        matches!(
            err,
            ClusterError::NonFinite {
                column: 1,
                row: 3,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "numeric column 1 has the non-finite value NaN at row 3"
    );
    let model = fit_chunked(
        &numeric(&[good.to_vec(), good.to_vec()]),
        &Options::new(2, 0),
    )
    .expect("fit");
    let err = assign(&model, &features).expect_err("NaN");
    assert!(
        matches!(
            err,
            ClusterError::NonFinite {
                column: 1,
                row: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = assign(&model, &numeric(&[good.to_vec()])).expect_err("shape");
    assert!(matches!(err, ClusterError::ShapeMismatch { .. }), "{err}");

    let err = fit_chunked(&numeric(&[good.to_vec()]), &Options::new(0, 0)).expect_err("k = 0");
    assert_eq!(
        err.to_string(),
        "invalid clustering option `k`: k must be at least 1"
    );
    let err = fit_chunked(&Features::default(), &Options::new(2, 0)).expect_err("no features");
    assert!(matches!(err, ClusterError::NoFeatures));
    let err = fit_chunked(&numeric(&[vec![]]), &Options::new(2, 0)).expect_err("no rows");
    assert!(matches!(err, ClusterError::NoRows));
    let options = Options {
        categorical_weight: Some(0.0),
        ..Options::new(2, 0)
    };
    let err = fit_chunked(&numeric(&[good.to_vec()]), &options).expect_err("weight");
    assert!(matches!(
        err,
        ClusterError::InvalidOption {
            option: "categorical_weight",
            ..
        }
    ));
}

#[test]
fn every_cluster_gets_rows_despite_duplicates_and_an_outlier() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let values: Vec<f64> = (0..300)
        .map(|i| {
            if i == 299 {
                100.0
            } else {
                f64::from(rng.random_range(0..6u8))
            }
        })
        .collect();
    for seed in 0..20 {
        let model = fit_chunked(
            &numeric(std::slice::from_ref(&values)),
            &Options::new(5, seed),
        )
        .expect("fit");
        assert!(
            model.sizes.iter().all(|&s| s > 0),
            "seed {seed}: {:?}",
            model.sizes
        );
        assert_eq!(model.sizes.iter().sum::<u64>(), 300);
    }
}
