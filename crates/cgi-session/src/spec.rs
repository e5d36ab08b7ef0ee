//! [`StoreSpec`]: a store named the way a command line or a configuration file names it (a DSN,
//! and memcached servers or a directory), opened in one call: the memcached client (one server
//! or a pool, TLS, login, replicas), the driver with its key scheme, and the store builder.

use std::path::PathBuf;
use std::sync::Arc;
#[cfg(feature = "memcache")]
use std::time::Duration;

use crate::{
    id_generator_by_name, serializer_for, Driver, DriverArgs, Dsn, FileDriver, MemoryDriver,
    OpenError, SessionStore, SessionStoreBuilder,
};

#[cfg(feature = "memcache")]
use crate::memcache::client::{Client, ClientConfig, Distribution, TlsConfig};
#[cfg(feature = "memcache")]
use crate::memcache::{MemcacheDriver, ReplicatedHandle};

/// memcached's conventional address, used when a memcached DSN is given no servers.
#[cfg(feature = "memcache")]
pub const DEFAULT_MEMCACHED: &str = "127.0.0.1:11211";

/// A store as an operator names it: a DSN plus where its sessions live (memcached servers for
/// `driver:memcache` and `driver:memcached`, a directory for `driver:file`) and how to reach
/// them. [`open`](Self::open) connects and gives the driver; [`builder`](Self::builder) the
/// store builder (serializer and id generator from the DSN).
///
/// The memcached flavours differ in their keys: `driver:memcache` keeps a session under
/// `<prefix><id>` (`sessions:` unless [`prefix`](Self::prefix) says otherwise),
/// `driver:memcached` (Debian's Perl driver) under the bare id, and refuses a prefix.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use cgi_session::{StoreKind, StoreSpec};
///
/// let dir = tempfile::tempdir().unwrap();
/// let spec = StoreSpec::new("driver:file;serializer:default").directory(dir.path());
/// assert_eq!(spec.kind()?, StoreKind::File { directory: dir.path().to_owned() });
/// let store = spec.builder().await?.default_expire(600).build();
/// assert_eq!(store.serializer().name(), "default");
///
/// // memcached: a pool with Perl's Cache::Memcached distribution, one extra copy of each
/// // session; `open` connects (a dead server is an error unless others answer).
/// use cgi_session::memcache::client::Distribution;
/// let pool = StoreSpec::new("driver:memcache")
///     .servers(["127.0.0.1:11211", " 127.0.0.1:11212 "])
///     .distribution(Distribution::Modula)
///     .replicas(1);
/// assert_eq!(
///     pool.kind()?,
///     StoreKind::Memcache {
///         servers: vec!["127.0.0.1:11211".into(), "127.0.0.1:11212".into()],
///         prefix: "sessions:".into(),
///     }
/// );
/// let bare = StoreSpec::new("driver:memcached").prefix("myapp:");
/// assert!(bare.kind().unwrap_err().to_string().contains("bare ids"));
/// # Ok::<(), cgi_session::OpenError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct StoreSpec {
    dsn: String,
    args: DriverArgs,
    /// `None`: [`DEFAULT_MEMCACHED`], or the servers of [`StoreSpec::memcached_config`].
    #[cfg(feature = "memcache")]
    servers: Option<Vec<String>>,
    #[cfg(feature = "memcache")]
    config: ClientConfig,
    #[cfg(feature = "memcache")]
    replicas: Option<usize>,
}

/// What a [`StoreSpec`] names, before anything is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreKind {
    /// `driver:file`: session files in this directory.
    File {
        /// The directory ([`std::env::temp_dir`] unless given).
        directory: PathBuf,
    },
    /// `driver:memory`: inside this process.
    Memory,
    /// `driver:memcache` or `driver:memcached` on these servers.
    #[cfg(feature = "memcache")]
    Memcache {
        /// `host:port` of each server, in pool order.
        servers: Vec<String>,
        /// The key prefix: empty for `driver:memcached` (bare ids).
        prefix: String,
    },
}

