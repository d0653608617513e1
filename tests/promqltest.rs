//! PromQL conformance runner for the promqltest script format.
//!
//! Runs every `.test` file in `<repo>/../shared/promqltest` (Prometheus's own
//! scripts) and in `tests/promql/` (Ember's cases) against Ember's storage and
//! PromQL engine, prints a pass/fail count per file, and fails on any failing
//! case that is not listed in `tests/promql/known_failures.txt`.
//!
//! Every `eval instant` is one case (`file.test:LINE`) and, as in Prometheus,
//! is run again as a range query with start = end = the eval time and a
//! one-minute step (`file.test:LINE (as range)`), except for evals that expect
//! a failure, a string, a range vector, or call `start()`/`end()`/`range()`/
//! `step()`. An `eval range` is one case.
//!
//! Environment:
//! * `PROMQLTEST_VERBOSE=1`: print every failure with its query and diff
//!   (regressions are always printed).
//! * `PROMQLTEST_UPDATE=1`: rewrite the known-failures list to the current
//!   failures.
//! * `PROMQLTEST_FILTER=<text>`: only run files whose name contains it.
//! * `CI`: a missing `../shared/promqltest` is an error instead of a skip.

#[path = "promqltest/compare.rs"]
mod compare;
#[path = "promqltest/parse.rs"]
mod parse;
#[path = "promqltest/store.rs"]
mod store;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ember::promql::{QueryError, QueryOptions, QueryResult};

use parse::{Eval, EvalKind, Item};
use store::Store;

/// Step of the range-query re-run of instant evals.
const RANGE_VARIANT_STEP_MS: i64 = 60_000;
/// A query running longer than this is a failure (the engine hangs).
const QUERY_TIME_LIMIT: Duration = Duration::from_secs(60);
const KNOWN_FAILURES: &str = "tests/promql/known_failures.txt";

/// Where a script comes from, which decides how its cases are named.
struct ScriptFile {
    path: PathBuf,
    /// Prefix of case ids: `aggregators.test`, `tests/promql/basic.test`.
    name: String,
    tier: &'static str,
}

struct Case {
    id: String,
    query: String,
    outcome: Result<(), String>,
}

