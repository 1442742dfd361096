//! What a run does first: finish or undo what runs that died left behind.
//!
//! A run that died (`kill -9`, out of memory, a power loss) left its `run.lock` unlocked, maybe
//! a commit journal, staging directories and temporary files, and a manifest that still says
//! `running`. Under the commit lock, the next run of the pipeline (or `segflow recover`):
//! 1. replays the journal — rolled back before the commit point, completed after it — so the
//!    committed data is exactly the old run's or exactly the new one's;
//! 2. makes the dead run's manifest tell what happened (`abandoned`, or `succeeded` when it
//!    had reached its commit point), naming the run that recovered it;
//! 3. removes its staging, replaced and temporary files wherever this pipeline writes;
//! 4. records all of it in its own manifest (`recovered`).

use std::path::{Path, PathBuf};

use segflow_manifest::{Manifest, RecoveryRecord, RunStatus};
use segflow_sinks::Recovered;
use segflow_spec::Pipeline;
use tracing::warn;

use crate::error::RunError;
use crate::locks::{dead_run, run_lock_path};
use crate::run::local_path;

/// Every directory this pipeline stages into: table roots (outputs and quarantine), the model
/// and identity directories (searched two levels down for temporary files), the scratch
/// parent.
fn staging_places(pipeline: &Pipeline) -> Vec<PathBuf> {
    let mut places: Vec<PathBuf> = pipeline
        .outputs
        .iter()
        .filter_map(|o| local_path("output", &o.path).ok())
        .collect();
    if let Ok(dir) = local_path("output_dir", &pipeline.output_dir) {
        for source in &pipeline.sources {
            places.push(dir.join("quarantine").join(&source.name.value));
        }
        places.push(dir.join("identity"));
    }
    if let Ok(dir) = local_path("models.dir", &pipeline.models.dir) {
        places.push(dir);
    }
    places.push(crate::session::scratch_parent(&pipeline.engine));
    places
}

/// How deep below a place leftovers are looked for: `models/<model>/period=…/` is the deepest.
const SWEEP_DEPTH: u32 = 3;

/// Whether `name` is something run `run_id` created to be renamed or deleted later.
fn belongs_to(name: &str, run_id: &str) -> bool {
    name == format!(".segflow-staging-{run_id}")
        || name == format!(".segflow-replaced-{run_id}")
        || name.starts_with(&format!(".segflow-scratch-{run_id}-"))
        || (name.starts_with('.') && name.ends_with(&format!(".{run_id}.tmp")))
}

fn size_of(path: &Path) -> u64 {
    let Ok(meta) = path.symlink_metadata() else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| size_of(&e.path())).sum())
        .unwrap_or(0)
}

/// Removes the dead run's leftovers below `dir` (to `depth` levels), adding what it removed.
fn sweep(dir: &Path, run_id: &str, depth: u32, removed: &mut Vec<String>, bytes: &mut u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if belongs_to(&name, run_id) {
            let size = size_of(&path);
            let gone = if is_dir {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match gone {
                Ok(()) => {
                    removed.push(path.display().to_string());
                    *bytes += size;
                    // A directory the run created only for what it staged (a model's new
                    // `period=…`) goes too; one with anything else in it stays, and so do
                    // the places themselves (a configured spill directory, say).
                    if depth < SWEEP_DEPTH {
                        let _ = std::fs::remove_dir(dir);
                    }
                }
                Err(e) => warn!(path = %path.display(), "cannot remove a dead run's leftover: {e}"),
            }
        } else if is_dir && depth > 0 && !name.starts_with('.') {
            sweep(&path, run_id, depth - 1, removed, bytes);
        }
    }
}

/// Removes what a run that failed (or was interrupted) staged: it committed nothing, so
/// everything carrying its id is garbage. Best effort: what stays, the next run removes.
pub(crate) fn sweep_run(pipeline: &Pipeline, run_id: &str) {
    let (mut removed, mut bytes) = (Vec::new(), 0);
    for place in staging_places(pipeline) {
        sweep(&place, run_id, SWEEP_DEPTH, &mut removed, &mut bytes);
    }
}

/// Recovers every dead run found in `runs` (skipping `me`). The caller holds the commit lock.
pub(crate) fn recover_dead_runs(
    pipeline: &Pipeline,
    runs: &Path,
    me: &str,
    now: &str,
) -> Result<Vec<RecoveryRecord>, RunError> {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return Ok(Vec::new());
    };
    let mut dead: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|id| id != me && run_lock_path(&runs.join(id)).exists())
        .collect();
    dead.sort();
    let places = staging_places(pipeline);
    let mut records = Vec::new();
    for run_id in dead {
        let run_dir = runs.join(&run_id);
        // Holding the dead run's lock keeps a concurrent `segflow recover` off it.
        let Some(_held) = dead_run(&run_dir) else {
            continue;
        };
        records.push(recover_run(&run_dir, &run_id, &places, me, now)?);
    }
    Ok(records)
}

