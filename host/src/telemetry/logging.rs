//! Structured logs to stderr in Prometheus 3's shapes, so existing log
//! pipelines keep parsing them:
//!
//! ```text
//! logfmt: time=2026-11-22T00:16:53.624Z level=INFO msg="Loaded configuration file" file=prometheus.yml
//! json:   {"time":"2026-11-22T00:16:53.624Z","level":"INFO","msg":"Loaded configuration file","file":"prometheus.yml"}
//! ```

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::{LogFormat, LogLevel};

pub fn init(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    // Dependencies are noisy at debug; keep them at warn unless RUST_LOG says otherwise.
    // rustls-platform-verifier logs every rejected certificate at error level;
    // the scrape loop already reports that as the target's error.
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!("warn,rustls_platform_verifier=off,ember={level}"))
    });
    let result = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(PromFormat(format))
        .try_init();
    // Only fails if a subscriber is already installed (e.g. in tests); keep that one.
    let _ = result;
}

struct PromFormat(LogFormat);

/// An event's message and fields, as strings, in the order they were written.
#[derive(Default)]
struct Fields {
    msg: String,
    pairs: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let v = format!("{value:?}");
        if field.name() == "message" {
            self.msg = v;
        } else {
            self.pairs.push((field.name(), v));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_owned();
        } else {
            self.pairs.push((field.name(), value.to_owned()));
        }
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// RFC 3339 UTC with milliseconds.
fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (y, m, d, h, mi, sec) = super::time::utc_parts(now.as_secs() as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{sec:02}.{:03}Z",
        now.subsec_millis()
    )
}

/// logfmt value: bare when safe, else quoted with `\"`, `\\` and `\n` escaped.
fn logfmt_value(out: &mut String, v: &str) {
    let bare = !v.is_empty()
        && v.chars()
            .all(|c| c > ' ' && c != '"' && c != '=' && c != '\\' && c != '\u{7f}');
    if bare {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn render(format: LogFormat, time: &str, level: &str, fields: &Fields) -> String {
    match format {
        LogFormat::Logfmt => {
            let mut out = format!("time={time} level={level} msg=");
            logfmt_value(&mut out, &fields.msg);
            for (k, v) in &fields.pairs {
                let _ = write!(out, " {k}=");
                logfmt_value(&mut out, v);
            }
            out
        }
        LogFormat::Json => {
            let mut map = serde_json::Map::new();
            map.insert("time".into(), time.into());
            map.insert("level".into(), level.into());
            map.insert("msg".into(), fields.msg.clone().into());
            for (k, v) in &fields.pairs {
                map.insert((*k).into(), v.clone().into());
            }
            serde_json::Value::Object(map).to_string()
        }
    }
}

impl<S, N> FormatEvent<S, N> for PromFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = render(
            self.0,
            &now_rfc3339(),
            level_name(event.metadata().level()),
            &fields,
        );
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(msg: &str, pairs: &[(&'static str, &str)]) -> Fields {
        Fields {
            msg: msg.into(),
            pairs: pairs.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        }
    }

    #[test]
    fn logfmt_quotes_only_when_needed() {
        let f = fields(
            "Server is ready",
            &[
                ("file", "a.yml"),
                ("err", "bad \"x\" = y\nz"),
                ("empty", ""),
            ],
        );
        assert_eq!(
            render(LogFormat::Logfmt, "T", "INFO", &f),
            r#"time=T level=INFO msg="Server is ready" file=a.yml err="bad \"x\" = y\nz" empty="""#
        );
    }

    #[test]
    fn json_is_flat() {
        let f = fields("m", &[("k", "v")]);
        let v: serde_json::Value =
            serde_json::from_str(&render(LogFormat::Json, "T", "WARN", &f)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"time": "T", "level": "WARN", "msg": "m", "k": "v"})
        );
    }

    #[test]
    fn timestamp_shape() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
