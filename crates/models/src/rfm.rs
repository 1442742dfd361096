//! RFM: recency, frequency and monetary scores per customer, and named segments.
//!
//! Definitions (DESIGN.md §3, written into the run manifest by the engine):
//! - only orders with a customer, dated before the reference date (and, with a lookback, on or
//!   after `reference - lookback`) count;
//! - R = days from the last order to the reference date (fewer days → higher score);
//! - F = distinct order ids, or distinct purchase days;
//! - M = sum of order amounts, or that sum divided by F (mean per order);
//! - `ntile`: equal-size buckets by rank, ties broken by customer id (ascending), so every run
//!   gives the same scores; `quantile`: cut points c_k = the value at rank ceil(k·N/bins) in
//!   ascending order, score = 1 + #{c_k < value} (for R: bins − #{c_k < days}), so equal
//!   values always share a score;
//! - the segment is the first rule whose `when` holds, over `r`, `f`, `m`, `recency_days`,
//!   `frequency` and `monetary`.
//!
//! Fitting yields cut points per measure (`quantile`: the rule above; `ntile`: the largest value
//! of each bucket; `cuts`: as given), written to the model artifact. Applying scores with those
//! cut points — score = 1 + #{c_k < value}, R reversed. For `quantile` and `cuts` that is
//! exactly how the fit scored. An `ntile` fit scores by rank, so customers tied on a bucket
//! boundary can be split between two buckets there, while applying puts every tied customer in
//! the lower one: identical data can score one bucket lower in a monthly run for exactly those
//! customers. Use `quantile` where month-to-month stability matters more than equal buckets.

use chrono::{Days, Months, NaiveDate};
use segflow_spec::{
    FrequencyMeasure, Lookback, LookbackUnit, MonetaryMeasure, RfmSpec, ScoreMethod, SegmentRule,
};
use serde::{Deserialize, Serialize};

use crate::sql::{quote_ident, quote_literal};

/// Cut points per measure, increasing, `bins - 1` each; compared as DOUBLE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RfmCutPoints {
    pub recency_days: Vec<f64>,
    pub frequency: Vec<f64>,
    pub monetary: Vec<f64>,
}

/// A named rule as stored in an artifact (`when: null` is the catch-all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRule {
    pub name: String,
    pub when: Option<String>,
}

impl StoredRule {
    pub fn from_spec(rules: &[SegmentRule]) -> Vec<Self> {
        rules
            .iter()
            .map(|r| StoredRule {
                name: r.name.clone(),
                when: r.when.clone(),
            })
            .collect()
    }

    pub fn to_spec(rules: &[Self]) -> Vec<SegmentRule> {
        rules
            .iter()
            .map(|r| SegmentRule {
                name: r.name.clone(),
                when: r.when.clone(),
                loc: segflow_spec::Location::default(),
            })
            .collect()
    }
}

/// The fitted RFM model: everything a later run needs to score the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RfmModel {
    /// `orders` or `purchase_days`.
    pub frequency: String,
    /// `sum` or `mean`.
    pub monetary: String,
    /// e.g. `3 years`; all history when absent.
    pub lookback: Option<String>,
    pub bins: u32,
    /// How the cut points were found: `ntile`, `quantile` or `cuts`.
    pub method: String,
    pub cut_points: RfmCutPoints,
    pub segments: Vec<StoredRule>,
}

impl RfmModel {
    pub fn new(spec: &RfmSpec, cut_points: RfmCutPoints) -> Self {
        RfmModel {
            frequency: match spec.frequency {
                FrequencyMeasure::Orders => "orders",
                FrequencyMeasure::PurchaseDays => "purchase_days",
            }
            .into(),
            monetary: match spec.monetary {
                MonetaryMeasure::Sum => "sum",
                MonetaryMeasure::Mean => "mean",
            }
            .into(),
            lookback: spec.lookback.map(|l| {
                let unit = match l.unit {
                    LookbackUnit::Days => "days",
                    LookbackUnit::Months => "months",
                    LookbackUnit::Years => "years",
                };
                format!("{} {unit}", l.amount)
            }),
            bins: spec.bins,
            method: match spec.method {
                ScoreMethod::Ntile => "ntile",
                ScoreMethod::Quantile => "quantile",
                ScoreMethod::Cuts => "cuts",
            }
            .into(),
            cut_points,
            segments: StoredRule::from_spec(&spec.segments),
        }
    }

