//! `storage.object_store`: where compacted blocks are shipped and which
//! bucket queries read older blocks from. An Ember extension; Prometheus has
//! no such section (Thanos's sidecar and store gateway do this job there).

use serde::{Deserialize, Serialize};

use super::duration::PromDuration;
use super::http_client::Secret;
use super::labels::is_valid_label_name;

/// Which object store implementation serves the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectStoreKind {
    /// Amazon S3 or any S3-compatible server (MinIO, Ceph RGW, moto, ...).
    S3,
    /// A local directory; for tests and shared file systems.
    Filesystem,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "RawObjectStore")]
pub struct ObjectStoreConfig {
    #[serde(rename = "type")]
    pub kind: ObjectStoreKind,
    /// S3: the bucket name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    /// S3: the endpoint URL of an S3-compatible server; empty means AWS.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// S3 credentials; when empty, the `AWS_*` environment variables apply.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub access_key_id: String,
    #[serde(skip_serializing_if = "Secret::is_empty")]
    pub secret_access_key: Secret,
    /// Filesystem: the directory that plays the bucket.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub directory: String,
    /// Key prefix inside the bucket, so several uses can share one bucket.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Upload this server's blocks. Off for a server that only queries.
    pub upload: bool,
    /// Delete an uploaded block locally once it ends this long before the
    /// newest data; queries then read it from the bucket. Unset keeps
    /// uploaded blocks until the normal retention removes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_retention: Option<PromDuration>,
    /// Bytes of remote block data kept on local disk for queries;
    /// `cache_size` in the file, shown back as `<n>B`.
    #[serde(rename = "cache_size", serialize_with = "bytes_with_unit")]
    pub cache_size_bytes: u64,
    /// How often the bucket is listed and pending blocks are uploaded.
    pub sync_interval: PromDuration,
    /// Serve every block in the bucket (all external label sets), not only
    /// this server's own, with external labels added to the series.
    pub global_view: bool,
    /// Labels that tell replicas of one source apart; series equal except
    /// for these are merged into one (deduplication).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replica_labels: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObjectStore {
    #[serde(rename = "type")]
    kind: ObjectStoreKind,
    #[serde(default)]
    bucket: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    secret_access_key: Secret,
    #[serde(default)]
    directory: String,
    #[serde(default)]
    prefix: String,
    upload: Option<bool>,
    local_retention: Option<PromDuration>,
    cache_size: Option<String>,
    sync_interval: Option<PromDuration>,
    #[serde(default)]
    global_view: bool,
    #[serde(default)]
    replica_labels: Vec<String>,
}

fn bytes_with_unit<S: serde::Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{n}B"))
}

pub const DEFAULT_CACHE_SIZE_BYTES: u64 = 1 << 30;
pub const DEFAULT_SYNC_INTERVAL: PromDuration = PromDuration::from_secs(60);

impl TryFrom<RawObjectStore> for ObjectStoreConfig {
    type Error = String;

    fn try_from(raw: RawObjectStore) -> Result<Self, String> {
        match raw.kind {
            ObjectStoreKind::S3 => {
                if raw.bucket.is_empty() {
                    return Err("object_store: type s3 needs a bucket".into());
                }
                if !raw.directory.is_empty() {
                    return Err("object_store: directory is for type filesystem, not s3".into());
                }
                let url_ok = raw.endpoint.is_empty()
                    || raw.endpoint.starts_with("http://")
                    || raw.endpoint.starts_with("https://");
                if !url_ok {
                    return Err(format!(
                        "object_store: endpoint {:?} must be an http:// or https:// URL",
                        raw.endpoint
                    ));
                }
                if raw.access_key_id.is_empty() != raw.secret_access_key.is_empty() {
                    return Err(
                        "object_store: set both access_key_id and secret_access_key, or neither"
                            .into(),
                    );
                }
            }
            ObjectStoreKind::Filesystem => {
                if raw.directory.is_empty() {
                    return Err("object_store: type filesystem needs a directory".into());
                }
                if !raw.bucket.is_empty() || !raw.endpoint.is_empty() {
                    return Err(
                        "object_store: bucket and endpoint are for type s3, not filesystem".into(),
                    );
                }
            }
        }
        if raw.prefix.split('/').any(|p| p == "." || p == "..") {
            return Err(format!(
                "object_store: prefix {:?} must not contain . or ..",
                raw.prefix
            ));
        }
        for name in &raw.replica_labels {
            if !is_valid_label_name(name) {
                return Err(format!(
                    "object_store: replica_labels: {name:?} is not a valid label name"
                ));
            }
        }
        let cache_size_bytes = match raw.cache_size {
            None => DEFAULT_CACHE_SIZE_BYTES,
            Some(s) if s == "0" => 0,
            Some(s) => super::scrape::parse_bytes(&s)
                .map_err(|e| format!("object_store: cache_size: {e}"))?,
        };
        let sync_interval = raw.sync_interval.unwrap_or(DEFAULT_SYNC_INTERVAL);
        if sync_interval.is_zero() {
            return Err("object_store: sync_interval must be greater than 0".into());
        }
        Ok(ObjectStoreConfig {
            kind: raw.kind,
            bucket: raw.bucket,
            endpoint: raw.endpoint,
            region: raw.region,
            access_key_id: raw.access_key_id,
            secret_access_key: raw.secret_access_key,
            directory: raw.directory,
            prefix: raw.prefix.trim_matches('/').to_owned(),
            upload: raw.upload.unwrap_or(true),
            local_retention: raw.local_retention,
            cache_size_bytes,
            sync_interval,
            global_view: raw.global_view,
            replica_labels: raw.replica_labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ObjectStoreConfig, String> {
        serde_yaml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn s3_with_defaults() {
        let c = parse(
            "type: s3\nbucket: b\nendpoint: http://127.0.0.1:9000\nprefix: /x/y/\nreplica_labels: [replica]\n",
        )
        .unwrap();
        assert_eq!(c.kind, ObjectStoreKind::S3);
        assert_eq!(c.prefix, "x/y");
        assert!(c.upload);
        assert_eq!(c.cache_size_bytes, DEFAULT_CACHE_SIZE_BYTES);
        assert_eq!(c.sync_interval, DEFAULT_SYNC_INTERVAL);
        assert_eq!(c.replica_labels, ["replica"]);
    }

    #[test]
    fn bad_settings_are_named() {
        for (text, want) in [
            ("type: s3\n", "needs a bucket"),
            ("type: filesystem\n", "needs a directory"),
            ("type: gcs\nbucket: b\n", "unknown variant"),
            ("type: s3\nbucket: b\nendpoint: 127.0.0.1\n", "http://"),
            ("type: s3\nbucket: b\naccess_key_id: a\n", "both"),
            ("type: s3\nbucket: b\nreplica_labels: [a-b]\n", "a-b"),
            ("type: s3\nbucket: b\ncache_size: lots\n", "cache_size"),
            ("type: s3\nbucket: b\nbogus: 1\n", "bogus"),
            ("type: filesystem\ndirectory: /d\nprefix: ../x\n", "prefix"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn secret_is_not_echoed() {
        let c = parse("type: s3\nbucket: b\naccess_key_id: a\nsecret_access_key: hush\n").unwrap();
        let text = serde_yaml::to_string(&c).unwrap();
        assert!(!text.contains("hush"), "{text}");
        // What the status page shows loads again (secret aside).
        let again = parse(&text.replace("<secret>", "x")).unwrap();
        assert_eq!(again.cache_size_bytes, c.cache_size_bytes);
    }
}
