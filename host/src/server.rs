//! The server's life: start-up in Prometheus's order, reloads, shutdown.
//!
//! 1. read and validate the config (nothing is created or bound on failure);
//! 2. open the data directory and lock it;
//! 3. bind the listen address;
//! 4. finish start-up, then report ready (`/-/ready`, systemd `READY=1`).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cli::ServerFlags;
use crate::config::Config;
use crate::storage::{DataDir, ReplayProgress, Storage, StorageOptions};
use crate::systemd;
use crate::telemetry::metrics::Metrics;
use crate::web;

/// How long in-flight requests get to finish after a shutdown request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

type ReloadReply = oneshot::Sender<Result<(), String>>;

/// The handle HTTP handlers and subsystems use to observe and steer the server.
pub struct Control {
    ready: AtomicBool,
    storage: std::sync::OnceLock<Arc<Storage>>,
    engine: std::sync::OnceLock<crate::promql::Engine>,
    sql: std::sync::OnceLock<crate::sql::SqlEngine>,
    scraper: std::sync::OnceLock<Arc<crate::scrape::manager::ScrapeManager>>,
    rules: std::sync::OnceLock<Arc<crate::rules::manager::RuleManager>>,
    notifier: std::sync::OnceLock<Arc<crate::alerting::notifier::Notifier>>,
    dispatcher: std::sync::OnceLock<Arc<crate::alerting::dispatch::Dispatcher>>,
    plugins: std::sync::OnceLock<Arc<crate::plugins::PluginManager>>,
    replay: parking_lot::Mutex<ReplayProgress>,
    reload_tx: mpsc::Sender<ReloadReply>,
    shutdown: CancellationToken,
    config: watch::Receiver<Arc<Config>>,
    external_url: String,
}

impl Control {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Reloads the configuration file and waits for the outcome.
    pub async fn request_reload(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.reload_tx
            .send(tx)
            .await
            .map_err(|_| "server is shutting down".to_owned())?;
        rx.await.map_err(|_| "server is shutting down".to_owned())?
    }

    pub fn request_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// The configuration in force; subsystems watch it for reloads.
    pub fn config(&self) -> watch::Receiver<Arc<Config>> {
        self.config.clone()
    }

    pub fn external_url(&self) -> &str {
        &self.external_url
    }

    /// The store, once WAL replay has finished.
    pub fn storage(&self) -> Option<&Arc<Storage>> {
        self.storage.get()
    }

    /// The PromQL engine over the store, once WAL replay has finished.
    pub fn engine(&self) -> Option<&crate::promql::Engine> {
        self.engine.get()
    }

    /// The SQL engine over the store, once WAL replay has finished.
    pub fn sql(&self) -> Option<&crate::sql::SqlEngine> {
        self.sql.get()
    }

    /// The scrape manager, once the server is running.
    pub fn scraper(&self) -> Option<&Arc<crate::scrape::manager::ScrapeManager>> {
        self.scraper.get()
    }

    /// The rule manager, once the server is running.
    pub fn rules(&self) -> Option<&Arc<crate::rules::manager::RuleManager>> {
        self.rules.get()
    }

    /// The Alertmanager notifier, once the server is running.
    pub fn notifier(&self) -> Option<&Arc<crate::alerting::notifier::Notifier>> {
        self.notifier.get()
    }

    /// The built-in Alertmanager (routing, silences), once the server is running.
    pub fn dispatcher(&self) -> Option<&Arc<crate::alerting::dispatch::Dispatcher>> {
        self.dispatcher.get()
    }

    /// The plugin host, once the server is running.
    pub fn plugins(&self) -> Option<&Arc<crate::plugins::PluginManager>> {
        self.plugins.get()
    }

    /// WAL replay progress in segments.
    pub fn replay_progress(&self) -> ReplayProgress {
        *self.replay.lock()
    }
}

