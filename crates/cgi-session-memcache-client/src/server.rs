//! [`Server`]: one server of a client's pool, addressed directly.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Result;
use crate::metadump::Metadump;
use crate::node::Node;
use crate::options::{DeleteStatus, GetOptions, Item, SetOptions, StoreStatus};

/// One server of a [`Client`](crate::Client), whatever the ring says: the data operations on
/// that server only, and its administrative commands. Get one with
/// [`Client::server`](crate::Client::server); it shares the client's connections and failure
/// bookkeeping (a server marked down fails at once here too, but for its probe request), and
/// it is cheap to clone and to hold.
///
/// ```no_run
/// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
/// use cgi_session_memcache_client::GetOptions;
/// for i in 0..client.servers().len() {
///     let server = client.server(i)?;
///     println!("{}: memcached {}", server.addr(), server.version().await?);
///     let copy = server.get("sessions:abc", GetOptions::new().cas(true)).await?;
///     # let _ = copy;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server {
    node: Arc<Node>,
    index: usize,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("index", &self.index)
            .field("addr", &self.addr())
            .finish()
    }
}

impl Server {
    pub(crate) fn new(node: Arc<Node>, index: usize) -> Server {
        Server { node, index }
    }

    /// The server's position in [`Client::servers`](crate::Client::servers).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The server's address as configured (`host:port`).
    pub fn addr(&self) -> &str {
        self.node.server()
    }

    /// Whether the server is marked down now (see
    /// [`Client::is_marked_down`](crate::Client::is_marked_down)).
    pub fn is_marked_down(&self) -> bool {
        self.node.pool.is_down()
    }

    /// [`Client::get`](crate::Client::get) on this server.
    ///
    /// # Errors
    ///
    /// As [`Client::get`](crate::Client::get).
    pub async fn get(&self, key: impl AsRef<[u8]>, opts: GetOptions) -> Result<Option<Item>> {
        self.node.get(key.as_ref(), opts).await
    }

    /// [`Client::set`](crate::Client::set) on this server.
    ///
    /// # Errors
    ///
    /// As [`Client::set`](crate::Client::set).
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: SetOptions,
    ) -> Result<StoreStatus> {
        self.node.set(key.as_ref(), value.as_ref(), opts).await
    }

    /// [`Client::delete`](crate::Client::delete) on this server.
    ///
    /// # Errors
    ///
    /// As [`Client::delete`](crate::Client::delete).
    pub async fn delete(&self, key: impl AsRef<[u8]>, cas: Option<u64>) -> Result<DeleteStatus> {
        self.node.delete(key.as_ref(), cas).await
    }

    /// [`Client::touch`](crate::Client::touch) on this server.
    ///
    /// # Errors
    ///
    /// As [`Client::touch`](crate::Client::touch).
    pub async fn touch(&self, key: impl AsRef<[u8]>, exptime: u32) -> Result<bool> {
        self.node.touch(key.as_ref(), exptime).await
    }

    /// Sends `mn` and waits for `MN` (`version` in [`Protocol::Text`](crate::Protocol::Text)):
    /// a cheap liveness check.
    ///
    /// # Errors
    ///
    /// The connection errors.
    pub async fn noop(&self) -> Result<()> {
        self.node.noop().await
    }

    /// The server's version string, e.g. `"1.6.18"`.
    ///
    /// # Errors
    ///
    /// The connection errors.
    pub async fn version(&self) -> Result<String> {
        self.node.version().await
    }

    /// The server's general counters (`stats`): `cmd_get`, `get_hits`, `curr_items`,
    /// `evictions`, ...
    ///
    /// # Errors
    ///
    /// The connection errors.
    pub async fn stats(&self) -> Result<HashMap<String, String>> {
        self.node.stats(None).await
    }

    /// `stats <arg>`, e.g. `settings`, `items`, `slabs`. `arg` must be printable ASCII
    /// (spaces allowed between words).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`](crate::Error::InvalidKey) if `arg` is empty or has control
    /// characters; the connection errors.
    pub async fn stats_arg(&self, arg: &str) -> Result<HashMap<String, String>> {
        self.node.stats(Some(arg)).await
    }

    /// The server's largest item size in bytes (`item_size_max` from `stats settings`; set
    /// with memcached's `-I`).
    ///
    /// # Errors
    ///
    /// The connection errors; [`Error::Protocol`](crate::Error::Protocol) if the setting is
    /// missing.
    pub async fn item_size_max(&self) -> Result<u64> {
        self.node.item_size_max().await
    }

    /// The items the LRU crawler reaches on this server (`lru_crawler metadump hash`), see
    /// [`Client::metadump`](crate::Client::metadump).
    ///
    /// # Errors
    ///
    /// As [`Client::metadump`](crate::Client::metadump).
    pub async fn metadump(&self) -> Result<Metadump> {
        self.node.metadump().await
    }
}
