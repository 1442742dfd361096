//! `segflow report`: charts for one period, computed with DataFusion from the committed
//! output named in the pipeline's `report:` block, plus the match rates of the period's
//! latest successful run; written as `<output_dir>/reports/<period>/index.html`.

use std::path::{Path, PathBuf};

use datafusion::datasource::file_format::options::ParquetReadOptions;
use segflow_manifest::Manifest;
use segflow_models::{quote_ident, quote_literal};
use segflow_report::{Bar, Distribution, MatchRates, Report};
use segflow_spec::{Period, Pipeline};

use crate::error::RunError;
use crate::run::local_path;
use crate::session::session;
use crate::steps::frames::{collect, f64_column, string_column};

fn report_err(message: impl Into<String>) -> RunError {
    RunError::StepInput {
        step: "report".into(),
        message: message.into(),
    }
}

/// The latest successful run of `period`, for its enrichment match rates.
fn latest_manifest(runs: &Path, period: Period) -> Option<Manifest> {
    segflow_manifest::RunHistory::load(runs)
        .latest_succeeded(None, &period.to_string())
        .cloned()
}

fn match_rates(manifest: &Manifest) -> Vec<MatchRates> {
    manifest
        .steps
        .iter()
        .filter(|s| s.kind == "enrich")
        .filter_map(|s| {
            let p = s.parameters.as_ref()?;
            let levels = p["levels"]
                .as_array()?
                .iter()
                .map(|l| {
                    (
                        l["level"].as_str().unwrap_or_default().to_string(),
                        l["matched"].as_u64().unwrap_or(0),
                        l["match_rate"].as_f64().unwrap_or(0.0),
                    )
                })
                .collect();
            Some(MatchRates {
                step: s.name.clone(),
                rows: p["rows"].as_u64().unwrap_or(0),
                levels,
                unmatched: p["unmatched"].as_u64().unwrap_or(0),
            })
        })
        .collect()
}

/// Customers per value of `column`, with the best segment's index per value.
async fn distribution(
    ctx: &datafusion::execution::context::SessionContext,
    column: &str,
    best: &str,
    totals: (f64, f64),
) -> Result<Distribution, RunError> {
    let c = quote_ident(column);
    let sql = format!(
        "SELECT coalesce(CAST({c} AS VARCHAR), '(none)') AS label, count(*) AS customers, sum(CASE WHEN {best} THEN 1 ELSE 0 END) AS best_customers
         FROM customers GROUP BY 1 ORDER BY customers DESC, label ASC LIMIT 25"
    );
    let batches = collect(ctx, "report", &sql).await?;
    let labels = string_column("report", &batches, "label")?;
    let customers = f64_column("report", &batches, "customers")?;
    let best_customers = f64_column("report", &batches, "best_customers")?;
    let (all, all_best) = totals;
    let bars = labels
        .into_iter()
        .zip(customers.into_iter().zip(best_customers))
        .map(|(label, (n, b))| Bar {
            label: label.unwrap_or_default(),
            customers: n as u64,
            share: if all > 0.0 { n / all } else { 0.0 },
            best_index: (all_best > 0.0 && n > 0.0).then(|| (b / all_best) / (n / all) * 100.0),
        })
        .collect();
    Ok(Distribution {
        attribute: column.to_string(),
        bars,
    })
}

/// Writes the report of `period` and returns its path.
pub async fn report(pipeline: &Pipeline, period: Period) -> Result<PathBuf, RunError> {
    if let Some(trends) = &pipeline.trend_report {
        let html = crate::trend_report::trend_report_html(pipeline, trends, period).await?;
        let path = crate::trend_report::report_path(pipeline, period)?;
        write_page(&path, &html)?;
        return Ok(path);
    }
    let spec = pipeline.report.as_ref().ok_or_else(|| {
        report_err("the pipeline has no `report:` block (customers output, segment, best segments, attributes; or `trends:` for a trend pipeline)")
    })?;
    let output = pipeline
        .outputs
        .iter()
        .find(|o| o.name.value == spec.customers.value)
        .ok_or_else(|| report_err(format!("no output named `{}`", spec.customers.value)))?;
    let dir = local_path("output", &output.path)?.join(format!("period={period}"));
    if !dir.is_dir() {
        return Err(report_err(format!(
            "{} does not exist: run the pipeline for {period} first",
            dir.display()
        )));
    }
    let (ctx, _) = session(&pipeline.engine, &crate::run::unique_label("plan"))?;
    ctx.register_parquet(
        "customers",
        dir.display().to_string().as_str(),
        ParquetReadOptions::default(),
    )
    .await
    .map_err(|e| RunError::Step {
        step: "report".into(),
        source: Box::new(e),
    })?;
    let best = format!(
        "CAST({} AS VARCHAR) IN ({})",
        quote_ident(&spec.segment),
        spec.best
            .iter()
            .map(|b| quote_literal(b))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let totals = collect(
        &ctx,
        "report",
        &format!(
            "SELECT count(*) AS n, sum(CASE WHEN {best} THEN 1 ELSE 0 END) AS b FROM customers"
        ),
    )
    .await?;
    let all = f64_column("report", &totals, "n")?
        .first()
        .copied()
        .unwrap_or(0.0);
    let all_best = f64_column("report", &totals, "b")?
        .first()
        .copied()
        .unwrap_or(0.0);
    let mut segments = distribution(&ctx, &spec.segment, &best, (all, all_best)).await?;
    for bar in &mut segments.bars {
        bar.best_index = None;
    }
    let mut distributions = Vec::new();
    for column in &spec.by {
        distributions.push(distribution(&ctx, column, &best, (all, all_best)).await?);
    }
    let runs = local_path("output_dir", &pipeline.output_dir)?.join("runs");
    let report = Report {
        title: spec
            .title
            .clone()
            .unwrap_or_else(|| format!("{}: customers {period}", pipeline.name)),
        pipeline: pipeline.name.clone(),
        period: period.to_string(),
        customers: all as u64,
        best_segments: spec.best.clone(),
        best_customers: all_best as u64,
        segments,
        distributions,
        match_rates: latest_manifest(&runs, period)
            .map(|m| match_rates(&m))
            .unwrap_or_default(),
    };
    let path = crate::trend_report::report_path(pipeline, period)?;
    write_page(&path, &segflow_report::render(&report))?;
    Ok(path)
}

fn write_page(path: &Path, html: &str) -> Result<(), RunError> {
    let write_err = |source| RunError::ArtifactWrite {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(write_err)?;
    }
    std::fs::write(path, html).map_err(write_err)
}
