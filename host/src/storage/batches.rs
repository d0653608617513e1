//! Arrow record batches out of the store: the seam the PromQL and SQL
//! engines build on. One batch per series, samples sorted by time, so
//! range-vector operators can walk a series without regrouping.

use std::sync::{Arc, OnceLock};

use arrow::array::{Float64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::head::SeriesSamples;
use crate::model::Labels;

/// `timestamp` (ms, UTC) and `value` (float64), both non-null.
pub fn series_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(
                    "timestamp",
                    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    false,
                ),
                Field::new("value", DataType::Float64, false),
            ]))
        })
        .clone()
}

/// One series: its identity and its samples as a batch.
#[derive(Clone, Debug)]
pub struct SeriesBatch {
    pub id: u64,
    pub labels: Labels,
    pub batch: RecordBatch,
}

pub fn to_batch(s: SeriesSamples) -> Result<SeriesBatch, arrow::error::ArrowError> {
    let ts = TimestampMillisecondArray::from_iter_values(s.samples.iter().map(|x| x.t))
        .with_timezone("UTC");
    let vs = Float64Array::from_iter_values(s.samples.iter().map(|x| x.v));
    let batch = RecordBatch::try_new(series_schema(), vec![Arc::new(ts), Arc::new(vs)])?;
    Ok(SeriesBatch {
        id: s.id,
        labels: s.labels,
        batch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Matcher;
    use crate::storage::{Storage, StorageOptions};
    use arrow::array::AsArray;
    use arrow::datatypes::{Float64Type, TimestampMillisecondType};

    #[test]
    fn batches_per_series_sorted_by_time_across_blocks_and_head() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = StorageOptions {
            block_range_ms: 1000,
            retention_ms: None,
            ..StorageOptions::default()
        };
        let (storage, _) = Storage::open(tmp.path(), opts, |_| {}).unwrap();
        for t in (0..4000).step_by(100) {
            let mut app = storage.appender();
            app.append(
                Labels::from_pairs([("__name__", "m"), ("i", "1")]).unwrap(),
                t,
                t as f64,
            );
            app.append(
                Labels::from_pairs([("__name__", "m"), ("i", "2")]).unwrap(),
                t,
                -(t as f64),
            );
            app.commit().unwrap();
        }
        storage.run_maintenance().unwrap();
        assert!(!storage.blocks().is_empty());
        let got = storage
            .select_batches(&[Matcher::eq("__name__", "m")], 500, 3500)
            .unwrap();
        assert_eq!(got.len(), 2);
        let b = &got[1].batch;
        assert_eq!(b.schema(), series_schema());
        let ts = b.column(0).as_primitive::<TimestampMillisecondType>();
        let vs = b.column(1).as_primitive::<Float64Type>();
        assert_eq!(b.num_rows(), 31);
        assert_eq!((ts.value(0), vs.value(0)), (500, -500.0));
        assert!(ts.values().windows(2).all(|w| w[0] < w[1]));
        assert_eq!(got[1].labels.get("i"), Some("2"));
    }
}
