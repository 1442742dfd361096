//! `--period 2019..2025`: an inclusive range of periods for a backfill, and the order in which
//! the periods of several pipelines (a yearly fit, the months applying it) are run.

use std::fmt;
use std::str::FromStr;

use crate::period::{Grain, Period, PeriodParseError};

/// `FIRST..LAST`, both included, or one period. The range covers the days from the start of
/// `first` to the end of `last`; a pipeline runs each of its own periods (years or months)
/// that lies wholly within them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodRange {
    pub first: Period,
    pub last: Period,
}

/// Why a `--period` range was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodRangeError {
    #[error(transparent)]
    Period(#[from] PeriodParseError),
    #[error("invalid period range `{input}`: {first} ends after {last} ends")]
    Backwards {
        input: String,
        first: Period,
        last: Period,
    },
}

impl PeriodRange {
    pub fn single(period: Period) -> Self {
        Self {
            first: period,
            last: period,
        }
    }

    /// Whether it was written as one period (`2025`), not a range.
    pub fn is_single(&self) -> bool {
        self.first == self.last
    }

    /// The periods of `grain` that lie wholly within the range, in order.
    pub fn periods(&self, grain: Grain) -> Vec<Period> {
        let (start, end) = (self.first.start(), self.last.end());
        let mut p = match grain {
            Grain::Year => Period::year(chrono::Datelike::year(&start)),
            Grain::Month => Period::month(
                chrono::Datelike::year(&start),
                chrono::Datelike::month(&start),
            ),
        };
        let mut out = Vec::new();
        while p.start() < end {
            if p.start() >= start && p.end() <= end {
                out.push(p);
            }
            p = p.next();
        }
        out
    }
}

impl fmt::Display for PeriodRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}..{}", self.first, self.last)
        }
    }
}

impl FromStr for PeriodRange {
    type Err = PeriodRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((a, b)) = s.split_once("..") else {
            return Ok(Self::single(s.parse()?));
        };
        let (first, last): (Period, Period) = (a.parse()?, b.parse()?);
        if first.end() > last.end() {
            return Err(PeriodRangeError::Backwards {
                input: s.to_string(),
                first,
                last,
            });
        }
        Ok(Self { first, last })
    }
}

/// The (pipeline index, period) pairs of a backfill in the order they run: by period end,
/// years before months at equal ends, then in the order the pipelines were given. A month
/// applies the latest year that ended on or before its start, so that year has run by then:
/// `2024` (ends 2025-01-01) runs after `2024-11` and before `2025-01`, and beside `2024-12`
/// (same end) it goes first.
pub fn backfill_order(grains: &[Grain], range: &PeriodRange) -> Vec<(usize, Period)> {
    let mut all: Vec<(usize, Period)> = grains
        .iter()
        .enumerate()
        .flat_map(|(i, g)| range.periods(*g).into_iter().map(move |p| (i, p)))
        .collect();
    all.sort_by_key(|&(i, p)| (p.end(), p.grain() == Grain::Month, i));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> PeriodRange {
        s.parse().expect("range")
    }

    fn labels(periods: &[Period]) -> Vec<String> {
        periods.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_range_holds_the_periods_of_each_grain_wholly_within_it() {
        assert_eq!(
            labels(&range("2019..2021").periods(Grain::Year)),
            ["2019", "2020", "2021"]
        );
        assert_eq!(range("2019..2021").periods(Grain::Month).len(), 36);
        assert_eq!(
            labels(&range("2024-11..2025-12").periods(Grain::Year)),
            ["2025"]
        );
        assert_eq!(labels(&range("2025").periods(Grain::Year)), ["2025"]);
        assert!(range("2025-03").periods(Grain::Year).is_empty());
        assert!(range("2025").is_single() && !range("2024..2025").is_single());
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert!("2025..2019".parse::<PeriodRange>().is_err());
        assert!("2019..".parse::<PeriodRange>().is_err());
        assert!("2019..2025-13".parse::<PeriodRange>().is_err());
        assert_eq!(range("2024-01..2025-12").to_string(), "2024-01..2025-12");
    }

    #[test]
    fn a_year_runs_before_the_months_that_apply_it() {
        let order = backfill_order(&[Grain::Month, Grain::Year], &range("2024-11..2025-02"));
        let shown: Vec<String> = order.iter().map(|(i, p)| format!("{i}:{p}")).collect();
        // Only 2024-11..2025-02 lies in it for months; no whole year does.
        assert_eq!(shown, ["0:2024-11", "0:2024-12", "0:2025-01", "0:2025-02"]);
        let order = backfill_order(&[Grain::Month, Grain::Year], &range("2024-01..2025-12"));
        let shown: Vec<String> = order.iter().map(|(i, p)| format!("{i}:{p}")).collect();
        assert_eq!(shown.len(), 26);
        assert_eq!(
            &shown[10..14],
            ["0:2024-11", "1:2024", "0:2024-12", "0:2025-01"]
        );
        assert_eq!(&shown[24..], ["1:2025", "0:2025-12"]);
    }
}
