//! Ember's built-in Alertmanager end to end: rules on scraped data fire,
//! alerts are routed and grouped, the shipped webhook notifier plugin
//! delivers Alertmanager's webhook payload to a receiver run by the test
//! with the configured timing, inhibition and `amtool` silences mute
//! alerts, resolutions are delivered, failed deliveries are retried, and a
//! restart does not notify again.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// One webhook delivery as the receiver saw it.
#[derive(Clone, Debug)]
struct Delivery {
    at: Instant,
    body: Value,
}

/// An HTTP server that records webhook POSTs and answers each with the
/// next queued status (200 when none is queued).
struct Receiver {
    addr: String,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    statuses: Arc<Mutex<Vec<u16>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = listener.local_addr().expect("addr").to_string();
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let statuses: Arc<Mutex<Vec<u16>>> = Arc::new(Mutex::new(Vec::new()));
        let (d, s) = (deliveries.clone(), statuses.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_end, len) = loop {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break (0, 0),
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        break (i + 4, len);
                    }
                };
                if head_end == 0 {
                    continue;
                }
                while buf.len() < head_end + len {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let status = {
                    let mut q = s.lock().unwrap();
                    if q.is_empty() { 200 } else { q.remove(0) }
                };
                if status == 200
                    && let Ok(body) = serde_json::from_slice(&buf[head_end..])
                {
                    d.lock().unwrap().push(Delivery {
                        at: Instant::now(),
                        body,
                    });
                }
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                );
            }
        });
        Receiver {
            addr,
            deliveries,
            statuses,
        }
    }

    fn all(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// Deliveries for one alertname group.
    fn for_group(&self, alertname: &str) -> Vec<Delivery> {
        self.all()
            .into_iter()
            .filter(|d| d.body["groupLabels"]["alertname"] == alertname)
            .collect()
    }

    fn fail_next(&self, n: usize, status: u16) {
        self.statuses
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(status, n));
    }
}

