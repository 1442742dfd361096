//! `trend:` steps — how segments moved across the committed periods of an output. One module
//! per kind (`migration`, `stability`, `kpis`, `shift`); `history` finds the periods, their
//! runs and what makes two of them incomparable. Every kind writes a fixed schema (below), so
//! `segflow validate` plans later steps over it without reading history, and reports built on
//! the tables know their columns.

mod history;

pub(crate) use history::history_dir;
mod kpis;
mod migration;
mod shift;
mod stability;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use datafusion::prelude::{cast, col};
use segflow_spec::{Period, TrendKind, TrendSpec};

use super::frames::{df_err, frame};
use super::{StepContext, StepOutput, StepRunner};
use crate::error::RunError;

pub(crate) struct Trend<'a>(pub &'a TrendSpec);

#[async_trait]
impl StepRunner for Trend<'_> {
    async fn run(&self, cx: &StepContext<'_>) -> Result<StepOutput, RunError> {
        let spec = self.0;
        let step = cx.name();
        let history = history::load(cx.ctx, step, cx.pipeline, spec, cx.period).await?;
        let result = match spec.kind {
            TrendKind::Migration => migration::run(cx.ctx, step, spec, &history).await,
            TrendKind::Stability => stability::run(cx.ctx, step, spec, &history).await,
            TrendKind::Kpis => kpis::run(cx.ctx, step, spec, &history).await,
            TrendKind::Shift => shift::run(cx.ctx, step, spec, &history),
        };
        // The plans hold the tables they scan; the names are no longer needed.
        history.deregister(cx.ctx);
        // Every kind builds its rows in `schema(kind)` (migration conforms its query to it).
        let (df, verdicts) = result?;
        let mut parameters = serde_json::json!({
            "trend": spec.kind.name(),
            "history": history.record(),
            "comparisons": verdicts,
        });
        if spec.kind == TrendKind::Stability {
            parameters["psi"] = serde_json::json!({
                "bins": spec.psi.bins, "watch": spec.psi.watch,
                "shifted": spec.psi.shifted, "floor": spec.psi.floor,
            });
        }
        Ok(StepOutput {
            parameters: Some(parameters),
            ..StepOutput::rows(df)
        })
    }

    async fn explain_sql(
        &self,
        _ctx: &SessionContext,
        _step: &str,
        _period: Period,
    ) -> Result<String, RunError> {
        // The rows come from committed history found at run time; the shape is fixed.
        let columns: Vec<String> = schema(self.0.kind)
            .fields()
            .iter()
            .map(|f| {
                let t = match f.data_type() {
                    DataType::Int64 => "BIGINT",
                    DataType::Float64 => "DOUBLE",
                    DataType::Boolean => "BOOLEAN",
                    _ => "VARCHAR",
                };
                format!("CAST(NULL AS {t}) AS {}", f.name())
            })
            .collect();
        Ok(format!("SELECT {} WHERE false", columns.join(", ")))
    }
}

/// The output columns of each kind. Part of segflow's interface (reports and BI tools read
/// them): add columns, never rename.
pub(crate) fn schema(kind: TrendKind) -> SchemaRef {
    use DataType::{Boolean, Float64, Int64, Utf8};
    let fields: &[(&str, DataType)] = match kind {
        TrendKind::Migration => &[
            ("segmentation", Utf8),
            ("basis", Utf8),
            ("period_from", Utf8),
            ("period_to", Utf8),
            ("segment_from", Utf8),
            ("segment_to", Utf8),
            ("customers", Int64),
            ("share", Float64),
            ("revenue_from", Float64),
            ("revenue_to", Float64),
            ("comparable", Boolean),
            ("reason", Utf8),
        ],
        TrendKind::Stability => &[
            ("basis", Utf8),
            ("period_from", Utf8),
            ("period_to", Utf8),
            ("measure", Utf8),
            ("kind", Utf8),
            ("psi", Float64),
            ("flag", Utf8),
            ("comparable", Boolean),
            ("reason", Utf8),
        ],
        TrendKind::Kpis => &[
            ("segmentation", Utf8),
            ("segment", Utf8),
            ("for_period", Utf8),
            ("metric", Utf8),
            ("value", Float64),
            ("previous", Float64),
            ("change_previous", Float64),
            ("change_previous_pct", Float64),
            ("first", Float64),
            ("change_first", Float64),
            ("change_first_pct", Float64),
            ("comparable", Boolean),
            ("reason", Utf8),
        ],
        TrendKind::Shift => &[
            ("model", Utf8),
            ("kind", Utf8),
            ("period_from", Utf8),
            ("period_to", Utf8),
            ("parameter", Utf8),
            ("value_from", Float64),
            ("value_to", Float64),
            ("change", Float64),
            ("change_pct", Float64),
            ("comparable", Boolean),
            ("reason", Utf8),
        ],
    };
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Casts `df`'s columns to exactly `schema` (Parquet strings come back as views, sums as
/// decimals), in its order.
pub(super) fn conform(
    df: DataFrame,
    schema: &SchemaRef,
    step: &str,
) -> Result<DataFrame, RunError> {
    let exprs: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| cast(col(f.name()), f.data_type().clone()).alias(f.name()))
        .collect();
    df.select(exprs).map_err(df_err(step))
}

