//! The exposition parsers against a real exporter: node_exporter 1.5 from
//! Debian, asked for both formats with the Accept headers Prometheus sends.

mod support;

use std::time::{Duration, Instant};

use ember::model::exposition::{Entry, Format, Parser};
use support::*;

const ACCEPT_OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const ACCEPT_TEXT: &str = "text/plain;version=0.0.4;q=1,*/*;q=0.1";

fn fetch(url: &str, accept: &str) -> (String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut r = agent
        .get(url)
        .header("Accept", accept)
        .call()
        .expect("scrape node_exporter");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (
        ct,
        r.body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .expect("body"),
    )
}

#[test]
fn parses_real_node_exporter_output() {
    if !require_program("prometheus-node-exporter", "prometheus-node-exporter") {
        return;
    }
    let port = free_port();
    let mut exporter = std::process::Command::new("prometheus-node-exporter")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&url).is_err() {
        assert!(Instant::now() < deadline, "node_exporter did not start");
        assert!(
            exporter.try_wait().unwrap().is_none(),
            "node_exporter exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _guard = KillOnDrop(exporter);

    // node_exporter 1.5 only speaks the text format, whatever Prometheus asks for.
    for accept in [ACCEPT_TEXT, ACCEPT_OPENMETRICS] {
        let format = Format::Text;
        let (ct, body) = fetch(&url, accept);
        assert!(ct.starts_with("text/plain"), "{ct}");
        let (mut samples, mut types, mut helps) = (0, 0, 0);
        for entry in Parser::new(&body, format) {
            match entry.unwrap_or_else(|e| panic!("{format:?}: {e}")) {
                Entry::Sample(s) => {
                    let labels = s.labels().unwrap_or_else(|e| panic!("{}: {e}", s.series));
                    assert!(labels.metric_name().is_some());
                    samples += 1;
                }
                Entry::Type { .. } => types += 1,
                Entry::Help { .. } => helps += 1,
                Entry::Unit { .. } => {}
            }
        }
        assert!(samples > 200, "{format:?}: only {samples} samples");
        assert!(
            types > 20 && helps > 20,
            "{format:?}: {types} TYPE, {helps} HELP"
        );
        println!("{format:?}: {samples} samples, {types} families");
    }
}

#[test]
fn parses_official_python_client_openmetrics() {
    if !require_python_module("prometheus_client") {
        return;
    }
    let port = free_port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/interop/openmetrics_app.py");
    let child = std::process::Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&url).is_err() {
        assert!(Instant::now() < deadline, "python app did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ct, body) = fetch(&url, ACCEPT_OPENMETRICS);
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let mut kinds = std::collections::BTreeSet::new();
    let mut exemplars = 0;
    let mut weird_path = false;
    let mut revision = String::new();
    for entry in Parser::new(&body, Format::OpenMetrics) {
        match entry.unwrap_or_else(|e| panic!("{e}\n{body}")) {
            Entry::Type { kind, .. } => {
                kinds.insert(kind.as_str());
            }
            Entry::Sample(s) => {
                let labels = s.labels().unwrap();
                exemplars += usize::from(s.exemplar.is_some());
                weird_path |= labels.get("path") == Some("/weird\npath");
                if let Some(r) = labels.get("revision") {
                    revision = r.to_owned();
                }
            }
            _ => {}
        }
    }
    for kind in [
        "counter",
        "histogram",
        "gauge",
        "summary",
        "info",
        "stateset",
    ] {
        assert!(kinds.contains(kind), "no {kind} family in:\n{body}");
    }
    assert!(exemplars > 0, "no exemplars in:\n{body}");
    assert!(weird_path, "escaped newline in a label value");
    assert_eq!(revision, "quote \" and \\ backslash");
    // The same app in the text format parses too.
    let (_, text) = fetch(&url, ACCEPT_TEXT);
    assert!(Parser::new(&text, Format::Text).all(|e| e.is_ok()));
}
