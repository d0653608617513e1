//! `ember_remote_storage_*`: what each remote-write queue has read, sent,
//! retried, failed and dropped, its lag and its shards. Named after
//! Prometheus's `prometheus_remote_storage_*` so dashboards translate 1:1;
//! every series carries `remote_name` and `url`.

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// The metric families, registered once; queues take labelled children.
#[derive(Clone)]
pub struct SenderMetrics {
    samples_in: IntCounterVec,
    samples_sent: IntCounterVec,
    histograms_sent: IntCounterVec,
    exemplars_sent: IntCounterVec,
    samples_failed: IntCounterVec,
    samples_retried: IntCounterVec,
    samples_dropped: IntCounterVec,
    samples_pending: IntGaugeVec,
    bytes_sent: IntCounterVec,
    highest_in: GaugeVec,
    highest_sent: GaugeVec,
    shards: IntGaugeVec,
    shards_desired: GaugeVec,
    shards_min: IntGaugeVec,
    shards_max: IntGaugeVec,
    shard_capacity: IntGaugeVec,
    max_samples_per_send: IntGaugeVec,
    batch_duration: HistogramVec,
    metadata_sent: IntCounterVec,
    metadata_failed: IntCounterVec,
    metadata_retried: IntCounterVec,
    wal_segments_lost: IntCounterVec,
    enqueue_retries: IntCounterVec,
    already_sent: IntCounterVec,
}

const LABELS: [&str; 2] = ["remote_name", "url"];

