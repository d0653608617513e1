//! Target group files for `file_sd_configs`: JSON or YAML lists of
//! `{targets: [...], labels: {...}}`.

use std::path::{Path, PathBuf};

use crate::config::scrape::StaticConfig;

#[derive(Debug, thiserror::Error)]
pub enum TargetFileError {
    #[error("cannot read target file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

/// Reads one target group file; the extension picks the format.
pub fn read_target_groups(path: &Path) -> Result<Vec<StaticConfig>, TargetFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TargetFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let parse_err = |message: String| TargetFileError::Parse {
        path: path.to_owned(),
        message,
    };
    let groups: Option<Vec<StaticConfig>> = if is_json {
        serde_json::from_str(&text).map_err(|e| parse_err(e.to_string()))?
    } else {
        serde_yaml::from_str(&text).map_err(|e| parse_err(e.to_string()))?
    };
    Ok(groups.unwrap_or_default())
}
