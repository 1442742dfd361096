//! Customer lifetime value: BG/NBD purchase model and Gamma-Gamma spend model.
//!
//! Both fit by maximum likelihood on *unique* summary rows with weights, because customers
//! share (x, t_x, T) values once dates are whole days (a million simulated customers over a
//! year collapse to 180,000 rows, most of them the rare heavy buyers) and the fit time
//! follows the rows. The
//! numerics follow lifetimes (0.11), whose CDNOW estimates they reproduce, without penalty.
//! Time is in whatever unit the summaries use (α is in that unit, and so are the horizons of
//! the predictions); money likewise (v is in the spend's currency).

mod bgnbd;
mod gamma_gamma;
mod hypergeometric;
mod optimize;
use crate::parallel;
mod predict;
#[cfg(test)]
mod tests;

pub use bgnbd::{BgNbd, fit_bgnbd};
pub use gamma_gamma::{GammaGamma, fit_gamma_gamma};
pub use predict::{PredictionSettings, Predictions, predict_customers};
use serde::{Deserialize, Serialize};

/// Rows per chunk of every parallel pass: likelihood sums are formed per chunk and the chunk
/// sums added in chunk order, so this (not the thread count) fixes the rounding. Large
/// enough that a chunk outweighs handing it to a thread, small enough that two cores get
/// several each on the 10⁵–10⁶ unique rows of a large customer base.
const CHUNK_ROWS: usize = 16_384;

/// One unique (x, t_x, T) summary row and how many customers share it.
///
/// x is the number of repeat purchases (purchase occasions − 1), t_x the time from the first
/// to the last purchase, T the time from the first purchase to the end of observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PurchaseSummary {
    pub x: f64,
    pub t_x: f64,
    pub t: f64,
    pub weight: f64,
}

/// One unique (x, mean repeat spend) row with weight, only customers with x > 0.
///
/// The mean is over the repeat purchases, the first one excluded, as in the papers and
/// lifetimes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpendSummary {
    pub x: f64,
    pub mean_spend: f64,
    pub weight: f64,
}

/// How a fit went, stored next to the parameters in the model artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// Weighted sum over customers (not the per-customer mean the optimizer works on).
    pub log_likelihood: f64,
    /// Optimizer iterations over all attempts (the Nelder-Mead fallback, its restarts and
    /// the BFGS polish after it included).
    pub iterations: u64,
    /// Whether the parameters passed the optimality test: the Newton step from them is below
    /// 1e-5 in every log-parameter (each parameter within 1e-5 relative of the maximum) and
    /// the likelihood curves down in every direction. False means the parameters are the best
    /// point found but not an interior maximum: typically too few customers, so that the
    /// likelihood keeps rising towards a boundary (a and b, or p and 1/v, growing together:
    /// the limits "everyone has the same dropout probability" or "every customer always
    /// spends their own mean"). Predictions from them are that limit's, usable but worth a
    /// warning.
    pub converged: bool,
    /// `bfgs` or `nelder-mead`: which optimizer produced the kept point.
    pub optimizer: String,
    /// Rows with a positive weight.
    pub unique_rows: u64,
    /// Sum of the weights.
    pub customers: f64,
    /// Wall time of the fit; the only field that varies between identical runs.
    pub seconds: f64,
}

/// Why a fit produced no parameters. A fit that ends short of an interior maximum is not an
/// error: see [`FitReport::converged`].
#[derive(Debug, thiserror::Error)]
pub enum ClvError {
    #[error("no rows to fit (or their weights add up to zero)")]
    NoRows,
    /// Without repeat purchases the likelihood rises forever as the purchase rate goes to 0.
    #[error("no customer has a repeat purchase (x > 0): BG/NBD cannot be fitted")]
    NoRepeatPurchases,
    /// `row` is the index in the slice passed to the fit.
    #[error("row {row}: {field} is {value}, not a finite number")]
    NonFinite {
        row: usize,
        field: &'static str,
        value: f64,
    },
    /// `row` is the index in the slice passed to the fit.
    #[error("row {row}: {message}")]
    InvalidRow { row: usize, message: String },
    /// Neither optimizer reached a point where the log-likelihood is finite.
    #[error(
        "{model} fit found no parameters with a finite log-likelihood (BFGS, then \
         Nelder-Mead and BFGS again, {iterations} iterations); best log-likelihood \
         {log_likelihood}, largest Newton step {newton_step:e} at {parameters}"
    )]
    NotConverged {
        model: &'static str,
        log_likelihood: f64,
        iterations: u64,
        newton_step: f64,
        parameters: String,
    },
    /// The per-customer columns passed to [`predict_customers`] differ in length.
    #[error(
        "prediction columns differ in length: x {x}, t_x {t_x}, T {t}, mean_spend {mean_spend}"
    )]
    ColumnLengths {
        x: usize,
        t_x: usize,
        t: usize,
        mean_spend: usize,
    },
}

