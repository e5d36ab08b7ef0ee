//! The session engine of [cgi-session]: Perl's CGI::Session semantics in async Rust, its three
//! plug points ([`Driver`], [`Serializer`], [`IdGenerator`]) and the embedded drivers
//! ([`MemoryDriver`], [`FileDriver`]).
//!
//! Most applications use the `cgi-session` facade crate, which re-exports all of this and adds
//! DSN strings that pick implementations by name and the memcached driver.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use cgi_session_core::{MemoryDriver, SessionStore};
//!
//! let store = SessionStore::builder(MemoryDriver::new()).build();
//!
//! // First request: no cookie yet.
//! let mut session = store.new_session(None, None).await?;
//! session.set("greet_en", "Hi !")?;
//! session.flush().await?;
//! let cookie_value = session.id().unwrap().as_str().to_owned();
//!
//! // Next request: the cookie brings the id back.
//! let session = store.new_session(Some(&cookie_value), None).await?;
//! assert_eq!(session.get::<String>("greet_en")?.as_deref(), Some("Hi !"));
//! # Ok::<(), cgi_session_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! # CGI::Session's methods and their counterparts
//!
//! | CGI::Session 4.48 | cgi-session |
//! |---|---|
//! | `CGI::Session->new($dsn, $query_or_id, \%args)` | [`SessionStore::new_session`] on a store built once from a DSN (`cgi_session::store_from_dsn`) or with [`SessionStore::builder`] |
//! | `CGI::Session->load(...)` | [`SessionStore::load`] |
//! | `$s->new()` on an object | [`SessionStore::new_session`] with no id |
//! | `$s->id` | [`Session::id`] |
//! | `$s->param($name)` | [`Session::get`], [`Session::get_value`] |
//! | `$s->param($name, $value)`, `param(-name=>..., -value=>...)`, `param(k1=>v1, ...)` | [`Session::set`], [`Session::set_value`] (one call per name) |
//! | `$s->param()` | [`Session::names`] |
//! | `$s->param_hashref`, `$s->dataref` | [`Session::params`] (read-only) |
//! | `$s->clear()` | [`Session::clear`] |
//! | `$s->clear('name')`, `$s->clear([names])` | [`Session::remove`], [`Session::clear_names`] |
//! | `$s->save_param($query, [names])` | [`Session::save_params`] |
//! | `$s->load_param($query, [names])` | [`Session::params`] (copy into your query type) |
//! | `$s->expire()` | [`Session::expire`] |
//! | `$s->expire($time)` | [`Session::set_expire`], [`Session::set_expire_str`] |
//! | `$s->expire($name, $time)` | [`Session::set_param_expire`], [`Session::set_param_expire_str`], [`Session::param_expire`] |
//! | time strings (`+10m`, `2h`, ...) | [`parse_expire`] |
//! | `$s->is_new` | [`Session::is_new`] |
//! | `$s->is_empty` | [`Session::is_empty`] |
//! | `$s->is_expired` | [`Session::is_expired`] |
//! | `$s->ctime`, `$s->atime` | [`Session::ctime`], [`Session::atime`] |
//! | `$s->remote_addr` | [`Session::remote_addr`] |
//! | `$s->flush`, `$s->close`, auto-flush on destruction | [`Session::flush`] (writes only if something changed); dropping an unsaved session logs a warning |
//! | `$s->delete` | [`Session::delete`] then [`Session::flush`] |
//! | (none: session fixation) | [`Session::regenerate_id`] |
//! | (none: lost updates, RT#47794) | [`Session::update`], [`SessionStore::update`], [`ConflictPolicy`], [`LockMode`] |
//! | `CGI::Session->find($dsn, \&code, \%args)` | [`SessionStore::find`] |
//! | `$s->dump` | [`Session::dump`] (id shortened); `Debug` |
//! | `$s->name`, `CGI::Session->name($new)` | [`SessionStore::cookie_name`], [`SessionStoreBuilder::cookie_name`] |
//! | `$s->cookie(...)` | [`Session::cookie`] (HttpOnly, SameSite=Lax by default; [`CookieConfig`]) |
//! | `$s->header(...)`, `$s->http_header(...)` | [`Session::header`] |
//! | `$s->query` | the CGI adapter crate reads the id from `HTTP_COOKIE`, then the query string |
//! | `-ip_match` | [`SessionStoreBuilder::ip_match`] (a mismatch keeps the stored session) |
//! | `CGI::Session->errstr`, `set_error` | `Result` with [`Error`] (no global error slot) |
//! | `CGI::Session->parse_dsn` | [`Dsn::parse`] |
//! | `$s->trace`, `tracemsg` | the `tracing` crate's events |
//! | `driver:file` / `Directory` | [`FileDriver`] |
//! | `driver:db_file`, `mysql`, `postgresql`, `sqlite` | not provided: implement [`Driver`] |
//! | `serializer:default` / `json` / `storable` / `freezethaw` | `cgi_session::DataDumperSerializer` (crate `cgi-session-dumper`: reads and writes Data::Dumper's format without evaluating it) / [`JsonSerializer`] / not provided |
//! | `id:md5` / `id:incr` / `id:static` | [`SecureRandomIds`] (also `id:random`) / [`IncrIds`] / [`StaticIds`] |
//!
//! # Fixes over CGI::Session
//!
//! - An untouched session is not rewritten (CGI::Session rewrites every loaded session).
//! - Requests of one session saving at once all succeed: only what each changed is written
//!   (combined into one write within a process), so changes to different parameters are all
//!   kept; for one parameter the last write wins; [`Session::update`] makes read-modify-write
//!   safe; opt-in session locks ([`LockMode`]) serialize requests instead.
//! - A session deleted while a slow request holds it is not brought back by that request.
//! - An ip mismatch gives the request a fresh session but leaves the stored one alone.
//! - Ids come from the OS CSPRNG (128 bits); malformed claimed ids never reach a driver.
//! - Stored bytes that do not decode are an error ([`Error::Corrupt`]), never a panic.
//!
//! [cgi-session]: https://example.invalid/cgi-session
#![forbid(unsafe_code)]

