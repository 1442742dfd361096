//! Stable cluster ids across yearly refits.
//!
//! A refit numbers its clusters by size, so "cluster 2" could be last year's "cluster 0".
//! Reports that follow a segment over years need the same id for the same group, so the
//! new clusters are matched one to one with last year's by the assignment of minimum total
//! dissimilarity (Hungarian algorithm, exact, O(k³)), measured in last year's z units with
//! last year's categorical weight: the scale the previous ids were defined in.

use super::distance::distance;
use super::{ClusterError, Model};

/// Gives every centroid of `new` the id of the `previous` centroid it is matched with. When
/// `new` has more clusters, the unmatched ones take the next ids after the largest previous
/// id, in `new`'s order; when it has fewer, some previous ids go unused. The order of
/// `new.centroids` (and so of `sizes`) is kept.
///
/// Categorical codes are compared as numbers, so both models must code categories with the
/// same dictionary: before calling this, translate `previous`' mode codes into the new
/// fit's codes (a category the new data lacks can become `u32::MAX`, which matches nothing).
pub fn align_ids(new: &mut Model, previous: &Model) -> Result<(), ClusterError> {
    let p = previous.means.len();
    let q = |m: &Model| m.centroids.first().map_or(0, |c| c.categorical.len());
    if new.means.len() != p || q(new) != q(previous) {
        return Err(ClusterError::ShapeMismatch {
            model_numeric: p,
            model_categorical: q(previous),
            numeric: new.means.len(),
            categorical: q(new),
        });
    }
    let (n, m) = (new.centroids.len(), previous.centroids.len());
    let mut cost = vec![0.0; n * m];
    let mut a = vec![0.0; p];
    let mut b = vec![0.0; p];
    for (i, c) in new.centroids.iter().enumerate() {
        for (j, d) in previous.centroids.iter().enumerate() {
            for f in 0..p {
                let (mean, sd) = (previous.means[f], previous.std_devs[f]);
                a[f] = (c.numeric.get(f).copied().unwrap_or(mean) - mean) / sd;
                b[f] = (d.numeric.get(f).copied().unwrap_or(mean) - mean) / sd;
            }
            let cost_ij = distance(
                &a,
                &c.categorical,
                &b,
                &d.categorical,
                previous.categorical_weight,
            );
            // The Hungarian algorithm needs finite costs to make progress.
            cost[i * m + j] = if cost_ij.is_finite() {
                cost_ij
            } else {
                f64::MAX / 4.0
            };
        }
    }
    let mut matched: Vec<Option<u32>> = vec![None; n];
    if n <= m {
        for (i, j) in hungarian(&cost, n, m).into_iter().enumerate() {
            matched[i] = Some(previous.centroids[j].id);
        }
    } else {
        let transposed: Vec<f64> = (0..m * n).map(|x| cost[(x % n) * m + x / n]).collect();
        for (j, i) in hungarian(&transposed, m, n).into_iter().enumerate() {
            matched[i] = Some(previous.centroids[j].id);
        }
    }
    let mut next_free = previous
        .centroids
        .iter()
        .map(|c| c.id.saturating_add(1))
        .max()
        .unwrap_or(0);
    for (c, id) in new.centroids.iter_mut().zip(matched) {
        c.id = id.unwrap_or_else(|| {
            let id = next_free;
            next_free = next_free.saturating_add(1);
            id
        });
    }
    Ok(())
}

/// Minimum-cost assignment of each of `n` rows to a distinct one of `m ≥ n` columns of the
/// row-major `cost` matrix (Kuhn–Munkres with potentials, O(n²m)). Returns the column of
/// every row.
fn hungarian(cost: &[f64], n: usize, m: usize) -> Vec<usize> {
    debug_assert!(n <= m && cost.len() == n * m);
    // 1-based as in the textbook formulation; row/column 0 is the virtual start.
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; m + 1];
    let mut row_of = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        row_of[0] = i;
        let mut j0 = 0;
        let mut min_v = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = row_of[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=m {
                if used[j] {
                    continue;
                }
                let reduced = cost[(i0 - 1) * m + (j - 1)] - u[i0] - v[j];
                if reduced < min_v[j] {
                    min_v[j] = reduced;
                    way[j] = j0;
                }
                if min_v[j] < delta {
                    delta = min_v[j];
                    j1 = j;
                }
            }
            if j1 == 0 {
                // Only reachable with non-finite costs, which the caller rules out.
                break;
            }
            for j in 0..=m {
                if used[j] {
                    u[row_of[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_v[j] -= delta;
                }
            }
            j0 = j1;
            if row_of[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            row_of[j0] = row_of[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut column_of = vec![0; n];
    for j in 1..=m {
        if row_of[j] != 0 {
            column_of[row_of[j] - 1] = j - 1;
        }
    }
    column_of
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Every injective map of `n` rows into `m` columns.
    fn brute_force(cost: &[f64], n: usize, m: usize) -> f64 {
        fn go(cost: &[f64], n: usize, m: usize, row: usize, used: &mut Vec<bool>) -> f64 {
            if row == n {
                return 0.0;
            }
            let mut best = f64::INFINITY;
            for j in 0..m {
                if !used[j] {
                    used[j] = true;
                    best = best.min(cost[row * m + j] + go(cost, n, m, row + 1, used));
                    used[j] = false;
                }
            }
            best
        }
        go(cost, n, m, 0, &mut vec![false; m])
    }

    #[test]
    fn hungarian_matches_exhaustive_search() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for (n, m) in [
            (1, 1),
            (2, 2),
            (3, 3),
            (4, 4),
            (5, 5),
            (6, 6),
            (7, 7),
            (2, 5),
            (4, 6),
            (3, 7),
        ] {
            for _ in 0..20 {
                // Integer costs make ties common, which exercises the tie handling too.
                let cost: Vec<f64> = (0..n * m).map(|_| rng.random_range(0..10) as f64).collect();
                let columns = hungarian(&cost, n, m);
                let mut seen = columns.clone();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen.len(), n, "columns must be distinct: {columns:?}");
                let total: f64 = columns
                    .iter()
                    .enumerate()
                    .map(|(i, &j)| cost[i * m + j])
                    .sum();
                assert_eq!(total, brute_force(&cost, n, m), "{n}×{m} {cost:?}");
            }
        }
    }

    #[test]
    fn hungarian_by_hand() {
        // Rows: 4 1 3 / 2 0 5 / 3 2 2. Optimum 1 + 2 + 2 = 5: row 0 → 1, row 1 → 0, row 2 → 2.
        let cost = [4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 3.0, 2.0, 2.0];
        assert_eq!(hungarian(&cost, 3, 3), [1, 0, 2]);
    }
}
