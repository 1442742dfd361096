//! Extract: find a source's files, fingerprint them, and read them with the declared schema.
//!
//! Everything goes through `object_store` (DataFusion's own file access), so a source at
//! `/data/x.csv`, `file:///data/x.csv` or, once a store is registered, `s3://bucket/x.csv`
//! is read the same way. Each file is read on its own so errors and row counts name the file.

mod checksum;
mod csv_file;
mod error;
mod location;
mod lossless;
mod privacy;
#[cfg(test)]
mod proptests;
mod read;
mod schema;
mod scratch_table;
mod stream;
mod values;
mod xlsx;

pub use checksum::sha256_of;
pub use csv_file::BadRow;
pub use error::SourceError;
pub use location::{InputFile, list_files};
pub use privacy::{pseudonymize, table_schema};
pub use read::{
    BAD_ROW_SAMPLE, BadRowSource, BadRowStop, LoadedSource, bad_row_stream, bad_rows_of,
    bad_rows_schema, load, read_bad_rows, scan,
};
pub use schema::arrow_type;
pub use scratch_table::scratch_table;