    /// `spec` (which names the columns of this run's data) with the model's frozen settings.
    pub fn frozen_spec(&self, spec: &RfmSpec) -> Result<RfmSpec, String> {
        let mut frozen = spec.clone();
        frozen.frequency = match self.frequency.as_str() {
            "orders" => FrequencyMeasure::Orders,
            "purchase_days" => FrequencyMeasure::PurchaseDays,
            other => return Err(format!("unknown frequency measure `{other}`")),
        };
        if frozen.frequency == FrequencyMeasure::Orders && frozen.order_id.is_none() {
            return Err("the model counts orders, but this step names no `order_id` column".into());
        }
        frozen.monetary = match self.monetary.as_str() {
            "sum" => MonetaryMeasure::Sum,
            "mean" => MonetaryMeasure::Mean,
            other => return Err(format!("unknown monetary measure `{other}`")),
        };
        frozen.lookback = match &self.lookback {
            None => None,
            Some(text) => {
                Some(parse_lookback(text).ok_or_else(|| format!("invalid lookback `{text}`"))?)
            }
        };
        frozen.bins = self.bins;
        frozen.method = ScoreMethod::Cuts;
        let expected = self.bins.saturating_sub(1) as usize;
        let c = &self.cut_points;
        if [&c.recency_days, &c.frequency, &c.monetary]
            .iter()
            .any(|v| v.len() != expected)
        {
            return Err(format!(
                "{} bins need {expected} cut points per measure",
                self.bins
            ));
        }
        frozen.segments = StoredRule::to_spec(&self.segments);
        Ok(frozen)
    }
}

fn parse_lookback(text: &str) -> Option<Lookback> {
    let (amount, unit) = text.split_once(' ')?;
    let unit = match unit {
        "days" => LookbackUnit::Days,
        "months" => LookbackUnit::Months,
        "years" => LookbackUnit::Years,
        _ => return None,
    };
    Some(Lookback {
        amount: amount.parse().ok()?,
        unit,
    })
}

/// The first day whose orders still count, or `None` without a lookback.
fn window_start(spec: &RfmSpec, reference: NaiveDate) -> Option<NaiveDate> {
    let lb = spec.lookback?;
    match lb.unit {
        LookbackUnit::Days => reference.checked_sub_days(Days::new(u64::from(lb.amount))),
        LookbackUnit::Months => reference.checked_sub_months(Months::new(lb.amount)),
        LookbackUnit::Years => {
            reference.checked_sub_months(Months::new(lb.amount.saturating_mul(12)))
        }
    }
}

fn date_literal(d: NaiveDate) -> String {
    format!("DATE '{d}'")
}

