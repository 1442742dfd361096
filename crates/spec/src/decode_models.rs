//! Decoders of the model steps (`model: rfm`, `pareto`, `matrix`, `rules`, `kmeans`, `clv`,
//! `lookalike`, `potential`) and of the pipeline's `models:` block.

use chrono::NaiveDate;

use crate::diagnostic::{Diagnostic, Spanned};
use crate::models::{
    ArtifactRef, Axis, ClusterSpec, ClvSpec, Crosswalk, EnrichSpec, FrequencyMeasure, JoinKey,
    LookalikeMethod, LookalikeSpec, Lookback, LookbackUnit, MatrixSpec, ModelMode, ModelsOptions,
    MonetaryMeasure, Normalizer, ParetoSpec, PotentialSpec, ProfileMarket, ProfileOrders,
    ProfileSpec, ReportSpec, RfmCuts, RfmSpec, RulesSpec, ScoreMethod, SegmentRule, Split,
    TierBasis, TimeUnit, TrendReportSpec, VintageBy, VintageSpec,
};
use crate::pipeline::Severity;
use crate::yaml::{self, Ctx, Map, Node, loc};

/// A column name with a default.
pub(crate) fn column(
    ctx: &mut Ctx<'_>,
    m: &mut Map<'_, '_>,
    key: &'static str,
    default: &str,
) -> String {
    m.get(key)
        .and_then(|(n, p)| yaml::name(ctx, n, &p))
        .map_or_else(|| default.to_string(), |s| s.value)
}

fn lookback(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<Lookback> {
    let text = yaml::string(ctx, node, path)?;
    let mut parts = text.value.split_whitespace();
    let parsed = match (
        parts.next().map(str::parse::<u32>),
        parts.next(),
        parts.next(),
    ) {
        (Some(Ok(amount)), Some(unit), None) if amount > 0 => match unit.trim_end_matches('s') {
            "day" => Some(LookbackUnit::Days),
            "month" => Some(LookbackUnit::Months),
            "year" => Some(LookbackUnit::Years),
            _ => None,
        }
        .map(|unit| Lookback { amount, unit }),
        _ => None,
    };
    if parsed.is_none() {
        ctx.push(
            Diagnostic::new(text.loc, path, format!("invalid lookback `{}`", text.value))
                .with_hint("write a positive count and a unit: `365 days`, `24 months`, `3 years`"),
        );
    }
    parsed
}

pub(crate) fn segments(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Vec<SegmentRule> {
    let Some(items) = yaml::seq(ctx, node, path) else {
        return Vec::new();
    };
    let mut rules = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(mut r) = yaml::map(ctx, item, &p) else {
            continue;
        };
        let name = r
            .required(ctx, "name")
            .and_then(|(n, p)| yaml::string(ctx, n, &p));
        // `when: true` (the YAML boolean) or no `when` at all marks the catch-all.
        let when = match r.get("when") {
            None => Some(None),
            Some((n, _))
                if matches!(
                    n.data,
                    saphyr::YamlData::Value(saphyr::Scalar::Boolean(true))
                ) =>
            {
                Some(None)
            }
            Some((n, p)) => yaml::sql(ctx, n, &p).map(|s| Some(s.value)),
        };
        r.finish(ctx);
        if let (Some(name), Some(when)) = (name, when) {
            rules.push(SegmentRule {
                name: name.value,
                when,
                loc: loc(item),
            });
        }
    }
    let catch_all: Vec<usize> = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.when.is_none())
        .map(|(i, _)| i)
        .collect();
    match catch_all.as_slice() {
        [i] if *i + 1 == rules.len() => {}
        [] if !rules.is_empty() => ctx.push(
            Diagnostic::new(loc(node), path, "the last segment rule must be a catch-all")
                .with_hint("end the list with `- { name: Others, when: true }` so every customer gets a segment"),
        ),
        [] => ctx.error(loc(node), path, "at least one segment rule is needed"),
        _ => {
            let first = rules[catch_all[0]].loc;
            ctx.push(
                Diagnostic::new(first, path, "only the last segment rule may be a catch-all")
                    .with_hint("rules after a catch-all could never match"),
            );
        }
    }
    rules
}

