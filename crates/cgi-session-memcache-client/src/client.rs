//! [`Client`]: the data operations routed by key over a pool of servers, the pool-wide
//! administrative answers, and [`Client::server`] for one server.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use crate::config::{ClientConfig, FailurePolicy};
use crate::dist::Ring;
use crate::error::{Error, Result};
use crate::metadump::Metadump;
use crate::node::{Dialect, Node};
use crate::options::{DeleteStatus, GetOptions, Item, SetOptions, StoreStatus};
use crate::pool::{PoolSettings, ServerPool};
use crate::secure;
use crate::server::Server;

/// An async memcached client over one server or a pool of servers. Cheap to
/// clone (shares the connections); drop every clone to close them.
///
/// With several servers ([`ClientConfig::pool`]) each key lives on one
/// server chosen by [`Distribution`](crate::Distribution) (ketama by default); a server that
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
/// for (server, stats) in pool.each_server(|s| async move { s.stats().await }).await {
///     println!("{server}: {:?} items", stats.map(|s| s["curr_items"].clone()));
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// The servers, in configuration order.
    nodes: Vec<Arc<Node>>,
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
                    .nodes
                    .iter()
                    .map(|n| n.server())
                    .collect::<Vec<_>>(),
            )
            .field("policy", &self.inner.policy)
            .finish()
    }
}

