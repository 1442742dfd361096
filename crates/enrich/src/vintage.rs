//! Which vintage of a reference table a run uses.
//!
//! Reference data is published in vintages (a classification of 2023, re-issued in 2025). A
//! run uses the latest vintage that does not start after its period ends, so a rerun of 2024
//! keeps using what was valid in 2024 even after the 2025 vintage arrives.

use chrono::NaiveDate;

/// When a vintage label takes effect: `2024` → 2024-01-01, `2024-06` → 2024-06-01,
/// `2024-06-30` → that day. `None` for anything else.
pub fn effective_date(label: &str) -> Option<NaiveDate> {
    let label = label.trim();
    match label.len() {
        4 => NaiveDate::from_ymd_opt(label.parse().ok()?, 1, 1),
        7 => NaiveDate::parse_from_str(&format!("{label}-01"), "%Y-%m-%d").ok(),
        10 => NaiveDate::parse_from_str(label, "%Y-%m-%d").ok(),
        _ => None,
    }
}

/// The latest vintage in effect before `end` (exclusive), or an error listing what exists.
pub fn choose(labels: &[String], end: NaiveDate) -> Result<&str, String> {
    let mut best: Option<(NaiveDate, &str)> = None;
    let mut unreadable = Vec::new();
    for label in labels {
        match effective_date(label) {
            Some(date) if date < end => {
                if best.is_none_or(|(d, _)| date > d) {
                    best = Some((date, label));
                }
            }
            Some(_) => {}
            None => unreadable.push(label.as_str()),
        }
    }
    if !unreadable.is_empty() {
        return Err(format!(
            "vintage labels {unreadable:?} are not years or dates (expected 2024, 2024-06 or 2024-06-30)"
        ));
    }
    best.map(|(_, l)| l).ok_or_else(|| {
        format!(
            "no vintage in effect before {end} (available: {})",
            labels.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn the_latest_vintage_not_after_the_period_is_used() {
        let labels: Vec<String> = ["2023", "2025", "2024-07"].map(String::from).to_vec();
        assert_eq!(choose(&labels, d("2025-01-01")), Ok("2024-07"));
        assert_eq!(choose(&labels, d("2024-01-01")), Ok("2023"));
        assert_eq!(choose(&labels, d("2026-01-01")), Ok("2025"));
        assert!(
            choose(&labels, d("2023-01-01"))
                .expect_err("refused")
                .contains("no vintage in effect")
        );
        let bad = vec!["v1".to_string()];
        assert!(
            choose(&bad, d("2026-01-01"))
                .expect_err("refused")
                .contains("not years or dates")
        );
    }
}
