//! Command-line flags, named and defaulted as Prometheus names them.

pub mod check;
pub mod plugin;
pub mod tsdb;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::PromDuration;
use crate::config::scrape::parse_bytes;

#[derive(Debug, Parser)]
#[command(
    name = "ember",
    version = crate::telemetry::VERSION_LONG,
    about = "Ember: a Prometheus-compatible monitoring server",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub server: ServerFlags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check configuration files, as `promtool check` does.
    Check {
        #[command(subcommand)]
        what: CheckCommand,
    },
    /// Inspect a data directory, as `promtool tsdb` does.
    Tsdb {
        #[command(subcommand)]
        what: TsdbCommand,
    },
    /// Inspect and try WebAssembly plugins.
    Plugin {
        #[command(subcommand)]
        what: PluginCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// List the plugins in the plugin directory with their world, version and health.
    List {
        /// Plugin directory (default: `plugins/` next to the config file).
        #[arg(long = "plugins.dir", value_name = "DIR")]
        plugins_dir: Option<PathBuf>,
        /// Configuration file, used to find the default plugin directory.
        #[arg(
            long = "config.file",
            value_name = "PATH",
            default_value = "prometheus.yml"
        )]
        config_file: PathBuf,
    },
    /// Load a plugin file: which world it implements, whether it links
    /// against this host, what it asks for. Exit code 0 when it loads.
    Check {
        /// The `.wasm` component.
        file: PathBuf,
    },
    /// Deliver a sample alert group through a notifier plugin.
    NotifyTest {
        /// The notifier's `.wasm` component.
        file: PathBuf,
        /// YAML with the plugin use: `config`, `allow_hosts`, limits (the
        /// same keys as a `plugin:` entry in the config file; `name` optional).
        #[arg(long = "config", value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TsdbCommand {
    /// Import samples from a file and write blocks (promtool's backfill).
    CreateBlocksFrom {
        #[command(subcommand)]
        source: BackfillSource,
    },
    /// List the blocks in a data directory.
    List {
        /// Print sizes and times for people rather than scripts.
        #[arg(short = 'r', long)]
        human_readable: bool,
        /// The data directory (--storage.tsdb.path of the server).
        #[arg(default_value = "data/")]
        dir: PathBuf,
    },
    /// Show sample and cardinality statistics of a block (the newest by default).
    Analyze {
        /// How many entries each "top" list shows.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// The data directory.
        #[arg(default_value = "data/")]
        dir: PathBuf,
        /// A block ULID; the newest block when omitted.
        block: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackfillSource {
    /// An OpenMetrics file with a timestamp on every sample and a final "# EOF".
    Openmetrics {
        /// Length of each block written.
        #[arg(long = "max-block-duration", default_value = "2h", value_parser = duration_flag)]
        block_duration: PromDuration,
        /// Print sizes and times for people rather than scripts.
        #[arg(short = 'r', long)]
        human_readable: bool,
        /// Do not print the created blocks.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// The OpenMetrics file.
        input: PathBuf,
        /// Where to write the blocks; copy them into the server's data directory to load them.
        #[arg(default_value = "data/")]
        output: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// Check that configuration files are valid. Exit code 0 when all are, 1 otherwise.
    Config {
        /// Only check the syntax: do not look at files the configuration refers to.
        #[arg(long)]
        syntax_only: bool,
        /// The configuration files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Check that rule files are valid. Exit code 0 when all are, 1 otherwise.
    Rules {
        /// The rule files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// A boolean flag that, like Prometheus's kingpin flags, may be given bare
/// (`--web.enable-lifecycle`) or with a value (`--web.enable-lifecycle=false`).
fn bool_flag(s: &str) -> Result<bool, String> {
    match s {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

/// The CORS origin regex must compile once anchored, as Prometheus checks it.
fn cors_flag(s: &str) -> Result<String, String> {
    regex::Regex::new(&format!("^(?:{s})$"))
        .map(|_| s.to_owned())
        .map_err(|e| format!("invalid --web.cors.origin regex: {e}"))
}

fn duration_flag(s: &str) -> Result<PromDuration, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn bytes_flag(s: &str) -> Result<u64, String> {
    if s == "0" {
        return Ok(0);
    }
    parse_bytes(s)
}

#[derive(Clone, Debug, Args)]
pub struct ServerFlags {
    /// Configuration file path.
    #[arg(
        long = "config.file",
        value_name = "PATH",
        default_value = "prometheus.yml"
    )]
    pub config_file: PathBuf,

    /// Directory of WebAssembly plugins (`*.wasm`), rescanned on reload.
    /// Default: `plugins/` next to the configuration file.
    #[arg(long = "plugins.dir", value_name = "DIR")]
    pub plugins_dir: Option<PathBuf>,

    /// Base path for metrics storage.
    #[arg(
        long = "storage.tsdb.path",
        value_name = "PATH",
        default_value = "data/"
    )]
    pub storage_path: PathBuf,

    /// How long to retain samples in storage. If neither this nor
    /// --storage.tsdb.retention.size is set, the retention time defaults to 15d.
    #[arg(long = "storage.tsdb.retention.time", value_name = "DURATION", value_parser = duration_flag)]
    pub retention_time: Option<PromDuration>,

    /// Maximum number of bytes of storage blocks to retain (units B, KB, MB, GB, TB, PB, EB). 0 disables.
    #[arg(long = "storage.tsdb.retention.size", value_name = "SIZE", value_parser = bytes_flag)]
    pub retention_size: Option<u64>,

    /// Length of the blocks the head is cut into (Prometheus's hidden flag; for tests).
    #[arg(long = "storage.tsdb.min-block-duration", value_name = "DURATION", default_value = "2h", value_parser = duration_flag, hide = true)]
    pub min_block_duration: PromDuration,

    /// Longest block compaction may build. Defaults to 10% of the retention time, at most 31d.
    #[arg(long = "storage.tsdb.max-block-duration", value_name = "DURATION", value_parser = duration_flag, hide = true)]
    pub max_block_duration: Option<PromDuration>,

    /// Address to listen on for the UI, API and telemetry.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDRESS",
        default_value = "0.0.0.0:9090"
    )]
    pub listen_address: String,

    /// Address of the Pushgateway-compatible listener (push API and /metrics
    /// of pushed groups). Empty disables it; pushes are also accepted on the
    /// main port.
    #[arg(
        long = "push.listen-address",
        value_name = "ADDRESS",
        default_value = ":9091"
    )]
    pub push_listen_address: String,

    /// Address for the PostgreSQL wire protocol (read-only SQL, psql and BI
    /// tools). Empty disables it.
    #[arg(
        long = "sql.listen-address",
        value_name = "ADDRESS",
        default_value = ":5433"
    )]
    pub sql_listen_address: String,

    /// Maximum number of simultaneous PostgreSQL connections; more are
    /// refused with "too many clients" (SQLSTATE 53300). 0 is no limit.
    #[arg(long = "sql.max-connections", value_name = "N", default_value_t = 64)]
    pub sql_max_connections: usize,

    /// Time a PostgreSQL client has from connecting until it has negotiated
    /// TLS, sent its startup message and logged in (0 is no timeout).
    #[arg(long = "sql.startup-timeout", value_name = "DURATION", default_value = "1m", value_parser = duration_flag)]
    pub sql_startup_timeout: PromDuration,

    /// Time a logged-in PostgreSQL client may send nothing before its
    /// connection is closed (0 is no timeout).
    #[arg(long = "sql.idle-timeout", value_name = "DURATION", default_value = "1h", value_parser = duration_flag)]
    pub sql_idle_timeout: PromDuration,

    /// Maximum number of rows a SQL query may return.
    #[arg(long = "sql.max-rows", value_name = "N", default_value_t = 1_000_000)]
    pub sql_max_rows: u64,

    /// Maximum memory a SQL query may hold (units B, KB, MB, GB, ...).
    #[arg(long = "sql.max-memory", value_name = "SIZE", default_value = "1GB", value_parser = bytes_flag)]
    pub sql_max_memory: u64,

    /// The URL under which Ember is externally reachable (for example behind a
    /// reverse proxy). Used for generated links; its path becomes the default
    /// route prefix. Defaults to http://<hostname>:<port>/.
    #[arg(long = "web.external-url", value_name = "URL")]
    pub external_url: Option<String>,

    /// Prefix for the internal routes of web endpoints. Defaults to the path of --web.external-url.
    #[arg(long = "web.route-prefix", value_name = "PATH")]
    pub route_prefix: Option<String>,

    /// Regex for CORS origin. It is fully anchored. Example: 'https?://(domain1|domain2)\.com'
    #[arg(long = "web.cors.origin", value_name = "REGEX", default_value = ".*", value_parser = cors_flag)]
    pub cors_origin: String,

    /// Path to a configuration file that can enable TLS or authentication (Prometheus's web config format).
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,

    /// Enable shutdown and reload via HTTP request.
    #[arg(long = "web.enable-lifecycle", num_args = 0..=1, default_value = "false", default_missing_value = "true", value_parser = bool_flag)]
    pub enable_lifecycle: bool,

    /// Enable API endpoints for admin control actions.
    #[arg(long = "web.enable-admin-api", num_args = 0..=1, default_value = "false", default_missing_value = "true", value_parser = bool_flag)]
    pub enable_admin_api: bool,

    /// Enable the API endpoint accepting remote write requests.
    #[arg(long = "web.enable-remote-write-receiver", num_args = 0..=1, default_value = "false", default_missing_value = "true", value_parser = bool_flag)]
    pub enable_remote_write_receiver: bool,

    /// Maximum number of simultaneous connections across all listeners
    /// (each listener has its own budget; 0 is no limit).
    #[arg(long = "web.max-connections", value_name = "N", default_value_t = 512)]
    pub max_connections: usize,

    /// Maximum duration before timing out read of the request, and closing
    /// idle connections (0 is no timeout).
    #[arg(long = "web.read-timeout", value_name = "DURATION", default_value = "5m", value_parser = duration_flag)]
    pub read_timeout: PromDuration,

    /// Maximum overall number of samples to return via the remote read
    /// interface, in a single query. 0 means no limit. This limit is ignored
    /// for streamed response types.
    #[arg(
        long = "storage.remote.read-sample-limit",
        value_name = "N",
        default_value_t = 50_000_000
    )]
    pub remote_read_sample_limit: usize,

    /// Maximum number of concurrent remote read calls. 0 means no limit.
    #[arg(
        long = "storage.remote.read-concurrent-limit",
        value_name = "N",
        default_value_t = 10
    )]
    pub remote_read_concurrent_limit: usize,

    /// Maximum number of bytes in a single frame for streaming remote read
    /// response types before marshalling.
    #[arg(
        long = "storage.remote.read-max-bytes-in-frame",
        value_name = "BYTES",
        default_value_t = 1_048_576
    )]
    pub remote_read_max_bytes_in_frame: usize,

    /// Maximum time a query may take before being aborted.
    #[arg(long = "query.timeout", value_name = "DURATION", default_value = "2m", value_parser = duration_flag)]
    pub query_timeout: PromDuration,

    /// Maximum number of samples a single query can load into memory.
    #[arg(
        long = "query.max-samples",
        value_name = "N",
        default_value_t = 50_000_000
    )]
    pub query_max_samples: u64,

    /// The maximum lookback duration for retrieving metrics during expression evaluations.
    #[arg(long = "query.lookback-delta", value_name = "DURATION", default_value = "5m", value_parser = duration_flag)]
    pub query_lookback_delta: PromDuration,

    /// Max time to tolerate Ember outage for restoring "for" state of alert.
    #[arg(long = "rules.alert.for-outage-tolerance", value_name = "DURATION", default_value = "1h", value_parser = duration_flag)]
    pub rules_for_outage_tolerance: PromDuration,

    /// Minimum duration between alert and restored "for" state. This is
    /// maintained only for alerts with configured "for" time greater than the
    /// grace period.
    #[arg(long = "rules.alert.for-grace-period", value_name = "DURATION", default_value = "10m", value_parser = duration_flag)]
    pub rules_for_grace_period: PromDuration,

    /// Minimum amount of time to wait before resending an alert to Alertmanager.
    #[arg(long = "rules.alert.resend-delay", value_name = "DURATION", default_value = "1m", value_parser = duration_flag)]
    pub rules_resend_delay: PromDuration,

    /// Capacity of the queue for pending Alertmanager notifications.
    #[arg(
        long = "alertmanager.notification-queue-capacity",
        value_name = "N",
        default_value_t = 10000
    )]
    pub notification_queue_capacity: usize,

    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value = "info")]
    pub log_level: LogLevel,

    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    pub log_format: LogFormat,
}

