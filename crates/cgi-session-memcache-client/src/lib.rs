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
//! * Key listing via `lru_crawler metadump hash` ([`Client::metadump`]).
//!
//! # Security: TLS and authentication
//!
//! memcached has no access control by default: anyone who can reach its port
//! reads and writes every session. Keep it on a private network, and where
//! the network is not trusted use one or both of these (memcached 1.6 built
//! with TLS, as Debian's is):
//!
//! **TLS** (`memcached -Z -o ssl_chain_cert=server.pem,ssl_key=server.key`):
//! [`ClientConfig::tls`] with a [`TlsConfig`]. The server's certificate is
//! always verified against the CA file(s) you give and the host name (or
//! [`TlsConfig::server_name`]); there is no option to skip verification.
//! Client certificates ([`TlsConfig::client_cert`]) serve servers started
//! with `-o ssl_ca_cert=ca.pem,ssl_verify_mode=2`. rustls (with the *ring*
//! provider) does the TLS: no OpenSSL. The handshake counts against
//! [`ClientConfig::connect_timeout`]; pipelining, timeouts and cancellation
//! behave as over plain TCP.
//!
//! **Authentication** (`memcached -Y <auth file>`, lines `user:password`):
//! [`ClientConfig::auth`]. Each new connection (reconnects too) logs in
//! before any request is written, by memcached's ASCII login: `set <key> 0
//! -1 <len>` with `<user> <password>` as the value, answered `STORED`. The
//! key is ignored by an authenticating server; a server without `-Y` stores
//! the item already expired, so the password is never readable there.
//! Checked on memcached 1.6.18: before login, **every** command, meta
//! commands (`mg`, `ms`, `mn`, ...) included, is answered `CLIENT_ERROR
//! unauthenticated`; a wrong password is answered `CLIENT_ERROR
//! authentication failure` (the connection stays open but useless, so the
//! client closes it). memcached calls `-Y` **experimental**: it is a shared
//! password per user with no roles, sent in clear text unless TLS is on
//! (use both). memcached 1.6.18 reads the password only up to the first
//! space (`s3cret xyz` logs in as `s3cret`), so a password with a space could
//! never match its auth-file line: the client refuses such passwords
//! ([`Error::Config`]). `-Y` covers the text and meta protocols only (the
//! binary protocol uses SASL, `-S`, which this client does not speak).
//!
//! Errors are specific and are not outages ([`Error::is_unavailable`] is
//! false, so a store does not degrade or retry): [`Error::Tls`] for a
//! failed handshake (unknown CA, wrong name, missing client certificate,
//! TLS against a plain server), [`Error::Auth`] for refused or missing
//! credentials, [`Error::Config`] at [`Client::connect`] for files that
//! cannot be read. A wrong password therefore fails every operation; it
//! never reads as "no such session".
//!
//! ```no_run
//! use cgi_session_memcache_client::{Client, ClientConfig, TlsConfig};
//!
//! # async fn demo() -> Result<(), cgi_session_memcache_client::Error> {
//! let client = Client::connect(
//!     ClientConfig::new("cache.internal:11211")
//!         .tls(
//!             TlsConfig::new()
//!                 .ca_file("/etc/myapp/memcached-ca.pem")
//!                 // only if the server requires client certificates:
//!                 .client_cert("/etc/myapp/client.pem", "/etc/myapp/client.key"),
//!         )
//!         .auth("myapp", std::env::var("MEMCACHED_PASSWORD").unwrap_or_default()),
//! )
//! .await?;
//! # drop(client); Ok(()) }
//! ```
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
mod dist;
mod error;
mod key;
pub mod proto;
mod secure;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};

use conn::{Check, PoolSettings, ServerPool};
use dist::Ring;
pub use dist::{ketama_hash, modula_hash, Distribution};
pub use error::{Error, Result};
pub use key::{validate_key, Key, MAX_KEY_LEN};
use proto::{encode_meta, MetaCode, Reply, ReplyKind, TextStatus};
pub use secure::{Credentials, TlsConfig};

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
    /// Several servers (set with [`ClientConfig::servers`]); when empty, the
    /// one [`server`](Self::server) with weight 1.
    pub servers: Vec<ServerSpec>,
    /// How keys are spread over the servers (default [`Distribution::Ketama`]).
    pub distribution: Distribution,
    /// What happens to keys of a server that is marked down (default
    /// [`FailurePolicy::Consistent`]).
    pub failure_policy: FailurePolicy,
    /// A server that fails (unreachable, connection lost, or timed out) this
    /// many times in a row is marked down for [`retry_delay`](Self::retry_delay);
    /// while down, its requests fail at once instead of waiting for a
    /// timeout. When the delay has passed, one request (the probe) goes to
    /// the server while the others keep failing at once; the server is
    /// marked up when the probe gets an answer, and down for another delay
    /// when it fails, so a hung server costs one timeout per delay. `None` (the default) means 2 with several servers, and never
    /// for a single server (as before pools existed); `Some(0)` never marks
    /// a server down.
    pub failure_limit: Option<u32>,
    /// How long a server stays marked down before one probe request tries it
    /// again (default 2 s).
    pub retry_delay: Duration,
    /// The protocol spoken to servers that do not set their own (default
    /// [`Protocol::Meta`]).
    pub protocol: Protocol,
    /// In [`Protocol::Text`], read-and-touch with `gat`/`gats` (memcached
    /// 1.5.3+; default true). twemproxy 0.5 does not proxy `gat`: set false
    /// and a read-and-touch becomes a `gets` and a `touch`, pipelined.
    pub gat: bool,
    /// TLS for every server (`memcached -Z`); `None` (the default) is plain
    /// TCP. See [`TlsConfig`] and the crate docs' security section.
    pub tls: Option<TlsConfig>,
    /// Credentials sent on every new connection (`memcached -Y`); `None`
    /// (the default) sends none. `Debug` never shows the password.
    pub auth: Option<Credentials>,
}

