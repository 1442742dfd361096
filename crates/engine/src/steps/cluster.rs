//! k-means / k-prototypes: features collected from DataFusion into columns, fitted and
//! assigned in `segflow_models::cluster`, ids aligned with the previous fit.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use segflow_models::cluster::{self, Features, Model, Options};
use segflow_models::quote_ident;
use segflow_spec::{ClusterSpec, Period};
use serde::{Deserialize, Serialize};

use super::frames::require_columns;
use super::{Fitted, collect, df_err, fit_err, frame, string_column};
use crate::error::RunError;

/// The levels of one categorical feature; a row's code is its level's position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Levels {
    pub column: String,
    /// Sorted; `null` stands for a NULL value, which is a level of its own.
    pub levels: Vec<Option<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClusterModel {
    pub numeric: Vec<String>,
    pub categorical: Vec<Levels>,
    /// Previous fit the ids were aligned to (`null` for a first fit).
    pub aligned_to: Option<String>,
    pub model: Model,
}

/// The rows of the input, in key order (then by every feature) so that a fit does not depend
/// on how DataFusion partitioned the data.
struct Rows {
    keys: ArrayRef,
    numeric: Vec<Vec<Option<f64>>>,
    categorical: Vec<Vec<Option<String>>>,
}

async fn read_rows(ctx: &SessionContext, step: &str, spec: &ClusterSpec) -> Result<Rows, RunError> {
    let mut cols: Vec<&str> = vec![spec.key.as_str()];
    cols.extend(spec.numeric.iter().map(String::as_str));
    cols.extend(spec.categorical.iter().map(String::as_str));
    require_columns(ctx, step, &spec.input.value, &cols).await?;
    let mut select = vec![format!("{} AS __key", quote_ident(&spec.key))];
    select.extend(
        spec.numeric
            .iter()
            .enumerate()
            .map(|(i, c)| format!("CAST({} AS DOUBLE) AS __n{i}", quote_ident(c))),
    );
    select.extend(
        spec.categorical
            .iter()
            .enumerate()
            .map(|(i, c)| format!("CAST({} AS VARCHAR) AS __c{i}", quote_ident(c))),
    );
    let order: Vec<String> = (0..select.len())
        .map(|i| format!("{} ASC NULLS FIRST", i + 1))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {}",
        select.join(", "),
        quote_ident(&spec.input.value),
        order.join(", ")
    );
    let batches = collect(ctx, step, &sql).await?;
    let key_arrays: Vec<&dyn arrow::array::Array> =
        batches.iter().map(|b| b.column(0).as_ref()).collect();
    let keys = if key_arrays.is_empty() {
        Arc::new(StringArray::from(Vec::<Option<String>>::new())) as ArrayRef
    } else {
        arrow::compute::concat(&key_arrays).map_err(|e| df_err(step)(e.into()))?
    };
    let mut numeric = Vec::new();
    for i in 0..spec.numeric.len() {
        let mut values = Vec::new();
        for b in &batches {
            let a = arrow::compute::cast(b.column(1 + i), &DataType::Float64)
                .map_err(|e| df_err(step)(e.into()))?;
            let a = a
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or_else(|| fit_err(step, "feature is not numeric"))?;
            values.extend(a.iter());
        }
        numeric.push(values);
    }
    let mut categorical = Vec::new();
    for i in 0..spec.categorical.len() {
        categorical.push(string_column(step, &batches, &format!("__c{i}"))?);
    }
    Ok(Rows {
        keys,
        numeric,
        categorical,
    })
}

/// Rows whose numeric features are all present; the others get no cluster.
fn complete(rows: &Rows) -> Vec<usize> {
    (0..rows.keys.len())
        .filter(|&r| {
            rows.numeric
                .iter()
                .all(|c| c[r].is_some_and(f64::is_finite))
        })
        .collect()
}

