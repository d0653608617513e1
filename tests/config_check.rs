//! `ember check config` against Prometheus 2.42's `promtool check config`.
//!
//! Every file in `tests/configs/promtool/{valid,invalid}` was checked with
//! promtool when it was written; this test holds Ember to the same verdicts
//! and, where promtool is installed, re-checks promtool too, so a drift on
//! either side shows up. Under CI promtool is required.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::run;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/configs/promtool")
}

fn yml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
}

fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() && std::env::var_os("CI").is_some() {
        panic!("promtool is required under CI (Debian package `prometheus`)");
    }
    found
}

fn ember_check(file: &Path) -> (i32, String) {
    let out = run(&["check", "config", &file.to_string_lossy()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn promtool_check(promtool: &Path, file: &Path) -> i32 {
    Command::new(promtool)
        .args(["check", "config"])
        .arg(file)
        .output()
        .expect("run promtool")
        .status
        .code()
        .unwrap_or(-1)
}

fn expectation(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .next()?
        .strip_prefix("# expect: ")
        .map(|s| s.trim().to_owned())
}

#[test]
fn corpus_agrees_with_promtool() {
    let promtool = promtool();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (dir, want) in [("valid", 0), ("invalid", 1)] {
        let files = yml_files(&corpus().join(dir));
        assert!(
            files.len() > 10,
            "corpus folder {dir} is unexpectedly small"
        );
        for file in files {
            checked += 1;
            let name = format!("{dir}/{}", file.file_name().unwrap().to_string_lossy());
            let (code, text) = ember_check(&file);
            if code != want {
                failures.push(format!("{name}: ember exit {code}, want {want}:\n{text}"));
                continue;
            }
            if let Some(expect) = expectation(&file)
                && !text.contains(&expect)
            {
                failures.push(format!("{name}: ember's message lacks {expect:?}:\n{text}"));
            }
            if let Some(promtool) = &promtool {
                let p = promtool_check(promtool, &file);
                if p != want {
                    failures.push(format!("{name}: promtool exit {p}, want {want}"));
                }
            }
        }
    }
    println!(
        "checked {checked} configs (promtool: {})",
        promtool.is_some()
    );
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn shipped_configs_are_valid_for_ember_and_promtool() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = yml_files(&root.join("config"));
    files.retain(|f| {
        let name = f.file_name().unwrap().to_string_lossy();
        name.starts_with("ember") || name.starts_with("prometheus")
    });
    assert!(!files.is_empty(), "config/ember.yml must exist");
    let promtool = promtool();
    for file in files {
        let (code, text) = ember_check(&file);
        assert_eq!(code, 0, "{}: {text}", file.display());
        if let Some(promtool) = &promtool {
            assert_eq!(
                promtool_check(promtool, &file),
                0,
                "promtool rejects {}",
                file.display()
            );
        }
    }
}

#[test]
fn exit_codes_and_output_like_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    let bad = dir.path().join("bad.yml");
    std::fs::write(&good, "global:\n  scrape_interval: 15s\n").unwrap();
    std::fs::write(&bad, "global:\n  scrape_interval: 15x\n").unwrap();

    let (code, text) = ember_check(&good);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("SUCCESS"), "{text}");

    let out = run(&[
        "check",
        "config",
        &good.to_string_lossy(),
        &bad.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(1), "one bad file fails the run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("FAILED"), "{stderr}");
    assert!(stderr.contains("bad.yml:2:3"), "{stderr}");
    assert!(stderr.contains("15x"), "{stderr}");

    let (code, text) = ember_check(&dir.path().join("missing.yml"));
    assert_eq!(code, 1);
    assert!(text.contains("missing.yml"), "{text}");

    // Files a config refers to are resolved against its directory; a missing
    // one is a warning, as in promtool (the server starts without it).
    let refs = dir.path().join("refs.yml");
    std::fs::write(
        &refs,
        "scrape_configs:\n- job_name: a\n  basic_auth: {username: u, password_file: secret.txt}\n",
    )
    .unwrap();
    let (code, text) = ember_check(&refs);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("WARNING") && text.contains("password_file"),
        "{text}"
    );
    std::fs::write(dir.path().join("secret.txt"), "pw").unwrap();
    let (code, text) = ember_check(&refs);
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("WARNING"), "{text}");
    let out = run(&["check", "config", "--syntax-only", &refs.to_string_lossy()]);
    assert!(out.status.success());
}
