//! A subset of Prometheus's node_exporter as a plugin: the `meminfo`,
//! `loadavg`, `stat`, `netdev`, `diskstats` and `filesystem` collectors,
//! with node_exporter's metric names, help texts and values. Needs `/proc`
//! granted read-only, and for `filesystem` the mount points to report
//! (statfs through the host; `[/]` for all of them):
//!
//! ```yaml
//! plugin:
//!   name: node-exporter
//!   read_only_dirs: [/proc]
//!   stat_filesystems: [/]
//!   config:
//!     collectors: [meminfo, loadavg, stat, netdev, diskstats, filesystem]   # default: all
//!     proc_path: /proc                       # default
//! ```
//!
//! Without `stat_filesystems` the filesystem collector reports every mount
//! point with `node_filesystem_device_error` 1, as node_exporter does for a
//! filesystem it cannot stat.

use ember_plugin_sdk::{Exporter, MetricFamily, MetricType, PluginInfo};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "all_collectors")]
    collectors: Vec<String>,
    #[serde(default = "default_proc")]
    proc_path: String,
    /// Network devices left out, as node_exporter's
    /// `--collector.netdev.device-exclude` (whose default leaves out `lo`).
    #[serde(default = "default_netdev_exclude")]
    netdev_exclude: Vec<String>,
    /// Mount points left out: an entry excludes itself and everything
    /// below it; with a trailing `/` only what is below it. The default is
    /// Debian's node_exporter default
    /// (`^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)`).
    #[serde(default = "default_mount_points_exclude")]
    mount_points_exclude: Vec<String>,
    /// Filesystem types left out (node_exporter's default list).
    #[serde(default = "default_fs_types_exclude")]
    fs_types_exclude: Vec<String>,
}

fn default_mount_points_exclude() -> Vec<String> {
    [
        "/dev",
        "/proc",
        "/run",
        "/sys",
        "/mnt",
        "/media",
        "/var/lib/docker/",
        "/var/lib/containers/storage/",
    ]
    .map(String::from)
    .to_vec()
}

fn default_fs_types_exclude() -> Vec<String> {
    [
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "fusectl",
        "hugetlbfs",
        "iso9660",
        "mqueue",
        "nsfs",
        "overlay",
        "proc",
        "procfs",
        "pstore",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "squashfs",
        "sysfs",
        "tracefs",
    ]
    .map(String::from)
    .to_vec()
}

fn default_netdev_exclude() -> Vec<String> {
    vec!["lo".into()]
}

fn all_collectors() -> Vec<String> {
    vec![
        "meminfo".into(),
        "loadavg".into(),
        "stat".into(),
        "netdev".into(),
        "diskstats".into(),
        "filesystem".into(),
    ]
}

fn default_proc() -> String {
    "/proc".into()
}

struct NodeExporter {
    config: Config,
}

/// Clock ticks per second of `/proc/stat` (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))
}

fn parse_f64(s: &str, what: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .map_err(|e| format!("{what}: invalid number {s:?}: {e}"))
}

/// `/proc/meminfo` → `node_memory_*`, as node_exporter's meminfo collector.
fn meminfo(text: &str) -> Result<Vec<MetricFamily>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() < 2 {
            continue;
        }
        let Some(raw) = parts[0].strip_suffix(':') else {
            continue;
        };
        // "Active(anon)" becomes "Active_anon".
        let mut key = match raw.split_once('(') {
            Some((a, b)) => format!("{a}_{}", b.trim_end_matches(')')),
            None => raw.to_owned(),
        };
        let mut value = parse_f64(parts[1], "meminfo")?;
        match parts.len() {
            2 => {}
            3 if parts[2] == "kB" => {
                value *= 1024.0;
                key.push_str("_bytes");
            }
            _ => return Err(format!("meminfo: malformed line {line:?}")),
        }
        let help = format!("Memory information field {key}.");
        out.push(MetricFamily::gauge(
            &format!("node_memory_{key}"),
            &help,
            value,
        ));
    }
    Ok(out)
}

