//! [`SessionStore`]: a configured driver, serializer and id generator, shared by all requests.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::commit::{self, Apply, Job};
use crate::cookie::CookieConfig;
use crate::driver::Driver;
use crate::error::Error;
use crate::id::{IdGenerator, SecureRandomIds, SessionId};
use crate::lock::{LocalLocks, LockMode, SessionLock};
use crate::serializer::{JsonSerializer, Serializer};
use crate::session::{Purpose, Session};
use crate::shared_read::SharedReads;

/// How long an item outlives its session's idle timeout in the store, in seconds.
///
/// The session layer enforces idle expiry exactly when loading; the store's own lifetime (a
/// memcached TTL) removes the item a little later, so that a load can still tell "expired"
/// (reported by [`Session::is_expired`]) from "never existed".
pub const DEFAULT_TTL_GRACE_SECS: u64 = 10;

/// What a save does when another request wrote the session since it was loaded.
///
/// Within one process, saves of one session never race: they are combined, in the order they
/// arrive, into one write per batch (a group commit). The policy decides what happens when
/// the write finds that *another process* (or a store written outside this library) changed
/// the session meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ConflictPolicy {
    /// Re-read the stored session, re-apply only the parameters each request changed, and
    /// write again (with jittered backoff), until the store's save deadline
    /// ([`SessionStoreBuilder::save_deadline`]); past it the save fails with
    /// [`Error::Contended`]. Changes to different parameters by concurrent requests all
    /// survive; for one parameter set by two requests, the last write wins. For a value
    /// computed from its old value (a counter), use [`Session::update`] or
    /// [`SessionStore::update`], which re-run the computation on the fresh copy. The default.
    #[default]
    Merge,
    /// Write at once without a version check, overwriting whatever is stored (CGI::Session's
    /// behaviour; concurrent changes of other processes are lost). A session deleted
    /// meanwhile still stays deleted.
    LastWriteWins,
    /// Fail the save with [`Error::Conflict`].
    Error,
}

/// What [`SessionStore::new_session`] does when the stored session under the claimed id does
/// not decode (another program's format, a serializer this store is not configured with,
/// damaged bytes). The stored bytes are never changed either way.
///
/// The default depends on the serializer: [`Fail`](Self::Fail) for Perl's formats (a session
/// shared with a Perl application is then never replaced behind its back: a new cookie would
/// log the user out of the Perl pages that can read it), [`StartNew`](Self::StartNew) for JSON.
///
/// ```
/// use cgi_session_core::{MemoryDriver, SessionStore, Undecodable};
///
/// let store = SessionStore::builder(MemoryDriver::new()).build();
/// assert_eq!(store.undecodable(), Undecodable::StartNew, "JSON: a private format");
/// let store = SessionStore::builder(MemoryDriver::new())
///     .on_undecodable(Undecodable::Fail)
///     .build();
/// assert_eq!(store.undecodable(), Undecodable::Fail);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Undecodable {
    /// Fail the request with [`Error::Corrupt`] (the web adapters answer 500 with a text body
    /// and log the cause) and send no new cookie: the browser keeps its id, which the
    /// program that wrote the session can still read.
    Fail,
    /// Log a warning and issue a new session with a new id (the old item is left to expire).
    StartNew,
}

/// Default of [`SessionStoreBuilder::save_deadline`].
pub const DEFAULT_SAVE_DEADLINE: Duration = Duration::from_secs(5);
/// Default of [`SessionStoreBuilder::lock_lease`].
pub const DEFAULT_LOCK_LEASE: Duration = Duration::from_secs(30);
/// Default of [`SessionStoreBuilder::lock_wait`].
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Counters of a store's saves and locks since it was built, from [`SessionStore::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Session loads asked of the store (each request's load counts once).
    pub loads: u64,
    /// Reads sent to the store for them: loads of one id that begin while a read of it is in
    /// flight share the next read, so on a hot session this is well below `loads`.
    pub reads: u64,
    /// Saves of changed sessions written (each request's flush or update counts once).
    pub saves: u64,
    /// Writes that carried them (a batch of combined saves is one write).
    pub batches: u64,
    /// Writes sent to the store, including refused ones.
    pub writes: u64,
    /// Writes refused because another process had changed the session (CAS conflicts).
    pub conflicts: u64,
    /// Saves that failed with [`Error::Contended`].
    pub contended: u64,
    /// Session locks taken.
    pub lock_acquired: u64,
    /// Lock acquisitions that had to wait (the lock was held, here or elsewhere).
    pub lock_waits: u64,
    /// Times the store's lock was asked for (each poll counts).
    pub lock_polls: u64,
    /// Total time spent waiting for locks, in microseconds.
    pub lock_wait_micros: u64,
    /// Lock waits that gave up with [`Error::LockTimeout`].
    pub lock_timeouts: u64,
}

