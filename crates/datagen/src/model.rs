//! The generative model: customers with a latent purchase rate, spend level and lifetime.

use chrono::{Days, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Gamma, LogNormal};

use crate::Scale;

#[derive(Debug, Clone, PartialEq)]
pub struct PostalArea {
    /// Five digits, Swedish style without the space (`11420`).
    pub postal_code: String,
    pub region: &'static str,
    /// Geodemographic group `A`..`K` and type `A01`..: a Mosaic-style classification.
    pub geo_group: String,
    pub geo_type: String,
    pub median_income: i64,
    pub households: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub customer_id: String,
    pub email: String,
    pub postal_code: String,
    pub birth_year: i32,
    pub signup_date: NaiveDate,
    pub channel: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub order_id: i64,
    pub customer_id: String,
    pub order_date: NaiveDate,
    /// Amount in cents, written as a decimal with two places.
    pub amount_cents: i64,
    pub category: &'static str,
}

const REGIONS: [&str; 6] = [
    "Stockholm",
    "Uppsala",
    "Skane",
    "Vastra Gotaland",
    "Ostergotland",
    "Norrland",
];
const GROUPS: &str = "ABCDEFGHIJK";
const CATEGORIES: [&str; 6] = [
    "apparel",
    "shoes",
    "home",
    "beauty",
    "sports",
    "electronics",
];
const CHANNELS: [&str; 3] = ["web", "store", "app"];

/// Mixes a seed and a stream number into an independent RNG.
pub(crate) fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

pub(crate) fn postal_areas(scale: &Scale) -> Vec<PostalArea> {
    let mut rng = stream(scale.seed, u64::MAX);
    (0..scale.postal_areas)
        .map(|i| {
            let group_index = rng.random_range(0..GROUPS.len());
            let group = &GROUPS[group_index..=group_index];
            // Richer groups earlier in the alphabet, with noise.
            let base = 520_000 - 28_000 * group_index as i64;
            PostalArea {
                postal_code: format!("{}", 10_000 + (i * 7_919) % 89_000),
                region: REGIONS[i * REGIONS.len() / scale.postal_areas.max(1)],
                geo_group: group.to_string(),
                geo_type: format!("{group}{:02}", rng.random_range(1..=4)),
                median_income: base + rng.random_range(-40_000..=40_000),
                households: rng.random_range(300..=4_000),
            }
        })
        .collect()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
}

/// One customer and their orders; order ids are assigned by the caller.
pub(crate) fn customer(
    scale: &Scale,
    index: usize,
    areas: &[PostalArea],
) -> (Customer, Vec<Order>) {
    let mut rng = stream(scale.seed, index as u64);
    let start = date(scale.first_year, 1, 1);
    let end = date(scale.last_year + 1, 1, 1);
    let span_days = (end - start).num_days().max(1) as u64;
    let customer_id = format!("C{:07}", index + 1);
    let area = &areas[rng.random_range(0..areas.len())];
    // 2% of customers have a postal code the reference table does not know, as in real data.
    let postal_code = if rng.random_bool(0.02) {
        format!("{}", 99_000 + rng.random_range(0..900))
    } else {
        area.postal_code.clone()
    };
    let signup = start + Days::new(rng.random_range(0..span_days));
    // Purchase rate per year: gamma-distributed around the mean needed for the target volume.
    // With signup uniform over the history S and lifetime ~ Exp(mean 0.6·S), a customer is
    // active E[min(S − signup, lifetime)] = 0.6·S·(1 − 0.6·(1 − e^(−1/0.6))) ≈ 0.308·S.
    let years = span_days as f64 / 365.25;
    let active_share = 0.6 * (1.0 - 0.6 * (1.0 - (-1.0_f64 / 0.6).exp()));
    let mean_rate = scale.orders_per_customer / (years * active_share).max(0.1);
    let rate = Gamma::new(1.5, mean_rate / 1.5).map_or(mean_rate, |g| g.sample(&mut rng));
    let lifetime_days =
        Exp::new(1.0 / (span_days as f64 * 0.6)).map_or(span_days as f64, |e| e.sample(&mut rng));
    let churn = signup + Days::new(lifetime_days as u64);
    let spend = LogNormal::new(
        6.3 + 0.08 * (10 - GROUPS.find(&area.geo_group).unwrap_or(5) as i32) as f64 * 0.5,
        0.7,
    )
    .map_or(500.0, |d| d.sample(&mut rng));
    let customer = Customer {
        customer_id: customer_id.clone(),
        email: format!("{}@example.com", customer_id.to_lowercase()),
        postal_code,
        birth_year: rng.random_range(1940..=2005),
        signup_date: signup,
        channel: CHANNELS[rng.random_range(0..CHANNELS.len())],
    };
    let mut orders = Vec::new();
    let mut day = signup;
    let gap = Exp::new(rate.max(0.05) / 365.25).ok();
    while let Some(g) = &gap {
        day = day + Days::new(g.sample(&mut rng).ceil() as u64);
        if day >= end || day >= churn {
            break;
        }
        // A lapse ends the orders like a churn date would; the earlier ones are untouched.
        if scale
            .lapse
            .is_some_and(|l| l.applies_to(index + 1) && day >= date(l.from_year, 1, 1))
        {
            break;
        }
        let amount =
            (spend * LogNormal::new(0.0, 0.35).map_or(1.0, |d| d.sample(&mut rng)) * 100.0).round();
        orders.push(Order {
            order_id: 0,
            customer_id: customer_id.clone(),
            order_date: day,
            amount_cents: (amount as i64).max(100),
            category: CATEGORIES[rng.random_range(0..CATEGORIES.len())],
        });
    }
    (customer, orders)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_is_the_same_at_any_scale() {
        let small = Scale {
            customers: 10,
            ..Scale::demo()
        };
        let large = Scale {
            customers: 10_000,
            ..Scale::demo()
        };
        let areas = postal_areas(&small);
        assert_eq!(customer(&small, 7, &areas), customer(&large, 7, &areas));
    }

    #[test]
    fn a_lapse_drops_exactly_the_lapsed_customers_later_orders() {
        let plain = Scale::demo();
        let lapsed = Scale {
            lapse: Some(crate::Lapse {
                from_year: 2024,
                every: 10,
            }),
            ..Scale::demo()
        };
        let areas = postal_areas(&plain);
        for i in 0..200 {
            let (c0, o0) = customer(&plain, i, &areas);
            let (c1, o1) = customer(&lapsed, i, &areas);
            assert_eq!(c0, c1);
            if (i + 1) % 10 == 0 {
                let kept: Vec<&Order> = o0
                    .iter()
                    .filter(|o| o.order_date < date(2024, 1, 1))
                    .collect();
                assert_eq!(o1.iter().collect::<Vec<_>>(), kept);
            } else {
                assert_eq!(o0, o1);
            }
        }
    }

    #[test]
    fn orders_fall_inside_the_history() {
        let scale = Scale::demo();
        let areas = postal_areas(&scale);
        let total: usize = (0..2000)
            .map(|i| {
                let (c, orders) = customer(&scale, i, &areas);
                for o in &orders {
                    assert!(o.order_date >= c.signup_date && o.order_date < date(2026, 1, 1));
                    assert!(o.amount_cents >= 100);
                }
                orders.len()
            })
            .sum();
        let mean = total as f64 / 2000.0;
        assert!(
            (8.0..12.0).contains(&mean),
            "mean orders per customer {mean}"
        );
    }
}
