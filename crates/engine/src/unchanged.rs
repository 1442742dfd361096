//! Would a run of this period compute what its last successful run computed? A backfill asks
//! before each period, to skip the ones whose inputs and pipeline have not changed.
//!
//! "Unchanged" is decided on what determines a run's result and is recorded in its manifest:
//! the pipeline file's SHA-256, the segflow version, the variables the pipeline referenced,
//! every input file (path, size, SHA-256) — listed now as a run would list them, vintages
//! chosen the same way — and, for models a run applies, the SHA-256 of the artifact it would
//! apply now. The cheap comparisons come first; input files are hashed only when everything
//! else matches, each once.

use segflow_manifest::{Manifest, RunHistory};
use segflow_spec::{Period, Pipeline};

use crate::error::RunError;
use crate::run::{RunRequest, local_path, unique_label};
use crate::session::session;
use crate::steps::model::models_dir;

/// What [`freshness`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// Everything that decides the result is as the run `run_id` (the latest succeeded run of
    /// the period) saw it.
    Unchanged { run_id: String },
    /// A run is needed; `reason` says why, for people (`no succeeded run yet`,
    /// `input changed: …/orders.csv`).
    Changed { reason: String },
}

/// Compares what a run of `request.period` would read now with what the latest succeeded
/// run of the period (of this pipeline, by name) read. Reads the manifests under
/// `<output_dir>/runs/`, lists the sources' files and, when all else matches, hashes them.
pub async fn freshness(pipeline: &Pipeline, request: &RunRequest) -> Result<Freshness, RunError> {
    let runs = local_path("output_dir", &pipeline.output_dir)?.join("runs");
    let history = RunHistory::load(&runs);
    let label = request.period.to_string();
    let Some(last) = history.latest_succeeded(Some(&pipeline.name), &label) else {
        return Ok(changed("no succeeded run of this period yet"));
    };
    if let Some(reason) = setup_differs(last, request) {
        return Ok(changed(reason));
    }
    if let Some(reason) = inputs_differ(pipeline, request.period, last).await? {
        return Ok(changed(reason));
    }
    if let Some(reason) = applied_artifacts_differ(pipeline, request.period, last)? {
        return Ok(changed(reason));
    }
    Ok(Freshness::Unchanged {
        run_id: last.run_id.clone(),
    })
}

fn changed(reason: impl Into<String>) -> Freshness {
    Freshness::Changed {
        reason: reason.into(),
    }
}

/// Pipeline file, segflow version and variables.
fn setup_differs(last: &Manifest, request: &RunRequest) -> Option<String> {
    if last.pipeline.sha256 != request.pipeline_sha256 {
        return Some(format!(
            "the pipeline file changed since run {}",
            last.run_id
        ));
    }
    let version = env!("CARGO_PKG_VERSION");
    if last.segflow_version != version {
        return Some(format!(
            "run {} was made by segflow {}, this is {version}",
            last.run_id, last.segflow_version
        ));
    }
    if last.variables_sha256.is_none() || last.variables_sha256 != request.variables_sha256 {
        return Some(format!(
            "the pipeline's variables differ from run {}",
            last.run_id
        ));
    }
    None
}

/// Input files: the same list (source, path, size) first, then the same bytes.
async fn inputs_differ(
    pipeline: &Pipeline,
    period: Period,
    last: &Manifest,
) -> Result<Option<String>, RunError> {
    if let Some(refused) = last.inputs.iter().find(|i| i.refused.is_some()) {
        return Ok(Some(format!(
            "run {} refused input {}",
            last.run_id, refused.path
        )));
    }
    let (ctx, _) = session(&pipeline.engine, &unique_label("freshness"))?;
    let mut now = Vec::new();
    for source in &pipeline.sources {
        let (files, _) = crate::extract::files_to_read(&ctx, source, period).await?;
        now.extend(files.into_iter().map(|f| (source.name.value.clone(), f)));
    }
    let mut before: Vec<_> = last
        .inputs
        .iter()
        .map(|i| {
            (
                i.source.as_str(),
                i.path.as_str(),
                i.size,
                i.sha256.as_str(),
            )
        })
        .collect();
    before.sort();
    let mut listed: Vec<_> = now
        .iter()
        .map(|(source, f)| (source.as_str(), f.url.as_str(), f.size))
        .collect();
    listed.sort();
    let shapes: Vec<_> = before.iter().map(|&(s, p, n, _)| (s, p, n)).collect();
    if listed != shapes {
        return Ok(Some(list_change(&shapes, &listed)));
    }
    // Same files, same sizes: hash each once, in the listed order.
    for (source, file) in &now {
        let sha = segflow_sources::sha256_of(file.store.as_ref(), &file.path)
            .await
            .map_err(|e| RunError::StepInput {
                step: source.clone(),
                message: format!("cannot read {} to compare it: {e}", file.url),
            })?;
        let recorded = before
            .iter()
            .find(|&&(s, p, _, _)| s == source && p == file.url)
            .map(|&(_, _, _, sha)| sha);
        if recorded != Some(sha.as_str()) {
            return Ok(Some(format!("input changed: {}", file.url)));
        }
    }
    Ok(None)
}

