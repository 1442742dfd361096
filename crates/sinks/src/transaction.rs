//! One run's commit as a recoverable transaction over renames.
//!
//! A run replaces several things at once — a `period=…` directory per output table and per
//! quarantine table, model artifacts, identity registries — and `rename` is atomic for one of
//! them only. So before the first rename the run writes a **journal** listing every
//! replacement (staged path → target, where the old target goes), with everything staged
//! already on disk and fsynced. The journal then moves through two states:
//!
//! - `prepared`: renames may be under way. Whoever finds a `prepared` journal of a dead run
//!   rolls it back: new targets out, old targets back — the state before the run.
//! - `committed`: written after the last rename, the commit point. Whoever finds it only
//!   removes what the run replaced — the state after the run.
//!
//! Every step of both directions is idempotent, so a recovery that is itself killed is simply
//! run again. Directories are fsynced after renames, so the journal never describes a state
//! the disk could forget in a power loss.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{SinkError, io};

/// One replacement: `staged` becomes `target`; an existing `target` is first moved to `backup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacement {
    pub staged: PathBuf,
    pub target: PathBuf,
    pub backup: PathBuf,
    /// Whether `target` existed when the journal was written (under the commit lock, so
    /// nothing else changes it before the renames).
    pub had_target: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalState {
    Prepared,
    Committed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub run_id: String,
    pub state: JournalState,
    pub replacements: Vec<Replacement>,
}

/// What recovering a journal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovered {
    /// The run had not reached its commit point: every target is as before the run.
    RolledBack,
    /// The run had committed: its replaced data was removed.
    Completed,
}

/// A transaction being committed by this process.
#[derive(Debug)]
pub struct Transaction {
    journal_path: PathBuf,
    journal: Journal,
}

impl Transaction {
    /// Makes everything staged durable and writes the `prepared` journal. Nothing visible to
    /// readers has changed yet. `staged` paths must exist (files or directories).
    pub fn prepare(
        journal_path: &Path,
        run_id: &str,
        replacements: Vec<(PathBuf, PathBuf)>,
    ) -> Result<Self, SinkError> {
        let mut list = Vec::with_capacity(replacements.len());
        for (staged, target) in replacements {
            sync_tree(&staged)?;
            let backup = backup_path(&target, run_id);
            if let Some(parent) = backup.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let had_target = target.symlink_metadata().is_ok();
            list.push(Replacement {
                staged,
                target,
                backup,
                had_target,
            });
        }
        let journal = Journal {
            run_id: run_id.to_string(),
            state: JournalState::Prepared,
            replacements: list,
        };
        write_journal(journal_path, &journal)?;
        Ok(Self {
            journal_path: journal_path.to_path_buf(),
            journal,
        })
    }

    pub fn replacements(&self) -> &[Replacement] {
        &self.journal.replacements
    }

    /// Performs the renames and writes the commit point. `step` is called before each
    /// rename and before the commit point with a label (fault-injection tests pause there).
    /// On an error the renames done so far are rolled back before returning; if even that
    /// fails, the journal stays `prepared` for the next run to roll back.
    pub fn commit(&mut self, step: &mut dyn FnMut(&str)) -> Result<(), SinkError> {
        let result = self.apply(step);
        if let Err(e) = result {
            // The commit point's rename may have reached the disk although its fsync failed:
            // say `prepared` again before undoing, or a later recovery would "complete" a
            // half-undone commit.
            self.journal.state = JournalState::Prepared;
            let _ = write_journal(&self.journal_path, &self.journal);
            return match roll_back(&self.journal) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&self.journal_path);
                    Err(e)
                }
                Err(rollback) => Err(SinkError::RollbackFailed {
                    journal: self.journal_path.clone(),
                    cause: Box::new(e),
                    rollback: Box::new(rollback),
                }),
            };
        }
        Ok(())
    }

    fn apply(&mut self, step: &mut dyn FnMut(&str)) -> Result<(), SinkError> {
        for r in &self.journal.replacements {
            if r.had_target {
                step(&format!("move old {} aside", r.target.display()));
                rename_durably(&r.target, &r.backup)?;
            }
            step(&format!("move new {} into place", r.target.display()));
            rename_durably(&r.staged, &r.target)?;
        }
        step("write the commit point");
        self.journal.state = JournalState::Committed;
        write_journal(&self.journal_path, &self.journal)
    }

    /// After the commit point: removes the replaced data and the journal. A failure here
    /// leaves garbage, never wrong data; the next run finishes it.
    pub fn finish(self, step: &mut dyn FnMut(&str)) -> Result<(), SinkError> {
        step("remove replaced data");
        complete(&self.journal)?;
        std::fs::remove_file(&self.journal_path).map_err(io(&self.journal_path))
    }
}

