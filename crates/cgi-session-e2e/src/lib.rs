//! End-to-end tests of cgi-session that drive outside programs, in one place:
//!
//! | test file | outside program |
//! |---|---|
//! | `tests/perl_*.rs` | `perl`: CGI::Session 4.48, Cache::Memcached, CGI.pm, Debian's `CGI::Session::Driver::memcached` |
//! | `tests/lighttpd_cgi.rs` | `lighttpd` running the CGI example of cgi-session-cgi |
//! | `tests/chromium_demo.rs` | headless `chromium` and `chromedriver` driving the demo web app |
//! | `tests/twemproxy_pool.rs` | `nutcracker` (twemproxy) in front of three memcached servers |
//!
//! Every test fails (none skips) when its program is missing: `scripts/test.sh` installs them
//! (Debian packages). memcached itself is started by each test (`memcached-harness`).
//!
//! The library is the tests' support: [`Perl`] runs the Perl tool scripts of `tests/perl`;
//! [`SharedStore`], [`connect`] and [`perl_sharing_store`] set up the Rust side (a memcached
//! of the test's own, the bundled client, a store).
//! Under `cargo test` (doctests) it also compiles every Rust code block of the README and of
//! `docs/`, so that the documentation's examples cannot drift from the API.
#![forbid(unsafe_code)]

mod perl;
mod store;

pub use perl::Perl;
pub use store::{connect, perl_sharing_store, SharedStore};

/// The Rust code blocks of `README.md`, compiled (and run where they need no server) as
/// doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The Rust code blocks of `docs/migrating-from-perl.md`, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/migrating-from-perl.md")]
pub struct MigratingFromPerlDoctests;
