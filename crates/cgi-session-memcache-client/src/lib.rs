//! The memcached client bundled with cgi-session: async (tokio), speaking
//! memcached's **meta protocol**, so it needs **memcached 1.6 or later**
//! (the meta syntax is stable since 1.6.10; tested against 1.6.18).
//!
//! # What it does
//!
//! * One round trip reads a session, returns its CAS token and refreshes its
//!   TTL: [`Client::get`] with [`GetOptions`] sends `mg <key> v c T<ttl>`.
//! * Compare-and-set, add-only, replace-only stores with the new CAS returned
//!   ([`Client::set`]), CAS-guarded deletes ([`Client::delete`]), touch.
//! * A pool of connections per server; each connection pipelines many
//!   concurrent requests and checks every reply's opaque token.
//! * Every exchange has a deadline. A timeout, I/O error or garbled reply
//!   closes that connection and fails its requests with a clear error; the
//!   next request reconnects, so service resumes by itself after a restart.
//! * Cancellation-safe: dropping a request's future never puts a connection
//!   out of step (its reply is read and thrown away).
//! * Keys are validated before anything is written ([`Key`]).
//! * Key listing via `lru_crawler metadump all` ([`Client::metadump`]).
//!
//! # Why a hand-written client
//!
//! When this crate was written no maintained crate offered all of tokio,
//! the meta protocol, pooling with pipelining, and CAS/touch in one stable
//! API:
//!
//! * `memcache` is a synchronous (blocking) client built on the classic
//!   text/binary protocols; its meta-command API lives in an experimental
//!   module.
//! * `async-memcached` (tokio) started as ASCII-protocol-only; newer
//!   0.x releases add a `MetaProtocol` trait that takes raw flag strings,
//!   but a `Client` is one connection driven through `&mut self`, so
//!   concurrent tasks cannot pipeline on it. Pooling comes from the separate
//!   `deadpool-memcached` (a check-out pool: one request per connection at a
//!   time), and the API has changed between minor releases.
//! * `memcache-async` is runtime-agnostic over one `AsyncRead + AsyncWrite`
//!   stream with mostly classic commands; `bb8-memcached` pools its ASCII
//!   protocol, again one request per checked-out connection.
//! * Others (`yamemcache`, `rsmc`, ...) are small, unmaintained, or lack
//!   CAS/metadata access.
//!
//! The subset a session store needs is small (`mg`, `ms`, `md`, `mn`,
//! `version`, `stats`, `lru_crawler metadump`), so owning it costs little and
//! lets the store rely on exact semantics (one round trip per load, CAS,
//! clear errors).
//!
//! # Example
//!
//! ```no_run
//! use cgi_session_memcache_client::{Client, ClientConfig, GetOptions, SetOptions, StoreStatus};
//!
//! # async fn demo() -> Result<(), cgi_session_memcache_client::Error> {
//! let client = Client::connect(ClientConfig::new("127.0.0.1:11211")).await?;
//! let status = client.set("cgisess_abc", b"{}", SetOptions::new().ttl(1800)).await?;
//! assert!(matches!(status, StoreStatus::Stored { .. }));
//! // Read, get the CAS token and refresh the TTL in one round trip:
//! let item = client
//!     .get("cgisess_abc", GetOptions::new().cas(true).touch(1800))
//!     .await?
//!     .expect("just stored");
//! // Save only if nobody else saved in between:
//! let saved = client
//!     .set("cgisess_abc", b"{\"n\":1}", SetOptions::new().ttl(1800).cas(item.cas))
//!     .await?;
//! # let _ = saved;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod conn;
mod error;
mod key;
pub mod proto;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};

use conn::{PoolSettings, ServerPool};
pub use error::{Error, Result};
pub use key::{validate_key, Key, MAX_KEY_LEN};
use proto::{encode_meta, MetaCode, Reply, ReplyKind};

/// Longest relative expiration memcached accepts: 30 days in seconds. Larger
/// exptimes are read as absolute Unix times.
pub const MAX_RELATIVE_EXPTIME: u32 = 2_592_000;

