//! BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): purchases
//! follow a Poisson process with a Gamma(r, α)-distributed rate while the customer is alive,
//! and after each repeat purchase the customer drops out with a Beta(a, b)-distributed
//! probability.

use std::time::Instant;

use libm::lgamma;
use serde::{Deserialize, Serialize};

use super::hypergeometric::hyp2f1_minus_one;
use super::optimize::minimize;
use super::parallel::Runner;
use super::{
    CHUNK_ROWS, ClvError, CompensatedSum, FitReport, PurchaseSummary, check_finite, digamma,
    distinct_index, log_add_exp, sigmoid,
};

/// Fitted BG/NBD parameters, in the time unit of the summaries they were fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

impl BgNbd {
    /// One customer's log-likelihood (eq. 6 of the paper, in logs): the two terms are
    /// "still alive at T" and "dropped out right after the last purchase at t_x"; they are
    /// added with log-sum-exp because each alone underflows for frequent buyers.
    pub fn row_log_likelihood(&self, x: f64, t_x: f64, t: f64) -> f64 {
        let Self { r, alpha, a, b } = *self;
        let a1 = lgamma(r + x) - lgamma(r) + r * alpha.ln();
        let a2 = lgamma(a + b) + lgamma(b + x) - lgamma(b) - lgamma(a + b + x);
        let a3 = -(r + x) * (alpha + t).ln();
        if x > 0.0 {
            let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + t_x).ln();
            a1 + a2 + log_add_exp(a3, a4)
        } else {
            a1 + a2 + a3
        }
    }

    /// Weighted sum over the rows of [`Self::row_log_likelihood`].
    pub fn log_likelihood(&self, rows: &[PurchaseSummary]) -> f64 {
        let mut total = CompensatedSum::default();
        for row in rows {
            total.add(row.weight * self.row_log_likelihood(row.x, row.t_x, row.t));
        }
        total.value()
    }

    /// ln of a/(b+x−1)·((α+T)/(α+t_x))^(r+x): the odds of "dropped out at t_x" against
    /// "alive at T" given the history. Only meaningful for x > 0.
    fn log_dropout_odds(&self, x: f64, t_x: f64, t: f64) -> f64 {
        let Self { r, alpha, a, b } = *self;
        (r + x) * ((alpha + t).ln() - (alpha + t_x).ln()) + a.ln() - (b + x - 1.0).ln()
    }

    /// Probability that the customer is still active at T. A customer without repeat
    /// purchases has had no chance to drop out in this model, hence 1.
    pub fn p_alive(&self, x: f64, t_x: f64, t: f64) -> f64 {
        if x > 0.0 {
            sigmoid(-self.log_dropout_odds(x, t_x, t))
        } else if x.is_nan() || t_x.is_nan() || t.is_nan() {
            f64::NAN
        } else {
            1.0
        }
    }

    /// Conditional expected number of purchases in the next `horizon` time units (eq. 10 of
    /// the paper); 0 for a horizon ≤ 0.
    pub fn expected_purchases(&self, horizon: f64, x: f64, t_x: f64, t: f64) -> f64 {
        self.p_alive(x, t_x, t) * self.expected_purchases_if_alive(horizon, x, t)
    }

    /// Eq. 10's numerator: expected purchases in (T, T + horizon] for a customer known to be
    /// alive at T, i.e. (a+b+x−1)/(a−1) · [1 − (1−z)^(r+x) ₂F₁(r+x, b+x; a+b+x−1; z)] with
    /// z = t/(α+T+t).
    ///
    /// The series for that ₂F₁ grows like (1−z)^(a−1−r−x) before the factor in front brings it
    /// back: past 1e300 for heavy buyers. Euler's transformation gives the same bracket as
    /// 1 − (1−z)^(a−1) ₂F₁(a+b−1−r, a−1; a+b+x−1; z), whose series is tame whatever x, but
    /// which grows like (1−z)^(1−a) instead: a problem only for huge a and b (the boundary fits
    /// of tiny data sets), where the textbook series is tame. So whichever form has the
    /// smaller first-term ratio is summed. In both, ₂F₁ − 1 is summed without its leading 1 so
    /// that the bracket keeps full relative precision when it is small: for short horizons,
    /// and as a → 1, where the transformed ₂F₁ − 1 = O(a−1) and the textbook form is 0/0.
    pub(crate) fn expected_purchases_if_alive(&self, horizon: f64, x: f64, t: f64) -> f64 {
        let Self { r, alpha, a, b } = *self;
        if horizon <= 0.0 {
            return 0.0;
        }
        let z = horizon / (alpha + t + horizon);
        let log_one_minus_z = (-z).ln_1p();
        // At a = 1 exactly, the limit δ → 0 is approached closely enough by a tiny δ: every
        // term below is computed to full relative precision in δ.
        let delta = if a == 1.0 { 1e-12 } else { a - 1.0 };
        let c = a + b + x - 1.0;
        let (first, second) = ((r + x, b + x), (a + b - 1.0 - r, delta));
        let (p, q, power) = if (first.0 * first.1).abs() < (second.0 * second.1).abs() {
            (first.0, first.1, r + x)
        } else {
            (second.0, second.1, delta)
        };
        let tail = hyp2f1_minus_one(p, q, c, z);
        let bracket = -(power * log_one_minus_z).exp_m1() - (power * log_one_minus_z).exp() * tail;
        c * bracket / delta
    }
}

