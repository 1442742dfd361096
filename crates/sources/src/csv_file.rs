//! CSV as CRM systems write it: any delimiter, quoted fields with delimiters, quotes and line
//! breaks, CRLF, a byte-order mark, Windows-1252 or Latin-1 text, gzip or zstd compression,
//! decimal commas and declared date formats.
//!
//! Every record keeps its line number, so a row that cannot be typed is reported (or
//! quarantined) as `file:line`, with its raw text and the reason. Rows are never dropped
//! silently: accepted + rejected = records read, for every file.

use std::io::Read;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder,
    Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use segflow_spec::{ColumnSpec, ColumnType, CsvOptions, Pii};
#[cfg(test)]
use segflow_spec::{SchemaDrift, TextEncoding};

#[cfg(test)]
use crate::schema::match_columns;
use crate::values::{Value, parse};

/// Rows per record batch built from a file.
const BATCH_ROWS: usize = 65_536;

/// A row that could not be read, as it stood in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub file: String,
    /// 1-based line where the record starts (a quoted line break makes records span lines).
    pub line: u64,
    pub raw: String,
    pub reason: String,
}

/// One file read whole: typed batches, the rows set aside, and the encoding found.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct CsvFileRead {
    pub batches: Vec<RecordBatch>,
    /// Schema drift tolerated under the source's policy.
    pub warnings: Vec<String>,
    pub bad_rows: Vec<BadRow>,
    pub records: usize,
    pub encoding: &'static str,
}

/// Why a whole file could not be read (as opposed to single bad rows).
#[derive(Debug)]
pub(crate) enum FileProblem {
    Decode(String),
    /// The object store failed while the file was being read.
    Io(object_store::Error),
    /// The scratch file could not be written.
    Scratch(datafusion::arrow::error::ArrowError),
    Header(crate::error::SourceError),
    Arrow(datafusion::arrow::error::ArrowError),
    /// The source's bad-row limits were broken: reading stops (the sink knows the counts).
    BadRowLimit,
}

/// A record reader with the source's dialect; headers are handled by segflow, and rows with
/// another field count are bad rows, not parse errors.
pub(crate) fn csv_reader<R: Read>(opts: &CsvOptions, input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(opts.delimiter)
        .quote(opts.quote)
        .escape(opts.escape)
        .from_reader(input)
}

#[cfg(test)]
fn decompress(name: &str, bytes: &[u8]) -> Result<Vec<u8>, FileProblem> {
    let lower = name.to_ascii_lowercase();
    let problem = |e: std::io::Error| FileProblem::Decode(format!("cannot decompress: {e}"));
    if lower.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(problem)?;
        Ok(out)
    } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
        zstd::decode_all(bytes).map_err(problem)
    } else {
        Ok(bytes.to_vec())
    }
}

#[cfg(test)]
fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Bytes → text in the declared (or detected) encoding, without a byte-order mark.
#[cfg(test)]
fn decode(bytes: Vec<u8>, encoding: TextEncoding) -> Result<(String, &'static str), FileProblem> {
    let utf8 = |bytes: Vec<u8>| -> Result<String, FileProblem> {
        let body = bytes
            .strip_prefix(b"\xef\xbb\xbf")
            .map(<[u8]>::to_vec)
            .unwrap_or(bytes);
        String::from_utf8(body).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            FileProblem::Decode(format!(
                "not valid UTF-8 at line {} (byte {at}); declare `encoding: windows-1252`, `iso-8859-1` or `auto`",
                line_of(e.as_bytes(), at)
            ))
        })
    };
    match encoding {
        TextEncoding::Utf8 => Ok((utf8(bytes)?, "utf-8")),
        TextEncoding::Windows1252 => {
            let (text, _, _) = encoding_rs::WINDOWS_1252.decode(&bytes);
            Ok((text.into_owned(), "windows-1252"))
        }
        TextEncoding::Latin1 => Ok((bytes.iter().map(|&b| char::from(b)).collect(), "iso-8859-1")),
        TextEncoding::Auto => {
            if bytes.starts_with(b"\xef\xbb\xbf") || std::str::from_utf8(&bytes).is_ok() {
                Ok((utf8(bytes)?, "utf-8"))
            } else {
                let (text, _, _) = encoding_rs::WINDOWS_1252.decode(&bytes);
                Ok((text.into_owned(), "windows-1252"))
            }
        }
    }
}

