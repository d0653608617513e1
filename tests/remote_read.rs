//! `/api/v1/read`: Prometheus 2.42 with `remote_read` pointing at Ember
//! answers queries over data only Ember has; streamed XOR chunks are
//! framed as Prometheus frames them, and the chunk bytes are Prometheus's
//! own (compared with a block promtool writes).

mod support;

use std::time::{Duration, Instant};

use ember::model::Sample;
use ember::remote::proto::{self, ReadRequest, ResponseType};
use prost::Message;
use support::*;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn read_request(types: &[ResponseType], start: i64, end: i64) -> Vec<u8> {
    let req = ReadRequest {
        queries: vec![proto::Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: vec![proto::LabelMatcher {
                r#type: proto::MatcherType::Eq as i32,
                name: "__name__".into(),
                value: "ember_only".into(),
            }],
            hints: None,
        }],
        accepted_response_types: types.iter().map(|t| *t as i32).collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

fn post_bytes(url: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .send(body)
        .unwrap();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status().as_u16(), ct, r.body_mut().read_to_vec().unwrap())
}

#[test]
fn samples_and_streamed_answers() {
    let setup = Setup::new();
    setup.write_config("global:\n  external_labels: {site: ember1}\n");
    let mut ember = setup.start(&["--web.enable-remote-write-receiver"]);
    ember.wait_ready();
    let samples: Vec<(i64, f64)> = (0..300).map(|i| (1_000_000 + i * 1000, i as f64)).collect();
    write_series(
        &ember,
        &[(&[("__name__", "ember_only"), ("job", "x")], &samples)],
    );
    let url = ember.url("/api/v1/read");

    let (status, ct, body) = post_bytes(&url, &read_request(&[], 1_000_000, 1_099_000));
    assert_eq!(status, 200);
    assert_eq!(ct, "application/x-protobuf");
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let resp = proto::ReadResponse::decode(raw.as_slice()).unwrap();
    let ts = &resp.results[0].timeseries;
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0].samples.len(), 100);
    let labels: Vec<_> = ts[0]
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    assert_eq!(
        labels,
        [("__name__", "ember_only"), ("job", "x"), ("site", "ember1")]
    );

    let (status, ct, body) = post_bytes(
        &url,
        &read_request(
            &[ResponseType::StreamedXorChunks, ResponseType::Samples],
            0,
            i64::MAX,
        ),
    );
    assert_eq!(status, 200);
    assert_eq!(
        ct,
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
    );
    // One frame: uvarint length, big-endian CRC32C, message.
    let (mut len, mut i, mut shift) = (0usize, 0usize, 0);
    loop {
        let b = body[i];
        len |= ((b & 0x7f) as usize) << shift;
        i += 1;
        shift += 7;
        if b < 0x80 {
            break;
        }
    }
    let msg = &body[i + 4..i + 4 + len];
    assert_eq!(&body[i..i + 4], &crc32c::crc32c(msg).to_be_bytes());
    let frame = proto::ChunkedReadResponse::decode(msg).unwrap();
    let chunks = &frame.chunked_series[0].chunks;
    assert_eq!(chunks.len(), 3, "300 samples in chunks of 120");
    assert_eq!(
        (chunks[0].min_time_ms, chunks[2].max_time_ms),
        (1_000_000, 1_299_000)
    );
    assert!(chunks.iter().all(|c| c.r#type == 1));

    // Garbage is a 400.
    let (status, _, _) = post_bytes(&url, b"\xff\xff garbage");
    assert_eq!(status, 400);
}

/// Frames of a streamed answer: (query index, series labels, chunk count).
fn frames(body: &[u8]) -> Vec<(i64, usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let b = body[i];
            len |= ((b & 0x7f) as usize) << shift;
            i += 1;
            shift += 7;
            if b < 0x80 {
                break;
            }
        }
        let msg = &body[i + 4..i + 4 + len];
        assert_eq!(&body[i..i + 4], &crc32c::crc32c(msg).to_be_bytes());
        let f = proto::ChunkedReadResponse::decode(msg).unwrap();
        assert_eq!(f.chunked_series.len(), 1, "one series per frame");
        out.push((
            f.query_index,
            f.chunked_series[0].labels.len(),
            f.chunked_series[0].chunks.len(),
        ));
        i += 4 + len;
    }
    out
}