pub(crate) fn rfm(ctx: &mut Ctx<'_>, m: &mut Map<'_, '_>) -> Option<RfmSpec> {
    let input = m
        .required(ctx, "input")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let customer = column(ctx, m, "customer", "customer_id");
    let date = column(ctx, m, "date", "order_date");
    let order_id = m
        .get("order_id")
        .and_then(|(n, p)| yaml::name(ctx, n, &p))
        .map(|s| s.value);
    let amount = column(ctx, m, "amount", "amount");
    let default_frequency = if order_id.is_some() {
        FrequencyMeasure::Orders
    } else {
        FrequencyMeasure::PurchaseDays
    };
    let frequency = m
        .get("frequency")
        .and_then(|(n, p)| {
            yaml::choice(
                ctx,
                n,
                &p,
                &[
                    ("orders", FrequencyMeasure::Orders),
                    ("purchase_days", FrequencyMeasure::PurchaseDays),
                ],
            )
        })
        .unwrap_or(default_frequency);
    if frequency == FrequencyMeasure::Orders && order_id.is_none() {
        ctx.push(
            Diagnostic::new(m.loc, &m.path, "`frequency: orders` needs `order_id`")
                .with_hint("name the order id column, or use `frequency: purchase_days`"),
        );
    }
    let monetary = m
        .get("monetary")
        .and_then(|(n, p)| {
            yaml::choice(
                ctx,
                n,
                &p,
                &[
                    ("sum", MonetaryMeasure::Sum),
                    ("mean", MonetaryMeasure::Mean),
                ],
            )
        })
        .unwrap_or(MonetaryMeasure::Sum);
    let (mut bins, mut method, mut cuts) = (5, ScoreMethod::Ntile, None);
    if let Some((n, p)) = m.get("scores")
        && let Some(mut s) = yaml::map(ctx, n, &p)
    {
        if let Some((n, p)) = s.get("bins") {
            bins = yaml::integer(ctx, n, &p, 2..=10).map_or(5, |b| b as u32);
        }
        if let Some((n, p)) = s.get("method") {
            method = yaml::choice(
                ctx,
                n,
                &p,
                &[
                    ("ntile", ScoreMethod::Ntile),
                    ("quantile", ScoreMethod::Quantile),
                    ("cuts", ScoreMethod::Cuts),
                ],
            )
            .unwrap_or(ScoreMethod::Ntile);
        }
        if let Some((n, p)) = s.get("cuts") {
            cuts = rfm_cuts(ctx, n, &p);
        }
        match (method, &cuts) {
            (ScoreMethod::Cuts, None) => ctx.push(
                Diagnostic::new(s.loc, &s.path, "`method: cuts` needs `cuts`").with_hint(
                    "give increasing cut points per measure: `cuts: { recency: [30, 90, 180, 365], frequency: [1, 2, 4, 8], monetary: [50, 100, 250, 500] }`",
                ),
            ),
            (ScoreMethod::Cuts, Some(c)) => {
                bins = u32::try_from(c.recency.len() + 1).unwrap_or(u32::MAX);
                if c.frequency.len() != c.recency.len() || c.monetary.len() != c.recency.len() {
                    ctx.error(
                        s.loc,
                        &s.path,
                        format!(
                            "recency, frequency and monetary need the same number of cut points (got {}, {}, {})",
                            c.recency.len(),
                            c.frequency.len(),
                            c.monetary.len()
                        ),
                    );
                }
            }
            (_, Some(_)) => ctx.error(s.loc, &s.path, "`cuts` is only used with `method: cuts`"),
            (_, None) => {}
        }
        s.finish(ctx);
    }
    let lookback = m.get("lookback").and_then(|(n, p)| lookback(ctx, n, &p));
    let reference_date = m.get("reference_date").and_then(|(n, p)| {
        let text = yaml::string(ctx, n, &p)?;
        let parsed = NaiveDate::parse_from_str(&text.value, "%Y-%m-%d").ok();
        if parsed.is_none() {
            ctx.error(
                text.loc,
                &p,
                format!("invalid date `{}`: expected YYYY-MM-DD", text.value),
            );
        }
        parsed
    });
    let segments = m
        .required(ctx, "segments")
        .map(|(n, p)| segments(ctx, n, &p))
        .unwrap_or_default();
    Some(RfmSpec {
        input: input?,
        customer,
        date,
        order_id,
        amount,
        frequency,
        monetary,
        bins,
        method,
        cuts,
        lookback,
        reference_date,
        segments,
    })
}

