//! The [`MemcacheHandle`] trait: the few memcached operations the driver needs, so that any
//! client can be handed to it (the Perl driver's `{Handle => $memd}`).

use std::fmt::Debug;

use async_trait::async_trait;
use cgi_session_core::{BoxError, DriverError, StoreMode, StoreOutcome};
use cgi_session_memcache_client::{Error as ClientError, Item};

/// The driver's name in [`DriverError`]s.
pub(crate) const NAME: &str = "memcache";

/// What [`MemcacheHandle::delete_if`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeleteIfOutcome {
    /// The item still had the given CAS value and is deleted.
    Deleted,
    /// The item has another CAS value (it was written or re-created since): not deleted.
    Changed,
    /// There is no such item (deleted, expired or evicted).
    NotFound,
}

/// What [`MemcacheHandle::server_info`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// The server's version string.
    pub version: String,
    /// The server's item size limit (`stats settings` `item_size_max`), when known.
    pub item_size_max: Option<u64>,
}

/// One key listed by [`MemcacheHandle::list_keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedKey {
    /// The key.
    pub key: String,
    /// Expiry as a Unix time, `None` for "never".
    pub exp: Option<i64>,
    /// Last access, Unix time.
    pub last_access: Option<i64>,
    /// Item size in bytes.
    pub size: Option<u64>,
}

