//! CSV exports read as a stream: object bytes → (gzip/zstd) → text → chunks cut at record
//! boundaries → typed on worker threads, in file order.
//!
//! Memory is bounded by the chunk size times the chunks in flight (one being filled, one per
//! worker), whatever the size of the file. The SHA-256 of the object is taken from the very
//! bytes handed to the decompressor, so the fingerprint in the manifest is of the data that
//! was parsed, and the object is read once.
//!
//! Text encodings are decoded incrementally. `auto` cannot look at the whole file before
//! deciding any more, so it decides on the first non-ASCII bytes: a UTF-8 byte-order mark or
//! a valid UTF-8 sequence there means UTF-8, anything else Windows-1252. Pure ASCII text reads
//! the same either way, so this agrees with the whole-file rule ("UTF-8 if all of it is
//! valid") for every file except one that mixes valid UTF-8 with invalid bytes after it: the
//! whole-file rule silently decoded such a file as Windows-1252 (turning its UTF-8 text into
//! mojibake); now it is an error naming the line of the first invalid byte.

use std::collections::VecDeque;
use std::io::{self, Read};

use datafusion::arrow::array::Array;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use segflow_spec::{ColumnSpec, CsvOptions, OnBadRow, Pii, SchemaDrift, TextEncoding};
use sha2::{Digest, Sha256};

use crate::csv_file::{BadRow, Chunks, FileProblem, csv_reader};
use crate::schema::match_columns;

/// Text per chunk handed to a worker: large enough that the per-chunk overhead (a thread, a
/// boundary search) vanishes, small enough that a few chunks in flight stay far below the
/// memory the whole-file reader needed.
pub(crate) const CHUNK_BYTES: usize = 16 << 20;

/// Decompressed bytes asked of the input per read.
const READ_BYTES: usize = 1 << 20;

/// A failure of the object store itself (as opposed to a corrupt compressed stream), carried
/// through the `io::Read` chain so it is reported as I/O, not as bad data.
#[derive(Debug)]
pub(crate) struct StoreFailure(pub object_store::Error);

impl std::fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for StoreFailure {}

/// Wraps an object-store failure so it survives the decompressor unchanged.
pub(crate) fn store_failure(error: object_store::Error) -> io::Error {
    io::Error::other(StoreFailure(error))
}

/// Raw object bytes, hashed as they are read.
#[derive(Debug)]
pub(crate) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Hashing<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Raw bytes per block read ahead, and blocks in flight between the two threads.
const RAW_BLOCK: usize = 1 << 20;
const RAW_BLOCKS_AHEAD: usize = 8;

/// Raw object bytes read ahead and hashed on their own thread, so neither I/O nor SHA-256 is
/// on the path of the thread that decompresses, decodes and cuts the text.
#[derive(Debug)]
pub(crate) struct BlockReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
}

impl Read for BlockReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.rx.recv() {
                Ok(block) => {
                    self.current = block?;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = (self.current.len() - self.at).min(buf.len());
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Runs `consume` on the bytes of `raw` while another thread reads and hashes them; returns
/// what `consume` returned and the SHA-256 of every byte of `raw` (also those `consume` left
/// unread).
pub(crate) fn read_ahead<R: Read + Send, T>(
    raw: R,
    consume: impl FnOnce(BlockReader) -> Result<(T, BlockReader), FileProblem>,
) -> Result<(T, String), FileProblem> {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(RAW_BLOCKS_AHEAD);
        let reader = scope.spawn(move || -> Option<String> {
            let mut raw = Hashing::new(raw);
            loop {
                let mut block = vec![0; RAW_BLOCK];
                let mut filled = 0;
                while filled < block.len() {
                    match raw.read(&mut block[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            // The consumer reports it; the checksum is moot.
                            let _ = tx.send(Err(e));
                            return None;
                        }
                    }
                }
                if filled == 0 {
                    return Some(hex::encode(raw.hasher.finalize()));
                }
                block.truncate(filled);
                if tx.send(Ok(block)).is_err() {
                    return None;
                }
            }
        });
        let consumed = consume(BlockReader {
            rx,
            current: Vec::new(),
            at: 0,
        });
        // Let the reader finish the object (it hashes what the decompressor left unread).
        let rest = consumed.as_ref().ok().map(|(_, input)| &input.rx);
        let mut failure = None;
        if let Some(rx) = rest {
            for block in rx.iter() {
                if let Err(e) = block {
                    failure = Some(e);
                }
            }
        }
        let (value, input) = consumed?;
        drop(input);
        if let Some(e) = failure {
            return Err(read_problem(e, false));
        }
        let sha = reader
            .join()
            .ok()
            .flatten()
            .ok_or_else(|| FileProblem::Decode("the file reader stopped".into()))?;
        Ok((value, sha))
    })
}