/// Runs the server until it is told to stop. Start-up failures exit with 1.
pub fn run(flags: ServerFlags) -> ExitCode {
    info!(version = crate::telemetry::VERSION_LONG, "Starting Ember");

    let config = match Config::load(&flags.config_file) {
        Ok(c) => c,
        Err(err) => {
            error!(file = %flags.config_file.display(), err = %err, "Error loading config");
            return ExitCode::FAILURE;
        }
    };
    info!(file = %flags.config_file.display(), "Loaded configuration file");
    warn_unimplemented(&config);
    let rules = match crate::rules::manager::load_rule_files(&config, &config_dir(&flags)) {
        Ok(r) => r,
        Err(err) => {
            error!(err = %err, "Error loading rule files");
            return ExitCode::FAILURE;
        }
    };

    let (external_url, route_prefix) = match web_paths(&flags) {
        Ok(v) => v,
        Err(err) => {
            // A flag error: exit 2, as for any other bad flag.
            error!(err = %err, "Invalid web flags");
            return ExitCode::from(2);
        }
    };

    let cors = match web::CorsPolicy::from_flag(&flags.cors_origin) {
        Ok(c) => c,
        Err(err) => {
            error!(err = %err, "Invalid --web.cors.origin");
            return ExitCode::from(2);
        }
    };

    let data_dir = match DataDir::open(&flags.storage_path) {
        Ok(d) => d,
        Err(err) => {
            error!(err = %err, "Opening storage failed");
            return ExitCode::FAILURE;
        }
    };
    info!(path = %data_dir.path().display(), "Opened data directory");

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ember")
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            error!(err = %err, "Cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let push_store = match crate::push::store::PushStore::open(&data_dir.path().join("push")) {
        Ok(s) => Arc::new(s),
        Err(err) => {
            error!(err = %err, "Opening the push store failed");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve(
        flags,
        config,
        rules,
        external_url,
        route_prefix,
        cors,
        &data_dir,
        push_store,
    ));
    drop(data_dir);
    code
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    flags: ServerFlags,
    config: Config,
    rules: crate::rules::manager::LoadedRules,
    external_url: String,
    route_prefix: String,
    cors: web::CorsPolicy,
    data_dir: &DataDir,
    push_store: Arc<crate::push::store::PushStore>,
) -> ExitCode {
    let metrics = match Metrics::new() {
        Ok(m) => m,
        Err(err) => {
            error!(err = %err, "Cannot register metrics");
            return ExitCode::FAILURE;
        }
    };
    let listen = normalize_listen_address(&flags.listen_address);
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(err) => {
            error!(address = %flags.listen_address, err = %err, "Cannot listen on the web listen address");
            return ExitCode::FAILURE;
        }
    };
    let push_listener = if flags.push_listen_address.is_empty() {
        None
    } else {
        let addr = normalize_listen_address(&flags.push_listen_address);
        match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => Some(l),
            Err(err) => {
                error!(address = %flags.push_listen_address, err = %err, "Cannot listen on the push listen address");
                return ExitCode::FAILURE;
            }
        }
    };
    let sql_listener = if flags.sql_listen_address.is_empty() {
        None
    } else {
        let addr = normalize_listen_address(&flags.sql_listen_address);
        match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => Some(l),
            Err(err) => {
                error!(address = %flags.sql_listen_address, err = %err, "Cannot listen on the SQL listen address");
                return ExitCode::FAILURE;
            }
        }
    };
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(err) => {
            error!(err = %err, "Cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };

    let storage_opts = StorageOptions {
        out_of_order_window_ms: config.storage.tsdb.out_of_order_time_window.as_millis() as i64,
        block_range_ms: flags.min_block_duration.as_millis().max(1) as i64,
        max_block_range_ms: flags.effective_max_block_duration().as_millis() as i64,
        retention_ms: flags
            .effective_retention_time()
            .map(|d| d.as_millis() as i64),
        retention_bytes: flags.retention_size.filter(|s| *s > 0),
        max_exemplars: max_exemplars(&config),
    };
    let evaluation_interval_ms = config.global.evaluation_interval.as_millis() as i64;
    // Object storage is set up once; a reload does not move the bucket.
    let object_store = config
        .storage
        .object_store
        .clone()
        .map(|c| (c, config.global.external_labels.clone()));
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadReply>(8);
    let control = Arc::new(Control {
        ready: AtomicBool::new(false),
        storage: std::sync::OnceLock::new(),
        engine: std::sync::OnceLock::new(),
        sql: std::sync::OnceLock::new(),
        scraper: std::sync::OnceLock::new(),
        rules: std::sync::OnceLock::new(),
        notifier: std::sync::OnceLock::new(),
        dispatcher: std::sync::OnceLock::new(),
        plugins: std::sync::OnceLock::new(),
        replay: parking_lot::Mutex::new(ReplayProgress::default()),
        reload_tx,
        shutdown: CancellationToken::new(),
        config: config_rx,
        external_url,
    });
    metrics.config_last_reload_successful.set(1);
    metrics.config_last_reload_success_timestamp.set(unix_now());

    // --web.config.file: checked now, re-read per request and handshake.
    let security = match &flags.web_config_file {
        Some(path) => {
            let sec = web::security::WebSecurity::new(path.clone());
            match sec.load() {
                Ok(c) => Some((sec, c.tls_enabled())),
                Err(err) => {
                    error!(err = %err, "Unable to validate web configuration file");
                    return ExitCode::from(2);
                }
            }
        }
        None => None,
    };
    let app = web::router(web::AppState {
        control: control.clone(),
        metrics: metrics.clone(),
        enable_lifecycle: flags.enable_lifecycle,
        enable_remote_write_receiver: flags.enable_remote_write_receiver,
        enable_admin_api: flags.enable_admin_api,
        route_prefix: route_prefix.clone(),
        info: Arc::new(web::ServerInfo::new(&flags)),
        cors: Arc::new(cors),
        lookback_delta_ms: flags.query_lookback_delta.as_millis() as i64,
        remote_read: web::RemoteReadLimits::new(
            crate::remote::read_handler::ReadLimits {
                sample_limit: flags.remote_read_sample_limit,
                max_bytes_in_frame: flags.remote_read_max_bytes_in_frame,
            },
            flags.remote_read_concurrent_limit,
        ),
        push: crate::push::http::PushState {
            store: push_store.clone(),
        },
    });
    let shutdown = control.shutdown.clone();
    let conn_limits = web::limits::ConnectionLimits {
        max_connections: flags.max_connections,
        read_timeout: flags.read_timeout.into(),
    };
    let server = tokio::spawn(serve_listener(
        web::limits::LimitedListener::new(
            listener,
            conn_limits,
            web::limits::ConnectionCounters::new(&metrics, "web"),
        ),
        app,
        security.clone(),
        shutdown.cancelled_owned(),
    ));
    info!(address = %flags.listen_address, route_prefix = %route_prefix, tls = security.as_ref().is_some_and(|s| s.1), "Listening");
    if let Some(listener) = sql_listener {
        let tls = security.as_ref().is_some_and(|s| s.1);
        tokio::spawn(crate::sql::pgwire::serve(
            listener,
            control.clone(),
            security.as_ref().map(|s| s.0.clone()),
            tls,
            crate::sql::pg_connection::ConnectionLimits {
                max_connections: flags.sql_max_connections,
                startup_timeout: flags.sql_startup_timeout.into(),
                idle_timeout: flags.sql_idle_timeout.into(),
            },
            crate::sql::pg_connection::ConnectionMetrics::new(&metrics.registry),
            control.shutdown.clone(),
        ));
        info!(address = %flags.sql_listen_address, tls, max_connections = flags.sql_max_connections, "Listening for PostgreSQL clients");
    }

    if let Some(listener) = push_listener {
        let push_app = crate::push::http::listener_routes(crate::push::http::PushState {
            store: push_store.clone(),
        });
        let shutdown = control.shutdown.clone();
        let push_counters = web::limits::ConnectionCounters::new(&metrics, "push");
        tokio::spawn(async move {
            if let Err(err) = serve_listener(
                web::limits::LimitedListener::new(listener, conn_limits, push_counters),
                push_app,
                security,
                shutdown.cancelled_owned(),
            )
            .await
            {
                error!(err = %err, "Push listener stopped");
            }
        });
        info!(address = %flags.push_listen_address, "Listening for pushes");
    }

    // The server is bound (so /-/healthy and the replay status answer) but
    // not ready while the head is rebuilt from the WAL; the progress task
    // keeps systemd patient meanwhile.
    let progress = tokio::spawn(startup_progress(control.clone()));
    let replay_control = control.clone();
    let path = data_dir.path().to_owned();
    info!("Replaying WAL, this may take a while");
    let opened = tokio::task::spawn_blocking(move || {
        Storage::open(&path, storage_opts, |p| {
            *replay_control.replay.lock() = p;
            info!(segment = p.done, total = p.total, "WAL segment loaded");
        })
    })
    .await;
    let storage = match opened {
        Ok(Ok((storage, _report))) => storage,
        Ok(Err(err)) => {
            error!(err = %err, "Opening storage failed");
            return ExitCode::FAILURE;
        }
        Err(err) => {
            error!(err = %err, "WAL replay task failed");
            return ExitCode::FAILURE;
        }
    };
    let storage = Arc::new(storage);
    let _ = control.storage.set(storage.clone());
    let _ = control.engine.set(crate::promql::Engine::new(
        storage.clone(),
        crate::promql::EngineOptions {
            lookback_delta_ms: flags.query_lookback_delta.as_millis() as i64,
            timeout: flags.query_timeout.into(),
            max_samples: usize::try_from(flags.query_max_samples).unwrap_or(usize::MAX),
            // Subqueries without a step use the global evaluation interval,
            // as in Prometheus (fixed at start-up there too).
            default_subquery_step_ms: evaluation_interval_ms,
        },
    ));
    if let Some(engine) = control.engine.get() {
        let _ = control.sql.set(crate::sql::SqlEngine::new(
            storage.clone(),
            engine.clone(),
            crate::sql::SqlOptions {
                timeout: flags.query_timeout.into(),
                max_rows: usize::try_from(flags.sql_max_rows).unwrap_or(usize::MAX),
                max_memory: usize::try_from(flags.sql_max_memory).unwrap_or(usize::MAX),
            },
        ));
    }
    let shipping = match object_store {
        Some((cfg, external_labels)) => {
            let dir = flags.storage_path.clone();
            let opened = tokio::task::spawn_blocking(move || {
                crate::storage::bucket::ObjectStorage::open(&cfg, external_labels, &dir)
            })
            .await;
            let os = match opened {
                Ok(Ok(os)) => Arc::new(os),
                Ok(Err(err)) => {
                    error!(err = %err, "Cannot set up object storage");
                    return ExitCode::FAILURE;
                }
                Err(err) => {
                    error!(err = %err, "Object storage set-up task failed");
                    return ExitCode::FAILURE;
                }
            };
            info!(bucket = %os.bucket.name(), upload = os.settings.upload, global_view = os.settings.global_view, "Using object storage for blocks");
            storage.attach_bucket(os.clone());
            Some(tokio::spawn(ship_blocks(
                storage.clone(),
                os,
                control.shutdown.clone(),
            )))
        }
        None => None,
    };
    let scraper = crate::scrape::manager::ScrapeManager::new(storage.clone(), config_dir(&flags));
    match crate::plugins::PluginManager::new(
        flags.effective_plugins_dir(),
        Some(flags.storage_path.join("plugins-cache")),
        &metrics.registry,
    ) {
        Ok(plugins) => {
            for problem in plugins.rescan().await {
                warn!(err = %problem, "Plugin not loaded");
            }
            scraper.set_plugins(plugins.clone());
            let _ = control.plugins.set(plugins);
        }
        Err(err) => {
            error!(err = %format!("{err:#}"), "Cannot start the plugin host; plugins are disabled")
        }
    }
    let _ = control.scraper.set(scraper.clone());
    let metadata_scraper = scraper.clone();
    let scraping = tokio::spawn(scraper.run(control.config(), control.shutdown.clone()));
    tokio::spawn(crate::push::ingest::run(
        push_store.clone(),
        storage.clone(),
        control.config(),
        control.shutdown.clone(),
    ));
    let remote_write = match crate::remote::write_sender::RemoteWriteManager::new(
        storage.clone(),
        config_dir(&flags),
        Some(&metrics.registry),
        Arc::new(move || scraped_metadata(&metadata_scraper)),
    ) {
        Ok(m) => m,
        Err(err) => {
            error!(err = %err, "Cannot register remote-write metrics");
            return ExitCode::FAILURE;
        }
    };
    remote_write.apply(&control.config().borrow().clone()).await;
    // After the remote-write queues hold the WAL segments they still need,
    // so a cut right after start-up does not checkpoint them away.
    let maintenance = tokio::spawn(storage_maintenance(
        storage.clone(),
        control.shutdown.clone(),
    ));
    let rule_metrics = match crate::rules::metrics::RuleMetrics::new(Some(&metrics.registry)) {
        Ok(m) => m,
        Err(err) => {
            error!(err = %err, "Cannot register rule metrics");
            return ExitCode::FAILURE;
        }
    };
    let notifier = match crate::alerting::notifier::Notifier::new(
        flags.notification_queue_capacity,
        config_dir(&flags),
        Some(&metrics.registry),
    ) {
        Ok(n) => n,
        Err(err) => {
            error!(err = %err, "Cannot register notifier metrics");
            return ExitCode::FAILURE;
        }
    };
    notifier.apply(&control.config().borrow().clone());
    let _ = control.notifier.set(notifier.clone());
    let notifying = tokio::spawn(notifier.clone().run(control.shutdown.clone()));
    let dispatcher = match crate::alerting::dispatch::Dispatcher::open(
        &flags.storage_path.join("alerting"),
        control.external_url.clone(),
        Some(&metrics.registry),
    ) {
        Ok(d) => d,
        Err(err) => {
            error!(err = %err, "Cannot start the built-in Alertmanager");
            return ExitCode::FAILURE;
        }
    };
    if let Some(plugins) = control.plugins() {
        dispatcher.set_plugins(plugins.clone());
    }
    dispatcher.apply(control.config().borrow().notifications.as_ref());
    warn_missing_notifiers(&control, &control.config().borrow().clone());
    let _ = control.dispatcher.set(dispatcher.clone());
    tokio::spawn(dispatcher.clone().run(control.shutdown.clone()));
    let notify: crate::rules::group::NotifyFn = {
        let notifier = notifier.clone();
        let dispatcher = dispatcher.clone();
        Arc::new(move |alerts| {
            let alerts = notifier.prepare(alerts);
            dispatcher.put(&alerts);
            notifier.enqueue(alerts);
        })
    };
    let rule_manager = crate::rules::manager::RuleManager::new(
        control.engine().cloned().expect("engine set above"),
        storage.clone(),
        crate::rules::manager::ManagerOptions {
            external_url: control.external_url.clone(),
            for_outage_tolerance_ms: flags.rules_for_outage_tolerance.as_millis() as i64,
            for_grace_period_ms: flags.rules_for_grace_period.as_millis() as i64,
            resend_delay_ms: flags.rules_resend_delay.as_millis() as i64,
        },
        notify,
        rule_metrics,
    );
    rule_manager
        .apply(&control.config().borrow().clone(), rules)
        .await;
    let _ = control.rules.set(rule_manager.clone());
    control.ready.store(true, Ordering::Release);
    progress.abort();
    metrics.ready.set(1);
    systemd::ready();
    info!("Server is ready to receive web requests.");

    let mut server = server;
    loop {
        tokio::select! {
            _ = signals.hangup.recv() => {
                rescan_plugins(&control).await;
                if reload(&flags, &config_tx, &metrics, &control).await.is_ok() {
                    remote_write.apply(&control.config().borrow().clone()).await;
                }
                forget_unused_plugin_instances(&control);
            }
            Some(reply) = reload_rx.recv() => {
                rescan_plugins(&control).await;
                let result = reload(&flags, &config_tx, &metrics, &control).await;
                if result.is_ok() {
                    remote_write.apply(&control.config().borrow().clone()).await;
                }
                let _ = reply.send(result);
                forget_unused_plugin_instances(&control);
            }
            _ = signals.terminate.recv() => {
                info!(signal = "SIGTERM", "Received termination request, exiting gracefully");
                break;
            }
            _ = signals.interrupt.recv() => {
                info!(signal = "SIGINT", "Received termination request, exiting gracefully");
                break;
            }
            _ = control.shutdown.cancelled() => {
                info!("Received termination request via web service, exiting gracefully");
                break;
            }
            result = &mut server => {
                // The HTTP server only stops by itself on a fatal error.
                error!(result = ?result, "Web server stopped unexpectedly");
                return ExitCode::FAILURE;
            }
        }
    }

    systemd::stopping();
    control.ready.store(false, Ordering::Release);
    metrics.ready.set(0);
    control.shutdown.cancel();
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(result) => warn!(result = ?result, "Web server stopped with an error"),
        Err(_) => warn!(grace = ?SHUTDOWN_GRACE, "In-flight requests did not finish in time"),
    }
    rule_manager.stop().await;
    if tokio::time::timeout(Duration::from_secs(10), notifying)
        .await
        .is_err()
    {
        warn!("Alert notifications did not flush in time");
    }
    // Scrape loops write stale markers for their series as they stop.
    if tokio::time::timeout(SHUTDOWN_GRACE, scraping)
        .await
        .is_err()
    {
        warn!("Scrape loops did not stop in time");
    }
    // After the scrapers, so their last samples are in the WAL for next time.
    remote_write.stop().await;
    maintenance.abort();
    if let Some(shipping) = shipping {
        shipping.abort();
    }
    if let Err(err) = storage.sync() {
        error!(err = %err, "Cannot sync the WAL at shutdown");
    }
    info!("See you next time!");
    ExitCode::SUCCESS
}

