//! The file locks that keep runs of one pipeline from stepping on each other.
//!
//! All live in `<output_dir>/runs/` and are advisory `flock`s (`std::fs::File::lock`): the
//! kernel releases them when the process dies, however it dies, so a crash never leaves a
//! lock behind that needs a human.
//!
//! - `.lock-period-<period>` is held for a whole run: a second run of the same period (a
//!   scheduled run meeting a manual rerun) fails at once, naming the holder.
//! - `.lock-commit` is held briefly, around a commit and around recovery, so runs of
//!   different periods never interleave their renames of shared things (model directories,
//!   the identity registry) and recovery never touches a commit in progress.
//! - `<run_id>/run.lock` is held by a run for its life and removed when it ends: one found
//!   unlocked belongs to a run that died, which the next run recovers.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::RunError;

/// Who holds a lock, written into the lock file so that the run refused can say.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub run_id: String,
    pub pid: u32,
    pub started_at: String,
    pub host: String,
}

impl Holder {
    pub(crate) fn me(run_id: &str, started_at: &str) -> Self {
        Self {
            run_id: run_id.to_string(),
            pid: std::process::id(),
            started_at: started_at.to_string(),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
        }
    }

    fn describe(text: &str) -> String {
        match serde_json::from_str::<Holder>(text) {
            Ok(h) => format!(
                "run {} (pid {} on {}, started {})",
                h.run_id,
                h.pid,
                if h.host.is_empty() { "?" } else { &h.host },
                h.started_at
            ),
            // Between the holder's lock and its write of this text.
            Err(_) => "a run that is just starting".to_string(),
        }
    }
}

/// A held lock; dropping it releases the lock (the file stays, harmlessly).
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

fn lock_err(path: &Path, e: std::io::Error) -> RunError {
    RunError::Lock {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn open(path: &Path) -> Result<File, RunError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| lock_err(path, e))?;
    }
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| lock_err(path, e))
}

fn write_holder(file: &mut File, path: &Path, holder: &Holder) -> Result<(), RunError> {
    let text = serde_json::to_string(holder).unwrap_or_default();
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(text.as_bytes()))
        .map_err(|e| lock_err(path, e))
}

/// The period lock: taken without waiting, or the run fails naming who has it.
pub(crate) fn lock_period(runs: &Path, period: &str, me: &Holder) -> Result<Lock, RunError> {
    let path = runs.join(format!(".lock-period-{period}"));
    let mut file = open(&path)?;
    match file.try_lock() {
        Ok(()) => {
            write_holder(&mut file, &path, me)?;
            Ok(Lock { _file: file })
        }
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Err(RunError::Locked {
                period: period.to_string(),
                path: path.display().to_string(),
                holder: Holder::describe(&text),
            })
        }
        Err(TryLockError::Error(e)) => Err(lock_err(&path, e)),
    }
}

/// The commit lock: waited for, since its holders only rename and clean up.
pub(crate) fn lock_commit(runs: &Path) -> Result<Lock, RunError> {
    let path = runs.join(".lock-commit");
    let file = open(&path)?;
    file.lock().map_err(|e| lock_err(&path, e))?;
    Ok(Lock { _file: file })
}

/// `<runs>/<run_id>/run.lock`, held while the run lives.
pub(crate) fn run_lock_path(run_dir: &Path) -> PathBuf {
    run_dir.join("run.lock")
}

/// Marks the run as alive. The file is locked before it gets its name, so recovery never
/// sees an unlocked `run.lock` of a run that is merely starting.
pub(crate) fn lock_run(run_dir: &Path, me: &Holder) -> Result<Lock, RunError> {
    let tmp = run_dir.join(".run.lock.tmp");
    let mut file = open(&tmp)?;
    file.lock().map_err(|e| lock_err(&tmp, e))?;
    write_holder(&mut file, &tmp, me)?;
    let path = run_lock_path(run_dir);
    std::fs::rename(&tmp, &path).map_err(|e| lock_err(&path, e))?;
    Ok(Lock { _file: file })
}

/// Whether the run that owns `run_dir` died: its `run.lock` exists and nobody holds it.
/// While this returns `Some`, the caller holds the dead run's lock, so two recoveries never
/// work on one run.
pub(crate) fn dead_run(run_dir: &Path) -> Option<Lock> {
    let path = run_lock_path(run_dir);
    let file = File::options().read(true).write(true).open(&path).ok()?;
    match file.try_lock() {
        Ok(()) => Some(Lock { _file: file }),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_period_lock_names_the_holder_and_a_dropped_one_is_free_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let me = Holder::me("r1", "2026-01-01T00:00:00Z");
        let held = lock_period(dir.path(), "2025", &me).expect("first");
        let err = lock_period(dir.path(), "2025", &Holder::me("r2", "later")).expect_err("held");
        let text = err.to_string();
        assert!(
            text.contains("run r1") && text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        // Other periods are independent.
        let _other = lock_period(dir.path(), "2024", &me).expect("other period");
        drop(held);
        lock_period(dir.path(), "2025", &me).expect("free after drop");
    }

    #[test]
    fn a_run_lock_is_alive_while_held_and_dead_after() {
        let dir = tempfile::tempdir().expect("tmp");
        let run = dir.path().join("r1");
        let held = lock_run(&run, &Holder::me("r1", "now")).expect("lock");
        assert!(dead_run(&run).is_none());
        drop(held);
        assert!(dead_run(&run).is_some());
        assert!(dead_run(&dir.path().join("missing")).is_none());
    }
}
