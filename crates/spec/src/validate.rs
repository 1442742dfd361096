//! Cross-reference checks: names, inputs, the DAG and its execution order.

use std::collections::BTreeMap;

use crate::decode::Decoded;
use crate::diagnostic::{Diagnostic, Location, Spanned, Suggester};
use crate::pipeline::{Step, StepKind};
use crate::sql_refs;
use crate::yaml::Ctx;

/// Table names must work unquoted in SQL and as directory names.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// segflow's own tables (a model's intermediate tables, generated CTEs) start with this, so no
/// user table can replace one or be hidden by one.
pub const RESERVED_PREFIX: &str = "__";

fn check_identifier(ctx: &mut Ctx<'_>, name: &Spanned<String>, path: &str) {
    if name.value.starts_with(RESERVED_PREFIX) {
        ctx.push(
            Diagnostic::new(
                name.loc,
                path,
                format!(
                    "invalid name `{}`: names starting with `{RESERVED_PREFIX}` are reserved",
                    name.value
                ),
            )
            .with_hint(format!(
                "segflow names its intermediate tables `{RESERVED_PREFIX}…`; rename it, e.g. `{}`",
                name.value.trim_start_matches('_')
            )),
        );
    } else if !is_identifier(&name.value) {
        ctx.push(
            Diagnostic::new(name.loc, path, format!("invalid name `{}`", name.value)).with_hint(
                "names are lowercase letters, digits and `_`, starting with a letter, e.g. `customer_segments`",
            ),
        );
    }
}

