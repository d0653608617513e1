//! The remote-write sender: every `remote_write` entry gets a queue that
//! follows the WAL (not memory, so nothing is lost while a remote is down
//! or Ember restarts), sends samples through sharded, batching, retrying
//! queues, and sends metric metadata on its own schedule.
//!
//! Each queue keeps its progress in `<data>/remote_write/<name>.json` and
//! holds back WAL checkpoints from deleting segments it has not sent yet
//! (within [`crate::storage::MAX_HELD_WAL_SEGMENTS`]).

pub mod client;
pub mod metrics;
pub mod policy;
pub mod progress;
pub mod queue;
pub mod shards;
pub mod wal_reader;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use self::client::{RemoteClient, SendError};
use self::metrics::SenderMetrics;
use self::policy::next_backoff;
use self::progress::{AckTracker, Position};
use self::shards::Shared;
use crate::config::Config;
use crate::config::remote::RemoteWriteConfig;
use crate::remote::proto;
use crate::storage::Storage;

/// Where the metric metadata to send comes from (the scrape targets).
pub type MetadataSource = Arc<dyn Fn() -> Vec<proto::MetricMetadata> + Send + Sync>;

/// The name a remote goes by in metrics, logs and its progress file: its
/// `name`, or a hash of its URL (stable across changes to other settings,
/// so a queue resumes after a reload that only tuned it).
pub fn queue_name(cfg: &RemoteWriteConfig) -> String {
    if !cfg.name.is_empty() {
        return cfg.name.clone();
    }
    let h = xxhash_rust::xxh3::xxh3_64(cfg.url.as_bytes());
    format!("{:06x}", h >> 40)
}

fn progress_file(data_dir: &Path, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    data_dir.join("remote_write").join(format!("{safe}.json"))
}

/// The metadata type enum of the remote-write protocol.
pub fn metadata_type(kind: &str) -> i32 {
    match kind {
        "counter" => 1,
        "gauge" => 2,
        "histogram" => 3,
        "gaugehistogram" => 4,
        "summary" => 5,
        "info" => 6,
        "stateset" => 7,
        _ => 0,
    }
}

struct Running {
    name: String,
    stop: CancellationToken,
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    metadata: Option<tokio::task::JoinHandle<()>>,
}

/// Starts, reconfigures and stops the queues.
pub struct RemoteWriteManager {
    storage: Arc<Storage>,
    config_dir: PathBuf,
    metrics: SenderMetrics,
    metadata: MetadataSource,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    applied: Option<(Vec<RemoteWriteConfig>, BTreeMap<String, String>)>,
    running: Vec<Running>,
}

impl RemoteWriteManager {
    pub fn new(
        storage: Arc<Storage>,
        config_dir: PathBuf,
        registry: Option<&prometheus::Registry>,
        metadata: MetadataSource,
    ) -> Result<Arc<RemoteWriteManager>, prometheus::Error> {
        Ok(Arc::new(RemoteWriteManager {
            storage,
            config_dir,
            metrics: SenderMetrics::new(registry)?,
            metadata,
            state: tokio::sync::Mutex::new(State::default()),
        }))
    }

    /// Runs the queues `config` asks for; restarts them when their
    /// settings or the external labels changed (each resumes from its
    /// saved position).
    pub async fn apply(&self, config: &Config) {
        let external: BTreeMap<String, String> = config
            .global
            .external_labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let wanted = (config.remote_write.clone(), external);
        let mut state = self.state.lock().await;
        if state.applied.as_ref() == Some(&wanted) {
            return;
        }
        for r in std::mem::take(&mut state.running) {
            stop(r).await;
        }
        for cfg in &wanted.0 {
            match self.start(cfg, &wanted.1) {
                Ok(r) => state.running.push(r),
                Err(err) => {
                    tracing::error!(url = %cfg.url, err = %err, "Cannot start remote write")
                }
            }
        }
        state.applied = Some(wanted);
    }

    /// Stops every queue, giving shards a moment to send what they hold;
    /// progress is saved.
    pub async fn stop(&self) {
        let mut state = self.state.lock().await;
        for r in std::mem::take(&mut state.running) {
            stop(r).await;
        }
        state.applied = None;
    }

