//! One remote's queue: a thread that follows the WAL from the remote's
//! saved position, turns series records into the labels sent (external
//! labels added, `write_relabel_configs` applied), hands samples to the
//! shards, rescales the shards to the backlog, and saves progress.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::metrics::QueueMetrics;
use super::policy::{SHARD_UPDATE_PERIOD, ShardInputs, desired_shards};
use super::progress::{self, AckTracker, Position, Progress};
use super::shards::{EncodedLabels, Item, Shards, Shared, Value};
use super::wal_reader::{self, Step, WalReader};
use crate::config::relabel::RelabelConfig;
use crate::model::Labels;
use crate::remote::proto;
use crate::storage::Storage;
use crate::storage::wal::Record;

/// How often progress is saved (and the WAL hold moved).
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// How long the reader sleeps when the WAL has nothing new.
const IDLE_POLL: Duration = Duration::from_millis(50);
/// How long the reader waits on a full shard before it looks at shard
/// scaling, progress and shutdown again.
const ENQUEUE_WAIT: Duration = Duration::from_millis(100);
/// How long shards get to send what they hold at shutdown.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// A series as the remote sees it; `None` labels when relabeling dropped it.
struct SeriesEntry {
    labels: Option<Arc<EncodedLabels>>,
    /// The newest segment (or checkpoint) that logged it, to forget series
    /// a checkpoint no longer carries.
    seen: u32,
}

/// Everything a queue needs to run.
pub struct QueueSetup {
    pub storage: Arc<Storage>,
    pub shared: Arc<Shared>,
    pub external_labels: BTreeMap<String, String>,
    pub relabel: Vec<RelabelConfig>,
    /// `send_native_histograms`: histogram records are sent, not skipped.
    pub send_histograms: bool,
    /// `send_exemplars`: exemplar records are sent, not skipped.
    pub send_exemplars: bool,
    pub progress_path: PathBuf,
    pub min_shards: usize,
    pub max_shards: usize,
    /// Stops reading; shards then get [`FLUSH_DEADLINE`] to finish.
    pub stop: CancellationToken,
    pub rt: tokio::runtime::Handle,
}

