//! Reading a source's files into typed tables.
//!
//! CSV and Excel files are streamed through segflow's own reader (line numbers, encodings,
//! decimal commas, quarantine) into an Arrow IPC file in the run's scratch directory, so a
//! source of any size is held neither in memory nor read twice. Parquet and JSON lines are
//! self-describing and typed by DataFusion: they stay lazy views, so later steps get
//! projection and predicate pushdown into the files themselves.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::Column;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{Expr, cast, lit, when};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions};
use futures::StreamExt;
use object_store::{GetResultPayload, ObjectStoreExt};
use segflow_spec::{BadRowLimits, CsvOptions, Format, OnBadRow, Source};
use sha2::{Digest, Sha256};

use crate::csv_file::{BadRow, FileProblem, csv_reader};
use crate::error::SourceError;
use crate::location::InputFile;
use crate::privacy::{has_pii, protect, protect_exprs, protected_schema};
use crate::schema::{arrow_type, match_columns};
use crate::stream::{
    CHUNK_BYTES, ChannelReader, Compression, CsvJob, TypedChunk, read_csv_stream, store_failure,
};
use crate::xlsx::sheet_as_csv;

/// Bad rows kept in memory per source, for messages; all of them are in the scratch file.
pub const BAD_ROW_SAMPLE: usize = 20;

/// A source ready to query, with what the manifest needs to know about it.
#[derive(Debug)]
pub struct LoadedSource {
    /// CSV/Excel: the typed (and protected) rows in an Arrow IPC scratch file. Parquet/JSON
    /// lines: a lazy view over the files. Either way, in the declared (protected) schema.
    pub table: Arc<dyn TableProvider>,
    /// Records read per input file (accepted + rejected), in the order of the files given.
    pub rows_per_file: Vec<usize>,
    /// Records rejected (bad rows) per input file, in the order of the files given.
    pub rejected_per_file: Vec<usize>,
    /// The first [`BAD_ROW_SAMPLE`] bad rows, in file and line order, for messages.
    pub bad_row_sample: Vec<BadRow>,
    /// Every bad row, in file and line order, with the columns of [`bad_rows_schema`], under
    /// `on_bad_row: quarantine`; `None` when there are none. Stream it with
    /// [`bad_row_stream`].
    pub bad_rows: Option<BadRowSource>,
    /// Set when the source's bad-row limits stopped the read: the files after the one
    /// named were not read, and that one only up to the rows counted.
    pub stopped: Option<BadRowStop>,
    /// SHA-256 (hex) per input file, of the very bytes that were parsed.
    pub sha256_per_file: Vec<String>,
    /// Text encoding per file (CSV: as declared or detected; other formats: their own).
    pub encodings: Vec<&'static str>,
    /// NULL count per declared column (accepted rows), in declaration order.
    pub null_counts: Vec<usize>,
    /// Rows in `table`, counted from the batches written to it.
    pub rows_in_table: usize,
    /// Column drift tolerated by the source's `schema_drift` policy, per file.
    pub drift_warnings: Vec<String>,
}

/// Where a source's bad rows are, to be streamed into its quarantine table.
#[derive(Debug)]
pub enum BadRowSource {
    /// CSV and Excel: the Arrow IPC scratch file the reader streamed them to.
    File(PathBuf),
    /// Parquet and JSON lines: a lazy plan over the files (rows a declared type would lose
    /// information of), sorted.
    Plan(DataFrame),
}

/// A read stopped by the source's bad-row limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRowStop {
    /// The file being read when the limit was broken.
    pub file: String,
    /// The limit, as `more than max_bad_rows: 1000`.
    pub limit: String,
}

/// The bad rows of a source, batch by batch, in the columns of [`bad_rows_schema`]: memory
/// stays at a batch whatever their number.
pub async fn bad_row_stream(
    bad: &BadRowSource,
) -> Result<SendableRecordBatchStream, DataFusionError> {
    match bad {
        BadRowSource::File(path) => {
            let batches = read_bad_rows(path)?.map(|b| b.map_err(DataFusionError::from));
            Ok(Box::pin(RecordBatchStreamAdapter::new(
                bad_rows_schema(),
                futures::stream::iter(batches),
            )))
        }
        BadRowSource::Plan(df) => df.clone().execute_stream().await,
    }
}

impl LoadedSource {
    /// Records read from all files.
    pub fn rows_read(&self) -> usize {
        self.rows_per_file.iter().sum()
    }

    /// Records rejected in all files.
    pub fn rows_rejected(&self) -> usize {
        self.rejected_per_file.iter().sum()
    }

    /// Records that passed into the table: `rows_read() - rows_rejected()`.
    pub fn rows_accepted(&self) -> usize {
        self.rows_read().saturating_sub(self.rows_rejected())
    }
}

/// The columns of the bad-rows file: the fields of [`BadRow`].
pub fn bad_rows_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("file", DataType::Utf8, false),
        Field::new("line", DataType::Int64, false),
        Field::new("raw", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
    ]))
}

/// The batches of a bad-rows file ([`BadRowSource::File`]), one at a time.
pub fn read_bad_rows(
    path: &Path,
) -> Result<impl Iterator<Item = Result<RecordBatch, ArrowError>> + use<>, ArrowError> {
    let file = File::open(path)
        .map_err(|e| ArrowError::IoError(format!("cannot open `{}`: {e}", path.display()), e))?;
    FileReader::try_new(BufReader::new(file), None)
}

fn read_error(source: &Source, file: &InputFile, error: DataFusionError) -> SourceError {
    SourceError::Read {
        source_name: source.name.value.clone(),
        file: file.url.clone(),
        error: Box::new(error),
    }
}

/// The declared schema, in declaration order: what every reader of the source sees.
fn declared_schema(source: &Source) -> Schema {
    Schema::new(
        source
            .schema
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.data_type), true))
            .collect::<Vec<_>>(),
    )
}

