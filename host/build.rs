//! Records the git revision and compiler version for `--version` and
//! `ember_build_info`, and embeds the built web UI (`ui/dist`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn main() {
    let revision =
        output("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=EMBER_GIT_REVISION={revision}");
    println!("cargo:rustc-env=EMBER_RUSTC_VERSION={rustc_version}");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    embed_ui();
}

/// Writes `$OUT_DIR/ui_assets.rs`: every file of `ui/dist` as
/// `(path, include_bytes!)`. A missing UI build is a build error with the
/// command that fixes it, never a binary that serves a blank page.
fn embed_ui() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let dist = manifest.join("..").join("ui").join("dist");
    // A directory: cargo re-runs this script when any file under it changes.
    println!("cargo:rerun-if-changed={}", dist.display());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    if !manifest
        .join("..")
        .join("ui")
        .join("package.json")
        .is_file()
    {
        // A checkout without the UI's source (a crate-only copy, or an older
        // tree sharing this target directory): nothing to embed.
        std::fs::write(
            out_dir.join("ui_assets.rs"),
            "pub static ASSETS: &[(&str, &[u8])] = &[];\n",
        )
        .expect("write ui_assets.rs");
        return;
    }
    if !dist.join("index.html").is_file() {
        eprintln!(
            "\nerror: the web UI is not built ({} is missing).\n\
             run `npm ci && npm run build` in ui/ (or bash examples/quickstart/run.sh)\n",
            dist.join("index.html").display()
        );
        std::process::exit(1);
    }
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let mut out =
        String::from("/// Files of the built web UI (`ui/dist`), by path relative to it.\n");
    out.push_str("pub static ASSETS: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        let _ = writeln!(
            out,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        );
    }
    out.push_str("];\n");
    std::fs::write(out_dir.join("ui_assets.rs"), out).expect("write ui_assets.rs");
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            let abs = path.canonicalize().unwrap_or(path.clone());
            out.push((rel, abs));
        }
    }
}
