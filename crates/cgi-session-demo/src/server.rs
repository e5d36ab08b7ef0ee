//! The HTTP server loop: hyper's HTTP/1 connections under limits that shed slow and idle
//! clients, a connection limit, and a shutdown deadline.
//!
//! - **Header timeout**: a connection must send a complete request header within
//!   [`ServerLimits::header_timeout`] of opening (first request) or of the first byte of a later
//!   request; otherwise it is closed.
//! - **Idle timeout**: between requests of a keep-alive connection, at most
//!   [`ServerLimits::idle_timeout`] without a byte in either direction.
//! - **Body timeout**: a request body must arrive in full within [`ServerLimits::body_timeout`]
//!   of the request's header; otherwise the request is answered `408 Request Timeout` and the
//!   connection closed.
//! - **Connection limit**: past [`ServerLimits::max_connections`] open connections, a new one
//!   is answered (best effort, without reading it) `503` with `Retry-After: 1` and closed at
//!   once, rather than left waiting: a waiting connection still holds a descriptor, and the
//!   client learns nothing. Refusals are counted and logged as one summary line per
//!   [`ServerLimits::log_interval`].
//! - **Shutdown deadline**: when the shutdown future completes, the listener is closed, idle
//!   connections are closed, requests in flight may finish, and whatever is still open after
//!   [`ServerLimits::shutdown_deadline`] is closed by force.
//!
//! hyper's own `header_read_timeout` is not used: its timer also runs while a keep-alive
//! connection waits for its next request, so it cannot be told apart from an idle timeout.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use axum::{BoxError, Router};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

/// Default `--max-connections` when the open-file limit cannot be read.
pub const FALLBACK_MAX_CONNECTIONS: usize = 10_000;

/// Descriptors kept for everything but client connections (listener, logs, store).
const FD_HEADROOM: u64 = 32;

/// The limits of [`serve_with`]. [`Default`] gives the demo's defaults.
///
/// ```
/// let limits = cgi_session_demo::ServerLimits::default();
/// assert_eq!(limits.header_timeout, std::time::Duration::from_secs(10));
/// assert!(limits.max_connections >= 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// How long a client has to send a complete request header: from the connection's opening
    /// for its first request, from the request's first byte for later ones.
    pub header_timeout: Duration,
    /// How long a request body may take to arrive in full, from its request's header.
    pub body_timeout: Duration,
    /// How long a keep-alive connection may stay silent between requests.
    pub idle_timeout: Duration,
    /// Open connections at most; past it new connections are refused at once.
    pub max_connections: usize,
    /// How long requests in flight may take to finish after shutdown begins.
    pub shutdown_deadline: Duration,
    /// How often refused and timed-out connections are summarised in the log.
    pub log_interval: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: default_max_connections(),
            shutdown_deadline: Duration::from_secs(10),
            log_interval: Duration::from_secs(10),
        }
    }
}

/// The soft limit on open files (`RLIMIT_NOFILE`) from `/proc/self/limits`, when readable.
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    // "unlimited" gives None: then the fixed default applies.
    soft.parse().ok()
}

