//! `segflow audit show`: the lineage of one period, as text a person reads top to bottom —
//! which run, which pipeline and segflow, which inputs (and vintages), which model artifacts,
//! which checks, which outputs.

use std::fmt::Write as _;
use std::path::Path;

use segflow_manifest::{Manifest, RunHistory, RunStatus};

use crate::error::AuditError;

/// The lineage of `period` for every pipeline with a successful run of it (or only
/// `pipeline`), from the latest successful run of each.
pub fn show(out_dir: &Path, period: &str, pipeline: Option<&str>) -> Result<String, AuditError> {
    let runs_dir = out_dir.join("runs");
    let history = RunHistory::load(&runs_dir);
    if history.runs().is_empty() {
        return Err(AuditError::NoManifests { dir: runs_dir });
    }
    let mut pipelines: Vec<&str> = history
        .runs()
        .iter()
        .filter(|m| m.period.label == period && pipeline.is_none_or(|p| m.pipeline.name == p))
        .map(|m| m.pipeline.name.as_str())
        .collect();
    pipelines.sort();
    pipelines.dedup();
    let mut text = String::new();
    for name in pipelines {
        match history.latest_succeeded(Some(name), period) {
            Some(m) => lineage(&history, m, &mut text),
            None => {
                let _ = writeln!(
                    text,
                    "period {period}, pipeline {name}: no successful run\n"
                );
            }
        }
        other_runs(&history, name, period, &mut text);
    }
    if text.is_empty() {
        return Err(AuditError::NoRunsOfPeriod {
            dir: runs_dir,
            period: period.to_string(),
            pipeline: pipeline.map(str::to_string),
        });
    }
    Ok(text)
}

fn lineage(history: &RunHistory, m: &Manifest, out: &mut String) {
    let _ = writeln!(
        out,
        "period {} ({}, {} to {}), pipeline {}",
        m.period.label, m.period.grain, m.period.start, m.period.end, m.pipeline.name
    );
    let _ = writeln!(
        out,
        "  run        {} (succeeded, {} to {}{})",
        m.run_id,
        m.started_at,
        m.finished_at.as_deref().unwrap_or("?"),
        m.recovered_by
            .as_deref()
            .map(|r| format!(", completed by run {r}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  pipeline   {} sha256 {}",
        m.pipeline.file, m.pipeline.sha256
    );
    let _ = writeln!(out, "  segflow    {}", m.segflow_version);
    let _ = writeln!(out, "  arguments  {}", m.arguments.join(" "));

    let _ = writeln!(out, "  inputs");
    for i in &m.inputs {
        let vintage = vintage_of(m, &i.source)
            .map(|v| format!(", vintage {v}"))
            .unwrap_or_default();
        match &i.refused {
            Some(why) => {
                let _ = writeln!(out, "    {} {}: refused ({why})", i.source, i.path);
            }
            None => {
                let _ = writeln!(
                    out,
                    "    {} {} sha256 {} ({} bytes, {} rows, {} rejected, {}{vintage})",
                    i.source, i.path, i.sha256, i.size, i.rows, i.rows_rejected, i.encoding
                );
            }
        }
    }
    if !m.models.is_empty() {
        let _ = writeln!(out, "  model artifacts");
        for a in &m.models {
            let state = match (a.mode.as_str(), a.committed) {
                ("fit", true) => "fitted",
                ("fit", false) => "fitted, not committed",
                _ => "applied",
            };
            let _ = writeln!(
                out,
                "    {} ({} model `{}`): {state}, period {}, {} sha256 {}",
                a.step, a.model, a.name, a.artifact_period, a.path, a.sha256
            );
        }
    }
    if !m.checks.is_empty() {
        let _ = writeln!(out, "  checks");
        for c in &m.checks {
            let verdict = if c.passed { "passed" } else { "FAILED" };
            let _ = writeln!(
                out,
                "    {verdict} {} on {} ({}): {} failing row(s){}",
                c.name,
                c.target,
                c.severity,
                c.failing_rows,
                if c.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", c.message)
                }
            );
        }
    }
    let _ = writeln!(out, "  outputs");
    for o in &m.outputs {
        // The period's data may have been committed by another run of it since.
        let committed_by = history
            .output_runs(&o.output, &m.period.label)
            .committed
            .map(|c| c.run_id.as_str());
        let note = match committed_by {
            Some(id) if id == m.run_id => format!("committed by run {id}"),
            Some(id) => format!("now committed by run {id}"),
            None => "not committed".to_string(),
        };
        let _ = writeln!(
            out,
            "    {} from {}: {} rows in {} file(s), {note}",
            o.output,
            o.from,
            o.rows,
            o.files.len()
        );
        for f in &o.files {
            let _ = writeln!(
                out,
                "      {}/{} {} rows sha256 {}",
                o.path, f.path, f.rows, f.sha256
            );
        }
    }
}

/// The `chosen` vintage of a source, from its step record's parameters.
fn vintage_of(m: &Manifest, source: &str) -> Option<String> {
    let step = m.steps.iter().find(|s| s.name == source)?;
    let vintage = step.parameters.as_ref()?.get("vintage")?;
    Some(match vintage.get("chosen").and_then(|c| c.as_str()) {
        Some(chosen) => chosen.to_string(),
        None => vintage.to_string(),
    })
}

fn other_runs(history: &RunHistory, pipeline: &str, period: &str, out: &mut String) {
    let latest = history
        .latest_succeeded(Some(pipeline), period)
        .map(|m| m.run_id.as_str());
    let others: Vec<String> = history
        .runs()
        .iter()
        .filter(|m| m.pipeline.name == pipeline && m.period.label == period)
        .filter(|m| Some(m.run_id.as_str()) != latest)
        .map(|m| format!("{} ({})", m.run_id, status(m.status)))
        .collect();
    if !others.is_empty() {
        let _ = writeln!(out, "  other runs of this period: {}", others.join(", "));
    }
    out.push('\n');
}

fn status(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::ChecksFailed => "checks failed",
        RunStatus::Failed => "failed",
        RunStatus::Interrupted => "interrupted",
        RunStatus::Abandoned => "abandoned",
    }
}
