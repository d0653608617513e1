//! One PostgreSQL connection's life under the listener's limits:
//! `--sql.max-connections` (a connection beyond it gets PostgreSQL's
//! `53300 too_many_connections` and is closed), `--sql.startup-timeout`
//! (TLS negotiation, startup message and authentication must finish within
//! it from the moment of connecting, like PostgreSQL's
//! `authentication_timeout`; the connection is closed without a message, as
//! PostgreSQL does) and `--sql.idle-timeout` (a logged-in client that sends
//! nothing for that long gets `57P05`, like PostgreSQL's
//! `idle_session_timeout`).
//!
//! The message loop is ours rather than `pgwire::tokio::process_socket`
//! because that one has a fixed 60 s startup timeout and no idle timeout;
//! it is built from the same public pieces (`negotiate_tls`,
//! `process_message`, `process_error`).

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::ErrorInfo;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// `--sql.max-connections`, `--sql.startup-timeout`, `--sql.idle-timeout`;
/// 0 turns any of them off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub startup_timeout: Duration,
    pub idle_timeout: Duration,
}

/// The listener's connection counters on `/metrics`.
#[derive(Clone)]
pub struct ConnectionMetrics {
    open: prometheus::IntGauge,
    accepted: prometheus::IntCounter,
    refused: prometheus::IntCounter,
    startup_timeouts: prometheus::IntCounter,
    idle_timeouts: prometheus::IntCounter,
}

impl ConnectionMetrics {
    /// Registers the counters; a registry that refuses them (only possible
    /// when registered twice) leaves them counting unexported.
    pub fn new(registry: &prometheus::Registry) -> ConnectionMetrics {
        let open = prometheus::IntGauge::new(
            "ember_sql_connections_open",
            "PostgreSQL connections open now (--sql.max-connections bounds them).",
        );
        let counter = |name: &str, help: &str| prometheus::IntCounter::new(name, help);
        let accepted = counter(
            "ember_sql_connections_accepted_total",
            "PostgreSQL connections accepted within --sql.max-connections.",
        );
        let refused = counter(
            "ember_sql_connections_refused_total",
            "PostgreSQL connections refused with 53300 because --sql.max-connections were open.",
        );
        let timeouts = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "ember_sql_connection_timeouts_total",
                "PostgreSQL connections closed by --sql.startup-timeout (phase=\"startup\") or --sql.idle-timeout (phase=\"idle\").",
            ),
            &["phase"],
        );
        let (Ok(open), Ok(accepted), Ok(refused), Ok(timeouts)) =
            (open, accepted, refused, timeouts)
        else {
            unreachable!("static metric names and help are valid")
        };
        for c in [
            Box::new(open.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(accepted.clone()),
            Box::new(refused.clone()),
            Box::new(timeouts.clone()),
        ] {
            if let Err(err) = registry.register(c) {
                tracing::warn!(err = %err, "Cannot register PostgreSQL connection metrics");
            }
        }
        ConnectionMetrics {
            open,
            accepted,
            refused,
            startup_timeouts: timeouts.with_label_values(&["startup"]),
            idle_timeouts: timeouts.with_label_values(&["idle"]),
        }
    }

    pub fn startup_timed_out(&self) {
        self.startup_timeouts.inc();
    }
}

/// Hands out connection slots; a connection holds its slot until dropped.
pub struct Admission {
    slots: Option<Arc<Semaphore>>,
    refusals: Arc<Semaphore>,
    metrics: ConnectionMetrics,
}

/// Refused clients being told so at once; beyond this a flood's extra
/// connections are closed without a word, so refusing costs bounded work.
const REFUSALS_IN_FLIGHT: usize = 32;

/// A slot held by one connection, counted in `ember_sql_connections_open`.
pub struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
    open: prometheus::IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl Admission {
    pub fn new(max_connections: usize, metrics: ConnectionMetrics) -> Admission {
        Admission {
            slots: (max_connections > 0).then(|| Arc::new(Semaphore::new(max_connections))),
            refusals: Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT)),
            metrics,
        }
    }

    /// A slot, or `None` when `--sql.max-connections` are open (counted).
    pub fn admit(&self) -> Option<Slot> {
        let permit = match &self.slots {
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    self.metrics.refused.inc();
                    return None;
                }
            },
            None => None,
        };
        self.metrics.accepted.inc();
        self.metrics.open.inc();
        Some(Slot {
            _permit: permit,
            open: self.metrics.open.clone(),
        })
    }

    /// Leave to tell a refused client why, held while telling it; `None`
    /// when many refusals are under way already.
    pub fn refusal(&self) -> Option<OwnedSemaphorePermit> {
        self.refusals.clone().try_acquire_owned().ok()
    }
}

/// How long a refused client gets to send its startup message, and then
/// to take the error.
pub const REFUSAL_WAIT: Duration = Duration::from_secs(2);

