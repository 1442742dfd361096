//! Model steps: fit a segmentation model (yearly runs) and store its artifact, or apply a
//! stored artifact frozen (monthly runs). One file per model; each turns its spec into a
//! DataFrame plus, when fitting, the parameters that go into the artifact.

mod cluster;
mod clv;
mod lookalike;
mod matrix;
mod pareto;
mod potential;
mod rfm;
mod rules;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use segflow_models::artifact::{ARTIFACT_VERSION, artifact_path, latest_before};
use segflow_models::{Artifact, ArtifactError, quote_ident};
use segflow_spec::{Period, Pipeline, Step, StepKind};

use crate::error::RunError;

/// How a model step ran, for the manifest and the commit.
#[derive(Debug)]
pub(crate) struct ModelOutcome {
    pub mode: &'static str,
    pub artifact: Artifact,
    pub path: PathBuf,
    /// The artifact's bytes when this run fitted it (written at commit).
    pub pending: Option<Vec<u8>>,
    pub sha256: String,
}

/// What a fit produced: the scored rows, the parameters and how many rows the fit saw.
pub(crate) struct Fitted {
    pub df: DataFrame,
    pub parameters: serde_json::Value,
    pub rows: u64,
}

/// Identity of the fitting run, copied into the artifact.
pub(crate) struct FitContext<'a> {
    pub pipeline: &'a Pipeline,
    pub period: Period,
    pub pipeline_sha256: &'a str,
    pub inputs_sha256: &'a str,
}

pub(crate) fn is_model(step: &Step) -> bool {
    !matches!(
        step.kind,
        StepKind::Sql(_) | StepKind::Identity(_) | StepKind::Enrich(_) | StepKind::Profile(_)
    )
}

fn artifact_err(step: &str) -> impl Fn(ArtifactError) -> RunError + '_ {
    move |source| RunError::Artifact {
        step: step.to_string(),
        source,
    }
}

pub(crate) fn models_dir(pipeline: &Pipeline) -> Result<PathBuf, RunError> {
    crate::run::local_path("models.dir", &pipeline.models.dir)
}

/// Fits or applies `step`, as the pipeline's `models.mode` and grain say.
pub(crate) async fn run_model_step(
    ctx: &SessionContext,
    step: &Step,
    fit: &FitContext<'_>,
) -> Result<(DataFrame, ModelOutcome), RunError> {
    let name = step.name.value.as_str();
    let dir = models_dir(fit.pipeline)?;
    let reference = step.artifact.clone().unwrap_or(segflow_spec::ArtifactRef {
        name: name.to_string(),
        period: None,
    });
    if fit.pipeline.models.fits(fit.period.grain()) {
        let fitted = fit_step(ctx, step, fit.period, &dir, &reference.name).await?;
        let artifact = Artifact {
            artifact_version: ARTIFACT_VERSION,
            model: step.kind_name().to_string(),
            name: reference.name.clone(),
            period: fit.period.to_string(),
            pipeline: fit.pipeline.name.clone(),
            pipeline_sha256: fit.pipeline_sha256.to_string(),
            inputs_sha256: fit.inputs_sha256.to_string(),
            fitted_rows: fitted.rows,
            parameters: fitted.parameters,
        };
        let bytes = artifact.to_bytes();
        let outcome = ModelOutcome {
            mode: "fit",
            path: artifact_path(&dir, &reference.name, &fit.period.to_string()),
            sha256: sha256_hex(&bytes),
            artifact,
            pending: Some(bytes),
        };
        return Ok((fitted.df, outcome));
    }
    let path = match &reference.period {
        Some(period) => artifact_path(&dir, &reference.name, period),
        None => {
            latest_before(&dir, &reference.name, fit.period.start())
                .map_err(artifact_err(name))?
                .1
        }
    };
    // Read once: the bytes hashed for the manifest are the bytes applied.
    let bytes = std::fs::read(&path).map_err(|source| RunError::Artifact {
        step: name.to_string(),
        source: if source.kind() == std::io::ErrorKind::NotFound {
            ArtifactError::NotFound {
                name: reference.name.clone(),
                dir: dir.display().to_string(),
                before: fit.period.start(),
            }
        } else {
            ArtifactError::Read {
                path: path.display().to_string(),
                source,
            }
        },
    })?;
    let artifact = Artifact::from_bytes(&path, &bytes).map_err(artifact_err(name))?;
    if artifact.model != step.kind_name() {
        return Err(RunError::Artifact {
            step: name.to_string(),
            source: ArtifactError::Invalid {
                path: path.display().to_string(),
                message: format!(
                    "it holds a `{}` model, but this step is a `{}` model",
                    artifact.model,
                    step.kind_name()
                ),
            },
        });
    }
    let df = apply_step(ctx, step, fit.period, &artifact, &path).await?;
    Ok((
        df,
        ModelOutcome {
            mode: "apply",
            sha256: sha256_hex(&bytes),
            artifact,
            path,
            pending: None,
        },
    ))
}

