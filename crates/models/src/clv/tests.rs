//! Checks against independently computed values (python `math.lgamma`, scipy, lifetimes
//! 0.11.3) and recovery of known parameters from simulated customers.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Exp, Gamma};

use super::*;

/// The published CDNOW estimates (Fader, Hardie & Lee 2005), rounded as published.
const CDNOW_BG: BgNbd = BgNbd {
    r: 0.2426,
    alpha: 4.4135,
    a: 0.7929,
    b: 2.4258,
};
const CDNOW_GG: GammaGamma = GammaGamma {
    p: 6.2488,
    q: 3.7446,
    v: 15.4477,
};

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs()
}

#[track_caller]
fn assert_close(got: f64, want: f64, rel: f64) {
    assert!(
        close(got, want, rel),
        "got {got}, want {want} (±{rel:e} relative)"
    );
}

fn purchase(x: f64, t_x: f64, t: f64, weight: f64) -> PurchaseSummary {
    PurchaseSummary { x, t_x, t, weight }
}

#[test]
fn bgnbd_log_likelihood_by_hand() {
    // python3: from math import lgamma, log, exp
    //   r, al, a, b = 0.2426, 4.4135, 0.7929, 2.4258
    //   A1 = lgamma(r+x) - lgamma(r) + r*log(al); A2 = lgamma(a+b) + lgamma(b+x) - lgamma(b) - lgamma(a+b+x)
    //   log(exp(A1+A2) * ((al+T)**-(r+x) + (a/(b+x-1) * (al+tx)**-(r+x) if x > 0 else 0)))
    // (x, t_x, T) = (0, 0, 38.86) -> -0.5538248473788361; (2, 30.43, 38.86) -> -9.459681082320499
    assert_close(
        CDNOW_BG.row_log_likelihood(0.0, 0.0, 38.86),
        -0.553_824_847_378_836_1,
        1e-13,
    );
    assert_close(
        CDNOW_BG.row_log_likelihood(2.0, 30.43, 38.86),
        -9.459_681_082_320_499,
        1e-13,
    );
    let rows = [
        purchase(0.0, 0.0, 38.86, 1.0),
        purchase(2.0, 30.43, 38.86, 3.0),
    ];
    assert_close(
        CDNOW_BG.log_likelihood(&rows),
        -28.932_868_094_340_33,
        1e-13,
    );
}

#[test]
fn gamma_gamma_log_likelihood_by_hand() {
    // python3: p, q, v = 6.2488, 3.7446, 15.4477
    //   lgamma(p*x+q) - lgamma(p*x) - lgamma(q) + q*log(v) + (p*x-1)*log(m) + p*x*log(x) - (p*x+q)*log(v+x*m)
    // (x, m) = (2, 22.35) -> -3.550472243856774; (1, 11.77) -> -3.735946532869324. Both also
    // agree to 1e-14 with scipy's quad of x·Gamma(px, ν).pdf(x·m) over ν ~ Gamma(q, rate v).
    assert_close(
        CDNOW_GG.row_log_likelihood(2.0, 22.35),
        -3.550_472_243_856_774,
        1e-13,
    );
    assert_close(
        CDNOW_GG.row_log_likelihood(1.0, 11.77),
        -3.735_946_532_869_324,
        1e-13,
    );
}

#[test]
fn bgnbd_log_likelihood_survives_heavy_buyers() {
    // exp(A3) and exp(A4) are both 0.0 in f64 here (ln ≈ −1614 and −1606), so the
    // untransformed eq. 6 gives −inf. Same python as above but with log-sum-exp:
    // 385.0766740241614 (positive: t_x is continuous, so this is a density).
    assert_close(
        CDNOW_BG.row_log_likelihood(400.0, 50.0, 52.0),
        385.076_674_024_161_4,
        1e-12,
    );
}

