//! The committed history a trend step reads: for each period of its range, the run that
//! committed the output's partition (from the producing pipeline's manifests), the partition's
//! files registered as a table, and everything that makes two periods incomparable — a missing
//! or failed period, a model whose definition changed, a classification vintage that moved
//! without a crosswalk. Nothing here writes: a trend run never rewrites what it reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use datafusion::execution::context::SessionContext;
use datafusion::prelude::ParquetReadOptions;
use segflow_manifest::{Manifest, ModelRecord, RunHistory};
use segflow_spec::{Period, Pipeline, TrendSegment, TrendSpec};
use segflow_trends::{ModelView, definition_changes};

use crate::error::RunError;
use crate::steps::frames::{df_err, scratch};

/// One period of the range.
pub(crate) struct PeriodData {
    pub label: String,
    /// The registered table of the committed partition; `None` when there is none.
    pub table: Option<String>,
    /// Why this period cannot be compared at all (no data, or its latest run failed).
    pub problem: Option<String>,
    /// The run that committed the partition.
    pub manifest: Option<Manifest>,
    /// Columns of the committed partition.
    pub columns: Vec<String>,
}

impl PeriodData {
    pub(crate) fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c == column)
    }

    /// The period's table, when it has data and `column`.
    pub(crate) fn table_with(&self, column: &str) -> Option<&str> {
        self.table.as_deref().filter(|_| self.has(column))
    }
}

/// What a trend step read, for its manifest parameters.
pub(crate) struct History {
    pub dir: PathBuf,
    pub output: String,
    pub periods: Vec<PeriodData>,
}

fn input_err(step: &str, message: impl Into<String>) -> RunError {
    RunError::StepInput {
        step: step.to_string(),
        message: message.into(),
    }
}

/// The producing pipeline's output directory: `history.dir` against this pipeline's file, or
/// this pipeline's own `output_dir`.
pub(crate) fn history_dir(pipeline: &Pipeline, spec: &TrendSpec) -> PathBuf {
    match &spec.history.dir {
        None => PathBuf::from(&pipeline.output_dir),
        Some(d) => {
            let d = d.strip_prefix("file://").unwrap_or(d);
            let path = Path::new(d);
            if path.is_absolute() {
                path.to_path_buf()
            } else {
                let base = pipeline.file.parent().unwrap_or(Path::new("."));
                base.join(d.strip_prefix("./").unwrap_or(d))
            }
        }
    }
}