/// Bytes arriving from an async object-store stream, read on a blocking thread.
#[derive(Debug)]
pub(crate) struct ChannelReader<B> {
    rx: tokio::sync::mpsc::Receiver<Result<B, object_store::Error>>,
    current: Option<B>,
    at: usize,
}

impl<B> ChannelReader<B> {
    pub(crate) fn new(rx: tokio::sync::mpsc::Receiver<Result<B, object_store::Error>>) -> Self {
        Self {
            rx,
            current: None,
            at: 0,
        }
    }
}

impl<B: AsRef<[u8]>> Read for ChannelReader<B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(current) = &self.current {
                let rest = &current.as_ref()[self.at..];
                if !rest.is_empty() {
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    self.at += n;
                    return Ok(n);
                }
            }
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(bytes)) => {
                    self.current = Some(bytes);
                    self.at = 0;
                }
                Some(Err(e)) => return Err(store_failure(e)),
            }
        }
    }
}

/// How a file is compressed, from its name (as exports are named: `orders.csv.gz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub(crate) fn of(name: &str) -> Self {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".gz") {
            Compression::Gzip
        } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// A decompressing reader that gives its input back, so the rest of the object can be hashed.
enum Decompressed<R: Read> {
    Plain(R),
    Gzip(Box<flate2::read::MultiGzDecoder<R>>),
    Zstd(zstd::stream::read::Decoder<'static, io::BufReader<R>>),
}

impl<R: Read> Decompressed<R> {
    fn new(input: R, compression: Compression) -> Result<Self, FileProblem> {
        Ok(match compression {
            Compression::None => Decompressed::Plain(input),
            Compression::Gzip => {
                Decompressed::Gzip(Box::new(flate2::read::MultiGzDecoder::new(input)))
            }
            Compression::Zstd => Decompressed::Zstd(
                zstd::stream::read::Decoder::new(input).map_err(|e| read_problem(e, true))?,
            ),
        })
    }

    fn into_inner(self) -> R {
        match self {
            Decompressed::Plain(r) => r,
            Decompressed::Gzip(d) => (*d).into_inner(),
            Decompressed::Zstd(d) => d.finish().into_inner(),
        }
    }

    fn is_compressed(&self) -> bool {
        !matches!(self, Decompressed::Plain(_))
    }
}

impl<R: Read> Read for Decompressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decompressed::Plain(r) => r.read(buf),
            Decompressed::Gzip(d) => d.read(buf),
            Decompressed::Zstd(d) => d.read(buf),
        }
    }
}

/// An object-store failure stays I/O; anything else the decompressor says is corrupt data.
fn read_problem(e: io::Error, compressed: bool) -> FileProblem {
    if e.get_ref().is_some_and(|inner| inner.is::<StoreFailure>()) {
        if let Some(Ok(failure)) = e.into_inner().map(|inner| inner.downcast::<StoreFailure>()) {
            return FileProblem::Io(failure.0);
        }
        return FileProblem::Decode("cannot read the file".into());
    }
    if compressed {
        FileProblem::Decode(format!("cannot decompress: {e}"))
    } else {
        FileProblem::Io(object_store::Error::Generic {
            store: "segflow",
            source: Box::new(e),
        })
    }
}

const BOM: &[u8] = b"\xef\xbb\xbf";

/// Where decoding stands: an encoding is fixed once, except `auto`, which waits for the
/// first non-ASCII bytes (see the module docs).
enum State {
    /// UTF-8 before the first bytes (a byte-order mark may follow). `auto` says whether the
    /// encoding was declared `auto` (a BOM then decides for UTF-8).
    Start {
        auto: bool,
    },
    Utf8 {
        decided_by_auto: bool,
    },
    Undecided,
    Legacy(encoding_rs::Decoder),
    Latin1,
}

/// The position of the first byte that is not UTF-8, counted in the body (after any BOM).
#[derive(Debug)]
pub(crate) struct InvalidUtf8 {
    byte: u64,
    decided_by_auto: bool,
}