/// `/proc/loadavg` → `node_load1/5/15`.
fn loadavg(text: &str) -> Result<Vec<MetricFamily>, String> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    if parts.len() < 3 {
        return Err(format!("loadavg: malformed {text:?}"));
    }
    Ok(vec![
        MetricFamily::gauge(
            "node_load1",
            "1m load average.",
            parse_f64(parts[0], "loadavg")?,
        ),
        MetricFamily::gauge(
            "node_load5",
            "5m load average.",
            parse_f64(parts[1], "loadavg")?,
        ),
        MetricFamily::gauge(
            "node_load15",
            "15m load average.",
            parse_f64(parts[2], "loadavg")?,
        ),
    ])
}

/// `/proc/stat` → CPU seconds, boot time, context switches, forks,
/// interrupts, running and blocked processes.
fn stat(text: &str) -> Result<Vec<MetricFamily>, String> {
    let mut cpu = MetricFamily::new(
        "node_cpu_seconds_total",
        MetricType::Counter,
        "Seconds the CPUs spent in each mode.",
    );
    let mut guest = MetricFamily::new(
        "node_cpu_guest_seconds_total",
        MetricType::Counter,
        "Seconds the CPUs spent in guests (VMs) for each mode.",
    );
    let mut out = Vec::new();
    let counter = |name: &str, help: &str, v: f64| {
        let mut f = MetricFamily::gauge(name, help, v);
        f.type_ = MetricType::Counter;
        f
    };
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = parts.first() else { continue };
        match *first {
            "cpu" => {}
            name if name.starts_with("cpu") => {
                let id = &name[3..];
                let modes = [
                    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
                ];
                for (i, mode) in modes.iter().enumerate() {
                    if let Some(v) = parts.get(i + 1) {
                        cpu.push(
                            &[("cpu", id), ("mode", mode)],
                            parse_f64(v, "stat")? / USER_HZ,
                        );
                    }
                }
                for (i, mode) in ["user", "nice"].iter().enumerate() {
                    if let Some(v) = parts.get(i + 9) {
                        guest.push(
                            &[("cpu", id), ("mode", mode)],
                            parse_f64(v, "stat")? / USER_HZ,
                        );
                    }
                }
            }
            "intr" => {
                if let Some(v) = parts.get(1) {
                    out.push(counter(
                        "node_intr_total",
                        "Total number of interrupts serviced.",
                        parse_f64(v, "stat")?,
                    ));
                }
            }
            "ctxt" => {
                if let Some(v) = parts.get(1) {
                    out.push(counter(
                        "node_context_switches_total",
                        "Total number of context switches.",
                        parse_f64(v, "stat")?,
                    ));
                }
            }
            "processes" => {
                if let Some(v) = parts.get(1) {
                    out.push(counter(
                        "node_forks_total",
                        "Total number of forks.",
                        parse_f64(v, "stat")?,
                    ));
                }
            }
            "btime" => {
                if let Some(v) = parts.get(1) {
                    out.push(MetricFamily::gauge(
                        "node_boot_time_seconds",
                        "Node boot time, in unixtime.",
                        parse_f64(v, "stat")?,
                    ));
                }
            }
            "procs_running" => {
                if let Some(v) = parts.get(1) {
                    out.push(MetricFamily::gauge(
                        "node_procs_running",
                        "Number of processes in runnable state.",
                        parse_f64(v, "stat")?,
                    ));
                }
            }
            "procs_blocked" => {
                if let Some(v) = parts.get(1) {
                    out.push(MetricFamily::gauge(
                        "node_procs_blocked",
                        "Number of processes blocked waiting for I/O to complete.",
                        parse_f64(v, "stat")?,
                    ));
                }
            }
            _ => {}
        }
    }
    out.insert(0, guest);
    out.insert(0, cpu);
    Ok(out)
}

