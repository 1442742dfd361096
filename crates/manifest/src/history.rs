//! Every run manifest under an output directory's `runs/`, for the questions later runs and
//! auditors ask of the past: which run last wrote a period, did it succeed, what did it read.
//!
//! One reader so that the data checks, the report, trend steps, backfills and `audit` agree on
//! what "the latest successful run of a period" means: the one that started last (ties broken
//! by run id, which starts with its start time).

use std::path::{Path, PathBuf};

use crate::{Manifest, RunStatus};

/// The manifests of one `runs/` directory, oldest first.
#[derive(Debug, Clone, Default)]
pub struct RunHistory {
    runs: Vec<Manifest>,
    /// Manifests that exist but could not be read or decoded: (path, why).
    unreadable: Vec<(PathBuf, String)>,
}

impl RunHistory {
    /// Reads `runs_dir/*/manifest.json`. A missing directory is an empty history; a manifest
    /// that cannot be read or decoded is listed in [`RunHistory::unreadable`], not skipped
    /// silently.
    pub fn load(runs_dir: &Path) -> Self {
        let mut history = Self::default();
        let Ok(entries) = std::fs::read_dir(runs_dir) else {
            return history;
        };
        for entry in entries.flatten() {
            let path = entry.path().join("manifest.json");
            if !entry.path().is_dir() || !path.exists() {
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(text) => match serde_json::from_str::<Manifest>(&text) {
                    Ok(m) => history.runs.push(m),
                    Err(e) => history.unreadable.push((path, e.to_string())),
                },
                Err(e) => history.unreadable.push((path, e.to_string())),
            }
        }
        history
            .runs
            .sort_by(|a, b| (&a.started_at, &a.run_id).cmp(&(&b.started_at, &b.run_id)));
        history.unreadable.sort();
        history
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> &[Manifest] {
        &self.runs
    }

    pub fn unreadable(&self) -> &[(PathBuf, String)] {
        &self.unreadable
    }

    /// The latest run for which `keep` holds.
    pub fn latest(&self, keep: impl Fn(&Manifest) -> bool) -> Option<&Manifest> {
        self.runs.iter().rev().find(|m| keep(m))
    }

    /// The latest succeeded run of `period` (of `pipeline`, when given).
    pub fn latest_succeeded(&self, pipeline: Option<&str>, period: &str) -> Option<&Manifest> {
        self.latest(|m| {
            m.status == RunStatus::Succeeded
                && m.period.label == period
                && pipeline.is_none_or(|p| m.pipeline.name == p)
        })
    }

    /// The latest run of `period` that set out to write `output` (whatever became of it), and
    /// the latest one that committed it. When they differ, the newest attempt failed and the
    /// committed data is older than it.
    pub fn output_runs(&self, output: &str, period: &str) -> OutputRuns<'_> {
        let writes =
            |m: &Manifest| m.period.label == period && m.outputs.iter().any(|o| o.output == output);
        let is_committed = |m: &Manifest| {
            m.status == RunStatus::Succeeded
                && m.outputs.iter().any(|o| o.output == output && o.committed)
        };
        OutputRuns {
            latest: self.latest(writes),
            committed: self.latest(|m| writes(m) && is_committed(m)),
        }
    }
}

/// See [`RunHistory::output_runs`].
#[derive(Debug, Clone, Copy)]
pub struct OutputRuns<'a> {
    pub latest: Option<&'a Manifest>,
    pub committed: Option<&'a Manifest>,
}
