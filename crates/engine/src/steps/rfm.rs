//! RFM: measures per customer, cut points fitted (or declared), scores and segments.

use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use segflow_models::rfm::{
    RfmCutPoints, RfmModel, Scoring, rfm_cut_points_from_scores_sql, rfm_cut_points_sql,
    rfm_measure_sql, rfm_score_sql, rfm_scores_sql, rfm_segments_sql,
};
use segflow_spec::{Period, RfmSpec, ScoreMethod};

use super::frames::{require_columns, with_cte};
use super::{Fitted, fit_err, materialize_as, query, scratch, single_row};
use crate::error::RunError;

async fn measure(
    ctx: &SessionContext,
    step: &str,
    spec: &RfmSpec,
    period: Period,
) -> Result<(String, u64), RunError> {
    let mut cols = vec![
        spec.customer.as_str(),
        spec.date.as_str(),
        spec.amount.as_str(),
    ];
    cols.extend(spec.order_id.as_deref());
    require_columns(ctx, step, &spec.input.value, &cols).await?;
    let measured = scratch(step, "measured");
    let sql = rfm_measure_sql(
        spec,
        &spec.input.value,
        spec.reference_date.unwrap_or(period.end()),
    );
    let rows = materialize_as(ctx, step, &measured, &sql).await?;
    Ok((measured, rows))
}

pub(super) async fn fit(
    ctx: &SessionContext,
    step: &str,
    spec: &RfmSpec,
    period: Period,
) -> Result<Fitted, RunError> {
    let (measured, rows) = measure(ctx, step, spec, period).await?;
    // An ntile fit ranks every customer three times (R, F, M); the ranks are computed once,
    // kept, and both the cut points and the step's rows are read off them.
    let scored = (spec.method == ScoreMethod::Ntile).then(|| scratch(step, "scored"));
    if let Some(scored) = &scored {
        materialize_as(
            ctx,
            step,
            scored,
            &rfm_scores_sql(spec.bins, &measured, &Scoring::Ntile),
        )
        .await?;
    }
    let cut_points = match (&spec.method, &spec.cuts) {
        (ScoreMethod::Cuts, Some(c)) => RfmCutPoints {
            recency_days: c.recency.clone(),
            frequency: c.frequency.clone(),
            monetary: c.monetary.clone(),
        },
        (method, _) => {
            if rows == 0 {
                return Err(fit_err(
                    step,
                    format!(
                        "no customer has an order before the reference date in `{}`",
                        spec.input.value
                    ),
                ));
            }
            let sql = match &scored {
                Some(scored) => rfm_cut_points_from_scores_sql(spec.bins, scored),
                None => rfm_cut_points_sql(*method, spec.bins, &measured),
            };
            let values = single_row(ctx, step, &sql).await?;
            let per = spec.bins.saturating_sub(1) as usize;
            let take = |i: usize| -> Vec<f64> {
                values
                    .iter()
                    .skip(i * per)
                    .take(per)
                    .map(|v| v.unwrap_or(f64::NAN))
                    .collect()
            };
            RfmCutPoints {
                recency_days: take(0),
                frequency: take(1),
                monetary: take(2),
            }
        }
    };
    if [
        &cut_points.recency_days,
        &cut_points.frequency,
        &cut_points.monetary,
    ]
    .iter()
    .any(|c| c.iter().any(|v| !v.is_finite()))
    {
        return Err(fit_err(
            step,
            "a cut point is undefined: the monetary measure has NULL amounts",
        ));
    }
    let sql = match &scored {
        Some(scored) => rfm_segments_sql(spec, scored),
        None => rfm_score_sql(spec, &measured, &Scoring::Cuts(&cut_points)),
    };
    let df = query(ctx, step, &sql).await?;
    let model = RfmModel::new(spec, cut_points.clone());
    Ok(Fitted {
        df,
        parameters: super::stored_parameters(step, &model)?,
        rows,
    })
}

pub(super) async fn apply(
    ctx: &SessionContext,
    step: &str,
    spec: &RfmSpec,
    period: Period,
    model: &RfmModel,
) -> Result<DataFrame, RunError> {
    let frozen = model.frozen_spec(spec).map_err(|message| {
        fit_err(
            step,
            format!("the stored model cannot be applied: {message}"),
        )
    })?;
    let (measured, _) = measure(ctx, step, &frozen, period).await?;
    query(
        ctx,
        step,
        &rfm_score_sql(&frozen, &measured, &Scoring::Cuts(&model.cut_points)),
    )
    .await
}

/// `model: rfm`.
pub(crate) struct Rfm<'a>(pub &'a RfmSpec);

#[async_trait::async_trait]
impl super::model::Model for Rfm<'_> {
    type Params = RfmModel;

    async fn fit(&self, cx: &super::model::ModelContext<'_>) -> Result<Fitted, RunError> {
        fit(cx.ctx, cx.step, self.0, cx.period).await
    }

    async fn apply(
        &self,
        cx: &super::model::ModelContext<'_>,
        params: &RfmModel,
    ) -> Result<DataFrame, RunError> {
        apply(cx.ctx, cx.step, self.0, cx.period, params).await
    }

    async fn explain_sql(
        &self,
        ctx: &SessionContext,
        step: &str,
        period: Period,
    ) -> Result<String, RunError> {
        let spec = self.0;
        let mut cols = vec![
            spec.customer.as_str(),
            spec.date.as_str(),
            spec.amount.as_str(),
        ];
        cols.extend(spec.order_id.as_deref());
        require_columns(ctx, step, &spec.input.value, &cols).await?;
        let zeros = vec![0.0; spec.bins.saturating_sub(1) as usize];
        let cuts = RfmCutPoints {
            recency_days: zeros.clone(),
            frequency: zeros.clone(),
            monetary: zeros,
        };
        let measure = rfm_measure_sql(
            spec,
            &spec.input.value,
            spec.reference_date.unwrap_or(period.end()),
        );
        Ok(with_cte(
            "measured",
            measure,
            rfm_score_sql(spec, "measured", &Scoring::Cuts(&cuts)),
        ))
    }
}