/// One server of a pool: its address, weight and (optionally) protocol.
///
/// ```
/// use cgi_session_memcache_client::{Protocol, ServerSpec};
/// let s = ServerSpec::new("127.0.0.1:11211").weight(2).protocol(Protocol::Text);
/// assert_eq!((s.addr.as_str(), s.weight), ("127.0.0.1:11211", 2));
/// let t: ServerSpec = ("10.0.0.2:11211", 3).into();
/// assert_eq!(t.weight, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerSpec {
    /// `host:port`, resolved at each connect.
    pub addr: String,
    /// Relative share of the keys (default 1; 0 counts as 1).
    pub weight: u32,
    /// This server's protocol; `None` uses [`ClientConfig::protocol`].
    pub protocol: Option<Protocol>,
}

impl ServerSpec {
    /// A server with weight 1 and the pool's protocol.
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::ServerSpec::new("h:1").weight, 1);
    /// ```
    pub fn new(addr: impl Into<String>) -> Self {
        ServerSpec {
            addr: addr.into(),
            weight: 1,
            protocol: None,
        }
    }

    /// Sets [`weight`](Self::weight).
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::ServerSpec::new("h:1").weight(5).weight, 5);
    /// ```
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight.max(1);
        self
    }

    /// Sets [`protocol`](Self::protocol).
    ///
    /// ```
    /// use cgi_session_memcache_client::{Protocol, ServerSpec};
    /// assert_eq!(ServerSpec::new("h:1").protocol(Protocol::Text).protocol, Some(Protocol::Text));
    /// ```
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }
}

impl From<&str> for ServerSpec {
    fn from(addr: &str) -> Self {
        ServerSpec::new(addr)
    }
}

impl From<String> for ServerSpec {
    fn from(addr: String) -> Self {
        ServerSpec::new(addr)
    }
}

impl From<(&str, u32)> for ServerSpec {
    fn from((addr, weight): (&str, u32)) -> Self {
        ServerSpec::new(addr).weight(weight)
    }
}

impl From<(String, u32)> for ServerSpec {
    fn from((addr, weight): (String, u32)) -> Self {
        ServerSpec::new(addr).weight(weight)
    }
}

/// The wire protocol spoken to a server.
///
/// ```
/// assert_eq!(cgi_session_memcache_client::Protocol::default(), cgi_session_memcache_client::Protocol::Meta);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// memcached's meta protocol (1.6+): one round trip for read + CAS +
    /// touch, CAS-guarded delete, TTL and last-access metadata.
    #[default]
    Meta,
    /// The classic text protocol (`get`/`gets`/`gat`/`gats`, `set`/`add`/
    /// `replace`/`cas`, `delete`, `touch`), for proxies such as twemproxy
    /// that do not speak meta. Differences: a store does not return the new
    /// CAS, so the client reads it back with `gets` (one more round trip) and
    /// returns it only if the item still holds exactly what was written
    /// (else `cas: None`); no CAS-guarded delete and no key listing
    /// ([`Error::Unsupported`]); [`Item::last_access_secs`] and
    /// [`Item::ttl_remaining`] are always `None`.
    Text,
}

