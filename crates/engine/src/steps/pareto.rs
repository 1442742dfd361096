//! Pareto / ABC value tiers: ranked fit, frozen per-tier value thresholds.

use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use segflow_models::pareto::{
    ParetoModel, TierThreshold, pareto_apply_sql, pareto_sql, pareto_thresholds_sql,
};
use segflow_spec::{ParetoSpec, Period};

use super::frames::require_columns;
use super::{Fitted, collect, f64_column, materialize_as, query, scratch, string_column};
use crate::error::RunError;

async fn check_input(ctx: &SessionContext, step: &str, spec: &ParetoSpec) -> Result<(), RunError> {
    require_columns(
        ctx,
        step,
        &spec.input.value,
        &[spec.customer.as_str(), spec.value.as_str()],
    )
    .await
}

pub(super) async fn fit(
    ctx: &SessionContext,
    step: &str,
    spec: &ParetoSpec,
) -> Result<Fitted, RunError> {
    check_input(ctx, step, spec).await?;
    let tiers = scratch(step, "tiers");
    let rows = materialize_as(ctx, step, &tiers, &pareto_sql(spec, &spec.input.value)).await?;
    let batches = collect(
        ctx,
        step,
        &format!(
            "SELECT tier, coalesce(min_value, CAST('NaN' AS DOUBLE)) AS min_value FROM ({}) AS t",
            pareto_thresholds_sql(spec, &tiers)
        ),
    )
    .await?;
    let names = string_column(step, &batches, "tier")?;
    let mins = f64_column(step, &batches, "min_value")?;
    let min_of = |tier: &str| {
        names
            .iter()
            .zip(&mins)
            .find(|(n, _)| n.as_deref() == Some(tier))
            .and_then(|(_, m)| m.is_finite().then_some(*m))
    };
    let model = ParetoModel {
        basis: ParetoModel::basis_name(spec.basis).into(),
        tiers: spec
            .tiers
            .iter()
            .map(|(tier, bound)| TierThreshold {
                tier: tier.clone(),
                share_below: *bound,
                min_value: min_of(tier),
            })
            .collect(),
        rest: spec.rest.clone(),
    };
    Ok(Fitted {
        df: query(
            ctx,
            step,
            &format!("SELECT * FROM {}", segflow_models::quote_ident(&tiers)),
        )
        .await?,
        parameters: super::stored_parameters(step, &model)?,
        rows,
    })
}

pub(super) async fn apply(
    ctx: &SessionContext,
    step: &str,
    spec: &ParetoSpec,
    model: &ParetoModel,
) -> Result<DataFrame, RunError> {
    check_input(ctx, step, spec).await?;
    query(ctx, step, &pareto_apply_sql(spec, model, &spec.input.value)).await
}

/// `model: pareto`.
pub(crate) struct Pareto<'a>(pub &'a ParetoSpec);

#[async_trait::async_trait]
impl super::model::Model for Pareto<'_> {
    type Params = ParetoModel;

    async fn fit(&self, cx: &super::model::ModelContext<'_>) -> Result<Fitted, RunError> {
        fit(cx.ctx, cx.step, self.0).await
    }

    async fn apply(
        &self,
        cx: &super::model::ModelContext<'_>,
        params: &ParetoModel,
    ) -> Result<DataFrame, RunError> {
        apply(cx.ctx, cx.step, self.0, params).await
    }

    async fn explain_sql(
        &self,
        _ctx: &SessionContext,
        _step: &str,
        _period: Period,
    ) -> Result<String, RunError> {
        Ok(pareto_sql(self.0, &self.0.input.value))
    }
}
