//! Enrichment steps: reference columns joined through ordered fallback keys, with the match
//! level of every row and match rates per level (in the manifest, and checked against
//! `min_match_rate`).

use async_trait::async_trait;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use segflow_enrich::join::{duplicate_keys_sql, enrich_sql, key_quality_sql, reference_sql};
use segflow_manifest::CheckRecord;
use segflow_spec::{EnrichSpec, Period, Severity};

use super::frames::{
    collect, df_err, f64_column, materialize_as, query, require_columns, scratch, single_row,
    string_column,
};
use super::{StepContext, StepOutput, StepRunner};
use crate::error::RunError;

/// The enriched rows, the step's parameters for the manifest, and the match-rate check.
struct Enriched {
    pub df: DataFrame,
    /// The scratch table `df` reads, whole, and its rows.
    pub table: (String, u64),
    pub parameters: serde_json::Value,
    pub check: Option<CheckRecord>,
}

async fn run_enrich(
    ctx: &SessionContext,
    step: &str,
    spec: &EnrichSpec,
) -> Result<Enriched, RunError> {
    let inputs: Vec<&str> = spec.keys.iter().map(|k| k.input.as_str()).collect();
    require_columns(ctx, step, &spec.input.value, &inputs).await?;
    let added = segflow_enrich::join::added_columns(spec);
    super::frames::refuse_clashes(ctx, step, &spec.input.value, &added).await?;
    if let Some(reserved) = spec.columns.iter().find(|c| c.starts_with("__")) {
        return Err(RunError::StepInput {
            step: step.to_string(),
            message: format!(
                "reference column `{reserved}`: names starting with `__` are the step's working columns; rename it in a SQL step over the reference first"
            ),
        });
    }
    let input_columns: Vec<String> = ctx
        .table(spec.input.value.as_str())
        .await
        .map_err(df_err(step))?
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let clashes: Vec<&String> = spec
        .columns
        .iter()
        .chain(std::iter::once(&spec.match_column))
        .filter(|c| input_columns.contains(c))
        .collect();
    if !clashes.is_empty() {
        return Err(RunError::StepInput {
            step: step.to_string(),
            message: format!(
                "input `{}` already has column(s) {clashes:?}; enrich other columns, or name the match column with `match_column`",
                spec.input.value
            ),
        });
    }
    if let Some(w) = &spec.crosswalk {
        require_columns(ctx, step, &w.table.value, &[w.from.as_str(), w.to.as_str()]).await?;
    }
    let mut references = Vec::new();
    for (i, key) in spec.keys.iter().enumerate() {
        let mut cols = vec![key.key.as_str()];
        cols.extend(spec.columns.iter().map(String::as_str));
        require_columns(ctx, step, &key.reference.value, &cols).await?;
        let table = scratch(step, &format!("reference_{i}"));
        materialize_as(ctx, step, &table, &reference_sql(spec, i)).await?;
        // A key twice in a reference table would silently duplicate customers.
        let dup = collect(ctx, step, &duplicate_keys_sql(&table)).await?;
        let dup_keys = string_column(step, &dup, "__key")?;
        if !dup_keys.is_empty() {
            return Err(RunError::ChecksFailed {
                failures: vec![format!(
                    "step `{step}`: reference `{}` has key `{}` more than once after normalization (e.g. {}); one row per key is needed at level `{}`",
                    key.reference.value,
                    key.key,
                    dup_keys
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", "),
                    key.level
                )],
            });
        }
        references.push(table);
    }
    let quality = single_row(ctx, step, &key_quality_sql(spec)).await?;
    let enriched = scratch(step, "enriched");
    let rows = materialize_as(ctx, step, &enriched, &enrich_sql(spec, &references)).await?;
    let input_rows = query(
        ctx,
        step,
        &format!(
            "SELECT 1 FROM \"{}\"",
            spec.input.value.replace('"', "\"\"")
        ),
    )
    .await?
    .count()
    .await
    .map_err(df_err(step))? as u64;
    if rows != input_rows {
        return Err(RunError::Accounting {
            source_name: step.to_string(),
            message: format!("enrichment read {input_rows} rows but produced {rows}"),
        });
    }
    let counts = collect(
        ctx,
        step,
        &format!(
            "SELECT {m} AS match_level, count(*) AS n FROM \"{enriched}\" GROUP BY {m}",
            m = segflow_models::quote_ident(&spec.match_column)
        ),
    )
    .await?;
    let levels_seen = string_column(step, &counts, "match_level")?;
    let ns = f64_column(step, &counts, "n")?;
    let matched_at = |level: Option<&str>| {
        levels_seen
            .iter()
            .zip(&ns)
            .find(|(l, _)| l.as_deref() == level)
            .map_or(0, |(_, n)| *n as u64)
    };
    let share = |n: u64| {
        if rows == 0 {
            0.0
        } else {
            n as f64 / rows as f64
        }
    };
    let levels: Vec<serde_json::Value> = spec
        .keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let matched = matched_at(Some(&key.level));
            let get = |j: usize| quality.get(j).copied().flatten().unwrap_or(0.0) as u64;
            serde_json::json!({
                "level": key.level,
                "reference": key.reference.value,
                "matched": matched,
                "match_rate": share(matched),
                "rows_with_key": get(2 * i),
                "invalid_keys": get(2 * i + 1),
            })
        })
        .collect();
    let unmatched = matched_at(None);
    let match_rate = share(rows - unmatched);
    let check = spec.min_match_rate.map(|(min, severity)| {
        let passed = match_rate >= min;
        CheckRecord {
            name: "min_match_rate".into(),
            target: step.to_string(),
            severity: match severity {
                Severity::Error => "error",
                Severity::Warn => "warn",
            }
            .into(),
            passed,
            failing_rows: if passed { 0 } else { unmatched },
            examples: Vec::new(),
            message: format!(
                "{:.2}% of {rows} rows matched a reference (minimum {:.2}%); {unmatched} unmatched",
                match_rate * 100.0,
                min * 100.0
            ),
        }
    });
    let parameters = serde_json::json!({
        "country": spec.country,
        // Trend steps compare a classification across vintages only where it was bridged.
        "crosswalk": spec.crosswalk.as_ref().map(|c| c.table.value.clone()),
        "rows": rows,
        "levels": levels,
        "unmatched": unmatched,
        "match_rate": match_rate,
    });
    let df = query(ctx, step, &format!("SELECT * FROM \"{enriched}\"")).await?;
    Ok(Enriched {
        df,
        table: (enriched, rows),
        parameters,
        check,
    })
}

pub(crate) struct Enrich<'a>(pub &'a EnrichSpec);

#[async_trait]
impl StepRunner for Enrich<'_> {
    async fn run(&self, cx: &StepContext<'_>) -> Result<StepOutput, RunError> {
        let enriched = run_enrich(cx.ctx, cx.name(), self.0).await?;
        Ok(StepOutput {
            parameters: Some(enriched.parameters),
            check: enriched.check,
            materialized: Some(enriched.table),
            ..StepOutput::rows(enriched.df)
        })
    }

    async fn explain_sql(
        &self,
        _ctx: &SessionContext,
        _step: &str,
        _period: Period,
    ) -> Result<String, RunError> {
        let spec = self.0;
        let refs: Vec<String> = (0..spec.keys.len())
            .map(|i| format!("__explain_reference_{i}"))
            .collect();
        let ctes: Vec<String> = refs
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{r} AS ({})", reference_sql(spec, i)))
            .collect();
        let body = enrich_sql(spec, &refs);
        let body = body.strip_prefix("WITH ").unwrap_or(&body).to_string();
        Ok(format!("WITH {}, {body}", ctes.join(", ")))
    }
}
