//! One target's scrape loop: fetch, parse, label, append, mark stale, report.
//!
//! Every scrape is one appender commit holding the target's samples, stale
//! markers for series that disappeared since the previous scrape, and the
//! report series `up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
//! `scrape_samples_post_metric_relabeling` and `scrape_series_added`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

use super::series_cache::SeriesCache;
use super::target::Target;
use crate::config::ScrapeConfig;
use crate::config::scrape::ScrapeProtocol;
use crate::model::Labels;
use crate::model::exposition::{Entry, Format, MetricType, Parser, protobuf};
use crate::model::histogram::FloatHistogram;
use crate::model::relabel::{self, LabelMap};
use crate::model::sample::stale_nan;
use crate::storage::Storage;

/// A job's HTTP client, shared by its loops. The scrape manager swaps in a
/// new client when the job's TLS files change, without restarting loops.
#[derive(Clone)]
pub struct SharedClient {
    client: Arc<RwLock<reqwest::Client>>,
    /// Where relative credential file paths start.
    config_dir: Arc<Path>,
}

impl SharedClient {
    pub fn new(client: reqwest::Client, config_dir: &Path) -> SharedClient {
        SharedClient {
            client: Arc::new(RwLock::new(client)),
            config_dir: config_dir.into(),
        }
    }

    pub fn replace(&self, client: reqwest::Client) {
        *self.client.write() = client;
    }

    fn current(&self) -> reqwest::Client {
        self.client.read().clone()
    }

    /// A credential kept in a file (re-read at every scrape, as Prometheus does).
    fn read_secret(&self, key: &str, file: &str) -> Result<String, String> {
        let path = crate::config::resolve_path(&self.config_dir, file);
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| format!("unable to read {key} {}: {e}", path.display()))
    }
}

/// The `Accept` header for `protocols`, built as Prometheus builds it
/// (weights falling from 0.N, N one more than the number of protocols
/// known, then anything at all), so exporters pick the same format for both.
pub fn accept_header(protocols: &[ScrapeProtocol]) -> String {
    let mut weight = ScrapeProtocol::PROTO_FIRST.len() + 1;
    let mut out = String::new();
    for p in protocols {
        out.push_str(p.media_type());
        out.push_str(&format!(";q=0.{weight},"));
        weight = weight.saturating_sub(1);
    }
    out.push_str(&format!("*/*;q=0.{weight}"));
    out
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Health {
    #[default]
    Unknown,
    Up,
    Down,
}

/// HELP/TYPE/UNIT of one metric family, as the target exposed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    pub kind: String,
    pub help: String,
    pub unit: String,
}

/// The target's state, shared with the manager for the API and UI.
#[derive(Clone, Debug, Default)]
pub struct TargetState {
    pub health: Health,
    pub last_error: String,
    pub last_scrape_ms: i64,
    pub last_duration: Duration,
    pub last_samples: usize,
    pub metadata: HashMap<String, Metadata>,
}

/// The labels of a scraped series after target labels and metric
/// relabeling; `None` when relabeling dropped it.
type Cached = Option<Labels>;

/// Entries unseen for this many scrapes are evicted from the cache.
const CACHE_KEEP_SCRAPES: u64 = 10;

