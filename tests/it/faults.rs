//! Faults: runs killed (SIGKILL) at every point of their commit, stopped by SIGTERM, and run
//! twice at once. The committed state must always be exactly one run's, the next run must
//! recover and succeed, and every manifest must tell what happened.
//!
//! A run pauses at its N-th numbered point when `SEGFLOW_TEST_PAUSE_AT=N` is set (see
//! `crates/engine/src/pauses.rs`), so each kill lands at a known place, not at a time.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use segflow_manifest::{Manifest, RunStatus};

use crate::common::{Scratch, segflow};

/// Two outputs, a quarantine table, a fitted model artifact and an identity registry: every
/// kind of thing a commit replaces.
const PIPELINE: &str = r#"
pipeline: faults
period: year
output_dir: out
sources:
  orders:
    path: orders.csv
    on_bad_row: quarantine
    schema: { order_id: int64, customer_id: string, order_date: date, amount: "decimal(10,2)" }
  crm:
    path: crm.csv
    schema: { customer_id: string, email: string }
steps:
  - name: persons
    model: identity
    inputs:
      - { from: crm, key: customer_id, email: email }
  - name: rfm
    model: rfm
    input: orders
    order_id: order_id
    scores: { bins: 2, method: ntile }
    segments:
      - { name: Top, when: "m = 2" }
      - { name: Rest, when: true }
outputs:
  persons: { from: persons, order_by: [source, key] }
  rfm: { from: rfm, order_by: [customer_id] }
"#;

/// The first run's data.
fn old_data(s: &Path) {
    write(
        s,
        "orders.csv",
        "order_id,customer_id,order_date,amount\n1,A,2025-03-01,10.00\n2,B,2025-04-01,20.00\n3,C,2025-05-01,30.00\nbad,D,2025-05-01,1\n",
    );
    write(
        s,
        "crm.csv",
        "customer_id,email\nA,a@x.se\nB,b@x.se\nC,c@x.se\n",
    );
}

/// The second run's data: different rows everywhere, so old and new states differ in every
/// table, the artifact and the registry.
fn new_data(s: &Path) {
    write(
        s,
        "orders.csv",
        "order_id,customer_id,order_date,amount\n1,A,2025-03-01,15.00\n2,B,2025-04-01,20.00\n4,E,2025-06-01,99.00\n5,E,2025-07-01,1.00\nbad,F,2025-05-01,2\nworse,G,x,3\n",
    );
    write(
        s,
        "crm.csv",
        "customer_id,email\nA,a@x.se\nB,b@x.se\nE,e@x.se\nF,f@x.se\n",
    );
}

fn write(dir: &Path, rel: &str, text: &str) {
    std::fs::write(dir.join(rel), text).expect("write");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("ls") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Every file under `out/` except the run records, with the SHA-256 of its bytes: what readers
/// see, plus any leftover (a staging or temporary file shows up here too).
fn committed_state(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).expect("ls") {
            let path = entry.expect("entry").path();
            let rel = path.strip_prefix(root).expect("rel").display().to_string();
            if rel == "runs" {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                use sha2::Digest;
                let bytes = std::fs::read(&path).expect("read");
                out.insert(rel, hex::encode(sha2::Sha256::digest(bytes)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&dir.join("out"), &dir.join("out"), &mut out);
    out
}

fn manifests(dir: &Path) -> Vec<Manifest> {
    let mut out: Vec<Manifest> = std::fs::read_dir(dir.join("out/runs"))
        .expect("runs")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let text = std::fs::read_to_string(e.path().join("manifest.json")).expect("manifest");
            serde_json::from_str(&text).expect("json")
        })
        .collect();
    out.sort_by(|a, b| a.started_at.cmp(&b.started_at));
    out
}

/// Starts `segflow run` paused at point `n`; returns the child once it is paused there, or
/// its exit code if it finished without reaching point `n`.
fn run_paused_at(dir: &Path, n: usize, resume: Option<&Path>) -> Result<(Child, String), i32> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_segflow"));
    cmd.args(["run", "p.yaml", "--period", "2025"])
        .current_dir(dir)
        .env_remove("SEGFLOW_LOG")
        .env("SEGFLOW_TEST_PAUSE_AT", n.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(file) = resume {
        cmd.env("SEGFLOW_TEST_RESUME_FILE", file);
    }
    let mut child = cmd.spawn().expect("spawn segflow");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.expect("line");
        if line.contains("paused at point") {
            // Keep draining stderr so the child never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok((child, line));
        }
    }
    let status = child.wait().expect("wait");
    Err(status.code().unwrap_or(-1))
}