/// The first record of a CSV file, read with the source's dialect from the file's first bytes.
pub(crate) async fn csv_header(
    source: &Source,
    file: &InputFile,
) -> Result<Vec<String>, SourceError> {
    let io = |error| SourceError::Io {
        source_name: source.name.value.clone(),
        file: file.url.clone(),
        error,
    };
    let mut len = 64 * 1024;
    loop {
        let end = len.min(file.size);
        let bytes = file.store.get_range(&file.path, 0..end).await.map_err(io)?;
        let mut reader = csv_reader(&source.csv, bytes.as_ref());
        let mut record = csv::StringRecord::new();
        let complete = matches!(reader.read_record(&mut record), Ok(true))
            && (reader.position().byte() < end || end == file.size);
        if complete {
            return Ok(record.iter().map(str::to_string).collect());
        }
        if end == file.size {
            return Err(SourceError::EmptyFile {
                source_name: source.name.value.clone(),
                file: file.url.clone(),
            });
        }
        len *= 4;
    }
}

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// A lazy DataFrame over one file, with exactly the declared columns, names and types.
async fn scan_file(
    ctx: &SessionContext,
    source: &Source,
    file: &InputFile,
) -> Result<(DataFrame, Vec<String>), SourceError> {
    let err = |e| read_error(source, file, e);
    let declared = &source.schema;
    match source.format {
        Format::Xlsx => {
            // Planning needs only the shape; the workbook is read by `load`.
            let empty = RecordBatch::new_empty(Arc::new(declared_schema(source)));
            Ok((ctx.read_batch(empty).map_err(err)?, Vec::new()))
        }
        Format::Csv => {
            // DataFusion maps CSV columns by position, so the file schema follows the header's
            // order; columns are then selected by declared name.
            let header = csv_header(source, file).await?;
            let matched = match_columns(
                &source.name.value,
                &file.url,
                &header,
                declared,
                source.drift,
            )?;
            let fields: Vec<Field> = matched
                .per_file_column
                .iter()
                .enumerate()
                .map(|(i, m)| match m {
                    Some(c) => Field::new(&c.name, arrow_type(c.data_type), true),
                    None => Field::new(format!("__undeclared_{i}"), DataType::Utf8, true),
                })
                .collect();
            let file_schema = Schema::new(fields);
            let null_regex = (!source.csv.null_values.is_empty()).then(|| {
                let alternatives: Vec<String> = source
                    .csv
                    .null_values
                    .iter()
                    .map(|v| regex_escape(v))
                    .collect();
                format!("^(|{})$", alternatives.join("|"))
            });
            let options = CsvReadOptions {
                has_header: true,
                delimiter: source.csv.delimiter,
                quote: source.csv.quote,
                escape: source.csv.escape,
                newlines_in_values: source.csv.quoted_newlines,
                schema: Some(&file_schema),
                file_extension: "",
                null_regex,
                ..CsvReadOptions::default()
            };
            let df = ctx
                .read_csv(file.url.as_str(), options)
                .await
                .map_err(err)?;
            let names: Vec<String> = df
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let exprs = declared_exprs(source, &matched.per_declared_column, &names);
            Ok((df.select(exprs).map_err(err)?, matched.warnings))
        }
        Format::Parquet | Format::JsonLines => {
            let (checked, warnings) = scan_checked(ctx, source, file).await?;
            let df = crate::lossless::accepted(source, checked).map_err(err)?;
            Ok((df, warnings))
        }
    }
}

/// Self-describing files (Parquet, JSON lines): each declared column found by name and cast
/// to its declared type, so a source has the same schema whatever wrote the file — as a
/// checked frame (see [`crate::lossless`]) that marks the rows a cast would lose
/// information of.
async fn scan_checked(
    ctx: &SessionContext,
    source: &Source,
    file: &InputFile,
) -> Result<(DataFrame, Vec<String>), SourceError> {
    let err = |e| read_error(source, file, e);
    let df = if source.format == Format::Parquet {
        let options = ParquetReadOptions {
            file_extension: "",
            ..ParquetReadOptions::default()
        };
        ctx.read_parquet(file.url.as_str(), options)
            .await
            .map_err(err)?
    } else {
        let schema = Schema::new(
            source
                .schema
                .iter()
                .map(|c| Field::new(&c.name, crate::lossless::json_read_type(c.data_type), true))
                .collect::<Vec<_>>(),
        );
        let options = JsonReadOptions {
            schema: Some(&schema),
            file_extension: "",
            ..JsonReadOptions::default()
        };
        ctx.read_json(file.url.as_str(), options)
            .await
            .map_err(err)?
    };
    let fields: Vec<(String, DataType)> = df
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let names: Vec<String> = fields.iter().map(|(n, _)| n.clone()).collect();
    let matched = match_columns(
        &source.name.value,
        &file.url,
        &names,
        &source.schema,
        source.drift,
    )?;
    let columns: Vec<crate::lossless::FileColumn<'_>> = matched
        .per_declared_column
        .iter()
        .map(|pos| crate::lossless::FileColumn {
            name: pos.map(|i| fields[i].0.as_str()),
            file_type: pos.map(|i| &fields[i].1),
        })
        .collect();
    let checked = crate::lossless::checked_frame(source, &file.url, df, &columns).map_err(err)?;
    Ok((checked, matched.warnings))
}

/// Each declared column by name, cast to its declared type; NULL where the file lacks it
/// (only reached when the drift policy tolerates it).
fn declared_exprs(source: &Source, positions: &[Option<usize>], names: &[String]) -> Vec<Expr> {
    source
        .schema
        .iter()
        .zip(positions)
        .map(|(c, pos)| {
            let value = match pos {
                Some(i) => column(&names[*i]),
                None => lit(ScalarValue::Null),
            };
            cast(value, arrow_type(c.data_type)).alias(&c.name)
        })
        .collect()
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

/// A lazy view of the whole source (all files), for `explain`: nothing is read.
pub async fn scan(
    ctx: &SessionContext,
    source: &Source,
    files: &[InputFile],
) -> Result<DataFrame, SourceError> {
    let mut frames = Vec::with_capacity(files.len());
    for file in files {
        frames.push(scan_file(ctx, source, file).await?.0);
    }
    let mut iter = frames.into_iter();
    let first = iter.next().ok_or_else(|| SourceError::NoFiles {
        source_name: source.name.value.clone(),
        location: source.location.value.clone(),
    })?;
    iter.try_fold(first, |acc, df| {
        acc.union(df).map_err(|e| SourceError::Read {
            source_name: source.name.value.clone(),
            file: source.location.value.clone(),
            error: Box::new(e),
        })
    })
}

/// Smallest chunk picked for a small file (unless the caller asks for smaller ones).
const MIN_CHUNK_BYTES: usize = 1 << 20;

/// Chunks of at most `max` bytes, but small enough that a file makes about four chunks per
/// worker: a 40 MB export then keeps every core busy, instead of two chunks on two cores.
/// Compressed files are assumed to hold four times their size in text.
fn chunk_size(file: &InputFile, max: usize, workers: usize) -> usize {
    let text = if Compression::of(&file.url) == Compression::None {
        file.size
    } else {
        file.size.saturating_mul(4)
    };
    let per_chunk = usize::try_from(text / (workers.max(1) as u64 * 4)).unwrap_or(usize::MAX);
    max.min(per_chunk.max(MIN_CHUNK_BYTES.min(max)))
}

/// A file name for a source in the scratch directory.
fn scratch_name(source: &Source, suffix: &str) -> String {
    let name: String = source
        .name
        .value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}{suffix}")
}

