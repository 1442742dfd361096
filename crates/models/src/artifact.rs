//! Versioned model artifacts: what a yearly run fitted, as readable JSON, so monthly runs apply
//! the year's model frozen and an auditor can read every cut point and coefficient.
//!
//! Layout: `<models dir>/<model name>/period=<period>/` holds one immutable file per fitted
//! version, `model-<first 16 hex digits of its SHA-256>.json`, and `current.json`, a pointer
//! naming the version in use. An artifact holds no timestamps or run ids, so refitting the
//! same data gives the same bytes and therefore the same file; refitting other data adds a
//! file and moves the pointer, so the path and SHA-256 an earlier manifest recorded keep
//! resolving (an auditor can still read the model an old monthly run applied). Stores written
//! before versioning hold a single `model.json`, read when there is no pointer.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use segflow_spec::Period;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// The pointer to the version in use, in each `period=…` directory.
pub const POINTER_FILE: &str = "current.json";
/// The single artifact of a store written before artifacts were versioned.
pub const LEGACY_FILE: &str = "model.json";

/// `current.json`: which version file of the period is in use, and its SHA-256 (checked when
/// the artifact is read, so a changed file is refused rather than applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    /// A file name in the same directory, e.g. `model-3f9a1c0d2b4e5f60.json`.
    pub file: String,
    pub sha256: String,
}

