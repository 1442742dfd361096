//! Deterministic Parquet files for one period of one table, written while the rows stream in.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, MutableArrayData, RecordBatch, make_array};
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::util::display::array_value_to_string;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};

use crate::error::{SinkError, io};
use crate::partition::{NULL_PARTITION, partition_dir};

#[cfg(test)]
mod legacy;
#[cfg(test)]
mod tests;

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

/// Copies `pieces` into fresh buffers. Rows that wait for the next push must not keep the
/// caller's whole batch alive through a zero-copy slice, or "one pending slice per file"
/// would silently become "every batch that ever contributed a row".
fn copy_rows(schema: &SchemaRef, pieces: &[RecordBatch]) -> Result<RecordBatch, ArrowError> {
    if pieces.len() > 1 {
        // `concat` always allocates for more than one input (and merges dictionaries sensibly).
        return concat_batches(schema, pieces);
    }
    let Some(piece) = pieces.first() else {
        return Ok(RecordBatch::new_empty(Arc::clone(schema)));
    };
    let columns: Vec<ArrayRef> = piece
        .columns()
        .iter()
        .map(|column| {
            let data = column.to_data();
            let mut copy = MutableArrayData::new(vec![&data], false, column.len());
            copy.try_extend(0, 0, column.len())?;
            Ok(make_array(copy.freeze()))
        })
        .collect::<Result<_, ArrowError>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

/// Drops validity bitmaps that mark no row as null. parquet-rs encodes a column with such a
/// bitmap differently from one without (materialized definition levels are written in chunks
/// of 1,024 rows, absent ones in chunks of 20,000, so pages split elsewhere), and whether a
/// bitmap is there depends on how the rows were batched and on nulls in other rows of the
/// table, not on the rows being written. Without it a file's bytes depend on its rows alone.
/// Only top-level columns: the engine writes flat columns.
fn without_empty_null_buffers(rows: RecordBatch) -> Result<RecordBatch, ArrowError> {
    if !rows
        .columns()
        .iter()
        .any(|c| c.nulls().is_some_and(|n| n.null_count() == 0))
    {
        return Ok(rows);
    }
    let (schema, columns, _) = rows.into_parts();
    let columns = columns
        .into_iter()
        .map(|column| {
            if column.nulls().is_some_and(|n| n.null_count() == 0) {
                Ok(make_array(
                    column.to_data().into_builder().nulls(None).build()?,
                ))
            } else {
                Ok(column)
            }
        })
        .collect::<Result<_, ArrowError>>()?;
    RecordBatch::try_new(schema, columns)
}

/// What every partition of one table shares.
#[derive(Debug)]
struct Settings {
    dir: PathBuf,
    /// The columns that go into the files: all of them minus the sub-partition columns.
    data_schema: SchemaRef,
    props: WriterProperties,
    max_rows_per_file: usize,
    slice_rows: usize,
}

#[derive(Debug)]
struct OpenFile {
    path: PathBuf,
    writer: ArrowWriter<BufWriter<File>>,
}

/// One sub-partition directory (or the period directory itself without sub-partitions).
#[derive(Debug)]
struct Partition {
    /// `region=Nord/city=Ost/`, empty without sub-partitions; prefixes the file names.
    prefix: String,
    /// `region=Nord`, `city=Ost`: one encoded level per sub-partition column.
    levels: Vec<String>,
    /// How many leading levels pin this directory to one contiguous run of a sorted stream.
    /// Levels before the first `__HIVE_DEFAULT_PARTITION__` each stand for exactly one value,
    /// but that name stands for both NULL and '' (which sort apart), so from there on rows of
    /// this directory may come back; once the stream leaves these leading levels they cannot.
    settled_levels: usize,
    closed: bool,
    files: Vec<WrittenFile>,
    file: Option<OpenFile>,
    /// Rows already handed to the writer of the current file.
    file_rows: usize,
    /// Rows of the current slice, not yet handed to the writer.
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    /// `pending[..owned]` are private copies; the rest still borrow the batch being pushed.
    owned: usize,
}

impl Partition {
    fn new(levels: Vec<String>) -> Self {
        let prefix = levels.iter().map(|level| format!("{level}/")).collect();
        // An encoded value never contains `=`, so this suffix means the value itself is NULL's.
        let null_suffix = format!("={NULL_PARTITION}");
        let settled_levels = levels
            .iter()
            .position(|level| level.ends_with(&null_suffix))
            .unwrap_or(levels.len());
        Partition {
            prefix,
            levels,
            settled_levels,
            closed: false,
            files: Vec::new(),
            file: None,
            file_rows: 0,
            pending: Vec::new(),
            pending_rows: 0,
            owned: 0,
        }
    }

    /// True when a sorted stream now at `levels` can never return to this directory.
    fn left_for_good(&self, levels: &[String]) -> bool {
        self.levels[..self.settled_levels] != levels[..self.settled_levels]
    }

    /// Buffers `rows`, handing the writer every slice as soon as it is complete. Slices restart
    /// at every file start and end at the file's last row, exactly where `write_table` always
    /// cut them, so the bytes do not depend on how the rows were batched.
    fn append(&mut self, rows: &RecordBatch, settings: &Settings) -> Result<(), SinkError> {
        let mut offset = 0;
        while offset < rows.num_rows() {
            let slice = settings
                .slice_rows
                .min(settings.max_rows_per_file - self.file_rows);
            let take = (slice - self.pending_rows).min(rows.num_rows() - offset);
            self.pending.push(rows.slice(offset, take));
            self.pending_rows += take;
            offset += take;
            if self.pending_rows == slice {
                self.write_pending(settings)?;
                if self.file_rows == settings.max_rows_per_file {
                    self.close_file(settings)?;
                }
            }
        }
        Ok(())
    }

    /// Called at the end of every push: the rows still waiting get their own buffers, and
    /// small copies are merged (a chunk is merged while it is at least as large as the one
    /// before it), so even one-row batches leave only a logarithmic number of chunks.
    fn settle(&mut self, settings: &Settings) -> Result<(), SinkError> {
        let arrow_err = |source| SinkError::Arrow {
            path: settings.dir.join(&self.prefix),
            source,
        };
        if self.pending.len() > self.owned {
            let borrowed = self.pending.split_off(self.owned);
            let copy = copy_rows(&settings.data_schema, &borrowed).map_err(arrow_err)?;
            self.pending.push(copy);
        }
        while let [.., before, last] = self.pending.as_slice() {
            if last.num_rows() < before.num_rows() {
                break;
            }
            let merged =
                concat_batches(&settings.data_schema, [before, last]).map_err(arrow_err)?;
            self.pending.truncate(self.pending.len() - 2);
            self.pending.push(merged);
        }
        self.owned = self.pending.len();
        Ok(())
    }

    fn open_file(&mut self, settings: &Settings) -> Result<&mut OpenFile, SinkError> {
        let file = match self.file.take() {
            Some(file) => file,
            None => {
                let dir = settings.dir.join(&self.prefix);
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
                let path = dir.join(format!("part-{:05}.parquet", self.files.len()));
                let file = File::create(&path).map_err(io(&path))?;
                let writer = ArrowWriter::try_new(
                    BufWriter::new(file),
                    Arc::clone(&settings.data_schema),
                    Some(settings.props.clone()),
                )
                .map_err(|source| SinkError::Parquet {
                    path: path.clone(),
                    source,
                })?;
                OpenFile { path, writer }
            }
        };
        Ok(self.file.insert(file))
    }

    fn write_pending(&mut self, settings: &Settings) -> Result<(), SinkError> {
        if self.pending_rows == 0 {
            return Ok(());
        }
        let rows = concat_batches(&settings.data_schema, &self.pending)
            .and_then(without_empty_null_buffers)
            .map_err(|source| SinkError::Arrow {
                path: settings.dir.join(&self.prefix),
                source,
            })?;
        let file = self.open_file(settings)?;
        file.writer
            .write(&rows)
            .map_err(|source| SinkError::Parquet {
                path: file.path.clone(),
                source,
            })?;
        self.file_rows += rows.num_rows();
        self.pending.clear();
        self.pending_rows = 0;
        self.owned = 0;
        Ok(())
    }

    /// Writes what is pending and closes the current file; opens (and so creates) the file
    /// first if there is none, which is how an empty table still gets its one empty file.
    fn close_file(&mut self, settings: &Settings) -> Result<(), SinkError> {
        self.write_pending(settings)?;
        self.open_file(settings)?;
        let Some(OpenFile { path, writer }) = self.file.take() else {
            return Ok(());
        };
        writer.close().map_err(|source| SinkError::Parquet {
            path: path.clone(),
            source,
        })?;
        let (size, sha256) = sha256_file(&path)?;
        let name = format!("part-{:05}.parquet", self.files.len());
        self.files.push(WrittenFile {
            relative_path: format!("{}{name}", self.prefix),
            rows: self.file_rows as u64,
            size,
            sha256,
        });
        self.file_rows = 0;
        Ok(())
    }

    /// No more rows will come: the last, possibly short, file is finished.
    fn close(&mut self, settings: &Settings) -> Result<(), SinkError> {
        if self.file.is_some() || self.pending_rows > 0 {
            self.close_file(settings)?;
        }
        self.closed = true;
        Ok(())
    }
}

/// Writes one period of a table while its rows stream in, so an output never has to fit in
/// memory: each directory still being written holds at most one incomplete write slice
/// (65,536 rows) plus the Parquet writer's row group. Files are byte-identical however the
/// rows were batched, because the writer only ever sees the same fixed slices, and a file's
/// bytes depend only on its own rows (see `without_empty_null_buffers`).
///
/// Rows must arrive sorted by the sub-partition columns (in their order). NULL and '' share a
/// directory (`__HIVE_DEFAULT_PARTITION__`) although they sort apart, so such a directory stays
/// open until the stream can no longer return to it; its files hold its rows in stream order.
/// After an error the writer is unusable: drop it and discard the staging directory.
#[derive(Debug)]
pub struct TableWriter {
    settings: Settings,
    columns: usize,
    partition_by: Vec<String>,
    key_indices: Vec<usize>,
    data_indices: Vec<usize>,
    /// In order of first appearance, which is the order of the returned files.
    partitions: Vec<Partition>,
    by_prefix: HashMap<String, usize>,
    /// Partitions rows may still arrive for; everything else is closed on disk.
    open: Vec<usize>,
    current: Option<usize>,
}

impl TableWriter {
    /// Starts writing into `dir` (the staged `period=…` directory). `partition_by` columns
    /// become directories and leave the files; `metadata` lands in every file's footer.
    pub fn new(
        dir: &Path,
        schema: SchemaRef,
        partition_by: &[String],
        max_rows_per_file: usize,
        metadata: &[(String, String)],
    ) -> Result<Self, SinkError> {
        Self::with_slice_rows(
            dir,
            schema,
            partition_by,
            max_rows_per_file,
            metadata,
            WRITE_SLICE_ROWS,
        )
    }

    fn with_slice_rows(
        dir: &Path,
        schema: SchemaRef,
        partition_by: &[String],
        max_rows_per_file: usize,
        metadata: &[(String, String)],
        slice_rows: usize,
    ) -> Result<Self, SinkError> {
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
        let data_schema = if key_indices.is_empty() {
            Arc::clone(&schema)
        } else {
            Arc::new(
                schema
                    .project(&data_indices)
                    .map_err(|source| SinkError::Arrow {
                        path: dir.to_path_buf(),
                        source,
                    })?,
            )
        };
        Ok(TableWriter {
            settings: Settings {
                dir: dir.to_path_buf(),
                data_schema,
                props: writer_properties(metadata),
                max_rows_per_file: max_rows_per_file.max(1),
                slice_rows: slice_rows.max(1),
            },
            columns: schema.fields().len(),
            partition_by: partition_by.to_vec(),
            key_indices,
            data_indices,
            partitions: Vec::new(),
            by_prefix: HashMap::new(),
            open: Vec::new(),
            current: None,
        })
    }

    fn arrow_err(&self) -> impl FnOnce(ArrowError) -> SinkError + '_ {
        |source| SinkError::Arrow {
            path: self.settings.dir.clone(),
            source,
        }
    }

    /// Adds the next rows of the sorted stream; any batch size works, including empty batches.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        if batch.num_columns() != self.columns {
            return Err((self.arrow_err())(ArrowError::SchemaError(format!(
                "a batch has {} columns, the output has {}",
                batch.num_columns(),
                self.columns
            ))));
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let mut touched = Vec::new();
        if self.key_indices.is_empty() {
            let index = self.enter(Vec::new())?;
            self.partitions[index].append(batch, &self.settings)?;
            touched.push(index);
        } else {
            let data = batch
                .project(&self.data_indices)
                .map_err(self.arrow_err())?;
            let keys: Vec<ArrayRef> = self
                .key_indices
                .iter()
                .map(|&i| Arc::clone(batch.column(i)))
                .collect();
            let ranges = arrow::compute::partition(&keys)
                .map_err(self.arrow_err())?
                .ranges();
            for range in ranges {
                let mut levels = Vec::with_capacity(keys.len());
                for (column, values) in self.partition_by.iter().zip(&keys) {
                    let value = if values.is_null(range.start) {
                        None
                    } else {
                        Some(array_value_to_string(values, range.start).map_err(self.arrow_err())?)
                    };
                    levels.push(partition_dir(column, value.as_deref()));
                }
                let index = self.enter(levels)?;
                let rows = data.slice(range.start, range.end - range.start);
                self.partitions[index].append(&rows, &self.settings)?;
                if !touched.contains(&index) {
                    touched.push(index);
                }
            }
        }
        for index in touched {
            if !self.partitions[index].closed {
                self.partitions[index].settle(&self.settings)?;
            }
        }
        Ok(())
    }

    /// The partition for `levels`, opened if new; partitions the stream has left for good are
    /// closed on the way, which keeps the number of open files small.
    fn enter(&mut self, levels: Vec<String>) -> Result<usize, SinkError> {
        if let Some(current) = self.current
            && self.partitions[current].levels == levels
        {
            return Ok(current);
        }
        let found = self
            .by_prefix
            .get(
                &levels
                    .iter()
                    .map(|level| format!("{level}/"))
                    .collect::<String>(),
            )
            .copied();
        if let Some(index) = found
            && self.partitions[index].closed
        {
            return Err(SinkError::UnsortedPartition {
                path: self.settings.dir.join(&self.partitions[index].prefix),
            });
        }
        let mut still_open = Vec::with_capacity(self.open.len() + 1);
        for index in std::mem::take(&mut self.open) {
            let partition = &mut self.partitions[index];
            if Some(index) != found && partition.left_for_good(&levels) {
                partition.close(&self.settings)?;
            } else {
                still_open.push(index);
            }
        }
        self.open = still_open;
        let index = match found {
            Some(index) => index,
            None => {
                let partition = Partition::new(levels);
                let index = self.partitions.len();
                self.by_prefix.insert(partition.prefix.clone(), index);
                self.partitions.push(partition);
                self.open.push(index);
                index
            }
        };
        self.current = Some(index);
        Ok(index)
    }

    /// Finishes every file and lists them in stream order (directory by directory, then
    /// `part-00000`, `part-00001`…). Without sub-partitions an empty table still gets one
    /// empty file, so an empty period replaces the old one; with sub-partitions it gets none.
    /// The schema of the files: the table's columns without the partition columns.
    pub fn data_schema(&self) -> SchemaRef {
        Arc::clone(&self.settings.data_schema)
    }

    pub fn finish(mut self) -> Result<Vec<WrittenFile>, SinkError> {
        if self.key_indices.is_empty() && self.partitions.is_empty() {
            let mut empty = Partition::new(Vec::new());
            empty.close_file(&self.settings)?;
            return Ok(empty.files);
        }
        for index in std::mem::take(&mut self.open) {
            self.partitions[index].close(&self.settings)?;
        }
        Ok(self
            .partitions
            .into_iter()
            .flat_map(|partition| partition.files)
            .collect())
    }
}

/// Writes one period of a table into `dir`. `batches` must be sorted by `partition_by`
/// (the sub-partition columns below `period`), which become directories and leave the files.
/// For outputs already in memory; streams go through [`TableWriter`], which this wraps.
pub fn write_table(
    dir: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
    partition_by: &[String],
    max_rows_per_file: usize,
    metadata: &[(String, String)],
) -> Result<Vec<WrittenFile>, SinkError> {
    let mut writer = TableWriter::new(dir, schema, partition_by, max_rows_per_file, metadata)?;
    for batch in batches {
        writer.push(batch)?;
    }
    writer.finish()
}
