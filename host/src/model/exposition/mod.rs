//! Parsers for the Prometheus text format 0.0.4, OpenMetrics 1.0 and the
//! protobuf exposition format ([`protobuf`]).
//!
//! One parser serves both formats; [`Format`] switches the rules that differ
//! (comments and blank lines, timestamp units, `# EOF`, exemplars, UNIT, the
//! type names). The hot path does not allocate: a sample hands out the raw
//! text of its series (`name{labels}`, exactly as written), which a scrape
//! loop uses as a cache key, and only parses it into [`Labels`] on a miss.

mod parser;
pub mod protobuf;

pub use parser::{Entry, Exemplar, Format, MetricType, ParseError, Parser, SampleEntry};

#[cfg(test)]
mod protobuf_tests;
#[cfg(test)]
mod tests;
