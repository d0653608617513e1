//! The JSON files the built-in Alertmanager keeps in the data directory
//! (silences, notification log): written atomically (temporary file,
//! fsync, rename, fsync of the folder) and never silently lost when
//! damaged.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Reads `path`; a missing file is the default, a damaged one is moved
/// aside to `<path>.corrupt` with a warning and the default returned.
pub fn load<T: DeserializeOwned + Default>(path: &Path) -> std::io::Result<T> {
    match fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(v),
            Err(e) => {
                let aside = path.with_extension("json.corrupt");
                tracing::warn!(file = %path.display(), err = %e, aside = %aside.display(), "State file is damaged; moved aside, starting empty");
                let _ = fs::rename(path, &aside);
                Ok(T::default())
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `value` as JSON, atomically.
pub fn store<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