/// Bytes → UTF-8 text, incrementally, without a byte-order mark.
pub(crate) struct TextDecoder {
    state: State,
    name: &'static str,
    /// Bytes held back: an incomplete UTF-8 sequence or BOM at the end of the last input.
    pending: Vec<u8>,
    /// Body bytes accepted as UTF-8 so far (for error positions).
    body: u64,
    /// Replace bytes that are not UTF-8 by U+FFFD and note them in `replaced`, instead of
    /// refusing the file (`on_bad_row: quarantine`: their records become bad rows).
    lenient: bool,
    /// Offsets in `out` (as it stood when fed) of replaced bytes, with the byte.
    pub(crate) replaced: Vec<(usize, u8)>,
}

impl TextDecoder {
    pub(crate) fn new(encoding: TextEncoding) -> Self {
        let (state, name) = match encoding {
            TextEncoding::Utf8 => (State::Start { auto: false }, "utf-8"),
            TextEncoding::Auto => (State::Start { auto: true }, "utf-8"),
            // Like `Encoding::decode`, a byte-order mark overrides the declared encoding.
            TextEncoding::Windows1252 => (
                State::Legacy(encoding_rs::WINDOWS_1252.new_decoder()),
                "windows-1252",
            ),
            TextEncoding::Latin1 => (State::Latin1, "iso-8859-1"),
        };
        Self {
            state,
            name,
            pending: Vec::new(),
            body: 0,
            lenient: false,
            replaced: Vec::new(),
        }
    }

    /// A decoder that replaces invalid UTF-8 instead of failing (see `lenient`).
    pub(crate) fn lenient(mut self, lenient: bool) -> Self {
        self.lenient = lenient;
        self
    }

    /// The encoding in effect (for `auto`: as decided so far; ASCII-only text is UTF-8).
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// Appends the text of `input` to `out`; `last` marks the end of the file.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut String,
    ) -> Result<(), InvalidUtf8> {
        let held;
        let mut data: &[u8] = if self.pending.is_empty() {
            input
        } else {
            self.pending.extend_from_slice(input);
            held = std::mem::take(&mut self.pending);
            &held
        };
        loop {
            match &mut self.state {
                State::Start { auto } => {
                    if data.len() < BOM.len() && !last && BOM.starts_with(data) {
                        self.pending = data.to_vec();
                        return Ok(());
                    }
                    let auto = *auto;
                    if let Some(rest) = data.strip_prefix(BOM) {
                        data = rest;
                        self.state = State::Utf8 {
                            decided_by_auto: false,
                        };
                    } else if auto {
                        self.state = State::Undecided;
                    } else {
                        self.state = State::Utf8 {
                            decided_by_auto: false,
                        };
                    }
                }
                State::Utf8 { decided_by_auto } => {
                    let decided_by_auto = *decided_by_auto;
                    return self.utf8(data, last, out, decided_by_auto);
                }
                State::Undecided => {
                    let Some(first) = data.iter().position(|b| !b.is_ascii()) else {
                        self.push_utf8(data, out);
                        return Ok(());
                    };
                    let (ascii, rest) = data.split_at(first);
                    self.push_utf8(ascii, out);
                    data = rest;
                    match std::str::from_utf8(rest) {
                        Err(e) if e.valid_up_to() == 0 && e.error_len().is_none() && !last => {
                            self.pending = rest.to_vec();
                            return Ok(());
                        }
                        Err(e) if e.valid_up_to() == 0 => {
                            self.state = State::Legacy(
                                encoding_rs::WINDOWS_1252.new_decoder_without_bom_handling(),
                            );
                            self.name = "windows-1252";
                        }
                        _ => {
                            self.state = State::Utf8 {
                                decided_by_auto: true,
                            };
                        }
                    }
                }
                State::Legacy(decoder) => {
                    let mut src = data;
                    loop {
                        let room = decoder
                            .max_utf8_buffer_length(src.len())
                            .unwrap_or(src.len() * 3 + 16);
                        out.reserve(room);
                        let (result, read, _) = decoder.decode_to_string(src, out, last);
                        src = &src[read..];
                        if result == encoding_rs::CoderResult::InputEmpty {
                            return Ok(());
                        }
                    }
                }
                State::Latin1 => {
                    out.extend(data.iter().map(|&b| char::from(b)));
                    return Ok(());
                }
            }
        }
    }

    fn push_utf8(&mut self, ascii_or_valid: &[u8], out: &mut String) {
        // Only called with text already known to be valid.
        if let Ok(s) = std::str::from_utf8(ascii_or_valid) {
            out.push_str(s);
            self.body += s.len() as u64;
        }
    }

    fn utf8(
        &mut self,
        mut data: &[u8],
        last: bool,
        out: &mut String,
        decided_by_auto: bool,
    ) -> Result<(), InvalidUtf8> {
        loop {
            match std::str::from_utf8(data) {
                Ok(s) => {
                    out.push_str(s);
                    self.body += s.len() as u64;
                    return Ok(());
                }
                Err(e) => {
                    let (valid, rest) = data.split_at(e.valid_up_to());
                    self.push_utf8(valid, out);
                    if e.error_len().is_none() && !last {
                        self.pending = rest.to_vec();
                        return Ok(());
                    }
                    if !self.lenient {
                        return Err(InvalidUtf8 {
                            byte: self.body,
                            decided_by_auto,
                        });
                    }
                    let n = e.error_len().unwrap_or(rest.len()).max(1);
                    self.replaced.push((out.len(), rest[0]));
                    out.push('\u{fffd}');
                    self.body += n as u64;
                    data = &rest[n..];
                }
            }
        }
    }
}