/// (x, t_x, T, zbar) and lifetimes 0.11.3's values for the CDNOW parameters above:
/// `conditional_probability_alive`, `conditional_expected_number_of_purchases_up_to_time`
/// for t = 39 and t = 10.5, `conditional_expected_average_profit`, and
/// `customer_lifetime_value(bgf, …, time=12, discount_rate=0.01, freq="W")` (monthly steps of
/// 4.345 weeks). The first three customers are CDNOW's IDs 3, 1 and 2.
const LIFETIMES: [[f64; 9]; 5] = [
    [
        0.0,
        0.0,
        38.86,
        0.0,
        1.0,
        0.194_786_550_387_151_12,
        0.056_831_784_053_961_73,
        35.170_730_802_302_7,
        8.344_270_979_666_765,
    ],
    [
        2.0,
        30.43,
        38.86,
        22.35,
        0.726_607_997_300_156_2,
        1.225_911_199_899_228_5,
        0.373_837_113_649_062_64,
        24.658_576_042_828_464,
        36.278_443_781_828_43,
    ],
    [
        1.0,
        1.71,
        38.86,
        11.77,
        0.212_224_459_248_038_84,
        0.203_248_882_866_092_33,
        0.060_979_986_629_876_054,
        18.911_419_903_484_777,
        4.637_410_385_345_195,
    ],
    [
        7.0,
        29.43,
        35.14,
        73.74,
        0.774_549_841_350_271_6,
        4.332_014_548_171_652,
        1.377_093_744_983_993_3,
        71.462_824_919_223_34,
        366.947_848_559_598,
    ],
    [
        40.0,
        35.0,
        38.0,
        30.0,
        0.731_811_503_722_194_3,
        20.766_719_391_803_63,
        6.690_853_637_532_124,
        30.056_160_580_553_914,
        737.034_937_364_045_4,
    ],
];

#[test]
fn predictions_match_lifetimes() {
    for [x, t_x, t, zbar, alive, e39, e10, spend, clv] in LIFETIMES {
        assert_close(CDNOW_BG.p_alive(x, t_x, t), alive, 1e-12);
        assert_close(CDNOW_BG.expected_purchases(39.0, x, t_x, t), e39, 1e-10);
        assert_close(CDNOW_BG.expected_purchases(10.5, x, t_x, t), e10, 1e-10);
        assert_close(CDNOW_GG.expected_average_spend(x, zbar), spend, 1e-12);
        let got = discounted_clv(&CDNOW_BG, &CDNOW_GG, x, t_x, t, zbar, 12, 4.345, 0.01, 1.0);
        assert_close(got, clv, 1e-10);
    }
}

#[test]
fn clv_scales_with_margin_and_is_zero_without_steps() {
    let [x, t_x, t, zbar, ..] = LIFETIMES[1];
    let full = discounted_clv(&CDNOW_BG, &CDNOW_GG, x, t_x, t, zbar, 12, 4.345, 0.01, 1.0);
    let third = discounted_clv(&CDNOW_BG, &CDNOW_GG, x, t_x, t, zbar, 12, 4.345, 0.01, 0.3);
    assert_close(third, 0.3 * full, 1e-14);
    assert_eq!(
        discounted_clv(&CDNOW_BG, &CDNOW_GG, x, t_x, t, zbar, 0, 4.345, 0.01, 1.0),
        0.0
    );
}

#[test]
fn expected_purchases_is_continuous_through_a_equal_one() {
    // The textbook formula is 0/0 at a = 1; the value there must sit between its neighbours.
    let at = |a: f64| BgNbd { a, ..CDNOW_BG }.expected_purchases(39.0, 3.0, 20.0, 38.0);
    let (below, one, above) = (at(1.0 - 1e-6), at(1.0), at(1.0 + 1e-6));
    assert!(one.is_finite() && one > 0.0);
    assert_close(one, (below + above) / 2.0, 1e-9);
}

#[test]
fn expected_purchases_near_the_common_dropout_limit() {
    // a, b → ∞ with a/(a+b) = p: every customer drops out with probability p, and
    // E[purchases | alive] = (1/p)·[1 − ((α+T)/(α+T+p·t))^(r+x)] (integrating
    // (1 − e^(−λpt))/p over the posterior Gamma(r+x, α+T) of λ).
    let (p, scale) = (0.3, 1e6);
    let m = BgNbd {
        a: p * scale,
        b: (1.0 - p) * scale,
        ..CDNOW_BG
    };
    let (x, t, horizon) = (2.0, 38.86, 39.0);
    let base = m.alpha + t;
    let limit = (1.0 - (base / (base + p * horizon)).powf(m.r + x)) / p;
    assert_close(m.expected_purchases_if_alive(horizon, x, t), limit, 1e-5);
}

