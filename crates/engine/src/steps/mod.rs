//! Step kinds. Each kind is one module implementing [`StepRunner`] — or, for a segmentation
//! model, [`Model`], which the shared fit/apply machinery in `model` turns into a runner —
//! and [`runner`] is the one place that maps a pipeline step to its implementation.
//!
//! Adding a model is: its spec (`segflow_spec`, decoded in `decode_models.rs`), one module
//! here with `impl Model`, and one line in [`runner`].

mod cluster;
mod clv;
pub(crate) mod columns;
mod enrich;
pub(crate) mod frames;
pub(crate) mod identity;
mod lookalike;
mod matrix;
pub(crate) mod model;
mod pareto;
mod potential;
mod profile;
mod rfm;
mod rules;
mod sql;
mod trend;

use async_trait::async_trait;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use segflow_manifest::CheckRecord;
use segflow_spec::{Period, Pipeline, Step, StepKind};

use crate::error::RunError;
// The model modules' shared vocabulary.
use frames::{
    collect, df_err, f64_column, fit_err, frame, materialize_as, query, scratch, single_row,
    string_column,
};
pub(crate) use identity::RegistryUpdate;
pub(crate) use model::{FitContext, ModelOutcome};
use model::{Fitted, stored_parameters};
pub(crate) use trend::history_dir as trend_history_dir;

/// What a step sees while it runs.
pub(crate) struct StepContext<'a> {
    pub ctx: &'a SessionContext,
    pub pipeline: &'a Pipeline,
    pub step: &'a Step,
    pub period: Period,
    /// The key for `pii: hash` columns, for steps that hash identifiers themselves.
    pub pii_key: Option<&'a [u8]>,
    /// Identity of this run, copied into fitted model artifacts.
    pub fit: &'a FitContext<'a>,
}

impl StepContext<'_> {
    pub(crate) fn name(&self) -> &str {
        &self.step.name.value
    }
}

/// What a step hands back to the run: its rows (a lazy plan, computed once by the run) and
/// what the manifest and the commit need to know.
pub(crate) struct StepOutput {
    pub df: DataFrame,
    /// The step's parameters for the manifest (a model's are its artifact's).
    pub parameters: Option<serde_json::Value>,
    /// A data check the step evaluated on its own data (enrichment's `min_match_rate`).
    pub check: Option<CheckRecord>,
    /// The model fitted (its artifact is written at commit) or applied.
    pub model: Option<ModelOutcome>,
    /// An identity registry (identifier hashes → person ids), written at commit.
    pub registry: Option<RegistryUpdate>,
    /// Set when `df` is exactly a scratch table the step already computed (name, rows): the
    /// run adopts that table as the step's instead of writing the same rows again.
    pub materialized: Option<(String, u64)>,
}

impl StepOutput {
    pub(crate) fn rows(df: DataFrame) -> Self {
        Self {
            df,
            parameters: None,
            check: None,
            model: None,
            registry: None,
            materialized: None,
        }
    }
}

/// One kind of step.
#[async_trait]
pub(crate) trait StepRunner: Send + Sync {
    /// Plans the step (and, for a model, fits or applies it).
    async fn run(&self, cx: &StepContext<'_>) -> Result<StepOutput, RunError>;

    /// The SQL `explain` shows: what the step runs, with placeholder parameters for a model,
    /// planned without reading data or fitting anything.
    async fn explain_sql(
        &self,
        ctx: &SessionContext,
        step: &str,
        period: Period,
    ) -> Result<String, RunError>;
}

/// The implementation of `step`'s kind: the one registration point for step kinds.
pub(crate) fn runner(step: &Step) -> Box<dyn StepRunner + '_> {
    match &step.kind {
        StepKind::Sql(s) => Box::new(sql::Sql(s)),
        StepKind::Identity(s) => Box::new(identity::Identity(s)),
        StepKind::Enrich(s) => Box::new(enrich::Enrich(s)),
        StepKind::Profile(s) => Box::new(profile::Profile(s)),
        StepKind::Rfm(s) => model::boxed(rfm::Rfm(s)),
        StepKind::Pareto(s) => model::boxed(pareto::Pareto(s)),
        StepKind::Matrix(s) => model::boxed(matrix::Matrix(s)),
        StepKind::Rules(s) => model::boxed(rules::Rules(s)),
        StepKind::Cluster(s) => model::boxed(cluster::Cluster(s)),
        StepKind::Clv(s) => model::boxed(clv::Clv(s)),
        StepKind::Lookalike(s) => model::boxed(lookalike::Lookalike(s)),
        StepKind::Potential(s) => model::boxed(potential::Potential(s)),
        StepKind::Trend(s) => Box::new(trend::Trend(s)),
    }
}