/// `/proc/net/dev` → `node_network_{receive,transmit}_*_total{device}`, as
/// node_exporter's netdev collector names them (columns from the header).
fn netdev(text: &str, exclude: &[String]) -> Result<Vec<MetricFamily>, String> {
    let mut lines = text.lines();
    let _ = lines.next();
    let header = lines.next().ok_or("netdev: missing header")?;
    let mut parts = header.split('|');
    let _ = parts.next();
    let receive: Vec<&str> = parts
        .next()
        .ok_or("netdev: header")?
        .split_whitespace()
        .collect();
    let transmit: Vec<&str> = parts
        .next()
        .ok_or("netdev: header")?
        .split_whitespace()
        .collect();
    let names: Vec<String> = receive
        .iter()
        .map(|c| format!("receive_{c}"))
        .chain(transmit.iter().map(|c| format!("transmit_{c}")))
        .collect();
    let mut families: Vec<MetricFamily> = names
        .iter()
        .map(|n| {
            MetricFamily::new(
                &format!("node_network_{n}_total"),
                MetricType::Counter,
                &format!("Network device statistic {n}."),
            )
        })
        .collect();
    for line in lines {
        let Some((device, values)) = line.split_once(':') else {
            continue;
        };
        let device = device.trim();
        if exclude.iter().any(|e| e == device) {
            continue;
        }
        for (family, value) in families.iter_mut().zip(values.split_whitespace()) {
            family.push(&[("device", device)], parse_f64(value, "netdev")?);
        }
    }
    Ok(families)
}

/// Whether node_exporter's default `--collector.diskstats.device-exclude`
/// (`^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$`) leaves a device out.
fn disk_ignored(device: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    for prefix in ["ram", "loop", "fd"] {
        if device.strip_prefix(prefix).is_some_and(digits) {
            return true;
        }
    }
    for prefix in ["hd", "sd", "vd", "xvd"] {
        if let Some(rest) = device.strip_prefix(prefix) {
            let mut chars = rest.chars();
            if chars.next().is_some_and(|c| c.is_ascii_lowercase()) && digits(chars.as_str()) {
                return true;
            }
        }
    }
    // nvme<d>n<d>p<d>
    if let Some(rest) = device.strip_prefix("nvme")
        && let Some((a, rest)) = rest.split_once('n')
        && let Some((b, c)) = rest.split_once('p')
    {
        return digits(a) && digits(b) && digits(c);
    }
    false
}

/// `/proc/diskstats` → `node_disk_*{device}`, as node_exporter's diskstats
/// collector (names, help texts, units).
fn diskstats(text: &str) -> Result<Vec<MetricFamily>, String> {
    const SECTOR: f64 = 512.0;
    const MS: f64 = 0.001;
    let columns: [(&str, MetricType, &str, f64); 17] = [
        (
            "reads_completed_total",
            MetricType::Counter,
            "The total number of reads completed successfully.",
            1.0,
        ),
        (
            "reads_merged_total",
            MetricType::Counter,
            "The total number of reads merged.",
            1.0,
        ),
        (
            "read_bytes_total",
            MetricType::Counter,
            "The total number of bytes read successfully.",
            SECTOR,
        ),
        (
            "read_time_seconds_total",
            MetricType::Counter,
            "The total number of seconds spent by all reads.",
            MS,
        ),
        (
            "writes_completed_total",
            MetricType::Counter,
            "The total number of writes completed successfully.",
            1.0,
        ),
        (
            "writes_merged_total",
            MetricType::Counter,
            "The number of writes merged.",
            1.0,
        ),
        (
            "written_bytes_total",
            MetricType::Counter,
            "The total number of bytes written successfully.",
            SECTOR,
        ),
        (
            "write_time_seconds_total",
            MetricType::Counter,
            "This is the total number of seconds spent by all writes.",
            MS,
        ),
        (
            "io_now",
            MetricType::Gauge,
            "The number of I/Os currently in progress.",
            1.0,
        ),
        (
            "io_time_seconds_total",
            MetricType::Counter,
            "Total seconds spent doing I/Os.",
            MS,
        ),
        (
            "io_time_weighted_seconds_total",
            MetricType::Counter,
            "The weighted # of seconds spent doing I/Os.",
            MS,
        ),
        (
            "discards_completed_total",
            MetricType::Counter,
            "The total number of discards completed successfully.",
            1.0,
        ),
        (
            "discards_merged_total",
            MetricType::Counter,
            "The total number of discards merged.",
            1.0,
        ),
        (
            "discarded_sectors_total",
            MetricType::Counter,
            "The total number of sectors discarded successfully.",
            1.0,
        ),
        (
            "discard_time_seconds_total",
            MetricType::Counter,
            "This is the total number of seconds spent by all discards.",
            MS,
        ),
        (
            "flush_requests_total",
            MetricType::Counter,
            "The total number of flush requests completed successfully",
            1.0,
        ),
        (
            "flush_requests_time_seconds_total",
            MetricType::Counter,
            "This is the total number of seconds spent by all flush requests.",
            MS,
        ),
    ];
    let mut families: Vec<MetricFamily> = columns
        .iter()
        .map(|(name, kind, help, _)| MetricFamily::new(&format!("node_disk_{name}"), *kind, help))
        .collect();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let Some(device) = parts.get(2) else { continue };
        if disk_ignored(device) {
            continue;
        }
        for (i, (family, (_, _, _, scale))) in families.iter_mut().zip(columns.iter()).enumerate() {
            if let Some(v) = parts.get(i + 3) {
                family.push(&[("device", device)], parse_f64(v, "diskstats")? * scale);
            }
        }
    }
    families.retain(|f| !f.samples.is_empty());
    Ok(families)
}

