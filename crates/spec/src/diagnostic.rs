//! Configuration errors that point at the exact place in the pipeline file.
//!
//! Validation never stops at the first mistake: every problem found is collected as a
//! [`Diagnostic`] so a user fixes a pipeline in one round trip, not one error per run.

use std::fmt;
use std::path::{Path, PathBuf};

/// A 1-based line and column in the pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Location {
    pub line: usize,
    pub col: usize,
}

impl Location {
    pub fn new(line: usize, col: usize) -> Self {
        Self { line, col }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A value together with where it was written, so later checks (a step naming an unknown
/// input, a cycle) can still point at the right line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub loc: Location,
}

impl<T> Spanned<T> {
    pub fn new(value: T, loc: Location) -> Self {
        Self { value, loc }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// One configuration problem: where, which key, what is wrong and, when we can guess, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub loc: Location,
    /// Dotted key path such as `steps[2].scores.bins`.
    pub key_path: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(loc: Location, key_path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            loc,
            key_path: key_path.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Every configuration error found in one pipeline file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors {
    pub file: PathBuf,
    pub diagnostics: Vec<Diagnostic>,
}

impl SpecErrors {
    pub fn single(file: &Path, diagnostic: Diagnostic) -> Self {
        Self {
            file: file.to_path_buf(),
            diagnostics: vec![diagnostic],
        }
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.diagnostics.len();
        for d in &self.diagnostics {
            write!(f, "{}:{}: ", self.file.display(), d.loc)?;
            if !d.key_path.is_empty() {
                write!(f, "{}: ", d.key_path)?;
            }
            writeln!(f, "{}", d.message)?;
            if let Some(hint) = &d.hint {
                writeln!(f, "  hint: {hint}")?;
            }
        }
        write!(
            f,
            "{n} configuration error{} in {}",
            if n == 1 { "" } else { "s" },
            self.file.display()
        )
    }
}

/// Collects diagnostics while a pipeline file is decoded and checked.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn error(&mut self, loc: Location, key_path: &str, message: impl Into<String>) {
        self.push(Diagnostic::new(loc, key_path, message));
    }

    /// Sorted by position so the report reads top to bottom like the file.
    pub fn into_result<T>(mut self, file: &Path, value: T) -> Result<T, SpecErrors> {
        if self.items.is_empty() {
            return Ok(value);
        }
        self.items.sort_by_key(|d| d.loc);
        self.items.dedup();
        Err(SpecErrors {
            file: file.to_path_buf(),
            diagnostics: self.items,
        })
    }
}

/// "did you mean `partition_by`?" — the closest known name, if it is close enough to be a typo.
pub fn did_you_mean<'a>(unknown: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for candidate in known {
        let score = strsim::jaro_winkler(unknown, candidate);
        if score > 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, name)| format!("did you mean `{name}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let known = ["partition_by", "path", "order_by", "from"];
        assert_eq!(
            did_you_mean("partiton_by", known).as_deref(),
            Some("did you mean `partition_by`?")
        );
        assert_eq!(did_you_mean("zzz", known), None);
    }

    #[test]
    fn renders_every_error_with_location_and_hint() {
        let mut diags = Diagnostics::default();
        diags.push(Diagnostic::new(Location::new(9, 3), "b", "second").with_hint("fix it"));
        diags.error(Location::new(2, 1), "a", "first");
        let err = diags
            .into_result(Path::new("p.yaml"), ())
            .expect_err("two errors");
        let text = err.to_string();
        assert_eq!(
            text,
            "p.yaml:2:1: a: first\np.yaml:9:3: b: second\n  hint: fix it\n2 configuration errors in p.yaml"
        );
    }
}
