//! Decoder of `trend:` steps. Each kind accepts only the keys it uses, so a key written for
//! another kind is reported as unknown rather than ignored.

use crate::decode_models::column;
use crate::diagnostic::Diagnostic;
use crate::period::Period;
use crate::trend::{HistoryRange, HistorySpec, PsiOptions, TrendKind, TrendSegment, TrendSpec};
use crate::yaml::{self, Ctx, Map, Node};

pub(crate) fn trend(ctx: &mut Ctx<'_>, m: &mut Map<'_, '_>) -> Option<TrendSpec> {
    let kind = m.get("trend").and_then(|(n, p)| {
        yaml::choice(
            ctx,
            n,
            &p,
            &[
                ("migration", TrendKind::Migration),
                ("stability", TrendKind::Stability),
                ("kpis", TrendKind::Kpis),
                ("shift", TrendKind::Shift),
            ],
        )
    });
    let history = m
        .required(ctx, "history")
        .and_then(|(n, p)| history(ctx, n, &p));
    let Some(kind) = kind else {
        // The keys below depend on the kind; without one they cannot be judged.
        m.named_entries();
        return None;
    };
    let segments_required = matches!(kind, TrendKind::Migration | TrendKind::Kpis);
    let segments = if segments_required {
        m.required(ctx, "segments")
            .map(|(n, p)| segments(ctx, n, &p))
            .unwrap_or_default()
    } else {
        m.get("segments")
            .map(|(n, p)| segments(ctx, n, &p))
            .unwrap_or_default()
    };
    let mut spec = TrendSpec {
        kind,
        history: history?,
        key: "customer_id".into(),
        segments,
        revenue: None,
        orders: None,
        kpis: Vec::new(),
        features: Vec::new(),
        psi: PsiOptions::default(),
        versus_first: false,
        models: Vec::new(),
        new_label: "(new)".into(),
        lost_label: "(lost)".into(),
    };
    match kind {
        TrendKind::Migration => {
            spec.key = column(ctx, m, "key", "customer_id");
            spec.revenue = optional_name(ctx, m, "revenue");
            spec.versus_first = flag(ctx, m, "versus_first");
            if let Some((n, p)) = m.get("labels") {
                labels(ctx, n, &p, &mut spec);
            }
        }
        TrendKind::Stability => {
            spec.features = names(ctx, m, "features");
            spec.versus_first = flag(ctx, m, "versus_first");
            if let Some((n, p)) = m.get("psi") {
                spec.psi = psi(ctx, n, &p);
            }
            if spec.segments.is_empty() && spec.features.is_empty() {
                ctx.push(
                    Diagnostic::new(m.loc, &m.path, "a stability trend needs `segments`, `features` or both")
                        .with_hint("segments: [rfm_segment] compares the segment mix; features: [recency_days] a numeric column's distribution"),
                );
            }
        }
        TrendKind::Kpis => {
            spec.revenue = optional_name(ctx, m, "revenue");
            spec.orders = optional_name(ctx, m, "orders");
            spec.kpis = names(ctx, m, "kpis");
        }
        TrendKind::Shift => {
            spec.models = names(ctx, m, "models");
            if spec.compared_models().is_empty() {
                ctx.push(
                    Diagnostic::new(m.loc, &m.path, "a shift trend needs the models to compare")
                        .with_hint("models: [rfm, value_tier] (the producing pipeline's model names), or segments with `model:`"),
                );
            }
        }
    }
    Some(spec)
}

fn optional_name(ctx: &mut Ctx<'_>, m: &mut Map<'_, '_>, key: &'static str) -> Option<String> {
    m.get(key)
        .and_then(|(n, p)| yaml::name(ctx, n, &p))
        .map(|s| s.value)
}

fn names(ctx: &mut Ctx<'_>, m: &mut Map<'_, '_>, key: &'static str) -> Vec<String> {
    m.get(key)
        .and_then(|(n, p)| yaml::names(ctx, n, &p))
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.value)
        .collect()
}

fn flag(ctx: &mut Ctx<'_>, m: &mut Map<'_, '_>, key: &'static str) -> bool {
    m.get(key)
        .and_then(|(n, p)| yaml::boolean(ctx, n, &p))
        .unwrap_or(false)
}

