//! Staging: where a run writes a table's period before its commit.
//!
//! Staging directories live inside the table root (same file system, so `rename` is atomic)
//! and start with `.`, which Spark, Hive and DuckDB's hive globbing skip. The commit itself is
//! the run's [`crate::Transaction`].

use std::path::{Path, PathBuf};

use crate::error::{SinkError, io};
use crate::write::WrittenFile;

/// Where a run stages the files of the table at `root`.
pub fn stage_dir(root: &Path, run_id: &str) -> PathBuf {
    root.join(format!(".segflow-staging-{run_id}"))
}

/// One period of one table, written to staging and ready to be moved into place.
#[derive(Debug, Clone)]
pub struct StagedTable {
    pub root: PathBuf,
    pub run_id: String,
    /// `period=2025`.
    pub period_dir: String,
    pub files: Vec<WrittenFile>,
    /// The columns of the files (without partition columns), recorded in the manifest.
    pub schema: Option<arrow::datatypes::SchemaRef>,
}

impl StagedTable {
    pub fn staged_period(&self) -> PathBuf {
        stage_dir(&self.root, &self.run_id).join(&self.period_dir)
    }

    /// The directory a commit moves into place: `root/period=…`.
    pub fn target(&self) -> PathBuf {
        self.root.join(&self.period_dir)
    }

    /// What the run's [`crate::Transaction`] replaces for this table. A table with no rows in
    /// this period still gets an (empty) period directory, so the commit replaces stale data.
    pub fn replacement(&self) -> Result<(PathBuf, PathBuf), SinkError> {
        let staged = self.staged_period();
        std::fs::create_dir_all(&staged).map_err(io(&staged))?;
        Ok((staged, self.target()))
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
            schema: None,
        };
        std::fs::create_dir_all(t.staged_period()).expect("mkdir");
        std::fs::write(t.staged_period().join("part-00000.parquet"), content).expect("write");
        t
    }

    fn read(root: &Path, period: &str) -> String {
        std::fs::read_to_string(root.join(format!("period={period}/part-00000.parquet")))
            .expect("read")
    }

    fn commit(t: &StagedTable) {
        let journal = t.root.join(format!("runs/{}/commit.json", t.run_id));
        let mut tx =
            crate::Transaction::prepare(&journal, &t.run_id, vec![t.replacement().expect("r")])
                .expect("prepare");
        tx.commit(&mut |_| {}).expect("commit");
        tx.finish(&mut |_| {}).expect("finish");
    }

    #[test]
    fn commit_replaces_only_its_period() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        commit(&staged(root, "r1", "2024", "old 2024"));
        commit(&staged(root, "r2", "2025", "old 2025"));
        commit(&staged(root, "r3", "2025", "new 2025"));
        assert_eq!(read(root, "2024"), "old 2024");
        assert_eq!(read(root, "2025"), "new 2025");
        let mut entries: Vec<String> = std::fs::read_dir(root)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n != "runs")
            .collect();
        entries.sort();
        assert_eq!(entries, vec!["period=2024", "period=2025"]);
    }

    #[test]
    fn discard_leaves_committed_data() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        commit(&staged(root, "r1", "2025", "good"));
        staged(root, "r2", "2025", "half-written");
        discard(root, "r2").expect("discard");
        assert_eq!(read(root, "2025"), "good");
        assert!(!stage_dir(root, "r2").exists());
    }
}
