//! Running SQL for a step and reading small results back into Rust: the plumbing every step
//! kind shares.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::MemTable;
use datafusion::execution::context::{SQLOptions, SessionContext};

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

/// Refuses an input that already has a column the step adds (an output or a working column of
/// its generated SQL): the result would otherwise hold two columns of one name, or read the
/// wrong one, instead of failing.
pub(crate) async fn refuse_clashes(
    ctx: &SessionContext,
    step: &str,
    input: &str,
    added: &[String],
) -> Result<(), RunError> {
    let table = ctx.table(input).await.map_err(df_err(step))?;
    let schema = table.schema();
    if let Some(name) = added
        .iter()
        .find(|name| schema.fields().iter().any(|f| f.name() == *name))
    {
        return Err(RunError::StepInput {
            step: step.to_string(),
            message: format!(
                "input `{input}` already has a column `{name}`, which this step adds to its output; \
                 rename or drop it in a SQL step before this one"
            ),
        });
    }
    Ok(())
}

pub(crate) fn df_err(step: &str) -> impl Fn(datafusion::error::DataFusionError) -> RunError + '_ {
    move |e| RunError::Step {
        step: step.to_string(),
        source: Box::new(e),
    }
}

pub(crate) fn fit_err(step: &str, message: impl Into<String>) -> RunError {
    RunError::Fit {
        step: step.to_string(),
        message: message.into(),
    }
}

/// Runs `sql` (read-only) as a DataFrame.
pub(crate) async fn query(
    ctx: &SessionContext,
    step: &str,
    sql: &str,
) -> Result<DataFrame, RunError> {
    ctx.sql_with_options(sql, read_only())
        .await
        .map_err(df_err(step))
}

/// Runs `sql` once into the run's scratch space and registers the result as `name`, for the
/// model's later queries.
pub(crate) async fn materialize_as(
    ctx: &SessionContext,
    step: &str,
    name: &str,
    sql: &str,
) -> Result<u64, RunError> {
    let df = query(ctx, step, sql).await?;
    crate::materialize::materialize(ctx, name, df)
        .await
        .map_err(df_err(step))
}

/// The name of a model's intermediate table. Validation refuses user names starting with `__`,
/// so none can replace it; `__` between step and part (parts never contain `__`) keeps
/// step `a_b`'s part `c` apart from step `a`'s part `b_c`.
pub(crate) fn scratch(step: &str, part: &str) -> String {
    format!("__{step}__{part}")
}

/// All rows of `sql`, in one batch list.
pub(crate) async fn collect(
    ctx: &SessionContext,
    step: &str,
    sql: &str,
) -> Result<Vec<RecordBatch>, RunError> {
    query(ctx, step, sql)
        .await?
        .collect()
        .await
        .map_err(df_err(step))
}

/// The single row of `sql` as DOUBLEs (NULL → `None`), in column order.
pub(crate) async fn single_row(
    ctx: &SessionContext,
    step: &str,
    sql: &str,
) -> Result<Vec<Option<f64>>, RunError> {
    let batches = collect(ctx, step, sql).await?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(Vec::new());
    };
    batch
        .columns()
        .iter()
        .map(|c| {
            let c =
                arrow::compute::cast(c, &DataType::Float64).map_err(|e| df_err(step)(e.into()))?;
            let c = c.as_primitive::<Float64Type>();
            Ok(c.is_valid(0).then(|| c.value(0)))
        })
        .collect()
}

/// A column of `batches` as f64 values; NULLs are an error naming the column.
pub(crate) fn f64_column(
    step: &str,
    batches: &[RecordBatch],
    column: &str,
) -> Result<Vec<f64>, RunError> {
    optional_f64_column(step, batches, column)?
        .into_iter()
        .map(|v| {
            v.ok_or_else(|| {
                fit_err(
                    step,
                    format!(
                        "column `{column}` has NULL values; filter or fill them before the model"
                    ),
                )
            })
        })
        .collect()
}

/// A column of `batches` as f64 values, NULL → `None`.
pub(crate) fn optional_f64_column(
    step: &str,
    batches: &[RecordBatch],
    column: &str,
) -> Result<Vec<Option<f64>>, RunError> {
    let mut out = Vec::new();
    for batch in batches {
        let Some(array) = batch.column_by_name(column) else {
            return Err(fit_err(step, format!("no column `{column}`")));
        };
        let array =
            arrow::compute::cast(array, &DataType::Float64).map_err(|e| df_err(step)(e.into()))?;
        let array = array.as_primitive::<Float64Type>();
        out.extend(array.iter());
    }
    Ok(out)
}

/// A column of `batches` as strings (NULL → `None`).
pub(crate) fn string_column(
    step: &str,
    batches: &[RecordBatch],
    column: &str,
) -> Result<Vec<Option<String>>, RunError> {
    let mut out = Vec::new();
    for batch in batches {
        let Some(array) = batch.column_by_name(column) else {
            return Err(fit_err(step, format!("no column `{column}`")));
        };
        let array =
            arrow::compute::cast(array, &DataType::Utf8).map_err(|e| df_err(step)(e.into()))?;
        let array = array.as_string::<i32>();
        out.extend(array.iter().map(|v| v.map(str::to_string)));
    }
    Ok(out)
}

/// A DataFrame over record batches built in Rust.
pub(crate) fn frame(
    ctx: &SessionContext,
    step: &str,
    batch: RecordBatch,
) -> Result<DataFrame, RunError> {
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(df_err(step))?;
    ctx.read_table(Arc::new(table)).map_err(df_err(step))
}

/// `WITH cte AS (body), <rest's CTEs> <rest's query>`: prepends a CTE to a query that may
/// already start with `WITH`.
pub(crate) fn with_cte(cte: &str, body: String, rest: String) -> String {
    let rest = rest.strip_prefix("WITH ").map_or_else(
        || format!("{cte}_final AS ({rest}) SELECT * FROM {cte}_final"),
        str::to_string,
    );
    format!("WITH {cte} AS (\n{body}\n),\n{rest}")
}