pub(crate) fn pareto(ctx: &mut Ctx<'_>, m: &mut Map<'_, '_>) -> Option<ParetoSpec> {
    let input = m
        .required(ctx, "input")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let customer = column(ctx, m, "customer", "customer_id");
    let value = m
        .required(ctx, "value")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let rest = column(ctx, m, "rest", "C");
    let basis = m
        .get("basis")
        .and_then(|(n, p)| {
            yaml::choice(
                ctx,
                n,
                &p,
                &[
                    ("value", TierBasis::Value),
                    ("customers", TierBasis::Customers),
                ],
            )
        })
        .unwrap_or(TierBasis::Value);
    let mut tiers = vec![("A".to_string(), 0.80), ("B".to_string(), 0.95)];
    if let Some((n, p)) = m.get("tiers")
        && let Some(mut t) = yaml::map(ctx, n, &p)
    {
        tiers.clear();
        let mut previous = 0.0;
        for (tier, node, tier_path) in t.named_entries() {
            let Some(bound) = yaml::number(ctx, node, &tier_path) else {
                continue;
            };
            if !(bound > previous && bound < 1.0) {
                ctx.push(
                    Diagnostic::new(loc(node), &tier_path, format!("tier bound {bound} must be above {previous} and below 1"))
                        .with_hint("bounds are cumulative value shares in increasing order, e.g. `{ A: 0.80, B: 0.95 }`"),
                );
            }
            previous = bound;
            tiers.push((tier.value, bound));
        }
        if tiers.is_empty() {
            ctx.error(t.loc, &p, "at least one tier is needed");
        }
    }
    Some(ParetoSpec {
        input: input?,
        customer,
        value: value?.value,
        basis,
        tiers,
        rest,
    })
}

/// Increasing cut points of one measure.
fn cut_list(ctx: &mut Ctx<'_>, m: &mut Map<'_, '_>, key: &'static str) -> Vec<f64> {
    let Some((n, p)) = m.required(ctx, key) else {
        return Vec::new();
    };
    let Some(items) = yaml::seq(ctx, n, &p) else {
        return Vec::new();
    };
    let values: Vec<f64> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| yaml::number(ctx, item, &format!("{p}[{i}]")))
        .collect();
    if values.is_empty() || values.windows(2).any(|w| w[0] >= w[1]) {
        ctx.push(
            Diagnostic::new(
                loc(n),
                &p,
                "cut points must be a non-empty, strictly increasing list",
            )
            .with_hint("e.g. `[30, 90, 180, 365]` for 5 bins"),
        );
    }
    values
}

