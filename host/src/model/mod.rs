//! The data model shared by every subsystem: label sets, samples, matchers.

pub mod exposition;
pub mod labels;
pub mod matcher;
pub mod relabel;
pub mod sample;

pub use labels::{Label, Labels, LabelsError};
pub use matcher::{MatchOp, Matcher};
pub use sample::{STALE_NAN_BITS, Sample, is_stale_nan};
