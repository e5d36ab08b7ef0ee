//! Encryption at rest for [cgi-session]: [`SealedDriver`] wraps any session
//! [`Driver`](cgi_session_core::Driver) (memcached, files, memory) and seals the bytes it
//! stores with XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`), so that whoever reads the
//! store (memcached usually runs without authentication; `lru_crawler metadump` lists every
//! key) sees neither the values nor the parameter names.
//!
//! - **Authenticated**: an item whose bytes were changed fails to open. The session id is
//!   bound as associated data, so an item copied to another session's key fails to open too.
//! - **Random nonces**: 24 bytes from the operating system's generator for every write
//!   (XChaCha20's nonces are long enough to be drawn at random).
//! - **Key rotation**: every item names the id of the key that sealed it. A [`KeyRing`] seals
//!   with its current key and opens with any of its keys; an item is sealed with the current
//!   key the next time its session is saved.
//! - **Failures are errors**: an item that does not open (changed, moved, sealed with a key
//!   no longer in the ring, not sealed) fails the request with a message naming the cause
//!   ([`OpenError`]) and is left alone; it never becomes a silent new session, and nothing
//!   panics whatever the stored bytes.
//!
//! **Not for sessions shared with Perl.** Perl's CGI::Session cannot read sealed items: its
//! serializer's `thaw` fails on them and `CGI::Session->new` returns `undef` (`errstr`:
//! "couldn't thaw() data"). Sessions written by Perl are not sealed, and this driver refuses
//! them ([`OpenError::NotSealed`]). Use it only for stores that Rust programs alone read
//! and write. (For Perl-shared sessions, protect the store itself: memcached's TLS and login,
//! a private network.)
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use cgi_session_core::{MemoryDriver, SessionStore};
//! use cgi_session_sealed::{KeyRing, SealedDriver, SealingKey};
//!
//! // Keys come from the environment or a file in production (`SealingKey::from_text`,
//! // `SealingKey::from_file`); key 2 is current, key 1 still opens older items.
//! let current = SealingKey::generate(2)?;
//! let previous = SealingKey::generate(1)?;
//! let keys = KeyRing::new(current).with_previous([previous])?;
//! let store = SessionStore::builder(SealedDriver::new(MemoryDriver::new(), keys)).build();
//!
//! let mut session = store.new_session(None, None).await?;
//! session.set("user", "ann")?;
//! session.flush().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! On memcached, with keys from files (the README's example):
//!
//! ```no_run
//! use cgi_session::memcache::client::{Client, ClientConfig};
//! use cgi_session::memcache::MemcacheDriver;
//! use cgi_session::SessionStore;
//! use cgi_session_sealed::{KeyRing, SealedDriver, SealingKey};
//!
//! async fn open_store() -> Result<SessionStore, Box<dyn std::error::Error>> {
//!     // Key 2 seals; key 1 (the previous one) still opens the items it sealed.
//!     let keys = KeyRing::new(SealingKey::from_file(2, "/etc/myapp/session-key-2")?)
//!         .with_previous([SealingKey::from_file(1, "/etc/myapp/session-key-1")?])?;
//!     let client = Client::connect(ClientConfig::new("127.0.0.1:11211")).await?;
//!     let driver = SealedDriver::new(MemcacheDriver::new(client), keys);
//!     Ok(SessionStore::builder(driver).build())
//! }
//! ```
//!
//! # The sealed item
//!
//! ```text
//! offset  size  field
//!      0     4  magic: 0x89 'c' 's' 'e'  (MAGIC; not ASCII, so no serializer's output starts so)
//!      4     1  format version: 1        (VERSION)
//!      5     4  key id, big-endian       (which key of the ring sealed it)
//!      9    24  XChaCha20 nonce          (random, from the operating system)
//!     33     n  ciphertext of the serializer's n bytes
//!   33+n    16  Poly1305 tag
//! ```
//!
//! The associated data is the 9-byte header followed by the session id, so an item opens
//! only under the id it was sealed for, with the version and key id it says. Sealing adds
//! [`OVERHEAD`] (49) bytes; memcached's item size limit applies to the sealed size.
//!
//! [cgi-session]: https://example.invalid/cgi-session
#![forbid(unsafe_code)]

// Modules: `key` (keys and rings) <- `envelope` (seal/open) <- `driver` (the wrapper).
mod driver;
mod envelope;
mod key;

pub use driver::{SealError, SealedDriver};
pub use envelope::{is_sealed, key_id_of, open, seal, OpenError, MAGIC, OVERHEAD, VERSION};
pub use key::{generate_key_hex, KeyError, KeyRing, SealingKey, KEY_LEN};
