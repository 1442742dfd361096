//! Lloyd iterations: assign every row to its nearest centroid, move each centroid to the
//! mean (numeric) and mode (categorical) of its rows, repeat.

use super::distance::{BLOCK, Centers, block_nearest};
use super::parallel::Runner;
use super::scale::Table;

/// One restart's result.
#[derive(Debug, Clone)]
pub(super) struct Outcome {
    pub centers: Centers,
    pub inertia: f64,
    pub counts: Vec<u64>,
    pub iterations: usize,
    pub converged: bool,
}

/// The statistics of one assignment step.
#[derive(Debug)]
pub(super) struct Pass {
    pub inertia: f64,
    pub counts: Vec<u64>,
    /// `k × p` sums of z-scores per cluster.
    pub sums: Vec<f64>,
    /// Rows whose cluster changed.
    pub changed: u64,
    /// Per categorical column `g`, a `k × levels[g]` table of code counts per cluster.
    pub code_counts: Vec<u64>,
}

/// What one chunk adds to a [`Pass`]; the floating-point part is combined in chunk order.
struct ChunkStats {
    inertia: f64,
    counts: Vec<u64>,
    sums: Vec<f64>,
    changed: u64,
}

pub(super) struct Convergence {
    pub max_iterations: usize,
    pub tolerance: f64,
}

/// Runs Lloyd iterations from `centers`. `labels` and `min_d` (one slot per row) are
/// scratch space; afterwards they hold every row's cluster and dissimilarity under the
/// returned centers.
pub(super) fn lloyd(
    table: &Table<'_>,
    runner: &Runner,
    mut centers: Centers,
    stop: &Convergence,
    labels: &mut [u32],
    min_d: &mut [f64],
) -> Outcome {
    labels.fill(u32::MAX);
    let mut pass = assign_pass(table, runner, &centers, labels, min_d);
    let mut iterations = 0;
    let mut converged = false;
    while iterations < stop.max_iterations {
        let (next, reseeded) = update(table, &centers, &pass, min_d);
        iterations += 1;
        let next_pass = assign_pass(table, runner, &next, labels, min_d);
        let previous = pass.inertia;
        centers = next;
        pass = next_pass;
        if pass.changed == 0 {
            converged = true;
            break;
        }
        // A re-seeded cluster can raise the inertia for a step; that is no convergence.
        if !reseeded && previous - pass.inertia < stop.tolerance * previous {
            converged = true;
            break;
        }
    }
    Outcome {
        centers,
        inertia: pass.inertia,
        counts: pass.counts,
        iterations,
        converged,
    }
}

/// Offsets of each categorical column's `k × levels` block in [`Pass::code_counts`].
fn code_offsets(table: &Table<'_>, k: usize) -> (Vec<usize>, usize) {
    let mut offsets = Vec::with_capacity(table.levels.len());
    let mut total = 0;
    for &levels in &table.levels {
        offsets.push(total);
        total += k * levels;
    }
    (offsets, total)
}

/// Assigns every row to its nearest center and gathers what the update needs.
pub(super) fn assign_pass(
    table: &Table<'_>,
    runner: &Runner,
    centers: &Centers,
    labels: &mut [u32],
    min_d: &mut [f64],
) -> Pass {
    let (k, p) = (centers.k, centers.p);
    let (offsets, code_table) = code_offsets(table, k);
    let (chunks, code_tables) = runner.run(
        table.rows,
        (labels, min_d),
        || vec![0u64; code_table],
        |code_counts, range, (labels, min_d): (&mut [u32], &mut [f64])| {
            let mut stats = ChunkStats {
                inertia: 0.0,
                counts: vec![0; k],
                sums: vec![0.0; k * p],
                changed: 0,
            };
            let mut scratch = vec![0.0; k * BLOCK];
            let mut best = [0u32; BLOCK];
            let mut best_d = [0.0; BLOCK];
            let mut z = Vec::with_capacity(p);
            let mut codes = Vec::with_capacity(table.codes.len());
            let blocks = labels.chunks_mut(BLOCK).zip(min_d.chunks_mut(BLOCK));
            for (start, (labels, min_d)) in range.step_by(BLOCK).zip(blocks) {
                let len = labels.len();
                let end = start + len;
                z.clear();
                z.extend(table.z.iter().map(|column| &column[start..end]));
                codes.clear();
                codes.extend(table.codes.iter().map(|column| &column[start..end]));
                let (best, best_d) = (&mut best[..len], &mut best_d[..len]);
                block_nearest(centers, &z, &codes, &mut scratch, best, best_d);
                for (((label, m), &b), &d) in labels
                    .iter_mut()
                    .zip(min_d.iter_mut())
                    .zip(best.iter())
                    .zip(best_d.iter())
                {
                    stats.changed += u64::from(*label != b);
                    *label = b;
                    *m = d;
                    stats.counts[b as usize] += 1;
                    stats.inertia += d;
                }
                for (f, column) in z.iter().enumerate() {
                    for (&b, &x) in best.iter().zip(column.iter()) {
                        stats.sums[b as usize * p + f] += x;
                    }
                }
                for ((column, &offset), &levels) in codes.iter().zip(&offsets).zip(&table.levels) {
                    for (&b, &code) in best.iter().zip(column.iter()) {
                        code_counts[offset + b as usize * levels + code as usize] += 1;
                    }
                }
            }
            stats
        },
    );
    let mut pass = Pass {
        inertia: 0.0,
        counts: vec![0; k],
        sums: vec![0.0; k * p],
        changed: 0,
        code_counts: vec![0; code_table],
    };
    for chunk in chunks {
        pass.inertia += chunk.inertia;
        pass.changed += chunk.changed;
        for (total, c) in pass.counts.iter_mut().zip(chunk.counts) {
            *total += c;
        }
        for (total, s) in pass.sums.iter_mut().zip(chunk.sums) {
            *total += s;
        }
    }
    for table in code_tables {
        for (total, c) in pass.code_counts.iter_mut().zip(table) {
            *total += c;
        }
    }
    pass
}

