//! The grouping key in a push URL: `job/<job>{/<label>/<value>}`, where a
//! label name ending in `@base64` carries a base64url-encoded value (so values
//! may contain `/` or be empty), exactly as the Pushgateway reads it.

use std::collections::BTreeMap;

use base64::Engine;

use crate::config::labels::is_valid_label_name;

pub type Grouping = BTreeMap<String, String>;

fn decode_value(name: &str, raw: &str) -> Result<(String, String), String> {
    match name.strip_suffix("@base64") {
        Some(plain) => {
            // Pushgateway accepts both padded and unpadded base64url.
            let trimmed = raw.trim_end_matches('=');
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(trimmed)
                .map_err(|e| format!("invalid base64 encoding for label {plain:?}: {e}"))?;
            let value = String::from_utf8(bytes)
                .map_err(|_| format!("value of label {plain:?} is not UTF-8"))?;
            Ok((plain.to_owned(), value))
        }
        None => Ok((name.to_owned(), raw.to_owned())),
    }
}

/// Parses what follows `/metrics/` in a push URL (already percent-decoded by the router).
pub fn parse(path: &str) -> Result<Grouping, String> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    if parts.len() < 2 || (parts[0] != "job" && parts[0] != "job@base64") {
        return Err("the path must be /metrics/job/<job>{/<label>/<value>}".into());
    }
    if !parts.len().is_multiple_of(2) {
        return Err(format!(
            "odd number of grouping key segments in {path:?}: every label needs a value"
        ));
    }
    let mut grouping = Grouping::new();
    for pair in parts.chunks(2) {
        let (name, value) = decode_value(pair[0], pair[1])?;
        if !is_valid_label_name(&name) || name.starts_with("__") {
            return Err(format!("invalid label name {name:?} in grouping key"));
        }
        if name == "job" && value.is_empty() {
            return Err("job name is required and must not be empty".into());
        }
        if grouping.insert(name.clone(), value).is_some() {
            return Err(format!("duplicate label {name:?} in grouping key"));
        }
    }
    Ok(grouping)
}

/// The URL path segment for a grouping key (for the API and messages).
pub fn to_path(grouping: &Grouping) -> String {
    let mut out = String::from("job/");
    out.push_str(grouping.get("job").map_or("", String::as_str));
    for (k, v) in grouping.iter().filter(|(k, _)| *k != "job") {
        out.push_str(&format!("/{k}/{v}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_base64_segments() {
        let g = parse("job/batch/instance/host-1").unwrap();
        assert_eq!(
            g,
            Grouping::from([
                ("job".into(), "batch".into()),
                ("instance".into(), "host-1".into())
            ])
        );
        // "a/b" base64url without padding, and an empty value ("=").
        let g = parse("job/batch/path@base64/YS9i/empty@base64/=").unwrap();
        assert_eq!(g.get("path").unwrap(), "a/b");
        assert_eq!(g.get("empty").unwrap(), "");
        assert_eq!(
            parse("job@base64/YmF0Y2g").unwrap().get("job").unwrap(),
            "batch"
        );
    }

    #[test]
    fn invalid_keys() {
        for bad in [
            "",
            "job",
            "instance/x",
            "job/a/b",
            "job/a/1x/y",
            "job/a/b@base64/!!!",
            "job/a/x/1/x/2",
            "job/",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