/// Serves `app` on `listener`, behind TLS and basic auth when the web config
/// file asks for them.
async fn serve_listener(
    listener: web::limits::LimitedListener,
    app: axum::Router,
    security: Option<(Arc<web::security::WebSecurity>, bool)>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match security {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some((sec, tls)) => {
            let app = app.layer(axum::middleware::from_fn_with_state(
                sec.clone(),
                web::security::auth_layer,
            ));
            if tls {
                let listener = web::security::TlsListener::new(listener, sec)?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            } else {
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        }
    }
}

/// Picks up new, changed and removed plugin files. A file that does not
/// load is logged and shown in the plugin status; its previous version keeps
/// running, and the reload itself goes on.
async fn rescan_plugins(control: &Control) {
    if let Some(plugins) = control.plugins() {
        for problem in plugins.rescan().await {
            warn!(err = %problem, "Plugin not loaded");
        }
    }
}

/// Drops plugin instances that no use in the configuration in force needs
/// any more (their config, grants or limits changed or the job is gone).
fn forget_unused_plugin_instances(control: &Control) {
    if let Some(plugins) = control.plugins() {
        let config = control.config().borrow().clone();
        let notifiers = config
            .notifications
            .as_ref()
            .map(crate::alerting::dispatch::Dispatcher::plugin_uses)
            .unwrap_or_default();
        plugins.retain_instances(|instance| {
            config
                .scrape_configs
                .iter()
                .flat_map(|c| c.plugin.iter().chain(&c.plugin_sd_configs))
                .chain(&notifiers)
                .any(|u| u.settings(None).same_use(instance.settings()))
        });
    }
}

/// Says at load time which receivers name a plugin that is missing or not a
/// notifier, rather than only when a notification fails.
fn warn_missing_notifiers(control: &Control, config: &Config) {
    let (Some(n), Some(plugins)) = (&config.notifications, control.plugins()) else {
        return;
    };
    for r in &n.receivers {
        for p in &r.plugin_configs {
            match plugins.world(&p.name) {
                Some(crate::plugins::World::Notifier) => {}
                Some(world) => {
                    warn!(receiver = %r.name, plugin = %p.name, world = world.as_str(), "Receiver plugin is not a notifier; its notifications will fail")
                }
                None => {
                    warn!(receiver = %r.name, plugin = %p.name, dir = %plugins.dir().display(), "Receiver plugin is not in the plugin directory; its notifications will fail")
                }
            }
        }
    }
}

/// Applies a new configuration, or keeps the old one and says why.
async fn reload(
    flags: &ServerFlags,
    config_tx: &watch::Sender<Arc<Config>>,
    metrics: &Metrics,
    control: &Control,
) -> Result<(), String> {
    systemd::reloading();
    info!(file = %flags.config_file.display(), "Loading configuration file");
    let loaded = Config::load(&flags.config_file)
        .map_err(|e| e.to_string())
        .and_then(|config| {
            let rules = crate::rules::manager::load_rule_files(&config, &config_dir(flags))?;
            Ok((config, rules))
        });
    let result = match loaded {
        Ok((config, rules)) => {
            warn_unimplemented(&config);
            {
                let old = config_tx.borrow();
                let bucket_changed = old.storage.object_store != config.storage.object_store
                    || (config.storage.object_store.is_some()
                        && old.global.external_labels != config.global.external_labels);
                if bucket_changed {
                    warn!(
                        "storage.object_store or the external labels its uploads carry changed; \
                         the bucket keeps its start-up settings until Ember is restarted"
                    );
                }
            }
            if let Some(notifier) = control.notifier() {
                notifier.apply(&config);
            }
            if let Some(dispatcher) = control.dispatcher() {
                dispatcher.apply(config.notifications.as_ref());
            }
            warn_missing_notifiers(control, &config);
            if let Some(manager) = control.rules() {
                manager.apply(&config, rules).await;
            }
            if let Some(storage) = control.storage() {
                storage.exemplars().resize(max_exemplars(&config));
            }
            config_tx.send_replace(Arc::new(config));
            metrics.config_last_reload_successful.set(1);
            metrics.config_last_reload_success_timestamp.set(unix_now());
            info!(file = %flags.config_file.display(), "Completed loading of configuration file");
            Ok(())
        }
        Err(err) => {
            metrics.config_last_reload_successful.set(0);
            error!(file = %flags.config_file.display(), err = %err, "Error reloading config; keeping the previous configuration");
            Err(err)
        }
    };
    systemd::ready();
    result
}

/// The exemplar ring's size; Prometheus treats a negative value as 0 (off).
fn max_exemplars(config: &Config) -> usize {
    usize::try_from(config.storage.exemplars.max_exemplars).unwrap_or(0)
}

/// The folder relative paths in the config file are resolved against.
fn config_dir(flags: &ServerFlags) -> std::path::PathBuf {
    match flags.config_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::path::PathBuf::from("."),
    }
}