async fn fit_step(
    ctx: &SessionContext,
    step: &Step,
    period: Period,
    dir: &Path,
    model_name: &str,
) -> Result<Fitted, RunError> {
    let name = step.name.value.as_str();
    match &step.kind {
        StepKind::Rfm(spec) => rfm::fit(ctx, name, spec, period).await,
        StepKind::Pareto(spec) => pareto::fit(ctx, name, spec).await,
        StepKind::Matrix(spec) => matrix::fit(ctx, name, spec).await,
        StepKind::Rules(spec) => rules::fit(ctx, name, spec).await,
        StepKind::Cluster(spec) => {
            // The previous fit (if any) gives the clusters their ids.
            let previous = match latest_before(dir, model_name, period.start()) {
                Ok((label, path)) => {
                    let artifact = Artifact::load(&path).map_err(artifact_err(name))?;
                    (artifact.model == step.kind_name())
                        .then(|| typed::<cluster::ClusterModel>(name, &artifact, &path))
                        .transpose()?
                        .map(|m| (label, m))
                }
                Err(ArtifactError::NotFound { .. }) => None,
                Err(e) => return Err(artifact_err(name)(e)),
            };
            cluster::fit(ctx, name, spec, previous).await
        }
        StepKind::Clv(spec) => clv::fit(ctx, name, spec, period).await,
        StepKind::Lookalike(spec) => lookalike::fit(ctx, name, spec).await,
        StepKind::Potential(spec) => potential::fit(ctx, name, spec).await,
        StepKind::Sql(_) | StepKind::Identity(_) | StepKind::Enrich(_) | StepKind::Profile(_) => {
            Err(not_a_model(name))
        }
    }
}

async fn apply_step(
    ctx: &SessionContext,
    step: &Step,
    period: Period,
    artifact: &Artifact,
    path: &Path,
) -> Result<DataFrame, RunError> {
    let name = step.name.value.as_str();
    let a = artifact;
    match &step.kind {
        StepKind::Rfm(spec) => rfm::apply(ctx, name, spec, period, &typed(name, a, path)?).await,
        StepKind::Pareto(spec) => pareto::apply(ctx, name, spec, &typed(name, a, path)?).await,
        StepKind::Matrix(spec) => matrix::apply(ctx, name, spec, &typed(name, a, path)?).await,
        StepKind::Rules(spec) => rules::apply(ctx, name, spec, &typed(name, a, path)?).await,
        StepKind::Cluster(spec) => cluster::apply(ctx, name, spec, &typed(name, a, path)?).await,
        StepKind::Clv(spec) => clv::apply(ctx, name, spec, period, &typed(name, a, path)?).await,
        StepKind::Lookalike(spec) => {
            lookalike::apply(ctx, name, spec, &typed(name, a, path)?).await
        }
        StepKind::Potential(spec) => {
            potential::apply(ctx, name, spec, &typed(name, a, path)?).await
        }
        StepKind::Sql(_) | StepKind::Identity(_) | StepKind::Enrich(_) | StepKind::Profile(_) => {
            Err(not_a_model(name))
        }
    }
}

fn typed<T: serde::de::DeserializeOwned>(
    step: &str,
    artifact: &Artifact,
    path: &Path,
) -> Result<T, RunError> {
    artifact.parameters(path).map_err(artifact_err(step))
}

