//! WebAssembly plugins end to end: the shipped plugins and hostile ones,
//! built from `plugins/` for wasm32-wasip2 by the test itself, running in
//! the real binary.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

fn install(setup: &Setup, plugin: &str) {
    install_plugin(setup, plugin);
}

/// `ember_plugin_errors_total{plugin=..., reason=...}`.
fn errors(ember: &Ember, plugin: &str, reason: &str) -> f64 {
    let body = get(&ember.url("/metrics"))
        .map(|r| r.body)
        .unwrap_or_default();
    let want = format!("ember_plugin_errors_total{{plugin=\"{plugin}\",reason=\"{reason}\"}}");
    body.lines()
        .find(|l| l.starts_with(&want))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn wait_for(what: &str, ember: &Ember, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; logs:\n{}",
            ember.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of an instant query with exactly one result.
fn query_one(ember: &Ember, q: &str) -> Option<f64> {
    let (status, body) = get_json(&ember.url(&format!("/api/v1/query?query={}", enc(q))));
    assert_eq!(status, 200, "{body}");
    let result = body["data"]["result"].as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0]["value"][1].as_str()?.parse().ok()
}

/// `POST /-/reload` with room for compiling a plugin: the reload compiles
/// new files before it answers, which takes seconds in a debug build on a
/// loaded machine (more than the shared helpers' 10 s timeout).
fn reload(ember: &Ember) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    agent
        .post(&ember.url("/-/reload"))
        .send_empty()
        .expect("POST /-/reload")
        .status()
        .as_u16()
}

fn hostile_job(job: &str, mode: &str, extra: &str) -> String {
    format!(
        "  - job_name: {job}\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    plugin:\n      name: hostile\n      config: {{mode: {mode}}}\n{extra}"
    )
}