pub(crate) fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// What one file yielded, apart from the pieces handed to the sink.
#[derive(Debug)]
pub(crate) struct StreamedFile {
    pub records: usize,
    pub encoding: &'static str,
    pub warnings: Vec<String>,
}

/// One chunk typed by a worker: batches (already transformed, e.g. protected), rows set
/// aside, records read, and NULLs per declared column among the accepted rows.
#[derive(Debug)]
pub(crate) struct TypedChunk {
    pub batches: Vec<RecordBatch>,
    pub bad_rows: Vec<BadRow>,
    pub records: usize,
    pub null_counts: Vec<usize>,
}

/// The dialect and declaration of one file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CsvJob<'a> {
    pub source_name: &'a str,
    pub file: &'a str,
    pub opts: &'a CsvOptions,
    pub declared: &'a [ColumnSpec],
    pub drift: SchemaDrift,
    /// The declared schema (before protection).
    pub schema: &'a datafusion::arrow::datatypes::SchemaRef,
    pub chunk_bytes: usize,
    pub workers: usize,
    /// The source's policy decides what a byte that is not valid in the declared encoding
    /// is: under `quarantine` its record is a bad row (one stray Windows-1252 byte in a UTF-8
    /// export should not cost the other rows); under `fail` the file is refused, as a file
    /// in the wrong encoding (exit code 2), naming the line.
    pub on_bad_row: OnBadRow,
}

type Transform<'a> = &'a (dyn Fn(RecordBatch) -> Result<RecordBatch, ArrowError> + Sync);

/// Text read so far and not yet handed to a worker.
struct Reader<R: Read> {
    input: Decompressed<R>,
    decoder: TextDecoder,
    buf: Vec<u8>,
    text: String,
    /// Line of the first byte of `text`.
    line: u64,
    eof: bool,
    /// Offsets in `text` of bytes the decoder replaced, with the byte (ascending).
    invalid: Vec<(usize, u8)>,
}