/// One row per customer: `customer, last_order_date, recency_days, frequency, monetary`.
pub fn rfm_measure_sql(spec: &RfmSpec, input: &str, reference: NaiveDate) -> String {
    let customer = quote_ident(&spec.customer);
    let date = quote_ident(&spec.date);
    let amount = quote_ident(&spec.amount);
    let order_id = spec
        .order_id
        .as_deref()
        .map_or_else(|| "NULL".to_string(), quote_ident);
    let mut filters = vec![
        format!("{customer} IS NOT NULL"),
        format!("{date} IS NOT NULL"),
        format!("CAST({date} AS DATE) < {}", date_literal(reference)),
    ];
    if let Some(start) = window_start(spec, reference) {
        filters.push(format!("CAST({date} AS DATE) >= {}", date_literal(start)));
    }
    let frequency = match spec.frequency {
        FrequencyMeasure::Orders => "count(DISTINCT order_id)",
        FrequencyMeasure::PurchaseDays => "count(DISTINCT order_date)",
    };
    // The mean is a ratio: DOUBLE, so integer amounts do not divide as integers.
    let monetary = match spec.monetary {
        MonetaryMeasure::Sum => "sum(amount)",
        MonetaryMeasure::Mean => "CAST(sum(amount) AS DOUBLE) / CAST({frequency} AS DOUBLE)",
    }
    .replace("{frequency}", frequency);
    if spec.frequency == FrequencyMeasure::Orders {
        // Counting orders needs their ids; a row without one would count as no order.
        filters.push(format!("{order_id} IS NOT NULL"));
    }
    format!(
        "WITH base AS (
  SELECT {customer} AS customer, CAST({date} AS DATE) AS order_date, {order_id} AS order_id, {amount} AS amount
  FROM {input}
  WHERE {filters}
)
SELECT customer, max(order_date) AS last_order_date,
  CAST(arrow_cast({reference}, 'Int32') AS BIGINT) - CAST(arrow_cast(max(order_date), 'Int32') AS BIGINT) AS recency_days,
  {frequency} AS frequency,
  {monetary} AS monetary
FROM base GROUP BY customer",
        input = quote_ident(input),
        filters = filters.join(" AND "),
        reference = date_literal(reference),
    )
}

/// `ntile(bins) OVER (ORDER BY measure dir, customer)` as an INT score.
fn ntile(bins: u32, measure: &str, descending: bool) -> String {
    // NULLs (a monetary value of NULL amounts) rank lowest, where applying cut points puts
    // them too (score 1).
    let dir = if descending {
        "DESC NULLS LAST"
    } else {
        "ASC NULLS FIRST"
    };
    format!("CAST(ntile({bins}) OVER (ORDER BY {measure} {dir}, customer ASC) AS INT)")
}

