//! Periods: the unit a run computes. A period is a half-open date range `[start, end)`.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};

/// How long one period of a pipeline is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Grain {
    Year,
    Month,
}

impl fmt::Display for Grain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Grain::Year => "year",
            Grain::Month => "month",
        })
    }
}

/// A calendar year (`2025`) or month (`2025-11`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    year: i32,
    /// `None` for a whole year.
    month: Option<u32>,
}

impl Period {
    pub fn year(year: i32) -> Self {
        Self { year, month: None }
    }

    pub fn month(year: i32, month: u32) -> Self {
        Self {
            year,
            month: Some(month),
        }
    }

    pub fn grain(&self) -> Grain {
        if self.month.is_some() {
            Grain::Month
        } else {
            Grain::Year
        }
    }

    /// First day of the period.
    pub fn start(&self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month.unwrap_or(1), 1).unwrap_or(NaiveDate::MIN)
    }

    /// First day after the period (exclusive end); also the default reference date of models.
    pub fn end(&self) -> NaiveDate {
        self.next().start()
    }

    pub fn prev(&self) -> Self {
        match self.month {
            None => Self::year(self.year - 1),
            Some(1) => Self::month(self.year - 1, 12),
            Some(m) => Self::month(self.year, m - 1),
        }
    }

    pub fn next(&self) -> Self {
        match self.month {
            None => Self::year(self.year + 1),
            Some(12) => Self::month(self.year + 1, 1),
            Some(m) => Self::month(self.year, m + 1),
        }
    }

    /// The last complete period of `grain` before `today`: what a scheduler usually means.
    pub fn last_complete(grain: Grain, today: NaiveDate) -> Self {
        match grain {
            Grain::Year => Self::year(today.year() - 1),
            Grain::Month => Self::month(today.year(), today.month()).prev(),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.month {
            None => write!(f, "{:04}", self.year),
            Some(m) => write!(f, "{:04}-{m:02}", self.year),
        }
    }
}

/// The earliest year a period may be in. Year 0 does not exist in the calendar segflow's
/// dates use, and a period before 1000 is a typo, not customer data (`--period 0000` ran, and
/// wrote `period=0000`).
pub const FIRST_YEAR: i32 = 1000;

/// Why a `--period` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid period `{input}`: expected a year like 2025 or a month like 2025-11 (years {FIRST_YEAR} to 9999)"
)]
pub struct PeriodParseError {
    pub input: String,
}

impl FromStr for Period {
    type Err = PeriodParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PeriodParseError {
            input: s.to_string(),
        };
        let parse_year = |y: &str| -> Result<i32, PeriodParseError> {
            if y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            y.parse::<i32>()
                .ok()
                .filter(|y| *y >= FIRST_YEAR)
                .ok_or_else(err)
        };
        match s.split_once('-') {
            None => Ok(Self::year(parse_year(s)?)),
            Some((y, m)) => {
                let year = parse_year(y)?;
                if m.len() != 2 || !m.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                let month: u32 = m.parse().map_err(|_| err())?;
                if !(1..=12).contains(&month) {
                    return Err(err());
                }
                Ok(Self::month(year, month))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("valid date")
    }

    #[test]
    fn years_and_months_are_half_open_ranges() {
        let y: Period = "2025".parse().expect("year");
        assert_eq!((y.start(), y.end()), (d(2025, 1, 1), d(2026, 1, 1)));
        assert_eq!(y.prev().to_string(), "2024");
        let m: Period = "2025-12".parse().expect("month");
        assert_eq!((m.start(), m.end()), (d(2025, 12, 1), d(2026, 1, 1)));
        assert_eq!(m.grain(), Grain::Month);
        assert_eq!(
            "2025-01".parse::<Period>().expect("m").prev().to_string(),
            "2024-12"
        );
    }

    #[test]
    fn rejects_malformed_periods() {
        for bad in [
            "25", "2025-13", "2025-1", "2025-00", "abcd", "2025/11", "", "0000", "0000-01", "0999",
        ] {
            assert!(bad.parse::<Period>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn last_complete_period() {
        assert_eq!(
            Period::last_complete(Grain::Year, d(2026, 11, 23)).to_string(),
            "2025"
        );
        assert_eq!(
            Period::last_complete(Grain::Month, d(2026, 1, 5)).to_string(),
            "2025-12"
        );
    }
}
