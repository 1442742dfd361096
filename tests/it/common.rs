//! Helpers: a scratch directory per test, the real `segflow` binary, and Parquet read back
//! into plain strings so expectations can be written by hand.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::util::display::array_value_to_string;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
        p
    }
}

/// The outcome of one `segflow` invocation.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The manifest path printed on the last line of a run.
    pub fn manifest_path(&self) -> PathBuf {
        let line = self
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("manifest: "))
            .unwrap_or_else(|| panic!("no manifest line in:\n{}", self.stdout));
        PathBuf::from(line)
    }

    pub fn manifest(&self) -> segflow_manifest::Manifest {
        let text = std::fs::read_to_string(self.manifest_path()).expect("manifest");
        serde_json::from_str(&text).expect("manifest json")
    }
}

pub fn segflow(args: &[&str], cwd: &Path) -> Run {
    segflow_env(args, cwd, &[])
}

/// `segflow run PIPELINE --period PERIOD`, from `cwd`.
pub fn run_pipeline(pipeline: &Path, period: &str, cwd: &Path) -> Run {
    segflow(
        &["run", pipeline.to_str().expect("utf8"), "--period", period],
        cwd,
    )
}

/// `segflow` with extra environment variables.
pub fn segflow_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_segflow"))
        .args(args)
        .current_dir(cwd)
        .env_remove("SEGFLOW_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("run segflow");
    Run::from(out)
}

/// Every `*.parquet` under `dir`, sorted by path — the data files: `runs/` is skipped, whose
/// `manifest*.parquet` tables are derived from the JSON manifests and change with every run
/// (run ids, timestamps), so they must not enter byte-for-byte comparisons of outputs.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "runs") {
                    continue;
                }
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Column names and rows (values as display strings, NULL as "NULL") of one Parquet file.
pub fn read_parquet(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).expect("open"))
        .expect("parquet")
        .build()
        .expect("reader");
    let mut names = Vec::new();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.expect("batch");
        names = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        for r in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| {
                        if c.is_null(r) {
                            "NULL".to_string()
                        } else {
                            array_value_to_string(c, r).expect("display")
                        }
                    })
                    .collect(),
            );
        }
    }
    (names, rows)
}

/// Selected columns of a table's rows, by column name.
pub fn project(names: &[String], rows: &[Vec<String>], columns: &[&str]) -> Vec<Vec<String>> {
    let idx: Vec<usize> = columns
        .iter()
        .map(|c| {
            names
                .iter()
                .position(|n| n == c)
                .unwrap_or_else(|| panic!("no column {c} in {names:?}"))
        })
        .collect();
    rows.iter()
        .map(|r| idx.iter().map(|&i| r[i].clone()).collect())
        .collect()
}

/// The Python of the venv `scripts/test.sh` sets up (or `SEGFLOW_TEST_PYTHON`). A missing
/// venv fails the test with the command to run: reader checks never skip.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SEGFLOW_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `scripts/test.sh` (it creates the venv with duckdb and pyarrow)",
        p.display()
    );
    p
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the test venv's Python with `args`, asserts it succeeded, and returns its stdout.
#[track_caller]
pub fn run_python<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(python())
        .args(args)
        .output()
        .expect("start python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.trim().to_string()
}

/// An expected row, written as string literals.
pub fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// The version file `current.json` of a model's period names (the artifact applying reads).
pub fn current_artifact(out: &Path, model: &str, period: &str) -> PathBuf {
    let dir = out
        .join("models")
        .join(model)
        .join(format!("period={period}"));
    let pointer = dir.join("current.json");
    let text =
        std::fs::read_to_string(&pointer).unwrap_or_else(|e| panic!("{}: {e}", pointer.display()));
    let value: serde_json::Value = serde_json::from_str(&text).expect("pointer json");
    dir.join(value["file"].as_str().expect("pointer names a file"))
}