/// Number of `cuts` strictly below `measure`, as SQL.
fn cuts_below(measure: &str, cuts: &[f64]) -> String {
    if cuts.is_empty() {
        return "0".into();
    }
    cuts.iter()
        .map(|c| {
            format!(
                "CASE WHEN CAST({measure} AS DOUBLE) > {} THEN 1 ELSE 0 END",
                double(*c)
            )
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

/// A DOUBLE literal that reads back as the same f64.
pub(crate) fn double(v: f64) -> String {
    format!("CAST({v:?} AS DOUBLE)")
}

/// How a fit or an apply turns measures into scores.
#[derive(Debug)]
pub enum Scoring<'a> {
    /// Equal-size buckets by rank (a yearly `ntile` fit).
    Ntile,
    /// Frozen or declared cut points.
    Cuts(&'a RfmCutPoints),
}

/// The cut points of a fit as one row `r1.., f1.., m1..` (DOUBLE) over the `measured` table,
/// for `quantile` (and for `ntile`, though an `ntile` fit reads them off its scores with
/// [`rfm_cut_points_from_scores_sql`] instead of ranking every customer a second time).
pub fn rfm_cut_points_sql(method: ScoreMethod, bins: u32, measured: &str) -> String {
    let measured = quote_ident(measured);
    let measures = [("r", "recency_days"), ("f", "frequency"), ("m", "monetary")];
    match method {
        ScoreMethod::Ntile | ScoreMethod::Cuts => format!(
            "{} FROM (SELECT *, {r} AS r_score, {f} AS f_score, {m} AS m_score FROM {measured}) AS scored",
            cut_point_picks(bins),
            r = ntile(bins, "recency_days", true),
            f = ntile(bins, "frequency", false),
            m = ntile(bins, "monetary", false),
        ),
        ScoreMethod::Quantile => {
            // c_k = the value at rank ceil(k·N/bins), ascending.
            let ranked: Vec<String> = measures
                .iter()
                .map(|(p, m)| format!("row_number() OVER (ORDER BY {m}) AS {p}_rn"))
                .collect();
            let picks: Vec<String> = measures
                .iter()
                .flat_map(|(p, m)| {
                    (1..bins).map(move |k| {
                        format!("max(CASE WHEN {p}_rn = (n * {k} + {bins} - 1) / {bins} THEN CAST({m} AS DOUBLE) END) AS {p}{k}")
                    })
                })
                .collect();
            format!(
                "WITH ranked AS (SELECT *, {}, count(*) OVER () AS n FROM {measured})
SELECT {} FROM ranked",
                ranked.join(", "),
                picks.join(", ")
            )
        }
    }
}

/// `SELECT max(CASE WHEN r_score = … THEN recency_days END) AS r1, …`: the largest value in
/// each score bucket but the top one; R's buckets run from the most days down.
fn cut_point_picks(bins: u32) -> String {
    let measures = [("r", "recency_days"), ("f", "frequency"), ("m", "monetary")];
    let picks: Vec<String> = measures
        .iter()
        .flat_map(|(p, m)| {
            (1..bins).map(move |k| {
                let bucket = if *p == "r" { bins + 1 - k } else { k };
                format!(
                    "max(CASE WHEN {p}_score = {bucket} THEN CAST({m} AS DOUBLE) END) AS {p}{k}"
                )
            })
        })
        .collect();
    format!("SELECT {}", picks.join(", "))
}

/// The cut points of an `ntile` fit, read off the `scored` table (from [`rfm_scores_sql`]) in
/// one aggregation: the same values [`rfm_cut_points_sql`] computes, without a second round
/// of the three rank sorts.
pub fn rfm_cut_points_from_scores_sql(bins: u32, scored: &str) -> String {
    format!("{} FROM {}", cut_point_picks(bins), quote_ident(scored))
}

/// `CASE WHEN (rule) THEN 'name' … ELSE 'catch-all' END`, or just the catch-all's name.
pub(crate) fn segment_case(rules: &[SegmentRule]) -> String {
    let whens: Vec<String> = rules
        .iter()
        .filter_map(|r| {
            r.when
                .as_ref()
                .map(|w| format!("WHEN ({w}) THEN {}", quote_literal(&r.name)))
        })
        .collect();
    let otherwise = rules
        .iter()
        .find(|r| r.when.is_none())
        .map_or_else(|| "NULL".to_string(), |r| quote_literal(&r.name));
    if whens.is_empty() {
        otherwise
    } else {
        format!("CASE {} ELSE {otherwise} END", whens.join(" "))
    }
}

/// The `measured` table (from [`rfm_measure_sql`]) with `r_score`, `f_score`, `m_score`.
pub fn rfm_scores_sql(bins: u32, measured: &str, scoring: &Scoring<'_>) -> String {
    let scores = match scoring {
        Scoring::Ntile => format!(
            "{} AS r_score, {} AS f_score, {} AS m_score",
            ntile(bins, "recency_days", true),
            ntile(bins, "frequency", false),
            ntile(bins, "monetary", false),
        ),
        Scoring::Cuts(c) => format!(
            "CAST({bins} - ({}) AS INT) AS r_score, CAST(1 + {} AS INT) AS f_score, CAST(1 + {} AS INT) AS m_score",
            cuts_below("recency_days", &c.recency_days),
            cuts_below("frequency", &c.frequency),
            cuts_below("monetary", &c.monetary),
        ),
    };
    format!("SELECT m.*, {scores} FROM {} AS m", quote_ident(measured))
}

/// The step's rows over a `scored` table (from [`rfm_scores_sql`]): codes and named segments.
pub fn rfm_segments_sql(spec: &RfmSpec, scored: &str) -> String {
    let segment = segment_case(&spec.segments);
    format!(
        "SELECT customer AS {customer}, last_order_date, recency_days, frequency, monetary,
  r_score, f_score, m_score,
  concat(CAST(r_score AS VARCHAR), CAST(f_score AS VARCHAR), CAST(m_score AS VARCHAR)) AS rfm_code,
  {segment} AS segment
FROM (SELECT scored.*, r_score AS r, f_score AS f, m_score AS m FROM {scored} AS scored) AS named",
        customer = quote_ident(&spec.customer),
        scored = quote_ident(scored),
    )
}

/// Scores and segments over the `measured` table (from [`rfm_measure_sql`]) in one query.
pub fn rfm_score_sql(spec: &RfmSpec, measured: &str, scoring: &Scoring<'_>) -> String {
    format!(
        "WITH scored AS (
  {}
)
{}",
        rfm_scores_sql(spec.bins, measured, scoring),
        rfm_segments_sql(spec, "scored")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use segflow_spec::{Lookback, Spanned};

    fn spec(lookback: Option<Lookback>) -> RfmSpec {
        RfmSpec {
            input: Spanned::new("orders".into(), Default::default()),
            customer: "customer_id".into(),
            date: "order_date".into(),
            order_id: Some("order_id".into()),
            amount: "amount".into(),
            frequency: FrequencyMeasure::Orders,
            monetary: MonetaryMeasure::Sum,
            bins: 5,
            method: ScoreMethod::Ntile,
            cuts: None,
            lookback,
            reference_date: None,
            segments: vec![],
        }
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn lookback_windows_count_back_from_the_reference_date() {
        let reference = d("2026-01-01");
        let years = spec(Some(Lookback {
            amount: 3,
            unit: LookbackUnit::Years,
        }));
        assert_eq!(window_start(&years, reference), Some(d("2023-01-01")));
        let days = spec(Some(Lookback {
            amount: 31,
            unit: LookbackUnit::Days,
        }));
        assert_eq!(window_start(&days, reference), Some(d("2025-12-01")));
        let months = spec(Some(Lookback {
            amount: 1,
            unit: LookbackUnit::Months,
        }));
        assert_eq!(
            window_start(&months, d("2025-03-31")),
            Some(d("2025-02-28"))
        );
        assert_eq!(window_start(&spec(None), reference), None);
    }

    #[test]
    fn quantile_cut_points_use_integer_ceiling_ranks() {
        let sql = rfm_cut_points_sql(ScoreMethod::Quantile, 3, "measured");
        assert!(
            sql.contains("f_rn = (n * 1 + 3 - 1) / 3 THEN CAST(frequency AS DOUBLE) END) AS f1")
        );
        assert!(
            sql.contains("f_rn = (n * 2 + 3 - 1) / 3 THEN CAST(frequency AS DOUBLE) END) AS f2")
        );
        assert!(!sql.contains("f3"));
    }

    #[test]
    fn a_model_round_trips_through_its_frozen_spec() {
        let mut fitted = spec(Some(Lookback {
            amount: 3,
            unit: LookbackUnit::Years,
        }));
        fitted.bins = 3;
        fitted.monetary = MonetaryMeasure::Mean;
        let cuts = RfmCutPoints {
            recency_days: vec![30.0, 90.0],
            frequency: vec![1.0, 3.0],
            monetary: vec![50.5, 200.0],
        };
        let model = RfmModel::new(&fitted, cuts);
        let mut monthly = spec(None);
        monthly.customer = "cust".into();
        let frozen = model.frozen_spec(&monthly).expect("frozen");
        assert_eq!(frozen.customer, "cust");
        assert_eq!(frozen.bins, 3);
        assert_eq!(frozen.monetary, MonetaryMeasure::Mean);
        assert_eq!(frozen.lookback, fitted.lookback);
        let mut broken = model.clone();
        broken.cut_points.frequency.push(9.0);
        assert!(broken.frozen_spec(&monthly).is_err());
    }
}
