//! `segflow plan` and `segflow explain`: what a run would do, without reading data.

use std::sync::Arc;

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use segflow_sinks::partition_dir;
use segflow_spec::{Period, Pipeline};
use serde::Serialize;

use crate::error::RunError;
use crate::session::session;
use crate::steps::frames::read_only;

#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub pipeline: String,
    pub file: String,
    pub period: String,
    pub period_start: String,
    pub period_end: String,
    pub output_dir: String,
    /// Sources and steps in execution order.
    pub nodes: Vec<PlanNode>,
    pub outputs: Vec<PlanOutput>,
    /// Problems found while resolving inputs (e.g. a glob that matches nothing).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanNode {
    pub name: String,
    pub kind: String,
    pub inputs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PlanFile>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanFile {
    pub url: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanOutput {
    pub name: String,
    pub from: String,
    pub path: String,
    /// The directory this run replaces.
    pub replaces: String,
    pub partition_by: Vec<String>,
}

/// Resolves the DAG, lists input files (metadata only) and names the output partitions.
pub async fn plan(pipeline: &Pipeline, period: Period) -> Result<PlanReport, RunError> {
    let (ctx, _) = session(&pipeline.engine, &crate::run::unique_label("plan"))?;
    let mut nodes = Vec::new();
    let mut problems = Vec::new();
    for name in &pipeline.execution_order {
        if let Some(source) = pipeline.source(name) {
            let files = match segflow_sources::list_files(&ctx, source).await {
                Ok(files) => files
                    .into_iter()
                    .map(|f| PlanFile {
                        url: f.url,
                        size: f.size,
                    })
                    .collect(),
                Err(e) => {
                    problems.push(e.to_string());
                    Vec::new()
                }
            };
            nodes.push(PlanNode {
                name: name.clone(),
                kind: format!("source ({})", source.format.name()),
                inputs: Vec::new(),
                location: Some(source.location.value.clone()),
                files,
            });
        } else if let Some(step) = pipeline.step(name) {
            nodes.push(PlanNode {
                name: name.clone(),
                kind: step.kind_name().to_string(),
                inputs: step.inputs().iter().map(|i| i.value.clone()).collect(),
                location: trend_location(pipeline, step, period),
                files: Vec::new(),
            });
        }
    }
    let outputs = pipeline
        .outputs
        .iter()
        .map(|o| PlanOutput {
            name: o.name.value.clone(),
            from: o.from.value.clone(),
            path: o.path.clone(),
            replaces: format!(
                "{}/{}",
                o.path.trim_end_matches('/'),
                partition_dir("period", Some(&period.to_string()))
            ),
            partition_by: o.partition_by.clone(),
        })
        .collect();
    Ok(PlanReport {
        pipeline: pipeline.name.clone(),
        file: pipeline.file.display().to_string(),
        period: period.to_string(),
        period_start: period.start().to_string(),
        period_end: period.end().to_string(),
        output_dir: pipeline.output_dir.clone(),
        nodes,
        outputs,
        problems,
    })
}

/// What a trend step reads: the committed output and the periods.
fn trend_location(
    pipeline: &Pipeline,
    step: &segflow_spec::Step,
    period: Period,
) -> Option<String> {
    let segflow_spec::StepKind::Trend(spec) = &step.kind else {
        return None;
    };
    let periods = spec.history.range.periods(period);
    let dir = crate::steps::trend_history_dir(pipeline, spec);
    Some(format!(
        "committed `{}` of periods {}..{} under {}",
        spec.history.output,
        periods.first().map(ToString::to_string).unwrap_or_default(),
        periods.last().map(ToString::to_string).unwrap_or_default(),
        dir.display()
    ))
}

/// One step's SQL and DataFusion plans.
#[derive(Debug, Clone)]
pub struct StepExplanation {
    pub step: String,
    pub sql: String,
    pub plan: String,
}

/// Plans every step (or the named ones) over lazily scanned sources: only file headers and
/// Parquet footers are read.
pub async fn explain(
    pipeline: &Pipeline,
    period: Period,
    only: &[String],
) -> Result<Vec<StepExplanation>, RunError> {
    for name in only {
        if pipeline.step(name).is_none() {
            return Err(RunError::StepInput {
                step: name.clone(),
                message: format!(
                    "no such step (steps: {})",
                    pipeline
                        .steps
                        .iter()
                        .map(|s| s.name.value.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    let (ctx, _) = session(&pipeline.engine, &crate::run::unique_label("plan"))?;
    let mut out = Vec::new();
    for name in &pipeline.execution_order {
        let register_err = |e| RunError::Step {
            step: name.clone(),
            source: Box::new(e),
        };
        if let Some(source) = pipeline.source(name) {
            let files = segflow_sources::list_files(&ctx, source).await?;
            let df = segflow_sources::scan(&ctx, source, &files).await?;
            ctx.register_table(name.as_str(), df.into_view())
                .map_err(register_err)?;
            continue;
        }
        let Some(step) = pipeline.step(name) else {
            continue;
        };
        if let segflow_spec::StepKind::Identity(_) = step.kind {
            // Identity links records in Rust; later steps are planned over its empty shape.
            let schema = crate::steps::identity::output_schema();
            let empty = MemTable::try_new(schema, vec![Vec::new()]).map_err(register_err)?;
            ctx.register_table(name.as_str(), Arc::new(empty))
                .map_err(register_err)?;
            continue;
        }
        let sql = crate::steps::runner(step)
            .explain_sql(&ctx, name, period)
            .await?;
        let df = ctx
            .sql_with_options(&sql, read_only())
            .await
            .map_err(register_err)?;
        if only.is_empty() || only.contains(name) {
            let batches = df
                .clone()
                .explain(false, false)
                .map_err(register_err)?
                .collect()
                .await
                .map_err(register_err)?;
            let plan = pretty_format_batches(&batches)
                .map_err(|e| register_err(e.into()))?
                .to_string();
            out.push(StepExplanation {
                step: name.clone(),
                sql,
                plan,
            });
        }
        let view: Arc<dyn datafusion::catalog::TableProvider> = df.into_view();
        ctx.register_table(name.as_str(), view)
            .map_err(register_err)?;
    }
    Ok(out)
}
