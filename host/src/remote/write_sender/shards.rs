//! The shards of one queue: each a task with a bounded queue of samples,
//! which it batches (up to `max_samples_per_send`, or whatever arrived
//! within `batch_send_deadline`) and sends one batch at a time, retrying
//! with backoff. A series always maps to the same shard, so its samples
//! reach the remote in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::client::{RemoteClient, SendError};
use super::metrics::QueueMetrics;
use super::policy::next_backoff;
use super::progress::AckTracker;
use crate::config::remote::QueueConfig;
use crate::remote::proto;

/// What goes to the remote for a series at a time: a float sample, a
/// native histogram (only when the remote has `send_native_histograms`),
/// or an exemplar (only with `send_exemplars`).
#[derive(Clone, Debug)]
pub enum Value {
    Float(f64),
    Histogram(Arc<crate::model::FloatHistogram>),
    Exemplar(Arc<crate::storage::exemplars::Exemplar>),
}

/// A sample on its way to the remote.
#[derive(Clone, Debug)]
pub struct Item {
    pub series: u64,
    pub labels: Arc<EncodedLabels>,
    pub t: i64,
    pub value: Value,
    /// The WAL record it came from (see [`AckTracker`]).
    pub seq: u64,
}

/// What the shards and the WAL reader of one queue share.
pub struct Shared {
    pub name: String,
    pub client: RemoteClient,
    pub queue: QueueConfig,
    pub acks: Mutex<AckTracker>,
    pub metrics: QueueMetrics,
    /// Cancelled when sending must stop now (shutdown past its flush time).
    pub cancel: CancellationToken,
    /// Nanoseconds spent in send calls, for shard scaling.
    pub send_nanos: AtomicU64,
    pub highest_sent_ms: AtomicI64,
    /// When a send last failed, as milliseconds since `started`.
    pub last_failure_ms: AtomicI64,
    pub started: Instant,
}

impl Shared {
    pub fn failed_within(&self, d: Duration) -> bool {
        let last = self.last_failure_ms.load(Ordering::Relaxed);
        last >= 0 && self.started.elapsed().as_millis() as i64 - last < d.as_millis() as i64
    }
}

/// A series' labels, already encoded as the `labels` field of a protobuf
/// `TimeSeries`: encoded once per series, copied into every request.
#[derive(Debug)]
pub struct EncodedLabels(Vec<u8>);

impl EncodedLabels {
    pub fn new(labels: &[proto::Label]) -> EncodedLabels {
        let mut buf = Vec::new();
        for l in labels {
            prost::encoding::message::encode(1, l, &mut buf);
        }
        EncodedLabels(buf)
    }
}

