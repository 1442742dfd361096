//! CLV: per-customer purchase summaries in SQL, BG/NBD + Gamma-Gamma fitted on their unique
//! rows (weighted), and per-customer predictions.

use std::sync::Arc;

use chrono::{Days, NaiveDate};
use datafusion::arrow::array::{ArrayRef, BooleanArray, Float64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use segflow_models::clv::{
    BgNbd, FitReport, GammaGamma, PredictionSettings, PurchaseSummary, SpendSummary, fit_bgnbd,
    fit_gamma_gamma, predict_customers,
};
use segflow_models::quote_ident;
use segflow_spec::{ClvSpec, Period};
use serde::{Deserialize, Serialize};

use super::frames::require_columns;
use super::{Fitted, collect, df_err, f64_column, fit_err, frame, materialize_as, scratch};
use crate::error::RunError;

/// Average days per month, for monthly discounting steps.
const DAYS_PER_MONTH: f64 = 365.25 / 12.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClvModel {
    /// `days` or `weeks`: the unit of `t_x`, `T` and the horizon.
    pub time_unit: String,
    pub bgnbd: BgNbd,
    pub bgnbd_fit: FitReport,
    pub gamma_gamma: GammaGamma,
    pub gamma_gamma_fit: FitReport,
    pub horizon: f64,
    pub clv_months: u32,
    pub monthly_discount: f64,
    pub margin_rate: f64,
    pub churn_p_alive_below: f64,
    pub churn_inactive_days: Option<u32>,
}

fn observation_end(spec: &ClvSpec, period: Period) -> NaiveDate {
    spec.observation_end.unwrap_or_else(|| {
        period
            .end()
            .checked_sub_days(Days::new(1))
            .unwrap_or(period.end())
    })
}

fn day_number(expr: &str) -> String {
    format!("CAST(arrow_cast({expr}, 'Int32') AS BIGINT)")
}

/// One row per customer: `customer, x, t_x, t, mean_spend, historical_value, inactive_days`.
/// Orders are summed per day first (several orders on one day are one purchase occasion);
/// x = purchase days − 1; t_x and T count from the first purchase to the last one and to the
/// observation end; mean spend is over the repeat days (the first purchase excluded). Money
/// is summed as an exact decimal and turned into DOUBLE once: DOUBLE sums depend on the order
/// rows arrive in, and so on the partitioning.
fn summary_sql(spec: &ClvSpec, end: NaiveDate) -> String {
    let unit = spec.time_unit.days();
    let end_lit = format!("DATE '{end}'");
    let margin = spec
        .margin
        .clone()
        .unwrap_or_else(|| quote_ident(&spec.amount));
    format!(
        "WITH days AS (
  SELECT {customer} AS customer, CAST({date} AS DATE) AS day,
    sum(CAST({amount} AS DECIMAL(38,10))) AS spend, sum(CAST({margin} AS DECIMAL(38,10))) AS margin
  FROM {input}
  WHERE {customer} IS NOT NULL AND {date} IS NOT NULL AND CAST({date} AS DATE) <= {end_lit}
  GROUP BY 1, 2
),
per_customer AS (
  SELECT customer, min(day) AS first_day, max(day) AS last_day, count(*) AS purchase_days,
    sum(spend) AS total_spend, sum(margin) AS historical_value
  FROM days GROUP BY customer
)
SELECT p.customer,
  CAST(p.purchase_days - 1 AS DOUBLE) AS x,
  CAST({last} - {first} AS DOUBLE) / {unit:?} AS t_x,
  CAST({end_n} - {first} AS DOUBLE) / {unit:?} AS t,
  CASE WHEN p.purchase_days > 1 THEN CAST(p.total_spend - d.spend AS DOUBLE) / CAST(p.purchase_days - 1 AS DOUBLE) END AS mean_spend,
  CAST(p.historical_value AS DOUBLE) AS historical_value,
  CAST({end_n} - {last} AS DOUBLE) AS inactive_days
FROM per_customer p JOIN days d ON d.customer = p.customer AND d.day = p.first_day",
        customer = quote_ident(&spec.customer),
        date = quote_ident(&spec.date),
        amount = quote_ident(&spec.amount),
        input = quote_ident(&spec.input.value),
        last = day_number("p.last_day"),
        first = day_number("p.first_day"),
        end_n = day_number(&end_lit),
    )
}

async fn summarize(
    ctx: &SessionContext,
    step: &str,
    spec: &ClvSpec,
    period: Period,
) -> Result<(String, u64), RunError> {
    require_columns(
        ctx,
        step,
        &spec.input.value,
        &[
            spec.customer.as_str(),
            spec.date.as_str(),
            spec.amount.as_str(),
        ],
    )
    .await?;
    let table = scratch(step, "summary");
    let rows = materialize_as(
        ctx,
        step,
        &table,
        &summary_sql(spec, observation_end(spec, period)),
    )
    .await?;
    Ok((table, rows))
}

