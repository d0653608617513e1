//! Persisted blocks: immutable directories of plain Parquet that any Parquet
//! reader can open.
//!
//! ```text
//! <data>/<ULID>/meta.json        id, time range, counts, compaction level and sources
//! <data>/<ULID>/series.parquet   one row per series: id, metric name, labels, time range
//! <data>/<ULID>/samples.parquet  one row per sample, sorted by (series_id, timestamp)
//! <data>/<ULID>/histograms.parquet  native histogram samples, same order; only
//!                                when the block has any (older blocks never do)
//! ```
//!
//! The schema and the reasons for each encoding are in ARCHITECTURE.md.
//! A block is written to `<ULID>.tmp` and renamed into place, so a crash
//! never leaves a half-written block that looks complete.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, MapBuilder, RecordBatch, StringBuilder,
    TimestampMillisecondArray, UInt64Array,
};
use arrow::datatypes::{
    DataType, Field, Float64Type, Schema, TimeUnit, TimestampMillisecondType, UInt64Type,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use super::head::SeriesSamples;
use super::index::Postings;
use crate::model::{FloatHistogram, HistogramSample, Labels, Matcher, Sample};

pub const META_FILE: &str = "meta.json";
pub const SERIES_FILE: &str = "series.parquet";
pub const SAMPLES_FILE: &str = "samples.parquet";
pub const HISTOGRAMS_FILE: &str = "histograms.parquet";
pub const FORMAT: &str = "ember-parquet-v1";

/// Rows per row group in `samples.parquet`: row groups are the unit of
/// pruning by series id, pages (1 MiB) refine it further.
const SAMPLES_ROW_GROUP_ROWS: usize = 1 << 20;
const SAMPLES_PAGE_ROWS: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("block {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("block {}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("block {}: {source}", path.display())]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("block {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    pub num_samples: u64,
    pub num_series: u64,
    #[serde(default)]
    pub num_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCompaction {
    pub level: u32,
    pub sources: Vec<String>,
}

/// `meta.json`, shaped like Prometheus's so its tools and habits carry over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    pub ulid: String,
    /// Inclusive, milliseconds.
    pub min_time: i64,
    /// Exclusive, milliseconds.
    pub max_time: i64,
    pub stats: BlockStats,
    pub compaction: BlockCompaction,
    pub version: u32,
    pub format: String,
    /// Added when the block is uploaded to object storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped: Option<ShippedMeta>,
}

/// What an uploaded block's `meta.json` adds: who uploaded it and which
/// files make it complete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShippedMeta {
    /// The uploading server's external labels; in a global view they are
    /// added to every series of the block.
    pub labels: std::collections::BTreeMap<String, String>,
    pub files: Vec<ShippedFile>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShippedFile {
    pub rel_path: String,
    pub size_bytes: u64,
}

fn samples_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("series_id", DataType::UInt64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("value", DataType::Float64, false),
    ]))
}

fn samples_properties() -> WriterProperties {
    let zstd = Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default());
    WriterProperties::builder()
        .set_compression(zstd)
        .set_max_row_group_row_count(Some(SAMPLES_ROW_GROUP_ROWS))
        // Pages of at most 16k rows: with the page index, a query for a few
        // series reads a few pages instead of whole 1M-row row groups.
        .set_data_page_row_count_limit(SAMPLES_PAGE_ROWS)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_dictionary_enabled(false)
        // Long runs of one id: a dictionary with run-length-encoded indices
        // stores a run in a few bytes. Not DELTA_BINARY_PACKED: hash-derived
        // ids jump across the whole u64 range, and one jump in a miniblock
        // widens all its 32 deltas to 64 bits.
        .set_column_dictionary_enabled(ColumnPath::from("series_id"), true)
        // Timestamps at a fixed interval: deltas are (nearly) constant, which
        // delta-binary-packing stores in ~0 bits per value.
        .set_column_encoding(ColumnPath::from("timestamp"), Encoding::DELTA_BINARY_PACKED)
        // Floats: splitting the bytes into streams groups the slowly changing
        // sign/exponent/high-mantissa bytes, which zstd then compresses well.
        .set_column_encoding(ColumnPath::from("value"), Encoding::BYTE_STREAM_SPLIT)
        .set_sorting_columns(Some(vec![
            SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: false,
            },
            SortingColumn {
                column_idx: 1,
                descending: false,
                nulls_first: false,
            },
        ]))
        .build()
}