enum Builder {
    Utf8(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Decimal(Decimal128Builder),
}

impl Builder {
    fn new(ty: ColumnType) -> Self {
        match ty {
            ColumnType::String => Builder::Utf8(StringBuilder::new()),
            ColumnType::Int32 => Builder::Int32(Int32Builder::new()),
            ColumnType::Int64 => Builder::Int64(Int64Builder::new()),
            ColumnType::Float64 => Builder::Float64(Float64Builder::new()),
            ColumnType::Boolean => Builder::Boolean(BooleanBuilder::new()),
            ColumnType::Date => Builder::Date(Date32Builder::new()),
            ColumnType::Timestamp => {
                Builder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            ColumnType::Decimal { precision, scale } => Builder::Decimal(
                Decimal128Builder::new()
                    .with_precision_and_scale(precision, scale)
                    .unwrap_or_else(|_| Decimal128Builder::new()),
            ),
        }
    }

    /// Appends a value produced by [`parse`] for this builder's type.
    fn append(&mut self, v: &Value<'_>) {
        match (self, v) {
            (Builder::Utf8(b), Value::Str(s)) => b.append_value(s),
            (Builder::Int32(b), Value::I32(x)) => b.append_value(*x),
            (Builder::Int64(b), Value::I64(x)) => b.append_value(*x),
            (Builder::Float64(b), Value::F64(x)) => b.append_value(*x),
            (Builder::Boolean(b), Value::Bool(x)) => b.append_value(*x),
            (Builder::Date(b), Value::Date(x)) => b.append_value(*x),
            (Builder::Timestamp(b), Value::Timestamp(x)) => b.append_value(*x),
            (Builder::Decimal(b), Value::Decimal(x)) => b.append_value(*x),
            (b, _) => b.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Utf8(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Boolean(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::Decimal(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Boolean(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Decimal(b) => Arc::new(b.finish()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Builder::Utf8(b) => b.len(),
            Builder::Int32(b) => b.len(),
            Builder::Int64(b) => b.len(),
            Builder::Float64(b) => b.len(),
            Builder::Boolean(b) => b.len(),
            Builder::Date(b) => b.len(),
            Builder::Timestamp(b) => b.len(),
            Builder::Decimal(b) => b.len(),
        }
    }
}

/// Reads one CSV file's bytes, whole, into batches of the declared `schema` (declaration
/// order). This was the production reader before files were streamed; it stays as the
/// reference the streaming reader is tested against.
#[cfg(test)]
pub(crate) fn read_csv_file(
    source_name: &str,
    file: &str,
    bytes: &[u8],
    opts: &CsvOptions,
    declared: &[ColumnSpec],
    drift: SchemaDrift,
    schema: &SchemaRef,
) -> Result<CsvFileRead, FileProblem> {
    let (text, encoding) = decode(decompress(file, bytes)?, opts.encoding)?;
    let mut reader = csv_reader(opts, text.as_bytes());
    let mut record = csv::StringRecord::new();
    let header_read = reader
        .read_record(&mut record)
        .map_err(|e| FileProblem::Decode(format!("cannot parse the header row: {e}")))?;
    if !header_read {
        return Ok(CsvFileRead {
            batches: Vec::new(),
            warnings: Vec::new(),
            bad_rows: Vec::new(),
            records: 0,
            encoding,
        });
    }
    let header: Vec<String> = record.iter().map(str::to_string).collect();
    let matched =
        match_columns(source_name, file, &header, declared, drift).map_err(FileProblem::Header)?;
    let positions = matched.per_declared_column.clone();
    let body_start = (reader.position().byte() as usize).min(text.len());
    let redact: Vec<bool> = matched
        .per_file_column
        .iter()
        .map(|m| m.is_some_and(|c| matches!(c.pii, Some(Pii::Hash | Pii::Drop))))
        .collect();
    let job = Chunks {
        file,
        redact: &redact,
        header_len: header.len(),
        positions: &positions,
        declared,
        opts,
        schema,
    };
    // Without quoted line breaks every line break ends a record, so the body can be cut at
    // line breaks and the pieces typed on all cores; otherwise one piece, in order.
    let pieces = if opts.quoted_newlines {
        vec![(body_start, text.len())]
    } else {
        split_at_lines(&text, body_start, PARALLEL_PIECES)
    };
    let results: Vec<Result<Piece, FileProblem>> = std::thread::scope(|scope| {
        let handles: Vec<_> = pieces
            .iter()
            .map(|&(from, to)| {
                let (text, job) = (&text, &job);
                let first_line = 1 + text.as_bytes()[..from]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count() as u64;
                scope.spawn(move || job.read(&text[from..to], first_line, &[]))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(FileProblem::Decode("a CSV worker panicked".into())))
            })
            .collect()
    });
    let mut out = CsvFileRead {
        batches: Vec::new(),
        warnings: matched.warnings.clone(),
        bad_rows: Vec::new(),
        records: 0,
        encoding,
    };
    for piece in results {
        let piece = piece?;
        out.batches.extend(piece.batches);
        out.bad_rows.extend(piece.bad_rows);
        out.records += piece.records;
    }
    Ok(out)
}

/// Pieces of work for the reader threads of one file.
#[cfg(test)]
const PARALLEL_PIECES: usize = 8;

/// Cuts `text[from..]` into about `n` byte ranges that each end after a line break.
#[cfg(test)]
fn split_at_lines(text: &str, from: usize, n: usize) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let step = ((bytes.len() - from) / n.max(1)).max(1 << 20);
    let mut pieces = Vec::new();
    let mut start = from;
    while start < bytes.len() {
        let mut end = (start + step).min(bytes.len());
        while end < bytes.len() && bytes[end - 1] != b'\n' {
            end += 1;
        }
        pieces.push((start, end));
        start = end;
    }
    if pieces.is_empty() {
        pieces.push((from, from));
    }
    pieces
}

/// What a piece of a file yields.
#[derive(Debug)]
pub(crate) struct Piece {
    pub batches: Vec<RecordBatch>,
    pub bad_rows: Vec<BadRow>,
    pub records: usize,
}

/// Everything a reader thread needs to type records of one file.
#[derive(Debug)]
pub(crate) struct Chunks<'a> {
    pub file: &'a str,
    /// Per file column: personal data, never shown in raw text or reasons.
    pub redact: &'a [bool],
    pub header_len: usize,
    pub positions: &'a [Option<usize>],
    pub declared: &'a [ColumnSpec],
    pub opts: &'a CsvOptions,
    pub schema: &'a SchemaRef,
}

impl Chunks<'_> {
    /// Types the records of `text`, a piece of the file starting at line `first_line`.
    /// `invalid` lists the offsets in `text` (ascending) where a byte that is not valid in
    /// the file's encoding was replaced by U+FFFD, with the byte: their records are bad rows.
    pub(crate) fn read(
        &self,
        text: &str,
        first_line: u64,
        invalid: &[(usize, u8)],
    ) -> Result<Piece, FileProblem> {
        let mut builders: Vec<Builder> = self
            .declared
            .iter()
            .map(|c| Builder::new(c.data_type))
            .collect();
        let mut out = Piece {
            batches: Vec::new(),
            bad_rows: Vec::new(),
            records: 0,
        };
        let (mut from, mut line) = (0, first_line);
        while let Some(resume) =
            self.read_part(&text[from..], line, from, invalid, &mut builders, &mut out)?
        {
            line += crate::stream::count_newlines(&text.as_bytes()[from..from + resume]);
            from += resume;
        }
        if builders.first().is_some_and(|b| b.len() > 0) {
            out.batches.push(finish_batch(&mut builders, self.schema)?);
        }
        Ok(out)
    }

    /// A field of the file by its declared column name, else by its position.
    fn field_name(&self, field: usize) -> String {
        self.positions
            .iter()
            .position(|p| *p == Some(field))
            .map_or_else(
                || format!("field {}", field + 1),
                |d| format!("column `{}`", self.declared[d].name),
            )
    }

    /// Types the records of `text` (at offset `base` of the piece) until its end, or until a
    /// quote that is never closed: then that record is set aside and the offset of the line
    /// after the one where the quote opened is returned, to read on from there.
    ///
    /// Why read on: a quote that never closes cannot have meant to enclose the rest of the
    /// file, and the csv parser would make all of it one field of one record — a thousand
    /// lost rows counted as one. So the record counts as one bad row (raw text: its lines up
    /// to the one where the quote opened), and every line after it is read as the records
    /// it holds. Rows read therefore count the records as they physically stand in the file.
    fn read_part(
        &self,
        text: &str,
        first_line: u64,
        base: usize,
        invalid: &[(usize, u8)],
        builders: &mut [Builder],
        out: &mut Piece,
    ) -> Result<Option<usize>, FileProblem> {
        let (file, declared, opts, positions, schema) = (
            self.file,
            self.declared,
            self.opts,
            self.positions,
            self.schema,
        );
        let mut reader = csv_reader(opts, text.as_bytes());
        let mut record = csv::StringRecord::new();
        let mut lines = LineCounter {
            offset: 0,
            line: first_line,
        };
        loop {
            let start = reader.position().clone();
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    out.records += 1;
                    let at = (start.byte() as usize).min(text.len());
                    out.bad_rows.push(BadRow {
                        file: file.to_string(),
                        line: lines.line_at(text, at),
                        raw: String::new(),
                        reason: format!("cannot parse the record: {e}"),
                    });
                    continue;
                }
            }
            out.records += 1;
            // The parser's record start can sit on the line break before the record (CRLF), so
            // the start and its line number are taken from the text itself.
            let to = (reader.position().byte() as usize).min(text.len());
            let mut from =
                (record.position().map_or(start.byte(), csv::Position::byte) as usize).min(to);
            while from < to && matches!(text.as_bytes()[from], b'\r' | b'\n') {
                from += 1;
            }
            let mut bad = |reason: String, record: &csv::StringRecord, to: usize| BadRow {
                file: file.to_string(),
                line: lines.line_at(text, from),
                raw: if self.redact.iter().any(|r| *r) {
                    capped_raw(&protected_raw(record, opts.delimiter))
                } else {
                    capped_raw(
                        text.get(from..to)
                            .unwrap_or_default()
                            .trim_end_matches(['\r', '\n']),
                    )
                },
                reason,
            };
            if to == text.len()
                && let Some(quote) = open_quote(&text.as_bytes()[from..to], opts)
            {
                let quote = from + quote;
                let line_end = text.as_bytes()[quote..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(text.len(), |i| quote + i + 1);
                let quote_line =
                    first_line + crate::stream::count_newlines(&text.as_bytes()[..quote]);
                let cut = csv_reader(opts, &text.as_bytes()[from..line_end])
                    .records()
                    .next()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                let reason = format!(
                    "a quote opened at line {quote_line} is never closed; the record is set aside up to that line and reading goes on at line {}",
                    quote_line + 1
                );
                out.bad_rows.push(bad(reason, &cut, line_end));
                return Ok((line_end < text.len()).then_some(line_end));
            }
            if let Some(&(_, byte)) = invalid
                .get(invalid.partition_point(|&(o, _)| o < base + from)..)
                .and_then(<[_]>::first)
                .filter(|&&(o, _)| o < base + to)
            {
                let field = record.iter().position(|f| f.contains('\u{fffd}'));
                let reason = format!(
                    "{} holds byte 0x{byte:02X}, which is not valid UTF-8 (shown as U+FFFD in `raw`; if the whole file is in another encoding, declare `encoding: windows-1252`, `iso-8859-1` or `auto`)",
                    self.field_name(field.unwrap_or(0)),
                );
                out.bad_rows.push(bad(reason, &record, to));
                continue;
            }
            if record.len() != self.header_len {
                let reason = format!(
                    "the row has {} fields, the header has {}",
                    record.len(),
                    self.header_len
                );
                out.bad_rows.push(bad(reason, &record, to));
                continue;
            }
            if record.as_slice().contains('\0') {
                let field = record.iter().position(|f| f.contains('\0')).unwrap_or(0);
                let name = self.field_name(field);
                // No export writes a NUL into text: it marks a corrupt or binary stretch of
                // the file, and would end the value early in many tools downstream.
                let reason = format!("{name} holds a NUL byte (0x00): the file is corrupt here");
                out.bad_rows.push(bad(reason, &record, to));
                continue;
            }
            let mut values: Vec<Value<'_>> = Vec::with_capacity(declared.len());
            let mut problems = Vec::new();
            // As for the raw text: in a source with personal columns a bad record's fields may
            // be shifted (a delimiter lost in one field and one added in another keeps the
            // header's shape), so any cell can carry a personal value and none is quoted.
            let withhold_all = self.redact.iter().any(|r| *r);
            for (col, &pos) in declared.iter().zip(positions) {
                let cell = pos.map_or("", |p| &record[p]);
                match parse(cell, col.data_type, col.format.as_deref(), opts) {
                    Ok(Value::Null) if col.required => {
                        problems.push(format!("column `{}` is required but empty", col.name))
                    }
                    Ok(v) => values.push(v),
                    Err(_) if matches!(col.pii, Some(Pii::Hash | Pii::Drop)) => {
                        problems.push(format!(
                            "column `{}`: not a valid {} (value withheld: personal data)",
                            col.name, col.data_type
                        ))
                    }
                    Err(_) if withhold_all => problems.push(format!(
                        "column `{}`: not a valid {} (value withheld: the source has personal columns, and a shifted field may hold one)",
                        col.name, col.data_type
                    )),
                    Err(e) => problems.push(format!("column `{}`: {e}", col.name)),
                }
            }
            if !problems.is_empty() {
                out.bad_rows.push(bad(problems.join("; "), &record, to));
                continue;
            }
            for (b, v) in builders.iter_mut().zip(&values) {
                b.append(v);
            }
            if builders.first().is_some_and(|b| b.len() >= BATCH_ROWS) {
                out.batches.push(finish_batch(builders, schema)?);
            }
        }
        Ok(None)
    }
}

/// Where, in the raw text of the last record of a piece, a quote opens that is still open at
/// its end — the same reading of quotes as the csv parser's: a quote opens a field only as its
/// first character, a doubled quote inside is a literal quote, the escape character (if any)
/// takes the next character literally.
fn open_quote(raw: &[u8], opts: &CsvOptions) -> Option<usize> {
    #[derive(Clone, Copy)]
    enum S {
        FieldStart,
        Unquoted,
        Quoted(usize),
        QuoteInQuoted(usize),
        Escaped(usize),
    }
    let mut state = S::FieldStart;
    for (i, &b) in raw.iter().enumerate() {
        state = match state {
            S::FieldStart if b == opts.quote => S::Quoted(i),
            S::FieldStart | S::Unquoted => {
                if b == opts.delimiter || b == b'\n' || b == b'\r' {
                    S::FieldStart
                } else {
                    S::Unquoted
                }
            }
            S::Quoted(q) if opts.escape == Some(b) => S::Escaped(q),
            S::Quoted(q) if b == opts.quote => S::QuoteInQuoted(q),
            S::Quoted(q) | S::Escaped(q) => S::Quoted(q),
            S::QuoteInQuoted(q) if b == opts.quote => S::Quoted(q),
            S::QuoteInQuoted(_) => {
                if b == opts.delimiter || b == b'\n' || b == b'\r' {
                    S::FieldStart
                } else {
                    S::Unquoted
                }
            }
        };
    }
    match state {
        S::Quoted(q) | S::Escaped(q) => Some(q),
        _ => None,
    }
}

/// Bytes of a bad row's raw text kept for the quarantine and messages. A record is as long
/// as its text up to the next record boundary, so a quote that spans half a file makes one
/// record of gigabytes: held whole it would cost that much memory per bad row, and past
/// 2 GiB an Arrow string column cannot even hold it (its offsets are 32-bit).
pub(crate) const MAX_RAW_BYTES: usize = 64 * 1024;

/// `raw` as kept: whole up to [`MAX_RAW_BYTES`], else its first bytes (cut at a character
/// boundary) and a marker with the record's full length, so the cut is never mistaken for
/// the record.
pub(crate) fn capped_raw(raw: &str) -> String {
    if raw.len() <= MAX_RAW_BYTES {
        return raw.to_string();
    }
    let mut end = MAX_RAW_BYTES;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [raw text cut: first {end} of {} bytes]",
        &raw[..end],
        raw.len()
    )
}

/// The raw text of a bad row of a source with personal columns: every field withheld, only
/// the row's shape (how many fields) remains; the reason names the column and the problem.
/// Field positions cannot say which fields are personal in a bad row: a missing or extra
/// field, an open quote that swallowed the following lines, or a delimiter lost in one field
/// and added in another (the header's shape, shifted values) puts a phone number anywhere.
fn protected_raw(record: &csv::StringRecord, delimiter: u8) -> String {
    vec!["<withheld>"; record.len()].join(&char::from(delimiter).to_string())
}

/// Line numbers of byte offsets, counted incrementally: bad rows come in file order, so the
/// text is scanned once however many there are.
#[derive(Debug)]
struct LineCounter {
    offset: usize,
    line: u64,
}

impl Default for LineCounter {
    fn default() -> Self {
        Self { offset: 0, line: 1 }
    }
}

impl LineCounter {
    fn line_at(&mut self, text: &str, offset: usize) -> u64 {
        if offset < self.offset {
            *self = Self::default();
        }
        let bytes = &text.as_bytes()[self.offset..offset.min(text.len())];
        self.line += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        self.offset = offset.min(text.len());
        self.line
    }
}

fn finish_batch(builders: &mut [Builder], schema: &SchemaRef) -> Result<RecordBatch, FileProblem> {
    let columns: Vec<ArrayRef> = builders.iter_mut().map(Builder::finish).collect();
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(FileProblem::Arrow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::display::array_value_to_string;
    use segflow_spec::Location;

    fn col(name: &str, ty: ColumnType, required: bool) -> ColumnSpec {
        ColumnSpec {
            name: name.into(),
            data_type: ty,
            required,
            format: None,
            pii: None,
            loc: Location::default(),
        }
    }

    fn read(bytes: &[u8], opts: &CsvOptions, declared: &[ColumnSpec]) -> CsvFileRead {
        let schema = Arc::new(Schema::new(
            declared
                .iter()
                .map(|c| Field::new(&c.name, crate::schema::arrow_type(c.data_type), true))
                .collect::<Vec<_>>(),
        ));
        let whole = match read_csv_file(
            "s",
            "f.csv",
            bytes,
            opts,
            declared,
            SchemaDrift::default(),
            &schema,
        ) {
            Ok(r) => r,
            Err(e) => panic!("{e:?}"),
        };
        // The streaming reader must agree, in small chunks and in one.
        for chunk_bytes in [256, 64 << 20] {
            let streamed =
                crate::stream::tests::stream("f.csv", bytes, opts, declared, chunk_bytes)
                    .unwrap_or_else(|e| panic!("{e:?}"));
            crate::stream::tests::assert_same(&whole, &streamed);
        }
        whole
    }

    fn cells(r: &CsvFileRead) -> Vec<Vec<String>> {
        let b = &r.batches[0];
        (0..b.num_rows())
            .map(|i| {
                b.columns()
                    .iter()
                    .map(|c| array_value_to_string(c, i).expect("display"))
                    .collect()
            })
            .collect()
    }

    /// Regression (issue 11, "PII leaks through bad rows"): masking went by field position,
    /// but a row with an extra field has its phone number where no personal column is
    /// declared, and it was shown in clear in the quarantine text.
    #[test]
    fn a_shifted_row_shows_no_personal_data_in_its_raw_text() {
        let mut phone = col("phone", ColumnType::String, false);
        phone.pii = Some(Pii::Hash);
        let declared = [
            col("id", ColumnType::String, false),
            phone,
            col("amount", ColumnType::Float64, false),
        ];
        let bytes = b"id,phone,amount\nC1,+46701112233,1.5\nC11,oops,+46702223344,2.5\nC12,+46703334455,x\n";
        let r = read(bytes, &CsvOptions::default(), &declared);
        let raws: Vec<&str> = r.bad_rows.iter().map(|b| b.raw.as_str()).collect();
        // Every field withheld, whatever the row's shape (see the next test for why).
        assert_eq!(
            raws,
            [
                "<withheld>,<withheld>,<withheld>,<withheld>",
                "<withheld>,<withheld>,<withheld>"
            ]
        );
        for bad in &r.bad_rows {
            assert!(!bad.reason.contains("4670"), "{}", bad.reason);
        }
    }

    /// Regression (found by the CSV property test): a record of the header's shape whose
    /// quoted field swallowed a line break and the fields after it had its raw text withheld,
    /// but the reason quoted the unparsable cell — the e-mail address of the next column in
    /// it. Minimal input: `id<TAB>name<TAB>email`, then `"<TAB>anna.1@x.example\n5"<TAB>b<TAB>c`.
    #[test]
    fn a_reason_quotes_no_cell_of_a_record_that_spans_lines_in_a_personal_source() {
        let mut email = col("email", ColumnType::String, false);
        email.pii = Some(Pii::Hash);
        let declared = [
            col("id", ColumnType::Int64, false),
            col("name", ColumnType::String, false),
            email,
        ];
        let opts = CsvOptions {
            delimiter: b'\t',
            ..CsvOptions::default()
        };
        let bytes = b"id\tname\temail\n\"\tanna.1@x.example\n5\"\tb\tc\n1\tok\tz@x\n";
        let r = read(bytes, &opts, &declared);
        assert_eq!((r.records, r.bad_rows.len()), (2, 1));
        let bad = &r.bad_rows[0];
        assert_eq!(bad.raw, "<withheld>\t<withheld>\t<withheld>");
        assert!(!bad.reason.contains("anna"), "{}", bad.reason);
        assert!(
            bad.reason
                .starts_with("column `id`: not a valid int64 (value withheld"),
            "{}",
            bad.reason
        );
    }

    /// Regression (found by the CSV property test): masking by position trusted a bad row of
    /// the header's shape, but a delimiter lost in one field and another added elsewhere
    /// keeps the shape and shifts an e-mail address into a column that is not personal: it
    /// showed in clear in the raw text and in the reason (`cannot read `a@x.example` as …`).
    #[test]
    fn a_row_of_the_right_shape_with_shifted_fields_shows_no_personal_value() {
        let mut email = col("email", ColumnType::String, false);
        email.pii = Some(Pii::Hash);
        let declared = [
            col("id", ColumnType::Int64, false),
            email,
            col("amount", ColumnType::Float64, false),
        ];
        // `1;anna@x.example;2.5` with the first `;` moved after the e-mail address.
        let bytes = b"id;email;amount\n1anna;anna.1@x.example;2.5\n";
        let opts = CsvOptions {
            delimiter: b';',
            ..CsvOptions::default()
        };
        let r = read(bytes, &opts, &declared);
        assert_eq!(r.bad_rows.len(), 1);
        let bad = &r.bad_rows[0];
        assert_eq!(bad.raw, "<withheld>;<withheld>;<withheld>");
        assert_eq!(
            bad.reason,
            "column `id`: not a valid int64 (value withheld: the source has personal columns, and a shifted field may hold one)"
        );
    }

    /// Regression (issue 11 item 6, "a `raw` column over 2 GiB panics"): a quoted field that
    /// spans a large part of the file made one bad row whose raw text was all of it.
    #[test]
    fn an_absurdly_long_bad_record_keeps_only_its_head_and_its_length() {
        let declared = [
            col("id", ColumnType::Int64, false),
            col("name", ColumnType::String, false),
        ];
        // 300 000 lines swallowed by one quoted field (3.9 MB), plus an extra field: one
        // record with the wrong number of fields; 'é' is two bytes, so the cut falls inside
        // a character unless it is moved to a boundary.
        let swallowed = "é line\n".repeat(300_000);
        let text = format!("id,name\n12345,\"{swallowed}\",extra\n2,b\n");
        let r = read(text.as_bytes(), &CsvOptions::default(), &declared);
        assert_eq!(r.records, 2);
        assert_eq!(r.bad_rows.len(), 1);
        let raw = &r.bad_rows[0].raw;
        let full = format!("12345,\"{swallowed}\",extra").len();
        // By hand: `12345,"` is 7 bytes, each line 8 (é is 2), `",extra` 7. Byte 65 536 is
        // then the second byte of an é (65 536 - 7 = 8 x 8191 + 1): the cut moves to 65 535.
        assert_eq!(full, 7 + 8 * 300_000 + 7);
        assert!(raw.len() < MAX_RAW_BYTES + 100, "{}", raw.len());
        assert!(raw.starts_with("12345,\"é line\n"));
        assert!(
            raw.ends_with("é line\n… [raw text cut: first 65535 of 2400014 bytes]"),
            "{}",
            raw.chars().rev().take(60).collect::<String>()
        );
        assert_eq!(capped_raw("short"), "short");
    }

    #[test]
    fn windows_1252_semicolons_decimal_commas_quoted_newlines_crlf() {
        // "Åsa" and "Müller" in Windows-1252, a quoted field with `;`, `""` and a line break.
        let mut bytes = b"id;name;amount\r\n1;\"\xc5sa; \"\"the\"\" \r\nbest\";1 234,50\r\n2;M\xfcller;-0,5\r\n".to_vec();
        bytes.extend_from_slice(b"3;x;1,2,3\r\n");
        let opts = CsvOptions {
            delimiter: b';',
            decimal: b',',
            thousands: Some(' '),
            encoding: TextEncoding::Windows1252,
            ..CsvOptions::default()
        };
        let declared = [
            col("id", ColumnType::Int64, true),
            col("name", ColumnType::String, false),
            col(
                "amount",
                ColumnType::Decimal {
                    precision: 10,
                    scale: 2,
                },
                false,
            ),
        ];
        let r = read(&bytes, &opts, &declared);
        assert_eq!(r.encoding, "windows-1252");
        assert_eq!(r.records, 3);
        assert_eq!(
            cells(&r),
            vec![
                vec!["1", "Åsa; \"the\" \r\nbest", "1234.50"],
                vec!["2", "Müller", "-0.50"]
            ]
        );
        assert_eq!(
            r.bad_rows,
            vec![BadRow {
                file: "f.csv".into(),
                line: 5,
                raw: "3;x;1,2,3".into(),
                reason: "column `amount`: cannot read `1,2,3` as decimal(10,2): not a number"
                    .into(),
            }]
        );
    }

    #[test]
    fn utf8_bom_gzip_and_detection() {
        let declared = [
            col("id", ColumnType::Int64, false),
            col("city", ColumnType::String, false),
        ];
        let text = "\u{feff}ID , City\n1,Malmö\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, text.as_bytes()).expect("gzip");
        let bytes = gz.finish().expect("gzip");
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", datafusion::arrow::datatypes::DataType::Int64, true),
            Field::new("city", datafusion::arrow::datatypes::DataType::Utf8, true),
        ]));
        let r = read_csv_file(
            "s",
            "f.csv.gz",
            &bytes,
            &CsvOptions::default(),
            &declared,
            SchemaDrift::default(),
            &schema,
        )
        .expect("reads");
        assert_eq!(cells(&r), vec![vec!["1", "Malmö"]]);
        let auto = CsvOptions {
            encoding: TextEncoding::Auto,
            ..CsvOptions::default()
        };
        assert_eq!(
            read(b"id,city\n1,Malm\xf6\n", &auto, &declared).encoding,
            "windows-1252"
        );
        assert_eq!(read(text.as_bytes(), &auto, &declared).encoding, "utf-8");
        let err = read_csv_file(
            "s",
            "f.csv",
            b"id,city\n1,ok\n2,Malm\xf6\n",
            &CsvOptions::default(),
            &declared,
            SchemaDrift::default(),
            &schema,
        )
        .expect_err("not utf-8");
        assert!(
            matches!(err, FileProblem::Decode(ref m) if m.starts_with("not valid UTF-8 at line 3")),
            "{err:?}"
        );
    }

    #[test]
    fn short_rows_and_required_blanks_are_bad_rows_with_their_lines() {
        let declared = [
            col("id", ColumnType::Int64, true),
            col("d", ColumnType::Date, false),
        ];
        let r = read(
            b"id,d\n1,2025-01-01\n2\n,2025-01-02\n4,2025-02-30\n",
            &CsvOptions::default(),
            &declared,
        );
        assert_eq!(r.records, 4);
        assert_eq!(cells(&r), vec![vec!["1", "2025-01-01"]]);
        let got: Vec<(u64, &str, &str)> = r
            .bad_rows
            .iter()
            .map(|b| (b.line, b.raw.as_str(), b.reason.as_str()))
            .collect();
        assert_eq!(got[0], (3, "2", "the row has 1 fields, the header has 2"));
        assert_eq!(
            got[1],
            (4, ",2025-01-02", "column `id` is required but empty")
        );
        assert_eq!(got[2].0, 5);
        assert!(
            got[2]
                .2
                .starts_with("column `d`: cannot read `2025-02-30` as date"),
            "{}",
            got[2].2
        );
    }

    #[test]
    fn parallel_pieces_keep_order_counts_and_line_numbers() {
        let declared = [
            col("id", ColumnType::Int64, true),
            col("v", ColumnType::Int64, false),
        ];
        let mut text = String::from("id,v\n");
        for i in 0..300_000 {
            if i % 100_000 == 7 {
                text.push_str("bad,1\n");
            } else {
                text.push_str(&format!("{i},{}\n", i * 2));
            }
        }
        assert!(text.len() > 3 << 20, "needs several pieces");
        let sequential = read(text.as_bytes(), &CsvOptions::default(), &declared);
        let fast = CsvOptions {
            quoted_newlines: false,
            ..CsvOptions::default()
        };
        let parallel = read(text.as_bytes(), &fast, &declared);
        assert!(parallel.batches.len() > 1);
        assert_eq!((parallel.records, sequential.records), (300_000, 300_000));
        assert_eq!(parallel.bad_rows, sequential.bad_rows);
        let lines: Vec<u64> = parallel.bad_rows.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![9, 100_009, 200_009]);
        let ids = |r: &CsvFileRead| -> Vec<String> {
            r.batches
                .iter()
                .flat_map(|b| {
                    (0..b.num_rows())
                        .map(move |i| array_value_to_string(b.column(0), i).expect("display"))
                })
                .collect()
        };
        assert_eq!(ids(&parallel), ids(&sequential));
    }

    #[test]
    fn nul_byte_inside_a_field_is_accepted_silently() {
        let declared = [
            col("id", ColumnType::Int64, true),
            col("name", ColumnType::String, false),
        ];
        let r = read(
            b"id,name,extra\n1,ok,x\n2,a\0b,x\n3,c,\0\n",
            &CsvOptions::default(),
            &declared,
        );
        assert_eq!(r.records, 3);
        assert_eq!(cells(&r), vec![vec!["1", "ok"]]);
        let got: Vec<(u64, &str, &str)> = r
            .bad_rows
            .iter()
            .map(|b| (b.line, b.raw.as_str(), b.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    3,
                    "2,a\0b,x",
                    "column `name` holds a NUL byte (0x00): the file is corrupt here"
                ),
                (
                    4,
                    "3,c,\0",
                    "field 3 holds a NUL byte (0x00): the file is corrupt here"
                ),
            ]
        );
    }

    #[test]
    fn unterminated_quote_swallows_the_rest_of_the_file_as_one_record() {
        let declared = [
            col("id", ColumnType::Int64, true),
            col("name", ColumnType::String, false),
        ];
        let mut text = String::from("id,name\n");
        for i in 1..=20 {
            match i {
                5 => text.push_str("5,\"Anna, the open quote\n"),
                _ => text.push_str(&format!("{i},n{i}\n")),
            }
        }
        let r = read(text.as_bytes(), &CsvOptions::default(), &declared);
        assert_eq!(r.records, 20, "every physical record counted");
        assert_eq!(
            r.bad_rows,
            vec![BadRow {
                file: "f.csv".into(),
                line: 6,
                raw: "5,\"Anna, the open quote".into(),
                reason: "a quote opened at line 6 is never closed; the record is set aside up to that line and reading goes on at line 7".into(),
            }]
        );
        let rows = cells(&r);
        assert_eq!(rows.len(), 19);
        assert_eq!(rows[4], vec!["6", "n6"]);
        assert_eq!(rows[18], vec!["20", "n20"]);
        // The quote may open on a later line of a record, and on the very last line.
        let r = read(
            b"id,name\n1,\"a\nb\",\"x\n2,ok\n",
            &CsvOptions::default(),
            &declared,
        );
        assert_eq!((r.records, r.bad_rows.len()), (2, 1));
        assert_eq!(r.bad_rows[0].line, 2);
        assert_eq!(r.bad_rows[0].raw, "1,\"a\nb\",\"x");
        assert!(
            r.bad_rows[0]
                .reason
                .starts_with("a quote opened at line 3 "),
            "{:?}",
            r.bad_rows
        );
        assert_eq!(cells(&r), vec![vec!["2", "ok"]]);
        let r = read(b"id,name\n1,ok\n2,\"end", &CsvOptions::default(), &declared);
        assert_eq!((r.records, r.bad_rows.len()), (2, 1));
        assert_eq!(
            (r.bad_rows[0].line, r.bad_rows[0].raw.as_str()),
            (3, "2,\"end")
        );
        // A doubled quote or an escaped one does not close the field.
        assert_eq!(open_quote(b"1,\"a\"\"b\"\n", &CsvOptions::default()), None);
        assert_eq!(open_quote(b"1,\"a\"\"b\n", &CsvOptions::default()), Some(2));
        assert_eq!(open_quote(b"1,a\"b\n", &CsvOptions::default()), None);
        let escaped = CsvOptions {
            escape: Some(b'\\'),
            ..CsvOptions::default()
        };
        assert_eq!(open_quote(b"1,\"a\\\"\n", &escaped), Some(2));
    }

    #[test]
    fn empty_file_without_header_is_a_runtime_error() {
        let declared = [col("id", ColumnType::Int64, true)];
        for bytes in [
            b"".as_slice(),
            b"\n\r\n".as_slice(),
            b"\xef\xbb\xbf".as_slice(),
        ] {
            let r = read(bytes, &CsvOptions::default(), &declared);
            assert_eq!(r.records, 0);
            assert!(r.batches.is_empty() && r.bad_rows.is_empty());
        }
    }
}