fn codes(values: &[Option<String>], levels: &[Option<String>], rows: &[usize]) -> Vec<u32> {
    rows.iter()
        .map(|&r| {
            levels
                .binary_search(&values[r])
                .map_or(levels.len() as u32, |i| i as u32)
        })
        .collect()
}

/// The usable rows' features as columns: numeric values, and categories coded by `levels`.
fn columns(rows: &Rows, levels: &[Levels], usable: &[usize]) -> (Vec<Vec<f64>>, Vec<Vec<u32>>) {
    let numeric = rows
        .numeric
        .iter()
        .map(|c| usable.iter().map(|&r| c[r].unwrap_or_default()).collect())
        .collect();
    let categorical = rows
        .categorical
        .iter()
        .zip(levels)
        .map(|(values, l)| codes(values, &l.levels, usable))
        .collect();
    (numeric, categorical)
}

/// Assigns every complete row and builds the output: key, features, `cluster`.
fn output(
    ctx: &SessionContext,
    step: &str,
    spec: &ClusterSpec,
    rows: &Rows,
    stored: &ClusterModel,
) -> Result<DataFrame, RunError> {
    let usable = complete(rows);
    let (numeric, categorical) = columns(rows, &stored.categorical, &usable);
    let features = Features {
        numeric: numeric.iter().map(Vec::as_slice).collect(),
        categorical: categorical.iter().map(Vec::as_slice).collect(),
    };
    let ids = if usable.is_empty() {
        Vec::new()
    } else {
        cluster::assign(&stored.model, &features).map_err(|e| fit_err(step, e.to_string()))?
    };
    let mut cluster_of = vec![None; rows.keys.len()];
    for (&r, id) in usable.iter().zip(ids) {
        cluster_of[r] = Some(id);
    }
    let mut fields = vec![Field::new(&spec.key, rows.keys.data_type().clone(), true)];
    let mut columns: Vec<ArrayRef> = vec![Arc::clone(&rows.keys)];
    for (name, values) in spec.numeric.iter().zip(&rows.numeric) {
        fields.push(Field::new(name, DataType::Float64, true));
        columns.push(Arc::new(Float64Array::from(values.clone())));
    }
    for (name, values) in spec.categorical.iter().zip(&rows.categorical) {
        fields.push(Field::new(name, DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from(values.clone())));
    }
    fields.push(Field::new("cluster", DataType::UInt32, true));
    columns.push(Arc::new(UInt32Array::from(cluster_of)));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| df_err(step)(e.into()))?;
    frame(ctx, step, batch)
}

