//! Pareto / ABC value tiers.
//!
//! Customers are ranked by value, highest first (ties: customer id ascending). A customer's
//! tier is the first whose bound is above the cumulative share of value of all customers ranked
//! before it: with `{A: 0.80, B: 0.95}`, A while that share is below 80%, B below 95%, then the
//! rest tier. The share is computed from exact sums (decimal money stays decimal until the one
//! final division), so the same data always gives the same tiers.

use segflow_spec::ParetoSpec;

use crate::sql::{quote_ident, quote_literal};

pub fn pareto_sql(spec: &ParetoSpec, input: &str) -> String {
    let customer = quote_ident(&spec.customer);
    let value = quote_ident(&spec.value);
    let order = "value DESC, customer ASC";
    let tiers: Vec<String> = spec
        .tiers
        .iter()
        .map(|(name, bound)| format!("WHEN share_before < {bound:?} THEN {}", quote_literal(name)))
        .collect();
    format!(
        "WITH ranked AS (
  SELECT customer, value,
    row_number() OVER (ORDER BY {order}) AS value_rank,
    coalesce(sum(value) OVER (ORDER BY {order} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS value_before,
    sum(value) OVER () AS value_total
  FROM (SELECT {customer} AS customer, {value} AS value FROM {input} WHERE {customer} IS NOT NULL) AS v
),
shared AS (
  SELECT customer, value, value_rank,
    CASE WHEN value_total > 0 THEN CAST(value_before AS DOUBLE) / CAST(value_total AS DOUBLE) END AS share_before
  FROM ranked
)
SELECT customer AS {customer}, value AS {value}, CAST(value_rank AS BIGINT) AS value_rank,
  share_before AS cumulative_share_before,
  CASE {tiers} ELSE {rest} END AS tier
FROM shared",
        input = quote_ident(input),
        tiers = tiers.join(" "),
        rest = quote_literal(&spec.rest),
    )
}
