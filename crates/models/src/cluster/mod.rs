//! Clustering: k-means (numeric features) and k-prototypes (Huang 1998: numeric plus
//! categorical features) for customer segments that are refitted every year.
//!
//! The engine collects the feature columns from DataFusion and calls [`fit`] on plain column
//! vectors; the [`Model`] goes into the yearly artifact, and monthly runs put customers into
//! its clusters with [`assign`] or [`nearest`]. Everything here is pure Rust so that a fit is
//! reproducible bit for bit:
//!
//! - Numeric features are z-scored (population standard deviation; a constant column gets
//!   sd 1, so it contributes nothing instead of dividing by zero). Without scaling, the
//!   feature with the largest unit (revenue in cents) would decide every cluster.
//! - The dissimilarity of a row to a centroid is the squared Euclidean distance of the
//!   z-scores plus `categorical_weight` for every categorical column whose code differs from
//!   the centroid's mode. With no categorical columns this is plain k-means.
//! - Initialisation is k-means++ (D² sampling with the same dissimilarity) from a ChaCha8
//!   generator seeded with `seed`; restart `r` uses stream `r` of that generator, so a
//!   restart's result does not depend on how many restarts run. The restart with the lowest
//!   inertia wins (ties: the earliest).
//! - Rows are processed in fixed chunks of [`CHUNK_ROWS`] rows on scoped threads. Every
//!   floating-point sum is formed per chunk in row order and the chunk partials are added in
//!   chunk order, so the result is identical for any number of threads.
//! - Lloyd iterations stop when no row changes cluster, when the relative inertia
//!   improvement falls below `tolerance`, or after `max_iterations` updates.
//! - A cluster left empty by an assignment step is re-seeded with the row farthest from its
//!   own centroid (ties: the lowest row index); several empty clusters take the next
//!   farthest rows with distinct values. This keeps `k` clusters without drawing randomness
//!   mid-fit.
//! - Clusters are ordered by descending size (ties: ascending centroid z-coordinates, then
//!   mode codes) and numbered `0..k` in that order, so ids mean something even without a
//!   previous model. [`align_ids`] renumbers a refit to follow last year's ids.
//!
//! Inputs carry no NULLs: the engine filters rows with a NULL feature (or gives NULL its own
//! categorical code). Categorical codes are dense (`0..levels`, the engine numbers the
//! distinct strings in sorted order); a code at or above [`MAX_LEVELS`] is rejected by
//! [`fit`] because mode counting needs a table of `k × levels` counters.

mod align;
mod distance;
mod fit;
mod init;
mod lloyd;
use crate::parallel;
mod scale;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use align::align_ids;

/// Rows per chunk of every parallel pass. Part of the result's definition: changing it
/// changes the order of floating-point additions (the thread count never does).
pub const CHUNK_ROWS: usize = 65_536;

/// Upper bound on the number of levels of one categorical column. Mode counting keeps
/// `k × levels` counters per thread; a column with more levels than this is almost
/// certainly a key, not a feature.
pub const MAX_LEVELS: usize = 1 << 16;

/// Huang's suggestion for the weight of a categorical mismatch is between a third and two
/// thirds of the average numeric standard deviation, which is 1 after z-scoring.
pub const DEFAULT_CATEGORICAL_WEIGHT: f64 = 0.5;

/// Column-major features: every column has the same length (the number of rows).
#[derive(Debug, Clone, Default)]
pub struct Features<'a> {
    pub numeric: Vec<&'a [f64]>,
    /// Dense codes per column, `0..levels`.
    pub categorical: Vec<&'a [u32]>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Number of clusters.
    pub k: usize,
    pub seed: u64,
    /// Independent k-means++ initialisations; the lowest inertia wins.
    pub restarts: usize,
    /// Cap on centroid updates per restart.
    pub max_iterations: usize,
    /// Stop when `(previous − current) / previous` inertia falls below this.
    pub tolerance: f64,
    /// Weight of one categorical mismatch against squared z-distance (Huang's gamma);
    /// `None` means [`DEFAULT_CATEGORICAL_WEIGHT`].
    pub categorical_weight: Option<f64>,
    /// Worker threads; `None` uses the available parallelism. Never changes the result.
    pub threads: Option<usize>,
}

impl Options {
    /// The spec's defaults: 4 restarts, 100 iterations, tolerance 1e-6.
    pub fn new(k: usize, seed: u64) -> Self {
        Options {
            k,
            seed,
            restarts: 4,
            max_iterations: 100,
            tolerance: 1e-6,
            categorical_weight: None,
            threads: None,
        }
    }
}