/// Fills in the tables each SQL step reads and checks them, then checks every other reference.
/// Returns the execution order when the graph is sound.
pub(crate) fn check(ctx: &mut Ctx<'_>, doc: &mut Decoded) -> Vec<String> {
    let mut defined: BTreeMap<String, Location> = BTreeMap::new();
    // Names whose source or step had errors of its own still count as defined: a reader of
    // a source whose path has an unset variable gets no follow-on "unknown source" error.
    let named = doc
        .sources
        .iter()
        .map(|s| (&s.name, "sources"))
        .chain(doc.broken_sources.iter().map(|n| (n, "sources")))
        .chain(doc.steps.iter().map(|s| (&s.name, "steps")))
        .chain(doc.broken_steps.iter().map(|n| (n, "steps")));
    for (name, section) in named {
        check_identifier(ctx, name, section);
        if let Some(first) = defined.get(&name.value) {
            ctx.push(
                Diagnostic::new(
                    name.loc,
                    section,
                    format!("the name `{}` is used twice", name.value),
                )
                .with_hint(format!(
                    "first defined at line {}; sources and steps share one namespace",
                    first.line
                )),
            );
        } else {
            defined.insert(name.value.clone(), name.loc);
        }
    }

    let known = Suggester::new(defined.keys().map(String::as_str));
    for (i, step) in doc.steps.iter_mut().enumerate() {
        let path = format!("steps[{i}]");
        match &mut step.kind {
            StepKind::Sql(s) => match sql_refs::table_references(&s.sql.value) {
                Ok(tables) => {
                    s.reads = tables
                        .into_iter()
                        .map(|t| Spanned::new(t, s.sql.loc))
                        .collect()
                }
                Err(e) => ctx.error(
                    s.sql.loc,
                    &format!("{path}.sql"),
                    format!("invalid SQL: {}", e.message),
                ),
            },
            StepKind::Rfm(crate::models::RfmSpec { segments, .. })
            | StepKind::Rules(crate::models::RulesSpec { segments, .. }) => {
                for rule in segments.iter() {
                    if let Some(when) = &rule.when
                        && let Err(e) = sql_refs::check_expression(when)
                    {
                        ctx.error(
                            rule.loc,
                            &format!("{path}.segments"),
                            format!(
                                "invalid `when` expression for `{}`: {}",
                                rule.name, e.message
                            ),
                        );
                    }
                }
            }
            StepKind::Matrix(m) => {
                for axis in [&m.x, &m.y] {
                    if let Err(e) = sql_refs::check_expression(&axis.expr) {
                        ctx.error(
                            m.input.loc,
                            &format!("{path}.{}", axis.name),
                            format!("invalid expression `{}`: {}", axis.expr, e.message),
                        );
                    }
                }
            }
            StepKind::Clv(m) => {
                if let Some(margin) = &m.margin
                    && let Err(e) = sql_refs::check_expression(margin)
                {
                    ctx.error(
                        m.input.loc,
                        &format!("{path}.margin"),
                        format!("invalid expression `{margin}`: {}", e.message),
                    );
                }
            }
            StepKind::Pareto(_)
            | StepKind::Enrich(_)
            | StepKind::Profile(_)
            | StepKind::Cluster(_)
            | StepKind::Lookalike(_)
            | StepKind::Potential(_)
            | StepKind::Identity(_)
            | StepKind::Trend(_) => {}
        }
    }

    // A fitting run writes one artifact per model name: two steps with one name would
    // overwrite each other; a pinned artifact period only means something when applying.
    let fits = doc.grain.is_some_and(|g| doc.models.fits(g));
    let mut fitted: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, step) in doc.steps.iter().enumerate() {
        let is_model = !matches!(
            step.kind,
            StepKind::Sql(_)
                | StepKind::Identity(_)
                | StepKind::Enrich(_)
                | StepKind::Profile(_)
                | StepKind::Trend(_)
        );
        if !fits || !is_model {
            continue;
        }
        // A model without `artifact:` is stored under its step's name.
        let name = step
            .artifact
            .as_ref()
            .map_or(step.name.value.as_str(), |a| a.name.as_str());
        if let Some(first) = fitted.insert(name, &step.name.value) {
            ctx.push(
                Diagnostic::new(step.name.loc, format!("steps[{i}].artifact"), format!(
                    "steps `{first}` and `{}` both fit the model `{}`; the second would overwrite the first's artifact",
                    step.name.value, name
                ))
                .with_hint("give one of them another `artifact: { name: … }`"),
            );
        }
        if step.artifact.as_ref().is_some_and(|a| a.period.is_some()) {
            ctx.push(
                Diagnostic::new(step.name.loc, format!("steps[{i}].artifact.period"), "`artifact.period` picks a stored model to apply, but this pipeline fits its models")
                    .with_hint("remove it, or set `models: { mode: apply }`"),
            );
        }
    }

    for (i, step) in doc.steps.iter().enumerate() {
        for input in step.inputs() {
            if input.value == step.name.value {
                ctx.error(
                    input.loc,
                    &format!("steps[{i}]"),
                    format!("step `{}` reads itself", step.name.value),
                );
            } else if !defined.contains_key(&input.value) {
                unknown_table(ctx, input, &format!("steps[{i}]"), &known);
            }
        }
    }
    // Relationship targets must exist; source checks may only point at sources.
    let owners = doc
        .sources
        .iter()
        .map(|s| (&s.name.value, &s.checks, true))
        .chain(doc.steps.iter().map(|s| (&s.name.value, &s.checks, false)));
    for (owner, checks, is_source) in owners {
        for check in checks {
            let crate::pipeline::CheckKind::Relationship { to_table, .. } = &check.kind else {
                continue;
            };
            let path = format!("{owner}.checks");
            if !defined.contains_key(&to_table.value) {
                unknown_table(ctx, to_table, &path, &known);
            } else if is_source && !doc.sources.iter().any(|s| s.name.value == to_table.value) {
                ctx.push(
                    Diagnostic::new(
                        to_table.loc,
                        &path,
                        format!(
                            "source `{owner}` can only be related to another source, not step `{}`",
                            to_table.value
                        ),
                    )
                    .with_hint("put the check on a step instead"),
                );
            }
        }
    }
    let mut seen_paths = BTreeMap::new();
    for out in &doc.outputs {
        check_identifier(ctx, &out.name, "outputs");
        if !defined.contains_key(&out.from.value) {
            unknown_table(
                ctx,
                &out.from,
                &format!("outputs.{}.from", out.name.value),
                &known,
            );
        }
        if let Some(other) = seen_paths.insert(out.path.clone(), out.name.value.clone()) {
            ctx.error(
                out.name.loc,
                &format!("outputs.{}", out.name.value),
                format!("writes to the same path as output `{other}`"),
            );
        }
    }
    execution_order(ctx, doc)
}

