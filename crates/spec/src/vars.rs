//! `${VAR}`, `${VAR:-default}`, `${VAR:?message}` and the period variables.
//!
//! Variables are expanded in string values after YAML parsing, so a value containing YAML
//! syntax cannot change the document's structure, and errors point at the value's line.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::period::Period;
use crate::sql_vars::{self, Context, Scanner, SqlVar};

/// Where a string is used decides how a period variable is written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Paths and other text: `${period.start}` → `2025-01-01`.
    Text,
    /// SQL: `${period.start}` → `DATE '2025-01-01'`, `${period}` → `'2025'`, so that
    /// `order_date < ${period.end}` is a typed comparison, not a string one; user variables
    /// become literals too (`'EU'`), as declared under `vars:` (see [`SqlVar`]), so a value
    /// can never change the query. Between quotes a value is escaped for those quotes.
    Sql,
}

/// Why a variable could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarError {
    pub message: String,
    pub hint: Option<String>,
}

const PERIOD_VARS: [&str; 4] = ["period", "period.start", "period.end", "period.prev"];

/// The values `${...}` can refer to: `--var` overrides, then the environment, then the period.
#[derive(Debug, Clone)]
pub struct Variables {
    overrides: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    /// `None` when validating without a period: period variables then expand to placeholders
    /// of the right shape, so SQL can still be checked.
    period: Option<Period>,
    /// Every user variable the pipeline referenced, with the value it got (`None`: unset, so
    /// a default applied): what a rerun must see again to give the same result.
    used: Arc<Mutex<BTreeMap<String, Option<String>>>>,
}

impl Variables {
    /// Variables from explicit overrides and the process environment.
    pub fn from_env(period: Option<Period>, overrides: BTreeMap<String, String>) -> Self {
        Self {
            overrides,
            env: std::env::vars().collect(),
            period,
            used: Arc::default(),
        }
    }

    /// Variables from explicit values only (tests, embedding).
    pub fn new(period: Period, values: BTreeMap<String, String>) -> Self {
        Self {
            overrides: values,
            env: BTreeMap::new(),
            period: Some(period),
            used: Arc::default(),
        }
    }

    pub fn period(&self) -> Option<Period> {
        self.period
    }

    /// Whether an environment variable is set and not empty. Secrets are read from the
    /// environment only: `--var` values end up in the manifest's arguments.
    pub fn env_is_set(&self, name: &str) -> bool {
        self.env.get(name).is_some_and(|v| !v.is_empty())
    }

    fn lookup(&self, name: &str) -> Option<&str> {
        let value = self
            .overrides
            .get(name)
            .or_else(|| self.env.get(name))
            .map(String::as_str);
        if let Ok(mut used) = self.used.lock() {
            used.insert(name.to_string(), value.map(str::to_string));
        }
        value
    }

    /// The user variables (not the period's) that expanding the pipeline looked up, with
    /// their values (`None`: not set). Values may come from the environment and hold secrets:
    /// record a digest of them, not the values.
    pub fn used(&self) -> BTreeMap<String, Option<String>> {
        self.used.lock().map(|u| u.clone()).unwrap_or_default()
    }

    fn period_value(&self, name: &str, mode: Mode) -> Option<String> {
        let p = self.period.unwrap_or(Period::year(2000));
        let (text, is_date) = match name {
            "period" => (p.to_string(), false),
            "period.start" => (p.start().to_string(), true),
            "period.end" => (p.end().to_string(), true),
            "period.prev" => (p.prev().to_string(), false),
            _ => return None,
        };
        Some(match (mode, is_date) {
            (Mode::Text, _) => text,
            (Mode::Sql, true) => format!("DATE '{text}'"),
            (Mode::Sql, false) => format!("'{text}'"),
        })
    }

    /// Expands every `${...}` in `input`; `$${` writes a literal `${`. User variables in SQL
    /// are string literals.
    pub fn interpolate(&self, input: &str, mode: Mode) -> Result<String, VarError> {
        self.interpolate_declared(input, mode, &BTreeMap::new())
    }

