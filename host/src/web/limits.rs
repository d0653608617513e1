//! Limits that keep one client from starving the others:
//! `--web.max-connections` (connections beyond it wait to be accepted, as
//! with Go's `netutil.LimitListener`), `--web.read-timeout` (a connection
//! that has not delivered a request within it is closed, like Go's
//! `ReadTimeout`), and request body sizes (413 before the body is read
//! when `Content-Length` says it is too big, and as soon as a chunked body
//! passes the limit).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// `--web.max-connections` and `--web.read-timeout`; 0 turns either off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub read_timeout: Duration,
}

/// Per-listener connection counters for `/metrics`.
#[derive(Clone)]
pub struct ConnectionCounters {
    accepted: prometheus::IntCounter,
    closed: prometheus::IntCounter,
    timed_out: prometheus::IntCounter,
}

impl ConnectionCounters {
    /// The counters of `listener` (`web`, `push`) in the registry.
    pub fn new(metrics: &crate::telemetry::metrics::Metrics, listener: &str) -> ConnectionCounters {
        ConnectionCounters {
            accepted: metrics
                .http_connections_accepted
                .with_label_values(&[listener]),
            closed: metrics
                .http_connections_closed
                .with_label_values(&[listener]),
            timed_out: metrics.http_read_timeouts.with_label_values(&[listener]),
        }
    }

    /// Counters registered nowhere (unit tests).
    pub fn detached() -> ConnectionCounters {
        let counter = || {
            prometheus::IntCounter::new("detached", "not registered")
                .unwrap_or_else(|_| unreachable!("a valid static metric name"))
        };
        ConnectionCounters {
            accepted: counter(),
            closed: counter(),
            timed_out: counter(),
        }
    }
}

/// A TCP listener that holds at most `max_connections` open connections
/// and closes connections whose requests do not arrive in time.
pub struct LimitedListener {
    inner: TcpListener,
    slots: Option<Arc<Semaphore>>,
    read_timeout: Option<Duration>,
    counters: ConnectionCounters,
}

impl LimitedListener {
    pub fn new(
        inner: TcpListener,
        limits: ConnectionLimits,
        counters: ConnectionCounters,
    ) -> LimitedListener {
        LimitedListener {
            counters,
            inner,
            slots: (limits.max_connections > 0)
                .then(|| Arc::new(Semaphore::new(limits.max_connections))),
            read_timeout: (!limits.read_timeout.is_zero()).then_some(limits.read_timeout),
        }
    }

