//! Population stability: the PSI of each segmentation column's mix, and of each numeric
//! feature's distribution binned at the baseline period's quantiles (deciles by default), per
//! pair of periods. The counts come from DataFusion; the index is computed in Rust from the
//! integer counts, so it does not depend on partitioning.

use std::collections::{BTreeMap, HashMap};

use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use segflow_spec::{TrendKind, TrendSpec, quote_ident};
use segflow_trends::{Flag, population_stability, quantile_ranks};

use super::history::{History, Judge, PeriodData, Verdict, pairs};
use super::{Cell, Rows, verdict_record};
use crate::error::RunError;
use crate::steps::frames::{collect, f64_column, single_row, string_column};

pub(super) async fn run(
    ctx: &SessionContext,
    step: &str,
    spec: &TrendSpec,
    history: &History,
) -> Result<(DataFrame, Vec<serde_json::Value>), RunError> {
    let mut judge = Judge::new(history);
    let mut rows = Rows::new(TrendKind::Stability);
    let mut verdicts = Vec::new();
    let mut mixes: HashMap<(String, String), BTreeMap<String, u64>> = HashMap::new();
    let mut baselines: HashMap<(String, String), (Vec<f64>, Vec<u64>)> = HashMap::new();
    let row = |basis: &str,
               a: &PeriodData,
               b: &PeriodData,
               measure: &str,
               kind: &str,
               psi: Option<f64>,
               v: &Verdict| {
        let flag = psi.map(|x| {
            Flag::of(x, spec.psi.watch, spec.psi.shifted)
                .name()
                .to_string()
        });
        vec![
            basis.into(),
            a.label.as_str().into(),
            b.label.as_str().into(),
            measure.into(),
            kind.into(),
            Cell::from(psi),
            Cell::from(flag),
            v.comparable.into(),
            v.reason().into(),
        ]
    };
    for (basis, i, j) in pairs(&history.periods, spec.versus_first) {
        let (a, b) = (&history.periods[i], &history.periods[j]);
        for segment in &spec.segments {
            let verdict = judge.segment(a, b, segment);
            verdicts.push(verdict_record(
                &segment.column,
                basis,
                &a.label,
                &b.label,
                &verdict,
            ));
            let psi = match (a.table_with(&segment.column), b.table_with(&segment.column)) {
                (Some(ta), Some(tb)) => {
                    let ma = mix(ctx, step, &mut mixes, &a.label, ta, &segment.column).await?;
                    let mb = mix(ctx, step, &mut mixes, &b.label, tb, &segment.column).await?;
                    let labels: std::collections::BTreeSet<&String> =
                        ma.keys().chain(mb.keys()).collect();
                    let ea: Vec<u64> = labels
                        .iter()
                        .map(|l| ma.get(*l).copied().unwrap_or(0))
                        .collect();
                    let eb: Vec<u64> = labels
                        .iter()
                        .map(|l| mb.get(*l).copied().unwrap_or(0))
                        .collect();
                    population_stability(&ea, &eb, spec.psi.floor)
                }
                _ => None,
            };
            rows.push(row(basis, a, b, &segment.column, "segments", psi, &verdict));
        }
        for feature in &spec.features {
            let verdict = judge.column(a, b, feature);
            verdicts.push(verdict_record(feature, basis, &a.label, &b.label, &verdict));
            let psi = match (a.table_with(feature), b.table_with(feature)) {
                (Some(ta), Some(tb)) => {
                    // The baseline's cut points and its own counts serve every pair it is
                    // the baseline of.
                    let key = (a.label.clone(), feature.clone());
                    if !baselines.contains_key(&key) {
                        let c = cut_points(ctx, step, ta, feature, spec.psi.bins).await?;
                        let counts = bin_counts(ctx, step, ta, feature, &c).await?;
                        baselines.insert(key.clone(), (c, counts));
                    }
                    let (c, ea) = &baselines[&key];
                    let eb = bin_counts(ctx, step, tb, feature, c).await?;
                    population_stability(ea, &eb, spec.psi.floor)
                }
                _ => None,
            };
            rows.push(row(basis, a, b, feature, "feature", psi, &verdict));
        }
    }
    Ok((rows.into_frame(ctx, step)?, verdicts))
}