/// The default connection limit: half of what the open-file limit leaves after a small
/// headroom (a request may hold a second descriptor, e.g. a session file), at most
/// [`FALLBACK_MAX_CONNECTIONS`], at least 1.
pub fn default_max_connections() -> usize {
    match open_file_limit() {
        Some(limit) => {
            let derived = limit.saturating_sub(FD_HEADROOM) / 2;
            usize::try_from(derived)
                .unwrap_or(usize::MAX)
                .clamp(1, FALLBACK_MAX_CONNECTIONS)
        }
        None => FALLBACK_MAX_CONNECTIONS,
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` completes, then drains for at
/// most [`ServerLimits::shutdown_deadline`]. Handlers get the client address as
/// [`ConnectInfo<SocketAddr>`].
///
/// # Errors
/// Not in practice: failed accepts are logged (summarised) and retried.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Turns every handler into its route, layers applied, once (what `into_make_service`
    // does): called as it is, a router does that again for every request (a clone of each
    // layer, a boxed service per request).
    let app: Router = app.with_state(());
    let limits = Arc::new(limits);
    let stats = Arc::new(Stats::default());
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let reporter = tokio::spawn(report_loop(
        Arc::clone(&stats),
        Arc::clone(&limits),
        Arc::clone(&permits),
    ));
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined {
                    if e.is_panic() {
                        tracing::error!("a connection task panicked: {e}");
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match Arc::clone(&permits).try_acquire_owned() {
                    Ok(permit) => {
                        let app = app.clone();
                        let limits = Arc::clone(&limits);
                        let stats = Arc::clone(&stats);
                        let stop = stop_rx.clone();
                        tasks.spawn(async move {
                            serve_connection(stream, peer, app, &limits, &stats, stop).await;
                            drop(permit);
                        });
                    }
                    Err(_) => refuse(stream, &stats),
                },
                Err(e) => {
                    stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut last) = stats.last_accept_error.lock() {
                        *last = e.to_string();
                    }
                    // Out of descriptors or memory: the connection stays in the backlog, so
                    // wait a little instead of spinning on it.
                    if !is_connection_error(&e) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            },
        }
    }

    drop(listener);
    let open = tasks.len();
    if open > 0 {
        tracing::info!(
            "shutting down: waiting up to {} for {open} open connection(s)",
            humantime::format_duration(limits.shutdown_deadline)
        );
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "shutdown deadline of {} reached: closing {} connection(s) still open",
            humantime::format_duration(limits.shutdown_deadline),
            tasks.len()
        );
        tasks.shutdown().await;
    }
    reporter.abort();
    stats.report(&limits, &permits);
    Ok(())
}

/// Accept errors that concern one connection only (the next accept may well succeed).
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Past the connection limit: a best-effort 503 without reading the request (a
/// non-blocking write, never a wait), then close.
fn refuse(stream: TcpStream, stats: &Stats) {
    stats.refused.fetch_add(1, Ordering::Relaxed);
    const BODY: &str = "too many connections; try again\n";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(answer.as_bytes());
    drop(stream);
}

/// Why a connection was closed by the server.
#[derive(Debug, Clone, Copy)]
enum Closed {
    Header,
    Idle,
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: &ServerLimits,
    stats: &Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let state = Arc::new(ConnState::new());
    let io = TokioIo::new(TrackedIo {
        inner: stream,
        state: Arc::clone(&state),
    });
    let service = {
        let state = Arc::clone(&state);
        let body_timeout = limits.body_timeout;
        let stats = Arc::clone(stats);
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let guard = InFlight::start(Arc::clone(&state));
            call(
                app.clone(),
                req,
                peer,
                body_timeout,
                Arc::clone(&stats),
                guard,
            )
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection from {peer}: {e}");
                }
                break;
            }
            closed = watchdog(&state, limits) => {
                match closed {
                    Closed::Header => stats.header_timeouts.fetch_add(1, Ordering::Relaxed),
                    Closed::Idle => stats.idle_closed.fetch_add(1, Ordering::Relaxed),
                };
                break;
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Runs one request through the app: the client address as `ConnectInfo`, the body under its
/// deadline, 408 when the deadline passed, and the in-flight mark until the response is sent.
async fn call(
    mut app: Router,
    req: hyper::Request<Incoming>,
    peer: SocketAddr,
    body_timeout: Duration,
    stats: Arc<Stats>,
    guard: InFlight,
) -> Result<Response<GuardedBody>, Infallible> {
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    let body = DeadlineBody {
        inner: body,
        deadline: tokio::time::Instant::now() + body_timeout,
        sleep: None,
        fired: Arc::clone(&fired),
    };
    let req = axum::http::Request::from_parts(parts, Body::new(body));
    let response = match tower_service::Service::call(&mut app, req).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let response = if fired.load(Ordering::Relaxed) {
        stats.body_timeouts.fetch_add(1, Ordering::Relaxed);
        (
            axum::http::StatusCode::REQUEST_TIMEOUT,
            [(axum::http::header::CONNECTION, "close")],
            format!(
                "the request body did not arrive within {}\n",
                humantime::format_duration(body_timeout)
            ),
        )
            .into_response()
    } else {
        response
    };
    Ok(response.map(|body| GuardedBody {
        inner: body,
        guard: Some(guard),
    }))
}

/// Closes the connection when it overstays the header or idle timeout; never while a request
/// is in flight (the body timeout and the handlers bound those).
async fn watchdog(state: &ConnState, limits: &ServerLimits) -> Closed {
    loop {
        let notified = state.notify.notified();
        let now = state.now_ms();
        let deadline = if state.in_flight.load(Ordering::Relaxed) > 0 {
            None
        } else {
            let first = state.first_byte.load(Ordering::Relaxed);
            if first != NEVER {
                Some((
                    first.saturating_add(ms(limits.header_timeout)),
                    Closed::Header,
                ))
            } else {
                let since = state
                    .wait_start
                    .load(Ordering::Relaxed)
                    .max(state.last_io.load(Ordering::Relaxed));
                if state.served.load(Ordering::Relaxed) == 0 {
                    Some((
                        since.saturating_add(ms(limits.header_timeout)),
                        Closed::Header,
                    ))
                } else {
                    Some((since.saturating_add(ms(limits.idle_timeout)), Closed::Idle))
                }
            }
        };
        match deadline {
            Some((at, why)) if now >= at => return why,
            Some((at, _)) => {
                let wake = state.opened + Duration::from_millis(at);
                tokio::select! {
                    () = tokio::time::sleep_until(wake.into()) => {}
                    () = notified => {}
                }
            }
            None => notified.await,
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

const NEVER: u64 = u64::MAX;

/// What the watchdog knows about one connection, in milliseconds since it opened.
#[derive(Debug)]
struct ConnState {
    opened: Instant,
    /// Last read or write of at least one byte.
    last_io: AtomicU64,
    /// When the connection began waiting for its next request (opening, or the end of the
    /// last response).
    wait_start: AtomicU64,
    /// The first byte read while waiting for a request, or [`NEVER`].
    first_byte: AtomicU64,
    in_flight: AtomicUsize,
    served: AtomicU64,
    notify: Notify,
}

impl ConnState {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_io: AtomicU64::new(0),
            wait_start: AtomicU64::new(0),
            first_byte: AtomicU64::new(NEVER),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            notify: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        ms(self.opened.elapsed())
    }

    fn on_read(&self) {
        let now = self.now_ms();
        self.last_io.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.first_byte.load(Ordering::Relaxed) == NEVER
        {
            self.first_byte.store(now, Ordering::Relaxed);
            // The deadline may now be earlier (header timeout shorter than idle timeout).
            self.notify.notify_one();
        }
    }

    fn on_write(&self) {
        self.last_io.store(self.now_ms(), Ordering::Relaxed);
    }
}

/// A request in flight, from its header until its response is sent (or dropped).
#[derive(Debug)]
struct InFlight {
    state: Arc<ConnState>,
}

impl InFlight {
    fn start(state: Arc<ConnState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        state.served.fetch_add(1, Ordering::Relaxed);
        state.first_byte.store(NEVER, Ordering::Relaxed);
        Self { state }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let state = &self.state;
        if state.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            state.wait_start.store(state.now_ms(), Ordering::Relaxed);
            state.first_byte.store(NEVER, Ordering::Relaxed);
            state.notify.notify_one();
        }
    }
}

/// The TCP stream, noting when bytes move.
struct TrackedIo {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.on_read();
        }
        polled
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.state.on_write();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.state.on_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The request body, failing once the body deadline has passed.
struct DeadlineBody {
    inner: Incoming,
    deadline: tokio::time::Instant,
    /// The timer, made when the body is first read (most requests have none to read).
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    fired: Arc<std::sync::atomic::AtomicBool>,
}

/// The error of a request body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("request body timed out")]
struct BodyTimedOut;

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.inner.is_end_stream() {
            return Poll::Ready(None);
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            self.fired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(|e| Box::new(e) as BoxError)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The response body, keeping its request marked in flight until it has been sent.
struct GuardedBody {
    inner: Body,
    guard: Option<InFlight>,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Counts since the last summary line.
#[derive(Debug, Default)]
struct Stats {
    refused: AtomicU64,
    header_timeouts: AtomicU64,
    idle_closed: AtomicU64,
    body_timeouts: AtomicU64,
    accept_errors: AtomicU64,
    last_accept_error: Mutex<String>,
}

impl Stats {
    /// Logs what happened since the last call, one line per kind, nothing when nothing did.
    fn report(&self, limits: &ServerLimits, permits: &Semaphore) {
        let every = humantime::format_duration(limits.log_interval);
        let open = limits
            .max_connections
            .saturating_sub(permits.available_permits());
        let refused = self.refused.swap(0, Ordering::Relaxed);
        if refused > 0 {
            tracing::warn!(
                "refused {refused} connection(s) in the last {every} (limit {} reached; {open} open now; --max-connections)",
                limits.max_connections
            );
        }
        let accept_errors = self.accept_errors.swap(0, Ordering::Relaxed);
        if accept_errors > 0 {
            let last = self
                .last_accept_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default();
            tracing::error!(
                "{accept_errors} failed accept(s) in the last {every} (last: {last}; {open} open, limit {})",
                limits.max_connections
            );
        }
        let header = self.header_timeouts.swap(0, Ordering::Relaxed);
        if header > 0 {
            tracing::info!(
                "closed {header} connection(s) in the last {every} that sent no complete request header within {} (--header-timeout)",
                humantime::format_duration(limits.header_timeout)
            );
        }
        let body = self.body_timeouts.swap(0, Ordering::Relaxed);
        if body > 0 {
            tracing::info!(
                "answered 408 to {body} request(s) in the last {every} whose body did not arrive within {} (--body-timeout)",
                humantime::format_duration(limits.body_timeout)
            );
        }
        let idle = self.idle_closed.swap(0, Ordering::Relaxed);
        if idle > 0 {
            tracing::debug!(
                "closed {idle} idle keep-alive connection(s) in the last {every} (--idle-timeout {})",
                humantime::format_duration(limits.idle_timeout)
            );
        }
    }
}

async fn report_loop(stats: Arc<Stats>, limits: Arc<ServerLimits>, permits: Arc<Semaphore>) {
    let mut ticker = tokio::time::interval(limits.log_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        stats.report(&limits, &permits);
    }
}
