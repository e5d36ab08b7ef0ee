//! The connections to one server ([`ServerPool`]): picking a connection, opening new ones
//! (TCP, TLS, login), and the failure bookkeeping that marks a server down and probes it
//! (see [`Health`]). Each connection itself is a task in [`crate::conn`].

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::conn::{self, Check, ConnHandle, InflightGuard, Request};
use crate::error::{Error, Result};
use crate::proto::{Reply, ReplyKind};
use crate::secure::{Security, Stream};

/// Extra time the caller waits beyond the deadline, so the connection task
/// (which closes the connection) normally reports the timeout itself: the caller's
/// timer is only a backstop for a connection task that is late (a busy runtime).
const CALLER_GRACE: Duration = Duration::from_millis(50);

/// Settings a pool needs.
#[derive(Debug, Clone)]
pub(crate) struct PoolSettings {
    pub server: String,
    pub size: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_value_size: usize,
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

/// One connection slot of a pool.
///
/// The request path only clones the live connection's handle under a short `std` lock
/// (never held across an await); opening a connection, which awaits, is serialised by the
/// async `connecting` lock, so that concurrent requests on a slot without a connection
/// open one, not one each.
#[derive(Default)]
struct Slot {
    conn: std::sync::Mutex<Option<Arc<ConnHandle>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl Slot {
    /// The slot's connection if it can still take requests.
    fn usable(&self) -> Option<Arc<ConnHandle>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.as_ref().filter(|c| c.is_usable()).cloned()
    }

    fn set(&self, conn: Option<Arc<ConnHandle>>) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = conn;
    }
}

/// The connections to one server. The client keeps one `ServerPool` per
/// server and picks the pool by hashing the key.
pub(crate) struct ServerPool {
    settings: PoolSettings,
    health: std::sync::Mutex<Health>,
    /// No failure counted and not marked down (`Health` at rest): requests go without
    /// taking the health lock, and successes need not reset anything. Written under the lock.
    clean: AtomicBool,
    slots: Vec<Slot>,
    inflight: Vec<Arc<AtomicUsize>>,
    round_robin: AtomicUsize,
    next_opaque: AtomicU32,
}

