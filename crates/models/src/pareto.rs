//! Pareto / ABC value tiers.
//!
//! Customers are ranked by value, highest first (ties: customer id ascending). A customer's
//! tier is the first whose bound is above the cumulative share before it: of total value
//! (`basis: value`; with `{A: 0.80, B: 0.95}`, A while the value share of everyone ranked
//! higher is below 80%) or of customers (`basis: customers`; `{Top: 0.20, Middle: 0.50}` is
//! top 20% / next 30% / rest). Value shares come from exact sums (decimal money stays decimal
//! until the one final division), so the same data always gives the same tiers.
//!
//! Fitting records each tier's smallest value; applying compares values with those
//! thresholds, so a monthly run keeps the yearly definition of "an A customer".

use segflow_spec::{ParetoSpec, TierBasis};
use serde::{Deserialize, Serialize};

use crate::rfm::double;
use crate::sql::{quote_ident, quote_literal};

/// A tier and the smallest value that reached it in the fit (`None` if nobody did).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TierThreshold {
    pub tier: String,
    pub share_below: f64,
    pub min_value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParetoModel {
    /// `value` or `customers`.
    pub basis: String,
    pub tiers: Vec<TierThreshold>,
    pub rest: String,
}

impl ParetoModel {
    pub fn basis_name(basis: TierBasis) -> &'static str {
        match basis {
            TierBasis::Value => "value",
            TierBasis::Customers => "customers",
        }
    }
}

/// Customers ranked by value (ties: customer id) with the cumulative sums both the fit and
/// the apply report. Customers without a value rank last, so they land in the rest tier.
fn ranked_cte(spec: &ParetoSpec, input: &str) -> String {
    let order = "value DESC NULLS LAST, customer ASC";
    format!(
        "ranked AS (
  SELECT customer, value,
    row_number() OVER (ORDER BY {order}) AS value_rank,
    coalesce(sum(value) OVER (ORDER BY {order} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS value_before,
    sum(value) OVER () AS value_total,
    count(*) OVER () AS customers
  FROM (SELECT {customer} AS customer, {value} AS value FROM {input} WHERE {customer} IS NOT NULL) AS v
)",
        customer = quote_ident(&spec.customer),
        value = quote_ident(&spec.value),
        input = quote_ident(input),
    )
}

/// The cumulative share before a customer, over the `ranked` columns.
fn share_before(basis: TierBasis) -> &'static str {
    match basis {
        TierBasis::Value => {
            "CASE WHEN value_total > 0 THEN CAST(value_before AS DOUBLE) / CAST(value_total AS DOUBLE) END"
        }
        TierBasis::Customers => "CAST(value_rank - 1 AS DOUBLE) / CAST(customers AS DOUBLE)",
    }
}

/// The fit: ranks, shares and tiers.
pub fn pareto_sql(spec: &ParetoSpec, input: &str) -> String {
    let tiers: Vec<String> = spec
        .tiers
        .iter()
        .map(|(name, bound)| format!("WHEN share_before < {bound:?} THEN {}", quote_literal(name)))
        .collect();
    format!(
        "WITH {ranked},
shared AS (
  SELECT customer, value, value_rank, {share} AS share_before
  FROM ranked
)
SELECT customer AS {customer}, value AS {value}, CAST(value_rank AS BIGINT) AS value_rank,
  share_before AS cumulative_share_before,
  CASE {tiers} ELSE {rest} END AS tier
FROM shared",
        ranked = ranked_cte(spec, input),
        share = share_before(spec.basis),
        customer = quote_ident(&spec.customer),
        value = quote_ident(&spec.value),
        tiers = tiers.join(" "),
        rest = quote_literal(&spec.rest),
    )
}

/// The smallest value per tier of a fit's result table.
pub fn pareto_thresholds_sql(spec: &ParetoSpec, fitted: &str) -> String {
    format!(
        "SELECT tier, min(CAST({} AS DOUBLE)) AS min_value FROM {} GROUP BY tier",
        quote_ident(&spec.value),
        quote_ident(fitted)
    )
}

/// Applying a fitted model: a customer is in the first tier whose threshold its value reaches.
/// Rank and share are those of this run's data, for reference.
pub fn pareto_apply_sql(spec: &ParetoSpec, model: &ParetoModel, input: &str) -> String {
    let whens: Vec<String> = model
        .tiers
        .iter()
        .filter_map(|t| {
            t.min_value.map(|min| {
                format!(
                    "WHEN CAST(value AS DOUBLE) >= {} THEN {}",
                    double(min),
                    quote_literal(&t.tier)
                )
            })
        })
        .collect();
    let tier = if whens.is_empty() {
        quote_literal(&model.rest)
    } else {
        format!(
            "CASE WHEN value IS NULL THEN {rest} {} ELSE {rest} END",
            whens.join(" "),
            rest = quote_literal(&model.rest)
        )
    };
    let basis = if model.basis == "customers" {
        TierBasis::Customers
    } else {
        TierBasis::Value
    };
    format!(
        "WITH {ranked}
SELECT customer AS {customer}, value AS {value}, CAST(value_rank AS BIGINT) AS value_rank,
  {share} AS cumulative_share_before,
  {tier} AS tier
FROM ranked",
        ranked = ranked_cte(spec, input),
        share = share_before(basis),
        customer = quote_ident(&spec.customer),
        value = quote_ident(&spec.value),
    )
}
