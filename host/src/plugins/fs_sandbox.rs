//! Noticing a plugin's attempt to open a file it was not granted.
//!
//! wasi-libc resolves an absolute path against the preopened directories
//! inside the guest; a path that no preopen covers fails there and the host
//! never hears of it, so the failure would look like any error of the
//! plugin's own. Every instance therefore also gets an empty directory
//! preopened at `/` (the "sentinel"): a path no grant covers resolves to
//! it, and the host's `open-at` and `stat-at` refuse any path through it,
//! note the path, and the call's failure gets the reason `forbidden_file`.
//! Granted directories are longer prefixes, so they still win.

use std::os::unix::fs::MetadataExt;

use anyhow::Context;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self as wasi_fs, DescriptorFlags, DescriptorStat, ErrorCode, HostDescriptor, OpenFlags,
    PathFlags,
};

use super::state::State;

/// The interface whose functions are wrapped; the version is the one
/// wasmtime-wasi defines (guests importing an older 0.2.x link to it).
const TYPES: &str = "wasi:filesystem/types@0.2.12";

/// The empty directory preopened at `/`, identified by device and inode.
pub struct Sentinel {
    dir: tempfile::TempDir,
}

impl Sentinel {
    pub fn new() -> anyhow::Result<Sentinel> {
        let dir = tempfile::Builder::new()
            .prefix("ember-plugin-root-")
            .tempdir()
            .context("creating the plugins' empty root directory")?;
        Ok(Sentinel { dir })
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Device and inode of the directory, recreating it first if a
    /// temp-file cleaner removed it while the server ran.
    pub fn ensure(&self) -> anyhow::Result<(u64, u64)> {
        std::fs::create_dir_all(self.dir.path()).with_context(|| {
            format!(
                "recreating the plugins' empty root directory {}",
                self.dir.path().display()
            )
        })?;
        let meta = std::fs::metadata(self.dir.path())
            .context("reading the plugins' empty root directory")?;
        Ok((meta.dev(), meta.ino()))
    }
}

/// Whether `fd` is the sentinel directory of this store.
fn is_sentinel(state: &mut State, fd: &Resource<Descriptor>) -> bool {
    let Some(sentinel) = state.sentinel else {
        return false;
    };
    match state.table.get(fd) {
        Ok(Descriptor::Dir(dir)) => dir
            .dir
            .metadata()
            .is_ok_and(|m| (m.dev(), m.ino()) == sentinel),
        _ => false,
    }
}

/// Notes a refused path (the first of a call is logged).
fn deny(state: &mut State, path: &str) -> ErrorCode {
    let path = format!("/{}", path.trim_start_matches('/'));
    if state.denied_path.is_none() {
        tracing::warn!(plugin = %state.settings.name, path = %path, "Plugin tried to open a path outside its granted directories");
        state.denied_path = Some(path);
    }
    ErrorCode::NotPermitted
}

/// Replaces `open-at` and `stat-at` of `wasi:filesystem/types` with
/// versions that refuse paths through the sentinel and otherwise do what
/// wasmtime-wasi does. Call after `wasmtime_wasi::p2::add_to_linker_async`.
pub fn add_to_linker(linker: &mut Linker<State>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker
        .instance(TYPES)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("finding {TYPES} in the linker"))?;
    types
        .func_wrap_async(
            "[method]descriptor.open-at",
            |mut store,
             (fd, path_flags, path, open_flags, flags): (
                Resource<Descriptor>,
                PathFlags,
                String,
                OpenFlags,
                DescriptorFlags,
            )| {
                Box::new(async move {
                    let state = store.data_mut();
                    if is_sentinel(state, &fd) {
                        return Ok((Err(deny(state, &path)),));
                    }
                    let mut view = state.filesystem();
                    match view.open_at(fd, path_flags, path, open_flags, flags).await {
                        Ok(descriptor) => Ok((Ok(descriptor),)),
                        Err(e) => Ok((Err(wasi_fs::Host::convert_error_code(&mut view, e)?),)),
                    }
                })
            },
        )
        .map_err(anyhow::Error::from)
        .context("wrapping open-at")?;
    types
        .func_wrap_async(
            "[method]descriptor.stat-at",
            |mut store, (fd, path_flags, path): (Resource<Descriptor>, PathFlags, String)| {
                Box::new(async move {
                    let state = store.data_mut();
                    if is_sentinel(state, &fd) {
                        return Ok((Err::<DescriptorStat, _>(deny(state, &path)),));
                    }
                    let mut view = state.filesystem();
                    match view.stat_at(fd, path_flags, path).await {
                        Ok(stat) => Ok((Ok(stat),)),
                        Err(e) => Ok((Err(wasi_fs::Host::convert_error_code(&mut view, e)?),)),
                    }
                })
            },
        )
        .map_err(anyhow::Error::from)
        .context("wrapping stat-at")?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Sentinel;

    #[test]
    fn sentinel_is_recreated_after_a_cleaner_removed_it() {
        let sentinel = Sentinel::new().unwrap();
        let first = sentinel.ensure().unwrap();
        assert_eq!(sentinel.ensure().unwrap(), first);
        std::fs::remove_dir(sentinel.path()).unwrap();
        sentinel.ensure().unwrap();
        assert!(sentinel.path().is_dir());
        assert_eq!(std::fs::read_dir(sentinel.path()).unwrap().count(), 0);
    }
}
