//! Lookalikes: index tables (or the best segment's centroid) fitted on customers, applied to
//! prospects.

use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use segflow_models::lookalike::{
    AttributeCentroid, AttributeIndex, CENTROID_COLUMNS, LookalikeModel, ValueIndex, centroid_of,
    centroid_sql, index_of, score_sql, totals_sql, value_counts_sql,
};
use segflow_spec::{LookalikeMethod, LookalikeSpec, Period};

use super::frames::require_columns;
use super::{Fitted, collect, f64_column, fit_err, query, single_row, string_column};
use crate::error::RunError;

async fn check_inputs(
    ctx: &SessionContext,
    step: &str,
    spec: &LookalikeSpec,
) -> Result<(), RunError> {
    let mut cols: Vec<&str> = vec![spec.segment.as_str()];
    cols.extend(spec.attributes.iter().map(String::as_str));
    require_columns(ctx, step, &spec.customers.value, &cols).await?;
    let mut cols: Vec<&str> = vec![spec.key.as_str()];
    cols.extend(spec.attributes.iter().map(String::as_str));
    require_columns(ctx, step, &spec.prospects.value, &cols).await
}

pub(super) async fn fit(
    ctx: &SessionContext,
    step: &str,
    spec: &LookalikeSpec,
) -> Result<Fitted, RunError> {
    check_inputs(ctx, step, spec).await?;
    let totals = single_row(ctx, step, &totals_sql(spec)).await?;
    let total = totals.first().copied().flatten().unwrap_or(0.0) as u64;
    let total_best = totals.get(1).copied().flatten().unwrap_or(0.0) as u64;
    if total_best == 0 {
        return Err(fit_err(
            step,
            format!(
                "no customer in `{}` has {} in ({}); the best segment is empty",
                spec.customers.value,
                spec.segment,
                spec.best.join(", ")
            ),
        ));
    }
    let mut model = LookalikeModel {
        method: match spec.method {
            LookalikeMethod::Index => "index",
            LookalikeMethod::Centroid => "centroid",
        }
        .into(),
        best_segments: spec.best.clone(),
        customers: total,
        best_customers: total_best,
        min_customers: spec.min_customers,
        indexes: Vec::new(),
        centroid: Vec::new(),
    };
    match spec.method {
        LookalikeMethod::Index => {
            for attribute in &spec.attributes {
                let batches = collect(ctx, step, &value_counts_sql(spec, attribute)).await?;
                let values = string_column(step, &batches, "value")?;
                let customers = f64_column(step, &batches, "customers")?;
                let best = f64_column(step, &batches, "best_customers")?;
                let values = values
                    .into_iter()
                    .zip(customers.into_iter().zip(best))
                    .filter_map(|(v, (c, b))| {
                        let (c, b) = (c as u64, b as u64);
                        v.map(|value| ValueIndex {
                            value,
                            customers: c,
                            best_customers: b,
                            index: index_of(c, b, total, total_best, spec.min_customers),
                        })
                    })
                    .collect();
                model.indexes.push(AttributeIndex {
                    attribute: attribute.clone(),
                    values,
                });
            }
        }
        LookalikeMethod::Centroid => {
            let row = single_row(ctx, step, &centroid_sql(spec)).await?;
            for (i, attribute) in spec.attributes.iter().enumerate() {
                let sums = row
                    .get(i * CENTROID_COLUMNS..(i + 1) * CENTROID_COLUMNS)
                    .unwrap_or_default();
                let Some((mean, sd, best_mean)) = centroid_of(sums) else {
                    return Err(fit_err(
                        step,
                        format!("attribute `{attribute}` has no numeric values"),
                    ));
                };
                let scale = if sd > 0.0 { sd } else { 1.0 };
                model.centroid.push(AttributeCentroid {
                    attribute: attribute.clone(),
                    mean,
                    std_dev: sd,
                    best_z: (best_mean - mean) / scale,
                });
            }
        }
    }
    let added = segflow_models::lookalike::added_columns(&model);
    super::frames::refuse_clashes(ctx, step, &spec.prospects.value, &added).await?;
    let df = query(ctx, step, &score_sql(spec, &model)).await?;
    Ok(Fitted {
        df,
        parameters: super::stored_parameters(step, &model)?,
        rows: total,
    })
}

pub(super) async fn apply(
    ctx: &SessionContext,
    step: &str,
    spec: &LookalikeSpec,
    model: &LookalikeModel,
) -> Result<DataFrame, RunError> {
    let mut cols: Vec<&str> = vec![spec.key.as_str()];
    cols.extend(spec.attributes.iter().map(String::as_str));
    require_columns(ctx, step, &spec.prospects.value, &cols).await?;
    let added = segflow_models::lookalike::added_columns(model);
    super::frames::refuse_clashes(ctx, step, &spec.prospects.value, &added).await?;
    query(ctx, step, &score_sql(spec, model)).await
}

/// `model: lookalike`.
pub(crate) struct Lookalike<'a>(pub &'a LookalikeSpec);

#[async_trait::async_trait]
impl super::model::Model for Lookalike<'_> {
    type Params = LookalikeModel;

    async fn fit(&self, cx: &super::model::ModelContext<'_>) -> Result<Fitted, RunError> {
        fit(cx.ctx, cx.step, self.0).await
    }

    async fn apply(
        &self,
        cx: &super::model::ModelContext<'_>,
        params: &LookalikeModel,
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
        Ok(score_sql(spec, &model))
    }
}

/// The model with placeholder statistics: the shape of a fitted one (method, attributes) for
/// `explain` and for validation's list of the columns the step adds.
pub(crate) fn placeholder_model(spec: &LookalikeSpec) -> LookalikeModel {
    let centroid = spec.method == LookalikeMethod::Centroid;
    LookalikeModel {
        method: if centroid { "centroid" } else { "index" }.into(),
        best_segments: spec.best.clone(),
        customers: 0,
        best_customers: 0,
        min_customers: spec.min_customers,
        indexes: spec
            .attributes
            .iter()
            .map(|a| AttributeIndex {
                attribute: a.clone(),
                values: Vec::new(),
            })
            .collect(),
        centroid: spec
            .attributes
            .iter()
            .filter(|_| centroid)
            .map(|a| AttributeCentroid {
                attribute: a.clone(),
                mean: 0.0,
                std_dev: 1.0,
                best_z: 0.0,
            })
            .collect(),
    }
}
