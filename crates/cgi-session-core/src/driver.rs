//! The [`Driver`] plug point: where session bytes are kept.

use std::fmt::Debug;
use std::ops::ControlFlow;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::DriverError;
use crate::SessionId;

pub mod file;
pub mod memory;

/// An opaque version of a stored session (memcached's CAS value, a counter, a content hash),
/// used to detect that another request wrote the session since it was loaded.
pub type Version = u64;

/// What [`Driver::load`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The stored bytes, as the serializer wrote them.
    pub data: Vec<u8>,
    /// The version for a later conditional write, when the driver has one.
    pub version: Option<Version>,
    /// When the session was last accessed before this load (Unix seconds), when the driver
    /// tracks it. It lets sessions that are only read keep sliding without being rewritten.
    pub last_access: Option<i64>,
}

/// How [`Driver::store`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// Create: store only if nothing is stored under the id (memcached `add`).
    Create,
    /// Replace: store only if a session is stored under the id and, when `expected` is given,
    /// only if its version is still `expected` (memcached `cas`). A session that is gone is
    /// never brought back.
    Replace {
        /// The version the caller loaded.
        expected: Option<Version>,
    },
}

/// What [`Driver::store`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOutcome {
    /// Written; the new version when the driver has one.
    Stored(Option<Version>),
    /// [`StoreMode::Create`] found a session already stored under the id.
    Exists,
    /// [`StoreMode::Replace`] found a newer version than expected.
    Conflict,
    /// [`StoreMode::Replace`] found nothing stored (deleted, expired or evicted).
    NotFound,
}

/// One stored session, as [`Driver::list`] reports it.
///
/// ```
/// use cgi_session_core::{ListedSession, SessionId};
///
/// let id = SessionId::parse("0123456789abcdef0123456789abcdef").unwrap();
/// let listed = ListedSession::new(id).size(120).last_access(1_700_000_000);
/// assert_eq!(listed.size, Some(120));
/// assert_eq!(listed.expires_at, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListedSession {
    /// The session's id.
    pub id: SessionId,
    /// The stored size in bytes, when the driver knows it.
    pub size: Option<u64>,
    /// The last access (Unix seconds), when the driver tracks it (memcached's last access, a
    /// file's modification time).
    pub last_access: Option<i64>,
    /// When the store itself drops the session (Unix seconds: memcached's TTL, the memory
    /// driver's expiry); `None` when the store keeps it until the session layer removes it.
    /// The session's own expiry, which the session layer enforces, comes from its record
    /// ([`Record::expires_at`](crate::record::Record::expires_at)).
    pub expires_at: Option<i64>,
}

impl ListedSession {
    /// A listed session about which nothing but the id is known.
    pub fn new(id: SessionId) -> Self {
        Self {
            id,
            size: None,
            last_access: None,
            expires_at: None,
        }
    }

    /// With the stored size in bytes.
    #[must_use]
    pub fn size(mut self, bytes: u64) -> Self {
        self.size = Some(bytes);
        self
    }

    /// With the last access (Unix seconds).
    #[must_use]
    pub fn last_access(mut self, unix: i64) -> Self {
        self.last_access = Some(unix);
        self
    }

    /// With the store's own expiry (Unix seconds); `None` for "never".
    #[must_use]
    pub fn expires_at(mut self, unix: Option<i64>) -> Self {
        self.expires_at = unix;
        self
    }
}

/// The proof that a session lock is held, returned by [`Driver::try_lock`] and given back to
/// [`Driver::unlock`]: a value only the holder knows (memcached's CAS value of the lock item, a
/// random number for the file driver), compared atomically when the lock is released so that a
/// request whose lease ran out never frees a lock that another request took since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LockToken(pub u64);

/// What [`Driver::try_lock`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockAttempt {
    /// The lock is now held by the caller until it is released or its lease ends.
    Acquired(LockToken),
    /// Another holder has the lock and its lease has not ended.
    Held,
}

/// Storage for session bytes: CGI::Session's `driver:` plug point.
///
/// Object-safe, so a DSN string can pick a driver at run time (`Arc<dyn Driver>`). Drivers see
/// only well-formed [`SessionId`]s. `ttl` is the session's lifetime in the store: drivers with
/// a native expiry (memcached) set it; `None` means "the driver's default lifetime".
#[async_trait]
pub trait Driver: Send + Sync + Debug + 'static {
    /// The name used in DSN strings (`driver:<name>`) and in error messages.
    fn name(&self) -> &'static str;

    /// Whether [`Driver::load`] applies its `touch` argument (`true` by default). A driver
    /// whose items other programs share may leave lifetimes alone on reads (the memcached
    /// driver does by default): the session layer then never changes a lifetime when it only
    /// reads, and keeps sessions in use alive by writing them back.
    fn refreshes_on_load(&self) -> bool {
        true
    }

    /// Reads a session, refreshing its lifetime to `touch` when given (in the same operation
    /// where the backend allows it; see [`Driver::refreshes_on_load`]). `Ok(None)` means
    /// nothing is stored: never an error.
    async fn load(
        &self,
        id: &SessionId,
        touch: Option<Duration>,
    ) -> Result<Option<Loaded>, DriverError>;

    /// Writes a session according to `mode`.
    async fn store(
        &self,
        id: &SessionId,
        data: &[u8],
        mode: StoreMode,
        ttl: Option<Duration>,
    ) -> Result<StoreOutcome, DriverError>;

    /// Removes a session; `Ok(false)` when nothing was stored.
    async fn remove(&self, id: &SessionId) -> Result<bool, DriverError>;

    /// Refreshes a session's lifetime without rewriting it; `Ok(false)` when nothing is stored.
    async fn touch(&self, id: &SessionId, ttl: Option<Duration>) -> Result<bool, DriverError>;

    /// Takes the session's lock when nobody holds it: the lock is held until
    /// [`Driver::unlock`] with the returned token, or until `lease` has passed (so that a
    /// crashed holder cannot keep it forever). Never waits: the caller retries.
    ///
    /// The lock is independent of the stored session: it may be taken for an id that has
    /// no session (yet). Drivers without locks return [`DriverError::Unsupported`].
    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<LockAttempt, DriverError> {
        let _ = (id, lease);
        Err(DriverError::Unsupported {
            driver: self.name(),
            operation: "session locks",
        })
    }

    /// Releases the session's lock if it is still held with `token` (compared atomically);
    /// `Ok(false)` when it is not (the lease ended, and perhaps another request took it).
    async fn unlock(&self, id: &SessionId, token: LockToken) -> Result<bool, DriverError> {
        let _ = (id, token);
        Err(DriverError::Unsupported {
            driver: self.name(),
            operation: "session locks",
        })
    }

    /// Calls `visit` with every stored session (its id and what the driver knows of its size,
    /// last access and store expiry) until it returns `Break`: what `find`, purging and the
    /// operator CLI list sessions with.
    ///
    /// Drivers that cannot list sessions return [`DriverError::Unsupported`].
    async fn list(
        &self,
        visit: &mut (dyn FnMut(ListedSession) -> ControlFlow<()> + Send),
    ) -> Result<(), DriverError>;
}
