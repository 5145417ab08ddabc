//! Where source files live: a local folder or an object-store prefix, behind one type.
//!
//! Both file sources (milvus-backup folders, Milvus 1.x data) read through [`Store`], so a
//! backup copied to a laptop and the same backup in a bucket take the same code path.
//! Locations are given as a plain path (`/data/backups`, `./backups`), `file:///...`, or a
//! URL object_store understands: `s3://bucket/prefix`, AWS virtual-hosted
//! (`https://bucket.s3.region.amazonaws.com/prefix`) and path-style
//! (`https://s3.region.amazonaws.com/bucket/prefix`) URLs, `gs://bucket/prefix`, and Azure
//! (`https://account.blob.core.windows.net/container/prefix`, `az://container/prefix`).
//!
//! Credentials and endpoints come from the usual environment variables through each
//! builder's `from_env()` (`AWS_ACCESS_KEY_ID`, `AWS_REGION`, `AWS_ENDPOINT` for MinIO and
//! other S3-compatible servers, `AWS_ALLOW_HTTP`; `GOOGLE_SERVICE_ACCOUNT`;
//! `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, ...). Nothing here logs them.
//!
//! Every read takes a byte limit and checks the object's size before fetching its body, so
//! a file whose size is unexpected fails with [`StoreError::TooLarge`] instead of being
//! buffered.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, ObjectStoreScheme};

/// Errors of reaching source files.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{location:?} is not a usable source location: {reason}")]
    BadLocation { location: String, reason: String },
    #[error("{path}: not found")]
    NotFound { path: String },
    #[error("{path}: {size} bytes, more than the {limit}-byte limit for this kind of file")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: object_store::Error,
    },
}

impl StoreError {
    /// Only transport failures are worth retrying; a missing or oversized file stays so.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => matches!(
                source,
                object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
            ),
            _ => false,
        }
    }
}

/// A folder of files in some object store. Paths passed to its methods are relative to the
/// folder and use `/` separators.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    root: String,
    /// How the folder is named in errors: the location the user gave, plus sub-folders.
    label: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("label", &self.label).finish()
    }
}

