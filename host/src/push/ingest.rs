//! Pushed groups into Ember's own storage, every scrape interval, as if a
//! Prometheus scraped a Pushgateway with `honor_labels: true`: the pushed
//! labels are kept as they are, and series that leave (deleted groups or
//! metrics) get stale markers.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::store::PushStore;
use crate::config::Config;
use crate::model::Labels;
use crate::model::sample::stale_nan;
use crate::storage::Storage;

fn labels_of(map: &BTreeMap<String, String>) -> Option<Labels> {
    Labels::from_pairs(map.iter()).ok()
}

/// One ingestion pass; returns the series written, for the next pass's staleness.
pub fn ingest_once(
    store: &PushStore,
    storage: &Storage,
    previous: &HashSet<Labels>,
    t: i64,
) -> HashSet<Labels> {
    let mut seen = HashSet::new();
    let mut app = storage.appender();
    for g in store.groups() {
        for f in g.families.values() {
            for s in &f.samples {
                if let Some(l) = labels_of(&s.labels)
                    && seen.insert(l.clone())
                {
                    app.append(l, t, f64::from_bits(s.value_bits));
                }
            }
        }
        for (name, v) in [
            ("push_time_seconds", g.push_time),
            ("push_failure_time_seconds", g.push_failure_time),
        ] {
            let mut map = g.grouping.clone();
            map.insert("__name__".into(), name.into());
            if let Some(l) = labels_of(&map)
                && seen.insert(l.clone())
            {
                app.append(l, t, v);
            }
        }
    }
    for gone in previous.difference(&seen) {
        app.append(gone.clone(), t, stale_nan());
    }
    if let Err(e) = app.commit() {
        tracing::error!(err = %e, "Cannot store pushed metrics");
    }
    seen
}

pub async fn run(
    store: Arc<PushStore>,
    storage: Arc<Storage>,
    config: watch::Receiver<Arc<Config>>,
    stop: CancellationToken,
) {
    let mut previous = HashSet::new();
    loop {
        let interval = config.borrow().global.scrape_interval.as_duration();
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => return,
        }
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let (store, storage, prev) = (
            store.clone(),
            storage.clone(),
            std::mem::take(&mut previous),
        );
        match tokio::task::spawn_blocking(move || ingest_once(&store, &storage, &prev, t)).await {
            Ok(seen) => previous = seen,
            Err(e) => tracing::error!(err = %e, "Push ingestion task failed"),
        }
    }
}
