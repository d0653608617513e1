//! `ember check rules` against Prometheus 2.42's `promtool check rules`.
//!
//! `tests/rules/valid` and `tests/rules/invalid` hold rule files both tools
//! must accept or reject alike; where promtool is installed it is run too
//! (under CI it is required), and for errors other than YAML decoding and
//! PromQL parsing (whose parser messages differ) the reported lines, with
//! their positions, must be identical. `tests/rules/prometheus3` holds
//! Prometheus 3 features (`query_offset`, group `labels`) that Ember
//! accepts and promtool 2.42 does not know.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::run;

fn corpus(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/rules")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
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

/// Exit code and the error lines after `FAILED:`.
fn outcome(out: std::process::Output) -> (i32, Vec<String>) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = text
        .lines()
        .skip_while(|l| !l.contains("FAILED:"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

fn check_in_dir(file: &Path, tool: Option<&Path>) -> (i32, Vec<String>) {
    // Run from the corpus folder so both name the file the same way.
    let dir = file.parent().expect("parent");
    let name = file.file_name().expect("name");
    let out = match tool {
        None => Command::new(support::EMBER)
            .args(["check", "rules"])
            .arg(name)
            .current_dir(dir)
            .output(),
        Some(t) => Command::new(t)
            .args(["check", "rules"])
            .arg(name)
            .current_dir(dir)
            .output(),
    }
    .expect("run checker");
    outcome(out)
}

#[test]
fn corpus_agrees_with_promtool() {
    let promtool = promtool();
    let mut failures = Vec::new();
    for (dir, want) in [("valid", 0), ("invalid", 1)] {
        let files = corpus(dir);
        assert!(files.len() >= 15, "corpus {dir} is unexpectedly small");
        for file in files {
            let (code, lines) = check_in_dir(&file, None);
            if code != want {
                failures.push(format!(
                    "{}: ember exit {code}, want {want}: {lines:?}",
                    file.display()
                ));
            }
            let Some(p) = &promtool else { continue };
            let (pcode, plines) = check_in_dir(&file, Some(p));
            if pcode != want {
                failures.push(format!(
                    "{}: promtool exit {pcode}, want {want}",
                    file.display()
                ));
            }
            let comparable = !plines
                .iter()
                .any(|l| l.contains("yaml:") || l.contains("could not parse expression"));
            if want == 1 && comparable && plines != lines {
                failures.push(format!(
                    "{}: messages differ\n  promtool: {plines:?}\n  ember:    {lines:?}",
                    file.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn prometheus3_features_are_accepted() {
    let promtool = promtool();
    for file in corpus("prometheus3") {
        let (code, lines) = check_in_dir(&file, None);
        assert_eq!(code, 0, "{}: {lines:?}", file.display());
        if let Some(p) = &promtool {
            // Documented difference: promtool 2.42 predates these fields.
            assert_eq!(check_in_dir(&file, Some(p)).0, 1, "{}", file.display());
        }
    }
}

#[test]
fn messages_name_file_group_rule_and_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("r.yml");
    std::fs::write(
        &f,
        "groups:\n- name: x\n  rules:\n  - record: a\n    expr: up\n    for: 1m\n",
    )
    .expect("write");
    let out = run(&["check", "rules", &f.to_string_lossy()]);
    let (code, lines) = outcome(out);
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        [format!(
            "{}: 4:13: group \"x\", rule 1, \"a\": invalid field 'for' in recording rule",
            f.display()
        )]
    );
    let out = run(&["check", "rules", "/nonexistent/rules.yml"]);
    assert_eq!(out.status.code(), Some(1));
}
