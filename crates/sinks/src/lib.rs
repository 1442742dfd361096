//! Outputs: hive-partitioned Parquet that BI tools read as they are, written so that
//! - the same rows give byte-identical files (fixed names, fixed writer settings, rows written
//!   in fixed-size slices so page boundaries never depend on how batches arrived);
//! - an output streams to disk ([`TableWriter`]) instead of being collected first, so its size
//!   is not limited by memory;
//! - a run replaces exactly its own `period=…` directory, atomically: files are staged in a
//!   hidden directory beside the table and moved into place only after every output of the run
//!   was written, so a failed run leaves the previous output as it was.

mod error;
mod partition;
mod staging;
mod transaction;
mod write;

pub use error::SinkError;
pub use partition::{escape_partition_value, partition_dir};
pub use staging::{StagedTable, discard, stage_dir};
pub use transaction::{
    Journal, JournalState, Recovered, Replacement, Transaction, recover, replace_durably, sync_dir,
    write_durably,
};
pub use write::{TableWriter, WrittenFile, write_table};
