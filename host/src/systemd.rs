//! systemd readiness protocol (`Type=notify`). Every function is a no-op when
//! Ember was not started by systemd (no `NOTIFY_SOCKET`).

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(%err, "cannot send notification to systemd");
    }
}

/// Start-up (or a reload) is complete and `/-/ready` answers 200.
pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("Ready")]);
}

/// A configuration reload has begun. `MONOTONIC_USEC` lets `Type=notify-reload`
/// units match the reload to the signal that caused it.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("Shutting down")]);
}

/// Asks systemd for more time while a long start-up is still making progress.
pub fn extend_timeout(by: Duration, status: &str) {
    let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
    send(&[
        NotifyState::ExtendTimeoutUsec(usec),
        NotifyState::Status(status),
    ]);
}