pub struct ScrapeLoop {
    pub target: Target,
    cfg: Arc<ScrapeConfig>,
    storage: Arc<Storage>,
    client: SharedClient,
    cache: SeriesCache,
    /// The labels of the report series (`up`, `scrape_duration_seconds`, ...),
    /// built once: the target's labels do not change during a loop's life.
    report: Vec<Labels>,
    /// Whether `report` holds the head's own copies.
    report_canonical: bool,
    /// Number of the current scrape (the first is 2).
    scrape_id: u64,
    pub state: Arc<Mutex<TargetState>>,
    /// For jobs that name an exporter plugin instead of scraping over HTTP.
    plugins: Option<Arc<crate::plugins::PluginManager>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What one scrape fetched: an exposition body from HTTP, or an exporter
/// plugin's metric families, which go into the same labeling, limits and
/// staleness code without being rendered and parsed as text.
enum Scraped {
    Body { body: String, format: Format },
    Proto(bytes::Bytes),
    Families(Vec<crate::plugins::MetricFamily>),
}

/// The samples of one scrape on their way to the appender, with the counts
/// of the report series. Samples name their series by cache entry, so the
/// commit borrows the cached labels instead of cloning them.
#[derive(Default)]
struct Batch {
    samples: Vec<(u32, i64, f64)>,
    histograms: Vec<(u32, i64, FloatHistogram)>,
    scraped: usize,
    added: usize,
    metadata: HashMap<String, Metadata>,
    /// Exemplars of accepted samples, committed with them.
    exemplars: Vec<(Labels, crate::storage::exemplars::Exemplar)>,
}

impl ScrapeLoop {
    pub fn new(
        target: Target,
        cfg: Arc<ScrapeConfig>,
        storage: Arc<Storage>,
        client: SharedClient,
    ) -> ScrapeLoop {
        let report = REPORT_SERIES
            .iter()
            .map(|name| report_labels(&target.labels, name))
            .collect();
        ScrapeLoop {
            report,
            report_canonical: false,
            target,
            cfg,
            storage,
            client,
            cache: SeriesCache::default(),
            // `last_seen == 0` means "never"; ids start at 2 so 0 + 1 is no scrape.
            scrape_id: 1,
            state: Arc::new(Mutex::new(TargetState::default())),
            plugins: None,
        }
    }

    /// Lets the loop call exporter plugins (jobs with `plugin:`).
    pub fn with_plugins(mut self, plugins: Option<Arc<crate::plugins::PluginManager>>) -> Self {
        self.plugins = plugins;
        self
    }

    /// Calls the job's exporter plugin. The instance is looked up on every
    /// scrape so a reloaded plugin is used at once.
    async fn fetch_plugin(
        &self,
        plugin: &crate::plugins::PluginUse,
    ) -> Result<Vec<crate::plugins::MetricFamily>, String> {
        let Some(manager) = &self.plugins else {
            return Err("plugins are not available in this process".into());
        };
        let instance = manager.instance(
            plugin,
            Some(self.target.timeout),
            crate::plugins::World::Exporter,
        )?;
        instance.collect().await.map_err(|e| e.to_string())
    }

    /// Scrapes on the target's interval until cancelled, then marks every
    /// series it produced as stale.
    pub async fn run(mut self, stop: CancellationToken) {
        // Spread targets over the interval, stably per target.
        let offset = {
            let h = xxhash_rust::xxh3::xxh3_64(self.target.url.as_bytes())
                ^ self.target.labels.stable_hash();
            Duration::from_millis(h % self.target.interval.as_millis().max(1) as u64)
        };
        tokio::select! {
            _ = tokio::time::sleep(offset) => {}
            _ = stop.cancelled() => return,
        }
        let mut tick = tokio::time::interval(self.target.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            self.scrape_once().await;
        }
        self.mark_all_stale(now_ms()).await;
    }

