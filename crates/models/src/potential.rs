//! B2B potential: ordinary least squares of customer value on firmographic variables, fitted
//! on customers, applied to the companies in the market table that are not customers yet.
//!
//! Categorical predictors are one-hot coded against their first level in sorted order (the
//! baseline, coefficient 0); a level the fit never saw also scores as the baseline. The
//! normal equations are solved by Cholesky decomposition; collinear predictors (a singular
//! XᵀX) are an error naming the predictors rather than a silently arbitrary answer.

use segflow_spec::PotentialSpec;
use serde::{Deserialize, Serialize};

use crate::rfm::double;
use crate::sql::{pick_extreme, quote_ident, quote_literal};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelCoefficient {
    pub level: String,
    pub coefficient: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalTerm {
    pub column: String,
    pub baseline: String,
    pub levels: Vec<LevelCoefficient>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericTerm {
    pub column: String,
    pub coefficient: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PotentialModel {
    pub target: String,
    pub intercept: f64,
    pub numeric: Vec<NumericTerm>,
    pub categorical: Vec<CategoricalTerm>,
    pub r_squared: f64,
    pub observations: u64,
}

/// Least squares `y ≈ X b` for row-major `x` (`rows × p`, first column usually 1).
pub fn least_squares(x: &[Vec<f64>], y: &[f64], names: &[String]) -> Result<Vec<f64>, String> {
    let p = names.len();
    if x.len() != y.len() || x.iter().any(|r| r.len() != p) {
        return Err("design matrix and target disagree in size".into());
    }
    if x.len() <= p {
        return Err(format!(
            "{} observations cannot fit {p} coefficients",
            x.len()
        ));
    }
    let mut xtx = vec![vec![0.0; p]; p];
    let mut xty = vec![0.0; p];
    for (row, target) in x.iter().zip(y) {
        for i in 0..p {
            xty[i] += row[i] * target;
            for j in 0..=i {
                xtx[i][j] += row[i] * row[j];
            }
        }
    }
    // Cholesky: XᵀX = L Lᵀ.
    let mut l = vec![vec![0.0; p]; p];
    for i in 0..p {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                let d = xtx[i][i] - sum;
                if d <= 1e-9 * xtx[i][i].abs().max(1.0) {
                    return Err(format!(
                        "predictor `{}` is a linear combination of the others (or constant)",
                        names[i]
                    ));
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (xtx[i][j] - sum) / l[j][j];
            }
        }
    }
    let mut z = vec![0.0; p];
    for i in 0..p {
        let sum: f64 = (0..i).map(|k| l[i][k] * z[k]).sum();
        z[i] = (xty[i] - sum) / l[i][i];
    }
    let mut b = vec![0.0; p];
    for i in (0..p).rev() {
        let sum: f64 = (i + 1..p).map(|k| l[k][i] * b[k]).sum();
        b[i] = (z[i] - sum) / l[i][i];
    }
    Ok(b)
}

/// Share of the target's variance the fitted values explain.
pub fn r_squared(x: &[Vec<f64>], y: &[f64], b: &[f64]) -> f64 {
    let mean = y.iter().sum::<f64>() / y.len().max(1) as f64;
    let (mut ss_res, mut ss_tot) = (0.0, 0.0);
    for (row, target) in x.iter().zip(y) {
        let fitted: f64 = row.iter().zip(b).map(|(v, c)| v * c).sum();
        ss_res += (target - fitted).powi(2);
        ss_tot += (target - mean).powi(2);
    }
    if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else {
        1.0
    }
}

/// The fit's input: key, target, predictors as DOUBLE/VARCHAR, rows with any NULL left out.
pub fn training_sql(spec: &PotentialSpec) -> String {
    let mut cols = vec![format!(
        "CAST({} AS DOUBLE) AS __target",
        quote_ident(&spec.target)
    )];
    let mut not_null = vec![format!("{} IS NOT NULL", quote_ident(&spec.target))];
    for n in &spec.numeric {
        cols.push(format!("CAST({0} AS DOUBLE) AS {0}", quote_ident(n)));
        not_null.push(format!("{} IS NOT NULL", quote_ident(n)));
    }
    for c in &spec.categorical {
        cols.push(format!("CAST({0} AS VARCHAR) AS {0}", quote_ident(c)));
        not_null.push(format!("{} IS NOT NULL", quote_ident(c)));
    }
    format!(
        "SELECT {} FROM {} WHERE {} ORDER BY {}",
        cols.join(", "),
        quote_ident(&spec.customers.value),
        not_null.join(" AND "),
        quote_ident(&spec.key)
    )
}

/// Market rows whose key is not a customer's, with `predicted_value` and the term that
/// contributes most as `reason`.
pub fn apply_sql(spec: &PotentialSpec, model: &PotentialModel) -> String {
    let mut terms: Vec<(String, String)> = Vec::new();
    for n in &model.numeric {
        terms.push((
            n.column.clone(),
            format!(
                "{} * CAST(m.{} AS DOUBLE)",
                double(n.coefficient),
                quote_ident(&n.column)
            ),
        ));
    }
    for c in &model.categorical {
        let whens: Vec<String> = c
            .levels
            .iter()
            .map(|l| {
                format!(
                    "WHEN {} THEN {}",
                    quote_literal(&l.level),
                    double(l.coefficient)
                )
            })
            .collect();
        let expr = if whens.is_empty() {
            "CAST(0.0 AS DOUBLE)".to_string()
        } else {
            format!(
                "CASE CAST(m.{} AS VARCHAR) {} ELSE CAST(0.0 AS DOUBLE) END",
                quote_ident(&c.column),
                whens.join(" ")
            )
        };
        terms.push((c.column.clone(), expr));
    }
    let cols: Vec<String> = terms
        .iter()
        .map(|(name, e)| format!("{e} AS {}", quote_ident(&format!("__term_{name}"))))
        .collect();
    let sum: Vec<String> = terms
        .iter()
        .map(|(name, _)| quote_ident(&format!("__term_{name}")))
        .collect();
    // The term that adds the most; ties go to the first predictor listed.
    let candidates: Vec<(String, String)> = terms
        .iter()
        .map(|(name, _)| (quote_ident(&format!("__term_{name}")), quote_literal(name)))
        .collect();
    let reason = pick_extreme(&candidates, ">=");
    let key = quote_ident(&spec.key);
    let market_cols = "m.*";
    format!(
        "WITH terms AS (
  SELECT {market_cols}, {cols}
  FROM {market} AS m
  WHERE m.{key} IS NOT NULL AND m.{key} NOT IN (SELECT c.{key} FROM {customers} AS c WHERE c.{key} IS NOT NULL)
)
SELECT * EXCLUDE ({excluded}), {intercept} + {sum} AS predicted_value, {reason} AS reason
FROM terms",
        cols = cols.join(", "),
        market = quote_ident(&spec.market.value),
        customers = quote_ident(&spec.customers.value),
        excluded = sum.join(", "),
        intercept = double(model.intercept),
        sum = if sum.is_empty() { "0.0".to_string() } else { sum.join(" + ") },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_recovers_an_exact_line() {
        // y = 2 + 3a - b exactly, so the solution is exact.
        let rows = [(1.0, 0.0), (2.0, 1.0), (3.0, 5.0), (4.0, 2.0), (0.0, 1.0)];
        let x: Vec<Vec<f64>> = rows.iter().map(|(a, b)| vec![1.0, *a, *b]).collect();
        let y: Vec<f64> = rows.iter().map(|(a, b)| 2.0 + 3.0 * a - b).collect();
        let names = ["(intercept)", "a", "b"].map(String::from);
        let b = least_squares(&x, &y, &names).expect("fit");
        for (got, want) in b.iter().zip([2.0, 3.0, -1.0]) {
            assert!((got - want).abs() < 1e-9, "{b:?}");
        }
        assert!((r_squared(&x, &y, &b) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn least_squares_matches_the_textbook_slope() {
        // x = 1..5, y = 2,4,5,4,5: slope = Sxy/Sxx = 6/10 = 0.6, intercept = 4 - 0.6·3 = 2.2.
        let x: Vec<Vec<f64>> = (1..=5).map(|v| vec![1.0, f64::from(v)]).collect();
        let y = [2.0, 4.0, 5.0, 4.0, 5.0];
        let names = ["(intercept)", "x"].map(String::from);
        let b = least_squares(&x, &y, &names).expect("fit");
        assert!(
            (b[0] - 2.2).abs() < 1e-12 && (b[1] - 0.6).abs() < 1e-12,
            "{b:?}"
        );
        // R² = 1 - SSres/SStot = 1 - 2.4/6 = 0.6.
        assert!((r_squared(&x, &y, &b) - 0.6).abs() < 1e-12);
    }

    #[test]
    fn collinear_predictors_are_named() {
        let x: Vec<Vec<f64>> = (0..6)
            .map(|v| vec![1.0, f64::from(v), 2.0 * f64::from(v)])
            .collect();
        let y: Vec<f64> = (0..6).map(f64::from).collect();
        let names = ["(intercept)", "employees", "twice"].map(String::from);
        let err = least_squares(&x, &y, &names).expect_err("singular");
        assert!(err.contains("twice"), "{err}");
    }
}
