//! Cardinality statistics over a postings index: what `/api/v1/status/tsdb`
//! and `ember tsdb analyze` report.

use serde::Serialize;

use super::index::Postings;

/// A name and a count, as Prometheus's status API lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NameValue {
    pub name: String,
    pub value: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cardinality {
    pub num_label_pairs: u64,
    pub series_count_by_metric_name: Vec<NameValue>,
    pub label_value_count_by_label_name: Vec<NameValue>,
    pub memory_in_bytes_by_label_name: Vec<NameValue>,
    pub series_count_by_label_value_pair: Vec<NameValue>,
}

fn top(mut v: Vec<NameValue>, limit: usize) -> Vec<NameValue> {
    v.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.name.cmp(&b.name)));
    v.truncate(limit);
    v
}

pub fn cardinality(postings: &Postings, limit: usize) -> Cardinality {
    let mut by_metric = Vec::new();
    let mut values_by_name = Vec::new();
    let mut bytes_by_name = Vec::new();
    let mut by_pair = Vec::new();
    let mut pairs = 0u64;
    for name in postings.label_names() {
        let counts = postings.value_counts(&name);
        pairs += counts.len() as u64;
        values_by_name.push(NameValue {
            name: name.clone(),
            value: counts.len() as u64,
        });
        bytes_by_name.push(NameValue {
            name: name.clone(),
            value: counts.iter().map(|(v, _)| v.len() as u64).sum(),
        });
        for (value, n) in counts {
            if name == crate::model::labels::METRIC_NAME {
                by_metric.push(NameValue {
                    name: value.clone(),
                    value: n,
                });
            }
            by_pair.push(NameValue {
                name: format!("{name}={value}"),
                value: n,
            });
        }
    }
    Cardinality {
        num_label_pairs: pairs,
        series_count_by_metric_name: top(by_metric, limit),
        label_value_count_by_label_name: top(values_by_name, limit),
        memory_in_bytes_by_label_name: top(bytes_by_name, limit),
        series_count_by_label_value_pair: top(by_pair, limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    #[test]
    fn counts_and_orders() {
        let mut p = Postings::default();
        for (i, (name, job)) in [("up", "a"), ("up", "b"), ("x", "a")].iter().enumerate() {
            p.add(
                i as u32,
                &Labels::from_pairs([("__name__", *name), ("job", *job)]).unwrap(),
            );
        }
        let c = cardinality(&p, 10);
        assert_eq!(c.num_label_pairs, 4);
        assert_eq!(
            c.series_count_by_metric_name[0],
            NameValue {
                name: "up".into(),
                value: 2
            }
        );
        assert_eq!(
            c.series_count_by_label_value_pair[0],
            NameValue {
                name: "__name__=up".into(),
                value: 2
            }
        );
        assert_eq!(c.label_value_count_by_label_name.len(), 2);
        assert_eq!(cardinality(&p, 1).series_count_by_label_value_pair.len(), 1);
    }
}