/// The answers of [`Client::each_server`]: `(server address, its answer)` in configuration
/// order.
pub type PerServer<T> = Vec<(String, Result<T>)>;

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
        let nodes: Vec<Arc<Node>> = specs
            .iter()
            .map(|spec| {
                let pool = ServerPool::new(PoolSettings {
                    server: spec.addr.clone(),
                    size: config.pool_size.max(1),
                    timeout: config.timeout,
                    connect_timeout: config.connect_timeout,
                    max_value_size: config.max_value_size,
                    failure_limit,
                    retry_delay: config.retry_delay,
                    server_name: security.server_name_for(&spec.addr)?,
                    security: security.clone(),
                });
                let dialect = Dialect::new(spec.protocol.unwrap_or(config.protocol), config.gat);
                Ok(Arc::new(Node { pool, dialect }))
            })
            .collect::<Result<_>>()?;
        let weights: Vec<(String, u32)> =
            specs.iter().map(|s| (s.addr.clone(), s.weight)).collect();
        if !config.lazy {
            for node in &nodes {
                node.pool.connect_all().await?;
            }
        }
        Ok(Client {
            inner: Arc::new(Inner {
                nodes,
                ring: Ring::new(config.distribution, &weights),
                policy: config.failure_policy,
            }),
        })
    }

    /// The server a key's requests go to now.
    fn route(&self, key: &[u8]) -> &Node {
        &self.inner.nodes[self.server_for(key)]
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
        if inner.nodes.len() == 1 {
            return 0;
        }
        match inner.policy {
            FailurePolicy::Failover => inner
                .ring
                .pick(key, |i| inner.nodes[i].pool.takes_requests())
                .unwrap_or_else(|| inner.ring.primary(key)),
            _ => inner.ring.primary(key),
        }
    }

    /// Up to `n` distinct servers for `key` in ring order, whether up or
    /// not: its own server first, then the next distinct servers on the ring
    /// (for [`Distribution::Modula`](crate::Distribution::Modula), Cache::Memcached's rehash sequence).
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
        self.inner
            .nodes
            .get(server)
            .is_some_and(|n| n.pool.is_down())
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
            .nodes
            .iter()
            .map(|n| n.server().to_owned())
            .collect()
    }

    /// Server `index` (into [`servers`](Self::servers)), addressed directly whatever the
    /// ring says: its data operations and administrative commands. Replicated stores put
    /// copies on several servers this way; tools ask each server in turn.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchServer`] for a bad index.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// use cgi_session_memcache_client::{GetOptions, SetOptions};
    /// let copy = client.server(1)?.get("sessions:abc", GetOptions::new().cas(true)).await?;
    /// client.server(2)?.set("sessions:abc", b"{}", SetOptions::new().ttl(60)).await?;
    /// # let _ = copy; Ok(()) }
    /// ```
    pub fn server(&self, index: usize) -> Result<Server> {
        let node = self.inner.nodes.get(index).ok_or(Error::NoSuchServer {
            index,
            count: self.inner.nodes.len(),
        })?;
        Ok(Server::new(Arc::clone(node), index))
    }

    /// Runs `op` on every server at once (each on its own task); the answers come in
    /// configuration order. The one helper for per-server questions: a tool's "which servers
    /// are up" is `client.each_server(|s| async move { s.version().await })`.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) {
    /// for (server, version) in client.each_server(|s| async move { s.version().await }).await {
    ///     println!("{server}: {version:?}");
    /// }
    /// # }
    /// ```
    pub async fn each_server<T, F, Fut>(&self, op: F) -> PerServer<T>
    where
        T: Send + 'static,
        F: Fn(Server) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let tasks: Vec<_> = self
            .inner
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| tokio::spawn(op(Server::new(Arc::clone(node), i))))
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for (node, task) in self.inner.nodes.iter().zip(tasks) {
            let server = node.server().to_string();
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

    /// The only server, when there is one: pool-wide answers then skip the per-server round.
    fn single(&self) -> Option<&Node> {
        match self.inner.nodes.as_slice() {
            [node] => Some(node),
            _ => None,
        }
    }

    fn first(&self) -> &Node {
        &self.inner.nodes[0]
    }

    /// Reads a key (`mg <key> v ...`). With [`GetOptions::touch_ttl`] it also
    /// sets a new exptime, and with [`GetOptions::cas`] returns the CAS token,
    /// all in one round trip. A miss is `Ok(None)`. In [`Protocol::Text`](crate::Protocol::Text):
    /// `get`/`gets`, or `gat`/`gats` to touch. [`server`](Self::server) reads from a given
    /// server instead.
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
        self.route(key).get(key, opts).await
    }

    /// Stores a value (`ms <key> <len> T<ttl> F<flags> [C<cas>] M<mode> c`)
    /// and returns the new CAS token when stored. In [`Protocol::Text`](crate::Protocol::Text):
    /// `set`/`add`/`replace`, or `cas` when a CAS token is given (the new CAS is read back
    /// with `gets`).
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
        self.route(key).set(key, value.as_ref(), opts).await
    }

    /// Deletes a key (`md <key> [C<cas>]`). With a CAS token it deletes only
    /// if the item is unchanged (a safe lock release).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] before sending; [`Error::Unsupported`] for a
    /// CAS-guarded delete in [`Protocol::Text`](crate::Protocol::Text); the connection errors.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// use cgi_session_memcache_client::DeleteStatus;
    /// assert_eq!(client.delete("gone", None).await?, DeleteStatus::NotFound);
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, key: impl AsRef<[u8]>, cas: Option<u64>) -> Result<DeleteStatus> {
        let key = key.as_ref();
        self.route(key).delete(key, cas).await
    }

    /// Sets a new exptime without reading the value (`mg <key> T<ttl>`;
    /// `touch` in [`Protocol::Text`](crate::Protocol::Text)). Returns false if the key does not
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
        self.route(key).touch(key, exptime).await
    }

    /// Sends `mn` and waits for `MN` (`version` in [`Protocol::Text`](crate::Protocol::Text)):
    /// a cheap liveness check of the first server.
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
        self.first().noop().await
    }

    /// The server's version string, e.g. `"1.6.18"`; for a pool, that of
    /// the first server that answers (asked at once; [`each_server`](Self::each_server)
    /// gives every answer).
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
        if let Some(node) = self.single() {
            return node.version().await;
        }
        let mut first_err = None;
        for (_, answer) in self.each_server(|s| async move { s.version().await }).await {
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
    /// [`server`](Self::server) for the others).
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
        self.first().stats(None).await
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
        self.first().stats(Some(arg)).await
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
        if let Some(node) = self.single() {
            return node.item_size_max().await;
        }
        let mut min: Option<u64> = None;
        let mut first_err = None;
        for (_, answer) in self
            .each_server(|s| async move { s.item_size_max().await })
            .await
        {
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
    /// [`Server::metadump`] for one server's.
    ///
    /// # Errors
    ///
    /// [`Error::Server`] if the server refuses (e.g. crawler busy or
    /// disabled); [`Error::Unsupported`] in [`Protocol::Text`](crate::Protocol::Text); the
    /// connection errors.
    ///
    /// ```no_run
    /// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
    /// let dump = client.metadump().await?;
    /// println!("{} keys, {} lines skipped", dump.entries.len(), dump.skipped.len());
    /// # Ok(()) }
    /// ```
    pub async fn metadump(&self) -> Result<Metadump> {
        if let Some(node) = self.single() {
            return node.metadump().await;
        }
        let mut all = Metadump::default();
        for (_, dump) in self
            .each_server(|s| async move { s.metadump().await })
            .await
        {
            let dump = dump?;
            all.entries.extend(dump.entries);
            all.skipped.extend(dump.skipped);
        }
        Ok(all)
    }
}
