//! Parser for the promqltest script format (`../shared/promqltest/FORMAT.md`).
//!
//! A script is a sequence of blocks separated by blank lines. Comment lines
//! (`#` after optional indentation) count as blank, as in Prometheus, so a
//! comment also ends a block. Each block starts with a command line (`load`,
//! `load_with_nhcb`, `clear`, `eval ...`) followed by its data lines.
//!
//! Parsing never panics and never gives up on a whole file: a block that does
//! not parse becomes an [`Item::Error`] with its line, and parsing resumes at
//! the next block.

use std::fmt;

use ember::model::FloatHistogram;
use ember::model::histogram::{CounterResetHint, Span};

/// Milliseconds, the unit of every time in a script (relative to the epoch).
pub type Millis = i64;

/// Label pairs as written, `__name__` included.
pub type LabelPairs = Vec<(String, String)>;

/// One block of a script, or the error that kept a block from parsing.
#[derive(Debug)]
pub enum Item {
    Load(Load),
    Clear,
    Eval(Box<Eval>),
    Error { line: usize, message: String },
}

/// `load <interval>` or `load_with_nhcb <interval>`.
#[derive(Debug)]
pub struct Load {
    pub line: usize,
    pub interval_ms: Millis,
    /// `load_with_nhcb`: Prometheus also derives native histograms with
    /// custom buckets from the classic histogram series.
    pub with_nhcb: bool,
    pub series: Vec<LoadSeries>,
}

#[derive(Debug)]
pub struct LoadSeries {
    pub line: usize,
    pub labels: Vec<(String, String)>,
    pub points: Vec<Point>,
    /// The series has start timestamps (`@st` lines), which Ember's storage
    /// does not keep.
    pub has_start_timestamps: bool,
}

/// One step of an expanded point sequence.
#[derive(Clone, Debug, PartialEq)]
pub enum Point {
    /// `_`: no sample at this step.
    Missing,
    /// A float sample; `stale` is the stale-marker NaN.
    Float(f64),
    /// A native histogram.
    Histogram(Box<FloatHistogram>),
}

/// How an instant or range evaluation is timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalKind {
    Instant {
        at_ms: Millis,
    },
    Range {
        start_ms: Millis,
        end_ms: Millis,
        step_ms: Millis,
    },
}

/// `expect range vector from <start> to <end> step <step>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeSpec {
    pub start_ms: Millis,
    pub end_ms: Millis,
    pub step_ms: Millis,
}

/// How an expected message is matched against the actual one.
#[derive(Clone, Debug)]
pub enum TextMatch {
    Any,
    Exact(String),
    Regex(regex::Regex),
}

impl TextMatch {
    pub fn matches(&self, s: &str) -> bool {
        match self {
            TextMatch::Any => true,
            TextMatch::Exact(m) => m == s,
            TextMatch::Regex(r) => r.is_match(s),
        }
    }
}

impl fmt::Display for TextMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextMatch::Any => f.write_str("anything"),
            TextMatch::Exact(m) => write!(f, "msg {m:?}"),
            TextMatch::Regex(r) => write!(f, "regex {:?}", r.as_str()),
        }
    }
}

/// What an `eval` expects.
#[derive(Debug)]
pub enum Expected {
    /// Expected series lines (possibly none: an empty result).
    Series(Vec<ExpectedSeries>),
    /// A bare number line: a scalar result.
    Scalar(f64),
    /// `expect string "..."`.
    String(String),
}

#[derive(Debug)]
pub struct ExpectedSeries {
    pub line: usize,
    pub labels: Vec<(String, String)>,
    pub points: Vec<Point>,
}

#[derive(Debug)]
pub struct Eval {
    pub line: usize,
    pub query: String,
    pub kind: EvalKind,
    /// For instant queries returning a range vector.
    pub range_vector: Option<RangeSpec>,
    pub ordered: bool,
    /// `expect fail` (or `eval_fail`), with how to match the error text.
    pub fail: Option<TextMatch>,
    pub warn: Vec<TextMatch>,
    pub info: Vec<TextMatch>,
    pub no_warn: bool,
    pub no_info: bool,
    pub expected: Expected,
}

impl Eval {
    /// Whether Prometheus also runs this instant eval as a range query:
    /// not for failures, strings, range-vector results, or queries whose
    /// result depends on the query range (`start()`, `end()`, `range()`,
    /// `step()`).
    pub fn has_range_variant(&self) -> bool {
        matches!(self.kind, EvalKind::Instant { .. })
            && self.fail.is_none()
            && self.range_vector.is_none()
            && !matches!(self.expected, Expected::String(_))
            && !["start()", "end()", "range()", "step()"]
                .iter()
                .any(|f| contains_call(&self.query, f))
    }
}

/// `name()` as a call, not as the tail of a longer identifier.
fn contains_call(query: &str, call: &str) -> bool {
    query.match_indices(call).any(|(i, _)| {
        !query[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    })
}

type PResult<T> = Result<T, String>;

/// Parses a whole script. Line numbers are 1-based.
pub fn parse_script(text: &str) -> Vec<Item> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') { "" } else { l }
        })
        .collect();
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].is_empty() {
            i += 1;
            continue;
        }
        let start = i;
        while i < lines.len() && !lines[i].is_empty() {
            i += 1;
        }
        // A block may hold several commands: `clear` is one line, and an
        // eval ends after a scalar or an `expected_fail_*` line.
        let mut at = start;
        while at < i {
            let (item, used) = parse_block(&lines[at..i], at + 1);
            items.push(item);
            at += used.max(1);
        }
    }
    items
}

/// One command starting at `block[0]` (numbered `first_line`) and the
/// number of lines it used. An error uses the rest of the block.
fn parse_block(block: &[&str], first_line: usize) -> (Item, usize) {
    let head = block[0];
    let word = head
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let result = if word == "clear" {
        if head.len() > word.len() {
            Err((first_line, format!("invalid command {head:?}")))
        } else {
            return (Item::Clear, 1);
        }
    } else if word.starts_with("load") {
        parse_load(block, first_line).map(|l| (Item::Load(l), block.len()))
    } else if word.starts_with("eval") {
        parse_eval(block, first_line).map(|(e, used)| (Item::Eval(Box::new(e)), used))
    } else {
        Err((first_line, format!("invalid command {head:?}")))
    };
    result.unwrap_or_else(|(line, message)| (Item::Error { line, message }, block.len()))
}