/// What the client does with keys whose server is marked down (see
/// [`ClientConfig::failure_limit`]).
///
/// The trade-off: memcached servers do not copy data to each other, so
/// moving a key to another server means the session is not found there.
///
/// ```
/// assert_eq!(cgi_session_memcache_client::FailurePolicy::default(), cgi_session_memcache_client::FailurePolicy::Consistent);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Requests for keys of a down server fail at once with
    /// [`Error::Unavailable`] (the session layer reports "store
    /// unavailable"); keys of other servers are unaffected. When the server
    /// returns, its keys are where they were (if it kept its data). Nobody
    /// is logged out silently, and no two copies of a session ever exist.
    #[default]
    Consistent,
    /// Keys of a down server go to the next live server on the ring (what
    /// libmemcached's and twemproxy's `auto_eject_hosts` do): requests keep
    /// working, but those users start with a fresh session (their data is
    /// on the dead server), and when the server returns their keys move
    /// back, where a **stale copy** may still sit if the server was only
    /// hung or partitioned; writes made meanwhile are then lost. Clients
    /// that disagree on which servers are down also disagree on where keys
    /// are. Use it when availability matters more than session continuity.
    Failover,
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
            servers: Vec::new(),
            distribution: Distribution::Ketama,
            failure_policy: FailurePolicy::Consistent,
            failure_limit: None,
            retry_delay: Duration::from_secs(2),
            protocol: Protocol::Meta,
            gat: true,
            tls: None,
            auth: None,
        }
    }

    /// Settings for a pool of servers (each a `"host:port"`, a
    /// `("host:port", weight)` or a [`ServerSpec`]) with the defaults.
    ///
    /// ```
    /// use cgi_session_memcache_client::{ClientConfig, Distribution, FailurePolicy};
    /// let c = ClientConfig::pool(["127.0.0.1:11211", "127.0.0.1:11212"])
    ///     .distribution(Distribution::Modula)
    ///     .failure_policy(FailurePolicy::Failover);
    /// assert_eq!(c.servers.len(), 2);
    /// assert_eq!(c.server, "127.0.0.1:11211");
    /// ```
    pub fn pool<I, S>(servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<ServerSpec>,
    {
        ClientConfig::new("").servers(servers)
    }

    /// Sets the servers (replacing [`server`](Self::server) by the first).
    ///
    /// ```
    /// use cgi_session_memcache_client::ClientConfig;
    /// let c = ClientConfig::new("a:1").servers([("b:1", 1), ("c:1", 3)]);
    /// assert_eq!(c.server, "b:1");
    /// assert_eq!(c.servers[1].weight, 3);
    /// ```
    pub fn servers<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<ServerSpec>,
    {
        self.servers = servers.into_iter().map(Into::into).collect();
        if let Some(first) = self.servers.first() {
            self.server = first.addr.clone();
        }
        self
    }

    /// Sets [`distribution`](Self::distribution).
    ///
    /// ```
    /// use cgi_session_memcache_client::{ClientConfig, Distribution};
    /// let c = ClientConfig::new("h:1").distribution(Distribution::Modula);
    /// assert_eq!(c.distribution, Distribution::Modula);
    /// ```
    pub fn distribution(mut self, d: Distribution) -> Self {
        self.distribution = d;
        self
    }

    /// Sets [`failure_policy`](Self::failure_policy).
    ///
    /// ```
    /// use cgi_session_memcache_client::{ClientConfig, FailurePolicy};
    /// let c = ClientConfig::new("h:1").failure_policy(FailurePolicy::Failover);
    /// assert_eq!(c.failure_policy, FailurePolicy::Failover);
    /// ```
    pub fn failure_policy(mut self, p: FailurePolicy) -> Self {
        self.failure_policy = p;
        self
    }

    /// Sets [`failure_limit`](Self::failure_limit).
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::ClientConfig::new("h:1").failure_limit(5).failure_limit, Some(5));
    /// ```
    pub fn failure_limit(mut self, n: u32) -> Self {
        self.failure_limit = Some(n);
        self
    }

    /// Sets [`retry_delay`](Self::retry_delay).
    ///
    /// ```
    /// use std::time::Duration;
    /// let c = cgi_session_memcache_client::ClientConfig::new("h:1").retry_delay(Duration::from_secs(5));
    /// assert_eq!(c.retry_delay, Duration::from_secs(5));
    /// ```
    pub fn retry_delay(mut self, d: Duration) -> Self {
        self.retry_delay = d;
        self
    }

    /// Sets [`protocol`](Self::protocol).
    ///
    /// ```
    /// use cgi_session_memcache_client::{ClientConfig, Protocol};
    /// assert_eq!(ClientConfig::new("h:1").protocol(Protocol::Text).protocol, Protocol::Text);
    /// ```
    pub fn protocol(mut self, p: Protocol) -> Self {
        self.protocol = p;
        self
    }

    /// Sets [`tls`](Self::tls): connect to every server over TLS, verifying
    /// its certificate against the CA file(s).
    ///
    /// ```
    /// use cgi_session_memcache_client::{ClientConfig, TlsConfig};
    /// let c = ClientConfig::new("localhost:11211").tls(TlsConfig::new().ca_file("ca.pem"));
    /// assert!(c.tls.is_some());
    /// ```
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets [`auth`](Self::auth): log in as `username` on every new
    /// connection (memcached's `-Y` authentication).
    ///
    /// ```
    /// use cgi_session_memcache_client::ClientConfig;
    /// let c = ClientConfig::new("127.0.0.1:11211").auth("app", "s3cret");
    /// assert_eq!(c.auth.as_ref().map(|a| a.username()), Some("app"));
    /// assert!(!format!("{c:?}").contains("s3cret"));
    /// ```
    pub fn auth(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some(Credentials::new(username, password));
        self
    }

    /// Sets [`gat`](Self::gat).
    ///
    /// ```
    /// assert!(!cgi_session_memcache_client::ClientConfig::new("h:1").gat(false).gat);
    /// ```
    pub fn gat(mut self, on: bool) -> Self {
        self.gat = on;
        self
    }

    /// The effective server list.
    fn server_list(&self) -> Vec<ServerSpec> {
        if self.servers.is_empty() {
            vec![ServerSpec::new(self.server.clone())]
        } else {
            self.servers.clone()
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
    /// fetch (checked on 1.6.18: a fetch 2 s after the set reports 2).
    /// Whether a fetch resets it depends on memcached's internal LRU
    /// bookkeeping (usually not within a minute, but not always: a test that
    /// relied on it was flaky), so treat it as approximate.
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

/// One line of `lru_crawler metadump`.
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

/// An async memcached client over one server or a pool of servers. Cheap to
/// clone (shares the connections); drop every clone to close them.
///
/// With several servers ([`ClientConfig::pool`]) each key lives on one
/// server chosen by [`Distribution`] (ketama by default); a server that
/// fails [`ClientConfig::failure_limit`] times in a row is marked down for
/// [`ClientConfig::retry_delay`] and handled per [`FailurePolicy`]. Each
/// server has its own connections, so a dead or hung server never delays
/// requests for keys of the others.
///
/// ```no_run
/// # async fn demo() -> cgi_session_memcache_client::Result<()> {
/// use cgi_session_memcache_client::{Client, ClientConfig};
/// let client = Client::connect(ClientConfig::new("127.0.0.1:11211")).await?;
/// println!("memcached {}", client.version().await?);
/// let pool = Client::connect(ClientConfig::pool(["10.0.0.1:11211", "10.0.0.2:11211"])).await?;
/// for (server, stats) in pool.stats_per_server().await {
///     println!("{server}: {:?} items", stats.map(|s| s["curr_items"].clone()));
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// One pool per server, in configuration order.
    pools: Vec<ServerPool>,
    ring: Ring,
    policy: FailurePolicy,
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
            .field("policy", &self.inner.policy)
            .finish()
    }
}

