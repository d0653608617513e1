//! One configured use of a plugin (a scrape job's exporter, a discoverer, a
//! notifier): calls under limits, failure reasons, replacing instances.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::manager::{Health, PluginMetrics};
use super::runtime::{Bindings, Live, Loaded, Runtime, World};
use super::state::GRACE;
use super::{AlertGroup, CallError, MetricFamily, PluginSettings, Reason, TargetGroup};

/// One call of a world function `$call` (an expression using `$live`) under
/// the instance's limits. A macro rather than a closure-taking method so the
/// futures stay `Send` without higher-ranked bounds.
macro_rules! run_call {
    ($this:expr, $function:literal, |$live:ident| $call:expr) => {{
        let this = $this;
        let start = Instant::now();
        let timeout = this.settings.limits.timeout;
        // Calls into one instance take turns; waiting for the turn is
        // bounded by the deadline too.
        let Ok(mut slot) = tokio::time::timeout(timeout, this.live.lock()).await else {
            let e = CallError::new(
                Reason::Timeout,
                format!(
                    "{} waited {timeout:?} for the instance, busy with another call",
                    $function
                ),
            );
            this.output_error($function, &e);
            return Err(e);
        };
        let result = match this.ensure(&mut slot).await {
            Err(e) => Err(e),
            Ok(()) => match slot.as_mut() {
                None => Err(CallError::new(Reason::Init, "no instance")),
                Some($live) => {
                    $live.arm(timeout);
                    let outcome = tokio::time::timeout(timeout + GRACE, $call).await;
                    match outcome {
                        Err(_) => Err(CallError::new(
                            Reason::Timeout,
                            format!("{} ran past its deadline of {timeout:?}", $function),
                        )),
                        Ok(Err(trap)) => Err(classify($live, &trap)),
                        Ok(Ok(Err(message))) => Err(plugin_error($live, message)),
                        Ok(Ok(Ok(value))) => Ok(value),
                    }
                }
            },
        };
        this.finish($function, start, slot, result).await
    }};
}

pub struct PluginInstance {
    runtime: Arc<Runtime>,
    loaded: Loaded,
    settings: Arc<PluginSettings>,
    live: tokio::sync::Mutex<Option<Live>>,
    metrics: PluginMetrics,
    health: Arc<Mutex<Health>>,
}

