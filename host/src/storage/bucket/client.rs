//! The bucket as Ember uses it: block layout, uploads that never expose a
//! half-written block, listing, ranged reads. Storage code is synchronous,
//! so every call runs on the client's own small Tokio runtime and the
//! caller waits for it; that works from any thread, async or not.
//!
//! ```text
//! <prefix>/<ULID>/samples.parquet   uploaded first
//! <prefix>/<ULID>/series.parquet
//! <prefix>/<ULID>/meta.json         uploaded last, after the others are verified:
//!                                   a block without it is invisible
//! ```

use std::future::Future;
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::config::object_store::{ObjectStoreConfig, ObjectStoreKind};
use crate::storage::block::{BlockMeta, HISTOGRAMS_FILE, META_FILE, SAMPLES_FILE, SERIES_FILE};

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("object storage {bucket}: {op} {path}: {source}")]
    Store {
        bucket: String,
        op: &'static str,
        path: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("object storage {bucket}: {path}: {message}")]
    Invalid {
        bucket: String,
        path: String,
        message: String,
    },
    #[error("object storage: {0}")]
    Setup(String),
    #[error("object storage {0}: the client runtime is shutting down")]
    Shutdown(String),
}

/// A block as listed in the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedBlock {
    pub ulid: String,
    /// `meta.json` is there, so the block is complete.
    pub complete: bool,
}

pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// `s3://bucket/prefix` or `file:///dir/prefix`, for logs and errors.
    name: String,
    /// `Option` only so `Drop` can shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Bucket {
    pub fn new(cfg: &ObjectStoreConfig) -> Result<Bucket, BucketError> {
        // Few retries with short timeouts: an unreachable bucket must turn
        // into a query warning within seconds, and uploads are retried by
        // the shipper's next round anyway.
        let retry = object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
        };
        let (store, name): (Arc<dyn ObjectStore>, String) = match cfg.kind {
            ObjectStoreKind::S3 => {
                let client = object_store::ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(3))
                    .with_timeout(Duration::from_secs(60))
                    .with_allow_http(cfg.endpoint.starts_with("http://"));
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(&cfg.bucket)
                    .with_retry(retry)
                    .with_client_options(client);
                if !cfg.region.is_empty() {
                    b = b.with_region(&cfg.region);
                }
                if !cfg.endpoint.is_empty() {
                    // S3-compatible servers are usually addressed by path.
                    b = b
                        .with_endpoint(&cfg.endpoint)
                        .with_virtual_hosted_style_request(false);
                }
                if !cfg.access_key_id.is_empty() {
                    b = b
                        .with_access_key_id(&cfg.access_key_id)
                        .with_secret_access_key(cfg.secret_access_key.expose());
                }
                let store = b
                    .build()
                    .map_err(|e| BucketError::Setup(format!("bucket {:?}: {e}", cfg.bucket)))?;
                (Arc::new(store), format!("s3://{}", cfg.bucket))
            }
            ObjectStoreKind::Filesystem => {
                std::fs::create_dir_all(&cfg.directory).map_err(|e| {
                    BucketError::Setup(format!("directory {:?}: {e}", cfg.directory))
                })?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&cfg.directory)
                    .map_err(|e| {
                    BucketError::Setup(format!("directory {:?}: {e}", cfg.directory))
                })?;
                (Arc::new(store), format!("file://{}", cfg.directory))
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ember-bucket")
            .enable_all()
            .build()
            .map_err(|e| BucketError::Setup(format!("starting the client runtime: {e}")))?;
        let name = if cfg.prefix.is_empty() {
            name
        } else {
            format!("{name}/{}", cfg.prefix)
        };
        Ok(Bucket {
            store,
            prefix: cfg.prefix.clone(),
            name,
            runtime: Some(runtime),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn path(&self, ulid: &str, file: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(format!("{ulid}/{file}"))
        } else {
            Path::from(format!("{}/{ulid}/{file}", self.prefix))
        }
    }

    /// Runs `f` on the client runtime and waits for it.
    fn run<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, BucketError>> + Send + 'static,
    ) -> Result<T, BucketError> {
        let Some(rt) = &self.runtime else {
            return Err(BucketError::Shutdown(self.name.clone()));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv()
            .map_err(|_| BucketError::Shutdown(self.name.clone()))?
    }

    fn store_err(
        &self,
        op: &'static str,
        path: &Path,
    ) -> impl FnOnce(object_store::Error) -> BucketError + Send + 'static + use<> {
        let bucket = self.name.clone();
        let path = path.to_string();
        move |source| BucketError::Store {
            bucket,
            op,
            path,
            source: Box::new(source),
        }
    }

    /// Every block directory under the prefix and whether it is complete.
    pub fn list_blocks(&self) -> Result<Vec<ListedBlock>, BucketError> {
        let store = self.store.clone();
        let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
        let err = self.store_err("list", &prefix.clone().unwrap_or_default());
        let skip = prefix.as_ref().map_or(0, |p| p.parts().count());
        let objects: Vec<object_store::ObjectMeta> =
            self.run(async move { store.list(prefix.as_ref()).try_collect().await.map_err(err) })?;
        let mut blocks: std::collections::BTreeMap<String, bool> = Default::default();
        for o in objects {
            let parts: Vec<String> = o
                .location
                .parts()
                .skip(skip)
                .map(|p| p.as_ref().to_owned())
                .collect();
            let [ulid, file] = parts.as_slice() else {
                continue;
            };
            if ulid::Ulid::from_string(ulid).is_err() {
                continue;
            }
            let complete = blocks.entry(ulid.clone()).or_default();
            *complete |= file == META_FILE;
        }
        Ok(blocks
            .into_iter()
            .map(|(ulid, complete)| ListedBlock { ulid, complete })
            .collect())
    }

    pub fn get(&self, ulid: &str, file: &str) -> Result<Bytes, BucketError> {
        let store = self.store.clone();
        let path = self.path(ulid, file);
        let err = self.store_err("get", &path);
        self.run(async move {
            match store.get(&path).await {
                Ok(r) => r.bytes().await,
                Err(e) => Err(e),
            }
            .map_err(err)
        })
    }

    pub fn get_range(
        &self,
        ulid: &str,
        file: &str,
        range: Range<u64>,
    ) -> Result<Bytes, BucketError> {
        let store = self.store.clone();
        let path = self.path(ulid, file);
        let err = self.store_err("get", &path);
        self.run(async move { store.get_range(&path, range).await.map_err(err) })
    }

    pub fn get_meta(&self, ulid: &str) -> Result<BlockMeta, BucketError> {
        let bytes = self.get(ulid, META_FILE)?;
        serde_json::from_slice(&bytes).map_err(|e| BucketError::Invalid {
            bucket: self.name.clone(),
            path: self.path(ulid, META_FILE).to_string(),
            message: e.to_string(),
        })
    }

    /// Uploads a local block: the Parquet files, each checked by its size
    /// in the bucket, then `meta.json` (with `shipped`), so a reader never
    /// sees a block whose files are not all there. Re-uploading after an
    /// interruption simply overwrites what the last attempt left.
    pub fn upload_block(&self, dir: &FsPath, meta: &BlockMeta) -> Result<(), BucketError> {
        let Some(shipped) = &meta.shipped else {
            return Err(BucketError::Invalid {
                bucket: self.name.clone(),
                path: meta.ulid.clone(),
                message: "meta has no shipped section".into(),
            });
        };
        for f in &shipped.files {
            let local = dir.join(&f.rel_path);
            let data = std::fs::read(&local).map_err(|e| BucketError::Invalid {
                bucket: self.name.clone(),
                path: local.display().to_string(),
                message: format!("reading the local file: {e}"),
            })?;
            self.put_verified(&meta.ulid, &f.rel_path, Bytes::from(data), f.size_bytes)?;
        }
        let json = serde_json::to_vec_pretty(meta).map_err(|e| BucketError::Invalid {
            bucket: self.name.clone(),
            path: meta.ulid.clone(),
            message: e.to_string(),
        })?;
        let len = json.len() as u64;
        self.put_verified(&meta.ulid, META_FILE, Bytes::from(json), len)
    }

    fn put_verified(
        &self,
        ulid: &str,
        file: &str,
        data: Bytes,
        size: u64,
    ) -> Result<(), BucketError> {
        let store = self.store.clone();
        let path = self.path(ulid, file);
        let put_err = self.store_err("put", &path);
        let head_err = self.store_err("head", &path);
        let bucket = self.name.clone();
        self.run(async move {
            store
                .put(&path, PutPayload::from_bytes(data))
                .await
                .map_err(put_err)?;
            let got = store.head(&path).await.map_err(head_err)?;
            if got.size != size {
                return Err(BucketError::Invalid {
                    bucket,
                    path: path.to_string(),
                    message: format!("uploaded {size} bytes but the bucket holds {}", got.size),
                });
            }
            Ok(())
        })
    }

    /// Deletes a block: `meta.json` first, so it disappears at once for
    /// readers, then its other files.
    pub fn delete_block(&self, ulid: &str) -> Result<(), BucketError> {
        let store = self.store.clone();
        let paths: Vec<Path> = [META_FILE, SAMPLES_FILE, SERIES_FILE, HISTOGRAMS_FILE]
            .iter()
            .map(|f| self.path(ulid, f))
            .collect();
        let bucket = self.name.clone();
        self.run(async move {
            for path in paths {
                match store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(source) => {
                        return Err(BucketError::Store {
                            bucket,
                            op: "delete",
                            path: path.to_string(),
                            source: Box::new(source),
                        });
                    }
                }
            }
            Ok(())
        })
    }
}