type BlockResult<T> = Result<T, (usize, String)>;

fn parse_load(block: &[&str], first_line: usize) -> BlockResult<Load> {
    let head = block[0];
    let (word, rest) = split_token(head);
    let with_nhcb = match word {
        "load" => false,
        "load_with_nhcb" => true,
        _ => {
            return Err((
                first_line,
                format!("invalid load command {head:?} (load[_with_nhcb] <interval>)"),
            ));
        }
    };
    let interval_ms = parse_duration(rest.trim()).map_err(|e| (first_line, e))?;
    if interval_ms <= 0 {
        return Err((first_line, "load interval must be positive".to_string()));
    }
    let mut series: Vec<LoadSeries> = Vec::new();
    let mut default_st = false;
    // An `@st` line applies to the next sample line, which must name the
    // same series.
    let mut pending_st: Option<(usize, Vec<(String, String)>)> = None;
    for (k, line) in block.iter().enumerate().skip(1) {
        let n = first_line + k;
        if let Some((metric, seq)) = split_st_line(line) {
            if pending_st.is_some() {
                return Err((n, "@st line has no following sample line".to_string()));
            }
            validate_st_sequence(seq).map_err(|e| (n, format!("invalid @st sequence: {e}")))?;
            if metric.is_empty() {
                default_st = true;
            } else {
                let (labels, rest) = parse_labels(metric).map_err(|e| (n, e))?;
                if !rest.trim().is_empty() {
                    return Err((n, format!("unexpected {rest:?} in @st line")));
                }
                pending_st = Some((n, labels));
            }
            continue;
        }
        let (labels, points) = parse_series_line(line).map_err(|e| (n, e))?;
        let mut has_st = default_st;
        if let Some((st_line, st_labels)) = pending_st.take() {
            if !same_labels(&st_labels, &labels) {
                return Err((
                    st_line,
                    "@st metric does not match the following sample line".to_string(),
                ));
            }
            has_st = true;
        }
        series.push(LoadSeries {
            line: n,
            labels,
            points,
            has_start_timestamps: has_st,
        });
    }
    if let Some((st_line, _)) = pending_st {
        return Err((st_line, "@st line has no following sample line".to_string()));
    }
    Ok(Load {
        line: first_line,
        interval_ms,
        with_nhcb,
        series,
    })
}

/// `metric{...}@st <sequence>` or `@st <sequence>`: the metric part (empty
/// for the standalone default form) and the sequence.
fn split_st_line(line: &str) -> Option<(&str, &str)> {
    let end = line.find(char::is_whitespace)?;
    let metric = line[..end].strip_suffix("@st")?;
    Some((metric, line[end..].trim()))
}

/// Start-timestamp offsets: `_`, `_xN`, `*`, `*xN`, `<dur>`, `<dur>xN`,
/// `<dur>(+|-)<dur>xN`, durations optionally signed. Only checked, not kept.
fn validate_st_sequence(seq: &str) -> PResult<()> {
    for item in seq.split_whitespace() {
        let ok = match item {
            "_" | "*" => true,
            _ if item.starts_with("_x") || item.starts_with("*x") => {
                item[2..].parse::<u64>().is_ok()
            }
            _ => {
                let (_, rest) = split_signed_duration(item)?;
                if rest.is_empty() {
                    true
                } else if let Some(n) = rest.strip_prefix('x') {
                    n.parse::<u64>().is_ok()
                } else if rest.starts_with(['+', '-']) {
                    let (_, rest2) = split_signed_duration(&rest[1..])?;
                    rest2
                        .strip_prefix('x')
                        .is_some_and(|n| n.parse::<u64>().is_ok())
                } else {
                    false
                }
            }
        };
        if !ok {
            return Err(format!("bad item {item:?}"));
        }
    }
    Ok(())
}

/// A signed duration at the start of `s` (units never include `x`).
fn split_signed_duration(s: &str) -> PResult<(Millis, &str)> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let end = body
        .find(|c: char| !(c.is_ascii_alphanumeric() && c != 'x'))
        .unwrap_or(body.len());
    let d = parse_duration(&body[..end])?;
    Ok((if neg { -d } else { d }, &body[end..]))
}

