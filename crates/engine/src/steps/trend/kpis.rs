//! KPI trends: per segmentation column, segment and period — customers, share of customers,
//! revenue, revenue share, orders and the average of each declared KPI column — with the change
//! against the previous period and against the first period of the range, absolute and
//! relative. One aggregate per period and column (decimal sums, so exact); the rest is
//! arithmetic on those few rows.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use segflow_spec::{TrendKind, TrendSpec, quote_ident};
use segflow_trends::Change;

use super::history::{History, Judge, Verdict};
use super::{Cell, Rows, verdict_record};
use crate::error::RunError;
use crate::steps::frames::{collect, optional_f64_column, string_column};

/// Metric values of one period: segment → metric → value.
type PeriodValues = BTreeMap<String, BTreeMap<String, Option<f64>>>;

pub(super) async fn run(
    ctx: &SessionContext,
    step: &str,
    spec: &TrendSpec,
    history: &History,
) -> Result<(DataFrame, Vec<serde_json::Value>), RunError> {
    let mut judge = Judge::new(history);
    let mut rows = Rows::new(TrendKind::Kpis);
    let mut verdicts = Vec::new();
    let metrics = metric_names(spec);
    for segment in &spec.segments {
        // Values per period index, for the periods that have the column.
        let mut values: Vec<Option<PeriodValues>> = Vec::new();
        for p in &history.periods {
            let usable = p.has(&segment.column)
                && [spec.revenue.as_ref(), spec.orders.as_ref()]
                    .into_iter()
                    .flatten()
                    .chain(&spec.kpis)
                    .all(|c| p.has(c));
            values.push(match (&p.table, usable) {
                (Some(t), true) => Some(period_values(ctx, step, spec, t, &segment.column).await?),
                _ => None,
            });
        }
        let segments: BTreeSet<&String> = values.iter().flatten().flat_map(|v| v.keys()).collect();
        let periods = &history.periods;
        for (i, p) in periods.iter().enumerate() {
            let Some(current) = &values[i] else {
                continue;
            };
            let mut verdict = Verdict::comparable();
            for (basis, j) in [
                ("previous", i.checked_sub(1)),
                ("first", (i > 0).then_some(0)),
            ] {
                let Some(j) = j else { continue };
                let v = judge.segment(&periods[j], p, segment);
                verdicts.push(verdict_record(
                    &segment.column,
                    basis,
                    &periods[j].label,
                    &p.label,
                    &v,
                ));
                verdict = verdict.and(v);
            }
            let lookup = |k: Option<usize>, seg: &str, metric: &str| -> Option<f64> {
                let v = values[k?].as_ref()?;
                value(v, seg, metric)
            };
            for seg in &segments {
                for metric in &metrics {
                    let now = value(current, seg, metric);
                    let previous = lookup(i.checked_sub(1), seg, metric);
                    let first = if i == 0 {
                        now
                    } else {
                        lookup(Some(0), seg, metric)
                    };
                    let cp = Change::between(previous, now);
                    let cf = Change::between(first, now);
                    rows.push(vec![
                        segment.column.as_str().into(),
                        seg.as_str().into(),
                        p.label.as_str().into(),
                        metric.as_str().into(),
                        Cell::from(now),
                        Cell::from(previous),
                        Cell::from(cp.absolute),
                        Cell::from(cp.relative),
                        Cell::from(first),
                        Cell::from(cf.absolute),
                        Cell::from(cf.relative),
                        verdict.comparable.into(),
                        verdict.reason().into(),
                    ]);
                }
            }
        }
    }
    Ok((rows.into_frame(ctx, step)?, verdicts))
}

fn metric_names(spec: &TrendSpec) -> Vec<String> {
    let mut out = vec!["customers".to_string(), "share".to_string()];
    if spec.revenue.is_some() {
        out.push("revenue".into());
        out.push("revenue_share".into());
    }
    if spec.orders.is_some() {
        out.push("orders".into());
    }
    out.extend(spec.kpis.iter().map(|k| format!("avg_{k}")));
    out
}

/// A segment's metric; a segment absent in the period has no customers, no revenue and no
/// averages.
fn value(values: &PeriodValues, segment: &str, metric: &str) -> Option<f64> {
    match values.get(segment) {
        Some(m) => m.get(metric).copied().flatten(),
        None if metric.starts_with("avg_") => None,
        None => Some(0.0),
    }
}

async fn period_values(
    ctx: &SessionContext,
    step: &str,
    spec: &TrendSpec,
    table: &str,
    column: &str,
) -> Result<PeriodValues, RunError> {
    let sum =
        |c: &str, scale: u32| format!("sum(CAST({} AS DECIMAL(38, {scale})))", quote_ident(c));
    let mut select = vec![
        format!(
            "coalesce(CAST({} AS VARCHAR), '(none)') AS s",
            quote_ident(column)
        ),
        "count(*) AS customers".to_string(),
    ];
    if let Some(r) = &spec.revenue {
        select.push(format!("{} AS revenue", sum(r, 6)));
    }
    if let Some(o) = &spec.orders {
        select.push(format!("{} AS orders", sum(o, 6)));
    }
    for (i, k) in spec.kpis.iter().enumerate() {
        select.push(format!("{} AS k_sum_{i}", sum(k, 10)));
        select.push(format!("count({}) AS k_n_{i}", quote_ident(k)));
    }
    let batches = collect(
        ctx,
        step,
        &format!(
            "SELECT {} FROM {} GROUP BY 1",
            select.join(", "),
            quote_ident(table)
        ),
    )
    .await?;
    let segments = string_column(step, &batches, "s")?;
    let column = |name: &str| optional_f64_column(step, &batches, name);
    let customers = column("customers")?;
    let revenue = if spec.revenue.is_some() {
        Some(column("revenue")?)
    } else {
        None
    };
    let orders = if spec.orders.is_some() {
        Some(column("orders")?)
    } else {
        None
    };
    let total = |v: &[Option<f64>]| v.iter().flatten().sum::<f64>();
    let all_customers = total(&customers);
    let all_revenue = revenue.as_deref().map(total);
    let mut kpis = Vec::new();
    for i in 0..spec.kpis.len() {
        kpis.push((column(&format!("k_sum_{i}"))?, column(&format!("k_n_{i}"))?));
    }
    let mut out = PeriodValues::new();
    for (r, seg) in segments.into_iter().enumerate() {
        let mut m = BTreeMap::new();
        let n = customers[r];
        m.insert("customers".to_string(), n);
        m.insert("share".to_string(), n.map(|n| n / all_customers));
        if let (Some(rev), Some(all)) = (&revenue, all_revenue) {
            let v = rev[r].or(Some(0.0));
            m.insert("revenue".to_string(), v);
            m.insert(
                "revenue_share".to_string(),
                v.filter(|_| all != 0.0).map(|v| v / all),
            );
        }
        if let Some(o) = &orders {
            m.insert("orders".to_string(), o[r].or(Some(0.0)));
        }
        for (i, k) in spec.kpis.iter().enumerate() {
            let (sums, counts) = &kpis[i];
            let avg = match (sums[r], counts[r]) {
                (Some(s), Some(c)) if c > 0.0 => Some(s / c),
                _ => None,
            };
            m.insert(format!("avg_{k}"), avg);
        }
        out.insert(seg.unwrap_or_default(), m);
    }
    Ok(out)
}