/// Customers per segment (NULL as `(none)`), computed once per period and column.
async fn mix(
    ctx: &SessionContext,
    step: &str,
    cache: &mut HashMap<(String, String), BTreeMap<String, u64>>,
    label: &str,
    table: &str,
    column: &str,
) -> Result<BTreeMap<String, u64>, RunError> {
    let key = (label.to_string(), column.to_string());
    if let Some(found) = cache.get(&key) {
        return Ok(found.clone());
    }
    let batches = collect(
        ctx,
        step,
        &format!(
            "SELECT coalesce(CAST({c} AS VARCHAR), '(none)') AS s, count(*) AS n FROM {t} GROUP BY 1",
            c = quote_ident(column),
            t = quote_ident(table)
        ),
    )
    .await?;
    let names = string_column(step, &batches, "s")?;
    let counts = f64_column(step, &batches, "n")?;
    let found: BTreeMap<String, u64> = names
        .into_iter()
        .zip(counts)
        .map(|(s, n)| (s.unwrap_or_default(), n as u64))
        .collect();
    cache.insert(key, found.clone());
    Ok(found)
}

/// The baseline's quantile cut points of `feature`: the values at ranks ⌈k·n/bins⌉, without
/// repeats.
async fn cut_points(
    ctx: &SessionContext,
    step: &str,
    table: &str,
    feature: &str,
    bins: u32,
) -> Result<Vec<f64>, RunError> {
    let f = format!("CAST({} AS DOUBLE)", quote_ident(feature));
    let t = quote_ident(table);
    let n = single_row(ctx, step, &format!("SELECT count({f}) FROM {t}"))
        .await?
        .first()
        .copied()
        .flatten()
        .unwrap_or(0.0) as u64;
    let ranks = quantile_ranks(n, bins);
    if ranks.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = ranks.iter().map(u64::to_string).collect();
    let batches = collect(
        ctx,
        step,
        &format!(
            "SELECT v FROM (SELECT {f} AS v, row_number() OVER (ORDER BY {f}) AS rn FROM {t} WHERE {f} IS NOT NULL) WHERE rn IN ({}) ORDER BY v",
            list.join(", ")
        ),
    )
    .await?;
    let mut values = f64_column(step, &batches, "v")?;
    values.dedup();
    Ok(values)
}

/// Rows per bin: bin k holds values with k cut points below them; NULLs have a bin of their
/// own, after the others.
async fn bin_counts(
    ctx: &SessionContext,
    step: &str,
    table: &str,
    feature: &str,
    cuts: &[f64],
) -> Result<Vec<u64>, RunError> {
    let f = format!("CAST({} AS DOUBLE)", quote_ident(feature));
    let bin = if cuts.is_empty() {
        "0".to_string()
    } else {
        cuts.iter()
            .map(|c| format!("CASE WHEN {f} > {c:?} THEN 1 ELSE 0 END"))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let batches = collect(
        ctx,
        step,
        &format!(
            "SELECT CASE WHEN {f} IS NULL THEN -1 ELSE {bin} END AS bin, count(*) AS n FROM {} GROUP BY 1",
            quote_ident(table)
        ),
    )
    .await?;
    let bins = f64_column(step, &batches, "bin")?;
    let counts = f64_column(step, &batches, "n")?;
    let mut out = vec![0u64; cuts.len() + 2];
    for (b, n) in bins.into_iter().zip(counts) {
        let slot = if b < 0.0 { cuts.len() + 1 } else { b as usize };
        out[slot] += n as u64;
    }
    Ok(out)
}