/// An eval and the number of lines it used.
fn parse_eval(block: &[&str], first_line: usize) -> BlockResult<(Eval, usize)> {
    let head = block[0];
    let err = |m: String| (first_line, m);
    let (word, rest) = split_token(head);
    let modifier = match word {
        "eval" => "",
        "eval_fail" => "fail",
        "eval_warn" => "warn",
        "eval_info" => "info",
        "eval_ordered" => "ordered",
        _ => return Err(err(format!("invalid eval command {word:?}"))),
    };
    let (mode, rest) = split_token(rest);
    let (kind, query) = match mode {
        "instant" => {
            let (at, rest) = split_token(rest);
            if at != "at" {
                return Err(err("expected `eval instant at <time> <query>`".into()));
            }
            let (time, query) = split_token(rest);
            let at_ms = parse_duration(time).map_err(|e| err(format!("invalid time: {e}")))?;
            (EvalKind::Instant { at_ms }, query)
        }
        "range" => {
            if modifier == "ordered" {
                return Err(err("eval_ordered is not allowed for range queries".into()));
            }
            let (spec, query) = parse_range_words(rest).map_err(err)?;
            (
                EvalKind::Range {
                    start_ms: spec.start_ms,
                    end_ms: spec.end_ms,
                    step_ms: spec.step_ms,
                },
                query,
            )
        }
        _ => {
            return Err(err(
                "expected `eval instant at <time> <query>` or `eval range from <start> to <end> step <step> <query>`"
                    .into(),
            ));
        }
    };
    let query = query.trim();
    if query.is_empty() {
        return Err(err("missing query".into()));
    }
    let mut eval = Eval {
        line: first_line,
        query: query.to_string(),
        kind,
        range_vector: None,
        ordered: modifier == "ordered",
        fail: (modifier == "fail").then_some(TextMatch::Any),
        warn: if modifier == "warn" {
            vec![TextMatch::Any]
        } else {
            Vec::new()
        },
        info: if modifier == "info" {
            vec![TextMatch::Any]
        } else {
            Vec::new()
        },
        no_warn: false,
        no_info: false,
        expected: Expected::Series(Vec::new()),
    };
    let mut series: Vec<ExpectedSeries> = Vec::new();
    let mut scalar: Option<f64> = None;
    let mut string: Option<String> = None;
    let mut fail_lines = 0;
    let mut used = block.len();
    let mut ended = false;
    for (k, line) in block.iter().enumerate().skip(1) {
        let n = first_line + k;
        let lerr = |m: String| (n, m);
        if ended {
            // As in Prometheus, the eval ended at the scalar or at the
            // expected_fail_* line; this line starts the next command.
            used = k;
            break;
        }
        if let Some(m) = line.strip_prefix("expected_fail_message") {
            if modifier != "fail" {
                return Err(lerr("expected_fail_message needs eval_fail".into()));
            }
            eval.fail = Some(TextMatch::Exact(m.trim().to_string()));
            ended = true;
            continue;
        }
        if let Some(m) = line.strip_prefix("expected_fail_regexp") {
            if modifier != "fail" {
                return Err(lerr("expected_fail_regexp needs eval_fail".into()));
            }
            let re =
                regex::Regex::new(m.trim()).map_err(|e| lerr(format!("invalid regexp: {e}")))?;
            eval.fail = Some(TextMatch::Regex(re));
            ended = true;
            continue;
        }
        if let Some(r) = line.strip_prefix("expect range vector") {
            if !matches!(eval.kind, EvalKind::Instant { .. }) {
                return Err(lerr(
                    "expect range vector is only for instant queries".into(),
                ));
            }
            let r = r.trim_start();
            let (spec, rest) = parse_range_words(r).map_err(lerr)?;
            if !rest.trim().is_empty() {
                return Err(lerr(format!("unexpected {rest:?} after the range")));
            }
            eval.range_vector = Some(spec);
            eval.kind = EvalKind::Instant { at_ms: spec.end_ms };
            continue;
        }
        if let Some(s) = line.strip_prefix("expect string") {
            if !matches!(eval.kind, EvalKind::Instant { .. }) {
                return Err(lerr("expect string is only for instant queries".into()));
            }
            let s = s.trim();
            if s.is_empty() {
                return Err(lerr("expect string needs a quoted string".into()));
            }
            let (v, rest) = parse_string(s).map_err(lerr)?;
            if !rest.trim().is_empty() {
                return Err(lerr(format!("unexpected {rest:?} after the string")));
            }
            string = Some(v);
            continue;
        }
        if split_token(line).0 == "expect" {
            parse_expect(line, &mut eval, &mut fail_lines).map_err(lerr)?;
            continue;
        }
        if let Some(v) = parse_bare_number(line) {
            if !series.is_empty() {
                return Err(lerr("a scalar cannot follow expected series".into()));
            }
            scalar = Some(v);
            ended = true;
            continue;
        }
        let (labels, points) = parse_series_line(line).map_err(lerr)?;
        if points.len() > 1
            && eval.range_vector.is_none()
            && matches!(eval.kind, EvalKind::Instant { .. })
        {
            return Err(lerr(
                "an instant query expects one value per series (or use `expect range vector`)"
                    .into(),
            ));
        }
        if series.iter().any(|s| same_labels(&s.labels, &labels)) {
            return Err(lerr("the same series is expected twice".into()));
        }
        series.push(ExpectedSeries {
            line: n,
            labels,
            points,
        });
    }
    if !eval.warn.is_empty() && eval.no_warn {
        return Err(err("warn and no_warn cannot be used together".into()));
    }
    if !eval.info.is_empty() && eval.no_info {
        return Err(err("info and no_info cannot be used together".into()));
    }
    eval.expected = match (scalar, string) {
        (Some(_), Some(_)) => {
            return Err(err("both a scalar and a string are expected".into()));
        }
        (Some(v), None) => Expected::Scalar(v),
        (None, Some(s)) => {
            if !series.is_empty() {
                return Err(err("both a string and series are expected".into()));
            }
            Expected::String(s)
        }
        (None, None) => Expected::Series(series),
    };
    Ok((eval, used))
}

/// `expect <type> [msg|regex: <text>]`.
fn parse_expect(line: &str, eval: &mut Eval, fail_lines: &mut usize) -> PResult<()> {
    let (_, rest) = split_token(line);
    let (kind, rest) = split_token(rest);
    let rest = rest.trim();
    let matcher = if rest.is_empty() {
        TextMatch::Any
    } else if let Some(m) = rest.strip_prefix("msg:") {
        let m = m.trim();
        if m.is_empty() {
            return Err("empty msg:".into());
        }
        TextMatch::Exact(m.to_string())
    } else if let Some(r) = rest.strip_prefix("regex:") {
        let r = r.trim();
        if r.is_empty() {
            return Err("empty regex:".into());
        }
        TextMatch::Regex(regex::Regex::new(r).map_err(|e| format!("invalid regex {r:?}: {e}"))?)
    } else {
        return Err(format!(
            "invalid expect line {line:?}, must be `expect <type> [msg|regex]: <text>`"
        ));
    };
    let takes_text = matches!(kind, "fail" | "warn" | "info");
    if !takes_text && !matches!(matcher, TextMatch::Any) {
        return Err(format!("expect {kind} takes no message"));
    }
    match kind {
        "ordered" => eval.ordered = true,
        "fail" => {
            *fail_lines += 1;
            if *fail_lines > 1 {
                return Err("only one expect fail line is allowed".into());
            }
            eval.fail = Some(matcher);
        }
        "warn" => eval.warn.push(matcher),
        "info" => eval.info.push(matcher),
        "no_warn" => eval.no_warn = true,
        "no_info" => eval.no_info = true,
        _ => return Err(format!("unknown expectation type {kind:?}")),
    }
    if eval.ordered && matches!(eval.kind, EvalKind::Range { .. }) {
        return Err("expect ordered is not allowed for range queries".into());
    }
    Ok(())
}