pub(super) async fn fit(
    ctx: &SessionContext,
    step: &str,
    spec: &ClvSpec,
    period: Period,
) -> Result<Fitted, RunError> {
    let (table, customers) = summarize(ctx, step, spec, period).await?;
    if customers == 0 {
        return Err(fit_err(
            step,
            format!(
                "no purchases on or before {} in `{}`",
                observation_end(spec, period),
                spec.input.value
            ),
        ));
    }
    let t = quote_ident(&table);
    let unique = collect(
        ctx,
        step,
        &format!(
            "SELECT x, t_x, t, count(*) AS weight FROM {t} GROUP BY x, t_x, t ORDER BY x, t_x, t"
        ),
    )
    .await?;
    let (x, t_x, big_t, w) = (
        f64_column(step, &unique, "x")?,
        f64_column(step, &unique, "t_x")?,
        f64_column(step, &unique, "t")?,
        f64_column(step, &unique, "weight")?,
    );
    let purchases: Vec<PurchaseSummary> = (0..x.len())
        .map(|i| PurchaseSummary {
            x: x[i],
            t_x: t_x[i],
            t: big_t[i],
            weight: w[i],
        })
        .collect();
    let (bgnbd, bgnbd_fit) =
        fit_bgnbd(&purchases).map_err(|e| fit_err(step, format!("BG/NBD: {e}")))?;
    let bgnbd_fit = reproducible(step, "BG/NBD", bgnbd_fit);
    let spend = collect(ctx, step, &format!("SELECT x, mean_spend, count(*) AS weight FROM {t} WHERE x > 0 AND mean_spend > 0 GROUP BY x, mean_spend ORDER BY x, mean_spend")).await?;
    let (sx, sm, sw) = (
        f64_column(step, &spend, "x")?,
        f64_column(step, &spend, "mean_spend")?,
        f64_column(step, &spend, "weight")?,
    );
    let spends: Vec<SpendSummary> = (0..sx.len())
        .map(|i| SpendSummary {
            x: sx[i],
            mean_spend: sm[i],
            weight: sw[i],
        })
        .collect();
    let (gamma_gamma, gamma_gamma_fit) =
        fit_gamma_gamma(&spends).map_err(|e| fit_err(step, format!("Gamma-Gamma: {e}")))?;
    let gamma_gamma_fit = reproducible(step, "Gamma-Gamma", gamma_gamma_fit);
    let model = ClvModel {
        time_unit: match spec.time_unit {
            segflow_spec::TimeUnit::Days => "days",
            segflow_spec::TimeUnit::Weeks => "weeks",
        }
        .into(),
        bgnbd,
        bgnbd_fit,
        gamma_gamma,
        gamma_gamma_fit,
        horizon: spec.horizon,
        clv_months: spec.clv_months,
        monthly_discount: spec.monthly_discount,
        margin_rate: spec.margin_rate,
        churn_p_alive_below: spec.churn_below,
        churn_inactive_days: spec.churn_after_days,
    };
    let df = predict(ctx, step, spec, &table, &model).await?;
    Ok(Fitted {
        df,
        parameters: super::stored_parameters(step, &model)?,
        rows: customers,
    })
}

/// The fit report as stored: without its wall-clock time (the step's seconds are in the
/// manifest), so refitting the same data gives the same artifact bytes. A fit that stopped
/// short of the optimum (possible on tiny data, where the maximum lies on a boundary) is kept
/// — its predictions are the limiting model's — but logged, and `converged: false` is stored.
fn reproducible(step: &str, model: &str, mut report: FitReport) -> FitReport {
    if !report.converged {
        tracing::warn!(
            step,
            model,
            log_likelihood = report.log_likelihood,
            iterations = report.iterations,
            "fit did not converge; the best point found is used"
        );
    }
    report.seconds = 0.0;
    report
}

pub(super) async fn apply(
    ctx: &SessionContext,
    step: &str,
    spec: &ClvSpec,
    period: Period,
    model: &ClvModel,
) -> Result<DataFrame, RunError> {
    // Time is measured in the model's unit, whatever this pipeline's YAML says.
    let mut frozen = spec.clone();
    frozen.time_unit = match model.time_unit.as_str() {
        "days" => segflow_spec::TimeUnit::Days,
        "weeks" => segflow_spec::TimeUnit::Weeks,
        other => {
            return Err(fit_err(
                step,
                format!(
                    "the stored model has an unknown time unit `{other}` (expected days or weeks)"
                ),
            ));
        }
    };
    let (table, _) = summarize(ctx, step, &frozen, period).await?;
    predict(ctx, step, &frozen, &table, model).await
}