fn series_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        .build()
}

/// Writes one block from series (any order) restricted to `[min_time, max_time)`.
pub fn write_block(
    data_dir: &Path,
    series: &[SeriesSamples],
    min_time: i64,
    max_time: i64,
    compaction: BlockCompaction,
) -> Result<BlockMeta, BlockError> {
    let ulid = ulid::Ulid::new().to_string();
    let tmp = data_dir.join(format!("{ulid}.tmp"));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BlockError::Io { path, source }
    };
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;

    let mut order: Vec<&SeriesSamples> = series
        .iter()
        .filter(|s| {
            s.samples.iter().any(|x| x.t >= min_time && x.t < max_time)
                || s.histograms
                    .iter()
                    .any(|x| x.t >= min_time && x.t < max_time)
        })
        .collect();
    order.sort_by_key(|s| s.id);
    if let Some(pair) = order.windows(2).find(|w| w[0].id == w[1].id) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(BlockError::Invalid {
            path: tmp,
            message: format!(
                "two series share id {:#x}: {} and {}",
                pair[0].id, pair[0].labels, pair[1].labels
            ),
        });
    }

    // series.parquet
    let mut ids = Vec::with_capacity(order.len());
    let mut names = StringBuilder::new();
    let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    let mut mins = Vec::with_capacity(order.len());
    let mut maxs = Vec::with_capacity(order.len());
    let mut counts = Vec::with_capacity(order.len());
    let mut num_samples = 0u64;
    for s in &order {
        let in_range: Vec<&Sample> = s
            .samples
            .iter()
            .filter(|x| x.t >= min_time && x.t < max_time)
            .collect();
        ids.push(s.id);
        names.append_option(s.labels.metric_name());
        for l in s.labels.iter() {
            labels.keys().append_value(&*l.name);
            labels.values().append_value(&*l.value);
        }
        labels.append(true).map_err(|source| BlockError::Arrow {
            path: tmp.clone(),
            source,
        })?;
        let hists: Vec<i64> = s
            .histograms
            .iter()
            .map(|x| x.t)
            .filter(|t| *t >= min_time && *t < max_time)
            .collect();
        let first = in_range
            .first()
            .map(|x| x.t)
            .into_iter()
            .chain(hists.first().copied())
            .min();
        let last = in_range
            .last()
            .map(|x| x.t)
            .into_iter()
            .chain(hists.last().copied())
            .max();
        mins.push(first.unwrap_or(0));
        maxs.push(last.unwrap_or(0));
        counts.push((in_range.len() + hists.len()) as u64);
        num_samples += (in_range.len() + hists.len()) as u64;
    }
    let labels: ArrayRef = Arc::new(labels.finish());
    let series_schema = Arc::new(Schema::new(vec![
        Field::new("series_id", DataType::UInt64, false),
        Field::new("metric_name", DataType::Utf8, true),
        Field::new("labels", labels.data_type().clone(), false),
        Field::new(
            "min_time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new(
            "max_time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("num_samples", DataType::UInt64, false),
    ]));
    let series_batch = RecordBatch::try_new(
        series_schema.clone(),
        vec![
            Arc::new(UInt64Array::from(ids)),
            Arc::new(names.finish()),
            labels,
            Arc::new(TimestampMillisecondArray::from(mins).with_timezone("UTC")),
            Arc::new(TimestampMillisecondArray::from(maxs).with_timezone("UTC")),
            Arc::new(UInt64Array::from(counts)),
        ],
    )
    .map_err(|source| BlockError::Arrow {
        path: tmp.clone(),
        source,
    })?;
    write_parquet(
        &tmp.join(SERIES_FILE),
        series_schema,
        series_properties(),
        [series_batch],
    )?;

    // samples.parquet, streamed in bounded batches.
    let schema = samples_schema();
    let path = tmp.join(SAMPLES_FILE);
    let file = File::create(&path).map_err(io(&path))?;
    let pq = |source| BlockError::Parquet {
        path: path.clone(),
        source,
    };
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(samples_properties())).map_err(pq)?;
    let (mut sid, mut ts, mut vs) = (Vec::new(), Vec::new(), Vec::new());
    for s in &order {
        for x in s
            .samples
            .iter()
            .filter(|x| x.t >= min_time && x.t < max_time)
        {
            sid.push(s.id);
            ts.push(x.t);
            vs.push(x.v);
        }
        if sid.len() >= 64 * 1024 {
            let batch = samples_batch(&schema, &mut sid, &mut ts, &mut vs, &path)?;
            writer.write(&batch).map_err(pq)?;
        }
    }
    if !sid.is_empty() {
        let batch = samples_batch(&schema, &mut sid, &mut ts, &mut vs, &path)?;
        writer.write(&batch).map_err(pq)?;
    }
    let file = writer.into_inner().map_err(pq)?;
    file.sync_all().map_err(io(&path))?;
    write_histograms(&tmp, &order, min_time, max_time)?;

    let num_bytes = [SAMPLES_FILE, SERIES_FILE, HISTOGRAMS_FILE]
        .iter()
        .map(|f| fs::metadata(tmp.join(f)).map(|m| m.len()).unwrap_or(0))
        .sum();
    let meta = BlockMeta {
        ulid: ulid.clone(),
        min_time,
        max_time,
        stats: BlockStats {
            num_samples,
            num_series: order.len() as u64,
            num_bytes,
        },
        compaction,
        version: 1,
        format: FORMAT.into(),
        shipped: None,
    };
    let meta_path = tmp.join(META_FILE);
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| BlockError::Invalid {
        path: meta_path.clone(),
        message: e.to_string(),
    })?;
    fs::write(&meta_path, json).map_err(io(&meta_path))?;
    File::open(&tmp)
        .and_then(|d| d.sync_all())
        .map_err(io(&tmp))?;
    let dest = data_dir.join(&ulid);
    fs::rename(&tmp, &dest).map_err(io(&dest))?;
    File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io(data_dir))?;
    Ok(meta)
}

