//! [`SessionStore`]: a configured driver, serializer and id generator, shared by all requests.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::driver::Driver;
use crate::error::Error;
use crate::id::{IdGenerator, SecureRandomIds, SessionId};
use crate::serializer::{JsonSerializer, Serializer};
use crate::session::{Purpose, Session};

/// CGI::Session's cookie name.
pub const DEFAULT_COOKIE_NAME: &str = "CGISESSID";

/// How long an item outlives its session's idle timeout in the store, in seconds.
///
/// The session layer enforces idle expiry exactly when loading; the store's own lifetime (a
/// memcached TTL) removes the item a little later, so that a load can still tell "expired"
/// (reported by [`Session::is_expired`]) from "never existed".
pub const DEFAULT_TTL_GRACE_SECS: u64 = 10;

/// What a save does when another request wrote the session since it was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConflictPolicy {
    /// Re-read the stored session, re-apply only the parameters this request changed, and
    /// write again, up to `max_attempts` writes in all. Changes to different parameters by
    /// concurrent requests all survive. The default, with 8 attempts.
    Merge {
        /// Writes tried before giving up with [`Error::Conflict`].
        max_attempts: u32,
    },
    /// Overwrite whatever is stored (CGI::Session's behaviour; concurrent changes are lost).
    /// A session deleted meanwhile still stays deleted.
    LastWriteWins,
    /// Fail the save with [`Error::Conflict`].
    Error,
}

impl Default for ConflictPolicy {
    fn default() -> Self {
        Self::Merge { max_attempts: 8 }
    }
}

/// The `SameSite` attribute of the session cookie.
pub use cookie::SameSite;

/// Settings of the session cookie (CGI::Session's `name()` and `cookie()`).
///
/// Defaults fix CGI::Session's flaws: `HttpOnly` and `SameSite=Lax` are on; `Secure` is off
/// by default only because the demo runs on plain HTTP: turn it on in production.
#[derive(Debug, Clone)]
pub struct CookieConfig {
    /// Cookie name, [`DEFAULT_COOKIE_NAME`] by default.
    pub name: String,
    /// `Path`, `/` by default.
    pub path: String,
    /// `Domain`, none by default.
    pub domain: Option<String>,
    /// `Secure`.
    pub secure: bool,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `SameSite`.
    pub same_site: Option<SameSite>,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_COOKIE_NAME.into(),
            path: "/".into(),
            domain: None,
            secure: false,
            http_only: true,
            same_site: Some(SameSite::Lax),
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
    pub(crate) default_expire: Option<i64>,
    pub(crate) ttl_grace: u64,
    pub(crate) cookie: CookieConfig,
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
                default_expire: None,
                ttl_grace: DEFAULT_TTL_GRACE_SECS,
                cookie: CookieConfig::default(),
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
    /// generator adopts ids). Stored bytes that do not decode are left untouched and a new
    /// session is issued. The new session is written by [`Session::flush`].
    ///
    /// # Errors
    /// [`Error::Driver`] when the store fails or is unreachable; [`Error::Id`] when no id can
    /// be generated.
    pub async fn new_session(
        &self,
        claimed_id: Option<&str>,
        remote_addr: Option<&str>,
    ) -> Result<Session, Error> {
        let loaded = match Session::load(&self.inner, claimed_id, remote_addr, Purpose::New).await {
            Ok(s) => s,
            Err(Error::Corrupt { id, source }) => {
                tracing::warn!(session = %id, error = %source, "stored session does not decode; issuing a new session and leaving the stored bytes alone");
                Session::empty(&self.inner, false)
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
            .traverse(&mut |id| {
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

    /// Atomic read-modify-write of one session: loads it, runs `change`, and saves only if no
    /// other request wrote it in between; otherwise re-runs `change` on the fresh session
    /// (up to `max_attempts` times). With it, concurrent increments of a counter never lose
    /// one.
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
    ///     .update(&id, 100, |s| {
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
    /// [`Error::Gone`] when no session is stored under `id`; [`Error::Conflict`] after
    /// `max_attempts` conflicting writes; whatever `change` returns; store errors.
    pub async fn update<R, F>(&self, id: &str, max_attempts: u32, mut change: F) -> Result<R, Error>
    where
        F: FnMut(&mut Session) -> Result<R, Error> + Send,
        R: Send,
    {
        let parsed = SessionId::parse(id)?;
        let attempts = max_attempts.max(1);
        for _ in 0..attempts {
            let mut session = Session::load(&self.inner, Some(id), None, Purpose::Update).await?;
            if session.id().is_none() {
                return Err(Error::Gone { id: parsed });
            }
            let result = change(&mut session)?;
            match session.flush_with(ConflictPolicy::Error).await {
                Ok(()) => return Ok(result),
                Err(Error::Conflict { .. }) => {
                    session.discard();
                    tokio::task::yield_now().await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict {
            id: parsed,
            attempts,
        })
    }
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

    /// What a save does on a concurrent write ([`ConflictPolicy::Merge`] by default).
    pub fn conflict_policy(mut self, policy: ConflictPolicy) -> Self {
        self.inner.conflict = policy;
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