/// Finishes or undoes the transaction of a run that died, as its journal says. The journal
/// stays: the caller removes it once it has recorded the outcome (replaying it again is
/// harmless), so a kill in between cannot lose what happened.
pub fn recover(journal_path: &Path) -> Result<(Recovered, Journal), SinkError> {
    let text = std::fs::read_to_string(journal_path).map_err(io(journal_path))?;
    let journal: Journal = serde_json::from_str(&text).map_err(|e| SinkError::Journal {
        path: journal_path.to_path_buf(),
        message: e.to_string(),
    })?;
    let outcome = match journal.state {
        JournalState::Prepared => {
            roll_back(&journal)?;
            Recovered::RolledBack
        }
        JournalState::Committed => {
            complete(&journal)?;
            Recovered::Completed
        }
    };
    Ok((outcome, journal))
}

/// `<parent>/.segflow-replaced-<run>/<name>`: beside the target, on the same file system, and
/// hidden from hive globbing.
fn backup_path(target: &Path, run_id: &str) -> PathBuf {
    let parent = target.parent().unwrap_or(Path::new("."));
    let name = target.file_name().unwrap_or_default();
    parent
        .join(format!(".segflow-replaced-{run_id}"))
        .join(name)
}

fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// Undoes the renames, last first. Each case is decided from what is on disk, so it is right
/// whichever rename the run died before, and right again if this is interrupted and rerun.
fn roll_back(journal: &Journal) -> Result<(), SinkError> {
    for r in journal.replacements.iter().rev() {
        match (exists(&r.target), exists(&r.backup)) {
            // New in place, old aside.
            (true, true) => {
                remove(&r.target)?;
                rename_durably(&r.backup, &r.target)?;
            }
            // Died between the two renames.
            (false, true) => rename_durably(&r.backup, &r.target)?,
            // Nothing existed before and the new one was moved in.
            (true, false) if !r.had_target && !exists(&r.staged) => remove(&r.target)?,
            // Not reached yet.
            _ => {}
        }
        if exists(&r.staged) {
            remove(&r.staged)?;
        }
        remove_if_empty(r.backup.parent());
        remove_if_empty(r.staged.parent());
    }
    Ok(())
}

/// After the commit point only the replaced data (and empty backup directories) remain.
fn complete(journal: &Journal) -> Result<(), SinkError> {
    for r in &journal.replacements {
        if exists(&r.backup) {
            remove(&r.backup)?;
        }
        remove_if_empty(r.backup.parent());
        remove_if_empty(r.staged.parent());
    }
    Ok(())
}

fn remove(path: &Path) -> Result<(), SinkError> {
    let meta = path.symlink_metadata().map_err(io(path))?;
    if meta.is_dir() {
        std::fs::remove_dir_all(path).map_err(io(path))
    } else {
        std::fs::remove_file(path).map_err(io(path))
    }
}

fn remove_if_empty(dir: Option<&Path>) {
    if let Some(dir) = dir {
        // Fails when not empty or already gone: both are fine.
        let _ = std::fs::remove_dir(dir);
    }
}