/// The schema of `histograms.parquet`: count and sum as plain columns for
/// SQL and other readers, the whole histogram in `histogram` (the binary
/// form of [`FloatHistogram::encode`], documented in ARCHITECTURE.md).
pub fn histograms_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("series_id", DataType::UInt64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("count", DataType::Float64, false),
        Field::new("sum", DataType::Float64, false),
        Field::new("histogram", DataType::Binary, false),
    ]))
}

/// Writes `histograms.parquet` if any series has histogram samples in
/// `[min_time, max_time)`; `order` is sorted by series id.
fn write_histograms(
    dir: &Path,
    order: &[&SeriesSamples],
    min_time: i64,
    max_time: i64,
) -> Result<(), BlockError> {
    let rows: Vec<(u64, &HistogramSample)> = order
        .iter()
        .flat_map(|s| {
            s.histograms
                .iter()
                .filter(|x| x.t >= min_time && x.t < max_time)
                .map(|x| (s.id, x))
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let path = dir.join(HISTOGRAMS_FILE);
    let mut bin = arrow::array::BinaryBuilder::new();
    let mut buf = Vec::new();
    for (_, x) in &rows {
        buf.clear();
        x.h.encode(&mut buf);
        bin.append_value(&buf);
    }
    let schema = histograms_schema();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.1.t))
                    .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.1.h.count),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.1.h.sum),
            )),
            Arc::new(bin.finish()),
        ],
    )
    .map_err(|source| BlockError::Arrow {
        path: path.clone(),
        source,
    })?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    write_parquet(&path, schema, props, [batch])
}

