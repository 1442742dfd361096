//! Restarts, the canonical cluster order, and applying a fitted model.

use std::cmp::Ordering;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::distance::{self, BLOCK, Centers, block_nearest};
use super::init::kmeans_plus_plus;
use super::lloyd::{Convergence, Outcome, assign_pass, lloyd};
use super::parallel::Runner;
use super::scale::{self, Table, z};
use super::{Centroid, ClusterError, DEFAULT_CATEGORICAL_WEIGHT, Features, Model, Options};

fn invalid(option: &'static str, message: impl Into<String>) -> ClusterError {
    ClusterError::InvalidOption {
        option,
        message: message.into(),
    }
}

/// The categorical weight the fit uses.
fn check_options(options: &Options) -> Result<f64, ClusterError> {
    if options.k == 0 {
        return Err(invalid("k", "k must be at least 1"));
    }
    if options.k > u32::MAX as usize {
        return Err(invalid("k", format!("k = {} is too large", options.k)));
    }
    if options.restarts == 0 {
        return Err(invalid("restarts", "restarts must be at least 1"));
    }
    if !(options.tolerance.is_finite() && options.tolerance >= 0.0) {
        return Err(invalid(
            "tolerance",
            format!(
                "tolerance must be a finite number ≥ 0, got {}",
                options.tolerance
            ),
        ));
    }
    let gamma = options
        .categorical_weight
        .unwrap_or(DEFAULT_CATEGORICAL_WEIGHT);
    // With a weight of 0 categorical columns would be ignored silently.
    if !(gamma.is_finite() && gamma > 0.0) {
        return Err(invalid(
            "categorical_weight",
            format!("categorical_weight must be a finite number > 0, got {gamma}"),
        ));
    }
    Ok(gamma)
}

pub(super) fn fit(
    features: &Features<'_>,
    options: &Options,
    chunk_rows: usize,
) -> Result<Model, ClusterError> {
    let gamma = check_options(options)?;
    let table = scale::table(features, chunk_rows)?;
    let runner = Runner::new(options.threads, chunk_rows);
    let stop = Convergence {
        max_iterations: options.max_iterations,
        tolerance: options.tolerance,
    };
    let mut labels = vec![u32::MAX; table.rows];
    let mut min_d = vec![0.0; table.rows];
    let mut restart_inertias = Vec::with_capacity(options.restarts);
    let mut best: Option<Outcome> = None;
    for restart in 0..options.restarts {
        // One stream per restart: restart r does not depend on how many restarts run.
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        rng.set_stream(restart as u64);
        let init = kmeans_plus_plus(&table, &runner, options.k, gamma, &mut rng, &mut min_d)?;
        let outcome = lloyd(&table, &runner, init, &stop, &mut labels, &mut min_d);
        restart_inertias.push(outcome.inertia);
        if best.as_ref().is_none_or(|b| outcome.inertia < b.inertia) {
            best = Some(outcome);
        }
    }
    let best = best.ok_or_else(|| invalid("restarts", "restarts must be at least 1"))?;
    let centers = canonical_order(&best);
    // Sizes as `assign` will see them: with the centroids reordered, an exact tie can go
    // to a different cluster than during the iterations. The inertia is the same.
    let pass = assign_pass(&table, &runner, &centers, &mut labels, &mut min_d);
    Ok(model(
        &table,
        &centers,
        pass.counts,
        pass.inertia,
        &best,
        restart_inertias,
        options.seed,
    ))
}

/// Descending size, then ascending z-coordinates, then mode codes: an order that depends
/// only on the clusters, so ids are reproducible without a previous model.
fn canonical_order(outcome: &Outcome) -> Centers {
    let c = &outcome.centers;
    let mut order: Vec<usize> = (0..c.k).collect();
    order.sort_by(|&a, &b| {
        outcome.counts[b]
            .cmp(&outcome.counts[a])
            .then_with(|| lexicographic(c.numeric(a), c.numeric(b)))
            .then_with(|| c.categorical(a).cmp(c.categorical(b)))
            .then(a.cmp(&b))
    });
    let mut sorted = Centers::empty(c.p, c.q, c.gamma);
    for j in order {
        sorted.push(
            c.numeric(j).iter().copied(),
            c.categorical(j).iter().copied(),
        );
    }
    sorted
}

fn lexicographic(a: &[f64], b: &[f64]) -> Ordering {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.total_cmp(y))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