/// Whether `mount_point` is excluded by one of `exclude` (see
/// `Config::mount_points_exclude`).
fn mount_point_excluded(mount_point: &str, exclude: &[String]) -> bool {
    exclude.iter().any(|e| match e.strip_suffix('/') {
        // Only what is below: "/var/lib/docker/" excludes "/var/lib/docker/x".
        Some(dir) if !dir.is_empty() => mount_point
            .strip_prefix(dir)
            .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/')),
        _ => {
            mount_point == e
                || mount_point
                    .strip_prefix(e.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        }
    })
}

/// A mount as node_exporter labels it.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Mount {
    device: String,
    mount_point: String,
    fs_type: String,
    read_only: bool,
}

/// `/proc/1/mounts` lines → mounts, with node_exporter's decoding of
/// `\040` and `\011` in the mount point (the device keeps its escapes).
fn mounts(text: &str) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() < 4 {
            return Err(format!("malformed mount point information: {line:?}"));
        }
        out.push(Mount {
            device: parts[0].to_owned(),
            mount_point: parts[1].replace("\\040", " ").replace("\\011", "\t"),
            fs_type: parts[2].to_owned(),
            read_only: parts[3].split(',').any(|o| o == "ro"),
        });
    }
    Ok(out)
}

/// node_exporter's filesystem collector: statfs of every mount that is not
/// excluded, through the host's `filesystem-stats`.
fn filesystem(
    mount_text: &str,
    config: &Config,
    stat: impl Fn(&str) -> Result<ember_plugin_sdk::filesystem::FsStats, String>,
) -> Result<Vec<MetricFamily>, String> {
    let gauge = |name: &str, help: &str| MetricFamily::new(name, MetricType::Gauge, help);
    let mut size = gauge("node_filesystem_size_bytes", "Filesystem size in bytes.");
    let mut free = gauge(
        "node_filesystem_free_bytes",
        "Filesystem free space in bytes.",
    );
    let mut avail = gauge(
        "node_filesystem_avail_bytes",
        "Filesystem space available to non-root users in bytes.",
    );
    let mut files = gauge("node_filesystem_files", "Filesystem total file nodes.");
    let mut files_free = gauge(
        "node_filesystem_files_free",
        "Filesystem total free file nodes.",
    );
    let mut readonly = gauge("node_filesystem_readonly", "Filesystem read-only status.");
    let mut device_error = gauge(
        "node_filesystem_device_error",
        "Whether an error occurred while getting statistics for the given device.",
    );
    let mut seen = std::collections::HashSet::new();
    for mount in mounts(mount_text)? {
        if mount_point_excluded(&mount.mount_point, &config.mount_points_exclude)
            || config.fs_types_exclude.contains(&mount.fs_type)
        {
            continue;
        }
        // One series per device, mount point and type, even when mounted twice.
        if !seen.insert((
            mount.device.clone(),
            mount.mount_point.clone(),
            mount.fs_type.clone(),
        )) {
            continue;
        }
        let labels = [
            ("device", mount.device.as_str()),
            ("fstype", mount.fs_type.as_str()),
            ("mountpoint", mount.mount_point.as_str()),
        ];
        let stats = match stat(&mount.mount_point) {
            Ok(stats) => stats,
            Err(e) => {
                ember_plugin_sdk::log::debug(&format!("statfs {}: {e}", mount.mount_point));
                device_error.push(&labels, 1.0);
                continue;
            }
        };
        device_error.push(&labels, 0.0);
        let bsize = stats.block_size as f64;
        size.push(&labels, stats.blocks as f64 * bsize);
        free.push(&labels, stats.blocks_free as f64 * bsize);
        avail.push(&labels, stats.blocks_available as f64 * bsize);
        files.push(&labels, stats.files as f64);
        files_free.push(&labels, stats.files_free as f64);
        readonly.push(&labels, if mount.read_only { 1.0 } else { 0.0 });
    }
    let mut out = vec![avail, device_error, files, files_free, free, readonly, size];
    out.retain(|f| !f.samples.is_empty());
    Ok(out)
}