/// Converts a TTL into memcached's `exptime`.
///
/// memcached reads an exptime of up to 30 days (2,592,000 s) as "seconds from
/// now" but anything larger as an **absolute Unix time**. A naive relative
/// value of, say, 31 days (2,678,400) therefore means a moment in January
/// 1970: the item expires at once (checked on 1.6.18). This function sends
/// TTLs over 30 days as `now_unix + ttl` instead.
///
/// * A zero TTL gives 0, which memcached reads as "never expires".
/// * A sub-second remainder rounds up, so a tiny non-zero TTL never becomes 0.
/// * Absolute times past `u32::MAX` are clamped.
///
/// Absolute times depend on the client's clock agreeing with the server's.
///
/// ```
/// use std::time::Duration;
/// use cgi_session_memcache_client::memcached_exptime;
/// let now = 1_700_000_000;
/// assert_eq!(memcached_exptime(Duration::from_secs(1800), now), 1800);
/// assert_eq!(memcached_exptime(Duration::from_secs(2_592_000), now), 2_592_000);
/// assert_eq!(memcached_exptime(Duration::from_secs(2_592_001), now), 1_702_592_001);
/// assert_eq!(memcached_exptime(Duration::ZERO, now), 0);
/// assert_eq!(memcached_exptime(Duration::from_millis(10), now), 1);
/// ```
pub fn memcached_exptime(ttl: Duration, now_unix: i64) -> u32 {
    let mut secs = ttl.as_secs();
    if ttl.subsec_nanos() > 0 {
        secs = secs.saturating_add(1);
    }
    if secs == 0 {
        return 0;
    }
    if secs <= u64::from(MAX_RELATIVE_EXPTIME) {
        return secs as u32;
    }
    let abs = i128::from(now_unix) + i128::from(secs);
    abs.clamp(i128::from(MAX_RELATIVE_EXPTIME) + 1, i128::from(u32::MAX)) as u32
}

/// [`memcached_exptime`] with the current system time.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(cgi_session_memcache_client::exptime_from_now(Duration::from_secs(60)), 60);
/// assert!(cgi_session_memcache_client::exptime_from_now(Duration::from_secs(40 * 86_400)) > 1_600_000_000);
/// ```
pub fn exptime_from_now(ttl: Duration) -> u32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    memcached_exptime(ttl, now)
}

/// Client settings. Build with [`ClientConfig::new`] and the chainable
/// setters; fields are public to read and assign.
///
/// ```
/// use std::time::Duration;
/// use cgi_session_memcache_client::ClientConfig;
/// let config = ClientConfig::new("127.0.0.1:11211")
///     .pool_size(4)
///     .timeout(Duration::from_millis(500))
///     .lazy(true);
/// assert_eq!(config.pool_size, 4);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The server, `host:port` (resolved at each connect).
    pub server: String,
    /// Connections per server (default 2; at least 1).
    pub pool_size: usize,
    /// Deadline for one exchange, from the call until the reply (default 1 s).
    pub timeout: Duration,
    /// Deadline for opening a TCP connection (default 1 s).
    pub connect_timeout: Duration,
    /// If true, [`Client::connect`] opens no connection; the first request
    /// does (default false: connect at start-up and fail early).
    pub lazy: bool,
    /// Largest value accepted, sent or received (default 16 MiB). memcached's
    /// own limit is `-I` (1 MiB by default; see [`Client::item_size_max`]).
    pub max_value_size: usize,
}

impl ClientConfig {
    /// Settings for one server with the defaults.
    ///
    /// ```
    /// let c = cgi_session_memcache_client::ClientConfig::new("127.0.0.1:11211");
    /// assert_eq!(c.pool_size, 2);
    /// assert!(!c.lazy);
    /// ```
    pub fn new(server: impl Into<String>) -> Self {
        ClientConfig {
            server: server.into(),
            pool_size: 2,
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            lazy: false,
            max_value_size: 16 * 1024 * 1024,
        }
    }

    /// Sets [`pool_size`](Self::pool_size).
    ///
    /// ```
    /// let c = cgi_session_memcache_client::ClientConfig::new("h:1").pool_size(1);
    /// assert_eq!(c.pool_size, 1);
    /// ```
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// Sets [`timeout`](Self::timeout).
    ///
    /// ```
    /// let c = cgi_session_memcache_client::ClientConfig::new("h:1")
    ///     .timeout(std::time::Duration::from_millis(200));
    /// # let _ = c;
    /// ```
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    ///
    /// ```
    /// let c = cgi_session_memcache_client::ClientConfig::new("h:1")
    ///     .connect_timeout(std::time::Duration::from_millis(200));
    /// # let _ = c;
    /// ```
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Sets [`lazy`](Self::lazy).
    ///
    /// ```
    /// let c = cgi_session_memcache_client::ClientConfig::new("h:1").lazy(true);
    /// assert!(c.lazy);
    /// ```
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }

    /// Sets [`max_value_size`](Self::max_value_size).
    ///
    /// ```
    /// let c = cgi_session_memcache_client::ClientConfig::new("h:1").max_value_size(1 << 20);
    /// assert_eq!(c.max_value_size, 1 << 20);
    /// ```
    pub fn max_value_size(mut self, n: usize) -> Self {
        self.max_value_size = n;
        self
    }
}