fn model(
    table: &Table<'_>,
    centers: &Centers,
    sizes: Vec<u64>,
    inertia: f64,
    best: &Outcome,
    restart_inertias: Vec<f64>,
    seed: u64,
) -> Model {
    let centroids = (0..centers.k)
        .map(|j| Centroid {
            id: j as u32,
            numeric_z: centers.numeric(j).to_vec(),
            numeric: centers
                .numeric(j)
                .iter()
                .zip(table.means.iter().zip(&table.std_devs))
                .map(|(&z, (&mean, &sd))| z * sd + mean)
                .collect(),
            categorical: centers.categorical(j).to_vec(),
        })
        .collect();
    Model {
        k: centers.k,
        means: table.means.clone(),
        std_devs: table.std_devs.clone(),
        centroids,
        categorical_weight: centers.gamma,
        sizes,
        inertia,
        iterations: best.iterations,
        converged: best.converged,
        restart_inertias,
        seed,
    }
}

/// The model's centroids in the working layout, in `model.centroids` order.
fn centers(model: &Model) -> Centers {
    let q = model.centroids.first().map_or(0, |c| c.categorical.len());
    let mut centers = Centers::empty(model.means.len(), q, model.categorical_weight);
    for c in &model.centroids {
        centers.push(c.numeric_z.iter().copied(), c.categorical.iter().copied());
    }
    centers
}

pub(super) fn nearest(model: &Model, numeric: &[f64], categorical: &[u32]) -> usize {
    debug_assert_eq!(numeric.len(), model.means.len());
    let z: Vec<f64> = numeric
        .iter()
        .zip(model.means.iter().zip(&model.std_devs))
        .map(|(&x, (&mean, &sd))| z(x, mean, sd))
        .collect();
    let centroids = model
        .centroids
        .iter()
        .map(|c| (c.numeric_z.as_slice(), c.categorical.as_slice()));
    distance::nearest(centroids, &z, categorical, model.categorical_weight).0
}

/// A model read from an artifact may have been edited by hand; `assign` must not panic.
fn check_model(model: &Model) -> Result<usize, ClusterError> {
    let invalid = |message: String| ClusterError::InvalidModel { message };
    let p = model.means.len();
    let q = model.centroids.first().map_or(0, |c| c.categorical.len());
    if model.centroids.is_empty() {
        return Err(invalid("it has no centroids".into()));
    }
    if model.std_devs.len() != p {
        return Err(invalid(format!(
            "{p} means but {} standard deviations",
            model.std_devs.len()
        )));
    }
    if let Some(c) = model
        .centroids
        .iter()
        .find(|c| c.numeric_z.len() != p || c.categorical.len() != q)
    {
        return Err(invalid(format!(
            "centroid {} has {} numeric and {} categorical coordinates, expected {p} and {q}",
            c.id,
            c.numeric_z.len(),
            c.categorical.len()
        )));
    }
    Ok(q)
}

pub(super) fn assign(
    model: &Model,
    features: &Features<'_>,
    threads: Option<usize>,
    chunk_rows: usize,
) -> Result<Vec<u32>, ClusterError> {
    let q = check_model(model)?;
    if features.numeric.len() != model.means.len() || features.categorical.len() != q {
        return Err(ClusterError::ShapeMismatch {
            model_numeric: model.means.len(),
            model_categorical: q,
            numeric: features.numeric.len(),
            categorical: features.categorical.len(),
        });
    }
    let rows = match scale::rows(features) {
        Err(ClusterError::NoRows) => return Ok(Vec::new()),
        other => other?,
    };
    scale::check_finite(&features.numeric)?;
    let centers = centers(model);
    let ids: Vec<u32> = model.centroids.iter().map(|c| c.id).collect();
    let runner = Runner::new(threads, chunk_rows);
    let mut out = vec![0u32; rows];
    let p = model.means.len();
    runner.run(
        rows,
        out.as_mut_slice(),
        || (),
        |_, range, out: &mut [u32]| {
            let mut scaled = vec![0.0; p * BLOCK];
            let mut scratch = vec![0.0; centers.k * BLOCK];
            let mut best_d = [0.0; BLOCK];
            let mut codes = Vec::with_capacity(q);
            for (start, out) in range.step_by(BLOCK).zip(out.chunks_mut(BLOCK)) {
                let len = out.len();
                let end = start + len;
                for (f, buffer) in scaled.chunks_mut(BLOCK).enumerate() {
                    let (mean, sd) = (model.means[f], model.std_devs[f]);
                    for (s, &x) in buffer.iter_mut().zip(&features.numeric[f][start..end]) {
                        *s = z(x, mean, sd);
                    }
                }
                let block: Vec<&[f64]> = scaled.chunks(BLOCK).map(|b| &b[..len]).collect();
                codes.clear();
                codes.extend(
                    features
                        .categorical
                        .iter()
                        .map(|column| &column[start..end]),
                );
                block_nearest(
                    &centers,
                    &block,
                    &codes,
                    &mut scratch,
                    out,
                    &mut best_d[..len],
                );
                for label in out.iter_mut() {
                    *label = ids[*label as usize];
                }
            }
        },
    );
    Ok(out)
}
