//! The memcached driver of cgi-session: Perl's `CGI::Session::Driver::memcache`
//! (`driver:memcache`), done properly.
//!
//! As in the Perl driver, the application builds a memcached connection with the client it
//! likes and hands the handle to the session layer; the driver needs only the few operations of the
//! [`MemcacheHandle`] trait. Implementations ship for the bundled async client
//! ([`cgi_session_memcache_client::Client`], meta protocol, memcached >= 1.6) and, with the
//! `memcache-crate` feature, for the `memcache` crate's client.
//!
//! What the Perl driver left weak and this driver fixes:
//!
//! | CGI::Session::Driver::memcache (Perl) | here |
//! |---|---|
//! | a dead server goes unnoticed; users are told to call `stats()` by hand | [`MemcacheDriver::check`] does the version + set/get/delete probe; every operation on a dead or hung server returns [`DriverError::Unavailable`](cgi_session_core::DriverError::Unavailable) naming it, never an empty session |
//! | no TTL: sessions live until evicted | the item's TTL follows the idle timeout, refreshed in the same round trip that reads; TTLs over 30 days are sent as absolute times |
//! | every load rewrites the session; last write wins | add for creation, CAS for saves; the session layer merges or reports conflicts |
//! | keys are not checked | keys validated before anything is sent; optional hashed keys |
//! | `find` dies ("unsupported") | listing through `lru_crawler metadump` |
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use cgi_session_core::SessionStore;
//! use cgi_session_memcache::MemcacheDriver;
//! use cgi_session_memcache_client::{Client, ClientConfig};
//!
//! let memd = Client::connect(ClientConfig::new("127.0.0.1:11211")).await?;
//! let driver = MemcacheDriver::new(memd);
//! let report = driver.check().await?;
//! println!("memcached {} is alive", report.version);
//! let store = SessionStore::builder(driver).default_expire(1800).build();
//! # let _ = store; Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod bundled;
mod driver;
mod handle;
#[cfg(feature = "memcache-crate")]
pub mod memcache_crate;
mod replicated;

pub use driver::{
    HealthReport, MemcacheDriver, MemcacheDriverBuilder, DEFAULT_ITEM_SIZE_MAX, DEFAULT_LIFETIME,
    DEFAULT_PREFIX, FLAG_COMPRESSED, LOCK_KEY_PREFIX,
};
pub use handle::{DeleteIfOutcome, HandleError, ListedKey, MemcacheHandle, ServerInfo};
pub use replicated::{
    decode_replica, ReplicaEnvelope, ReplicatedHandle, DEFAULT_TOMBSTONE_TTL, ENVELOPE_LEN,
};

/// The bundled client, re-exported.
pub use cgi_session_memcache_client as client;
