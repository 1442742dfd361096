//! Data contracts: the `checks:` of sources and steps, evaluated as SQL after every step has
//! run and before anything is written. Each result, with its failing count and a few example
//! keys, goes into the manifest; a failed `error` check stops the run with exit code 1.

use std::collections::BTreeMap;
use std::path::Path;

use datafusion::arrow::util::display::array_value_to_string;
use datafusion::execution::context::SessionContext;
use segflow_manifest::CheckRecord;
use segflow_models::{quote_ident, quote_literal};
use segflow_spec::{Check, CheckKind, Period, Pipeline, Severity};

use crate::error::RunError;

const EXAMPLES: usize = 5;

/// Runs `sql` and returns every row as text, one string per column.
async fn rows_as_text(
    ctx: &SessionContext,
    owner: &str,
    sql: &str,
) -> Result<Vec<Vec<String>>, RunError> {
    let err = |e| RunError::Step {
        step: format!("{owner} (check)"),
        source: Box::new(e),
    };
    let batches = ctx
        .sql_with_options(sql, crate::steps::frames::read_only())
        .await
        .map_err(err)?
        .collect()
        .await
        .map_err(err)?;
    let mut out = Vec::new();
    for batch in batches {
        for i in 0..batch.num_rows() {
            let mut row = Vec::with_capacity(batch.num_columns());
            for col in batch.columns() {
                row.push(if col.is_null(i) {
                    "NULL".to_string()
                } else {
                    array_value_to_string(col, i).map_err(|e| err(e.into()))?
                });
            }
            out.push(row);
        }
    }
    Ok(out)
}

/// The first value of a one-row query, as text.
async fn single_value(
    ctx: &SessionContext,
    owner: &str,
    sql: &str,
) -> Result<Option<String>, RunError> {
    Ok(rows_as_text(ctx, owner, sql)
        .await?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next()))
}

