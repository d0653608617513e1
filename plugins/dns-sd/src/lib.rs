//! Service discovery from DNS, like Prometheus's `dns_sd_configs`: SRV
//! records (the default) or A/AAAA records of a list of names, refreshed on
//! every call. Every target gets `__meta_dns_name`; SRV targets also
//! `__meta_dns_srv_record_target` and `__meta_dns_srv_record_port`.
//!
//! ```yaml
//! plugin_sd_configs:
//!   - name: dns-sd
//!     config:
//!       names: [_node._tcp.example.com]
//!       type: SRV          # SRV (default), A or AAAA
//!       port: 9100         # required for A/AAAA
//!     allow_hosts: ["*.example.com"]   # names that may be resolved
//! ```

use ember_plugin_sdk::{Discoverer, Label, PluginInfo, TargetGroup};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    names: Vec<String>,
    #[serde(default = "default_type", rename = "type")]
    kind: String,
    #[serde(default)]
    port: Option<u16>,
}

fn default_type() -> String {
    "SRV".into()
}

struct DnsSd {
    config: Config,
}

impl Discoverer for DnsSd {
    fn new(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config).map_err(|e| format!("config: {e}"))?;
        if config.names.is_empty() {
            return Err("config: names must not be empty".into());
        }
        match config.kind.as_str() {
            "SRV" => {}
            "A" | "AAAA" if config.port.is_some() => {}
            "A" | "AAAA" => {
                return Err(format!("config: port is required for type {}", config.kind));
            }
            other => {
                return Err(format!(
                    "config: unsupported type {other:?} (SRV, A or AAAA)"
                ));
            }
        }
        Ok(DnsSd { config })
    }

    fn describe() -> PluginInfo {
        let mut info = PluginInfo::new("dns-sd", env!("CARGO_PKG_VERSION"));
        info.description = "DNS SRV and A/AAAA service discovery".into();
        info.wants_hosts = vec!["the names in config.names".into()];
        info
    }

    fn discover(&mut self) -> Result<Vec<TargetGroup>, String> {
        let mut groups = Vec::new();
        for name in &self.config.names {
            let name_label = Label::new("__meta_dns_name", name.clone());
            if self.config.kind == "SRV" {
                for srv in ember_plugin_sdk::dns::lookup_srv(name)? {
                    let target = srv.target.trim_end_matches('.');
                    let address = if target.contains(':') {
                        format!("[{target}]:{}", srv.port)
                    } else {
                        format!("{target}:{}", srv.port)
                    };
                    groups.push(TargetGroup {
                        targets: vec![address],
                        labels: vec![
                            name_label.clone(),
                            Label::new("__meta_dns_srv_record_target", target),
                            Label::new("__meta_dns_srv_record_port", srv.port.to_string()),
                        ],
                    });
                }
            } else {
                let port = self.config.port.unwrap_or(0);
                let want_v6 = self.config.kind == "AAAA";
                let targets = ember_plugin_sdk::dns::lookup_ip(name)?
                    .into_iter()
                    .filter(|ip| ip.contains(':') == want_v6)
                    .map(|ip| {
                        if want_v6 {
                            format!("[{ip}]:{port}")
                        } else {
                            format!("{ip}:{port}")
                        }
                    })
                    .collect();
                groups.push(TargetGroup {
                    targets,
                    labels: vec![name_label],
                });
            }
        }
        Ok(groups)
    }
}

ember_plugin_sdk::export_discoverer!(DnsSd);