#[test]
fn expected_purchases_edge_cases() {
    assert_eq!(CDNOW_BG.expected_purchases(0.0, 2.0, 30.43, 38.86), 0.0);
    assert_eq!(CDNOW_BG.expected_purchases(-1.0, 2.0, 30.43, 38.86), 0.0);
    // A far horizon and a very heavy buyer stay finite (no overflow in ₂F₁).
    let far = CDNOW_BG.expected_purchases(5_000.0, 500.0, 38.0, 38.86);
    assert!(far.is_finite() && far > 0.0, "{far}");
    assert!(
        CDNOW_BG
            .expected_purchases(39.0, f64::NAN, 1.0, 2.0)
            .is_nan()
    );
}

#[test]
fn population_mean_spend_without_repeats_and_nan_when_it_does_not_exist() {
    let mean = CDNOW_GG.p * CDNOW_GG.v / (CDNOW_GG.q - 1.0);
    assert_close(CDNOW_GG.expected_average_spend(0.0, 0.0), mean, 1e-15);
    let heavy_tail = GammaGamma { q: 0.9, ..CDNOW_GG };
    assert!(heavy_tail.expected_average_spend(3.0, 10.0).is_nan());
}

/// Customers from the BG/NBD process with T uniform in whole days over a year, in weeks.
/// Purchase times are continuous; t_x is floored to whole days like dated orders are.
fn simulate_bgnbd(truth: BgNbd, customers: usize, seed: u64) -> Vec<PurchaseSummary> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rate = Gamma::new(truth.r, 1.0 / truth.alpha).expect("valid gamma");
    let dropout = Beta::new(truth.a, truth.b).expect("valid beta");
    let mut counts: BTreeMap<(u32, u32, u32), f64> = BTreeMap::new();
    for _ in 0..customers {
        let lambda = rate.sample(&mut rng);
        let p = dropout.sample(&mut rng);
        let t_days = rng.random_range(0..365_u32);
        let t = f64::from(t_days) / 7.0;
        let wait = Exp::new(lambda).expect("positive rate");
        let (mut x, mut now, mut last) = (0_u32, 0.0, 0.0);
        loop {
            now += wait.sample(&mut rng);
            if now > t {
                break;
            }
            x += 1;
            last = now;
            if rng.random::<f64>() < p {
                break;
            }
        }
        let t_x_days = ((last * 7.0).floor() as u32).min(t_days);
        *counts.entry((x, t_x_days, t_days)).or_default() += 1.0;
    }
    counts
        .into_iter()
        .map(|((x, t_x, t), weight)| {
            purchase(
                f64::from(x),
                f64::from(t_x) / 7.0,
                f64::from(t) / 7.0,
                weight,
            )
        })
        .collect()
}

/// Customers with x > 0 from the Gamma-Gamma process; x from a shifted geometric.
fn simulate_gamma_gamma(truth: GammaGamma, customers: usize, seed: u64) -> Vec<SpendSummary> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scale_rate = Gamma::new(truth.q, 1.0 / truth.v).expect("valid gamma");
    (0..customers)
        .map(|_| {
            let mut x = 1_u32;
            while x < 50 && rng.random::<f64>() < 0.6 {
                x += 1;
            }
            let x = f64::from(x);
            let nu = scale_rate.sample(&mut rng);
            // The sum of x Gamma(p, rate ν) spends is Gamma(p·x, rate ν).
            let total = Gamma::new(truth.p * x, 1.0 / nu)
                .expect("valid gamma")
                .sample(&mut rng);
            SpendSummary {
                x,
                mean_spend: total / x,
                weight: 1.0,
            }
        })
        .collect()
}

#[test]
fn fit_bgnbd_recovers_simulated_parameters() {
    let truth = BgNbd {
        r: 0.5,
        alpha: 6.0,
        a: 0.8,
        b: 2.5,
    };
    let rows = simulate_bgnbd(truth, 40_000, 7);
    let (fit, report) = fit_bgnbd(&rows).expect("fit");
    assert!(report.converged);
    assert_eq!(report.customers, 40_000.0);
    assert_eq!(report.unique_rows, rows.len() as u64);
    assert_close(report.log_likelihood, fit.log_likelihood(&rows), 1e-11);
    // Tolerances are about three standard errors at this sample size.
    assert_close(fit.r, truth.r, 0.08);
    assert_close(fit.alpha, truth.alpha, 0.10);
    assert_close(fit.a, truth.a, 0.25);
    assert_close(fit.b, truth.b, 0.35);
    // The truth must not beat the maximum.
    assert!(truth.log_likelihood(&rows) <= report.log_likelihood);
}

