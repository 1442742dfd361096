//! Reading files back as an auditor does: their SHA-256, and what a Parquet footer says.

use std::io::Read;
use std::path::{Path, PathBuf};

use arrow::datatypes::Schema;
use parquet::file::reader::{FileReader, SerializedFileReader};
use segflow_manifest::ColumnRecord;
use sha2::{Digest, Sha256};

/// The columns of a schema as the manifest records them. Engine (when it writes) and audit
/// (when it reads back) format types with this one function, so they compare like for like.
pub fn columns_of(schema: &Schema) -> Vec<ColumnRecord> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnRecord {
            name: f.name().clone(),
            data_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

/// A manifest location as a local path: `file:///x` or a plain path. `None` for other
/// schemes (an object store), which the audit cannot read.
pub fn local_path(location: &str) -> Option<PathBuf> {
    if let Some(rest) = location.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    (!location.contains("://")).then(|| PathBuf::from(location))
}

/// SHA-256 (hex) and size of a file, read in 1 MiB pieces.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// What a Parquet file's footer says: its rows and its columns as Arrow reads them.
pub(crate) struct Footer {
    pub rows: u64,
    pub columns: Vec<ColumnRecord>,
}

pub(crate) fn read_footer(path: &Path) -> Result<Footer, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = SerializedFileReader::new(file).map_err(|e| e.to_string())?;
    let meta = reader.metadata().file_metadata();
    let schema =
        parquet::arrow::parquet_to_arrow_schema(meta.schema_descr(), meta.key_value_metadata())
            .map_err(|e| e.to_string())?;
    Ok(Footer {
        rows: u64::try_from(meta.num_rows()).unwrap_or(0),
        columns: columns_of(&schema),
    })
}

/// The files below `dir`, relative to it with `/` separators, skipping hidden entries (a
/// run's staging or replaced data, which readers skip too).
pub(crate) fn list_files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(rel) = path.strip_prefix(root) {
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_locations_are_paths() {
        assert_eq!(
            local_path("file:///d/x.csv"),
            Some(PathBuf::from("/d/x.csv"))
        );
        assert_eq!(local_path("/d/x.csv"), Some(PathBuf::from("/d/x.csv")));
        assert_eq!(local_path("s3://bucket/x.csv"), None);
    }

    #[test]
    fn hidden_entries_are_not_listed() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("region=A")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join(".segflow-staging-r")).expect("mkdir");
        std::fs::write(dir.path().join("region=A/part-00000.parquet"), "x").expect("w");
        std::fs::write(
            dir.path().join(".segflow-staging-r/part-00000.parquet"),
            "x",
        )
        .expect("w");
        std::fs::write(dir.path().join(".part.tmp"), "x").expect("w");
        assert_eq!(list_files(dir.path()), ["region=A/part-00000.parquet"]);
    }
}
