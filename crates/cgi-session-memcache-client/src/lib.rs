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
//! * Every data and administrative operation on one chosen server too
//!   ([`Client::server`], [`Server`]), for replicas and tools.
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

// Layers, lowest first; each module uses only modules above it in this list:
// error, key, options, dist, secure, config, proto (wire parser),
// conn (one connection's task), pool (a server's connections and health),
// admin (version, stats), metadump, meta, text (the two dialects and their encoders),
// node (a server and its dialect), server (the public per-server handle), client.
mod admin;
mod client;
mod config;
mod conn;
mod dist;
mod error;
mod key;
mod meta;
mod metadump;
mod node;
mod options;
mod pool;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod proto;
#[cfg(not(feature = "fuzzing"))]
mod proto;
mod secure;
mod server;
mod text;

pub use client::{Client, PerServer};
pub use config::{ClientConfig, FailurePolicy, Protocol, ServerSpec};
pub use dist::{ketama_hash, modula_hash, Distribution};
pub use error::{Error, Result};
pub use key::{validate_key, Key, MAX_KEY_LEN};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use metadump::parse_metadump_line;
pub use metadump::{Metadump, MetadumpEntry, MetadumpLineError};
pub use options::{
    exptime_from_now, memcached_exptime, DeleteStatus, GetOptions, Item, SetMode, SetOptions,
    StoreStatus, MAX_RELATIVE_EXPTIME,
};
pub use secure::{Credentials, TlsConfig};
pub use server::Server;