/// `from <start> to <end> step <step>` and the rest of the line.
fn parse_range_words(s: &str) -> PResult<(RangeSpec, &str)> {
    let usage = "expected `from <start> to <end> step <step>`";
    let (w, rest) = split_token(s);
    if w != "from" {
        return Err(usage.into());
    }
    let (start, rest) = split_token(rest);
    let (w, rest) = split_token(rest);
    if w != "to" {
        return Err(usage.into());
    }
    let (end, rest) = split_token(rest);
    let (w, rest) = split_token(rest);
    if w != "step" {
        return Err(usage.into());
    }
    let (step, rest) = split_token(rest);
    let start_ms = parse_duration(start).map_err(|e| format!("invalid start: {e}"))?;
    let end_ms = parse_duration(end).map_err(|e| format!("invalid end: {e}"))?;
    let step_ms = parse_duration(step).map_err(|e| format!("invalid step: {e}"))?;
    if end_ms < start_ms {
        return Err(format!("end {end} is before start {start}"));
    }
    if step_ms <= 0 {
        return Err("step must be positive".into());
    }
    Ok((
        RangeSpec {
            start_ms,
            end_ms,
            step_ms,
        },
        rest,
    ))
}

/// The first whitespace-separated word and the rest (leading space removed).
fn split_token(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// A Prometheus duration: `0`, or units `y w d h m s ms` in decreasing
/// order (`1h30m`, `10s53ms`). A bare number is seconds (`90`, `1.5`).
pub fn parse_duration(s: &str) -> PResult<Millis> {
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = s.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        let ms = (secs * 1000.0).round();
        if !ms.is_finite() || ms.abs() > i64::MAX as f64 / 2.0 {
            return Err(format!("duration {s:?} out of range"));
        }
        return Ok(ms as Millis);
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3600 * 1000),
        ("w", 7 * 24 * 3600 * 1000),
        ("d", 24 * 3600 * 1000),
        ("h", 3600 * 1000),
        ("ms", 1),
        ("m", 60 * 1000),
        ("s", 1000),
    ];
    // Rank of each unit in the required (decreasing) order.
    let rank = |u: &str| match u {
        "y" => 0,
        "w" => 1,
        "d" => 2,
        "h" => 3,
        "m" => 4,
        "s" => 5,
        _ => 6, // ms
    };
    let mut total: i64 = 0;
    let mut last_rank = -1;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("duration {s:?} out of range"))?;
        rest = &rest[digits..];
        let (unit, mult) = UNITS
            .iter()
            .find(|(u, _)| rest.starts_with(u))
            .ok_or_else(|| format!("invalid duration {s:?}: missing or unknown unit"))?;
        let r = rank(unit);
        if r <= last_rank {
            return Err(format!("invalid duration {s:?}: units out of order"));
        }
        last_rank = r;
        rest = &rest[unit.len()..];
        total = n
            .checked_mul(*mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {s:?} out of range"))?;
    }
    Ok(total)
}

/// A whole line that is one number: the expected scalar. Accepts what Go's
/// `strconv.ParseInt(s, 0, 64)` or `ParseFloat` accept, as Prometheus does:
/// `0x1f`, `0o17`, `017`, `1e3`, `Inf`, `-Inf`, `NaN`.
pub fn parse_bare_number(s: &str) -> Option<f64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let body_nounder = body.replace('_', "");
    let radix_int = |digits: &str, radix: u32| i64::from_str_radix(digits, radix).ok();
    let lower = body_nounder.to_ascii_lowercase();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        radix_int(h, 16)
    } else if let Some(o) = lower.strip_prefix("0o") {
        radix_int(o, 8)
    } else if let Some(b) = lower.strip_prefix("0b") {
        radix_int(b, 2)
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|b| b.is_ascii_digit())
    {
        radix_int(&lower[1..], 8)
    } else {
        None
    };
    if let Some(i) = int {
        let v = i as f64;
        return Some(if neg { -v } else { v });
    }
    // Underscores are only allowed with a base prefix.
    if body.contains('_') || body.is_empty() {
        return None;
    }
    let ok_chars = body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'+' || b == b'-');
    if !ok_chars {
        return None;
    }
    let v: f64 = match lower.as_str() {
        "inf" | "infinity" => f64::INFINITY,
        "nan" => f64::NAN,
        _ if lower.bytes().any(|b| b.is_ascii_alphabetic() && b != b'e') => return None,
        _ => body.parse().ok()?,
    };
    Some(if neg { -v } else { v })
}

fn same_labels(a: &[(String, String)], b: &[(String, String)]) -> bool {
    let norm = |l: &[(String, String)]| {
        let mut v: Vec<(String, String)> =
            l.iter().filter(|(_, v)| !v.is_empty()).cloned().collect();
        v.sort();
        v
    };
    norm(a) == norm(b)
}

/// `metric{a="b"} <points>`: labels (including `__name__`) and points.
pub fn parse_series_line(line: &str) -> PResult<(LabelPairs, Vec<Point>)> {
    let (labels, rest) = parse_labels(line)?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return Err(format!("unexpected {rest:?} after the series"));
    }
    let points = parse_points(rest)?;
    Ok((labels, points))
}

/// A series selector without matchers other than `=`: `name`, `name{...}`,
/// `{...}` (a quoted name inside the braces is allowed). Returns the labels
/// and the rest of the input.
pub fn parse_labels(s: &str) -> PResult<(LabelPairs, &str)> {
    let mut labels = Vec::new();
    let name_len = s
        .char_indices()
        .take_while(|&(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        })
        .count();
    if name_len > 0 {
        labels.push(("__name__".to_string(), s[..name_len].to_string()));
    }
    let mut rest = &s[name_len..];
    let after_space = rest.trim_start();
    // `name {a="b"}` is allowed, but `name {{...}}` is a histogram point.
    if after_space.starts_with('{') && !after_space.starts_with("{{") {
        rest = after_space;
    }
    if let Some(body) = rest.strip_prefix('{') {
        rest = body;
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let (name, r) = if rest.starts_with(['"', '\'', '`']) {
                parse_string(rest)?
            } else {
                let n = rest
                    .char_indices()
                    .take_while(|&(i, c)| {
                        c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit())
                    })
                    .count();
                if n == 0 {
                    return Err(format!("expected a label name at {rest:?}"));
                }
                (rest[..n].to_string(), &rest[n..])
            };
            let r = r.trim_start();
            if let Some(r) = r.strip_prefix('=') {
                let r = r.trim_start();
                if !r.starts_with(['"', '\'', '`']) {
                    return Err(format!("expected a quoted label value at {r:?}"));
                }
                let (value, r) = parse_string(r)?;
                labels.push((name, value));
                rest = r;
            } else if r.starts_with([',', '}']) {
                // A bare quoted string is the metric name.
                labels.push(("__name__".to_string(), name));
                rest = r;
            } else {
                return Err(format!("expected `=` at {r:?}"));
            }
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err(format!("expected `,` or `}}` at {rest:?}"));
            }
        }
    } else if name_len == 0 {
        return Err(format!("expected a series at {s:?}"));
    }
    let mut names: Vec<&str> = labels.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("label {:?} given twice", w[0]));
    }
    Ok((labels, rest))
}