/// Typed batches appended to an Arrow IPC file as they are produced.
struct IpcSink {
    path: PathBuf,
    writer: FileWriter<BufWriter<File>>,
    rows: usize,
}

impl IpcSink {
    fn create(path: PathBuf, schema: &Schema) -> Result<Self, ArrowError> {
        let file = File::create(&path).map_err(|e| {
            ArrowError::IoError(format!("cannot create `{}`: {e}", path.display()), e)
        })?;
        let writer = FileWriter::try_new(BufWriter::with_capacity(1 << 20, file), schema)?;
        Ok(Self {
            path,
            writer,
            rows: 0,
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        if batch.num_rows() > 0 {
            self.writer.write(batch)?;
            self.rows += batch.num_rows();
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(PathBuf, usize), ArrowError> {
        self.writer.finish()?;
        Ok((self.path, self.rows))
    }
}

impl std::fmt::Debug for IpcSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IpcSink({})", self.path.display())
    }
}

/// Bad rows streamed to a scratch file (created at the first one), with counts and a sample,
/// and the source's bad-row limits checked as the rows come.
#[derive(Debug)]
struct BadRowSink {
    path: PathBuf,
    writer: Option<IpcSink>,
    /// Whether the rows are kept (`on_bad_row: quarantine`); under `fail` the counts and the
    /// sample are all a message needs, and a wrong delimiter would write the whole file again.
    keep: bool,
    limits: BadRowLimits,
    /// Records and bad rows of the file being read.
    records_in_file: usize,
    in_file: usize,
    /// Records and bad rows of the source so far, which the limits are judged on.
    records: u64,
    rejected: u64,
    /// The limit broken, once it is.
    broken: Option<String>,
    sample: Vec<BadRow>,
}

impl BadRowSink {
    fn new(path: PathBuf, keep: bool, limits: BadRowLimits) -> Self {
        Self {
            path,
            writer: None,
            keep,
            limits,
            records_in_file: 0,
            in_file: 0,
            records: 0,
            rejected: 0,
            broken: None,
            sample: Vec::new(),
        }
    }

    /// Counts a chunk's records and bad rows, keeps the bad rows; fails with
    /// [`FileProblem::BadRowLimit`] once the limits are broken, which stops the read.
    fn take(&mut self, records: usize, rows: Vec<BadRow>) -> Result<(), FileProblem> {
        self.records_in_file += records;
        self.records += records as u64;
        self.rejected += rows.len() as u64;
        self.write(rows).map_err(FileProblem::Scratch)?;
        if let Some(limit) = self.limits.exceeded(self.records, self.rejected) {
            self.broken = Some(limit);
            return Err(FileProblem::BadRowLimit);
        }
        Ok(())
    }

    fn write(&mut self, rows: Vec<BadRow>) -> Result<(), ArrowError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.in_file += rows.len();
        if !self.keep {
            let room = BAD_ROW_SAMPLE.saturating_sub(self.sample.len());
            self.sample.extend(rows.into_iter().take(room));
            return Ok(());
        }
        let batch = RecordBatch::try_new(
            bad_rows_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.file))),
                Arc::new(Int64Array::from_iter_values(
                    rows.iter()
                        .map(|r| i64::try_from(r.line).unwrap_or(i64::MAX)),
                )),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.raw))),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| &r.reason),
                )),
            ],
        )?;
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self
                .writer
                .insert(IpcSink::create(self.path.clone(), &bad_rows_schema())?),
        };
        writer.write(&batch)?;
        let room = BAD_ROW_SAMPLE.saturating_sub(self.sample.len());
        self.sample.extend(rows.into_iter().take(room));
        Ok(())
    }
}

/// Where the typed chunks of a source's CSV/Excel files go, moved to the blocking reader of
/// each file in turn.
#[derive(Debug)]
struct CsvOutput {
    table: IpcSink,
    bad: BadRowSink,
    null_counts: Vec<usize>,
}

impl CsvOutput {
    fn take(&mut self, typed: TypedChunk) -> Result<(), FileProblem> {
        for batch in &typed.batches {
            self.table.write(batch).map_err(FileProblem::Scratch)?;
        }
        for (count, n) in self.null_counts.iter_mut().zip(&typed.null_counts) {
            *count += n;
        }
        self.bad.take(typed.records, typed.bad_rows)
    }
}

/// Local files are read with large reads on the reader thread (object_store's stream of a
/// local file hands out 8 KiB pieces, each from a blocking task); failures stay I/O errors.
struct LocalFile(std::io::Take<File>);

impl Read for LocalFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            store_failure(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            })
        })
    }
}

/// What the reader of one CSV/Excel file needs, owned, for the blocking thread.
#[derive(Debug, Clone)]
struct CsvFileJob {
    source: Source,
    url: String,
    opts: CsvOptions,
    declared_schema: SchemaRef,
    protected: Option<(Vec<u8>, SchemaRef)>,
    chunk_bytes: usize,
    workers: usize,
}

/// The raw bytes of a file: a local file directly, any other store through its async
/// stream, pumped by a task so the next bytes download while these are parsed.
async fn open_raw(file: &InputFile) -> Result<Box<dyn Read + Send>, object_store::Error> {
    let got = file.store.get(&file.path).await?;
    let range = got.range.clone();
    match got.payload {
        GetResultPayload::File(mut f, _) => {
            use std::io::{Seek, SeekFrom};
            f.seek(SeekFrom::Start(range.start))
                .map_err(|e| object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(e),
                })?;
            Ok(Box::new(LocalFile(f.take(range.end - range.start))))
        }
        GetResultPayload::Stream(mut stream) => {
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            tokio::spawn(async move {
                while let Some(item) = stream.next().await {
                    let failed = item.is_err();
                    if tx.send(item).await.is_err() || failed {
                        break;
                    }
                }
            });
            Ok(Box::new(ChannelReader::new(rx)))
        }
    }
}

/// What reading one file into the source's output came to.
type FileRead = Option<(crate::stream::StreamedFile, String)>;

