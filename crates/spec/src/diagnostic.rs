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

/// At most this many names are offered in one hint: a hint is a nudge, not a directory
/// listing (item 18: 1,000 broken steps printed 6 MB when every hint listed every name).
pub const MAX_HINT_NAMES: usize = 3;

/// Below this many names a hint compares the unknown name with every one; above it, only with
/// those an index of one-character deletions finds, so hints for thousands of names stay
/// linear in the number of names instead of quadratic.
const FULL_SCAN_LIMIT: usize = 256;

/// Suggests known names for an unknown one. Built once per set of names and asked many times.
#[derive(Debug)]
pub struct Suggester<'a> {
    names: Vec<&'a str>,
    /// Each name and each of its one-character deletions → the names that produce it
    /// (SymSpell's idea): two names within one insertion, deletion, substitution or
    /// transposition share a key.
    index: Option<std::collections::HashMap<String, Vec<usize>>>,
    /// The first three characters → the names starting with them: Jaro-Winkler favours a
    /// shared prefix (`ordrs` → `orders`), which one-character deletions miss.
    prefixes: std::collections::HashMap<String, Vec<usize>>,
}

fn prefix(name: &str) -> String {
    name.chars().take(3).collect()
}

fn deletions(name: &str) -> impl Iterator<Item = String> + '_ {
    let chars: Vec<(usize, char)> = name.char_indices().collect();
    std::iter::once(name.to_string()).chain(
        chars
            .into_iter()
            .map(move |(i, c)| format!("{}{}", &name[..i], &name[i + c.len_utf8()..])),
    )
}

impl<'a> Suggester<'a> {
    pub fn new(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut names: Vec<&str> = names.into_iter().collect();
        names.sort_unstable();
        names.dedup();
        let index = (names.len() > FULL_SCAN_LIMIT).then(|| {
            let mut index: std::collections::HashMap<String, Vec<usize>> =
                std::collections::HashMap::new();
            for (i, name) in names.iter().enumerate() {
                for key in deletions(name) {
                    let ids = index.entry(key).or_default();
                    if ids.last() != Some(&i) {
                        ids.push(i);
                    }
                }
            }
            index
        });
        let mut prefixes: std::collections::HashMap<String, Vec<usize>> =
            std::collections::HashMap::new();
        if index.is_some() {
            for (i, name) in names.iter().enumerate() {
                prefixes.entry(prefix(name)).or_default().push(i);
            }
        }
        Self {
            names,
            index,
            prefixes,
        }
    }

    /// Up to [`MAX_HINT_NAMES`] known names close enough to be what was meant, closest first.
    pub fn closest(&self, unknown: &str) -> Vec<&'a str> {
        let candidates: Vec<&str> = match &self.index {
            None => self.names.clone(),
            Some(index) => {
                // A bounded share of the prefix bucket keeps the work per lookup constant.
                let same_start = self
                    .prefixes
                    .get(&prefix(unknown))
                    .into_iter()
                    .flat_map(|ids| ids.iter().take(FULL_SCAN_LIMIT));
                let mut ids: Vec<usize> = deletions(unknown)
                    .filter_map(|k| index.get(&k))
                    .flatten()
                    .chain(same_start)
                    .copied()
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                ids.into_iter().map(|i| self.names[i]).collect()
            }
        };
        let mut scored: Vec<(f64, &str)> = candidates
            .into_iter()
            .map(|c| (strsim::jaro_winkler(unknown, c), c))
            .filter(|(score, _)| *score > 0.8)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        // A clear winner is shown alone; near ties are shown together.
        let best = scored.first().map_or(0.0, |(s, _)| *s);
        scored
            .into_iter()
            .take_while(|(score, _)| *score >= best - 0.05)
            .take(MAX_HINT_NAMES)
            .map(|(_, c)| c)
            .collect()
    }

    /// "did you mean `a`?", "did you mean `a`, `b` or `c`?", or else a few of the known names
    /// (`what` names them: "sources and steps", "columns of `orders`").
    pub fn hint(&self, unknown: &str, what: &str) -> String {
        let quoted =
            |names: &[&str]| -> Vec<String> { names.iter().map(|n| format!("`{n}`")).collect() };
        match self.closest(unknown).as_slice() {
            [] if self.names.is_empty() => format!("there are no {what}"),
            [] => {
                let shown = quoted(&self.names[..self.names.len().min(2 * MAX_HINT_NAMES)]);
                let rest = self.names.len() - shown.len();
                let more = if rest > 0 {
                    format!(" and {rest} more")
                } else {
                    String::new()
                };
                format!("{what}: {}{more}", shown.join(", "))
            }
            [one] => format!("did you mean `{one}`?"),
            [init @ .., last] => {
                format!("did you mean {} or `{last}`?", quoted(init).join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_offer_a_few_close_names_or_a_few_known_ones() {
        let s = Suggester::new(["order_date", "order_id", "amount", "customer_id"]);
        assert_eq!(s.hint("orderdate", "columns"), "did you mean `order_date`?");
        let s = Suggester::new(["ab1", "ab2", "ab3", "ab4", "zzz"]);
        assert_eq!(s.hint("ab", "names"), "did you mean `ab1`, `ab2` or `ab3`?");
        let many: Vec<String> = (0..1000).map(|i| format!("t{i:04}")).collect();
        let s = Suggester::new(many.iter().map(String::as_str));
        assert_eq!(
            s.hint("qqqqqqq", "known tables"),
            "known tables: `t0000`, `t0001`, `t0002`, `t0003`, `t0004`, `t0005` and 994 more"
        );
        assert_eq!(s.closest("t042").len(), MAX_HINT_NAMES);
        // The deletion index finds one-edit typos among many names.
        let many: Vec<String> = (0..1000).map(|i| format!("customer_{i:04}")).collect();
        let s = Suggester::new(many.iter().map(String::as_str));
        assert_eq!(s.closest("custmer_0042")[0], "customer_0042");
        assert_eq!(s.closest("cusotmer_0042")[0], "customer_0042");
        assert_eq!(s.closest("zcustomer_0999"), vec!["customer_0999"]);
        let mut names = many.clone();
        names.push("orders".into());
        let s = Suggester::new(names.iter().map(String::as_str));
        assert_eq!(s.closest("ordrs_0001"), vec!["orders"]);
    }

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
