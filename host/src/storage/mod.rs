//! The time-series store. For now: the data directory and its lock; the WAL,
//! head and Parquet blocks arrive with the storage engine.

pub mod lock;

pub use lock::{DataDir, LockError};