/// How long a parting FATAL error may take to write to a slow client.
const ERROR_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Tells a client beyond `--sql.max-connections` so in PostgreSQL's words
/// and closes. As in PostgreSQL, the error follows the client's startup
/// message (after TLS, if the client asks for it): libpq since the
/// CVE-2024-10977 fix (15.10, 16.6, 17.2) does not show an error sent in
/// answer to its SSLRequest. A client that sends nothing within
/// [`REFUSAL_WAIT`] gets the error anyway.
pub async fn refuse_too_many(
    tcp: TcpStream,
    acceptor: Option<pgwire::tokio::TlsAcceptor>,
    max_connections: usize,
) {
    let deadline = Some(Instant::now() + REFUSAL_WAIT);
    let Some(Ok(Some(mut socket))) = before(deadline, negotiate_tls::<String>(tcp, acceptor)).await
    else {
        return;
    };
    let _ = before(deadline, socket.next()).await;
    let info = ErrorInfo::new(
        "FATAL".to_owned(),
        "53300".to_owned(),
        format!("sorry, too many clients already (--sql.max-connections is {max_connections})"),
    );
    let _ = before(Some(Instant::now() + ERROR_WRITE_TIMEOUT), async {
        socket
            .send(PgWireBackendMessage::ErrorResponse(info.into()))
            .await?;
        SinkExt::<PgWireBackendMessage>::close(&mut socket).await
    })
    .await;
}

/// A FATAL ErrorResponse as raw bytes, for when no pgwire codec is set up.
pub fn fatal_error_message(code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    msg.extend_from_slice(&body);
    msg
}

/// `f`, cut off at `deadline` (`None` when it passed first); no deadline
/// waits as long as it takes.
pub async fn before<F: std::future::Future>(deadline: Option<Instant>, f: F) -> Option<F::Output> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at, f).await.ok(),
        None => Some(f.await),
    }
}

/// Serves one admitted connection until the client leaves, a FATAL error,
/// or a timeout. `startup_deadline` is counted from the accept.
pub async fn serve_connection<H: PgWireServerHandlers>(
    tcp: TcpStream,
    acceptor: Option<pgwire::tokio::TlsAcceptor>,
    handlers: H,
    startup_deadline: Option<Instant>,
    idle_timeout: Option<Duration>,
    metrics: &ConnectionMetrics,
) -> std::io::Result<()> {
    let Some(negotiated) = before(startup_deadline, negotiate_tls(tcp, acceptor)).await else {
        metrics.startup_timeouts.inc();
        return Ok(());
    };
    // `None`: direct TLS from a client while TLS is off.
    let Some(mut socket) = negotiated? else {
        return Ok(());
    };
    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let deadline = if starting {
            startup_deadline
        } else {
            idle_timeout.map(|t| Instant::now() + t)
        };
        let Some(next) = before(deadline, socket.next()).await else {
            if starting {
                metrics.startup_timeouts.inc();
                tracing::debug!(peer = %socket.socket_addr(), "PostgreSQL client did not finish its startup in time");
            } else {
                metrics.idle_timeouts.inc();
                tracing::debug!(peer = %socket.socket_addr(), "PostgreSQL connection idle for longer than --sql.idle-timeout");
                let info = ErrorInfo::new(
                    "FATAL".to_owned(),
                    "57P05".to_owned(),
                    "terminating connection due to idle-session timeout (--sql.idle-timeout)"
                        .to_owned(),
                );
                let _ = before(
                    Some(Instant::now() + ERROR_WRITE_TIMEOUT),
                    socket.send(PgWireBackendMessage::ErrorResponse(info.into())),
                )
                .await;
            }
            return Ok(());
        };
        // End of stream, or bytes that are not a protocol message.
        let Some(Ok(msg)) = next else {
            return Ok(());
        };
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        let is_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => msg.is_extended_query(),
        };
        // A CancelRequest comes on a connection of its own, closed after it.
        let is_cancel = matches!(msg, PgWireFrontendMessage::CancelRequest(_));
        if let Err(mut err) = process_message(
            msg,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await
        {
            errors.on_error(&socket, &mut err);
            let fatal = err.is_fatal();
            process_error(&mut socket, err, is_extended_query).await?;
            if fatal {
                return Ok(());
            }
        }
        if is_cancel {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_counts_and_frees_slots() {
        let registry = prometheus::Registry::new();
        let admission = Admission::new(2, ConnectionMetrics::new(&registry));
        let a = admission.admit().unwrap();
        let b = admission.admit().unwrap();
        assert!(admission.admit().is_none());
        drop(a);
        let _c = admission.admit().unwrap();
        drop(b);
        let text = {
            let mut out = Vec::new();
            prometheus::Encoder::encode(
                &prometheus::TextEncoder::new(),
                &registry.gather(),
                &mut out,
            )
            .unwrap();
            String::from_utf8(out).unwrap()
        };
        assert!(text.contains("ember_sql_connections_open 1"), "{text}");
        assert!(
            text.contains("ember_sql_connections_accepted_total 3"),
            "{text}"
        );
        assert!(
            text.contains("ember_sql_connections_refused_total 1"),
            "{text}"
        );
    }

    #[test]
    fn fatal_error_message_is_an_error_response() {
        let msg = fatal_error_message("53300", "sorry");
        assert_eq!(msg[0], b'E');
        let len = u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]) as usize;
        assert_eq!(len + 1, msg.len());
        assert!(msg.windows(6).any(|w| w == b"C53300"));
        assert_eq!(msg.last(), Some(&0));
    }
}
