//! Scraping: targets from discovery, one loop per target, samples into storage.

pub mod target;
