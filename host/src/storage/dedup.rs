//! Series from a global view: external labels added per source, and
//! replicas merged into one series (as Thanos's querier does with
//! `--query.replica-label`).

use std::collections::BTreeMap;

use super::head::SeriesSamples;
use crate::model::{Labels, Sample};

/// Adds `external` labels a series does not already have (a series' own
/// label wins, as with external labels in Prometheus).
pub fn add_external_labels(series: &mut [SeriesSamples], external: &Labels) {
    if external.is_empty() {
        return;
    }
    for s in series {
        s.labels = with_external_labels(&s.labels, external);
        s.id = s.labels.stable_hash();
    }
}

/// `labels` plus the external labels it does not have itself.
pub fn with_external_labels(labels: &Labels, external: &Labels) -> Labels {
    if external.is_empty() {
        return labels.clone();
    }
    let mut pairs: Vec<(&str, &str)> = labels.iter().map(|l| (&*l.name, &*l.value)).collect();
    for l in external.iter() {
        if labels.get(&l.name).is_none() {
            pairs.push((&*l.name, &*l.value));
        }
    }
    Labels::from_pairs(pairs).unwrap_or_else(|_| labels.clone())
}

/// `labels` without the replica labels.
pub fn without_labels(labels: &Labels, replica_labels: &[String]) -> Labels {
    if replica_labels.is_empty() {
        return labels.clone();
    }
    let kept = labels
        .iter()
        .filter(|l| !replica_labels.iter().any(|r| *r == *l.name))
        .map(|l| (&*l.name, &*l.value));
    Labels::from_pairs(kept).unwrap_or_else(|_| labels.clone())
}

/// Merges series that differ only in `replica_labels` into one series
/// without those labels. Input and output are sorted by labels.
pub fn deduplicate(series: Vec<SeriesSamples>, replica_labels: &[String]) -> Vec<SeriesSamples> {
    if replica_labels.is_empty() {
        return series;
    }
    let mut groups: BTreeMap<Labels, Vec<Vec<Sample>>> = BTreeMap::new();
    // Native histograms are not merged across gaps: the replica with the
    // most histogram samples is kept whole.
    let mut histograms: BTreeMap<Labels, Vec<crate::model::HistogramSample>> = BTreeMap::new();
    for s in series {
        let labels = without_labels(&s.labels, replica_labels);
        let kept_h = histograms.entry(labels.clone()).or_default();
        if s.histograms.len() > kept_h.len() {
            *kept_h = s.histograms;
        }
        groups.entry(labels).or_default().push(s.samples);
    }
    groups
        .into_iter()
        .map(|(labels, replicas)| SeriesSamples {
            id: labels.stable_hash(),
            histograms: histograms.remove(&labels).unwrap_or_default(),
            labels,
            samples: merge_replicas(replicas),
        })
        .collect()
}

/// The typical gap between samples of one replica: twice its median
/// interval. A longer gap means the replica missed scrapes.
fn gap_threshold(samples: &[Sample]) -> i64 {
    let mut deltas: Vec<i64> = samples.windows(2).map(|w| w[1].t - w[0].t).collect();
    if deltas.is_empty() {
        return i64::MAX;
    }
    let mid = deltas.len() / 2;
    let (_, median, _) = deltas.select_nth_unstable(mid);
    (*median).max(1).saturating_mul(2)
}

/// Follows one replica and moves to another only where the followed one has
/// a gap, so two replicas scraping at different offsets are never
/// interleaved into one jittery series.
fn merge_replicas(mut replicas: Vec<Vec<Sample>>) -> Vec<Sample> {
    replicas.retain(|r| !r.is_empty());
    if replicas.len() <= 1 {
        return replicas.pop().unwrap_or_default();
    }
    let gaps: Vec<i64> = replicas.iter().map(|r| gap_threshold(r)).collect();
    let mut pos = vec![0usize; replicas.len()];
    let mut current = (0..replicas.len())
        .min_by_key(|&i| replicas[i][0].t)
        .unwrap_or(0);
    let mut out: Vec<Sample> = Vec::with_capacity(replicas[current].len());
    loop {
        let last = out.last().map(|s| s.t);
        // The first sample of replica `i` after what was emitted.
        let next_of = |i: usize, pos: &[usize]| -> Option<(usize, Sample)> {
            let r = &replicas[i];
            let mut p = pos[i];
            if let Some(last) = last {
                p += r[p..].partition_point(|s| s.t <= last);
            }
            r.get(p).map(|s| (p, *s))
        };
        let candidate = next_of(current, &pos);
        let too_far = match (candidate, last) {
            (None, _) => true,
            (Some((_, s)), Some(last)) => s.t - last > gaps[current],
            (Some(_), None) => false,
        };
        if too_far {
            // Another replica that fills the gap (or continues after the end).
            let bound = candidate.map_or(i64::MAX, |(_, s)| s.t);
            let other = (0..replicas.len())
                .filter(|&i| i != current)
                .filter_map(|i| next_of(i, &pos).map(|(p, s)| (i, p, s)))
                .filter(|(_, _, s)| s.t < bound)
                .min_by_key(|(_, _, s)| s.t);
            if let Some((i, p, s)) = other {
                current = i;
                pos[i] = p + 1;
                out.push(s);
                continue;
            }
        }
        match candidate {
            Some((p, s)) => {
                pos[current] = p + 1;
                out.push(s);
            }
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(ts: &[i64], v: f64) -> Vec<Sample> {
        ts.iter().map(|&t| Sample { t, v }).collect()
    }

    fn series(labels: &[(&str, &str)], s: Vec<Sample>) -> SeriesSamples {
        let labels = Labels::from_pairs(labels.iter().copied()).unwrap();
        SeriesSamples {
            id: labels.stable_hash(),
            labels,
            samples: s,
            histograms: Vec::new(),
        }
    }

    #[test]
    fn replicas_merge_into_one_series_filling_gaps() {
        // Replica a scrapes at 0,10,20,...; b at 5,15,25,... and a misses 40..60.
        let a = samples(&[0, 10, 20, 30, 70, 80], 1.0);
        let b = samples(&[5, 15, 25, 35, 45, 55, 65, 75], 2.0);
        let out = deduplicate(
            vec![
                series(&[("__name__", "up"), ("replica", "a")], a),
                series(&[("__name__", "up"), ("replica", "b")], b),
                series(
                    &[("__name__", "up"), ("replica", "a"), ("x", "1")],
                    samples(&[1], 3.0),
                ),
            ],
            &["replica".to_owned()],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].labels.to_string(), "up{}");
        let ts: Vec<i64> = out[0].samples.iter().map(|s| s.t).collect();
        // a until its gap, b through the gap and on (now followed), a after b ends.
        assert_eq!(ts, [0, 10, 20, 30, 35, 45, 55, 65, 75, 80]);
        assert_eq!(out[1].samples.len(), 1);
    }

    #[test]
    fn external_labels_do_not_override_own() {
        let mut s = vec![series(
            &[("__name__", "up"), ("site", "own")],
            samples(&[1], 1.0),
        )];
        add_external_labels(
            &mut s,
            &Labels::from_pairs([("site", "ext"), ("replica", "r1")]).unwrap(),
        );
        assert_eq!(s[0].labels.to_string(), r#"up{replica="r1", site="own"}"#);
    }
}
