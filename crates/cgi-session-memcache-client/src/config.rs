//! Client settings: [`ClientConfig`], the servers of a pool ([`ServerSpec`]), the wire
//! protocol spoken to each ([`Protocol`]) and what happens to keys of a server that is down
//! ([`FailurePolicy`]).

use std::time::Duration;

use crate::dist::Distribution;
use crate::secure::{Credentials, TlsConfig};

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
    /// If true, [`Client::connect`](crate::Client::connect) opens no connection; the first request
    /// does (default false: connect at start-up and fail early).
    pub lazy: bool,
    /// Largest value accepted, sent or received (default 16 MiB). memcached's
    /// own limit is `-I` (1 MiB by default; see [`Client::item_size_max`](crate::Client::item_size_max)).
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
    /// ([`Error::Unsupported`](crate::Error::Unsupported)); [`Item::last_access_secs`](crate::Item::last_access_secs) and
    /// [`Item::ttl_remaining`](crate::Item::ttl_remaining) are always `None`.
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
    /// [`Error::Unavailable`](crate::Error::Unavailable) (the session layer reports "store
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
    pub(crate) fn server_list(&self) -> Vec<ServerSpec> {
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
