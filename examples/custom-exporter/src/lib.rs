//! A minimal exporter plugin. It counts its own scrapes and reports the
//! greeting from its config:
//!
//! ```yaml
//! scrape_configs:
//!   - job_name: hello
//!     plugin:
//!       name: custom-exporter
//!       config: {greeting: hi}
//! ```

use ember_plugin_sdk::{Exporter, MetricFamily, MetricType, PluginInfo};

struct Hello {
    greeting: String,
    scrapes: u64,
}

impl Exporter for Hello {
    fn new(config: &str) -> Result<Self, String> {
        // The config arrives as JSON; a real plugin would use serde.
        let greeting = config
            .split("\"greeting\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("hello")
            .to_owned();
        ember_plugin_sdk::log::info(&format!("starting with greeting {greeting:?}"));
        Ok(Hello {
            greeting,
            scrapes: 0,
        })
    }

    fn describe() -> PluginInfo {
        let mut info = PluginInfo::new("custom-exporter", env!("CARGO_PKG_VERSION"));
        info.description = "Counts its scrapes".into();
        info
    }

    fn collect(&mut self) -> Result<Vec<MetricFamily>, String> {
        self.scrapes += 1;
        let mut scrapes = MetricFamily::new(
            "hello_scrapes_total",
            MetricType::Counter,
            "Times this plugin was scraped.",
        );
        scrapes.push(&[], self.scrapes as f64);
        let greeting = MetricFamily::new("hello_info", MetricType::Gauge, "The configured greeting.")
            .with(&[("greeting", &self.greeting)], 1.0);
        Ok(vec![scrapes, greeting])
    }
}

ember_plugin_sdk::export_exporter!(Hello);
