//! Tables over the run's Arrow IPC scratch files, with their row counts.
//!
//! DataFusion's Arrow format reports unknown statistics, so without this a join over scratch
//! tables cannot tell the small side from the large one and builds its hash table on whichever
//! table the SQL names first. segflow wrote every scratch file itself and knows its rows; this
//! format passes them on and leaves everything else to [`ArrowFormat`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::arrow::ArrowFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::physical_plan::{FileScanConfig, FileSource};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result;
use datafusion::physical_plan::ExecutionPlan;
use object_store::{ObjectMeta, ObjectStore};

/// [`ArrowFormat`] plus the row count of each file, by file name.
#[derive(Debug)]
struct CountedArrow {
    rows: HashMap<String, u64>,
}

#[async_trait]
impl FileFormat for CountedArrow {
    fn get_ext(&self) -> String {
        ArrowFormat.get_ext()
    }

    fn get_ext_with_compression(&self, c: &FileCompressionType) -> Result<String> {
        ArrowFormat.get_ext_with_compression(c)
    }

    fn compression_type(&self) -> Option<FileCompressionType> {
        ArrowFormat.compression_type()
    }

    async fn infer_schema(
        &self,
        state: &dyn Session,
        store: &Arc<dyn ObjectStore>,
        objects: &[ObjectMeta],
    ) -> Result<SchemaRef> {
        ArrowFormat.infer_schema(state, store, objects).await
    }

    async fn infer_stats(
        &self,
        _state: &dyn Session,
        _store: &Arc<dyn ObjectStore>,
        table_schema: SchemaRef,
        object: &ObjectMeta,
    ) -> Result<Statistics> {
        let mut stats = Statistics::new_unknown(&table_schema);
        if let Some(rows) = object
            .location
            .filename()
            .and_then(|name| self.rows.get(name))
        {
            stats.num_rows = Precision::Exact(usize::try_from(*rows).unwrap_or(usize::MAX));
            stats.total_byte_size = Precision::Inexact(object.size as usize);
        }
        Ok(stats)
    }

    async fn create_physical_plan(
        &self,
        state: &dyn Session,
        conf: FileScanConfig,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        ArrowFormat.create_physical_plan(state, conf).await
    }

    fn file_source(&self, table_schema: TableSchema) -> Arc<dyn FileSource> {
        ArrowFormat.file_source(table_schema)
    }
}

/// A table over the Arrow IPC files `rows` names (file name → rows) under `location` (a file or
/// a directory), with the given schema.
pub fn scratch_table(
    location: &Path,
    schema: SchemaRef,
    rows: HashMap<String, u64>,
) -> Result<Arc<dyn TableProvider>> {
    let absolute = std::path::absolute(location)?;
    let mut text = absolute.to_string_lossy().into_owned();
    if absolute.is_dir() && !text.ends_with('/') {
        text.push('/');
    }
    let url = ListingTableUrl::parse(text)?;
    let options =
        ListingOptions::new(Arc::new(CountedArrow { rows })).with_file_extension(".arrow");
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}
