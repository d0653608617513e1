use super::*;
use crate::model::Labels;

fn entries(text: &str, format: Format) -> Vec<Entry<'_>> {
    Parser::new(text, format)
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn samples(text: &str, format: Format) -> Vec<(Labels, f64, Option<i64>)> {
    entries(text, format)
        .into_iter()
        .filter_map(|e| match e {
            Entry::Sample(s) => Some((s.labels().unwrap(), s.value, s.timestamp_ms)),
            _ => None,
        })
        .collect()
}

fn err(text: &str, format: Format) -> ParseError {
    match Parser::new(text, format).find_map(Result::err) {
        Some(e) => e,
        None => panic!("no error for {text:?}"),
    }
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).unwrap()
}

#[test]
fn text_format_basics() {
    let text = "# HELP http_requests_total The total number of HTTP requests.\n\
                # TYPE http_requests_total counter\n\
                http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                http_requests_total{method=\"post\",code=\"400\",}    3   1395066363000\n\
                \n\
                # A normal comment.\n\
                msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n\
                metric_without_timestamp_and_labels 12.47\n\
                something_weird{problem=\"division by zero\"} +Inf -3982045\n\
                nan_metric NaN\n\
                neg_inf -Inf\n\
                \t  indented 1\n";
    let got = entries(text, Format::Text);
    assert_eq!(
        got[0],
        Entry::Help {
            family: "http_requests_total".into(),
            help: "The total number of HTTP requests.".into()
        }
    );
    assert_eq!(
        got[1],
        Entry::Type {
            family: "http_requests_total".into(),
            kind: MetricType::Counter
        }
    );
    let s = samples(text, Format::Text);
    assert_eq!(
        s[0],
        (
            l(&[
                ("__name__", "http_requests_total"),
                ("method", "post"),
                ("code", "200")
            ]),
            1027.0,
            Some(1395066363000)
        )
    );
    assert_eq!(s[1].0.get("code"), Some("400"));
    assert_eq!(s[2].0.get("path"), Some("C:\\DIR\\FILE.TXT"));
    assert_eq!(s[2].0.get("error"), Some("Cannot find file:\n\"FILE.TXT\""));
    assert_eq!(
        s[4],
        (
            l(&[
                ("__name__", "something_weird"),
                ("problem", "division by zero")
            ]),
            f64::INFINITY,
            Some(-3982045)
        )
    );
    assert!(s[5].1.is_nan());
    assert_eq!(s[6].1, f64::NEG_INFINITY);
    assert_eq!(s[7].0.metric_name(), Some("indented"));
}

#[test]
fn series_text_is_the_raw_cache_key() {
    let text = "a{x=\"1\", y=\"2\"} 1\n";
    let e = entries(text, Format::Text);
    let Entry::Sample(s) = &e[0] else { panic!() };
    assert_eq!(s.series, "a{x=\"1\", y=\"2\"}");
}

#[test]
fn quoted_utf8_names() {
    let s = samples(
        "{\"my.metric\", \"label.name\"=\"v\", plain=\"w\"} 1\n",
        Format::Text,
    );
    assert_eq!(
        s[0].0,
        l(&[
            ("__name__", "my.metric"),
            ("label.name", "v"),
            ("plain", "w")
        ])
    );
    let e = entries("# TYPE \"my.metric\" gauge\n", Format::Text);
    assert_eq!(
        e[0],
        Entry::Type {
            family: "my.metric".into(),
            kind: MetricType::Gauge
        }
    );
}

#[test]
fn openmetrics_rules() {
    let text = "# TYPE acme_http_router_request_seconds summary\n\
                # UNIT acme_http_router_request_seconds seconds\n\
                # HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request router.\n\
                acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32\n\
                acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0 1520879607.789\n\
                # TYPE foo histogram\n\
                foo_bucket{le=\"0.01\"} 0\n\
                foo_bucket{le=\"+Inf\"} 17 # {trace_id=\"KOO5S4vxi0o\"} 0.67 1520879602.2\n\
                # EOF\n";
    let e = entries(text, Format::OpenMetrics);
    assert_eq!(
        e[1],
        Entry::Unit {
            family: "acme_http_router_request_seconds".into(),
            unit: "seconds".into()
        }
    );
    let Entry::Sample(s) = &e[4] else { panic!() };
    assert_eq!(s.timestamp_ms, Some(1_520_879_607_789));
    let Entry::Sample(s) = &e[7] else { panic!() };
    let ex = s.exemplar.as_ref().unwrap();
    assert_eq!(ex.labels, l(&[("trace_id", "KOO5S4vxi0o")]));
    assert_eq!((ex.value, ex.timestamp_ms), (0.67, Some(1_520_879_602_200)));
}

