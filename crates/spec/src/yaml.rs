//! A small decoder from positioned YAML nodes into typed values.
//!
//! serde stops at the first error and loses positions of unknown keys; segflow promises every
//! error at once with line:col, so decoding walks saphyr's `MarkedYaml` tree by hand and records
//! problems in [`Ctx`] instead of returning early.

use saphyr::{MarkedYaml, Scalar, YamlData};

use crate::diagnostic::{Diagnostic, Diagnostics, Location, Spanned, did_you_mean};
use crate::vars::{Mode, Variables};

/// Decoding state shared by every decode function: the collected errors and the variables.
pub(crate) struct Ctx<'v> {
    pub diags: Diagnostics,
    pub vars: &'v Variables,
    /// How each user variable is written into SQL, from the pipeline's `vars:`.
    pub sql_vars: std::collections::BTreeMap<String, crate::SqlVar>,
    /// Where every mapping key (and every item of a name list) was written, by key path, so
    /// checks made after decoding (the engine's column checks) can still point at the key.
    pub keys: std::collections::BTreeMap<String, Location>,
}

impl Ctx<'_> {
    pub fn error(&mut self, loc: Location, path: &str, message: impl Into<String>) {
        self.diags.error(loc, path, message);
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }
}

pub(crate) type Node<'a> = MarkedYaml<'a>;

pub(crate) fn loc(node: &Node<'_>) -> Location {
    Location::new(node.span.start.line(), node.span.start.col() + 1)
}

pub(crate) fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn kind_name(node: &Node<'_>) -> &'static str {
    match &node.data {
        YamlData::Sequence(_) => "a list",
        YamlData::Mapping(_) => "a mapping",
        YamlData::Value(Scalar::Null) => "nothing (null)",
        YamlData::Value(Scalar::Boolean(_)) => "a boolean",
        YamlData::Value(Scalar::Integer(_)) => "an integer",
        YamlData::Value(Scalar::FloatingPoint(_)) => "a number",
        YamlData::Value(Scalar::String(_)) => "a string",
        _ => "an unsupported YAML value",
    }
}

/// The keys of one YAML mapping, with a record of which keys the decoder asked for so the
/// rest can be reported as unknown (with a "did you mean" hint drawn from the asked-for ones).
pub(crate) struct Map<'a, 'y> {
    pub loc: Location,
    pub path: String,
    entries: Vec<(String, Location, &'a Node<'y>)>,
    used: Vec<bool>,
    known: Vec<&'static str>,
}

impl<'a, 'y> Map<'a, 'y> {
    /// A key's value and its key path, marking the key as known.
    pub fn get(&mut self, key: &'static str) -> Option<(&'a Node<'y>, String)> {
        self.known.push(key);
        let i = self.entries.iter().position(|(k, _, _)| k == key)?;
        self.used[i] = true;
        Some((self.entries[i].2, child_path(&self.path, key)))
    }

    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _, _)| k == key)
    }

    pub fn required(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &'static str,
    ) -> Option<(&'a Node<'y>, String)> {
        let found = self.get(key);
        if found.is_none() {
            ctx.error(
                self.loc,
                &self.path,
                format!("missing required key `{key}`"),
            );
        }
        found
    }

    /// Entries whose keys are user-chosen names (sources, columns, outputs).
    pub fn named_entries(&mut self) -> Vec<(Spanned<String>, &'a Node<'y>, String)> {
        self.used.iter_mut().for_each(|u| *u = true);
        self.entries
            .iter()
            .map(|(k, l, v)| (Spanned::new(k.clone(), *l), *v, child_path(&self.path, k)))
            .collect()
    }

    /// Reports every key that no `get` asked for.
    pub fn finish(self, ctx: &mut Ctx<'_>) {
        for ((key, key_loc, _), used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let mut d = Diagnostic::new(
                *key_loc,
                child_path(&self.path, key),
                format!("unknown key `{key}`"),
            );
            let hint = did_you_mean(key, self.known.iter().copied()).unwrap_or_else(|| {
                let mut known = self.known.clone();
                known.sort_unstable();
                known.dedup();
                format!("expected one of: {}", known.join(", "))
            });
            d = d.with_hint(hint);
            ctx.push(d);
        }
    }
}

pub(crate) fn map<'a, 'y>(
    ctx: &mut Ctx<'_>,
    node: &'a Node<'y>,
    path: &str,
) -> Option<Map<'a, 'y>> {
    let YamlData::Mapping(m) = &node.data else {
        ctx.error(
            loc(node),
            path,
            format!("expected a mapping, found {}", kind_name(node)),
        );
        return None;
    };
    let mut entries = Vec::with_capacity(m.len());
    for (k, v) in m {
        match scalar_text(k) {
            Some(key) => {
                ctx.keys.insert(child_path(path, &key), loc(k));
                entries.push((key, loc(k), v));
            }
            None => ctx.error(loc(k), path, "mapping keys must be plain names"),
        }
    }
    let used = vec![false; entries.len()];
    Some(Map {
        loc: loc(node),
        path: path.to_string(),
        entries,
        used,
        known: Vec::new(),
    })
}

