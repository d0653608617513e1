//! String literals as Prometheus reads them from the query text.
//!
//! Prometheus unquotes PromQL strings like Go does: `\xNN` and octal escapes
//! are raw bytes, so `"a\xc5z"` is invalid UTF-8 and `"\xc3\xa5"` is "å".
//! promql-parser decodes each such escape to the code point U+00NN instead,
//! which a Rust `String` can hold. This module re-reads the literals from
//! the source so the lowering can refuse the ones Prometheus would see as
//! invalid UTF-8, instead of silently using a different label name.

use std::collections::HashMap;

/// Parser-decoded string → Go-quoted form, for every literal in `query`
/// whose bytes (decoded as Go does) are not valid UTF-8.
pub fn invalid_utf8_literals(query: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = query.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            // A comment runs to the end of the line.
            '#' => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '`' => {
                for (_, c) in chars.by_ref() {
                    if c == '`' {
                        break;
                    }
                }
            }
            '"' | '\'' => {
                let quote = c;
                let mut parser_form = String::new();
                let mut go_bytes = Vec::new();
                let mut has_byte_escape = false;
                while let Some((_, c)) = chars.next() {
                    if c == quote {
                        break;
                    }
                    if c != '\\' {
                        parser_form.push(c);
                        let mut buf = [0u8; 4];
                        go_bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        continue;
                    }
                    let Some((_, e)) = chars.next() else { break };
                    let (digits, radix) = match e {
                        'x' => (2, 16),
                        '0'..='7' => (2, 8),
                        _ => {
                            // Other escapes decode the same way in both; only
                            // the bytes matter here, so keep the raw char.
                            let decoded = match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                other => other,
                            };
                            parser_form.push(decoded);
                            let mut buf = [0u8; 4];
                            go_bytes.extend_from_slice(decoded.encode_utf8(&mut buf).as_bytes());
                            continue;
                        }
                    };
                    let mut text = String::new();
                    if radix == 8 {
                        text.push(e);
                    }
                    for _ in 0..digits {
                        if let Some((_, d)) = chars.next() {
                            text.push(d);
                        }
                    }
                    let Ok(v) = u32::from_str_radix(&text, radix) else {
                        continue;
                    };
                    if let Some(ch) = char::from_u32(v) {
                        parser_form.push(ch);
                    }
                    if let Ok(b) = u8::try_from(v) {
                        has_byte_escape |= b >= 0x80;
                        go_bytes.push(b);
                    }
                }
                if has_byte_escape && std::str::from_utf8(&go_bytes).is_err() {
                    out.insert(parser_form, go_quote(&go_bytes));
                }
            }
            _ => {}
        }
    }
    out
}

/// `fmt.Sprintf("%q")` of bytes: invalid UTF-8 bytes as `\xNN`.
fn go_quote(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                c if c.is_control() => s.push_str(&c.escape_default().to_string()),
                c => s.push(c),
            }
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_literals_that_are_invalid_utf8_in_go() {
        let found = invalid_utf8_literals(
            r#"count_values("a\xc5z", x) + label_replace(m, "\xff", "", "s", "(.*)") # "\xff" in a comment"#,
        );
        assert_eq!(
            found.get("a\u{c5}z").map(String::as_str),
            Some(r#""a\xc5z""#)
        );
        assert_eq!(found.get("\u{ff}").map(String::as_str), Some(r#""\xff""#));
        assert_eq!(found.len(), 2);
        // Valid UTF-8 spelled as bytes, and plain strings, are not reported.
        assert!(invalid_utf8_literals(r#"f("\xc3\xa5", 'a', `\xff`)"#).is_empty());
    }
}