/// What [`Client::get`] asks for besides the value.
///
/// ```
/// use cgi_session_memcache_client::GetOptions;
/// let opts = GetOptions::new().cas(true).touch(1800).flags(true);
/// assert_eq!(opts.touch_ttl, Some(1800));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GetOptions {
    /// Return the CAS token (`c`).
    pub cas: bool,
    /// Set a new exptime while reading (`T<ttl>`); see [`memcached_exptime`].
    /// Note for round-trip counting: memcached (checked on 1.6.18) counts
    /// such a fetch under `cmd_touch`/`touch_hits` when the key exists and
    /// under `cmd_get`/`get_misses` when it does not.
    pub touch_ttl: Option<u32>,
    /// Return seconds since last access (`l`).
    pub last_access: bool,
    /// Return the client flags (`f`).
    pub flags: bool,
    /// Return the remaining TTL (`t`; after a touch, the new one).
    pub ttl_remaining: bool,
}

impl GetOptions {
    /// Value only.
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::GetOptions::new(), Default::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`cas`](Self::cas).
    ///
    /// ```
    /// assert!(cgi_session_memcache_client::GetOptions::new().cas(true).cas);
    /// ```
    pub fn cas(mut self, on: bool) -> Self {
        self.cas = on;
        self
    }

    /// Sets [`touch_ttl`](Self::touch_ttl) to `Some(exptime)`.
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::GetOptions::new().touch(60).touch_ttl, Some(60));
    /// ```
    pub fn touch(mut self, exptime: u32) -> Self {
        self.touch_ttl = Some(exptime);
        self
    }

    /// Sets [`last_access`](Self::last_access).
    ///
    /// ```
    /// assert!(cgi_session_memcache_client::GetOptions::new().last_access(true).last_access);
    /// ```
    pub fn last_access(mut self, on: bool) -> Self {
        self.last_access = on;
        self
    }

    /// Sets [`flags`](Self::flags).
    ///
    /// ```
    /// assert!(cgi_session_memcache_client::GetOptions::new().flags(true).flags);
    /// ```
    pub fn flags(mut self, on: bool) -> Self {
        self.flags = on;
        self
    }

    /// Sets [`ttl_remaining`](Self::ttl_remaining).
    ///
    /// ```
    /// assert!(cgi_session_memcache_client::GetOptions::new().ttl_remaining(true).ttl_remaining);
    /// ```
    pub fn ttl_remaining(mut self, on: bool) -> Self {
        self.ttl_remaining = on;
        self
    }
}

/// A value read by [`Client::get`], with the metadata asked for.
///
/// ```no_run
/// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
/// use cgi_session_memcache_client::GetOptions;
/// if let Some(item) = client.get("k", GetOptions::new().cas(true)).await? {
///     println!("{} bytes, cas {:?}", item.value.len(), item.cas);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Item {
    /// The stored bytes.
    pub value: Bytes,
    /// CAS token, if [`GetOptions::cas`] was set.
    pub cas: Option<u64>,
    /// Client flags, if [`GetOptions::flags`] was set.
    pub flags: Option<u32>,
    /// Seconds since the item was last accessed, if
    /// [`GetOptions::last_access`] was set. This is the age **before** this
    /// fetch: the fetch does not reset what it reports (checked on 1.6.18: a
    /// fetch 2 s after the set reports 2, and a second fetch right after still
    /// reports about 2, not 0). memcached only refreshes an item's access time
    /// now and then (at most about once a minute per item), so treat it as
    /// approximate.
    pub last_access_secs: Option<u32>,
    /// Seconds until expiry if [`GetOptions::ttl_remaining`] was set; `-1`
    /// means the item never expires. After a touch, the new TTL.
    pub ttl_remaining: Option<i64>,
}

/// How [`Client::set`] stores (`ms ... M<mode>`).
///
/// ```
/// assert_eq!(cgi_session_memcache_client::SetMode::default(), cgi_session_memcache_client::SetMode::Set);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetMode {
    /// Store unconditionally (`MS`).
    #[default]
    Set,
    /// Store only if the key does not exist (`ME`); else `NotStored`.
    Add,
    /// Store only if the key exists (`MR`); else `NotStored`.
    Replace,
}

impl SetMode {
    fn flag(self) -> &'static str {
        match self {
            SetMode::Set => "MS",
            SetMode::Add => "ME",
            SetMode::Replace => "MR",
        }
    }
}