/// Per customer: the summary plus P(alive), expected purchases over the horizon, expected
/// spend per purchase, discounted CLV and the churn flag.
async fn predict(
    ctx: &SessionContext,
    step: &str,
    spec: &ClvSpec,
    table: &str,
    model: &ClvModel,
) -> Result<DataFrame, RunError> {
    let batches = collect(
        ctx,
        step,
        &format!("SELECT * FROM {} ORDER BY customer", quote_ident(table)),
    )
    .await?;
    let customer_arrays: Vec<&dyn arrow::array::Array> =
        batches.iter().map(|b| b.column(0).as_ref()).collect();
    let (x, t_x, t, inactive) = (
        f64_column(step, &batches, "x")?,
        f64_column(step, &batches, "t_x")?,
        f64_column(step, &batches, "t")?,
        f64_column(step, &batches, "inactive_days")?,
    );
    let mut mean_spend = Vec::with_capacity(x.len());
    let mut historical = Vec::with_capacity(x.len());
    for b in &batches {
        for (name, out) in [
            ("mean_spend", &mut mean_spend),
            ("historical_value", &mut historical),
        ] {
            let a = b
                .column_by_name(name)
                .ok_or_else(|| fit_err(step, format!("no column `{name}`")))?;
            let a =
                arrow::compute::cast(a, &DataType::Float64).map_err(|e| df_err(step)(e.into()))?;
            let a = a
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(|| fit_err(step, "not numeric"))?;
            out.extend(a.iter());
        }
    }
    let unit_days = if model.time_unit == "days" { 1.0 } else { 7.0 };
    let zbar: Vec<f64> = mean_spend.iter().map(|v| v.unwrap_or(0.0)).collect();
    let predicted = predict_customers(
        &model.bgnbd,
        &model.gamma_gamma,
        &PredictionSettings {
            horizon: model.horizon,
            steps: model.clv_months,
            step_length: DAYS_PER_MONTH / unit_days,
            discount_per_step: model.monthly_discount,
            margin: model.margin_rate,
        },
        &x,
        &t_x,
        &t,
        &zbar,
    )
    .map_err(|e| fit_err(step, e.to_string()))?;
    let churn: Vec<bool> = predicted
        .p_alive
        .iter()
        .zip(&inactive)
        .map(|(alive, inactive)| {
            let inactive_too_long = model
                .churn_inactive_days
                .is_some_and(|d| *inactive > f64::from(d));
            *alive < model.churn_p_alive_below || inactive_too_long
        })
        .collect();
    let customers = if customer_arrays.is_empty() {
        Arc::new(arrow::array::StringArray::from(Vec::<Option<String>>::new())) as ArrayRef
    } else {
        arrow::compute::concat(&customer_arrays).map_err(|e| df_err(step)(e.into()))?
    };
    let f = |name: &str| Field::new(name, DataType::Float64, true);
    let schema = Schema::new(vec![
        Field::new(&spec.customer, customers.data_type().clone(), true),
        f("frequency"),
        f("recency"),
        f("t"),
        f("mean_spend"),
        f("historical_value"),
        f("p_alive"),
        f("expected_purchases"),
        f("expected_spend"),
        f("clv"),
        Field::new("churn_risk", DataType::Boolean, true),
    ]);
    let columns: Vec<ArrayRef> = vec![
        customers,
        Arc::new(Float64Array::from(x)),
        Arc::new(Float64Array::from(t_x)),
        Arc::new(Float64Array::from(t)),
        Arc::new(Float64Array::from(mean_spend)),
        Arc::new(Float64Array::from(historical)),
        Arc::new(Float64Array::from(predicted.p_alive)),
        Arc::new(Float64Array::from(predicted.expected_purchases)),
        Arc::new(Float64Array::from(predicted.expected_spend)),
        Arc::new(Float64Array::from(predicted.clv)),
        Arc::new(BooleanArray::from(churn)),
    ];
    let batch =
        RecordBatch::try_new(Arc::new(schema), columns).map_err(|e| df_err(step)(e.into()))?;
    frame(ctx, step, batch)
}

/// `model: clv`.
pub(crate) struct Clv<'a>(pub &'a ClvSpec);

#[async_trait::async_trait]
impl super::model::Model for Clv<'_> {
    type Params = ClvModel;

    async fn fit(&self, cx: &super::model::ModelContext<'_>) -> Result<Fitted, RunError> {
        fit(cx.ctx, cx.step, self.0, cx.period).await
    }

    async fn apply(
        &self,
        cx: &super::model::ModelContext<'_>,
        params: &ClvModel,
    ) -> Result<DataFrame, RunError> {
        apply(cx.ctx, cx.step, self.0, cx.period, params).await
    }

    async fn explain_sql(
        &self,
        _ctx: &SessionContext,
        _step: &str,
        _period: Period,
    ) -> Result<String, RunError> {
        // Fitted and scored in Rust: explained by what it reads and the shape it produces.
        let spec = self.0;
        let d = "CAST(NULL AS DOUBLE)";
        Ok(format!(
            "SELECT {c}, {d} AS frequency, {d} AS recency, {d} AS t, {d} AS mean_spend, {d} AS historical_value, {d} AS p_alive, {d} AS expected_purchases, {d} AS expected_spend, {d} AS clv, CAST(NULL AS BOOLEAN) AS churn_risk FROM {input} GROUP BY {c}",
            c = quote_ident(&spec.customer),
            input = quote_ident(&spec.input.value)
        ))
    }
}