impl<R: Read> Reader<R> {
    /// Reads until `text` holds at least `want` bytes or the file ends.
    fn fill(&mut self, want: usize) -> Result<(), FileProblem> {
        while self.text.len() < want && !self.eof {
            let n = loop {
                match self.input.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(read_problem(e, self.input.is_compressed())),
                }
            };
            self.eof = n == 0;
            let fed = self.decoder.feed(&self.buf[..n], self.eof, &mut self.text);
            self.invalid.append(&mut self.decoder.replaced);
            if let Err(bad) = fed {
                // Everything before the invalid byte is in `text`.
                let line = self.line + count_newlines(self.text.as_bytes());
                return Err(FileProblem::Decode(if bad.decided_by_auto {
                    format!(
                        "not valid UTF-8 at line {line} (byte {}), although the file's first non-ASCII text was UTF-8 (`encoding: auto`); declare `encoding: windows-1252` or `iso-8859-1`",
                        bad.byte
                    )
                } else {
                    format!(
                        "not valid UTF-8 at line {line} (byte {}); declare `encoding: windows-1252`, `iso-8859-1` or `auto`",
                        bad.byte
                    )
                }));
            }
        }
        Ok(())
    }

    /// The end of the last complete record in `text` (a record boundary, where a parser can
    /// start afresh), or `None` when `text` holds less than one record.
    fn boundary(&self, opts: &CsvOptions) -> Option<usize> {
        let bytes = self.text.as_bytes();
        if self.eof {
            return Some(bytes.len());
        }
        // Without quotes every line break (CR or LF) ends a record. A cut between CR and LF
        // is a boundary too: the next chunk then starts with an empty line, which the parser
        // skips.
        if !bytes.contains(&opts.quote) {
            return bytes
                .iter()
                .rposition(|&b| b == b'\n' || b == b'\r')
                .map(|i| i + 1);
        }
        // With `quoted_newlines: false` every LF ends a record by declaration (as in the
        // whole-file reader, which split files at LFs).
        if !opts.quoted_newlines {
            return bytes.iter().rposition(|&b| b == b'\n').map(|i| i + 1);
        }
        // Quoted fields may hold line breaks: only the CSV state machine knows which line
        // breaks end records. The last record parsed may be cut off by the end of `text`,
        // so the boundary is where it starts.
        let mut reader = csv_reader(opts, bytes);
        let mut record = csv::ByteRecord::new();
        let mut last_start = 0;
        loop {
            let start = reader.position().byte() as usize;
            match reader.read_byte_record(&mut record) {
                Ok(true) => last_start = start,
                Ok(false) | Err(_) => break,
            }
        }
        (last_start > 0).then_some(last_start)
    }

    /// Takes `text[..end]` out as a chunk, with the line it starts on and its replaced bytes.
    fn take(&mut self, end: usize) -> (String, u64, Vec<(usize, u8)>) {
        let rest = self.text.split_off(end);
        let chunk = std::mem::replace(&mut self.text, rest);
        let line = self.line;
        self.line += count_newlines(chunk.as_bytes());
        let mut later = self
            .invalid
            .split_off(self.invalid.partition_point(|&(at, _)| at < end));
        for (at, _) in &mut later {
            *at -= end;
        }
        (chunk, line, std::mem::replace(&mut self.invalid, later))
    }
}

/// Reads one CSV file from `raw` in chunks, types the chunks on `job.workers` threads and
/// hands the typed chunks to `sink` in file order. Returns what was read and `raw` itself, so
/// the caller can finish the checksum.
pub(crate) fn read_csv_stream<R: Read>(
    raw: R,
    compression: Compression,
    job: CsvJob<'_>,
    transform: Transform<'_>,
    sink: &mut dyn FnMut(TypedChunk) -> Result<(), FileProblem>,
) -> Result<(StreamedFile, R), FileProblem> {
    let mut reader = Reader {
        input: Decompressed::new(raw, compression)?,
        decoder: TextDecoder::new(job.opts.encoding)
            .lenient(job.on_bad_row == OnBadRow::Quarantine),
        buf: vec![0; READ_BYTES.min(job.chunk_bytes).max(1)],
        text: String::new(),
        line: 1,
        eof: false,
        invalid: Vec::new(),
    };
    let Some((header, body_start)) = read_header(&mut reader, job)? else {
        // A file without even a header row is an export of nothing: 0 rows read. Refusing it
        // would stop a run over an empty day's export that the manifest can simply record.
        let encoding = reader.decoder.name();
        return Ok((
            StreamedFile {
                records: 0,
                encoding,
                warnings: Vec::new(),
            },
            reader.input.into_inner(),
        ));
    };
    if let Some(&(at, byte)) = reader.invalid.first()
        && at < body_start
    {
        return Err(FileProblem::Decode(format!(
            "the header row holds byte 0x{byte:02X}, which is not valid UTF-8, at line {}; declare `encoding: windows-1252`, `iso-8859-1` or `auto`",
            1 + count_newlines(&reader.text.as_bytes()[..at])
        )));
    }
    let matched = match_columns(job.source_name, job.file, &header, job.declared, job.drift)
        .map_err(FileProblem::Header)?;
    reader.take(body_start);
    let redact: Vec<bool> = matched
        .per_file_column
        .iter()
        .map(|m| m.is_some_and(|c| matches!(c.pii, Some(Pii::Hash | Pii::Drop))))
        .collect();
    let chunks = Chunks {
        file: job.file,
        redact: &redact,
        header_len: header.len(),
        positions: &matched.per_declared_column,
        declared: job.declared,
        opts: job.opts,
        schema: job.schema,
    };
    let mut records = 0;
    std::thread::scope(|scope| -> Result<(), FileProblem> {
        let mut in_flight = VecDeque::new();
        let mut deliver =
            |handle: std::thread::ScopedJoinHandle<'_, _>| -> Result<(), FileProblem> {
                let typed: TypedChunk = handle
                    .join()
                    .unwrap_or_else(|_| Err(FileProblem::Decode("a CSV worker panicked".into())))?;
                records += typed.records;
                sink(typed)
            };
        let mut want = job.chunk_bytes;
        loop {
            reader.fill(want)?;
            if reader.text.is_empty() && reader.eof {
                break;
            }
            let Some(end) = reader.boundary(job.opts) else {
                // One record longer than a chunk: read on until it ends. The text held is
                // parsed again at every step, so it grows geometrically: a quote open over
                // gigabytes costs a few passes over them, not one per chunk (quadratic).
                want = reader
                    .text
                    .len()
                    .saturating_mul(2)
                    .max(reader.text.len() + job.chunk_bytes);
                continue;
            };
            want = job.chunk_bytes;
            let (text, line, invalid) = reader.take(end);
            if in_flight.len() >= job.workers.max(1)
                && let Some(handle) = in_flight.pop_front()
            {
                deliver(handle)?;
            }
            let chunks = &chunks;
            in_flight.push_back(
                scope.spawn(move || type_chunk(chunks, &text, line, &invalid, transform)),
            );
        }
        while let Some(handle) = in_flight.pop_front() {
            deliver(handle)?;
        }
        Ok(())
    })?;
    let encoding = reader.decoder.name();
    Ok((
        StreamedFile {
            records,
            encoding,
            warnings: matched.warnings,
        },
        reader.input.into_inner(),
    ))
}