// Module dependencies, a graph without circles (leaves such as `driver`, `record`, `id`,
// `error`, `serializer`, `clock` are used throughout):
//   config, stats, backoff             settings, counters, retry pauses
//   <- shared_read, lock, commit       shared loads, session locks, the group commit's queues
//   <- engine                          state: `Inner`, `Session`, `Changes`, jobs
//      <- engine::load <- engine::merge <- engine::save    the protocol
//   <- instrument                      spans and metrics around the engine's operations
//   <- session (accessors), store (`SessionStore`)
// (`observe`, the metric names and span helpers, is a leaf used by all of them.)
mod backoff;
pub mod client_addr;
mod clock;
mod commit;
mod config;
pub mod cookie;
pub mod cookie_header;
pub mod driver;
mod dsn;
mod engine;
mod error;
mod expire;
mod id;
mod instrument;
mod lock;
pub mod observe;
mod perl_scalar;
pub mod record;
mod serializer;
mod session;
mod shared_read;
mod stats;
mod store;
pub mod web;

pub use crate::cookie::{CookieConfig, SameSite, DEFAULT_COOKIE_NAME};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    ConflictPolicy, LockMode, SessionStoreBuilder, Undecodable, DEFAULT_LOCK_LEASE,
    DEFAULT_LOCK_WAIT, DEFAULT_SAVE_DEADLINE, DEFAULT_TTL_GRACE_SECS,
};
pub use driver::file::{FileDriver, DEFAULT_MAX_SESSION_SIZE};
pub use driver::memory::MemoryDriver;
pub use driver::{
    Driver, ListedSession, Loaded, LockAttempt, LockToken, StoreMode, StoreOutcome, Version,
};
pub use dsn::Dsn;
pub use engine::Session;
pub use error::{
    BoxError, DriverError, DsnError, Error, ExpireParseError, IdError, SerializeError,
};
pub use expire::{parse_expire, Expiry};
pub use id::{IdGenerator, IncrIds, SecureRandomIds, SessionId, StaticIds, MAX_ID_LEN};
pub use lock::SessionLock;
pub use serializer::{JsonSerializer, Serializer};
pub use stats::StoreStats;
pub use store::SessionStore;

/// Re-exported so that drivers in other crates implement [`Driver`] with the same macro.
pub use async_trait::async_trait;
