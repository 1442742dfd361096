//! Value × loyalty matrix: axis values, frozen splits, four cells.

use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use segflow_models::matrix::{
    AxisModel, MatrixModel, matrix_apply_sql, matrix_splits_sql, matrix_values_sql, split_name,
};
use segflow_spec::{MatrixSpec, Period};

use super::frames::{require_columns, with_cte};
use super::{Fitted, fit_err, materialize_as, query, scratch, single_row};
use crate::error::RunError;

async fn values(
    ctx: &SessionContext,
    step: &str,
    spec: &MatrixSpec,
) -> Result<(String, u64), RunError> {
    require_columns(ctx, step, &spec.input.value, &[spec.key.as_str()]).await?;
    let table = scratch(step, "values");
    let rows = materialize_as(
        ctx,
        step,
        &table,
        &matrix_values_sql(spec, &spec.input.value),
    )
    .await?;
    Ok((table, rows))
}

pub(super) async fn fit(
    ctx: &SessionContext,
    step: &str,
    spec: &MatrixSpec,
) -> Result<Fitted, RunError> {
    let (table, rows) = values(ctx, step, spec).await?;
    let splits = single_row(ctx, step, &matrix_splits_sql(spec, &table)).await?;
    let (Some(Some(x)), Some(Some(y))) = (splits.first(), splits.get(1)) else {
        return Err(fit_err(
            step,
            format!("no non-NULL values in `{}` to split", spec.input.value),
        ));
    };
    let model = MatrixModel {
        x: AxisModel {
            name: spec.x.name.clone(),
            expr: spec.x.expr.clone(),
            split: split_name(spec.x.split).into(),
            threshold: *x,
        },
        y: AxisModel {
            name: spec.y.name.clone(),
            expr: spec.y.expr.clone(),
            split: split_name(spec.y.split).into(),
            threshold: *y,
        },
        cells: spec.cells.clone(),
    };
    Ok(Fitted {
        df: query(ctx, step, &matrix_apply_sql(spec, &model, &table)).await?,
        parameters: super::stored_parameters(step, &model)?,
        rows,
    })
}

pub(super) async fn apply(
    ctx: &SessionContext,
    step: &str,
    spec: &MatrixSpec,
    model: &MatrixModel,
) -> Result<DataFrame, RunError> {
    // The frozen expressions, so the axes mean what they meant when the model was fitted.
    let mut frozen = spec.clone();
    frozen.x.expr.clone_from(&model.x.expr);
    frozen.y.expr.clone_from(&model.y.expr);
    let (table, _) = values(ctx, step, &frozen).await?;
    query(ctx, step, &matrix_apply_sql(&frozen, model, &table)).await
}

/// `model: matrix`.
pub(crate) struct Matrix<'a>(pub &'a MatrixSpec);

#[async_trait::async_trait]
impl super::model::Model for Matrix<'_> {
    type Params = MatrixModel;

    async fn fit(&self, cx: &super::model::ModelContext<'_>) -> Result<Fitted, RunError> {
        fit(cx.ctx, cx.step, self.0).await
    }

    async fn apply(
        &self,
        cx: &super::model::ModelContext<'_>,
        params: &MatrixModel,
    ) -> Result<DataFrame, RunError> {
        apply(cx.ctx, cx.step, self.0, params).await
    }

    async fn explain_sql(
        &self,
        _ctx: &SessionContext,
        _step: &str,
        _period: Period,
    ) -> Result<String, RunError> {
        let spec = self.0;
        let axis = |a: &segflow_spec::Axis| AxisModel {
            name: a.name.clone(),
            expr: a.expr.clone(),
            split: split_name(a.split).into(),
            threshold: 0.0,
        };
        let model = MatrixModel {
            x: axis(&spec.x),
            y: axis(&spec.y),
            cells: spec.cells.clone(),
        };
        Ok(with_cte(
            "matrix_values",
            matrix_values_sql(spec, &spec.input.value),
            matrix_apply_sql(spec, &model, "matrix_values"),
        ))
    }
}