fn unknown_table(ctx: &mut Ctx<'_>, name: &Spanned<String>, path: &str, known: &Suggester<'_>) {
    ctx.push(
        Diagnostic::new(
            name.loc,
            path,
            format!("unknown source or step `{}`", name.value),
        )
        .with_hint(known.hint(&name.value, "known sources and steps")),
    );
}

/// Kahn's algorithm, taking ready nodes in declaration order so the order is stable; the nodes
/// left over form cycles and are reported. Linear in steps and edges: names are looked up in
/// a map and ready steps kept in a heap (a scan per step made 4,000 steps take a minute).
fn execution_order(ctx: &mut Ctx<'_>, doc: &Decoded) -> Vec<String> {
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, HashMap};
    let mut order: Vec<String> = doc.sources.iter().map(|s| s.name.value.clone()).collect();
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(doc.steps.len());
    for (i, step) in doc.steps.iter().enumerate() {
        index.entry(step.name.value.as_str()).or_insert(i);
    }
    let mut waiting_for = vec![0usize; doc.steps.len()];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); doc.steps.len()];
    for (i, step) in doc.steps.iter().enumerate() {
        let mut deps: Vec<usize> = step
            .inputs()
            .iter()
            .filter_map(|input| index.get(input.value.as_str()).copied())
            .collect();
        deps.sort_unstable();
        deps.dedup();
        waiting_for[i] = deps.len();
        for d in deps {
            readers[d].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..doc.steps.len())
        .filter(|&i| waiting_for[i] == 0)
        .map(Reverse)
        .collect();
    let mut done = vec![false; doc.steps.len()];
    while let Some(Reverse(i)) = ready.pop() {
        done[i] = true;
        order.push(doc.steps[i].name.value.clone());
        for &r in &readers[i] {
            waiting_for[r] -= 1;
            if waiting_for[r] == 0 {
                ready.push(Reverse(r));
            }
        }
    }
    let pending: Vec<&Step> = doc
        .steps
        .iter()
        .zip(&done)
        .filter(|(_, d)| !**d)
        .map(|(s, _)| s)
        .collect();
    if !pending.is_empty() {
        let names: Vec<&str> = pending.iter().map(|s| s.name.value.as_str()).collect();
        let shown = names.len().min(12);
        let more = if names.len() > shown {
            format!(" and {} more", names.len() - shown)
        } else {
            String::new()
        };
        let hint = format!(
            "these steps read each other: {}{more}",
            names[..shown].join(" → ")
        );
        for step in &pending {
            ctx.push(
                Diagnostic::new(
                    step.name.loc,
                    "steps",
                    format!("step `{}` is part of a dependency cycle", step.name.value),
                )
                .with_hint(hint.clone()),
            );
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_identifier("customer_segments2"));
        assert!(!is_identifier("Customer"));
        assert!(!is_identifier("2x"));
        assert!(!is_identifier("a-b"));
    }

    #[test]
    fn scratch_table_name_cannot_replace_a_user_source() {
        // `__rfm__measured` is where step `rfm` keeps its measures: a source of that name would be
        // replaced by them (or replace them).
        let mut ctx = Ctx {
            diags: Default::default(),
            vars: &crate::Variables::new("2025".parse().expect("period"), BTreeMap::new()),
            sql_vars: BTreeMap::new(),
            keys: BTreeMap::new(),
        };
        check_identifier(
            &mut ctx,
            &Spanned::new("__rfm__measured".to_string(), Location::new(3, 3)),
            "sources",
        );
        check_identifier(
            &mut ctx,
            &Spanned::new("_rfm".to_string(), Location::new(4, 3)),
            "sources",
        );
        let errors = ctx
            .diags
            .into_result(std::path::Path::new("p.yaml"), ())
            .expect_err("reserved");
        let text = errors.to_string();
        assert!(text.contains("p.yaml:3:3"), "{text}");
        assert!(text.contains("reserved"), "{text}");
        assert!(!text.contains(":4:3"), "{text}");
    }
}
