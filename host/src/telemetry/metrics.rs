//! The registry behind `/metrics`: process, build, reload and HTTP metrics.
//! Later subsystems register their own collectors on [`Metrics::registry`].

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Ember's own metrics. Cheap to clone: every field is a handle into the registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub config_last_reload_successful: IntGauge,
    pub config_last_reload_success_timestamp: Gauge,
    pub ready: IntGauge,
    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,
    pub http_connections_accepted: IntCounterVec,
    pub http_connections_closed: IntCounterVec,
    pub http_read_timeouts: IntCounterVec,
    pub head_series: IntGauge,
    pub head_samples_appended: prometheus::IntCounter,
    pub blocks_loaded: IntGauge,
    pub head_cuts: prometheus::IntCounter,
    pub compactions: prometheus::IntCounter,
    pub retention_deletions: prometheus::IntCounter,
    pub exemplar_max: IntGauge,
    pub exemplars_in_storage: IntGauge,
    pub exemplar_series: IntGauge,
    pub exemplars_appended: prometheus::IntCounter,
    pub exemplars_out_of_order: prometheus::IntCounter,
    pub bucket: BucketMetrics,
}

/// Raises a registry counter to a total the storage keeps itself.
fn catch_up(counter: &prometheus::IntCounter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        registry.register(Box::new(super::process::ProcessCollector::new()?))?;

        let build_info = IntGaugeVec::new(
            Opts::new(
                "ember_build_info",
                "A metric with a constant '1' value labeled by version, revision and rustc version from which Ember was built.",
            ),
            &["version", "revision", "rustversion"],
        )?;
        build_info
            .with_label_values(&[super::VERSION, super::REVISION, super::RUSTC_VERSION])
            .set(1);
        registry.register(Box::new(build_info))?;

        let config_last_reload_successful = IntGauge::new(
            "ember_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
        )?;
        registry.register(Box::new(config_last_reload_successful.clone()))?;
        let config_last_reload_success_timestamp = Gauge::new(
            "ember_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
        )?;
        registry.register(Box::new(config_last_reload_success_timestamp.clone()))?;
        let ready = IntGauge::new(
            "ember_ready",
            "Whether Ember start-up was fully completed and the server is ready for normal operation.",
        )?;
        registry.register(Box::new(ready.clone()))?;

        let http_requests = IntCounterVec::new(
            Opts::new("ember_http_requests_total", "Counter of HTTP requests."),
            &["handler", "code"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        let http_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "ember_http_request_duration_seconds",
                "Histogram of latencies for HTTP requests.",
            )
            // Prometheus's own buckets for this metric, so dashboards line up.
            .buckets(vec![0.1, 0.2, 0.4, 1.0, 3.0, 8.0, 20.0, 60.0, 120.0]),
            &["handler"],
        )?;
        registry.register(Box::new(http_request_duration.clone()))?;
        let http_connections_accepted = IntCounterVec::new(
            Opts::new(
                "ember_http_connections_accepted_total",
                "HTTP connections accepted, by listener.",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(http_connections_accepted.clone()))?;
        let http_connections_closed = IntCounterVec::new(
            Opts::new(
                "ember_http_connections_closed_total",
                "HTTP connections closed, by listener.",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(http_connections_closed.clone()))?;
        let http_read_timeouts = IntCounterVec::new(
            Opts::new(
                "ember_http_read_timeouts_total",
                "HTTP connections closed because they were idle or their request took longer than --web.read-timeout.",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(http_read_timeouts.clone()))?;

        let head_series = IntGauge::new(
            "ember_tsdb_head_series",
            "Total number of series in the head block.",
        )?;
        registry.register(Box::new(head_series.clone()))?;
        let head_samples_appended = prometheus::IntCounter::new(
            "ember_tsdb_head_samples_appended_total",
            "Total number of appended samples.",
        )?;
        registry.register(Box::new(head_samples_appended.clone()))?;

        let blocks_loaded = IntGauge::new(
            "ember_tsdb_blocks_loaded",
            "Number of currently loaded data blocks.",
        )?;
        registry.register(Box::new(blocks_loaded.clone()))?;
        let head_cuts =
            prometheus::IntCounter::new("ember_tsdb_head_cuts_total", "Blocks cut from the head.")?;
        registry.register(Box::new(head_cuts.clone()))?;
        let compactions = prometheus::IntCounter::new(
            "ember_tsdb_compactions_total",
            "Total number of compactions that were executed.",
        )?;
        registry.register(Box::new(compactions.clone()))?;
        let retention_deletions = prometheus::IntCounter::new(
            "ember_tsdb_retention_deleted_blocks_total",
            "Blocks deleted because they were past the retention time or size.",
        )?;
        registry.register(Box::new(retention_deletions.clone()))?;

        let exemplar_max = IntGauge::new(
            "ember_tsdb_exemplar_max_exemplars",
            "Total number of exemplars the exemplar storage can store, resizeable.",
        )?;
        registry.register(Box::new(exemplar_max.clone()))?;
        let exemplars_in_storage = IntGauge::new(
            "ember_tsdb_exemplar_exemplars_in_storage",
            "Number of exemplars currently in circular storage.",
        )?;
        registry.register(Box::new(exemplars_in_storage.clone()))?;
        let exemplar_series = IntGauge::new(
            "ember_tsdb_exemplar_series_with_exemplars_in_storage",
            "Number of series with exemplars currently in circular storage.",
        )?;
        registry.register(Box::new(exemplar_series.clone()))?;
        let exemplars_appended = prometheus::IntCounter::new(
            "ember_tsdb_exemplar_exemplars_appended_total",
            "Total number of appended exemplars.",
        )?;
        registry.register(Box::new(exemplars_appended.clone()))?;
        let exemplars_out_of_order = prometheus::IntCounter::new(
            "ember_tsdb_exemplar_out_of_order_exemplars_total",
            "Total number of out of order exemplar ingestion failed attempts.",
        )?;
        registry.register(Box::new(exemplars_out_of_order.clone()))?;

        let bucket = BucketMetrics::new(&registry)?;

        Ok(Metrics {
            exemplar_max,
            exemplars_in_storage,
            exemplar_series,
            exemplars_appended,
            exemplars_out_of_order,
            bucket,
            blocks_loaded,
            head_cuts,
            compactions,
            retention_deletions,
            head_series,
            head_samples_appended,
            registry,
            config_last_reload_successful,
            config_last_reload_success_timestamp,
            ready,
            http_requests,
            http_request_duration,
            http_connections_accepted,
            http_connections_closed,
            http_read_timeouts,
        })
    }

    /// Copies the storage's own counters into the registry before a scrape.
    pub fn observe_storage(&self, storage: &crate::storage::Storage) {
        let stats = storage.head_stats();
        self.head_series.set(stats.num_series as i64);
        use std::sync::atomic::Ordering::Relaxed;
        let m = &storage.metrics;
        catch_up(&self.head_samples_appended, m.samples_appended());
        catch_up(&self.head_cuts, m.blocks_cut.load(Relaxed));
        catch_up(&self.compactions, m.compactions.load(Relaxed));
        catch_up(
            &self.retention_deletions,
            m.blocks_deleted_by_retention.load(Relaxed),
        );
        self.blocks_loaded.set(storage.blocks().len() as i64);
        let ex = storage.exemplars().stats();
        self.exemplar_max.set(ex.max_exemplars as i64);
        self.exemplars_in_storage
            .set(ex.exemplars_in_storage as i64);
        self.exemplar_series.set(ex.series_with_exemplars as i64);
        catch_up(&self.exemplars_appended, ex.appended_total);
        catch_up(&self.exemplars_out_of_order, ex.out_of_order_total);
        if let Some(os) = storage.bucket() {
            self.bucket.observe(os);
        }
    }

    /// The registry in Prometheus text format 0.0.4.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Object storage (`storage.object_store`): uploads, bucket listings, the
/// remote read cache. Registered always, zero without a bucket.
#[derive(Clone)]
pub struct BucketMetrics {
    uploads: prometheus::IntCounter,
    upload_failures: prometheus::IntCounter,
    syncs: prometheus::IntCounter,
    sync_failures: prometheus::IntCounter,
    local_removed: prometheus::IntCounter,
    sources_deleted: prometheus::IntCounter,
    query_failures: prometheus::IntCounter,
    cache_requests: IntCounterVec,
    cache_evictions: prometheus::IntCounter,
    cache_bytes: IntGauge,
    remote_blocks: IntGauge,
    last_sync: IntGauge,
}

impl BucketMetrics {
    fn new(registry: &Registry) -> Result<BucketMetrics, prometheus::Error> {
        let counter =
            |name: &str, help: &str| -> Result<prometheus::IntCounter, prometheus::Error> {
                let c = prometheus::IntCounter::new(name, help)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "ember_objstore_cache_requests_total",
                "Chunk reads of remote blocks, by whether the local cache had them.",
            ),
            &["result"],
        )?;
        registry.register(Box::new(cache_requests.clone()))?;
        Ok(BucketMetrics {
            uploads: counter(
                "ember_objstore_uploads_total",
                "Blocks uploaded to object storage and verified.",
            )?,
            upload_failures: counter(
                "ember_objstore_upload_failures_total",
                "Block uploads that failed (retried at the next sync).",
            )?,
            syncs: counter("ember_objstore_syncs_total", "Listings of the bucket.")?,
            sync_failures: counter(
                "ember_objstore_sync_failures_total",
                "Listings of the bucket that failed.",
            )?,
            local_removed: counter(
                "ember_objstore_local_blocks_removed_total",
                "Uploaded blocks removed locally past the local retention.",
            )?,
            sources_deleted: counter(
                "ember_objstore_replaced_blocks_deleted_total",
                "Blocks deleted from the bucket because an uploaded compacted block replaces them.",
            )?,
            query_failures: counter(
                "ember_objstore_query_block_failures_total",
                "Remote block reads left out of a query answer because the bucket failed.",
            )?,
            cache_requests,
            cache_evictions: counter(
                "ember_objstore_cache_evictions_total",
                "Chunks evicted from the remote block cache.",
            )?,
            cache_bytes: gauge(
                "ember_objstore_cache_bytes",
                "Bytes of remote block data in the local cache.",
            )?,
            remote_blocks: gauge(
                "ember_objstore_remote_blocks",
                "Complete blocks in the bucket at the last listing.",
            )?,
            last_sync: gauge(
                "ember_objstore_last_successful_sync_timestamp_seconds",
                "When the bucket was last listed successfully.",
            )?,
        })
    }

    fn observe(&self, os: &crate::storage::bucket::ObjectStorage) {
        use std::sync::atomic::Ordering::Relaxed;
        let m = &os.metrics;
        catch_up(&self.uploads, m.uploads.load(Relaxed));
        catch_up(&self.upload_failures, m.upload_failures.load(Relaxed));
        catch_up(&self.syncs, m.syncs.load(Relaxed));
        catch_up(&self.sync_failures, m.sync_failures.load(Relaxed));
        catch_up(&self.local_removed, m.local_blocks_removed.load(Relaxed));
        catch_up(&self.sources_deleted, m.sources_deleted.load(Relaxed));
        catch_up(&self.query_failures, m.query_failures.load(Relaxed));
        let c = &os.cache.metrics;
        catch_up(
            &self.cache_requests.with_label_values(&["hit"]),
            c.hits.load(Relaxed),
        );
        catch_up(
            &self.cache_requests.with_label_values(&["miss"]),
            c.misses.load(Relaxed),
        );
        catch_up(&self.cache_evictions, c.evictions.load(Relaxed));
        self.cache_bytes.set(os.cache.used() as i64);
        self.remote_blocks.set(os.remote_blocks().len() as i64);
        self.last_sync
            .set(m.last_sync_success_seconds.load(Relaxed));
    }
}
