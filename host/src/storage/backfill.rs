//! `ember tsdb create-blocks-from openmetrics`: turns an OpenMetrics file
//! into blocks, like `promtool tsdb create-blocks-from openmetrics`, so the
//! same file can be loaded into Ember and into Prometheus.
//!
//! The file is read in chunks of whole lines; every sample must carry a
//! timestamp. Samples are held in memory per series (16 bytes each) and then
//! written as one block per `block_range` window. Unlike promtool, which
//! re-reads the file once per window, this reads it once; memory grows with
//! the file.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::block::{self, BlockCompaction, BlockMeta};
use super::head::SeriesSamples;
use crate::model::Sample;
use crate::model::exposition::{Entry, Format, Parser};

const CHUNK: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Block(#[from] block::BlockError),
    #[error("cannot create output directory {}: {source}", path.display())]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub fn openmetrics_to_blocks(
    input: &Path,
    output: &Path,
    block_range_ms: i64,
) -> Result<Vec<BlockMeta>, BackfillError> {
    let parse_err = |message: String| BackfillError::Parse {
        path: input.to_owned(),
        message,
    };
    let mut file = std::fs::File::open(input).map_err(|source| BackfillError::Read {
        path: input.to_owned(),
        source,
    })?;
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut series: Vec<SeriesSamples> = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK * 2);
    let mut line = 1usize;
    let mut eof_seen = false;
    let mut at_end = false;
    while !at_end {
        let mut chunk = vec![0u8; CHUNK];
        let n = file
            .read(&mut chunk)
            .map_err(|source| BackfillError::Read {
                path: input.to_owned(),
                source,
            })?;
        at_end = n == 0;
        buf.extend_from_slice(&chunk[..n]);
        // Parse up to the last complete line; keep the rest for the next round.
        let cut = if at_end {
            buf.len()
        } else {
            buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
        };
        if cut == 0 {
            continue;
        }
        let text = std::str::from_utf8(&buf[..cut])
            .map_err(|e| parse_err(format!("invalid UTF-8 near line {line}: {e}")))?;
        if eof_seen && !text.trim().is_empty() {
            return Err(parse_err("content after \"# EOF\"".into()));
        }
        let mut parser = Parser::chunk(text, Format::OpenMetrics, line);
        for entry in parser.by_ref() {
            let entry = entry.map_err(|e| parse_err(e.to_string()))?;
            let Entry::Sample(s) = entry else { continue };
            let t = s.timestamp_ms.ok_or_else(|| {
                parse_err(format!(
                    "expected a timestamp for series {}, got none",
                    s.series
                ))
            })?;
            let i = match index.get(s.series) {
                Some(&i) => i,
                None => {
                    let labels = s
                        .labels()
                        .map_err(|e| parse_err(format!("series {}: {e}", s.series)))?;
                    series.push(SeriesSamples {
                        id: labels.stable_hash(),
                        labels,
                        samples: Vec::new(),
                        histograms: Vec::new(),
                    });
                    index.insert(s.series.to_owned(), series.len() - 1);
                    series.len() - 1
                }
            };
            series[i].samples.push(Sample { t, v: s.value });
        }
        eof_seen |= parser.finished();
        line = parser.line() + 1;
        buf.drain(..cut);
    }
    if !eof_seen {
        return Err(parse_err(
            "unexpected end of input: OpenMetrics requires a final \"# EOF\" line".into(),
        ));
    }
    if series.is_empty() {
        return Ok(Vec::new());
    }
    // Same label set written differently ("a{x=\"1\",y=\"2\"}" vs "a{y=\"2\",x=\"1\"}") is one series.
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut merged: Vec<SeriesSamples> = Vec::with_capacity(series.len());
    for s in series {
        match merged.last_mut() {
            Some(last) if last.labels == s.labels => last.samples.extend(s.samples),
            _ => merged.push(s),
        }
    }
    let mut ids = std::collections::HashSet::new();
    for s in &mut merged {
        s.samples.sort_by_key(|x| x.t);
        if let Some(w) = s
            .samples
            .windows(2)
            .find(|w| w[0].t == w[1].t && w[0].v.to_bits() != w[1].v.to_bits())
        {
            return Err(parse_err(format!(
                "duplicate sample for timestamp {} in series {}",
                w[0].t, s.labels
            )));
        }
        s.samples.dedup_by_key(|x| x.t);
        // Hash collisions get the next free id, as in the head.
        while !ids.insert(s.id) {
            s.id = s.id.wrapping_add(1);
        }
    }
    let mint = merged
        .iter()
        .filter_map(|s| s.samples.first())
        .map(|x| x.t)
        .min()
        .unwrap_or(0);
    let maxt = merged
        .iter()
        .filter_map(|s| s.samples.last())
        .map(|x| x.t)
        .max()
        .unwrap_or(0);
    std::fs::create_dir_all(output).map_err(|source| BackfillError::Output {
        path: output.to_owned(),
        source,
    })?;
    let mut metas = Vec::new();
    let mut start = mint.div_euclid(block_range_ms) * block_range_ms;
    while start <= maxt {
        let end = start + block_range_ms;
        if merged
            .iter()
            .any(|s| s.samples.iter().any(|x| x.t >= start && x.t < end))
        {
            metas.push(block::write_block(
                output,
                &merged,
                start,
                end,
                BlockCompaction {
                    level: 1,
                    sources: vec![],
                },
            )?);
        }
        start = end;
    }
    Ok(metas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::block::Block;

    #[test]
    fn file_to_blocks() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in.om");
        let mut text = String::from("# HELP m A metric.\n# TYPE m gauge\n");
        for i in 0..100 {
            // Two hours and a half at 90s.
            text.push_str(&format!("m{{a=\"1\"}} {i} {}.500\n", i * 90));
            text.push_str(&format!("m{{a=\"2\"}} {} {}\n", i * 2, i * 90));
        }
        text.push_str("# EOF\n");
        std::fs::write(&input, text).unwrap();
        let out = tmp.path().join("out");
        let metas = openmetrics_to_blocks(&input, &out, 3_600_000).unwrap();
        assert_eq!(metas.len(), 3);
        assert_eq!(metas.iter().map(|m| m.stats.num_samples).sum::<u64>(), 200);
        let b = Block::open(&out.join(&metas[0].ulid)).unwrap();
        let got = b.read_all().unwrap();
        assert_eq!(got[0].samples[1], Sample { t: 90_500, v: 1.0 });
    }

    #[test]
    fn errors_name_the_line() {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in.om");
        std::fs::write(&input, "m 1 1\nm{ 2 2\n# EOF\n").unwrap();
        let err = openmetrics_to_blocks(&input, &tmp.path().join("o"), 7_200_000).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        std::fs::write(&input, "m 1\n# EOF\n").unwrap();
        let err = openmetrics_to_blocks(&input, &tmp.path().join("o"), 7_200_000).unwrap_err();
        assert!(err.to_string().contains("expected a timestamp"), "{err}");
        std::fs::write(&input, "m 1 1\n").unwrap();
        let err = openmetrics_to_blocks(&input, &tmp.path().join("o"), 7_200_000).unwrap_err();
        assert!(err.to_string().contains("# EOF"), "{err}");
    }
}
