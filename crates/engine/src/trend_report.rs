//! `segflow report` for a trend pipeline: reads the committed partition of `period` of each
//! trend output named under `report: { trends: … }` and renders them with
//! [`segflow_report::render_trends`]; written as `<output_dir>/reports/<period>/index.html`.

use std::path::PathBuf;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::datasource::file_format::options::ParquetReadOptions;
use datafusion::execution::context::SessionContext;
use segflow_report::{Kpi, Migration, MigrationCell, Shift, Stability, TrendReport};
use segflow_spec::{Period, Pipeline, TrendReportSpec};

use crate::error::RunError;
use crate::run::local_path;
use crate::session::session;
use crate::steps::frames::{collect, df_err, fit_err};

const STEP: &str = "report";

/// The rows of one trend table, column by column.
struct Table {
    name: String,
    batches: Vec<RecordBatch>,
}

impl Table {
    fn column(&self, column: &str, to: &DataType) -> Result<Vec<Option<String>>, RunError> {
        let mut out = Vec::new();
        for batch in &self.batches {
            let array = batch.column_by_name(column).ok_or_else(|| {
                fit_err(
                    STEP,
                    format!("trend output `{}` has no column `{column}`", self.name),
                )
            })?;
            let array = arrow::compute::cast(array, to).map_err(|e| df_err(STEP)(e.into()))?;
            let array = arrow::compute::cast(&array, &DataType::Utf8)
                .map_err(|e| df_err(STEP)(e.into()))?;
            out.extend(
                array
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(str::to_string)),
            );
        }
        Ok(out)
    }

    fn strings(&self, column: &str) -> Result<Vec<String>, RunError> {
        Ok(self
            .column(column, &DataType::Utf8)?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    }

    fn optional_strings(&self, column: &str) -> Result<Vec<Option<String>>, RunError> {
        self.column(column, &DataType::Utf8)
    }

    fn numbers(&self, column: &str) -> Result<Vec<Option<f64>>, RunError> {
        let mut out = Vec::new();
        for batch in &self.batches {
            let array = batch.column_by_name(column).ok_or_else(|| {
                fit_err(
                    STEP,
                    format!("trend output `{}` has no column `{column}`", self.name),
                )
            })?;
            let array = arrow::compute::cast(array, &DataType::Float64)
                .map_err(|e| df_err(STEP)(e.into()))?;
            let array = array.as_primitive::<Float64Type>();
            out.extend((0..array.len()).map(|i| array.is_valid(i).then(|| array.value(i))));
        }
        Ok(out)
    }

    fn booleans(&self, column: &str) -> Result<Vec<bool>, RunError> {
        Ok(self
            .column(column, &DataType::Boolean)?
            .into_iter()
            .map(|v| v.as_deref() == Some("true"))
            .collect())
    }

    fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The committed partition of `period` of output `name`, or an error saying to run first.
async fn read(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    name: &str,
    period: Period,
    order_by: &str,
) -> Result<Table, RunError> {
    let output = pipeline
        .outputs
        .iter()
        .find(|o| o.name.value == name)
        .ok_or_else(|| fit_err(STEP, format!("no output named `{name}`")))?;
    let dir = local_path("output", &output.path)?.join(format!("period={period}"));
    if !dir.is_dir() {
        return Err(fit_err(
            STEP,
            format!(
                "{} does not exist: run the pipeline for {period} first",
                dir.display()
            ),
        ));
    }
    let table = format!("__trend_{name}");
    ctx.register_parquet(
        table.as_str(),
        dir.display().to_string().as_str(),
        ParquetReadOptions::default(),
    )
    .await
    .map_err(df_err(STEP))?;
    let batches = collect(
        ctx,
        STEP,
        &format!("SELECT * FROM \"{table}\" ORDER BY {order_by}"),
    )
    .await?;
    Ok(Table {
        name: name.to_string(),
        batches,
    })
}

fn migrations(t: &Table) -> Result<Vec<Migration>, RunError> {
    let (seg, basis, from, to) = (
        t.strings("segmentation")?,
        t.strings("basis")?,
        t.strings("period_from")?,
        t.strings("period_to")?,
    );
    let (seg_from, seg_to, customers, share) = (
        t.strings("segment_from")?,
        t.strings("segment_to")?,
        t.numbers("customers")?,
        t.numbers("share")?,
    );
    let (comparable, reason) = (t.booleans("comparable")?, t.optional_strings("reason")?);
    let mut out: Vec<Migration> = Vec::new();
    for i in 0..t.rows() {
        let key = (&seg[i], &basis[i], &from[i], &to[i]);
        let same = |m: &Migration| (&m.segmentation, &m.basis, &m.period_from, &m.period_to) == key;
        if !out.last().is_some_and(same) {
            out.push(Migration {
                segmentation: seg[i].clone(),
                basis: basis[i].clone(),
                period_from: from[i].clone(),
                period_to: to[i].clone(),
                cells: Vec::new(),
                comparable: true,
                reason: None,
            });
        }
        if let Some(m) = out.last_mut() {
            m.cells.push(MigrationCell {
                from: seg_from[i].clone(),
                to: seg_to[i].clone(),
                customers: customers[i].unwrap_or(0.0) as i64,
                share: share[i].unwrap_or(0.0),
            });
            if !comparable[i] {
                m.comparable = false;
                m.reason = m.reason.take().or_else(|| reason[i].clone());
            }
        }
    }
    Ok(out)
}

fn stability(t: &Table) -> Result<Vec<Stability>, RunError> {
    let (basis, from, to, measure, kind) = (
        t.strings("basis")?,
        t.strings("period_from")?,
        t.strings("period_to")?,
        t.strings("measure")?,
        t.strings("kind")?,
    );
    let (psi, flag, comparable, reason) = (
        t.numbers("psi")?,
        t.strings("flag")?,
        t.booleans("comparable")?,
        t.optional_strings("reason")?,
    );
    Ok((0..t.rows())
        .map(|i| Stability {
            basis: basis[i].clone(),
            period_from: from[i].clone(),
            period_to: to[i].clone(),
            measure: measure[i].clone(),
            kind: kind[i].clone(),
            psi: psi[i],
            flag: flag[i].clone(),
            comparable: comparable[i],
            reason: reason[i].clone(),
        })
        .collect())
}

fn kpis(t: &Table) -> Result<Vec<Kpi>, RunError> {
    let (seg, segment, period, metric) = (
        t.strings("segmentation")?,
        t.strings("segment")?,
        t.strings("for_period")?,
        t.strings("metric")?,
    );
    let n = |c| t.numbers(c);
    let (value, previous, cp, cpp, first, cf, cfp) = (
        n("value")?,
        n("previous")?,
        n("change_previous")?,
        n("change_previous_pct")?,
        n("first")?,
        n("change_first")?,
        n("change_first_pct")?,
    );
    let (comparable, reason) = (t.booleans("comparable")?, t.optional_strings("reason")?);
    Ok((0..t.rows())
        .map(|i| Kpi {
            segmentation: seg[i].clone(),
            segment: segment[i].clone(),
            period: period[i].clone(),
            metric: metric[i].clone(),
            value: value[i],
            previous: previous[i],
            change_previous: cp[i],
            change_previous_pct: cpp[i],
            first: first[i],
            change_first: cf[i],
            change_first_pct: cfp[i],
            comparable: comparable[i],
            reason: reason[i].clone(),
        })
        .collect())
}

fn shifts(t: &Table) -> Result<Vec<Shift>, RunError> {
    let (model, kind, from, to, parameter) = (
        t.strings("model")?,
        t.strings("kind")?,
        t.strings("period_from")?,
        t.strings("period_to")?,
        t.strings("parameter")?,
    );
    let n = |c| t.numbers(c);
    let (vf, vt, change, pct) = (
        n("value_from")?,
        n("value_to")?,
        n("change")?,
        n("change_pct")?,
    );
    let (comparable, reason) = (t.booleans("comparable")?, t.optional_strings("reason")?);
    Ok((0..t.rows())
        .map(|i| Shift {
            model: model[i].clone(),
            kind: kind[i].clone(),
            period_from: from[i].clone(),
            period_to: to[i].clone(),
            parameter: parameter[i].clone(),
            value_from: vf[i],
            value_to: vt[i],
            change: change[i],
            change_pct: pct[i],
            comparable: comparable[i],
            reason: reason[i].clone(),
        })
        .collect())
}

/// Gathers the trend tables of `period` and renders them; returns the HTML.
pub(crate) async fn trend_report_html(
    pipeline: &Pipeline,
    spec: &TrendReportSpec,
    period: Period,
) -> Result<String, RunError> {
    let (ctx, _) = session(&pipeline.engine, &crate::run::unique_label("plan"))?;
    let mut report = TrendReport {
        title: spec
            .title
            .clone()
            .unwrap_or_else(|| format!("{}: segment trends up to {period}", pipeline.name)),
        pipeline: pipeline.name.clone(),
        period: period.to_string(),
        ..TrendReport::default()
    };
    // Row order of each table as the report shows it; segments in order of first appearance.
    if let Some(name) = &spec.migration {
        let t = read(
            &ctx,
            pipeline,
            &name.value,
            period,
            "segmentation, basis DESC, period_from, period_to, segment_from, segment_to",
        )
        .await?;
        report.migrations = migrations(&t)?;
    }
    if let Some(name) = &spec.stability {
        let t = read(
            &ctx,
            pipeline,
            &name.value,
            period,
            "period_from, period_to, basis DESC, kind DESC, measure",
        )
        .await?;
        report.stability = stability(&t)?;
    }
    if let Some(name) = &spec.kpis {
        let t = read(
            &ctx,
            pipeline,
            &name.value,
            period,
            "segmentation, for_period, segment, metric",
        )
        .await?;
        report.kpis = kpis(&t)?;
    }
    if let Some(name) = &spec.shift {
        let t = read(
            &ctx,
            pipeline,
            &name.value,
            period,
            "model, period_from, period_to",
        )
        .await?;
        report.shifts = shifts(&t)?;
    }
    Ok(segflow_report::render_trends(&report))
}

/// Where `segflow report` writes a period's page.
pub(crate) fn report_path(pipeline: &Pipeline, period: Period) -> Result<PathBuf, RunError> {
    Ok(local_path("output_dir", &pipeline.output_dir)?
        .join("reports")
        .join(period.to_string())
        .join("index.html"))
}