#[test]
fn fit_gamma_gamma_recovers_simulated_parameters() {
    let truth = GammaGamma {
        p: 6.0,
        q: 3.5,
        v: 15.0,
    };
    let rows = simulate_gamma_gamma(truth, 20_000, 11);
    let (fit, report) = fit_gamma_gamma(&rows).expect("fit");
    assert!(report.converged);
    assert_close(report.log_likelihood, fit.log_likelihood(&rows), 1e-11);
    assert_close(fit.p, truth.p, 0.08);
    assert_close(fit.q, truth.q, 0.10);
    assert_close(fit.v, truth.v, 0.15);
    assert!(truth.log_likelihood(&rows) <= report.log_likelihood);
}

#[test]
fn weights_are_customers() {
    // Two rows of weight 2 and 3 fit exactly like five unweighted rows.
    let weighted = [
        purchase(0.0, 0.0, 30.0, 4.0),
        purchase(2.0, 20.0, 30.0, 2.0),
        purchase(5.0, 28.0, 35.0, 3.0),
        purchase(1.0, 3.0, 35.0, 2.0),
    ];
    let expanded: Vec<PurchaseSummary> = weighted
        .iter()
        .flat_map(|row| {
            std::iter::repeat_n(purchase(row.x, row.t_x, row.t, 1.0), row.weight as usize)
        })
        .collect();
    assert_close(
        CDNOW_BG.log_likelihood(&weighted),
        CDNOW_BG.log_likelihood(&expanded),
        1e-13,
    );
}

#[test]
fn fits_are_deterministic() {
    let rows = simulate_bgnbd(CDNOW_BG, 3_000, 3);
    let (a, ra) = fit_bgnbd(&rows).expect("fit");
    let (b, rb) = fit_bgnbd(&rows).expect("fit");
    assert_eq!(a, b);
    assert_eq!(
        (ra.iterations, ra.log_likelihood),
        (rb.iterations, rb.log_likelihood)
    );
}

#[test]
fn input_errors_name_the_row() {
    assert!(matches!(fit_bgnbd(&[]), Err(ClvError::NoRows)));
    assert!(matches!(
        fit_bgnbd(&[purchase(1.0, 1.0, 2.0, 0.0)]),
        Err(ClvError::NoRows)
    ));
    assert!(matches!(
        fit_bgnbd(&[purchase(0.0, 0.0, 2.0, 5.0)]),
        Err(ClvError::NoRepeatPurchases)
    ));
    let rows = [
        purchase(1.0, 1.0, 2.0, 1.0),
        purchase(1.0, f64::NAN, 2.0, 1.0),
    ];
    let err = fit_bgnbd(&rows)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(err, "row 1: t_x is NaN, not a finite number");
    let rows = [purchase(1.0, 3.0, 2.0, 1.0)];
    assert!(matches!(
        fit_bgnbd(&rows),
        Err(ClvError::InvalidRow { row: 0, .. })
    ));
    let spends = [SpendSummary {
        x: 0.0,
        mean_spend: 10.0,
        weight: 1.0,
    }];
    assert!(matches!(
        fit_gamma_gamma(&spends),
        Err(ClvError::InvalidRow { row: 0, .. })
    ));
    let spends = [SpendSummary {
        x: 2.0,
        mean_spend: f64::INFINITY,
        weight: 1.0,
    }];
    assert!(matches!(
        fit_gamma_gamma(&spends),
        Err(ClvError::NonFinite {
            row: 0,
            field: "mean_spend",
            ..
        })
    ));
}

fn read_csv(path: &std::path::Path) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.split(',')
                .map(|v| v.trim().parse::<f64>().unwrap_or(f64::NAN))
                .collect()
        })
        .collect()
}