    async fn fetch(&self) -> Result<Scraped, String> {
        if let Some(plugin) = &self.cfg.plugin {
            return self.fetch_plugin(plugin).await.map(Scraped::Families);
        }
        let mut req = self
            .client
            .current()
            .get(&self.target.url)
            .header("Accept", accept_header(&self.cfg.scrape_protocols))
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", self.target.timeout.as_secs_f64()),
            )
            .timeout(self.target.timeout);
        let http = &self.cfg.http_client;
        if let Some(b) = &http.basic_auth {
            let password = if b.password_file.is_empty() {
                b.password.expose().to_owned()
            } else {
                self.client.read_secret("password_file", &b.password_file)?
            };
            req = req.basic_auth(&b.username, Some(password));
        }
        if let Some(a) = &http.authorization {
            let credentials = if a.credentials_file.is_empty() {
                a.credentials.expose().to_owned()
            } else {
                self.client
                    .read_secret("credentials_file", &a.credentials_file)?
            };
            req = req.header("Authorization", format!("{} {credentials}", a.kind));
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                format!(
                    "context deadline exceeded (scrape timeout {:?})",
                    self.target.timeout
                )
            } else {
                error_chain(&e)
            }
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("server returned HTTP status {status}"));
        }
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("reading body: {}", error_chain(&e)))?;
        let limit = self.cfg.body_size_limit;
        if limit > 0 && bytes.len() as u64 > limit {
            return Err(format!(
                "body size limit exceeded: {} bytes > {limit}",
                bytes.len()
            ));
        }
        if is_protobuf(&content_type) {
            return Ok(Scraped::Proto(bytes));
        }
        // `Vec::from(Bytes)` takes over the buffer without copying when unshared.
        let body =
            String::from_utf8(Vec::from(bytes)).map_err(|e| format!("body is not UTF-8: {e}"))?;
        let format = if content_type.starts_with("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Text
        };
        Ok(Scraped::Body { body, format })
    }

    /// One sample of the scrape, known by `key` (its series as exposed: the
    /// raw text of an HTTP body, [`crate::plugins::series_key`] for a
    /// plugin); `labels` builds its labels the first time the key is seen.
    fn accept(
        &mut self,
        batch: &mut Batch,
        key: &str,
        labels: impl FnOnce() -> Result<Labels, String>,
        timestamp_ms: Option<i64>,
        value: f64,
        t: i64,
    ) -> Result<(), String> {
        if let Some(index) = self.admit(batch, key, labels)? {
            batch
                .samples
                .push((index, self.sample_time(timestamp_ms, t), value));
        }
        Ok(())
    }

    fn sample_time(&self, timestamp_ms: Option<i64>, t: i64) -> i64 {
        match timestamp_ms {
            Some(ts) if self.cfg.honor_timestamps => ts,
            _ => t,
        }
    }

    /// Counts one scraped series and finds its cache entry: `None` when
    /// it is to be left out (relabeled away, or repeated in the exposition).
    fn admit(
        &mut self,
        batch: &mut Batch,
        key: &str,
        labels: impl FnOnce() -> Result<Labels, String>,
    ) -> Result<Option<u32>, String> {
        let id = self.scrape_id;
        batch.scraped += 1;
        let (target, cfg) = (&self.target, &*self.cfg);
        let index = self
            .cache
            .find_or_insert(key, || Ok(series_labels(target, cfg, &labels()?)))?;
        let entry = self.cache.entry_mut(index);
        if entry.last_seen == id {
            return Ok(None); // the same series twice in one exposition
        }
        entry.seen_before = entry.last_seen;
        entry.last_seen = id;
        if entry.labels.is_none() {
            return Ok(None);
        }
        if entry.seen_before + 1 != id {
            batch.added += 1;
        }
        if let Some(labels) = &self.cache.entry(index).labels {
            self.check_label_limits(labels)?;
        }
        Ok(Some(index))
    }

    /// Takes a protobuf exposition into `batch`: float samples as from
    /// text, native histograms when the job stores them.
    fn accept_proto(&mut self, batch: &mut Batch, body: &[u8], t: i64) -> Result<(), String> {
        let native = self.cfg.scrape_native_histograms;
        // Without native histograms, a native histogram's classic buckets
        // are all that is kept, as in Prometheus.
        let classic = !native || self.cfg.always_scrape_classic_histograms;
        let families = protobuf::parse(body, classic).map_err(|e| e.to_string())?;
        let mut key = String::new();
        for family in families {
            let meta = batch.metadata.entry(family.name.clone()).or_default();
            meta.kind = type_name(family.kind).into();
            meta.help = family.help;
            meta.unit = family.unit;
            for sample in family.samples {
                key.clear();
                key.push_str(&sample.labels.to_string());
                let before = batch.samples.len();
                let labels = sample.labels;
                self.accept(
                    batch,
                    &key,
                    || Ok(labels),
                    sample.timestamp_ms,
                    sample.value,
                    t,
                )?;
                if let Some(e) = sample.exemplar {
                    self.keep_exemplar(batch, before, e, t);
                }
            }
            if !native {
                continue;
            }
            for h in family.histograms {
                key.clear();
                key.push_str(&h.labels.to_string());
                let labels = h.labels;
                if let Some(index) = self.admit(batch, &key, || Ok(labels))? {
                    let ts = self.sample_time(h.timestamp_ms, t);
                    batch.histograms.push((index, ts, h.histogram));
                    if let Some(labels) = &self.cache.entry(index).labels {
                        for e in h.exemplars {
                            batch.exemplars.push((
                                labels.clone(),
                                crate::storage::exemplars::Exemplar {
                                    labels: e.labels,
                                    value: e.value,
                                    timestamp_ms: e.timestamp_ms.unwrap_or(t),
                                },
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Keeps the exemplar of the sample just accepted, if it was.
    fn keep_exemplar(
        &self,
        batch: &mut Batch,
        before: usize,
        e: crate::model::exposition::Exemplar,
        t: i64,
    ) {
        if batch.samples.len() > before
            && let Some(&(index, ..)) = batch.samples.last()
            && let Some(labels) = &self.cache.entry(index).labels
        {
            // An exemplar without a timestamp gets the scrape's, as in Prometheus.
            batch.exemplars.push((
                labels.clone(),
                crate::storage::exemplars::Exemplar {
                    labels: e.labels,
                    value: e.value,
                    timestamp_ms: e.timestamp_ms.unwrap_or(t),
                },
            ));
        }
    }

    /// Parses an exposition body into `batch`.
    fn accept_body(
        &mut self,
        batch: &mut Batch,
        body: &str,
        format: Format,
        t: i64,
    ) -> Result<(), String> {
        for entry in Parser::new(body, format) {
            match entry.map_err(|e| e.to_string())? {
                Entry::Sample(sample) => {
                    let series = sample.series;
                    let before = batch.samples.len();
                    self.accept(
                        batch,
                        series,
                        || sample.labels().map_err(|e| format!("series {series}: {e}")),
                        sample.timestamp_ms,
                        sample.value,
                        t,
                    )?;
                    if let Some(e) = sample.exemplar {
                        self.keep_exemplar(batch, before, e, t);
                    }
                }
                Entry::Help { family, help } => {
                    batch.metadata.entry(family.into_owned()).or_default().help = help.into_owned()
                }
                Entry::Type { family, kind } => {
                    batch.metadata.entry(family.into_owned()).or_default().kind =
                        type_name(kind).into()
                }
                Entry::Unit { family, unit } => {
                    batch.metadata.entry(family.into_owned()).or_default().unit = unit.into_owned()
                }
            }
        }
        Ok(())
    }

    /// Takes an exporter plugin's families into `batch` (the plugin host
    /// has checked their names).
    fn accept_families(
        &mut self,
        batch: &mut Batch,
        families: &[crate::plugins::MetricFamily],
        t: i64,
    ) -> Result<(), String> {
        let mut key = String::new();
        for family in families {
            let meta = batch.metadata.entry(family.name.clone()).or_default();
            meta.kind = crate::plugins::type_name(family.type_).into();
            meta.help.clone_from(&family.help);
            meta.unit.clone_from(&family.unit);
            for sample in &family.samples {
                crate::plugins::series_key(&mut key, &family.name, sample);
                self.accept(
                    batch,
                    &key,
                    || crate::plugins::sample_labels(&family.name, sample),
                    sample.timestamp_ms,
                    sample.value,
                    t,
                )?;
            }
        }
        Ok(())
    }

    async fn scrape_once(&mut self) {
        let started = Instant::now();
        let t = now_ms();
        self.scrape_id += 1;
        let id = self.scrape_id;
        let fetched = self.fetch().await;
        let mut batch = Batch::default();
        self.cache.begin_scrape();
        let result = fetched.and_then(|scraped| {
            match scraped {
                Scraped::Body { body, format } => self.accept_body(&mut batch, &body, format, t)?,
                Scraped::Proto(body) => self.accept_proto(&mut batch, &body, t)?,
                Scraped::Families(families) => self.accept_families(&mut batch, &families, t)?,
            }
            let limit = self.cfg.sample_limit as usize;
            let total = batch.samples.len() + batch.histograms.len();
            if limit > 0 && total > limit {
                return Err(format!("sample limit exceeded: {total} samples > {limit}"));
            }
            Ok(())
        });
        self.cache.finish_scrape(result.is_ok());
        let Batch {
            samples: mut app_samples,
            mut histograms,
            scraped,
            mut added,
            metadata,
            mut exemplars,
        } = batch;
        let duration = started.elapsed();
        let (up, error) = match &result {
            Ok(()) => (1.0, String::new()),
            Err(e) => (0.0, e.clone()),
        };
        let failed = result.is_err();
        if failed {
            app_samples.clear();
            histograms.clear();
            exemplars.clear();
            added = 0;
        }
        let post_relabel = app_samples.len() + histograms.len();
        // Stale markers: seen in the previous scrape but not this one; after a
        // failed scrape, everything seen before (and nothing counts as seen now).
        let mut stale = Vec::new();
        for (index, entry) in self.cache.iter_mut() {
            if failed && entry.last_seen == id {
                // Exposed by the failed scrape: not stored, so not seen.
                entry.last_seen = entry.seen_before;
            }
            if entry.last_seen + 1 == id && entry.labels.is_some() {
                stale.push(index);
            }
        }
        self.cache
            .retain(|e| e.last_seen + CACHE_KEEP_SCRAPES >= id);
        let mut app = self.storage.appender();
        for (index, ts, v) in app_samples {
            let entry = self.cache.entry(index);
            if let Some(labels) = &entry.labels {
                app.append_borrowed(labels, ts, v, entry.head_slot);
            }
        }
        for (index, ts, h) in histograms {
            if let Some(labels) = &self.cache.entry(index).labels {
                app.append_histogram(labels.clone(), ts, h);
            }
        }
        for index in stale {
            if let Some(labels) = &self.cache.entry(index).labels {
                app.append_borrowed(labels, t, stale_nan(), None);
            }
        }
        let report = [
            up,
            duration.as_secs_f64(),
            scraped as f64,
            post_relabel as f64,
            added as f64,
        ];
        for (labels, value) in self.report.iter().zip(report) {
            app.append_borrowed(labels, t, value, None);
        }
        // Kept for logging refusals, which are reported by position.
        let exemplar_series: Vec<Labels> = exemplars.iter().map(|(s, _)| s.clone()).collect();
        for (series, exemplar) in exemplars {
            app.append_exemplar(series, exemplar);
        }
        let committed = app.commit();
        match committed {
            Ok(report) => self.log_exemplar_errors(&report, &exemplar_series),
            Err(e) => {
                tracing::error!(target = %self.target.url, err = %e, "Cannot store scraped samples")
            }
        }
        // New series: keep the head's copy of their labels from now on.
        for (_, entry) in self
            .cache
            .iter_mut()
            .filter(|(_, e)| !e.canonical && e.last_seen == id)
        {
            if let Some(labels) = &entry.labels
                && let Some((canonical, slot)) = self.storage.canonical_series(labels)
            {
                entry.labels = Some(canonical);
                entry.canonical = true;
                entry.head_slot = Some(slot);
            }
        }
        if !self.report_canonical {
            let canonical: Option<Vec<Labels>> = self
                .report
                .iter()
                .map(|l| self.storage.canonical_labels(l))
                .collect();
            if let Some(canonical) = canonical {
                self.report = canonical;
                self.report_canonical = true;
            }
        }
        if !error.is_empty() {
            tracing::debug!(target = %self.target.url, err = %error, "Scrape failed");
        }
        let mut state = self.state.lock();
        state.health = if up == 1.0 { Health::Up } else { Health::Down };
        state.last_error = error;
        state.last_scrape_ms = t;
        state.last_duration = duration;
        state.last_samples = scraped;
        if up == 1.0 {
            state.metadata = metadata;
        }
    }

    /// Duplicate exemplars (the same one exposed scrape after scrape) are
    /// expected and dropped quietly; other refusals are logged.
    fn log_exemplar_errors(&self, report: &crate::storage::CommitReport, series: &[Labels]) {
        use crate::storage::exemplars::ExemplarError;
        for (k, e) in &report.exemplar_errors {
            if !matches!(e, ExemplarError::Duplicate | ExemplarError::Disabled)
                && let Some(series) = series.get(*k)
            {
                tracing::debug!(target = %self.target.url, series = %series, err = %e, "Exemplar not stored");
            }
        }
    }

    /// `label_limit`, `label_name_length_limit`, `label_value_length_limit`:
    /// a series over a limit fails the whole scrape, as in Prometheus.
    fn check_label_limits(&self, labels: &Labels) -> Result<(), String> {
        let cfg = &self.cfg;
        if cfg.label_limit == 0
            && cfg.label_name_length_limit == 0
            && cfg.label_value_length_limit == 0
        {
            return Ok(());
        }
        let name = labels.metric_name().unwrap_or("");
        if cfg.label_limit > 0 && labels.len() as u64 > cfg.label_limit {
            return Err(format!(
                "label_limit exceeded (metric: {name}, number of labels: {}, limit: {})",
                labels.len(),
                cfg.label_limit
            ));
        }
        for l in labels.iter() {
            if cfg.label_name_length_limit > 0 && l.name.len() as u64 > cfg.label_name_length_limit
            {
                return Err(format!(
                    "label_name_length_limit exceeded (metric: {name}, label name: {}, length: {}, limit: {})",
                    l.name,
                    l.name.len(),
                    cfg.label_name_length_limit
                ));
            }
            if cfg.label_value_length_limit > 0
                && l.value.len() as u64 > cfg.label_value_length_limit
            {
                return Err(format!(
                    "label_value_length_limit exceeded (metric: {name}, label name: {}, value length: {}, limit: {})",
                    l.name,
                    l.value.len(),
                    cfg.label_value_length_limit
                ));
            }
        }
        Ok(())
    }

    async fn mark_all_stale(&mut self, t: i64) {
        let mut app = self.storage.appender();
        let id = self.scrape_id;
        for (_, entry) in self
            .cache
            .iter()
            .filter(|(_, e)| e.last_seen == id && id > 0)
        {
            if let Some(labels) = &entry.labels {
                app.append_borrowed(labels, t, stale_nan(), None);
            }
        }
        for labels in &self.report {
            app.append_borrowed(labels, t, stale_nan(), None);
        }
        if let Err(e) = app.commit() {
            tracing::error!(target = %self.target.url, err = %e, "Cannot store stale markers");
        }
    }
}

/// The series every scrape reports about itself, in the order of
/// [`ScrapeLoop::report`].
const REPORT_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

fn report_labels(target: &Labels, name: &str) -> Labels {
    let mut pairs: Vec<(&str, &str)> = target.iter().map(|l| (&*l.name, &*l.value)).collect();
    pairs.push(("__name__", name));
    Labels::from_pairs(pairs).unwrap_or_default()
}

/// Target labels merged into scraped labels (honor_labels rules), then
/// metric relabeling.
fn series_labels(target: &Target, cfg: &ScrapeConfig, scraped: &Labels) -> Cached {
    let mut map: LabelMap = scraped
        .iter()
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect();
    for l in target.labels.iter() {
        let (name, value) = (l.name.to_string(), l.value.to_string());
        if cfg.honor_labels {
            map.entry(name).or_insert(value);
        } else {
            if let Some(existing) = map.remove(&name) {
                // Keep the exposed value as exported_<name>, as Prometheus does.
                let mut exported = format!("exported_{name}");
                while map.contains_key(&exported) {
                    exported = format!("exported_{exported}");
                }
                map.insert(exported, existing);
            }
            map.insert(name, value);
        }
    }
    if !relabel::process(&mut map, &cfg.metric_relabel_configs) {
        return None;
    }
    Labels::from_pairs(map.iter())
        .ok()
        .filter(|l| l.metric_name().is_some())
}

fn type_name(kind: MetricType) -> &'static str {
    match kind {
        // The metadata API says "unknown" for untyped, as Prometheus does.
        MetricType::Unknown => "unknown",
        k => k.as_str(),
    }
}

/// Whether a `Content-Type` names the delimited protobuf format.
fn is_protobuf(content_type: &str) -> bool {
    let mut parts = content_type.split(';').map(str::trim);
    parts
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case(protobuf::MEDIA_TYPE))
        && parts.all(|p| match p.split_once('=') {
            Some(("proto", v)) => v == "io.prometheus.client.MetricFamily",
            Some(("encoding", v)) => v == "delimited",
            _ => true,
        })
}

/// An error with its causes, as one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_accept_header_is_prometheus_s() {
        assert_eq!(
            accept_header(&ScrapeProtocol::DEFAULT),
            "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        );
        assert_eq!(
            accept_header(&[ScrapeProtocol::PrometheusProto]),
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,*/*;q=0.4"
        );
    }

    #[test]
    fn protobuf_content_types() {
        assert!(is_protobuf(
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
        ));
        assert!(is_protobuf("application/vnd.google.protobuf"));
        assert!(!is_protobuf(
            "application/vnd.google.protobuf; proto=other.Message; encoding=delimited"
        ));
        assert!(!is_protobuf("text/plain; version=0.0.4"));
    }
}
