//! The store's configuration: [`SessionStoreBuilder`] and the settings it makes (policies,
//! defaults, cookie settings), read by the engine as [`Config`].
//!
//! Nothing here runs a request; the engine (`crate::engine`) reads these settings.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::cookie::CookieConfig;
use crate::driver::Driver;
use crate::error::{Error, IdError};
use crate::id::{IdGenerator, SecureRandomIds, SessionId};
use crate::record::Record;
use crate::serializer::{JsonSerializer, Serializer};

/// How long an item outlives its session's idle timeout in the store, in seconds.
///
/// The session layer enforces idle expiry exactly when loading; the store's own lifetime (a
/// memcached TTL) removes the item a little later, so that a load can still tell "expired"
/// (reported by [`Session::is_expired`](crate::Session::is_expired)) from "never existed".
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
    /// computed from its old value (a counter), use [`Session::update`](crate::Session::update) or
    /// [`SessionStore::update`](crate::SessionStore::update), which re-run the computation on the fresh copy. The default.
    #[default]
    Merge,
    /// Write at once without a version check, overwriting whatever is stored (CGI::Session's
    /// behaviour; concurrent changes of other processes are lost). A session deleted
    /// meanwhile still stays deleted.
    LastWriteWins,
    /// Fail the save with [`Error::Conflict`].
    Error,
}

/// What [`SessionStore::new_session`](crate::SessionStore::new_session) does when the stored session under the claimed id does
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

/// When requests take the session lock; see [`SessionStoreBuilder::lock_mode`].
///
/// [`SessionStoreBuilder::lock_mode`]: crate::SessionStoreBuilder::lock_mode
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LockMode {
    /// No lock (the default): requests run concurrently; saves are merged (group commit in
    /// this process, CAS across processes) and read-modify-write goes through `update`.
    #[default]
    Off,
    /// Every request that loads the session holds its lock until the response is saved
    /// (PHP's default): requests of one session run one at a time.
    EveryRequest,
    /// Only handlers that ask for it (`lock()` in the web layers) take the lock, and the
    /// session is reloaded under it.
    OnDemand,
}

impl LockMode {
    /// Parses `off`, `every-request` or `on-demand`.
    ///
    /// ```
    /// use cgi_session_core::LockMode;
    /// assert_eq!(LockMode::parse("every-request"), Some(LockMode::EveryRequest));
    /// assert_eq!(LockMode::parse("sometimes"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" | "none" => Some(Self::Off),
            "every-request" => Some(Self::EveryRequest),
            "on-demand" => Some(Self::OnDemand),
            _ => None,
        }
    }
}

// ----- the settings the engine reads ------------------------------------------------------

/// A store's settings, as the builder made them.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) driver: Arc<dyn Driver>,
    pub(crate) serializer: Arc<dyn Serializer>,
    pub(crate) ids: Arc<dyn IdGenerator>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ip_match: bool,
    pub(crate) conflict: ConflictPolicy,
    pub(crate) undecodable: Option<Undecodable>,
    pub(crate) default_expire: Option<i64>,
    /// Absolute expiry given to new sessions, seconds after their creation.
    pub(crate) max_lifetime: Option<i64>,
    /// New sessions get browser-session cookies.
    pub(crate) browser_session_cookies: bool,
    pub(crate) ttl_grace: u64,
    pub(crate) cookie: CookieConfig,
    pub(crate) save_deadline: Duration,
    pub(crate) lock_mode: LockMode,
    pub(crate) lock_lease: Duration,
    pub(crate) lock_wait: Duration,
}

impl Config {
    /// The defaults, over `driver`.
    pub(crate) fn new(driver: Arc<dyn Driver>) -> Self {
        Self {
            driver,
            serializer: Arc::new(JsonSerializer),
            ids: Arc::new(SecureRandomIds),
            clock: Arc::new(SystemClock),
            ip_match: false,
            conflict: ConflictPolicy::default(),
            undecodable: None,
            default_expire: None,
            max_lifetime: None,
            browser_session_cookies: false,
            ttl_grace: DEFAULT_TTL_GRACE_SECS,
            cookie: CookieConfig::default(),
            save_deadline: DEFAULT_SAVE_DEADLINE,
            lock_mode: LockMode::Off,
            lock_lease: DEFAULT_LOCK_LEASE,
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }

    /// What to do with a stored session that does not decode: the configured choice, or the
    /// serializer's default (see [`Undecodable`]).
    pub(crate) fn undecodable(&self) -> Undecodable {
        self.undecodable.unwrap_or_else(|| {
            if self.serializer.name() == "json" {
                Undecodable::StartNew
            } else {
                Undecodable::Fail
            }
        })
    }
}

impl Config {
    /// The lifetime to give the store for `record` at `now`: its idle timeout plus the grace
    /// ([`Config::ttl_for_idle`]), but never past its absolute expiry (at least 1 s, as 0
    /// means "no expiry" to memcached).
    pub(crate) fn ttl_for(&self, record: &Record, now: i64) -> Option<Duration> {
        let idle = self.ttl_for_idle(record.etime);
        let absolute = record.absolute_expiry().map(|at| {
            Duration::from_secs(u64::try_from(at.saturating_sub(now)).unwrap_or(0).max(1))
        });
        match (idle, absolute) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The lifetime to give the store for a session with idle timeout `etime`.
    pub(crate) fn ttl_for_idle(&self, etime: Option<i64>) -> Option<Duration> {
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
                .map_err(|e| Error::Id(IdError::Task(e.to_string())))?
                .map_err(Error::from)
        } else {
            Ok(self.ids.generate()?)
        }
    }
}

/// Configures a [`SessionStore`](crate::SessionStore); see [`SessionStore::builder`](crate::SessionStore::builder).
#[derive(Debug)]
#[must_use]
pub struct SessionStoreBuilder {
    pub(crate) config: Config,
}

impl SessionStoreBuilder {
    /// The serializer ([`JsonSerializer`] by default).
    pub fn serializer(mut self, serializer: impl Serializer) -> Self {
        self.config.serializer = Arc::new(serializer);
        self
    }

