//! `vars:`: how the pipeline's own variables are written into SQL.
//!
//! ```yaml
//! vars:
//!   MIN_AMOUNT: { type: number }   # `amount > ${MIN_AMOUNT}` → `amount > 100`
//!   CUTOFF: { type: date }         # → DATE '2025-06-30'
//!   EXTRA_COLUMNS: { raw: true }   # pasted as SQL: only for values the pipeline's author controls
//! ```
//!
//! Undeclared variables are strings (`'EU'`). The declaration lives in the pipeline, not on the
//! command line, so whoever passes `--var` cannot turn a value into SQL.

use std::collections::BTreeMap;

use crate::diagnostic::Diagnostic;
use crate::sql_vars::SqlVar;
use crate::yaml::{self, Ctx, Node};

pub(crate) fn declared(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> BTreeMap<String, SqlVar> {
    let mut out = BTreeMap::new();
    let Some(mut m) = yaml::map(ctx, node, path) else {
        return out;
    };
    for (name, node, path) in m.named_entries() {
        if !crate::vars::is_var_name(&name.value) || name.value.contains('.') {
            ctx.push(
                Diagnostic::new(
                    name.loc,
                    &path,
                    format!("invalid variable name `{}`", name.value),
                )
                .with_hint("names are letters, digits and `_`, e.g. `MIN_AMOUNT`"),
            );
            continue;
        }
        if name.value == "period" {
            ctx.push(
                Diagnostic::new(
                    name.loc,
                    &path,
                    "`period` is set by `--period`, not declared",
                )
                .with_hint("remove it from `vars:`"),
            );
            continue;
        }
        let Some(mut spec) = yaml::map(ctx, node, &path) else {
            continue;
        };
        let typed = spec.get("type").and_then(|(n, p)| {
            yaml::choice(
                ctx,
                n,
                &p,
                &[
                    ("string", SqlVar::String),
                    ("number", SqlVar::Number),
                    ("date", SqlVar::Date),
                ],
            )
            .map(|t| (t, p))
        });
        let raw = spec
            .get("raw")
            .and_then(|(n, p)| yaml::boolean(ctx, n, &p).map(|b| (b, p)));
        spec.finish(ctx);
        let kind = match (typed, raw) {
            (Some((_, p)), Some((true, _))) => {
                ctx.push(
                    Diagnostic::new(name.loc, &p, "a `raw: true` variable has no `type`")
                        .with_hint("keep `raw: true` to paste SQL, or `type` for a literal"),
                );
                continue;
            }
            (_, Some((true, _))) => SqlVar::Raw,
            (Some((t, _)), _) => t,
            (None, _) => SqlVar::String,
        };
        out.insert(name.value, kind);
    }
    out
}
