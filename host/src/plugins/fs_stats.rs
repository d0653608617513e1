//! The `filesystem-stats` import (`ember:plugin@0.1.1`): `statfs(2)` of
//! mount points the plugin's config grants, for the node exporter's
//! filesystem collector. WASI has no such call.

use std::path::{Component, Path};
use std::time::Instant;

use super::bindings::filesystem_stats::{self, FsStats};
use super::state::State;

/// Whether `path` is a plain absolute path (no `.` or `..`) that equals or
/// lies below one of `grants`.
pub(super) fn granted(grants: &[&String], path: &str) -> bool {
    let path = Path::new(path);
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && grants.iter().any(|g| path.starts_with(g.as_str()))
}

/// Decodes the octal escapes of a `/proc/*/mounts` field (`\040` space,
/// `\011` tab, `\012` newline, `\134` backslash).
pub(super) fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` is a mount point of this host (mount namespace).
fn is_mount_point(path: &str) -> Result<bool, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| format!("reading /proc/self/mounts: {e}"))?;
    Ok(mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .any(|m| unescape_mount_field(m) == path))
}

// The field types of `struct statfs` differ between targets; the casts are
// no-ops on some of them.
#[allow(clippy::unnecessary_cast)]
fn statfs(path: &str) -> Result<FsStats, String> {
    let c_path =
        std::ffi::CString::new(path).map_err(|_| "the path contains a NUL byte".to_owned())?;
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `buf` is a writable `statfs`
    // that outlives the call.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut buf) };
    if rc != 0 {
        return Err(format!(
            "statfs {path}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(FsStats {
        block_size: buf.f_bsize as u64,
        blocks: buf.f_blocks as u64,
        blocks_free: buf.f_bfree as u64,
        blocks_available: buf.f_bavail as u64,
        files: buf.f_files as u64,
        files_free: buf.f_ffree as u64,
    })
}

impl filesystem_stats::Host for State {
    async fn stat(&mut self, mount_point: String) -> Result<FsStats, String> {
        let grants: Vec<&String> = self
            .settings
            .stat_filesystems
            .iter()
            .chain(&self.settings.read_only_dirs)
            .collect();
        if !granted(&grants, &mount_point) {
            tracing::debug!(plugin = %self.settings.name, mount_point = %mount_point, "Plugin asked for the stats of a filesystem it was not granted");
            return Err(format!(
                "{mount_point:?} is not granted (stat_filesystems, read_only_dirs)"
            ));
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        // A hung network filesystem blocks statfs; the call gives up when
        // the plugin call's time is up (the thread finishes on its own).
        let task = tokio::task::spawn_blocking(move || {
            if !is_mount_point(&mount_point)? {
                return Err(format!("{mount_point:?} is not a mount point"));
            }
            statfs(&mount_point)
        });
        match tokio::time::timeout(left, task).await {
            Err(_) => {
                self.host_call_timed_out = true;
                Err("statfs did not answer before the call's deadline".into())
            }
            Ok(Err(e)) => Err(format!("statfs task: {e}")),
            Ok(Ok(result)) => result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_cover_paths_below_them() {
        let root = "/".to_owned();
        let proc_ = "/proc".to_owned();
        assert!(granted(&[&root], "/"));
        assert!(granted(&[&root], "/boot/efi"));
        assert!(granted(&[&proc_], "/proc"));
        assert!(granted(&[&proc_], "/proc/fs/nfsd"));
        assert!(!granted(&[&proc_], "/procx"));
        assert!(!granted(&[&proc_], "/proc/../etc"));
        assert!(!granted(&[&proc_], "proc"));
        assert!(!granted(&[], "/"));
    }

    #[test]
    fn mount_fields_are_unescaped() {
        assert_eq!(unescape_mount_field("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mount_field("/x\\134y\\011"), "/x\\y\t");
        assert_eq!(unescape_mount_field("/plain\\04"), "/plain\\04");
    }

    #[test]
    fn statfs_of_the_root() {
        let stats = statfs("/").unwrap();
        assert!(stats.block_size > 0 && stats.blocks > 0);
        assert!(statfs("/does/not/exist").is_err());
    }
}
