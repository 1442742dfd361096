//! The `identity` step: reads identifier columns, links records with `segflow-identity`, and
//! keeps the registry of identifier hashes → person ids that makes ids stable across runs.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SessionContext;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use segflow_identity::{Options, Record, Resolved, resolve};
use segflow_models::quote_ident;
use segflow_spec::{IdentitySpec, Period, Pipeline};

use super::frames::require_columns;
use super::{StepContext, StepOutput, StepRunner};
use crate::error::RunError;
use crate::run::local_path;

/// `<output_dir>/identity/<step>/registry.parquet`.
fn registry_path(pipeline: &Pipeline, step: &str) -> Result<PathBuf, RunError> {
    Ok(local_path("output_dir", &pipeline.output_dir)?
        .join("identity")
        .join(step)
        .join("registry.parquet"))
}

fn text(array: &ArrayRef, row: usize) -> Result<Option<String>, RunError> {
    if array.is_null(row) {
        return Ok(None);
    }
    array_value_to_string(array, row)
        .map(Some)
        .map_err(|e| RunError::StepInput {
            step: "identity".into(),
            message: e.to_string(),
        })
}

fn read_registry(step: &str, path: &Path) -> Result<HashMap<String, String>, RunError> {
    let mut out = HashMap::new();
    let err = |message: String| RunError::Registry {
        step: step.to_string(),
        path: path.display().to_string(),
        message,
    };
    // Only a registry that does not exist yet is empty: any other failure to open it (a
    // permission, a directory in its place) would re-key every person and overwrite it.
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(err(e.to_string())),
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| err(e.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|e| err(e.to_string()))?;
        for row in 0..batch.num_rows() {
            if let (Some(h), Some(id)) = (text(batch.column(0), row)?, text(batch.column(1), row)?)
            {
                out.insert(h, id);
            }
        }
    }
    Ok(out)
}

/// What identifies one version of a file: replaced by a rename, it changes.
pub(crate) type FileVersion = (u64, u64, i64, i64);

/// The registry's version on disk, `None` when there is none yet.
pub(crate) fn file_version(path: &Path) -> Option<FileVersion> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.ino(), m.mtime(), m.mtime_nsec()))
}

/// The registry a run read, and the one it will commit in its place.
pub(crate) struct RegistryUpdate {
    pub path: PathBuf,
    pub resolved: Resolved,
    /// The version read: if another run committed a new registry since, committing this one
    /// would lose that run's new person ids, so the commit refuses.
    pub read_version: Option<FileVersion>,
}

impl RegistryUpdate {
    /// Writes the new registry beside the current one, under this run's temporary name
    /// (`.registry.<run_id>.tmp`), for the run's commit to move into place.
    pub(crate) fn stage(&self, run_id: &str) -> Result<PathBuf, RunError> {
        let path = &self.path;
        let io = |e: String| RunError::StepInput {
            step: "identity".into(),
            message: format!(
                "cannot write the identity registry `{}`: {e}",
                path.display()
            ),
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("identifier_sha256", DataType::Utf8, false),
            Field::new("person_id", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from_iter_values(self.resolved.registry.keys())),
                Arc::new(StringArray::from_iter_values(
                    self.resolved.registry.values(),
                )),
            ],
        )
        .map_err(|e| io(e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| io(e.to_string()))?;
        let tmp = dir.join(format!(".registry.{run_id}.tmp"));
        let file = std::fs::File::create(&tmp).map_err(|e| io(e.to_string()))?;
        let mut writer = ArrowWriter::try_new(file, schema, None).map_err(|e| io(e.to_string()))?;
        writer.write(&batch).map_err(|e| io(e.to_string()))?;
        writer.close().map_err(|e| io(e.to_string()))?;
        Ok(tmp)
    }

    /// Under the commit lock: refuses when the registry changed since this run read it.
    pub(crate) fn check_unchanged(&self) -> Result<(), RunError> {
        if file_version(&self.path) == self.read_version {
            return Ok(());
        }
        Err(RunError::RegistryChanged {
            path: self.path.display().to_string(),
        })
    }
}

/// The inputs whose e-mail, phone or national id arrive as tokens: read straight from a source
/// column that is `pii: hash`, which was normalized by the identity rule before hashing (the
/// spec records the rule on the source as `identifiers`).
fn token_inputs(pipeline: &Pipeline, spec: &IdentitySpec) -> BTreeSet<(String, &'static str)> {
    let mut tokens = BTreeSet::new();
    for input in &spec.inputs {
        let Some(source) = pipeline.source(&input.from.value) else {
            continue;
        };
        for column in [&input.email, &input.phone, &input.national_id]
            .into_iter()
            .flatten()
        {
            // The spec records a role only for a `pii: hash` column.
            if let Some(role) = source.identifiers.get(column) {
                tokens.insert((input.from.value.clone(), role.rule()));
            }
        }
    }
    tokens
}