fn rfm_cuts(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<RfmCuts> {
    let mut m = yaml::map(ctx, node, path)?;
    let cuts = RfmCuts {
        recency: cut_list(ctx, &mut m, "recency"),
        frequency: cut_list(ctx, &mut m, "frequency"),
        monetary: cut_list(ctx, &mut m, "monetary"),
    };
    m.finish(ctx);
    Some(cuts)
}

/// The pipeline's `models:` block: `{ dir, mode }`.
pub(crate) fn models_options(
    ctx: &mut Ctx<'_>,
    node: &Node<'_>,
    path: &str,
    base_dir: &std::path::Path,
    default_dir: String,
) -> ModelsOptions {
    let mut options = ModelsOptions {
        dir: default_dir,
        mode: ModelMode::Auto,
    };
    let Some(mut m) = yaml::map(ctx, node, path) else {
        return options;
    };
    if let Some((n, p)) = m.get("dir")
        && let Some(dir) = yaml::string(ctx, n, &p)
    {
        options.dir = crate::decode::resolve_location(&dir.value, base_dir);
    }
    if let Some((n, p)) = m.get("mode") {
        options.mode = yaml::choice(
            ctx,
            n,
            &p,
            &[
                ("auto", ModelMode::Auto),
                ("fit", ModelMode::Fit),
                ("apply", ModelMode::Apply),
            ],
        )
        .unwrap_or(ModelMode::Auto);
    }
    m.finish(ctx);
    options
}

/// A step's `artifact: { name, period }`; both optional.
pub(crate) fn artifact_ref(ctx: &mut Ctx<'_>, m: &mut Map<'_, '_>, step_name: &str) -> ArtifactRef {
    let mut artifact = ArtifactRef {
        name: step_name.to_string(),
        period: None,
    };
    if let Some((n, p)) = m.get("artifact")
        && let Some(mut a) = yaml::map(ctx, n, &p)
    {
        if let Some((n, p)) = a.get("name")
            && let Some(name) = yaml::name(ctx, n, &p)
        {
            // The name is a directory of the model store: no separators, no `..`.
            let safe = name
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !safe || name.value.is_empty() {
                ctx.push(
                    Diagnostic::new(name.loc, &p, format!("invalid model name `{}`", name.value))
                        .with_hint("letters, digits, `_` and `-` only: it names a directory of the model store"),
                );
            }
            artifact.name = name.value;
        }
        if let Some((n, p)) = a.get("period")
            && let Some(period) = yaml::string(ctx, n, &p)
            && period.value != "latest"
        {
            if period.value.parse::<crate::Period>().is_err() {
                ctx.push(
                    Diagnostic::new(period.loc, &p, format!("invalid period `{}`", period.value))
                        .with_hint("write `latest` or a period label such as `2025` or `2025-06`"),
                );
            }
            artifact.period = Some(period.value);
        }
        a.finish(ctx);
    }
    artifact
}

fn split(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<Split> {
    if let saphyr::YamlData::Value(saphyr::Scalar::String(text)) = &node.data {
        return match text.as_ref() {
            "median" => Some(Split::Median),
            "mean" => Some(Split::Mean),
            other => {
                ctx.push(
                    Diagnostic::new(loc(node), path, format!("unknown split `{other}`"))
                        .with_hint("write `median`, `mean` or a number"),
                );
                None
            }
        };
    }
    yaml::number(ctx, node, path).map(Split::Value)
}

fn axis(
    ctx: &mut Ctx<'_>,
    m: &mut Map<'_, '_>,
    key: &'static str,
    default_name: &str,
) -> Option<Axis> {
    let (n, p) = m.required(ctx, key)?;
    let mut a = yaml::map(ctx, n, &p)?;
    let name = column(ctx, &mut a, "name", default_name);
    let expr = a
        .required(ctx, "expr")
        .and_then(|(n, p)| yaml::sql(ctx, n, &p));
    let split = a
        .get("split")
        .map_or(Some(Split::Median), |(n, p)| split(ctx, n, &p));
    a.finish(ctx);
    Some(Axis {
        name,
        expr: expr?.value,
        split: split?,
    })
}

pub(crate) fn matrix(ctx: &mut Ctx<'_>, m: &mut Map<'_, '_>) -> Option<MatrixSpec> {
    let input = m
        .required(ctx, "input")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let key = column(ctx, m, "key", "customer_id");
    let x = axis(ctx, m, "x", "x_value");
    let y = axis(ctx, m, "y", "y_value");
    let mut cells = [
        "high_high".to_string(),
        "high_low".to_string(),
        "low_high".to_string(),
        "low_low".to_string(),
    ];
    if let Some((n, p)) = m.required(ctx, "cells")
        && let Some(mut c) = yaml::map(ctx, n, &p)
    {
        for (i, key) in ["high_high", "high_low", "low_high", "low_low"]
            .into_iter()
            .enumerate()
        {
            if let Some((n, p)) = c.required(ctx, key)
                && let Some(name) = yaml::string(ctx, n, &p)
            {
                cells[i] = name.value;
            }
        }
        c.finish(ctx);
    }
    Some(MatrixSpec {
        input: input?,
        key,
        x: x?,
        y: y?,
        cells,
    })
}

pub(crate) fn rules(ctx: &mut Ctx<'_>, m: &mut Map<'_, '_>) -> Option<RulesSpec> {
    let input = m
        .required(ctx, "input")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let segments = m
        .required(ctx, "segments")
        .map(|(n, p)| segments(ctx, n, &p))
        .unwrap_or_default();
    Some(RulesSpec {
        input: input?,
        segments,
    })
}

fn name_list(
    ctx: &mut Ctx<'_>,
    m: &mut Map<'_, '_>,
    key: &'static str,
    required: bool,
) -> Vec<String> {
    let found = if required {
        m.required(ctx, key)
    } else {
        m.get(key)
    };
    found
        .and_then(|(n, p)| yaml::names(ctx, n, &p))
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.value)
        .collect()
}

pub(crate) fn cluster(
    ctx: &mut Ctx<'_>,
    m: &mut Map<'_, '_>,
    categorical_allowed: bool,
) -> Option<ClusterSpec> {
    let input = m
        .required(ctx, "input")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let key = column(ctx, m, "key", "customer_id");
    let numeric = name_list(ctx, m, "features", true);
    let categorical = if categorical_allowed {
        name_list(ctx, m, "categorical", false)
    } else {
        Vec::new()
    };
    if numeric.is_empty() && categorical.is_empty() {
        ctx.push(
            Diagnostic::new(m.loc, &m.path, "clustering needs at least one feature").with_hint(
                "list numeric columns under `features: [recency_days, frequency, monetary]`",
            ),
        );
    }
    let k = m
        .required(ctx, "k")
        .and_then(|(n, p)| yaml::integer(ctx, n, &p, 2..=50))
        .map(|k| k as u32);
    let seed = m
        .get("seed")
        .and_then(|(n, p)| yaml::integer(ctx, n, &p, 0..=i64::MAX))
        .map_or(42, |s| s as u64);
    let restarts = m
        .get("restarts")
        .and_then(|(n, p)| yaml::integer(ctx, n, &p, 1..=100))
        .map_or(4, |s| s as u32);
    let max_iterations = m
        .get("max_iterations")
        .and_then(|(n, p)| yaml::integer(ctx, n, &p, 1..=10_000))
        .map_or(100, |s| s as u32);
    let categorical_weight = if categorical_allowed {
        m.get("categorical_weight")
            .and_then(|(n, p)| yaml::number(ctx, n, &p))
    } else {
        None
    };
    Some(ClusterSpec {
        input: input?,
        key,
        numeric,
        categorical,
        k: k?,
        seed,
        restarts,
        max_iterations,
        categorical_weight,
    })
}

fn date(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<NaiveDate> {
    let text = yaml::string(ctx, node, path)?;
    let parsed = NaiveDate::parse_from_str(&text.value, "%Y-%m-%d").ok();
    if parsed.is_none() {
        ctx.error(
            text.loc,
            path,
            format!("invalid date `{}`: expected YYYY-MM-DD", text.value),
        );
    }
    parsed
}

fn bounded(
    ctx: &mut Ctx<'_>,
    m: &mut Map<'_, '_>,
    key: &'static str,
    default: f64,
    range: std::ops::RangeInclusive<f64>,
) -> f64 {
    let Some((n, p)) = m.get(key) else {
        return default;
    };
    match yaml::number(ctx, n, &p) {
        Some(v) if range.contains(&v) => v,
        Some(v) => {
            ctx.error(
                loc(n),
                &p,
                format!(
                    "{v} is out of range: expected {} to {}",
                    range.start(),
                    range.end()
                ),
            );
            default
        }
        None => default,
    }
}

pub(crate) fn clv(ctx: &mut Ctx<'_>, m: &mut Map<'_, '_>) -> Option<ClvSpec> {
    let input = m
        .required(ctx, "input")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let customer = column(ctx, m, "customer", "customer_id");
    let date_column = column(ctx, m, "date", "order_date");
    let amount = column(ctx, m, "amount", "amount");
    let margin = m
        .get("margin")
        .and_then(|(n, p)| yaml::sql(ctx, n, &p))
        .map(|s| s.value);
    let observation_end = m.get("observation_end").and_then(|(n, p)| date(ctx, n, &p));
    let time_unit = m
        .get("time_unit")
        .and_then(|(n, p)| {
            yaml::choice(
                ctx,
                n,
                &p,
                &[("days", TimeUnit::Days), ("weeks", TimeUnit::Weeks)],
            )
        })
        .unwrap_or(TimeUnit::Weeks);
    let horizon = bounded(ctx, m, "horizon", 52.0, 0.0..=100_000.0);
    let clv_months = m
        .get("clv_months")
        .and_then(|(n, p)| yaml::integer(ctx, n, &p, 1..=600))
        .map_or(12, |v| v as u32);
    let monthly_discount = bounded(ctx, m, "monthly_discount", 0.01, 0.0..=1.0);
    let margin_rate = bounded(ctx, m, "margin_rate", 1.0, 0.0..=1.0);
    let mut churn_below = 0.5;
    let mut churn_after_days = None;
    if let Some((n, p)) = m.get("churn")
        && let Some(mut c) = yaml::map(ctx, n, &p)
    {
        churn_below = bounded(ctx, &mut c, "p_alive_below", 0.5, 0.0..=1.0);
        churn_after_days = c
            .get("inactive_days")
            .and_then(|(n, p)| yaml::integer(ctx, n, &p, 1..=100_000))
            .map(|d| d as u32);
        c.finish(ctx);
    }
    Some(ClvSpec {
        input: input?,
        customer,
        date: date_column,
        amount,
        margin,
        observation_end,
        time_unit,
        horizon,
        clv_months,
        monthly_discount,
        margin_rate,
        churn_below,
        churn_after_days,
    })
}

pub(crate) fn lookalike(ctx: &mut Ctx<'_>, m: &mut Map<'_, '_>) -> Option<LookalikeSpec> {
    let customers = m
        .required(ctx, "customers")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let prospects = m
        .required(ctx, "prospects")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let key = column(ctx, m, "key", "prospect_id");
    let segment = column(ctx, m, "segment", "segment");
    let best = m
        .required(ctx, "best")
        .and_then(|(n, p)| yaml::names(ctx, n, &p))
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.value)
        .collect::<Vec<_>>();
    let attributes = name_list(ctx, m, "attributes", true);
    let method = m
        .get("method")
        .and_then(|(n, p)| {
            yaml::choice(
                ctx,
                n,
                &p,
                &[
                    ("index", LookalikeMethod::Index),
                    ("centroid", LookalikeMethod::Centroid),
                ],
            )
        })
        .unwrap_or(LookalikeMethod::Index);
    let min_customers = m
        .get("min_customers")
        .and_then(|(n, p)| yaml::integer(ctx, n, &p, 0..=i64::MAX))
        .map_or(5, |v| v as u64);
    if attributes.is_empty() {
        ctx.error(m.loc, &m.path, "`attributes` needs at least one column");
    }
    Some(LookalikeSpec {
        customers: customers?,
        prospects: prospects?,
        key,
        segment,
        best,
        attributes,
        method,
        min_customers,
    })
}

pub(crate) fn potential(ctx: &mut Ctx<'_>, m: &mut Map<'_, '_>) -> Option<PotentialSpec> {
    let customers = m
        .required(ctx, "customers")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let market = m
        .required(ctx, "market")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let key = column(ctx, m, "key", "org_no");
    let target = m
        .required(ctx, "target")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let numeric = name_list(ctx, m, "numeric", false);
    let categorical = name_list(ctx, m, "categorical", false);
    if numeric.is_empty() && categorical.is_empty() {
        ctx.error(
            m.loc,
            &m.path,
            "a potential model needs `numeric` or `categorical` predictors",
        );
    }
    Some(PotentialSpec {
        customers: customers?,
        market: market?,
        key,
        target: target?.value,
        numeric,
        categorical,
    })
}

/// `vintage: { column: year }` or `vintage: { directory: vintage }`, optionally `use: "2024"`.
pub(crate) fn vintage(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<VintageSpec> {
    let mut m = yaml::map(ctx, node, path)?;
    let column = m.get("column").and_then(|(n, p)| yaml::name(ctx, n, &p));
    let directory = m.get("directory").and_then(|(n, p)| yaml::name(ctx, n, &p));
    let fixed = m
        .get("use")
        .and_then(|(n, p)| yaml::string(ctx, n, &p))
        .map(|s| s.value)
        .filter(|v| v != "latest");
    m.finish(ctx);
    let by = match (column, directory) {
        (Some(c), None) => VintageBy::Column(c.value),
        (None, Some(d)) => VintageBy::Directory(d.value),
        _ => {
            ctx.push(
                Diagnostic::new(loc(node), path, "a vintage is told by a `column` or a `directory`, one of them")
                    .with_hint("e.g. `vintage: { column: year }` or `vintage: { directory: vintage }` for files under vintage=2024/"),
            );
            return None;
        }
    };
    Some(VintageSpec { by, fixed })
}

fn join_key(
    ctx: &mut Ctx<'_>,
    node: &Node<'_>,
    path: &str,
    default_reference: Option<&Spanned<String>>,
) -> Option<JoinKey> {
    let mut m = yaml::map(ctx, node, path)?;
    let level = m
        .required(ctx, "level")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let input = m
        .required(ctx, "input")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let reference = match m.get("reference") {
        Some((n, p)) => yaml::name(ctx, n, &p),
        None => {
            if default_reference.is_none() {
                ctx.error(
                    m.loc,
                    &m.path,
                    "missing required key `reference` (the step has no default `reference`)",
                );
            }
            default_reference.cloned()
        }
    };
    let key = m
        .required(ctx, "key")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let normalize = m
        .get("normalize")
        .and_then(|(n, p)| {
            yaml::choice(
                ctx,
                n,
                &p,
                &[
                    ("postal_code", Normalizer::PostalCode),
                    ("postal_area", Normalizer::PostalArea),
                    ("address", Normalizer::Address),
                    ("org_number", Normalizer::OrgNumber),
                    ("exact", Normalizer::Exact),
                ],
            )
        })
        .unwrap_or(Normalizer::Exact);
    m.finish(ctx);
    Some(JoinKey {
        level: level?.value,
        input: input?.value,
        reference: reference?,
        key: key?.value,
        normalize,
    })
}

/// `enrich: { input, reference, country, keys: [...], columns: [...], min_match_rate }`.
pub(crate) fn enrich(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<EnrichSpec> {
    let mut m = yaml::map(ctx, node, path)?;
    let input = m
        .required(ctx, "input")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let reference = m.get("reference").and_then(|(n, p)| yaml::name(ctx, n, &p));
    let country = m.get("country").and_then(|(n, p)| {
        let text = yaml::name(ctx, n, &p)?;
        let known = ["SE", "DK", "NO", "FI", "US", "UK", "GB"];
        if !known.contains(&text.value.to_ascii_uppercase().as_str()) {
            ctx.push(
                Diagnostic::new(text.loc, &p, format!("unknown country `{}`", text.value))
                    .with_hint("postal-code rules exist for SE, DK, NO, FI, US and UK"),
            );
        }
        Some(text.value)
    });
    let mut keys = Vec::new();
    if let Some((n, p)) = m.required(ctx, "keys")
        && let Some(items) = yaml::seq(ctx, n, &p)
    {
        for (i, item) in items.iter().enumerate() {
            keys.extend(join_key(
                ctx,
                item,
                &format!("{p}[{i}]"),
                reference.as_ref(),
            ));
        }
        if items.is_empty() {
            ctx.error(loc(n), &p, "at least one key is needed");
        }
    }
    let needs_country = keys.iter().any(|k| {
        matches!(
            k.normalize,
            Normalizer::PostalCode | Normalizer::PostalArea | Normalizer::OrgNumber
        )
    });
    if needs_country && country.is_none() {
        ctx.push(
            Diagnostic::new(
                m.loc,
                &m.path,
                "postal-code and organisation-number keys need `country`",
            )
            .with_hint("e.g. `country: SE`"),
        );
    }
    let columns = name_list(ctx, &mut m, "columns", true);
    let min_match_rate = m.get("min_match_rate").and_then(|(n, p)| {
        if let Some(mut r) = yaml::map(ctx, n, &p) {
            let rate = bounded(ctx, &mut r, "rate", 0.0, 0.0..=1.0);
            let severity = r
                .get("severity")
                .and_then(|(n, p)| {
                    yaml::choice(
                        ctx,
                        n,
                        &p,
                        &[("error", Severity::Error), ("warn", Severity::Warn)],
                    )
                })
                .unwrap_or(Severity::Error);
            r.finish(ctx);
            Some((rate, severity))
        } else {
            None
        }
    });
    let crosswalk = m.get("crosswalk").and_then(|(n, p)| {
        let mut c = yaml::map(ctx, n, &p)?;
        let table = c
            .required(ctx, "table")
            .and_then(|(n, p)| yaml::name(ctx, n, &p));
        let column = c
            .required(ctx, "column")
            .and_then(|(n, p)| yaml::name(ctx, n, &p));
        let from = column_default(ctx, &mut c, "from", "from_code");
        let to = column_default(ctx, &mut c, "to", "to_code");
        c.finish(ctx);
        let column = column?.value;
        if !columns.contains(&column) {
            ctx.push(
                Diagnostic::new(
                    loc(n),
                    &p,
                    format!("`{column}` is not one of the enriched `columns`"),
                )
                .with_hint("the crosswalk re-codes a column the step adds"),
            );
        }
        Some(Crosswalk {
            table: table?,
            column,
            from,
            to,
        })
    });
    let match_column = column(ctx, &mut m, "match_column", "match_level");
    m.finish(ctx);
    Some(EnrichSpec {
        input: input?,
        country,
        keys,
        columns,
        min_match_rate,
        crosswalk,
        match_column,
    })
}

fn column_default(
    ctx: &mut Ctx<'_>,
    m: &mut Map<'_, '_>,
    key: &'static str,
    default: &str,
) -> String {
    column(ctx, m, key, default)
}

fn optional_name(ctx: &mut Ctx<'_>, m: &mut Map<'_, '_>, key: &'static str) -> Option<String> {
    m.get(key)
        .and_then(|(n, p)| yaml::name(ctx, n, &p))
        .map(|s| s.value)
}

/// `profile: { customers, key, segment, by, revenue, margin, acquisition_cost, orders, market }`.
pub(crate) fn profile(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<ProfileSpec> {
    let mut m = yaml::map(ctx, node, path)?;
    let customers = m
        .required(ctx, "customers")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let key = column(ctx, &mut m, "key", "customer_id");
    let segment = column(ctx, &mut m, "segment", "segment");
    let by = optional_name(ctx, &mut m, "by");
    let revenue = optional_name(ctx, &mut m, "revenue");
    let margin = optional_name(ctx, &mut m, "margin");
    let acquisition_cost = optional_name(ctx, &mut m, "acquisition_cost");
    let orders = m.get("orders").and_then(|(n, p)| {
        let mut o = yaml::map(ctx, n, &p)?;
        let table = o
            .required(ctx, "table")
            .and_then(|(n, p)| yaml::name(ctx, n, &p));
        let customer = column(ctx, &mut o, "customer", "customer_id");
        let amount = column(ctx, &mut o, "amount", "amount");
        let order_id = optional_name(ctx, &mut o, "order_id");
        let date = column(ctx, &mut o, "date", "order_date");
        let category = optional_name(ctx, &mut o, "category");
        o.finish(ctx);
        Some(ProfileOrders {
            table: table?,
            customer,
            amount,
            order_id,
            date,
            category,
        })
    });
    let market = m.get("market").and_then(|(n, p)| {
        let mut o = yaml::map(ctx, n, &p)?;
        let table = o
            .required(ctx, "table")
            .and_then(|(n, p)| yaml::name(ctx, n, &p));
        let market_by = o
            .required(ctx, "by")
            .and_then(|(n, p)| yaml::name(ctx, n, &p));
        let households = column(ctx, &mut o, "households", "households");
        o.finish(ctx);
        Some(ProfileMarket {
            table: table?,
            by: market_by?.value,
            households,
        })
    });
    if market.is_some() && by.is_none() {
        ctx.push(
            Diagnostic::new(m.loc, &m.path, "a `market` table needs `by`")
                .with_hint("penetration is customers / households per value of the `by` attribute"),
        );
    }
    m.finish(ctx);
    Some(ProfileSpec {
        customers: customers?,
        key,
        segment,
        by,
        revenue,
        margin,
        acquisition_cost,
        orders,
        market,
    })
}

/// Which form a `report:` block has.
#[derive(Debug)]
pub(crate) enum ReportBlock {
    Segments(ReportSpec),
    Trends(TrendReportSpec),
}

/// Keys of the segment report, which a trend report must not have.
const SEGMENT_REPORT_KEYS: [&str; 4] = ["customers", "segment", "best", "by"];

/// `report:` in either form: `{ customers, segment, best, by, title }` for a segment pipeline,
/// `{ trends: { migration, stability, kpis, shift }, title }` for a trend pipeline.
pub(crate) fn report_block(ctx: &mut Ctx<'_>, node: &Node<'_>, path: &str) -> Option<ReportBlock> {
    let m = yaml::map(ctx, node, path)?;
    if !m.has("trends") {
        return report(ctx, m).map(ReportBlock::Segments);
    }
    let mixed: Vec<&str> = SEGMENT_REPORT_KEYS
        .into_iter()
        .filter(|k| m.has(k))
        .collect();
    if !mixed.is_empty() {
        ctx.push(
            Diagnostic::new(
                m.loc,
                path,
                format!(
                    "a report block is either a segment report (customers, segment, best, by) or a trend report (trends), not both: this one has `trends` and {}",
                    mixed
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .with_hint("a trend pipeline names its trend outputs under `trends:`; a segment pipeline names the customers output and the segment column"),
        );
        return None;
    }
    trend_report(ctx, m).map(ReportBlock::Trends)
}

/// `report: { trends: { migration, stability, kpis, shift }, title }`.
fn trend_report(ctx: &mut Ctx<'_>, mut m: Map<'_, '_>) -> Option<TrendReportSpec> {
    let title = m
        .get("title")
        .and_then(|(n, p)| yaml::string(ctx, n, &p))
        .map(|s| s.value);
    let (node, path) = m.get("trends")?;
    m.finish(ctx);
    let mut t = yaml::map(ctx, node, &path)?;
    let mut table = |key: &'static str| t.get(key).and_then(|(n, p)| yaml::name(ctx, n, &p));
    let spec = TrendReportSpec {
        migration: table("migration"),
        stability: table("stability"),
        kpis: table("kpis"),
        shift: table("shift"),
        title,
    };
    if spec.outputs().is_empty() {
        ctx.push(
            Diagnostic::new(t.loc, &path, "no trend output named")
                .with_hint("name at least one of migration, stability, kpis, shift: the output a trend step writes"),
        );
    }
    t.finish(ctx);
    Some(spec)
}

/// `report: { customers, segment, best, by, title }`.
fn report(ctx: &mut Ctx<'_>, mut m: Map<'_, '_>) -> Option<ReportSpec> {
    let customers = m
        .required(ctx, "customers")
        .and_then(|(n, p)| yaml::name(ctx, n, &p));
    let segment = column(ctx, &mut m, "segment", "segment");
    let best = name_list(ctx, &mut m, "best", true);
    let by = name_list(ctx, &mut m, "by", false);
    let title = m
        .get("title")
        .and_then(|(n, p)| yaml::string(ctx, n, &p))
        .map(|s| s.value);
    m.finish(ctx);
    Some(ReportSpec {
        customers: customers?,
        segment,
        best,
        by,
        title,
    })
}