    /// The next connection, once a slot is free.
    pub async fn accept_guarded(&mut self) -> (GuardedStream, SocketAddr) {
        let permit = match &self.slots {
            // The semaphore is never closed, so acquiring only waits.
            Some(slots) => slots.clone().acquire_owned().await.ok(),
            None => None,
        };
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    self.counters.accepted.inc();
                    return (
                        GuardedStream {
                            io: stream,
                            _slot: permit,
                            read_timeout: self.read_timeout,
                            deadline: None,
                            in_request: false,
                            timed_out: false,
                            counters: self.counters.clone(),
                        },
                        addr,
                    );
                }
                Err(err) => {
                    // Out of file descriptors and the like: wait, as Go's
                    // server and axum's listener do, instead of spinning.
                    tracing::debug!(err = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.accept_guarded().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that frees its slot when dropped and fails reads that wait
/// past the read timeout, with Go's `ReadTimeout` (and `IdleTimeout`, which
/// defaults to it) in mind: between answers the clock bounds the idle time
/// until a request starts; from a request's first bytes it starts again and
/// bounds the whole request, however slowly it trickles in. hyper keeps
/// reading while a handler runs (to notice a client going away), so, as in
/// Go, an answer not written within the timeout ends the connection.
pub struct GuardedStream {
    io: TcpStream,
    _slot: Option<OwnedSemaphorePermit>,
    read_timeout: Option<Duration>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes of a request have arrived since the server last wrote.
    in_request: bool,
    timed_out: bool,
    counters: ConnectionCounters,
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        self.counters.closed.inc();
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if !this.in_request && buf.filled().len() > before {
                    // A request starts: its own clock from now on.
                    this.in_request = true;
                    this.deadline = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let Some(timeout) = this.read_timeout else {
                    return Poll::Pending;
                };
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        if !this.timed_out {
                            this.timed_out = true;
                            this.counters.timed_out.inc();
                        }
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no complete request within the read timeout of {timeout:?}"),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r
            && *n > 0
        {
            // An answer is going out: the idle clock starts at the next wait.
            this.deadline = None;
            this.in_request = false;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r
            && *n > 0
        {
            this.deadline = None;
            this.in_request = false;
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

use std::future::Future as _;

/// How an endpoint group words a refused body.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit {
    pub bytes: usize,
    /// `/api/v1` answers use the JSON error envelope; remote write, remote
    /// read and push answer plain text, as their clients expect.
    pub json: bool,
}

/// Refuses bodies above the limit with 413: at once when `Content-Length`
/// announces one, otherwise as soon as the body passes the limit while a
/// handler reads it. Either way the answer is this module's message, not
/// the handler's own rejection (axum's generic 413 text, or a 400 from a
/// handler that saw only a failed read).
pub async fn body_limit(
    axum::extract::State(limit): axum::extract::State<BodyLimit>,
    req: Request,
    next: Next,
) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let path = req.uri().path().to_owned();
    if let Some(len) = announced
        && len > limit.bytes as u64
    {
        tracing::debug!(path = %path, bytes = len, limit = limit.bytes, "Request body too large");
        return too_large(
            limit.json,
            format!(
                "request body of {len} bytes is larger than the {} bytes {path} accepts",
                limit.bytes
            ),
        );
    }
    let (parts, body) = req.into_parts();
    let passed = Arc::new(AtomicBool::new(false));
    let watch = passed.clone();
    let body =
        http_body_util::BodyExt::into_data_stream(http_body_util::Limited::new(body, limit.bytes))
            .inspect_err(move |err| {
                if is_too_large(&**err) {
                    watch.store(true, Ordering::Relaxed);
                }
            });
    let response = next
        .run(Request::from_parts(
            parts,
            axum::body::Body::from_stream(body),
        ))
        .await;
    if passed.load(Ordering::Relaxed) {
        tracing::debug!(path = %path, limit = limit.bytes, "Request body too large");
        return too_large(
            limit.json,
            format!(
                "request body is larger than the {} bytes {path} accepts",
                limit.bytes
            ),
        );
    }
    response
}

/// Whether a body read failed because the body passed its limit.
pub fn is_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

pub fn too_large(json: bool, message: String) -> Response {
    if json {
        super::api::ApiError::new("bad_data", StatusCode::PAYLOAD_TOO_LARGE, message)
            .into_response()
    } else {
        (StatusCode::PAYLOAD_TOO_LARGE, message).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn slots_and_read_timeout() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut listener = LimitedListener::new(
            tcp,
            ConnectionLimits {
                max_connections: 1,
                read_timeout: Duration::from_millis(200),
            },
            ConnectionCounters::detached(),
        );
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let (mut s1, _) = listener.accept_guarded().await;
        let _c2 = TcpStream::connect(addr).await.unwrap();
        // The only slot is taken: the second connection waits.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), listener.accept_guarded())
                .await
                .is_err()
        );
        // Nothing arrives on the first: its read fails after the timeout.
        let mut buf = [0u8; 8];
        let err = s1.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(s1);
        let (mut s2, _) = tokio::time::timeout(Duration::from_secs(2), listener.accept_guarded())
            .await
            .unwrap();
        // A request's first bytes restart the clock; an answer ends the request.
        let mut c2 = _c2;
        c2.write_all(b"G").await.unwrap();
        assert_eq!(s2.read(&mut buf).await.unwrap(), 1);
        assert!(s2.in_request && s2.deadline.is_none());
        s2.write_all(b"x").await.unwrap();
        assert!(!s2.in_request && s2.deadline.is_none());
    }

    async fn post(router: axum::Router, body: axum::body::Body, len: Option<usize>) -> Response {
        use tower::Service as _;
        let mut req =
            Request::post("/q").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(len) = len {
            req = req.header(header::CONTENT_LENGTH, len);
        }
        let mut svc = router;
        svc.call(req.body(body).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_413() {
        let router = axum::Router::new()
            .route(
                "/q",
                axum::routing::post(
                    |p: super::super::api::Params| async move { p.get("a").to_owned() },
                ),
            )
            .layer(axum::middleware::from_fn_with_state(
                BodyLimit {
                    bytes: 16,
                    json: true,
                },
                body_limit,
            ));
        let ok = post(router.clone(), "a=1".into(), Some(3)).await;
        assert_eq!(ok.status(), StatusCode::OK);
        // Announced: refused before reading.
        let r = post(router.clone(), "a=123456789012345678".into(), Some(20)).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"status":"error","errorType":"bad_data","error":"request body of 20 bytes is larger than the 16 bytes /q accepts"}"#
        );
        // Chunked, no length: refused once the body passes the limit.
        let chunks: Vec<Result<axum::body::Bytes, io::Error>> =
            vec![Ok("a=1234567".into()), Ok("890123456789".into())];
        let r = post(
            router,
            axum::body::Body::from_stream(futures::stream::iter(chunks)),
            None,
        )
        .await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"status":"error","errorType":"bad_data","error":"request body is larger than the 16 bytes /q accepts"}"#
        );
    }
}
