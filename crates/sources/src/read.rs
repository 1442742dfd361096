//! Reading a source's files into typed tables.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Column;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Expr, cast, lit};
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions};
use object_store::ObjectStoreExt;
use segflow_spec::{CsvOptions, Format, Source};

use crate::csv_file::{BadRow, CsvFileRead, FileProblem, csv_reader, read_csv_file};
use crate::error::SourceError;
use crate::location::InputFile;
use crate::privacy::{has_pii, protect, protected_schema};
use crate::schema::{arrow_type, match_columns};
use crate::xlsx::sheet_as_csv;

/// A source read into memory, with what the manifest needs to know about it.
#[derive(Debug)]
pub struct LoadedSource {
    pub table: Arc<MemTable>,
    /// Records read per input file (accepted + rejected), in the order of the files given.
    pub rows_per_file: Vec<usize>,
    /// Rows that could not be parsed or typed, with file, line, raw text and reason.
    pub bad_rows: Vec<BadRow>,
    /// Text encoding per file (CSV: as declared or detected; other formats: their own).
    pub encodings: Vec<&'static str>,
    /// NULL count per declared column (accepted rows), in declaration order.
    pub null_counts: Vec<usize>,
    /// Rows in `table`, counted from the batches handed to it.
    pub rows_in_table: usize,
    /// Column drift tolerated by the source's `schema_drift` policy, per file.
    pub drift_warnings: Vec<String>,
}

impl LoadedSource {
    /// Records read from all files.
    pub fn rows_read(&self) -> usize {
        self.rows_per_file.iter().sum()
    }

    /// Records that passed into the table: `rows_read() - bad_rows.len()`.
    pub fn rows_accepted(&self) -> usize {
        self.rows_read() - self.bad_rows.len()
    }
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
async fn csv_header(source: &Source, file: &InputFile) -> Result<Vec<String>, SourceError> {
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
        Format::Parquet => {
            let options = ParquetReadOptions {
                file_extension: "",
                ..ParquetReadOptions::default()
            };
            let df = ctx
                .read_parquet(file.url.as_str(), options)
                .await
                .map_err(err)?;
            select_declared(source, file, df)
        }
        Format::JsonLines => {
            let schema = declared_schema(source);
            let options = JsonReadOptions {
                schema: Some(&schema),
                file_extension: "",
                ..JsonReadOptions::default()
            };
            let df = ctx
                .read_json(file.url.as_str(), options)
                .await
                .map_err(err)?;
            select_declared(source, file, df)
        }
    }
}