/// A request's protobuf bytes (uncompressed) and, per series, its newest
/// sample (series, timestamp, record). Samples are grouped by series in
/// first-seen order, each series' samples in batch order. Exemplars go in
/// their series' `exemplars` field and are not "newest samples": their
/// timestamps say nothing about which samples the remote has.
pub fn encode_batch(batch: &[Item]) -> (Vec<u8>, Vec<(u64, i64, u64)>) {
    use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
    // Group without an allocation per series: a group id per item, then a
    // counting sort of item indices by group.
    let mut index: HashMap<u64, u32> = HashMap::with_capacity(batch.len().min(4096));
    let mut group_of = Vec::with_capacity(batch.len());
    let mut first: Vec<usize> = Vec::new();
    for (i, it) in batch.iter().enumerate() {
        let g = *index.entry(it.series).or_insert_with(|| {
            first.push(i);
            (first.len() - 1) as u32
        });
        group_of.push(g);
    }
    let mut start = vec![0usize; first.len() + 1];
    for g in &group_of {
        start[*g as usize + 1] += 1;
    }
    for g in 0..first.len() {
        start[g + 1] += start[g];
    }
    let mut fill = start.clone();
    let mut order = vec![0usize; batch.len()];
    for (i, g) in group_of.iter().enumerate() {
        order[fill[*g as usize]] = i;
        fill[*g as usize] += 1;
    }
    let sample_len = |t: i64| 1 + 8 + 1 + encoded_len_varint(t as u64);
    let mut out = Vec::with_capacity(batch.len() * 24);
    let mut newest = Vec::with_capacity(first.len());
    let mut histograms: Vec<proto::Histogram> = Vec::new();
    let mut exemplars: Vec<proto::Exemplar> = Vec::new();
    for (g, &head) in first.iter().enumerate() {
        let items = &order[start[g]..start[g + 1]];
        let labels = &batch[head].labels.0;
        // Floats go in `samples` (2), histograms in `histograms` (4), each
        // in batch order; a series normally has only one kind.
        histograms.clear();
        exemplars.clear();
        let mut body_len = labels.len();
        for &i in items {
            let it = &batch[i];
            match &it.value {
                Value::Float(_) => {
                    let n = sample_len(it.t);
                    body_len += 1 + encoded_len_varint(n as u64) + n;
                }
                Value::Histogram(h) => {
                    let p = proto::Histogram::from_float(h, it.t);
                    body_len += prost::encoding::message::encoded_len(4, &p);
                    histograms.push(p);
                }
                Value::Exemplar(e) => {
                    let p = proto::Exemplar {
                        labels: e
                            .labels
                            .iter()
                            .map(|l| proto::Label {
                                name: l.name.to_string(),
                                value: l.value.to_string(),
                            })
                            .collect(),
                        value: e.value,
                        timestamp: e.timestamp_ms,
                    };
                    body_len += prost::encoding::message::encoded_len(3, &p);
                    exemplars.push(p);
                }
            }
        }
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(body_len as u64, &mut out);
        out.extend_from_slice(labels);
        for &i in items {
            let it = &batch[i];
            let Value::Float(v) = it.value else {
                continue;
            };
            encode_key(2, WireType::LengthDelimited, &mut out);
            encode_varint(sample_len(it.t) as u64, &mut out);
            // Sample.value (1, double), Sample.timestamp (2, int64).
            out.push(0x09);
            out.extend_from_slice(&v.to_bits().to_le_bytes());
            out.push(0x10);
            encode_varint(it.t as u64, &mut out);
        }
        for e in &exemplars {
            prost::encoding::message::encode(3, e, &mut out);
        }
        for h in &histograms {
            prost::encoding::message::encode(4, h, &mut out);
        }
        if let Some(last) = items
            .iter()
            .rev()
            .map(|&i| &batch[i])
            .find(|it| !matches!(it.value, Value::Exemplar(_)))
        {
            newest.push((last.series, last.t, last.seq));
        }
    }
    (out, newest)
}

fn compress(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .unwrap_or_default()
}

/// Marks a batch's samples done with, by record.
fn ack(acks: &mut AckTracker, batch: &[Item]) {
    let mut i = 0;
    while i < batch.len() {
        let seq = batch[i].seq;
        let run = batch[i..].iter().take_while(|it| it.seq == seq).count();
        acks.ack(seq, run as u64);
        i += run;
    }
}

/// Whether a 4xx answer means the request repeated samples the remote
/// already has (Prometheus's wording; Mimir and Cortex use the same).
fn is_repeat_rejection(msg: &str) -> bool {
    msg.contains("out of order sample") || msg.contains("duplicate sample for timestamp")
}

