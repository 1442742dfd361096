//! Deterministic Parquet files for one period of one table.

use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::util::display::array_value_to_string;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};

use crate::error::{SinkError, io};
use crate::partition::partition_dir;

/// Rows handed to the Parquet writer per call; fixed so page and row-group boundaries depend
/// only on the data, never on how DataFusion happened to batch it.
const WRITE_SLICE_ROWS: usize = 65_536;
const ROW_GROUP_ROWS: usize = 1_048_576;

/// A file written under a period directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Relative to the period directory, e.g. `part-00000.parquet` or `region=Nord/part-00000.parquet`.
    pub relative_path: String,
    pub rows: u64,
    pub size: u64,
    pub sha256: String,
}

fn writer_properties(metadata: &[(String, String)]) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("segflow {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(
            metadata
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                .collect(),
        ))
        .build()
}

fn sha256_file(path: &Path) -> Result<(u64, String), SinkError> {
    let mut file = File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

fn write_file(
    path: &Path,
    batch: &RecordBatch,
    props: WriterProperties,
) -> Result<WrittenFile, SinkError> {
    let parquet_err = |source| SinkError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(io(path))?;
    let mut writer = ArrowWriter::try_new(BufWriter::new(file), batch.schema(), Some(props))
        .map_err(parquet_err)?;
    let mut offset = 0;
    while offset < batch.num_rows() {
        let len = WRITE_SLICE_ROWS.min(batch.num_rows() - offset);
        writer
            .write(&batch.slice(offset, len))
            .map_err(parquet_err)?;
        offset += len;
    }
    writer.close().map_err(parquet_err)?;
    let (size, sha256) = sha256_file(path)?;
    Ok(WrittenFile {
        relative_path: String::new(),
        rows: batch.num_rows() as u64,
        size,
        sha256,
    })
}

/// Writes `batch` as `part-00000.parquet`, `part-00001.parquet`… of at most `max_rows` rows
/// each (one empty file when there are no rows, so an empty period still replaces the old one).
fn write_parts(
    dir: &Path,
    prefix: &str,
    batch: &RecordBatch,
    max_rows: usize,
    metadata: &[(String, String)],
) -> Result<Vec<WrittenFile>, SinkError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut files = Vec::new();
    let mut offset = 0;
    loop {
        let len = max_rows.min(batch.num_rows() - offset);
        let name = format!("part-{:05}.parquet", files.len());
        let mut written = write_file(
            &dir.join(&name),
            &batch.slice(offset, len),
            writer_properties(metadata),
        )?;
        written.relative_path = format!("{prefix}{name}");
        files.push(written);
        offset += len;
        if offset >= batch.num_rows() {
            return Ok(files);
        }
    }
}

/// Writes one period of a table into `dir`. `batches` must be sorted by `partition_by`
/// (the sub-partition columns below `period`), which become directories and leave the files.
pub fn write_table(
    dir: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
    partition_by: &[String],
    max_rows_per_file: usize,
    metadata: &[(String, String)],
) -> Result<Vec<WrittenFile>, SinkError> {
    let arrow_err = |source| SinkError::Arrow {
        path: dir.to_path_buf(),
        source,
    };
    let all = concat_batches(&schema, batches).map_err(arrow_err)?;
    if partition_by.is_empty() {
        return write_parts(dir, "", &all, max_rows_per_file.max(1), metadata);
    }
    let mut key_indices = Vec::with_capacity(partition_by.len());
    for column in partition_by {
        let index = schema
            .index_of(column)
            .map_err(|_| SinkError::MissingPartitionColumn {
                path: dir.to_path_buf(),
                column: column.clone(),
            })?;
        key_indices.push(index);
    }
    let data_indices: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !key_indices.contains(i))
        .collect();
    let data = all.project(&data_indices).map_err(arrow_err)?;
    if all.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let keys: Vec<_> = key_indices
        .iter()
        .map(|&i| Arc::clone(all.column(i)))
        .collect();
    let ranges = arrow::compute::partition(&keys)
        .map_err(arrow_err)?
        .ranges();
    let mut files = Vec::new();
    for range in ranges {
        let mut prefix = String::new();
        for (column, values) in partition_by.iter().zip(&keys) {
            let value = if values.is_null(range.start) {
                None
            } else {
                Some(array_value_to_string(values, range.start).map_err(arrow_err)?)
            };
            prefix.push_str(&partition_dir(column, value.as_deref()));
            prefix.push('/');
        }
        let part = data.slice(range.start, range.end - range.start);
        files.extend(write_parts(
            &dir.join(&prefix),
            &prefix,
            &part,
            max_rows_per_file.max(1),
            metadata,
        )?);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(ids: &[i64], regions: &[Option<&str>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("region", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(regions.to_vec())),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn same_rows_in_different_batches_give_identical_bytes() {
        let dir = tempfile::tempdir().expect("tmp");
        let whole = batch(&[1, 2, 3, 4], &[Some("a"), Some("a"), Some("b"), None]);
        let meta = vec![("segflow.period".to_string(), "2025".to_string())];
        let a = write_table(
            &dir.path().join("a"),
            whole.schema(),
            &[whole.clone()],
            &[],
            10,
            &meta,
        )
        .expect("a");
        let pieces = [whole.slice(0, 1), whole.slice(1, 3)];
        let b = write_table(
            &dir.path().join("b"),
            whole.schema(),
            &pieces,
            &[],
            10,
            &meta,
        )
        .expect("b");
        assert_eq!(a, b);
        assert_eq!(a[0].rows, 4);
    }

    #[test]
    fn splits_files_and_partitions() {
        let dir = tempfile::tempdir().expect("tmp");
        let b = batch(
            &[1, 2, 3, 4, 5],
            &[Some("a/b"), Some("a/b"), Some("a/b"), Some("c"), None],
        );
        let files = write_table(
            dir.path(),
            b.schema(),
            &[b],
            &["region".to_string()],
            2,
            &[],
        )
        .expect("write");
        let names: Vec<(&str, u64)> = files
            .iter()
            .map(|f| (f.relative_path.as_str(), f.rows))
            .collect();
        assert_eq!(
            names,
            vec![
                ("region=a%2Fb/part-00000.parquet", 2),
                ("region=a%2Fb/part-00001.parquet", 1),
                ("region=c/part-00000.parquet", 1),
                ("region=__HIVE_DEFAULT_PARTITION__/part-00000.parquet", 1),
            ]
        );
    }

    #[test]
    fn empty_tables_still_get_a_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let b = batch(&[], &[]);
        let files = write_table(dir.path(), b.schema(), &[], &[], 10, &[]).expect("write");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].rows, 0);
    }
}
