//! What every model step shares: a yearly run fits the model and stages a versioned artifact
//! (written at commit); a monthly run applies a stored artifact frozen, never refitting.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use segflow_models::artifact::{ARTIFACT_VERSION, artifact_path, latest_before};
use segflow_models::{Artifact, ArtifactError};
use segflow_spec::{Period, Pipeline};
use serde::de::DeserializeOwned;

use super::{StepContext, StepOutput, StepRunner};
use crate::error::RunError;
use crate::steps::frames::fit_err;

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

/// What a model's fit and apply see.
pub(crate) struct ModelContext<'a> {
    pub ctx: &'a SessionContext,
    pub step: &'a str,
    pub period: Period,
    /// Where artifacts live and this model's artifact name, for a fit that builds on the
    /// previous one (cluster ids follow the previous year's centroids).
    pub models_dir: &'a Path,
    pub model_name: &'a str,
    /// The model kind as the YAML names it (`rfm`, `kmeans`, …).
    pub kind: &'a str,
}

impl ModelContext<'_> {
    /// The latest artifact of this model from before this period, if it is of the same kind.
    pub(crate) fn previous<T: DeserializeOwned>(&self) -> Result<Option<(String, T)>, RunError> {
        let step = self.step;
        match latest_before(self.models_dir, self.model_name, self.period.start()) {
            Ok((label, path)) => {
                let artifact = Artifact::load(&path).map_err(artifact_err(step))?;
                if artifact.model != self.kind {
                    return Ok(None);
                }
                Ok(Some((label, typed(step, &artifact, &path)?)))
            }
            Err(ArtifactError::NotFound { .. }) => Ok(None),
            Err(e) => Err(artifact_err(step)(e)),
        }
    }
}

/// A segmentation model: fitted in yearly runs, applied frozen in monthly runs.
#[async_trait]
pub(crate) trait Model: Send + Sync {
    /// The fitted parameters as stored in the artifact.
    type Params: DeserializeOwned + Send + Sync;

    async fn fit(&self, cx: &ModelContext<'_>) -> Result<Fitted, RunError>;

    async fn apply(
        &self,
        cx: &ModelContext<'_>,
        params: &Self::Params,
    ) -> Result<DataFrame, RunError>;

    /// The scoring query with placeholder parameters (zero cut points, thresholds and
    /// coefficients), so `explain` shows the real shape without fitting.
    async fn explain_sql(
        &self,
        ctx: &SessionContext,
        step: &str,
        period: Period,
    ) -> Result<String, RunError>;
}

struct ModelStep<M>(M);

/// A model as a step runner.
pub(crate) fn boxed<'a, M: Model + 'a>(model: M) -> Box<dyn StepRunner + 'a> {
    Box::new(ModelStep(model))
}

#[async_trait]
impl<M: Model> StepRunner for ModelStep<M> {
    async fn run(&self, cx: &StepContext<'_>) -> Result<StepOutput, RunError> {
        let (df, outcome) = run_model(&self.0, cx).await?;
        Ok(StepOutput {
            parameters: Some(outcome.artifact.parameters.clone()),
            model: Some(outcome),
            ..StepOutput::rows(df)
        })
    }

    async fn explain_sql(
        &self,
        ctx: &SessionContext,
        step: &str,
        period: Period,
    ) -> Result<String, RunError> {
        self.0.explain_sql(ctx, step, period).await
    }
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

/// Fits or applies the model, as the pipeline's `models.mode` and grain say.
async fn run_model<M: Model>(
    model: &M,
    cx: &StepContext<'_>,
) -> Result<(DataFrame, ModelOutcome), RunError> {
    let (step, fit) = (cx.step, cx.fit);
    let name = step.name.value.as_str();
    let dir = models_dir(fit.pipeline)?;
    let reference = step.artifact.clone().unwrap_or(segflow_spec::ArtifactRef {
        name: name.to_string(),
        period: None,
    });
    let mcx = ModelContext {
        ctx: cx.ctx,
        step: name,
        period: fit.period,
        models_dir: &dir,
        model_name: &reference.name,
        kind: step.kind_name(),
    };
    if fit.pipeline.models.fits(fit.period.grain()) {
        let fitted = model.fit(&mcx).await?;
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
    let params: M::Params = typed(name, &artifact, &path)?;
    let df = model.apply(&mcx, &params).await?;
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

fn typed<T: DeserializeOwned>(step: &str, artifact: &Artifact, path: &Path) -> Result<T, RunError> {
    artifact.parameters(path).map_err(artifact_err(step))
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

/// The parameters as stored in the artifact, checked to read back as the model: JSON has no
/// NaN or infinity (serde writes them as `null`), so a degenerate fit would otherwise commit
/// an artifact that no later run can apply.
pub(crate) fn stored_parameters<T>(step: &str, model: &T) -> Result<serde_json::Value, RunError>
where
    T: serde::Serialize + DeserializeOwned,
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