fn wait_until<T>(
    what: &str,
    ember: &Ember,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; logs:\n{}",
            ember.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `(host, status)` of a payload's alerts, sorted.
fn alerts_of(d: &Delivery) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = d.body["alerts"]
        .as_array()
        .expect("alerts array")
        .iter()
        .map(|a| {
            (
                a["labels"]["host"].as_str().unwrap_or("").to_owned(),
                a["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Seconds between an alert's `startsAt` and a delivery.
fn since_start(d: &Delivery, received_unix_ms: i64) -> f64 {
    let starts = d.body["alerts"][0]["startsAt"].as_str().expect("startsAt");
    let starts = chrono::DateTime::parse_from_rfc3339(starts).expect("rfc3339");
    (received_unix_ms - starts.timestamp_millis()) as f64 / 1000.0
}

fn unix_ms_of(at: Instant) -> i64 {
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now_unix - Instant::now().duration_since(at).as_millis() as i64
}

fn counter(ember: &Ember, line_prefix: &str) -> f64 {
    get(&ember.url("/metrics"))
        .map(|r| r.body)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(line_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const RULES: &str = r#"groups:
- name: app
  interval: 1s
  rules:
  - alert: AppDown
    expr: app_up == 0
    labels: {severity: critical}
    annotations: {summary: "{{ $labels.host }} is down"}
  - alert: DiskFull
    expr: disk_full == 1
    labels: {severity: warning}
"#;

fn app_metrics(a_up: u8, b_up: u8) -> String {
    format!(
        "# TYPE app_up gauge\napp_up{{host=\"a\"}} {a_up}\napp_up{{host=\"b\"}} {b_up}\n# TYPE disk_full gauge\ndisk_full{{host=\"a\"}} 1\ndisk_full{{host=\"c\"}} 1\n"
    )
}

/// Grouping by alertname, group_wait and group_interval timing, inhibition
/// of the warning on a down instance (and its lifting), resolution.
#[test]
fn routes_groups_inhibits_and_resolves() {
    let setup = Setup::new();
    install_plugin(&setup, "webhook");
    let receiver = Receiver::start();
    let target = TestTarget::start(Reply::text(&app_metrics(0, 0)));
    std::fs::write(setup.path().join("rules.yml"), RULES).unwrap();
    // Alertmanager's own receiver shape (webhook_configs) works as pasted.
    setup.write_config(&format!(
        r#"global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [rules.yml]
scrape_configs:
- job_name: app
  static_configs: [{{targets: ["{target}"]}}]
notifications:
  route:
    receiver: hook
    group_by: [alertname]
    group_wait: 2s
    group_interval: 3s
    repeat_interval: 1h
  inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [host]
  receivers:
  - name: hook
    webhook_configs:
    - url: http://{receiver}/hook
"#,
        target = target.addr,
        receiver = receiver.addr,
    ));
    let mut ember = setup.start(&[]);
    ember.wait_ready();

    // Both instances are down: one notification with both alerts.
    let first = wait_until(
        "AppDown notification",
        &ember,
        Duration::from_secs(30),
        || receiver.for_group("AppDown").first().cloned(),
    );
    assert_eq!(
        alerts_of(&first),
        pairs(&[("a", "firing"), ("b", "firing")]),
        "{:#}",
        first.body
    );
    let body = &first.body;
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["receiver"], "hook");
    assert_eq!(body["groupKey"], "{}:{alertname=\"AppDown\"}");
    assert_eq!(body["commonLabels"]["severity"], "critical");
    assert_eq!(body["commonLabels"]["job"], "app");
    assert_eq!(body["alerts"][0]["annotations"]["summary"], "a is down");
    assert_eq!(
        body["alerts"][0]["fingerprint"].as_str().map(str::len),
        Some(16)
    );
    // group_wait: not sent before 2s after the alerts started.
    let waited = since_start(&first, unix_ms_of(first.at));
    println!("first notification {waited:.2}s after the alerts started (group_wait 2s)");
    assert!(
        (1.9..5.0).contains(&waited),
        "first notification {waited}s after the alert started"
    );

    // DiskFull: the warning on `a` is inhibited by AppDown{host="a"};
    // `c` has no critical alert and is delivered.
    let disk = wait_until(
        "DiskFull notification",
        &ember,
        Duration::from_secs(30),
        || receiver.for_group("DiskFull").first().cloned(),
    );
    assert_eq!(
        alerts_of(&disk),
        pairs(&[("c", "firing")]),
        "{:#}",
        disk.body
    );
    let (_, api) = get_json(&ember.url("/api/v2/alerts?filter=alertname%3DDiskFull"));
    let inhibited: Vec<&Value> = api
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["host"] == "a")
        .collect();
    assert_eq!(inhibited.len(), 1, "{api:#}");
    assert_eq!(inhibited[0]["status"]["state"], "suppressed");
    assert_eq!(
        inhibited[0]["status"]["inhibitedBy"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // b recovers: the next flush (group_interval after the first) carries
    // the resolution, with a still firing.
    target.set(Reply::text(&app_metrics(0, 1)));
    let second = wait_until(
        "AppDown resolution of b",
        &ember,
        Duration::from_secs(30),
        || receiver.for_group("AppDown").get(1).cloned(),
    );
    assert_eq!(
        alerts_of(&second),
        pairs(&[("a", "firing"), ("b", "resolved")]),
        "{:#}",
        second.body
    );
    assert_eq!(second.body["status"], "firing");
    let gap = second.at.duration_since(first.at).as_secs_f64();
    println!("second notification {gap:.2}s after the first (group_interval 3s)");
    assert!(
        gap >= 2.9,
        "second notification only {gap}s after the first"
    );
    let resolved_b = second.body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["host"] == "b")
        .unwrap();
    assert_ne!(resolved_b["endsAt"], "0001-01-01T00:00:00Z");

    // a recovers too: everything resolved, and the warning on `a` is no
    // longer inhibited, so the DiskFull group now carries a and c.
    target.set(Reply::text(&app_metrics(1, 1)));
    let last = wait_until(
        "AppDown all resolved",
        &ember,
        Duration::from_secs(30),
        || {
            receiver
                .for_group("AppDown")
                .into_iter()
                .find(|d| d.body["status"] == "resolved")
        },
    );
    // b's resolution was delivered already, so the group holds only a.
    assert_eq!(alerts_of(&last), pairs(&[("a", "resolved")]));
    let disk2 = wait_until("DiskFull with a", &ember, Duration::from_secs(30), || {
        receiver.for_group("DiskFull").get(1).cloned()
    });
    assert_eq!(
        alerts_of(&disk2),
        pairs(&[("a", "firing"), ("c", "firing")]),
        "{:#}",
        disk2.body
    );

    // The groups and their delivery state are visible to the UI.
    let (status, n) = get_json(&ember.url("/api/v1/notifications"));
    assert_eq!(status, 200);
    assert_eq!(n["data"]["configured"], true);
    let groups = n["data"]["groups"].as_array().unwrap();
    let disk_group = groups
        .iter()
        .find(|g| g["labels"]["alertname"] == "DiskFull")
        .expect("DiskFull group");
    assert_eq!(disk_group["receiver"], "hook");
    assert_eq!(disk_group["integrations"][0]["plugin"], "webhook");
    assert!(
        disk_group["integrations"][0]["lastNotified"].is_string(),
        "{disk_group:#}"
    );
    assert!(counter(&ember, "ember_alert_notifications_total{") >= 4.0);
}

fn amtool(ember: &Ember, args: &[&str]) -> String {
    let out = Command::new("amtool")
        .arg(format!("--alertmanager.url={}", ember.url("")))
        .args(args)
        .output()
        .expect("run amtool");
    assert!(
        out.status.success(),
        "amtool {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn svc_metrics(firing: bool) -> String {
    let v = if firing { 1 } else { 0 };
    format!("# TYPE svc_bad gauge\nsvc_bad{{svc=\"loud\"}} {v}\nsvc_bad{{svc=\"quiet\"}} {v}\n")
}

/// A silence added with amtool mutes an alert and survives a restart; a
/// restart does not notify again; expiring the silence delivers the alert;
/// a failing receiver is retried with backoff, counted in metrics, and the
/// resolution still arrives.
#[test]
fn amtool_silences_restart_and_retries() {
    if !require_program("amtool", "prometheus-alertmanager") {
        return;
    }
    let setup = Setup::new();
    install_plugin(&setup, "webhook");
    let receiver = Receiver::start();
    let target = TestTarget::start(Reply::text(&svc_metrics(false)));
    std::fs::write(
        setup.path().join("rules.yml"),
        "groups:\n- name: svc\n  interval: 1s\n  rules:\n  - alert: SvcBad\n    expr: svc_bad == 1\n",
    )
    .unwrap();
    // Ember's own receiver shape: a notifier plugin with its config.
    let config = format!(
        r#"global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [rules.yml]
scrape_configs:
- job_name: svc
  static_configs: [{{targets: ["{target}"]}}]
notifications:
  route:
    receiver: hook
    group_by: [svc]
    group_wait: 1s
    group_interval: 2s
    repeat_interval: 1h
  receivers:
  - name: hook
    plugin_configs:
    - name: webhook
      config: {{url: "http://{receiver}/hook"}}
      allow_hosts: ["{receiver}"]
"#,
        target = target.addr,
        receiver = receiver.addr,
    );
    setup.write_config(&config);
    let mut ember = setup.start(&[]);
    ember.wait_ready();

    let id = amtool(
        &ember,
        &[
            "silence",
            "add",
            "svc=quiet",
            "--comment=maintenance",
            "--author=test",
            "--duration=1h",
        ],
    );
    assert_eq!(id.len(), 36, "amtool printed {id:?}");
    let listed = amtool(&ember, &["silence", "query", "svc=quiet"]);
    assert!(
        listed.contains(&id) && listed.contains("maintenance"),
        "{listed}"
    );

    target.set(Reply::text(&svc_metrics(true)));
    let loud = |r: &Receiver| {
        r.all()
            .into_iter()
            .filter(|d| d.body["groupLabels"]["svc"] == "loud")
            .collect::<Vec<_>>()
    };
    let quiet = |r: &Receiver| {
        r.all()
            .into_iter()
            .filter(|d| d.body["groupLabels"]["svc"] == "quiet")
            .collect::<Vec<_>>()
    };
    wait_until("loud notification", &ember, Duration::from_secs(30), || {
        loud(&receiver).first().cloned()
    });
    // Several group intervals later, the silenced alert was never sent.
    std::thread::sleep(Duration::from_secs(5));
    assert!(quiet(&receiver).is_empty(), "{:?}", quiet(&receiver));
    assert_eq!(loud(&receiver).len(), 1, "repeat_interval is 1h");
    // amtool's alert query leaves silenced alerts out.
    let alerts = amtool(&ember, &["-o", "extended", "alert", "query"]);
    assert!(
        alerts.contains("svc=\"loud\"") && !alerts.contains("svc=\"quiet\""),
        "{alerts}"
    );
    let (_, api) = get_json(&ember.url("/api/v2/alerts?filter=svc%3Dquiet"));
    assert_eq!(api[0]["status"]["state"], "suppressed", "{api:#}");
    assert_eq!(api[0]["status"]["silencedBy"][0], id.as_str());

    // Restart: the silence and the notification log persist, so nothing is
    // sent again while the alerts keep firing.
    ember.signal(libc::SIGTERM);
    assert!(ember.wait_exit(Duration::from_secs(30)).success());
    let before = receiver.all().len();
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    wait_until(
        "alerts back after restart",
        &ember,
        Duration::from_secs(30),
        || {
            let (_, v) = get_json(&ember.url("/api/v2/alerts?filter=alertname%3DSvcBad"));
            (v.as_array().map_or(0, Vec::len) == 2).then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    // A reload with a changed routing section rebuilds the groups; the
    // notification log keeps it quiet too.
    setup.write_config(&config.replace("repeat_interval: 1h", "repeat_interval: 2h"));
    ember.signal(libc::SIGHUP);
    wait_until("reload", &ember, Duration::from_secs(10), || {
        ember
            .logs()
            .contains("Completed loading of configuration file")
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        receiver.all().len(),
        before,
        "notified again after a restart or reload: {:?}",
        receiver.all()
    );
    let listed = amtool(&ember, &["silence", "query"]);
    assert!(listed.contains(&id), "silence lost in restart: {listed}");

    // Expiring the silence lets the quiet alert through.
    amtool(&ember, &["silence", "expire", &id]);
    assert_eq!(amtool(&ember, &["silence", "query", "-q"]), "");
    assert!(amtool(&ember, &["silence", "query", "--expired", "-q"]).contains(&id));
    wait_until(
        "quiet notification",
        &ember,
        Duration::from_secs(30),
        || quiet(&receiver).first().cloned(),
    );

    // The receiver fails twice: the resolution is retried with backoff,
    // counted, and delivered.
    receiver.fail_next(2, 500);
    target.set(Reply::text(&svc_metrics(false)));
    let resolved = wait_until("loud resolution", &ember, Duration::from_secs(30), || {
        loud(&receiver)
            .into_iter()
            .find(|d| d.body["status"] == "resolved")
    });
    assert_eq!(resolved.body["alerts"][0]["status"], "resolved");
    let failed = counter(
        &ember,
        "ember_alert_notification_requests_failed_total{integration=\"webhook\",reason=\"plugin_error\"",
    );
    assert!(failed >= 2.0, "failed requests counted: {failed}");
    let (_, n) = get_json(&ember.url("/api/v1/notifications"));
    assert!(n["data"].is_object(), "{n:#}");
}

/// Silences API errors come back as Alertmanager's: a JSON string and 400
/// or 404.
#[test]
fn silence_api_errors() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    let post = |body: &str| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent
            .post(&ember.url("/api/v2/silences"))
            .header("Content-Type", "application/json")
            .send(body)
            .expect("post");
        (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    let (status, body) = post(
        r#"{"matchers":[{"name":"a","value":".*","isRegex":true}],"startsAt":"2030-01-01T00:00:00Z","endsAt":"2030-01-02T00:00:00Z","createdBy":"t","comment":"c"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("must not match the empty string"), "{body}");
    let (status, body) = post(r#"{"matchers":[],"startsAt":"x","endsAt":"y"}"#);
    assert_eq!(status, 400, "{body}");
    let (status, _) = post(
        r#"{"id":"nope","matchers":[{"name":"a","value":"b","isRegex":false}],"startsAt":"2030-01-01T00:00:00Z","endsAt":"2030-01-02T00:00:00Z","createdBy":"t","comment":"c"}"#,
    );
    assert_eq!(status, 404);
    let (status, body) = post(
        r#"{"matchers":[{"name":"a","value":"b","isRegex":false}],"startsAt":"2030-01-01T00:00:00Z","endsAt":"2030-01-02T00:00:00Z","createdBy":"t","comment":"c"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["silenceID"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, s) = get_json(&ember.url(&format!("/api/v2/silence/{id}")));
    assert_eq!(status, 200);
    assert_eq!(s["status"]["state"], "pending");
    assert_eq!(get(&ember.url("/api/v2/silence/nope")).unwrap().status, 404);
    let (status, st) = get_json(&ember.url("/api/v2/status"));
    assert_eq!(status, 200);
    assert_eq!(st["cluster"]["status"], "disabled");
    // Without a notifications section there is nothing to route.
    let (_, n) = get_json(&ember.url("/api/v1/notifications"));
    assert_eq!(n["data"]["configured"], false);
}

/// Alerts posted by another sender (here `amtool alert add`, which uses
/// `POST /api/v2/alerts` as a Prometheus does) are routed and delivered.
#[test]
fn posted_alerts_are_routed() {
    if !require_program("amtool", "prometheus-alertmanager") {
        return;
    }
    let setup = Setup::new();
    install_plugin(&setup, "webhook");
    let receiver = Receiver::start();
    setup.write_config(&format!(
        "notifications:\n  route: {{receiver: hook, group_wait: 1s}}\n  receivers:\n  - name: hook\n    webhook_configs: [{{url: 'http://{}/hook'}}]\n",
        receiver.addr
    ));
    let mut ember = setup.start(&[]);
    ember.wait_ready();
    amtool(
        &ember,
        &[
            "alert",
            "add",
            "alertname=Posted",
            "team=db",
            "--annotation=summary=from amtool",
        ],
    );
    let d = wait_until(
        "posted alert delivered",
        &ember,
        Duration::from_secs(30),
        || receiver.all().first().cloned(),
    );
    assert_eq!(d.body["alerts"][0]["labels"]["alertname"], "Posted");
    assert_eq!(d.body["alerts"][0]["annotations"]["summary"], "from amtool");
    let listed = amtool(&ember, &["alert", "query", "alertname=Posted"]);
    assert!(listed.contains("Posted"), "{listed}");
    let r = {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        agent
            .post(&ember.url("/api/v2/alerts"))
            .header("Content-Type", "application/json")
            .send(r#"[{"labels":{}}]"#)
            .expect("post")
    };
    assert_eq!(r.status().as_u16(), 400);
}