/// "input changed: x (size)", "new input: y", "input gone: z" — the first difference.
fn list_change(before: &[(&str, &str, u64)], now: &[(&str, &str, u64)]) -> String {
    for &(s, p, n) in now {
        match before.iter().find(|&&(bs, bp, _)| bs == s && bp == p) {
            None => return format!("new input: {p}"),
            Some(&(_, _, bn)) if bn != n => {
                return format!("input changed: {p} ({bn} → {n} bytes)");
            }
            Some(_) => {}
        }
    }
    match before
        .iter()
        .find(|&&(s, p, _)| !now.iter().any(|&(ns, np, _)| ns == s && np == p))
    {
        Some(&(_, p, _)) => format!("input gone: {p}"),
        None => "the input files differ".to_string(),
    }
}

/// For each model the last run applied: the artifact a run would apply now, by SHA-256.
fn applied_artifacts_differ(
    pipeline: &Pipeline,
    period: Period,
    last: &Manifest,
) -> Result<Option<String>, RunError> {
    let applied = last.models.iter().filter(|m| m.mode == "apply");
    for record in applied {
        let Some(step) = pipeline.step(&record.step) else {
            return Ok(Some(format!("model step `{}` is gone", record.step)));
        };
        let dir = models_dir(pipeline)?;
        let (path, sha) = match artifact_to_apply(&dir, step, period) {
            Ok(found) => found,
            Err(e) => return Ok(Some(format!("model `{}`: {e}", record.step))),
        };
        if sha != record.sha256 {
            return Ok(Some(format!(
                "model `{}` would apply {} (not the artifact run {} applied)",
                record.step,
                path.display(),
                last.run_id
            )));
        }
    }
    Ok(None)
}

/// The artifact a run of `period` would apply for `step` — the pinned period's, else the
/// latest year that ended on or before the period starts, as the model step resolves it —
/// and the SHA-256 of its bytes.
fn artifact_to_apply(
    dir: &std::path::Path,
    step: &segflow_spec::Step,
    period: Period,
) -> Result<(std::path::PathBuf, String), String> {
    use segflow_models::artifact::{latest_before, read_current};
    let name = step
        .artifact
        .as_ref()
        .map_or(step.name.value.as_str(), |a| a.name.as_str());
    let stored = match step.artifact.as_ref().and_then(|a| a.period.as_ref()) {
        Some(pinned) => read_current(dir, name, pinned)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no artifact of model `{name}` for period {pinned}"))?,
        None => {
            latest_before(dir, name, period.start())
                .map_err(|e| e.to_string())?
                .1
        }
    };
    Ok((stored.path, stored.sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_change_names_the_first_difference() {
        let before = [("o", "file:///a.csv", 10), ("o", "file:///b.csv", 5)];
        assert_eq!(
            list_change(
                &before,
                &[("o", "file:///a.csv", 11), ("o", "file:///b.csv", 5)]
            ),
            "input changed: file:///a.csv (10 → 11 bytes)"
        );
        assert_eq!(
            list_change(&before, &[("o", "file:///a.csv", 10)]),
            "input gone: file:///b.csv"
        );
        assert_eq!(
            list_change(&before[..1], &before),
            "new input: file:///b.csv"
        );
    }
}
