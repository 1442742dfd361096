//! Input checks and z-scaling.

use super::{ClusterError, ColumnKind, Features, MAX_LEVELS};

/// The fit's working copy: z-scored numeric columns and the borrowed categorical codes.
#[derive(Debug)]
pub(super) struct Table<'a> {
    pub rows: usize,
    pub z: Vec<Vec<f64>>,
    pub codes: Vec<&'a [u32]>,
    /// Levels per categorical column (largest code + 1).
    pub levels: Vec<usize>,
    pub means: Vec<f64>,
    pub std_devs: Vec<f64>,
}

/// The one place a value is z-scored, so fitting and assigning give the same bits.
#[inline]
pub(super) fn z(x: f64, mean: f64, sd: f64) -> f64 {
    (x - mean) / sd
}

/// Rows, after checking that every column has as many as the first.
pub(super) fn rows(features: &Features<'_>) -> Result<usize, ClusterError> {
    let columns = features
        .numeric
        .iter()
        .map(|c| (ColumnKind::Numeric, c.len()))
        .chain(
            features
                .categorical
                .iter()
                .map(|c| (ColumnKind::Categorical, c.len())),
        );
    let mut expected = None;
    let mut index = [0usize, 0usize];
    for (kind, len) in columns {
        let slot = &mut index[kind as usize];
        let column = *slot;
        *slot += 1;
        match expected {
            None => expected = Some(len),
            Some(expected) if expected != len => {
                return Err(ClusterError::LengthMismatch {
                    kind,
                    column,
                    len,
                    expected,
                });
            }
            Some(_) => {}
        }
    }
    match expected {
        None => Err(ClusterError::NoFeatures),
        Some(0) => Err(ClusterError::NoRows),
        Some(rows) => Ok(rows),
    }
}

/// The first non-finite value, in column order then row order.
pub(super) fn check_finite(numeric: &[&[f64]]) -> Result<(), ClusterError> {
    for (column, values) in numeric.iter().enumerate() {
        if let Some(row) = values.iter().position(|v| !v.is_finite()) {
            return Err(ClusterError::NonFinite {
                column,
                row,
                value: values[row],
            });
        }
    }
    Ok(())
}

fn levels(codes: &[&[u32]]) -> Result<Vec<usize>, ClusterError> {
    codes
        .iter()
        .enumerate()
        .map(|(column, values)| {
            let mut max = 0u32;
            for (row, &code) in values.iter().enumerate() {
                if code as usize >= MAX_LEVELS {
                    return Err(ClusterError::CodeTooLarge {
                        column,
                        row,
                        code,
                        max: MAX_LEVELS,
                    });
                }
                max = max.max(code);
            }
            Ok(max as usize + 1)
        })
        .collect()
}

/// Sum in fixed chunks, then over the chunks: as deterministic as a plain loop and with a
/// smaller rounding error on a million rows.
fn chunked_sum(values: impl Iterator<Item = f64>, chunk_rows: usize) -> f64 {
    let mut total = 0.0;
    let mut partial = 0.0;
    let mut in_chunk = 0;
    for v in values {
        partial += v;
        in_chunk += 1;
        if in_chunk == chunk_rows {
            total += partial;
            partial = 0.0;
            in_chunk = 0;
        }
    }
    total + partial
}

/// Mean and population standard deviation (two passes); a constant column gets sd 1 so its
/// z-scores are all 0 instead of NaN.
pub(super) fn mean_sd(values: &[f64], chunk_rows: usize) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = chunked_sum(values.iter().copied(), chunk_rows) / n;
    let ss = chunked_sum(
        values.iter().map(|&v| {
            let d = v - mean;
            d * d
        }),
        chunk_rows,
    );
    let sd = (ss / n).sqrt();
    (mean, if sd == 0.0 { 1.0 } else { sd })
}

pub(super) fn table<'a>(
    features: &Features<'a>,
    chunk_rows: usize,
) -> Result<Table<'a>, ClusterError> {
    let rows = rows(features)?;
    check_finite(&features.numeric)?;
    let levels = levels(&features.categorical)?;
    let mut means = Vec::with_capacity(features.numeric.len());
    let mut std_devs = Vec::with_capacity(features.numeric.len());
    let mut z_columns = Vec::with_capacity(features.numeric.len());
    for (column, values) in features.numeric.iter().enumerate() {
        let (mean, sd) = mean_sd(values, chunk_rows);
        if !mean.is_finite() || !sd.is_finite() {
            return Err(ClusterError::ScaleOverflow { column });
        }
        z_columns.push(values.iter().map(|&v| z(v, mean, sd)).collect());
        means.push(mean);
        std_devs.push(sd);
    }
    Ok(Table {
        rows,
        z: z_columns,
        codes: features.categorical.clone(),
        levels,
        means,
        std_devs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_sd_and_constant_columns() {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, squared deviations sum to 32, variance 4.
        let (mean, sd) = mean_sd(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0], 3);
        assert_eq!((mean, sd), (5.0, 2.0));
        assert_eq!(mean_sd(&[3.5; 10], 4), (3.5, 1.0));
    }

    #[test]
    fn length_mismatch_names_the_column() {
        let a = [1.0, 2.0];
        let b = [1.0];
        let c = [0u32, 1];
        let features = Features {
            numeric: vec![&a, &a],
            categorical: vec![&c, &c[..1]],
        };
        let err = rows(&features).expect_err("length mismatch");
        assert_eq!(
            err.to_string(),
            "categorical column 1 has 1 rows, expected 2 like the first column"
        );
        let features = Features {
            numeric: vec![&a, &b],
            categorical: vec![],
        };
        assert!(matches!(
            rows(&features),
            Err(ClusterError::LengthMismatch {
                kind: ColumnKind::Numeric,
                column: 1,
                len: 1,
                expected: 2
            })
        ));
    }

    #[test]
    fn huge_codes_are_rejected() {
        let codes = [0u32, 3, u32::MAX];
        let features = Features {
            numeric: vec![],
            categorical: vec![&codes],
        };
        assert!(matches!(
            table(&features, 8),
            Err(ClusterError::CodeTooLarge {
                column: 0,
                row: 2,
                ..
            })
        ));
    }

    #[test]
    fn overflowing_columns_are_rejected() {
        let values = [f64::MAX, f64::MAX, -f64::MAX];
        let features = Features {
            numeric: vec![&values],
            categorical: vec![],
        };
        assert!(matches!(
            table(&features, 8),
            Err(ClusterError::ScaleOverflow { column: 0 })
        ));
    }
}
