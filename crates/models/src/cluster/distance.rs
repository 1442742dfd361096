//! The mixed dissimilarity: squared z-distance plus a weight per categorical mismatch.
//!
//! Blocks of rows are compared with one centroid at a time, column by column, so the inner
//! loops run over contiguous slices and vectorise. The scalar path performs the same
//! operations in the same order (numeric columns first, then categorical, each starting
//! from 0.0), so one row gets the same bits alone as inside a block; `nearest` and
//! `assign` agree with the fit's own assignment.

/// Rows per block: `k × BLOCK` distances stay in the L2 cache for the largest `k`.
pub(super) const BLOCK: usize = 256;

/// Centroids in the working layout: cluster-major coordinates.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Centers {
    pub k: usize,
    pub p: usize,
    pub q: usize,
    /// `k × p` z-coordinates.
    pub numeric: Vec<f64>,
    /// `k × q` mode codes.
    pub categorical: Vec<u32>,
    pub gamma: f64,
}

impl Centers {
    pub(super) fn empty(p: usize, q: usize, gamma: f64) -> Self {
        Centers {
            k: 0,
            p,
            q,
            numeric: Vec::new(),
            categorical: Vec::new(),
            gamma,
        }
    }

    pub(super) fn push(
        &mut self,
        numeric: impl IntoIterator<Item = f64>,
        categorical: impl IntoIterator<Item = u32>,
    ) {
        self.numeric.extend(numeric);
        self.categorical.extend(categorical);
        self.k += 1;
        debug_assert_eq!(self.numeric.len(), self.k * self.p);
        debug_assert_eq!(self.categorical.len(), self.k * self.q);
    }

    pub(super) fn numeric(&self, j: usize) -> &[f64] {
        &self.numeric[j * self.p..(j + 1) * self.p]
    }

    pub(super) fn categorical(&self, j: usize) -> &[u32] {
        &self.categorical[j * self.q..(j + 1) * self.q]
    }

    /// Only centroid `j`, for k-means++ which compares every row with the newest center.
    pub(super) fn single(&self, j: usize) -> Centers {
        Centers {
            k: 1,
            p: self.p,
            q: self.q,
            numeric: self.numeric(j).to_vec(),
            categorical: self.categorical(j).to_vec(),
            gamma: self.gamma,
        }
    }
}

/// Dissimilarity of one row (z-scores and codes) to one centroid.
#[inline]
pub(super) fn distance(
    z: &[f64],
    codes: &[u32],
    center_z: &[f64],
    center_codes: &[u32],
    gamma: f64,
) -> f64 {
    let mut d = 0.0;
    for (&x, &c) in z.iter().zip(center_z) {
        let t = x - c;
        d += t * t;
    }
    for (&code, &mode) in codes.iter().zip(center_codes) {
        d += if code == mode { 0.0 } else { gamma };
    }
    d
}

/// Dissimilarities of a block of rows to centroid `j`; `z` and `codes` are the block's
/// slices of every column, all as long as `out`.
pub(super) fn block_distances(
    centers: &Centers,
    j: usize,
    z: &[&[f64]],
    codes: &[&[u32]],
    out: &mut [f64],
) {
    out.fill(0.0);
    for (column, &c) in z.iter().zip(centers.numeric(j)) {
        for (d, &x) in out.iter_mut().zip(column.iter()) {
            let t = x - c;
            *d += t * t;
        }
    }
    let gamma = centers.gamma;
    for (column, &mode) in codes.iter().zip(centers.categorical(j)) {
        for (d, &code) in out.iter_mut().zip(column.iter()) {
            *d += if code == mode { 0.0 } else { gamma };
        }
    }
}

/// Nearest centroid of every row of a block (exact ties: the lowest index) and its
/// dissimilarity. `scratch` holds `k × BLOCK` values; `best` and `best_d` are as long as
/// the block.
pub(super) fn block_nearest(
    centers: &Centers,
    z: &[&[f64]],
    codes: &[&[u32]],
    scratch: &mut [f64],
    best: &mut [u32],
    best_d: &mut [f64],
) {
    let len = best.len();
    best.fill(0);
    for j in 0..centers.k {
        let d = &mut scratch[j * BLOCK..j * BLOCK + len];
        block_distances(centers, j, z, codes, d);
        if j == 0 {
            best_d.copy_from_slice(d);
            continue;
        }
        let label = j as u32;
        for ((b, bd), &v) in best.iter_mut().zip(best_d.iter_mut()).zip(d.iter()) {
            if v < *bd {
                *bd = v;
                *b = label;
            }
        }
    }
}

/// Nearest of `centroids` (z-coordinates, modes) to one row, with its dissimilarity; exact
/// ties go to the first.
pub(super) fn nearest<'c>(
    centroids: impl IntoIterator<Item = (&'c [f64], &'c [u32])>,
    z: &[f64],
    codes: &[u32],
    gamma: f64,
) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (j, (center_z, center_codes)) in centroids.into_iter().enumerate() {
        let d = distance(z, codes, center_z, center_codes, gamma);
        if j == 0 || d < best.1 {
            best = (j, d);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_and_scalar_paths_agree_bit_for_bit() {
        let mut centers = Centers::empty(2, 1, 0.7);
        centers.push([0.1, -0.3], [2]);
        centers.push([1.0 / 3.0, 0.2], [0]);
        centers.push([0.1, -0.3], [2]); // duplicate: ties go to index 0
        let x: Vec<f64> = (0..300).map(|i| (i as f64 * 0.37).sin()).collect();
        let y: Vec<f64> = (0..300).map(|i| (i as f64 * 0.11).cos() / 3.0).collect();
        let c: Vec<u32> = (0..300).map(|i| (i % 3) as u32).collect();
        let len = 200;
        let mut scratch = vec![0.0; 3 * BLOCK];
        let mut best = vec![0u32; len];
        let mut best_d = vec![0.0; len];
        block_nearest(
            &centers,
            &[&x[..len], &y[..len]],
            &[&c[..len]],
            &mut scratch,
            &mut best,
            &mut best_d,
        );
        for i in 0..len {
            let all = (0..centers.k).map(|j| (centers.numeric(j), centers.categorical(j)));
            let (j, d) = nearest(all, &[x[i], y[i]], &[c[i]], centers.gamma);
            assert_eq!(
                (best[i] as usize, best_d[i].to_bits()),
                (j, d.to_bits()),
                "row {i}"
            );
            assert_ne!(j, 2);
        }
    }

    #[test]
    fn mixed_distance_by_hand() {
        // (1 − 0)² + (2 − 4)² = 5, plus one mismatch of weight 0.5.
        assert_eq!(
            distance(&[1.0, 2.0], &[3, 4], &[0.0, 4.0], &[3, 5], 0.5),
            5.5
        );
    }
}