/// Rows to read within the chosen row groups: only pages whose `series_id`
/// range holds a wanted id (sorted `ids`). `None` when the file has no page
/// index (then whole row groups are read).
fn page_selection(
    metadata: &parquet::file::metadata::ParquetMetaData,
    row_groups: &[usize],
    ids: &[u64],
) -> Option<parquet::arrow::arrow_reader::RowSelection> {
    use parquet::arrow::arrow_reader::RowSelector;
    use parquet::file::page_index::column_index::ColumnIndexMetaData;
    let column_index = metadata.column_index()?;
    let offset_index = metadata.offset_index()?;
    let mut selectors: Vec<RowSelector> = Vec::new();
    let mut push = |select: bool, rows: usize| {
        if rows == 0 {
            return;
        }
        match selectors.last_mut() {
            Some(last) if last.skip != select => last.row_count += rows,
            _ => selectors.push(if select {
                RowSelector::select(rows)
            } else {
                RowSelector::skip(rows)
            }),
        }
    };
    for &rg in row_groups {
        let rows = metadata.row_group(rg).num_rows() as usize;
        let ColumnIndexMetaData::INT64(index) = column_index.get(rg)?.first()? else {
            return None;
        };
        let pages = offset_index.get(rg)?.first()?.page_locations();
        for (p, page) in pages.iter().enumerate() {
            let start = page.first_row_index as usize;
            let end = pages
                .get(p + 1)
                .map_or(rows, |n| n.first_row_index as usize);
            let wanted = match (index.min_value(p), index.max_value(p)) {
                (Some(&lo), Some(&hi)) => {
                    let (lo, hi) = (lo as u64, hi as u64);
                    let first = ids.partition_point(|&id| id < lo);
                    first < ids.len() && ids[first] <= hi
                }
                _ => true,
            };
            push(wanted, end - start);
        }
    }
    Some(selectors.into())
}

fn samples_batch(
    schema: &Arc<Schema>,
    sid: &mut Vec<u64>,
    ts: &mut Vec<i64>,
    vs: &mut Vec<f64>,
    path: &Path,
) -> Result<RecordBatch, BlockError> {
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt64Array::from(std::mem::take(sid))),
            Arc::new(TimestampMillisecondArray::from(std::mem::take(ts)).with_timezone("UTC")),
            Arc::new(Float64Array::from(std::mem::take(vs))),
        ],
    )
    .map_err(|source| BlockError::Arrow {
        path: path.to_owned(),
        source,
    })
}

fn write_parquet(
    path: &Path,
    schema: Arc<Schema>,
    props: WriterProperties,
    batches: impl IntoIterator<Item = RecordBatch>,
) -> Result<(), BlockError> {
    let file = File::create(path).map_err(|source| BlockError::Io {
        path: path.to_owned(),
        source,
    })?;
    let pq = |source| BlockError::Parquet {
        path: path.to_owned(),
        source,
    };
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(pq)?;
    for b in batches {
        writer.write(&b).map_err(pq)?;
    }
    let file = writer.into_inner().map_err(pq)?;
    file.sync_all().map_err(|source| BlockError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The series table of a block: labels and time ranges, and the postings
/// index over them.
fn read_series_index<R: parquet::file::reader::ChunkReader + 'static>(
    file: R,
    path: &Path,
) -> Result<(Vec<BlockSeries>, Postings), BlockError> {
    let path = path.to_owned();
    let pq = |source| BlockError::Parquet {
        path: path.clone(),
        source,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(pq)?
        .build()
        .map_err(pq)?;
    let mut series = Vec::new();
    let mut postings = Postings::default();
    let invalid = |message: &str| BlockError::Invalid {
        path: path.clone(),
        message: message.to_owned(),
    };
    for batch in reader {
        let batch = batch.map_err(|source| BlockError::Arrow {
            path: path.clone(),
            source,
        })?;
        let ids = batch
            .column(0)
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| invalid("series_id is not uint64"))?;
        let maps = batch
            .column(2)
            .as_map_opt()
            .ok_or_else(|| invalid("labels is not a map"))?;
        let mins = batch
            .column(3)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| invalid("min_time"))?;
        let maxs = batch
            .column(4)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| invalid("max_time"))?;
        for row in 0..batch.num_rows() {
            let entries = maps.value(row);
            let keys = entries
                .column(0)
                .as_string_opt::<i32>()
                .ok_or_else(|| invalid("label names"))?;
            let values = entries
                .column(1)
                .as_string_opt::<i32>()
                .ok_or_else(|| invalid("label values"))?;
            let pairs = (0..keys.len()).map(|i| (keys.value(i), values.value(i)));
            let labels = Labels::from_pairs(pairs).map_err(|e| invalid(&e.to_string()))?;
            let idx = series.len() as u32;
            postings.add(idx, &labels);
            series.push(BlockSeries {
                id: ids.value(row),
                labels,
                min_time: mins.value(row),
                max_time: maxs.value(row),
            });
        }
    }
    Ok((series, postings))
}

struct BlockSeries {
    id: u64,
    labels: Labels,
    min_time: i64,
    max_time: i64,
}