/// Options for [`Client::set`].
///
/// ```
/// use cgi_session_memcache_client::{SetMode, SetOptions};
/// let opts = SetOptions::new().mode(SetMode::Add).ttl(1800).flags(1);
/// assert_eq!(opts.ttl, 1800);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetOptions {
    /// Set, add or replace.
    pub mode: SetMode,
    /// Store only if the item's CAS token still equals this (`C<cas>`).
    pub cas: Option<u64>,
    /// memcached exptime (0 = never). Use [`memcached_exptime`] for TTLs
    /// that may exceed 30 days.
    pub ttl: u32,
    /// Client flags stored with the item.
    pub flags: u32,
}

impl SetOptions {
    /// Plain set, no expiry, flags 0.
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::SetOptions::new().ttl, 0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`mode`](Self::mode).
    ///
    /// ```
    /// use cgi_session_memcache_client::{SetMode, SetOptions};
    /// assert_eq!(SetOptions::new().mode(SetMode::Replace).mode, SetMode::Replace);
    /// ```
    pub fn mode(mut self, mode: SetMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`cas`](Self::cas).
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::SetOptions::new().cas(Some(7)).cas, Some(7));
    /// ```
    pub fn cas(mut self, cas: Option<u64>) -> Self {
        self.cas = cas;
        self
    }

    /// Sets [`ttl`](Self::ttl) (a memcached exptime).
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::SetOptions::new().ttl(60).ttl, 60);
    /// ```
    pub fn ttl(mut self, exptime: u32) -> Self {
        self.ttl = exptime;
        self
    }

    /// Sets [`flags`](Self::flags).
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::SetOptions::new().flags(3).flags, 3);
    /// ```
    pub fn flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }
}

/// Outcome of [`Client::set`].
///
/// ```
/// use cgi_session_memcache_client::StoreStatus;
/// assert!(StoreStatus::Stored { cas: Some(1) }.is_stored());
/// assert!(!StoreStatus::Exists.is_stored());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreStatus {
    /// Stored; `cas` is the item's new CAS token.
    Stored {
        /// The new CAS token.
        cas: Option<u64>,
    },
    /// Not stored: `Add` on an existing key or `Replace` on a missing one.
    NotStored,
    /// Not stored: the CAS token did not match (someone else wrote first).
    Exists,
    /// Not stored: CAS given but the key does not exist.
    NotFound,
}

impl StoreStatus {
    /// True for [`StoreStatus::Stored`].
    ///
    /// ```
    /// assert!(!cgi_session_memcache_client::StoreStatus::NotStored.is_stored());
    /// ```
    pub fn is_stored(&self) -> bool {
        matches!(self, StoreStatus::Stored { .. })
    }
}

/// Outcome of [`Client::delete`].
///
/// ```
/// assert_ne!(cgi_session_memcache_client::DeleteStatus::Deleted, cgi_session_memcache_client::DeleteStatus::NotFound);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeleteStatus {
    /// The item was deleted.
    Deleted,
    /// There was no such item.
    NotFound,
    /// Not deleted: the CAS token did not match.
    Exists,
}

/// One line of `lru_crawler metadump all`.
///
/// ```no_run
/// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
/// for entry in client.metadump().await?.entries {
///     println!("{} bytes, expires {:?}", entry.size, entry.exp);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetadumpEntry {
    /// The key, URL-decoded.
    pub key: Vec<u8>,
    /// Absolute Unix expiry time; `None` if the item never expires.
    pub exp: Option<i64>,
    /// Absolute Unix time of the last access.
    pub last_access: i64,
    /// CAS token.
    pub cas: u64,
    /// Item size in memory (bytes, header included).
    pub size: u64,
    /// Client flags, if the server prints them (1.6.18 does not).
    pub flags: Option<u32>,
    /// Whether the item has been fetched since it was stored, if printed.
    pub fetched: Option<bool>,
}

/// A metadump line that could not be understood (skipped, not fatal).
///
/// ```
/// let e = cgi_session_memcache_client::MetadumpLineError { line: 3, reason: "no key".into() };
/// assert_eq!(e.to_string(), "metadump line 3: no key");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadump line {line}: {reason}")]
pub struct MetadumpLineError {
    /// 1-based line number in the dump.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

/// The result of [`Client::metadump`].
///
/// ```
/// let dump = cgi_session_memcache_client::Metadump::default();
/// assert!(dump.entries.is_empty() && dump.skipped.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metadump {
    /// Every item line understood.
    pub entries: Vec<MetadumpEntry>,
    /// Lines that were not understood, with their positions.
    pub skipped: Vec<MetadumpLineError>,
}