/// Discounted CLV like lifetimes' `customer_lifetime_value`: sum over steps i = 1..=n of
/// (E[purchases in (0, i·step]] − E[purchases in (0, (i−1)·step]]) · expected spend /
/// (1 + discount)^i, times margin.
///
/// `step_length` is in the BG/NBD time unit (lifetimes' `freq="W"` monthly steps are 4.345
/// weeks); the expected spend is [`GammaGamma::expected_average_spend`], so a customer
/// without repeat purchases is valued at the population mean spend.
#[allow(clippy::too_many_arguments)]
pub fn discounted_clv(
    bg: &BgNbd,
    gg: &GammaGamma,
    x: f64,
    t_x: f64,
    t: f64,
    mean_spend: f64,
    steps: u32,
    step_length: f64,
    discount_per_step: f64,
    margin: f64,
) -> f64 {
    let spend = gg.expected_average_spend(x, mean_spend);
    // P(alive) factors out of every cumulative expectation: compute it once.
    let alive = bg.p_alive(x, t_x, t);
    let total = discounted_purchases_if_alive(bg, x, t, steps, step_length, discount_per_step);
    total * alive * spend * margin
}

/// The discounted sum of [`discounted_clv`] for a customer known to be alive, per unit of
/// spend and margin: a function of (x, T) alone, which is what lets [`predict_customers`]
/// compute it once per distinct pair.
fn discounted_purchases_if_alive(
    bg: &BgNbd,
    x: f64,
    t: f64,
    steps: u32,
    step_length: f64,
    discount_per_step: f64,
) -> f64 {
    let mut previous = 0.0;
    let mut discount = 1.0;
    let mut total = 0.0;
    for i in 1..=steps {
        let cumulative = bg.expected_purchases_if_alive(f64::from(i) * step_length, x, t);
        discount /= 1.0 + discount_per_step;
        total += (cumulative - previous) * discount;
        previous = cumulative;
    }
    total
}

/// ψ, the derivative of ln Γ, for the likelihoods' gradients, which only need positive
/// arguments. NaN elsewhere: `special` recurses upwards from small arguments, one level per
/// unit below 8, which a large negative one would turn into a stack overflow.
fn digamma(x: f64) -> f64 {
    if x > 0.0 {
        special::Gamma::digamma(x)
    } else {
        f64::NAN
    }
}

fn check_finite(row: usize, field: &'static str, value: f64) -> Result<(), ClvError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(ClvError::NonFinite { row, field, value })
    }
}

/// Neumaier's compensated summation: the likelihood of a million rows is a sum whose
/// rounding would otherwise exceed the optimizer's tolerances.
#[derive(Debug, Default)]
struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    fn add(&mut self, value: f64) {
        let t = self.sum + value;
        self.compensation += if self.sum.abs() >= value.abs() {
            (self.sum - t) + value
        } else {
            (value - t) + self.sum
        };
        self.sum = t;
    }

    fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// ln(eᵃ + eᵇ) without overflow or underflow.
fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if hi == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// 1 / (1 + e^(−s)) without overflow for large |s|.
fn sigmoid(s: f64) -> f64 {
    if s >= 0.0 {
        1.0 / (1.0 + (-s).exp())
    } else {
        let e = s.exp();
        e / (1.0 + e)
    }
}

/// Sorted distinct values and, per input value, its index among them.
fn distinct_index(values: impl Iterator<Item = f64> + Clone) -> (Vec<f64>, Vec<usize>) {
    let mut distinct: Vec<f64> = values.clone().collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup_by(|a, b| a.total_cmp(b).is_eq());
    let index = values
        .map(|v| distinct.partition_point(|d| d.total_cmp(&v).is_lt()))
        .collect();
    (distinct, index)
}
