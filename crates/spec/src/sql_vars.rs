//! How a variable's value is written into SQL text so that it can only ever be a value.
//!
//! `--var` values come from whoever starts the run; pasted into SQL as they are, a value like
//! `x' OR '1'='1` changes the query. So inside SQL a variable becomes a typed literal
//! (`'x'' OR ''1''=''1'`), or — where the template already put it between quotes — the
//! value escaped for those quotes. Only a variable the pipeline itself declares `raw: true`
//! (see `vars:`) is pasted as SQL.

/// How a user variable is written into SQL, declared under `vars:` (default: a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqlVar {
    /// `'text'`, quotes doubled.
    #[default]
    String,
    /// The number as written, after checking that it is one: `100`, `-2.5`, `1e6`.
    Number,
    /// `DATE '2025-06-01'`, after checking the date.
    Date,
    /// Pasted as written: trusted SQL from the pipeline's author, opted into with `raw: true`.
    Raw,
}

/// Where in the SQL template a `${...}` stands, found by scanning the text before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Code,
    /// `'…'`
    String,
    /// `E'…'`, where a backslash escapes.
    EscapeString,
    /// `"…"`, a quoted identifier.
    Identifier,
    /// `$$…$$`
    DollarString,
    /// `-- …` to the end of the line.
    LineComment,
    /// `/* … */`, nested to the given depth.
    BlockComment(u32),
}

/// Tracks the SQL lexical context over the template text (never over substituted values, which
/// are escaped for the context they land in and so cannot change it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scanner {
    pub context: Context,
    previous: Option<char>,
    before_previous: Option<char>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self {
            context: Context::Code,
            previous: None,
            before_previous: None,
        }
    }
}

impl Scanner {
    /// Advances over template text.
    pub fn feed(&mut self, text: &str) {
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            let next = chars.peek().copied();
            let mut consumed_next = false;
            self.context = match (self.context, c) {
                (Context::Code, '\'') => {
                    let e_prefix = matches!(self.previous, Some('e' | 'E'))
                        && !self
                            .before_previous
                            .is_some_and(|p| p.is_alphanumeric() || p == '_');
                    if e_prefix {
                        Context::EscapeString
                    } else {
                        Context::String
                    }
                }
                (Context::Code, '"') => Context::Identifier,
                (Context::Code, '-') if next == Some('-') => {
                    consumed_next = true;
                    Context::LineComment
                }
                (Context::Code, '/') if next == Some('*') => {
                    consumed_next = true;
                    Context::BlockComment(1)
                }
                (Context::Code, '$') if next == Some('$') => {
                    consumed_next = true;
                    Context::DollarString
                }
                (Context::String, '\'') | (Context::Identifier, '"') => Context::Code,
                (Context::EscapeString, '\\') => {
                    consumed_next = true;
                    Context::EscapeString
                }
                (Context::EscapeString, '\'') => Context::Code,
                (Context::DollarString, '$') if next == Some('$') => {
                    consumed_next = true;
                    Context::Code
                }
                (Context::LineComment, '\n') => Context::Code,
                (Context::BlockComment(d), '/') if next == Some('*') => {
                    consumed_next = true;
                    Context::BlockComment(d + 1)
                }
                (Context::BlockComment(d), '*') if next == Some('/') => {
                    consumed_next = true;
                    if d == 1 {
                        Context::Code
                    } else {
                        Context::BlockComment(d - 1)
                    }
                }
                (other, _) => other,
            };
            self.before_previous = self.previous;
            self.previous = Some(c);
            if consumed_next && let Some(n) = chars.next() {
                self.before_previous = self.previous;
                self.previous = Some(n);
            }
        }
    }

    /// After a substitution: the value is not template text, but it separates what came before.
    pub fn substituted(&mut self) {
        self.previous = Some('x');
        self.before_previous = Some('x');
    }
}

