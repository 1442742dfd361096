//! Per-customer predictions for a whole customer base at once.
//!
//! Nearly all the time of a prediction goes into the ₂F₁ series of the conditional
//! expectation, once for the horizon and once per discounting step, and that expectation
//! depends on (x, T) alone, not on t_x or the spend. Dates in whole days make those pairs
//! few (a million customers observed over a year share a few tens of thousands), so the
//! series are summed once per distinct pair; only P(alive) and the spend, both closed-form,
//! are per customer. Every value is computed by the same functions, in the same order, as
//! the one-customer methods, so the results are bit-identical to them and to any thread
//! count.

use std::collections::HashMap;

use super::parallel::Runner;
use super::{BgNbd, CHUNK_ROWS, ClvError, GammaGamma, discounted_purchases_if_alive};

/// What to predict: the arguments of [`BgNbd::expected_purchases`] and
/// [`super::discounted_clv`] that are the same for every customer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictionSettings {
    /// Horizon of `expected_purchases`, in the BG/NBD time unit.
    pub horizon: f64,
    /// Discounting steps of the CLV (e.g. 12 months).
    pub steps: u32,
    /// Length of one step in the BG/NBD time unit.
    pub step_length: f64,
    pub discount_per_step: f64,
    pub margin: f64,
}

/// One value per customer, in the order of the input columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Predictions {
    /// [`BgNbd::p_alive`].
    pub p_alive: Vec<f64>,
    /// [`BgNbd::expected_purchases`] over the settings' horizon.
    pub expected_purchases: Vec<f64>,
    /// [`GammaGamma::expected_average_spend`].
    pub expected_spend: Vec<f64>,
    /// [`super::discounted_clv`].
    pub clv: Vec<f64>,
}

/// P(alive), expected purchases, expected spend and discounted CLV of every customer, equal
/// bit for bit to calling [`BgNbd::p_alive`], [`BgNbd::expected_purchases`],
/// [`GammaGamma::expected_average_spend`] and [`super::discounted_clv`] per customer, on
/// every available core.
///
/// The columns are one value per customer: repeat purchases x, recency t_x, age T and mean
/// repeat spend (any value, e.g. 0, where x = 0: it is not used there).
pub fn predict_customers(
    bg: &BgNbd,
    gg: &GammaGamma,
    settings: &PredictionSettings,
    x: &[f64],
    t_x: &[f64],
    t: &[f64],
    mean_spend: &[f64],
) -> Result<Predictions, ClvError> {
    predict_with(
        bg,
        gg,
        settings,
        [x, t_x, t, mean_spend],
        &Runner::new(None, CHUNK_ROWS),
    )
}

/// Expected purchases over the horizon and the discounted purchases of the CLV, for a
/// customer alive at T.
#[derive(Debug, Clone, Copy, Default)]
struct IfAlive {
    purchases: f64,
    discounted: f64,
}

pub(super) fn predict_with(
    bg: &BgNbd,
    gg: &GammaGamma,
    settings: &PredictionSettings,
    [x, t_x, t, mean_spend]: [&[f64]; 4],
    runner: &Runner,
) -> Result<Predictions, ClvError> {
    let n = x.len();
    if t_x.len() != n || t.len() != n || mean_spend.len() != n {
        return Err(ClvError::ColumnLengths {
            x: n,
            t_x: t_x.len(),
            t: t.len(),
            mean_spend: mean_spend.len(),
        });
    }
    // Distinct (x, T) by bit pattern, in order of first appearance.
    let mut index: HashMap<(u64, u64), usize> = HashMap::new();
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    let pair_of: Vec<usize> = x
        .iter()
        .zip(t)
        .map(|(&x, &t)| {
            *index.entry((x.to_bits(), t.to_bits())).or_insert_with(|| {
                pairs.push((x, t));
                pairs.len() - 1
            })
        })
        .collect();
    drop(index);
    let mut if_alive = vec![IfAlive::default(); pairs.len()];
    runner.run(
        pairs.len(),
        if_alive.as_mut_slice(),
        || (),
        |_, range, out: &mut [IfAlive]| {
            for (&(x, t), slot) in pairs[range].iter().zip(out) {
                *slot = IfAlive {
                    purchases: bg.expected_purchases_if_alive(settings.horizon, x, t),
                    discounted: discounted_purchases_if_alive(
                        bg,
                        x,
                        t,
                        settings.steps,
                        settings.step_length,
                        settings.discount_per_step,
                    ),
                };
            }
        },
    );
    let mut out = Predictions {
        p_alive: vec![0.0; n],
        expected_purchases: vec![0.0; n],
        expected_spend: vec![0.0; n],
        clv: vec![0.0; n],
    };
    runner.run(
        n,
        (
            (
                out.p_alive.as_mut_slice(),
                out.expected_purchases.as_mut_slice(),
            ),
            (out.expected_spend.as_mut_slice(), out.clv.as_mut_slice()),
        ),
        || (),
        |_, range, ((alive_out, purchases_out), (spend_out, clv_out))| {
            for (k, i) in range.enumerate() {
                let expected = if_alive[pair_of[i]];
                // The same expressions as `expected_purchases` and `discounted_clv`.
                let alive = bg.p_alive(x[i], t_x[i], t[i]);
                let spend = gg.expected_average_spend(x[i], mean_spend[i]);
                alive_out[k] = alive;
                purchases_out[k] = alive * expected.purchases;
                spend_out[k] = spend;
                clv_out[k] = expected.discounted * alive * spend * settings.margin;
            }
        },
    );
    Ok(out)
}