/// The most frequent code; ties go to the smallest code.
pub(super) fn mode(counts: &[u64]) -> u32 {
    let mut best = 0;
    for (code, &c) in counts.iter().enumerate() {
        if c > counts[best] {
            best = code;
        }
    }
    best as u32
}

/// New centers from a pass: means and modes of the clusters' rows; an empty cluster takes
/// the farthest row instead. Returns whether any cluster was re-seeded.
fn update(table: &Table<'_>, centers: &Centers, pass: &Pass, min_d: &[f64]) -> (Centers, bool) {
    let (k, p, q) = (centers.k, centers.p, centers.q);
    let (offsets, _) = code_offsets(table, k);
    let mut next = centers.clone();
    let mut empty = Vec::new();
    for j in 0..k {
        let count = pass.counts[j];
        if count == 0 {
            empty.push(j);
            continue;
        }
        let n = count as f64;
        for f in 0..p {
            next.numeric[j * p + f] = pass.sums[j * p + f] / n;
        }
        for (g, (&offset, &levels)) in offsets.iter().zip(&table.levels).enumerate() {
            let start = offset + j * levels;
            next.categorical[j * q + g] = mode(&pass.code_counts[start..start + levels]);
        }
    }
    if empty.is_empty() {
        return (next, false);
    }
    for (j, row) in empty.into_iter().zip(farthest_rows(table, min_d, k)) {
        for (f, column) in table.z.iter().enumerate() {
            next.numeric[j * p + f] = column[row];
        }
        for (g, column) in table.codes.iter().enumerate() {
            next.categorical[j * q + g] = column[row];
        }
    }
    (next, true)
}

/// Up to `m` rows, farthest from their centroid first (ties: the lowest row), skipping rows
/// equal to one already taken and rows that sit on their centroid. Only runs when a
/// cluster went empty, which k-means++ seeding makes rare, so a plain scan per row is fine.
fn farthest_rows(table: &Table<'_>, min_d: &[f64], m: usize) -> Vec<usize> {
    let same = |a: usize, b: usize| {
        table.z.iter().all(|column| column[a] == column[b])
            && table.codes.iter().all(|column| column[a] == column[b])
    };
    let mut taken: Vec<usize> = Vec::with_capacity(m);
    while taken.len() < m {
        let mut best: Option<(usize, f64)> = None;
        for (row, &d) in min_d.iter().enumerate() {
            let better = best.is_none_or(|(_, best_d)| d > best_d);
            if d > 0.0 && better && !taken.iter().any(|&t| same(t, row)) {
                best = Some((row, d));
            }
        }
        match best {
            Some((row, _)) => taken.push(row),
            None => break,
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Features;
    use crate::cluster::scale::table;

    #[test]
    fn mode_ties_go_to_the_smallest_code() {
        assert_eq!(mode(&[1, 3, 0, 3]), 1);
        assert_eq!(mode(&[0, 0, 0]), 0);
        assert_eq!(mode(&[2, 1, 5]), 2);
    }

    #[test]
    fn an_empty_cluster_takes_the_farthest_row() {
        // z-scores of 0 1 2 10 11 12 are affine in the values, so work with their positions.
        let values = [0.0, 1.0, 2.0, 10.0, 11.0, 12.0];
        let features = Features {
            numeric: vec![&values],
            categorical: vec![],
        };
        let table = table(&features, 4).expect("table");
        let z = |v: f64| (v - table.means[0]) / table.std_devs[0];
        let mut centers = Centers::empty(1, 0, 0.5);
        for v in [0.0, 100.0, 11.0] {
            centers.push([z(v)], []);
        }
        let runner = Runner::new(Some(2), 4);
        let mut labels = vec![u32::MAX; 6];
        let mut min_d = vec![0.0; 6];
        let pass = assign_pass(&table, &runner, &centers, &mut labels, &mut min_d);
        assert_eq!(labels, [0, 0, 0, 2, 2, 2]);
        assert_eq!(pass.counts, [3, 0, 3]);
        // Row 2 (value 2, 2 from center 0) is farther than rows 3 and 5 (1 from center 2).
        let (next, reseeded) = update(&table, &centers, &pass, &min_d);
        assert!(reseeded);
        assert!((next.numeric[0] - z(1.0)).abs() < 1e-12);
        assert_eq!(next.numeric[1], z(2.0));
        assert!((next.numeric[2] - z(11.0)).abs() < 1e-12);
        let stop = Convergence {
            max_iterations: 20,
            tolerance: 0.0,
        };
        let outcome = lloyd(&table, &runner, centers, &stop, &mut labels, &mut min_d);
        assert!(outcome.converged);
        assert!(
            outcome.counts.iter().all(|&c| c > 0),
            "{:?}",
            outcome.counts
        );
    }
}