/// One value of a row built in Rust.
pub(crate) enum Cell {
    Str(Option<String>),
    Int(Option<i64>),
    Num(Option<f64>),
    Bool(bool),
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Str(Some(s.to_string()))
    }
}
impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Str(Some(s))
    }
}
impl From<Option<String>> for Cell {
    fn from(s: Option<String>) -> Self {
        Cell::Str(s)
    }
}
impl From<Option<f64>> for Cell {
    fn from(v: Option<f64>) -> Self {
        Cell::Num(v.filter(|x| x.is_finite()))
    }
}
impl From<bool> for Cell {
    fn from(v: bool) -> Self {
        Cell::Bool(v)
    }
}

/// Rows of one kind's schema, built in Rust (the small per-segment results).
pub(crate) struct Rows {
    schema: SchemaRef,
    rows: Vec<Vec<Cell>>,
}

impl Rows {
    pub(crate) fn new(kind: TrendKind) -> Self {
        Self {
            schema: schema(kind),
            rows: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.schema.fields().len());
        self.rows.push(row);
    }

    pub(crate) fn into_frame(
        self,
        ctx: &SessionContext,
        step: &str,
    ) -> Result<DataFrame, RunError> {
        let n = self.rows.len();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (j, field) in self.schema.fields().iter().enumerate() {
            let array: ArrayRef = match field.data_type() {
                DataType::Int64 => {
                    let mut b = Int64Builder::with_capacity(n);
                    for r in &self.rows {
                        b.append_option(match &r[j] {
                            Cell::Int(v) => *v,
                            _ => None,
                        });
                    }
                    Arc::new(b.finish())
                }
                DataType::Float64 => {
                    let mut b = Float64Builder::with_capacity(n);
                    for r in &self.rows {
                        b.append_option(match &r[j] {
                            Cell::Num(v) => *v,
                            _ => None,
                        });
                    }
                    Arc::new(b.finish())
                }
                DataType::Boolean => {
                    let mut b = BooleanBuilder::with_capacity(n);
                    for r in &self.rows {
                        b.append_option(match &r[j] {
                            Cell::Bool(v) => Some(*v),
                            _ => None,
                        });
                    }
                    Arc::new(b.finish())
                }
                _ => {
                    let mut b = StringBuilder::new();
                    for r in &self.rows {
                        b.append_option(match &r[j] {
                            Cell::Str(v) => v.as_deref(),
                            _ => None,
                        });
                    }
                    Arc::new(b.finish())
                }
            };
            columns.push(array);
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .map_err(|e| df_err(step)(e.into()))?;
        frame(ctx, step, batch)
    }
}

/// A comparison the step made, for the manifest: `comparable: false` with the reason.
pub(crate) fn verdict_record(
    segmentation: &str,
    basis: &str,
    from: &str,
    to: &str,
    verdict: &history::Verdict,
) -> serde_json::Value {
    serde_json::json!({
        "measure": segmentation,
        "basis": basis,
        "period_from": from,
        "period_to": to,
        "comparable": verdict.comparable,
        "reason": verdict.reason(),
    })
}
