//! Starting the real `ember` binary for end-to-end tests: free ports,
//! temporary data directories, captured logs, HTTP calls.

#![allow(dead_code)]

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const EMBER: &str = env!("CARGO_BIN_EXE_ember");

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A minimal valid config.
pub const MINIMAL_CONFIG: &str = "global:\n  scrape_interval: 15s\n";

/// A running (or finished) ember process with its own directory.
pub struct Ember {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
    pub stderr_path: PathBuf,
}

pub struct Setup {
    pub tmp: tempfile::TempDir,
}

impl Setup {
    pub fn new() -> Setup {
        Setup {
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let p = self.path().join("ember.yml");
        std::fs::write(&p, text).expect("write config");
        p
    }

    pub fn data_dir(&self) -> PathBuf {
        self.path().join("data")
    }

    /// Starts ember with `--config.file` and `--storage.tsdb.path` in this
    /// setup's directory, on a free port, plus `extra` flags.
    pub fn start(&self, extra: &[&str]) -> Ember {
        self.start_with(extra, |_| {})
    }

    pub fn start_with(&self, extra: &[&str], customize: impl FnOnce(&mut Command)) -> Ember {
        let port = free_port();
        let config = self.path().join("ember.yml");
        let mut args: Vec<String> = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", self.data_dir().display()),
        ];
        // Tests run in parallel: no shared default push port unless asked for.
        if !extra.iter().any(|a| a.starts_with("--push.listen-address")) {
            args.push("--push.listen-address=".to_owned());
        }
        if !extra.iter().any(|a| a.starts_with("--sql.listen-address")) {
            args.push("--sql.listen-address=".to_owned());
        }
        if !extra.iter().any(|a| a.starts_with("--web.listen-address")) {
            args.push(format!("--web.listen-address=127.0.0.1:{port}"));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        spawn(self.path(), &args, port, customize)
    }
}

pub fn spawn(
    dir: &Path,
    args: &[String],
    port: u16,
    customize: impl FnOnce(&mut Command),
) -> Ember {
    let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let stderr_path = dir.join(format!("ember-{port}-{n}.log"));
    let stderr = File::create(&stderr_path).expect("create log file");
    let mut cmd = Command::new(EMBER);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("RUST_LOG");
    customize(&mut cmd);
    let child = cmd.spawn().expect("spawn ember");
    Ember {
        child,
        port,
        dir: dir.to_owned(),
        stderr_path,
    }
}

impl Ember {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "ember did not exit within {timeout:?}; logs:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `/-/ready` answers 200.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("ember exited early with {status}; logs:\n{}", self.logs());
            }
            if let Ok(r) = get(&self.url("/-/ready"))
                && r.status == 200
            {
                return;
            }
            if Instant::now() > deadline {
                panic!("ember not ready in time; logs:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn signal(&self, sig: i32) {
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    /// Every line of metric family `name` summed (0 when it has none yet).
    pub fn metric_sum(&self, name: &str) -> f64 {
        let body = get(&self.url("/metrics"))
            .map(|r| r.body)
            .unwrap_or_default();
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub fn metric(&self, name: &str) -> Option<f64> {
        let body = get(&self.url("/metrics")).ok()?.body;
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for Ember {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub struct Response {
    pub status: u16,
    pub body: String,
    pub content_type: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn into_response(
    r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Response, ureq::Error> {
    let mut r = r?;
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = r.body_mut().read_to_string()?;
    Ok(Response {
        status,
        body,
        content_type,
    })
}

pub fn get(url: &str) -> Result<Response, ureq::Error> {
    into_response(agent().get(url).call())
}

pub fn post(url: &str) -> Result<Response, ureq::Error> {
    into_response(agent().post(url).send_empty())
}

/// POSTs an `application/x-www-form-urlencoded` body (already encoded).
pub fn post_form(url: &str, body: &str) -> Result<Response, ureq::Error> {
    into_response(
        agent()
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(body),
    )
}

/// Percent-encodes a query parameter value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// GETs `url` and parses the body as JSON; returns the status too.
pub fn get_json(url: &str) -> (u16, serde_json::Value) {
    let r = get(url).expect("GET");
    let v = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("{url}: body is not JSON ({e}): {}", r.body));
    (r.status, v)
}

pub fn put(url: &str) -> Result<Response, ureq::Error> {
    into_response(agent().put(url).send_empty())
}

/// Runs ember to completion (for subcommands and start-up failures).
pub fn run(args: &[&str]) -> std::process::Output {
    Command::new(EMBER)
        .args(args)
        .stdin(Stdio::null())
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("run ember")
}

/// POSTs a remote-write body (already snappy-compressed protobuf).
pub fn post_remote_write(url: &str, body: &[u8]) -> Result<Response, ureq::Error> {
    into_response(
        agent()
            .post(url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .send(body),
    )
}

/// Whether an external program is on PATH; under CI a missing one is a failure.
pub fn require_program(name: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()));
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is required under CI (Debian package {package})"
        );
        println!("{name} not installed; skipping");
    }
    found
}

/// What a [`TestTarget`] answers with.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn text(body: &str) -> Reply {
        Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4".into(),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
}

/// A tiny HTTP server on loopback whose answer a test can change at any time.
pub struct TestTarget {
    pub addr: String,
    pub reply: std::sync::Arc<std::sync::Mutex<Reply>>,
    pub hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TestTarget {
    pub fn start(initial: Reply) -> TestTarget {
        use std::io::{Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test target");
        let addr = listener.local_addr().expect("addr").to_string();
        let reply = std::sync::Arc::new(std::sync::Mutex::new(initial));
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (r, h) = (reply.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (r, h) = (r.clone(), h.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 8192];
                    let mut req = Vec::new();
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let reply = r.lock().unwrap().clone();
                    std::thread::sleep(reply.delay);
                    let head = format!(
                        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        reply.status,
                        reply.content_type,
                        reply.body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(reply.body.as_bytes());
                });
            }
        });
        TestTarget { addr, reply, hits }
    }

    pub fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until the target has been scraped `n` more times.
    pub fn wait_hits(&self, n: usize) {
        let want = self.hits() + n;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.hits() < want {
            assert!(
                Instant::now() < deadline,
                "target at {} not scraped",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Kills a helper process (exporter, peer) when the test ends, pass or fail.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `python3` can import `module`; under CI a missing one is a failure.
pub fn require_python_module(module: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{module} is required under CI (tests/setup.sh installs it)"
        );
        println!("{module} not installed; skipping");
    }
    ok
}

/// Remote-writes series (`labels`, `(timestamp ms, value)` samples) to an
/// Ember started with `--web.enable-remote-write-receiver`; panics unless 204.
/// One series for [`write_series`]: labels and `(timestamp ms, value)` samples.
pub type SeriesData<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

pub fn write_series(ember: &Ember, series: &[SeriesData<'_>]) {
    use ember::remote::proto;
    let timeseries = series
        .iter()
        .map(|(labels, samples)| proto::TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| proto::Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| proto::Sample { value, timestamp })
                .collect(),
            ..proto::TimeSeries::default()
        })
        .collect();
    let body = proto::encode_request(&proto::WriteRequest {
        timeseries,
        metadata: vec![],
    });
    let r = post_remote_write(&ember.url("/api/v1/write"), &body).expect("remote write");
    assert_eq!(r.status, 204, "remote write: {}", r.body);
}

/// A Prometheus 2.42 peer with its own config, port and data directory.
pub struct Prometheus {
    pub port: u16,
    pub log: PathBuf,
    _process: KillOnDrop,
}

impl Prometheus {
    /// Starts `prometheus` with `config` (YAML text) in `dir`, and waits
    /// until it is ready.
    pub fn start(dir: &Path, config: &str) -> Prometheus {
        Self::start_with(dir, config, &[])
    }

    /// [`Prometheus::start`] with extra flags. Its data directory is
    /// `dir/prometheus`, so blocks backfilled there are served.
    pub fn start_with(dir: &Path, config: &str, extra: &[&str]) -> Prometheus {
        Self::start_on(dir, config, free_port(), extra)
    }

    /// [`Prometheus::start_with`] on a given port, so a peer can be
    /// stopped and started again at the same address.
    pub fn start_on(dir: &Path, config: &str, port: u16, extra: &[&str]) -> Prometheus {
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("prometheus log"))
            .spawn()
            .expect("spawn prometheus");
        let prom = Prometheus {
            port,
            log,
            _process: KillOnDrop(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(&prom.url("/-/ready")).map(|r| r.status).unwrap_or(0) != 200 {
            assert!(
                Instant::now() < deadline,
                "prometheus not ready:\n{}",
                prom.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        prom
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs an instant query; returns the `data.result` array.
    pub fn query(&self, q: &str) -> serde_json::Value {
        let (status, v) = get_json(&self.url(&format!("/api/v1/query?query={}", enc(q))));
        assert_eq!(status, 200, "{q}: {v}");
        v["data"]["result"].clone()
    }
}

/// Builds the plugins in `plugins/` (the hostile test plugin included) once
/// per test process and returns the directory holding the `.wasm` files.
pub fn built_plugins() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        // The ember binary is <target>/debug/ember: the plugins get their
        // own target dir next to it, so this build never waits on the lock
        // of the cargo process running the tests.
        let target = Path::new(EMBER)
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .join("plugins");
        let out = target.join("dist");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
        let status = Command::new("bash")
            .arg(root.join("build.sh"))
            .arg(&out)
            .env("EMBER_PLUGINS_TARGET_DIR", &target)
            .env("EMBER_PLUGINS_HOSTILE", "1")
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("run plugins/build.sh");
        assert!(
            status.success(),
            "building the plugins failed (is the wasm32-wasip2 target installed? tests/setup.sh adds it)"
        );
        out
    })
}

/// Copies a built plugin into `<setup>/plugins`, the default plugin folder
/// of a config in the setup's directory.
pub fn install_plugin(setup: &Setup, plugin: &str) {
    let dir = setup.path().join("plugins");
    std::fs::create_dir_all(&dir).expect("create plugins dir");
    std::fs::copy(
        built_plugins().join(format!("{plugin}.wasm")),
        dir.join(format!("{plugin}.wasm")),
    )
    .expect("copy plugin");
}
