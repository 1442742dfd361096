//! Numbered points in a run where a test can stop it, to prove that a kill at any of them
//! leaves committed data intact (`tests/it/faults.rs`).
//!
//! `SEGFLOW_TEST_PAUSE_AT=N` makes the run print `segflow: paused at point N (<label>)` to
//! stderr when it reaches the N-th point, then wait until the file named by
//! `SEGFLOW_TEST_RESUME_FILE` exists (forever when unset) — the test kills it with SIGKILL
//! meanwhile, or lets it go on. Without the variable a point costs one comparison. The points
//! are deterministic: the same pipeline passes the same points in the same order.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Default)]
pub(crate) struct Pauses {
    at: Option<u64>,
    resume: Option<PathBuf>,
    passed: u64,
}

impl Pauses {
    pub(crate) fn from_env() -> Self {
        Self {
            at: std::env::var("SEGFLOW_TEST_PAUSE_AT")
                .ok()
                .and_then(|v| v.trim().parse().ok()),
            resume: std::env::var_os("SEGFLOW_TEST_RESUME_FILE").map(PathBuf::from),
            passed: 0,
        }
    }

    pub(crate) fn point(&mut self, label: &str) {
        self.passed += 1;
        if self.at != Some(self.passed) {
            return;
        }
        eprintln!("segflow: paused at point {} ({label})", self.passed);
        loop {
            if self.resume.as_ref().is_some_and(|f| f.exists()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