/// Links the records of all inputs; the returned table has one row per input record:
/// `source`, `key`, `person_id`, `matched_by`, sorted by source and key.
async fn run_identity(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    step: &str,
    spec: &IdentitySpec,
    registry: &Path,
    hash_key: Option<&[u8]>,
) -> Result<(DataFrame, Resolved, Option<FileVersion>), RunError> {
    let step_err = |e| RunError::Step {
        step: step.to_string(),
        source: Box::new(e),
    };
    let mut records = Vec::new();
    for input in &spec.inputs {
        let columns = [
            Some(&input.key),
            input.email.as_ref(),
            input.phone.as_ref(),
            input.national_id.as_ref(),
            input.name.as_ref(),
            input.address.as_ref(),
            input.postal_code.as_ref(),
        ];
        let named: Vec<&str> = columns.iter().flatten().map(|c| c.as_str()).collect();
        require_columns(ctx, step, &input.from.value, &named).await?;
        let mut select = Vec::new();
        for (i, column) in columns.into_iter().enumerate() {
            match column {
                Some(c) => select.push(format!("CAST({} AS VARCHAR) AS c{i}", quote_ident(c))),
                None => select.push(format!("CAST(NULL AS VARCHAR) AS c{i}")),
            }
        }
        let sql = format!(
            "SELECT {} FROM {}",
            select.join(", "),
            quote_ident(&input.from.value)
        );
        let batches = ctx
            .sql_with_options(&sql, crate::steps::frames::read_only())
            .await
            .map_err(step_err)?
            .collect()
            .await
            .map_err(step_err)?;
        for batch in batches {
            let cols = batch.columns();
            for row in 0..batch.num_rows() {
                let Some(key) = text(&cols[0], row)? else {
                    continue;
                };
                records.push(Record {
                    source: input.from.value.clone(),
                    key,
                    email: text(&cols[1], row)?,
                    phone: text(&cols[2], row)?,
                    national_id: text(&cols[3], row)?,
                    name: text(&cols[4], row)?,
                    address: text(&cols[5], row)?,
                    postal_code: text(&cols[6], row)?,
                });
            }
        }
    }
    records.sort_by(|a, b| (&a.source, &a.key).cmp(&(&b.source, &b.key)));
    let options = Options {
        strip_plus_addressing: spec.strip_plus_addressing,
        default_country_code: spec.default_country_code.clone(),
        hash_key: hash_key.map(<[u8]>::to_vec),
        tokens: token_inputs(pipeline, spec),
    };
    let read_version = file_version(registry);
    let resolved = resolve(&records, &options, &read_registry(step, registry)?);
    let schema = Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("person_id", DataType::Utf8, false),
        Field::new("matched_by", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                records.iter().map(|r| r.source.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                records.iter().map(|r| r.key.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(resolved.person_id.iter())),
            Arc::new(StringArray::from_iter_values(
                resolved.matched_by.iter().copied(),
            )),
        ],
    )
    .map_err(|e| step_err(e.into()))?;
    let df = ctx.read_batch(batch).map_err(step_err)?;
    Ok((df, resolved, read_version))
}

pub(crate) struct Identity<'a>(pub &'a IdentitySpec);

#[async_trait]
impl StepRunner for Identity<'_> {
    async fn run(&self, cx: &StepContext<'_>) -> Result<StepOutput, RunError> {
        let spec = self.0;
        let path = registry_path(cx.pipeline, cx.name())?;
        let (df, resolved, read_version) =
            run_identity(cx.ctx, cx.pipeline, cx.name(), spec, &path, cx.pii_key).await?;
        let parameters = serde_json::json!({
            "inputs": spec.inputs.iter().map(|x| x.from.value.clone()).collect::<Vec<_>>(),
            "rules": segflow_identity::RULES,
            "plus_addressing": if spec.strip_plus_addressing { "strip" } else { "keep" },
            "default_country_code": spec.default_country_code,
            "merges": resolved.merges,
            "persons": resolved.persons,
            "known_persons": resolved.known_persons,
            "max_records_per_identifier": segflow_identity::DEFAULT_MAX_RECORDS_PER_IDENTIFIER,
            "rejected": resolved.rejected,
            "over_shared": resolved.over_shared,
            "registry": path.display().to_string(),
        });
        Ok(StepOutput {
            parameters: Some(parameters),
            registry: Some(RegistryUpdate {
                path,
                resolved,
                read_version,
            }),
            ..StepOutput::rows(df)
        })
    }

    async fn explain_sql(
        &self,
        _ctx: &SessionContext,
        step: &str,
        _period: Period,
    ) -> Result<String, RunError> {
        Err(RunError::StepInput {
            step: step.to_string(),
            message: "identity steps link records in Rust (segflow-identity) and have no SQL plan"
                .into(),
        })
    }
}

/// The identity step's output columns: linking happens in Rust, so later steps are planned
/// (by `explain` and by validation) over this shape.
pub(crate) fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(
        ["source", "key", "person_id", "matched_by"]
            .map(|n| Field::new(n, DataType::Utf8, false))
            .to_vec(),
    ))
}
