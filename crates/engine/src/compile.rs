//! Steps → DataFusion DataFrames. The same compilation serves `run` (then materialized) and
//! `explain` (then only planned), so what `explain` shows is what `run` executes.

use datafusion::dataframe::DataFrame;
use datafusion::execution::context::{SQLOptions, SessionContext};
use segflow_models::{pareto_sql, rfm_sql};
use segflow_spec::{Period, Step, StepKind};

use crate::error::RunError;

/// SQL steps may only query: no DDL, no DML, no `SET`.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Fails with a clear message when a model's input lacks a column the model was told to use.
pub(crate) async fn require_columns(
    ctx: &SessionContext,
    step: &str,
    input: &str,
    columns: &[&str],
) -> Result<(), RunError> {
    let table = ctx.table(input).await.map_err(|e| RunError::Step {
        step: step.to_string(),
        source: Box::new(e),
    })?;
    let have: Vec<String> = table
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    for column in columns {
        if !have.iter().any(|h| h == column) {
            return Err(RunError::StepInput {
                step: step.to_string(),
                message: format!(
                    "input `{input}` has no column `{column}` (it has: {}); name the right column in the step",
                    have.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// The SQL a step runs: the user's query, or the model's generated query.
pub async fn step_sql(
    ctx: &SessionContext,
    step: &Step,
    period: Period,
) -> Result<String, RunError> {
    Ok(match &step.kind {
        StepKind::Sql(s) => s.sql.value.clone(),
        StepKind::Rfm(m) => {
            let mut cols = vec![m.customer.as_str(), m.date.as_str(), m.amount.as_str()];
            cols.extend(m.order_id.as_deref());
            require_columns(ctx, &step.name.value, &m.input.value, &cols).await?;
            rfm_sql(m, &m.input.value, m.reference_date.unwrap_or(period.end()))
        }
        StepKind::Pareto(p) => {
            require_columns(
                ctx,
                &step.name.value,
                &p.input.value,
                &[p.customer.as_str(), p.value.as_str()],
            )
            .await?;
            pareto_sql(p, &p.input.value)
        }
        StepKind::Identity(_) => {
            return Err(RunError::StepInput {
                step: step.name.value.clone(),
                message:
                    "identity steps link records in Rust (segflow-identity) and have no SQL plan"
                        .into(),
            });
        }
    })
}

pub async fn compile_step(
    ctx: &SessionContext,
    step: &Step,
    period: Period,
) -> Result<DataFrame, RunError> {
    let sql = step_sql(ctx, step, period).await?;
    ctx.sql_with_options(&sql, read_only())
        .await
        .map_err(|e| RunError::Step {
            step: step.name.value.clone(),
            source: Box::new(e),
        })
}

/// What a model used, for the manifest: an auditor can recompute the segments from these.
pub fn model_parameters(step: &Step, period: Period) -> Option<serde_json::Value> {
    match &step.kind {
        StepKind::Sql(_) => None,
        StepKind::Rfm(m) => Some(serde_json::json!({
            "reference_date": m.reference_date.unwrap_or(period.end()).to_string(),
            "lookback": m.lookback.map(|l| format!("{} {:?}", l.amount, l.unit).to_lowercase()),
            "customer": m.customer, "date": m.date, "order_id": m.order_id, "amount": m.amount,
            "frequency": format!("{:?}", m.frequency).to_lowercase(),
            "monetary": format!("{:?}", m.monetary).to_lowercase(),
            "bins": m.bins,
            "method": format!("{:?}", m.method).to_lowercase(),
            "segments": m.segments.iter().map(|r| serde_json::json!({
                "name": r.name, "when": r.when.clone().unwrap_or_else(|| "true".into())
            })).collect::<Vec<_>>(),
        })),
        StepKind::Pareto(p) => Some(serde_json::json!({
            "customer": p.customer, "value": p.value,
            "tiers": p.tiers.iter().map(|(t, b)| serde_json::json!({"tier": t, "share_below": b})).collect::<Vec<_>>(),
            "rest": p.rest,
        })),
        StepKind::Identity(i) => Some(serde_json::json!({
            "inputs": i.inputs.iter().map(|x| x.from.value.clone()).collect::<Vec<_>>(),
            "rules": segflow_identity::RULES,
            "plus_addressing": if i.strip_plus_addressing { "strip" } else { "keep" },
            "default_country_code": i.default_country_code,
        })),
    }
}