/// A driver a [`StoreSpec`] opened, with what its kind of store offers besides.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum OpenedDriver {
    /// `driver:file`.
    File(FileDriver),
    /// `driver:memory`.
    Memory(MemoryDriver),
    /// `driver:memcache` or `driver:memcached`.
    #[cfg(feature = "memcache")]
    Memcache(Box<OpenedMemcache>),
}

/// The memcached side of an [`OpenedDriver`].
#[cfg(feature = "memcache")]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OpenedMemcache {
    /// The driver: over [`replicated`](Self::replicated) with [`StoreSpec::replicas`], else over
    /// [`client`](Self::client).
    pub driver: MemcacheDriver,
    /// The client over every server; `None` when the [`DriverArgs`] brought their own handle.
    pub client: Option<Client>,
    /// The replicating handle ([`StoreSpec::replicas`]).
    pub replicated: Option<ReplicatedHandle>,
    /// The servers of the pool that did not answer when it was opened, with why: the pool
    /// works with the others (sessions on these fail as unavailable until they are back).
    pub down: Vec<(String, crate::memcache::client::Error)>,
}

impl OpenedDriver {
    /// The driver, for a [`SessionStore`] or for listing, loading and removing sessions.
    pub fn driver(&self) -> Arc<dyn Driver> {
        match self {
            OpenedDriver::File(d) => Arc::new(d.clone()),
            OpenedDriver::Memory(d) => Arc::new(d.clone()),
            #[cfg(feature = "memcache")]
            OpenedDriver::Memcache(m) => Arc::new(m.driver.clone()),
        }
    }
}

impl StoreSpec {
    /// A store named by `dsn` (CGI::Session's DSN; empty: `driver:file`) with every default:
    /// the system's temp directory for `driver:file`, [`DEFAULT_MEMCACHED`] for memcached.
    pub fn new(dsn: impl Into<String>) -> Self {
        Self {
            dsn: dsn.into(),
            args: DriverArgs::new(),
            #[cfg(feature = "memcache")]
            servers: None,
            #[cfg(feature = "memcache")]
            config: ClientConfig::new(DEFAULT_MEMCACHED),
            #[cfg(feature = "memcache")]
            replicas: None,
        }
    }

    /// The driver's other arguments (id generator files, the memory driver's capacity, a
    /// memcached client of your own: [`DriverArgs::handle`], which is then used instead of
    /// connecting to the spec's servers). [`directory`](Self::directory), [`prefix`](Self::prefix) and
    /// [`hashed_keys`](Self::hashed_keys) given later apply on top.
    pub fn args(mut self, args: DriverArgs) -> Self {
        self.args = args;
        self
    }

    /// The directory of `driver:file`.
    pub fn directory(mut self, dir: impl Into<PathBuf>) -> Self {
        self.args = self.args.directory(dir);
        self
    }

    /// memcached servers, `host:port` each (surrounding spaces and empty entries are
    /// dropped; none left is an error when the store is opened). Several form a pool.
    #[cfg(feature = "memcache")]
    pub fn servers<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.servers = Some(
            servers
                .into_iter()
                .map(|s| s.as_ref().trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        );
        self
    }

    /// The client settings (timeouts, TLS, login, distribution, pool size...) as a whole; its
    /// servers are used unless [`servers`](Self::servers) is given.
    #[cfg(feature = "memcache")]
    pub fn memcached_config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// How keys are spread over several servers: it must match the application's client
    /// (ketama by default; modula is Perl's Cache::Memcached).
    #[cfg(feature = "memcache")]
    pub fn distribution(mut self, distribution: Distribution) -> Self {
        self.config = self.config.distribution(distribution);
        self
    }