/// Reads one CSV or Excel file into `out`; returns records read, encoding, drift warnings
/// and the SHA-256 of the file — or `None` when the source's bad-row limits stopped the read
/// (`out` then holds the counts up to there).
async fn load_csv_file(
    source: &Source,
    file: &InputFile,
    job: &CsvFileJob,
    mut out: CsvOutput,
) -> Result<(FileRead, CsvOutput), SourceError> {
    let io = |error| SourceError::Io {
        source_name: source.name.value.clone(),
        file: file.url.clone(),
        error,
    };
    let xlsx = source.format == Format::Xlsx;
    // A workbook is a zip archive, read whole; CSV text is streamed.
    let (raw, sha256): (Box<dyn Read + Send>, Option<String>) = if xlsx {
        let bytes = file
            .store
            .get(&file.path)
            .await
            .map_err(io)?
            .bytes()
            .await
            .map_err(io)?;
        let sha = hex::encode(Sha256::digest(&bytes));
        let sheet = source.sheet.clone();
        let text =
            tokio::task::spawn_blocking(move || sheet_as_csv(bytes.to_vec(), sheet.as_deref()))
                .await
                .map_err(|e| read_error(source, file, DataFusionError::External(Box::new(e))))?
                .map_err(|p| problem(source, file, None, p))?;
        (Box::new(std::io::Cursor::new(text.into_bytes())), Some(sha))
    } else {
        (open_raw(file).await.map_err(io)?, None)
    };
    let job = job.clone();
    let scratch_path = out.table.path.display().to_string();
    let parsed = tokio::task::spawn_blocking(move || {
        let compression = if xlsx {
            Compression::None
        } else {
            Compression::of(&job.url)
        };
        let transform = |batch: RecordBatch| match &job.protected {
            Some((key, schema)) => protect(&job.source, key, &batch, schema),
            None => Ok(batch),
        };
        let csv_job = CsvJob {
            source_name: &job.source.name.value,
            file: &job.url,
            opts: &job.opts,
            declared: &job.source.schema,
            drift: job.source.drift,
            schema: &job.declared_schema,
            chunk_bytes: job.chunk_bytes,
            workers: job.workers,
            on_bad_row: job.source.on_bad_row,
        };
        out.bad.in_file = 0;
        out.bad.records_in_file = 0;
        let result = crate::stream::read_ahead(raw, |input| {
            read_csv_stream(input, compression, csv_job, &transform, &mut |typed| {
                out.take(typed)
            })
        });
        (result, out)
    })
    .await
    .map_err(|e| read_error(source, file, DataFusionError::External(Box::new(e))))?;
    match parsed {
        (Ok((mut read, sha)), out) => {
            if xlsx {
                read.encoding = "xlsx";
            }
            Ok((Some((read, sha256.unwrap_or(sha))), out))
        }
        (Err(FileProblem::BadRowLimit), out) => Ok((None, out)),
        (Err(p), _) => Err(problem(source, file, Some(&scratch_path), p)),
    }
}

/// A whole-file problem as the source error naming the file.
fn problem(
    source: &Source,
    file: &InputFile,
    scratch: Option<&str>,
    p: FileProblem,
) -> SourceError {
    match p {
        FileProblem::Header(e) => e,
        FileProblem::Decode(message) => SourceError::Decode {
            source_name: source.name.value.clone(),
            file: file.url.clone(),
            message,
        },
        FileProblem::Io(error) => SourceError::Io {
            source_name: source.name.value.clone(),
            file: file.url.clone(),
            error,
        },
        FileProblem::Arrow(e) => read_error(source, file, e.into()),
        FileProblem::Scratch(e) => SourceError::Scratch {
            source_name: source.name.value.clone(),
            path: scratch.unwrap_or_default().to_string(),
            error: Box::new(e.into()),
        },
        // Handled by the caller, which keeps the counts; never an error of its own.
        FileProblem::BadRowLimit => SourceError::Decode {
            source_name: source.name.value.clone(),
            file: file.url.clone(),
            message: "the bad-row limits were broken".into(),
        },
    }
}

/// Reads a source: CSV and Excel files are streamed into an Arrow IPC file under `scratch`
/// (which must exist and outlive the run's use of the table); Parquet and JSON lines become a
/// lazy view. Files are read one after another so errors and counts name the file.
pub async fn load(
    ctx: &SessionContext,
    source: &Source,
    files: &[InputFile],
    pii_key: Option<&[u8]>,
    scratch: &Path,
) -> Result<LoadedSource, SourceError> {
    load_with(ctx, source, files, pii_key, scratch, CHUNK_BYTES).await
}

pub(crate) async fn load_with(
    ctx: &SessionContext,
    source: &Source,
    files: &[InputFile],
    pii_key: Option<&[u8]>,
    scratch: &Path,
    chunk_bytes: usize,
) -> Result<LoadedSource, SourceError> {
    if files.is_empty() {
        return Err(SourceError::NoFiles {
            source_name: source.name.value.clone(),
            location: source.location.value.clone(),
        });
    }
    let declared = Arc::new(declared_schema(source));
    let protected = has_pii(source).then(|| protected_schema(source, &declared));
    if matches!(source.format, Format::Csv | Format::Xlsx) {
        load_csv_source(
            ctx,
            source,
            files,
            pii_key,
            scratch,
            chunk_bytes,
            declared,
            protected,
        )
        .await
    } else {
        load_lazy_source(ctx, source, files, pii_key).await
    }
}

