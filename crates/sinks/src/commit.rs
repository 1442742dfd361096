//! Staging and the atomic replacement of one period directory.
//!
//! Staging directories live inside the table root (same file system, so `rename` is atomic)
//! and start with `.`, which Spark, Hive and DuckDB's hive globbing skip. The one moment
//! without the period directory lies between two renames; readers never see a half-written one.

use std::path::{Path, PathBuf};

use crate::error::{SinkError, io};
use crate::write::WrittenFile;

/// Where a run stages the files of the table at `root`.
pub fn stage_dir(root: &Path, run_id: &str) -> PathBuf {
    root.join(format!(".segflow-staging-{run_id}"))
}

fn replaced_dir(root: &Path, run_id: &str) -> PathBuf {
    root.join(format!(".segflow-replaced-{run_id}"))
}

/// One period of one table, written to staging and ready to be moved into place.
#[derive(Debug, Clone)]
pub struct StagedTable {
    pub root: PathBuf,
    pub run_id: String,
    /// `period=2025`.
    pub period_dir: String,
    pub files: Vec<WrittenFile>,
}

impl StagedTable {
    pub fn staged_period(&self) -> PathBuf {
        stage_dir(&self.root, &self.run_id).join(&self.period_dir)
    }

    /// Replaces `root/period=…` with the staged directory, leaving every other period alone.
    pub fn commit(&self) -> Result<(), SinkError> {
        let staged = self.staged_period();
        std::fs::create_dir_all(&staged).map_err(io(&staged))?;
        let target = self.root.join(&self.period_dir);
        let replaced = replaced_dir(&self.root, &self.run_id);
        if target.exists() {
            std::fs::create_dir_all(&replaced).map_err(io(&replaced))?;
            let old = replaced.join(&self.period_dir);
            std::fs::rename(&target, &old).map_err(io(&target))?;
        }
        std::fs::rename(&staged, &target).map_err(io(&target))?;
        for leftover in [replaced, stage_dir(&self.root, &self.run_id)] {
            if leftover.exists() {
                std::fs::remove_dir_all(&leftover).map_err(io(&leftover))?;
            }
        }
        Ok(())
    }
}

/// Removes what a failed run staged under `root`; the committed periods are not touched.
pub fn discard(root: &Path, run_id: &str) -> Result<(), SinkError> {
    let staging = stage_dir(root, run_id);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(root: &Path, run: &str, period: &str, content: &str) -> StagedTable {
        let t = StagedTable {
            root: root.to_path_buf(),
            run_id: run.into(),
            period_dir: format!("period={period}"),
            files: vec![],
        };
        std::fs::create_dir_all(t.staged_period()).expect("mkdir");
        std::fs::write(t.staged_period().join("part-00000.parquet"), content).expect("write");
        t
    }

    fn read(root: &Path, period: &str) -> String {
        std::fs::read_to_string(root.join(format!("period={period}/part-00000.parquet")))
            .expect("read")
    }

    #[test]
    fn commit_replaces_only_its_period() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        staged(root, "r1", "2024", "old 2024").commit().expect("c1");
        staged(root, "r2", "2025", "old 2025").commit().expect("c2");
        staged(root, "r3", "2025", "new 2025").commit().expect("c3");
        assert_eq!(read(root, "2024"), "old 2024");
        assert_eq!(read(root, "2025"), "new 2025");
        let mut entries: Vec<String> = std::fs::read_dir(root)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        entries.sort();
        assert_eq!(entries, vec!["period=2024", "period=2025"]);
    }

    #[test]
    fn discard_leaves_committed_data() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        staged(root, "r1", "2025", "good").commit().expect("commit");
        staged(root, "r2", "2025", "half-written");
        discard(root, "r2").expect("discard");
        assert_eq!(read(root, "2025"), "good");
        assert!(!stage_dir(root, "r2").exists());
    }
}