#[test]
fn a_kill_at_any_point_of_the_commit_leaves_exactly_the_old_or_the_new_run() {
    let s = Scratch::new();
    let template = s.path("old");
    std::fs::create_dir_all(&template).expect("mkdir");
    write(&template, "p.yaml", PIPELINE);
    old_data(&template);
    segflow(&["run", "p.yaml", "--period", "2025"], &template).assert_code(0);
    let old = committed_state(&template);
    assert!(
        old.keys()
            .any(|k| k.starts_with("identity/persons/registry"))
            && old
                .keys()
                .any(|k| k.starts_with("models/rfm/period=2025/model-"))
            && old
                .keys()
                .any(|k| k.starts_with("quarantine/orders/period=2025/")),
        "{:?}",
        old.keys()
    );

    // The new state, from an uninterrupted run on the new data. Every run works in the same
    // directory: quarantine rows name their source file by path.
    let dir = s.path("work");
    let fresh = |dir: &Path| {
        let _ = std::fs::remove_dir_all(dir);
        copy_dir(&template, dir);
        new_data(dir);
    };
    fresh(&dir);
    segflow(&["run", "p.yaml", "--period", "2025"], &dir).assert_code(0);
    let new = committed_state(&dir);
    assert_ne!(old, new);

    let mut seen_old = 0;
    let mut seen_new = 0;
    let mut points = Vec::new();
    for n in 1.. {
        fresh(&dir);
        let (mut child, line) = match run_paused_at(&dir, n, None) {
            Ok(paused) => paused,
            Err(code) => {
                // Past the last point: the run went through undisturbed.
                assert_eq!(code, 0, "run with pause point {n} beyond the last");
                assert_eq!(committed_state(&dir), new);
                break;
            }
        };
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        points.push(line.clone());

        // Recovery alone (what the next run does first) restores one whole state.
        let r = segflow(&["recover", "p.yaml"], &dir);
        r.assert_code(0);
        let state = committed_state(&dir);
        let killed = manifests(&dir).pop().expect("the killed run's manifest");
        if state == old {
            seen_old += 1;
            assert_eq!(killed.status, RunStatus::Abandoned, "{line}");
            assert!(killed.outputs.iter().all(|o| !o.committed), "{line}");
        } else if state == new {
            seen_new += 1;
            assert_eq!(killed.status, RunStatus::Succeeded, "{line}");
            // The whole story, not an empty list marked committed: two outputs, the
            // quarantine, the fitted artifact.
            assert_eq!(killed.outputs.len(), 3, "{line}");
            assert!(killed.outputs.iter().all(|o| o.committed), "{line}");
            assert!(
                killed.models.len() == 1 && killed.models[0].committed,
                "{line}: {:?}",
                killed.models
            );
        } else {
            let diff: Vec<&String> = state
                .keys()
                .chain(new.keys())
                .filter(|k| state.get(*k) != new.get(*k) && state.get(*k) != old.get(*k))
                .collect();
            panic!("killed at {line}: state is neither the old nor the new run: {diff:?}");
        }
        assert!(
            killed.recovered_by.is_some() || killed.status == RunStatus::Succeeded,
            "{line}"
        );

        // The next run succeeds and leaves the new state, nothing else.
        let again = segflow(&["run", "p.yaml", "--period", "2025"], &dir);
        again.assert_code(0);
        assert_eq!(committed_state(&dir), new, "rerun after kill at {line}");
        // No lock, journal or temporary file outlives the runs.
        let leftovers: Vec<String> = std::fs::read_dir(dir.join("out/runs"))
            .expect("runs")
            .flatten()
            .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
            .map(|e| e.path().display().to_string())
            .filter(|p| !p.ends_with("manifest.json"))
            .collect();
        assert!(leftovers.is_empty(), "after kill at {line}: {leftovers:?}");
    }
    // Kills before the commit point, and after it, were both exercised.
    assert!(
        seen_old >= 10 && seen_new >= 2,
        "old {seen_old}, new {seen_new}: {points:#?}"
    );
}

