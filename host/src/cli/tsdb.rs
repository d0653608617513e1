//! `ember tsdb list` and `ember tsdb analyze`: read-only views of a data
//! directory, the counterparts of `promtool tsdb list` and `analyze`.

use std::path::Path;
use std::process::ExitCode;

use crate::storage::block::{Block, META_FILE};

fn open_blocks(dir: &Path) -> Result<Vec<Block>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut blocks = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.join(META_FILE).is_file() && !name.ends_with(".tmp") {
            blocks.push(Block::open(&path).map_err(|e| e.to_string())?);
        }
    }
    blocks.sort_by_key(|b| b.meta.min_time);
    Ok(blocks)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

fn human_time(ms: i64) -> String {
    let (y, m, d, h, mi, sec) = crate::telemetry::time::utc_parts(ms.div_euclid(1000));
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{sec:02} UTC")
}

fn bytes_per_sample(b: &Block) -> f64 {
    if b.meta.stats.num_samples == 0 {
        0.0
    } else {
        b.meta.stats.num_bytes as f64 / b.meta.stats.num_samples as f64
    }
}

pub fn create_blocks_from_openmetrics(
    input: &Path,
    output: &Path,
    block_duration: crate::config::PromDuration,
    human: bool,
    quiet: bool,
) -> ExitCode {
    let range = block_duration.as_millis().max(1) as i64;
    match crate::storage::backfill::openmetrics_to_blocks(input, output, range) {
        Ok(metas) => {
            if !quiet {
                let ulids: Vec<&str> = metas.iter().map(|m| m.ulid.as_str()).collect();
                match open_blocks(output) {
                    Ok(blocks) => print_blocks(
                        blocks
                            .iter()
                            .filter(|b| ulids.contains(&b.meta.ulid.as_str())),
                        human,
                    ),
                    Err(e) => eprintln!("error: {e}"),
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn list(dir: &Path, human: bool) -> ExitCode {
    let blocks = match open_blocks(dir) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_blocks(blocks.iter(), human);
    ExitCode::SUCCESS
}

fn print_blocks<'a>(blocks: impl Iterator<Item = &'a Block>, human: bool) {
    println!(
        "BLOCK ULID\tMIN TIME\tMAX TIME\tDURATION\tNUM SAMPLES\tNUM SERIES\tSIZE\tBYTES/SAMPLE\tLEVEL"
    );
    for b in blocks {
        let m = &b.meta;
        let duration =
            crate::config::PromDuration::from_millis((m.max_time - m.min_time).max(0) as u64);
        let (min, max, size) = if human {
            (
                human_time(m.min_time),
                human_time(m.max_time),
                human_bytes(m.stats.num_bytes),
            )
        } else {
            (
                m.min_time.to_string(),
                m.max_time.to_string(),
                m.stats.num_bytes.to_string(),
            )
        };
        println!(
            "{}\t{min}\t{max}\t{duration}\t{}\t{}\t{size}\t{:.3}\t{}",
            m.ulid,
            m.stats.num_samples,
            m.stats.num_series,
            bytes_per_sample(b),
            m.compaction.level
        );
    }
}

pub fn analyze(dir: &Path, ulid: Option<&str>, limit: usize) -> ExitCode {
    let blocks = match open_blocks(dir) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let block = match ulid {
        Some(id) => blocks.iter().find(|b| b.meta.ulid == id),
        None => blocks.last(),
    };
    let Some(block) = block else {
        eprintln!(
            "error: {} in {}",
            ulid.map_or("no blocks".to_owned(), |id| format!("no block {id}")),
            dir.display()
        );
        return ExitCode::FAILURE;
    };
    let m = &block.meta;
    let c = block.cardinality(limit);
    println!("Block ID: {}", m.ulid);
    println!(
        "Duration: {}",
        crate::config::PromDuration::from_millis((m.max_time - m.min_time).max(0) as u64)
    );
    println!("Series: {}", m.stats.num_series);
    println!("Samples: {}", m.stats.num_samples);
    println!(
        "Size: {} ({:.3} bytes per sample)",
        human_bytes(m.stats.num_bytes),
        bytes_per_sample(block)
    );
    println!("Label names: {}", block.label_names().len());
    println!("Label pairs: {}", c.num_label_pairs);
    let section = |title: &str, rows: &[crate::storage::stats::NameValue]| {
        println!("\n{title}:");
        for r in rows {
            println!("{}\t{}", r.value, r.name);
        }
    };
    section(
        "Highest cardinality metric names",
        &c.series_count_by_metric_name,
    );
    section(
        "Highest cardinality labels",
        &c.label_value_count_by_label_name,
    );
    section(
        "Most common label pairs",
        &c.series_count_by_label_value_pair,
    );
    section(
        "Label names with highest cumulative label value length",
        &c.memory_in_bytes_by_label_name,
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(human_time(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(1536), "1.5KiB");
    }
}