/// The header record and where the body starts in `reader.text`; `None` for a file without
/// any record.
fn read_header<R: Read>(
    reader: &mut Reader<R>,
    job: CsvJob<'_>,
) -> Result<Option<(Vec<String>, usize)>, FileProblem> {
    let mut want = job.chunk_bytes.min(64 * 1024);
    loop {
        reader.fill(want)?;
        let mut csv = csv_reader(job.opts, reader.text.as_bytes());
        let mut record = csv::StringRecord::new();
        let read = csv
            .read_record(&mut record)
            .map_err(|e| FileProblem::Decode(format!("cannot parse the header row: {e}")))?;
        let end = csv.position().byte() as usize;
        if read && (end < reader.text.len() || reader.eof) {
            return Ok(Some((record.iter().map(str::to_string).collect(), end)));
        }
        if !read && reader.eof {
            return Ok(None);
        }
        want = reader.text.len().max(want) * 2;
    }
}

/// The worker's job: type the records, count NULLs of the accepted rows, then transform.
fn type_chunk(
    chunks: &Chunks<'_>,
    text: &str,
    line: u64,
    invalid: &[(usize, u8)],
    transform: Transform<'_>,
) -> Result<TypedChunk, FileProblem> {
    let piece = chunks.read(text, line, invalid)?;
    let mut null_counts = vec![0; chunks.declared.len()];
    for batch in &piece.batches {
        for (count, column) in null_counts.iter_mut().zip(batch.columns()) {
            *count += column.null_count();
        }
    }
    let batches = piece
        .batches
        .into_iter()
        .map(transform)
        .collect::<Result<Vec<_>, _>>()
        .map_err(FileProblem::Arrow)?;
    Ok(TypedChunk {
        batches,
        bad_rows: piece.bad_rows,
        records: piece.records,
        null_counts,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::display::array_value_to_string;
    use segflow_spec::{ColumnType, Location};

    use super::*;
    use crate::csv_file::{CsvFileRead, read_csv_file};

    fn schema_of(declared: &[ColumnSpec]) -> datafusion::arrow::datatypes::SchemaRef {
        Arc::new(Schema::new(
            declared
                .iter()
                .map(|c| Field::new(&c.name, crate::schema::arrow_type(c.data_type), true))
                .collect::<Vec<_>>(),
        ))
    }

    /// A file read by the streaming reader, collected into the whole-file reader's shape.
    pub(crate) fn stream(
        name: &str,
        bytes: &[u8],
        opts: &CsvOptions,
        declared: &[ColumnSpec],
        chunk_bytes: usize,
    ) -> Result<CsvFileRead, FileProblem> {
        let schema = schema_of(declared);
        let job = CsvJob {
            source_name: "s",
            file: name,
            opts,
            declared,
            drift: SchemaDrift::default(),
            schema: &schema,
            chunk_bytes,
            workers: 2,
            on_bad_row: OnBadRow::Fail,
        };
        let (mut batches, mut bad_rows, mut chunk_records) = (Vec::new(), Vec::new(), 0);
        let mut null_counts = vec![0; declared.len()];
        let (read, sha) = read_ahead(bytes, |input| {
            read_csv_stream(
                input,
                Compression::of(name),
                job,
                &Ok,
                &mut |typed: TypedChunk| {
                    batches.extend(typed.batches);
                    bad_rows.extend(typed.bad_rows);
                    chunk_records += typed.records;
                    for (n, c) in null_counts.iter_mut().zip(&typed.null_counts) {
                        *n += c;
                    }
                    Ok(())
                },
            )
        })?;
        assert_eq!(chunk_records, read.records);
        assert_eq!(sha, hex::encode(Sha256::digest(bytes)), "every byte hashed");
        let mut expected_nulls = vec![0; declared.len()];
        for b in &batches {
            for (n, c) in expected_nulls.iter_mut().zip(b.columns()) {
                *n += c.null_count();
            }
        }
        assert_eq!(null_counts, expected_nulls);
        Ok(CsvFileRead {
            batches,
            warnings: read.warnings,
            bad_rows,
            records: read.records,
            encoding: read.encoding,
        })
    }

    fn rows(r: &CsvFileRead) -> Vec<Vec<String>> {
        r.batches
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

    /// Same records, values, bad rows (lines, raw text, reasons), encoding and warnings.
    pub(crate) fn assert_same(whole: &CsvFileRead, streamed: &CsvFileRead) {
        assert_eq!(streamed.records, whole.records, "records");
        assert_eq!(streamed.encoding, whole.encoding, "encoding");
        assert_eq!(streamed.warnings, whole.warnings, "warnings");
        assert_eq!(streamed.bad_rows, whole.bad_rows, "bad rows");
        assert_eq!(rows(streamed), rows(whole), "values");
    }

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

    fn declared() -> Vec<ColumnSpec> {
        vec![
            col("id", ColumnType::Int64, true),
            col("name", ColumnType::String, false),
            col(
                "amount",
                ColumnType::Decimal {
                    precision: 12,
                    scale: 2,
                },
                false,
            ),
        ]
    }

    /// A Nordic CRM export: `;`, decimal commas, CRLF, names with quotes, `;` and line breaks
    /// inside quotes, and bad rows (short rows, bad numbers, missing ids) spread over the file.
    fn export(rows: usize) -> (String, Vec<u64>) {
        let mut text = String::from("ID;Name;Amount\r\n");
        let mut line = 2u64;
        let mut bad_lines = Vec::new();
        for i in 0..rows {
            let (row, breaks) = match i % 11 {
                3 => (
                    format!("{i};\"Åsa; \"\"the\"\"\r\nbest\r\nof all\";{i},50\r\n"),
                    3,
                ),
                5 => (format!("{i};Müller;-{i}\r\n"), 1),
                7 if i % 3 == 0 => {
                    bad_lines.push(line);
                    (format!("{i};short\r\n"), 1)
                }
                7 if i % 3 == 1 => {
                    bad_lines.push(line);
                    (format!("{i};\"bad\r\namount\";1,2,3\r\n"), 2)
                }
                7 => {
                    bad_lines.push(line);
                    (format!(";\"no id\";{i}\r\n"), 1)
                }
                _ => (format!("{i};plain {i};{i}\r\n"), 1),
            };
            text.push_str(&row);
            line += breaks;
        }
        (text, bad_lines)
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        io::Write::write_all(&mut gz, bytes).expect("gzip");
        gz.finish().expect("gzip")
    }

    #[test]
    fn chunks_agree_with_the_whole_file_reader_at_every_boundary() {
        let (text, bad_lines) = export(400);
        let declared = declared();
        let opts = CsvOptions {
            delimiter: b';',
            decimal: b',',
            ..CsvOptions::default()
        };
        let win = CsvOptions {
            encoding: TextEncoding::Windows1252,
            ..opts.clone()
        };
        let auto = CsvOptions {
            encoding: TextEncoding::Auto,
            ..opts.clone()
        };
        let (cp1252, _, unmappable) = encoding_rs::WINDOWS_1252.encode(&text);
        assert!(!unmappable);
        let bom = [b"\xef\xbb\xbf".as_slice(), text.as_bytes()].concat();
        let cases: Vec<(&str, Vec<u8>, &CsvOptions, &str)> = vec![
            ("utf8-bom.csv.gz", gzip(&bom), &opts, "utf-8"),
            ("cp1252.csv", cp1252.to_vec(), &win, "windows-1252"),
            ("cp1252-auto.csv.gz", gzip(&cp1252), &auto, "windows-1252"),
            ("utf8-auto.csv", bom.clone(), &auto, "utf-8"),
        ];
        for (name, bytes, opts, encoding) in &cases {
            let schema = schema_of(&declared);
            let whole = read_csv_file(
                "s",
                name,
                bytes,
                opts,
                &declared,
                SchemaDrift::default(),
                &schema,
            )
            .expect("whole file");
            assert_eq!(whole.encoding, *encoding);
            assert_eq!(whole.records, 400);
            let lines: Vec<u64> = whole.bad_rows.iter().map(|b| b.line).collect();
            assert_eq!(lines, bad_lines, "{name}");
            // 1–2 byte reads split the BOM and every multi-byte character; the other sizes
            // put chunk ends inside quoted line breaks and between CR and LF.
            for chunk_bytes in [1, 2, 3, 61, 97, 256, 1000, 4099, 1 << 20] {
                let streamed = stream(name, bytes, opts, &declared, chunk_bytes)
                    .unwrap_or_else(|e| panic!("{name} at {chunk_bytes}: {e:?}"));
                assert_same(&whole, &streamed);
                if chunk_bytes < 4099 {
                    assert!(
                        streamed.batches.len() > 3,
                        "{name}: several chunks at {chunk_bytes}: {}",
                        streamed.batches.len()
                    );
                }
            }
        }
    }

    #[test]
    fn a_record_longer_than_a_chunk_is_read_whole() {
        let long = "x\r\n".repeat(5000);
        let text = format!("id;name;amount\n1;\"{long}\";2\n2;b;3\n");
        let declared = declared();
        let opts = CsvOptions {
            delimiter: b';',
            ..CsvOptions::default()
        };
        let schema = schema_of(&declared);
        let whole = read_csv_file(
            "s",
            "f.csv",
            text.as_bytes(),
            &opts,
            &declared,
            SchemaDrift::default(),
            &schema,
        )
        .expect("whole");
        let streamed = stream("f.csv", text.as_bytes(), &opts, &declared, 512).expect("streamed");
        assert_same(&whole, &streamed);
        assert_eq!(streamed.records, 2);
    }

    #[test]
    fn utf8_errors_name_the_line_and_auto_decides_on_the_first_non_ascii_text() {
        let declared = declared();
        let bytes = b"id;name;amount\n1;a;1\n2;b;2\n3;Malm\xf6;3\n";
        let opts = CsvOptions {
            delimiter: b';',
            ..CsvOptions::default()
        };
        for chunk_bytes in [4, 1 << 20] {
            let err = stream("f.csv", bytes, &opts, &declared, chunk_bytes).expect_err("not utf-8");
            assert!(
                matches!(err, FileProblem::Decode(ref m) if m.starts_with("not valid UTF-8 at line 4 (byte 33)")),
                "{err:?}"
            );
        }
        let auto = CsvOptions {
            encoding: TextEncoding::Auto,
            ..opts.clone()
        };
        let read = stream("f.csv", bytes, &auto, &declared, 4).expect("windows-1252");
        assert_eq!(read.encoding, "windows-1252");
        // Valid UTF-8 first, an invalid byte later: an error now (was: all Windows-1252).
        let mixed = "id;name;amount\n1;Malmö;1\n2;Malm\u{f6}x;2\n".replace('x', "\u{0}");
        let mut mixed = mixed.into_bytes();
        let at = mixed.iter().rposition(|&b| b == 0).expect("marker");
        mixed[at] = 0xf6;
        let err = stream("f.csv", &mixed, &auto, &declared, 1 << 20).expect_err("mixed");
        assert!(
            matches!(err, FileProblem::Decode(ref m) if m.contains("at line 3") && m.contains("first non-ASCII text was UTF-8")),
            "{err:?}"
        );
        let ascii =
            stream("f.csv", b"id;name;amount\n1;a;1\n", &auto, &declared, 4).expect("ascii");
        assert_eq!(ascii.encoding, "utf-8");
    }
}