fn rename_durably(from: &Path, to: &Path) -> Result<(), SinkError> {
    std::fs::rename(from, to).map_err(io(to))?;
    for dir in [to.parent(), from.parent()].into_iter().flatten() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Writes the journal through a temporary file, a rename and a directory fsync: it is either
/// the old state or the new one, and survives a power loss once this returns.
fn write_journal(path: &Path, journal: &Journal) -> Result<(), SinkError> {
    let text = serde_json::to_vec_pretty(journal).map_err(|e| SinkError::Journal {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    replace_durably(path, &text)
}

/// Replaces a small file (a journal, a manifest) through `.<name>.tmp`, an fsync, a rename and
/// a directory fsync: readers see the old or the new bytes, and a power loss after this
/// returns keeps the new ones.
pub fn replace_durably(path: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    write_durably(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(dir)
}

/// Writes a small file and fsyncs it.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), SinkError> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

pub fn sync_dir(dir: &Path) -> Result<(), SinkError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// fsyncs a staged file, or every file and directory below a staged directory.
fn sync_tree(path: &Path) -> Result<(), SinkError> {
    let meta = path.symlink_metadata().map_err(io(path))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io(path))? {
            let entry = entry.map_err(io(path))?;
            sync_tree(&entry.path())?;
        }
    }
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two directory targets (one new, one replacing) and a file target.
    fn setup(root: &Path) -> Vec<(PathBuf, PathBuf)> {
        let stage = root.join(".staging");
        std::fs::create_dir_all(stage.join("a")).expect("mkdir");
        std::fs::write(stage.join("a/part.parquet"), "new a").expect("w");
        std::fs::create_dir_all(stage.join("b")).expect("mkdir");
        std::fs::write(stage.join("b/part.parquet"), "new b").expect("w");
        std::fs::write(stage.join("model.json"), "new model").expect("w");
        std::fs::create_dir_all(root.join("t/b")).expect("mkdir");
        std::fs::write(root.join("t/b/part.parquet"), "old b").expect("w");
        std::fs::write(root.join("t/model.json"), "old model").expect("w");
        vec![
            (stage.join("a"), root.join("t/a")),
            (stage.join("b"), root.join("t/b")),
            (stage.join("model.json"), root.join("t/model.json")),
        ]
    }

    fn state(root: &Path) -> (Option<String>, String, String) {
        (
            std::fs::read_to_string(root.join("t/a/part.parquet")).ok(),
            std::fs::read_to_string(root.join("t/b/part.parquet")).expect("b"),
            std::fs::read_to_string(root.join("t/model.json")).expect("model"),
        )
    }

    fn hidden_entries(root: &Path) -> Vec<String> {
        std::fs::read_dir(root.join("t"))
            .expect("ls")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    }

    #[test]
    fn commit_then_finish_replaces_everything_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        let journal = root.join("runs/r1/commit.json");
        let mut tx = Transaction::prepare(&journal, "r1", setup(root)).expect("prepare");
        tx.commit(&mut |_| {}).expect("commit");
        tx.finish(&mut |_| {}).expect("finish");
        assert_eq!(
            state(root),
            (Some("new a".into()), "new b".into(), "new model".into())
        );
        assert!(hidden_entries(root).is_empty());
        assert!(!journal.exists());
    }

    /// Stops the process' view of the commit after `n` steps (as a kill would), then recovers.
    fn killed_after(n: usize) -> (Recovered, PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().to_path_buf();
        let journal = root.join("runs/r1/commit.json");
        let mut tx = Transaction::prepare(&journal, "r1", setup(&root)).expect("prepare");
        // Replay the renames up to step n by hand, like a run that died there.
        let mut done = 0;
        let r = tx.replacements().to_vec();
        'outer: for rep in &r {
            if rep.had_target {
                if done == n {
                    break 'outer;
                }
                std::fs::rename(&rep.target, &rep.backup).expect("aside");
                done += 1;
            }
            if done == n {
                break 'outer;
            }
            std::fs::rename(&rep.staged, &rep.target).expect("in");
            done += 1;
        }
        if done == n && n >= 5 {
            tx.journal.state = JournalState::Committed;
            write_journal(&journal, &tx.journal).expect("commit point");
        }
        let (recovered, _) = recover(&journal).expect("recover");
        std::fs::remove_file(&journal).expect("journal recorded");
        (recovered, root, dir)
    }

    #[test]
    fn recovery_after_a_kill_at_any_rename_gives_exactly_the_old_or_the_new_state() {
        // 5 renames: a in; b aside, b in; model aside, model in; then the commit point.
        for n in 0..=5 {
            let (recovered, root, _dir) = killed_after(n);
            if n < 5 {
                assert_eq!(recovered, Recovered::RolledBack, "kill after {n}");
                assert_eq!(
                    state(&root),
                    (None, "old b".into(), "old model".into()),
                    "kill after {n}"
                );
            } else {
                assert_eq!(recovered, Recovered::Completed);
                assert_eq!(
                    state(&root),
                    (Some("new a".into()), "new b".into(), "new model".into())
                );
            }
            assert!(hidden_entries(&root).is_empty(), "leftovers after {n}");
            assert!(!root.join("runs/r1/commit.json").exists());
        }
    }

    #[test]
    fn a_failed_rename_rolls_back_what_was_already_renamed() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        let journal = root.join("runs/r1/commit.json");
        let mut tx = Transaction::prepare(&journal, "r1", setup(root)).expect("prepare");
        // The model's staged file vanishes: its rename fails after a and b were replaced.
        std::fs::remove_file(root.join(".staging/model.json")).expect("rm");
        let err = tx.commit(&mut |_| {}).expect_err("must fail");
        assert!(err.to_string().contains("model.json"), "{err}");
        assert_eq!(state(root), (None, "old b".into(), "old model".into()));
        assert!(!journal.exists());
    }
}
