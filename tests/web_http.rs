//! Cross-cutting HTTP behaviour of the main listener: gzip when asked,
//! CORS on the API (`--web.cors.origin`), and every API route under
//! `--web.route-prefix`.

mod support;

use std::process::Command;

use support::*;

/// `curl -si` with extra arguments; returns (status line + headers, body bytes).
fn curl(args: &[&str]) -> (String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    (
        String::from_utf8_lossy(&raw[..split]).to_lowercase(),
        raw[split + 4..].to_vec(),
    )
}

#[test]
fn gzip_when_accepted() {
    if !require_program("curl", "curl") {
        return;
    }
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    let url = ember.url("/api/v1/status/flags");
    let (head, body) = curl(&["-H", "Accept-Encoding: gzip", &url]);
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert_eq!(&body[..2], &[0x1f, 0x8b], "gzip magic");
    // curl decodes it back to the same JSON.
    let (_, plain) = curl(&["--compressed", &url]);
    let v: serde_json::Value = serde_json::from_slice(&plain).expect("json");
    assert_eq!(v["status"], "success");
    // No Accept-Encoding, no compression.
    let (head, body) = curl(&[&url]);
    assert!(!head.contains("content-encoding"), "{head}");
    assert!(body.starts_with(b"{"));
    // /metrics too, as Prometheus compresses every handler.
    let (head, _) = curl(&["-H", "Accept-Encoding: gzip", &ember.url("/metrics")]);
    assert!(head.contains("content-encoding: gzip"), "{head}");
}

#[test]
fn cors_default_and_restricted() {
    if !require_program("curl", "curl") {
        return;
    }
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    let url = ember.url("/api/v1/query?query=1");
    let (head, _) = curl(&["-H", "Origin: https://grafana.example", &url]);
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert!(
        head.contains("access-control-allow-methods: get, post, options"),
        "{head}"
    );
    assert!(
        head.contains("access-control-allow-headers: accept, authorization, content-type, origin"),
        "{head}"
    );
    assert!(
        head.contains("access-control-expose-headers: date"),
        "{head}"
    );
    assert!(head.contains("vary: origin"), "{head}");
    // Without Origin, no CORS headers.
    let (head, _) = curl(&[&url]);
    assert!(!head.contains("access-control"), "{head}");
    // Preflight.
    let (head, body) = curl(&[
        "-X",
        "OPTIONS",
        "-H",
        "Origin: https://grafana.example",
        &ember.url("/api/v1/query_range"),
    ]);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, br#"{"status":"success","data":null}"#);
    drop(ember);

    let mut ember = setup.start(&[r"--web.cors.origin=https?://(a|b)\.example"]);
    ember.wait_ready();
    let url = ember.url("/api/v1/labels");
    let (head, _) = curl(&["-H", "Origin: https://a.example", &url]);
    assert!(
        head.contains("access-control-allow-origin: https://a.example"),
        "{head}"
    );
    let (head, _) = curl(&["-H", "Origin: https://a.example.evil", &url]);
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    assert!(head.contains("vary: origin"), "{head}");
}

#[test]
fn bad_cors_regex_is_a_flag_error() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--web.cors.origin=("]);
    let status = ember.wait_exit(std::time::Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{}", ember.logs());
}

#[test]
fn api_routes_under_the_route_prefix() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let ember = setup.start(&[
        "--web.external-url=http://proxy.example/ember/",
        "--web.enable-remote-write-receiver",
        "--web.enable-admin-api",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while get(&ember.url("/ember/-/ready"))
        .map(|r| r.status)
        .unwrap_or(0)
        != 200
    {
        assert!(std::time::Instant::now() < deadline, "{}", ember.logs());
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let json_ok = [
        "/api/v1/query?query=1",
        "/api/v1/query_range?query=1&start=0&end=60&step=15",
        "/api/v1/format_query?query=up",
        "/api/v1/parse_query?query=up",
        "/api/v1/series?match[]=up",
        "/api/v1/labels",
        "/api/v1/label/__name__/values",
        "/api/v1/metadata",
        "/api/v1/targets",
        "/api/v1/query_exemplars?query=up",
        "/api/v1/rules",
        "/api/v1/alerts",
        "/api/v1/alertmanagers",
        "/api/v1/status/config",
        "/api/v1/status/flags",
        "/api/v1/status/runtimeinfo",
        "/api/v1/status/buildinfo",
        "/api/v1/status/tsdb",
        "/api/v1/status/walreplay",
    ];
    for path in json_ok {
        let (status, v) = get_json(&ember.url(&format!("/ember{path}")));
        assert_eq!(status, 200, "{path}: {v}");
        assert_eq!(v["status"], "success", "{path}: {v}");
        // And not at the root.
        let r = get(&ember.url(path)).expect("GET");
        assert_eq!(r.status, 404, "{path} answered outside the prefix");
    }
    let r = get(&ember.url("/ember/federate?match[]=up")).expect("GET");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(get(&ember.url("/federate?match[]=up")).unwrap().status, 404);
    // Remote write is mounted there too (an empty body is bad data).
    let r = post_remote_write(&ember.url("/ember/api/v1/write"), b"").expect("POST");
    assert_eq!(r.status, 400, "{}", r.body);
    let r = post_remote_write(&ember.url("/ember/api/v1/read"), b"").expect("POST");
    assert_eq!(r.status, 400, "{}", r.body);
    let r = post(&ember.url("/ember/api/v1/admin/tsdb/clean_tombstones")).expect("POST");
    assert_eq!(r.status, 204, "{}", r.body);
}
