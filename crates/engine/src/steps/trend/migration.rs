//! Migration matrices: per segmentation column and pair of periods, how many customers went
//! from segment i to segment j, with customers absent from the earlier period as a `(new)` row
//! and those absent from the later one as a `(lost)` column, and the revenue that moved with
//! them. One aggregate query per pair over a full outer join on the key; shares and revenue
//! come from integer counts and decimal sums, so the numbers do not depend on partitioning.

use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use segflow_spec::{TrendKind, TrendSpec, quote_ident, quote_literal};

use super::history::{History, Judge, PeriodData, pairs};
use super::{Cell, Rows, verdict_record};
use crate::error::RunError;
use crate::steps::frames::{collect, query, single_row};

pub(super) async fn run(
    ctx: &SessionContext,
    step: &str,
    spec: &TrendSpec,
    history: &History,
) -> Result<(DataFrame, Vec<serde_json::Value>), RunError> {
    for p in &history.periods {
        check_period(ctx, step, spec, p).await?;
    }
    let mut judge = Judge::new(history);
    let mut parts = Vec::new();
    let mut verdicts = Vec::new();
    // Pairs that cannot be computed (a period without data) still get one row that says why.
    let mut placeholders = Rows::new(TrendKind::Migration);
    for segment in &spec.segments {
        for (basis, i, j) in pairs(&history.periods, spec.versus_first) {
            let (a, b) = (&history.periods[i], &history.periods[j]);
            let verdict = judge.segment(a, b, segment);
            verdicts.push(verdict_record(
                &segment.column,
                basis,
                &a.label,
                &b.label,
                &verdict,
            ));
            // Without both periods' rows (no data, or no such column) there is nothing to
            // count: one row says why.
            let (Some(ta), Some(tb)) =
                (a.table_with(&segment.column), b.table_with(&segment.column))
            else {
                placeholders.push(vec![
                    segment.column.as_str().into(),
                    basis.into(),
                    a.label.as_str().into(),
                    b.label.as_str().into(),
                    Cell::Str(None),
                    Cell::Str(None),
                    Cell::Int(None),
                    Cell::Num(None),
                    Cell::Num(None),
                    Cell::Num(None),
                    false.into(),
                    verdict.reason().into(),
                ]);
                continue;
            };
            parts.push(pair_sql(
                spec,
                &segment.column,
                basis,
                (&a.label, ta),
                (&b.label, tb),
                verdict.comparable,
                verdict.reason(),
            ));
        }
    }
    let mut df = placeholders.into_frame(ctx, step)?;
    if !parts.is_empty() {
        let computed = query(ctx, step, &parts.join("\nUNION ALL\n")).await?;
        let computed = super::conform(computed, &super::schema(TrendKind::Migration), step)?;
        df = df
            .union(computed)
            .map_err(crate::steps::frames::df_err(step))?;
    }
    Ok((df, verdicts))
}

/// The key must exist and identify one row per period, or customers would be counted twice.
async fn check_period(
    ctx: &SessionContext,
    step: &str,
    spec: &TrendSpec,
    p: &PeriodData,
) -> Result<(), RunError> {
    let Some(table) = &p.table else {
        return Ok(());
    };
    let missing: Vec<&str> = std::iter::once(spec.key.as_str())
        .chain(spec.revenue.as_deref())
        .filter(|c| !p.has(c))
        .collect();
    if !missing.is_empty() {
        return Err(RunError::StepInput {
            step: step.to_string(),
            message: format!(
                "period {} has no column {} (it has: {})",
                p.label,
                quote_list(&missing),
                p.columns.join(", ")
            ),
        });
    }
    let key = quote_ident(&spec.key);
    let table = quote_ident(table);
    let row = single_row(
        ctx,
        step,
        &format!("SELECT count(*), count({key}), count(DISTINCT {key}) FROM {table}"),
    )
    .await?;
    let count = |i: usize| row.get(i).copied().flatten().unwrap_or(0.0) as u64;
    let (rows, with_key, distinct) = (count(0), count(1), count(2));
    if with_key < rows {
        return Err(RunError::StepInput {
            step: step.to_string(),
            message: format!(
                "period {}: {} row(s) have no `{}`; a migration needs a key on every row",
                p.label,
                rows - with_key,
                spec.key
            ),
        });
    }
    if distinct < with_key {
        let examples = collect(
            ctx,
            step,
            &format!(
                "SELECT CAST({key} AS VARCHAR) AS k FROM {table} GROUP BY {key} HAVING count(*) > 1 ORDER BY 1 LIMIT 3"
            ),
        )
        .await?;
        let keys = crate::steps::frames::string_column(step, &examples, "k")?;
        return Err(RunError::StepInput {
            step: step.to_string(),
            message: format!(
                "period {}: {} value(s) of `{}` repeat on several rows (e.g. {}); a migration needs one row per customer",
                p.label,
                with_key - distinct,
                spec.key,
                keys.into_iter().flatten().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    Ok(())
}

fn quote_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The matrix of one column between two periods.
fn pair_sql(
    spec: &TrendSpec,
    column: &str,
    basis: &str,
    (from, table_a): (&str, &str),
    (to, table_b): (&str, &str),
    comparable: bool,
    reason: Option<String>,
) -> String {
    let key = quote_ident(&spec.key);
    let seg = quote_ident(column);
    // Decimal sums are exact whatever the partitioning; the result is cast to DOUBLE once.
    let revenue = spec.revenue.as_deref().map_or_else(
        || "CAST(NULL AS DECIMAL(38, 6))".to_string(),
        |r| format!("CAST({} AS DECIMAL(38, 6))", quote_ident(r)),
    );
    let side = |table: &str| {
        format!(
            "SELECT {key} AS k, CAST({seg} AS VARCHAR) AS s, {revenue} AS r FROM {}",
            quote_ident(table)
        )
    };
    let none = quote_literal("(none)");
    let new = quote_literal(&spec.new_label);
    let lost = quote_literal(&spec.lost_label);
    let reason = reason.map_or_else(
        || "CAST(NULL AS VARCHAR)".to_string(),
        |r| quote_literal(&r),
    );
    format!(
        "SELECT {column_lit} AS segmentation, {basis_lit} AS basis, {from_lit} AS period_from, {to_lit} AS period_to,
       segment_from, segment_to, customers,
       CAST(customers AS DOUBLE) / CAST(sum(customers) OVER (PARTITION BY segment_from) AS DOUBLE) AS share,
       CAST(revenue_from AS DOUBLE) AS revenue_from, CAST(revenue_to AS DOUBLE) AS revenue_to,
       {comparable} AS comparable, {reason} AS reason
FROM (
  SELECT CASE WHEN a.k IS NULL THEN {new} ELSE coalesce(a.s, {none}) END AS segment_from,
         CASE WHEN b.k IS NULL THEN {lost} ELSE coalesce(b.s, {none}) END AS segment_to,
         count(*) AS customers, sum(a.r) AS revenue_from, sum(b.r) AS revenue_to
  FROM ({a}) a FULL OUTER JOIN ({b}) b ON a.k = b.k
  GROUP BY 1, 2
)",
        column_lit = quote_literal(column),
        basis_lit = quote_literal(basis),
        from_lit = quote_literal(from),
        to_lit = quote_literal(to),
        a = side(table_a),
        b = side(table_b),
    )
}