#[allow(clippy::too_many_arguments)]
async fn load_csv_source(
    ctx: &SessionContext,
    source: &Source,
    files: &[InputFile],
    pii_key: Option<&[u8]>,
    scratch: &Path,
    chunk_bytes: usize,
    declared: SchemaRef,
    protected: Option<SchemaRef>,
) -> Result<LoadedSource, SourceError> {
    let table_schema = protected.clone().unwrap_or_else(|| Arc::clone(&declared));
    let table_path = scratch.join(scratch_name(source, ".arrow"));
    let scratch_error = |path: &Path, e: ArrowError| SourceError::Scratch {
        source_name: source.name.value.clone(),
        path: path.display().to_string(),
        error: Box::new(e.into()),
    };
    let mut out = CsvOutput {
        table: IpcSink::create(table_path.clone(), &table_schema)
            .map_err(|e| scratch_error(&table_path, e))?,
        bad: BadRowSink::new(
            scratch.join(scratch_name(source, ".bad_rows.arrow")),
            source.on_bad_row == OnBadRow::Quarantine,
            source.bad_row_limits,
        ),
        null_counts: vec![0; source.schema.len()],
    };
    let job = CsvFileJob {
        source: source.clone(),
        url: String::new(),
        opts: if source.format == Format::Xlsx {
            CsvOptions {
                null_values: source.csv.null_values.clone(),
                ..CsvOptions::default()
            }
        } else {
            source.csv.clone()
        },
        declared_schema: declared,
        protected: protected.map(|schema| (pii_key.unwrap_or_default().to_vec(), schema)),
        chunk_bytes,
        workers: ctx.state().config().target_partitions().max(1),
    };
    let mut loaded = LoadedSource {
        table: Arc::new(datafusion::datasource::empty::EmptyTable::new(Arc::clone(
            &table_schema,
        ))),
        rows_per_file: Vec::with_capacity(files.len()),
        rejected_per_file: Vec::with_capacity(files.len()),
        bad_row_sample: Vec::new(),
        bad_rows: None,
        stopped: None,
        sha256_per_file: Vec::with_capacity(files.len()),
        encodings: Vec::with_capacity(files.len()),
        null_counts: Vec::new(),
        rows_in_table: 0,
        drift_warnings: Vec::new(),
    };
    for file in files {
        let job = CsvFileJob {
            url: file.url.clone(),
            chunk_bytes: chunk_size(file, job.chunk_bytes, job.workers),
            ..job.clone()
        };
        let (read, next) = load_csv_file(source, file, &job, out).await?;
        out = next;
        loaded.rejected_per_file.push(out.bad.in_file);
        let Some((read, sha256)) = read else {
            // Stopped: the rows counted so far are what was read; the file's checksum
            // would take reading it to its end, which is what stopping avoids.
            loaded.rows_per_file.push(out.bad.records_in_file);
            loaded
                .encodings
                .push(crate::stream::TextDecoder::new(job.opts.encoding).name());
            loaded.sha256_per_file.push(String::new());
            loaded.stopped = Some(BadRowStop {
                file: file.url.clone(),
                limit: out.bad.broken.clone().unwrap_or_default(),
            });
            break;
        };
        loaded.rows_per_file.push(read.records);
        loaded.encodings.push(read.encoding);
        loaded.drift_warnings.extend(read.warnings);
        loaded.sha256_per_file.push(sha256);
    }
    let CsvOutput {
        table,
        bad,
        null_counts,
    } = out;
    let (path, rows) = table.finish().map_err(|e| scratch_error(&table_path, e))?;
    loaded.rows_in_table = rows;
    loaded.null_counts = null_counts;
    loaded.bad_row_sample = bad.sample;
    if let Some(writer) = bad.writer {
        let (bad_path, _) = writer.finish().map_err(|e| scratch_error(&bad.path, e))?;
        loaded.bad_rows = Some(BadRowSource::File(bad_path));
    }
    loaded.table = ipc_table(&path, table_schema, rows).map_err(|e| SourceError::Scratch {
        source_name: source.name.value.clone(),
        path: path.display().to_string(),
        error: Box::new(e),
    })?;
    Ok(loaded)
}

/// A table over an Arrow IPC file of `rows` rows; DataFusion splits its scan by record-batch
/// ranges.
fn ipc_table(
    path: &Path,
    schema: SchemaRef,
    rows: usize,
) -> Result<Arc<dyn TableProvider>, DataFusionError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    crate::scratch_table::scratch_table(path, schema, [(name, rows as u64)].into())
}

/// Parquet and JSON lines: one lazy frame per file (declared names and types), unioned and
/// protected in the plan. The manifest's counts come from one streaming aggregate per file,
/// which also counts the rows a declared type would lose information of (bad rows, see
/// [`crate::lossless`]); the table holds the others.
async fn load_lazy_source(
    ctx: &SessionContext,
    source: &Source,
    files: &[InputFile],
    pii_key: Option<&[u8]>,
) -> Result<LoadedSource, SourceError> {
    let mut loaded = LoadedSource {
        table: Arc::new(datafusion::datasource::empty::EmptyTable::new(Arc::new(
            declared_schema(source),
        ))),
        rows_per_file: Vec::with_capacity(files.len()),
        rejected_per_file: Vec::with_capacity(files.len()),
        bad_row_sample: Vec::new(),
        bad_rows: None,
        stopped: None,
        sha256_per_file: Vec::with_capacity(files.len()),
        encodings: Vec::with_capacity(files.len()),
        null_counts: vec![0; source.schema.len()],
        rows_in_table: 0,
        drift_warnings: Vec::new(),
    };
    let (mut frames, mut rejected_frames) = (Vec::new(), Vec::new());
    for file in files {
        let err = |e| read_error(source, file, e);
        let (checked, warnings) = scan_checked(ctx, source, file).await?;
        loaded.drift_warnings.extend(warnings);
        let bad = column(crate::lossless::BAD);
        let mut counts = vec![
            count(lit(1)).alias("__rows"),
            count(when(bad.clone(), lit(1)).end().map_err(err)?).alias("__rejected"),
        ];
        for (i, c) in source.schema.iter().enumerate() {
            // NULLs among the accepted rows only, as for CSV.
            let accepted_value = when(!bad.clone(), column(&c.name)).end().map_err(err)?;
            counts.push(count(accepted_value).alias(format!("__non_null_{i}")));
        }
        let counting = async {
            checked
                .clone()
                .aggregate(Vec::new(), counts)?
                .collect()
                .await
        };
        let hashing = crate::checksum::sha256_of(file.store.as_ref(), &file.path);
        let (batches, sha256) = futures::join!(counting, hashing);
        let batches = batches.map_err(err)?;
        let sha256 = sha256.map_err(|error| SourceError::Io {
            source_name: source.name.value.clone(),
            file: file.url.clone(),
            error,
        })?;
        let values: Vec<usize> = match batches.iter().find(|b| b.num_rows() > 0) {
            Some(batch) => batch
                .columns()
                .iter()
                .map(|c| {
                    c.as_primitive_opt::<Int64Type>()
                        .filter(|a| !a.is_empty() && a.is_valid(0))
                        .map_or(0, |a| usize::try_from(a.value(0)).unwrap_or(0))
                })
                .collect(),
            None => vec![0; source.schema.len() + 2],
        };
        let (rows, rejected) = (values[0], values[1]);
        let accepted = rows.saturating_sub(rejected);
        for (nulls, non_null) in loaded.null_counts.iter_mut().zip(&values[2..]) {
            *nulls += accepted.saturating_sub(*non_null);
        }
        loaded.rows_per_file.push(rows);
        loaded.rejected_per_file.push(rejected);
        loaded.rows_in_table += accepted;
        loaded.encodings.push(source.format.name());
        loaded.sha256_per_file.push(sha256);
        if rejected > 0 {
            rejected_frames
                .push(crate::lossless::rejected(&file.url, checked.clone()).map_err(err)?);
        }
        frames.push(crate::lossless::accepted(source, checked).map_err(err)?);
        // The files were read whole to be counted, so the limits are judged per file.
        if let Some(limit) = source
            .bad_row_limits
            .exceeded(loaded.rows_read() as u64, loaded.rows_rejected() as u64)
        {
            loaded.stopped = Some(BadRowStop {
                file: file.url.clone(),
                limit,
            });
            break;
        }
    }
    let whole = |e| SourceError::Read {
        source_name: source.name.value.clone(),
        file: source.location.value.clone(),
        error: Box::new(e),
    };
    let union = |frames: Vec<DataFrame>| {
        let mut iter = frames.into_iter();
        iter.next()
            .map(|first| iter.try_fold(first, |acc, df| acc.union(df)))
            .transpose()
    };
    if let Some(bad) = union(rejected_frames).map_err(whole)? {
        let order = ["file", "raw", "reason"].map(|c| column(c).sort(true, false));
        let bad = bad.sort(order.to_vec()).map_err(whole)?;
        // Under `fail` a few rows say enough; only the quarantine needs them all.
        let sample = bad.clone().limit(0, Some(BAD_ROW_SAMPLE)).map_err(whole)?;
        let mut stream = bad_row_stream(&BadRowSource::Plan(sample))
            .await
            .map_err(whole)?;
        while let Some(batch) = stream.next().await {
            loaded
                .bad_row_sample
                .extend(bad_rows_of(&batch.map_err(whole)?).map_err(|e| whole(e.into()))?);
        }
        if source.on_bad_row == OnBadRow::Quarantine {
            loaded.bad_rows = Some(BadRowSource::Plan(bad));
        }
    }
    let Some(mut df) = union(frames).map_err(whole)? else {
        return Err(SourceError::NoFiles {
            source_name: source.name.value.clone(),
            location: source.location.value.clone(),
        });
    };
    if has_pii(source) {
        df = df
            .select(protect_exprs(source, pii_key.unwrap_or_default()))
            .map_err(whole)?;
    }
    loaded.table = df.into_view();
    Ok(loaded)
}

