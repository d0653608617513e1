//! The test environment of one script section (between `clear`s): a fresh
//! Ember storage in a temporary directory and an engine over it.
//!
//! Native histogram samples are stored as loaded, and `load_with_nhcb` also
//! stores the native histograms with custom buckets it derives from classic
//! histogram series. Start timestamps (`@st` lines) cannot be stored: those
//! series are remembered, and an eval whose query selects any of them is
//! reported as failing for that reason instead of being run, so missing
//! data can never make an eval pass by accident.

use std::sync::Arc;

use ember::model::histogram::{CUSTOM_BUCKETS_SCHEMA, Span};
use ember::model::{FloatHistogram, Labels};
use ember::promql::{Engine, EngineOptions};
use ember::storage::{Storage, StorageOptions};
use promql_parser::label::Matcher;
use promql_parser::parser::{Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};

use super::compare::to_labels;
use super::parse::{Load, LoadSeries, Point};

pub struct Store {
    pub engine: Engine,
    storage: Arc<Storage>,
    /// Series (or parts of them) the storage could not hold, with why.
    unstored: Vec<(Labels, &'static str)>,
    /// Set when a load failed: every later eval in this section fails.
    broken: Option<String>,
    // Dropped last: the storage's files live here.
    _dir: tempfile::TempDir,
}

const START_TIMESTAMPS: &str = "start timestamps (@st)";

impl Store {
    pub fn new() -> Result<Store, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let opts = StorageOptions {
            // Loads may add samples older than earlier loads did.
            out_of_order_window_ms: i64::MAX / 4,
            retention_ms: None,
            ..Default::default()
        };
        let (storage, _) =
            Storage::open(dir.path(), opts, |_| {}).map_err(|e| format!("opening storage: {e}"))?;
        let storage = Arc::new(storage);
        Ok(Store {
            engine: Engine::new(storage.clone(), EngineOptions::default()),
            storage,
            unstored: Vec::new(),
            broken: None,
            _dir: dir,
        })
    }

    /// Appends a `load` block in one commit. On error the section is marked
    /// broken, and the error is returned for reporting.
    pub fn load(&mut self, load: &Load) -> Result<(), String> {
        let result = self.try_load(load);
        if let Err(e) = &result {
            self.broken = Some(format!("the load at line {} failed: {e}", load.line));
        }
        result
    }

    fn try_load(&mut self, load: &Load) -> Result<(), String> {
        let storage = Arc::clone(&self.storage);
        // A series given twice in one load takes its last definition, as in
        // Prometheus.
        let mut defs: Vec<(Labels, &LoadSeries)> = Vec::new();
        for s in &load.series {
            let labels = to_labels(&s.labels).map_err(|e| format!("line {}: {e}", s.line))?;
            defs.retain(|(l, _)| *l != labels);
            defs.push((labels, s));
        }
        let mut app = storage.appender();
        // Classic histogram series `load_with_nhcb` also turns into native
        // histograms with custom buckets, keyed by the derived series.
        let mut nhcb: Vec<(Labels, NhcbParts)> = Vec::new();
        for (labels, s) in defs.iter().map(|(l, s)| (l.clone(), *s)) {
            if s.has_start_timestamps {
                self.unstored.push((labels.clone(), START_TIMESTAMPS));
            }
            for (i, p) in s.points.iter().enumerate() {
                let t = (i as i64)
                    .checked_mul(load.interval_ms)
                    .ok_or_else(|| format!("line {}: timestamp out of range", s.line))?;
                match p {
                    Point::Missing => {}
                    Point::Float(v) => app.append(labels.clone(), t, *v),
                    Point::Histogram(h) => app.append_histogram(labels.clone(), t, (**h).clone()),
                }
            }
            if let Some(h) = nhcb_series(&labels).filter(|_| load.with_nhcb) {
                let part = nhcb.iter().position(|(l, _)| *l == h).unwrap_or_else(|| {
                    nhcb.push((h, NhcbParts::default()));
                    nhcb.len() - 1
                });
                let parts = &mut nhcb[part].1;
                let name = labels.metric_name().unwrap_or("");
                if name.ends_with("_bucket") {
                    let le = labels.get("le").unwrap_or("");
                    let le = super::parse::parse_bare_number(le)
                        .ok_or_else(|| format!("line {}: invalid le {le:?}", s.line))?;
                    parts.buckets.push((le, &s.points));
                } else if name.ends_with("_count") {
                    parts.count = Some(&s.points);
                } else {
                    parts.sum = Some(&s.points);
                }
            }
        }
        for (labels, parts) in nhcb {
            let steps = parts.buckets.iter().map(|b| b.1.len()).max().unwrap_or(0);
            for i in 0..steps {
                let Some(h) = parts.at(i) else { continue };
                let t = (i as i64)
                    .checked_mul(load.interval_ms)
                    .ok_or_else(|| "timestamp out of range".to_string())?;
                app.append_histogram(labels.clone(), t, h);
            }
        }
        let report = app.commit().map_err(|e| format!("commit: {e}"))?;
        if let Some((i, e)) = report.rejected.first() {
            return Err(format!(
                "the storage rejected {} samples (sample #{i}: {e:?})",
                report.rejected.len()
            ));
        }
        Ok(())
    }

