//! Two-by-two matrix (value × loyalty, or two survey scores for needs-based segments).
//!
//! Each axis is a SQL expression and a split; "high" means strictly above the split. Median
//! and mean splits are computed by the fit and frozen in the artifact, so monthly runs put
//! customers in cells by the year's thresholds. NULL values get NULL levels and no cell.

use segflow_spec::{MatrixSpec, Split};
use serde::{Deserialize, Serialize};

use crate::rfm::double;
use crate::sql::{quote_ident, quote_literal};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AxisModel {
    pub name: String,
    pub expr: String,
    /// `median`, `mean` or `value`: how the threshold was chosen.
    pub split: String,
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixModel {
    pub x: AxisModel,
    pub y: AxisModel,
    /// Cell names for (x, y) = (high, high), (high, low), (low, high), (low, low).
    pub cells: [String; 4],
}

/// The axis values per key, as DOUBLE columns `x` and `y`.
pub fn matrix_values_sql(spec: &MatrixSpec, input: &str) -> String {
    format!(
        "SELECT {key} AS key, CAST(({x}) AS DOUBLE) AS x, CAST(({y}) AS DOUBLE) AS y FROM {input}",
        key = quote_ident(&spec.key),
        x = spec.x.expr,
        y = spec.y.expr,
        input = quote_ident(input),
    )
}

/// One row with the data-driven thresholds (`x_split`, `y_split`) over the values table.
pub fn matrix_splits_sql(spec: &MatrixSpec, values: &str) -> String {
    let agg = |split: Split, column: &str| match split {
        Split::Median => format!("median({column})"),
        // Averaged as an exact decimal: a DOUBLE average depends on the order rows arrive
        // in, so the threshold (and the artifact's bytes) would depend on the partitioning.
        Split::Mean => format!("CAST(avg(CAST({column} AS DECIMAL(38,10))) AS DOUBLE)"),
        Split::Value(v) => double(v),
    };
    format!(
        "SELECT {} AS x_split, {} AS y_split FROM {}",
        agg(spec.x.split, "x"),
        agg(spec.y.split, "y"),
        quote_ident(values)
    )
}

pub fn split_name(split: Split) -> &'static str {
    match split {
        Split::Median => "median",
        Split::Mean => "mean",
        Split::Value(_) => "value",
    }
}

/// Cells over the values table, with the model's thresholds.
pub fn matrix_apply_sql(spec: &MatrixSpec, model: &MatrixModel, values: &str) -> String {
    let level = |column: &str, threshold: f64| {
        format!(
            "CASE WHEN {column} IS NULL THEN NULL WHEN {column} > {} THEN 'high' ELSE 'low' END",
            double(threshold)
        )
    };
    let [hh, hl, lh, ll] = &model.cells;
    format!(
        "WITH levels AS (
  SELECT key, x, y, {xl} AS x_level, {yl} AS y_level FROM {values}
)
SELECT key AS {key}, x AS {xname}, y AS {yname}, x_level, y_level,
  CASE WHEN x_level = 'high' AND y_level = 'high' THEN {hh}
       WHEN x_level = 'high' AND y_level = 'low' THEN {hl}
       WHEN x_level = 'low' AND y_level = 'high' THEN {lh}
       WHEN x_level = 'low' AND y_level = 'low' THEN {ll} END AS cell
FROM levels",
        xl = level("x", model.x.threshold),
        yl = level("y", model.y.threshold),
        key = quote_ident(&spec.key),
        xname = quote_ident(&model.x.name),
        yname = quote_ident(&model.y.name),
        values = quote_ident(values),
        hh = quote_literal(hh),
        hl = quote_literal(hl),
        lh = quote_literal(lh),
        ll = quote_literal(ll),
    )
}
