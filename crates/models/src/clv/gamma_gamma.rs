//! Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV: Using iso-value curves
//! for customer base analysis"): each transaction's value is Gamma(p, ν) around the
//! customer's own mean, and ν is Gamma(q, γ) across customers. Written `v` for γ, as in
//! lifetimes.

use std::time::Instant;

use libm::lgamma;
use serde::{Deserialize, Serialize};

use super::optimize::minimize;
use super::parallel::Runner;
use super::{
    CHUNK_ROWS, ClvError, CompensatedSum, FitReport, SpendSummary, check_finite, digamma,
    distinct_index,
};

/// Fitted Gamma-Gamma parameters, in the currency of the spends they were fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub v: f64,
}

impl GammaGamma {
    /// One customer's log-likelihood of their mean repeat spend m over x repeat purchases;
    /// the same density as lifetimes' `GammaGammaFitter` (whose total spend is x·m).
    pub fn row_log_likelihood(&self, x: f64, mean_spend: f64) -> f64 {
        let Self { p, q, v } = *self;
        let px = p * x;
        lgamma(px + q) - lgamma(px) - lgamma(q)
            + q * v.ln()
            + (px - 1.0) * mean_spend.ln()
            + px * x.ln()
            - (px + q) * (x * mean_spend + v).ln()
    }

    /// Weighted sum over the rows of [`Self::row_log_likelihood`].
    pub fn log_likelihood(&self, rows: &[SpendSummary]) -> f64 {
        let mut total = CompensatedSum::default();
        for row in rows {
            total.add(row.weight * self.row_log_likelihood(row.x, row.mean_spend));
        }
        total.value()
    }

    /// Expected spend per future purchase: the customer's own mean shrunk towards the
    /// population mean p·v/(q−1), the more so the fewer repeat purchases back it. A customer
    /// without repeat purchases gets the population mean (their `mean_spend` is ignored).
    /// NaN when q ≤ 1, where the population mean does not exist.
    pub fn expected_average_spend(&self, x: f64, mean_spend: f64) -> f64 {
        let Self { p, q, v } = *self;
        if q <= 1.0 {
            return f64::NAN;
        }
        let population_mean = p * v / (q - 1.0);
        if x > 0.0 {
            let weight = p * x / (p * x + q - 1.0);
            (1.0 - weight) * population_mean + weight * mean_spend
        } else if x.is_nan() {
            f64::NAN
        } else {
            population_mean
        }
    }
}

/// Unique rows with the per-x log-gamma work shared across rows of the same x.
struct Prepared {
    xs: Vec<f64>,
    /// Per distinct x: the sum of its rows' weights, which multiplies every per-x term of
    /// the gradient.
    x_weights: Vec<f64>,
    /// Per row: index into `xs`, weight, ln m and x·m.
    rows: Vec<(usize, f64, f64, f64)>,
    total_weight: f64,
}

/// One chunk's share of the log-likelihood and of the row-dependent gradient sums.
#[derive(Debug, Default)]
struct Partial {
    log_likelihood: CompensatedSum,
    /// Σ w·x·(ln m − ln(x·m+v)), Σ w·ln(x·m+v) and Σ w·(px+q)/(x·m+v).
    gradient: [f64; 3],
}