/// Self-describing files (Parquet): find each declared column by name and cast it to the
/// declared type, so a source has the same schema whatever wrote the file.
fn select_declared(
    source: &Source,
    file: &InputFile,
    df: DataFrame,
) -> Result<(DataFrame, Vec<String>), SourceError> {
    let names: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let matched = match_columns(
        &source.name.value,
        &file.url,
        &names,
        &source.schema,
        source.drift,
    )?;
    let exprs = declared_exprs(source, &matched.per_declared_column, &names);
    let df = df.select(exprs).map_err(|e| read_error(source, file, e))?;
    Ok((df, matched.warnings))
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

/// Reads a CSV file with segflow's own reader (line numbers, encodings, decimal commas).
async fn load_csv_file(
    source: &Source,
    file: &InputFile,
    schema: &SchemaRef,
) -> Result<CsvFileRead, SourceError> {
    let io = |error| SourceError::Io {
        source_name: source.name.value.clone(),
        file: file.url.clone(),
        error,
    };
    let bytes = file
        .store
        .get(&file.path)
        .await
        .map_err(io)?
        .bytes()
        .await
        .map_err(io)?;
    let drift = source.drift;
    let (name, url, opts, declared, schema) = (
        source.name.value.clone(),
        file.url.clone(),
        source.csv.clone(),
        source.schema.clone(),
        Arc::clone(schema),
    );
    let (xlsx, sheet) = (source.format == Format::Xlsx, source.sheet.clone());
    let parsed = tokio::task::spawn_blocking(move || {
        if xlsx {
            let text = sheet_as_csv(bytes.to_vec(), sheet.as_deref())?;
            let opts = CsvOptions {
                null_values: opts.null_values,
                ..CsvOptions::default()
            };
            let mut read = read_csv_file(
                &name,
                &url,
                text.as_bytes(),
                &opts,
                &declared,
                drift,
                &schema,
            )?;
            read.encoding = "xlsx";
            return Ok(read);
        }
        read_csv_file(&name, &url, &bytes, &opts, &declared, drift, &schema)
    })
    .await
    .map_err(|e| read_error(source, file, DataFusionError::External(Box::new(e))))?;
    parsed.map_err(|problem| match problem {
        FileProblem::Header(e) => e,
        FileProblem::Decode(message) => SourceError::Decode {
            source_name: source.name.value.clone(),
            file: file.url.clone(),
            message,
        },
        FileProblem::Arrow(e) => read_error(source, file, e.into()),
    })
}

/// Reads every file of a source into memory, file by file so errors and counts name the file.
/// Batches are spread over `partitions` table partitions so later steps run in parallel.
pub async fn load(
    ctx: &SessionContext,
    source: &Source,
    files: &[InputFile],
    pii_key: Option<&[u8]>,
) -> Result<LoadedSource, SourceError> {
    let schema = Arc::new(declared_schema(source));
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut loaded = LoadedSource {
        table: Arc::new(
            MemTable::try_new(Arc::clone(&schema), vec![Vec::new()]).map_err(|e| {
                SourceError::Read {
                    source_name: source.name.value.clone(),
                    file: source.location.value.clone(),
                    error: Box::new(e),
                }
            })?,
        ),
        rows_per_file: Vec::with_capacity(files.len()),
        bad_rows: Vec::new(),
        encodings: Vec::with_capacity(files.len()),
        null_counts: vec![0; source.schema.len()],
        rows_in_table: 0,
        drift_warnings: Vec::new(),
    };
    for file in files {
        let (file_batches, records) = if matches!(source.format, Format::Csv | Format::Xlsx) {
            let read = load_csv_file(source, file, &schema).await?;
            loaded.encodings.push(read.encoding);
            loaded.drift_warnings.extend(read.warnings);
            loaded.bad_rows.extend(read.bad_rows);
            (read.batches, read.records)
        } else {
            let (df, warnings) = scan_file(ctx, source, file).await?;
            loaded.drift_warnings.extend(warnings);
            let parts = df
                .collect_partitioned()
                .await
                .map_err(|e| read_error(source, file, e))?;
            // Re-label batches with the declared schema (identical fields; the nullability
            // of a CAST may differ), so the MemTable has one schema.
            let batches = parts
                .into_iter()
                .flatten()
                .filter(|b| b.num_rows() > 0)
                .map(|b| RecordBatch::try_new(Arc::clone(&schema), b.columns().to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| read_error(source, file, e.into()))?;
            let records = batches.iter().map(RecordBatch::num_rows).sum();
            loaded.encodings.push(source.format.name());
            (batches, records)
        };
        for batch in &file_batches {
            for (count, col) in loaded.null_counts.iter_mut().zip(batch.columns()) {
                *count += col.null_count();
            }
        }
        loaded.rows_per_file.push(records);
        batches.extend(file_batches);
    }
    loaded.rows_in_table = batches.iter().map(RecordBatch::num_rows).sum();
    let mut schema = schema;
    if has_pii(source) {
        let protected = protected_schema(source, &schema);
        let key = pii_key.unwrap_or_default();
        batches = batches
            .iter()
            .map(|b| protect(source, key, b, &protected))
            .collect::<Result<_, _>>()
            .map_err(|e| SourceError::Read {
                source_name: source.name.value.clone(),
                file: source.location.value.clone(),
                error: Box::new(e.into()),
            })?;
        schema = protected;
    }
    let partitions = ctx.state().config().target_partitions().max(1);
    let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions.min(batches.len().max(1))];
    let n = parts.len();
    for (i, batch) in batches.into_iter().enumerate() {
        parts[i % n].push(batch);
    }
    loaded.table = Arc::new(
        MemTable::try_new(schema, parts).map_err(|e| SourceError::Read {
            source_name: source.name.value.clone(),
            file: source.location.value.clone(),
            error: Box::new(e),
        })?,
    );
    Ok(loaded)
}