#[derive(Debug, Default)]
pub(crate) struct StatCounters {
    pub(crate) loads: AtomicU64,
    pub(crate) reads: AtomicU64,
    pub(crate) saves: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) conflicts: AtomicU64,
    pub(crate) contended: AtomicU64,
    pub(crate) lock_acquired: AtomicU64,
    pub(crate) lock_waits: AtomicU64,
    pub(crate) lock_polls: AtomicU64,
    pub(crate) lock_wait_micros: AtomicU64,
    pub(crate) lock_timeouts: AtomicU64,
}

impl StatCounters {
    fn snapshot(&self) -> StoreStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StoreStats {
            loads: r(&self.loads),
            reads: r(&self.reads),
            saves: r(&self.saves),
            batches: r(&self.batches),
            writes: r(&self.writes),
            conflicts: r(&self.conflicts),
            contended: r(&self.contended),
            lock_acquired: r(&self.lock_acquired),
            lock_waits: r(&self.lock_waits),
            lock_polls: r(&self.lock_polls),
            lock_wait_micros: r(&self.lock_wait_micros),
            lock_timeouts: r(&self.lock_timeouts),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) driver: Arc<dyn Driver>,
    pub(crate) serializer: Arc<dyn Serializer>,
    pub(crate) ids: Arc<dyn IdGenerator>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ip_match: bool,
    pub(crate) conflict: ConflictPolicy,
    pub(crate) undecodable: Option<Undecodable>,
    pub(crate) default_expire: Option<i64>,
    pub(crate) ttl_grace: u64,
    pub(crate) cookie: CookieConfig,
    pub(crate) save_deadline: Duration,
    pub(crate) lock_mode: LockMode,
    pub(crate) lock_lease: Duration,
    pub(crate) lock_wait: Duration,
    pub(crate) committer: commit::Committer,
    pub(crate) shared_reads: SharedReads,
    pub(crate) local_locks: LocalLocks,
    pub(crate) stats: StatCounters,
}

impl Inner {
    /// The lifetime to give the store for a session with idle timeout `etime`.
    pub(crate) fn ttl_for(&self, etime: Option<i64>) -> Option<Duration> {
        match etime {
            Some(e) if e > 0 => Some(Duration::from_secs(
                u64::try_from(e)
                    .unwrap_or(u64::MAX)
                    .saturating_add(self.ttl_grace),
            )),
            // A negative timeout expires the session at its next load; keep the item only
            // for the grace period so that load can still report it as expired.
            Some(e) if e < 0 => Some(Duration::from_secs(self.ttl_grace.max(1))),
            _ => None,
        }
    }

    pub(crate) async fn generate_id(&self) -> Result<SessionId, Error> {
        if self.ids.is_blocking() {
            let ids = Arc::clone(&self.ids);
            tokio::task::spawn_blocking(move || ids.generate())
                .await
                .map_err(|e| Error::Id(crate::error::IdError::Task(e.to_string())))?
                .map_err(Error::from)
        } else {
            Ok(self.ids.generate()?)
        }
    }
}

