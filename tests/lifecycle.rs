//! End-to-end tests of the `ember` server's start-up, reload and shutdown,
//! run against the real binary.

mod support;

use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use support::*;

const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

fn start_failure(setup: &Setup, extra: &[&str]) -> (i32, String) {
    let mut ember = setup.start(extra);
    let status = ember.wait_exit(EXIT_TIMEOUT);
    (status.code().unwrap_or(-1), ember.logs())
}

#[test]
fn missing_config_exits_1_and_creates_nothing() {
    let setup = Setup::new();
    let (code, logs) = start_failure(&setup, &[]);
    assert_eq!(code, 1, "{logs}");
    assert!(logs.contains("ember.yml"), "message names the file: {logs}");
    assert!(logs.contains("No such file"), "{logs}");
    assert!(
        !setup.data_dir().exists(),
        "data directory must not be created"
    );
    assert!(!logs.contains("Listening"), "{logs}");
}

#[test]
fn bad_yaml_reports_line_and_column() {
    let setup = Setup::new();
    setup.write_config("global:\n  scrape_interval: [15s\n");
    let (code, logs) = start_failure(&setup, &[]);
    assert_eq!(code, 1, "{logs}");
    let file = setup.path().join("ember.yml");
    assert!(
        logs.contains(&format!("{}:3:1", file.display())),
        "file:line:column in {logs}"
    );
    assert!(!setup.data_dir().exists());
}

#[test]
fn unknown_key_is_named_with_position() {
    let setup = Setup::new();
    setup.write_config("global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: x\n    scrape_intervl: 5s\n");
    let (code, logs) = start_failure(&setup, &[]);
    assert_eq!(code, 1, "{logs}");
    assert!(logs.contains("ember.yml:5:5"), "{logs}");
    assert!(logs.contains("unknown field `scrape_intervl`"), "{logs}");
    assert!(!setup.data_dir().exists());
}

#[test]
fn port_in_use_is_named() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let (code, logs) = start_failure(&setup, &[&format!("--web.listen-address={addr}")]);
    assert_eq!(code, 1, "{logs}");
    assert!(logs.contains(&addr), "names the address: {logs}");
    assert!(logs.contains("Address already in use"), "{logs}");
}

#[test]
fn address_not_on_this_host_is_named() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    // TEST-NET-1: never assigned to a local interface, so bind fails at once
    // (nothing is sent anywhere).
    let (code, logs) = start_failure(&setup, &["--web.listen-address=192.0.2.1:9090"]);
    assert_eq!(code, 1, "{logs}");
    assert!(logs.contains("192.0.2.1:9090"), "{logs}");
}

#[test]
fn second_instance_on_same_data_dir_fails_and_first_survives() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut first = setup.start(&[]);
    first.wait_ready();
    let (code, logs) = start_failure(&setup, &[]);
    assert_eq!(code, 1, "{logs}");
    assert!(logs.contains("is locked by another process"), "{logs}");
    assert!(
        logs.contains(&format!("pid {}", first.child.id())),
        "{logs}"
    );
    assert_eq!(get(&first.url("/-/healthy")).unwrap().status, 200);
    assert_eq!(get(&first.url("/-/ready")).unwrap().status, 200);
}

#[test]
fn lifecycle_endpoints_need_the_flag() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    let healthy = get(&ember.url("/-/healthy")).unwrap();
    assert_eq!(healthy.status, 200);
    assert_eq!(get(&ember.url("/-/ready")).unwrap().status, 200);
    for path in ["/-/reload", "/-/quit"] {
        assert_eq!(post(&ember.url(path)).unwrap().status, 403, "POST {path}");
        assert_eq!(put(&ember.url(path)).unwrap().status, 403, "PUT {path}");
        assert_eq!(get(&ember.url(path)).unwrap().status, 405, "GET {path}");
    }
    // Still running after a refused quit.
    assert_eq!(get(&ember.url("/-/healthy")).unwrap().status, 200);
}

#[test]
fn reload_good_and_bad_over_http_and_sighup() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--web.enable-lifecycle"]);
    ember.wait_ready();
    assert_eq!(
        ember.metric("ember_config_last_reload_successful"),
        Some(1.0)
    );

    setup.write_config("global:\n  scrape_interval: 30s\n");
    let r = post(&ember.url("/-/reload")).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        ember.metric("ember_config_last_reload_successful"),
        Some(1.0)
    );

    setup.write_config("global:\n  scrape_interval: 30s\n  bogus: 1\n");
    let r = post(&ember.url("/-/reload")).unwrap();
    assert_eq!(r.status, 500);
    assert!(r.body.contains("ember.yml:3:3"), "{}", r.body);
    assert!(r.body.contains("bogus"), "{}", r.body);
    assert_eq!(
        ember.metric("ember_config_last_reload_successful"),
        Some(0.0)
    );
    assert_eq!(
        get(&ember.url("/-/ready")).unwrap().status,
        200,
        "old config keeps running"
    );
    assert!(ember.logs().contains("keeping the previous configuration"));

    // SIGHUP with a fixed file recovers.
    setup.write_config(MINIMAL_CONFIG);
    ember.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ember.metric("ember_config_last_reload_successful") != Some(1.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP reload did not succeed: {}",
            ember.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And SIGHUP with a bad file fails the same way, without stopping the server.
    setup.write_config("scrape_configs: nope\n");
    ember.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ember.metric("ember_config_last_reload_successful") != Some(0.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "bad SIGHUP reload not reported: {}",
            ember.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(&ember.url("/-/healthy")).unwrap().status, 200);
}

