//! The data model shared by every subsystem: label sets, samples, matchers.

pub mod exposition;
pub mod histogram;
pub mod labels;
pub mod matcher;
pub mod relabel;
pub mod sample;

pub use histogram::FloatHistogram;
pub use labels::{Label, Labels, LabelsError};
pub use matcher::{MatchOp, Matcher};
pub use sample::{HistogramSample, STALE_NAN_BITS, Sample, is_stale_nan};
