//! The whole-table writer as it was before `TableWriter` (commit 2a76404), kept only as the
//! oracle the tests compare bytes against: streaming must not change a single byte of any file
//! this wrote correctly. The slice size is a parameter so tests can cross slice boundaries with
//! little data; production used `WRITE_SLICE_ROWS`.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::util::display::array_value_to_string;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::{WrittenFile, sha256_file, writer_properties};
use crate::error::{SinkError, io};
use crate::partition::partition_dir;

fn write_file(
    path: &Path,
    batch: &RecordBatch,
    props: WriterProperties,
    slice_rows: usize,
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
        let len = slice_rows.min(batch.num_rows() - offset);
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

fn write_parts(
    dir: &Path,
    prefix: &str,
    batch: &RecordBatch,
    max_rows: usize,
    metadata: &[(String, String)],
    slice_rows: usize,
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
            slice_rows,
        )?;
        written.relative_path = format!("{prefix}{name}");
        files.push(written);
        offset += len;
        if offset >= batch.num_rows() {
            return Ok(files);
        }
    }
}

pub(super) fn write_table(
    dir: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
    partition_by: &[String],
    max_rows_per_file: usize,
    metadata: &[(String, String)],
    slice_rows: usize,
) -> Result<Vec<WrittenFile>, SinkError> {
    let arrow_err = |source| SinkError::Arrow {
        path: dir.to_path_buf(),
        source,
    };
    let all = concat_batches(&schema, batches).map_err(arrow_err)?;
    if partition_by.is_empty() {
        return write_parts(
            dir,
            "",
            &all,
            max_rows_per_file.max(1),
            metadata,
            slice_rows,
        );
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
            slice_rows,
        )?);
    }
    Ok(files)
}