impl ServerPool {
    pub(crate) fn new(settings: PoolSettings) -> Self {
        let size = settings.size.max(1);
        ServerPool {
            slots: (0..size).map(|_| Slot::default()).collect(),
            inflight: (0..size).map(|_| Arc::new(AtomicUsize::new(0))).collect(),
            round_robin: AtomicUsize::new(0),
            next_opaque: AtomicU32::new(1),
            health: std::sync::Mutex::new(Health::default()),
            clean: AtomicBool::new(true),
            settings,
        }
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the server is marked down: it failed `failure_limit` times in a row and no
    /// probe has succeeded since.
    pub(crate) fn is_down(&self) -> bool {
        !self.clean.load(Ordering::Acquire) && self.lock_health().down_until.is_some()
    }

    /// Whether a request sent now would reach the server: it is up, or marked down with a
    /// probe due and none under way (the request becomes the probe).
    pub(crate) fn takes_requests(&self) -> bool {
        if self.clean.load(Ordering::Acquire) {
            return true;
        }
        let health = self.lock_health();
        match health.down_until {
            None => true,
            Some(until) => until <= Instant::now() && !health.probing,
        }
    }

    /// Decides whether a request goes to the server (see [`Health`]).
    fn admit(&self) -> Admission {
        if self.clean.load(Ordering::Acquire) {
            return Admission::Go;
        }
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
        let failed = matches!(outcome, Err(e) if e.is_unavailable() && !conn::is_proxy_report(e));
        if !failed && !probe && self.clean.load(Ordering::Acquire) {
            // Nothing to reset: the common case takes no lock.
            return;
        }
        let mut health = self.lock_health();
        self.update(&mut health, failed, probe);
        self.clean.store(
            health.failures == 0 && health.down_until.is_none(),
            Ordering::Release,
        );
    }

    fn update(&self, health: &mut Health, failed: bool, probe: bool) {
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

    /// The error for a reply that does not answer `cmd`.
    pub(crate) fn unexpected(&self, cmd: &str, reply: &Reply) -> Error {
        Error::protocol(
            &self.settings.server,
            format!("unexpected reply {} to {cmd}", reply.describe()),
        )
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
    async fn sender(&self, idx: usize) -> Result<Arc<ConnHandle>> {
        match self.slots[idx].usable() {
            Some(conn) => Ok(conn),
            None => self.reconnect(idx).await,
        }
    }

    /// Opens slot `idx`'s connection, unless another request did while this one waited.
    async fn reconnect(&self, idx: usize) -> Result<Arc<ConnHandle>> {
        let slot = &self.slots[idx];
        let _connecting = slot.connecting.lock().await;
        if let Some(conn) = slot.usable() {
            return Ok(conn);
        }
        slot.set(None);
        let stream = self.connect().await?;
        let conn = Arc::new(conn::spawn(
            stream,
            &self.settings.server,
            self.settings.timeout,
            self.settings.max_value_size,
        ));
        tracing::debug!(server = %self.settings.server, slot = idx, "memcached connection opened");
        slot.set(Some(conn.clone()));
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
    /// availability failures are counted. `write`: a store or delete, whose
    /// failure after the request was sent in full is [`Error::OutcomeUnknown`].
    pub(crate) async fn call(
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
        // Timers only where this waits: opening a connection, a full channel, and one
        // backstop for the reply (the connection task keeps the deadline itself).
        let conn = match self.slots[idx].usable() {
            Some(conn) => conn,
            // Boxed: connecting (TCP, TLS, login) is a large future, and a rare one; inline,
            // it would make every request's future (and the boxed futures of the session
            // driver's `async_trait` calls) kilobytes larger.
            None => match tokio::time::timeout_at(deadline, Box::pin(self.reconnect(idx))).await {
                Ok(conn) => conn?,
                Err(_) => return Err(self.timeout_error()),
            },
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
        let closed = || {
            Error::unavailable(
                &self.settings.server,
                "the connection closed before the request was sent",
            )
        };
        match conn.tx.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => return Err(closed()),
            // Not sent when this times out (the send is cancelled), so nothing of the
            // request reaches the server. Boxed, as a rare path (see above).
            Err(TrySendError::Full(request)) => {
                let send = Box::pin(tokio::time::timeout_at(deadline, conn.tx.send(request)));
                match send.await {
                    Err(_) => return Err(self.timeout_error()),
                    Ok(Err(_)) => return Err(closed()),
                    Ok(Ok(())) => {}
                }
            }
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

#[cfg(test)]
pub(crate) mod tests {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    const LONG: Duration = Duration::from_secs(5);

    /// A pool of one connection to `server`: long timeouts, no failure limit, no TLS.
    pub(crate) fn pool(server: String) -> ServerPool {
        ServerPool::new(PoolSettings {
            server,
            size: 1,
            timeout: LONG,
            connect_timeout: LONG,
            max_value_size: 1 << 20,
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

    /// The connection's one timer is set to the first request's deadline and not moved for
    /// later requests with later deadlines: when it fires for a request answered long ago,
    /// it must wait for the front request's own deadline, not fail it, and it must still
    /// close the connection when that deadline passes.
    #[tokio::test]
    async fn a_stale_timer_waits_for_the_front_deadline_and_that_one_still_closes() {
        let (l, pool) = listener().await;
        let conn = pool.sender(0).await.unwrap();
        let mut server = accept(&l).await;

        let first_deadline = Instant::now() + Duration::from_millis(150);
        let (first, first_rx) = request(&pool, b"mn\r\n", first_deadline);
        conn.tx.send(first).await.ok().unwrap();
        assert_eq!(line(&mut server).await.as_deref(), Some("mn\r\n"));
        server.get_mut().write_all(b"MN\r\n").await.unwrap();
        assert!(first_rx.await.unwrap().is_ok());

        let (patient, patient_rx) = request(&pool, b"mn\r\n", Instant::now() + LONG);
        conn.tx.send(patient).await.ok().unwrap();
        assert_eq!(line(&mut server).await.as_deref(), Some("mn\r\n"));
        // Answer only once the first request's deadline (where the timer was set) is past.
        tokio::time::sleep_until(first_deadline + Duration::from_millis(100)).await;
        server.get_mut().write_all(b"MN\r\n").await.unwrap();
        let answer = tokio::time::timeout(LONG, patient_rx)
            .await
            .unwrap()
            .unwrap();
        assert!(answer.is_ok(), "{answer:?}");
        assert!(conn.is_usable());

        // A request nobody answers still closes the connection at its deadline.
        let (hung, hung_rx) = request(
            &pool,
            b"mn\r\n",
            Instant::now() + Duration::from_millis(200),
        );
        conn.tx.send(hung).await.ok().unwrap();
        assert_eq!(line(&mut server).await.as_deref(), Some("mn\r\n"));
        let err = tokio::time::timeout(LONG, hung_rx)
            .await
            .expect("failed by its deadline")
            .unwrap()
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert_eq!(line(&mut server).await, None, "the connection is closed");
        assert!(!conn.is_usable());
    }

    /// Requests on a slot whose connection is gone open one new connection between them.
    #[tokio::test]
    async fn concurrent_requests_on_an_empty_slot_open_one_connection() {
        let (l, pool) = listener().await;
        let (a, b) = tokio::join!(pool.sender(0), pool.sender(0));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(Arc::ptr_eq(&a, &b), "one connection for both");
        let _server = accept(&l).await;
    }

    /// The lock-free path of a healthy server keeps the bookkeeping: failures count only in
    /// a row (a success in between resets them), and the limit marks the server down.
    #[test]
    fn failures_count_in_a_row_with_the_lock_free_path() {
        let pool = ServerPool::new(PoolSettings {
            failure_limit: 2,
            ..pool("127.0.0.1:1".into()).settings
        });
        let failure = || -> Result<Reply> { Err(Error::unavailable("127.0.0.1:1", "down")) };
        let success = || -> Result<Reply> { Ok(Reply::Version("1.6".into())) };
        assert!(matches!(pool.admit(), Admission::Go));
        pool.record(&failure(), false);
        pool.record(&success(), false);
        pool.record(&failure(), false);
        assert!(!pool.is_down(), "one failure in a row");
        assert!(matches!(pool.admit(), Admission::Go));
        pool.record(&failure(), false);
        assert!(pool.is_down(), "two in a row");
        assert!(matches!(pool.admit(), Admission::Refuse(_)));
    }
}