/// The mount table node_exporter reads: init's, or this process's when
/// there is no `1/mounts`.
fn mount_table(proc_path: &str) -> Result<String, String> {
    match std::fs::read_to_string(format!("{proc_path}/1/mounts")) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            read(&format!("{proc_path}/self/mounts"))
        }
        Err(e) => Err(format!("reading {proc_path}/1/mounts: {e}")),
    }
}

impl Exporter for NodeExporter {
    fn new(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config).map_err(|e| format!("config: {e}"))?;
        for c in &config.collectors {
            if !matches!(
                c.as_str(),
                "meminfo" | "loadavg" | "stat" | "netdev" | "diskstats" | "filesystem"
            ) {
                return Err(format!(
                    "config: unknown collector {c:?} (known: meminfo, loadavg, stat, netdev, diskstats, filesystem)"
                ));
            }
        }
        Ok(NodeExporter { config })
    }

    fn describe() -> PluginInfo {
        let mut info = PluginInfo::new("node-exporter", env!("CARGO_PKG_VERSION"));
        info.description =
            "node_exporter's meminfo, loadavg, stat, netdev, diskstats and filesystem collectors"
                .into();
        info.wants_directories = vec!["/proc".into()];
        info
    }

    fn collect(&mut self) -> Result<Vec<MetricFamily>, String> {
        let proc_path = self.config.proc_path.trim_end_matches('/');
        let mut out = Vec::new();
        for collector in &self.config.collectors {
            let families = match collector.as_str() {
                "meminfo" => meminfo(&read(&format!("{proc_path}/meminfo"))?)?,
                "loadavg" => loadavg(&read(&format!("{proc_path}/loadavg"))?)?,
                "stat" => stat(&read(&format!("{proc_path}/stat"))?)?,
                "diskstats" => diskstats(&read(&format!("{proc_path}/diskstats"))?)?,
                "netdev" => netdev(
                    &read(&format!("{proc_path}/net/dev"))?,
                    &self.config.netdev_exclude,
                )?,
                "filesystem" => filesystem(
                    &mount_table(proc_path)?,
                    &self.config,
                    ember_plugin_sdk::filesystem::stat,
                )?,
                _ => Vec::new(),
            };
            out.extend(families);
        }
        Ok(out)
    }
}

ember_plugin_sdk::export_exporter!(NodeExporter);

#[cfg(test)]
mod tests {
    #[test]
    fn mount_point_exclusions() {
        let exclude = super::default_mount_points_exclude();
        for excluded in [
            "/dev",
            "/dev/shm",
            "/proc",
            "/run/user/0",
            "/var/lib/docker/x",
        ] {
            assert!(
                super::mount_point_excluded(excluded, &exclude),
                "{excluded}"
            );
        }
        for kept in ["/", "/boot", "/devices", "/var/lib/docker", "/home"] {
            assert!(!super::mount_point_excluded(kept, &exclude), "{kept}");
        }
    }

    #[test]
    fn mounts_are_decoded_like_node_exporter() {
        let mounts = super::mounts("/dev/sda1 /mnt/a\\040b ext4 ro,relatime 0 0\n").unwrap();
        assert_eq!(mounts[0].mount_point, "/mnt/a b");
        assert!(mounts[0].read_only);
        assert!(super::mounts("broken line\n").is_err());
    }

    #[test]
    fn node_exporter_default_disk_exclusions() {
        for ignored in [
            "ram0",
            "loop12",
            "fd0",
            "sda1",
            "vda2",
            "xvdb3",
            "nvme0n1p2",
        ] {
            assert!(super::disk_ignored(ignored), "{ignored}");
        }
        for kept in ["sda", "vda", "nvme0n1", "zram0", "dm-0", "md0"] {
            assert!(!super::disk_ignored(kept), "{kept}");
        }
    }
}
