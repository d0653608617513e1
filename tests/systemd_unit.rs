//! The shipped systemd unit: the directives the readiness protocol and the
//! hardening depend on, and `systemd-analyze verify` where systemd is present.

use std::path::Path;
use std::process::Command;

fn unit() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/ember.service");
    std::fs::read_to_string(p).expect("config/ember.service")
}

#[test]
fn unit_has_notify_reload_and_hardening() {
    let unit = unit();
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=ember",
        "--config.file=/etc/ember/ember.yml",
        "--storage.tsdb.path=/var/lib/ember",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/ember",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
    ] {
        assert!(
            unit.lines()
                .any(|l| l.trim().trim_end_matches('\\').trim() == line),
            "missing {line:?}"
        );
    }
    // The WebAssembly runtime needs writable+executable memory.
    assert!(!unit.contains("MemoryDenyWriteExecute=yes"));
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("systemd-analyze not installed; skipping verification");
        return;
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    // verify wants ExecStart to exist; point it at the binary under test.
    let text = unit().replace("/usr/local/bin/ember", env!("CARGO_BIN_EXE_ember"));
    let path = dir.path().join("ember.service");
    std::fs::write(&path, text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("ember.service"),
        "systemd-analyze complains: {stderr}"
    );
}