fn main() -> ExitCode {
    install_panic_hook();
    let verbose = env_flag("PROMQLTEST_VERBOSE");
    let update = env_flag("PROMQLTEST_UPDATE");
    let filter = std::env::var("PROMQLTEST_FILTER").unwrap_or_default();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();

    let mut files = Vec::new();
    let mut setup_error = false;
    let shared = root.join("../shared/promqltest");
    if shared.is_dir() {
        files.extend(list_tests(&shared).into_iter().map(|path| {
            let name = file_name(&path);
            ScriptFile {
                tier: tier_of(&name),
                name,
                path,
            }
        }));
    } else if std::env::var_os("CI").is_some() {
        eprintln!(
            "error: {} is missing; CI needs Prometheus's PromQL test scripts there",
            shared.display()
        );
        setup_error = true;
    } else {
        println!(
            "notice: {} not found; running only Ember's own cases in tests/promql",
            shared.display()
        );
    }
    let shared_ran = shared.is_dir();
    files.extend(
        list_tests(&root.join("tests/promql"))
            .into_iter()
            .map(|path| ScriptFile {
                name: format!("tests/promql/{}", file_name(&path)),
                tier: "ember",
                path,
            }),
    );
    files.retain(|f| f.name.contains(&filter));

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };

    let started = Instant::now();
    let mut cases: Vec<Case> = Vec::new();
    let mut tier_totals: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for file in &files {
        let file_cases = run_file(&runtime, file);
        let failed = file_cases.iter().filter(|c| c.outcome.is_err()).count();
        let passed = file_cases.len() - failed;
        println!(
            "{} [{}]: passed {passed}, failed {failed}",
            file.name, file.tier
        );
        let t = tier_totals.entry(file.tier).or_default();
        t.0 += passed;
        t.1 += failed;
        cases.extend(file_cases);
    }
    let failed_total = cases.iter().filter(|c| c.outcome.is_err()).count();
    println!(
        "total: passed {}, failed {failed_total} ({} cases, {} files, {:.1}s)",
        cases.len() - failed_total,
        cases.len(),
        files.len(),
        started.elapsed().as_secs_f64()
    );
    for (tier, (p, f)) in &tier_totals {
        println!("  tier {tier}: passed {p}, failed {f}");
    }

    let list_path = root.join(KNOWN_FAILURES);
    let known = match std::fs::read_to_string(&list_path) {
        Ok(text) => parse_known(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => {
            eprintln!("error: reading {}: {e}", list_path.display());
            return ExitCode::FAILURE;
        }
    };

    if verbose {
        for c in cases.iter().filter(|c| c.outcome.is_err()) {
            print_failure(c, known.contains(&c.id));
        }
    }

    let ran: BTreeSet<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    let regressions: Vec<&Case> = cases
        .iter()
        .filter(|c| c.outcome.is_err() && !known.contains(&c.id))
        .collect();
    let now_passing: Vec<&str> = cases
        .iter()
        .filter(|c| c.outcome.is_ok() && known.contains(&c.id))
        .map(|c| c.id.as_str())
        .collect();
    let stale = known
        .iter()
        .filter(|id| !ran.contains(id.as_str()) && was_run(id, &files))
        .count();

    if update {
        // A partial run (a filter, or no ../shared) keeps the entries of the
        // files it did not cover.
        let partial = |id: &str| !filter.is_empty() || (!shared_ran && !is_own(id));
        let mut ids: Vec<String> = known
            .iter()
            .filter(|id| !was_run(id, &files) && partial(id))
            .cloned()
            .collect();
        ids.extend(
            cases
                .iter()
                .filter(|c| c.outcome.is_err())
                .map(|c| c.id.clone()),
        );
        ids.sort_by_key(|id| case_order(id));
        ids.dedup();
        if let Err(e) = std::fs::write(&list_path, render_known(&ids)) {
            eprintln!("error: writing {}: {e}", list_path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {} known failures to {KNOWN_FAILURES}", ids.len());
        return if setup_error {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }

    if !now_passing.is_empty() {
        println!(
            "\n{} cases in {KNOWN_FAILURES} pass now; remove them (or run with PROMQLTEST_UPDATE=1):",
            now_passing.len()
        );
        for id in &now_passing {
            println!("  {id}");
        }
    }
    if stale > 0 {
        println!(
            "\n{stale} entries of {KNOWN_FAILURES} name no case any more (line numbers moved?); \
             run with PROMQLTEST_UPDATE=1 to refresh the list"
        );
    }
    if !regressions.is_empty() {
        println!(
            "\n{} failing cases are not in {KNOWN_FAILURES}:",
            regressions.len()
        );
        for c in &regressions {
            print_failure(c, false);
        }
        return ExitCode::FAILURE;
    }
    if setup_error {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Runs one script: a fresh store per section, one case per eval (two for
/// instant evals with a range variant), one failing case per block that does
/// not parse or load.
fn run_file(rt: &tokio::runtime::Runtime, file: &ScriptFile) -> Vec<Case> {
    let text = match std::fs::read(&file.path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            return vec![Case {
                id: format!("{}:0", file.name),
                query: String::new(),
                outcome: Err(format!("cannot read {}: {e}", file.path.display())),
            }];
        }
    };
    let mut cases = Vec::new();
    let mut store: Option<Store> = None;
    for item in parse::parse_script(&text) {
        match item {
            Item::Error { line, message } => cases.push(Case {
                id: format!("{}:{line}", file.name),
                query: String::new(),
                outcome: Err(format!("script does not parse: {message}")),
            }),
            Item::Clear => store = None,
            Item::Load(load) => {
                let outcome = match ensure_store(&mut store) {
                    Ok(s) => s.load(&load),
                    Err(e) => Err(e),
                };
                if let Err(e) = outcome {
                    cases.push(Case {
                        id: format!("{}:{}", file.name, load.line),
                        query: String::new(),
                        outcome: Err(format!("load failed: {e}")),
                    });
                }
            }
            Item::Eval(eval) => match ensure_store(&mut store) {
                Ok(s) => cases.extend(run_eval(rt, s, &file.name, &eval)),
                Err(e) => cases.push(Case {
                    id: format!("{}:{}", file.name, eval.line),
                    query: eval.query.clone(),
                    outcome: Err(e),
                }),
            },
        }
    }
    cases
}

fn ensure_store(store: &mut Option<Store>) -> Result<&mut Store, String> {
    if store.is_none() {
        *store = Some(Store::new()?);
    }
    store.as_mut().ok_or_else(|| "no store".to_string())
}

fn run_eval(rt: &tokio::runtime::Runtime, store: &Store, file: &str, eval: &Eval) -> Vec<Case> {
    let id = format!("{file}:{}", eval.line);
    let range_id = format!("{id} (as range)");
    let with_range = eval.has_range_variant();
    let case = |id: &str, outcome| Case {
        id: id.to_string(),
        query: eval.query.clone(),
        outcome,
    };
    if let Some(reason) = store.blocker(&eval.query) {
        let mut out = vec![case(&id, Err(format!("not run: {reason}")))];
        if with_range {
            out.push(case(&range_id, Err(format!("not run: {reason}"))));
        }
        return out;
    }
    let opts = QueryOptions::default();
    let engine = &store.engine;
    match eval.kind {
        EvalKind::Range {
            start_ms,
            end_ms,
            step_ms,
        } => {
            let outcome = run_query(
                rt,
                engine.range_query(&eval.query, start_ms, end_ms, step_ms, &opts),
            )
            .and_then(|r| compare::check(eval, &r));
            vec![case(&id, outcome)]
        }
        EvalKind::Instant { at_ms } => {
            let outcome = run_query(rt, engine.instant_query(&eval.query, at_ms, &opts))
                .and_then(|r| compare::check(eval, &r));
            let mut out = vec![case(&id, outcome)];
            if with_range {
                let outcome = run_query(
                    rt,
                    engine.range_query(&eval.query, at_ms, at_ms, RANGE_VARIANT_STEP_MS, &opts),
                )
                .and_then(|r| compare::check_range_variant(eval, at_ms, &r));
                out.push(case(&range_id, outcome));
            }
            out
        }
    }
}

thread_local! {
    /// Set while the engine runs on this thread, so its panics are
    /// reported as case failures instead of printed.
    static IN_ENGINE: Cell<bool> = const { Cell::new(false) };
}

fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_ENGINE.with(Cell::get) {
            default(info);
        }
    }));
}

/// Runs one engine call to completion. A panic or a hang is a failure of
/// the case (`Err`), never a crash of the runner, and never counts as the
/// query error an `expect fail` wants.
fn run_query(
    rt: &tokio::runtime::Runtime,
    fut: impl Future<Output = Result<QueryResult, QueryError>>,
) -> Result<Result<QueryResult, QueryError>, String> {
    IN_ENGINE.with(|f| f.set(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(async { tokio::time::timeout(QUERY_TIME_LIMIT, fut).await })
    }));
    IN_ENGINE.with(|f| f.set(false));
    match result {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(_)) => Err(format!(
            "the engine did not answer within {}s",
            QUERY_TIME_LIMIT.as_secs()
        )),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("the engine panicked: {msg}"))
        }
    }
}