/// Where a block's samples are read from.
enum SamplesSource {
    /// Held open so the block stays readable after compaction or retention
    /// deletes its directory while a query still holds this `Block`.
    Local(File),
    /// In object storage; the footer is read once and kept.
    Remote {
        file: super::bucket::remote_file::RemoteFile,
        metadata: std::sync::OnceLock<parquet::arrow::arrow_reader::ArrowReaderMetadata>,
    },
}

/// An opened block: its meta and series index in memory, samples read on demand.
pub struct Block {
    dir: PathBuf,
    samples: SamplesSource,
    /// Labels a global view adds to this block's series (a remote block's
    /// uploader's external labels); empty for local blocks.
    pub external_labels: Labels,
    /// `histograms.parquet`, for local blocks that have native histograms.
    histograms: Option<File>,
    pub meta: BlockMeta,
    series: Vec<BlockSeries>,
    postings: Postings,
    /// Sample rows decoded by reads, to see pruning work (tests, metrics).
    rows_scanned: std::sync::atomic::AtomicU64,
}

impl Block {
    pub fn open(dir: &Path) -> Result<Block, BlockError> {
        let meta_path = dir.join(META_FILE);
        let text = fs::read(&meta_path).map_err(|source| BlockError::Io {
            path: meta_path.clone(),
            source,
        })?;
        let meta: BlockMeta = serde_json::from_slice(&text).map_err(|e| BlockError::Invalid {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        if meta.format != FORMAT {
            return Err(BlockError::Invalid {
                path: meta_path,
                message: format!("unknown block format {:?}", meta.format),
            });
        }
        let path = dir.join(SERIES_FILE);
        let file = File::open(&path).map_err(|source| BlockError::Io {
            path: path.clone(),
            source,
        })?;
        let (series, postings) = read_series_index(file, &path)?;
        let samples_path = dir.join(SAMPLES_FILE);
        let samples = File::open(&samples_path).map_err(|source| BlockError::Io {
            path: samples_path,
            source,
        })?;
        let histograms_path = dir.join(HISTOGRAMS_FILE);
        let histograms = match File::open(&histograms_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(BlockError::Io {
                    path: histograms_path,
                    source,
                });
            }
        };
        Ok(Block {
            dir: dir.to_owned(),
            samples: SamplesSource::Local(samples),
            external_labels: Labels::default(),
            histograms,
            meta,
            series,
            postings,
            rows_scanned: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// A block in object storage, from its `meta.json`: the series table is
    /// fetched now and kept in memory as the index; samples are fetched
    /// on demand through the chunk cache.
    pub fn open_remote(
        bucket: &Arc<super::bucket::client::Bucket>,
        cache: &Arc<super::bucket::cache::ChunkCache>,
        meta: BlockMeta,
    ) -> Result<Block, super::bucket::client::BucketError> {
        use super::bucket::client::BucketError;
        let shown = PathBuf::from(format!("{}/{}", bucket.name(), meta.ulid));
        let invalid = |message: String| BucketError::Invalid {
            bucket: bucket.name().to_owned(),
            path: meta.ulid.clone(),
            message,
        };
        if meta.format != FORMAT {
            return Err(invalid(format!("unknown block format {:?}", meta.format)));
        }
        let size_of = |name: &str| {
            meta.shipped
                .as_ref()
                .and_then(|s| s.files.iter().find(|f| f.rel_path == name))
                .map(|f| f.size_bytes)
                .ok_or_else(|| invalid(format!("meta.json does not list {name}")))
        };
        let samples_size = size_of(SAMPLES_FILE)?;
        let series_bytes = bucket.get(&meta.ulid, SERIES_FILE)?;
        let (series, postings) = read_series_index(series_bytes, &shown.join(SERIES_FILE))
            .map_err(|e| invalid(e.to_string()))?;
        let external_labels = Labels::from_pairs(
            meta.shipped
                .as_ref()
                .map(|s| s.labels.clone())
                .unwrap_or_default(),
        )
        .map_err(|e| invalid(format!("external labels: {e}")))?;
        Ok(Block {
            dir: shown,
            samples: SamplesSource::Remote {
                file: super::bucket::remote_file::RemoteFile {
                    bucket: bucket.clone(),
                    cache: cache.clone(),
                    ulid: meta.ulid.clone(),
                    file: SAMPLES_FILE.to_owned(),
                    size: samples_size,
                },
                metadata: std::sync::OnceLock::new(),
            },
            external_labels,
            histograms: None,
            meta,
            series,
            postings,
            rows_scanned: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn is_remote(&self) -> bool {
        matches!(self.samples, SamplesSource::Remote { .. })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_time <= maxt && mint < self.meta.max_time
    }

    /// Series matching all matchers with samples in `[mint, maxt]`. Only the
    /// row groups whose series-id range contains a wanted series are read.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, BlockError> {
        if !self.overlaps(mint, maxt) {
            return Ok(Vec::new());
        }
        let wanted: Vec<&BlockSeries> = self
            .postings
            .select(matchers)
            .iter()
            .map(|i| &self.series[i as usize])
            .filter(|s| s.min_time <= maxt && mint <= s.max_time)
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<u64> = wanted.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        let id_set: HashSet<u64> = ids.iter().copied().collect();

        let path = self.dir.join(SAMPLES_FILE);
        let pq = |source| BlockError::Parquet {
            path: path.clone(),
            source,
        };
        let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional);
        let mut by_id = match &self.samples {
            SamplesSource::Local(held) => {
                // A fresh open file description (own offset) of the held file; this
                // works even after compaction or retention deleted the directory.
                use std::os::fd::AsRawFd;
                let fd_path = format!("/proc/self/fd/{}", held.as_raw_fd());
                let file = File::open(&fd_path).map_err(|source| BlockError::Io {
                    path: path.clone(),
                    source,
                })?;
                let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
                    .map_err(pq)?;
                self.read_samples(builder, &ids, &id_set, mint, maxt, &path)?
            }
            SamplesSource::Remote { file, metadata } => {
                let loaded = match metadata.get() {
                    Some(m) => m.clone(),
                    None => {
                        let m =
                            parquet::arrow::arrow_reader::ArrowReaderMetadata::load(file, options)
                                .map_err(pq)?;
                        let _ = metadata.set(m.clone());
                        m
                    }
                };
                let builder =
                    ParquetRecordBatchReaderBuilder::new_with_metadata(file.clone(), loaded);
                self.read_samples(builder, &ids, &id_set, mint, maxt, &path)?
            }
        };
        let mut hists = self.read_histograms(&id_set, mint, maxt)?;
        let mut out: Vec<SeriesSamples> = wanted
            .into_iter()
            .filter_map(|s| {
                let samples = by_id.remove(&s.id).unwrap_or_default();
                let histograms = hists.remove(&s.id).unwrap_or_default();
                (!samples.is_empty() || !histograms.is_empty()).then(|| SeriesSamples {
                    id: s.id,
                    labels: s.labels.clone(),
                    samples,
                    histograms,
                })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// Samples of the wanted series (`ids` sorted, also in `id_set`) in
    /// `[mint, maxt]`, reading only row groups and pages whose `series_id`
    /// statistics can hold one of them.
    fn read_samples<R: parquet::file::reader::ChunkReader + 'static>(
        &self,
        builder: ParquetRecordBatchReaderBuilder<R>,
        ids: &[u64],
        id_set: &HashSet<u64>,
        mint: i64,
        maxt: i64,
        path: &Path,
    ) -> Result<std::collections::HashMap<u64, Vec<Sample>>, BlockError> {
        let pq = |source| BlockError::Parquet {
            path: path.to_owned(),
            source,
        };
        let row_groups: Vec<usize> = builder
            .metadata()
            .row_groups()
            .iter()
            .enumerate()
            .filter(|(_, rg)| match rg.column(0).statistics() {
                Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                    // uint64 is stored in INT64 with unsigned ordering.
                    (Some(&lo), Some(&hi)) => {
                        let (lo, hi) = (lo as u64, hi as u64);
                        let first = ids.partition_point(|&id| id < lo);
                        first < ids.len() && ids[first] <= hi
                    }
                    _ => true,
                },
                _ => true,
            })
            // Row groups entirely outside the time range are not read either
            // (for a remote block: not fetched).
            .filter(
                |(_, rg)| match rg.columns().get(1).and_then(|c| c.statistics()) {
                    Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                        (Some(&lo), Some(&hi)) => lo <= maxt && mint <= hi,
                        _ => true,
                    },
                    _ => true,
                },
            )
            .map(|(i, _)| i)
            .collect();
        let selection = page_selection(builder.metadata(), &row_groups, ids);
        let mut builder = builder.with_row_groups(row_groups);
        if let Some(selection) = selection {
            builder = builder.with_row_selection(selection);
        }
        let reader = builder.build().map_err(pq)?;

        let mut by_id: std::collections::HashMap<u64, Vec<Sample>> =
            std::collections::HashMap::new();
        for batch in reader {
            let batch = batch.map_err(|source| BlockError::Arrow {
                path: path.to_owned(),
                source,
            })?;
            let sid = batch.column(0).as_primitive::<UInt64Type>();
            let ts = batch.column(1).as_primitive::<TimestampMillisecondType>();
            let vs = batch.column(2).as_primitive::<Float64Type>();
            self.rows_scanned.fetch_add(
                batch.num_rows() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            for row in 0..batch.num_rows() {
                let id = sid.value(row);
                let t = ts.value(row);
                if t < mint || t > maxt || !id_set.contains(&id) {
                    continue;
                }
                by_id.entry(id).or_default().push(Sample {
                    t,
                    v: vs.value(row),
                });
            }
        }
        Ok(by_id)
    }

    /// Histogram samples of the series in `ids` within `[mint, maxt]`, from
    /// `histograms.parquet` when the block has one.
    fn read_histograms(
        &self,
        ids: &HashSet<u64>,
        mint: i64,
        maxt: i64,
    ) -> Result<std::collections::HashMap<u64, Vec<HistogramSample>>, BlockError> {
        let mut out: std::collections::HashMap<u64, Vec<HistogramSample>> =
            std::collections::HashMap::new();
        let Some(file) = &self.histograms else {
            return Ok(out);
        };
        let path = self.dir.join(HISTOGRAMS_FILE);
        let pq = |source| BlockError::Parquet {
            path: path.clone(),
            source,
        };
        use std::os::fd::AsRawFd;
        let fd_path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let file = File::open(&fd_path).map_err(|source| BlockError::Io {
            path: path.clone(),
            source,
        })?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(pq)?
            .build()
            .map_err(pq)?;
        let invalid = |message: &str| BlockError::Invalid {
            path: path.clone(),
            message: message.to_owned(),
        };
        for batch in reader {
            let batch = batch.map_err(|source| BlockError::Arrow {
                path: path.clone(),
                source,
            })?;
            let sid = batch
                .column(0)
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| invalid("series_id is not uint64"))?;
            let ts = batch
                .column(1)
                .as_primitive_opt::<TimestampMillisecondType>()
                .ok_or_else(|| invalid("timestamp"))?;
            let hs = batch
                .column(4)
                .as_binary_opt::<i32>()
                .ok_or_else(|| invalid("histogram is not binary"))?;
            for row in 0..batch.num_rows() {
                let (id, t) = (sid.value(row), ts.value(row));
                if t < mint || t > maxt || !ids.contains(&id) {
                    continue;
                }
                let (h, _) = FloatHistogram::decode(hs.value(row))
                    .ok_or_else(|| invalid(&format!("undecodable histogram at row {row}")))?;
                out.entry(id)
                    .or_default()
                    .push(HistogramSample { t, h: Arc::new(h) });
            }
        }
        Ok(out)
    }

    /// Sample rows decoded by reads of this block so far.
    pub fn rows_scanned(&self) -> u64 {
        self.rows_scanned.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every series with all its samples (compaction, tools).
    pub fn read_all(&self) -> Result<Vec<SeriesSamples>, BlockError> {
        let any =
            Matcher::new(crate::model::MatchOp::RegexMatch, "__name__", ".*").map_err(|e| {
                BlockError::Invalid {
                    path: self.dir.clone(),
                    message: e.to_string(),
                }
            })?;
        self.select(&[any], i64::MIN, i64::MAX)
    }

    /// Series matching all matchers with their first and last sample time
    /// in this block, from the series index (no samples are read).
    pub fn series_info(&self, matchers: &[Matcher]) -> Vec<super::SeriesInfo> {
        self.postings
            .select(matchers)
            .iter()
            .map(|i| {
                let s = &self.series[i as usize];
                super::SeriesInfo {
                    labels: s.labels.clone(),
                    min_time: s.min_time,
                    max_time: s.max_time,
                }
            })
            .collect()
    }

    pub fn label_names(&self) -> Vec<String> {
        self.postings.label_names()
    }

    pub fn cardinality(&self, limit: usize) -> super::stats::Cardinality {
        super::stats::cardinality(&self.postings, limit)
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.postings.label_values(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MatchOp;
    use crate::model::sample::stale_nan;

    fn series(n: usize, samples: usize) -> Vec<SeriesSamples> {
        (0..n)
            .map(|i| {
                let labels = Labels::from_pairs([
                    ("__name__", if i % 2 == 0 { "a" } else { "b" }),
                    ("i", &i.to_string()),
                ])
                .unwrap();
                SeriesSamples {
                    id: labels.stable_hash(),
                    histograms: Vec::new(),
                    labels,
                    samples: (0..samples)
                        .map(|t| Sample {
                            t: t as i64 * 15_000,
                            v: if t == 3 { stale_nan() } else { (t * i) as f64 },
                        })
                        .collect(),
                }
            })
            .collect()
    }

    #[test]
    fn write_then_read_back_bit_exact() {
        let tmp = tempfile::tempdir().unwrap();
        let input = series(50, 100);
        let meta = write_block(
            tmp.path(),
            &input,
            0,
            60 * 15_000,
            BlockCompaction {
                level: 1,
                sources: vec![],
            },
        )
        .unwrap();
        assert_eq!(meta.stats.num_series, 50);
        assert_eq!(meta.stats.num_samples, 50 * 60);
        let block = Block::open(&tmp.path().join(&meta.ulid)).unwrap();
        assert_eq!(block.meta, meta);
        let got = block
            .select(&[Matcher::eq("__name__", "a")], i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(got.len(), 25);
        for g in &got {
            let want = input.iter().find(|s| s.id == g.id).unwrap();
            assert_eq!(g.labels, want.labels);
            assert_eq!(g.samples, want.samples[..60]);
            assert_eq!(g.samples[3].v.to_bits(), crate::model::STALE_NAN_BITS);
        }
        let re = Matcher::new(MatchOp::RegexMatch, "i", "1|3").unwrap();
        let got = block.select(&[re], 15_000, 30_000).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].samples.len(), 2);
        assert!(
            block
                .select(&[Matcher::eq("__name__", "a")], 10_000_000, 20_000_000)
                .unwrap()
                .is_empty()
        );
        // Pruning: one series out of 50 reads far fewer rows than the block holds.
        let before = block.rows_scanned();
        let one = Matcher::eq("i", "7");
        assert_eq!(
            block.select(&[one], i64::MIN, i64::MAX).unwrap()[0]
                .samples
                .len(),
            60
        );
        assert!(
            block.rows_scanned() - before <= 60 * 50,
            "{}",
            block.rows_scanned() - before
        );
        // No temporary directory is left behind.
        let names: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [meta.ulid]);
    }
}

#[cfg(test)]
mod pruning_tests {
    use super::*;

    #[test]
    fn page_index_skips_pages_of_other_series() {
        let tmp = tempfile::tempdir().unwrap();
        let input: Vec<SeriesSamples> = (0..2000)
            .map(|i| {
                let labels =
                    Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())]).unwrap();
                SeriesSamples {
                    id: labels.stable_hash(),
                    histograms: Vec::new(),
                    labels,
                    samples: (0..120)
                        .map(|t| Sample {
                            t: t * 1000,
                            v: (i * t) as f64,
                        })
                        .collect(),
                }
            })
            .collect();
        let meta = write_block(
            tmp.path(),
            &input,
            0,
            120_000,
            BlockCompaction {
                level: 1,
                sources: vec![],
            },
        )
        .unwrap();
        let block = Block::open(&tmp.path().join(&meta.ulid)).unwrap();
        let got = block
            .select(&[Matcher::eq("i", "1234")], i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].samples[5],
            Sample {
                t: 5000,
                v: 1234.0 * 5.0
            }
        );
        let scanned = block.rows_scanned();
        // 240,000 rows in one row group; one series lives in at most two 16k-row pages.
        assert!(
            scanned <= 2 * SAMPLES_PAGE_ROWS as u64,
            "scanned {scanned} rows"
        );
        // Every series still reads back completely.
        let all = block.read_all().unwrap();
        assert_eq!(all.iter().map(|s| s.samples.len()).sum::<usize>(), 240_000);
    }
}