fn not_a_model(step: &str) -> RunError {
    RunError::StepInput {
        step: step.to_string(),
        message: "not a model step".into(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Writes a fitted artifact next to its final place under a name unique to the run, before
/// any output is committed, so a failure here leaves everything as it was.
pub(crate) fn stage_artifact(
    outcome: &ModelOutcome,
    run_id: &str,
) -> Result<Option<PathBuf>, RunError> {
    let Some(bytes) = &outcome.pending else {
        return Ok(None);
    };
    let path = &outcome.path;
    let write_err = |source| RunError::ArtifactWrite {
        path: path.display().to_string(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(write_err)?;
    let tmp = dir.join(format!(".model.json.{run_id}.tmp"));
    std::fs::write(&tmp, bytes).map_err(write_err)?;
    Ok(Some(tmp))
}

/// Moves a staged artifact into place (a rename: readers never see half of one).
pub(crate) fn commit_artifact(outcome: &ModelOutcome, staged: &Path) -> Result<(), RunError> {
    std::fs::rename(staged, &outcome.path).map_err(|source| RunError::ArtifactWrite {
        path: outcome.path.display().to_string(),
        source,
    })
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
    ctx.sql_with_options(sql, crate::compile::read_only())
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

/// The name of a model's intermediate table; `__` keeps it apart from user names.
pub(crate) fn scratch(step: &str, part: &str) -> String {
    format!("__{step}_{part}")
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
    let mut out = Vec::new();
    for batch in batches {
        let Some(array) = batch.column_by_name(column) else {
            return Err(fit_err(step, format!("no column `{column}`")));
        };
        let array =
            arrow::compute::cast(array, &DataType::Float64).map_err(|e| df_err(step)(e.into()))?;
        let array = array.as_primitive::<Float64Type>();
        if array.null_count() > 0 {
            return Err(fit_err(
                step,
                format!("column `{column}` has NULL values; filter or fill them before the model"),
            ));
        }
        out.extend_from_slice(array.values());
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

/// The query `explain` plans for a model step: its scoring query with placeholder parameters
/// (zero cut points, thresholds and coefficients), so the plan has the real shape and reads
/// without fitting anything.
pub(crate) async fn explain_sql(
    ctx: &SessionContext,
    step: &Step,
    period: Period,
) -> Result<String, RunError> {
    use segflow_models::{
        lookalike, matrix, pareto, potential, rfm as rfm_sql, rules as rules_sql,
    };
    let name = step.name.value.as_str();
    let with = |cte: &str, body: String, rest: String| {
        let rest = rest.strip_prefix("WITH ").map_or_else(
            || format!("{cte}_final AS ({rest}) SELECT * FROM {cte}_final"),
            str::to_string,
        );
        format!("WITH {cte} AS (\n{body}\n),\n{rest}")
    };
    Ok(match &step.kind {
        StepKind::Rfm(spec) => {
            let mut cols = vec![
                spec.customer.as_str(),
                spec.date.as_str(),
                spec.amount.as_str(),
            ];
            cols.extend(spec.order_id.as_deref());
            crate::compile::require_columns(ctx, name, &spec.input.value, &cols).await?;
            let zeros = vec![0.0; spec.bins.saturating_sub(1) as usize];
            let cuts = rfm_sql::RfmCutPoints {
                recency_days: zeros.clone(),
                frequency: zeros.clone(),
                monetary: zeros,
            };
            let measure = rfm_sql::rfm_measure_sql(
                spec,
                &spec.input.value,
                spec.reference_date.unwrap_or(period.end()),
            );
            with(
                "measured",
                measure,
                rfm_sql::rfm_score_sql(spec, "measured", &rfm_sql::Scoring::Cuts(&cuts)),
            )
        }
        StepKind::Pareto(spec) => pareto::pareto_sql(spec, &spec.input.value),
        StepKind::Matrix(spec) => {
            let axis = |a: &segflow_spec::Axis| matrix::AxisModel {
                name: a.name.clone(),
                expr: a.expr.clone(),
                split: matrix::split_name(a.split).into(),
                threshold: 0.0,
            };
            let model = matrix::MatrixModel {
                x: axis(&spec.x),
                y: axis(&spec.y),
                cells: spec.cells.clone(),
            };
            with(
                "matrix_values",
                matrix::matrix_values_sql(spec, &spec.input.value),
                matrix::matrix_apply_sql(spec, &model, "matrix_values"),
            )
        }
        StepKind::Rules(spec) => rules_sql::rules_sql(
            &rules_sql::RulesModel {
                segments: rfm_sql::StoredRule::from_spec(&spec.segments),
            },
            &spec.input.value,
        ),
        StepKind::Lookalike(spec) => {
            let model = lookalike::LookalikeModel {
                method: "index".into(),
                best_segments: spec.best.clone(),
                customers: 0,
                best_customers: 0,
                min_customers: spec.min_customers,
                indexes: spec
                    .attributes
                    .iter()
                    .map(|a| lookalike::AttributeIndex {
                        attribute: a.clone(),
                        values: Vec::new(),
                    })
                    .collect(),
                centroid: Vec::new(),
            };
            lookalike::score_sql(spec, &model)
        }
        StepKind::Potential(spec) => {
            let model = potential::PotentialModel {
                target: spec.target.clone(),
                intercept: 0.0,
                numeric: spec
                    .numeric
                    .iter()
                    .map(|c| potential::NumericTerm {
                        column: c.clone(),
                        coefficient: 0.0,
                    })
                    .collect(),
                categorical: spec
                    .categorical
                    .iter()
                    .map(|c| potential::CategoricalTerm {
                        column: c.clone(),
                        baseline: String::new(),
                        levels: Vec::new(),
                    })
                    .collect(),
                r_squared: 0.0,
                observations: 0,
            };
            potential::apply_sql(spec, &model)
        }
        // Scored in Rust: explained by what they read and the shape they produce.
        StepKind::Cluster(spec) => {
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
            format!(
                "SELECT {}, CAST(NULL AS INT UNSIGNED) AS cluster FROM {}",
                cols.join(", "),
                quote_ident(&spec.input.value)
            )
        }
        StepKind::Clv(spec) => {
            let d = "CAST(NULL AS DOUBLE)";
            format!(
                "SELECT {c}, {d} AS frequency, {d} AS recency, {d} AS t, {d} AS mean_spend, {d} AS historical_value, {d} AS p_alive, {d} AS expected_purchases, {d} AS expected_spend, {d} AS clv, CAST(NULL AS BOOLEAN) AS churn_risk FROM {input} GROUP BY {c}",
                c = quote_ident(&spec.customer),
                input = quote_ident(&spec.input.value)
            )
        }
        StepKind::Profile(spec) => {
            segflow_profiles::profile_sql(spec, period.start(), period.end())
        }
        StepKind::Enrich(spec) => {
            let refs: Vec<String> = (0..spec.keys.len())
                .map(|i| format!("__explain_reference_{i}"))
                .collect();
            let ctes: Vec<String> = refs
                .iter()
                .enumerate()
                .map(|(i, r)| format!("{r} AS ({})", segflow_enrich::join::reference_sql(spec, i)))
                .collect();
            let body = segflow_enrich::join::enrich_sql(spec, &refs);
            let body = body.strip_prefix("WITH ").unwrap_or(&body).to_string();
            format!("WITH {}, {body}", ctes.join(", "))
        }
        StepKind::Sql(_) | StepKind::Identity(_) => {
            return Err(not_a_model(name));
        }
    })
}

/// The parameters as stored in the artifact, checked to read back as the model: JSON has no
/// NaN or infinity (serde writes them as `null`), so a degenerate fit would otherwise commit
/// an artifact that no later run can apply.
pub(crate) fn stored_parameters<T>(step: &str, model: &T) -> Result<serde_json::Value, RunError>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let value = serde_json::to_value(model)
        .map_err(|e| fit_err(step, format!("cannot store the fitted parameters: {e}")))?;
    serde_json::from_value::<T>(value.clone()).map_err(|e| {
        fit_err(
            step,
            format!("the fit produced a parameter that is not a finite number ({e}); the data cannot support this model"),
        )
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Split {
        threshold: f64,
    }

    #[test]
    fn a_non_finite_parameter_is_refused_before_it_reaches_an_artifact() {
        let ok = stored_parameters("m", &Split { threshold: 1.5 }).expect("finite");
        assert_eq!(ok, serde_json::json!({ "threshold": 1.5 }));
        let err = stored_parameters(
            "m",
            &Split {
                threshold: f64::NAN,
            },
        )
        .expect_err("NaN");
        assert!(err.to_string().contains("not a finite number"), "{err}");
    }
}
