//! `--web.config.file`: TLS (server certificate, client certificates, minimum
//! version) and bcrypt basic auth on the main and push listeners, checked
//! with curl against certificates generated at test time.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use support::*;

struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Ember test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        // A subject of its own, or OpenSSL takes it for self-signed.
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0].as_str());
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()]);
    let (client_pem, client_key) = leaf(vec!["client.example".into()]);
    let w = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: w("ca.pem", &ca_cert.pem()),
        server_cert: w("server.pem", &server_pem),
        server_key: w("server.key", &server_key),
        client_cert: w("client.pem", &client_pem),
        client_key: w("client.key", &client_key),
    }
}

/// Runs curl; returns (HTTP status or 0 on a connection/TLS failure, headers, body).
fn curl(args: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-D", "-", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    if !out.status.success() {
        eprintln!("curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        return (0, String::new(), String::new());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_lowercase(), body.to_owned())
}

fn start(setup: &Setup, web_config: &Path, push_port: Option<u16>) -> (Ember, u16) {
    let port = free_port();
    let mut args = vec![
        format!("--config.file={}", setup.path().join("ember.yml").display()),
        format!("--storage.tsdb.path={}", setup.data_dir().display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        format!("--web.config.file={}", web_config.display()),
        "--sql.listen-address=".to_owned(),
    ];
    args.push(match push_port {
        Some(p) => format!("--push.listen-address=127.0.0.1:{p}"),
        None => "--push.listen-address=".into(),
    });
    (spawn(setup.path(), &args, port, |_| {}), port)
}

fn wait_https(ember: &mut Ember, ready: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = ember.child.try_wait().unwrap() {
            panic!("ember exited with {status}: {}", ember.logs());
        }
        if curl(ready).0 == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "not ready: {}", ember.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tls_and_basic_auth_on_both_listeners() {
    if !require_program("curl", "curl") {
        return;
    }
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let pki = make_pki(setup.path());
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = setup.path().join("web.yml");
    let write_web = |user: &str, hash: &str| {
        // Relative paths are resolved against the web config's directory.
        std::fs::write(
            &web,
            format!(
                "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nbasic_auth_users:\n  {user}: {hash}\n"
            ),
        )
        .unwrap();
    };
    write_web("grafana", &hash);
    let push_port = free_port();
    let (mut ember, port) = start(&setup, &web, Some(push_port));
    let ca = pki.ca.display().to_string();
    let url = |p: &str| format!("https://127.0.0.1:{port}{p}");
    let ready = url("/-/ready");
    wait_https(
        &mut ember,
        &["--cacert", &ca, "-u", "grafana:s3cret", &ready],
    );

    // No, wrong and unknown credentials: the same bare 401.
    for creds in [None, Some("grafana:wrong"), Some("nobody:s3cret")] {
        let mut args = vec!["--cacert", &ca];
        if let Some(c) = creds {
            args.extend(["-u", c]);
        }
        let target = url("/api/v1/status/buildinfo");
        args.push(&target);
        let (status, head, body) = curl(&args);
        assert_eq!(status, 401, "{creds:?}");
        assert!(head.contains("www-authenticate: basic"), "{head}");
        assert_eq!(body, "Unauthorized\n");
    }
    let (status, _, body) = curl(&[
        "--cacert",
        &ca,
        "-u",
        "grafana:s3cret",
        &url("/api/v1/query?query=1"),
    ]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\":\"success\""));
    // Plain HTTP on the TLS port gets nowhere.
    let (status, _, _) = curl(&[&format!("http://127.0.0.1:{port}/-/ready")]);
    assert_ne!(status, 200);
    // An untrusted server certificate is refused by curl.
    assert_eq!(curl(&["-u", "grafana:s3cret", &ready]).0, 0);

    // The push listener has the same protection.
    let push = format!("https://127.0.0.1:{push_port}/metrics/job/batch");
    let (status, _, _) = curl(&["--cacert", &ca, "--data-binary", "jobs_done 3\n", &push]);
    assert_eq!(status, 401);
    let (status, _, body) = curl(&[
        "--cacert",
        &ca,
        "-u",
        "grafana:s3cret",
        "--data-binary",
        "jobs_done 3\n",
        &push,
    ]);
    assert_eq!(status, 200, "{body}");

    // The file is read on every request: a new password applies at once.
    write_web("grafana", &bcrypt::hash("n3w", 4).unwrap());
    assert_eq!(
        curl(&["--cacert", &ca, "-u", "grafana:s3cret", &ready]).0,
        401
    );
    assert_eq!(curl(&["--cacert", &ca, "-u", "grafana:n3w", &ready]).0, 200);
}

#[test]
fn client_certificates_and_min_version() {
    if !require_program("curl", "curl") {
        return;
    }
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let pki = make_pki(setup.path());
    let web = setup.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n  min_version: TLS13\n",
            pki.server_cert.display(),
            pki.server_key.display(),
            pki.ca.display()
        ),
    )
    .unwrap();
    let (mut ember, port) = start(&setup, &web, None);
    let ca = pki.ca.display().to_string();
    let cert = pki.client_cert.display().to_string();
    let key = pki.client_key.display().to_string();
    let ready = format!("https://127.0.0.1:{port}/-/ready");
    wait_https(
        &mut ember,
        &["--cacert", &ca, "--cert", &cert, "--key", &key, &ready],
    );
    // Without a client certificate the handshake fails.
    assert_eq!(curl(&["--cacert", &ca, &ready]).0, 0);
    // TLS 1.2 is below the minimum.
    assert_eq!(
        curl(&[
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "--tls-max",
            "1.2",
            &ready
        ])
        .0,
        0
    );
}

#[test]
fn invalid_web_config_stops_start_up() {
    let setup = Setup::new();
    setup.write_config(MINIMAL_CONFIG);
    let web = setup.path().join("web.yml");
    for text in [
        "basic_auth_users:\n  a: plain-password\n",
        "tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.key\n",
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n",
        "unknown_key: 1\n",
    ] {
        std::fs::write(&web, text).unwrap();
        let (mut ember, _) = start(&setup, &web, None);
        let status = ember.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(2), "{text}: {}", ember.logs());
        assert!(
            ember
                .logs()
                .contains("Unable to validate web configuration file"),
            "{}",
            ember.logs()
        );
    }
}