pub(crate) fn seq<'a, 'y>(
    ctx: &mut Ctx<'_>,
    node: &'a Node<'y>,
    path: &str,
) -> Option<&'a [Node<'y>]> {
    match &node.data {
        YamlData::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                ctx.keys.insert(format!("{path}[{i}]"), loc(item));
            }
            Some(items.as_slice())
        }
        _ => {
            ctx.error(
                loc(node),
                path,
                format!("expected a list, found {}", kind_name(node)),
            );
            None
        }
    }
}

/// The text of a scalar as written (numbers and booleans too, since `postal_code: 01234` or
/// `rest: 1` are meant as text); `None` for null, lists and mappings.
fn scalar_text(node: &Node<'_>) -> Option<String> {
    match &node.data {
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        YamlData::Representation(s, _, _) => Some(s.to_string()),
        _ => None,
    }
}

fn interpolated(
    ctx: &mut Ctx<'_>,
    node: &Node<'_>,
    path: &str,
    mode: Mode,
) -> Option<Spanned<String>> {
    let Some(raw) = scalar_text(node) else {
        ctx.error(
            loc(node),
            path,
            format!("expected a string, found {}", kind_name(node)),
        );
        return None;
    };
    match ctx.vars.interpolate_declared(&raw, mode, &ctx.sql_vars) {
        Ok(text) => Some(Spanned::new(text, loc(node))),
        Err(e) => {
            let mut d = Diagnostic::new(loc(node), path, e.message);
            if let Some(h) = e.hint {
                d = d.with_hint(h);
            }
            ctx.push(d);
            None
        }
    }
}

/// A string value with `${...}` variables expanded as plain text.
pub(crate) fn string(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<Spanned<String>> {
    interpolated(ctx, node, path, Mode::Text)
}

/// A SQL text: period variables expand to typed SQL literals (`DATE '2025-01-01'`).
pub(crate) fn sql(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<Spanned<String>> {
    interpolated(ctx, node, path, Mode::Sql)
}

/// A plain name (identifier-like, no variables): step names, column names, model kinds.
pub(crate) fn name(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<Spanned<String>> {
    let Some(text) = scalar_text(node) else {
        ctx.error(
            loc(node),
            path,
            format!("expected a name, found {}", kind_name(node)),
        );
        return None;
    };
    Some(Spanned::new(text, loc(node)))
}

/// One name or a list of names.
pub(crate) fn names(
    ctx: &mut Ctx<'_>,
    node: &Node<'_>,
    path: &str,
) -> Option<Vec<Spanned<String>>> {
    match &node.data {
        YamlData::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                ctx.keys.insert(item_path.clone(), loc(item));
                out.extend(name(ctx, item, &item_path));
            }
            Some(out)
        }
        _ => name(ctx, node, path).map(|n| vec![n]),
    }
}

pub(crate) fn boolean(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<bool> {
    match &node.data {
        YamlData::Value(Scalar::Boolean(b)) => Some(*b),
        _ => {
            ctx.error(
                loc(node),
                path,
                format!("expected true or false, found {}", kind_name(node)),
            );
            None
        }
    }
}

/// An integer within `range`, with the range named in the error.
pub(crate) fn integer(
    ctx: &mut Ctx<'_>,
    node: &Node<'_>,
    path: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Option<i64> {
    match &node.data {
        YamlData::Value(Scalar::Integer(i)) if range.contains(i) => Some(*i),
        YamlData::Value(Scalar::Integer(i)) => {
            ctx.error(
                loc(node),
                path,
                format!(
                    "{i} is out of range: expected {}..={}",
                    range.start(),
                    range.end()
                ),
            );
            None
        }
        // `${VAR}` in a numeric key: the variable's value must read as an integer.
        YamlData::Value(Scalar::String(text)) if text.contains("${") => {
            let value = interpolated(ctx, node, path, Mode::Text)?;
            match value.value.trim().parse::<i64>() {
                Ok(i) if range.contains(&i) => Some(i),
                _ => {
                    ctx.error(
                        loc(node),
                        path,
                        format!(
                            "`{text}` is `{}`: expected an integer in {}..={}",
                            value.value,
                            range.start(),
                            range.end()
                        ),
                    );
                    None
                }
            }
        }
        _ => {
            ctx.error(
                loc(node),
                path,
                format!("expected an integer, found {}", kind_name(node)),
            );
            None
        }
    }
}

/// A number (integers accepted).
pub(crate) fn number(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<f64> {
    match &node.data {
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.into_inner()),
        #[allow(clippy::cast_precision_loss)]
        YamlData::Value(Scalar::Integer(i)) => Some(*i as f64),
        _ => {
            ctx.error(
                loc(node),
                path,
                format!("expected a number, found {}", kind_name(node)),
            );
            None
        }
    }
}

/// A value from a fixed set of words, with a "did you mean" hint for near misses.
pub(crate) fn choice<T: Copy>(
    ctx: &mut Ctx<'_>,
    node: &Node<'_>,
    path: &str,
    options: &[(&'static str, T)],
) -> Option<T> {
    let text = name(ctx, node, path)?;
    if let Some((_, v)) = options.iter().find(|(k, _)| *k == text.value) {
        return Some(*v);
    }
    let words: Vec<&str> = options.iter().map(|(k, _)| *k).collect();
    let hint = did_you_mean(&text.value, words.iter().copied())
        .unwrap_or_else(|| format!("expected one of: {}", words.join(", ")));
    ctx.push(
        Diagnostic::new(text.loc, path, format!("unknown value `{}`", text.value)).with_hint(hint),
    );
    None
}