impl PluginInstance {
    pub(super) fn new(
        runtime: Arc<Runtime>,
        loaded: Loaded,
        settings: PluginSettings,
        metrics: PluginMetrics,
        health: Arc<Mutex<Health>>,
    ) -> PluginInstance {
        PluginInstance {
            runtime,
            loaded,
            settings: Arc::new(settings),
            live: tokio::sync::Mutex::new(None),
            metrics,
            health,
        }
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn world(&self) -> World {
        self.loaded.world
    }

    pub fn settings(&self) -> &PluginSettings {
        &self.settings
    }

    pub fn hash(&self) -> &str {
        &self.loaded.hash
    }

    /// Creates and `init`s an instance if there is none.
    async fn ensure(&self, slot: &mut Option<Live>) -> Result<(), CallError> {
        if slot.is_some() {
            return Ok(());
        }
        let mut live = self
            .runtime
            .instantiate(
                &self.loaded.component,
                self.loaded.world,
                self.settings.clone(),
            )
            .await
            .map_err(|e| CallError::new(Reason::Init, format!("{e:#}")))?;
        let config = self.settings.config_json.clone();
        let timeout = self.settings.limits.timeout;
        live.arm(timeout);
        let call = async {
            match &live.bindings {
                Bindings::Exporter(b) => b.call_init(&mut live.store, &config).await,
                Bindings::Discoverer(b) => b.call_init(&mut live.store, &config).await,
                Bindings::Notifier(b) => b.call_init(&mut live.store, &config).await,
            }
        };
        let result = tokio::time::timeout(timeout + GRACE, call).await;
        match result {
            Err(_) => {
                return Err(CallError::new(
                    Reason::Timeout,
                    "init ran past its deadline",
                ));
            }
            Ok(Err(trap)) => {
                let e = classify(&live, &trap);
                return Err(CallError::new(e.reason, format!("init: {}", e.message)));
            }
            Ok(Ok(Err(message))) => {
                return Err(CallError::new(Reason::Init, format!("init: {message}")));
            }
            Ok(Ok(Ok(()))) => {}
        }
        *slot = Some(live);
        Ok(())
    }

    /// Runs one call (see `run_call!`): makes sure there is an instance,
    /// arms the deadline, classifies failures, records metrics, replaces a
    /// faulted instance.
    async fn finish<R>(
        &self,
        function: &'static str,
        start: Instant,
        mut slot: tokio::sync::MutexGuard<'_, Option<Live>>,
        result: Result<R, CallError>,
    ) -> Result<R, CallError> {
        let memory = slot.as_ref().map_or(0, |l| l.store.data().limiter.memory);
        let replaced = match &result {
            Err(e) if e.reason.replaces_instance() => {
                // A trapped or interrupted instance cannot be trusted again;
                // the next call starts a fresh one.
                *slot = None;
                true
            }
            _ => false,
        };
        drop(slot);
        self.record(function, start, &result, memory, replaced);
        result
    }

    /// Records the outcome of a call (also for checks done after the call,
    /// such as output limits).
    fn record<R>(
        &self,
        function: &str,
        start: Instant,
        result: &Result<R, CallError>,
        memory: usize,
        replaced: bool,
    ) {
        let name = self.name();
        self.metrics
            .calls
            .with_label_values(&[name, function])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[name, function])
            .observe(start.elapsed().as_secs_f64());
        self.metrics
            .memory
            .with_label_values(&[name])
            .set(memory as i64);
        if replaced {
            self.metrics.restarts.with_label_values(&[name]).inc();
        }
        let mut health = self.health.lock();
        health.last_call = Some(std::time::SystemTime::now());
        health.calls += 1;
        health.call_seconds += start.elapsed().as_secs_f64();
        match result {
            Ok(_) => health.last_ok = true,
            Err(e) => {
                health.errors += 1;
                self.metrics
                    .errors
                    .with_label_values(&[name, e.reason.as_str()])
                    .inc();
                tracing::warn!(plugin = %name, function, reason = e.reason.as_str(), err = %e.message, "Plugin call failed");
                health.last_ok = false;
                health.last_error = Some(e.clone());
            }
        }
    }

    /// Counts a failure that is not a finished call: output rejected after
    /// a successful call (already counted), or no turn on the instance.
    fn output_error(&self, function: &str, e: &CallError) {
        let name = self.name();
        self.metrics
            .errors
            .with_label_values(&[name, e.reason.as_str()])
            .inc();
        tracing::warn!(plugin = %name, function, reason = e.reason.as_str(), err = %e.message, "Plugin output rejected");
        let mut health = self.health.lock();
        health.last_ok = false;
        health.errors += 1;
        health.last_error = Some(e.clone());
    }

    /// Calls an exporter's `collect`.
    pub async fn collect(&self) -> Result<Vec<MetricFamily>, CallError> {
        let families = run_call!(self, "collect", |live| async {
            match &live.bindings {
                Bindings::Exporter(b) => b.call_collect(&mut live.store).await,
                _ => Ok(Err("not an exporter".to_owned())),
            }
        })?;
        if let Err(e) = super::validate_families(&families) {
            let e = CallError::new(Reason::InvalidOutput, e);
            self.output_error("collect", &e);
            return Err(e);
        }
        let samples: usize = families.iter().map(|f| f.samples.len()).sum();
        let max = self.settings.limits.max_samples;
        if samples > max {
            let e = CallError::new(
                Reason::OutputLimit,
                format!("collect returned {samples} samples, more than the limit of {max}"),
            );
            self.output_error("collect", &e);
            return Err(e);
        }
        Ok(families)
    }