/// The answers of [`Client::stats_per_server`] and the other per-server
/// operations: `(server address, its answer)` in configuration order.
pub type PerServer<T> = Vec<(String, Result<T>)>;

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

fn unexpected(pool: &ServerPool, cmd: &str, reply: &Reply) -> Error {
    Error::protocol(
        pool.server(),
        format!("unexpected reply {} to {cmd}", reply.describe()),
    )
}

impl Client {
    /// Creates a client. Unless [`ClientConfig::lazy`] is set, opens every
    /// pooled connection to every server now, so a wrong address fails at
    /// start-up (use `lazy(true)` to start while some servers are down).
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] or [`Error::Timeout`] naming the server if a
    /// non-lazy connect fails; [`Error::Tls`] or [`Error::Auth`] if its TLS
    /// handshake or login fails; [`Error::Config`] for TLS files that cannot
    /// be read or credentials memcached cannot carry.
    ///
    /// ```no_run
    /// # async fn demo() -> cgi_session_memcache_client::Result<()> {
    /// use cgi_session_memcache_client::{Client, ClientConfig};
    /// let client = Client::connect(ClientConfig::new("127.0.0.1:11211").pool_size(4)).await?;
    /// # drop(client); Ok(()) }
    /// ```
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let specs = config.server_list();
        let failure_limit = config
            .failure_limit
            .unwrap_or(if specs.len() > 1 { 2 } else { 0 });
        let security = secure::Security::new(config.tls.as_ref(), config.auth.as_ref())?;
        let pools: Vec<ServerPool> = specs
            .iter()
            .map(|spec| {
                Ok(ServerPool::new(PoolSettings {
                    server: spec.addr.clone(),
                    size: config.pool_size.max(1),
                    timeout: config.timeout,
                    connect_timeout: config.connect_timeout,
                    max_value_size: config.max_value_size,
                    protocol: spec.protocol.unwrap_or(config.protocol),
                    gat: config.gat,
                    failure_limit,
                    retry_delay: config.retry_delay,
                    server_name: security.server_name_for(&spec.addr)?,
                    security: security.clone(),
                }))
            })
            .collect::<Result<_>>()?;
        let weights: Vec<(String, u32)> =
            specs.iter().map(|s| (s.addr.clone(), s.weight)).collect();
        if !config.lazy {
            for pool in &pools {
                pool.connect_all().await?;
            }
        }
        Ok(Client {
            inner: Arc::new(Inner {
                pools,
                ring: Ring::new(config.distribution, &weights),
                policy: config.failure_policy,
            }),
        })
    }

    /// The pool a key's requests go to now.
    fn route(&self, key: &[u8]) -> &ServerPool {
        &self.inner.pools[self.server_for(key)]
    }

    /// The index (into [`servers`](Self::servers)) of the server that
    /// requests for `key` go to now: its server on the ring, or with
    /// [`FailurePolicy::Failover`] and that server marked down, the next live
    /// one.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cgi_session_memcache_client::{Client, ClientConfig};
    /// let client = Client::connect(ClientConfig::pool(["127.0.0.1:1", "127.0.0.1:2"]).lazy(true)).await.unwrap();
    /// assert!(client.server_for("sessions:abc") < 2);
    /// # });
    /// ```
    pub fn server_for(&self, key: impl AsRef<[u8]>) -> usize {
        let inner = &self.inner;
        let key = key.as_ref();
        if inner.pools.len() == 1 {
            return 0;
        }
        match inner.policy {
            FailurePolicy::Failover => inner
                .ring
                .pick(key, |i| inner.pools[i].takes_requests())
                .unwrap_or_else(|| inner.ring.primary(key)),
            _ => inner.ring.primary(key),
        }
    }

    /// Up to `n` distinct servers for `key` in ring order, whether up or
    /// not: its own server first, then the next distinct servers on the ring
    /// (for [`Distribution::Modula`], Cache::Memcached's rehash sequence).
    /// Replicated stores put their copies there.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cgi_session_memcache_client::{Client, ClientConfig};
    /// let client = Client::connect(ClientConfig::pool(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]).lazy(true)).await.unwrap();
    /// let at = client.placement("sessions:abc", 2);
    /// assert_eq!(at.len(), 2);
    /// assert_ne!(at[0], at[1]);
    /// # });
    /// ```
    pub fn placement(&self, key: impl AsRef<[u8]>, n: usize) -> Vec<usize> {
        self.inner.ring.distinct(key.as_ref(), n)
    }

    /// Whether server `server` (an index into [`servers`](Self::servers)) is
    /// marked down now: it failed [`ClientConfig::failure_limit`] times in a
    /// row and no probe request has succeeded since. While it is, its
    /// requests fail at once, except one probe request per
    /// [`ClientConfig::retry_delay`]; the first probe that gets an answer
    /// marks it up.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cgi_session_memcache_client::{Client, ClientConfig};
    /// let client = Client::connect(ClientConfig::new("127.0.0.1:1").lazy(true)).await.unwrap();
    /// assert!(!client.is_marked_down(0));
    /// # });
    /// ```
    pub fn is_marked_down(&self, server: usize) -> bool {
        self.inner.pools.get(server).is_some_and(|p| p.is_down())
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

    fn pool_at(&self, server: usize) -> Result<&ServerPool> {
        self.inner.pools.get(server).ok_or(Error::NoSuchServer {
            index: server,
            count: self.inner.pools.len(),
        })
    }

    async fn meta(
        &self,
        pool: &ServerPool,
        cmd: &str,
        key: &[u8],
        mut args: Vec<String>,
        data: Option<&[u8]>,
    ) -> Result<Reply> {
        let opaque = pool.next_opaque();
        args.push(format!("O{opaque}"));
        let mut bytes = Vec::with_capacity(64 + key.len() + data.map_or(0, |d| d.len() + 2));
        encode_meta(&mut bytes, cmd, key, &args);
        if let Some(data) = data {
            bytes.extend_from_slice(data);
            bytes.extend_from_slice(b"\r\n");
        }
        tracing::debug!(server = %pool.server(), cmd, key = %key::log_prefix(key), "memcached request");
        if matches!(cmd, "ms" | "md") {
            pool.call_write(bytes, ReplyKind::Meta, Check::Opaque(opaque))
                .await
        } else {
            pool.call(bytes, ReplyKind::Meta, Check::Opaque(opaque))
                .await
        }
    }

    /// Sends one classic text-protocol request (`write`: a store or delete, see
    /// [`Error::OutcomeUnknown`]).
    async fn text(
        &self,
        pool: &ServerPool,
        line: String,
        key: &[u8],
        data: Option<&[u8]>,
        kind: ReplyKind,
        write: bool,
    ) -> Result<Reply> {
        let mut bytes = line.into_bytes();
        bytes.extend_from_slice(b"\r\n");
        if let Some(data) = data {
            bytes.extend_from_slice(data);
            bytes.extend_from_slice(b"\r\n");
        }
        tracing::debug!(server = %pool.server(), key = %key::log_prefix(key), "memcached text request");
        let check = if kind == ReplyKind::TextGet {
            Check::Key(key.to_vec())
        } else {
            Check::None
        };
        if write {
            pool.call_write(bytes, kind, check).await
        } else {
            pool.call(bytes, kind, check).await
        }
    }

    /// Reads a key (`mg <key> v ...`). With [`GetOptions::touch_ttl`] it also
    /// sets a new exptime, and with [`GetOptions::cas`] returns the CAS token,
    /// all in one round trip. A miss is `Ok(None)`. In [`Protocol::Text`]:
    /// `get`/`gets`, or `gat`/`gats` to touch.
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
        self.get_in(self.route(key), key, opts).await
    }

    /// [`get`](Self::get) on one given server (an index into
    /// [`servers`](Self::servers)), whatever the ring says.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get); [`Error::NoSuchServer`] for a bad index.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// use cgi_session_memcache_client::GetOptions;
    /// let copy = client.get_on(1, "sessions:abc", GetOptions::new().cas(true)).await?;
    /// # let _ = copy; Ok(()) }
    /// ```
    pub async fn get_on(
        &self,
        server: usize,
        key: impl AsRef<[u8]>,
        opts: GetOptions,
    ) -> Result<Option<Item>> {
        let key = key.as_ref();
        validate_key(key)?;
        self.get_in(self.pool_at(server)?, key, opts).await
    }

    async fn get_in(
        &self,
        pool: &ServerPool,
        key: &[u8],
        opts: GetOptions,
    ) -> Result<Option<Item>> {
        if pool.settings().protocol == Protocol::Text {
            return self.text_get(pool, key, opts).await;
        }
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
        let reply = self.meta(pool, "mg", key, args, None).await?;
        let server = pool.server();
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
            other => Err(unexpected(pool, "mg", other)),
        }
    }

    async fn text_get(
        &self,
        pool: &ServerPool,
        key: &[u8],
        opts: GetOptions,
    ) -> Result<Option<Item>> {
        let k = String::from_utf8_lossy(key);
        let cmd = if opts.cas { "gets" } else { "get" };
        let reply = match opts.touch_ttl {
            Some(ttl) if pool.settings().gat => {
                let cmd = if opts.cas { "gats" } else { "gat" };
                self.text(
                    pool,
                    format!("{cmd} {ttl} {k}"),
                    key,
                    None,
                    ReplyKind::TextGet,
                    false,
                )
                .await?
            }
            Some(ttl) => {
                // No gat (twemproxy): read and touch, pipelined.
                let read = self.text(
                    pool,
                    format!("{cmd} {k}"),
                    key,
                    None,
                    ReplyKind::TextGet,
                    false,
                );
                let touch = self.touch_in(pool, key, ttl);
                let (read, touched) = tokio::join!(read, touch);
                let reply = read?;
                touched?;
                reply
            }
            None => {
                self.text(
                    pool,
                    format!("{cmd} {k}"),
                    key,
                    None,
                    ReplyKind::TextGet,
                    false,
                )
                .await?
            }
        };
        match reply {
            Reply::Value(None) => Ok(None),
            Reply::Value(Some(v)) => Ok(Some(Item {
                value: v.value,
                cas: if opts.cas { v.cas } else { None },
                flags: opts.flags.then_some(v.flags),
                last_access_secs: None,
                ttl_remaining: None,
            })),
            other => Err(unexpected(pool, cmd, &other)),
        }
    }

    /// Stores a value (`ms <key> <len> T<ttl> F<flags> [C<cas>] M<mode> c`)
    /// and returns the new CAS token when stored. In [`Protocol::Text`]:
    /// `set`/`add`/`replace`, or `cas` when a CAS token is given (no new CAS
    /// is returned).
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
        validate_key(key)?;
        self.set_in(self.route(key), key, value.as_ref(), opts)
            .await
    }

    /// [`set`](Self::set) on one given server.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set); [`Error::NoSuchServer`] for a bad index.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// use cgi_session_memcache_client::SetOptions;
    /// client.set_on(2, "sessions:abc", b"{}", SetOptions::new().ttl(60)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_on(
        &self,
        server: usize,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: SetOptions,
    ) -> Result<StoreStatus> {
        let key = key.as_ref();
        validate_key(key)?;
        self.set_in(self.pool_at(server)?, key, value.as_ref(), opts)
            .await
    }

    async fn set_in(
        &self,
        pool: &ServerPool,
        key: &[u8],
        value: &[u8],
        opts: SetOptions,
    ) -> Result<StoreStatus> {
        let max = pool.settings().max_value_size;
        if value.len() > max {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max,
            });
        }
        if pool.settings().protocol == Protocol::Text {
            let k = String::from_utf8_lossy(key);
            let (cmd, cas) = match (opts.cas, opts.mode) {
                (Some(cas), _) => ("cas", format!(" {cas}")),
                (None, SetMode::Add) => ("add", String::new()),
                (None, SetMode::Replace) => ("replace", String::new()),
                (None, _) => ("set", String::new()),
            };
            let line = format!("{cmd} {k} {} {} {}{cas}", opts.flags, opts.ttl, value.len());
            let reply = self
                .text(pool, line, key, Some(value), ReplyKind::TextStatus, true)
                .await?;
            return match reply {
                Reply::Status(TextStatus::Stored) => Ok(StoreStatus::Stored {
                    cas: self.text_cas_of(pool, key, value, opts.flags).await,
                }),
                Reply::Status(TextStatus::NotStored) => Ok(StoreStatus::NotStored),
                Reply::Status(TextStatus::Exists) => Ok(StoreStatus::Exists),
                Reply::Status(TextStatus::NotFound) => Ok(StoreStatus::NotFound),
                other => Err(unexpected(pool, cmd, &other)),
            };
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
        let reply = self.meta(pool, "ms", key, args, Some(value)).await?;
        match meta_code(&reply) {
            Some(MetaCode::Hd) => Ok(StoreStatus::Stored {
                cas: parse_num(&reply, b'c', pool.server())?,
            }),
            Some(MetaCode::Ns) => Ok(StoreStatus::NotStored),
            Some(MetaCode::Ex) => Ok(StoreStatus::Exists),
            Some(MetaCode::Nf) => Ok(StoreStatus::NotFound),
            _ => Err(unexpected(pool, "ms", &reply)),
        }
    }

    /// The text protocol does not return the new CAS after a store: read it
    /// back with `gets`, and trust it only if the item still holds exactly
    /// what was written (then a CAS save based on it cannot overwrite
    /// anybody else's data). `None` if it changed or the read fails.
    async fn text_cas_of(
        &self,
        pool: &ServerPool,
        key: &[u8],
        value: &[u8],
        flags: u32,
    ) -> Option<u64> {
        let line = format!("gets {}", String::from_utf8_lossy(key));
        match self
            .text(pool, line, key, None, ReplyKind::TextGet, false)
            .await
        {
            Ok(Reply::Value(Some(v))) if v.value == value && v.flags == flags => v.cas,
            _ => None,
        }
    }

    /// Deletes a key (`md <key> [C<cas>]`). With a CAS token it deletes only
    /// if the item is unchanged (a safe lock release).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] before sending; [`Error::Unsupported`] for a
    /// CAS-guarded delete in [`Protocol::Text`]; the connection errors.
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
        self.delete_in(self.route(key), key, cas).await
    }

    /// [`delete`](Self::delete) on one given server.
    ///
    /// # Errors
    ///
    /// As [`delete`](Self::delete); [`Error::NoSuchServer`] for a bad index.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// client.delete_on(0, "sessions:abc", None).await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_on(
        &self,
        server: usize,
        key: impl AsRef<[u8]>,
        cas: Option<u64>,
    ) -> Result<DeleteStatus> {
        let key = key.as_ref();
        validate_key(key)?;
        self.delete_in(self.pool_at(server)?, key, cas).await
    }

    async fn delete_in(
        &self,
        pool: &ServerPool,
        key: &[u8],
        cas: Option<u64>,
    ) -> Result<DeleteStatus> {
        if pool.settings().protocol == Protocol::Text {
            if cas.is_some() {
                return Err(Error::Unsupported {
                    server: pool.server().to_string(),
                    what:
                        "a CAS-guarded delete (the text protocol has none; use the meta protocol)",
                });
            }
            let line = format!("delete {}", String::from_utf8_lossy(key));
            return match self
                .text(pool, line, key, None, ReplyKind::TextStatus, true)
                .await?
            {
                Reply::Status(TextStatus::Deleted) => Ok(DeleteStatus::Deleted),
                Reply::Status(TextStatus::NotFound) => Ok(DeleteStatus::NotFound),
                other => Err(unexpected(pool, "delete", &other)),
            };
        }
        let args = cas.map(|c| vec![format!("C{c}")]).unwrap_or_default();
        let reply = self.meta(pool, "md", key, args, None).await?;
        match meta_code(&reply) {
            Some(MetaCode::Hd) => Ok(DeleteStatus::Deleted),
            Some(MetaCode::Nf) => Ok(DeleteStatus::NotFound),
            Some(MetaCode::Ex) => Ok(DeleteStatus::Exists),
            _ => Err(unexpected(pool, "md", &reply)),
        }
    }

    /// Sets a new exptime without reading the value (`mg <key> T<ttl>`;
    /// `touch` in [`Protocol::Text`]). Returns false if the key does not
    /// exist.
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
        self.touch_in(self.route(key), key, exptime).await
    }

    /// [`touch`](Self::touch) on one given server.
    ///
    /// # Errors
    ///
    /// As [`touch`](Self::touch); [`Error::NoSuchServer`] for a bad index.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// client.touch_on(1, "sessions:abc", 1800).await?;
    /// # Ok(()) }
    /// ```
    pub async fn touch_on(
        &self,
        server: usize,
        key: impl AsRef<[u8]>,
        exptime: u32,
    ) -> Result<bool> {
        let key = key.as_ref();
        validate_key(key)?;
        self.touch_in(self.pool_at(server)?, key, exptime).await
    }

    async fn touch_in(&self, pool: &ServerPool, key: &[u8], exptime: u32) -> Result<bool> {
        if pool.settings().protocol == Protocol::Text {
            let line = format!("touch {} {exptime}", String::from_utf8_lossy(key));
            return match self
                .text(pool, line, key, None, ReplyKind::TextStatus, false)
                .await?
            {
                Reply::Status(TextStatus::Touched) => Ok(true),
                Reply::Status(TextStatus::NotFound) => Ok(false),
                other => Err(unexpected(pool, "touch", &other)),
            };
        }
        let reply = self
            .meta(pool, "mg", key, vec![format!("T{exptime}")], None)
            .await?;
        match meta_code(&reply) {
            Some(MetaCode::Hd) => Ok(true),
            Some(MetaCode::En) => Ok(false),
            _ => Err(unexpected(pool, "mg T", &reply)),
        }
    }

    /// Sends `mn` and waits for `MN` (`version` in [`Protocol::Text`]): a
    /// cheap liveness check of the first server.
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
        if pool.settings().protocol == Protocol::Text {
            return version_in(pool).await.map(|_| ());
        }
        let reply = pool
            .call(b"mn\r\n".to_vec(), ReplyKind::Meta, Check::None)
            .await?;
        match meta_code(&reply) {
            Some(MetaCode::Mn) => Ok(()),
            _ => Err(Error::protocol(
                pool.server(),
                format!("unexpected reply {} to mn", reply.describe()),
            )),
        }
    }

    /// The server's version string, e.g. `"1.6.18"`; for a pool, that of
    /// the first server that answers (see
    /// [`version_per_server`](Self::version_per_server)).
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
        if self.inner.pools.len() == 1 {
            return version_in(self.first_pool()).await;
        }
        let mut first_err = None;
        for (_, answer) in self.version_per_server().await {
            match answer {
                Ok(v) => return Ok(v),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| Error::unavailable("", "no server configured")))
    }

    /// The first server's general counters (`stats`): `cmd_get`,
    /// `get_hits`, `curr_items`, `evictions`, ... (see
    /// [`stats_per_server`](Self::stats_per_server) for a pool).
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
        stats_in(self.first_pool(), b"stats\r\n".to_vec()).await
    }

    /// `stats <arg>` on the first server, e.g. `settings`, `items`,
    /// `slabs`. `arg` must be printable ASCII (spaces allowed between words).
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
        stats_in(self.first_pool(), stats_arg_bytes(arg)?).await
    }

    /// The server's largest item size in bytes (`item_size_max` from
    /// `stats settings`; set with memcached's `-I`); for a pool, the
    /// smallest among the servers that answer.
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
        if self.inner.pools.len() == 1 {
            return item_size_max_in(self.first_pool()).await;
        }
        let mut min: Option<u64> = None;
        let mut first_err = None;
        for (_, answer) in self.item_size_max_per_server().await {
            match answer {
                Ok(v) => min = Some(min.map_or(v, |m| m.min(v))),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        min.ok_or_else(|| {
            first_err.unwrap_or_else(|| Error::unavailable("", "no server configured"))
        })
    }

    /// Lists the items the LRU crawler reaches (`lru_crawler metadump hash`);
    /// for a pool, of every server (an error if any server fails, so a
    /// listing is never silently partial),
    /// on a dedicated connection (the server refuses to pipeline other
    /// commands with it). Lines that cannot be understood are reported in
    /// [`Metadump::skipped`] with their line numbers. The whole dump is held
    /// in memory. The per-exchange timeout applies to each read. See
    /// [`metadump_per_server`](Self::metadump_per_server) for the answers
    /// one by one.
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
        if self.inner.pools.len() == 1 {
            return metadump_in(self.first_pool()).await;
        }
        let mut all = Metadump::default();
        for (_, dump) in self.metadump_per_server().await {
            let dump = dump?;
            all.entries.extend(dump.entries);
            all.skipped.extend(dump.skipped);
        }
        Ok(all)
    }

    /// Runs `op` on every server at once; answers in configuration order.
    async fn per_server<T, F, Fut>(&self, op: F) -> PerServer<T>
    where
        T: Send + 'static,
        F: Fn(Client, usize) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let tasks: Vec<_> = (0..self.inner.pools.len())
            .map(|i| tokio::spawn(op(self.clone(), i)))
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for (i, task) in tasks.into_iter().enumerate() {
            let server = self.inner.pools[i].server().to_string();
            let answer = match task.await {
                Ok(answer) => answer,
                Err(e) => Err(Error::unavailable(
                    &server,
                    format!("the request task failed: {e}"),
                )),
            };
            out.push((server, answer));
        }
        out
    }

    /// [`version`](Self::version) of every server, asked at once.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) {
    /// for (server, version) in client.version_per_server().await {
    ///     println!("{server}: {version:?}");
    /// }
    /// # }
    /// ```
    pub async fn version_per_server(&self) -> PerServer<String> {
        self.per_server(|c, i| async move { version_in(&c.inner.pools[i]).await })
            .await
    }

    /// [`stats`](Self::stats) of every server, asked at once.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) {
    /// for (server, stats) in client.stats_per_server().await {
    ///     println!("{server}: {:?}", stats.map(|s| s.get("curr_items").cloned()));
    /// }
    /// # }
    /// ```
    pub async fn stats_per_server(&self) -> PerServer<HashMap<String, String>> {
        self.per_server(
            |c, i| async move { stats_in(&c.inner.pools[i], b"stats\r\n".to_vec()).await },
        )
        .await
    }

    /// [`stats_arg`](Self::stats_arg) on every server, asked at once.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) {
    /// let settings = client.stats_arg_per_server("settings").await;
    /// # let _ = settings; }
    /// ```
    pub async fn stats_arg_per_server(&self, arg: &str) -> PerServer<HashMap<String, String>> {
        let bytes = stats_arg_bytes(arg);
        self.per_server(move |c, i| {
            let bytes = bytes.clone();
            async move { stats_in(&c.inner.pools[i], bytes?).await }
        })
        .await
    }

    /// [`item_size_max`](Self::item_size_max) of every server, asked at once.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) {
    /// let limits = client.item_size_max_per_server().await;
    /// # let _ = limits; }
    /// ```
    pub async fn item_size_max_per_server(&self) -> PerServer<u64> {
        self.per_server(|c, i| async move { item_size_max_in(&c.inner.pools[i]).await })
            .await
    }

    /// [`metadump`](Self::metadump) of every server, at once.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) {
    /// for (server, dump) in client.metadump_per_server().await {
    ///     println!("{server}: {:?} keys", dump.map(|d| d.entries.len()));
    /// }
    /// # }
    /// ```
    pub async fn metadump_per_server(&self) -> PerServer<Metadump> {
        self.per_server(|c, i| async move { metadump_in(&c.inner.pools[i]).await })
            .await
    }
}

