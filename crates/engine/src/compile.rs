//! Steps → DataFusion DataFrames. The same compilation serves `run` (then materialized) and
//! `explain` (then only planned), so what `explain` shows is what `run` executes.

use datafusion::dataframe::DataFrame;
use datafusion::execution::context::{SQLOptions, SessionContext};
use segflow_spec::{Period, Step, StepKind};

use crate::error::RunError;

/// SQL steps may only query: no DDL, no DML, no `SET`.
pub(crate) fn read_only() -> SQLOptions {
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

/// The SQL a step runs: the user's query, or for a model step the query `explain` plans (its
/// apply query with placeholder parameters).
pub async fn step_sql(
    ctx: &SessionContext,
    step: &Step,
    period: Period,
) -> Result<String, RunError> {
    match &step.kind {
        StepKind::Sql(s) => Ok(s.sql.value.clone()),
        StepKind::Identity(_) => Err(RunError::StepInput {
            step: step.name.value.clone(),
            message: "identity steps link records in Rust (segflow-identity) and have no SQL plan"
                .into(),
        }),
        _ => crate::models::explain_sql(ctx, step, period).await,
    }
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

/// What an identity step used, for the manifest; model steps record their artifact's
/// parameters instead.
pub fn model_parameters(step: &Step) -> Option<serde_json::Value> {
    match &step.kind {
        StepKind::Identity(i) => Some(serde_json::json!({
            "inputs": i.inputs.iter().map(|x| x.from.value.clone()).collect::<Vec<_>>(),
            "rules": segflow_identity::RULES,
            "plus_addressing": if i.strip_plus_addressing { "strip" } else { "keep" },
            "default_country_code": i.default_country_code,
        })),
        _ => None,
    }
}