/// An async memcached client. Cheap to clone (shares the pool); drop every
/// clone to close the connections.
///
/// ```no_run
/// # async fn demo() -> cgi_session_memcache_client::Result<()> {
/// use cgi_session_memcache_client::{Client, ClientConfig};
/// let client = Client::connect(ClientConfig::new("127.0.0.1:11211")).await?;
/// println!("memcached {}", client.version().await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    // One pool per server; a later version picks the pool by hashing the key.
    pools: Vec<ServerPool>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field(
                "servers",
                &self
                    .inner
                    .pools
                    .iter()
                    .map(|p| p.server())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn parse_num<T: std::str::FromStr>(reply: &Reply, flag: u8, server: &str) -> Result<Option<T>> {
    match reply.flag(flag) {
        None => Ok(None),
        Some(tok) => std::str::from_utf8(tok)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| {
                Error::protocol(
                    server,
                    format!(
                        "return flag '{}' has a non-numeric token {:?}",
                        char::from(flag),
                        String::from_utf8_lossy(tok)
                    ),
                )
            }),
    }
}

fn meta_code(reply: &Reply) -> Option<MetaCode> {
    match reply {
        Reply::Meta { code, .. } => Some(*code),
        _ => None,
    }
}

impl Client {
    /// Creates a client. Unless [`ClientConfig::lazy`] is set, opens every
    /// pooled connection now, so a wrong address fails at start-up.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] or [`Error::Timeout`] naming the server if a
    /// non-lazy connect fails.
    ///
    /// ```no_run
    /// # async fn demo() -> cgi_session_memcache_client::Result<()> {
    /// use cgi_session_memcache_client::{Client, ClientConfig};
    /// let client = Client::connect(ClientConfig::new("127.0.0.1:11211").pool_size(4)).await?;
    /// # drop(client); Ok(()) }
    /// ```
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let pool = ServerPool::new(PoolSettings {
            server: config.server.clone(),
            size: config.pool_size.max(1),
            timeout: config.timeout,
            connect_timeout: config.connect_timeout,
            max_value_size: config.max_value_size,
        });
        if !config.lazy {
            pool.connect_all().await?;
        }
        Ok(Client {
            inner: Arc::new(Inner { pools: vec![pool] }),
        })
    }

    fn pool_for(&self, _key: &[u8]) -> &ServerPool {
        &self.inner.pools[0]
    }

    /// The servers this client talks to, as configured (`host:port`).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cgi_session_memcache_client::{Client, ClientConfig};
    /// let client = Client::connect(ClientConfig::new("127.0.0.1:1").lazy(true)).await.unwrap();
    /// assert_eq!(client.servers(), ["127.0.0.1:1"]);
    /// # });
    /// ```
    pub fn servers(&self) -> Vec<String> {
        self.inner
            .pools
            .iter()
            .map(|p| p.server().to_owned())
            .collect()
    }

    fn first_pool(&self) -> &ServerPool {
        &self.inner.pools[0]
    }

    async fn meta(
        &self,
        cmd: &str,
        key: &[u8],
        mut args: Vec<String>,
        data: Option<&[u8]>,
    ) -> Result<Reply> {
        let pool = self.pool_for(key);
        let opaque = pool.next_opaque();
        args.push(format!("O{opaque}"));
        let mut bytes = Vec::with_capacity(64 + key.len() + data.map_or(0, |d| d.len() + 2));
        encode_meta(&mut bytes, cmd, key, &args);
        if let Some(data) = data {
            bytes.extend_from_slice(data);
            bytes.extend_from_slice(b"\r\n");
        }
        tracing::debug!(server = %pool.server(), cmd, key = %key::log_prefix(key), "memcached request");
        pool.call(bytes, ReplyKind::Meta, Some(opaque)).await
    }

    fn unexpected(&self, key: &[u8], cmd: &str, reply: &Reply) -> Error {
        Error::protocol(
            self.pool_for(key).server(),
            format!("unexpected reply {} to {cmd}", reply.describe()),
        )
    }

    /// Reads a key (`mg <key> v ...`). With [`GetOptions::touch_ttl`] it also
    /// sets a new exptime, and with [`GetOptions::cas`] returns the CAS token,
    /// all in one round trip. A miss is `Ok(None)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] before sending; [`Error::Unavailable`],
    /// [`Error::Timeout`], [`Error::Protocol`], [`Error::Server`].
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// use cgi_session_memcache_client::GetOptions;
    /// let item = client.get("cgisess_abc", GetOptions::new().cas(true).touch(1800)).await?;
    /// # let _ = item; Ok(()) }
    /// ```
    pub async fn get(&self, key: impl AsRef<[u8]>, opts: GetOptions) -> Result<Option<Item>> {
        let key = key.as_ref();
        validate_key(key)?;
        let mut args = vec!["v".to_string()];
        if opts.cas {
            args.push("c".into());
        }
        if opts.flags {
            args.push("f".into());
        }
        if opts.last_access {
            args.push("l".into());
        }
        // `T` before `t`: memcached handles flags in order, so `t` then
        // reports the new TTL.
        if let Some(ttl) = opts.touch_ttl {
            args.push(format!("T{ttl}"));
        }
        if opts.ttl_remaining {
            args.push("t".into());
        }
        let reply = self.meta("mg", key, args, None).await?;
        let server = self.pool_for(key).server();
        match &reply {
            Reply::Meta {
                code: MetaCode::Va,
                value: Some(value),
                ..
            } => Ok(Some(Item {
                value: value.clone(),
                cas: parse_num(&reply, b'c', server)?,
                flags: parse_num(&reply, b'f', server)?,
                last_access_secs: parse_num(&reply, b'l', server)?,
                ttl_remaining: parse_num(&reply, b't', server)?,
            })),
            Reply::Meta {
                code: MetaCode::En, ..
            } => Ok(None),
            other => Err(self.unexpected(key, "mg", other)),
        }
    }

    /// Stores a value (`ms <key> <len> T<ttl> F<flags> [C<cas>] M<mode> c`)
    /// and returns the new CAS token when stored.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] and [`Error::ValueTooLarge`] before sending;
    /// [`Error::Server`] if memcached refuses the item (e.g. larger than its
    /// `-I` limit); the connection errors.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// use cgi_session_memcache_client::{SetMode, SetOptions, StoreStatus};
    /// match client.set("k", b"v", SetOptions::new().mode(SetMode::Add).ttl(60)).await? {
    ///     StoreStatus::Stored { cas } => println!("created, cas {cas:?}"),
    ///     StoreStatus::NotStored => println!("already there"),
    ///     _ => {}
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: SetOptions,
    ) -> Result<StoreStatus> {
        let key = key.as_ref();
        let value = value.as_ref();
        validate_key(key)?;
        let max = self.pool_for(key).settings().max_value_size;
        if value.len() > max {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max,
            });
        }
        let mut args = vec![
            value.len().to_string(),
            format!("T{}", opts.ttl),
            format!("F{}", opts.flags),
        ];
        if let Some(cas) = opts.cas {
            args.push(format!("C{cas}"));
        }
        args.push(opts.mode.flag().into());
        args.push("c".into());
        let reply = self.meta("ms", key, args, Some(value)).await?;
        let server = self.pool_for(key).server();
        match meta_code(&reply) {
            Some(MetaCode::Hd) => Ok(StoreStatus::Stored {
                cas: parse_num(&reply, b'c', server)?,
            }),
            Some(MetaCode::Ns) => Ok(StoreStatus::NotStored),
            Some(MetaCode::Ex) => Ok(StoreStatus::Exists),
            Some(MetaCode::Nf) => Ok(StoreStatus::NotFound),
            _ => Err(self.unexpected(key, "ms", &reply)),
        }
    }

    /// Deletes a key (`md <key> [C<cas>]`). With a CAS token it deletes only
    /// if the item is unchanged (a safe lock release).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] before sending; the connection errors.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// use cgi_session_memcache_client::DeleteStatus;
    /// assert_eq!(client.delete("gone", None).await?, DeleteStatus::NotFound);
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, key: impl AsRef<[u8]>, cas: Option<u64>) -> Result<DeleteStatus> {
        let key = key.as_ref();
        validate_key(key)?;
        let args = cas.map(|c| vec![format!("C{c}")]).unwrap_or_default();
        let reply = self.meta("md", key, args, None).await?;
        match meta_code(&reply) {
            Some(MetaCode::Hd) => Ok(DeleteStatus::Deleted),
            Some(MetaCode::Nf) => Ok(DeleteStatus::NotFound),
            Some(MetaCode::Ex) => Ok(DeleteStatus::Exists),
            _ => Err(self.unexpected(key, "md", &reply)),
        }
    }

    /// Sets a new exptime without reading the value (`mg <key> T<ttl>`).
    /// Returns false if the key does not exist.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] before sending; the connection errors.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// let found = client.touch("cgisess_abc", 1800).await?;
    /// # let _ = found; Ok(()) }
    /// ```
    pub async fn touch(&self, key: impl AsRef<[u8]>, exptime: u32) -> Result<bool> {
        let key = key.as_ref();
        validate_key(key)?;
        let reply = self
            .meta("mg", key, vec![format!("T{exptime}")], None)
            .await?;
        match meta_code(&reply) {
            Some(MetaCode::Hd) => Ok(true),
            Some(MetaCode::En) => Ok(false),
            _ => Err(self.unexpected(key, "mg T", &reply)),
        }
    }

    /// Sends `mn` and waits for `MN`: a cheap liveness check.
    ///
    /// # Errors
    ///
    /// The connection errors.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// client.noop().await?;
    /// # Ok(()) }
    /// ```
    pub async fn noop(&self) -> Result<()> {
        let pool = self.first_pool();
        let reply = pool.call(b"mn\r\n".to_vec(), ReplyKind::Meta, None).await?;
        match meta_code(&reply) {
            Some(MetaCode::Mn) => Ok(()),
            _ => Err(Error::protocol(
                pool.server(),
                format!("unexpected reply {} to mn", reply.describe()),
            )),
        }
    }

    /// The server's version string, e.g. `"1.6.18"`.
    ///
    /// # Errors
    ///
    /// The connection errors.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// println!("memcached {}", client.version().await?);
    /// # Ok(()) }
    /// ```
    pub async fn version(&self) -> Result<String> {
        let pool = self.first_pool();
        match pool
            .call(b"version\r\n".to_vec(), ReplyKind::Version, None)
            .await?
        {
            Reply::Version(v) => Ok(v),
            other => Err(Error::protocol(
                pool.server(),
                format!("unexpected reply {} to version", other.describe()),
            )),
        }
    }

    /// The server's general counters (`stats`): `cmd_get`, `get_hits`,
    /// `curr_items`, `evictions`, ...
    ///
    /// # Errors
    ///
    /// The connection errors.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// let stats = client.stats().await?;
    /// println!("{} items", stats["curr_items"]);
    /// # Ok(()) }
    /// ```
    pub async fn stats(&self) -> Result<HashMap<String, String>> {
        self.stats_cmd(b"stats\r\n".to_vec()).await
    }

    /// `stats <arg>`, e.g. `settings`, `items`, `slabs`. `arg` must be
    /// printable ASCII (spaces allowed between words).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if `arg` is empty or has control characters;
    /// the connection errors.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// let settings = client.stats_arg("settings").await?;
    /// println!("item_size_max {}", settings["item_size_max"]);
    /// # Ok(()) }
    /// ```
    pub async fn stats_arg(&self, arg: &str) -> Result<HashMap<String, String>> {
        if arg.trim().is_empty() || !arg.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return Err(Error::InvalidKey {
                reason: "the stats argument is empty or has control characters".into(),
            });
        }
        self.stats_cmd(format!("stats {arg}\r\n").into_bytes())
            .await
    }

    async fn stats_cmd(&self, bytes: Vec<u8>) -> Result<HashMap<String, String>> {
        let pool = self.first_pool();
        match pool.call(bytes, ReplyKind::Stats, None).await? {
            Reply::Stats(lines) => Ok(lines.into_iter().collect()),
            other => Err(Error::protocol(
                pool.server(),
                format!("unexpected reply {} to stats", other.describe()),
            )),
        }
    }

    /// The server's largest item size in bytes (`item_size_max` from
    /// `stats settings`; set with memcached's `-I`).
    ///
    /// # Errors
    ///
    /// The connection errors; [`Error::Protocol`] if the setting is missing.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// assert!(client.item_size_max().await? >= 1024 * 1024);
    /// # Ok(()) }
    /// ```
    pub async fn item_size_max(&self) -> Result<u64> {
        let settings = self.stats_arg("settings").await?;
        settings
            .get("item_size_max")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                Error::protocol(
                    self.first_pool().server(),
                    "`stats settings` has no numeric item_size_max",
                )
            })
    }

    /// Lists the items the LRU crawler reaches (`lru_crawler metadump all`),
    /// on a dedicated connection (the server refuses to pipeline other
    /// commands with it). Lines that cannot be understood are reported in
    /// [`Metadump::skipped`] with their line numbers. The whole dump is held
    /// in memory. The per-exchange timeout applies to each read.
    ///
    /// # Errors
    ///
    /// [`Error::Server`] if the server refuses (e.g. crawler busy or
    /// disabled); the connection errors.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// let dump = client.metadump().await?;
    /// println!("{} keys, {} lines skipped", dump.entries.len(), dump.skipped.len());
    /// # Ok(()) }
    /// ```
    pub async fn metadump(&self) -> Result<Metadump> {
        let pool = self.first_pool();
        let server = pool.server();
        let timeout = pool.settings().timeout;
        let mut stream = pool.connect().await?;
        conn::write_all(
            &mut stream,
            b"lru_crawler metadump all\r\n",
            server,
            timeout,
        )
        .await?;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut dump = Metadump::default();
        let mut line_no = 0usize;
        loop {
            while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                line_no += 1;
                let mut line = &buf[..pos];
                if let Some(l) = line.strip_suffix(b"\r") {
                    line = l;
                }
                if line == b"END" {
                    return Ok(dump);
                }
                if line_no == 1 && !line.starts_with(b"key=") {
                    let text = String::from_utf8_lossy(line).into_owned();
                    if let Some(msg) = text
                        .strip_prefix("SERVER_ERROR ")
                        .or_else(|| text.strip_prefix("CLIENT_ERROR "))
                    {
                        return Err(Error::Server {
                            server: server.to_string(),
                            message: msg.to_string(),
                        });
                    }
                    if text.starts_with("ERROR") || text.starts_with("BUSY") {
                        return Err(Error::Server {
                            server: server.to_string(),
                            message: text,
                        });
                    }
                }
                match parse_metadump_line(line) {
                    Ok(entry) => dump.entries.push(entry),
                    Err(reason) => dump.skipped.push(MetadumpLineError {
                        line: line_no,
                        reason,
                    }),
                }
                buf.advance(pos + 1);
            }
            if buf.len() > proto::MAX_LINE {
                return Err(Error::protocol(
                    server,
                    format!(
                        "metadump line {} is longer than {} bytes",
                        line_no + 1,
                        proto::MAX_LINE
                    ),
                ));
            }
            if conn::read_some(&mut stream, &mut buf, server, timeout).await? == 0 {
                return Err(Error::unavailable(
                    server,
                    "the server closed the connection before the end of the metadump",
                ));
            }
        }
    }
}

