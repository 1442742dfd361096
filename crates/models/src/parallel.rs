//! Fixed-size row chunks on scoped threads.
//!
//! Determinism comes from the shape of the reduction, not from the scheduling: each chunk
//! returns its own partial (floating-point sums formed in row order), and the caller adds
//! the partials in chunk order. Threads only decide who computes a chunk. Integer counts,
//! whose sum does not depend on the order, may instead go into a per-thread accumulator.

use std::num::NonZeroUsize;
use std::ops::Range;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Runner {
    threads: usize,
    chunk_rows: usize,
}

/// Per-row output buffers that are split into one piece per chunk, so every thread writes
/// its own rows without locking.
pub(crate) trait RowsMut: Send + Sized {
    fn split(self, mid: usize) -> (Self, Self);
}

impl<T: Send> RowsMut for &mut [T] {
    fn split(self, mid: usize) -> (Self, Self) {
        self.split_at_mut(mid)
    }
}

impl<A: RowsMut, B: RowsMut> RowsMut for (A, B) {
    fn split(self, mid: usize) -> (Self, Self) {
        let (a0, a1) = self.0.split(mid);
        let (b0, b1) = self.1.split(mid);
        ((a0, b0), (a1, b1))
    }
}

impl RowsMut for () {
    fn split(self, _mid: usize) -> (Self, Self) {
        ((), ())
    }
}

impl Runner {
    pub(crate) fn new(threads: Option<usize>, chunk_rows: usize) -> Self {
        let threads = threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get));
        Runner {
            threads: threads.max(1),
            chunk_rows: chunk_rows.max(1),
        }
    }

    pub(crate) fn chunk_rows(&self) -> usize {
        self.chunk_rows
    }

    /// Runs `work` once per chunk of `0..rows` and returns the chunk results in chunk order,
    /// plus the accumulator of every thread (in no meaningful order). `out` must hold
    /// `rows` rows; `work` gets the chunk's piece of it.
    pub(crate) fn run<O, A, T, I, W>(
        &self,
        rows: usize,
        out: O,
        init: I,
        work: W,
    ) -> (Vec<T>, Vec<A>)
    where
        O: RowsMut,
        A: Send,
        T: Send,
        I: Fn() -> A + Sync,
        W: Fn(&mut A, Range<usize>, O) -> T + Sync,
    {
        let chunks = rows.div_ceil(self.chunk_rows);
        let mut pieces = Vec::with_capacity(chunks);
        let mut rest = out;
        for c in 0..chunks {
            let start = c * self.chunk_rows;
            let end = (start + self.chunk_rows).min(rows);
            let (piece, tail) = rest.split(end - start);
            pieces.push((start..end, piece));
            rest = tail;
        }
        let threads = self.threads.min(chunks).max(1);
        if threads == 1 {
            let mut acc = init();
            let results = pieces
                .into_iter()
                .map(|(range, piece)| work(&mut acc, range, piece))
                .collect();
            return (results, vec![acc]);
        }
        // Contiguous runs of chunks per thread; the chunks are equally expensive.
        let per_thread = chunks.div_ceil(threads);
        let mut groups: Vec<Vec<(Range<usize>, O)>> = Vec::with_capacity(threads);
        let mut pieces = pieces.into_iter();
        loop {
            let group: Vec<_> = pieces.by_ref().take(per_thread).collect();
            if group.is_empty() {
                break;
            }
            groups.push(group);
        }
        let (init, work) = (&init, &work);
        std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .into_iter()
                .map(|group| {
                    scope.spawn(move || {
                        let mut acc = init();
                        let results: Vec<T> = group
                            .into_iter()
                            .map(|(range, piece)| work(&mut acc, range, piece))
                            .collect();
                        (results, acc)
                    })
                })
                .collect();
            let mut results = Vec::with_capacity(chunks);
            let mut accs = Vec::with_capacity(handles.len());
            for handle in handles {
                let (part, acc) = handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                results.extend(part);
                accs.push(acc);
            }
            (results, accs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_come_back_in_order_for_any_thread_count() {
        for threads in [1, 2, 3, 8] {
            let runner = Runner::new(Some(threads), 10);
            let mut out = vec![0usize; 95];
            let (ranges, accs) = runner.run(
                95,
                out.as_mut_slice(),
                || 0usize,
                |acc, range, piece: &mut [usize]| {
                    *acc += range.len();
                    for (i, slot) in range.clone().zip(piece.iter_mut()) {
                        *slot = i;
                    }
                    range
                },
            );
            let expected: Vec<_> = (0..10).map(|c| c * 10..(c * 10 + 10).min(95)).collect();
            assert_eq!(ranges, expected);
            assert_eq!(accs.iter().sum::<usize>(), 95);
            assert_eq!(out, (0..95).collect::<Vec<_>>());
        }
    }

    #[test]
    fn no_rows_runs_nothing() {
        let runner = Runner::new(Some(4), 10);
        let (results, _) = runner.run(0, (), || (), |_, range, ()| range);
        assert!(results.is_empty());
    }
}