fn print_failure(c: &Case, known: bool) {
    let tag = if known { "FAIL (known)" } else { "FAIL" };
    println!("{tag} {}", c.id);
    if !c.query.is_empty() {
        println!("  query: {}", c.query);
    }
    if let Err(diff) = &c.outcome {
        for line in diff.lines() {
            println!("  {line}");
        }
    }
}

fn list_tests(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "test") && p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The tiers of `../shared/promqltest/README.md`.
fn tier_of(name: &str) -> &'static str {
    const STABLE: [&str; 13] = [
        "aggregators",
        "at_modifier",
        "collision",
        "functions",
        "histograms",
        "literals",
        "name_label_dropping",
        "operators",
        "range_queries",
        "selectors",
        "staleness",
        "subquery",
        "trig_functions",
    ];
    let stem = name.strip_suffix(".test").unwrap_or(name);
    if STABLE.contains(&stem) {
        "stable"
    } else if stem == "native_histograms" {
        "native histograms"
    } else {
        "experimental"
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn is_own(id: &str) -> bool {
    id.starts_with("tests/promql/")
}

/// Whether this run covered the file a case id belongs to.
fn was_run(id: &str, files: &[ScriptFile]) -> bool {
    let file = id.split(':').next().unwrap_or(id);
    files.iter().any(|f| f.name == file)
}

fn parse_known(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Sort key: file, then line number, then the variant.
fn case_order(id: &str) -> (String, u64, String) {
    let (file, rest) = id.split_once(':').unwrap_or((id, ""));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (
        file.to_string(),
        digits.parse().unwrap_or(0),
        rest[digits.len()..].to_string(),
    )
}

fn render_known(ids: &[String]) -> String {
    let mut out = String::from(
        "# PromQL conformance cases that fail today, one case id per line:\n\
         # `file.test:LINE` is the eval at that line, `file.test:LINE (as range)`\n\
         # its re-run as a range query.\n\
         #\n\
         # Generated by `PROMQLTEST_UPDATE=1 cargo test -p ember --test promqltest`:\n\
         # the conformance runner (tests/promqltest.rs) fails on any failing case\n\
         # not listed here, and lists the listed cases that pass now.\n",
    );
    for id in ids {
        out.push_str(id);
        out.push('\n');
    }
    out
}