impl Prepared {
    fn new(rows: &[SpendSummary]) -> Result<Self, ClvError> {
        let mut kept = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            check_finite(i, "x", row.x)?;
            check_finite(i, "mean_spend", row.mean_spend)?;
            check_finite(i, "weight", row.weight)?;
            let problem = if row.x <= 0.0 {
                Some("x (repeat purchases) must be positive: leave out one-time buyers")
            } else if row.mean_spend <= 0.0 {
                Some("mean_spend must be positive")
            } else if row.weight < 0.0 {
                Some("weight is negative")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(ClvError::InvalidRow {
                    row: i,
                    message: format!(
                        "{problem} (x = {}, mean_spend = {}, weight = {})",
                        row.x, row.mean_spend, row.weight
                    ),
                });
            }
            if row.weight > 0.0 {
                kept.push(row);
            }
        }
        let total_weight: f64 = kept.iter().map(|row| row.weight).sum();
        if kept.is_empty() || total_weight <= 0.0 {
            return Err(ClvError::NoRows);
        }
        let (xs, x_of) = distinct_index(kept.iter().map(|row| row.x));
        let rows: Vec<_> = kept
            .iter()
            .enumerate()
            .map(|(i, row)| {
                (
                    x_of[i],
                    row.weight,
                    row.mean_spend.ln(),
                    row.x * row.mean_spend,
                )
            })
            .collect();
        let mut x_weights = vec![0.0; xs.len()];
        for &(ix, w, _, _) in &rows {
            x_weights[ix] += w;
        }
        Ok(Self {
            xs,
            x_weights,
            rows,
            total_weight,
        })
    }

    fn log_likelihood(&self, m: &GammaGamma, runner: &Runner) -> f64 {
        self.evaluate(m, None, runner)
    }

    /// The log-likelihood and, given somewhere to put it, its gradient with respect to
    /// (ln p, ln q, ln v). Rows are formed in full and summed with compensation, and the
    /// gradient's per-x parts weighted once per x, as in the BG/NBD fit (its
    /// `Prepared::evaluate` says why).
    fn evaluate(&self, m: &GammaGamma, gradient: Option<&mut [f64]>, runner: &Runner) -> f64 {
        let GammaGamma { p, q, v } = *m;
        let common = -lgamma(q) + q * v.ln();
        let per_x: Vec<f64> = self
            .xs
            .iter()
            .map(|&x| {
                let px = p * x;
                common + lgamma(px + q) - lgamma(px) + px * x.ln()
            })
            .collect();
        let want_gradient = gradient.is_some();
        let (partials, _) = runner.run(
            self.rows.len(),
            (),
            || (),
            |_, range, ()| {
                let mut part = Partial::default();
                for &(ix, w, log_m, total_spend) in &self.rows[range] {
                    let x = self.xs[ix];
                    let px = p * x;
                    let log_total = (total_spend + v).ln();
                    part.log_likelihood
                        .add(w * (per_x[ix] + (px - 1.0) * log_m - (px + q) * log_total));
                    if want_gradient {
                        let g = &mut part.gradient;
                        g[0] += w * x * (log_m - log_total);
                        g[1] += w * log_total;
                        g[2] += w * (px + q) / (total_spend + v);
                    }
                }
                part
            },
        );
        let mut total = CompensatedSum::default();
        let mut rows_part = [0.0; 3];
        for part in &partials {
            total.add(part.log_likelihood.sum);
            total.add(part.log_likelihood.compensation);
            for (sum, g) in rows_part.iter_mut().zip(part.gradient) {
                *sum += g;
            }
        }
        if let Some(gradient) = gradient {
            let mut per_x_part = [0.0; 2];
            for (&x, &weight) in self.xs.iter().zip(&self.x_weights) {
                let px = p * x;
                let psi = digamma(px + q);
                per_x_part[0] += weight * x * (psi - digamma(px) + x.ln());
                per_x_part[1] += weight * psi;
            }
            let n = self.total_weight;
            // ∂/∂ln θ = θ·∂/∂θ.
            gradient[0] = p * (per_x_part[0] + rows_part[0]);
            gradient[1] = q * (per_x_part[1] - n * digamma(q) + n * v.ln() - rows_part[1]);
            gradient[2] = n * q - v * rows_part[2];
        }
        total.value()
    }
}

/// p = 1, q = 2 and v from the observed mean spend (E[spend] = p·v/(q−1)), so that the start
/// does not depend on the currency.
fn start(p: &Prepared) -> [f64; 3] {
    let spend: f64 = p
        .rows
        .iter()
        .map(|&(ix, w, _, total)| w * total / p.xs[ix])
        .sum::<f64>()
        / p.total_weight;
    [0.0, 2.0_f64.ln(), spend.ln()]
}

fn from_log(theta: &[f64]) -> GammaGamma {
    GammaGamma {
        p: theta[0].exp(),
        q: theta[1].exp(),
        v: theta[2].exp(),
    }
}

/// Maximum-likelihood Gamma-Gamma on weighted unique (x, mean spend) rows, unpenalized, over
/// the logarithms of the parameters.
///
/// The likelihood passes run on every available core; the result does not depend on how
/// many there are.
pub fn fit_gamma_gamma(rows: &[SpendSummary]) -> Result<(GammaGamma, FitReport), ClvError> {
    fit_gamma_gamma_with(rows, &Runner::new(None, CHUNK_ROWS))
}

pub(super) fn fit_gamma_gamma_with(
    rows: &[SpendSummary],
    runner: &Runner,
) -> Result<(GammaGamma, FitReport), ClvError> {
    let started = Instant::now();
    let prepared = Prepared::new(rows)?;
    let scale = prepared.total_weight;
    let cost = |theta: &[f64], gradient: Option<&mut [f64]>| {
        let has_gradient = gradient.is_some();
        let mut g = [0.0; 3];
        let ll = prepared.evaluate(&from_log(theta), has_gradient.then_some(&mut g[..]), runner);
        if let Some(gradient) = gradient {
            for (out, g) in gradient.iter_mut().zip(g) {
                *out = -g / scale;
            }
        }
        -ll / scale
    };
    let m = minimize(&cost, &start(&prepared));
    let model = from_log(&m.theta);
    let log_likelihood = prepared.log_likelihood(&model, runner);
    let report = m.report(
        "Gamma-Gamma",
        &model,
        log_likelihood,
        prepared.rows.len(),
        prepared.total_weight,
        started,
    )?;
    Ok((model, report))
}

/// The log-likelihood of `rows` at `model` and its gradient with respect to the
/// log-parameters, as the fit evaluates them, for checking against finite differences.
#[cfg(test)]
pub(super) fn log_likelihood_and_gradient(
    rows: &[SpendSummary],
    model: &GammaGamma,
    runner: &Runner,
) -> Result<(f64, [f64; 3]), ClvError> {
    let prepared = Prepared::new(rows)?;
    let mut gradient = [0.0; 3];
    let ll = prepared.evaluate(model, Some(&mut gradient), runner);
    Ok((ll, gradient))
}