impl Store {
    /// Opens a local folder or an object-store URL (see the module doc for the forms).
    pub fn open(location: &str) -> Result<Store, StoreError> {
        let bad = |reason: String| StoreError::BadLocation {
            location: location.to_string(),
            reason,
        };
        if !location.contains("://") {
            return Store::local(location);
        }
        let url = url::Url::parse(location).map_err(|e| bad(e.to_string()))?;
        if url.scheme() == "file" {
            let path = url
                .to_file_path()
                .map_err(|()| bad("not a local file path".into()))?;
            return Store::local(path);
        }
        let (scheme, mut prefix) = ObjectStoreScheme::parse(&url).map_err(|e| bad(e.to_string()))?;
        // object_store takes any AWS host starting with "s3" for path-style and drops the first
        // path segment as the bucket, so a virtual-hosted bucket named s3-… would lose a level
        // of its prefix. Path-style hosts are exactly `s3.…` (as its S3 builder reads them).
        if scheme == ObjectStoreScheme::AmazonS3 && url.scheme() == "https" {
            if let Some(host) = url.host_str() {
                if host.split('.').next() != Some("s3") {
                    prefix = object_store::path::Path::from_url_path(url.path()).map_err(|e| bad(e.to_string()))?;
                }
            }
        }
        let inner: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::AmazonS3 => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(location)
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            ObjectStoreScheme::GoogleCloudStorage => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(location)
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            ObjectStoreScheme::MicrosoftAzure => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(location)
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            other => {
                return Err(bad(format!(
                    "{other:?} locations are not supported; use s3://, gs://, an Azure or \
                     AWS https URL, or a local path (S3-compatible servers: s3://bucket/prefix \
                     with AWS_ENDPOINT set)"
                )))
            }
        };
        Ok(Store {
            inner,
            root: prefix.as_ref().trim_matches('/').to_string(),
            label: location.trim_end_matches('/').to_string(),
        })
    }

    /// A local folder; it must exist.
    pub fn local(dir: impl AsRef<std::path::Path>) -> Result<Store, StoreError> {
        let dir = dir.as_ref();
        let label = dir.display().to_string();
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| {
            StoreError::BadLocation {
                location: label.clone(),
                reason: e.to_string(),
            }
        })?;
        Ok(Store {
            inner: Arc::new(fs),
            root: String::new(),
            label: label.trim_end_matches('/').to_string(),
        })
    }

    /// A folder inside an existing object store (tests use `object_store::memory::InMemory`).
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, root: &str, label: &str) -> Store {
        Store {
            inner,
            root: root.trim_matches('/').to_string(),
            label: label.to_string(),
        }
    }

    /// The sub-folder `rel` of this folder.
    pub fn sub(&self, rel: &str) -> Store {
        let rel = rel.trim_matches('/');
        Store {
            inner: self.inner.clone(),
            root: join(&self.root, rel),
            label: join(&self.label, rel),
        }
    }

    /// How `rel` is named in messages: the user's location followed by the relative path.
    pub fn display(&self, rel: &str) -> String {
        join(&self.label, rel.trim_matches('/'))
    }

    fn key(&self, rel: &str) -> Result<Path, StoreError> {
        let full = join(&self.root, rel.trim_matches('/'));
        Path::parse(&full).map_err(|e| StoreError::BadLocation {
            location: self.display(rel),
            reason: e.to_string(),
        })
    }

    fn io(&self, rel: &str, source: object_store::Error) -> StoreError {
        match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                path: self.display(rel),
            },
            source => StoreError::Io {
                path: self.display(rel),
                source,
            },
        }
    }

    /// Reads a whole file of at most `max_bytes` bytes; the size is checked before the body
    /// is fetched.
    pub async fn get(&self, rel: &str, max_bytes: u64) -> Result<Bytes, StoreError> {
        let key = self.key(rel)?;
        let res = self.inner.get(&key).await.map_err(|e| self.io(rel, e))?;
        let size = res.meta.size;
        if size > max_bytes {
            return Err(StoreError::TooLarge {
                path: self.display(rel),
                size,
                limit: max_bytes,
            });
        }
        res.bytes().await.map_err(|e| self.io(rel, e))
    }

    /// Reads bytes `range` of a file; the caller has checked the range against the size.
    pub async fn get_range(&self, rel: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        let key = self.key(rel)?;
        self.inner
            .get_range(&key, range)
            .await
            .map_err(|e| self.io(rel, e))
    }

    /// The size of a file, or `None` when it does not exist.
    pub async fn size(&self, rel: &str) -> Result<Option<u64>, StoreError> {
        let key = self.key(rel)?;
        match self.inner.head(&key).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.io(rel, e)),
        }
    }

    /// Names of the immediate sub-folders of `rel` (empty when `rel` does not exist).
    pub async fn list_dirs(&self, rel: &str) -> Result<Vec<String>, StoreError> {
        let key = self.key(rel)?;
        let listed = match self.inner.list_with_delimiter(Some(&key)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.io(rel, e)),
        };
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every file under `rel`, recursively: paths relative to `rel` with their sizes, sorted.
    pub async fn list_files(&self, rel: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let key = self.key(rel)?;
        let base = key.as_ref().to_string();
        let metas: Vec<object_store::ObjectMeta> =
            match self.inner.list(Some(&key)).try_collect().await {
                Ok(m) => m,
                Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
                Err(e) => return Err(self.io(rel, e)),
            };
        let mut files: Vec<(String, u64)> = metas
            .into_iter()
            .filter_map(|m| {
                let full = m.location.as_ref();
                let relative = if base.is_empty() {
                    full
                } else {
                    full.strip_prefix(base.as_str())?.strip_prefix('/')?
                };
                Some((relative.to_string(), m.size))
            })
            .collect();
        files.sort();
        Ok(files)
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a.to_string(),
        (true, false) => b.to_string(),
        (false, false) => format!("{a}/{b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_folder_lists_reads_and_bounds_sizes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f1"), b"hello").unwrap();
        std::fs::write(dir.path().join("a/f2"), b"x").unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(store.list_dirs("a").await.unwrap(), vec!["b".to_string()]);
        assert_eq!(
            store.list_files("a").await.unwrap(),
            vec![("b/f1".to_string(), 5), ("f2".to_string(), 1)]
        );
        assert!(store.list_files("missing").await.unwrap().is_empty());
        let sub = store.sub("a/b");
        assert_eq!(&sub.get("f1", 5).await.unwrap()[..], b"hello");
        assert_eq!(&sub.get_range("f1", 1..3).await.unwrap()[..], b"el");
        assert!(matches!(
            sub.get("f1", 4).await,
            Err(StoreError::TooLarge { size: 5, .. })
        ));
        assert!(matches!(
            sub.get("nope", 4).await,
            Err(StoreError::NotFound { ref path }) if path.ends_with("a/b/nope")
        ));
        assert_eq!(sub.size("f1").await.unwrap(), Some(5));
        assert_eq!(sub.size("nope").await.unwrap(), None);
    }

    #[test]
    fn urls_pick_the_store_and_prefix() {
        // Building needs no network; credentials are only used on the first request.
        let s3 = Store::open("s3://bucket/some/prefix").unwrap();
        assert_eq!(s3.root, "some/prefix");
        let vh = Store::open("https://bucket.s3.eu-west-1.amazonaws.com/pre/fix").unwrap();
        assert_eq!(vh.root, "pre/fix");
        let ps = Store::open("https://s3.eu-west-1.amazonaws.com/bucket/pre").unwrap();
        assert_eq!(ps.root, "pre");
        // A virtual-hosted bucket whose name starts with "s3" keeps its whole prefix.
        let s3_named = Store::open("https://s3-data.s3.us-east-1.amazonaws.com/pre/x").unwrap();
        assert_eq!(s3_named.root, "pre/x");
        let gs = Store::open("gs://bucket/backups").unwrap();
        assert_eq!(gs.root, "backups");
        let az = Store::open("https://acct.blob.core.windows.net/container/pre/fix");
        assert_eq!(
            az.map(|s| s.root).unwrap_or_else(|e| e.to_string()),
            "pre/fix"
        );
        assert!(matches!(
            Store::open("ftp://host/x"),
            Err(StoreError::BadLocation { .. })
        ));
        assert!(matches!(
            Store::open("/definitely/not/here"),
            Err(StoreError::BadLocation { .. })
        ));
    }
}