/// Sends a body until it is accepted (`Some(Ok)`), rejected for good
/// (`Some(Err)`, the remote's message), or sending is cancelled (`None`).
async fn send_body(shared: &Shared, body: &[u8], n: u64) -> Option<Result<(), String>> {
    let mut backoff = shared.queue.min_backoff.as_duration();
    let max_backoff = shared.queue.max_backoff.as_duration();
    loop {
        let start = Instant::now();
        let result = tokio::select! {
            _ = shared.cancel.cancelled() => return None,
            r = shared.client.send(body.to_vec()) => r,
        };
        let took = start.elapsed();
        shared.metrics.batch_duration.observe(took.as_secs_f64());
        shared
            .send_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        match result {
            Ok(()) => {
                shared.metrics.bytes_sent.inc_by(body.len() as u64);
                return Some(Ok(()));
            }
            Err(SendError::Drop(msg)) => return Some(Err(msg)),
            Err(SendError::Retry(msg)) => {
                shared.metrics.samples_retried.inc_by(n);
                shared.last_failure_ms.store(
                    shared.started.elapsed().as_millis() as i64,
                    Ordering::Relaxed,
                );
                tracing::warn!(remote_name = %shared.name, samples = n, err = %msg, backoff = ?backoff, "Failed to send batch, retrying");
                tokio::select! {
                    _ = shared.cancel.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = next_backoff(backoff, max_backoff);
            }
        }
    }
}

/// Records samples the remote accepted.
fn accepted(shared: &Shared, items: &[Item], newest: &[(u64, i64, u64)]) {
    shared.metrics.samples_sent.inc_by(items.len() as u64);
    let histograms = items
        .iter()
        .filter(|it| matches!(it.value, Value::Histogram(_)))
        .count();
    if histograms > 0 {
        shared.metrics.histograms_sent.inc_by(histograms as u64);
    }
    let exemplars = items
        .iter()
        .filter(|it| matches!(it.value, Value::Exemplar(_)))
        .count();
    if exemplars > 0 {
        shared.metrics.exemplars_sent.inc_by(exemplars as u64);
    }
    let highest = newest.iter().map(|(_, t, _)| *t).max().unwrap_or(i64::MIN);
    let prev = shared.highest_sent_ms.fetch_max(highest, Ordering::Relaxed);
    if highest > prev {
        shared.metrics.highest_sent.set(highest as f64 / 1000.0);
    }
    let mut acks = shared.acks.lock();
    for (series, t, seq) in newest {
        acks.accepted(*series, *t, *seq);
    }
}

/// Sends a batch series by series after the remote rejected it for
/// repeating samples it has (a request accepted just before a crash is
/// re-read after the restart; a receiver like Prometheus then rejects the
/// whole request, new samples included). Each series' samples go one at a
/// time until the remote takes one; the rest of that series is newer and
/// goes in one request. False when cancelled.
async fn send_split(shared: &Shared, batch: &[Item]) -> bool {
    let mut by_series: Vec<Vec<Item>> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    for it in batch {
        let i = *index.entry(it.series).or_insert_with(|| {
            by_series.push(Vec::new());
            by_series.len() - 1
        });
        by_series[i].push(it.clone());
    }
    for items in by_series {
        let mut i = 0;
        while i < items.len() {
            // After the first accepted sample, the rest goes at once.
            let part = &items[i..i + 1];
            let (raw, newest) = encode_batch(part);
            let body = compress(&raw);
            match send_body(shared, &body, 1).await {
                None => return false,
                Some(Ok(())) => {
                    accepted(shared, part, &newest);
                    i += 1;
                    if i < items.len() {
                        let rest = &items[i..];
                        let (raw, newest) = encode_batch(rest);
                        let body = compress(&raw);
                        let n = rest.len() as u64;
                        match send_body(shared, &body, n).await {
                            None => return false,
                            Some(Ok(())) => accepted(shared, rest, &newest),
                            Some(Err(msg)) => {
                                shared.metrics.samples_failed.inc_by(n);
                                tracing::error!(remote_name = %shared.name, samples = n, err = %msg, "Non-recoverable error sending samples; dropped them");
                            }
                        }
                    }
                    break;
                }
                Some(Err(msg)) if is_repeat_rejection(&msg) => {
                    shared.metrics.already_sent.inc();
                    i += 1;
                }
                Some(Err(msg)) => {
                    shared.metrics.samples_failed.inc();
                    tracing::error!(remote_name = %shared.name, samples = 1, err = %msg, "Non-recoverable error sending samples; dropped them");
                    i += 1;
                }
            }
        }
    }
    true
}

/// Sends one batch until it is accepted or dropped; false when cancelled
/// first (the batch stays unacknowledged and is sent again after a restart).
async fn send_batch(shared: &Shared, batch: &[Item]) -> bool {
    let (raw, newest) = encode_batch(batch);
    let body = compress(&raw);
    let n = batch.len() as u64;
    match send_body(shared, &body, n).await {
        None => return false,
        Some(Ok(())) => accepted(shared, batch, &newest),
        Some(Err(msg)) if is_repeat_rejection(&msg) => {
            tracing::info!(remote_name = %shared.name, samples = n, "Remote already has some samples of a batch (re-read after a restart?); sending it series by series");
            if !send_split(shared, batch).await {
                return false;
            }
        }
        Some(Err(msg)) => {
            shared.metrics.samples_failed.inc_by(n);
            tracing::error!(remote_name = %shared.name, samples = n, err = %msg, "Non-recoverable error sending samples; dropped them");
        }
    }
    ack(&mut shared.acks.lock(), batch);
    true
}

/// One shard: batches what arrives and sends it, until its queue is closed
/// and empty or sending is cancelled.
pub async fn run_shard(mut rx: mpsc::Receiver<Item>, shared: Arc<Shared>) {
    let max = (shared.queue.max_samples_per_send as usize).max(1);
    let deadline = shared.queue.batch_send_deadline.as_duration();
    let mut batch: Vec<Item> = Vec::with_capacity(max);
    loop {
        // Wait for the first sample of a batch as long as it takes ...
        let got = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            n = rx.recv_many(&mut batch, max) => n,
        };
        if got == 0 {
            return;
        }
        // ... then for more until the batch is full or the deadline passes.
        let opened = Instant::now();
        let mut closed = false;
        while batch.len() < max {
            let left = deadline.saturating_sub(opened.elapsed());
            if left.is_zero() {
                break;
            }
            let want = max - batch.len();
            tokio::select! {
                _ = shared.cancel.cancelled() => return,
                r = tokio::time::timeout(left, rx.recv_many(&mut batch, want)) => match r {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                },
            }
        }
        if !send_batch(&shared, &batch).await {
            return;
        }
        shared.metrics.samples_pending.sub(batch.len() as i64);
        batch.clear();
        if closed {
            return;
        }
    }
}

