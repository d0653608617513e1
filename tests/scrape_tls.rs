//! Scraping over https with the real binary: a CA and certificates made at
//! test time (rcgen), exporters served with rustls, and every `tls_config`
//! setting that decides whether a scrape gets through.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember::model::{Matcher, STALE_NAN_BITS};
use ember::storage::{Storage, StorageOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, date_time_ymd};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::*;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate for `names` (DNS names or IP addresses).
    fn leaf(&self, names: &[&str], expired: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "ember test leaf");
        if expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

/// An https exporter on loopback, optionally requiring a client certificate
/// issued by `client_ca`. Counts requests that got through the handshake and
/// keeps the last `Authorization` header.
struct TlsTarget {
    addr: String,
    hits: Arc<AtomicUsize>,
    authorization: Arc<Mutex<String>>,
}

impl TlsTarget {
    fn start(leaf: &Leaf, client_ca: Option<&Ca>) -> TlsTarget {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.der.clone()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der.clone()));
        let config = Arc::new(
            builder
                .with_single_cert(vec![leaf.der.clone()], key)
                .unwrap(),
        );

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hits = Arc::new(AtomicUsize::new(0));
        let authorization = Arc::new(Mutex::new(String::new()));
        let (h, a) = (hits.clone(), authorization.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let (config, h, a) = (config.clone(), h.clone(), a.clone());
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&req);
                    if let Some(line) = text
                        .lines()
                        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                    {
                        *a.lock().unwrap() = line["authorization:".len()..].trim().to_owned();
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let body = "# TYPE tls_ok gauge\ntls_ok 1\n";
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(reply.as_bytes());
                    let _ = tls.flush();
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        TlsTarget {
            addr,
            hits,
            authorization,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn wait_hits(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.hits() < n {
            assert!(
                Instant::now() < deadline,
                "https target {} was not scraped",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A minimal HTTP CONNECT proxy; counts the tunnels it opened.
fn start_connect_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let tunnels = Arc::new(AtomicUsize::new(0));
    let t = tunnels.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let t = t.clone();
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut byte = [0u8; 1];
                while !req.ends_with(b"\r\n\r\n") {
                    match client.read(&mut byte) {
                        Ok(1) => req.push(byte[0]),
                        _ => return,
                    }
                }
                let text = String::from_utf8_lossy(&req).into_owned();
                let Some(dest) = text
                    .strip_prefix("CONNECT ")
                    .and_then(|r| r.split(' ').next())
                else {
                    return;
                };
                let Ok(upstream) = std::net::TcpStream::connect(dest) else {
                    return;
                };
                t.fetch_add(1, Ordering::SeqCst);
                let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let (mut c1, mut u1) = (client, upstream);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut u2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut c1, &mut u1);
                let _ = u1.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr, tunnels)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `up` values of one job, stale markers left out.
fn up_values(setup: &Setup, job: &str) -> Vec<f64> {
    let (storage, _) = Storage::open(&setup.data_dir(), StorageOptions::default(), |_| {}).unwrap();
    let series = storage
        .select(
            &[Matcher::eq("__name__", "up"), Matcher::eq("job", job)],
            i64::MIN,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(series.len(), 1, "one up series for job {job}");
    series[0]
        .samples
        .iter()
        .map(|s| s.v)
        .filter(|v| v.to_bits() != STALE_NAN_BITS)
        .collect()
}

/// A YAML flow string holding PEM text (inline `ca`/`cert`/`key`).
fn yaml_str(pem: &str) -> String {
    serde_json::to_string(pem).unwrap()
}

#[test]
fn https_scrapes_follow_tls_config() {
    let ca = Ca::new("Ember test CA");
    let other_ca = Ca::new("Some other CA");
    let by_ip = ca.leaf(&["127.0.0.1", "localhost"], false);
    let by_name = ca.leaf(&["exporter.test"], false);
    let expired = ca.leaf(&["127.0.0.1"], true);
    let client = ca.leaf(&["ember-client"], false);

    let plain = TlsTarget::start(&by_ip, None);
    let named = TlsTarget::start(&by_name, None);
    let mtls = TlsTarget::start(&by_ip, Some(&ca));
    let old = TlsTarget::start(&expired, None);
    let rotated = TlsTarget::start(&by_ip, None);
    let (proxy, tunnels) = start_connect_proxy();

    let setup = Setup::new();
    let dir = setup.path();
    // Relative file names are relative to the config file's directory.
    write(dir, "ca.pem", &ca.pem);
    let rotating_ca = write(dir, "rotating-ca.pem", &other_ca.pem);
    write(dir, "client.pem", &client.cert_pem);
    write(dir, "client-key.pem", &client.key_pem);

    let job = |name: &str, target: &TlsTarget, tls: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    static_configs: [{{targets: ['{}']}}]\n    tls_config: {{{tls}}}\n",
            target.addr
        )
    };
    let config = [
        "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\nscrape_configs:\n".to_owned(),
        job("right_ca", &plain, "ca_file: ca.pem"),
        job("system_roots", &plain, ""),
        job(
            "server_name",
            &named,
            &format!("ca: {}, server_name: exporter.test", yaml_str(&ca.pem)),
        ),
        job("wrong_name", &named, "ca_file: ca.pem"),
        job("insecure", &named, "insecure_skip_verify: true"),
        job(
            "client_cert",
            &mtls,
            &format!(
                "ca_file: ca.pem, cert_file: client.pem, key: {}",
                yaml_str(&client.key_pem)
            ),
        ) + "    bearer_token: s3cret\n",
        job("no_client_cert", &mtls, "ca_file: ca.pem"),
        job("expired", &old, "ca_file: ca.pem"),
        job("tls13_only", &plain, "ca_file: ca.pem, min_version: TLS13"),
        job("rotated", &rotated, "ca_file: rotating-ca.pem"),
        job("via_proxy", &plain, "ca_file: ca.pem") + &format!("    proxy_url: http://{proxy}\n"),
    ]
    .concat();
    setup.write_config(&config);
    // As in Prometheus, proxy environment variables are ignored.
    let mut ember = setup.start_with(&["--log.level=debug"], |cmd| {
        cmd.env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("https_proxy", "http://127.0.0.1:9")
            .env("ALL_PROXY", "http://127.0.0.1:9");
    });
    ember.wait_ready();

    plain.wait_hits(6);
    assert!(tunnels.load(Ordering::SeqCst) > 0, "proxy_url is used");
    named.wait_hits(4);
    mtls.wait_hits(2);
    assert_eq!(*mtls.authorization.lock().unwrap(), "Bearer s3cret");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ember
        .logs()
        .lines()
        .any(|l| l.contains("Scrape failed") && l.contains(rotated.addr.as_str()))
    {
        assert!(
            Instant::now() < deadline,
            "no failed scrape with the wrong CA"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(rotated.hits(), 0, "the wrong CA is refused");
    assert_eq!(old.hits(), 0, "an expired certificate is refused");

    // The CA file changes and the config is reloaded: the new CA is used
    // without a change to the config text.
    std::fs::write(&rotating_ca, &ca.pem).unwrap();
    ember.signal(libc::SIGHUP);
    rotated.wait_hits(2);
    assert_eq!(
        get(&ember.url("/-/healthy")).unwrap().status,
        200,
        "TLS failures do not hurt the server"
    );
    ember.signal(libc::SIGTERM);
    ember.wait_exit(Duration::from_secs(20));
    let logs = ember.logs();
    assert!(
        !logs.contains("level=ERROR"),
        "a failed scrape is not an error-level log:\n{logs}"
    );

    for job in [
        "right_ca",
        "server_name",
        "insecure",
        "client_cert",
        "tls13_only",
        "via_proxy",
    ] {
        let up = up_values(&setup, job);
        assert!(
            !up.is_empty() && up.iter().all(|v| *v == 1.0),
            "{job}: {up:?}"
        );
    }
    let rotated_up = up_values(&setup, "rotated");
    assert_eq!(rotated_up.first(), Some(&0.0), "{rotated_up:?}");
    assert_eq!(rotated_up.last(), Some(&1.0), "{rotated_up:?}");

    for (job, addr, why) in [
        (
            "system_roots",
            &plain.addr,
            "invalid peer certificate: UnknownIssuer",
        ),
        ("wrong_name", &named.addr, "certificate not valid for name"),
        ("no_client_cert", &mtls.addr, "CertificateRequired"),
        (
            "expired",
            &old.addr,
            "invalid peer certificate: certificate expired",
        ),
    ] {
        let up = up_values(&setup, job);
        assert!(
            !up.is_empty() && up.iter().all(|v| *v == 0.0),
            "{job}: {up:?}"
        );
        assert!(
            logs.lines().any(|l| l.contains("Scrape failed")
                && l.contains(addr.as_str())
                && l.contains(why)),
            "{job}: no {why:?} error for {addr} in logs:\n{logs}"
        );
    }
}