    /// [`Variables::interpolate`], with how each user variable is written into SQL as the
    /// pipeline's `vars:` declares it.
    pub fn interpolate_declared(
        &self,
        input: &str,
        mode: Mode,
        declared: &BTreeMap<String, SqlVar>,
    ) -> Result<String, VarError> {
        let mut out = String::with_capacity(input.len());
        let mut scanner = Scanner::default();
        let mut rest = input;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            scanner.feed(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix("${") {
                out.push_str("${");
                scanner.feed("${");
                rest = tail;
                continue;
            }
            let Some(body_start) = after.strip_prefix('{') else {
                out.push('$');
                scanner.feed("$");
                rest = after;
                continue;
            };
            let Some(close) = body_start.find('}') else {
                return Err(VarError {
                    message: format!("unterminated variable reference `${{{body_start}`"),
                    hint: Some("close it with `}`, or write `$${` for a literal `${`".into()),
                });
            };
            let body = &body_start[..close];
            out.push_str(&match mode {
                Mode::Text => self.expand(body, mode)?,
                Mode::Sql => self.expand_sql(body, declared, scanner.context)?,
            });
            scanner.substituted();
            rest = &body_start[close + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A variable written into SQL for its place in the text (see [`sql_vars`]).
    fn expand_sql(
        &self,
        body: &str,
        declared: &BTreeMap<String, SqlVar>,
        context: Context,
    ) -> Result<String, VarError> {
        let name = body.split(':').next().unwrap_or(body);
        if name == "period" || name.starts_with("period.") {
            // Typed literals in code; between quotes the plain text the template asked for.
            let mode = if context == Context::Code {
                Mode::Sql
            } else {
                Mode::Text
            };
            return self.expand(body, mode);
        }
        let value = self.expand(body, Mode::Text)?;
        let kind = declared.get(name).copied().unwrap_or_default();
        sql_vars::write(&value, kind, context).map_err(|reason| VarError {
            message: format!("variable `{name}` cannot be used in this SQL: {reason}"),
            hint: Some(match kind {
                SqlVar::Number | SqlVar::Date => {
                    "pass a value of the declared type, or change its `type` under `vars:`".into()
                }
                _ => "move the variable out of the quoted text".into(),
            }),
        })
    }

    fn expand(&self, body: &str, mode: Mode) -> Result<String, VarError> {
        let (name, op) = match body.find([':']) {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        if !is_var_name(name) {
            return Err(VarError {
                message: format!("invalid variable name `{name}`"),
                hint: Some("names are letters, digits, `_` and `.`, e.g. `${DATA_DIR}`".into()),
            });
        }
        if name == "period" || name.starts_with("period.") {
            return self.period_value(name, mode).ok_or_else(|| VarError {
                message: format!("unknown period variable `{name}`"),
                hint: Some(
                    crate::diagnostic::did_you_mean(name, PERIOD_VARS)
                        .unwrap_or_else(|| format!("expected one of: {}", PERIOD_VARS.join(", "))),
                ),
            });
        }
        let value = self.lookup(name).filter(|v| !v.is_empty());
        match (value, op) {
            (Some(v), _) => Ok(v.to_string()),
            (None, Some(default)) if default.starts_with('-') => Ok(default[1..].to_string()),
            (None, Some(message)) if message.starts_with('?') => Err(VarError {
                message: format!("variable `{name}` is not set: {}", &message[1..]),
                hint: None,
            }),
            (None, Some(other)) => Err(VarError {
                message: format!("invalid variable modifier `:{other}` on `{name}`"),
                hint: Some("use `${NAME:-default}` or `${NAME:?message}`".into()),
            }),
            (None, None) => Err(VarError {
                message: format!("variable `{name}` is not set"),
                hint: Some(format!(
                    "set it in the environment, pass `--var {name}=...`, or give a default: `${{{name}:-...}}`"
                )),
            }),
        }
    }
}

pub(crate) fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        let mut values = BTreeMap::new();
        values.insert("DATA_DIR".to_string(), "/data".to_string());
        values.insert("EMPTY".to_string(), String::new());
        Variables::new("2025".parse().expect("period"), values)
    }

    #[test]
    fn records_the_user_variables_it_looked_up() {
        let v = vars();
        v.interpolate("${DATA_DIR}/${MISSING:-x}/${period}", Mode::Text)
            .expect("ok");
        let used: Vec<_> = v.used().into_iter().collect();
        assert_eq!(
            used,
            vec![
                ("DATA_DIR".to_string(), Some("/data".to_string())),
                ("MISSING".to_string(), None)
            ]
        );
    }

    #[test]
    fn expands_plain_default_and_escaped() {
        let v = vars();
        assert_eq!(
            v.interpolate("${DATA_DIR}/x.csv", Mode::Text).expect("ok"),
            "/data/x.csv"
        );
        assert_eq!(
            v.interpolate("${NOPE:-out}", Mode::Text).expect("ok"),
            "out"
        );
        assert_eq!(
            v.interpolate("${EMPTY:-dflt}", Mode::Text).expect("ok"),
            "dflt"
        );
        assert_eq!(
            v.interpolate("cost $5 $${X}", Mode::Text).expect("ok"),
            "cost $5 ${X}"
        );
    }

    #[test]
    fn period_variables_are_typed_in_sql() {
        let v = vars();
        assert_eq!(
            v.interpolate(
                "d < ${period.end} AND p = ${period} AND q = ${period.prev}",
                Mode::Sql
            )
            .expect("ok"),
            "d < DATE '2026-01-01' AND p = '2025' AND q = '2024'"
        );
        assert_eq!(
            v.interpolate("${period.start}", Mode::Text).expect("ok"),
            "2025-01-01"
        );
    }

    #[test]
    fn var_with_quote_is_a_literal_not_sql_injection() {
        let mut values = BTreeMap::new();
        values.insert("REGION".to_string(), "x' OR '1'='1".to_string());
        values.insert("MIN".to_string(), "100".to_string());
        let v = Variables::new("2025".parse().expect("period"), values);
        assert_eq!(
            v.interpolate("WHERE region = ${REGION}", Mode::Sql)
                .expect("ok"),
            "WHERE region = 'x'' OR ''1''=''1'"
        );
        // Quoted by the template: escaped for those quotes, still one value.
        assert_eq!(
            v.interpolate(
                "WHERE region = '${REGION}' AND d >= '${period.start}'",
                Mode::Sql
            )
            .expect("ok"),
            "WHERE region = 'x'' OR ''1''=''1' AND d >= '2025-01-01'"
        );
        // Text (paths) is unchanged.
        assert_eq!(
            v.interpolate("${REGION}", Mode::Text).expect("ok"),
            "x' OR '1'='1"
        );
        let mut declared = BTreeMap::new();
        declared.insert("MIN".to_string(), SqlVar::Number);
        declared.insert("REGION".to_string(), SqlVar::Raw);
        assert_eq!(
            v.interpolate_declared("a > ${MIN} AND ${REGION}", Mode::Sql, &declared)
                .expect("ok"),
            "a > 100 AND x' OR '1'='1"
        );
        let mut declared = BTreeMap::new();
        declared.insert("REGION".to_string(), SqlVar::Number);
        let e = v
            .interpolate_declared("a > ${REGION}", Mode::Sql, &declared)
            .expect_err("not a number");
        assert!(e.message.contains("is not a number"), "{}", e.message);
    }

    #[test]
    fn reports_missing_required_and_unknown() {
        let v = vars();
        let e = v
            .interpolate("${NOPE:?set NOPE to the export dir}", Mode::Text)
            .expect_err("err");
        assert_eq!(
            e.message,
            "variable `NOPE` is not set: set NOPE to the export dir"
        );
        let e = v.interpolate("${NOPE}", Mode::Text).expect_err("err");
        assert!(e.hint.expect("hint").contains("--var NOPE="));
        let e = v
            .interpolate("${period.ende}", Mode::Text)
            .expect_err("err");
        assert_eq!(e.hint.as_deref(), Some("did you mean `period.end`?"));
        assert!(v.interpolate("${DATA_DIR", Mode::Text).is_err());
    }
}
