//! SQL helpers shared by the models; quoting is `segflow-spec`'s, re-exported here.

pub use segflow_spec::{quote_ident, quote_literal};

/// A `CASE` giving the label of the candidate whose value is the largest (`cmp` = `>=`) or
/// the smallest (`<=`); ties go to the first candidate. Candidates are `(value, label)` SQL.
pub(crate) fn pick_extreme(candidates: &[(String, String)], cmp: &str) -> String {
    let mut picked = String::from("NULL");
    for (i, (value, label)) in candidates.iter().enumerate().rev() {
        let others: Vec<String> = candidates
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, (other, _))| format!("{value} {cmp} {other}"))
            .collect();
        let cond = if others.is_empty() {
            "true".to_string()
        } else {
            others.join(" AND ")
        };
        picked = format!("CASE WHEN {cond} THEN {label} ELSE {picked} END");
    }
    picked
}
