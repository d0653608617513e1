//! The wasmtime engine shared by all plugins, the compile cache, and
//! instantiation of a component with its grants.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::bindings::{discoverer, exporter, notifier};
use super::state::{Limiter, State};
use super::{PluginInfo, PluginSettings};

/// `anyhow::Context` for wasmtime's own error type.
trait WasmtimeContext<T> {
    fn wctx(self, what: &'static str) -> anyhow::Result<T>;
}

impl<T> WasmtimeContext<T> for Result<T, wasmtime::Error> {
    fn wctx(self, what: &'static str) -> anyhow::Result<T> {
        self.map_err(anyhow::Error::from).context(what)
    }
}

/// How often the ticker thread advances the engine's epoch. A call's
/// deadline is checked on every tick, so it is precise to about this much.
pub const TICK: Duration = Duration::from_millis(10);

/// The plugin kind a component implements, from its exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    Exporter,
    Discoverer,
    Notifier,
}

impl World {
    pub fn as_str(self) -> &'static str {
        match self {
            World::Exporter => "exporter",
            World::Discoverer => "discoverer",
            World::Notifier => "notifier",
        }
    }
}

/// The engine, the linker with every host import, and the compile cache.
pub struct Runtime {
    pub(super) engine: Engine,
    pub(super) linker: Linker<State>,
    cache_dir: Option<PathBuf>,
    pub(super) http: reqwest::Client,
    stop_ticker: Arc<AtomicBool>,
    sentinel: super::fs_sandbox::Sentinel,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// A compiled component and what it said about itself.
#[derive(Clone)]
pub struct Loaded {
    pub component: Component,
    pub world: World,
    pub info: PluginInfo,
    /// xxh3-128 of the file's bytes, hex.
    pub hash: String,
    /// Whether the compiled code came from the cache.
    pub cached: bool,
}

impl Runtime {
    /// Builds the engine and starts its epoch ticker. `cache_dir` holds
    /// compiled components; none disables the cache.
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Arc<Runtime>> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).wctx("creating the wasmtime engine")?;

        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).wctx("linking WASI")?;
        exporter::Exporter::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .wctx("linking the ember:plugin imports")?;
        discoverer::ember::plugin::dns::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .wctx("linking the ember:plugin dns import")?;
        super::fs_sandbox::add_to_linker(&mut linker)?;
        let sentinel = super::fs_sandbox::Sentinel::new()?;

        let tls = crate::scrape::tls::client_config(
            &crate::config::http_client::TlsConfig::default(),
            &crate::scrape::tls::TlsFiles::default(),
        )
        .map_err(|e| anyhow!("TLS client config: {e}"))?;
        // No redirects: a redirect could lead off the allow-list.
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("Ember-plugin/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the plugins' HTTP client")?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stop = stop_ticker.clone();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .context("starting the epoch ticker thread")?;

        Ok(Arc::new(Runtime {
            engine,
            linker,
            cache_dir,
            http,
            stop_ticker,
            sentinel,
        }))
    }

    /// The cache key: the file's content hash and the engine's compatibility
    /// hash (wasmtime version, target, settings), so an upgrade of either
    /// never loads stale code.
    fn cache_key(&self, bytes: &[u8]) -> (String, String) {
        use std::hash::{Hash, Hasher};
        let content = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes));
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let key = format!("{content}-{:016x}", hasher.finish());
        (content, key)
    }

    /// Compiles a component, or loads it from the cache.
    pub fn compile(&self, bytes: &[u8]) -> anyhow::Result<(Component, String, bool)> {
        let (content, key) = self.cache_key(bytes);
        let cached = self
            .cache_dir
            .as_ref()
            .map(|d| d.join(format!("{key}.cwasm")));
        if let Some(path) = &cached
            && path.is_file()
        {
            // SAFETY: the file was written by `Component::serialize` of an
            // engine with the same compatibility hash (part of the name),
            // into Ember's own data directory.
            match unsafe { Component::deserialize_file(&self.engine, path) } {
                Ok(component) => return Ok((component, content, true)),
                Err(e) => {
                    tracing::warn!(file = %path.display(), err = %e, "Ignoring unusable compiled plugin in the cache");
                }
            }
        }
        let component = Component::new(&self.engine, bytes).wctx("compiling the component")?;
        if let Some(path) = &cached
            && let Err(e) = write_cache(path, &component)
        {
            tracing::warn!(file = %path.display(), err = %e, "Cannot cache compiled plugin");
        }
        Ok((component, content, false))
    }

    /// Compiles (or loads from cache) a component, finds its world and asks
    /// it to describe itself.
    pub async fn load(self: &Arc<Self>, bytes: Vec<u8>) -> anyhow::Result<Loaded> {
        let this = self.clone();
        let (component, hash, cached) = tokio::task::spawn_blocking(move || this.compile(&bytes))
            .await
            .context("compile task")??;
        let world = world_of(&self.engine, &component)?;
        let settings = Arc::new(PluginSettings::new("describe"));
        let mut live = self
            .instantiate(&component, world, settings)
            .await
            .context("instantiating")?;
        live.arm(Duration::from_secs(5));
        let info = match &live.bindings {
            Bindings::Exporter(b) => b.call_describe(&mut live.store).await,
            Bindings::Discoverer(b) => b.call_describe(&mut live.store).await,
            Bindings::Notifier(b) => b.call_describe(&mut live.store).await,
        }
        .map_err(anyhow::Error::from)
        .context("calling describe")?;
        Ok(Loaded {
            component,
            world,
            info,
            hash,
            cached,
        })
    }

    /// A fresh instance with the grants of `settings` (not yet `init`ed).
    pub(super) async fn instantiate(
        &self,
        component: &Component,
        world: World,
        settings: Arc<PluginSettings>,
    ) -> anyhow::Result<Live> {
        let stderr = MemoryOutputPipe::new(64 << 10);
        let mut wasi = WasiCtxBuilder::new();
        // Nothing but what is listed here: no env, args, network, files.
        wasi.stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for dir in &settings.read_only_dirs {
            wasi.preopened_dir(Path::new(dir), dir, FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("granting directory {dir}"))?;
        }
        // Paths outside the grants resolve to the empty sentinel, so the
        // host sees (and refuses) them; see `fs_sandbox`.
        let root_granted = settings
            .read_only_dirs
            .iter()
            .any(|d| Path::new(d) == Path::new("/"));
        let sentinel = if root_granted {
            None
        } else {
            let id = self.sentinel.ensure()?;
            wasi.preopened_dir(self.sentinel.path(), "/", FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .context("preopening the empty root directory")?;
            Some(id)
        };
        let state = State {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                max_memory: settings.limits.max_memory_bytes,
                memory: 0,
                exceeded: false,
            },
            http: self.http.clone(),
            settings: settings.clone(),
            stderr,
            deadline: Instant::now() + settings.limits.timeout,
            denied_host: None,
            denied_path: None,
            host_call_timed_out: false,
            response_too_large: false,
            sentinel,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Let other tasks run between ticks of a long call.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        let bindings = match world {
            World::Exporter => Bindings::Exporter(
                exporter::Exporter::instantiate_async(&mut store, component, &self.linker).await?,
            ),
            World::Discoverer => Bindings::Discoverer(
                discoverer::Discoverer::instantiate_async(&mut store, component, &self.linker)
                    .await?,
            ),
            World::Notifier => Bindings::Notifier(
                notifier::Notifier::instantiate_async(&mut store, component, &self.linker).await?,
            ),
        };
        Ok(Live { store, bindings })
    }
}

