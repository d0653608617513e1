use std::borrow::Cow;
use std::fmt;

use crate::model::Labels;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    Text,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl MetricType {
    fn parse(s: &str, format: Format) -> Option<MetricType> {
        Some(match (s, format) {
            ("counter", _) => MetricType::Counter,
            ("gauge", _) => MetricType::Gauge,
            ("histogram", _) => MetricType::Histogram,
            ("summary", _) => MetricType::Summary,
            ("untyped", Format::Text) | ("unknown", Format::OpenMetrics) => MetricType::Unknown,
            ("gaugehistogram", Format::OpenMetrics) => MetricType::GaugeHistogram,
            ("info", Format::OpenMetrics) => MetricType::Info,
            ("stateset", Format::OpenMetrics) => MetricType::StateSet,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

/// A malformed exposition: where, and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleEntry<'a> {
    /// `name{labels}` exactly as written: the cache key for this series.
    pub series: &'a str,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
    pub exemplar: Option<Exemplar>,
}

impl SampleEntry<'_> {
    /// The series' label set, `__name__` included (the slow path, on a cache miss).
    pub fn labels(&self) -> Result<Labels, String> {
        let mut c = Cursor::new(self.series);
        let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
        let name = if c.peek() == Some(b'{') {
            None
        } else {
            Some(c.metric_name().map_err(|e| e.1)?)
        };
        let mut name = name.map(Cow::Borrowed);
        if c.peek() == Some(b'{') {
            c.labels(|n, v, is_bare_name| {
                if is_bare_name {
                    name = Some(n);
                } else {
                    pairs.push((n, v));
                }
            })
            .map_err(|e| e.1)?;
        }
        let name = name.ok_or_else(|| "series has no metric name".to_owned())?;
        pairs.push((Cow::Borrowed("__name__"), name));
        Labels::from_pairs(pairs.iter().map(|(n, v)| (n.as_ref(), v.as_ref())))
            .map_err(|e| e.to_string())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Entry<'a> {
    Help {
        family: Cow<'a, str>,
        help: Cow<'a, str>,
    },
    Type {
        family: Cow<'a, str>,
        kind: MetricType,
    },
    Unit {
        family: Cow<'a, str>,
        unit: Cow<'a, str>,
    },
    Sample(SampleEntry<'a>),
}

/// Byte cursor over one piece of text; errors carry the byte offset.
struct Cursor<'a> {
    text: &'a str,
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Cursor<'a> {
        Cursor {
            text,
            s: text.as_bytes(),
            pos: 0,
        }
    }
}

type CErr = (usize, String);

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

fn describe(b: Option<u8>) -> String {
    match b {
        None => "end of line".into(),
        Some(b'\n') => "end of line".into(),
        Some(b) if b.is_ascii_graphic() => format!("'{}'", b as char),
        Some(b' ') => "' '".into(),
        Some(b) => format!("byte 0x{b:02x}"),
    }
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn err<T>(&self, what: &str) -> Result<T, CErr> {
        Err((
            self.pos,
            format!("expected {what}, got {}", describe(self.peek())),
        ))
    }

    fn str_of(&self, from: usize, to: usize) -> &'a str {
        // Callers only slice at ASCII boundaries, so this never comes back
        // empty; slicing the `str` checks two boundaries instead of
        // re-validating the bytes (that was 5% of a scrape's CPU).
        self.text.get(from..to).unwrap_or("")
    }

    fn skip_blanks(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn metric_name(&mut self) -> Result<&'a str, CErr> {
        let start = self.pos;
        match self.peek() {
            Some(b) if is_name_start(b) => self.pos += 1,
            _ => return self.err("a metric name"),
        }
        while self.peek().is_some_and(is_name_char) {
            self.pos += 1;
        }
        Ok(self.str_of(start, self.pos))
    }

    fn label_name(&mut self) -> Result<&'a str, CErr> {
        let start = self.pos;
        match self.peek() {
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => self.pos += 1,
            _ => return self.err("a label name"),
        }
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.pos += 1;
        }
        Ok(self.str_of(start, self.pos))
    }

    /// A double-quoted string with `\\`, `\"` and `\n` escapes (others are kept
    /// as written, as Prometheus does). Borrowed when nothing was escaped.
    fn quoted(&mut self) -> Result<Cow<'a, str>, CErr> {
        if self.peek() != Some(b'"') {
            return self.err("'\"'");
        }
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek() {
                None | Some(b'\n') => return Err((start - 1, "unterminated quoted string".into())),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    if matches!(self.peek(), None | Some(b'\n')) {
                        return Err((self.pos, "unterminated escape sequence".into()));
                    }
                    self.pos += 1;
                }
                Some(_) => self.pos += 1,
            }
        }
        let raw = self.str_of(start, self.pos);
        self.pos += 1;
        Ok(if escaped {
            Cow::Owned(unescape(raw, true))
        } else {
            Cow::Borrowed(raw)
        })
    }

    /// `{a="b",c="d"}`, also with Prometheus 3's quoted names: `{"my.metric", "a.b"="c"}`.
    /// `f(name, value, is_bare_name)` is called per pair; a bare quoted string is the metric name.
    fn labels(&mut self, mut f: impl FnMut(Cow<'a, str>, Cow<'a, str>, bool)) -> Result<(), CErr> {
        self.pos += 1; // '{'
        loop {
            self.skip_blanks();
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'"') => {
                    let name = self.quoted()?;
                    self.skip_blanks();
                    if self.peek() == Some(b'=') {
                        self.pos += 1;
                        self.skip_blanks();
                        let value = self.quoted()?;
                        f(name, value, false);
                    } else {
                        f(name, Cow::Borrowed(""), true);
                    }
                }
                Some(_) => {
                    let name = self.label_name()?;
                    self.skip_blanks();
                    if self.peek() != Some(b'=') {
                        return self.err("'=' after label name");
                    }
                    self.pos += 1;
                    self.skip_blanks();
                    let value = self.quoted()?;
                    f(Cow::Borrowed(name), value, false);
                }
                None => return self.err("'}'"),
            }
            self.skip_blanks();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return self.err("',' or '}' in label set"),
            }
        }
    }

    /// A token up to the next blank or end of line.
    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'#'))
        {
            self.pos += 1;
        }
        self.str_of(start, self.pos)
    }
}