fn recover_run(
    run_dir: &Path,
    run_id: &str,
    places: &[PathBuf],
    me: &str,
    now: &str,
) -> Result<RecoveryRecord, RunError> {
    let journal = run_dir.join("commit.json");
    // Whether it had committed, when it had a journal.
    let replayed = if journal.exists() {
        let (outcome, _) = segflow_sinks::recover(&journal)?;
        Some(outcome == Recovered::Completed)
    } else {
        None
    };
    let (mut removed, mut bytes) = (Vec::new(), 0);
    // Where the dead run said it would stage (its own spill directory, say), and where this
    // pipeline stages now.
    let mut all_places = recorded_places(run_dir);
    all_places.extend(places.iter().cloned());
    all_places.sort();
    all_places.dedup();
    for place in &all_places {
        sweep(place, run_id, SWEEP_DEPTH, &mut removed, &mut bytes);
    }
    let manifest_path = run_dir.join("manifest.json");
    let action = match replayed {
        Some(true) => "completed",
        Some(false) => "rolled_back",
        None => "abandoned",
    };
    if let Ok(text) = std::fs::read_to_string(&manifest_path)
        && let Ok(mut manifest) = serde_json::from_str::<Manifest>(&text)
        && manifest.status == RunStatus::Running
    {
        mark_recovered(&mut manifest, replayed == Some(true), me, now);
        crate::run::write_manifest_at(&manifest_path, &manifest)?;
    }
    // The outcome is recorded: the journal can go (replaying it again would be harmless).
    for done in [
        "commit.json",
        PLACES_FILE,
        ".commit.json.tmp",
        ".manifest.json.tmp",
        ".run.lock.tmp",
    ] {
        let _ = std::fs::remove_file(run_dir.join(done));
    }
    // Last: once the lock file is gone, nothing marks this run as needing recovery. Gone
    // already means the run ended normally just as it was found.
    let lock = run_lock_path(run_dir);
    match std::fs::remove_file(&lock) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(RunError::Lock {
                path: lock.display().to_string(),
                message: e.to_string(),
            });
        }
    }
    warn!(run = %run_id, action, removed = removed.len(), bytes, "recovered a run that had died");
    Ok(RecoveryRecord {
        run_id: run_id.to_string(),
        action: action.to_string(),
        removed,
        bytes_removed: bytes,
    })
}

/// `places.json` in a run's directory: where it stages, written when it starts.
const PLACES_FILE: &str = "places.json";

/// Records where this run will stage, so whoever recovers it sweeps there even if the
/// pipeline or the command line (`--spill-dir`) changes before then.
pub(crate) fn record_places(pipeline: &Pipeline, run_dir: &Path) -> Result<(), RunError> {
    let places: Vec<String> = staging_places(pipeline)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let path = run_dir.join(PLACES_FILE);
    std::fs::write(&path, serde_json::to_vec(&places).unwrap_or_default()).map_err(|source| {
        RunError::Manifest {
            path: path.display().to_string(),
            source,
        }
    })
}

fn recorded_places(run_dir: &Path) -> Vec<PathBuf> {
    std::fs::read(run_dir.join(PLACES_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Vec<String>>(&bytes).ok())
        .unwrap_or_default()
        .into_iter()
        .map(PathBuf::from)
        .collect()
}

/// The dead run's manifest, corrected: it committed (its journal had reached the commit
/// point) or it did not, and nothing of it is left.
fn mark_recovered(manifest: &mut Manifest, committed: bool, me: &str, now: &str) {
    manifest.recovered_by = Some(me.to_string());
    manifest.finished_at = Some(now.to_string());
    if committed {
        manifest.status = RunStatus::Succeeded;
        for o in &mut manifest.outputs {
            o.committed = true;
        }
        // Every fit is part of the commit (its version file and pointer, or nothing when that
        // exact version was in place already); applied models were never the run's to commit.
        for m in &mut manifest.models {
            m.committed = m.mode == "fit";
        }
    } else {
        manifest.status = RunStatus::Abandoned;
        manifest.error = Some(format!(
            "the run stopped before it finished (killed or crashed); run {me} found it and \
             restored the committed data it had started to replace, if any; nothing of this run \
             was committed"
        ));
        for o in &mut manifest.outputs {
            o.committed = false;
        }
        for m in &mut manifest.models {
            m.committed = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_dead_runs_own_leftovers_are_swept() {
        let r = "20261201T000000Z-2025-abcdef";
        assert!(belongs_to(&format!(".segflow-staging-{r}"), r));
        assert!(belongs_to(&format!(".segflow-replaced-{r}"), r));
        assert!(belongs_to(&format!(".segflow-scratch-{r}-x1"), r));
        assert!(belongs_to(&format!(".model.json.{r}.tmp"), r));
        assert!(belongs_to(
            &format!(".model-0123456789abcdef.json.{r}.tmp"),
            r
        ));
        assert!(belongs_to(&format!(".current.json.{r}.tmp"), r));
        assert!(belongs_to(&format!(".registry.{r}.tmp"), r));
        assert!(!belongs_to(".segflow-staging-other", r));
        assert!(!belongs_to(&format!("model.json.{r}.tmp"), r));
        assert!(!belongs_to("period=2025", r));
    }
}