/// The rows of a batch in the columns of [`bad_rows_schema`].
pub fn bad_rows_of(batch: &RecordBatch) -> Result<Vec<BadRow>, ArrowError> {
    let text = |i: usize| batch.column(i).as_string_opt::<i32>();
    let (Some(file), Some(line), Some(raw), Some(reason)) = (
        text(0),
        batch.column(1).as_primitive_opt::<Int64Type>(),
        text(2),
        text(3),
    ) else {
        return Err(ArrowError::SchemaError(format!(
            "bad rows with unexpected columns: {}",
            batch.schema()
        )));
    };
    Ok((0..batch.num_rows())
        .map(|i| BadRow {
            file: file.value(i).to_string(),
            line: u64::try_from(line.value(i)).unwrap_or_default(),
            raw: raw.value(i).to_string(),
            reason: reason.value(i).to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use datafusion::arrow::util::display::array_value_to_string;
    use segflow_spec::{ColumnSpec, ColumnType, Location, OnBadRow, Pii, SchemaDrift, Spanned};

    use super::*;
    use crate::csv_file::read_csv_file;
    use crate::privacy::pseudonymize;

    fn col(name: &str, ty: ColumnType, required: bool, pii: Option<Pii>) -> ColumnSpec {
        ColumnSpec {
            name: name.into(),
            data_type: ty,
            required,
            format: None,
            pii,
            loc: Location::default(),
        }
    }

    fn source(location: &str, format: Format, csv: CsvOptions) -> Source {
        Source {
            name: Spanned::new("orders".into(), Location::default()),
            location: Spanned::new(location.into(), Location::default()),
            format,
            csv,
            schema: vec![
                col("id", ColumnType::Int64, true, None),
                col("email", ColumnType::String, false, Some(Pii::Hash)),
                col("phone", ColumnType::String, false, Some(Pii::Drop)),
                col("amount", ColumnType::Float64, false, None),
            ],
            identifiers: Default::default(),
            on_bad_row: OnBadRow::Quarantine,
            bad_row_limits: BadRowLimits::default(),
            checks: Vec::new(),
            drift: SchemaDrift::default(),
            sheet: None,
            vintage: None,
        }
    }

    /// A fresh directory under the system's temporary directory.
    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("segflow-sources-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("in")).expect("temp dir");
        std::fs::create_dir_all(dir.join("scratch")).expect("temp dir");
        dir
    }

    async fn rows_of(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
        let batches = ctx
            .sql(sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        batches
            .iter()
            .flat_map(|b| {
                (0..b.num_rows()).map(move |i| {
                    b.columns()
                        .iter()
                        .map(|c| array_value_to_string(c, i).expect("display"))
                        .collect()
                })
            })
            .collect()
    }

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn csv_files_stream_into_a_scratch_table_with_bad_rows_on_disk() {
        let dir = temp_dir("csv");
        let mut a = String::from("id,email,phone,amount\n");
        let mut b = String::from("id,email,phone,amount\r\n");
        for i in 0..2000 {
            match i % 97 {
                13 => a.push_str(&format!("{i},x{i}@example.com,555,not a number\n")),
                14 => a.push_str(&format!("{i},\"quoted\nline break\",555\n")),
                _ => a.push_str(&format!("{i},x{i}@example.com,555,{i}.5\n")),
            }
            match i % 89 {
                1 => b.push_str(",nobody@example.com,1,1\r\n"),
                _ => b.push_str(&format!("{},,\"5\r\n55\",{i}\r\n", 10_000 + i)),
            }
        }
        let a_bytes = a.into_bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b.as_bytes()).expect("gzip");
        let b_gz = gz.finish().expect("gzip");
        std::fs::write(dir.join("in/a.csv"), &a_bytes).expect("write");
        std::fs::write(dir.join("in/b.csv.gz"), &b_gz).expect("write");
        let location = format!("{}/in/*", dir.display());
        let src = source(&location, Format::Csv, CsvOptions::default());
        let ctx = SessionContext::new();
        let files = crate::location::list_files(&ctx, &src)
            .await
            .expect("files");
        assert_eq!(files.len(), 2);
        let key = b"secret".as_slice();
        let mut results = Vec::new();
        for (chunk_bytes, sub) in [(700, "small"), (CHUNK_BYTES, "large")] {
            let scratch = dir.join("scratch").join(sub);
            std::fs::create_dir_all(&scratch).expect("scratch");
            let loaded = load_with(&ctx, &src, &files, Some(key), &scratch, chunk_bytes)
                .await
                .expect("loads");
            results.push(loaded);
        }
        // The whole-file reader is the reference for counts, lines, raw text and reasons.
        let declared = Arc::new(declared_schema(&src));
        let whole: Vec<_> = [(&files[0], &a_bytes), (&files[1], &b_gz)]
            .iter()
            .map(|(f, bytes)| {
                read_csv_file(
                    "orders",
                    &f.url,
                    bytes,
                    &src.csv,
                    &src.schema,
                    src.drift,
                    &declared,
                )
                .expect("whole")
            })
            .collect();
        let expected_bad: Vec<BadRow> = whole.iter().flat_map(|w| w.bad_rows.clone()).collect();
        assert!(expected_bad.len() > 40, "bad rows in several chunks");
        for loaded in &results {
            assert_eq!(loaded.rows_per_file, vec![2000, 2000]);
            assert_eq!(
                loaded.rejected_per_file,
                whole.iter().map(|w| w.bad_rows.len()).collect::<Vec<_>>()
            );
            assert_eq!(loaded.sha256_per_file, vec![sha(&a_bytes), sha(&b_gz)]);
            assert_eq!(loaded.encodings, vec!["utf-8", "utf-8"]);
            assert_eq!(loaded.rows_in_table, 4000 - expected_bad.len());
            assert_eq!(loaded.rows_accepted(), loaded.rows_in_table);
            assert_eq!(
                loaded.bad_row_sample,
                expected_bad[..BAD_ROW_SAMPLE].to_vec()
            );
            let Some(BadRowSource::File(path)) = &loaded.bad_rows else {
                panic!("bad rows in a file: {:?}", loaded.bad_rows);
            };
            let on_disk: Vec<BadRow> = read_bad_rows(path)
                .expect("opens")
                .flat_map(|b| bad_rows_of(&b.expect("batch")).expect("columns"))
                .collect();
            assert_eq!(on_disk, expected_bad);
            // Email is NULL in every row of b.csv.gz; id is never NULL among accepted rows.
            let accepted_b = 2000 - loaded.rejected_per_file[1];
            assert_eq!(loaded.null_counts, vec![0, accepted_b, 0, 0]);
        }
        for (i, loaded) in results.into_iter().enumerate() {
            ctx.register_table(format!("t{i}"), loaded.table)
                .expect("register");
        }
        let fields: Vec<String> = ctx
            .table("t0")
            .await
            .expect("table")
            .schema()
            .fields()
            .iter()
            .map(|f| format!("{}:{}", f.name(), f.data_type()))
            .collect();
        assert_eq!(fields, ["id:Int64", "email:Utf8", "amount:Float64"]);
        let small = rows_of(&ctx, "SELECT * FROM t0 ORDER BY id").await;
        let large = rows_of(&ctx, "SELECT * FROM t1 ORDER BY id").await;
        assert_eq!(small, large);
        assert_eq!(small.len(), 4000 - expected_bad.len());
        assert_eq!(
            small[0],
            vec!["0", &pseudonymize(key, "x0@example.com"), "0.5"]
        );
        let filtered = rows_of(&ctx, "SELECT amount FROM t0 WHERE id = 10005").await;
        assert_eq!(filtered, vec![vec!["5.0"]]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parquet_and_json_lines_stay_lazy_with_counts_from_an_aggregate() {
        let dir = temp_dir("lazy");
        let ctx = SessionContext::new();
        let parquet = dir.join("in/p.parquet");
        ctx.sql(
            "SELECT CAST(column1 AS INT) AS id, column2 AS email, column3 AS phone, column4 AS amount \
             FROM (VALUES (1, 'a@x', '1', 1.5), (2, NULL, '2', NULL), (3, 'c@x', NULL, 3.0))",
        )
        .await
        .expect("plan")
        .write_parquet(
            parquet.to_str().expect("utf-8 path"),
            datafusion::dataframe::DataFrameWriteOptions::new(),
            None,
        )
        .await
        .expect("parquet");
        let parquet_file = std::fs::read_dir(&parquet)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.expect("entry").path())
            .unwrap_or(parquet.clone());
        let src = source(
            &format!("{}", parquet_file.display()),
            Format::Parquet,
            CsvOptions::default(),
        );
        let files = crate::location::list_files(&ctx, &src)
            .await
            .expect("files");
        let key = b"k".as_slice();
        let loaded = load(&ctx, &src, &files, Some(key), &dir.join("scratch"))
            .await
            .expect("loads");
        assert_eq!(loaded.rows_per_file, vec![3]);
        assert_eq!(loaded.null_counts, vec![0, 1, 1, 1]);
        assert_eq!(loaded.encodings, vec!["parquet"]);
        let bytes = std::fs::read(&parquet_file).expect("read");
        assert_eq!(loaded.sha256_per_file, vec![sha(&bytes)]);
        ctx.register_table("p", loaded.table).expect("register");
        let plan = rows_of(&ctx, "EXPLAIN SELECT amount FROM p WHERE id = 2").await;
        let plan = format!("{plan:?}");
        assert!(
            !plan.contains("MemoryExec")
                && !plan.contains("DataSourceExec: partitions=1, partition_sizes"),
            "{plan}"
        );
        assert!(
            plan.contains("predicate="),
            "filter pushed into the scan: {plan}"
        );
        assert_eq!(
            rows_of(&ctx, "SELECT id, email FROM p ORDER BY id").await,
            vec![
                vec!["1".to_string(), pseudonymize(key, "a@x")],
                vec!["2".to_string(), String::new()],
                vec!["3".to_string(), pseudonymize(key, "c@x")],
            ]
        );
        assert!(!plan.contains("phone"));

        let json = dir.join("in/j.jsonl");
        std::fs::write(
            &json,
            "{\"id\": 1, \"email\": \"a@x\", \"amount\": 2.5}\n{\"id\": 2}\n",
        )
        .expect("write");
        let src = source(
            &json.display().to_string(),
            Format::JsonLines,
            CsvOptions::default(),
        );
        let files = crate::location::list_files(&ctx, &src)
            .await
            .expect("files");
        let loaded = load(&ctx, &src, &files, Some(key), &dir.join("scratch"))
            .await
            .expect("loads");
        assert_eq!(loaded.rows_per_file, vec![2]);
        assert_eq!(loaded.null_counts, vec![0, 1, 2, 1]);
        ctx.register_table("j", loaded.table).expect("register");
        assert_eq!(
            rows_of(&ctx, "SELECT id, email, amount FROM j ORDER BY id").await,
            vec![
                vec!["1".to_string(), pseudonymize(key, "a@x"), "2.5".into()],
                vec!["2".to_string(), String::new(), String::new()],
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_invalid_utf8_byte_refuses_the_whole_file_under_quarantine() {
        let dir = temp_dir("invalid-utf8");
        let mut text = b"id,email,phone,amount\n".to_vec();
        for i in 1..=40 {
            if i == 17 {
                text.extend_from_slice(b"17,M\xfcller@x,1,1.5\n");
            } else {
                text.extend_from_slice(format!("{i},x{i}@x,1,{i}.5\n").as_bytes());
            }
        }
        std::fs::write(dir.join("in/a.csv"), &text).expect("write");
        let mut src = source(
            &format!("{}/in/a.csv", dir.display()),
            Format::Csv,
            CsvOptions::default(),
        );
        let ctx = SessionContext::new();
        let files = crate::location::list_files(&ctx, &src)
            .await
            .expect("files");
        for chunk_bytes in [64, CHUNK_BYTES] {
            let loaded = load_with(
                &ctx,
                &src,
                &files,
                Some(b"k"),
                &dir.join("scratch"),
                chunk_bytes,
            )
            .await
            .expect("quarantine reads on");
            assert_eq!(loaded.rows_per_file, vec![40]);
            assert_eq!(loaded.rejected_per_file, vec![1]);
            assert_eq!(loaded.rows_in_table, 39);
            let bad = &loaded.bad_row_sample[0];
            assert_eq!(
                (bad.line, bad.raw.as_str()),
                (18, "<withheld>,<withheld>,<withheld>,<withheld>")
            );
            assert!(
                bad.reason
                    .starts_with("column `email` holds byte 0xFC, which is not valid UTF-8"),
                "{}",
                bad.reason
            );
        }
        src.on_bad_row = OnBadRow::Fail;
        let err = load(&ctx, &src, &files, Some(b"k"), &dir.join("scratch"))
            .await
            .expect_err("fail refuses the file");
        let message = err.to_string();
        assert!(
            matches!(err, SourceError::Decode { .. })
                && message.contains("a.csv`: not valid UTF-8 at line 18"),
            "{message}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn empty_file_is_a_runtime_error_not_zero_rows() {
        let dir = temp_dir("empty");
        std::fs::write(dir.join("in/a.csv"), "id,email,phone,amount\n1,a@x,1,2.5\n")
            .expect("write");
        std::fs::write(dir.join("in/b.csv"), "").expect("write");
        let src = source(
            &format!("{}/in/*.csv", dir.display()),
            Format::Csv,
            CsvOptions::default(),
        );
        let ctx = SessionContext::new();
        let files = crate::location::list_files(&ctx, &src)
            .await
            .expect("files");
        let loaded = load(&ctx, &src, &files, Some(b"k"), &dir.join("scratch"))
            .await
            .expect("an empty file is 0 rows");
        assert_eq!(loaded.rows_per_file, vec![1, 0]);
        assert_eq!(loaded.rejected_per_file, vec![0, 0]);
        assert_eq!(loaded.rows_in_table, 1);
        assert_eq!(loaded.sha256_per_file[1], sha(b""));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Time and memory of reading one orders CSV, the old way (object bytes whole, whole-file
    /// reader, a MemTable, a second read for the checksum) or the new one (`load`). Run one
    /// mode per process under `/usr/bin/time -v`:
    /// `SEGFLOW_MEASURE_CSV=orders.csv SEGFLOW_MEASURE_MODE=old|new [SEGFLOW_MEASURE_QUOTED=1]
    /// cargo test -p segflow-sources measure_orders_csv -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, not a test: needs SEGFLOW_MEASURE_CSV"]
    async fn measure_orders_csv() {
        let Ok(path) = std::env::var("SEGFLOW_MEASURE_CSV") else {
            return;
        };
        let mode = std::env::var("SEGFLOW_MEASURE_MODE").unwrap_or_else(|_| "new".into());
        let quoted = std::env::var("SEGFLOW_MEASURE_QUOTED").is_ok_and(|v| v == "1");
        let mut src = source(
            &path,
            Format::Csv,
            CsvOptions {
                quoted_newlines: quoted,
                ..CsvOptions::default()
            },
        );
        src.schema = vec![
            col("order_id", ColumnType::Int64, true, None),
            col("customer_id", ColumnType::String, true, None),
            col("order_date", ColumnType::Date, true, None),
            col(
                "amount",
                ColumnType::Decimal {
                    precision: 12,
                    scale: 2,
                },
                true,
                None,
            ),
            col("category", ColumnType::String, false, None),
        ];
        let ctx = SessionContext::new();
        let files = crate::location::list_files(&ctx, &src)
            .await
            .expect("files");
        let started = std::time::Instant::now();
        let (rows, sha) = if mode == "old" {
            let file = &files[0];
            let checksum = crate::checksum::sha256_of(file.store.as_ref(), &file.path);
            let read = async {
                let bytes = file
                    .store
                    .get(&file.path)
                    .await
                    .expect("get")
                    .bytes()
                    .await
                    .expect("bytes");
                let (url, csv, declared) = (file.url.clone(), src.csv.clone(), src.schema.clone());
                let schema = Arc::new(declared_schema(&src));
                let table_schema = Arc::clone(&schema);
                let read = tokio::task::spawn_blocking(move || {
                    read_csv_file(
                        "orders",
                        &url,
                        &bytes,
                        &csv,
                        &declared,
                        SchemaDrift::default(),
                        &schema,
                    )
                    .expect("reads")
                })
                .await
                .expect("joins");
                let rows: usize = read.batches.iter().map(RecordBatch::num_rows).sum();
                let parts = ctx.state().config().target_partitions();
                let mut split = vec![Vec::new(); parts];
                for (i, b) in read.batches.into_iter().enumerate() {
                    split[i % parts].push(b);
                }
                let table =
                    datafusion::datasource::MemTable::try_new(table_schema, split).expect("table");
                (rows, table)
            };
            let (sha, (rows, table)) = futures::join!(checksum, read);
            let _keep = table;
            (rows, sha.expect("sha"))
        } else {
            let scratch = temp_dir("measure").join("scratch");
            let loaded = load(&ctx, &src, &files, None, &scratch)
                .await
                .expect("loads");
            (loaded.rows_in_table, loaded.sha256_per_file[0].clone())
        };
        println!(
            "mode={mode} quoted_newlines={quoted} rows={rows} sha256={sha} seconds={:.2}",
            started.elapsed().as_secs_f64()
        );
    }
}
