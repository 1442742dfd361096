//! `segflow audit verify`: re-reads what the latest successful manifests name and says what no
//! longer matches.
//!
//! - **Outputs**: for each (output, period), the files of the latest succeeded run that
//!   committed that output's period ([`RunHistory::output_runs`]): SHA-256, rows in the
//!   Parquet footer, columns as Arrow reads them.
//! - **Committed partitions**: every `period=…` directory of every table root a manifest
//!   names, and every file in one, must be accounted for by that run.
//! - **Model artifacts and inputs**: those named by the latest successful run of each
//!   (pipeline, period). An artifact must still resolve to its recorded bytes; an input that
//!   is gone is only a note (exports get cleaned up), one that changed is a problem.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use segflow_manifest::{Manifest, OutputRecord, RunHistory, RunStatus};

use crate::error::AuditError;
use crate::files::{list_files, local_path, read_footer, sha256_file};

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Verification {
    /// Each names the file (or directory) and what does not match.
    pub problems: Vec<String>,
    /// Worth knowing, not a failure: inputs that are gone, locations that are not local.
    pub notes: Vec<String>,
    pub runs: BTreeSet<String>,
    pub output_files: usize,
    pub partitions: usize,
    pub artifacts: usize,
    pub inputs: usize,
    pub inputs_gone: usize,
}

impl Verification {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// One line: what was checked and the verdict.
    pub fn summary(&self) -> String {
        let verdict = if self.passed() {
            "everything matches".to_string()
        } else {
            format!("{} problem(s)", self.problems.len())
        };
        format!(
            "audit verify: {} run(s); {} output file(s) in {} partition(s), {} model artifact(s), {} input file(s) ({} gone) checked: {verdict}",
            self.runs.len(),
            self.output_files,
            self.partitions,
            self.artifacts,
            self.inputs,
            self.inputs_gone,
        )
    }
}

/// Verifies `out_dir` (all periods, or only `period`).
pub fn verify(out_dir: &Path, period: Option<&str>) -> Result<Verification, AuditError> {
    let runs_dir = out_dir.join("runs");
    let history = RunHistory::load(&runs_dir);
    if history.runs().is_empty() && history.unreadable().is_empty() {
        return Err(AuditError::NoManifests { dir: runs_dir });
    }
    let mut v = Verification::default();
    for (path, why) in history.unreadable() {
        v.problems.push(format!(
            "{}: cannot be read as a run manifest: {why}",
            path.display()
        ));
    }
    let wanted = |label: &str| period.is_none_or(|p| p == label);

    // Outputs, by (output, period), and the table roots they live under.
    let mut outputs: BTreeSet<(String, String)> = BTreeSet::new();
    let mut roots: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for m in history.runs() {
        for o in &m.outputs {
            if let Some(root) = local_path(&o.path) {
                roots.entry(root).or_default().insert(o.output.clone());
            }
            if wanted(&m.period.label) {
                outputs.insert((o.output.clone(), m.period.label.clone()));
            }
        }
    }
    for (output, label) in &outputs {
        if let Some(m) = history.output_runs(output, label).committed
            && let Some(record) = m.outputs.iter().find(|o| &o.output == output)
        {
            v.runs.insert(m.run_id.clone());
            check_output(m, record, &mut v);
        }
    }
    for (root, names) in &roots {
        check_partitions(&history, root, names, &wanted, &mut v);
    }

    // Model artifacts and inputs of the latest successful run of each (pipeline, period).
    let pairs: BTreeSet<(&str, &str)> = history
        .runs()
        .iter()
        .filter(|m| m.status == RunStatus::Succeeded && wanted(&m.period.label))
        .map(|m| (m.pipeline.name.as_str(), m.period.label.as_str()))
        .collect();
    let mut inputs_seen = BTreeSet::new();
    for (pipeline, label) in pairs {
        let Some(m) = history.latest_succeeded(Some(pipeline), label) else {
            continue;
        };
        v.runs.insert(m.run_id.clone());
        check_models(m, &mut v);
        check_inputs(m, &mut inputs_seen, &mut v);
    }
    if v.runs.is_empty()
        && v.problems.is_empty()
        && let Some(period) = period
    {
        return Err(AuditError::NoRunsOfPeriod {
            dir: runs_dir,
            period: period.to_string(),
            pipeline: None,
        });
    }
    Ok(v)
}

fn check_output(m: &Manifest, record: &OutputRecord, v: &mut Verification) {
    let Some(root) = local_path(&record.path) else {
        v.notes.push(format!(
            "output `{}` at {} is not on a local file system: not checked",
            record.output, record.path
        ));
        return;
    };
    for file in &record.files {
        v.output_files += 1;
        let path = root.join(&file.path);
        let shown = path.display();
        let context = format!("output `{}` of run {}", record.output, m.run_id);
        let (sha256, size) = match sha256_file(&path) {
            Ok(found) => found,
            Err(e) => {
                v.problems
                    .push(format!("{shown}: missing or unreadable ({e}); {context}"));
                continue;
            }
        };
        if sha256 != file.sha256 {
            v.problems.push(format!(
                "{shown}: SHA-256 is {sha256}, the manifest says {} ({size} bytes, {} recorded); {context}",
                file.sha256, file.size
            ));
        }
        match read_footer(&path) {
            Ok(footer) => {
                if footer.rows != file.rows {
                    v.problems.push(format!(
                        "{shown}: {} rows in its Parquet footer, the manifest says {}; {context}",
                        footer.rows, file.rows
                    ));
                }
                if !record.schema.is_empty() && footer.columns != record.schema {
                    v.problems.push(format!(
                        "{shown}: columns are {}, the manifest says {}; {context}",
                        describe(&footer.columns),
                        describe(&record.schema)
                    ));
                }
            }
            Err(e) => v.problems.push(format!(
                "{shown}: not a readable Parquet file ({e}); {context}"
            )),
        }
    }
}