/// `history: { output, dir, periods: 2021..2025 | last: 5 }`.
fn history(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<HistorySpec> {
    let mut m = yaml::map(ctx, node, path)?;
    let output = m
        .required(ctx, "output")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let dir = m
        .get("dir")
        .and_then(|(n, p)| yaml::string(ctx, n, &p))
        .map(|s| s.value);
    let periods = m.get("periods").and_then(|(n, p)| {
        let text = yaml::string(ctx, n, &p)?;
        let parsed = text.value.split_once("..").and_then(|(a, b)| {
            Some((
                a.trim().parse::<Period>().ok()?,
                b.trim().parse::<Period>().ok()?,
            ))
        });
        match parsed {
            Some((a, b)) if a.grain() == b.grain() => Some(HistoryRange::Between(a, b)),
            _ => {
                ctx.push(
                    Diagnostic::new(
                        text.loc,
                        &p,
                        format!("`{}` is not a range of periods", text.value),
                    )
                    .with_hint("write FIRST..LAST of one grain: `2021..2025`, `2021..${period}` or `2025-01..2025-12`"),
                );
                None
            }
        }
    });
    let last = m.get("last").and_then(|(n, p)| {
        yaml::integer(ctx, n, &p, 2..=1000).map(|n| HistoryRange::Last(n as u32))
    });
    let range = match (periods, last) {
        (Some(_), Some(_)) => {
            ctx.error(m.loc, path, "`history` has `periods` or `last`, not both");
            None
        }
        (Some(r), None) | (None, Some(r)) => Some(r),
        (None, None) => {
            ctx.push(
                Diagnostic::new(m.loc, path, "`history` needs the periods to read")
                    .with_hint("`periods: 2021..${period}` or `last: 5` (the run's period and the four before)"),
            );
            None
        }
    };
    m.finish(ctx);
    Some(HistorySpec {
        output: output?.value,
        dir,
        range: range?,
    })
}

/// `segments: [rfm_segment, { column: value_tier, model: value_tier, vintage: geo }]`.
fn segments(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Vec<TrendSegment> {
    let Some(items) = yaml::seq(ctx, node, path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if matches!(item.data, saphyr::YamlData::Mapping(_)) {
            let Some(mut m) = yaml::map(ctx, item, &p) else {
                continue;
            };
            let column = m
                .required(ctx, "column")
                .and_then(|(n, p)| yaml::name(ctx, n, &p));
            let model = optional_name(ctx, &mut m, "model");
            let vintage = optional_name(ctx, &mut m, "vintage");
            m.finish(ctx);
            if let Some(column) = column {
                out.push(TrendSegment {
                    column: column.value,
                    model,
                    vintage,
                });
            }
        } else if let Some(column) = yaml::name(ctx, item, &p) {
            out.push(TrendSegment {
                column: column.value,
                model: None,
                vintage: None,
            });
        }
    }
    out
}

fn psi(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> PsiOptions {
    let mut options = PsiOptions::default();
    let Some(mut m) = yaml::map(ctx, node, path) else {
        return options;
    };
    if let Some(bins) = m
        .get("bins")
        .and_then(|(n, p)| yaml::integer(ctx, n, &p, 2..=100))
    {
        options.bins = bins as u32;
    }
    let positive = |ctx: &mut Ctx<'_>, key: &'static str, m: &mut Map<'_, '_>| {
        m.get(key).and_then(|(n, p)| {
            let v = yaml::number(ctx, n, &p)?;
            if v > 0.0 && v.is_finite() {
                Some(v)
            } else {
                ctx.error(
                    yaml::loc(n),
                    &p,
                    format!("expected a positive number, found {v}"),
                );
                None
            }
        })
    };
    if let Some(v) = positive(ctx, "watch", &mut m) {
        options.watch = v;
    }
    if let Some(v) = positive(ctx, "shifted", &mut m) {
        options.shifted = v;
    }
    if let Some(v) = positive(ctx, "floor", &mut m) {
        options.floor = v;
    }
    if options.watch >= options.shifted {
        ctx.error(
            m.loc,
            path,
            format!(
                "`watch` ({}) must be below `shifted` ({})",
                options.watch, options.shifted
            ),
        );
    }
    m.finish(ctx);
    options
}

fn labels(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str, spec: &mut TrendSpec) {
    let Some(mut m) = yaml::map(ctx, node, path) else {
        return;
    };
    if let Some(s) = m.get("new").and_then(|(n, p)| yaml::string(ctx, n, &p)) {
        spec.new_label = s.value;
    }
    if let Some(s) = m.get("lost").and_then(|(n, p)| yaml::string(ctx, n, &p)) {
        spec.lost_label = s.value;
    }
    if spec.new_label == spec.lost_label {
        ctx.error(m.loc, path, "the `new` and `lost` labels must differ");
    }
    m.finish(ctx);
}