/// A configured session store: driver, serializer, id generator and options.
///
/// Build one at start-up and share it (it is cheap to clone); each request then calls
/// [`SessionStore::new_session`] or [`SessionStore::load`], the counterparts of
/// `CGI::Session->new` and `CGI::Session->load`.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use cgi_session_core::{MemoryDriver, SessionStore};
///
/// let store = SessionStore::builder(MemoryDriver::new())
///     .default_expire(3600)
///     .ip_match(true)
///     .build();
/// let mut session = store.new_session(None, Some("192.0.2.7")).await.unwrap();
/// session.set("greet_en", "Hi !").unwrap();
/// session.flush().await.unwrap();
///
/// let id = session.id().unwrap().as_str().to_owned();
/// let again = store.new_session(Some(&id), Some("192.0.2.7")).await.unwrap();
/// assert_eq!(again.get::<String>("greet_en").unwrap().as_deref(), Some("Hi !"));
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct SessionStore {
    pub(crate) inner: Arc<Inner>,
}

impl SessionStore {
    /// Starts configuring a store over `driver`.
    pub fn builder(driver: impl Driver) -> SessionStoreBuilder {
        Self::builder_dyn(Arc::new(driver))
    }

    /// Starts configuring a store over a driver chosen at run time.
    pub fn builder_dyn(driver: Arc<dyn Driver>) -> SessionStoreBuilder {
        SessionStoreBuilder {
            inner: Inner {
                driver,
                serializer: Arc::new(JsonSerializer),
                ids: Arc::new(SecureRandomIds),
                clock: Arc::new(SystemClock),
                ip_match: false,
                conflict: ConflictPolicy::default(),
                undecodable: None,
                default_expire: None,
                ttl_grace: DEFAULT_TTL_GRACE_SECS,
                cookie: CookieConfig::default(),
                save_deadline: DEFAULT_SAVE_DEADLINE,
                lock_mode: LockMode::Off,
                lock_lease: DEFAULT_LOCK_LEASE,
                lock_wait: DEFAULT_LOCK_WAIT,
                committer: commit::Committer::default(),
                shared_reads: SharedReads::default(),
                local_locks: LocalLocks::default(),
                stats: StatCounters::default(),
            },
        }
    }