    /// The deadline for connecting to a server and for each exchange with it.
    #[cfg(feature = "memcache")]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config = self.config.timeout(timeout).connect_timeout(timeout);
        self
    }

    /// Connections per server.
    #[cfg(feature = "memcache")]
    pub fn pool_size(mut self, connections: usize) -> Self {
        self.config = self.config.pool_size(connections);
        self
    }

    /// TLS to every server (memcached `-Z`).
    #[cfg(feature = "memcache")]
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.config = self.config.tls(tls);
        self
    }

    /// Log in to memcached (`-Y`) on every connection.
    #[cfg(feature = "memcache")]
    pub fn auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.config = self.config.auth(user, password);
        self
    }

    /// The application keeps each session on `replicas` more servers of the pool
    /// ([`ReplicatedHandle`]): the driver then reads and writes every copy as it does. (Not
    /// applied over a handle of your own given with [`args`](Self::args).)
    #[cfg(feature = "memcache")]
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = Some(replicas);
        self
    }

    /// The key prefix of `driver:memcache` (default `sessions:`); `driver:memcached` takes
    /// none.
    #[cfg(feature = "memcache")]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.args = self.args.prefix(prefix);
        self
    }

    /// Sessions under SHA-256 digests of their ids (memcached drivers).
    #[cfg(feature = "memcache")]
    pub fn hashed_keys(mut self, on: bool) -> Self {
        self.args = self.args.hashed_keys(on);
        self
    }

    /// The DSN, parsed.
    fn dsn(&self) -> Result<Dsn, OpenError> {
        Ok(Dsn::parse(&self.dsn)?)
    }

    /// What the spec names: the DSN's driver with its directory or servers and key prefix,
    /// checked (an unknown driver, an empty server list, a prefix for `driver:memcached` are
    /// errors), without opening anything.
    ///
    /// # Errors
    /// [`OpenError::Dsn`] saying what is wrong.
    pub fn kind(&self) -> Result<StoreKind, OpenError> {
        let dsn = self.dsn()?;
        match dsn.driver.as_str() {
            "file" => Ok(StoreKind::File {
                directory: self
                    .args
                    .directory
                    .clone()
                    .unwrap_or_else(std::env::temp_dir),
            }),
            "memory" => Ok(StoreKind::Memory),
            #[cfg(feature = "memcache")]
            flavour @ ("memcache" | "memcached") => Ok(StoreKind::Memcache {
                servers: self.server_list()?,
                prefix: crate::key_prefix(flavour, self.args.prefix.as_deref())?,
            }),
            other => Err(crate::unknown("driver", other, crate::DRIVERS).into()),
        }
    }

    #[cfg(feature = "memcache")]
    fn server_list(&self) -> Result<Vec<String>, OpenError> {
        let servers = match &self.servers {
            Some(servers) => servers.clone(),
            None if self.config.servers.is_empty() => vec![self.config.server.clone()],
            None => self.config.servers.iter().map(|s| s.addr.clone()).collect(),
        };
        if servers.is_empty() {
            return Err(crate::DsnError::Argument(
                "no memcached server given: name at least one host:port".to_owned(),
            )
            .into());
        }
        Ok(servers)
    }

    /// The client settings for the spec's servers (all of them: a pool when several).
    ///
    /// # Errors
    /// [`OpenError::Dsn`] when no server is given.
    #[cfg(feature = "memcache")]
    pub fn client_config(&self) -> Result<ClientConfig, OpenError> {
        let servers = self.server_list()?;
        if self.servers.is_none() {
            return Ok(self.config.clone());
        }
        Ok(self.config.clone().servers(servers))
    }

    /// Connects the client over the spec's servers. With a pool, servers that do not answer
    /// are returned with why, and the client works with the others (it is then
    /// [`lazy`](ClientConfig::lazy): a server that comes back is used again); only when no
    /// server answers does it fail. A single server must answer.
    ///
    /// # Errors
    /// [`OpenError::Memcached`] naming the server (unreachable, TLS or login refused);
    /// [`OpenError::Dsn`] when no server is given.
    #[cfg(feature = "memcache")]
    pub async fn connect(
        &self,
    ) -> Result<(Client, Vec<(String, crate::memcache::client::Error)>), OpenError> {
        let config = self.client_config()?;
        match Client::connect(config.clone()).await {
            Ok(client) => Ok((client, Vec::new())),
            Err(e) if e.is_unavailable() && self.server_list()?.len() > 1 => {
                let client = Client::connect(config.lazy(true)).await?;
                // The one place the facade asks each server on its own.
                let answers = client
                    .each_server(|s| async move { s.version().await })
                    .await;
                let total = answers.len();
                let down: Vec<_> = answers
                    .into_iter()
                    .filter_map(|(server, answer)| answer.err().map(|e| (server, e)))
                    .collect();
                if down.len() == total {
                    return Err(e.into());
                }
                Ok((client, down))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The memcached driver of the spec's flavour and key scheme over `handle` (a client, a
    /// [`ReplicatedHandle`], ...).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cgi_session::memcache::client::{Client, ClientConfig};
    /// use cgi_session::{SessionId, StoreSpec};
    ///
    /// let client = Client::connect(ClientConfig::new("127.0.0.1:1").lazy(true)).await.unwrap();
    /// let id = SessionId::parse("abc").unwrap();
    /// let debian = StoreSpec::new("driver:memcached").memcache_driver(client.clone()).unwrap();
    /// assert_eq!(debian.key_for(&id), "abc");
    /// let seed = StoreSpec::new("driver:memcache").prefix("app:").memcache_driver(client).unwrap();
    /// assert_eq!(seed.key_for(&id), "app:abc");
    /// # });
    /// ```
    ///
    /// # Errors
    /// [`OpenError::Dsn`] when the DSN names no memcached driver or a prefix for
    /// `driver:memcached`; [`OpenError::Driver`] for an unusable prefix.
    #[cfg(feature = "memcache")]
    pub fn memcache_driver(
        &self,
        handle: impl crate::memcache::MemcacheHandle,
    ) -> Result<MemcacheDriver, OpenError> {
        crate::memcache_driver(&self.dsn()?.driver, Arc::new(handle), &self.args)
    }

    /// Opens the driver: checks the directory of `driver:file`; connects to memcached (see
    /// [`connect`](Self::connect)) unless the [`DriverArgs`] bring a handle.
    ///
    /// # Errors
    /// See [`OpenError`]; every message says what to fix.
    pub async fn open(&self) -> Result<OpenedDriver, OpenError> {
        match self.kind()? {
            StoreKind::File { directory } => Ok(OpenedDriver::File(FileDriver::new(directory)?)),
            StoreKind::Memory => Ok(OpenedDriver::Memory(match self.args.capacity {
                Some(n) => MemoryDriver::with_capacity(n),
                None => MemoryDriver::new(),
            })),
            #[cfg(feature = "memcache")]
            StoreKind::Memcache { .. } => {
                if let Some(handle) = &self.args.handle {
                    let driver =
                        crate::memcache_driver(&self.dsn()?.driver, handle.clone(), &self.args)?;
                    return Ok(OpenedDriver::Memcache(Box::new(OpenedMemcache {
                        driver,
                        client: None,
                        replicated: None,
                        down: Vec::new(),
                    })));
                }
                let (client, down) = self.connect().await?;
                let replicated = self
                    .replicas
                    .map(|n| ReplicatedHandle::new(client.clone(), n));
                let driver = match &replicated {
                    Some(handle) => self.memcache_driver(handle.clone())?,
                    None => self.memcache_driver(client.clone())?,
                };
                Ok(OpenedDriver::Memcache(Box::new(OpenedMemcache {
                    driver,
                    client: Some(client),
                    replicated,
                    down,
                })))
            }
        }
    }

    /// The store builder: [`open`](Self::open)'s driver with the DSN's serializer and id
    /// generator, for further options (expiry, locks, cookies...).
    ///
    /// # Errors
    /// See [`open`](Self::open).
    pub async fn builder(&self) -> Result<SessionStoreBuilder, OpenError> {
        let opened = self.open().await?;
        self.builder_over(&opened)
    }

    /// The store builder over a driver [`open`](Self::open) gave (when the caller wants to
    /// look at it first, e.g. at the memcached servers that were down), with the DSN's
    /// serializer and id generator.
    ///
    /// # Errors
    /// [`OpenError::Dsn`] for an unknown serializer or id generator.
    pub fn builder_over(&self, opened: &OpenedDriver) -> Result<SessionStoreBuilder, OpenError> {
        let dsn = self.dsn()?;
        let serializer = serializer_for(&dsn)?;
        let ids = id_generator_by_name(&dsn.id, &self.args)?;
        Ok(SessionStore::builder_dyn(opened.driver())
            .serializer_dyn(serializer)
            .id_generator_dyn(ids))
    }
}