fn stats_arg_bytes(arg: &str) -> Result<Vec<u8>> {
    if arg.trim().is_empty() || !arg.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(Error::InvalidKey {
            reason: "the stats argument is empty or has control characters".into(),
        });
    }
    Ok(format!("stats {arg}\r\n").into_bytes())
}

async fn version_in(pool: &ServerPool) -> Result<String> {
    match pool
        .call(b"version\r\n".to_vec(), ReplyKind::Version, Check::None)
        .await?
    {
        Reply::Version(v) => Ok(v),
        other => Err(Error::protocol(
            pool.server(),
            format!("unexpected reply {} to version", other.describe()),
        )),
    }
}

async fn stats_in(pool: &ServerPool, bytes: Vec<u8>) -> Result<HashMap<String, String>> {
    match pool.call(bytes, ReplyKind::Stats, Check::None).await? {
        Reply::Stats(lines) => Ok(lines.into_iter().collect()),
        other => Err(Error::protocol(
            pool.server(),
            format!("unexpected reply {} to stats", other.describe()),
        )),
    }
}

async fn item_size_max_in(pool: &ServerPool) -> Result<u64> {
    let settings = stats_in(pool, b"stats settings\r\n".to_vec()).await?;
    settings
        .get("item_size_max")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            Error::protocol(
                pool.server(),
                "`stats settings` has no numeric item_size_max",
            )
        })
}