impl Pointer {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// An artifact as read from the store: the file it came from, its bytes and their SHA-256.
#[derive(Debug, Clone)]
pub struct StoredArtifact {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `<dir>/<name>/period=<period>`.
pub fn period_dir(dir: &Path, name: &str, period: &str) -> PathBuf {
    dir.join(name).join(format!("period={period}"))
}

/// `model-<first 16 hex digits of sha256>.json`: content-addressed, so identical content is
/// the same file.
pub fn version_file_name(sha256: &str) -> String {
    format!("model-{}.json", sha256.get(..16).unwrap_or(sha256))
}

/// Where a fitted artifact with this SHA-256 lives.
pub fn version_path(dir: &Path, name: &str, period: &str, sha256: &str) -> PathBuf {
    period_dir(dir, name, period).join(version_file_name(sha256))
}

pub fn pointer_path(dir: &Path, name: &str, period: &str) -> PathBuf {
    period_dir(dir, name, period).join(POINTER_FILE)
}

/// Whether a `period=…` directory holds an artifact to apply (a pointer, or a legacy file).
fn has_artifact(period_dir: &Path) -> bool {
    period_dir.join(POINTER_FILE).is_file() || period_dir.join(LEGACY_FILE).is_file()
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + '_ {
    move |source| ArtifactError::Read {
        path: path.display().to_string(),
        source,
    }
}

/// The artifact in use for `period`: the version `current.json` names (its SHA-256 checked),
/// or a legacy `model.json` when there is no pointer; `None` when there is neither.
pub fn read_current(
    dir: &Path,
    name: &str,
    period: &str,
) -> Result<Option<StoredArtifact>, ArtifactError> {
    let period_dir = period_dir(dir, name, period);
    let pointer_path = period_dir.join(POINTER_FILE);
    let pointer =
        match std::fs::read(&pointer_path) {
            Ok(bytes) => Some(serde_json::from_slice::<Pointer>(&bytes).map_err(|e| {
                ArtifactError::Invalid {
                    path: pointer_path.display().to_string(),
                    message: e.to_string(),
                }
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(read_err(&pointer_path)(e)),
        };
    let Some(pointer) = pointer else {
        let legacy = period_dir.join(LEGACY_FILE);
        return match std::fs::read(&legacy) {
            Ok(bytes) => Ok(Some(StoredArtifact {
                sha256: sha256_hex(&bytes),
                path: legacy,
                bytes,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(read_err(&legacy)(e)),
        };
    };
    // A pointer names a file beside it, never a path elsewhere.
    if pointer.file.is_empty()
        || pointer.file.contains(['/', '\\'])
        || pointer.file.starts_with('.')
    {
        return Err(ArtifactError::Invalid {
            path: pointer_path.display().to_string(),
            message: format!(
                "`file` must name a file in the same directory, not `{}`",
                pointer.file
            ),
        });
    }
    let path = period_dir.join(&pointer.file);
    let bytes = std::fs::read(&path).map_err(read_err(&path))?;
    let sha256 = sha256_hex(&bytes);
    if sha256 != pointer.sha256 {
        return Err(ArtifactError::Invalid {
            path: path.display().to_string(),
            message: format!(
                "its SHA-256 is {sha256}, but {} says {}: the file was changed after it was committed",
                pointer_path.display(),
                pointer.sha256
            ),
        });
    }
    Ok(Some(StoredArtifact {
        path,
        bytes,
        sha256,
    }))
}

/// The artifact of the latest *year* that ended on or before `before`, as `(period, artifact)`.
/// Models are fitted yearly; an artifact a monthly pipeline fitted (`models.mode: fit`) is
/// applied only when named with `artifact: { period: … }`.
pub fn latest_before(
    dir: &Path,
    name: &str,
    before: NaiveDate,
) -> Result<(String, StoredArtifact), ArtifactError> {
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
            || !has_artifact(&entry.path())
        {
            continue;
        }
        if best.as_ref().is_none_or(|(end, _)| period.end() > *end) {
            best = Some((period.end(), label.to_string()));
        }
    }
    let (_, label) = best.ok_or_else(not_found)?;
    let artifact = read_current(dir, name, &label)?.ok_or_else(not_found)?;
    Ok((label, artifact))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A versioned artifact and its pointer, as a commit leaves them.
    fn write(dir: &Path, name: &str, period: &str) {
        write_version(
            dir,
            name,
            period,
            format!("{{\"period\":\"{period}\"}}").as_bytes(),
        );
    }

    fn write_version(dir: &Path, name: &str, period: &str, bytes: &[u8]) -> PathBuf {
        let sha256 = sha256_hex(bytes);
        let path = version_path(dir, name, period, &sha256);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write");
        let pointer = Pointer {
            file: version_file_name(&sha256),
            sha256,
        };
        std::fs::write(pointer_path(dir, name, period), pointer.to_bytes()).expect("pointer");
        path
    }

    #[test]
    fn the_pointer_decides_which_version_is_read_and_old_versions_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = write_version(dir.path(), "rfm", "2025", b"first fit");
        let second = write_version(dir.path(), "rfm", "2025", b"second fit");
        assert_ne!(first, second);
        assert!(first.is_file(), "the earlier version is kept");
        let current = read_current(dir.path(), "rfm", "2025")
            .expect("read")
            .expect("present");
        assert_eq!(
            (current.path, current.bytes),
            (second.clone(), b"second fit".to_vec())
        );
        assert!(
            second
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == "model-0123456789abcdef.json".len())
        );
        // A version file changed after its commit is refused, naming it.
        std::fs::write(&second, b"second fiT").expect("tamper");
        let err = read_current(dir.path(), "rfm", "2025").expect_err("changed");
        assert!(err.to_string().contains("was changed"), "{err}");
    }

    #[test]
    fn a_store_without_pointers_is_read_through_its_legacy_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let legacy = period_dir(dir.path(), "rfm", "2024").join(LEGACY_FILE);
        std::fs::create_dir_all(legacy.parent().expect("parent")).expect("mkdir");
        std::fs::write(&legacy, b"{}").expect("write");
        let (label, artifact) =
            latest_before(dir.path(), "rfm", "2025-06-01".parse().expect("date")).expect("found");
        assert_eq!((label.as_str(), artifact.path), ("2024", legacy));
        assert!(
            read_current(dir.path(), "rfm", "2023")
                .expect("read")
                .is_none()
        );
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