    /// The driver.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.inner.driver
    }

    /// The serializer.
    pub fn serializer(&self) -> &Arc<dyn Serializer> {
        &self.inner.serializer
    }

    /// The id generator.
    pub fn id_generator(&self) -> &Arc<dyn IdGenerator> {
        &self.inner.ids
    }

    /// The cookie name (CGI::Session's `name()`).
    pub fn cookie_name(&self) -> &str {
        &self.inner.cookie.name
    }

    /// The cookie settings.
    pub fn cookie_config(&self) -> &CookieConfig {
        &self.inner.cookie
    }

    /// `CGI::Session->load`: the stored session under `claimed_id`, or an empty session
    /// ([`Session::is_empty`]) when there is no id, the id is malformed, nothing is stored
    /// under it, it expired ([`Session::is_expired`] is then true) or, with ip matching on,
    /// it belongs to another address (the stored session is left alone).
    ///
    /// # Errors
    /// [`Error::Driver`] when the store fails or is unreachable (never an empty session passed
    /// off as absent), [`Error::Corrupt`] when the stored bytes do not decode.
    pub async fn load(
        &self,
        claimed_id: Option<&str>,
        remote_addr: Option<&str>,
    ) -> Result<Session, Error> {
        Session::load(&self.inner, claimed_id, remote_addr, Purpose::Load).await
    }

    /// `CGI::Session->new`: the stored session under `claimed_id` when there is one (and it is
    /// not expired, and ip matching allows it), otherwise a new session with a fresh id.
    ///
    /// A claimed id that is not stored is never adopted (strict mode; only the `static`
    /// generator adopts ids). Stored bytes that do not decode are left untouched; what the
    /// request gets then is [`SessionStoreBuilder::on_undecodable`]'s choice. The new session
    /// is written by [`Session::flush`].
    ///
    /// # Errors
    /// [`Error::Driver`] when the store fails or is unreachable; [`Error::Id`] when no id can
    /// be generated; [`Error::Corrupt`] when the stored session does not decode and the store
    /// is set to [`Undecodable::Fail`].
    pub async fn new_session(
        &self,
        claimed_id: Option<&str>,
        remote_addr: Option<&str>,
    ) -> Result<Session, Error> {
        let loaded = match Session::load(&self.inner, claimed_id, remote_addr, Purpose::New).await {
            Ok(s) => s,
            Err(Error::Corrupt { id, source }) if self.undecodable() == Undecodable::StartNew => {
                tracing::warn!(session = %id, error = %source, "stored session does not decode; issuing a new session and leaving the stored bytes alone");
                Session::empty(&self.inner, false)
            }
            Err(e @ Error::Corrupt { .. }) => {
                tracing::error!(error = %e, serializer = self.inner.serializer.name(), "stored session does not decode; failing the request and leaving the stored session and the cookie alone (`on_undecodable(Undecodable::StartNew)` issues a new session instead)");
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if loaded.id().is_some() {
            return Ok(loaded);
        }
        let was_expired = loaded.is_expired();
        let adopted = if self.inner.ids.adopts_claimed_id() {
            claimed_id.and_then(|c| SessionId::parse(c).ok())
        } else {
            None
        };
        let adopt = adopted.is_some();
        let id = match adopted {
            Some(id) => id,
            None => self.inner.generate_id().await?,
        };
        Ok(Session::create(
            &self.inner,
            id,
            adopt,
            remote_addr,
            was_expired,
        ))
    }

    /// CGI::Session's `find`: calls `visit` with every stored session (loaded read-only: no ip
    /// check, no lifetime refresh) until it returns `Break`. Expired sessions are deleted on
    /// the way and not visited; sessions whose bytes do not decode are skipped with a warning.
    /// Returns the number of sessions visited.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::ops::ControlFlow;
    /// use cgi_session_core::{MemoryDriver, SessionStore};
    ///
    /// let store = SessionStore::builder(MemoryDriver::new()).build();
    /// for user in ["ann", "bob"] {
    ///     let mut s = store.new_session(None, None).await.unwrap();
    ///     s.set("user", user).unwrap();
    ///     s.flush().await.unwrap();
    /// }
    /// // Log everybody out.
    /// let visited = store
    ///     .find(|mut s| async move {
    ///         s.delete();
    ///         s.flush().await.unwrap();
    ///         ControlFlow::Continue(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(visited, 2);
    /// # });
    /// ```
    ///
    /// # Errors
    /// [`Error::Driver`] with [`DriverError::Unsupported`](crate::DriverError::Unsupported) for
    /// drivers that cannot list sessions, or when the store fails.
    pub async fn find<F, Fut>(&self, mut visit: F) -> Result<usize, Error>
    where
        F: FnMut(Session) -> Fut + Send,
        Fut: Future<Output = ControlFlow<()>> + Send,
    {
        let mut ids = Vec::new();
        self.inner
            .driver
            .list(&mut |listed| {
                let id = listed.id;
                ids.push(id);
                ControlFlow::Continue(())
            })
            .await?;
        let mut visited = 0;
        for id in ids {
            let session = match Session::load(&self.inner, Some(id.as_str()), None, Purpose::Find)
                .await
            {
                Ok(s) => s,
                Err(Error::Corrupt { id, source }) => {
                    tracing::warn!(session = %id, error = %source, "find: skipping a stored session that does not decode");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if session.id().is_none() {
                continue;
            }
            visited += 1;
            if visit(session).await.is_break() {
                break;
            }
        }
        Ok(visited)
    }

    /// Atomic read-modify-write of one session by id: runs `change` on the freshest stored copy
    /// and saves the result only if no other process wrote the session in between; otherwise
    /// re-runs `change` on the fresh copy (with jittered backoff, until the store's save
    /// deadline). Within this process, concurrent updates and saves of the session are applied
    /// in order to one copy and written together (one write for many requests), so a hot
    /// session is not limited to one write per round trip. With it, concurrent increments of a
    /// counter never lose one.
    ///
    /// `change` must not wait: it runs on the task that writes the batch. It may run more than
    /// once (on a conflict); only its last run's changes and result count. If it returns an
    /// error, its changes are dropped and the error returned.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cgi_session_core::{MemoryDriver, SessionStore};
    ///
    /// let store = SessionStore::builder(MemoryDriver::new()).build();
    /// let mut s = store.new_session(None, None).await.unwrap();
    /// s.flush().await.unwrap();
    /// let id = s.id().unwrap().as_str().to_owned();
    /// let n = store
    ///     .update(&id, |s| {
    ///         let n = s.get::<i64>("visits")?.unwrap_or(0) + 1;
    ///         s.set("visits", &n)?;
    ///         Ok(n)
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(n, 1);
    /// # });
    /// ```
    ///
    /// # Errors
    /// [`Error::Gone`] when no session is stored under `id`; [`Error::Contended`] past the save
    /// deadline; whatever `change` returns; store errors.
    pub async fn update<R, F>(&self, id: &str, change: F) -> Result<R, Error>
    where
        F: FnMut(&mut Session) -> Result<R, Error> + Send + 'static,
        R: Send + 'static,
    {
        let parsed = SessionId::parse(id)?;
        let (apply, result) = capture(change);
        let job = Job::new(None, Some(apply), self.inner.conflict, None);
        commit::submit(&self.inner, &parsed, job).await?;
        take_result(&result)
    }

    /// Takes the lock of session `id` (see [`LockMode`]), waiting for it up to the store's lock
    /// wait. Requests that take it run one at a time, in this process and across processes
    /// sharing the store. Load (or reload) the session after taking it, save, then
    /// [`SessionLock::release`] it.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cgi_session_core::{MemoryDriver, SessionId, SessionStore};
    ///
    /// let store = SessionStore::builder(MemoryDriver::new()).build();
    /// let id = SessionId::parse("0123456789abcdef0123456789abcdef").unwrap();
    /// let lock = store.lock(&id).await.unwrap();
    /// // ... load, change and flush the session ...
    /// assert!(lock.release().await.unwrap());
    /// # });
    /// ```
    ///
    /// # Errors
    /// [`Error::LockTimeout`] when the lock stays held past the lock wait; [`Error::Driver`]
    /// when the store fails or its driver has no locks
    /// ([`DriverError::Unsupported`](crate::DriverError::Unsupported)).
    pub async fn lock(&self, id: &SessionId) -> Result<SessionLock, Error> {
        // The wait runs in its own task: a request cancelled while its `add` of the lock is on
        // the wire (the client went away) must not leave a lock nobody holds until its lease
        // ends. If the caller is gone when the lock is taken, the lock is dropped there, which
        // releases it.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (inner, owned_id) = (Arc::clone(&self.inner), id.clone());
        tokio::spawn(async move {
            let result = SessionLock::acquire(&inner, &owned_id).await;
            let _ = tx.send(result);
        });
        rx.await.map_err(|_| {
            Error::Driver(crate::error::DriverError::Backend {
                driver: self.inner.driver.name(),
                source: "the task waiting for the session lock ended without an answer (is the runtime shutting down?)".into(),
            })
        })?
    }

    /// What [`SessionStore::new_session`] does with a stored session that does not decode
    /// ([`SessionStoreBuilder::on_undecodable`], or the serializer's default).
    pub fn undecodable(&self) -> Undecodable {
        self.inner.undecodable.unwrap_or_else(|| {
            if self.inner.serializer.name() == "json" {
                Undecodable::StartNew
            } else {
                Undecodable::Fail
            }
        })
    }

    /// When requests take the session lock ([`LockMode::Off`] unless configured).
    pub fn lock_mode(&self) -> LockMode {
        self.inner.lock_mode
    }

    /// Counters of saves, conflicts and lock waits since the store was built.
    pub fn stats(&self) -> StoreStats {
        self.inner.stats.snapshot()
    }
}

/// Wraps an update closure so that its last successful result is kept for the caller.
pub(crate) fn capture<R, F>(mut change: F) -> (Apply, Arc<std::sync::Mutex<Option<R>>>)
where
    F: FnMut(&mut Session) -> Result<R, Error> + Send + 'static,
    R: Send + 'static,
{
    let result = Arc::new(std::sync::Mutex::new(None));
    let slot = Arc::clone(&result);
    let apply: Apply = Box::new(move |session: &mut Session| {
        let r = change(session)?;
        *slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
        Ok(())
    });
    (apply, result)
}

pub(crate) fn take_result<R>(result: &std::sync::Mutex<Option<R>>) -> Result<R, Error> {
    result
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .ok_or(Error::NoId)
}

/// Configures a [`SessionStore`]; see [`SessionStore::builder`].
#[derive(Debug)]
#[must_use]
pub struct SessionStoreBuilder {
    inner: Inner,
}

impl SessionStoreBuilder {
    /// The serializer ([`JsonSerializer`] by default).
    pub fn serializer(mut self, serializer: impl Serializer) -> Self {
        self.inner.serializer = Arc::new(serializer);
        self
    }

    /// The serializer, chosen at run time.
    pub fn serializer_dyn(mut self, serializer: Arc<dyn Serializer>) -> Self {
        self.inner.serializer = serializer;
        self
    }

    /// The id generator ([`SecureRandomIds`] by default).
    pub fn id_generator(mut self, ids: impl IdGenerator) -> Self {
        self.inner.ids = Arc::new(ids);
        self
    }

    /// The id generator, chosen at run time.
    pub fn id_generator_dyn(mut self, ids: Arc<dyn IdGenerator>) -> Self {
        self.inner.ids = ids;
        self
    }

    /// CGI::Session's `-ip_match`: a session is only given to the address that created it.
    /// On a mismatch the request gets a fresh session and the stored one is left alone
    /// (CGI::Session deleted it, letting anyone who knows an id destroy it).
    pub fn ip_match(mut self, on: bool) -> Self {
        self.inner.ip_match = on;
        self
    }

    /// What [`SessionStore::new_session`] does with a stored session that does not decode (see
    /// [`Undecodable`] for the default).
    pub fn on_undecodable(mut self, policy: Undecodable) -> Self {
        self.inner.undecodable = Some(policy);
        self
    }

    /// What a save does on a concurrent write ([`ConflictPolicy::Merge`] by default).
    pub fn conflict_policy(mut self, policy: ConflictPolicy) -> Self {
        self.inner.conflict = policy;
        self
    }

    /// How long a save may keep retrying while other processes keep writing the session
    /// ([`DEFAULT_SAVE_DEADLINE`], 5 s, by default); past it the save fails with
    /// [`Error::Contended`] (web layers answer 503 with `Retry-After`).
    pub fn save_deadline(mut self, deadline: Duration) -> Self {
        self.inner.save_deadline = deadline;
        self
    }

    /// When requests take the session lock ([`LockMode::Off`] by default). With a lock, the
    /// requests of one session run one at a time: simpler reasoning, but a slow request holds
    /// up the others of the same session (see the README's figures).
    pub fn lock_mode(mut self, mode: LockMode) -> Self {
        self.inner.lock_mode = mode;
        self
    }

    /// How long a session lock lasts at most ([`DEFAULT_LOCK_LEASE`], 30 s, by default): a
    /// holder that crashed frees it when the lease ends. Keep it above the longest request.
    pub fn lock_lease(mut self, lease: Duration) -> Self {
        self.inner.lock_lease = lease.max(Duration::from_secs(1));
        self
    }

    /// How long a request waits for a session lock ([`DEFAULT_LOCK_WAIT`], 10 s, by default)
    /// before failing with [`Error::LockTimeout`].
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.inner.lock_wait = wait;
        self
    }

    /// Idle timeout in seconds given to every new session (as if `expire` were called on
    /// it), and the lifetime refreshed when a session is loaded. 0 means none.
    pub fn default_expire(mut self, secs: i64) -> Self {
        self.inner.default_expire = (secs != 0).then_some(secs);
        self
    }

    /// How long, in seconds, stored items outlive their idle timeout
    /// ([`DEFAULT_TTL_GRACE_SECS`] by default).
    pub fn ttl_grace(mut self, secs: u64) -> Self {
        self.inner.ttl_grace = secs;
        self
    }

    /// The time source (tests use [`ManualClock`](crate::ManualClock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.inner.clock = Arc::new(clock);
        self
    }

    /// Cookie settings.
    pub fn cookie(mut self, cookie: CookieConfig) -> Self {
        self.inner.cookie = cookie;
        self
    }

    /// The cookie name (CGI::Session's `name()`; `CGISESSID` by default).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.inner.cookie.name = name.into();
        self
    }

    /// Builds the store.
    pub fn build(self) -> SessionStore {
        SessionStore {
            inner: Arc::new(self.inner),
        }
    }
}
