//! Population stability index: Σ (aᵢ − eᵢ) · ln(aᵢ / eᵢ) over bins, with eᵢ the baseline
//! period's share of bin i and aᵢ the compared period's. A bin empty in either period gets the
//! floor share instead of 0, so the logarithm stays finite (the common convention; without it a
//! single new segment would make the index infinite).

/// The usual reading of a PSI value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    Stable,
    Watch,
    Shifted,
}

impl Flag {
    /// `stable` below `watch`, `shifted` at or above `shifted`, `watch` between.
    pub fn of(psi: f64, watch: f64, shifted: f64) -> Self {
        if psi >= shifted {
            Flag::Shifted
        } else if psi >= watch {
            Flag::Watch
        } else {
            Flag::Stable
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Flag::Stable => "stable",
            Flag::Watch => "watch",
            Flag::Shifted => "shifted",
        }
    }
}

/// PSI of `actual` counts against `baseline` counts, bin by bin (same order, same length).
/// `None` when either period has no rows: there is no distribution to compare.
pub fn population_stability(baseline: &[u64], actual: &[u64], floor: f64) -> Option<f64> {
    debug_assert_eq!(baseline.len(), actual.len());
    let total_e: u64 = baseline.iter().sum();
    let total_a: u64 = actual.iter().sum();
    if total_e == 0 || total_a == 0 {
        return None;
    }
    let share = |n: u64, total: u64| (n as f64 / total as f64).max(floor);
    Some(
        baseline
            .iter()
            .zip(actual)
            .map(|(&e, &a)| {
                let (e, a) = (share(e, total_e), share(a, total_a));
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

/// The 1-based ranks whose values cut `n` sorted values into `bins` bins of (nearly) equal
/// size: rank ⌈k·n/bins⌉ for k = 1..bins−1, without repeats. A value v then falls into bin
/// #{cut points < v}, so ties never straddle a cut.
pub fn quantile_ranks(n: u64, bins: u32) -> Vec<u64> {
    let bins = u64::from(bins);
    let mut ranks: Vec<u64> = (1..bins)
        .map(|k| (k * n).div_ceil(bins))
        .filter(|&r| r >= 1)
        .collect();
    ranks.dedup();
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_distributions_are_stable() {
        let psi = population_stability(&[10, 20, 30], &[100, 200, 300], 1e-4).expect("rows");
        assert!(psi.abs() < 1e-12, "{psi}");
    }

    #[test]
    fn psi_matches_a_hand_computation() {
        // Shares 0.5/0.5 → 0.25/0.75: (0.25−0.5)·ln(0.5) + (0.75−0.5)·ln(1.5).
        let psi = population_stability(&[50, 50], &[25, 75], 1e-4).expect("rows");
        let expected = (-0.25f64) * (0.5f64).ln() + 0.25 * (1.5f64).ln();
        assert!((psi - expected).abs() < 1e-12, "{psi} vs {expected}");
        assert!((expected - 0.274_653_072_167_027).abs() < 1e-12);
        assert_eq!(Flag::of(psi, 0.1, 0.25), Flag::Shifted);
    }

    #[test]
    fn an_empty_bin_is_floored_not_infinite() {
        let psi = population_stability(&[100, 0], &[90, 10], 1e-4).expect("rows");
        let expected = (0.9f64 - 1.0) * (0.9f64).ln() + (0.1 - 1e-4) * (0.1f64 / 1e-4).ln();
        assert!((psi - expected).abs() < 1e-12);
    }

    #[test]
    fn no_rows_is_no_index() {
        assert_eq!(population_stability(&[0, 0], &[1, 2], 1e-4), None);
    }

    #[test]
    fn flags_at_the_thresholds() {
        assert_eq!(Flag::of(0.099, 0.1, 0.25), Flag::Stable);
        assert_eq!(Flag::of(0.1, 0.1, 0.25), Flag::Watch);
        assert_eq!(Flag::of(0.25, 0.1, 0.25), Flag::Shifted);
    }

    #[test]
    fn deciles_of_twenty_values() {
        assert_eq!(quantile_ranks(20, 10), vec![2, 4, 6, 8, 10, 12, 14, 16, 18]);
        // Fewer values than bins: repeated ranks collapse.
        assert_eq!(quantile_ranks(3, 10), vec![1, 2, 3]);
        assert_eq!(quantile_ranks(0, 10), Vec::<u64>::new());
    }
}