fn describe(columns: &[segflow_manifest::ColumnRecord]) -> String {
    let list: Vec<String> = columns
        .iter()
        .map(|c| {
            let null = if c.nullable { "" } else { " not null" };
            format!("{} {}{null}", c.name, c.data_type)
        })
        .collect();
    format!("({})", list.join(", "))
}

/// Every `period=…` directory under `root` (of the wanted periods) must have been committed by
/// a run that says so, and hold only files that run wrote.
fn check_partitions(
    history: &RunHistory,
    root: &Path,
    names: &BTreeSet<String>,
    wanted: &dyn Fn(&str) -> bool,
    v: &mut Verification,
) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut dirs: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let label = name.strip_prefix("period=")?.to_string();
            Some((label, e.path()))
        })
        .filter(|(label, _)| wanted(label))
        .collect();
    dirs.sort();
    for (label, dir) in dirs {
        v.partitions += 1;
        let accounted: Vec<(&Manifest, &OutputRecord)> = names
            .iter()
            .filter_map(|name| {
                let m = history.output_runs(name, &label).committed?;
                let record = m
                    .outputs
                    .iter()
                    .find(|o| &o.output == name && local_path(&o.path).as_deref() == Some(root))?;
                Some((m, record))
            })
            .collect();
        if accounted.is_empty() {
            v.problems.push(format!(
                "{}: a committed partition that no run manifest accounts for",
                dir.display()
            ));
            continue;
        }
        let period_dir = format!("period={label}/");
        let known: BTreeSet<&str> = accounted
            .iter()
            .flat_map(|(_, r)| r.files.iter())
            .filter_map(|f| f.path.strip_prefix(&period_dir))
            .collect();
        for file in list_files(&dir) {
            if !known.contains(file.as_str()) {
                let runs: Vec<&str> = accounted.iter().map(|(m, _)| m.run_id.as_str()).collect();
                v.problems.push(format!(
                    "{}: a file in a committed partition that no manifest names (committed by run {})",
                    dir.join(&file).display(),
                    runs.join(", ")
                ));
            }
        }
    }
}

fn check_models(m: &Manifest, v: &mut Verification) {
    for record in &m.models {
        // A fit of a run that did not commit never wrote its artifact.
        if record.mode == "fit" && !record.committed {
            continue;
        }
        v.artifacts += 1;
        let path = PathBuf::from(&record.path);
        let context = format!(
            "model `{}` ({} of period {}) in run {}",
            record.name, record.mode, record.artifact_period, m.run_id
        );
        match sha256_file(&path) {
            Err(e) => v.problems.push(format!(
                "{}: the model artifact no longer resolves ({e}); {context}",
                path.display()
            )),
            Ok((sha256, _)) if sha256 != record.sha256 => v.problems.push(format!(
                "{}: SHA-256 is {sha256}, the manifest says {}; {context}",
                path.display(),
                record.sha256
            )),
            Ok(_) => {}
        }
        if record.mode == "fit" {
            check_pointer(&path, record, m, v);
        }
    }
}

/// The period's `current.json` must name what its latest successful fit wrote.
fn check_pointer(
    version: &Path,
    record: &segflow_manifest::ModelRecord,
    m: &Manifest,
    v: &mut Verification,
) {
    let pointer = version.with_file_name("current.json");
    let Ok(bytes) = std::fs::read(&pointer) else {
        // A legacy store (one `model.json`) has no pointer.
        return;
    };
    let named = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|p| {
            Some((
                p["file"].as_str()?.to_string(),
                p["sha256"].as_str()?.to_string(),
            ))
        });
    let file = version
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match named {
        Some((f, sha)) if f == file && sha == record.sha256 => {}
        Some((f, sha)) => v.problems.push(format!(
            "{}: names {f} (SHA-256 {sha}), but the latest successful run of period {}, {}, fitted {file} (SHA-256 {})",
            pointer.display(),
            m.period.label,
            m.run_id,
            record.sha256
        )),
        None => v.problems.push(format!(
            "{}: not a valid artifact pointer (`file` and `sha256` expected)",
            pointer.display()
        )),
    }
}

fn check_inputs(m: &Manifest, seen: &mut BTreeSet<(String, String)>, v: &mut Verification) {
    for input in &m.inputs {
        // A refused file was not read to its end: there is no checksum to compare.
        if input.refused.is_some() || input.sha256.is_empty() {
            continue;
        }
        if !seen.insert((input.path.clone(), input.sha256.clone())) {
            continue;
        }
        let Some(path) = local_path(&input.path) else {
            v.notes.push(format!(
                "input {} (source `{}`) is not on a local file system: not checked",
                input.path, input.source
            ));
            continue;
        };
        v.inputs += 1;
        let context = format!("input of source `{}` in run {}", input.source, m.run_id);
        match sha256_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                v.inputs_gone += 1;
                v.notes
                    .push(format!("{}: gone, not checked; {context}", path.display()));
            }
            Err(e) => v
                .problems
                .push(format!("{}: unreadable ({e}); {context}", path.display())),
            Ok((sha256, size)) if sha256 != input.sha256 || size != input.size => {
                v.problems.push(format!(
                    "{}: SHA-256 is {sha256} ({size} bytes), the manifest says {} ({} bytes); {context}",
                    path.display(),
                    input.sha256,
                    input.size
                ));
            }
            Ok(_) => {}
        }
    }
}
