//! B2B potential: ordinary least squares of customer value on firmographic variables, fitted
//! on customers, applied to the companies in the market table that are not customers yet.
//!
//! Categorical predictors are one-hot coded against their first level in sorted order (the
//! baseline, coefficient 0); a level the fit never saw also scores as the baseline.
//! Collinear or constant predictors are an error naming the predictors rather than a silently
//! arbitrary answer; see [`least_squares`] for why that test is on the centred, scaled design.

use nalgebra::DMatrix;
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

/// Rows of the design folded into the running triangular factor at a time: memory stays
/// at a block, not a second copy of the whole design.
const QR_BLOCK_ROWS: usize = 1024;

/// Least squares `y ≈ X b` for row-major `x` (`rows × p`, first column usually 1), with `b` on
/// the scale of `x`.
///
/// The normal equations square the design's condition number, and then an intercept next to
/// a predictor like `100000 + U(0, 1)`, or a predictor in `[0, 1e-6)` under an absolute
/// tolerance, looks collinear. So predictors are centred on their means when there is an
/// intercept and scaled to unit length, the data itself is factored (QR, then the SVD of R),
/// and rank is judged relative to the largest singular value, in no predictor's units.
///
/// A column holding one value throughout is the intercept (the first such nonzero column);
/// any other is an error, as is a set of collinear columns, named from the null space so the
/// message lists every predictor involved rather than whichever one a pivoting met last.
pub fn least_squares(x: &[Vec<f64>], y: &[f64], names: &[String]) -> Result<Vec<f64>, String> {
    let p = names.len();
    let n = x.len();
    if n != y.len() || x.iter().any(|r| r.len() != p) {
        return Err("design matrix and target disagree in size".into());
    }
    if n <= p {
        return Err(format!("{n} observations cannot fit {p} coefficients"));
    }
    if y.iter().any(|v| !v.is_finite()) {
        return Err("the target has a value that is not a finite number".into());
    }
    let mut low = vec![f64::INFINITY; p];
    let mut high = vec![f64::NEG_INFINITY; p];
    for row in x {
        for (j, &v) in row.iter().enumerate() {
            if !v.is_finite() {
                return Err(format!(
                    "predictor `{}` has a value that is not a finite number",
                    names[j]
                ));
            }
            low[j] = low[j].min(v);
            high[j] = high[j].max(v);
        }
    }
    // Exact equality: any spread at all, however small against the values, is information.
    let constant = |j: usize| low[j] == high[j];
    let intercept = (0..p).find(|&j| constant(j) && low[j] != 0.0);
    let flat: Vec<usize> = (0..p)
        .filter(|&j| constant(j) && Some(j) != intercept)
        .collect();
    if !flat.is_empty() {
        return Err(refusal(names, &flat, true));
    }
    let free: Vec<usize> = (0..p).filter(|&j| !constant(j)).collect();

    // Without an intercept the model goes through the origin, and centring would change it.
    let mean = |value: &dyn Fn(usize) -> f64| match intercept {
        Some(_) => (0..n).map(value).sum::<f64>() / n as f64,
        None => 0.0,
    };
    let centres: Vec<f64> = free.iter().map(|&j| mean(&|i| x[i][j])).collect();
    let y_centre = mean(&|i| y[i]);
    let scales: Vec<f64> = free
        .iter()
        .zip(&centres)
        .map(|(&j, &c)| euclidean_norm(x.iter().map(|row| row[j] - c)))
        .collect();
    // A value near 100000 holds ~1e-11 of its spread at best: centring magnifies the inputs'
    // rounding by ‖x‖ / ‖x − mean‖, and a dependency within that is as good as exact.
    let magnified = free
        .iter()
        .zip(&scales)
        .map(|(&j, s)| euclidean_norm(x.iter().map(|row| row[j])) / s)
        .fold(1.0_f64, f64::max);

    // The columns factored: the intercept as a unit vector (centring by a rounded mean leaves
    // a constant in each column, which it absorbs), the scaled predictors, then y, so that the
    // last column of R carries Qᵀy. R of the rows so far, stacked on the next block and factored
    // again, is R of all of them.
    let lead = usize::from(intercept.is_some());
    let q = lead + free.len();
    let width = q + 1;
    let unit = 1.0 / (n as f64).sqrt();
    let mut r = DMatrix::<f64>::zeros(0, width);
    let block = QR_BLOCK_ROWS.max(2 * width);
    for (rows, targets) in x.chunks(block).zip(y.chunks(block)) {
        let carried = r.nrows();
        let mut stacked = DMatrix::<f64>::zeros(carried + rows.len(), width);
        stacked.view_mut((0, 0), (carried, width)).copy_from(&r);
        for (k, (row, target)) in rows.iter().zip(targets).enumerate() {
            let i = carried + k;
            if lead == 1 {
                stacked[(i, 0)] = unit;
            }
            for (col, &j) in free.iter().enumerate() {
                stacked[(i, lead + col)] = (row[j] - centres[col]) / scales[col];
            }
            stacked[(i, q)] = target - y_centre;
        }
        r = stacked.qr().r();
    }

    if q == 0 {
        return Ok(Vec::new());
    }
    let svd = r.view((0, 0), (q, q)).into_owned().svd(true, true);
    let (Some(u), Some(v_t)) = (&svd.u, &svd.v_t) else {
        return Err("the singular value decomposition did not converge".into());
    };
    let sigma_max = svd.singular_values.max();
    // max(n, p)·ε·σ_max for the factorization's own rounding, plus the inputs' (above).
    let tolerance = f64::EPSILON * sigma_max * (n.max(p) as f64 + p as f64 * magnified);
    let null: Vec<usize> = (0..q)
        .filter(|&k| svd.singular_values[k] <= tolerance)
        .collect();
    if !null.is_empty() {
        // A column takes part in a dependency when it weighs in a null-space direction; the
        // rest of such a direction is rounding. The intercept goes without saying.
        let involved: Vec<usize> = (lead..q)
            .filter(|&col| {
                null.iter().any(|&k| {
                    let biggest = v_t.row(k).amax();
                    v_t[(k, col)].abs() > 1e-6 * biggest
                })
            })
            .map(|col| free[col - lead])
            .collect();
        return Err(refusal(names, &involved, false));
    }
    let projected = u.transpose() * r.view((0, q), (q, 1));
    let solved: Vec<f64> = (0..q)
        .map(|col| {
            (0..q)
                .map(|k| v_t[(k, col)] * projected[k] / svd.singular_values[k])
                .sum()
        })
        .collect();
    let mut b = vec![0.0; p];
    for (col, &j) in free.iter().enumerate() {
        b[j] = solved[lead + col] / scales[col];
    }
    if let Some(j) = intercept {
        let shifted: f64 = free.iter().zip(&centres).map(|(&f, c)| b[f] * c).sum();
        b[j] = (y_centre + solved[0] * unit - shifted) / low[j];
    }
    Ok(b)
}

