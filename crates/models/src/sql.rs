//! Quoting for SQL generated from user-supplied names and values.

/// `"name"`, with embedded quotes doubled: column names from a CRM export can be anything.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with embedded quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_literal("Won't"), "'Won''t'");
    }
}