/// Finds and registers every period of the range.
pub(crate) async fn load(
    ctx: &SessionContext,
    step: &str,
    pipeline: &Pipeline,
    spec: &TrendSpec,
    period: Period,
) -> Result<History, RunError> {
    let dir = history_dir(pipeline, spec);
    let output = spec.history.output.clone();
    if dir == Path::new(&pipeline.output_dir)
        && pipeline.outputs.iter().any(|o| o.name.value == output)
    {
        return Err(input_err(
            step,
            format!(
                "reads output `{output}`, which this pipeline also writes: a trend run never rewrites the periods it reads; give the trend output another name"
            ),
        ));
    }
    let periods = spec.history.range.periods(period);
    if periods.len() < 2 {
        return Err(input_err(
            step,
            format!(
                "`history` covers {} period(s) up to {period}; a trend needs at least two",
                periods.len()
            ),
        ));
    }
    let runs = RunHistory::load(&dir.join("runs"));
    let mut out = Vec::new();
    for p in periods {
        let label = p.to_string();
        let found = runs.output_runs(&output, &label);
        let mut data = PeriodData {
            label: label.clone(),
            table: None,
            problem: None,
            manifest: None,
            columns: Vec::new(),
        };
        let Some(committed) = found.committed else {
            data.problem = Some(match found.latest {
                Some(m) => format!(
                    "period {label}: run {} of `{output}` ended {} and nothing of it is committed",
                    m.run_id,
                    status_name(m)
                ),
                None => format!(
                    "period {label}: no committed `{output}` under {}",
                    dir.display()
                ),
            });
            out.push(data);
            continue;
        };
        if let Some(latest) = found.latest
            && latest.run_id != committed.run_id
        {
            data.problem = Some(format!(
                "period {label}: its latest run {} ended {}; the committed `{output}` is from the earlier run {}",
                latest.run_id,
                status_name(latest),
                committed.run_id
            ));
        }
        let record = committed
            .outputs
            .iter()
            .find(|o| o.output == output && o.committed)
            .ok_or_else(|| input_err(step, "manifest without the output it committed"))?;
        if record
            .files
            .iter()
            .any(|f| Path::new(&f.path).components().count() > 2)
        {
            return Err(input_err(
                step,
                format!(
                    "output `{output}` is partitioned below `period`; trend steps read outputs partitioned by period only"
                ),
            ));
        }
        let partition = Path::new(&record.path).join(format!("period={label}"));
        for f in &record.files {
            let path = Path::new(&record.path).join(&f.path);
            match std::fs::metadata(&path) {
                Ok(meta) if meta.len() == f.size => {}
                Ok(meta) => {
                    return Err(input_err(
                        step,
                        format!(
                            "`{}` is {} bytes, but run {} wrote {} bytes; the committed data changed since (see `segflow audit verify`)",
                            path.display(),
                            meta.len(),
                            committed.run_id,
                            f.size
                        ),
                    ));
                }
                Err(e) => {
                    return Err(input_err(
                        step,
                        format!(
                            "`{}`, committed by run {}, cannot be read: {e}",
                            path.display(),
                            committed.run_id
                        ),
                    ));
                }
            }
        }
        let table = scratch(step, &format!("p{}", label.replace('-', "_")));
        ctx.register_parquet(
            table.as_str(),
            partition.to_string_lossy().as_ref(),
            ParquetReadOptions::default(),
        )
        .await
        .map_err(df_err(step))?;
        let df = ctx.table(table.as_str()).await.map_err(df_err(step))?;
        data.columns = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        data.table = Some(table);
        data.manifest = Some(committed.clone());
        out.push(data);
    }
    Ok(History {
        dir,
        output,
        periods: out,
    })
}