fn write_cache(path: &Path, component: &Component) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bytes = component.serialize()?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Which world a component implements, from the functions it exports.
pub fn world_of(engine: &Engine, component: &Component) -> anyhow::Result<World> {
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let has = |n: &str| exports.contains(&n);
    let world = match (has("collect"), has("discover"), has("notify")) {
        (true, false, false) => World::Exporter,
        (false, true, false) => World::Discoverer,
        (false, false, true) => World::Notifier,
        (false, false, false) => bail!(
            "the component implements none of the ember:plugin worlds (exports: {})",
            exports.join(", ")
        ),
        _ => bail!("the component exports more than one world's function"),
    };
    Ok(world)
}

/// The imports a component asks for (interface names), for `plugin check`.
fn imports_of(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

pub(super) enum Bindings {
    Exporter(exporter::Exporter),
    Discoverer(discoverer::Discoverer),
    Notifier(notifier::Notifier),
}

/// A live instance: its store and the bindings of its world.
pub(super) struct Live {
    pub store: Store<State>,
    pub bindings: Bindings,
}

impl Live {
    /// Prepares the store for one call of at most `timeout`.
    pub fn arm(&mut self, timeout: Duration) {
        let data = self.store.data_mut();
        data.deadline = Instant::now() + timeout;
        data.limiter.exceeded = false;
        data.denied_host = None;
        data.denied_path = None;
        data.host_call_timed_out = false;
        data.response_too_large = false;
        self.store.set_epoch_deadline(1);
    }
}

impl Runtime {
    /// The imports a component asks for (interface names), for `plugin check`.
    pub fn imports(&self, component: &Component) -> Vec<String> {
        imports_of(&self.engine, component)
    }
}