#[test]
fn quit_endpoint_stops_the_server() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--web.enable-lifecycle"]);
    ember.wait_ready();
    let r = post(&ember.url("/-/quit")).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        ember.wait_exit(EXIT_TIMEOUT).code(),
        Some(0),
        "{}",
        ember.logs()
    );
}

#[test]
fn sigterm_and_sigint_shut_down_cleanly_and_release_the_lock() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let setup = Setup::new();
        setup.write_config(MINIMAL_CONFIG);
        let mut ember = setup.start(&[]);
        ember.wait_ready();
        ember.signal(sig);
        assert_eq!(
            ember.wait_exit(EXIT_TIMEOUT).code(),
            Some(0),
            "{}",
            ember.logs()
        );
        // The data directory can be opened again straight away.
        let mut again = setup.start(&[]);
        again.wait_ready();
    }
}

#[test]
fn metrics_endpoint_exposes_own_metrics() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    get(&ember.url("/-/healthy")).unwrap();
    let r = get(&ember.url("/metrics")).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        r.content_type
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "ember_build_info{",
        "ember_config_last_reload_successful 1",
        "ember_config_last_reload_success_timestamp_seconds",
        "ember_ready 1",
        "ember_http_requests_total{code=\"200\",handler=\"/-/healthy\"}",
        "ember_http_request_duration_seconds_bucket{handler=\"/-/healthy\"",
    ] {
        assert!(r.body.contains(name), "missing {name} in:\n{}", r.body);
    }
}

#[test]
fn route_prefix_moves_every_endpoint() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--web.external-url=http://proxy.example/ember/"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while get(&ember.url("/ember/-/ready"))
        .map(|r| r.status)
        .unwrap_or(0)
        != 200
    {
        assert!(std::time::Instant::now() < deadline, "{}", ember.logs());
        assert!(
            ember.child.try_wait().unwrap().is_none(),
            "{}",
            ember.logs()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(get(&ember.url("/ember/metrics")).unwrap().status, 200);
    assert_eq!(get(&ember.url("/ember/")).unwrap().status, 200);
    assert_eq!(get(&ember.url("/-/healthy")).unwrap().status, 404);
    // `/` redirects to the prefix and on to the UI's query page (followed
    // by the client), whose asset URLs resolve under the prefix.
    let root = get(&ember.url("/")).unwrap();
    assert_eq!(root.status, 200);
    assert!(
        root.body.contains("<base href=\"/ember/\""),
        "{}",
        root.body
    );
    assert_eq!(get(&ember.url("/ember/targets")).unwrap().status, 200);
    assert_eq!(get(&ember.url("/targets")).unwrap().status, 404);
}

#[test]
fn json_logs_are_json() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--log.format=json"]);
    ember.wait_ready();
    ember.signal(libc::SIGTERM);
    ember.wait_exit(EXIT_TIMEOUT);
    let logs = ember.logs();
    assert!(!logs.is_empty());
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["time", "level", "msg"] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
    }
}

#[test]
fn logfmt_logs_have_level_and_msg() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--log.level=debug"]);
    ember.wait_ready();
    let logs = ember.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("Server is ready"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(line.starts_with("time="), "{line}");
    assert!(
        line.contains(" level=INFO msg=\"Server is ready to receive web requests.\""),
        "{line}"
    );
}

#[test]
fn version_and_help() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("ember {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );

    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config.file",
        "--storage.tsdb.path",
        "--storage.tsdb.retention.time",
        "--storage.tsdb.retention.size",
        "--web.listen-address",
        "--web.external-url",
        "--web.route-prefix",
        "--web.enable-lifecycle",
        "--web.enable-admin-api",
        "--web.enable-remote-write-receiver",
        "--query.timeout",
        "--query.max-samples",
        "--query.lookback-delta",
        "--log.level",
        "--log.format",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
    let out = run(&["--no-such-flag"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "flag errors exit 2 as in Prometheus"
    );
}

/// Reads datagrams from a NOTIFY_SOCKET until one contains `want`.
fn expect_notify(sock: &UnixDatagram, want: &str, seen: &mut Vec<String>) {
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = msg.lines().any(|l| l == want);
                seen.push(msg);
                if hit {
                    return;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("recv: {e}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {want} in {seen:?}"
        );
    }
}

#[test]
fn systemd_notify_ready_reloading_stopping() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let sock_path = setup.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut ember = setup.start_with(&[], |cmd| {
        cmd.env("NOTIFY_SOCKET", &sock_path);
    });
    let mut seen = Vec::new();
    expect_notify(&sock, "READY=1", &mut seen);
    // READY=1 is only sent once /-/ready answers 200.
    assert_eq!(get(&ember.url("/-/ready")).unwrap().status, 200);

    ember.signal(libc::SIGHUP);
    expect_notify(&sock, "RELOADING=1", &mut seen);
    assert!(seen.last().unwrap().contains("MONOTONIC_USEC="), "{seen:?}");
    expect_notify(&sock, "READY=1", &mut seen);

    ember.signal(libc::SIGTERM);
    expect_notify(&sock, "STOPPING=1", &mut seen);
    assert_eq!(ember.wait_exit(EXIT_TIMEOUT).code(), Some(0));
}
