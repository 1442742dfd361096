//! Quoting for SQL generated from user-supplied names and values; every crate that writes SQL
//! (models, enrichment, profiles, the engine) quotes the same way.

/// `"name"`, with embedded quotes doubled: column names from a CRM export can be anything.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with embedded quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
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