#[test]
fn hostile_plugins_fail_their_calls_and_the_server_goes_on() {
    let setup = Setup::new();
    install(&setup, "hostile");
    let mut config = String::from("global:\n  scrape_interval: 1s\nscrape_configs:\n");
    config += &hostile_job("loop", "loop", "      timeout: 500ms\n");
    config += &hostile_job("grow", "grow", "      memory_limit_bytes: 16777216\n");
    config += &hostile_job("panic", "panic", "");
    config += &hostile_job("file", "file", "");
    config += &hostile_job("http", "http", "      allow_hosts: [example.com]\n");
    // An allowed host that accepts the connection and never answers: the
    // HTTP call is cut off by the plugin's deadline.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    config += &hostile_job(
        "slowhttp",
        &format!("http, url: 'http://{silent_addr}/'"),
        &format!("      allow_hosts: ['{silent_addr}']\n      timeout: 500ms\n"),
    );
    // An allowed host whose response is over the plugin's cap.
    let big = TestTarget::start(Reply::text(&"x".repeat(4096)));
    config += &hostile_job(
        "bigbody",
        &format!("http, url: 'http://{}/metrics'", big.addr),
        &format!(
            "      allow_hosts: ['{}']\n      max_response_bytes: 1024\n",
            big.addr
        ),
    );
    config += &hostile_job("huge", "huge, count: 5000", "      max_samples: 1000\n");
    config += &hostile_job("inject", "inject", "");
    config += &hostile_job("ok", "ok", "");
    setup.write_config(&config);
    let mut ember = setup.start(&[]);
    ember.wait_ready();

    // Each misbehaviour has its own reason, in the metrics and in the log.
    let reasons = [
        "timeout",
        "out_of_memory",
        "panic",
        "forbidden_file",
        "forbidden_host",
        "output_limit",
        "invalid_output",
    ];
    for reason in reasons {
        wait_for(&format!("a {reason} error"), &ember, || {
            errors(&ember, "hostile", reason) >= 1.0
        });
    }
    assert_eq!(
        errors(&ember, "hostile", "plugin_error"),
        0.0,
        "every hostile case is recognised"
    );
    // Faulted instances were replaced and the faults keep failing only
    // their own calls: the well-behaved job scrapes fine meanwhile.
    wait_for("hostile_ok", &ember, || {
        query_one(&ember, "hostile_ok") == Some(1.0)
    });
    wait_for("up of ok", &ember, || {
        query_one(&ember, "up{job=\"ok\"}") == Some(1.0)
    });
    for job in [
        "loop", "grow", "panic", "file", "http", "slowhttp", "bigbody", "huge", "inject",
    ] {
        wait_for(&format!("up of {job}"), &ember, || {
            query_one(&ember, &format!("up{{job=\"{job}\"}}")) == Some(0.0)
        });
    }
    let restarts = ember
        .metric("ember_plugin_instance_restarts_total")
        .unwrap_or(0.0);
    assert!(restarts >= 3.0, "restarts {restarts}");

    // The reasons are on the targets page and in the log.
    wait_for("target errors", &ember, || {
        let (_, t) = get_json(&ember.url("/api/v1/targets"));
        t["data"]["activeTargets"].as_array().is_some_and(|a| {
            a.iter()
                .filter(|t| t["lastError"].as_str().is_some_and(|e| !e.is_empty()))
                .count()
                >= 9
        })
    });
    let (_, targets) = get_json(&ember.url("/api/v1/targets"));
    let active = targets["data"]["activeTargets"].as_array().unwrap().clone();
    let error_of = |job: &str| {
        active
            .iter()
            .find(|t| t["labels"]["job"] == job)
            .and_then(|t| t["lastError"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    assert!(error_of("loop").contains("timeout"), "{}", error_of("loop"));
    assert!(
        error_of("slowhttp").contains("timeout") && error_of("slowhttp").contains("host call"),
        "{}",
        error_of("slowhttp")
    );
    assert!(
        error_of("grow").contains("out_of_memory"),
        "{}",
        error_of("grow")
    );
    assert!(
        error_of("panic").contains("panics on purpose"),
        "{}",
        error_of("panic")
    );
    assert!(
        error_of("file").contains("forbidden_file") && error_of("file").contains("/etc/passwd"),
        "{}",
        error_of("file")
    );
    assert!(
        error_of("http").contains("forbidden.invalid"),
        "{}",
        error_of("http")
    );
    assert!(
        error_of("bigbody").contains("output_limit")
            && error_of("bigbody").contains("max_response_bytes"),
        "{}",
        error_of("bigbody")
    );
    assert!(
        error_of("huge").contains("limit of 1000"),
        "{}",
        error_of("huge")
    );
    let logs = ember.logs();
    for reason in reasons {
        assert!(
            logs.contains(&format!("reason={reason}")),
            "{reason}: {logs}"
        );
    }
    assert!(
        logs.contains("Plugin tried to open a path outside its granted directories")
            && logs.contains("path=/etc/passwd"),
        "{logs}"
    );

    // Per-plugin metrics: calls, their duration, memory in use.
    let metrics = get(&ember.url("/metrics")).unwrap().body;
    for series in [
        "ember_plugin_calls_total{function=\"collect\",plugin=\"hostile\"}",
        "ember_plugin_call_duration_seconds_count{function=\"collect\",plugin=\"hostile\"}",
        "ember_plugin_memory_bytes{plugin=\"hostile\"}",
        "ember_plugin_instance_restarts_total{plugin=\"hostile\"}",
    ] {
        let value: f64 = metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing:\n{metrics}"));
        assert!(value > 0.0, "{series} {value}");
    }

    // The status endpoint reports the plugin and its last error.
    let (status, body) = get_json(&ember.url("/api/v1/status/plugins"));
    assert_eq!(status, 200);
    let list = body["data"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{body}");
    assert_eq!(list[0]["name"], "hostile");
    assert_eq!(list[0]["world"], "exporter");

    // And the server still serves queries.
    assert_eq!(query_one(&ember, "vector(1)"), Some(1.0));
    assert!(get(&ember.url("/-/healthy")).is_ok());
}

/// An HTTP server that records request bodies and answers with `reply`.
struct Capture {
    addr: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

fn capture(content_type: &'static str, reply: String) -> Capture {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let b = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut data = Vec::new();
            let mut buf = [0u8; 8192];
            let body = loop {
                let Ok(n) = stream.read(&mut buf) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                data.extend_from_slice(&buf[..n]);
                let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if data.len() >= end + 4 + len {
                    break Some(
                        String::from_utf8_lossy(&data[end + 4..end + 4 + len]).into_owned(),
                    );
                }
            };
            if let Some(body) = body {
                b.lock().unwrap().push(body);
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                reply.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    Capture { addr, bodies }
}

#[test]
fn webhook_notifier_delivers_alertmanager_payload_v4() {
    let hook = capture("text/plain", "ok".into());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("webhook.yml");
    std::fs::write(
        &cfg,
        format!(
            "config:\n  url: http://{}/hook\nallow_hosts: ['{}']\n",
            hook.addr, hook.addr
        ),
    )
    .unwrap();
    let wasm = built_plugins().join("webhook.wasm");
    let out = run(&[
        "plugin",
        "notify-test",
        wasm.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bodies = hook.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    let payload: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(payload["version"], "4");
    assert_eq!(payload["status"], "firing");
    assert_eq!(
        payload["alerts"][0]["labels"]["alertname"],
        "EmberNotifyTest"
    );
    assert_eq!(payload["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert!(
        payload["alerts"][0]["startsAt"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    // A host off the allow-list is refused before any connection.
    std::fs::write(
        &cfg,
        format!(
            "config:\n  url: http://{}/hook\nallow_hosts: [example.com]\n",
            hook.addr
        ),
    )
    .unwrap();
    let out = run(&[
        "plugin",
        "notify-test",
        wasm.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden_host"));
    assert_eq!(hook.bodies.lock().unwrap().len(), 1);
}

#[test]
fn plugin_check_and_list() {
    let wasm = built_plugins().join("http-sd.wasm");
    let out = run(&["plugin", "check", wasm.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ember:plugin/discoverer@0.1.1"), "{stdout}");
    assert!(stdout.contains("links against this host"), "{stdout}");

    // What a plugin asks for: directories and filesystem stats.
    let wasm = built_plugins().join("node-exporter.wasm");
    let out = run(&["plugin", "check", wasm.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("wants directories (grant with read_only_dirs): /proc"),
        "{stdout}"
    );
    assert!(
        stdout.contains("asks for filesystem stats (grant mount points with stat_filesystems)"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"not wasm").unwrap();
    let out = run(&["plugin", "check", bad.to_str().unwrap()]);
    assert!(!out.status.success());

    std::fs::copy(
        built_plugins().join("node-exporter.wasm"),
        dir.path().join("node-exporter.wasm"),
    )
    .unwrap();
    let out = run(&[
        "plugin",
        "list",
        "--plugins.dir",
        dir.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("node-exporter") && stdout.contains("exporter"),
        "{stdout}"
    );
    assert!(
        stdout.contains("bad") && stdout.contains("error:"),
        "{stdout}"
    );
    assert!(!out.status.success(), "a broken file makes list fail");
}

#[test]
fn http_sd_discoverer_feeds_scrape_targets() {
    let target = TestTarget::start(Reply::text(
        "# TYPE discovered_metric gauge\ndiscovered_metric 42\n",
    ));
    let sd = capture(
        "application/json",
        format!(
            "[{{\"targets\": [\"{}\"], \"labels\": {{\"team\": \"a\"}}}}]",
            target.addr
        ),
    );
    let setup = Setup::new();
    install(&setup, "http-sd");
    setup.write_config(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sd\n    plugin_sd_configs:\n      - name: http-sd\n        config: {{url: 'http://{}/targets'}}\n        allow_hosts: ['{}']\n        refresh_interval: 1s\n    relabel_configs:\n      - source_labels: [__meta_url]\n        target_label: sd_url\n",
        sd.addr, sd.addr
    ));
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    target.wait_hits(1);
    wait_for("discovered series", &ember, || {
        query_one(&ember, "discovered_metric{team=\"a\",job=\"sd\"}") == Some(42.0)
    });
    let url = format!("http://{}/targets", sd.addr);
    wait_for("relabeled __meta_url", &ember, || {
        query_one(&ember, &format!("up{{sd_url=\"{url}\"}}")) == Some(1.0)
    });
}

#[test]
fn node_exporter_plugin_matches_node_exporter() {
    if !require_program("prometheus-node-exporter", "prometheus-node-exporter") {
        return;
    }
    let port = free_port();
    let _exporter = KillOnDrop(
        std::process::Command::new("prometheus-node-exporter")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let setup = Setup::new();
    install(&setup, "node-exporter");
    setup.write_config(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: node\n    plugin:\n      name: node-exporter\n      read_only_dirs: [/proc]\n      stat_filesystems: [/]\n",
    );
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    wait_for("node_memory_MemTotal_bytes", &ember, || {
        query_one(&ember, "node_memory_MemTotal_bytes").is_some()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let real = loop {
        if let Ok(r) = get(&format!("http://127.0.0.1:{port}/metrics")) {
            break r.body;
        }
        assert!(Instant::now() < deadline, "node_exporter did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let real_value = |name: &str| -> f64 {
        real.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in node_exporter output"))
    };
    // Constants match exactly.
    for name in [
        "node_memory_MemTotal_bytes",
        "node_memory_SwapTotal_bytes",
        "node_boot_time_seconds",
    ] {
        assert_eq!(query_one(&ember, name), Some(real_value(name)), "{name}");
    }
    // Gauges and counters are close.
    let load = query_one(&ember, "node_load15").unwrap();
    assert!(
        (load - real_value("node_load15")).abs() < 1.0,
        "node_load15 {load}"
    );
    let ours = query_one(&ember, "sum(node_cpu_seconds_total{mode=\"idle\"})").unwrap();
    let theirs: f64 = real
        .lines()
        .filter(|l| l.starts_with("node_cpu_seconds_total{") && l.contains("mode=\"idle\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        (ours - theirs).abs() / theirs.max(1.0) < 0.05,
        "idle {ours} vs {theirs}"
    );
    // Network counters: node_exporter's devices (it leaves out lo, and so
    // does the plugin), with values scraped a moment apart.
    let theirs: Vec<(String, f64)> = real
        .lines()
        .filter_map(|l| l.strip_prefix("node_network_receive_packets_total{device=\""))
        .filter_map(|l| {
            let (device, rest) = l.split_once('"')?;
            Some((device.to_owned(), rest.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    assert!(!theirs.is_empty(), "node_exporter exports network devices");
    let (_, ours_devices) = get_json(&ember.url(&format!(
        "/api/v1/query?query={}",
        enc("node_network_receive_packets_total")
    )));
    assert_eq!(
        ours_devices["data"]["result"].as_array().map(Vec::len),
        Some(theirs.len()),
        "{ours_devices}"
    );
    for (device, value) in &theirs {
        let ours = query_one(
            &ember,
            &format!("node_network_receive_packets_total{{device=\"{device}\"}}"),
        )
        .unwrap();
        assert!(
            (ours - value).abs() <= value * 0.05 + 1000.0,
            "{device} packets {ours} vs {value}"
        );
    }
    // Disk counters: the same devices (node_exporter's default exclusions)
    // and close values.
    let theirs: Vec<(String, f64)> = real
        .lines()
        .filter_map(|l| l.strip_prefix("node_disk_reads_completed_total{device=\""))
        .filter_map(|l| {
            let (device, rest) = l.split_once('"')?;
            Some((device.to_owned(), rest.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    for (device, value) in &theirs {
        let ours = query_one(
            &ember,
            &format!("node_disk_reads_completed_total{{device=\"{device}\"}}"),
        )
        .unwrap_or_else(|| panic!("no node_disk_reads_completed_total for {device}"));
        assert!(
            (ours - value).abs() <= value * 0.05 + 1000.0,
            "{device} reads {ours} vs {value}"
        );
    }
    // Filesystems: the same mount points (Debian's default exclusions),
    // sizes and inode totals exact, free space close (it moves).
    let fs_series = |name: &str| -> Vec<(String, f64)> {
        real.lines()
            .filter_map(|l| l.strip_prefix(&format!("{name}{{")))
            .filter_map(|l| {
                let (labels, value) = l.rsplit_once("} ")?;
                Some((labels.to_owned(), value.parse().ok()?))
            })
            .collect()
    };
    let sizes = fs_series("node_filesystem_size_bytes");
    assert!(!sizes.is_empty(), "node_exporter reports filesystems");
    for name in [
        "node_filesystem_size_bytes",
        "node_filesystem_files",
        "node_filesystem_readonly",
        "node_filesystem_device_error",
        "node_filesystem_free_bytes",
        "node_filesystem_avail_bytes",
        "node_filesystem_files_free",
    ] {
        let theirs = fs_series(name);
        let (_, ours_all) = get_json(&ember.url(&format!("/api/v1/query?query={}", enc(name))));
        assert_eq!(
            ours_all["data"]["result"].as_array().map(Vec::len),
            Some(theirs.len()),
            "{name}: {ours_all}"
        );
        for (labels, value) in &theirs {
            let ours = query_one(&ember, &format!("{name}{{{labels}}}"))
                .unwrap_or_else(|| panic!("no {name}{{{labels}}}"));
            let exact = matches!(
                name,
                "node_filesystem_size_bytes"
                    | "node_filesystem_files"
                    | "node_filesystem_readonly"
                    | "node_filesystem_device_error"
            );
            if exact {
                assert_eq!(ours, *value, "{name}{{{labels}}}");
            } else {
                assert!(
                    (ours - value).abs() <= value * 0.01 + 64.0 * 1024.0 * 1024.0,
                    "{name}{{{labels}}} {ours} vs {value}"
                );
            }
        }
    }

    // Every series name the plugin exports under node_memory_ is one
    // node_exporter exports too.
    let (_, names) = get_json(&ember.url("/api/v1/label/__name__/values"));
    for name in names["data"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        if name.starts_with("node_memory_")
            || name.starts_with("node_load")
            || name.starts_with("node_network_")
            || (name.starts_with("node_disk_") && name != "node_disk_info")
            || name.starts_with("node_filesystem_")
        {
            assert!(
                real.contains(&format!("\n{name} ")) || real.contains(&format!("\n{name}{{")),
                "{name} not exported by node_exporter"
            );
        }
    }
}

#[test]
fn reload_picks_up_new_changed_and_broken_plugins() {
    let setup = Setup::new();
    std::fs::create_dir_all(setup.path().join("plugins")).unwrap();
    setup.write_config(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: h\n    plugin:\n      name: hostile\n",
    );
    let mut ember = setup.start(&["--web.enable-lifecycle"]);
    ember.wait_ready();
    wait_for("up 0 without the plugin", &ember, || {
        query_one(&ember, "up{job=\"h\"}") == Some(0.0)
    });

    install(&setup, "hostile");
    assert_eq!(reload(&ember), 200);
    wait_for("the dropped-in plugin", &ember, || {
        query_one(&ember, "hostile_ok") == Some(1.0)
    });

    // A changed file (here another exporter under the same name) is picked
    // up by SIGHUP as well.
    let file = setup.path().join("plugins/hostile.wasm");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/plugins/custom-exporter-0.1.0.wasm"),
        &file,
    )
    .unwrap();
    ember.signal(libc::SIGHUP);
    wait_for("the changed plugin", &ember, || {
        query_one(&ember, "hello_scrapes_total{job=\"h\"}").is_some_and(|v| v >= 1.0)
    });
    let (_, body) = get_json(&ember.url("/api/v1/status/plugins"));
    assert_eq!(body["data"][0]["version"], "0.1.0", "{body}");
    assert_eq!(
        body["data"][0]["description"], "Counts its scrapes",
        "{body}"
    );

    // A broken replacement is reported; the previous version keeps running.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&file, b"\0asm broken").unwrap();
    assert_eq!(reload(&ember), 200);
    let (_, body) = get_json(&ember.url("/api/v1/status/plugins"));
    let entry = &body["data"][0];
    assert_eq!(entry["name"], "hostile");
    assert!(
        entry["loadError"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(
        ember
            .metric("ember_plugin_load_errors_total")
            .unwrap_or(0.0)
            >= 1.0
    );
    let before = ember.metric("ember_plugin_calls_total").unwrap_or(0.0);
    wait_for("calls go on", &ember, || {
        ember.metric("ember_plugin_calls_total").unwrap_or(0.0) > before + 1.0
    });
    assert_eq!(query_one(&ember, "up{job=\"h\"}"), Some(1.0));
    let scrapes = query_one(&ember, "hello_scrapes_total{job=\"h\"}").unwrap();
    wait_for("the previous version still scraped", &ember, || {
        query_one(&ember, "hello_scrapes_total{job=\"h\"}").is_some_and(|v| v > scrapes)
    });

    // Removing the file unloads it; the job's scrapes then fail.
    std::fs::remove_file(&file).unwrap();
    assert_eq!(reload(&ember), 200);
    let (_, body) = get_json(&ember.url("/api/v1/status/plugins"));
    assert_eq!(body["data"].as_array().map(Vec::len), Some(0), "{body}");
    wait_for("up 0 after removal", &ember, || {
        query_one(&ember, "up{job=\"h\"}") == Some(0.0)
    });
}

#[test]
fn quickstart_config_and_custom_exporter_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = run(&[
        "check",
        "config",
        root.join("examples/quickstart/ember.yml").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The example builds the way its README says and loads as an exporter.
    let target = Path::new(EMBER)
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("plugins");
    let status = std::process::Command::new("cargo")
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
        .current_dir(root.join("examples/custom-exporter"))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(status.success());
    let wasm = target.join("wasm32-wasip2/release/custom_exporter.wasm");
    let out = run(&["plugin", "check", wasm.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ember:plugin/exporter@0.1.1"), "{stdout}");
}

/// A component built against `ember:plugin@0.1.0` (the custom exporter
/// example as of that version, checked in) still loads and scrapes.
#[test]
fn plugins_built_against_0_1_0_still_load() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/plugins/custom-exporter-0.1.0.wasm");
    let out = run(&["plugin", "check", fixture.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("ember:plugin/exporter@0.1.0"), "{stdout}");
    assert!(stdout.contains("ember:plugin/host@0.1.0"), "{stdout}");

    let setup = Setup::new();
    let dir = setup.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&fixture, dir.join("custom-exporter.wasm")).unwrap();
    setup.write_config(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: old\n    plugin:\n      name: custom-exporter\n      config: {greeting: hi}\n",
    );
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    wait_for("the 0.1.0 plugin's samples", &ember, || {
        query_one(&ember, "hello_info{greeting=\"hi\",job=\"old\"}") == Some(1.0)
    });
}

#[test]
fn compiled_plugins_are_cached_across_restarts() {
    let setup = Setup::new();
    install(&setup, "hostile");
    setup.write_config(MINIMAL_CONFIG);
    let mut first = setup.start(&[]);
    first.wait_ready();
    assert!(first.logs().contains("cached=false"), "{}", first.logs());
    drop(first);
    let cache = setup.data_dir().join("plugins-cache");
    let files: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert_eq!(
        files.len(),
        1,
        "one compiled component in {}",
        cache.display()
    );

    let mut second = setup.start(&[]);
    second.wait_ready();
    assert!(second.logs().contains("cached=true"), "{}", second.logs());
    drop(second);

    // The key is the content: a changed file under the same name is
    // compiled again and cached next to the first.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/plugins/custom-exporter-0.1.0.wasm"),
        setup.path().join("plugins/hostile.wasm"),
    )
    .unwrap();
    let mut third = setup.start(&[]);
    third.wait_ready();
    assert!(third.logs().contains("cached=false"), "{}", third.logs());
    drop(third);
    let files: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert_eq!(files.len(), 2, "two compiled components");
}

/// Runs `ember plugin notify-test` for a notifier with `config` (the
/// plugin's own config as YAML flow mapping) against a capture server and
/// returns the JSON it received.
fn notify_through(plugin: &str, config: &str, hook: &Capture) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("notifier.yml");
    std::fs::write(
        &cfg,
        format!("config: {config}\nallow_hosts: ['{}']\n", hook.addr),
    )
    .unwrap();
    let wasm = built_plugins().join(format!("{plugin}.wasm"));
    let out = run(&[
        "plugin",
        "notify-test",
        wasm.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = hook
        .bodies
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("a request");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn slack_and_pagerduty_notifiers() {
    let hook = capture("application/json", "{\"status\":\"success\"}".into());
    let slack = notify_through(
        "slack",
        &format!(
            "{{url: 'http://{}/services/x', channel: '#ops'}}",
            hook.addr
        ),
        &hook,
    );
    assert_eq!(slack["channel"], "#ops");
    let text = slack["text"].as_str().unwrap();
    assert!(text.starts_with("[FIRING:1] EmberNotifyTest"), "{text}");

    let pd = notify_through(
        "pagerduty",
        &format!(
            "{{routing_key: abc, severity: warning, url: 'http://{}/v2/enqueue'}}",
            hook.addr
        ),
        &hook,
    );
    assert_eq!(pd["routing_key"], "abc");
    assert_eq!(pd["event_action"], "trigger");
    assert_eq!(pd["payload"]["severity"], "warning");
    assert_eq!(
        pd["payload"]["summary"],
        "A test alert sent by `ember plugin notify-test`."
    );
    assert!(pd["dedup_key"].as_str().is_some_and(|k| !k.is_empty()));
}

/// A DNS server on loopback answering every query with SRV records
/// `(port, target)`.
fn fake_dns(records: Vec<(u16, &'static str)>) -> String {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                return;
            };
            if n < 12 {
                continue;
            }
            let query = &buf[..n];
            let mut r = Vec::new();
            r.extend_from_slice(&query[..2]);
            r.extend_from_slice(&[0x81, 0x80, 0, 1]);
            r.extend_from_slice(&(records.len() as u16).to_be_bytes());
            r.extend_from_slice(&[0, 0, 0, 0]);
            r.extend_from_slice(&query[12..]);
            for (port, target) in &records {
                let mut name = Vec::new();
                for label in target.split('.') {
                    name.push(label.len() as u8);
                    name.extend_from_slice(label.as_bytes());
                }
                name.push(0);
                r.extend_from_slice(&[0xC0, 12, 0, 33, 0, 1, 0, 0, 0, 60]);
                r.extend_from_slice(&((6 + name.len()) as u16).to_be_bytes());
                r.extend_from_slice(&[0, 10, 0, 5]);
                r.extend_from_slice(&port.to_be_bytes());
                r.extend_from_slice(&name);
            }
            let _ = socket.send_to(&r, from);
        }
    });
    addr
}

#[test]
fn dns_sd_discoverer_resolves_srv_records_on_the_allow_list() {
    let target = TestTarget::start(Reply::text("# TYPE srv_metric gauge\nsrv_metric 7\n"));
    let port: u16 = target.addr.rsplit(':').next().unwrap().parse().unwrap();
    let dns = fake_dns(vec![(port, "127.0.0.1")]);
    let setup = Setup::new();
    install(&setup, "dns-sd");
    let job = |name: &str, allow: &str| {
        format!(
            "  - job_name: {name}\n    plugin_sd_configs:\n      - name: dns-sd\n        config: {{names: [_metrics._tcp.test.local]}}\n        allow_hosts: ['{allow}']\n        dns_server: '{dns}'\n        refresh_interval: 1s\n    relabel_configs:\n      - source_labels: [__meta_dns_srv_record_port]\n        target_label: srv_port\n"
        )
    };
    setup.write_config(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n{}{}",
        job("dns", "*.test.local"),
        job("denied", "other.local")
    ));
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    wait_for("the SRV target's series", &ember, || {
        query_one(
            &ember,
            &format!("srv_metric{{job=\"dns\",srv_port=\"{port}\"}}"),
        ) == Some(7.0)
    });
    wait_for("a refused lookup", &ember, || {
        errors(&ember, "dns-sd", "forbidden_host") >= 1.0
    });
    assert_eq!(query_one(&ember, "count(up{job=\"denied\"})"), None);
}

/// An exporter plugin's families take the scrape path without text in
/// between: metric_relabel_configs, sample_limit, the scrape_* series,
/// metadata, and stale markers when the job goes away.
#[test]
fn exporter_plugin_output_takes_the_scrape_path() {
    let setup = Setup::new();
    install(&setup, "hostile");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/plugins/custom-exporter-0.1.0.wasm"),
        setup.path().join("plugins/custom-exporter.wasm"),
    )
    .unwrap();
    let jobs = [
        "global:",
        "  scrape_interval: 1s",
        "scrape_configs:",
        "  - job_name: relabeled",
        "    plugin:",
        "      name: custom-exporter",
        "      config: {greeting: hi}",
        "    metric_relabel_configs:",
        "      - source_labels: [greeting]",
        "        target_label: salutation",
        "      - regex: greeting",
        "        action: labeldrop",
        "      - source_labels: [__name__]",
        "        regex: hello_scrapes_total",
        "        action: drop",
        "  - job_name: limited",
        "    sample_limit: 5",
        "    plugin:",
        "      name: hostile",
        "      config: {mode: huge, count: 10}",
        "",
    ]
    .join("\n");
    let within = "  - job_name: within\n    sample_limit: 10\n    plugin:\n      name: hostile\n      config: {mode: huge, count: 10}\n";
    setup.write_config(&format!("{jobs}{within}"));
    let mut ember = setup.start(&["--web.enable-lifecycle"]);
    ember.wait_ready();

    wait_for("relabeled series", &ember, || {
        query_one(
            &ember,
            "hello_info{salutation=\"hi\",job=\"relabeled\",instance=\"custom-exporter\"}",
        ) == Some(1.0)
    });
    assert_eq!(
        query_one(&ember, "count(hello_info{greeting=\"hi\"})"),
        None
    );
    assert_eq!(query_one(&ember, "count(hello_scrapes_total)"), None);
    assert_eq!(
        query_one(&ember, "scrape_samples_scraped{job=\"relabeled\"}"),
        Some(2.0)
    );
    assert_eq!(
        query_one(
            &ember,
            "scrape_samples_post_metric_relabeling{job=\"relabeled\"}"
        ),
        Some(1.0)
    );

    wait_for("the sample limit", &ember, || {
        query_one(&ember, "up{job=\"limited\"}") == Some(0.0)
    });
    let (_, targets) = get_json(&ember.url("/api/v1/targets"));
    let limited = targets["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["labels"]["job"] == "limited")
        .cloned()
        .unwrap();
    assert!(
        limited["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("sample limit exceeded")),
        "{limited}"
    );
    wait_for("the job within its limit", &ember, || {
        query_one(&ember, "count(hostile_huge{job=\"within\"})") == Some(10.0)
    });
    assert_eq!(
        query_one(&ember, "count(hostile_huge{job=\"limited\"})"),
        None
    );

    // HELP and TYPE reach the metadata API.
    let (_, meta) = get_json(&ember.url("/api/v1/metadata?metric=hello_info"));
    assert_eq!(meta["data"]["hello_info"][0]["type"], "gauge", "{meta}");
    assert_eq!(
        meta["data"]["hello_info"][0]["help"], "The configured greeting.",
        "{meta}"
    );

    // Removing the job marks its series stale at once.
    setup.write_config(&jobs);
    assert_eq!(reload(&ember), 200);
    wait_for("stale markers", &ember, || {
        query_one(&ember, "count(hostile_huge)").is_none()
    });
}

/// `filesystem-stats` answers only for granted mount points: without a
/// grant the node exporter reports the mount with device_error 1.
#[test]
fn filesystem_stats_only_for_granted_mount_points() {
    let setup = Setup::new();
    install(&setup, "node-exporter");
    let job = |name: &str, grant: &str| {
        format!(
            "  - job_name: {name}\n    plugin:\n      name: node-exporter\n      read_only_dirs: [/proc]\n{grant}      config: {{collectors: [filesystem], mount_points_exclude: [], fs_types_exclude: []}}\n"
        )
    };
    setup.write_config(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n{}{}",
        job("granted", "      stat_filesystems: [/]\n"),
        job("ungranted", "      stat_filesystems: [/nonexistent]\n"),
    ));
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    wait_for("the granted root", &ember, || {
        query_one(
            &ember,
            "node_filesystem_device_error{job=\"granted\",mountpoint=\"/\"}",
        ) == Some(0.0)
    });
    assert!(
        query_one(
            &ember,
            "node_filesystem_size_bytes{job=\"granted\",mountpoint=\"/\"}"
        )
        .is_some_and(|v| v > 0.0)
    );
    wait_for("the ungranted root", &ember, || {
        query_one(
            &ember,
            "node_filesystem_device_error{job=\"ungranted\",mountpoint=\"/\"}",
        ) == Some(1.0)
    });
    assert_eq!(
        query_one(
            &ember,
            "count(node_filesystem_size_bytes{job=\"ungranted\",mountpoint!~\"/proc(/.*)?\"})"
        ),
        None,
        "only mounts under the granted /proc are stat'ed"
    );
    // A failed stat is the plugin's business (device_error), not a failed call.
    assert_eq!(query_one(&ember, "up{job=\"ungranted\"}"), Some(1.0));
}