/// The CDNOW reference fit. Needs lifetimes' dataset folder (not shipped with segflow):
/// `SEGFLOW_CDNOW_DIR=…/lifetimes/datasets cargo test -p segflow-models cdnow -- --ignored --nocapture`.
#[test]
#[ignore = "needs SEGFLOW_CDNOW_DIR pointing at lifetimes' datasets folder"]
fn cdnow_reproduces_the_published_estimates() {
    let dir = std::path::PathBuf::from(
        std::env::var("SEGFLOW_CDNOW_DIR").expect("set SEGFLOW_CDNOW_DIR"),
    );
    // ID, frequency (x), recency (t_x), T in weeks.
    let summary = read_csv(&dir.join("cdnow_customers_summary.csv"));
    let mut unique: BTreeMap<[u64; 3], f64> = BTreeMap::new();
    for row in &summary {
        *unique
            .entry([row[1].to_bits(), row[2].to_bits(), row[3].to_bits()])
            .or_default() += 1.0;
    }
    let rows: Vec<PurchaseSummary> = unique
        .into_iter()
        .map(|([x, t_x, t], weight)| {
            purchase(
                f64::from_bits(x),
                f64::from_bits(t_x),
                f64::from_bits(t),
                weight,
            )
        })
        .collect();
    let (bg, report) = fit_bgnbd(&rows).expect("BG/NBD fit");
    println!("BG/NBD {bg:?}\n  {report:?}");
    assert_eq!(report.customers, 2357.0);
    assert_close(bg.r, 0.2426, 5e-4);
    assert_close(bg.alpha, 4.4135, 5e-4);
    assert_close(bg.a, 0.7929, 5e-4);
    assert_close(bg.b, 2.4258, 5e-4);
    assert_close(report.log_likelihood, -9582.4, 1e-5);

    // ID, x, t_x, T, zbar (mean repeat spend).
    let spend = read_csv(&dir.join("cdnow_customers_summary_with_transactions.csv"));
    let mut unique: BTreeMap<[u64; 2], f64> = BTreeMap::new();
    for row in spend.iter().filter(|row| row[1] > 0.0) {
        *unique
            .entry([row[1].to_bits(), row[4].to_bits()])
            .or_default() += 1.0;
    }
    let rows: Vec<SpendSummary> = unique
        .into_iter()
        .map(|([x, m], weight)| SpendSummary {
            x: f64::from_bits(x),
            mean_spend: f64::from_bits(m),
            weight,
        })
        .collect();
    let (gg, report) = fit_gamma_gamma(&rows).expect("Gamma-Gamma fit");
    println!("Gamma-Gamma {gg:?}\n  {report:?}");
    assert_eq!(report.customers, 946.0);
    assert_close(gg.p, 6.2488, 5e-4);
    assert_close(gg.q, 3.7446, 5e-4);
    assert_close(gg.v, 15.4477, 5e-4);
}

#[test]
fn too_few_customers_give_a_flagged_boundary_fit() {
    // 20 customers: the BG/NBD likelihood keeps rising as a and b grow together (a common
    // dropout probability), and for 8 spenders the Gamma-Gamma one as p grows and v shrinks.
    // The fits return the best point inside the search box, flagged, with finite predictions.
    let rows = simulate_bgnbd(CDNOW_BG, 20, 0);
    let (bg, report) = fit_bgnbd(&rows).expect("fit");
    assert!(!report.converged, "{bg:?} {report:?}");
    assert!(report.log_likelihood.is_finite());
    assert!(bg.a > 1e5 && bg.b > 1e5, "{bg:?}");
    let purchases = bg.expected_purchases(10.0, 2.0, 20.0, 30.0);
    assert!(purchases.is_finite() && purchases > 0.0, "{purchases}");

    let spends = simulate_gamma_gamma(CDNOW_GG, 8, 10);
    let (gg, report) = fit_gamma_gamma(&spends).expect("fit");
    assert!(!report.converged, "{gg:?} {report:?}");
    assert!(report.log_likelihood.is_finite());
    assert!(gg.expected_average_spend(2.0, 20.0).is_finite(), "{gg:?}");
}

#[test]
fn time_unit_and_currency_only_rescale_alpha_and_v() {
    let weeks = simulate_bgnbd(CDNOW_BG, 5_000, 5);
    let days: Vec<PurchaseSummary> = weeks
        .iter()
        .map(|row| purchase(row.x, row.t_x * 7.0, row.t * 7.0, row.weight))
        .collect();
    let (w, _) = fit_bgnbd(&weeks).expect("fit");
    let (d, _) = fit_bgnbd(&days).expect("fit");
    for (got, want) in [(d.r, w.r), (d.alpha, 7.0 * w.alpha), (d.a, w.a), (d.b, w.b)] {
        assert_close(got, want, 1e-4);
    }
    let dollars = simulate_gamma_gamma(CDNOW_GG, 3_000, 5);
    let cents: Vec<SpendSummary> = dollars
        .iter()
        .map(|row| SpendSummary {
            mean_spend: row.mean_spend * 100.0,
            ..*row
        })
        .collect();
    let (usd, _) = fit_gamma_gamma(&dollars).expect("fit");
    let (ct, _) = fit_gamma_gamma(&cents).expect("fit");
    for (got, want) in [(ct.p, usd.p), (ct.q, usd.q), (ct.v, 100.0 * usd.v)] {
        assert_close(got, want, 1e-4);
    }
}

