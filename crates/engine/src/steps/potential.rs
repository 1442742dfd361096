//! B2B potential: OLS on customers' firmographics, applied to non-customers in the market.

use std::collections::BTreeSet;

use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use segflow_models::potential::{
    CategoricalTerm, LevelCoefficient, NumericTerm, PotentialModel, apply_sql, least_squares,
    r_squared, training_sql,
};
use segflow_spec::{Period, PotentialSpec};

use super::frames::require_columns;
use super::{Fitted, collect, f64_column, fit_err, query, string_column};
use crate::error::RunError;

async fn check_inputs(
    ctx: &SessionContext,
    step: &str,
    spec: &PotentialSpec,
) -> Result<(), RunError> {
    let mut cols: Vec<&str> = vec![spec.key.as_str()];
    cols.extend(spec.numeric.iter().map(String::as_str));
    cols.extend(spec.categorical.iter().map(String::as_str));
    require_columns(ctx, step, &spec.market.value, &cols).await?;
    cols.push(spec.target.as_str());
    require_columns(ctx, step, &spec.customers.value, &cols).await
}

pub(super) async fn fit(
    ctx: &SessionContext,
    step: &str,
    spec: &PotentialSpec,
) -> Result<Fitted, RunError> {
    check_inputs(ctx, step, spec).await?;
    let batches = collect(ctx, step, &training_sql(spec)).await?;
    let y = f64_column(step, &batches, "__target")?;
    let numeric: Vec<Vec<f64>> = spec
        .numeric
        .iter()
        .map(|c| f64_column(step, &batches, c))
        .collect::<Result<_, _>>()?;
    let categorical: Vec<Vec<String>> = spec
        .categorical
        .iter()
        .map(|c| {
            string_column(step, &batches, c)
                .map(|v| v.into_iter().map(Option::unwrap_or_default).collect())
        })
        .collect::<Result<_, _>>()?;
    // Levels in sorted order; the first is the baseline.
    let levels: Vec<Vec<String>> = categorical
        .iter()
        .map(|values| {
            values
                .iter()
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        })
        .collect();
    let mut names = vec!["(intercept)".to_string()];
    names.extend(spec.numeric.iter().cloned());
    for (column, lv) in spec.categorical.iter().zip(&levels) {
        names.extend(lv.iter().skip(1).map(|l| format!("{column}={l}")));
    }
    let x: Vec<Vec<f64>> = (0..y.len())
        .map(|i| {
            let mut row = vec![1.0];
            row.extend(numeric.iter().map(|c| c[i]));
            for (values, lv) in categorical.iter().zip(&levels) {
                row.extend(
                    lv.iter()
                        .skip(1)
                        .map(|l| if &values[i] == l { 1.0 } else { 0.0 }),
                );
            }
            row
        })
        .collect();
    let b = least_squares(&x, &y, &names).map_err(|m| fit_err(step, m))?;
    let mut next = 1 + spec.numeric.len();
    let model = PotentialModel {
        target: spec.target.clone(),
        intercept: b[0],
        numeric: spec
            .numeric
            .iter()
            .enumerate()
            .map(|(i, c)| NumericTerm {
                column: c.clone(),
                coefficient: b[1 + i],
            })
            .collect(),
        categorical: spec
            .categorical
            .iter()
            .zip(&levels)
            .map(|(column, lv)| {
                let mut coefficients = vec![LevelCoefficient {
                    level: lv.first().cloned().unwrap_or_default(),
                    coefficient: 0.0,
                }];
                for level in lv.iter().skip(1) {
                    coefficients.push(LevelCoefficient {
                        level: level.clone(),
                        coefficient: b[next],
                    });
                    next += 1;
                }
                CategoricalTerm {
                    column: column.clone(),
                    baseline: lv.first().cloned().unwrap_or_default(),
                    levels: coefficients,
                }
            })
            .collect(),
        r_squared: r_squared(&x, &y, &b),
        observations: y.len() as u64,
    };
    let added = segflow_models::potential::added_columns(&model);
    super::frames::refuse_clashes(ctx, step, &spec.market.value, &added).await?;
    let df = query(ctx, step, &apply_sql(spec, &model)).await?;
    Ok(Fitted {
        df,
        parameters: super::stored_parameters(step, &model)?,
        rows: y.len() as u64,
    })
}

pub(super) async fn apply(
    ctx: &SessionContext,
    step: &str,
    spec: &PotentialSpec,
    model: &PotentialModel,
) -> Result<DataFrame, RunError> {
    check_inputs(ctx, step, spec).await?;
    let added = segflow_models::potential::added_columns(model);
    super::frames::refuse_clashes(ctx, step, &spec.market.value, &added).await?;
    query(ctx, step, &apply_sql(spec, model)).await
}

/// `model: potential`.
pub(crate) struct Potential<'a>(pub &'a PotentialSpec);

#[async_trait::async_trait]
impl super::model::Model for Potential<'_> {
    type Params = PotentialModel;

    async fn fit(&self, cx: &super::model::ModelContext<'_>) -> Result<Fitted, RunError> {
        fit(cx.ctx, cx.step, self.0).await
    }

    async fn apply(
        &self,
        cx: &super::model::ModelContext<'_>,
        params: &PotentialModel,
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
        let model = placeholder_model(spec);
        Ok(apply_sql(spec, &model))
    }
}

/// The model with zero coefficients: the shape of a fitted one for `explain` and for
/// validation's list of the columns the step adds.
pub(crate) fn placeholder_model(spec: &PotentialSpec) -> PotentialModel {
    PotentialModel {
        target: spec.target.clone(),
        intercept: 0.0,
        numeric: spec
            .numeric
            .iter()
            .map(|c| NumericTerm {
                column: c.clone(),
                coefficient: 0.0,
            })
            .collect(),
        categorical: spec
            .categorical
            .iter()
            .map(|c| CategoricalTerm {
                column: c.clone(),
                baseline: String::new(),
                levels: Vec::new(),
            })
            .collect(),
        r_squared: 0.0,
        observations: 0,
    }
}
