//! Locations (path, glob or URL) → the concrete files they name, in a stable order.

use std::sync::Arc;

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::context::SessionContext;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use segflow_spec::Source;

use crate::error::SourceError;

/// One file of a source.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// Full URL, e.g. `file:///data/crm/orders_2025.csv`; what DataFusion is asked to read.
    pub url: String,
    pub path: Path,
    pub size: u64,
    pub store: Arc<dyn ObjectStore>,
}

/// Splits `s3://bucket/dir/*.csv` into the URL before the first glob segment and the pattern;
/// DataFusion handles globs itself only for scheme-less paths.
fn parse_location(location: &str) -> Result<ListingTableUrl, String> {
    let has_glob = location.contains(['*', '?', '[']);
    if !location.contains("://") || !has_glob {
        return ListingTableUrl::parse(location).map_err(|e| e.to_string());
    }
    let glob_start = location.find(['*', '?', '[']).unwrap_or(location.len());
    let dir_end = location[..glob_start].rfind('/').map_or(0, |i| i + 1);
    let (dir, pattern) = location.split_at(dir_end);
    let url = url::Url::parse(dir).map_err(|e| e.to_string())?;
    let pattern = glob::Pattern::new(pattern).map_err(|e| e.to_string())?;
    ListingTableUrl::try_new(url, Some(pattern)).map_err(|e| e.to_string())
}

/// Lists the files of a source, sorted by URL so the manifest and row order never depend on
/// the order a file system happens to return. No file is an error, never an empty table.
pub async fn list_files(
    ctx: &SessionContext,
    source: &Source,
) -> Result<Vec<InputFile>, SourceError> {
    let name = &source.name.value;
    let location = &source.location.value;
    let invalid = |reason: String| SourceError::InvalidLocation {
        source_name: name.clone(),
        location: location.clone(),
        reason,
    };
    let table_url = parse_location(location).map_err(invalid)?;
    let store = ctx
        .runtime_env()
        .object_store(table_url.object_store())
        .map_err(|e| invalid(e.to_string()))?;
    let state = ctx.state();
    let metas: Vec<_> = table_url
        .list_all_files(&state, store.as_ref(), "")
        .await
        .map_err(|e| invalid(e.to_string()))?
        .try_collect()
        .await
        .map_err(|e| invalid(e.to_string()))?;
    let base = table_url.object_store();
    let mut files: Vec<InputFile> = metas
        .into_iter()
        .map(|m| InputFile {
            url: format!("{}{}", base.as_str(), m.location),
            path: m.location,
            size: m.size,
            store: Arc::clone(&store),
        })
        .collect();
    files.sort_by(|a, b| a.url.cmp(&b.url));
    if files.is_empty() {
        return Err(SourceError::NoFiles {
            source_name: name.clone(),
            location: location.clone(),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_globs_are_split_at_the_directory() {
        let u = parse_location("s3://bucket/crm/orders_*.csv").expect("parses");
        assert_eq!(u.as_str(), "s3://bucket/crm/");
        assert!(u.contains(&Path::from("crm/orders_2025.csv"), false));
        assert!(!u.contains(&Path::from("crm/customers.csv"), false));
    }
}
