//! Native evaluation of PromQL operators: the code behind each plan node.
//! Everything here works on [`SeriesData`], one series' points sorted by
//! time, which is what a batch of the plan carries.

pub mod aggregate;
pub mod binary;
pub mod functions;
pub mod grid;
pub mod kahan;
pub mod native;
pub mod range_fn;
pub mod selector;

use crate::model::Labels;
use crate::promql::value::{HPoint, Point};

pub use grid::Grid;

/// One series flowing between operators: its labels, whether its metric
/// name is to be dropped when the query finishes (Prometheus 3's delayed
/// `__name__` removal), and its points sorted by time.
#[derive(Clone, Debug)]
pub struct SeriesData {
    pub labels: Labels,
    pub drop_name: bool,
    pub points: Vec<Point>,
    /// Native histogram points, sorted by time. Operators that know no
    /// histograms leave them out of their output.
    pub hists: Vec<HPoint>,
}

impl SeriesData {
    pub fn new(labels: Labels, points: Vec<Point>) -> SeriesData {
        SeriesData {
            labels,
            drop_name: false,
            points,
            hists: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.hists.is_empty()
    }
}

/// An error while evaluating: shown to the user as an `execution` error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// Annotations collected while evaluating (`PromQL warning: ...`).
#[derive(Debug, Default)]
pub struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    pub fn warn(&mut self, msg: String) {
        let msg = format!("PromQL warning: {msg}");
        if !self.warnings.contains(&msg) {
            self.warnings.push(msg);
        }
    }

    /// Adds another operator's annotations, each ending in `position`.
    pub fn merge(&mut self, other: Annotations, position: &str) {
        for w in other.warnings {
            let w = format!("{w}{position}");
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        for i in other.infos {
            let i = format!("{i}{position}");
            if !self.infos.contains(&i) {
                self.infos.push(i);
            }
        }
    }

    pub fn info(&mut self, msg: String) {
        let msg = format!("PromQL info: {msg}");
        if !self.infos.contains(&msg) {
            self.infos.push(msg);
        }
    }
}

/// Labels without the metric name, and without the `__type__` and
/// `__unit__` labels that belong to it (Prometheus's type-and-unit labels).
pub fn drop_metric_name(labels: &Labels) -> Labels {
    const NAME_LABELS: [&str; 3] = ["__name__", "__type__", "__unit__"];
    if !NAME_LABELS.iter().any(|n| labels.get(n).is_some()) {
        return labels.clone();
    }
    Labels::from_pairs(
        labels
            .iter()
            .filter(|l| !NAME_LABELS.contains(&&*l.name))
            .map(|l| (l.name.clone(), l.value.clone())),
    )
    .unwrap_or_default()
}

/// Labels with `name` set to `value` (removed when `value` is empty).
pub fn with_label(labels: &Labels, name: &str, value: &str) -> Labels {
    let pairs = labels
        .iter()
        .filter(|l| &*l.name != name)
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .chain(std::iter::once((name.to_owned(), value.to_owned())));
    Labels::from_pairs(pairs).unwrap_or_default()
}

/// Formats labels as `{a="b", c="d"}` the way Prometheus's errors show them.
pub fn labels_string(labels: &Labels) -> String {
    let mut out = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&l.name);
        out.push('=');
        out.push_str(&format!("{:?}", &*l.value));
    }
    out.push('}');
    out
}
