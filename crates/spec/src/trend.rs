//! Trend steps: read the committed partitions of an output over a range of periods and compare
//! consecutive periods (segment migration, stability, KPI trends, model parameter shifts).

use crate::period::Period;

/// What a trend step computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrendKind {
    /// Customers moving from segment i in p−1 to segment j in p, with new and lost customers.
    Migration,
    /// Population stability index of the segment mix and of numeric features.
    Stability,
    /// Customers, shares, revenue, orders and KPI averages per segment and period, with changes.
    Kpis,
    /// How each model's fitted parameters (cut points, thresholds, centroids) moved.
    Shift,
}

impl TrendKind {
    pub fn name(&self) -> &'static str {
        match self {
            TrendKind::Migration => "migration",
            TrendKind::Stability => "stability",
            TrendKind::Kpis => "kpis",
            TrendKind::Shift => "shift",
        }
    }
}

/// Which periods a trend step reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRange {
    /// `periods: 2021..2025`, both ends included.
    Between(Period, Period),
    /// `last: 5`: the run's period and the four before it.
    Last(u32),
}

impl HistoryRange {
    /// The periods of the range, oldest first, for a run of `period`.
    pub fn periods(&self, period: Period) -> Vec<Period> {
        match *self {
            HistoryRange::Between(first, last) => {
                let mut out = Vec::new();
                let mut p = first;
                while p <= last && p.grain() == first.grain() {
                    out.push(p);
                    p = p.next();
                }
                out
            }
            HistoryRange::Last(n) => {
                let mut out = vec![period];
                while out.len() < n as usize {
                    let before = out[out.len() - 1].prev();
                    out.push(before);
                }
                out.reverse();
                out
            }
        }
    }
}

/// The committed history a trend step reads: an output of a segmentation pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorySpec {
    /// The output's name, as in the producing pipeline's `outputs:`.
    pub output: String,
    /// The producing pipeline's output directory (its `runs/` and `models/` are read too),
    /// resolved against this pipeline's directory; this pipeline's own `output_dir` when absent.
    pub dir: Option<String>,
    pub range: HistoryRange,
}

/// A segmentation column and what defines it, so a change of definition is not compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrendSegment {
    pub column: String,
    /// The model (its artifact name in the producing pipeline, usually the step name) whose
    /// definition the column's values depend on.
    pub model: Option<String>,
    /// The producing pipeline's reference source whose vintage classifies the column.
    pub vintage: Option<String>,
}

/// PSI settings: bins from the baseline period's quantiles, and the flag thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PsiOptions {
    pub bins: u32,
    /// PSI at or above this is `watch`.
    pub watch: f64,
    /// PSI at or above this is `shifted`.
    pub shifted: f64,
    /// Share given to a bin that is empty in one period, so the logarithm stays finite.
    pub floor: f64,
}

impl Default for PsiOptions {
    fn default() -> Self {
        Self {
            bins: 10,
            watch: 0.1,
            shifted: 0.25,
            floor: 0.0001,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrendSpec {
    pub kind: TrendKind,
    pub history: HistorySpec,
    /// The customer key (migration only).
    pub key: String,
    pub segments: Vec<TrendSegment>,
    /// Revenue column: moved revenue (migration), revenue and revenue share (kpis).
    pub revenue: Option<String>,
    /// Orders column, summed per segment (kpis).
    pub orders: Option<String>,
    /// Columns averaged per segment (kpis).
    pub kpis: Vec<String>,
    /// Numeric columns whose distribution is compared (stability).
    pub features: Vec<String>,
    pub psi: PsiOptions,
    /// Also compare every period with the first of the range (migration: a second matrix;
    /// stability: PSI against the first period as baseline).
    pub versus_first: bool,
    /// Models whose parameter shifts are reported (shift); defaults to the segments' models.
    pub models: Vec<String>,
    /// Labels of customers absent in the earlier period (`(new)`) and the later one (`(lost)`).
    pub new_label: String,
    pub lost_label: String,
}

impl TrendSpec {
    /// The models this step compares: `models`, or those its segments name.
    pub fn compared_models(&self) -> Vec<String> {
        if !self.models.is_empty() {
            return self.models.clone();
        }
        let mut out: Vec<String> = self
            .segments
            .iter()
            .filter_map(|s| s.model.clone())
            .collect();
        out.dedup();
        out
    }
}
