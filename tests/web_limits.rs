//! Request limits with the real binary: oversized bodies (announced by
//! `Content-Length` or sent chunked) get 413 with a message on every write
//! endpoint of both listeners, malformed requests get 4xx, connections beyond `--web.max-connections` wait, idle and slow
//! connections are closed after `--web.read-timeout`, and through a flood
//! of all of these the server keeps answering a well-behaved client.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::*;

/// Sends `head` (and `body`) on a fresh connection; the status line's code
/// and the rest of the answer. `None` when the server closed without one.
fn raw(port: u16, head: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    s.write_all(head.as_bytes()).ok()?;
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.split(' ').nth(1)?.parse().ok()?;
    Some((code, text))
}

/// A POST announcing `len` bytes of body, of which none is sent: a limit
/// that holds answers without waiting for them.
fn announce(port: u16, path: &str, content_type: &str, len: usize) -> Option<(u16, String)> {
    raw(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        ),
        b"",
    )
}

const FORM: &str = "application/x-www-form-urlencoded";

/// A POST whose body of `len` bytes comes chunked, without a length, as a
/// streaming client sends it. The answer is read while the body is still
/// being written, so a server that answers early and hangs up is heard.
fn chunked(port: u16, path: &str, content_type: &str, len: usize) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut w = s.try_clone().ok()?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        w.write_all(head.as_bytes())?;
        let chunk = vec![b'a'; 64 << 10];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            w.write_all(format!("{n:x}\r\n").as_bytes())?;
            w.write_all(&chunk[..n])?;
            w.write_all(b"\r\n")?;
            left -= n;
        }
        w.write_all(b"0\r\n\r\n")
    });
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    // The server may stop reading once it has answered.
    let _ = writer.join();
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.split(' ').nth(1)?.parse().ok()?;
    Some((code, text))
}

#[test]
fn oversized_bodies_get_413_everywhere() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let push_port = free_port();
    let mut ember = setup.start(&[
        "--web.enable-remote-write-receiver",
        "--web.enable-admin-api",
        &format!("--push.listen-address=127.0.0.1:{push_port}"),
    ]);
    ember.wait_ready();
    let port = ember.port;
    let cases: [(u16, &str, &str, usize, bool); 9] = [
        (
            port,
            "/api/v1/write",
            "application/x-protobuf",
            64 << 20,
            false,
        ),
        (
            port,
            "/api/v1/read",
            "application/x-protobuf",
            4 << 20,
            false,
        ),
        (port, "/api/v1/query", FORM, 10 << 20, true),
        (port, "/api/v1/query_range", FORM, 10 << 20, true),
        (
            port,
            "/api/v1/admin/tsdb/delete_series",
            FORM,
            10 << 20,
            true,
        ),
        (port, "/api/v1/sql", "application/sql", 1 << 20, true),
        (port, "/metrics/job/big", "text/plain", 16 << 20, false),
        (push_port, "/metrics/job/big", "text/plain", 16 << 20, false),
        (
            push_port,
            "/metrics/job/big/instance/x",
            "text/plain",
            16 << 20,
            false,
        ),
    ];
    for (p, path, ct, limit, json) in cases {
        let (code, text) =
            announce(p, path, ct, limit + 1).unwrap_or_else(|| panic!("{path}: no answer"));
        assert_eq!(code, 413, "{path}: {text}");
        let want = format!(
            "request body of {} bytes is larger than the {limit} bytes {path} accepts",
            limit + 1
        );
        assert!(text.contains(&want), "{path}: {text}");
        assert_eq!(
            text.contains(r#""errorType":"bad_data""#),
            json,
            "{path}: {text}"
        );
        // At the limit the body is read (and then judged on its content).
        let small = announce(p, path, ct, 0).expect("answer");
        assert_ne!(small.0, 413, "{path}: {}", small.1);
        // Chunked, without a length: the same answer once the body passes
        // the limit, whatever the handler made of the failed read.
        let (code, text) =
            chunked(p, path, ct, limit + 1).unwrap_or_else(|| panic!("{path}: no chunked answer"));
        assert_eq!(code, 413, "{path} (chunked): {text}");
        let want = format!("request body is larger than the {limit} bytes {path} accepts");
        assert!(text.contains(&want), "{path} (chunked): {text}");
        assert_eq!(
            text.contains(r#""errorType":"bad_data""#),
            json,
            "{path} (chunked): {text}"
        );
        // A chunked body within the limit is read in full.
        let small = chunked(p, path, ct, 16).expect("answer");
        assert_ne!(small.0, 413, "{path} (chunked): {}", small.1);
    }
    let metrics = get(&ember.url("/metrics")).unwrap().body;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ember_http_requests_total{") && l.contains(r#"code="413""#)),
        "{metrics}"
    );
    ember.signal(libc::SIGTERM);
    assert!(ember.wait_exit(Duration::from_secs(20)).success());
}

#[test]
fn malformed_requests_are_refused() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&["--web.enable-remote-write-receiver"]);
    ember.wait_ready();
    let port = ember.port;
    // Not HTTP at all: hyper answers 400 or just closes.
    if let Some((code, text)) = raw(port, "GARBAGE\x00\x01\r\n\r\n", b"") {
        assert_eq!(code, 400, "{text}");
    }
    // A header section far beyond what any client sends.
    let huge = format!(
        "GET /api/v1/query?query=1 HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    if let Some((code, text)) = raw(port, &huge, b"") {
        assert!(code == 431 || code == 400, "{text}");
    }
    // A body shorter than announced, then silence: the read timeout ends it
    // (checked in the flood test); here a bad remote write is a 400.
    let r = post_remote_write(&ember.url("/api/v1/write"), b"\xff\x00 not snappy").unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("snappy"), "{}", r.body);
    let r = post_form(&ember.url("/api/v1/query"), "query=sum(").unwrap();
    assert_eq!(r.status, 400);
    let r = post_form(&ember.url("/api/v1/query"), "query=1&time=x%").unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let (code, _) = get_json(&ember.url("/api/v1/query?query=1"));
    assert_eq!(code, 200);
}

