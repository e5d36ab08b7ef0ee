//! [`SealedDriver`]: the [`Driver`] wrapper.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use cgi_session_core::{
    async_trait, Driver, DriverError, ListedSession, Loaded, LockAttempt, LockToken, SessionId,
    StoreMode, StoreOutcome,
};

use crate::envelope::{self, OpenError};
use crate::key::KeyRing;

/// A failure of a [`SealedDriver`], the source of the `DriverError::Backend` it returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// A stored item could not be opened.
    #[error("session {id} could not be opened: {source}")]
    Open {
        /// The session (printed shortened, as ids always are).
        id: SessionId,
        /// Why.
        #[source]
        source: OpenError,
    },
    /// The item could not be sealed (the operating system's random number generator failed).
    #[error("session {id} could not be sealed, nothing was written: {source}")]
    Seal {
        /// The session (printed shortened).
        id: SessionId,
        /// Why.
        #[source]
        source: crate::KeyError,
    },
}

/// Encryption at rest: wraps any [`Driver`] and seals the bytes it stores with
/// XChaCha20-Poly1305 (the session id as associated data), opening them when it loads.
///
/// Locks, `list`, `touch` and `remove` pass through unchanged; versions (memcached's CAS)
/// are those of the sealed items. `list` reports the sealed size (the serializer's bytes plus
/// [`OVERHEAD`](crate::OVERHEAD)). The name is the wrapped driver's.
///
/// An item that fails to open (changed bytes, moved from another id, sealed with a key that
/// is not in the ring, not sealed at all) makes `load` fail with
/// [`DriverError::Backend`] whose source is a [`SealError::Open`]: the request fails and the
/// item is left alone; it is never taken for a missing session.
///
/// **Not for sessions shared with Perl**: CGI::Session cannot read sealed items (its
/// serializer's `thaw` fails on them, so `CGI::Session->new` returns `undef` with a "couldn't
/// thaw" error), and a session a Perl program writes is not sealed, so this driver refuses it
/// ([`OpenError::NotSealed`]).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use cgi_session_core::{Driver, MemoryDriver, SessionStore};
/// use cgi_session_sealed::{KeyRing, SealedDriver, SealingKey};
///
/// let key = SealingKey::from_text(1, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")?;
/// let memory = std::sync::Arc::new(MemoryDriver::new());
/// let sealed = SealedDriver::from_arc(memory.clone(), KeyRing::new(key));
/// let store = SessionStore::builder(sealed).build();
///
/// let mut session = store.new_session(None, None).await?;
/// session.set("greeting", "secret-greeting-1234")?;
/// session.flush().await?;
///
/// // What the memory driver holds is sealed:
/// let id = session.id().unwrap().clone();
/// let stored = memory.load(&id, None).await?.unwrap().data;
/// assert!(!String::from_utf8_lossy(&stored).contains("greeting"));
/// // Through the store it reads back:
/// let again = store.load(Some(id.as_str()), None).await?;
/// assert_eq!(again.get::<String>("greeting")?.as_deref(), Some("secret-greeting-1234"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SealedDriver {
    inner: Arc<dyn Driver>,
    keys: Arc<KeyRing>,
    accept_unsealed: bool,
}

impl SealedDriver {
    /// Wraps `inner`, sealing with `keys`' current key.
    pub fn new(inner: impl Driver, keys: KeyRing) -> Self {
        Self::from_arc(Arc::new(inner), keys)
    }

    /// Wraps a shared driver (e.g. one chosen from a DSN).
    pub fn from_arc(inner: Arc<dyn Driver>, keys: KeyRing) -> Self {
        Self {
            inner,
            keys: Arc::new(keys),
            accept_unsealed: false,
        }
    }

    /// While migrating a store that holds unsealed sessions: items that do not start with the
    /// sealed format's magic bytes are read as they are (and sealed when next saved). Off by
    /// default, and turn it off again once the old items have expired: while it is on,
    /// whoever can write to the store can plant an unsealed session, so only confidentiality
    /// is kept, not integrity. Sealed items that fail to open are refused either way.
    #[must_use]
    pub fn accept_unsealed(mut self, accept: bool) -> Self {
        self.accept_unsealed = accept;
        self
    }

    /// The key ring.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The wrapped driver.
    pub fn inner(&self) -> &Arc<dyn Driver> {
        &self.inner
    }

    fn open(&self, id: &SessionId, item: Vec<u8>) -> Result<Vec<u8>, DriverError> {
        match envelope::open(&self.keys, id, &item) {
            Ok(plain) => Ok(plain),
            Err(OpenError::NotSealed) if self.accept_unsealed => Ok(item),
            Err(source) => Err(DriverError::Backend {
                driver: self.inner.name(),
                source: Box::new(SealError::Open {
                    id: id.clone(),
                    source,
                }),
            }),
        }
    }
}

#[async_trait]
impl Driver for SealedDriver {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn refreshes_on_load(&self) -> bool {
        self.inner.refreshes_on_load()
    }

    async fn load(
        &self,
        id: &SessionId,
        touch: Option<Duration>,
    ) -> Result<Option<Loaded>, DriverError> {
        let Some(loaded) = self.inner.load(id, touch).await? else {
            return Ok(None);
        };
        Ok(Some(Loaded {
            data: self.open(id, loaded.data)?,
            ..loaded
        }))
    }

    async fn store(
        &self,
        id: &SessionId,
        data: &[u8],
        mode: StoreMode,
        ttl: Option<Duration>,
    ) -> Result<StoreOutcome, DriverError> {
        let sealed =
            envelope::seal(&self.keys, id, data).map_err(|source| DriverError::Backend {
                driver: self.inner.name(),
                source: Box::new(SealError::Seal {
                    id: id.clone(),
                    source,
                }),
            })?;
        self.inner.store(id, &sealed, mode, ttl).await
    }

    async fn remove(&self, id: &SessionId) -> Result<bool, DriverError> {
        self.inner.remove(id).await
    }

    async fn touch(&self, id: &SessionId, ttl: Option<Duration>) -> Result<bool, DriverError> {
        self.inner.touch(id, ttl).await
    }

    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<LockAttempt, DriverError> {
        self.inner.try_lock(id, lease).await
    }

    async fn unlock(&self, id: &SessionId, token: LockToken) -> Result<bool, DriverError> {
        self.inner.unlock(id, token).await
    }

    async fn list(
        &self,
        visit: &mut (dyn FnMut(ListedSession) -> ControlFlow<()> + Send),
    ) -> Result<(), DriverError> {
        self.inner.list(visit).await
    }
}