    /// Calls a discoverer's `discover`.
    pub async fn discover(&self) -> Result<Vec<TargetGroup>, CallError> {
        let groups = run_call!(self, "discover", |live| async {
            match &live.bindings {
                Bindings::Discoverer(b) => b.call_discover(&mut live.store).await,
                _ => Ok(Err("not a discoverer".to_owned())),
            }
        })?;
        if let Err(e) = super::validate_groups(&groups) {
            let e = CallError::new(Reason::InvalidOutput, e);
            self.output_error("discover", &e);
            return Err(e);
        }
        let targets: usize = groups.iter().map(|g| g.targets.len()).sum();
        let max = self.settings.limits.max_samples;
        if targets > max {
            let e = CallError::new(
                Reason::OutputLimit,
                format!("discover returned {targets} targets, more than the limit of {max}"),
            );
            self.output_error("discover", &e);
            return Err(e);
        }
        Ok(groups)
    }

    /// Calls a notifier's `notify`.
    pub async fn notify(&self, group: &AlertGroup) -> Result<(), CallError> {
        run_call!(self, "notify", |live| async {
            match &live.bindings {
                Bindings::Notifier(b) => b.call_notify(&mut live.store, group).await,
                _ => Ok(Err("not a notifier".to_owned())),
            }
        })
    }
}

/// The reason of an error the plugin returned: a refusal or a timeout of
/// the host that the plugin passed on (a forbidden host or file, a host
/// call cut off by the deadline, an oversized HTTP response), or its own.
fn plugin_error(live: &Live, message: String) -> CallError {
    let data = live.store.data();
    if data.host_call_timed_out {
        return CallError::new(
            Reason::Timeout,
            format!(
                "a host call ran into the deadline of {:?} ({message})",
                data.settings.limits.timeout
            ),
        );
    }
    if let Some(host) = &data.denied_host {
        return CallError::new(
            Reason::ForbiddenHost,
            format!("host {host:?} is not on the allow-list ({message})"),
        );
    }
    if data.response_too_large {
        return CallError::new(
            Reason::OutputLimit,
            format!(
                "an HTTP response was larger than max_response_bytes ({} bytes) ({message})",
                data.settings.limits.max_response_bytes
            ),
        );
    }
    if let Some(path) = &data.denied_path {
        return CallError::new(
            Reason::ForbiddenFile,
            format!("path {path:?} is outside the granted read_only_dirs ({message})"),
        );
    }
    CallError::new(Reason::PluginError, message)
}

/// Turns a trap into a reason: the deadline, the memory cap, a guest panic
/// (Rust's panic message on stderr), or another trap.
fn classify(live: &Live, err: &wasmtime::Error) -> CallError {
    let data = live.store.data();
    if matches!(
        err.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) {
        let what = if data.host_call_timed_out {
            "a host call ran into the deadline"
        } else {
            "ran past its deadline"
        };
        return CallError::new(
            Reason::Timeout,
            format!("{what} of {:?}", data.settings.limits.timeout),
        );
    }
    if data.limiter.exceeded {
        return CallError::new(
            Reason::OutOfMemory,
            format!(
                "memory limit of {} bytes reached",
                data.settings.limits.max_memory_bytes
            ),
        );
    }
    let stderr = data.stderr.contents();
    let stderr = String::from_utf8_lossy(&stderr);
    if let Some(line) = stderr.lines().rev().find(|l| l.contains("panicked at")) {
        let rest: Vec<&str> = stderr
            .lines()
            .skip_while(|l| !l.contains("panicked at"))
            .take(3)
            .collect();
        let message = if rest.is_empty() {
            line.to_owned()
        } else {
            rest.join(" ")
        };
        return CallError::new(Reason::Panic, message);
    }
    CallError::new(Reason::Trap, format!("{:#}", err.root_cause()))
}