async fn metadump_in(pool: &ServerPool) -> Result<Metadump> {
    let server = pool.server();
    if pool.settings().protocol == Protocol::Text {
        return Err(Error::Unsupported {
            server: server.to_string(),
            what: "listing keys (a proxy such as twemproxy cannot list its servers' keys; use the meta protocol against each memcached)",
        });
    }
    let timeout = pool.settings().timeout;
    let mut stream = pool.connect().await?;
    // `hash` walks the hash table: every item is seen once, including items being moved
    // between LRU segments at that moment, which `metadump all` (a walk of the LRUs) was
    // reported to miss right after they were read.
    conn::write_all(
        &mut stream,
        b"lru_crawler metadump hash\r\n",
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
/// Parses one line of `lru_crawler metadump` output (`key=<url-encoded> exp=... la=... cas=...
/// fetch=... cls=... size=...`). Exposed for fuzzing; [`Client::metadump`] uses it.
///
/// # Errors
/// A description of what is wrong with the line.
///
/// ```
/// let e = cgi_session_memcache_client::parse_metadump_line(
///     b"key=sessions%3Aabc exp=-1 la=1795762418 cas=7 fetch=no cls=1 size=70",
/// ).unwrap();
/// assert_eq!(e.key, b"sessions:abc");
/// assert_eq!(e.exp, None);
/// ```
pub fn parse_metadump_line(line: &[u8]) -> std::result::Result<MetadumpEntry, String> {
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
