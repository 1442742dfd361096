//! Lookalikes ("twins" of the best customers) in a prospect or market table.
//!
//! `index` method: for each attribute value, index = (share of best customers with the value) ÷
//! (share of all customers with it) × 100, so 100 = as common among the best as among all; a
//! value seen on fewer than `min_customers` customers gets 100 (no evidence). A prospect's
//! score is the mean index of its values; the reason names its most over-represented value.
//!
//! `centroid` method: attributes are numeric, z-scored with all customers' mean and standard
//! deviation; score = 100 / (1 + distance to the best customers' centroid); the reason names the
//! attribute on which the prospect is closest to that centroid.

use segflow_spec::LookalikeSpec;
use serde::{Deserialize, Serialize};

use crate::rfm::double;
use crate::sql::{pick_extreme, quote_ident, quote_literal};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueIndex {
    pub value: String,
    pub customers: u64,
    pub best_customers: u64,
    pub index: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeIndex {
    pub attribute: String,
    pub values: Vec<ValueIndex>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeCentroid {
    pub attribute: String,
    pub mean: f64,
    pub std_dev: f64,
    /// The best customers' mean, in z units.
    pub best_z: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookalikeModel {
    /// `index` or `centroid`.
    pub method: String,
    pub best_segments: Vec<String>,
    pub customers: u64,
    pub best_customers: u64,
    pub min_customers: u64,
    pub indexes: Vec<AttributeIndex>,
    pub centroid: Vec<AttributeCentroid>,
}

fn best_filter(spec: &LookalikeSpec) -> String {
    let values: Vec<String> = spec.best.iter().map(|b| quote_literal(b)).collect();
    format!(
        "CAST({} AS VARCHAR) IN ({})",
        quote_ident(&spec.segment),
        values.join(", ")
    )
}

/// Per value of `attribute`: `value, customers, best_customers` (NULL values left out).
pub fn value_counts_sql(spec: &LookalikeSpec, attribute: &str) -> String {
    let a = quote_ident(attribute);
    format!(
        "SELECT CAST({a} AS VARCHAR) AS value, count(*) AS customers,
  sum(CASE WHEN {best} THEN 1 ELSE 0 END) AS best_customers
FROM {input} WHERE {a} IS NOT NULL GROUP BY CAST({a} AS VARCHAR) ORDER BY value",
        best = best_filter(spec),
        input = quote_ident(&spec.customers.value),
    )
}

/// `customers, best_customers` over the whole table.
pub fn totals_sql(spec: &LookalikeSpec) -> String {
    format!(
        "SELECT count(*) AS customers, sum(CASE WHEN {} THEN 1 ELSE 0 END) AS best_customers FROM {}",
        best_filter(spec),
        quote_ident(&spec.customers.value)
    )
}

/// Columns per attribute in [`centroid_sql`]'s row.
pub const CENTROID_COLUMNS: usize = 5;

/// Per attribute, exact sums from which [`centroid_of`] derives mean, population standard
/// deviation and the best customers' mean: `count`, `sum`, `sum of squares` over all
/// customers, `count` and `sum` over the best. Summed as decimals (6 places, so squares keep
/// 12), because a floating-point sum depends on the order partitions arrive in and the
/// model must be the same bits at any parallelism.
pub fn centroid_sql(spec: &LookalikeSpec) -> String {
    let best = best_filter(spec);
    let parts: Vec<String> = spec
        .attributes
        .iter()
        .flat_map(|a| {
            let x = format!("CAST({} AS DECIMAL(38,6))", quote_ident(a));
            [
                format!("CAST(count({x}) AS DOUBLE)"),
                format!("sum({x})"),
                format!("sum({x} * {x})"),
                format!("CAST(count(CASE WHEN {best} THEN {x} END) AS DOUBLE)"),
                format!("sum(CASE WHEN {best} THEN {x} END)"),
            ]
        })
        .collect();
    format!(
        "SELECT {} FROM {}",
        parts.join(", "),
        quote_ident(&spec.customers.value)
    )
}

/// `(mean, population standard deviation, mean of the best)` from one attribute's sums in
/// [`centroid_sql`]; `None` without values (or without best customers having one).
pub fn centroid_of(sums: &[Option<f64>]) -> Option<(f64, f64, f64)> {
    let [n, s1, s2, best_n, best_s1] = sums else {
        return None;
    };
    let (n, s1, s2, best_n, best_s1) = ((*n)?, (*s1)?, (*s2)?, (*best_n)?, (*best_s1)?);
    if n <= 0.0 || best_n <= 0.0 {
        return None;
    }
    let mean = s1 / n;
    let variance = (s2 / n - mean * mean).max(0.0);
    Some((mean, variance.sqrt(), best_s1 / best_n))
}

/// Index of a value; 100 without enough customers to say.
pub fn index_of(customers: u64, best: u64, total: u64, total_best: u64, min_customers: u64) -> f64 {
    if customers < min_customers.max(1) || total == 0 || total_best == 0 {
        return 100.0;
    }
    let best_share = best as f64 / total_best as f64;
    let share = customers as f64 / total as f64;
    best_share / share * 100.0
}

/// The columns [`score_sql`] adds to the prospects' (and must not find there already).
pub fn added_columns(model: &LookalikeModel) -> Vec<String> {
    let mut out: Vec<String> = if model.method == "centroid" {
        model
            .centroid
            .iter()
            .map(|c| format!("z_{}", c.attribute))
            .collect()
    } else {
        model
            .indexes
            .iter()
            .map(|i| format!("index_{}", i.attribute))
            .collect()
    };
    out.extend(["lookalike_score", "reason", "lookalike_rank"].map(String::from));
    out
}

/// Scores the prospects: `key, lookalike_score, lookalike_rank, reason` plus one column per
/// attribute (`index_<attribute>` or `z_<attribute>`).
pub fn score_sql(spec: &LookalikeSpec, model: &LookalikeModel) -> String {
    let key = quote_ident(&spec.key);
    let prospects = quote_ident(&spec.prospects.value);
    let (per_attribute, score, reason): (Vec<String>, String, String) = if model.method
        == "centroid"
    {
        let mut cols = Vec::new();
        let mut squares = Vec::new();
        let mut gaps = Vec::new();
        for c in &model.centroid {
            let a = quote_ident(&c.attribute);
            let sd = if c.std_dev > 0.0 { c.std_dev } else { 1.0 };
            let z = format!(
                "((CAST(p.{a} AS DOUBLE) - {}) / {})",
                double(c.mean),
                double(sd)
            );
            let name = quote_ident(&format!("z_{}", c.attribute));
            cols.push(format!("{z} AS {name}"));
            squares.push(format!("power({name} - {}, 2)", double(c.best_z)));
            gaps.push((
                c.attribute.clone(),
                format!("abs({name} - {})", double(c.best_z)),
            ));
        }
        let score = format!("100.0 / (1.0 + sqrt({}))", squares.join(" + "));
        // The attribute with the smallest gap; ties go to the first listed.
        let candidates: Vec<(String, String)> = gaps
            .iter()
            .map(|(attr, gap)| (gap.clone(), quote_literal(&format!("closest on {attr}"))))
            .collect();
        let reason = pick_extreme(&candidates, "<=");
        (cols, score, reason)
    } else {
        let mut cols = Vec::new();
        let mut names = Vec::new();
        for ai in &model.indexes {
            let a = quote_ident(&ai.attribute);
            let whens: Vec<String> = ai
                .values
                .iter()
                .map(|v| format!("WHEN {} THEN {}", quote_literal(&v.value), double(v.index)))
                .collect();
            let expr = if whens.is_empty() {
                "CAST(100.0 AS DOUBLE)".to_string()
            } else {
                format!(
                    "CASE CAST(p.{a} AS VARCHAR) {} ELSE CAST(100.0 AS DOUBLE) END",
                    whens.join(" ")
                )
            };
            let name = format!("index_{}", ai.attribute);
            cols.push(format!("{expr} AS {}", quote_ident(&name)));
            names.push((ai.attribute.clone(), name));
        }
        let n = names.len().max(1);
        let score = format!(
            "({}) / {n}.0",
            names
                .iter()
                .map(|(_, c)| quote_ident(c))
                .collect::<Vec<_>>()
                .join(" + ")
        );
        // The most over-represented value; ties go to the first attribute listed.
        let candidates: Vec<(String, String)> = names
            .iter()
            .map(|(attr, col)| {
                let c = quote_ident(col);
                let label = format!(
                    "concat({}, CAST(scored.{} AS VARCHAR), ' (index ', CAST(CAST(round({c}) AS BIGINT) AS VARCHAR), ')')",
                    quote_literal(&format!("{attr}=")),
                    quote_ident(attr),
                );
                (c, label)
            })
            .collect();
        let reason = pick_extreme(&candidates, ">=");
        (cols, score, reason)
    };
    format!(
        "WITH scored AS (
  SELECT p.*, {cols} FROM {prospects} AS p
),
ranked AS (
  SELECT scored.*, {score} AS lookalike_score, {reason} AS reason FROM scored
)
SELECT ranked.*, CAST(row_number() OVER (ORDER BY lookalike_score DESC NULLS LAST, {key} ASC) AS BIGINT) AS lookalike_rank
FROM ranked",
        cols = per_attribute.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values 1, 2, 3, 4 with 3 and 4 the best: mean 2.5, variance 30/4 − 2.5² = 1.25,
    /// best mean 3.5.
    #[test]
    fn centroid_from_exact_sums() {
        let sums = [Some(4.0), Some(10.0), Some(30.0), Some(2.0), Some(7.0)];
        let (mean, sd, best) = centroid_of(&sums).expect("centroid");
        assert_eq!(mean, 2.5);
        assert!((sd - 1.25f64.sqrt()).abs() < 1e-15);
        assert_eq!(best, 3.5);
        assert_eq!(centroid_of(&[Some(0.0), None, None, Some(0.0), None]), None);
        assert_eq!(
            centroid_of(&[Some(3.0), Some(1.0), Some(1.0), Some(0.0), None]),
            None
        );
    }
}
