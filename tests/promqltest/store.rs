//! The test environment of one script section (between `clear`s): a fresh
//! Ember storage in a temporary directory and an engine over it.
//!
//! Some loaded data cannot be stored: start timestamps (`@st` lines), and the native
//! histograms with custom buckets that `load_with_nhcb` derives. Those series
//! are remembered, and an eval whose query selects any of them is reported
//! as failing for that reason instead of being run, so a missing histogram
//! can never make an eval pass by accident.

use std::sync::Arc;

use ember::model::Labels;
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
const NHCB: &str = "native histograms with custom buckets (load_with_nhcb)";

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
        for (labels, s) in defs {
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
            if let Some(h) = nhcb_series(&labels).filter(|_| load.with_nhcb)
                && !self.unstored.iter().any(|(l, _)| *l == h)
            {
                self.unstored.push((h, NHCB));
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