/// `value` written for its place in the SQL text; `Err` says why it cannot be.
pub(crate) fn write(value: &str, kind: SqlVar, context: Context) -> Result<String, String> {
    if kind == SqlVar::Raw {
        return Ok(value.to_string());
    }
    match context {
        Context::Code => literal(value, kind),
        // Between quotes the template decided the type; only the quotes need escaping.
        Context::String => Ok(value.replace('\'', "''")),
        Context::EscapeString => Ok(value.replace('\\', "\\\\").replace('\'', "''")),
        Context::Identifier => Ok(value.replace('"', "\"\"")),
        Context::DollarString if value.contains('$') => {
            Err("a value containing `$` cannot be written inside a `$$…$$` string".into())
        }
        Context::DollarString => Ok(value.to_string()),
        // A comment must stay a comment whatever the value holds.
        Context::LineComment | Context::BlockComment(_) => Ok(value
            .replace(['\n', '\r'], " ")
            .replace("*/", "* /")
            .replace("/*", "/ *")),
    }
}

fn literal(value: &str, kind: SqlVar) -> Result<String, String> {
    match kind {
        SqlVar::String | SqlVar::Raw => Ok(crate::quote::quote_literal(value)),
        SqlVar::Number => {
            let plain = !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'));
            if plain && value.parse::<f64>().is_ok_and(f64::is_finite) {
                Ok(value.to_string())
            } else {
                Err(format!("`{value}` is not a number (`type: number`)"))
            }
        }
        SqlVar::Date => chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .map(|d| format!("DATE '{d}'"))
            .map_err(|_| format!("`{value}` is not a date like 2025-06-30 (`type: date`)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_after(text: &str) -> Context {
        let mut s = Scanner::default();
        s.feed(text);
        s.context
    }

    #[test]
    fn scanner_knows_quotes_and_comments() {
        assert_eq!(context_after("SELECT * WHERE a = "), Context::Code);
        assert_eq!(context_after("WHERE a = '"), Context::String);
        assert_eq!(context_after("WHERE a = 'it''s "), Context::String);
        assert_eq!(context_after("WHERE a = 'x' AND b = "), Context::Code);
        assert_eq!(context_after("WHERE a = E'"), Context::EscapeString);
        assert_eq!(context_after("WHERE a = E'\\' "), Context::EscapeString);
        assert_eq!(context_after("WHERE name = '"), Context::String);
        assert_eq!(context_after("FROM \""), Context::Identifier);
        assert_eq!(context_after("-- note "), Context::LineComment);
        assert_eq!(context_after("-- note\n"), Context::Code);
        assert_eq!(context_after("/* a /* b */ "), Context::BlockComment(1));
        assert_eq!(context_after("/* a /* b */ */"), Context::Code);
        assert_eq!(context_after("$$ x "), Context::DollarString);
    }

    #[test]
    fn values_are_escaped_for_their_place() {
        let evil = "x' OR '1'='1";
        assert_eq!(
            write(evil, SqlVar::String, Context::Code).expect("ok"),
            "'x'' OR ''1''=''1'"
        );
        assert_eq!(
            write(evil, SqlVar::String, Context::String).expect("ok"),
            "x'' OR ''1''=''1"
        );
        assert_eq!(
            write("a\\' OR 1=1", SqlVar::String, Context::EscapeString).expect("ok"),
            "a\\\\'' OR 1=1"
        );
        assert_eq!(
            write("a\"b", SqlVar::String, Context::Identifier).expect("ok"),
            "a\"\"b"
        );
        assert_eq!(
            write("x\nDROP TABLE t */", SqlVar::String, Context::LineComment).expect("ok"),
            "x DROP TABLE t * /"
        );
        assert_eq!(write(evil, SqlVar::Raw, Context::Code).expect("ok"), evil);
    }

    #[test]
    fn numbers_and_dates_are_checked() {
        assert_eq!(
            write("-2.5", SqlVar::Number, Context::Code).expect("ok"),
            "-2.5"
        );
        assert!(write("1; DROP", SqlVar::Number, Context::Code).is_err());
        assert!(write("NaN", SqlVar::Number, Context::Code).is_err());
        assert_eq!(
            write("2025-06-30", SqlVar::Date, Context::Code).expect("ok"),
            "DATE '2025-06-30'"
        );
        assert!(write("2025-02-30", SqlVar::Date, Context::Code).is_err());
    }
}
