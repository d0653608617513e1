//! Scraping: targets from discovery, one loop per target, samples into storage.

pub mod manager;
pub mod scrape_loop;
mod series_cache;
pub mod target;
pub mod tls;