#[test]
fn errors_name_line_column_and_expectation() {
    let cases: &[(&str, Format, usize, &str)] = &[
        (
            "ok 1\nfoo{bar=\"baz} 1\n",
            Format::Text,
            2,
            "unterminated quoted string",
        ),
        ("foo 1 abc\n", Format::Text, 1, "invalid timestamp \"abc\""),
        (
            "foo{1a=\"b\"} 1\n",
            Format::Text,
            1,
            "expected a label name, got '1'",
        ),
        (
            "foo{a\"b\"} 1\n",
            Format::Text,
            1,
            "expected '=' after label name",
        ),
        ("foo{a=b} 1\n", Format::Text, 1, "expected '\"', got 'b'"),
        (
            "foo\n",
            Format::Text,
            1,
            "expected ' ' before the value, got end of line",
        ),
        ("foo bar\n", Format::Text, 1, "invalid value \"bar\""),
        (
            "foo 1 2 3\n",
            Format::Text,
            1,
            "expected end of line, got '3'",
        ),
        (
            "# TYPE foo blah\n",
            Format::Text,
            1,
            "unknown metric type \"blah\"",
        ),
        (
            "foo 1 # {a=\"b\"} 1\n",
            Format::Text,
            1,
            "exemplars need OpenMetrics",
        ),
        (
            "foo 1\n",
            Format::OpenMetrics,
            2,
            "requires a final \"# EOF\"",
        ),
        (
            "foo 1\n\n# EOF\n",
            Format::OpenMetrics,
            2,
            "empty lines are not allowed",
        ),
        (
            "# EOF\nfoo 1\n",
            Format::OpenMetrics,
            1,
            "content after \"# EOF\"",
        ),
        (
            "# random comment\n# EOF\n",
            Format::OpenMetrics,
            1,
            "unknown comment",
        ),
        (
            "# TYPE foo untyped\n# EOF\n",
            Format::OpenMetrics,
            1,
            "unknown metric type",
        ),
        (
            "foo 1 1.5.5\n# EOF\n",
            Format::OpenMetrics,
            1,
            "invalid timestamp",
        ),
    ];
    for (text, format, line, want) in cases {
        let e = err(text, *format);
        assert_eq!(e.line, *line, "{text:?}: {e}");
        assert!(e.to_string().contains(want), "{text:?}: {e}");
    }
    let e = err("foo{bar=\"baz\"} x\n", Format::Text);
    assert_eq!((e.line, e.column), (1, 16), "{e}");
}

#[test]
fn garbage_never_panics() {
    for text in [
        "{",
        "}",
        "\"",
        "#",
        "# HELP",
        "# TYPE x",
        "a{",
        "a{b",
        "a{b=",
        "a{b=\"\\",
        "\u{0}",
        "a{\"",
        "# HELP \"x",
        "a 1 # {",
        "a 1 # {b=\"c\"}",
    ] {
        for f in [Format::Text, Format::OpenMetrics] {
            let _ = Parser::new(text, f).count();
        }
    }
}

mod roundtrip {
    use super::*;
    use proptest::prelude::*;

    fn escape(v: &str) -> String {
        v.replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('"', "\\\"")
    }

    fn format_value(v: f64) -> String {
        if v.is_nan() {
            "NaN".into()
        } else if v == f64::INFINITY {
            "+Inf".into()
        } else if v == f64::NEG_INFINITY {
            "-Inf".into()
        } else {
            format!("{v:?}")
        }
    }

    proptest! {
        #[test]
        fn format_then_parse(
            name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}",
            labels in proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,10}", ".{1,20}", 0..5),
            value in proptest::num::f64::ANY,
            ts in proptest::option::of(-1_000_000_000_000i64..5_000_000_000_000i64),
            om in any::<bool>(),
        ) {
            let labels: std::collections::BTreeMap<String, String> =
                labels.into_iter().filter(|(k, _)| k != "__name__").collect();
            let body: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let format = if om { Format::OpenMetrics } else { Format::Text };
            let ts_text = match (ts, om) {
                (None, _) => String::new(),
                (Some(t), false) => format!(" {t}"),
                (Some(t), true) => {
                    let sign = if t < 0 { "-" } else { "" };
                    format!(" {sign}{}.{:03}", t.unsigned_abs() / 1000, t.unsigned_abs() % 1000)
                }
            };
            let mut text = format!("{name}{{{}}} {}{ts_text}\n", body.join(","), format_value(value));
            if om {
                text.push_str("# EOF\n");
            }
            let got = samples(&text, format);
            prop_assert_eq!(got.len(), 1);
            let mut want: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            want.push(("__name__", &name));
            prop_assert_eq!(&got[0].0, &Labels::from_pairs(want).unwrap());
            prop_assert!(got[0].1 == value || (got[0].1.is_nan() && value.is_nan()));
            prop_assert_eq!(got[0].2, ts);
        }
    }
}