    /// The serializer, chosen at run time.
    pub fn serializer_dyn(mut self, serializer: Arc<dyn Serializer>) -> Self {
        self.config.serializer = serializer;
        self
    }

    /// The id generator ([`SecureRandomIds`] by default).
    pub fn id_generator(mut self, ids: impl IdGenerator) -> Self {
        self.config.ids = Arc::new(ids);
        self
    }

    /// The id generator, chosen at run time.
    pub fn id_generator_dyn(mut self, ids: Arc<dyn IdGenerator>) -> Self {
        self.config.ids = ids;
        self
    }

    /// CGI::Session's `-ip_match`: a session is only given to the address that created it.
    /// On a mismatch the request gets a fresh session and the stored one is left alone
    /// (CGI::Session deleted it, letting anyone who knows an id destroy it).
    pub fn ip_match(mut self, on: bool) -> Self {
        self.config.ip_match = on;
        self
    }

    /// What [`SessionStore::new_session`](crate::SessionStore::new_session) does with a stored session that does not decode (see
    /// [`Undecodable`] for the default).
    pub fn on_undecodable(mut self, policy: Undecodable) -> Self {
        self.config.undecodable = Some(policy);
        self
    }

    /// What a save does on a concurrent write ([`ConflictPolicy::Merge`] by default).
    pub fn conflict_policy(mut self, policy: ConflictPolicy) -> Self {
        self.config.conflict = policy;
        self
    }

    /// How long a save may keep retrying while other processes keep writing the session
    /// ([`DEFAULT_SAVE_DEADLINE`], 5 s, by default); past it the save fails with
    /// [`Error::Contended`] (web layers answer 503 with `Retry-After`).
    pub fn save_deadline(mut self, deadline: Duration) -> Self {
        self.config.save_deadline = deadline;
        self
    }

    /// When requests take the session lock ([`LockMode::Off`] by default). With a lock, the
    /// requests of one session run one at a time: simpler reasoning, but a slow request holds
    /// up the others of the same session (see the README's figures).
    pub fn lock_mode(mut self, mode: LockMode) -> Self {
        self.config.lock_mode = mode;
        self
    }

    /// How long a session lock lasts at most ([`DEFAULT_LOCK_LEASE`], 30 s, by default): a
    /// holder that crashed frees it when the lease ends. Keep it above the longest request.
    pub fn lock_lease(mut self, lease: Duration) -> Self {
        self.config.lock_lease = lease.max(Duration::from_secs(1));
        self
    }

    /// How long a request waits for a session lock ([`DEFAULT_LOCK_WAIT`], 10 s, by default)
    /// before failing with [`Error::LockTimeout`].
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.config.lock_wait = wait;
        self
    }

    /// Idle timeout in seconds given to every new session (as if `expire` were called on
    /// it), and the lifetime refreshed when a session is loaded. 0 means none.
    pub fn default_expire(mut self, secs: i64) -> Self {
        self.config.default_expire = (secs != 0).then_some(secs);
        self
    }

    /// [`SessionStoreBuilder::default_expire`] as a [`Duration`] (rounded up to whole
    /// seconds); [`Duration::ZERO`] means none.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cgi_session_core::{MemoryDriver, SessionStore};
    ///
    /// let store = SessionStore::builder(MemoryDriver::new())
    ///     .default_idle_timeout(Duration::from_secs(30 * 60))
    ///     .build();
    /// # let _ = store;
    /// ```
    pub fn default_idle_timeout(self, timeout: Duration) -> Self {
        self.default_expire(crate::expire::duration_secs(timeout))
    }

    /// An absolute expiry for every new session: it ends `lifetime` after its creation,
    /// however active it is (the idle timeout still applies within it). `Duration::ZERO`
    /// means none (the default). Stored in the session (`_SESSION_EXPIRES_AT`), so every
    /// process honours it, and the store's item lifetime (memcached's TTL) never outlasts it.
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        let secs = crate::expire::duration_secs(lifetime);
        self.config.max_lifetime = (secs != 0).then_some(secs);
        self
    }

    /// Whether new sessions get browser-session cookies: no `Max-Age` or `Expires`, so the
    /// browser drops the cookie when it closes (off by default: the cookie lasts as long as
    /// the session's idle timeout). The stored session still expires by its idle timeout and
    /// absolute expiry. A session can change it with
    /// [`Session::set_browser_session_cookie`](crate::Session::set_browser_session_cookie).
    pub fn browser_session_cookies(mut self, on: bool) -> Self {
        self.config.browser_session_cookies = on;
        self
    }

    /// How long, in seconds, stored items outlive their idle timeout
    /// ([`DEFAULT_TTL_GRACE_SECS`] by default).
    pub fn ttl_grace(mut self, secs: u64) -> Self {
        self.config.ttl_grace = secs;
        self
    }

    /// The time source (tests use [`ManualClock`](crate::ManualClock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.config.clock = Arc::new(clock);
        self
    }

    /// Cookie settings.
    pub fn cookie(mut self, cookie: CookieConfig) -> Self {
        self.config.cookie = cookie;
        self
    }

    /// The cookie name (CGI::Session's `name()`; `CGISESSID` by default).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.config.cookie.name = name.into();
        self
    }
}