/// lifetimes 0.11.3's `datasets/cdnow_customers_summary_with_transactions.csv` (ID, x, t_x,
/// T in weeks, zbar), shipped here so that the CDNOW reproduction runs with every test run.
/// Its (x, t_x, T) equal those of `cdnow_customers_summary.csv` that the ignored test reads.
const CDNOW_SUMMARY: &str = include_str!("testdata/cdnow_customers_summary_with_transactions.csv");

fn cdnow_rows() -> (Vec<PurchaseSummary>, Vec<SpendSummary>) {
    let mut purchases: BTreeMap<[u64; 3], f64> = BTreeMap::new();
    let mut spends: BTreeMap<[u64; 2], f64> = BTreeMap::new();
    for line in CDNOW_SUMMARY
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
    {
        let row: Vec<f64> = line
            .split(',')
            .map(|v| v.trim().parse::<f64>().unwrap_or(f64::NAN))
            .collect();
        *purchases
            .entry([row[1].to_bits(), row[2].to_bits(), row[3].to_bits()])
            .or_default() += 1.0;
        if row[1] > 0.0 {
            *spends
                .entry([row[1].to_bits(), row[4].to_bits()])
                .or_default() += 1.0;
        }
    }
    let purchases = purchases
        .into_iter()
        .map(|([x, t_x, t], weight)| {
            purchase(
                f64::from_bits(x),
                f64::from_bits(t_x),
                f64::from_bits(t),
                weight,
            )
        })
        .collect();
    let spends = spends
        .into_iter()
        .map(|([x, m], weight)| SpendSummary {
            x: f64::from_bits(x),
            mean_spend: f64::from_bits(m),
            weight,
        })
        .collect();
    (purchases, spends)
}

/// The maximum-likelihood estimates on CDNOW to 6 significant digits (the published ones are
/// rounded to 4, and the LL to one decimal), within the 1e-5 relative that the optimality
/// test guarantees; always run, unlike the test above, because the summary is shipped.
#[test]
fn cdnow_estimates_from_the_shipped_summary() {
    let (purchases, spends) = cdnow_rows();
    let (bg, report) = fit_bgnbd(&purchases).expect("BG/NBD fit");
    assert_eq!(report.customers, 2357.0);
    assert!(report.converged, "{report:?}");
    assert_close(bg.r, 0.242_593, 1e-5);
    assert_close(bg.alpha, 4.413_531, 1e-5);
    assert_close(bg.a, 0.792_889, 1e-5);
    assert_close(bg.b, 2.425_762, 1e-5);
    assert_close(report.log_likelihood, -9_582.425_6, 1e-8);
    let (gg, report) = fit_gamma_gamma(&spends).expect("Gamma-Gamma fit");
    assert_eq!(report.customers, 946.0);
    assert!(report.converged, "{report:?}");
    assert_close(gg.p, 6.248_82, 1e-5);
    assert_close(gg.q, 3.744_59, 1e-5);
    assert_close(gg.v, 15.447_7, 1e-5);
}

#[test]
fn digamma_known_values() {
    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
    assert_close(digamma(1.0), -EULER_GAMMA, 1e-15);
    assert_close(
        digamma(0.5),
        -EULER_GAMMA - 2.0 * std::f64::consts::LN_2,
        1e-15,
    );
    // ψ(x) = ψ(x + 1) − 1/x: ≈ −1/x − γ for tiny x.
    assert_close(
        digamma(1e-8),
        -1e8 - EULER_GAMMA + 1.644_934_066_848_226 * 1e-8,
        1e-15,
    );
    // ln x − 1/(2x) − 1/(12x²) + 1/(120x⁴) after ψ(x) = ψ(x + n) − Σ 1/(x + k) up to 10⁴.
    assert_close(digamma(100.0), 4.600_161_852_738_087, 1e-14);
    assert_close(digamma(3.7), 1.167_153_539_361_51, 1e-14);
    assert!(digamma(0.0).is_nan() && digamma(-3.5).is_nan());
}