#[test]
fn a_second_run_of_the_same_period_exits_2_naming_the_holder_and_only_the_first_commits() {
    let s = Scratch::new();
    let dir = s.path("w");
    std::fs::create_dir_all(&dir).expect("mkdir");
    write(&dir, "p.yaml", PIPELINE);
    old_data(&dir);
    let resume = s.path("resume");
    // Point 1: the period lock is held.
    let (mut first, _) = run_paused_at(&dir, 1, Some(&resume)).expect("first run pauses");
    let second = segflow(&["run", "p.yaml", "--period", "2025"], &dir);
    second.assert_code(2);
    let holder_manifest = manifests(&dir)
        .into_iter()
        .find(|m| m.status == RunStatus::Running)
        .expect("the first run's manifest says running");
    assert!(
        second.stderr.contains(&holder_manifest.run_id)
            && second.stderr.contains(&format!("pid {}", first.id()))
            && second.stderr.contains("another run of period 2025"),
        "{}",
        second.stderr
    );
    assert_eq!(second.manifest().status, RunStatus::Failed);
    // Another period is not blocked by this one.
    segflow(&["run", "p.yaml", "--period", "2026"], &dir).assert_code(0);

    std::fs::write(&resume, "").expect("resume");
    let status = first.wait().expect("first run ends");
    assert_eq!(status.code(), Some(0));
    let all = manifests(&dir);
    let committed: Vec<&Manifest> = all
        .iter()
        .filter(|m| m.period.label == "2025" && m.outputs.iter().any(|o| o.committed))
        .collect();
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0].run_id, holder_manifest.run_id);
}

#[test]
fn sigterm_discards_staging_records_interrupted_and_keeps_the_committed_period() {
    let s = Scratch::new();
    let dir = s.path("w");
    std::fs::create_dir_all(&dir).expect("mkdir");
    write(&dir, "p.yaml", PIPELINE);
    old_data(&dir);
    segflow(&["run", "p.yaml", "--period", "2025"], &dir).assert_code(0);
    let old = committed_state(&dir);
    new_data(&dir);
    let resume = s.path("resume");
    let (mut child, _) = run_paused_at(&dir, 1, Some(&resume)).expect("pauses");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    std::fs::write(&resume, "").expect("resume");
    let status = child.wait().expect("ends");
    assert_eq!(status.code(), Some(143));
    let last = manifests(&dir).pop().expect("manifest");
    assert_eq!(last.status, RunStatus::Interrupted);
    assert!(last.error.as_deref().unwrap_or("").contains("SIGTERM"));
    assert_eq!(committed_state(&dir), old);
    let scratch: Vec<PathBuf> = std::fs::read_dir(dir.join("out/runs").join(&last.run_id))
        .expect("run dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.ends_with("manifest.json"))
        .collect();
    assert!(scratch.is_empty(), "{scratch:?}");
}

#[test]
fn leftovers_of_a_killed_run_are_removed_by_the_next_run_and_recorded() {
    let s = Scratch::new();
    let dir = s.path("w");
    std::fs::create_dir_all(&dir).expect("mkdir");
    write(&dir, "p.yaml", PIPELINE);
    old_data(&dir);
    // Killed with everything staged (point 2): staging directories, an artifact and a
    // registry under temporary names, a scratch directory.
    let (mut child, _) = run_paused_at(&dir, 2, None).expect("pauses");
    child.kill().expect("kill");
    child.wait().expect("reaped");
    let killed = manifests(&dir).pop().expect("manifest");
    assert_eq!(killed.status, RunStatus::Running);
    let hidden = |root: &Path| -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.contains(&killed.run_id) {
                    found.push(e.path().display().to_string());
                } else if e.path().is_dir() {
                    stack.push(e.path());
                }
            }
        }
        found
    };
    let outside_runs = |found: Vec<String>| -> Vec<String> {
        found
            .into_iter()
            .filter(|p| !p.contains("/out/runs/"))
            .collect()
    };
    let before = outside_runs(hidden(&dir.join("out")));
    assert!(before.len() >= 4, "{before:?}");

    let next = segflow(&["run", "p.yaml", "--period", "2025"], &dir);
    next.assert_code(0);
    let m = next.manifest();
    assert_eq!(m.recovered.len(), 1);
    assert_eq!(m.recovered[0].run_id, killed.run_id);
    assert_eq!(m.recovered[0].action, "abandoned");
    assert!(m.recovered[0].bytes_removed > 0);
    let removed_in_out: Vec<&String> = m.recovered[0]
        .removed
        .iter()
        .filter(|p| p.contains("/out/"))
        .collect();
    assert_eq!(
        removed_in_out.len(),
        before.len(),
        "{:?} vs {before:?}",
        m.recovered[0].removed
    );
    assert!(outside_runs(hidden(&dir.join("out"))).is_empty());
    let dead = manifests(&dir)
        .into_iter()
        .find(|x| x.run_id == killed.run_id)
        .expect("dead manifest");
    assert_eq!(dead.status, RunStatus::Abandoned);
    assert_eq!(dead.recovered_by.as_deref(), Some(m.run_id.as_str()));
}