/// The labels a series is sent with: its own, plus external labels it
/// lacks, then `write_relabel_configs`, as Prometheus does.
pub fn remote_labels(
    labels: &Labels,
    external: &BTreeMap<String, String>,
    relabel: &[RelabelConfig],
) -> Option<Vec<proto::Label>> {
    let mut map: crate::model::relabel::LabelMap = labels
        .iter()
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect();
    for (k, v) in external {
        map.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if !relabel.is_empty() && !crate::model::relabel::process(&mut map, relabel) {
        return None;
    }
    if map.is_empty() {
        return None;
    }
    Some(
        map.into_iter()
            .map(|(name, value)| proto::Label { name, value })
            .collect(),
    )
}

struct Reader {
    setup: QueueSetup,
    metrics: QueueMetrics,
    series: HashMap<u64, SeriesEntry>,
    checkpoint: Option<u32>,
    /// Newest timestamp already accepted per series, for samples re-read
    /// after a restart; dropped once the reader passes `skip_until`.
    skip: HashMap<u64, i64>,
    skip_until: Position,
    shards: Option<Shards>,
    last_save: Instant,
    last_reshard: Instant,
    counters_at_reshard: (u64, u64, u64),
    highest_in_ms: i64,
    /// Where the WAL reader is.
    read_pos: Position,
}

impl Reader {
    fn add_series(&mut self, id: u64, labels: &Labels, seen: u32) {
        if let Some(e) = self.series.get_mut(&id) {
            e.seen = e.seen.max(seen);
            return;
        }
        let out = remote_labels(labels, &self.setup.external_labels, &self.setup.relabel)
            .map(|l| Arc::new(EncodedLabels::new(&l)));
        self.series.insert(id, SeriesEntry { labels: out, seen });
    }

    /// Forgets series a newer checkpoint dropped (the head no longer has them).
    fn refresh_checkpoint(&mut self, reader_segment: u32) {
        let Ok(Some((n, series))) =
            wal_reader::checkpoint_series(&self.setup.storage.dir().join("wal"))
        else {
            return;
        };
        if self.checkpoint.is_some_and(|c| c >= n) || n >= reader_segment {
            return;
        }
        for (id, labels) in &series {
            self.add_series(*id, labels, n);
        }
        self.series.retain(|_, e| e.seen >= n);
        self.checkpoint = Some(n);
    }

    fn save(&mut self) {
        let mut snapshot: Progress = self.setup.shared.acks.lock().snapshot(self.read_pos);
        if !self.skip.is_empty() {
            // Not yet re-read past what the previous run had sent: keep
            // remembering it in case of another crash.
            let mut merged: HashMap<u64, i64> = self.skip.clone();
            for (id, t) in snapshot.accepted_after {
                let e = merged.entry(id).or_insert(t);
                *e = (*e).max(t);
            }
            snapshot.accepted_after = merged.into_iter().collect();
            snapshot.accepted_after.sort_unstable();
            snapshot.read_upto = snapshot.read_upto.max(self.skip_until);
        }
        self.setup
            .storage
            .wal_holds
            .set(&self.setup.shared.name, snapshot.position.segment);
        if let Err(err) = progress::save(&self.setup.progress_path, &snapshot) {
            tracing::error!(remote_name = %self.setup.shared.name, err = %err, "Cannot save remote-write progress");
        }
        self.last_save = Instant::now();
    }

    fn maybe_reshard(&mut self) {
        let elapsed = self.last_reshard.elapsed();
        if elapsed < SHARD_UPDATE_PERIOD {
            return;
        }
        let shared = self.setup.shared.clone();
        let m = &self.metrics;
        let now = (
            m.samples_in.get(),
            m.samples_sent.get(),
            shared.send_nanos.load(Ordering::Relaxed),
        );
        let (in0, out0, nanos0) = self.counters_at_reshard;
        let secs = elapsed.as_secs_f64();
        let current = self.shards.as_ref().map_or(1, Shards::len);
        let highest_sent = shared.highest_sent_ms.load(Ordering::Relaxed);
        let inputs = ShardInputs {
            current,
            min: self.setup.min_shards,
            max: self.setup.max_shards,
            in_rate: now.0.saturating_sub(in0) as f64 / secs,
            out_rate: now.1.saturating_sub(out0) as f64 / secs,
            send_seconds_rate: now.2.saturating_sub(nanos0) as f64 / 1e9 / secs,
            lag_seconds: if highest_sent == i64::MIN || self.highest_in_ms == i64::MIN {
                0.0
            } else {
                (self.highest_in_ms - highest_sent) as f64 / 1000.0
            },
            pending: m.samples_pending.get().max(0) as u64,
            recently_failed: shared.failed_within(SHARD_UPDATE_PERIOD * 2),
        };
        let (next, raw) = desired_shards(&inputs);
        m.shards_desired.set(raw);
        self.last_reshard = Instant::now();
        self.counters_at_reshard = now;
        if next != current {
            tracing::info!(remote_name = %shared.name, from = current, to = next, "Remote storage resharding");
            // Stopping first keeps each series' samples in order across the change.
            if let Some(old) = self.shards.take() {
                old.stop(&self.setup.rt, None, &shared.cancel);
            }
            self.shards = Some(Shards::start(next, &shared, &self.setup.rt));
        }
    }

    /// Hands a sample to its shard, waiting while that shard is full (the
    /// remote is slow or down: the backlog stays in the WAL meanwhile).
    fn enqueue(&mut self, mut item: Item) -> bool {
        loop {
            let Some(shards) = &self.shards else {
                return false;
            };
            match shards.enqueue(item, &self.setup.rt, ENQUEUE_WAIT) {
                Ok(()) => {
                    self.metrics.samples_pending.inc();
                    return true;
                }
                Err(back) => item = back,
            }
            if self.setup.stop.is_cancelled() {
                return false;
            }
            self.metrics.enqueue_retries.inc();
            self.maybe_reshard();
            if self.last_save.elapsed() >= SAVE_EVERY {
                self.save();
            }
        }
    }

    /// Hands the samples of one WAL record (ending at `end`) to the
    /// shards; false when stopped meanwhile.
    fn on_samples(
        &mut self,
        samples: impl ExactSizeIterator<Item = (u64, i64, Value)>,
        end: Position,
    ) -> bool {
        self.metrics.samples_in.inc_by(samples.len() as u64);
        let skipping = !self.skip.is_empty();
        let mut items = Vec::with_capacity(samples.len());
        let mut dropped = 0u64;
        let mut skipped = 0u64;
        for (id, t, value) in samples {
            self.highest_in_ms = self.highest_in_ms.max(t);
            let Some(labels) = self.series.get(&id).and_then(|e| e.labels.clone()) else {
                dropped += 1;
                continue;
            };
            if skipping && self.skip.get(&id).is_some_and(|sent| t <= *sent) {
                skipped += 1;
                continue;
            }
            items.push(Item {
                series: id,
                labels,
                t,
                value,
                seq: 0,
            });
        }
        if self.highest_in_ms > i64::MIN {
            self.metrics
                .highest_in
                .set(self.highest_in_ms as f64 / 1000.0);
        }
        self.metrics.samples_dropped.inc_by(dropped);
        self.metrics.already_sent.inc_by(skipped);
        let seq = self
            .setup
            .shared
            .acks
            .lock()
            .register(end, items.len() as u64);
        for mut item in items {
            item.seq = seq;
            if !self.enqueue(item) {
                return false;
            }
        }
        true
    }

    fn run(&mut self, mut reader: WalReader) {
        let name = self.setup.shared.name.clone();
        let mut segment = reader.position().segment;
        loop {
            if self.setup.stop.is_cancelled() {
                break;
            }
            if self.last_save.elapsed() >= SAVE_EVERY {
                self.save();
            }
            self.maybe_reshard();
            if !self.skip.is_empty() && reader.position() >= self.skip_until {
                self.skip.clear();
            }
            let step = match reader.step() {
                Ok(s) => s,
                Err(err) => {
                    tracing::error!(remote_name = %name, err = %err, "Cannot read the WAL; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            self.read_pos = reader.position();
            if reader.position().segment != segment {
                segment = reader.position().segment;
                self.refresh_checkpoint(segment);
            }
            match step {
                Step::Record(Record::Samples(samples), end) => {
                    let values = samples
                        .into_iter()
                        .map(|(id, s)| (id, s.t, Value::Float(s.v)));
                    if !self.on_samples(values, end) {
                        break;
                    }
                }
                Step::Record(Record::Histograms(histograms), end) if self.setup.send_histograms => {
                    let values = histograms
                        .into_iter()
                        .map(|(id, h)| (id, h.t, Value::Histogram(h.h)));
                    if !self.on_samples(values, end) {
                        break;
                    }
                }
                Step::Record(Record::Exemplars(exemplars), end) if self.setup.send_exemplars => {
                    let values = exemplars
                        .into_iter()
                        .map(|(id, e)| (id, e.timestamp_ms, Value::Exemplar(Arc::new(e))));
                    if !self.on_samples(values, end) {
                        break;
                    }
                }
                Step::Record(record, end) => {
                    // Series records name what later samples refer to;
                    // histograms without send_native_histograms and
                    // exemplars without send_exemplars are not sent, as in
                    // Prometheus.
                    if let Record::Series(series) = &record {
                        for (id, labels) in series {
                            self.add_series(*id, labels, end.segment);
                        }
                    }
                    self.setup.shared.acks.lock().register(end, 0);
                }
                Step::Skipped(end) => {
                    self.setup.shared.acks.lock().register(end, 0);
                }
                Step::Lost { from, to } => {
                    self.metrics.wal_segments_lost.inc_by(u64::from(to - from));
                    tracing::error!(remote_name = %name, from, to, "WAL segments were deleted before they were sent; their samples are lost for this remote");
                    let end = reader.position();
                    let mut acks = self.setup.shared.acks.lock();
                    acks.register(end, 0);
                }
                Step::Damaged { segment, reason } => {
                    tracing::error!(remote_name = %name, segment, reason = %reason, "Damaged WAL segment; skipped the rest of it");
                }
                Step::Idle => std::thread::sleep(IDLE_POLL),
            }
        }
        if let Some(shards) = self.shards.take() {
            shards.stop(
                &self.setup.rt,
                Some(FLUSH_DEADLINE),
                &self.setup.shared.cancel,
            );
        }
        self.read_pos = reader.position();
        self.save();
        self.setup.storage.wal_holds.release(&name);
    }
}

/// Runs a queue on the calling thread until `setup.stop` is cancelled.
pub fn run(setup: QueueSetup) {
    let name = setup.shared.name.clone();
    let metrics = setup.shared.metrics.clone();
    let wal_dir = setup.storage.dir().join("wal");
    let saved = match progress::load(&setup.progress_path) {
        Ok(p) => p,
        Err(err) => {
            tracing::error!(remote_name = %name, err = %err, "Cannot read remote-write progress; starting at the end of the WAL");
            None
        }
    };
    let end = match wal_reader::end_of_wal(&wal_dir) {
        Ok(p) => p,
        Err(err) => {
            tracing::error!(remote_name = %name, err = %err, "Cannot read the WAL; remote write is not running");
            return;
        }
    };
    let start = match &saved {
        // A position past the end belongs to another WAL (the directory was
        // replaced); there is nothing to resume.
        Some(p) if p.position.segment > end.segment => {
            tracing::warn!(remote_name = %name, saved_segment = p.position.segment, wal_segment = end.segment, "Saved remote-write position is past the end of the WAL; starting at the end");
            end
        }
        Some(p) => p.position,
        None => end,
    };
    setup.storage.wal_holds.set(&name, start.segment);
    tracing::info!(remote_name = %name, segment = start.segment, offset = start.offset, resumed = saved.is_some(), "Starting remote-write queue");
    *setup.shared.acks.lock() = AckTracker::new(start);
    let mut r = Reader {
        metrics: metrics.clone(),
        series: HashMap::new(),
        checkpoint: None,
        skip: saved
            .as_ref()
            .map(|p| p.accepted_after.iter().copied().collect())
            .unwrap_or_default(),
        skip_until: saved.as_ref().map(|p| p.read_upto).unwrap_or_default(),
        shards: None,
        last_save: Instant::now(),
        last_reshard: Instant::now(),
        counters_at_reshard: (0, 0, 0),
        highest_in_ms: i64::MIN,
        read_pos: start,
        setup,
    };
    // Labels of series logged before the start position.
    if let Ok(Some((n, series))) = wal_reader::checkpoint_series(&wal_dir) {
        for (id, labels) in &series {
            r.add_series(*id, labels, n);
        }
        r.checkpoint = Some(n);
    }
    match wal_reader::series_before(&wal_dir, start) {
        Ok(series) => {
            for (id, labels) in &series {
                r.add_series(*id, labels, start.segment);
            }
        }
        Err(err) => {
            tracing::error!(remote_name = %name, err = %err, "Cannot read series from the WAL");
        }
    }
    r.counters_at_reshard = (
        metrics.samples_in.get(),
        metrics.samples_sent.get(),
        r.setup.shared.send_nanos.load(Ordering::Relaxed),
    );
    r.shards = Some(Shards::start(
        r.setup.min_shards,
        &r.setup.shared,
        &r.setup.rt,
    ));
    let reader = WalReader::new(&wal_dir, start);
    r.run(reader);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_labels_are_added_unless_present_then_relabeled() {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a"), ("dc", "own")]).unwrap();
        let external = BTreeMap::from([
            ("dc".to_owned(), "eu".to_owned()),
            ("replica".to_owned(), "1".to_owned()),
        ]);
        let out = remote_labels(&labels, &external, &[]).unwrap();
        let pairs: Vec<(&str, &str)> = out
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("__name__", "up"),
                ("dc", "own"),
                ("job", "a"),
                ("replica", "1")
            ]
        );
        let rules: Vec<RelabelConfig> =
            serde_yaml::from_str("- source_labels: [job]\n  regex: a\n  action: drop\n").unwrap();
        assert!(remote_labels(&labels, &external, &rules).is_none());
        let other = Labels::from_pairs([("__name__", "up"), ("job", "b")]).unwrap();
        assert!(remote_labels(&other, &external, &rules).is_some());
    }
}