/// The running shards of a queue.
pub struct Shards {
    senders: Vec<mpsc::Sender<Item>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Shards {
    pub fn start(n: usize, shared: &Arc<Shared>, rt: &tokio::runtime::Handle) -> Shards {
        let n = n.max(1);
        let capacity = (shared.queue.capacity as usize).max(1);
        let mut senders = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = mpsc::channel(capacity);
            senders.push(tx);
            tasks.push(rt.spawn(run_shard(rx, shared.clone())));
        }
        shared.metrics.shards.set(n as i64);
        Shards { senders, tasks }
    }

    pub fn len(&self) -> usize {
        self.senders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Hands a sample to its shard, waiting up to `wait` while that shard's
    /// queue is full; gives the sample back if it is still full then.
    pub fn enqueue(
        &self,
        item: Item,
        rt: &tokio::runtime::Handle,
        wait: Duration,
    ) -> Result<(), Item> {
        let shard = &self.senders[(item.series % self.senders.len() as u64) as usize];
        let item = match shard.try_send(item) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(item)) => item,
            // A shard only stops when cancelled; the sample is sent after a restart.
            Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
        };
        match rt.block_on(shard.send_timeout(item, wait)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(item)) => Err(item),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Ok(()),
        }
    }

    /// Closes the queues and waits until the shards have sent what they
    /// hold, or until `flush` has passed; then cancels what is left.
    pub fn stop(
        self,
        rt: &tokio::runtime::Handle,
        flush: Option<Duration>,
        cancel: &CancellationToken,
    ) {
        drop(self.senders);
        let tasks = self.tasks;
        rt.block_on(async move {
            let all = futures::future::join_all(tasks);
            match flush {
                None => {
                    all.await;
                }
                Some(d) => {
                    tokio::pin!(all);
                    if tokio::time::timeout(d, &mut all).await.is_err() {
                        cancel.cancel();
                        all.await;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(series: u64, t: i64, seq: u64) -> Item {
        Item {
            series,
            labels: Arc::new(EncodedLabels::new(&[proto::Label {
                name: "__name__".into(),
                value: format!("m{series}"),
            }])),
            t,
            value: Value::Float(t as f64),
            seq,
        }
    }

    #[test]
    fn batches_group_samples_by_series_in_order() {
        let batch = vec![
            item(1, 10, 0),
            item(2, 10, 0),
            item(1, 20, 1),
            item(1, 30, 2),
            // Zero values and negative timestamps encode too.
            Item {
                t: -5,
                value: Value::Float(0.0),
                ..item(3, 0, 3)
            },
        ];
        let (raw, newest) = encode_batch(&batch);
        let req = <proto::WriteRequest as prost::Message>::decode(raw.as_slice()).unwrap();
        assert_eq!(req.timeseries.len(), 3);
        assert_eq!(req.timeseries[2].samples[0].timestamp, -5);
        assert_eq!(req.timeseries[2].samples[0].value, 0.0);
        let times: Vec<i64> = req.timeseries[0]
            .samples
            .iter()
            .map(|s| s.timestamp)
            .collect();
        assert_eq!(times, vec![10, 20, 30]);
        assert_eq!(req.timeseries[1].labels[0].value, "m2");
        assert_eq!(newest, vec![(1, 30, 2), (2, 10, 0), (3, -5, 3)]);
        let values: Vec<f64> = req.timeseries[0].samples.iter().map(|s| s.value).collect();
        assert_eq!(values, vec![10.0, 20.0, 30.0]);
    }

    #[test]
    fn histograms_go_in_their_own_field_integer_when_counts_are_whole() {
        use crate::model::FloatHistogram;
        use crate::model::histogram::{CounterResetHint, Span};
        let whole = FloatHistogram {
            counter_reset_hint: CounterResetHint::NotCounterReset,
            schema: 0,
            zero_threshold: 0.001,
            zero_count: 1.0,
            count: 11.0,
            sum: 15.5,
            positive_spans: vec![Span {
                offset: 0,
                length: 2,
            }],
            positive_buckets: vec![7.0, 3.0],
            negative_spans: vec![],
            negative_buckets: vec![],
            custom_values: vec![],
        };
        let fractional = FloatHistogram {
            count: 10.5,
            positive_buckets: vec![7.0, 2.5],
            ..whole.clone()
        };
        let hist = |series, t, h: &FloatHistogram| Item {
            value: Value::Histogram(Arc::new(h.clone())),
            ..item(series, t, 0)
        };
        let batch = vec![
            item(1, 10, 0),
            hist(2, 10, &whole),
            hist(2, 20, &fractional),
            item(1, 20, 0),
        ];
        let (raw, newest) = encode_batch(&batch);
        let req = <proto::WriteRequest as prost::Message>::decode(raw.as_slice()).unwrap();
        assert_eq!(req.timeseries.len(), 2);
        assert_eq!(req.timeseries[0].samples.len(), 2);
        assert!(req.timeseries[0].histograms.is_empty());
        let hs = &req.timeseries[1].histograms;
        assert!(req.timeseries[1].samples.is_empty());
        assert_eq!(hs.len(), 2);
        assert_eq!(hs[0].timestamp, 10);
        assert_eq!(hs[0].count, Some(proto::HistogramCount::CountInt(11)));
        assert_eq!(hs[0].positive_deltas, vec![7, -4]);
        assert_eq!(hs[0].reset_hint, 2);
        assert_eq!(hs[1].count, Some(proto::HistogramCount::CountFloat(10.5)));
        assert_eq!(hs[1].positive_counts, vec![7.0, 2.5]);
        // What the receiver decodes is what was stored.
        assert_eq!(hs[0].to_float().unwrap(), whole);
        assert_eq!(hs[1].to_float().unwrap(), fractional);
        assert_eq!(newest, vec![(1, 20, 0), (2, 20, 0)]);
    }

    #[test]
    fn exemplars_go_in_their_series_and_are_not_newest_samples() {
        use crate::storage::exemplars::Exemplar;
        let ex = |series, t, trace: &str| Item {
            value: Value::Exemplar(Arc::new(Exemplar {
                labels: crate::model::Labels::from_pairs([("trace_id", trace)]).unwrap(),
                value: 0.5,
                timestamp_ms: t,
            })),
            ..item(series, t, 1)
        };
        // Series 2 has only an exemplar, with a timestamp past series 1's
        // samples: no newest sample comes from it.
        let batch = vec![item(1, 10, 0), ex(1, 9, "a"), ex(2, 50, "b")];
        let (raw, newest) = encode_batch(&batch);
        let req = <proto::WriteRequest as prost::Message>::decode(raw.as_slice()).unwrap();
        assert_eq!(req.timeseries.len(), 2);
        assert_eq!(req.timeseries[0].samples.len(), 1);
        assert_eq!(
            req.timeseries[0].exemplars,
            vec![proto::Exemplar {
                labels: vec![proto::Label {
                    name: "trace_id".into(),
                    value: "a".into(),
                }],
                value: 0.5,
                timestamp: 9,
            }]
        );
        assert!(req.timeseries[1].samples.is_empty());
        assert_eq!(req.timeseries[1].exemplars[0].timestamp, 50);
        assert_eq!(req.timeseries[1].labels[0].value, "m2");
        assert_eq!(newest, vec![(1, 10, 0)]);
    }

    #[test]
    fn repeated_samples_are_recognised_in_prometheus_answers() {
        assert!(is_repeat_rejection(
            "server returned HTTP status 400 Bad Request: out of order sample"
        ));
        assert!(is_repeat_rejection(
            "server returned HTTP status 400 Bad Request: duplicate sample for timestamp"
        ));
        assert!(!is_repeat_rejection(
            "server returned HTTP status 400 Bad Request: out of bounds"
        ));
    }

    #[test]
    fn acks_count_samples_per_record() {
        use super::super::progress::Position;
        let mut t = AckTracker::new(Position::default());
        let a = t.register(
            Position {
                segment: 0,
                offset: 1,
            },
            2,
        );
        let b = t.register(
            Position {
                segment: 0,
                offset: 2,
            },
            1,
        );
        ack(&mut t, &[item(1, 1, a), item(2, 1, a), item(1, 2, b)]);
        assert_eq!(
            t.committed(),
            Position {
                segment: 0,
                offset: 2
            }
        );
    }

    /// Shards against a local receiver that fails its first requests:
    /// everything arrives, each series in order, across a restart of the
    /// shards with another count (what resharding does), and the
    /// committed position reaches the last record.
    #[test]
    fn shards_deliver_in_order_through_retries_and_resharding() {
        use super::super::metrics::SenderMetrics;
        use super::super::progress::Position;
        use std::sync::atomic::AtomicUsize;

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let got: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (g, c) = (got.clone(), calls.clone());
        rt.spawn(async move {
            let app = axum::Router::new().route(
                "/write",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let (g, c) = (g.clone(), c.clone());
                    async move {
                        if c.fetch_add(1, Ordering::SeqCst) < 2 {
                            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        let req = crate::remote::write_receiver::decode(&body).unwrap();
                        let mut g = g.lock();
                        for ts in req.timeseries {
                            for s in ts.samples {
                                g.push((ts.labels[0].value.clone(), s.timestamp));
                            }
                        }
                        axum::http::StatusCode::NO_CONTENT
                    }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
        let cfg: crate::config::remote::RemoteWriteConfig = serde_yaml::from_str(&format!(
            "url: http://127.0.0.1:{port}/write\nqueue_config: {{capacity: 5, max_samples_per_send: 7, batch_send_deadline: 50ms, min_backoff: 10ms, max_backoff: 20ms}}\n"
        ))
        .unwrap();
        let metrics = SenderMetrics::new(None).unwrap().for_remote("t", &cfg.url);
        let shared = Arc::new(Shared {
            name: "t".into(),
            client: RemoteClient::new(&cfg, std::path::Path::new(".")).unwrap(),
            queue: cfg.queue_config.clone(),
            acks: Mutex::new(AckTracker::new(Position::default())),
            metrics: metrics.clone(),
            cancel: CancellationToken::new(),
            send_nanos: AtomicU64::new(0),
            highest_sent_ms: AtomicI64::new(i64::MIN),
            last_failure_ms: AtomicI64::new(-1),
            started: Instant::now(),
        });
        let mut t = 0;
        let mut feed = |shards: &Shards, n: usize| {
            for _ in 0..n {
                t += 1;
                let end = Position {
                    segment: 0,
                    offset: t as u64,
                };
                let seq = shared.acks.lock().register(end, 1);
                let mut it = item((t % 5) as u64, t, seq);
                loop {
                    match shards.enqueue(it, rt.handle(), Duration::from_millis(10)) {
                        Ok(()) => break,
                        Err(back) => it = back,
                    }
                }
            }
        };
        let shards = Shards::start(3, &shared, rt.handle());
        feed(&shards, 60);
        shards.stop(rt.handle(), Some(Duration::from_secs(10)), &shared.cancel);
        let shards = Shards::start(2, &shared, rt.handle());
        feed(&shards, 40);
        shards.stop(rt.handle(), Some(Duration::from_secs(10)), &shared.cancel);

        let got = got.lock().clone();
        assert_eq!(got.len(), 100, "{got:?}");
        for series in 0..5 {
            let times: Vec<i64> = got
                .iter()
                .filter(|(s, _)| *s == format!("m{series}"))
                .map(|(_, t)| *t)
                .collect();
            assert!(
                times.windows(2).all(|w| w[0] < w[1]),
                "m{series}: {times:?}"
            );
            assert_eq!(times.len(), 20);
        }
        assert!(metrics.samples_retried.get() > 0);
        assert_eq!(metrics.samples_sent.get(), 100);
        assert_eq!(
            shared.acks.lock().committed(),
            Position {
                segment: 0,
                offset: 100
            }
        );
    }
}