impl SenderMetrics {
    pub fn new(registry: Option<&Registry>) -> Result<SenderMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &LABELS);
        let gauge = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &LABELS);
        let fgauge = |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &LABELS);
        let m = SenderMetrics {
            samples_in: counter(
                "ember_remote_storage_samples_in_total",
                "Samples read from the WAL for this remote.",
            )?,
            samples_sent: counter(
                "ember_remote_storage_samples_total",
                "Samples sent to the remote and accepted by it.",
            )?,
            histograms_sent: counter(
                "ember_remote_storage_histograms_total",
                "Native histogram samples sent to the remote and accepted by it (send_native_histograms); also counted in ember_remote_storage_samples_total.",
            )?,
            exemplars_sent: counter(
                "ember_remote_storage_exemplars_total",
                "Exemplars sent to the remote and accepted by it (send_exemplars); also counted in ember_remote_storage_samples_total.",
            )?,
            samples_failed: counter(
                "ember_remote_storage_samples_failed_total",
                "Samples the remote rejected with a non-retryable error (4xx); dropped.",
            )?,
            samples_retried: counter(
                "ember_remote_storage_samples_retried_total",
                "Samples whose send failed with a retryable error (5xx, 429, network) and was retried.",
            )?,
            samples_dropped: counter(
                "ember_remote_storage_samples_dropped_total",
                "Samples read from the WAL but not sent: dropped by write_relabel_configs or of an unknown series.",
            )?,
            samples_pending: gauge(
                "ember_remote_storage_samples_pending",
                "Samples queued in the shards, not yet sent.",
            )?,
            bytes_sent: counter(
                "ember_remote_storage_bytes_total",
                "Compressed bytes of sample requests sent.",
            )?,
            highest_in: fgauge(
                "ember_remote_storage_highest_timestamp_in_seconds",
                "Highest sample timestamp read from the WAL for this remote.",
            )?,
            highest_sent: fgauge(
                "ember_remote_storage_queue_highest_sent_timestamp_seconds",
                "Highest sample timestamp the remote has accepted.",
            )?,
            shards: gauge(
                "ember_remote_storage_shards",
                "Shards currently sending in parallel.",
            )?,
            shards_desired: fgauge(
                "ember_remote_storage_shards_desired",
                "Shards the last scaling decision asked for, before min/max.",
            )?,
            shards_min: gauge(
                "ember_remote_storage_shards_min",
                "queue_config.min_shards.",
            )?,
            shards_max: gauge(
                "ember_remote_storage_shards_max",
                "queue_config.max_shards.",
            )?,
            shard_capacity: gauge(
                "ember_remote_storage_shard_capacity",
                "queue_config.capacity: samples each shard queues.",
            )?,
            max_samples_per_send: gauge(
                "ember_remote_storage_max_samples_per_send",
                "queue_config.max_samples_per_send.",
            )?,
            batch_duration: HistogramVec::new(
                HistogramOpts::new(
                    "ember_remote_storage_sent_batch_duration_seconds",
                    "Duration of send calls to the remote.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0,
                ]),
                &LABELS,
            )?,
            metadata_sent: counter(
                "ember_remote_storage_metadata_total",
                "Metric metadata entries sent to the remote.",
            )?,
            metadata_failed: counter(
                "ember_remote_storage_metadata_failed_total",
                "Metric metadata entries the remote rejected (non-retryable).",
            )?,
            metadata_retried: counter(
                "ember_remote_storage_metadata_retried_total",
                "Metric metadata entries whose send was retried.",
            )?,
            wal_segments_lost: counter(
                "ember_remote_storage_wal_segments_lost_total",
                "WAL segments deleted before this remote had sent them (the queue fell too far behind).",
            )?,
            enqueue_retries: counter(
                "ember_remote_storage_enqueue_retries_total",
                "Times the WAL reader waited because a shard queue was full.",
            )?,
            already_sent: counter(
                "ember_remote_storage_samples_already_sent_total",
                "Samples not sent again because the remote already had them: skipped when re-read after a restart, or rejected as out of order or duplicate when a request repeating them was split up.",
            )?,
        };
        if let Some(r) = registry {
            r.register(Box::new(m.samples_in.clone()))?;
            r.register(Box::new(m.samples_sent.clone()))?;
            r.register(Box::new(m.histograms_sent.clone()))?;
            r.register(Box::new(m.exemplars_sent.clone()))?;
            r.register(Box::new(m.samples_failed.clone()))?;
            r.register(Box::new(m.samples_retried.clone()))?;
            r.register(Box::new(m.samples_dropped.clone()))?;
            r.register(Box::new(m.samples_pending.clone()))?;
            r.register(Box::new(m.bytes_sent.clone()))?;
            r.register(Box::new(m.highest_in.clone()))?;
            r.register(Box::new(m.highest_sent.clone()))?;
            r.register(Box::new(m.shards.clone()))?;
            r.register(Box::new(m.shards_desired.clone()))?;
            r.register(Box::new(m.shards_min.clone()))?;
            r.register(Box::new(m.shards_max.clone()))?;
            r.register(Box::new(m.shard_capacity.clone()))?;
            r.register(Box::new(m.max_samples_per_send.clone()))?;
            r.register(Box::new(m.batch_duration.clone()))?;
            r.register(Box::new(m.metadata_sent.clone()))?;
            r.register(Box::new(m.metadata_failed.clone()))?;
            r.register(Box::new(m.metadata_retried.clone()))?;
            r.register(Box::new(m.wal_segments_lost.clone()))?;
            r.register(Box::new(m.enqueue_retries.clone()))?;
            r.register(Box::new(m.already_sent.clone()))?;
        }
        Ok(m)
    }

    /// The children for one remote.
    pub fn for_remote(&self, name: &str, url: &str) -> QueueMetrics {
        let l = [name, url];
        QueueMetrics {
            samples_in: self.samples_in.with_label_values(&l),
            samples_sent: self.samples_sent.with_label_values(&l),
            histograms_sent: self.histograms_sent.with_label_values(&l),
            exemplars_sent: self.exemplars_sent.with_label_values(&l),
            samples_failed: self.samples_failed.with_label_values(&l),
            samples_retried: self.samples_retried.with_label_values(&l),
            samples_dropped: self.samples_dropped.with_label_values(&l),
            samples_pending: self.samples_pending.with_label_values(&l),
            bytes_sent: self.bytes_sent.with_label_values(&l),
            highest_in: self.highest_in.with_label_values(&l),
            highest_sent: self.highest_sent.with_label_values(&l),
            shards: self.shards.with_label_values(&l),
            shards_desired: self.shards_desired.with_label_values(&l),
            shards_min: self.shards_min.with_label_values(&l),
            shards_max: self.shards_max.with_label_values(&l),
            shard_capacity: self.shard_capacity.with_label_values(&l),
            max_samples_per_send: self.max_samples_per_send.with_label_values(&l),
            batch_duration: self.batch_duration.with_label_values(&l),
            metadata_sent: self.metadata_sent.with_label_values(&l),
            metadata_failed: self.metadata_failed.with_label_values(&l),
            metadata_retried: self.metadata_retried.with_label_values(&l),
            wal_segments_lost: self.wal_segments_lost.with_label_values(&l),
            enqueue_retries: self.enqueue_retries.with_label_values(&l),
            already_sent: self.already_sent.with_label_values(&l),
        }
    }
}

/// One remote's metrics.
#[derive(Clone)]
pub struct QueueMetrics {
    pub samples_in: IntCounter,
    pub samples_sent: IntCounter,
    pub histograms_sent: IntCounter,
    pub exemplars_sent: IntCounter,
    pub samples_failed: IntCounter,
    pub samples_retried: IntCounter,
    pub samples_dropped: IntCounter,
    pub samples_pending: IntGauge,
    pub bytes_sent: IntCounter,
    pub highest_in: prometheus::Gauge,
    pub highest_sent: prometheus::Gauge,
    pub shards: IntGauge,
    pub shards_desired: prometheus::Gauge,
    pub shards_min: IntGauge,
    pub shards_max: IntGauge,
    pub shard_capacity: IntGauge,
    pub max_samples_per_send: IntGauge,
    pub batch_duration: prometheus::Histogram,
    pub metadata_sent: IntCounter,
    pub metadata_failed: IntCounter,
    pub metadata_retried: IntCounter,
    pub wal_segments_lost: IntCounter,
    pub enqueue_retries: IntCounter,
    pub already_sent: IntCounter,
}