#[test]
fn read_limits_as_prometheus() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&[
        "--web.enable-remote-write-receiver",
        "--storage.remote.read-sample-limit=250",
        "--storage.remote.read-max-bytes-in-frame=100",
        "--storage.remote.read-concurrent-limit=1",
    ]);
    ember.wait_ready();
    let samples: Vec<(i64, f64)> = (0..300).map(|i| (1_000_000 + i * 1000, i as f64)).collect();
    write_series(
        &ember,
        &[(&[("__name__", "ember_only"), ("job", "x")], &samples)],
    );
    let url = ember.url("/api/v1/read");
    // 200 samples fit, 300 do not: Prometheus's 400 and message.
    let (status, _, _) = post_bytes(&url, &read_request(&[], 1_000_000, 1_199_000));
    assert_eq!(status, 200);
    let (status, _, body) = post_bytes(&url, &read_request(&[], 0, i64::MAX));
    assert_eq!(status, 400);
    assert_eq!(
        String::from_utf8_lossy(&body).trim(),
        "exceeded sample limit (250)"
    );
    // Streamed answers are not sample-limited; a small frame size splits the
    // series over frames, each with the labels.
    let (status, _, body) = post_bytes(
        &url,
        &read_request(&[ResponseType::StreamedXorChunks], 0, i64::MAX),
    );
    assert_eq!(status, 200);
    assert_eq!(frames(&body), [(0, 2, 1), (0, 2, 1), (0, 2, 1)]);
    // With one slot, concurrent reads wait for each other and all succeed.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || post_bytes(&url, &read_request(&[], 1_000_000, 1_099_000)).0)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
    let (_, flags) = get_json(&ember.url("/api/v1/status/flags"));
    assert_eq!(flags["data"]["storage.remote.read-sample-limit"], "250");
    assert_eq!(flags["data"]["storage.remote.read-concurrent-limit"], "1");
    assert_eq!(
        flags["data"]["storage.remote.read-max-bytes-in-frame"],
        "100"
    );
}

#[test]
fn xor_chunks_match_promtool_blocks() {
    if !require_program("promtool", "prometheus") {
        return;
    }
    let setup = Setup::new();
    // 100 samples with irregular gaps and awkward values, inside one 2h block.
    let start = 1_700_006_400_000i64;
    let mut samples = Vec::new();
    let mut t = start;
    for i in 0..100i64 {
        t += [15_000, 15_001, 14_000, 100_000, 15_000][(i % 5) as usize];
        let v = match i % 4 {
            0 => i as f64 * 1.5,
            1 => -0.25,
            2 => 1e12 / (i as f64 + 3.0),
            _ => 42.0,
        };
        samples.push(Sample { t, v });
    }
    let mut text = String::from("# TYPE xor_check gauge\n");
    for s in &samples {
        text.push_str(&format!(
            "xor_check {} {}.{:03}\n",
            s.v,
            s.t / 1000,
            s.t % 1000
        ));
    }
    text.push_str("# EOF\n");
    let input = setup.path().join("in.om");
    std::fs::write(&input, text).unwrap();
    let out = setup.path().join("blocks");
    let status = std::process::Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let block = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let chunks = std::fs::read(block.join("chunks/000001")).unwrap();
    let ours = ember::remote::xor::encode(&samples);
    assert!(
        chunks.windows(ours.len()).any(|w| w == ours.as_slice()),
        "Ember's XOR chunk is not in promtool's block"
    );
}

#[test]
fn prometheus_remote_reads_from_ember() {
    if !require_program("prometheus", "prometheus") {
        return;
    }
    let setup = Setup::new();
    setup.write_config("global:\n  external_labels: {site: ember1}\n");
    let mut ember = setup.start(&["--web.enable-remote-write-receiver"]);
    ember.wait_ready();
    let t = now_ms();
    let samples: Vec<(i64, f64)> = (0..40)
        .map(|i| (t - 600_000 + i * 15_000, i as f64))
        .collect();
    write_series(
        &ember,
        &[
            (
                &[("__name__", "ember_only"), ("job", "x"), ("instance", "a")],
                &samples,
            ),
            (
                &[("__name__", "ember_only"), ("job", "x"), ("instance", "b")],
                &samples[..10],
            ),
        ],
    );
    let dir = setup.path().join("peer");
    std::fs::create_dir_all(&dir).unwrap();
    let prom = Prometheus::start(
        &dir,
        &format!(
            "global:\n  scrape_interval: 1h\nremote_read:\n  - url: http://127.0.0.1:{}/api/v1/read\n    read_recent: true\n",
            ember.port
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let result = loop {
        let r = prom.query("ember_only");
        if r.as_array().is_some_and(|a| !a.is_empty()) || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Instance b's last sample is older than the 5m lookback.
    let result = result.as_array().expect("result").clone();
    assert_eq!(result.len(), 1, "{result:?}\n{}", prom.logs());
    assert_eq!(
        result[0]["metric"],
        serde_json::json!({"__name__": "ember_only", "job": "x", "instance": "a", "site": "ember1"})
    );
    assert_eq!(result[0]["value"][1], "39");
    let r = prom.query("sum_over_time(ember_only{instance=\"b\"}[20m])");
    assert_eq!(r[0]["value"][1], "45", "{r}");
}
