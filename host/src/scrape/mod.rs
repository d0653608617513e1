//! Scraping: targets from discovery, one loop per target, samples into storage.

pub mod manager;
pub mod scrape_loop;
pub mod target;
pub mod tls;