pub(super) async fn fit(
    ctx: &SessionContext,
    step: &str,
    spec: &ClusterSpec,
    previous: Option<(String, ClusterModel)>,
) -> Result<Fitted, RunError> {
    let rows = read_rows(ctx, step, spec).await?;
    let usable = complete(&rows);
    let levels: Vec<Levels> = spec
        .categorical
        .iter()
        .zip(&rows.categorical)
        .map(|(column, values)| Levels {
            column: column.clone(),
            levels: usable
                .iter()
                .map(|&r| values[r].clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        })
        .collect();
    let (numeric, categorical) = columns(&rows, &levels, &usable);
    let features = Features {
        numeric: numeric.iter().map(Vec::as_slice).collect(),
        categorical: categorical.iter().map(Vec::as_slice).collect(),
    };
    let mut options = Options::new(spec.k as usize, spec.seed);
    options.restarts = spec.restarts as usize;
    options.max_iterations = spec.max_iterations as usize;
    options.categorical_weight = spec.categorical_weight;
    let mut model = cluster::fit(&features, &options).map_err(|e| {
        let message = e.to_string();
        // The numerics name columns by position; the user knows them by name.
        let named = spec.numeric.iter().enumerate().fold(message, |m, (i, c)| {
            m.replace(&format!("numeric column {i} "), &format!("feature `{c}` "))
        });
        let named = spec
            .categorical
            .iter()
            .enumerate()
            .fold(named, |m, (i, c)| {
                m.replace(
                    &format!("categorical column {i} "),
                    &format!("feature `{c}` "),
                )
            });
        fit_err(step, named)
    })?;
    // Stable ids: follow last year's centroids when the features are the same. Last year's
    // category modes are re-coded into this year's levels first (a level gone from the data
    // becomes a code no row has).
    let mut aligned_to = None;
    if let Some((period, mut previous)) = previous
        && previous.numeric == spec.numeric
        && previous
            .categorical
            .iter()
            .map(|l| &l.column)
            .eq(spec.categorical.iter())
    {
        for centroid in &mut previous.model.centroids {
            for ((code, old), new) in centroid
                .categorical
                .iter_mut()
                .zip(&previous.categorical)
                .zip(&levels)
            {
                *code = old
                    .levels
                    .get(*code as usize)
                    .and_then(|level| new.levels.binary_search(level).ok())
                    .map_or(u32::MAX, |i| i as u32);
            }
        }
        cluster::align_ids(&mut model, &previous.model)
            .map_err(|e| fit_err(step, format!("cannot align cluster ids with {period}: {e}")))?;
        aligned_to = Some(period);
    }
    let stored = ClusterModel {
        numeric: spec.numeric.clone(),
        categorical: levels,
        aligned_to,
        model,
    };
    let df = output(ctx, step, spec, &rows, &stored)?;
    Ok(Fitted {
        df,
        parameters: super::stored_parameters(step, &stored)?,
        rows: usable.len() as u64,
    })
}

pub(super) async fn apply(
    ctx: &SessionContext,
    step: &str,
    spec: &ClusterSpec,
    stored: &ClusterModel,
) -> Result<DataFrame, RunError> {
    if stored.numeric != spec.numeric
        || !stored
            .categorical
            .iter()
            .map(|l| &l.column)
            .eq(spec.categorical.iter())
    {
        return Err(fit_err(
            step,
            format!(
                "the stored model clusters on {:?} + {:?}, but the step lists {:?} + {:?}",
                stored.numeric,
                stored
                    .categorical
                    .iter()
                    .map(|l| &l.column)
                    .collect::<Vec<_>>(),
                spec.numeric,
                spec.categorical
            ),
        ));
    }
    let rows = read_rows(ctx, step, spec).await?;
    output(ctx, step, spec, &rows, stored)
}

/// `model: cluster`.
pub(crate) struct Cluster<'a>(pub &'a ClusterSpec);

#[async_trait::async_trait]
impl super::model::Model for Cluster<'_> {
    type Params = ClusterModel;

    async fn fit(&self, cx: &super::model::ModelContext<'_>) -> Result<Fitted, RunError> {
        fit(cx.ctx, cx.step, self.0, cx.previous()?).await
    }

    async fn apply(
        &self,
        cx: &super::model::ModelContext<'_>,
        params: &ClusterModel,
    ) -> Result<DataFrame, RunError> {
        apply(cx.ctx, cx.step, self.0, params).await
    }

    async fn explain_sql(
        &self,
        _ctx: &SessionContext,
        _step: &str,
        _period: Period,
    ) -> Result<String, RunError> {
        // Scored in Rust: explained by what it reads and the shape it produces.
        let spec = self.0;
        let mut cols = vec![quote_ident(&spec.key)];
        cols.extend(
            spec.numeric
                .iter()
                .map(|c| format!("CAST({0} AS DOUBLE) AS {0}", quote_ident(c))),
        );
        cols.extend(
            spec.categorical
                .iter()
                .map(|c| format!("CAST({0} AS VARCHAR) AS {0}", quote_ident(c))),
        );
        Ok(format!(
            "SELECT {}, CAST(NULL AS INT UNSIGNED) AS cluster FROM {}",
            cols.join(", "),
            quote_ident(&spec.input.value)
        ))
    }
}
