//! One connection: the task that owns its socket ([`spawn`]). The connections of a server
//! and their failure bookkeeping are in [`crate::pool`].
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
//!
//! Costs per request on the hot path: the caller encodes the request into one buffer, clones
//! the slot's handle under a short `std` lock, `try_send`s it (awaiting only a full channel)
//! and arms one backstop timer for the reply; the task keeps one timer for the whole
//! connection (reset only when an earlier deadline arrives or when it fires for a request
//! answered since) and one registration for the abort signal. On a connection with requests
//! already in flight, the task yields once before writing, so that callers ready on the same
//! worker join the write.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::proto::{parse_reply, Parsed, Reply, ReplyKind};
use crate::secure::{unauthenticated, Stream};

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

/// Decrements a slot's in-flight counter when dropped.
pub(crate) struct InflightGuard(Arc<AtomicUsize>);

impl InflightGuard {
    pub(crate) fn new(counter: &Arc<AtomicUsize>) -> Self {
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
pub(crate) struct Abort {
    requested: AtomicBool,
    notify: Notify,
}

impl Abort {
    pub(crate) fn request(&self) {
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
pub(crate) struct ConnHandle {
    pub(crate) tx: mpsc::Sender<Request>,
    pub(crate) abort: Arc<Abort>,
}

impl ConnHandle {
    /// Whether new requests may still go to this connection.
    pub(crate) fn is_usable(&self) -> bool {
        !self.tx.is_closed() && !self.abort.is_requested()
    }
}

/// One request on its way to a connection task.
pub(crate) struct Request {
    pub(crate) bytes: Vec<u8>,
    pub(crate) kind: ReplyKind,
    pub(crate) check: Check,
    /// A store or delete: once sent in full, a lost reply leaves its outcome unknown.
    pub(crate) write: bool,
    pub(crate) deadline: Instant,
    pub(crate) reply: oneshot::Sender<Result<Reply>>,
    pub(crate) _inflight: InflightGuard,
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

/// Starts the task of a new connection over `stream`; requests go to it through the handle.
pub(crate) fn spawn(
    stream: Stream,
    server: &str,
    timeout: Duration,
    max_value: usize,
) -> ConnHandle {
    let (tx, rx) = mpsc::channel(1024);
    let abort = Arc::new(Abort::default());
    let task = ConnTask {
        server: server.to_string(),
        timeout,
        max_value,
        abort: abort.clone(),
    };
    tokio::spawn(task.run(stream, rx));
    ConnHandle { tx, abort }
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
        *queued += req.bytes.len() as u64;
        if out.is_empty() && out.capacity() <= req.bytes.capacity() {
            // Nothing waits to be written: the request's buffer becomes the output buffer
            // (no copy; the one request's encoding is the only copy of its bytes).
            *out = req.bytes;
        } else {
            out.extend_from_slice(&req.bytes);
        }
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
        // One timer for the connection, not one per request or per loop turn: it is set to
        // the front deadline only when that is earlier than the time it is set to; when it
        // fires before the front deadline (that request was answered meanwhile), it is set
        // again to the new front deadline. Deadlines grow with time, so under steady traffic
        // it is reset about once per timeout.
        let deadline_timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(deadline_timer);
        let mut timer_set_to: Option<Instant> = None;
        // Registered once: the permit of `Abort::request` wakes this.
        let aborted = self.abort.notify.notified();
        tokio::pin!(aborted);

        let failure: Error = loop {
            if !rx_open && pending.is_empty() && out_pos == out.len() && !unflushed {
                tracing::debug!(server = %self.server, "memcached connection closed: client dropped");
                return;
            }
            if inbuf.capacity() - inbuf.len() < 4096 {
                inbuf.reserve(16 * 1024);
            }
            let front_deadline = pending.front().map(|p| p.deadline);
            if let Some(front) = front_deadline {
                if timer_set_to.is_none_or(|set| front < set) {
                    deadline_timer.as_mut().reset(front);
                    timer_set_to = Some(front);
                }
            }
            tokio::select! {
                biased;
                // First: once a caller gave up, not one more byte is read or written.
                () = &mut aborted => {
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
                () = &mut deadline_timer, if front_deadline.is_some() => {
                    match front_deadline {
                        Some(front) if front <= Instant::now() => break self.timeout_error(),
                        // Set for a request answered since: wait for the front one's.
                        Some(front) => {
                            deadline_timer.as_mut().reset(front);
                            timer_set_to = Some(front);
                        }
                        None => {}
                    }
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
                    // Requests already waiting for replies: the connection is busy, so other
                    // callers are likely running on this runtime right now.
                    let busy = !pending.is_empty();
                    self.enqueue(req, &mut out, &mut queued, &mut pending);
                    // Take every request already queued, so that they leave in one write (one
                    // syscall, one TCP segment, one wake-up of memcached) instead of one each:
                    // under load this is most of the client's and the server's CPU per request.
                    //
                    // On a busy connection, first let the tasks ready to run on this worker
                    // take their turn: the requests they make then join this write. Without
                    // it this task runs right after the first caller (tokio's LIFO slot) and
                    // writes a batch of about two; each extra write costs a wake-up of
                    // memcached, charged to this process's system time. Measured with
                    // `scripts/bench-compare.sh` at 64 connections: read requests/s +15%,
                    // system CPU per request 7.8 -> 6.2 us. An idle connection writes at once:
                    // yielding there too cost 16% of requests/s at 1 connection.
                    if busy {
                        tokio::task::yield_now().await;
                    }
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
                if !is_decimal(got, *want) {
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

/// Whether `token` is `n` written in decimal (as the client sent it: no sign, no leading
/// zeros), without formatting `n`.
fn is_decimal(token: &[u8], n: u32) -> bool {
    let mut value: u64 = 0;
    if token.is_empty() || token.len() > 10 || (token.len() > 1 && token[0] == b'0') {
        return false;
    }
    for &b in token {
        if !b.is_ascii_digit() {
            return false;
        }
        value = value * 10 + u64::from(b - b'0');
    }
    value == u64::from(n)
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

pub(crate) fn is_proxy_report(e: &Error) -> bool {
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