fn status_name(m: &Manifest) -> String {
    serde_json::to_value(m.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

impl History {
    /// Drops the registered tables (they are views over committed files, nothing to delete).
    pub(crate) fn deregister(&self, ctx: &SessionContext) {
        for p in &self.periods {
            if let Some(t) = &p.table {
                let _ = ctx.deregister_table(t.as_str());
            }
        }
    }

    /// What the step read, for the manifest.
    pub(crate) fn record(&self) -> serde_json::Value {
        let periods: Vec<serde_json::Value> = self
            .periods
            .iter()
            .map(|p| {
                let files: Vec<serde_json::Value> = p
                    .manifest
                    .as_ref()
                    .and_then(|m| m.outputs.iter().find(|o| o.output == self.output))
                    .map(|o| {
                        o.files
                            .iter()
                            .map(|f| {
                                serde_json::json!({
                                    "path": Path::new(&o.path).join(&f.path).display().to_string(),
                                    "rows": f.rows,
                                    "sha256": f.sha256,
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                serde_json::json!({
                    "period": p.label,
                    "run_id": p.manifest.as_ref().map(|m| m.run_id.clone()),
                    "files": files,
                    "problem": p.problem,
                })
            })
            .collect();
        serde_json::json!({
            "dir": self.dir.display().to_string(),
            "output": self.output,
            "periods": periods,
        })
    }
}

/// A pair of periods compared, and whether (and why not) they may be.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    pub comparable: bool,
    pub reasons: Vec<String>,
}

impl Verdict {
    pub(crate) fn comparable() -> Self {
        Verdict {
            comparable: true,
            reasons: Vec::new(),
        }
    }

    pub(crate) fn not(reason: String) -> Self {
        Verdict {
            comparable: false,
            reasons: vec![reason],
        }
    }

    pub(crate) fn reason(&self) -> Option<String> {
        (!self.reasons.is_empty()).then(|| self.reasons.join("; "))
    }

    /// Comparable only if both are; every reason once.
    pub(crate) fn and(mut self, other: Verdict) -> Verdict {
        self.comparable &= other.comparable;
        for r in other.reasons {
            if !self.reasons.contains(&r) {
                self.reasons.push(r);
            }
        }
        self
    }
}

/// A model artifact a period's run used, read and checked against the manifest's checksum.
pub(crate) struct LoadedModel {
    pub kind: String,
    pub view: ModelView,
}

/// Reads the artifact of model `name` recorded in `manifest`. `Err` carries the reason it
/// cannot be compared.
pub(crate) fn model_of(
    history_dir: &Path,
    manifest: &Manifest,
    name: &str,
) -> Result<LoadedModel, String> {
    let record: &ModelRecord = manifest
        .models
        .iter()
        .find(|r| r.name == name)
        .or_else(|| manifest.models.iter().find(|r| r.step == name))
        .ok_or_else(|| {
            format!(
                "run {} of period {} used no model `{name}`",
                manifest.run_id, manifest.period.label
            )
        })?;
    let path = resolve(history_dir, &record.path);
    let bytes = std::fs::read(&path).map_err(|e| {
        format!(
            "model `{name}` of period {}: cannot read `{}`: {e}",
            manifest.period.label,
            path.display()
        )
    })?;
    let sha = segflow_models::artifact::sha256_hex(&bytes);
    if sha != record.sha256 {
        return Err(format!(
            "model `{name}` of period {}: `{}` is not the artifact run {} recorded (sha256 differs)",
            manifest.period.label,
            path.display(),
            manifest.run_id
        ));
    }
    let artifact: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "model `{name}` of period {}: `{}` is not JSON: {e}",
            manifest.period.label,
            path.display()
        )
    })?;
    let kind = artifact["model"]
        .as_str()
        .unwrap_or(&record.model)
        .to_string();
    Ok(LoadedModel {
        view: ModelView::of(&kind, &artifact["parameters"]),
        kind,
    })
}

/// A path recorded in a manifest: absolute, or relative to where that run ran, or to the
/// output directory.
fn resolve(history_dir: &Path, recorded: &str) -> PathBuf {
    let p = Path::new(recorded);
    if p.is_absolute() || p.exists() {
        return p.to_path_buf();
    }
    history_dir.join(p)
}

/// Judges pairs of periods for one segmentation column.
pub(crate) struct Judge<'a> {
    pub history: &'a History,
    /// Loaded artifacts by (period label, model name), cached.
    models: BTreeMap<(String, String), Result<std::sync::Arc<LoadedModel>, String>>,
}

impl<'a> Judge<'a> {
    pub(crate) fn new(history: &'a History) -> Self {
        Self {
            history,
            models: BTreeMap::new(),
        }
    }

    pub(crate) fn model(
        &mut self,
        p: &PeriodData,
        name: &str,
    ) -> Result<std::sync::Arc<LoadedModel>, String> {
        let key = (p.label.clone(), name.to_string());
        if let Some(found) = self.models.get(&key) {
            return found.clone();
        }
        let loaded = match &p.manifest {
            None => Err(format!("period {} has no committed run", p.label)),
            Some(m) => model_of(&self.history.dir, m, name).map(std::sync::Arc::new),
        };
        self.models.insert(key, loaded.clone());
        loaded
    }

    /// Whether the two periods can be compared at all (both present, both committed by
    /// their latest run).
    pub(crate) fn periods(&self, a: &PeriodData, b: &PeriodData) -> Verdict {
        let reasons: Vec<String> = [&a.problem, &b.problem]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        Verdict {
            comparable: reasons.is_empty(),
            reasons,
        }
    }

    /// Whether a column of the two periods can be compared: both periods usable, and the
    /// column in each that has data.
    pub(crate) fn column(&self, a: &PeriodData, b: &PeriodData, column: &str) -> Verdict {
        let mut verdict = self.periods(a, b);
        for p in [a, b] {
            if p.table.is_some() && !p.has(column) {
                verdict = verdict.and(Verdict::not(format!(
                    "period {} has no column `{column}`",
                    p.label
                )));
            }
        }
        verdict
    }

    /// Whether a model's definition is the same in both periods.
    pub(crate) fn model_definition(
        &mut self,
        a: &PeriodData,
        b: &PeriodData,
        name: &str,
    ) -> Verdict {
        let not = Verdict::not;
        let (ma, mb) = match (self.model(a, name), self.model(b, name)) {
            (Ok(x), Ok(y)) => (x, y),
            (Err(e), _) | (_, Err(e)) => return not(e),
        };
        if ma.kind != mb.kind {
            return not(format!(
                "model `{name}` changed kind: {} in {} → {} in {}",
                ma.kind, a.label, mb.kind, b.label
            ));
        }
        let changes = definition_changes(&ma.view.definition, &mb.view.definition);
        if changes.is_empty() {
            return Verdict::comparable();
        }
        const SHOWN: usize = 3;
        let more = if changes.len() > SHOWN {
            format!(" and {} more", changes.len() - SHOWN)
        } else {
            String::new()
        };
        not(format!(
            "definition of model `{name}` changed from {} to {}: {}{more}",
            a.label,
            b.label,
            changes[..changes.len().min(SHOWN)].join(", ")
        ))
    }

    /// Whether the reference vintage behind a column is the same in both periods, or was
    /// bridged by a crosswalk in the later one.
    fn vintage(&self, a: &PeriodData, b: &PeriodData, source: &str) -> Verdict {
        let chosen = |p: &PeriodData| -> Option<String> {
            let m = p.manifest.as_ref()?;
            let s = m
                .steps
                .iter()
                .find(|s| s.name == source && s.kind == "source")?;
            s.parameters.as_ref()?["vintage"]["chosen"]
                .as_str()
                .map(str::to_string)
        };
        let (va, vb) = (chosen(a), chosen(b));
        let (Some(va), Some(vb)) = (va, vb) else {
            let missing = if chosen(a).is_none() { a } else { b };
            return Verdict::not(format!(
                "the run of {} records no vintage of source `{source}`",
                missing.label
            ));
        };
        if va == vb {
            return Verdict::comparable();
        }
        let bridged = b.manifest.as_ref().is_some_and(|m| {
            m.steps.iter().any(|s| {
                s.kind == "enrich"
                    && s.parameters.as_ref().is_some_and(|p| {
                        p["crosswalk"].is_string()
                            && p["levels"].as_array().is_some_and(|levels| {
                                levels
                                    .iter()
                                    .any(|l| l["reference"].as_str() == Some(source))
                            })
                    })
            })
        });
        if bridged {
            return Verdict::comparable();
        }
        Verdict::not(format!(
            "source `{source}` moved from vintage {va} ({}) to {vb} ({}) without a crosswalk",
            a.label, b.label
        ))
    }

    /// Everything that decides whether `segment` may be compared between `a` and `b`.
    pub(crate) fn segment(
        &mut self,
        a: &PeriodData,
        b: &PeriodData,
        segment: &TrendSegment,
    ) -> Verdict {
        let mut verdict = self.column(a, b, &segment.column);
        if let Some(model) = &segment.model
            && a.manifest.is_some()
            && b.manifest.is_some()
        {
            verdict = verdict.and(self.model_definition(a, b, model));
        }
        if let Some(source) = &segment.vintage
            && a.manifest.is_some()
            && b.manifest.is_some()
        {
            verdict = verdict.and(self.vintage(a, b, source));
        }
        verdict
    }
}

/// The pairs a trend compares: consecutive periods (`previous`), and with `versus_first` every
/// later period against the first (`first`).
pub(crate) fn pairs(
    periods: &[PeriodData],
    versus_first: bool,
) -> Vec<(&'static str, usize, usize)> {
    let mut out: Vec<(&'static str, usize, usize)> =
        (1..periods.len()).map(|i| ("previous", i - 1, i)).collect();
    if versus_first {
        out.extend((1..periods.len()).map(|i| ("first", 0, i)));
    }
    out
}
