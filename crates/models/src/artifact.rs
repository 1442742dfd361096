//! Versioned model artifacts: what a yearly run fitted, as readable JSON, so monthly runs apply
//! the year's model frozen and an auditor can read every cut point and coefficient.
//!
//! Layout: `<models dir>/<model name>/period=<period>/model.json`. An artifact holds no
//! timestamps or run ids, so refitting the same data gives the same bytes; the run manifest
//! links it to its run by SHA-256.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use segflow_spec::Period;
use serde::{Deserialize, Serialize};

/// Bumped when the envelope or a model's parameters change incompatibly.
pub const ARTIFACT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub artifact_version: u32,
    /// The model kind (`rfm`, `pareto`, `kmeans`, …).
    pub model: String,
    /// The model's name in the store.
    pub name: String,
    /// The period whose data it was fitted on.
    pub period: String,
    pub pipeline: String,
    pub pipeline_sha256: String,
    /// SHA-256 over the SHA-256 of every input file of the fitting run.
    pub inputs_sha256: String,
    /// Rows (customers, unique summaries…) the fit saw.
    pub fitted_rows: u64,
    /// The model's own parameters; each model module defines their shape.
    pub parameters: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot read model artifact {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("model artifact {path} is not a valid segflow artifact: {message}")]
    Invalid { path: String, message: String },
    #[error(
        "no artifact of model `{name}` under {dir} for a period before {before}; run the yearly pipeline first, or name an artifact with `artifact: {{ period: … }}`"
    )]
    NotFound {
        name: String,
        dir: String,
        before: NaiveDate,
    },
}

impl Artifact {
    /// Pretty JSON with a final newline: stable bytes for the same content.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    pub fn load(path: &Path) -> Result<Self, ArtifactError> {
        let bytes = std::fs::read(path).map_err(|source| ArtifactError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(path, &bytes)
    }

    /// Parses an artifact read from `path` (named in errors).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, ArtifactError> {
        let artifact: Artifact =
            serde_json::from_slice(bytes).map_err(|e| ArtifactError::Invalid {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        if artifact.artifact_version != ARTIFACT_VERSION {
            return Err(ArtifactError::Invalid {
                path: path.display().to_string(),
                message: format!(
                    "artifact version {} (this segflow reads version {ARTIFACT_VERSION}); refit the model",
                    artifact.artifact_version
                ),
            });
        }
        Ok(artifact)
    }

    /// The typed parameters, or an error naming the file.
    pub fn parameters<T: serde::de::DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<T, ArtifactError> {
        serde_json::from_value(self.parameters.clone()).map_err(|e| ArtifactError::Invalid {
            path: path.display().to_string(),
            message: format!("parameters of the `{}` model: {e}", self.model),
        })
    }
}

pub fn artifact_path(dir: &Path, name: &str, period: &str) -> PathBuf {
    dir.join(name)
        .join(format!("period={period}"))
        .join("model.json")
}

/// The artifact of the latest *year* that ended on or before `before`, as `(period, path)`.
/// Models are fitted yearly; an artifact a monthly pipeline fitted (`models.mode: fit`) is
/// applied only when named with `artifact: { period: … }`.
pub fn latest_before(
    dir: &Path,
    name: &str,
    before: NaiveDate,
) -> Result<(String, PathBuf), ArtifactError> {
    let not_found = || ArtifactError::NotFound {
        name: name.to_string(),
        dir: dir.display().to_string(),
        before,
    };
    let entries = match std::fs::read_dir(dir.join(name)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(source) => {
            return Err(ArtifactError::Read {
                path: dir.join(name).display().to_string(),
                source,
            });
        }
    };
    let mut best: Option<(NaiveDate, String)> = None;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(label) = file_name.to_str().and_then(|n| n.strip_prefix("period=")) else {
            continue;
        };
        let Ok(period) = label.parse::<Period>() else {
            continue;
        };
        if period.grain() != segflow_spec::Grain::Year
            || period.end() > before
            || !artifact_path(dir, name, label).is_file()
        {
            continue;
        }
        if best.as_ref().is_none_or(|(end, _)| period.end() > *end) {
            best = Some((period.end(), label.to_string()));
        }
    }
    let (_, label) = best.ok_or_else(not_found)?;
    let path = artifact_path(dir, name, &label);
    Ok((label, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, period: &str) {
        let path = artifact_path(dir, name, period);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, b"{}").expect("write");
    }

    #[test]
    fn the_latest_period_ended_before_the_run_is_chosen() {
        let dir = tempfile::tempdir().expect("tempdir");
        for p in ["2023", "2024", "2025", "2025-12"] {
            write(dir.path(), "rfm", p);
        }
        let at = |d: &str| {
            latest_before(dir.path(), "rfm", d.parse().expect("date"))
                .map(|(p, _)| p)
                .ok()
        };
        // March 2025 uses 2024; January 2026 uses 2025 (a monthly artifact is never "latest").
        assert_eq!(at("2025-03-01").as_deref(), Some("2024"));
        assert_eq!(at("2026-01-01").as_deref(), Some("2025"));
        assert_eq!(at("2024-01-01").as_deref(), Some("2023"));
        assert!(matches!(
            latest_before(dir.path(), "rfm", "2023-06-01".parse().expect("date")),
            Err(ArtifactError::NotFound { .. })
        ));
        assert_eq!(at("2026-06-01").as_deref(), Some("2025"));
        assert!(latest_before(dir.path(), "other", "2026-01-01".parse().expect("date")).is_err());
    }
}