/// Five-point central differences of `f` in each coordinate, step 1e-3 of max(|θᵢ|, 1):
/// truncation O(h⁴) stays near 1e-12, and the step is large enough that the rounding of
/// log-gamma differences at the extreme points (~1e-11 per customer) stays near 1e-8. They
/// are taken of the row-by-row textbook likelihood, so that the check does not share the
/// fit's per-x grouping either.
fn finite_differences(f: &dyn Fn(&[f64]) -> f64, theta: &[f64]) -> Vec<f64> {
    let mut probe = theta.to_vec();
    (0..theta.len())
        .map(|i| {
            let h = 1e-3 * theta[i].abs().max(1.0);
            let mut at = |k: f64| {
                probe[i] = theta[i] + k * h;
                let v = f(&probe);
                probe[i] = theta[i];
                v
            };
            (at(-2.0) - 8.0 * at(-1.0) + 8.0 * at(1.0) - at(2.0)) / (12.0 * h)
        })
        .collect()
}

#[track_caller]
fn assert_gradient(analytic: &[f64], numeric: &[f64], scale: f64, at: &dyn std::fmt::Debug) {
    for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        // Per customer; the differences carry up to ~1e-8 of rounding and truncation.
        let (a, n) = (a / scale, n / scale);
        assert!(
            (a - n).abs() <= 1e-7 * (1.0 + a.abs()),
            "component {i} at {at:?}: analytic {a:e}, finite differences {n:e} (per customer)"
        );
    }
}

#[test]
fn bgnbd_gradient_matches_finite_differences() {
    let mut rows = simulate_bgnbd(CDNOW_BG, 3_000, 21);
    // Heavy buyers, where the dropout term dominates the row likelihood.
    rows.push(purchase(400.0, 50.0, 52.0, 2.0));
    rows.push(purchase(60.0, 51.5, 52.0, 1.0));
    let (cdnow, _) = cdnow_rows();
    let runner = parallel::Runner::new(Some(2), 256);
    let points = [
        CDNOW_BG,
        BgNbd {
            r: 0.01,
            alpha: 100.0,
            a: 50.0,
            b: 1e4,
        },
        BgNbd {
            r: 20.0,
            alpha: 0.05,
            a: 0.01,
            b: 0.05,
        },
        // Towards the common-dropout boundary of small data sets.
        BgNbd {
            r: 0.3,
            alpha: 5.0,
            a: 3e5,
            b: 7e5,
        },
        BgNbd {
            r: 1e-5,
            alpha: 1e-3,
            a: 1.0,
            b: 1.0,
        },
    ];
    for data in [&rows, &cdnow] {
        let scale: f64 = data.iter().map(|r| r.weight).sum();
        for m in points {
            let theta = [m.r.ln(), m.alpha.ln(), m.a.ln(), m.b.ln()];
            let at = |t: &[f64]| {
                let m = BgNbd {
                    r: t[0].exp(),
                    alpha: t[1].exp(),
                    a: t[2].exp(),
                    b: t[3].exp(),
                };
                m.log_likelihood(data)
            };
            let (ll, analytic) =
                bgnbd::log_likelihood_and_gradient(data, &m, &runner).expect("rows");
            // Equal up to the rounding of log-gamma differences, which at the extreme points
            // cancel to a millionth of their size (grouped per x here, per row there).
            assert_close(ll, m.log_likelihood(data), 1e-9);
            assert_gradient(&analytic, &finite_differences(&at, &theta), scale, &m);
        }
    }
}

#[test]
fn gamma_gamma_gradient_matches_finite_differences() {
    let rows = simulate_gamma_gamma(CDNOW_GG, 3_000, 22);
    let (_, cdnow) = cdnow_rows();
    let runner = parallel::Runner::new(Some(2), 256);
    let points = [
        CDNOW_GG,
        GammaGamma {
            p: 0.05,
            q: 1.5,
            v: 0.2,
        },
        GammaGamma {
            p: 200.0,
            q: 80.0,
            v: 1e3,
        },
        // Towards the "everyone spends their own mean" boundary of small data sets.
        GammaGamma {
            p: 1e5,
            q: 2.0,
            v: 1e-4,
        },
    ];
    for data in [&rows, &cdnow] {
        let scale: f64 = data.iter().map(|r| r.weight).sum();
        for m in points {
            let theta = [m.p.ln(), m.q.ln(), m.v.ln()];
            let at = |t: &[f64]| {
                let m = GammaGamma {
                    p: t[0].exp(),
                    q: t[1].exp(),
                    v: t[2].exp(),
                };
                m.log_likelihood(data)
            };
            let (ll, analytic) =
                gamma_gamma::log_likelihood_and_gradient(data, &m, &runner).expect("rows");
            // Equal up to the rounding of log-gamma differences, which at the extreme points
            // cancel to a millionth of their size (grouped per x here, per row there).
            assert_close(ll, m.log_likelihood(data), 1e-9);
            assert_gradient(&analytic, &finite_differences(&at, &theta), scale, &m);
        }
    }
}

