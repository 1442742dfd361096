use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};

/// SHA-256 of an object, streamed so large exports never sit in memory whole.
pub async fn sha256_of(
    store: &dyn ObjectStore,
    path: &Path,
) -> Result<String, object_store::Error> {
    let mut stream = store.get(path).await?.into_stream();
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk?);
    }
    Ok(hex::encode(hasher.finalize()))
}