/// Unique rows indexed by their distinct x, T and t_x values, so that an evaluation of the
/// likelihood takes each log-gamma once per distinct x and each logarithm once per distinct
/// time, rather than once per row.
struct Prepared {
    xs: Vec<f64>,
    /// Per distinct x: the sum of its rows' weights, which multiplies every per-x term of
    /// the gradient.
    x_weights: Vec<f64>,
    ts: Vec<f64>,
    t_xs: Vec<f64>,
    /// Per row: indices into `xs`, `ts` and `t_xs`, and the weight.
    rows: Vec<(usize, usize, usize, f64)>,
    total_weight: f64,
}

/// One chunk's share of the log-likelihood and of the row-dependent gradient sums.
#[derive(Debug, Default)]
struct Partial {
    log_likelihood: CompensatedSum,
    /// Σ w·(π₃ ln(α+T) + π₄ ln(α+t_x)), Σ w·(r+x)(π₃/(α+T) + π₄/(α+t_x)), Σ w·π₄ and
    /// Σ w·π₄/(b+x−1), where π₃ and π₄ are the shares of "alive at T" and "dropped out at
    /// t_x" in the row's likelihood.
    gradient: [f64; 4],
}

/// Per distinct x: A1 + A2 (the log-gamma part), ln a − ln(b+x−1) of A4 and 1/(b+x−1).
#[derive(Debug, Clone, Copy)]
struct PerX {
    a12: f64,
    dropout: f64,
    inverse_b: f64,
}

