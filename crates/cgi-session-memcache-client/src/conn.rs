//! Connections and the per-server pool.
//!
//! Each connection is owned by one task. Callers send a [`Request`] (encoded
//! bytes, the kind of reply expected, a deadline and a oneshot for the reply)
//! through an mpsc channel. The task writes requests in order, many at a time
//! (pipelining), and matches replies first-in first-out, checking the `O`
//! (opaque) token each meta reply echoes. A caller that gives up only drops
//! its oneshot receiver: the task still reads and discards that reply, so the
//! connection never gets out of step. A timeout, an I/O error or an invalid
//! reply closes the connection and fails every request on it; the next request
//! opens a new connection, so service resumes by itself after a restart.
//!
//! A connection on which a request timed out is never used again, so a late
//! reply can never be taken for the answer to a later request: the task closes
//! the connection when the earliest deadline of the requests written on it
//! passes (not only the oldest request's), and a caller that gives up on its
//! own timer (the task may be late to notice) tells the task to close it and
//! makes its slot open a new one. A request whose deadline passed before it
//! was written is failed without being sent.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::proto::{parse_reply, Parsed, Reply, ReplyKind};
use crate::secure::{unauthenticated, Security, Stream};
use crate::Protocol;

/// How a reply is checked against its request (replies out of step close
/// the connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// Nothing to compare.
    None,
    /// A meta reply must echo this `O` token.
    Opaque(u32),
    /// A text `VALUE` must carry this key.
    Key(Vec<u8>),
}

/// Most requests written but not yet answered on one connection.
const MAX_PENDING: usize = 4096;
/// Stop taking new requests while this many bytes wait to be written.
const MAX_OUT: usize = 4 * 1024 * 1024;
/// Extra time the caller waits beyond the deadline, so the connection task
/// (which closes the connection) normally reports the timeout itself.
const CALLER_GRACE: Duration = Duration::from_millis(50);

/// Decrements a slot's in-flight counter when dropped.
struct InflightGuard(Arc<AtomicUsize>);

impl InflightGuard {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InflightGuard(counter.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Asks a connection task to close its connection now: a caller timed out on
/// it, so nothing more may be written to it or read from it.
#[derive(Default)]
struct Abort {
    requested: AtomicBool,
    notify: Notify,
}

impl Abort {
    fn request(&self) {
        self.requested.store(true, Ordering::Release);
        // Stores a permit if the task is not waiting right now.
        self.notify.notify_one();
    }

    fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }
}

/// A slot's live connection, as callers hold it.
#[derive(Clone)]
struct ConnHandle {
    tx: mpsc::Sender<Request>,
    abort: Arc<Abort>,
}

impl ConnHandle {
    /// Whether new requests may still go to this connection.
    fn is_usable(&self) -> bool {
        !self.tx.is_closed() && !self.abort.is_requested()
    }
}

/// One request on its way to a connection task.
struct Request {
    bytes: Vec<u8>,
    kind: ReplyKind,
    check: Check,
    /// A store or delete: once sent in full, a lost reply leaves its outcome unknown.
    write: bool,
    deadline: Instant,
    reply: oneshot::Sender<Result<Reply>>,
    _inflight: InflightGuard,
}

/// A request written to the socket and waiting for its reply.
struct Pending {
    kind: ReplyKind,
    check: Check,
    write: bool,
    /// Offset in the connection's byte stream just past this request's bytes: once the
    /// writer has taken that many bytes, the server may receive (and execute) it all.
    end: u64,
    deadline: Instant,
    reply: oneshot::Sender<Result<Reply>>,
    _inflight: InflightGuard,
}

/// Settings a pool needs.
#[derive(Debug, Clone)]
pub(crate) struct PoolSettings {
    pub server: String,
    pub size: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_value_size: usize,
    pub protocol: Protocol,
    pub gat: bool,
    pub failure_limit: u32,
    pub retry_delay: Duration,
    /// TLS and authentication of new connections.
    pub security: Security,
    /// The name this server's TLS certificate must carry (TLS only).
    pub server_name: Option<ServerName<'static>>,
}

/// Failure bookkeeping of one server.
///
/// A server that fails `failure_limit` times in a row is marked down: its requests fail at
/// once. When the retry delay has passed, the next request becomes the **probe**: it alone
/// goes to the server, while the others keep failing at once; the server is marked up only
/// when the probe gets an answer, and down for another retry delay when it fails. So a hung
/// server costs one request's timeout per retry delay, not one per request.
#[derive(Debug, Default)]
struct Health {
    /// Consecutive failures (unavailable or timed out).
    failures: u32,
    /// While marked down: when the next probe may go. Stays set (in the past) until a probe
    /// succeeds.
    down_until: Option<Instant>,
    /// A probe request is on its way to the server.
    probing: bool,
}

/// What [`ServerPool::admit`] decided for one request.
enum Admission {
    /// The server is up: go.
    Go,
    /// The server is marked down and a probe is due: this request is the probe.
    Probe,
    /// The server is marked down: fail at once with this error.
    Refuse(Error),
}

/// Clears the probing flag if the probe request is dropped before it finished (its caller
/// gave up), so that the next request probes instead.
struct ProbeGuard<'a> {
    pool: &'a ServerPool,
    finished: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.pool.lock_health().probing = false;
        }
    }
}

