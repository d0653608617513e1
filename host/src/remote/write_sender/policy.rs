//! The decisions of a queue as pure functions, so they are tested without
//! a network: what a response status means, how long to back off, and how
//! many shards the backlog calls for.

use std::time::Duration;

/// What to do with a batch after the remote answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Retrying cannot help (4xx): drop the batch and count it as failed.
    Drop,
    /// The remote or the network may recover (5xx, 429, timeouts): retry.
    Retry,
}

/// Prometheus's rule: 2xx is success, 5xx is retried, 429 is retried when
/// `retry_on_http_429` is set, every other status is dropped.
pub fn classify_status(status: u16, retry_on_http_429: bool) -> Outcome {
    match status {
        200..=299 => Outcome::Sent,
        429 if retry_on_http_429 => Outcome::Retry,
        500..=599 => Outcome::Retry,
        _ => Outcome::Drop,
    }
}

/// Exponential backoff between `min_backoff` and `max_backoff`.
pub fn next_backoff(current: Duration, max: Duration) -> Duration {
    (current * 2).min(max)
}

/// How often shard counts are reconsidered.
pub const SHARD_UPDATE_PERIOD: Duration = Duration::from_secs(10);

/// Changes smaller than this fraction of the current count are ignored, so
/// the queue does not flap between neighbouring counts.
const SHARD_TOLERANCE: f64 = 0.3;

/// The part of the backlog the queue aims to work off per second.
const BACKLOG_CATCHUP: f64 = 0.05;

/// What the queue measured over the last [`SHARD_UPDATE_PERIOD`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ShardInputs {
    pub current: usize,
    pub min: usize,
    pub max: usize,
    /// Samples read from the WAL per second.
    pub in_rate: f64,
    /// Samples accepted by the remote per second.
    pub out_rate: f64,
    /// Seconds spent in sends, summed over shards, per second.
    pub send_seconds_rate: f64,
    /// Newest timestamp read minus newest timestamp sent, in seconds.
    pub lag_seconds: f64,
    /// Samples queued in the shards.
    pub pending: u64,
    /// A send failed recently: the remote, not the shard count, is the limit.
    pub recently_failed: bool,
}

/// The shard count to run next and the raw estimate behind it.
///
/// One shard sends batches one after another, so the time a send takes per
/// sample says how many samples one shard moves per second; enough shards
/// are wanted to carry the incoming rate plus a share of the backlog (the
/// lag behind the WAL and what is queued).
pub fn desired_shards(i: &ShardInputs) -> (usize, f64) {
    let current = i.current.max(1);
    if i.recently_failed || i.out_rate <= 0.0 {
        // Nothing measured to scale by; keep the count (within bounds).
        return (current.clamp(i.min.max(1), i.max.max(1)), current as f64);
    }
    let seconds_per_sample = i.send_seconds_rate / i.out_rate;
    let backlog = i.lag_seconds.max(0.0) * i.in_rate + i.pending as f64;
    let desired = seconds_per_sample * (i.in_rate + BACKLOG_CATCHUP * backlog);
    let low = current as f64 * (1.0 - SHARD_TOLERANCE);
    let high = current as f64 * (1.0 + SHARD_TOLERANCE);
    let next = if desired > low && desired < high {
        current
    } else {
        desired.ceil() as usize
    };
    (next.clamp(i.min.max(1), i.max.max(1)), desired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_prometheus() {
        assert_eq!(classify_status(204, true), Outcome::Sent);
        assert_eq!(classify_status(200, false), Outcome::Sent);
        assert_eq!(classify_status(400, true), Outcome::Drop);
        assert_eq!(classify_status(404, true), Outcome::Drop);
        assert_eq!(classify_status(429, true), Outcome::Retry);
        assert_eq!(classify_status(429, false), Outcome::Drop);
        assert_eq!(classify_status(500, false), Outcome::Retry);
        assert_eq!(classify_status(503, true), Outcome::Retry);
        assert_eq!(classify_status(302, true), Outcome::Drop);
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let max = Duration::from_secs(5);
        let mut b = Duration::from_millis(30);
        let mut seen = vec![b];
        for _ in 0..10 {
            b = next_backoff(b, max);
            seen.push(b);
        }
        assert_eq!(seen[1], Duration::from_millis(60));
        assert_eq!(seen[4], Duration::from_millis(480));
        assert_eq!(*seen.last().unwrap(), max);
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
    }

    fn steady() -> ShardInputs {
        ShardInputs {
            current: 4,
            min: 1,
            max: 50,
            in_rate: 10_000.0,
            out_rate: 10_000.0,
            // 4 shards each busy 80% of the time.
            send_seconds_rate: 3.2,
            lag_seconds: 0.0,
            pending: 0,
            recently_failed: false,
        }
    }

    #[test]
    fn a_steady_queue_keeps_its_shards() {
        assert_eq!(desired_shards(&steady()).0, 4);
    }

    #[test]
    fn a_backlog_adds_shards_up_to_the_maximum() {
        let behind = ShardInputs {
            lag_seconds: 120.0,
            ..steady()
        };
        let (n, raw) = desired_shards(&behind);
        assert!(n > 4, "{n} {raw}");
        let far_behind = ShardInputs {
            lag_seconds: 100_000.0,
            ..steady()
        };
        assert_eq!(desired_shards(&far_behind).0, 50);
    }

    #[test]
    fn an_idle_queue_shrinks_to_the_minimum() {
        let idle = ShardInputs {
            in_rate: 10.0,
            out_rate: 10.0,
            send_seconds_rate: 0.01,
            min: 2,
            ..steady()
        };
        assert_eq!(desired_shards(&idle).0, 2);
    }

    #[test]
    fn failing_or_unmeasured_queues_do_not_reshard() {
        let failing = ShardInputs {
            recently_failed: true,
            lag_seconds: 10_000.0,
            ..steady()
        };
        assert_eq!(desired_shards(&failing).0, 4);
        let unmeasured = ShardInputs {
            out_rate: 0.0,
            ..steady()
        };
        assert_eq!(desired_shards(&unmeasured).0, 4);
        let over_max = ShardInputs {
            current: 80,
            out_rate: 0.0,
            ..steady()
        };
        assert_eq!(desired_shards(&over_max).0, 50);
    }
}