/// A fitted clustering, as stored in the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub k: usize,
    /// Per numeric feature: the mean used for z-scoring.
    pub means: Vec<f64>,
    /// Per numeric feature: the population standard deviation used for z-scoring; 1 for a
    /// constant column.
    pub std_devs: Vec<f64>,
    /// In fit order (descending size); `nearest` breaks exact ties by this order, so it is
    /// kept when [`align_ids`] renumbers.
    pub centroids: Vec<Centroid>,
    /// The resolved weight of one categorical mismatch.
    pub categorical_weight: f64,
    /// Rows per centroid, parallel to `centroids`.
    pub sizes: Vec<u64>,
    /// Sum over rows of the dissimilarity to their centroid (z units plus weighted
    /// mismatches).
    pub inertia: f64,
    /// Centroid updates of the winning restart.
    pub iterations: usize,
    /// Whether the winning restart stopped before `max_iterations`.
    pub converged: bool,
    /// Final inertia of every restart, in restart order.
    pub restart_inertias: Vec<f64>,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Centroid {
    /// Stable cluster id (see [`align_ids`]).
    pub id: u32,
    /// Coordinates in z units: what distances are computed with.
    pub numeric_z: Vec<f64>,
    /// The same coordinates in the features' own units, for reading the artifact.
    pub numeric: Vec<f64>,
    /// Mode code per categorical column (ties: the smallest code).
    pub categorical: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Numeric,
    Categorical,
}

impl std::fmt::Display for ColumnKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ColumnKind::Numeric => "numeric",
            ColumnKind::Categorical => "categorical",
        })
    }
}

/// Column indices are positions in [`Features`]; the engine maps them to column names.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid clustering option `{option}`: {message}")]
    InvalidOption {
        option: &'static str,
        message: String,
    },
    #[error("clustering needs at least one numeric or categorical feature")]
    NoFeatures,
    #[error("clustering needs at least one row")]
    NoRows,
    #[error("{kind} column {column} has {len} rows, expected {expected} like the first column")]
    LengthMismatch {
        kind: ColumnKind,
        column: usize,
        len: usize,
        expected: usize,
    },
    #[error("numeric column {column} has the non-finite value {value} at row {row}")]
    NonFinite {
        column: usize,
        row: usize,
        value: f64,
    },
    #[error(
        "numeric column {column} is too large to z-score (its mean or standard deviation overflows)"
    )]
    ScaleOverflow { column: usize },
    #[error(
        "categorical column {column} has code {code} at row {row}; codes must be below {max} (dense codes of the distinct values)"
    )]
    CodeTooLarge {
        column: usize,
        row: usize,
        code: u32,
        max: usize,
    },
    #[error("cannot form {k} clusters from {distinct} distinct rows")]
    TooFewDistinct { k: usize, distinct: usize },
    #[error("invalid cluster model: {message}")]
    InvalidModel { message: String },
    #[error(
        "the model has {model_numeric} numeric and {model_categorical} categorical features, the data {numeric} and {categorical}"
    )]
    ShapeMismatch {
        model_numeric: usize,
        model_categorical: usize,
        numeric: usize,
        categorical: usize,
    },
}

/// Fits k-means, or k-prototypes when there are categorical columns.
pub fn fit(features: &Features<'_>, options: &Options) -> Result<Model, ClusterError> {
    fit::fit(features, options, CHUNK_ROWS)
}

/// Index into `model.centroids` of the centroid nearest to one row given in the features'
/// own units (exact ties: the lowest index). Gives the same answer as [`assign`] for that
/// row; `numeric` and `categorical` must have the model's number of features. A NaN value
/// makes every distance NaN and yields index 0, and so does a model without centroids
/// (which [`fit`] never returns; [`assign`] rejects it).
pub fn nearest(model: &Model, numeric: &[f64], categorical: &[u32]) -> usize {
    fit::nearest(model, numeric, categorical)
}

/// The centroid id of every row (parallel, same answer as [`nearest`] row by row).
/// Categorical codes unseen at fit time are fine: they mismatch every mode.
pub fn assign(model: &Model, features: &Features<'_>) -> Result<Vec<u32>, ClusterError> {
    fit::assign(model, features, None, CHUNK_ROWS)
}

/// [`assign`] on at most `threads` threads (same result for any number).
pub fn assign_with_threads(
    model: &Model,
    features: &Features<'_>,
    threads: usize,
) -> Result<Vec<u32>, ClusterError> {
    fit::assign(model, features, Some(threads), CHUNK_ROWS)
}