    fn start(
        &self,
        cfg: &RemoteWriteConfig,
        external: &BTreeMap<String, String>,
    ) -> Result<Running, String> {
        let name = queue_name(cfg);
        let client = RemoteClient::new(cfg, &self.config_dir)?;
        let metrics = self.metrics.for_remote(&name, &cfg.url);
        let q = &cfg.queue_config;
        metrics.shards_min.set(q.min_shards as i64);
        metrics.shards_max.set(q.max_shards as i64);
        metrics.shard_capacity.set(q.capacity as i64);
        metrics
            .max_samples_per_send
            .set(q.max_samples_per_send as i64);
        let cancel = CancellationToken::new();
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            name: name.clone(),
            client,
            queue: q.clone(),
            acks: Mutex::new(AckTracker::new(Position::default())),
            metrics: metrics.clone(),
            cancel: cancel.clone(),
            send_nanos: AtomicU64::new(0),
            highest_sent_ms: AtomicI64::new(i64::MIN),
            last_failure_ms: AtomicI64::new(-1),
            started: Instant::now(),
        });
        // Hold the WAL from the saved position on before anything can
        // checkpoint; the queue moves the hold forward as it goes.
        let progress_path = progress_file(self.storage.dir(), &name);
        let wal_dir = self.storage.dir().join("wal");
        let held = match progress::load(&progress_path) {
            Ok(Some(p)) => Some(p.position.segment),
            _ => wal_reader::end_of_wal(&wal_dir).ok().map(|p| p.segment),
        };
        if let Some(segment) = held {
            self.storage.wal_holds.set(&name, segment);
        }
        let rt = tokio::runtime::Handle::current();
        let metadata = cfg.metadata_config.send.then(|| {
            rt.spawn(send_metadata(
                shared.clone(),
                cfg.metadata_config.send_interval.as_duration(),
                cfg.metadata_config.max_samples_per_send as usize,
                self.metadata.clone(),
                stop.clone(),
            ))
        });
        let setup = queue::QueueSetup {
            storage: self.storage.clone(),
            shared,
            external_labels: external.clone(),
            relabel: cfg.write_relabel_configs.clone(),
            send_histograms: cfg.send_native_histograms,
            send_exemplars: cfg.send_exemplars,
            progress_path,
            min_shards: q.min_shards.max(1) as usize,
            max_shards: q.max_shards.max(1) as usize,
            stop: stop.clone(),
            rt,
        };
        let thread = std::thread::Builder::new()
            .name(format!("remote-write-{name}"))
            .spawn(move || queue::run(setup))
            .map_err(|e| format!("cannot start the queue thread: {e}"))?;
        Ok(Running {
            name,
            stop,
            cancel,
            thread: Some(thread),
            metadata,
        })
    }
}

async fn stop(mut r: Running) {
    r.stop.cancel();
    if let Some(t) = r.metadata.take() {
        t.abort();
    }
    if let Some(thread) = r.thread.take() {
        let joined = tokio::task::spawn_blocking(move || thread.join());
        // The thread gives its shards a flush deadline itself; this is a backstop.
        match tokio::time::timeout(queue::FLUSH_DEADLINE * 3, joined).await {
            Ok(_) => {}
            Err(_) => {
                r.cancel.cancel();
                tracing::warn!(remote_name = %r.name, "Remote-write queue did not stop in time");
            }
        }
    }
}

/// Sends metric metadata every `interval`, in requests of at most `max`
/// entries, retrying failed requests with backoff until the next round.
async fn send_metadata(
    shared: Arc<Shared>,
    interval: Duration,
    max: usize,
    source: MetadataSource,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let all = source();
        let round = Instant::now();
        for chunk in all.chunks(max.max(1)) {
            let req = proto::WriteRequest {
                timeseries: vec![],
                metadata: chunk.to_vec(),
            };
            let body = proto::encode_request(&req);
            let n = chunk.len() as u64;
            let mut backoff = shared.queue.min_backoff.as_duration();
            loop {
                match shared.client.send(body.clone()).await {
                    Ok(()) => {
                        shared.metrics.metadata_sent.inc_by(n);
                        break;
                    }
                    Err(SendError::Drop(msg)) => {
                        shared.metrics.metadata_failed.inc_by(n);
                        tracing::error!(remote_name = %shared.name, err = %msg, "Non-recoverable error sending metadata");
                        break;
                    }
                    Err(SendError::Retry(msg)) => {
                        if round.elapsed() + backoff >= interval {
                            shared.metrics.metadata_failed.inc_by(n);
                            tracing::warn!(remote_name = %shared.name, err = %msg, "Giving up on this round of metadata");
                            break;
                        }
                        shared.metrics.metadata_retried.inc_by(n);
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = next_backoff(backoff, shared.queue.max_backoff.as_duration());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_and_files() {
        let mut cfg: RemoteWriteConfig =
            serde_yaml::from_str("url: http://example.com/api/v1/write\n").unwrap();
        let hashed = queue_name(&cfg);
        assert_eq!(hashed.len(), 6);
        cfg.queue_config.capacity = 5;
        assert_eq!(queue_name(&cfg), hashed, "tuning keeps the queue");
        cfg.name = "mimir/eu".into();
        assert_eq!(queue_name(&cfg), "mimir/eu");
        assert_eq!(
            progress_file(Path::new("/d"), "mimir/eu"),
            Path::new("/d/remote_write/mimir_eu.json")
        );
        assert_eq!(metadata_type("counter"), 1);
        assert_eq!(metadata_type("unknown"), 0);
    }
}
