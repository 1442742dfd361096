//! k-means++ seeding (Arthur and Vassilvitskii 2007) with the mixed dissimilarity.
//!
//! The first center is a uniformly drawn row; every further center is a row drawn with
//! probability proportional to its dissimilarity to the nearest center so far (D²
//! sampling). The draw walks the per-chunk totals and then the rows of one chunk with the
//! same additions that formed the totals, so it picks the same row for any thread count.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::ClusterError;
use super::distance::{BLOCK, Centers, block_distances};
use super::parallel::Runner;
use super::scale::Table;

/// `k` distinct rows as centers. `min_d` (one slot per row) is scratch space. Fails when
/// fewer than `k` rows are distinct under the dissimilarity: then every row sits on a
/// center already and D² sampling has nothing to draw from.
pub(super) fn kmeans_plus_plus(
    table: &Table<'_>,
    runner: &Runner,
    k: usize,
    gamma: f64,
    rng: &mut ChaCha8Rng,
    min_d: &mut [f64],
) -> Result<Centers, ClusterError> {
    let mut centers = Centers::empty(table.z.len(), table.codes.len(), gamma);
    let first = rng.random_range(0..table.rows as u64) as usize;
    push_row(&mut centers, table, first);
    min_d.fill(f64::INFINITY);
    while centers.k < k {
        let newest = centers.single(centers.k - 1);
        let (totals, _) = runner.run(
            table.rows,
            &mut *min_d,
            || (),
            |_, range, min_d: &mut [f64]| lower_min_d(table, &newest, range, min_d),
        );
        let total = totals.iter().fold(0.0, |acc, t| acc + t);
        if total <= 0.0 {
            return Err(ClusterError::TooFewDistinct {
                k,
                distinct: centers.k,
            });
        }
        let target = rng.random::<f64>() * total;
        let row = draw(&totals, min_d, runner.chunk_rows(), target);
        push_row(&mut centers, table, row);
    }
    Ok(centers)
}

fn push_row(centers: &mut Centers, table: &Table<'_>, row: usize) {
    centers.push(
        table.z.iter().map(|column| column[row]),
        table.codes.iter().map(|column| column[row]),
    );
}

/// Lowers each row's distance to the nearest center by the newest center; returns the
/// chunk's sum of distances in row order.
fn lower_min_d(
    table: &Table<'_>,
    newest: &Centers,
    range: std::ops::Range<usize>,
    min_d: &mut [f64],
) -> f64 {
    let mut buffer = [0.0; BLOCK];
    let mut z = Vec::with_capacity(table.z.len());
    let mut codes = Vec::with_capacity(table.codes.len());
    let mut sum = 0.0;
    for (block, min_d) in range.clone().step_by(BLOCK).zip(min_d.chunks_mut(BLOCK)) {
        let end = block + min_d.len();
        z.clear();
        z.extend(table.z.iter().map(|column| &column[block..end]));
        codes.clear();
        codes.extend(table.codes.iter().map(|column| &column[block..end]));
        let d = &mut buffer[..min_d.len()];
        block_distances(newest, 0, &z, &codes, d);
        for (m, &d) in min_d.iter_mut().zip(d.iter()) {
            if d < *m {
                *m = d;
            }
            sum += *m;
        }
    }
    sum
}

/// The row where the running sum of `weights` first exceeds `target`. When rounding puts
/// `target` past every running sum, the last row with a positive weight (in the chunk, or
/// overall).
fn draw(totals: &[f64], weights: &[f64], chunk_rows: usize, target: f64) -> usize {
    let mut before = 0.0;
    for (chunk, &total) in totals.iter().enumerate() {
        if total > 0.0 && before + total > target {
            let start = chunk * chunk_rows;
            let end = (start + chunk_rows).min(weights.len());
            let local = target - before;
            let mut running = 0.0;
            let mut last = start;
            for (row, &w) in weights[start..end].iter().enumerate() {
                running += w;
                if w > 0.0 {
                    last = start + row;
                    if running > local {
                        return last;
                    }
                }
            }
            return last;
        }
        before += total;
    }
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draw_follows_the_running_sum() {
        // Chunks of 2 rows: weights 0 1 | 0 0 | 2 1; running sums 0 1 1 1 3 4.
        let weights = [0.0, 1.0, 0.0, 0.0, 2.0, 1.0];
        let totals = [1.0, 0.0, 3.0];
        assert_eq!(draw(&totals, &weights, 2, 0.0), 1);
        assert_eq!(draw(&totals, &weights, 2, 0.999), 1);
        assert_eq!(draw(&totals, &weights, 2, 1.0), 4);
        assert_eq!(draw(&totals, &weights, 2, 2.999), 4);
        assert_eq!(draw(&totals, &weights, 2, 3.0), 5);
        // Past the end by rounding: the last positive weight.
        assert_eq!(draw(&totals, &weights, 2, 4.0), 5);
    }
}