fn unescape(raw: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Parses a sample value: a float, `NaN`, `+Inf`, `-Inf` (case-insensitive, as Go's ParseFloat).
pub fn parse_value(s: &str) -> Option<f64> {
    if s.is_empty() || s.contains('_') {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Splits exposition text into entries, one line at a time.
pub struct Parser<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    format: Format,
    done: bool,
    /// False for a chunk of a longer input: its end is not the end of the exposition.
    complete: bool,
    saw_eof: bool,
}

impl<'a> Parser<'a> {
    pub fn new(text: &'a str, format: Format) -> Parser<'a> {
        Parser {
            text,
            pos: 0,
            line: 0,
            format,
            done: false,
            complete: true,
            saw_eof: false,
        }
    }

    /// Parses whole lines of a longer input (a large file read in chunks);
    /// `first_line` numbers errors, and a missing `# EOF` is not an error here.
    pub fn chunk(text: &'a str, format: Format, first_line: usize) -> Parser<'a> {
        Parser {
            text,
            pos: 0,
            line: first_line.saturating_sub(1),
            format,
            done: false,
            complete: false,
            saw_eof: false,
        }
    }

    /// Whether `# EOF` ended the input (OpenMetrics).
    pub fn finished(&self) -> bool {
        self.saw_eof
    }

    pub fn line(&self) -> usize {
        self.line
    }

    fn error(&self, column: usize, message: String) -> ParseError {
        ParseError {
            line: self.line,
            column: column + 1,
            message,
        }
    }

    fn next_entry(&mut self) -> Option<Result<Entry<'a>, ParseError>> {
        loop {
            if self.done {
                return None;
            }
            if self.pos >= self.text.len() {
                self.done = true;
                if self.format == Format::OpenMetrics && self.complete {
                    self.line += 1;
                    return Some(Err(self.error(
                        0,
                        "unexpected end of input: OpenMetrics requires a final \"# EOF\" line"
                            .into(),
                    )));
                }
                return None;
            }
            let rest = &self.text[self.pos..];
            let end = rest.find('\n');
            let line = match end {
                Some(i) => &rest[..i],
                None => rest,
            };
            self.line += 1;
            self.pos += line.len() + 1;
            if line.is_empty() || line.bytes().all(|b| b == b' ' || b == b'\t' || b == b'\r') {
                if self.format == Format::OpenMetrics {
                    self.done = true;
                    return Some(Err(
                        self.error(0, "empty lines are not allowed in OpenMetrics".into())
                    ));
                }
                continue;
            }
            match self.parse_line(line) {
                Ok(Some(e)) => return Some(Ok(e)),
                Ok(None) => continue,
                Err((col, msg)) => {
                    self.done = true;
                    return Some(Err(self.error(col, msg)));
                }
            }
        }
    }

    fn parse_line(&mut self, line: &'a str) -> Result<Option<Entry<'a>>, CErr> {
        let line_trimmed = line.strip_suffix('\r').unwrap_or(line);
        let mut c = Cursor::new(line_trimmed);
        if self.format == Format::Text {
            c.skip_blanks();
        }
        if c.peek() == Some(b'#') {
            return self.parse_comment(&mut c);
        }
        self.parse_sample(c)
    }

    fn parse_comment(&mut self, c: &mut Cursor<'a>) -> Result<Option<Entry<'a>>, CErr> {
        let om = self.format == Format::OpenMetrics;
        c.pos += 1;
        if c.skip_blanks() == 0 && c.peek().is_some() {
            return if om { c.err("' ' after '#'") } else { Ok(None) };
        }
        let keyword = c.token();
        match keyword {
            "EOF" if om => {
                c.skip_blanks();
                if c.peek().is_some() {
                    return c.err("end of line after \"# EOF\"");
                }
                self.done = true;
                self.saw_eof = true;
                if self.pos < self.text.len() && !self.text[self.pos..].trim().is_empty() {
                    return Err((0, "content after \"# EOF\"".into()));
                }
                Ok(None)
            }
            "HELP" | "TYPE" | "UNIT" => {
                if keyword == "UNIT" && !om {
                    return Ok(None);
                }
                if c.skip_blanks() == 0 {
                    return c.err("' ' after the keyword");
                }
                let family: Cow<'a, str> = if c.peek() == Some(b'"') {
                    c.quoted()?
                } else {
                    Cow::Borrowed(c.metric_name()?)
                };
                let has_space = c.skip_blanks() > 0;
                let rest_start = c.pos;
                let rest = c.str_of(rest_start, c.s.len());
                match keyword {
                    "HELP" => {
                        if !has_space && !rest.is_empty() {
                            return c.err("' ' after the metric name");
                        }
                        let help = if rest.contains('\\') {
                            Cow::Owned(unescape(rest, om))
                        } else {
                            Cow::Borrowed(rest)
                        };
                        Ok(Some(Entry::Help { family, help }))
                    }
                    "TYPE" => {
                        let kind =
                            MetricType::parse(rest.trim_end(), self.format).ok_or_else(|| {
                                (
                                    rest_start,
                                    format!(
                                        "unknown metric type {:?} for {family}",
                                        rest.trim_end()
                                    ),
                                )
                            })?;
                        Ok(Some(Entry::Type { family, kind }))
                    }
                    _ => Ok(Some(Entry::Unit {
                        family,
                        unit: Cow::Borrowed(rest.trim_end()),
                    })),
                }
            }
            _ if om => Err((
                0,
                format!(
                    "unknown comment {keyword:?}: OpenMetrics allows only HELP, TYPE, UNIT and EOF"
                ),
            )),
            _ => Ok(None),
        }
    }

    fn parse_sample(&mut self, mut c: Cursor<'a>) -> Result<Option<Entry<'a>>, CErr> {
        let start = c.pos;
        let mut has_name = false;
        if c.peek() != Some(b'{') {
            c.metric_name()?;
            has_name = true;
        }
        if c.peek() == Some(b'{') {
            c.labels(|_, _, bare| has_name |= bare)?;
        }
        if !has_name {
            return Err((start, "sample has no metric name".into()));
        }
        let series = c.str_of(start, c.pos);
        if c.skip_blanks() == 0 {
            return c.err("' ' before the value");
        }
        let vpos = c.pos;
        let vtext = c.token();
        let value = parse_value(vtext).ok_or_else(|| (vpos, format!("invalid value {vtext:?}")))?;
        c.skip_blanks();
        let mut timestamp_ms = None;
        if c.peek().is_some_and(|b| b != b'#') {
            let tpos = c.pos;
            let ttext = c.token();
            timestamp_ms = Some(
                self.parse_timestamp(ttext)
                    .ok_or_else(|| (tpos, format!("invalid timestamp {ttext:?}")))?,
            );
            c.skip_blanks();
        }
        let mut exemplar = None;
        if c.peek() == Some(b'#') {
            if self.format == Format::Text {
                return c.err("end of line (exemplars need OpenMetrics)");
            }
            exemplar = Some(self.parse_exemplar(&mut c)?);
        }
        if c.peek().is_some() {
            return c.err("end of line");
        }
        Ok(Some(Entry::Sample(SampleEntry {
            series,
            value,
            timestamp_ms,
            exemplar,
        })))
    }

    fn parse_timestamp(&self, t: &str) -> Option<i64> {
        match self.format {
            Format::Text => t.parse::<i64>().ok(),
            Format::OpenMetrics => {
                let secs = parse_value(t)?;
                if !secs.is_finite() {
                    return None;
                }
                let ms = (secs * 1000.0).round();
                (ms.abs() < 9.2e18).then_some(ms as i64)
            }
        }
    }

    fn parse_exemplar(&self, c: &mut Cursor<'a>) -> Result<Exemplar, CErr> {
        c.pos += 1; // '#'
        if c.skip_blanks() == 0 {
            return c.err("' ' after '#' of an exemplar");
        }
        if c.peek() != Some(b'{') {
            return c.err("'{' starting exemplar labels");
        }
        let mut pairs: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::new();
        let lpos = c.pos;
        c.labels(|n, v, _| pairs.push((n, v)))?;
        let labels = Labels::from_pairs(pairs.iter().map(|(n, v)| (n.as_ref(), v.as_ref())))
            .map_err(|e| (lpos, e.to_string()))?;
        let rune_len: usize = labels
            .iter()
            .map(|l| l.name.chars().count() + l.value.chars().count())
            .sum();
        if rune_len > 128 {
            return Err((
                lpos,
                format!("exemplar labels have {rune_len} characters, more than the 128 allowed"),
            ));
        }
        if c.skip_blanks() == 0 {
            return c.err("' ' before the exemplar value");
        }
        let vpos = c.pos;
        let vtext = c.token();
        let value = parse_value(vtext)
            .ok_or_else(|| (vpos, format!("invalid exemplar value {vtext:?}")))?;
        c.skip_blanks();
        let mut timestamp_ms = None;
        if c.peek().is_some() {
            let tpos = c.pos;
            let ttext = c.token();
            timestamp_ms = Some(
                self.parse_timestamp(ttext)
                    .ok_or_else(|| (tpos, format!("invalid exemplar timestamp {ttext:?}")))?,
            );
            c.skip_blanks();
        }
        Ok(Exemplar {
            labels,
            value,
            timestamp_ms,
        })
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry()
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