/// A PromQL string literal at the start of `s`: `"..."` and `'...'` with Go
/// escapes, or a raw `` `...` ``. Returns the value and the rest.
pub fn parse_string(s: &str) -> PResult<(String, &str)> {
    let mut chars = s.char_indices();
    let quote = match chars.next() {
        Some((_, q @ ('"' | '\'' | '`'))) => q,
        _ => return Err(format!("expected a quoted string at {s:?}")),
    };
    let mut out: Vec<u8> = Vec::new();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            let v = String::from_utf8_lossy(&out).into_owned();
            return Ok((v, &s[i + 1..]));
        }
        if c == '\\' && quote != '`' {
            let (_, e) = chars.next().ok_or("unterminated escape")?;
            let mut take_hex = |n: usize| -> PResult<u32> {
                let mut v = 0u32;
                for _ in 0..n {
                    let (_, h) = chars.next().ok_or("short escape")?;
                    v = v * 16 + h.to_digit(16).ok_or("bad hex escape")?;
                }
                Ok(v)
            };
            match e {
                'a' => out.push(7),
                'b' => out.push(8),
                'f' => out.push(12),
                'n' => out.push(b'\n'),
                'r' => out.push(b'\r'),
                't' => out.push(b'\t'),
                'v' => out.push(11),
                '\\' | '"' | '\'' => out.push(e as u8),
                'x' => out.push(take_hex(2)? as u8),
                'u' | 'U' => {
                    let v = take_hex(if e == 'u' { 4 } else { 8 })?;
                    let ch = char::from_u32(v).ok_or("invalid unicode escape")?;
                    out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                }
                '0'..='7' => {
                    let mut v = e.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        let (_, o) = chars.next().ok_or("short octal escape")?;
                        v = v * 8 + o.to_digit(8).ok_or("bad octal escape")?;
                    }
                    out.push(u8::try_from(v).map_err(|_| "octal escape out of range")?);
                }
                _ => return Err(format!("unknown escape \\{e}")),
            }
        } else {
            if c == '\n' && quote != '`' {
                return Err("newline in string".into());
            }
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
    }
    Err(format!("unterminated string {s:?}"))
}