    /// Why an eval of `query` cannot be meaningful here, if it cannot.
    pub fn blocker(&self, query: &str) -> Option<String> {
        if let Some(b) = &self.broken {
            return Some(b.clone());
        }
        if self.unstored.is_empty() {
            return None;
        }
        // A query that does not parse reads nothing; the engine reports it.
        let expr = promql_parser::parser::parse(query).ok()?;
        let mut selectors = Selectors(Vec::new());
        let _ = walk_expr(&mut selectors, &expr);
        let hit = self
            .unstored
            .iter()
            .find(|(labels, _)| selectors.0.iter().any(|vs| selects(vs, labels)))?;
        Some(format!(
            "the query reads {}, which has {} the storage cannot hold",
            hit.0, hit.1
        ))
    }
}

/// The classic series one native histogram with custom buckets is made of.
#[derive(Default)]
struct NhcbParts<'a> {
    buckets: Vec<(f64, &'a Vec<Point>)>,
    count: Option<&'a Vec<Point>>,
    sum: Option<&'a Vec<Point>>,
}

impl NhcbParts<'_> {
    /// The histogram at step `i`: finite `le` bounds become the custom
    /// bounds, cumulative bucket counts become per-bucket counts. Steps
    /// where a bucket is missing or stale have none.
    fn at(&self, i: usize) -> Option<FloatHistogram> {
        let value = |points: &Vec<Point>| match points.get(i) {
            Some(Point::Float(v)) if !ember::model::is_stale_nan(*v) => Some(*v),
            _ => None,
        };
        let mut cumulative: Vec<(f64, f64)> = Vec::with_capacity(self.buckets.len());
        for (le, points) in &self.buckets {
            cumulative.push((*le, value(points)?));
        }
        cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut h = FloatHistogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            ..Default::default()
        };
        let mut prev = 0.0;
        let mut counts = Vec::with_capacity(cumulative.len());
        for (le, c) in &cumulative {
            if le.is_finite() {
                h.custom_values.push(*le);
            }
            counts.push(c - prev);
            prev = *c;
        }
        if cumulative.last().is_some_and(|(le, _)| le.is_finite()) {
            // No +Inf bucket: the last, implicit bucket is empty.
            counts.push(0.0);
        }
        h.positive_spans = vec![Span {
            offset: 0,
            length: counts.len() as u32,
        }];
        h.positive_buckets = counts;
        h.count = match self.count {
            Some(points) => value(points)?,
            None => prev,
        };
        h.sum = match self.sum {
            Some(points) => value(points)?,
            None => 0.0,
        };
        h.compact();
        Some(h)
    }
}

/// The series `load_with_nhcb` derives from a classic histogram series:
/// `x_bucket{le=..}`, `x_count`, `x_sum` all feed `x` (without `le`).
fn nhcb_series(labels: &Labels) -> Option<Labels> {
    let name = labels.metric_name()?;
    let base = ["_bucket", "_count", "_sum"]
        .iter()
        .find_map(|s| name.strip_suffix(s))?;
    if name.ends_with("_bucket") && labels.get("le").is_none() {
        return None;
    }
    let pairs = labels.iter().filter_map(|l| match &*l.name {
        "le" => None,
        "__name__" => Some(("__name__", base)),
        n => Some((n, &*l.value)),
    });
    Labels::from_pairs(pairs).ok()
}

struct Selectors(Vec<VectorSelector>);

impl ExprVisitor for Selectors {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
        match expr {
            Expr::VectorSelector(vs) => self.0.push(vs.clone()),
            Expr::MatrixSelector(ms) => self.0.push(ms.vs.clone()),
            _ => {}
        }
        Ok(true)
    }
}

fn selects(vs: &VectorSelector, labels: &Labels) -> bool {
    let value = |name: &str| labels.get(name).unwrap_or("");
    if vs.name.as_ref().is_some_and(|n| value("__name__") != n) {
        return false;
    }
    let all = |ms: &[Matcher]| ms.iter().all(|m| m.is_match(value(&m.name)));
    if !all(&vs.matchers.matchers) {
        return false;
    }
    vs.matchers.or_matchers.is_empty() || vs.matchers.or_matchers.iter().any(|g| all(g))
}
