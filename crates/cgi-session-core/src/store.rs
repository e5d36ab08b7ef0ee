//! [`SessionStore`]: a configured driver, serializer and id generator, shared by all requests.
//!
//! Its settings are made by [`SessionStoreBuilder`] (`crate::config`); what its methods do
//! with a session is the engine's (`crate::engine`).

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;

use crate::config::{Config, LockMode, SessionStoreBuilder, Undecodable};
use crate::cookie::CookieConfig;
use crate::driver::Driver;
use crate::engine::load::load_for_find;
use crate::engine::{Inner, Session};
use crate::error::{DriverError, Error};
use crate::id::{IdGenerator, SessionId};
use crate::instrument;
use crate::lock::SessionLock;
use crate::serializer::Serializer;
use crate::stats::StoreStats;

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
            config: Config::new(driver),
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
        instrument::load(&self.inner, claimed_id, remote_addr).await
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
        let loaded = match instrument::load(&self.inner, claimed_id, remote_addr).await {
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
            let session = match load_for_find(&self.inner, &id).await {
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
        instrument::update_stored(&self.inner, &parsed, change).await
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
            let result =
                SessionLock::acquire(&inner.config, &inner.local_locks, &inner.stats, &owned_id)
                    .await;
            let _ = tx.send(result);
        });
        rx.await.map_err(|_| {
            Error::Driver(DriverError::Backend {
                driver: self.inner.driver.name(),
                source: "the task waiting for the session lock ended without an answer (is the runtime shutting down?)".into(),
            })
        })?
    }

    /// What [`SessionStore::new_session`] does with a stored session that does not decode
    /// ([`SessionStoreBuilder::on_undecodable`], or the serializer's default).
    pub fn undecodable(&self) -> Undecodable {
        self.inner.config.undecodable()
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

impl SessionStoreBuilder {
    /// Builds the store.
    pub fn build(self) -> SessionStore {
        SessionStore {
            inner: Arc::new(Inner::new(self.config)),
        }
    }
}