/// Splits a point sequence into items at whitespace outside `{{ }}`.
fn split_items(s: &str) -> PResult<Vec<&str>> {
    let mut items = Vec::new();
    let mut depth = 0i32;
    let mut start: Option<usize> = None;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unbalanced `}}` in {s:?}"));
                }
            }
            _ => {}
        }
        if c.is_whitespace() && depth == 0 {
            if let Some(st) = start.take() {
                items.push(&s[st..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced `{{` in {s:?}"));
    }
    if let Some(st) = start {
        items.push(&s[st..]);
    }
    Ok(items)
}

/// Expands a point sequence:
///
/// * `_` one missing point, `_xN` N missing points;
/// * `v` one value, `vxN` the value N+1 times;
/// * `a+bxN` / `a-bxN` N+1 values from `a` in steps of `b` (added one
///   step at a time, as Prometheus does, so float rounding matches);
/// * values: decimal numbers, `Inf`, `NaN` (any case, optionally signed),
///   `stale`;
/// * `{{...}}` a native histogram, with `xN` and `{{...}}+{{...}}xN` too.
pub fn parse_points(s: &str) -> PResult<Vec<Point>> {
    let mut points = Vec::new();
    for item in split_items(s)? {
        expand_item(item, &mut points).map_err(|e| format!("invalid point {item:?}: {e}"))?;
    }
    Ok(points)
}

fn expand_item(item: &str, out: &mut Vec<Point>) -> PResult<()> {
    if let Some(rest) = item.strip_prefix('_') {
        if rest.is_empty() {
            out.push(Point::Missing);
            return Ok(());
        }
        let n = parse_times(rest)?;
        out.extend(std::iter::repeat_n(Point::Missing, n));
        return Ok(());
    }
    if item.starts_with("{{") {
        let (first, rest) = take_histogram(item)?;
        let start = parse_histogram(first)?;
        if rest.is_empty() {
            out.push(Point::Histogram(Box::new(start)));
            return Ok(());
        }
        if rest.starts_with('x') {
            let n = parse_times(rest)?;
            out.extend(std::iter::repeat_n(
                Point::Histogram(Box::new(start)),
                n + 1,
            ));
            return Ok(());
        }
        if !rest.starts_with(['+', '-']) {
            return Err(format!("unexpected {rest:?}"));
        }
        let (inc, rest2) = take_histogram(&rest[1..])?;
        let inc = parse_histogram(inc)?;
        let n = parse_times(rest2)?;
        // Each step adds (or subtracts) the increment once more, as
        // Prometheus does, so float rounding matches.
        let mut h = start;
        for _ in 0..=n {
            out.push(Point::Histogram(Box::new(h.clone())));
            let r = if rest.starts_with('+') {
                h.add(&inc)
            } else {
                h.sub(&inc)
            };
            r.map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    let (first, rest) = take_value(item, true)?;
    if rest.is_empty() {
        out.push(Point::Float(first));
        return Ok(());
    }
    if rest.starts_with('x') {
        let n = parse_times(rest)?;
        out.extend(std::iter::repeat_n(Point::Float(first), n + 1));
        return Ok(());
    }
    if !rest.starts_with(['+', '-']) {
        return Err(format!("unexpected {rest:?}"));
    }
    let (step, rest) = take_value(rest, false)?;
    let n = parse_times(rest)?;
    let mut v = first;
    for _ in 0..=n {
        out.push(Point::Float(v));
        v += step;
    }
    Ok(())
}

/// `xN` with N an unsigned integer; returns N.
fn parse_times(s: &str) -> PResult<usize> {
    let n = s
        .strip_prefix('x')
        .ok_or_else(|| format!("expected `x<count>` at {s:?}"))?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid repeat count {n:?}"));
    }
    let n: usize = n
        .parse()
        .map_err(|_| format!("repeat count {n:?} too large"))?;
    if n > 1_000_000 {
        return Err(format!("repeat count {n} too large"));
    }
    Ok(n)
}

/// A histogram in the promqltest notation: `{{schema:0 sum:5 count:4
/// z_bucket:1 z_bucket_w:0.001 buckets:[1 2 1] offset:1 n_buckets:[..]
/// n_offset:-1 custom_values:[..] counter_reset_hint:gauge}}`.
pub fn parse_histogram(s: &str) -> PResult<FloatHistogram> {
    let body = s
        .strip_prefix("{{")
        .and_then(|b| b.strip_suffix("}}"))
        .ok_or_else(|| format!("not a histogram: {s:?}"))?;
    let mut h = FloatHistogram::default();
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    let (mut pos_off, mut neg_off) = (0i32, 0i32);
    let mut rest = body.trim();
    let number = |v: &str| -> PResult<f64> {
        let (x, r) = take_value(v, true)?;
        if !r.is_empty() {
            return Err(format!("invalid number {v:?}"));
        }
        Ok(x)
    };
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once(':')
            .ok_or_else(|| format!("expected key:value in histogram at {rest:?}"))?;
        let key = key.trim();
        let after = after.trim_start();
        let (value, next) = if after.starts_with('[') {
            let end = after
                .find(']')
                .ok_or_else(|| format!("unterminated list at {after:?}"))?;
            (&after[..=end], &after[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        let list = |v: &str| -> PResult<Vec<f64>> {
            v.trim_start_matches('[')
                .trim_end_matches(']')
                .split_whitespace()
                .map(number)
                .collect()
        };
        let int = |v: &str| -> PResult<i32> {
            v.parse::<i32>()
                .map_err(|_| format!("invalid integer {v:?} for {key}"))
        };
        match key {
            "schema" => h.schema = int(value)?,
            "sum" => h.sum = number(value)?,
            "count" => h.count = number(value)?,
            "z_bucket" => h.zero_count = number(value)?,
            "z_bucket_w" => h.zero_threshold = number(value)?,
            "buckets" => pos = list(value)?,
            "n_buckets" => neg = list(value)?,
            "offset" => pos_off = int(value)?,
            "n_offset" => neg_off = int(value)?,
            "custom_values" => h.custom_values = list(value)?,
            "counter_reset_hint" => {
                h.counter_reset_hint = match value {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::CounterReset,
                    "not_reset" => CounterResetHint::NotCounterReset,
                    "gauge" => CounterResetHint::Gauge,
                    _ => return Err(format!("invalid counter_reset_hint {value:?}")),
                }
            }
            _ => return Err(format!("unknown histogram field {key:?}")),
        }
        rest = next.trim_start();
    }
    if !pos.is_empty() {
        h.positive_spans = vec![Span {
            offset: pos_off,
            length: pos.len() as u32,
        }];
        h.positive_buckets = pos;
    }
    if !neg.is_empty() {
        h.negative_spans = vec![Span {
            offset: neg_off,
            length: neg.len() as u32,
        }];
        h.negative_buckets = neg;
    }
    Ok(h)
}

/// `{{...}}` at the start of `s`, and the rest.
fn take_histogram(s: &str) -> PResult<(&str, &str)> {
    if !s.starts_with("{{") {
        return Err(format!("expected a histogram at {s:?}"));
    }
    let end = s
        .find("}}")
        .ok_or_else(|| format!("unterminated histogram {s:?}"))?;
    Ok((&s[..end + 2], &s[end + 2..]))
}

/// One value at the start of `s`: optional sign, then a decimal number,
/// `Inf` or `NaN`; with `allow_stale`, also `stale`.
fn take_value(s: &str, allow_stale: bool) -> PResult<(f64, &str)> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let signed = body.len() != s.len();
    let b = body.as_bytes();
    if b.first().is_some_and(u8::is_ascii_alphabetic) {
        let n = b.iter().take_while(|c| c.is_ascii_alphabetic()).count();
        let word = &body[..n];
        let v = match word.to_ascii_lowercase().as_str() {
            "inf" => f64::INFINITY,
            "nan" => f64::NAN,
            "stale" if allow_stale && !signed => ember::model::sample::stale_nan(),
            _ => return Err(format!("unknown value {word:?}")),
        };
        return Ok((if neg { -v } else { v }, &body[n..]));
    }
    // digits [. digits] [e [+-] digits]
    let mut i = 0;
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > s
    };
    let int = digits(&mut i);
    let mut frac = false;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        frac = digits(&mut i);
    }
    if !int && !frac {
        return Err(format!("expected a number at {s:?}"));
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if digits(&mut j) {
            i = j;
        } else {
            return Err(format!("invalid exponent in {s:?}"));
        }
    }
    let v: f64 = body[..i]
        .parse()
        .map_err(|_| format!("invalid number {:?}", &body[..i]))?;
    Ok((if neg { -v } else { v }, &body[i..]))
}

// The harness-less runner (tests/promqltest.rs) compiles these too but never
// runs them; `cargo test -p ember --test promqltest_units` does.
#[cfg(test)]
#[allow(dead_code, unused_imports)]
mod tests {
    use super::*;

    fn floats(s: &str) -> Vec<Option<f64>> {
        parse_points(s)
            .unwrap()
            .into_iter()
            .map(|p| match p {
                Point::Float(v) => Some(v),
                Point::Missing => None,
                Point::Histogram(h) => panic!("unexpected histogram {h}"),
            })
            .collect()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("0m"), Ok(0));
        assert_eq!(parse_duration("10s"), Ok(10_000));
        assert_eq!(parse_duration("1m"), Ok(60_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("10s53ms"), Ok(10_053));
        assert_eq!(parse_duration("1ms"), Ok(1));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400_000));
        assert_eq!(parse_duration("1y"), Ok(365 * 86_400_000));
        assert_eq!(parse_duration("20s500ms"), Ok(20_500));
        assert_eq!(parse_duration("3m0s"), Ok(180_000));
        // Bare numbers are seconds.
        assert_eq!(parse_duration("100"), Ok(100_000));
        assert_eq!(parse_duration("1.5"), Ok(1_500));
        for bad in ["", "m", "1x", "1s1m", "1m1m", "-", "1.5m", "s10", "10 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn point_expansion() {
        assert_eq!(floats("1 2 3"), [Some(1.0), Some(2.0), Some(3.0)]);
        // a+bxN: N+1 values.
        assert_eq!(
            floats("1+2x3"),
            [Some(1.0), Some(3.0), Some(5.0), Some(7.0)]
        );
        assert_eq!(
            floats("1-2x3"),
            [Some(1.0), Some(-1.0), Some(-3.0), Some(-5.0)]
        );
        assert_eq!(floats("-1-1x2"), [Some(-1.0), Some(-2.0), Some(-3.0)]);
        assert_eq!(floats("0+0.5x2"), [Some(0.0), Some(0.5), Some(1.0)]);
        // vxN: the value N+1 times.
        assert_eq!(floats("1x3"), [Some(1.0); 4]);
        // _xN: N missing points (not N+1).
        assert_eq!(floats("_x3"), [None; 3]);
        assert_eq!(floats("_ 1 _"), [None, Some(1.0), None]);
        assert_eq!(
            floats("1e3 .5 -2.5e-1"),
            [Some(1000.0), Some(0.5), Some(-0.25)]
        );
        assert_eq!(
            floats("Inf -Inf +inf"),
            [
                Some(f64::INFINITY),
                Some(f64::NEG_INFINITY),
                Some(f64::INFINITY)
            ]
        );
        // As in Prometheus, `Infx1` lexes as one unknown word.
        assert!(parse_points("Infx1").is_err());
        assert!(parse_points("0+Infx1").is_err());
        assert_eq!(floats("Inf+1x1"), [Some(f64::INFINITY); 2]);
        assert_eq!(floats("1\t2"), [Some(1.0), Some(2.0)]);
        assert_eq!(floats(""), []);
        let nan = floats("NaN nan");
        assert!(nan.iter().all(|v| v.unwrap().is_nan()));
        // Accumulated, not multiplied, like Prometheus.
        let acc = floats("0+0.1x3");
        assert_eq!(acc[3], Some(0.1 + 0.1 + 0.1));
    }

    #[test]
    fn stale_points() {
        let p = parse_points("1 stale 2").unwrap();
        match p[1] {
            Point::Float(v) => assert!(ember::model::sample::is_stale_nan(v)),
            ref other => panic!("{other:?}"),
        }
        assert!(parse_points("-stale").is_err());
        assert!(parse_points("stalex3").is_err());
    }

    #[test]
    fn bad_points() {
        for bad in [
            "1+2", "1x", "x3", "1+x3", "abc", "1 2 foo", "_x", "_x-1", "1..2", "1x3x4", "{{a}",
            "}}",
        ] {
            assert!(parse_points(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn histogram_points() {
        let p = parse_points("{{schema:1 sum:3 count:22 buckets:[5 10 7]}} 1 {{count:0}}+{{count:1}}x2 {{count:2}}x1").unwrap();
        assert_eq!(p.len(), 1 + 1 + 3 + 2);
        assert!(matches!(&p[0], Point::Histogram(h) if h.positive_buckets == [5.0, 10.0, 7.0]));
        assert_eq!(p[1], Point::Float(1.0));
    }

    #[test]
    fn series_lines() {
        let (l, p) = parse_series_line(r#"my_metric{env="prod", a='x\ty',} 5 2+3x2"#).unwrap();
        assert_eq!(
            l,
            [
                ("__name__".to_string(), "my_metric".to_string()),
                ("env".to_string(), "prod".to_string()),
                ("a".to_string(), "x\ty".to_string())
            ]
        );
        assert_eq!(p.len(), 4);
        let (l, p) = parse_series_line("{} 3").unwrap();
        assert!(l.is_empty());
        assert_eq!(p, [Point::Float(3.0)]);
        let (l, _) = parse_series_line(r#"{"utf8.metric", job="a"} 1"#).unwrap();
        assert_eq!(l[0], ("__name__".to_string(), "utf8.metric".to_string()));
        let (l, p) = parse_series_line("metric {{count:1}}").unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(p.len(), 1);
        assert!(parse_series_line("metric{a=b} 1").is_err());
        assert!(parse_series_line(r#"metric{a="1",a="2"} 1"#).is_err());
        assert!(parse_series_line(r#"metric{a="1" 1"#).is_err());
        assert!(parse_series_line("5").is_err());
    }

    #[test]
    fn bare_numbers() {
        assert_eq!(parse_bare_number("0.001"), Some(0.001));
        assert_eq!(parse_bare_number("-3"), Some(-3.0));
        assert_eq!(parse_bare_number("0x10"), Some(16.0));
        assert_eq!(parse_bare_number("010"), Some(8.0));
        assert_eq!(parse_bare_number("1e3"), Some(1000.0));
        assert_eq!(parse_bare_number("+Inf"), Some(f64::INFINITY));
        assert!(parse_bare_number("NaN").unwrap().is_nan());
        assert_eq!(parse_bare_number("metric"), None);
        assert_eq!(parse_bare_number("{} 1"), None);
        assert_eq!(parse_bare_number("e"), None);
    }

    #[test]
    fn script_blocks() {
        let script = "\
# comment
load 1m
  a{x=\"1\"} 1+1x2
  b 1 _ stale

eval instant at 1m a
  expect no_warn
  a{x=\"1\"} 2

eval range from 0 to 2m step 1m sum(a)
  expect warn msg: PromQL warning: something (1:1)
  {} 1 2 3

eval_fail instant at 0 foo(
  expected_fail_regexp .*parse.*

eval instant at 1m scalar(a)
  2

eval instant at 1m \"x\"
  expect string `x`

bogus
clear
";
        let items = parse_script(script);
        assert_eq!(items.len(), 7, "{items:#?}");
        let Item::Load(load) = &items[0] else {
            panic!("{:?}", items[0])
        };
        assert_eq!(load.line, 2);
        assert_eq!(load.interval_ms, 60_000);
        assert_eq!(load.series.len(), 2);
        assert_eq!(load.series[1].points.len(), 3);
        let Item::Eval(e) = &items[1] else { panic!() };
        assert_eq!(e.line, 6);
        assert_eq!(e.kind, EvalKind::Instant { at_ms: 60_000 });
        assert!(e.no_warn && e.has_range_variant());
        let Item::Eval(e) = &items[2] else { panic!() };
        assert_eq!(
            e.kind,
            EvalKind::Range {
                start_ms: 0,
                end_ms: 120_000,
                step_ms: 60_000
            }
        );
        assert_eq!(e.query, "sum(a)");
        assert!(matches!(&e.warn[..], [TextMatch::Exact(m)] if m.ends_with("(1:1)")));
        let Item::Eval(e) = &items[3] else { panic!() };
        assert!(matches!(e.fail, Some(TextMatch::Regex(_))));
        assert!(!e.has_range_variant());
        let Item::Eval(e) = &items[4] else { panic!() };
        assert!(matches!(e.expected, Expected::Scalar(v) if v == 2.0));
        let Item::Eval(e) = &items[5] else { panic!() };
        assert!(matches!(&e.expected, Expected::String(s) if s == "x"));
        // `bogus` and the `clear` in its block form one bad block.
        assert!(matches!(items[6], Item::Error { line: 23, .. }));
    }

    #[test]
    fn commands_without_blank_lines() {
        let items = parse_script(
            "clear\nload 1m\n  a 1\neval instant at 0 a\n  1\neval_fail instant at 0 b(\n  expected_fail_message boom\nclear\neval instant at 0 a\n",
        );
        let kinds: Vec<&str> = items
            .iter()
            .map(|i| match i {
                Item::Clear => "clear",
                Item::Load(_) => "load",
                Item::Eval(_) => "eval",
                Item::Error { .. } => "error",
            })
            .collect();
        // The load runs to the end of its block, and `eval ...` is no series.
        assert_eq!(kinds, ["clear", "error"], "{items:#?}");
        let items = parse_script(
            "clear\neval instant at 0 1\n  1\neval_fail instant at 0 b(\n  expected_fail_message boom\nclear\n",
        );
        assert_eq!(items.len(), 4, "{items:#?}");
        assert!(
            matches!(&items[2], Item::Eval(e) if matches!(&e.fail, Some(TextMatch::Exact(m)) if m == "boom"))
        );
        assert!(matches!(items[3], Item::Clear));
    }

    #[test]
    fn odd_input_never_panics() {
        let odd = [
            "",
            "\n\n",
            "load",
            "load 0",
            "load -1m",
            "load 1m\n  {",
            "load 1m\n  a{b=\"\\",
            "load 1m\n  a 1e",
            "load 1m\n  a {{",
            "load 1m\n  a }}{{",
            "load 1m\n  a 1+1x99999999999999999999",
            "load 1m\n  @st",
            "load 1m\n  a@st",
            "eval",
            "eval instant",
            "eval instant at",
            "eval instant at 1m",
            "eval range from",
            "eval range from 1m to",
            "eval range from 0 to 1m step 0 a",
            "eval_bogus instant at 0 a",
            "eval instant at 0 a\n  expect",
            "eval instant at 0 a\n  expect fail regex: (",
            "eval instant at 0 a\n  expect string",
            "eval instant at 0 a\n  expect string \"x",
            "eval instant at 0 a\n  expect range vector from",
            "eval instant at 0 a\n  expected_fail_message x",
            "eval instant at 999999999999999999y a",
            "clear x",
            "\u{feff}load 1m",
            "load 1m\n  a{\"\\u{d800}\"} 1",
            "load 1m\n  a{b=\"\\ud800\"} 1",
        ];
        for text in odd {
            let _ = parse_script(text);
        }
        // Every prefix of a realistic script, too.
        let script = "load 1m\n  a{b=\"c\"} 1+2x3 _ stale {{count:1}}x2\n\neval range from 0 to 2m step 1m a\n  expect warn msg: x\n  a{b=\"c\"} 1 3 5\n";
        for end in (0..=script.len()).filter(|&i| script.is_char_boundary(i)) {
            let _ = parse_script(&script[..end]);
        }
    }

    /// Every construct Prometheus's scripts use parses (when they are there).
    #[test]
    fn shared_scripts_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/promqltest");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "test") {
                let text = std::fs::read_to_string(&path).unwrap();
                for item in parse_script(&text) {
                    if let Item::Error { line, message } = item {
                        panic!("{}:{line}: {message}", path.display());
                    }
                }
            }
        }
    }

    #[test]
    fn eval_errors_have_lines() {
        let items = parse_script(
            "eval instant at 1m a\n  a 1 2\n\neval range from 2m to 1m step 1m a\n\neval instant at 1m a\n  expect warn\n  expect no_warn\n\neval instant at xx a\n",
        );
        let lines: Vec<usize> = items
            .iter()
            .map(|i| match i {
                Item::Error { line, .. } => *line,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(lines, [2, 4, 6, 10]);
    }

    #[test]
    fn range_vector_expectation() {
        let items = parse_script(
            "eval instant at 1m some_metric[1m]\n  expect range vector from 10s to 1m step 10s\n  some_metric{env=\"a\"} 2 3 4 5 6\n",
        );
        let Item::Eval(e) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(
            e.range_vector,
            Some(RangeSpec {
                start_ms: 10_000,
                end_ms: 60_000,
                step_ms: 10_000
            })
        );
        assert!(!e.has_range_variant());
    }

    #[test]
    fn start_timestamp_lines() {
        let items = parse_script(
            "load 1m\n  c{t=\"a\"}@st _ _ -30s-1mx2 -1msx3\n  c{t=\"a\"} _ _ 0+60x4\n  c{t=\"b\"} 1 2\n",
        );
        let Item::Load(l) = &items[0] else {
            panic!("{items:?}")
        };
        assert!(l.series[0].has_start_timestamps);
        assert!(!l.series[1].has_start_timestamps);
        let items = parse_script("load 1m\n  c{t=\"a\"}@st 1m\n  c{t=\"b\"} 1\n");
        assert!(matches!(items[0], Item::Error { line: 2, .. }));
    }

    #[test]
    fn range_variant_skips_query_range_functions() {
        let items =
            parse_script("eval instant at 1m step()\n  1\n\neval instant at 1m timestamp(a)\n");
        let Item::Eval(e) = &items[0] else { panic!() };
        assert!(!e.has_range_variant());
        let Item::Eval(e) = &items[1] else { panic!() };
        assert!(e.has_range_variant());
    }
}