impl Prepared {
    fn new(rows: &[PurchaseSummary]) -> Result<Self, ClvError> {
        let mut kept = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            check_finite(i, "x", row.x)?;
            check_finite(i, "t_x", row.t_x)?;
            check_finite(i, "T", row.t)?;
            check_finite(i, "weight", row.weight)?;
            let problem = if row.x < 0.0 {
                Some("x (repeat purchases) is negative")
            } else if row.t_x < 0.0 {
                Some("t_x (recency) is negative")
            } else if row.t < row.t_x {
                Some("T is smaller than t_x")
            } else if row.weight < 0.0 {
                Some("weight is negative")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(ClvError::InvalidRow {
                    row: i,
                    message: format!(
                        "{problem} (x = {}, t_x = {}, T = {}, weight = {})",
                        row.x, row.t_x, row.t, row.weight
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
        if kept.iter().all(|row| row.x == 0.0) {
            return Err(ClvError::NoRepeatPurchases);
        }
        let (xs, x_of) = distinct_index(kept.iter().map(|row| row.x));
        let (ts, t_of) = distinct_index(kept.iter().map(|row| row.t));
        let (t_xs, t_x_of) = distinct_index(kept.iter().map(|row| row.t_x));
        let rows: Vec<_> = kept
            .iter()
            .enumerate()
            .map(|(i, row)| (x_of[i], t_of[i], t_x_of[i], row.weight))
            .collect();
        let mut x_weights = vec![0.0; xs.len()];
        for &(ix, _, _, w) in &rows {
            x_weights[ix] += w;
        }
        Ok(Self {
            xs,
            x_weights,
            ts,
            t_xs,
            rows,
            total_weight,
        })
    }

    /// Same value as [`BgNbd::log_likelihood`] over the kept rows, up to rounding.
    fn log_likelihood(&self, m: &BgNbd, runner: &Runner) -> f64 {
        self.evaluate(m, None, runner)
    }

    /// The log-likelihood and, given somewhere to put it, its gradient with respect to
    /// (ln r, ln α, ln a, ln b).
    ///
    /// Each row's log-likelihood is formed in full before it is added, and the addition is
    /// compensated: summing the large per-x log-gamma parts separately from the per-row
    /// parts leaves partial sums in the millions whose rounding swamps the optimizer's
    /// tolerances (by a factor 100 in practice). The gradient has no such problem (its
    /// per-customer value is what matters, and it has no large constant parts that cancel
    /// to leave it), so its per-x parts are weighted once by each x's total weight.
    ///
    /// With eq. 6 written as L = e^(A1+A2)·(e^A3 + e^A4), ∂ln L = ∂(A1+A2) + π₃∂A3 + π₄∂A4,
    /// π₃ = e^A3/(e^A3 + e^A4) and π₄ = 1 − π₃, the shares the log-sum-exp already computes.
    fn evaluate(&self, m: &BgNbd, gradient: Option<&mut [f64]>, runner: &Runner) -> f64 {
        let BgNbd { r, alpha, a, b } = *m;
        let common = -lgamma(r) + r * alpha.ln() + lgamma(a + b) - lgamma(b);
        let per_x: Vec<PerX> = self
            .xs
            .iter()
            .map(|&x| {
                let a12 = common + lgamma(r + x) + lgamma(b + x) - lgamma(a + b + x);
                let (dropout, inverse_b) = if x > 0.0 {
                    (a.ln() - (b + x - 1.0).ln(), 1.0 / (b + x - 1.0))
                } else {
                    (0.0, 0.0)
                };
                PerX {
                    a12,
                    dropout,
                    inverse_b,
                }
            })
            .collect();
        let log_t: Vec<f64> = self.ts.iter().map(|t| (alpha + t).ln()).collect();
        let log_t_x: Vec<f64> = self.t_xs.iter().map(|t| (alpha + t).ln()).collect();
        let want_gradient = gradient.is_some();
        let (inverse_t, inverse_t_x): (Vec<f64>, Vec<f64>) = if want_gradient {
            (
                self.ts.iter().map(|t| 1.0 / (alpha + t)).collect(),
                self.t_xs.iter().map(|t| 1.0 / (alpha + t)).collect(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let (partials, _) = runner.run(
            self.rows.len(),
            (),
            || (),
            |_, range, ()| {
                let mut part = Partial::default();
                for &(ix, it, itx, w) in &self.rows[range] {
                    let x = self.xs[ix];
                    let px = per_x[ix];
                    let a3 = -(r + x) * log_t[it];
                    if x > 0.0 {
                        let a4 = px.dropout - (r + x) * log_t_x[itx];
                        // log-sum-exp, keeping e^(lo − hi) for the shares.
                        let (hi, lo) = if a3 >= a4 { (a3, a4) } else { (a4, a3) };
                        let e = (lo - hi).exp();
                        part.log_likelihood.add(w * (px.a12 + hi + e.ln_1p()));
                        if want_gradient {
                            let share_lo = e / (1.0 + e);
                            let share_hi = 1.0 - share_lo;
                            let (alive, dropped) = if a3 >= a4 {
                                (share_hi, share_lo)
                            } else {
                                (share_lo, share_hi)
                            };
                            let g = &mut part.gradient;
                            g[0] += w * (alive * log_t[it] + dropped * log_t_x[itx]);
                            g[1] +=
                                w * (r + x) * (alive * inverse_t[it] + dropped * inverse_t_x[itx]);
                            g[2] += w * dropped;
                            g[3] += w * dropped * px.inverse_b;
                        }
                    } else {
                        part.log_likelihood.add(w * (px.a12 + a3));
                        if want_gradient {
                            let g = &mut part.gradient;
                            g[0] += w * log_t[it];
                            g[1] += w * r * inverse_t[it];
                        }
                    }
                }
                part
            },
        );
        let mut total = CompensatedSum::default();
        let mut rows_part = [0.0; 4];
        for part in &partials {
            total.add(part.log_likelihood.sum);
            total.add(part.log_likelihood.compensation);
            for (sum, g) in rows_part.iter_mut().zip(part.gradient) {
                *sum += g;
            }
        }
        if let Some(gradient) = gradient {
            let (psi_r, psi_ab, psi_b) = (digamma(r), digamma(a + b), digamma(b));
            let mut per_x_part = [0.0; 3];
            for (&x, &weight) in self.xs.iter().zip(&self.x_weights) {
                let psi_abx = digamma(a + b + x);
                per_x_part[0] += weight * (digamma(r + x) - psi_r);
                per_x_part[1] += weight * (psi_ab - psi_abx);
                per_x_part[2] += weight * (psi_ab + digamma(b + x) - psi_b - psi_abx);
            }
            let n = self.total_weight;
            // ∂/∂ln θ = θ·∂/∂θ.
            gradient[0] = r * (per_x_part[0] + n * alpha.ln() - rows_part[0]);
            gradient[1] = alpha * (n * r / alpha - rows_part[1]);
            gradient[2] = a * per_x_part[1] + rows_part[2];
            gradient[3] = b * (per_x_part[2] - rows_part[3]);
        }
        total.value()
    }
}

/// Where the search starts: r = a = b = 1 and α from the observed repeat rate (E[λ] = r/α),
/// so that the start does not depend on the time unit.
fn start(p: &Prepared) -> [f64; 4] {
    let (mut purchases, mut exposure) = (0.0, 0.0);
    for &(ix, it, _, w) in &p.rows {
        purchases += w * p.xs[ix];
        exposure += w * p.ts[it];
    }
    let alpha = if purchases > 0.0 && exposure > 0.0 {
        exposure / purchases
    } else {
        1.0
    };
    [0.0, alpha.ln(), 0.0, 0.0]
}

fn from_log(theta: &[f64]) -> BgNbd {
    BgNbd {
        r: theta[0].exp(),
        alpha: theta[1].exp(),
        a: theta[2].exp(),
        b: theta[3].exp(),
    }
}

/// Maximum-likelihood BG/NBD on weighted unique rows, unpenalized (as lifetimes' default and
/// the published CDNOW estimates). Optimizes over the logarithms of the parameters so that
/// they stay positive without constraints.
///
/// The likelihood passes run on every available core; the result does not depend on how
/// many there are.
pub fn fit_bgnbd(rows: &[PurchaseSummary]) -> Result<(BgNbd, FitReport), ClvError> {
    fit_bgnbd_with(rows, &Runner::new(None, CHUNK_ROWS))
}

pub(super) fn fit_bgnbd_with(
    rows: &[PurchaseSummary],
    runner: &Runner,
) -> Result<(BgNbd, FitReport), ClvError> {
    let started = Instant::now();
    let prepared = Prepared::new(rows)?;
    let scale = prepared.total_weight;
    let cost = |theta: &[f64], gradient: Option<&mut [f64]>| {
        let has_gradient = gradient.is_some();
        let mut g = [0.0; 4];
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
        "BG/NBD",
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
    rows: &[PurchaseSummary],
    model: &BgNbd,
    runner: &Runner,
) -> Result<(f64, [f64; 4]), ClvError> {
    let prepared = Prepared::new(rows)?;
    let mut gradient = [0.0; 4];
    let ll = prepared.evaluate(model, Some(&mut gradient), runner);
    Ok((ll, gradient))
}