/// Count and first example keys of a query returning one `key` column of failing rows.
async fn failing(
    ctx: &SessionContext,
    owner: &str,
    keys_sql: &str,
) -> Result<(u64, Vec<String>), RunError> {
    // One pass: the total rides along on each of the (at most EXAMPLES) sorted rows.
    let rows = rows_as_text(
        ctx,
        owner,
        &format!(
            "SELECT key, count(*) OVER () AS n FROM ({keys_sql}) AS f ORDER BY key LIMIT {EXAMPLES}"
        ),
    )
    .await?;
    let n = rows
        .first()
        .and_then(|r| r.get(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let examples = rows
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect();
    Ok((n, examples))
}

fn text(column: &str) -> String {
    format!("CAST({} AS VARCHAR)", quote_ident(column))
}

/// Rows written by step `name` in the latest succeeded run of `pipeline` for `period`.
fn previous_rows(
    runs_dir: &Path,
    pipeline: &str,
    period: Period,
    name: &str,
) -> Option<(u64, String)> {
    let history = segflow_manifest::RunHistory::load(runs_dir);
    let m = history.latest_succeeded(Some(pipeline), &period.to_string())?;
    let rows = m.steps.iter().find(|s| s.name == name)?.rows_written;
    Some((rows, m.run_id.clone()))
}

/// What one check found.
struct Outcome {
    target: String,
    passed: bool,
    failing_rows: u64,
    examples: Vec<String>,
    message: String,
}

async fn evaluate_one(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    period: Period,
    runs_dir: &Path,
    owner: &str,
    rows: u64,
    check: &Check,
) -> Result<Outcome, RunError> {
    let table = quote_ident(owner);
    let outcome = |target: String,
                   failing_rows: u64,
                   examples: Vec<String>,
                   passed: bool,
                   message: String| Outcome {
        target,
        passed,
        failing_rows,
        examples,
        message,
    };
    Ok(match &check.kind {
        CheckKind::NotNull { column } => {
            let sql = format!(
                "SELECT 'NULL' AS key FROM {table} WHERE {} IS NULL",
                quote_ident(column)
            );
            let (n, _) = failing(ctx, owner, &sql).await?;
            outcome(
                format!("{owner}.{column}"),
                n,
                Vec::new(),
                n == 0,
                format!("{n} row(s) with no `{column}`"),
            )
        }
        CheckKind::Unique { columns } => {
            let keys: Vec<String> = columns.iter().map(|c| text(c)).collect();
            let group: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
            let sql = format!(
                "SELECT concat_ws('|', {}) AS key FROM {table} GROUP BY {} HAVING count(*) > 1",
                keys.join(", "),
                group.join(", ")
            );
            let (n, examples) = failing(ctx, owner, &sql).await?;
            outcome(
                format!("{owner}.{}", columns.join("+")),
                n,
                examples,
                n == 0,
                format!(
                    "{n} value(s) of ({}) occur more than once",
                    columns.join(", ")
                ),
            )
        }
        CheckKind::AcceptedValues { column, values } => {
            let allowed: Vec<String> = values.iter().map(|v| quote_literal(v)).collect();
            let sql = format!(
                "SELECT {} AS key FROM {table} WHERE {} IS NOT NULL AND {} NOT IN ({})",
                text(column),
                quote_ident(column),
                text(column),
                allowed.join(", ")
            );
            let (n, examples) = failing(ctx, owner, &sql).await?;
            outcome(
                format!("{owner}.{column}"),
                n,
                examples,
                n == 0,
                format!("{n} row(s) outside {}", values.join(", ")),
            )
        }
        CheckKind::Relationship {
            column,
            to_table,
            to_column,
            max_orphans,
        } => {
            let sql = format!(
                "SELECT {} AS key FROM {table} AS a WHERE a.{c} IS NOT NULL AND NOT EXISTS \
                 (SELECT 1 FROM {} AS b WHERE b.{} = a.{c})",
                text(column),
                quote_ident(&to_table.value),
                quote_ident(to_column),
                c = quote_ident(column),
            );
            let (n, examples) = failing(ctx, owner, &sql).await?;
            let total = single_value(
                ctx,
                owner,
                &format!("SELECT count({}) FROM {table}", quote_ident(column)),
            )
            .await?;
            let total: u64 = total.and_then(|t| t.parse().ok()).unwrap_or(0);
            let share = if total == 0 {
                0.0
            } else {
                n as f64 / total as f64
            };
            outcome(
                format!("{owner}.{column}"),
                n,
                examples,
                share <= *max_orphans,
                format!(
                    "{n} of {total} value(s) ({:.3}%) not in {}.{to_column}; tolerated {:.3}%",
                    share * 100.0,
                    to_table.value,
                    max_orphans * 100.0
                ),
            )
        }
        CheckKind::RowCount {
            min,
            max,
            max_change,
        } => {
            let mut problems = Vec::new();
            if min.is_some_and(|m| rows < m) {
                problems.push(format!("below the minimum {}", min.unwrap_or_default()));
            }
            if max.is_some_and(|m| rows > m) {
                problems.push(format!("above the maximum {}", max.unwrap_or_default()));
            }
            let mut notes = Vec::new();
            if let Some(limit) = max_change {
                match previous_rows(runs_dir, &pipeline.name, period.prev(), owner) {
                    Some((before, run)) => {
                        let change = if before == 0 {
                            f64::INFINITY
                        } else {
                            (rows as f64 - before as f64).abs() / before as f64
                        };
                        let note = format!(
                            "{:+.1}% versus {before} in {} (run {run})",
                            (rows as f64 / before.max(1) as f64 - 1.0) * 100.0,
                            period.prev()
                        );
                        if change > *limit {
                            problems.push(format!("{note}, more than {:.1}%", limit * 100.0));
                        } else {
                            notes.push(note);
                        }
                    }
                    None => notes.push(format!(
                        "no succeeded run for {} to compare with",
                        period.prev()
                    )),
                }
            }
            let passed = problems.is_empty();
            let mut message = format!("{rows} row(s)");
            for part in problems.iter().chain(&notes) {
                message.push_str("; ");
                message.push_str(part);
            }
            outcome(
                owner.to_string(),
                if passed { 0 } else { rows },
                Vec::new(),
                passed,
                message,
            )
        }
        CheckKind::Freshness {
            column,
            max_age_days,
        } => {
            let latest = single_value(
                ctx,
                owner,
                &format!(
                    "SELECT CAST(max({}) AS DATE) FROM {table}",
                    quote_ident(column)
                ),
            )
            .await?;
            let latest = latest.and_then(|d| d.parse::<chrono::NaiveDate>().ok());
            let oldest_allowed = period.end() - chrono::Days::new(u64::from(*max_age_days));
            let passed = latest.is_some_and(|d| d >= oldest_allowed);
            let shown = latest.map_or_else(|| "no dates".to_string(), |d| format!("latest {d}"));
            outcome(
                format!("{owner}.{column}"),
                u64::from(!passed),
                Vec::new(),
                passed,
                format!(
                    "{shown}; must be on or after {oldest_allowed} ({max_age_days} days before the period end {})",
                    period.end()
                ),
            )
        }
        CheckKind::Sql { name, query } => {
            let err = |e| RunError::Step {
                step: format!("{owner} (check {name})"),
                source: Box::new(e),
            };
            let first = ctx
                .sql_with_options(query, crate::steps::frames::read_only())
                .await
                .map_err(err)?
                .schema()
                .field(0)
                .name()
                .clone();
            let sql = format!("SELECT {} AS key FROM ({query}) AS q", text(&first));
            let (n, examples) = failing(ctx, owner, &sql).await?;
            outcome(
                owner.to_string(),
                n,
                examples,
                n == 0,
                format!("{n} failing row(s)"),
            )
        }
    })
}

/// Evaluates every check of every source and step. Returns the records for the manifest and
/// the messages of failed `error` checks.
pub(crate) async fn evaluate(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    period: Period,
    runs_dir: &Path,
    rows: &BTreeMap<String, u64>,
) -> Result<(Vec<CheckRecord>, Vec<String>), RunError> {
    let owners = pipeline
        .sources
        .iter()
        .map(|s| (&s.name.value, &s.checks))
        .chain(pipeline.steps.iter().map(|s| (&s.name.value, &s.checks)));
    let mut records = Vec::new();
    let mut failures = Vec::new();
    for (owner, checks) in owners {
        for check in checks {
            let rows = rows.get(owner).copied().unwrap_or(0);
            let o = evaluate_one(ctx, pipeline, period, runs_dir, owner, rows, check).await?;
            let severity = match check.severity {
                Severity::Error => "error",
                Severity::Warn => "warn",
            };
            if !o.passed {
                let examples = if o.examples.is_empty() {
                    String::new()
                } else {
                    format!(" (e.g. {})", o.examples.join(", "))
                };
                let line = format!(
                    "{} on {}: {}{examples}",
                    check.kind.name(),
                    o.target,
                    o.message
                );
                match check.severity {
                    Severity::Error => failures.push(line),
                    Severity::Warn => tracing::warn!("check failed (warn): {line}"),
                }
            }
            records.push(CheckRecord {
                name: check.kind.name().to_string(),
                target: o.target,
                severity: severity.into(),
                passed: o.passed,
                failing_rows: o.failing_rows,
                examples: o.examples,
                message: o.message,
            });
        }
    }
    Ok((records, failures))
}