fn url_decode(s: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "bad %-escape in key".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Parses one `key=... exp=... la=... cas=... size=...` metadump line.
fn parse_metadump_line(line: &[u8]) -> std::result::Result<MetadumpEntry, String> {
    let mut key = None;
    let mut exp = None;
    let mut la = None;
    let mut cas = None;
    let mut size = None;
    let mut flags = None;
    let mut fetched = None;
    fn num<T: std::str::FromStr>(name: &str, v: &[u8]) -> std::result::Result<T, String> {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("field {name} is not a number"))
    }
    for field in line.split(|&b| b == b' ').filter(|f| !f.is_empty()) {
        let Some(eq) = field.iter().position(|&b| b == b'=') else {
            return Err("a field has no '='".into());
        };
        let (name, value) = (&field[..eq], &field[eq + 1..]);
        match name {
            b"key" => key = Some(url_decode(value)?),
            b"exp" => exp = Some(num::<i64>("exp", value)?),
            b"la" => la = Some(num::<i64>("la", value)?),
            b"cas" => cas = Some(num::<u64>("cas", value)?),
            b"size" => size = Some(num::<u64>("size", value)?),
            b"flags" => flags = Some(num::<u32>("flags", value)?),
            b"fetch" => fetched = Some(value == b"yes"),
            _ => {}
        }
    }
    let missing = |f: &str| format!("field {f} is missing");
    Ok(MetadumpEntry {
        key: key.ok_or_else(|| missing("key"))?,
        exp: match exp.ok_or_else(|| missing("exp"))? {
            -1 => None,
            e => Some(e),
        },
        last_access: la.ok_or_else(|| missing("la"))?,
        cas: cas.ok_or_else(|| missing("cas"))?,
        size: size.ok_or_else(|| missing("size"))?,
        flags,
        fetched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadump_lines() {
        let e = parse_metadump_line(
            b"key=k%2F%C3%A9 exp=-1 la=1795769520 cas=2 fetch=yes cls=1 size=69",
        )
        .unwrap();
        assert_eq!(e.key, "k/é".as_bytes());
        assert_eq!(e.exp, None);
        assert_eq!(e.cas, 2);
        assert_eq!(e.size, 69);
        assert_eq!(e.fetched, Some(true));
        let e = parse_metadump_line(b"key=a exp=17 la=1 cas=3 size=5 flags=9").unwrap();
        assert_eq!((e.exp, e.flags), (Some(17), Some(9)));
        assert!(parse_metadump_line(b"garbage").is_err());
        assert!(parse_metadump_line(b"key=a%zz exp=1 la=1 cas=1 size=1").is_err());
        assert!(parse_metadump_line(b"key=a exp=x la=1 cas=1 size=1").is_err());
        assert!(parse_metadump_line(b"key=a la=1 cas=1 size=1").is_err());
    }

    #[test]
    fn exptime_edges() {
        assert_eq!(
            memcached_exptime(Duration::from_secs(u64::MAX), 1),
            u32::MAX
        );
        assert_eq!(
            memcached_exptime(Duration::from_secs(2_592_001), -10_000_000),
            2_592_001
        );
    }
}