/// Connections that take a slot and never send a request.
fn idle_connections(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect()
}

#[test]
fn connection_limit_and_read_timeout_under_a_flood() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&[
        "--web.enable-remote-write-receiver",
        "--web.max-connections=8",
        "--web.read-timeout=2s",
    ]);
    ember.wait_ready();
    let port = ember.port;
    let (_, flags) = get_json(&ember.url("/api/v1/status/flags"));
    assert_eq!(flags["data"]["web.max-connections"], "8");
    assert_eq!(flags["data"]["web.read-timeout"], "2s");

    // Every slot held by a client that says nothing: a new request waits
    // until the read timeout frees them, then is served.
    let idle = idle_connections(port, 8);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let r = get(&ember.url("/-/healthy")).expect("served once slots free up");
    assert_eq!(r.status, 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1000) && waited < Duration::from_secs(8),
        "waited {waited:?}"
    );
    drop(idle);

    // A client trickling its headers a byte at a time is cut off after the
    // read timeout, not served.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    let request = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed = false;
    for b in request.iter().cycle() {
        if slow.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match slow.read(&mut buf) {
            Ok(0) | Err(_) if started.elapsed() > Duration::from_millis(150) => {
                // Ok(0): closed. A timeout error just means nothing yet.
                if matches!(slow.read(&mut buf), Ok(0)) {
                    closed = true;
                    break;
                }
            }
            Ok(n) if n > 0 => panic!("answered a request that never completed"),
            _ => {}
        }
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    assert!(
        closed,
        "slow client still connected after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    // The flood: oversized, malformed and idle clients from many threads,
    // while a well-behaved client keeps querying.
    let stop = Arc::new(AtomicBool::new(false));
    let good = Arc::new(AtomicUsize::new(0));
    let checker = {
        let (stop, good) = (stop.clone(), good.clone());
        let url = ember.url("/api/v1/query?query=1%2B1");
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match get(&url) {
                    Ok(r) if r.status == 200 => {
                        good.fetch_add(1, Ordering::SeqCst);
                    }
                    other => failures.push(format!("{:?}", other.map(|r| (r.status, r.body)))),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            failures
        })
    };
    let flooders: Vec<_> = (0..12)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    match (i + n) % 4 {
                        0 => {
                            let _ = announce(port, "/api/v1/write", "application/x-protobuf", 1 << 30);
                        }
                        1 => {
                            let _ = raw(port, "\x16\x03\x01 not http\r\n\r\n", b"");
                        }
                        2 => {
                            let _ = raw(
                                port,
                                "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\nConnection: close\r\n\r\n",
                                b"\x00garbage!",
                            );
                        }
                        _ => {
                            // Connect and go quiet; the read timeout reaps it.
                            let c = TcpStream::connect(("127.0.0.1", port));
                            std::thread::sleep(Duration::from_millis(300));
                            drop(c);
                        }
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(6));
    stop.store(true, Ordering::SeqCst);
    let sent: usize = flooders.into_iter().map(|h| h.join().unwrap()).sum();
    let failures = checker.join().unwrap();
    assert!(failures.is_empty(), "good client failed: {failures:?}");
    assert!(
        good.load(Ordering::SeqCst) >= 10,
        "good client served {} times",
        good.load(Ordering::SeqCst)
    );
    assert!(sent >= 100, "flood sent only {sent} requests");
    println!(
        "flood: {sent} bad requests in 6 s; good client served {} times",
        good.load(Ordering::SeqCst)
    );
    // At least the first idle slot holder and the trickling client were
    // timed out (the other idle ones may have been closed by us first).
    let timeouts = ember
        .metric("ember_http_read_timeouts_total")
        .unwrap_or(0.0);
    assert!(timeouts >= 2.0, "read timeouts: {timeouts}");
    let accepted = ember
        .metric("ember_http_connections_accepted_total")
        .unwrap_or(0.0);
    assert!(accepted >= sent as f64, "accepted {accepted} of {sent}");
    // And afterwards, as if nothing happened.
    let (code, v) = get_json(&ember.url("/api/v1/query?query=1%2B1"));
    assert_eq!((code, v["data"]["result"][1].as_str()), (200, Some("2")));
    ember.signal(libc::SIGTERM);
    assert!(ember.wait_exit(Duration::from_secs(20)).success());
}