/// Errors a handle reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// The server is down, hung or unreachable; the message names it.
    #[error("{0}")]
    Unavailable(#[source] BoxError),
    /// A write was sent and its reply never came (timeout or lost connection): it may or may
    /// not have been applied. The driver reports it as
    /// [`DriverError::OutcomeUnknown`](cgi_session_core::DriverError::OutcomeUnknown).
    #[error("{0}")]
    OutcomeUnknown(#[source] BoxError),
    /// The client cannot do this.
    #[error("this memcached client does not support {0}")]
    Unsupported(&'static str),
    /// Any other failure (protocol error, server error, invalid key...).
    #[error("{0}")]
    Other(#[source] BoxError),
}

impl From<ClientError> for HandleError {
    /// The bundled client's errors: [`ClientError::Unsupported`] stays unsupported, a write
    /// whose outcome is unknown stays so, the other availability failures (down, hung,
    /// unreachable) are [`HandleError::Unavailable`], the rest [`HandleError::Other`].
    fn from(e: ClientError) -> Self {
        if let ClientError::Unsupported { what, .. } = e {
            return HandleError::Unsupported(what);
        }
        if e.is_outcome_unknown() {
            HandleError::OutcomeUnknown(Box::new(e))
        } else if e.is_unavailable() {
            HandleError::Unavailable(Box::new(e))
        } else {
            HandleError::Other(Box::new(e))
        }
    }
}

impl From<HandleError> for DriverError {
    /// The one mapping from a handle's errors to the session layer's:
    /// [`DriverError::Unavailable`], [`DriverError::OutcomeUnknown`],
    /// [`DriverError::Unsupported`], or [`DriverError::Backend`] for the rest.
    fn from(e: HandleError) -> Self {
        match e {
            HandleError::Unavailable(source) => DriverError::Unavailable {
                driver: NAME,
                source,
            },
            HandleError::OutcomeUnknown(source) => DriverError::OutcomeUnknown {
                driver: NAME,
                source,
            },
            HandleError::Unsupported(operation) => DriverError::Unsupported {
                driver: NAME,
                operation,
            },
            HandleError::Other(source) => DriverError::Backend {
                driver: NAME,
                source,
            },
        }
    }
}

/// The memcached operations the session driver needs. Implement it for any client and hand
/// the client to [`MemcacheDriver`](crate::MemcacheDriver), as the Perl driver's
/// `CGI::Session->new("driver:memcache", $cgi, {Handle => $memd})` does.
///
/// Implemented here for the bundled client ([`cgi_session_memcache_client::Client`], one
/// round trip per operation) and, with the `memcache-crate` feature, for the `memcache`
/// crate's client.
///
/// `exptime` values follow memcached's rules (0 = never, up to 30 days relative, larger
/// values absolute Unix times); the driver computes them.
#[async_trait]
pub trait MemcacheHandle: Send + Sync + Debug + 'static {
    /// Names the server(s) for messages, e.g. `memcached 127.0.0.1:11211`.
    fn describe(&self) -> String;

    /// Reads `key` with its CAS value ([`Item::cas`]) and client flags ([`Item::flags`];
    /// `None` counts as 0); with `touch`, sets the item's new exptime in the same operation
    /// where the client can. A miss is `Ok(None)`. The driver moves [`Item::value`] into the
    /// session layer's [`Loaded`](cgi_session_core::Loaded) without copying it.
    async fn get(&self, key: &str, touch: Option<u32>) -> Result<Option<Item>, HandleError>;

    /// Stores `value` under `key` according to `mode`, in the session layer's words: memcached
    /// `add` for [`StoreMode::Create`], `replace` for a [`StoreMode::Replace`] without
    /// expected version, `cas` with one. memcached's "not stored" is
    /// [`StoreOutcome::Exists`] for a create and [`StoreOutcome::NotFound`] for a replace; a
    /// CAS mismatch is [`StoreOutcome::Conflict`] (for a create, `Exists`).
    async fn write(
        &self,
        key: &str,
        value: &[u8],
        flags: u32,
        exptime: u32,
        mode: StoreMode,
    ) -> Result<StoreOutcome, HandleError>;

    /// Deletes `key`; `Ok(false)` when it was absent.
    async fn delete(&self, key: &str) -> Result<bool, HandleError>;

    /// Sets `key`'s exptime; `Ok(false)` when it is absent.
    async fn touch(&self, key: &str, exptime: u32) -> Result<bool, HandleError>;

    /// Version and item size limit: the health probe's first step.
    async fn server_info(&self) -> Result<ServerInfo, HandleError>;

    /// Lists the keys the server holds (`lru_crawler metadump`), for `find`.
    async fn list_keys(&self) -> Result<Vec<ListedKey>, HandleError> {
        Err(HandleError::Unsupported("listing keys"))
    }

    /// Creates the session lock item `key` only if it is absent (memcached `add`), with
    /// `value` as it is and no client flags, and returns memcached's own CAS value of the new
    /// item: the token that [`delete_if`](Self::delete_if) compares later. The item must land
    /// on the server where `delete_if` looks for `key`.
    ///
    /// The default is [`write`](Self::write) with [`StoreMode::Create`], right for any handle
    /// whose `write` stores values unchanged on one server. Handles that transform values or
    /// keep several copies ([`ReplicatedHandle`](crate::ReplicatedHandle)) override it.
    async fn add_lock(
        &self,
        key: &str,
        value: &[u8],
        exptime: u32,
    ) -> Result<StoreOutcome, HandleError> {
        self.write(key, value, 0, exptime, StoreMode::Create).await
    }

    /// Deletes `key` only if its CAS value is still `cas`, compared atomically by the server
    /// (meta protocol `md <key> C<cas>`): how a session lock is released without freeing a
    /// lock that another request took after this one's lease ended.
    ///
    /// Handles that cannot do this keep the default, [`HandleError::Unsupported`]; the driver
    /// then refuses session locks instead of taking locks it could not release safely.
    async fn delete_if(&self, key: &str, cas: u64) -> Result<DeleteIfOutcome, HandleError> {
        let _ = (key, cas);
        Err(HandleError::Unsupported(
            "compare-and-delete (session locks)",
        ))
    }
}

#[async_trait]
impl<H: MemcacheHandle + ?Sized> MemcacheHandle for std::sync::Arc<H> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    async fn get(&self, key: &str, touch: Option<u32>) -> Result<Option<Item>, HandleError> {
        (**self).get(key, touch).await
    }
    async fn write(
        &self,
        key: &str,
        value: &[u8],
        flags: u32,
        exptime: u32,
        mode: StoreMode,
    ) -> Result<StoreOutcome, HandleError> {
        (**self).write(key, value, flags, exptime, mode).await
    }
    async fn delete(&self, key: &str) -> Result<bool, HandleError> {
        (**self).delete(key).await
    }
    async fn touch(&self, key: &str, exptime: u32) -> Result<bool, HandleError> {
        (**self).touch(key, exptime).await
    }
    async fn server_info(&self) -> Result<ServerInfo, HandleError> {
        (**self).server_info().await
    }
    async fn list_keys(&self) -> Result<Vec<ListedKey>, HandleError> {
        (**self).list_keys().await
    }
    async fn add_lock(
        &self,
        key: &str,
        value: &[u8],
        exptime: u32,
    ) -> Result<StoreOutcome, HandleError> {
        (**self).add_lock(key, value, exptime).await
    }
    async fn delete_if(&self, key: &str, cas: u64) -> Result<DeleteIfOutcome, HandleError> {
        (**self).delete_if(key, cas).await
    }
}
