//! Ordered rules: nothing to estimate; the fit freezes the rules themselves.

use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use segflow_models::rfm::StoredRule;
use segflow_models::rules::{RulesModel, added_columns, rules_sql};
use segflow_spec::{Period, RulesSpec};

use super::{Fitted, query};
use crate::error::RunError;

pub(super) async fn fit(
    ctx: &SessionContext,
    step: &str,
    spec: &RulesSpec,
) -> Result<Fitted, RunError> {
    let model = RulesModel {
        segments: StoredRule::from_spec(&spec.segments),
    };
    super::frames::refuse_clashes(ctx, step, &spec.input.value, &added_columns()).await?;
    let df = query(ctx, step, &rules_sql(&model, &spec.input.value)).await?;
    let rows = df.clone().count().await.map_err(super::df_err(step))? as u64;
    Ok(Fitted {
        df,
        parameters: super::stored_parameters(step, &model)?,
        rows,
    })
}

pub(super) async fn apply(
    ctx: &SessionContext,
    step: &str,
    spec: &RulesSpec,
    model: &RulesModel,
) -> Result<DataFrame, RunError> {
    super::frames::refuse_clashes(ctx, step, &spec.input.value, &added_columns()).await?;
    query(ctx, step, &rules_sql(model, &spec.input.value)).await
}

/// `model: rules`.
pub(crate) struct Rules<'a>(pub &'a RulesSpec);

#[async_trait::async_trait]
impl super::model::Model for Rules<'_> {
    type Params = RulesModel;

    async fn fit(&self, cx: &super::model::ModelContext<'_>) -> Result<Fitted, RunError> {
        fit(cx.ctx, cx.step, self.0).await
    }

    async fn apply(
        &self,
        cx: &super::model::ModelContext<'_>,
        params: &RulesModel,
    ) -> Result<DataFrame, RunError> {
        apply(cx.ctx, cx.step, self.0, params).await
    }

    async fn explain_sql(
        &self,
        _ctx: &SessionContext,
        _step: &str,
        _period: Period,
    ) -> Result<String, RunError> {
        Ok(rules_sql(
            &RulesModel {
                segments: StoredRule::from_spec(&self.0.segments),
            },
            &self.0.input.value,
        ))
    }
}