/// The error for predictors that cannot be estimated, worded as the Cholesky solver's was.
fn refusal(names: &[String], columns: &[usize], constant: bool) -> String {
    let listed: Vec<String> = columns.iter().map(|&j| format!("`{}`", names[j])).collect();
    match (constant, listed.as_slice()) {
        (true, [one]) => format!("predictor {one} is constant (a multiple of the intercept)"),
        (true, _) => format!(
            "predictors {} are constant (multiples of the intercept)",
            listed.join(", ")
        ),
        (false, [one]) => {
            format!("predictor {one} is a linear combination of the others (or constant)")
        }
        (false, _) => format!(
            "predictors {} are collinear: each is a linear combination of the others (and the \
             intercept)",
            listed.join(", ")
        ),
    }
}

/// ‖v‖₂ without overflow or underflow in the squares (a predictor in units of 1e-200 is valid).
fn euclidean_norm(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let biggest = values.clone().fold(0.0_f64, |m, v| m.max(v.abs()));
    if biggest == 0.0 {
        return 0.0;
    }
    biggest * values.map(|v| (v / biggest).powi(2)).sum::<f64>().sqrt()
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

/// The columns [`apply_sql`] adds to the market's, its working columns included (and must not
/// find there already).
pub fn added_columns(model: &PotentialModel) -> Vec<String> {
    let predictors = model
        .numeric
        .iter()
        .map(|n| &n.column)
        .chain(model.categorical.iter().map(|c| &c.column));
    let mut out: Vec<String> = predictors.map(|name| format!("__term_{name}")).collect();
    out.extend(["predicted_value", "reason"].map(String::from));
    out
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

    /// A seeded design of `n` rows: intercept, `tiny` in [0, 1e-6), `shifted` = 100000 + U(0, 1)
    /// and an ordinary `count`, with `y` an exact combination of them.
    fn issue_11_design(n: usize) -> (Vec<Vec<f64>>, Vec<f64>, Vec<String>, [f64; 4]) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let coefficients = [-50_000.0, 3.0e6, 0.5, 2.0];
        let x: Vec<Vec<f64>> = (0..n)
            .map(|_| {
                let tiny = rng.random::<f64>() * 1e-6;
                let shifted = 100_000.0 + rng.random::<f64>();
                let count = f64::from(rng.random_range(0..40_u32));
                vec![1.0, tiny, shifted, count]
            })
            .collect();
        let y = x
            .iter()
            .map(|row| row.iter().zip(coefficients).map(|(v, c)| v * c).sum())
            .collect();
        let names = ["(intercept)", "tiny", "shifted", "count"].map(String::from);
        (x, y, names.to_vec(), coefficients)
    }

    #[test]
    fn ols_refused_valid_design_as_collinear_tiny_predictor() {
        let (x, _, names, want) = issue_11_design(500);
        // Just the tiny predictor: its XᵀX entries (~1e-13 per row) sat under an absolute 1e-9.
        let x: Vec<Vec<f64>> = x.iter().map(|r| vec![r[0], r[1], r[3]]).collect();
        let y: Vec<f64> = x
            .iter()
            .map(|r| 7.0 + want[1] * r[1] + want[3] * r[2])
            .collect();
        let names = [&names[0], &names[1], &names[3]].map(Clone::clone);
        let b = least_squares(&x, &y, &names).expect("a tiny spread is not collinearity");
        assert!((b[0] - 7.0).abs() < 1e-6, "{b:?}");
        assert!((b[1] - want[1]).abs() < 1e-6 * want[1], "{b:?}");
        assert!((b[2] - want[3]).abs() < 1e-9, "{b:?}");
        assert!((r_squared(&x, &y, &b) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn ols_refused_valid_design_as_collinear_small_spread_around_large_mean() {
        let (x, y, names, want) = issue_11_design(500);
        // 100000 + U(0, 1): uncentred, its column is the intercept's times 1e5 to ~1e-5.
        let b = least_squares(&x, &y, &names).expect("a large mean is not collinearity");
        assert!((b[0] - want[0]).abs() < 1e-4, "{b:?}");
        assert!((b[1] - want[1]).abs() < 1e-6 * want[1], "{b:?}");
        assert!((b[2] - want[2]).abs() < 1e-9, "{b:?}");
        assert!((b[3] - want[3]).abs() < 1e-9, "{b:?}");
        assert!((r_squared(&x, &y, &b) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn ols_still_refuses_collinearity_hidden_by_a_large_mean() {
        // `double` = 2·shifted − 100000: collinear with `shifted` and the intercept.
        let (x, y, _, _) = issue_11_design(200);
        let x: Vec<Vec<f64>> = x
            .iter()
            .map(|r| vec![r[0], r[2], r[3], 2.0 * r[2] - 100_000.0])
            .collect();
        let names = ["(intercept)", "shifted", "count", "double"].map(String::from);
        let err = least_squares(&x, &y, &names).expect_err("collinear");
        assert!(
            err.contains("`shifted`") && err.contains("`double`"),
            "{err}"
        );
        assert!(!err.contains("`count`"), "{err}");
    }

    #[test]
    fn ols_still_refuses_a_combination_of_several_predictors() {
        let (x, y, _, _) = issue_11_design(200);
        let x: Vec<Vec<f64>> = x
            .iter()
            .map(|r| vec![r[0], r[1], r[3], r[3] + 1e6 * r[1]])
            .collect();
        let names = ["(intercept)", "tiny", "count", "sum"].map(String::from);
        let err = least_squares(&x, &y, &names).expect_err("collinear");
        for name in ["`tiny`", "`count`", "`sum`"] {
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn ols_still_refuses_constant_predictors() {
        let (x, y, _, _) = issue_11_design(50);
        for constant in [100_000.5, 1e-7, 0.0] {
            let x: Vec<Vec<f64>> = x.iter().map(|r| vec![r[0], r[3], constant]).collect();
            let names = ["(intercept)", "count", "flat"].map(String::from);
            let err = least_squares(&x, &y, &names).expect_err("constant");
            assert!(err.contains("`flat`") && !err.contains("`count`"), "{err}");
        }
    }

    #[test]
    fn ols_still_refuses_a_sum_rounded_at_the_inputs_precision() {
        // `both` = shifted + other, rounded to the ~3e-11 a double near 200000 holds: not an
        // exact dependency, but one no data this precise can tell from it.
        let (x, y, _, _) = issue_11_design(300);
        let x: Vec<Vec<f64>> = x
            .iter()
            .zip(issue_11_design(300).0.iter().rev())
            .map(|(r, other)| vec![r[0], r[2], r[3], other[2], r[2] + other[2]])
            .collect();
        let names = ["(intercept)", "shifted", "count", "other", "both"].map(String::from);
        let err = least_squares(&x, &y, &names).expect_err("collinear");
        for name in ["`shifted`", "`other`", "`both`"] {
            assert!(err.contains(name), "{err}");
        }
        assert!(!err.contains("`count`"), "{err}");
    }

    #[test]
    fn ols_over_many_blocks_of_rows_recovers_the_design() {
        let (x, y, names, want) = issue_11_design(QR_BLOCK_ROWS * 3 + 17);
        let b = least_squares(&x, &y, &names).expect("fit");
        assert!((b[0] - want[0]).abs() < 1e-4, "{b:?}");
        assert!((b[1] - want[1]).abs() < 1e-6 * want[1], "{b:?}");
        assert!((b[2] - want[2]).abs() < 1e-9, "{b:?}");
        assert!((b[3] - want[3]).abs() < 1e-9, "{b:?}");
    }

    #[test]
    fn ols_without_an_intercept_goes_through_the_origin() {
        // Centring would add an intercept the caller did not ask for.
        let x: Vec<Vec<f64>> = (1..=6).map(|v| vec![f64::from(v), 1.0]).collect();
        let x: Vec<Vec<f64>> = x
            .iter()
            .enumerate()
            .map(|(i, r)| vec![r[0], if i % 2 == 0 { 3.0 } else { 5.0 }])
            .collect();
        let y: Vec<f64> = x.iter().map(|r| 2.0 * r[0] - 0.5 * r[1]).collect();
        let names = ["a", "b"].map(String::from);
        let b = least_squares(&x, &y, &names).expect("fit");
        assert!(
            (b[0] - 2.0).abs() < 1e-12 && (b[1] + 0.5).abs() < 1e-12,
            "{b:?}"
        );
    }
}