impl ServerFlags {
    /// Effective retention time, applying Prometheus's 15d default.
    /// `--plugins.dir`, or `plugins/` next to the configuration file.
    pub fn effective_plugins_dir(&self) -> PathBuf {
        plugin::default_dir(self.plugins_dir.as_deref(), &self.config_file)
    }

    pub fn effective_retention_time(&self) -> Option<PromDuration> {
        match (self.retention_time, self.retention_size) {
            (Some(t), _) if !t.is_zero() => Some(t),
            (_, Some(s)) if s > 0 => None,
            _ => Some(PromDuration::from_secs(15 * 24 * 3600)),
        }
    }
}

impl ServerFlags {
    /// Every server flag by its long name with its value in force, as
    /// `/api/v1/status/flags` lists them (unset optional flags are "").
    pub fn flag_map(&self) -> std::collections::BTreeMap<String, String> {
        let opt = |v: Option<String>| v.unwrap_or_default();
        let pairs: [(&str, String); 36] = [
            ("config.file", self.config_file.display().to_string()),
            (
                "plugins.dir",
                self.effective_plugins_dir().display().to_string(),
            ),
            ("storage.tsdb.path", self.storage_path.display().to_string()),
            (
                "storage.tsdb.retention.time",
                opt(self.retention_time.map(|d| d.to_string())),
            ),
            (
                "storage.tsdb.retention.size",
                opt(self.retention_size.map(|b| format!("{b}B"))),
            ),
            (
                "storage.tsdb.min-block-duration",
                self.min_block_duration.to_string(),
            ),
            (
                "storage.tsdb.max-block-duration",
                self.effective_max_block_duration().to_string(),
            ),
            ("web.listen-address", self.listen_address.clone()),
            ("push.listen-address", self.push_listen_address.clone()),
            ("sql.listen-address", self.sql_listen_address.clone()),
            ("sql.max-connections", self.sql_max_connections.to_string()),
            ("sql.startup-timeout", self.sql_startup_timeout.to_string()),
            ("sql.idle-timeout", self.sql_idle_timeout.to_string()),
            ("sql.max-rows", self.sql_max_rows.to_string()),
            ("sql.max-memory", format!("{}B", self.sql_max_memory)),
            ("web.external-url", opt(self.external_url.clone())),
            ("web.route-prefix", opt(self.route_prefix.clone())),
            ("web.cors.origin", self.cors_origin.clone()),
            (
                "web.config.file",
                opt(self
                    .web_config_file
                    .as_ref()
                    .map(|p| p.display().to_string())),
            ),
            ("web.enable-lifecycle", self.enable_lifecycle.to_string()),
            ("web.enable-admin-api", self.enable_admin_api.to_string()),
            (
                "web.enable-remote-write-receiver",
                self.enable_remote_write_receiver.to_string(),
            ),
            ("web.max-connections", self.max_connections.to_string()),
            ("web.read-timeout", self.read_timeout.to_string()),
            (
                "storage.remote.read-sample-limit",
                self.remote_read_sample_limit.to_string(),
            ),
            (
                "storage.remote.read-concurrent-limit",
                self.remote_read_concurrent_limit.to_string(),
            ),
            (
                "storage.remote.read-max-bytes-in-frame",
                self.remote_read_max_bytes_in_frame.to_string(),
            ),
            ("query.timeout", self.query_timeout.to_string()),
            ("query.max-samples", self.query_max_samples.to_string()),
            (
                "query.lookback-delta",
                self.query_lookback_delta.to_string(),
            ),
            (
                "rules.alert.for-outage-tolerance",
                self.rules_for_outage_tolerance.to_string(),
            ),
            (
                "rules.alert.for-grace-period",
                self.rules_for_grace_period.to_string(),
            ),
            (
                "rules.alert.resend-delay",
                self.rules_resend_delay.to_string(),
            ),
            (
                "alertmanager.notification-queue-capacity",
                self.notification_queue_capacity.to_string(),
            ),
            ("log.level", format!("{:?}", self.log_level).to_lowercase()),
            (
                "log.format",
                format!("{:?}", self.log_format).to_lowercase(),
            ),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

impl ServerFlags {
    /// The longest block compaction may build, as Prometheus derives it.
    pub fn effective_max_block_duration(&self) -> PromDuration {
        if let Some(d) = self.max_block_duration {
            return d.max(self.min_block_duration);
        }
        let cap = PromDuration::from_secs(31 * 24 * 3600);
        let tenth = self
            .effective_retention_time()
            .map(|r| PromDuration::from_millis(r.as_millis() / 10))
            .unwrap_or(cap);
        tenth.min(cap).max(self.min_block_duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> ServerFlags {
        let mut all = vec!["ember"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().server
    }

    #[test]
    fn prometheus_defaults() {
        let f = flags(&[]);
        assert_eq!(f.listen_address, "0.0.0.0:9090");
        assert_eq!(f.config_file, PathBuf::from("prometheus.yml"));
        assert_eq!(f.storage_path, PathBuf::from("data/"));
        assert_eq!(f.query_timeout, PromDuration::from_secs(120));
        assert_eq!(f.query_lookback_delta, PromDuration::from_secs(300));
        assert_eq!(f.query_max_samples, 50_000_000);
        assert!(!f.enable_lifecycle);
        assert_eq!(
            f.effective_retention_time(),
            Some(PromDuration::from_secs(15 * 86400))
        );
    }

    #[test]
    fn bool_flags_with_and_without_values() {
        assert!(flags(&["--web.enable-lifecycle"]).enable_lifecycle);
        assert!(flags(&["--web.enable-lifecycle=true"]).enable_lifecycle);
        assert!(!flags(&["--web.enable-lifecycle=false"]).enable_lifecycle);
    }

    #[test]
    fn retention_size_alone_disables_time_default() {
        let f = flags(&["--storage.tsdb.retention.size=10GB"]);
        assert_eq!(f.retention_size, Some(10 << 30));
        assert_eq!(f.effective_retention_time(), None);
    }

    #[test]
    fn bad_duration_is_rejected() {
        assert!(Cli::try_parse_from(["ember", "--query.timeout=2x"]).is_err());
    }
}