#[test]
fn fits_do_not_depend_on_the_thread_count() {
    let purchases = simulate_bgnbd(CDNOW_BG, 20_000, 9);
    let spends = simulate_gamma_gamma(CDNOW_GG, 5_000, 9);
    let fit = |threads: usize| {
        // Small chunks, so that every thread count splits the rows differently.
        let runner = parallel::Runner::new(Some(threads), 700);
        let (bg, bg_report) = bgnbd::fit_bgnbd_with(&purchases, &runner).expect("fit");
        let (gg, gg_report) = gamma_gamma::fit_gamma_gamma_with(&spends, &runner).expect("fit");
        (
            bg,
            gg,
            bg_report.log_likelihood.to_bits(),
            gg_report.log_likelihood.to_bits(),
            bg_report.iterations,
            gg_report.iterations,
        )
    };
    let one = fit(1);
    assert_eq!(fit(2), one);
    assert_eq!(fit(3), one);
}

#[test]
fn batch_predictions_equal_the_per_customer_ones_bit_for_bit() {
    let settings = PredictionSettings {
        horizon: 39.0,
        steps: 12,
        step_length: 4.345,
        discount_per_step: 0.01,
        margin: 0.3,
    };
    let mut customers: Vec<[f64; 4]> = LIFETIMES
        .iter()
        .map(|&[x, t_x, t, zbar, ..]| [x, t_x, t, zbar])
        .collect();
    // Many customers sharing (x, T) with different t_x and spends, plus a NaN.
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for _ in 0..3_000 {
        let x = f64::from(rng.random_range(0..8_u32));
        let t = f64::from(rng.random_range(1..60_u32)) / 7.0;
        let t_x = if x > 0.0 {
            t * rng.random::<f64>()
        } else {
            0.0
        };
        let spend = if x > 0.0 {
            5.0 + 50.0 * rng.random::<f64>()
        } else {
            0.0
        };
        customers.push([x, t_x, t, spend]);
    }
    customers.push([f64::NAN, 1.0, 2.0, 3.0]);
    let column = |k: usize| customers.iter().map(|c| c[k]).collect::<Vec<f64>>();
    let (x, t_x, t, spend) = (column(0), column(1), column(2), column(3));
    for threads in [1, 2, 3] {
        let runner = parallel::Runner::new(Some(threads), 97);
        let got = predict::predict_with(
            &CDNOW_BG,
            &CDNOW_GG,
            &settings,
            [&x, &t_x, &t, &spend],
            &runner,
        )
        .expect("equal lengths");
        for (i, &[x, t_x, t, m]) in customers.iter().enumerate() {
            let want = [
                CDNOW_BG.p_alive(x, t_x, t),
                CDNOW_BG.expected_purchases(settings.horizon, x, t_x, t),
                CDNOW_GG.expected_average_spend(x, m),
                discounted_clv(
                    &CDNOW_BG,
                    &CDNOW_GG,
                    x,
                    t_x,
                    t,
                    m,
                    settings.steps,
                    settings.step_length,
                    settings.discount_per_step,
                    settings.margin,
                ),
            ];
            let got = [
                got.p_alive[i],
                got.expected_purchases[i],
                got.expected_spend[i],
                got.clv[i],
            ];
            assert_eq!(
                got.map(f64::to_bits),
                want.map(f64::to_bits),
                "customer {i}: {got:?} vs {want:?}"
            );
        }
    }
    let short = predict_customers(&CDNOW_BG, &CDNOW_GG, &settings, &x, &t_x, &t[1..], &spend);
    assert!(matches!(
        short,
        Err(ClvError::ColumnLengths { t: 3_005, .. })
    ));
}