/// The metric metadata of every active target, one entry per metric family
/// and distinct type/help/unit, for remote write.
fn scraped_metadata(
    scraper: &crate::scrape::manager::ScrapeManager,
) -> Vec<crate::remote::proto::MetricMetadata> {
    let mut seen = std::collections::BTreeSet::new();
    for t in scraper.targets() {
        for (name, md) in &t.state.metadata {
            seen.insert((
                name.clone(),
                md.kind.clone(),
                md.help.clone(),
                md.unit.clone(),
            ));
        }
    }
    seen.into_iter()
        .map(
            |(name, kind, help, unit)| crate::remote::proto::MetricMetadata {
                r#type: crate::remote::write_sender::metadata_type(&kind),
                metric_family_name: name,
                help,
                unit,
            },
        )
        .collect()
}

/// Says out loud which accepted settings have no effect yet, so nothing
/// appears to work that does not.
fn warn_unimplemented(config: &Config) {
    for what in config.not_yet_acted_on() {
        warn!(
            setting = what,
            "Configuration accepted but not acted on yet"
        );
    }
}

/// Cuts the head into blocks, compacts and applies retention in the
/// background, as often as the block range calls for (at most once a minute).
async fn storage_maintenance(storage: Arc<Storage>, shutdown: CancellationToken) {
    let range = Duration::from_millis(storage.options().block_range_ms.max(0) as u64);
    let every = (range / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let s = storage.clone();
        match tokio::task::spawn_blocking(move || s.run_maintenance()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => error!(err = %err, "Storage maintenance failed; will retry"),
            Err(err) => error!(err = %err, "Storage maintenance task failed; will retry"),
        }
    }
}

