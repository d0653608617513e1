//! Exclusive ownership of the data directory.
//!
//! Like Prometheus, Ember keeps a `lock` file in the data directory and holds
//! an advisory lock on it for its whole life, so a second server on the same
//! directory fails fast instead of corrupting the first one's files. The lock
//! is released by the kernel when the process dies, even on SIGKILL.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot create data directory {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open lock file {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {} is locked by another process{}; is another Ember or Prometheus running on it?", dir.display(), holder.as_ref().map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked {
        dir: PathBuf,
        holder: Option<String>,
    },
}

/// An opened data directory. Dropping it releases the lock.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    pub fn open(path: &Path) -> Result<DataDir, LockError> {
        std::fs::create_dir_all(path).map_err(|source| LockError::Create {
            path: path.to_owned(),
            source,
        })?;
        let lock_path = path.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| LockError::Open {
                path: lock_path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = Some(holder.trim().to_owned()).filter(|h| !h.is_empty());
                return Err(LockError::Locked {
                    dir: path.to_owned(),
                    holder,
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(LockError::Open {
                    path: lock_path,
                    source,
                });
            }
        }
        // Best effort: the pid only improves the error message of a second instance.
        let _ = file.set_len(0);
        let _ = file.seek(SeekFrom::Start(0));
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(DataDir {
            path: path.to_owned(),
            _lock: file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_fails_while_first_is_held() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let first = DataDir::open(&dir).unwrap();
        let err = DataDir::open(&dir).unwrap_err();
        assert!(matches!(err, LockError::Locked { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        DataDir::open(&dir).unwrap();
    }
}