/// The connections to one server. The client keeps one `ServerPool` per
/// server and picks the pool by hashing the key.
pub(crate) struct ServerPool {
    settings: PoolSettings,
    health: std::sync::Mutex<Health>,
    slots: Vec<Mutex<Option<ConnHandle>>>,
    inflight: Vec<Arc<AtomicUsize>>,
    round_robin: AtomicUsize,
    next_opaque: AtomicU32,
}

impl ServerPool {
    pub(crate) fn new(settings: PoolSettings) -> Self {
        let size = settings.size.max(1);
        ServerPool {
            slots: (0..size).map(|_| Mutex::new(None)).collect(),
            inflight: (0..size).map(|_| Arc::new(AtomicUsize::new(0))).collect(),
            round_robin: AtomicUsize::new(0),
            next_opaque: AtomicU32::new(1),
            health: std::sync::Mutex::new(Health::default()),
            settings,
        }
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the server is marked down: it failed `failure_limit` times in a row and no
    /// probe has succeeded since.
    pub(crate) fn is_down(&self) -> bool {
        self.lock_health().down_until.is_some()
    }

    /// Whether a request sent now would reach the server: it is up, or marked down with a
    /// probe due and none under way (the request becomes the probe).
    pub(crate) fn takes_requests(&self) -> bool {
        let health = self.lock_health();
        match health.down_until {
            None => true,
            Some(until) => until <= Instant::now() && !health.probing,
        }
    }

    /// Decides whether a request goes to the server (see [`Health`]).
    fn admit(&self) -> Admission {
        let mut health = self.lock_health();
        let Some(until) = health.down_until else {
            return Admission::Go;
        };
        let now = Instant::now();
        if until > now {
            return Admission::Refuse(Error::unavailable(
                &self.settings.server,
                format!(
                    "marked down after {} failures in a row; the next try is in {} ms",
                    health.failures,
                    (until - now).as_millis()
                ),
            ));
        }
        if health.probing {
            return Admission::Refuse(Error::unavailable(
                &self.settings.server,
                format!(
                    "marked down after {} failures in a row; a probe request is testing it now",
                    health.failures
                ),
            ));
        }
        health.probing = true;
        Admission::Probe
    }

    fn record(&self, outcome: &Result<Reply>, probe: bool) {
        // A proxy reporting one unreachable backend is itself healthy.
        let failed = matches!(outcome, Err(e) if e.is_unavailable() && !is_proxy_report(e));
        let mut health = self.lock_health();
        if probe {
            health.probing = false;
        }
        if !failed {
            if health.failures > 0 || health.down_until.is_some() {
                if health.down_until.is_some() {
                    tracing::info!(server = %self.settings.server, "memcached server is back");
                }
                *health = Health::default();
            }
            return;
        }
        health.failures = health.failures.saturating_add(1);
        let limit = self.settings.failure_limit;
        if limit > 0 && health.failures >= limit {
            let now = Instant::now();
            if health.down_until.is_none() {
                tracing::warn!(
                    server = %self.settings.server,
                    failures = health.failures,
                    retry_in = ?self.settings.retry_delay,
                    "memcached server marked down"
                );
            } else if probe {
                tracing::debug!(
                    server = %self.settings.server,
                    retry_in = ?self.settings.retry_delay,
                    "memcached server still down: the probe request failed"
                );
            }
            health.down_until = Some(now + self.settings.retry_delay);
        }
    }

    pub(crate) fn server(&self) -> &str {
        &self.settings.server
    }

    pub(crate) fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// A fresh opaque token for a meta request.
    pub(crate) fn next_opaque(&self) -> u32 {
        self.next_opaque.fetch_add(1, Ordering::Relaxed)
    }

    /// Opens every connection now (non-lazy start-up).
    pub(crate) async fn connect_all(&self) -> Result<()> {
        for idx in 0..self.slots.len() {
            self.sender(idx).await?;
        }
        Ok(())
    }

    /// The slot with the fewest requests in flight; ties go round robin.
    fn pick(&self) -> usize {
        let n = self.slots.len();
        let start = self.round_robin.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|i| (start + i) % n)
            .min_by_key(|&i| self.inflight[i].load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// The connection of slot `idx`, connecting first if the slot has no
    /// usable one (none yet, closed, or abandoned after a timeout).
    async fn sender(&self, idx: usize) -> Result<ConnHandle> {
        let mut slot = self.slots[idx].lock().await;
        if let Some(conn) = slot.as_ref() {
            if conn.is_usable() {
                return Ok(conn.clone());
            }
        }
        *slot = None;
        let stream = self.connect().await?;
        let (tx, rx) = mpsc::channel(1024);
        let abort = Arc::new(Abort::default());
        let task = ConnTask {
            server: self.settings.server.clone(),
            timeout: self.settings.timeout,
            max_value: self.settings.max_value_size,
            abort: abort.clone(),
        };
        tokio::spawn(task.run(stream, rx));
        tracing::debug!(server = %self.settings.server, slot = idx, "memcached connection opened");
        let conn = ConnHandle { tx, abort };
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Opens a new connection (also used for metadump's dedicated one): TCP,
    /// then the TLS handshake and authentication if configured, all within
    /// the connect timeout.
    pub(crate) async fn connect(&self) -> Result<Stream> {
        let server = &self.settings.server;
        let after = self.settings.connect_timeout;
        let open = async {
            let tcp = TcpStream::connect(server.as_str())
                .await
                .map_err(|e| Error::io(server, "cannot connect", e))?;
            let _ = tcp.set_nodelay(true);
            self.settings
                .security
                .establish(tcp, server, self.settings.server_name.as_ref())
                .await
        };
        match tokio::time::timeout(after, open).await {
            Err(_) => Err(Error::Timeout {
                server: server.clone(),
                after,
            }),
            Ok(result) => result,
        }
    }

    /// Sends one request and waits for its reply. `SERVER_ERROR`,
    /// `CLIENT_ERROR` and `ERROR` replies come back as errors. A server
    /// marked down fails at once (but for one probe request per retry delay);
    /// availability failures are counted.
    pub(crate) async fn call(
        &self,
        bytes: Vec<u8>,
        kind: ReplyKind,
        check: Check,
    ) -> Result<Reply> {
        self.call_as(bytes, kind, check, false).await
    }

    /// [`call`](Self::call) for a store or delete: a failure after the request was sent in
    /// full is [`Error::OutcomeUnknown`].
    pub(crate) async fn call_write(
        &self,
        bytes: Vec<u8>,
        kind: ReplyKind,
        check: Check,
    ) -> Result<Reply> {
        self.call_as(bytes, kind, check, true).await
    }

    async fn call_as(
        &self,
        bytes: Vec<u8>,
        kind: ReplyKind,
        check: Check,
        write: bool,
    ) -> Result<Reply> {
        let probe = match self.admit() {
            Admission::Refuse(e) => return Err(e),
            Admission::Go => None,
            Admission::Probe => Some(ProbeGuard {
                pool: self,
                finished: false,
            }),
        };
        let outcome = self.call_inner(bytes, kind, check, write).await;
        self.record(&outcome, probe.is_some());
        if let Some(mut guard) = probe {
            guard.finished = true;
        }
        outcome
    }

    async fn call_inner(
        &self,
        bytes: Vec<u8>,
        kind: ReplyKind,
        check: Check,
        write: bool,
    ) -> Result<Reply> {
        let deadline = Instant::now() + self.settings.timeout;
        let idx = self.pick();
        let guard = InflightGuard::new(&self.inflight[idx]);
        let conn = match tokio::time::timeout_at(deadline, self.sender(idx)).await {
            Ok(conn) => conn?,
            Err(_) => return Err(self.timeout_error()),
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let request = Request {
            bytes,
            kind,
            check,
            write,
            deadline,
            reply: reply_tx,
            _inflight: guard,
        };
        // Not sent when this times out (the send is cancelled), so nothing of the
        // request reaches the server.
        match tokio::time::timeout_at(deadline, conn.tx.send(request)).await {
            Err(_) => return Err(self.timeout_error()),
            Ok(Err(_)) => {
                return Err(Error::unavailable(
                    &self.settings.server,
                    "the connection closed before the request was sent",
                ))
            }
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout_at(deadline + CALLER_GRACE, reply_rx).await {
            Err(_) => {
                // The task has not closed the connection yet (it is late, e.g. on a
                // busy runtime): make sure it does, and that this slot's next request
                // opens a new one, so the late reply cannot reach anybody. A write may
                // have been sent meanwhile: its outcome is unknown.
                conn.abort.request();
                if write {
                    Err(self.timeout_error().after_write())
                } else {
                    Err(self.timeout_error())
                }
            }
            Ok(Err(_)) => {
                let err = Error::unavailable(
                    &self.settings.server,
                    "the connection closed before the reply arrived",
                );
                Err(if write { err.after_write() } else { err })
            }
            Ok(Ok(result)) => result,
        }
    }

    fn timeout_error(&self) -> Error {
        Error::Timeout {
            server: self.settings.server.clone(),
            after: self.settings.timeout,
        }
    }
}

struct ConnTask {
    server: String,
    timeout: Duration,
    max_value: usize,
    abort: Arc<Abort>,
}

impl ConnTask {
    fn timeout_error(&self) -> Error {
        Error::Timeout {
            server: self.server.clone(),
            after: self.timeout,
        }
    }

    /// Queues a request for writing, unless its caller already gave up or its
    /// deadline has passed (then nothing of it is written, so the connection
    /// stays in step and the server never sees it).
    ///
    /// The front of `pending` carries the earliest deadline of all: a request
    /// with an earlier deadline than those queued before it lowers theirs, so
    /// the connection closes as soon as any request on it times out (they all
    /// fail then anyway).
    fn enqueue(
        &self,
        req: Request,
        out: &mut Vec<u8>,
        queued: &mut u64,
        pending: &mut VecDeque<Pending>,
    ) {
        if req.reply.is_closed() {
            return;
        }
        if req.deadline <= Instant::now() {
            let _ = req.reply.send(Err(self.timeout_error()));
            return;
        }
        for earlier in pending.iter_mut().rev() {
            if earlier.deadline <= req.deadline {
                break;
            }
            earlier.deadline = req.deadline;
        }
        out.extend_from_slice(&req.bytes);
        *queued += req.bytes.len() as u64;
        pending.push_back(Pending {
            kind: req.kind,
            check: req.check,
            write: req.write,
            end: *queued,
            deadline: req.deadline,
            reply: req.reply,
            _inflight: req._inflight,
        });
    }

    async fn run(self, stream: Stream, rx: mpsc::Receiver<Request>) {
        match stream {
            Stream::Plain(tcp) => {
                let (rd, wr) = tcp.into_split();
                self.run_io(rd, wr, false, rx).await;
            }
            Stream::Tls(tls) => {
                let (rd, wr) = tokio::io::split(*tls);
                self.run_io(rd, wr, true, rx).await;
            }
        }
    }

    /// The connection loop. `flush`: the writer buffers (TLS), so once
    /// everything is written it must be flushed for the bytes to leave.
    async fn run_io<R, W>(self, mut rd: R, mut wr: W, flush: bool, mut rx: mpsc::Receiver<Request>)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut unflushed = false;
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut out: Vec<u8> = Vec::new();
        let mut out_pos = 0usize;
        // Bytes queued for writing, and taken by the writer, since the connection opened.
        let mut queued = 0u64;
        let mut sent = 0u64;
        let mut inbuf = BytesMut::with_capacity(16 * 1024);
        let mut rx_open = true;

        let failure: Error = loop {
            if !rx_open && pending.is_empty() && out_pos == out.len() && !unflushed {
                tracing::debug!(server = %self.server, "memcached connection closed: client dropped");
                return;
            }
            if inbuf.capacity() - inbuf.len() < 4096 {
                inbuf.reserve(16 * 1024);
            }
            let front_deadline = pending.front().map(|p| p.deadline);
            tokio::select! {
                biased;
                // First: once a caller gave up, not one more byte is read or written.
                () = self.abort.notify.notified() => {
                    break self.timeout_error();
                }
                read = rd.read_buf(&mut inbuf) => {
                    match read {
                        Ok(0) => break Error::unavailable(&self.server, "the server closed the connection"),
                        Err(e) => break Error::io(&self.server, "read failed", e),
                        Ok(_) => {}
                    }
                    if let Err(e) = self.deliver(&mut inbuf, &mut pending) {
                        break e;
                    }
                }
                _ = tokio::time::sleep_until(front_deadline.unwrap_or_else(Instant::now)), if front_deadline.is_some() => {
                    break self.timeout_error();
                }
                written = write_or_flush(&mut wr, &out[out_pos..]), if out_pos < out.len() || unflushed => {
                    match written {
                        Ok(Some(0)) => break Error::unavailable(&self.server, "the server stopped accepting data"),
                        Err(e) => break Error::io(&self.server, "write failed", e),
                        Ok(None) => unflushed = false,
                        Ok(Some(n)) => {
                            out_pos += n;
                            sent += n as u64;
                            unflushed = flush;
                            if out_pos == out.len() {
                                out.clear();
                                out_pos = 0;
                            }
                        }
                    }
                }
                request = rx.recv(), if rx_open && pending.len() < MAX_PENDING && out.len() < MAX_OUT => {
                    let Some(req) = request else {
                        rx_open = false;
                        continue;
                    };
                    self.enqueue(req, &mut out, &mut queued, &mut pending);
                    // Take every request already queued, so that they leave in one write (one
                    // syscall, one TCP segment, one wake-up of memcached) instead of one each:
                    // under load this is most of the client's and the server's CPU per request.
                    while pending.len() < MAX_PENDING && out.len() < MAX_OUT {
                        match rx.try_recv() {
                            Ok(req) => self.enqueue(req, &mut out, &mut queued, &mut pending),
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => {
                                rx_open = false;
                                break;
                            }
                        }
                    }
                }
            }
        };

        tracing::debug!(server = %self.server, error = %failure, in_flight = pending.len(), "memcached connection closed");
        for p in pending.drain(..) {
            // A write the server may have received in full may also have been executed.
            let err = if p.write && p.end <= sent {
                failure.clone().after_write()
            } else {
                failure.clone()
            };
            let _ = p.reply.send(Err(err));
        }
        rx.close();
        while let Ok(req) = rx.try_recv() {
            let _ = req.reply.send(Err(failure.clone()));
        }
    }

    /// Parses every complete reply in `inbuf` and hands each to its request.
    fn deliver(&self, inbuf: &mut BytesMut, pending: &mut VecDeque<Pending>) -> Result<()> {
        while let Some(front) = pending.front() {
            let (reply, used) = match parse_reply(front.kind, inbuf, self.max_value) {
                Ok(Parsed::NeedMore) => return Ok(()),
                Ok(Parsed::Done(reply, used)) => (reply, used),
                Err(e) => {
                    let err = Error::protocol(&self.server, e.0);
                    if let Some(p) = pending.pop_front() {
                        let _ = p.reply.send(Err(err.clone()));
                    }
                    return Err(err);
                }
            };
            inbuf.advance(used);
            let Some(p) = pending.pop_front() else {
                break;
            };
            if let Reply::Value(Some(v)) = &reply {
                if let Check::Key(want) = &p.check {
                    if v.key != *want {
                        let err = Error::protocol(
                            &self.server,
                            "a VALUE for another key arrived (replies out of step)",
                        );
                        let _ = p.reply.send(Err(err.clone()));
                        return Err(err);
                    }
                }
            }
            if let (Check::Opaque(want), Some(got)) = (&p.check, reply.flag(b'O')) {
                if got != want.to_string().as_bytes() {
                    let err = Error::protocol(
                        &self.server,
                        format!(
                            "reply with opaque token O{} arrived while O{want} was expected (replies out of step)",
                            String::from_utf8_lossy(got)
                        ),
                    );
                    let _ = p.reply.send(Err(err.clone()));
                    return Err(err);
                }
            }
            match reply {
                Reply::ServerError(message) => {
                    let _ = p.reply.send(Err(server_error(&self.server, message)));
                }
                Reply::ClientError(message) if message == "unauthenticated" => {
                    let err = unauthenticated(&self.server);
                    let _ = p.reply.send(Err(err.clone()));
                    return Err(err);
                }
                Reply::ClientError(_) | Reply::Error(_) => {
                    // The server may now read our bytes out of step: close.
                    let err = Error::protocol(
                        &self.server,
                        format!("the server rejected a request: {}", reply.describe()),
                    );
                    let _ = p.reply.send(Err(err.clone()));
                    return Err(err);
                }
                reply => {
                    // A send error means the caller gave up: drop the reply.
                    let _ = p.reply.send(Ok(reply));
                }
            }
        }
        if !inbuf.is_empty() {
            return Err(Error::protocol(
                &self.server,
                format!(
                    "{} unexpected bytes arrived with no request waiting",
                    inbuf.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Writes some of `buf` (`Some(written)`), or, when `buf` is empty, flushes
/// what the writer buffered (`None`).
async fn write_or_flush<W: AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &[u8],
) -> std::io::Result<Option<usize>> {
    if buf.is_empty() {
        wr.flush().await.map(|()| None)
    } else {
        wr.write(buf).await.map(Some)
    }
}

const PROXY_REPORT: &str = "the proxy reports: ";

fn is_proxy_report(e: &Error) -> bool {
    matches!(e, Error::Unavailable { reason, .. } if reason.starts_with(PROXY_REPORT))
}

/// A `SERVER_ERROR` reply as an error. A proxy (twemproxy) reports a
/// backend it cannot reach as `SERVER_ERROR Connection refused` / `...timed
/// out` / `Host is down`: those count as unavailable.
fn server_error(server: &str, message: String) -> Error {
    let lower = message.to_ascii_lowercase();
    let backend_down = [
        "connection refused",
        "timed out",
        "host is down",
        "connection reset",
        "no route to host",
        "network is unreachable",
    ]
    .iter()
    .any(|p| lower.contains(p));
    if backend_down {
        Error::unavailable(server, format!("{PROXY_REPORT}{message}"))
    } else {
        Error::Server {
            server: server.to_string(),
            message,
        }
    }
}

/// Reads from `stream` into `buf` with a timeout, for the metadump connection.
pub(crate) async fn read_some(
    stream: &mut Stream,
    buf: &mut BytesMut,
    server: &str,
    timeout: Duration,
) -> Result<usize> {
    buf.reserve(16 * 1024);
    match tokio::time::timeout(timeout, stream.read_buf(buf)).await {
        Err(_) => Err(Error::Timeout {
            server: server.to_string(),
            after: timeout,
        }),
        Ok(Err(e)) => Err(Error::io(server, "read failed", e)),
        Ok(Ok(n)) => Ok(n),
    }
}

/// Writes all of `bytes` with a timeout, for the metadump connection.
pub(crate) async fn write_all(
    stream: &mut Stream,
    bytes: &[u8],
    server: &str,
    timeout: Duration,
) -> Result<()> {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Err(_) => Err(Error::Timeout {
            server: server.to_string(),
            after: timeout,
        }),
        Ok(Err(e)) => Err(Error::io(server, "write failed", e)),
        Ok(Ok(())) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    const LONG: Duration = Duration::from_secs(5);

    fn pool(server: String) -> ServerPool {
        ServerPool::new(PoolSettings {
            server,
            size: 1,
            timeout: LONG,
            connect_timeout: LONG,
            max_value_size: 1 << 20,
            protocol: Protocol::Meta,
            gat: true,
            failure_limit: 0,
            retry_delay: LONG,
            security: Security::default(),
            server_name: None,
        })
    }

    async fn listener() -> (TcpListener, ServerPool) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = pool(l.local_addr().unwrap().to_string());
        (l, p)
    }

    async fn accept(l: &TcpListener) -> BufReader<TcpStream> {
        let (s, _) = tokio::time::timeout(LONG, l.accept())
            .await
            .expect("a connection within 5 s")
            .unwrap();
        BufReader::new(s)
    }

    /// Reads one line; `None` at end of stream (the client closed).
    async fn line(conn: &mut BufReader<TcpStream>) -> Option<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(LONG, conn.read_line(&mut line))
            .await
            .expect("a line or the end of the stream within 5 s")
            .unwrap();
        (n > 0).then_some(line)
    }

    fn request(
        pool: &ServerPool,
        bytes: &[u8],
        deadline: Instant,
    ) -> (Request, oneshot::Receiver<Result<Reply>>) {
        let (tx, rx) = oneshot::channel();
        let req = Request {
            bytes: bytes.to_vec(),
            kind: ReplyKind::Meta,
            check: Check::None,
            write: false,
            deadline,
            reply: tx,
            _inflight: InflightGuard::new(&pool.inflight[0]),
        };
        (req, rx)
    }

    #[tokio::test]
    async fn an_abandoned_connection_is_closed_and_its_slot_reconnects() {
        let (l, pool) = listener().await;
        let first = pool.sender(0).await.unwrap();
        let mut conn1 = accept(&l).await;
        let again = pool.sender(0).await.unwrap();
        assert!(
            Arc::ptr_eq(&first.abort, &again.abort),
            "reused while usable"
        );

        // What a caller does when its own timer fires before the task closed the connection.
        // The slot opens a new connection at once, even before the task has run.
        first.abort.request();
        let second = pool.sender(0).await.unwrap();
        assert!(!Arc::ptr_eq(&first.abort, &second.abort));
        assert_eq!(
            line(&mut conn1).await,
            None,
            "the task closes the connection"
        );
        let mut conn2 = accept(&l).await;

        // The new connection works.
        let (req, rx) = request(&pool, b"mn\r\n", Instant::now() + LONG);
        second.tx.send(req).await.ok().unwrap();
        assert_eq!(line(&mut conn2).await.as_deref(), Some("mn\r\n"));
        conn2.get_mut().write_all(b"MN\r\n").await.unwrap();
        assert!(matches!(rx.await.unwrap(), Ok(Reply::Meta { .. })));
    }

    #[tokio::test]
    async fn a_request_past_its_deadline_is_never_written() {
        let (l, pool) = listener().await;
        let conn = pool.sender(0).await.unwrap();
        let mut server = accept(&l).await;
        let (late, late_rx) = request(&pool, b"ms late 1 T0\r\nx\r\n", Instant::now());
        conn.tx.send(late).await.ok().unwrap();
        let (ok, ok_rx) = request(&pool, b"mn\r\n", Instant::now() + LONG);
        conn.tx.send(ok).await.ok().unwrap();
        let err = late_rx.await.unwrap().unwrap_err();
        assert!(err.is_timeout(), "{err}");
        // The server sees only the second request, on the same (still open) connection.
        assert_eq!(line(&mut server).await.as_deref(), Some("mn\r\n"));
        server.get_mut().write_all(b"MN\r\n").await.unwrap();
        assert!(ok_rx.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn the_connection_closes_at_the_earliest_deadline_not_the_oldest_requests() {
        let (l, pool) = listener().await;
        let conn = pool.sender(0).await.unwrap();
        let mut server = accept(&l).await;
        let started = Instant::now();
        let (patient, patient_rx) = request(&pool, b"mn\r\n", started + Duration::from_secs(60));
        let (hasty, hasty_rx) = request(&pool, b"mn\r\n", started + Duration::from_millis(200));
        conn.tx.send(patient).await.ok().unwrap();
        conn.tx.send(hasty).await.ok().unwrap();
        // Both are written; the server never answers.
        assert!(line(&mut server).await.is_some());
        assert!(line(&mut server).await.is_some());
        // The hasty request's deadline closes the connection (not the patient one's, a
        // minute away): both fail, and the server sees the connection end.
        for rx in [hasty_rx, patient_rx] {
            let err = tokio::time::timeout(LONG, rx)
                .await
                .expect("failed well before the patient request's deadline")
                .unwrap()
                .unwrap_err();
            assert!(err.is_timeout(), "{err}");
        }
        assert_eq!(line(&mut server).await, None);
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}