/// Uploads blocks to object storage and refreshes the list of remote
/// blocks every `sync_interval`; a failed round is retried at the next.
async fn ship_blocks(
    storage: Arc<Storage>,
    os: Arc<crate::storage::bucket::ObjectStorage>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(os.settings.sync_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let (s, o) = (storage.clone(), os.clone());
        match tokio::task::spawn_blocking(move || {
            crate::storage::bucket::shipper::ship_once(&s, &o)
        })
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                warn!(bucket = %os.bucket.name(), err = %err, "Object storage sync failed; local blocks are kept and the upload is retried")
            }
            Err(err) => error!(err = %err, "Object storage sync task failed; will retry"),
        }
    }
}

/// Extends systemd's start-up timeout while start-up is still going.
async fn startup_progress(control: Arc<Control>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        if control.is_ready() {
            return;
        }
        systemd::extend_timeout(Duration::from_secs(30), "Starting up");
    }
}

struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }
}

/// Go's `:9090` means every interface; Rust needs an explicit host.
fn normalize_listen_address(addr: &str) -> String {
    if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_owned()
    }
}

/// The external URL and the route prefix, derived as Prometheus derives them.
fn web_paths(flags: &ServerFlags) -> Result<(String, String), String> {
    let external = match &flags.external_url {
        Some(url) => {
            crate::config::parse_url(url)
                .map_err(|e| format!("invalid --web.external-url {url:?}: {e}"))?;
            url.trim_end_matches('/').to_owned()
        }
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_owned());
            let port = flags
                .listen_address
                .rsplit_once(':')
                .map(|(_, p)| p)
                .unwrap_or("9090");
            format!("http://{host}:{port}")
        }
    };
    let prefix = match &flags.route_prefix {
        Some(p) => p.clone(),
        None => {
            let after_scheme = external.split_once("://").map(|(_, r)| r).unwrap_or("");
            after_scheme
                .find('/')
                .map(|i| after_scheme[i..].to_owned())
                .unwrap_or_default()
        }
    };
    let prefix = format!("/{}", prefix.trim_matches('/'));
    Ok((external, prefix))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn flags(args: &[&str]) -> ServerFlags {
        let mut all = vec!["ember"];
        all.extend_from_slice(args);
        crate::cli::Cli::parse_from(all).server
    }

    #[test]
    fn route_prefix_from_external_url() {
        let (url, prefix) =
            web_paths(&flags(&["--web.external-url=http://example.com/ember/"])).unwrap();
        assert_eq!(url, "http://example.com/ember");
        assert_eq!(prefix, "/ember");
        let (_, prefix) = web_paths(&flags(&["--web.external-url=http://example.com"])).unwrap();
        assert_eq!(prefix, "/");
        let (_, prefix) = web_paths(&flags(&["--web.route-prefix=api/"])).unwrap();
        assert_eq!(prefix, "/api");
        assert!(web_paths(&flags(&["--web.external-url=example.com"])).is_err());
    }

    #[test]
    fn go_style_listen_address() {
        assert_eq!(normalize_listen_address(":9090"), "0.0.0.0:9090");
        assert_eq!(normalize_listen_address("127.0.0.1:9090"), "127.0.0.1:9090");
    }
}
