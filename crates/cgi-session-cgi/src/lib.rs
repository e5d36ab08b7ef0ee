//! cgi-session for programs run by a web server under CGI (RFC 3875): Perl's
//! `CGI::Session->new("driver:memcache", $cgi, {Handle => $memd})` as a **blocking** API, so
//! that a CGI program is a plain `fn main`.
//!
//! * [`CgiRequest::from_env`] reads the request the web server hands over: `HTTP_COOKIE`,
//!   `QUERY_STRING`, `REMOTE_ADDR`, and for an `application/x-www-form-urlencoded` POST the
//!   body on standard input (at most [`DEFAULT_MAX_BODY`] bytes unless told otherwise). Parsing
//!   never panics: malformed cookies are skipped, malformed percent-encoding is kept as is.
//!   `HTTP_COOKIE` is read as bytes by the `Cookie` parser every adapter shares
//!   ([`cgi_session::cookie_header`]), so a non-UTF-8 byte in another cookie hides nothing.
//! * [`CgiSession::new`] picks the session id as CGI::Session does: the `CGISESSID` cookie
//!   first (the first one, when there are several), then the query-string or form parameter
//!   of the same name; `REMOTE_ADDR` feeds ip matching. An unknown or malformed id gives a
//!   fresh session.
//! * Warnings and errors are logged on standard error, the web server's error log, one line
//!   each prefixed with the program's name ([`StderrLog`]; `CGI_SESSION_LOG=off` turns it
//!   off). [`CgiError::response`] answers the visitor in plain words and logs the details.
//! * [`CgiSession::header`] is CGI::Session's `header()`: the `Set-Cookie` and `Content-Type`
//!   lines, CRLF-terminated, ready to print. The cookie is built by
//!   [`cgi_session::cookie`], the one place every adapter (this one and the tower layer)
//!   takes it from, with the store's [`CookieConfig`](cgi_session::CookieConfig).
//!
//! The async work runs on a small current-thread tokio runtime owned by this crate (one per
//! process, built on first use); [`block_on`] runs any other future on it, and
//! `connect_memcached` builds the bundled memcached client on it, so that its connections
//! live as long as the program.
//!
//! # Cargo features
//!
//! * `memcache` (default): `driver:memcache`, the bundled memcached client
//!   (`connect_memcached`, `Client`, `ClientConfig`) and [`CgiError`]'s `Memcached` variant.
//!   Without it a CGI program on files or memory does not compile the memcached client (nor
//!   its TLS and compression).
//!
//! # The synopsis of CGI::Session::Driver::memcache (the Perl driver this project started from), line for line
//!
//! ```no_run
//! # #[cfg(not(feature = "memcache"))] fn main() {}
//! # #[cfg(feature = "memcache")]
//! use cgi_session_cgi::{connect_memcached, CgiRequest, CgiSession, ClientConfig, DriverArgs};
//!
//! # #[cfg(feature = "memcache")]
//! fn main() -> Result<(), cgi_session_cgi::CgiError> {
//!     // my $memd = new Cache::Memcached({servers => ['localhost:11211']});
//!     // if (!$memd) {die("No Connection to Memcached !");}
//!     let memd = connect_memcached(ClientConfig::new("127.0.0.1:11211"))?;
//!     // my $cgi = CGI->new();
//!     let cgi = CgiRequest::from_env()?;
//!     // my $sess = CGI::Session->new("driver:memcache", $cgi, {'Handle' => $memd});
//!     let mut sess = CgiSession::new("driver:memcache", &cgi, DriverArgs::new().handle(memd))?;
//!     // my $v = $sess->param('greet_en');
//!     let v: Option<String> = sess.param("greet_en")?;
//!     // $sess->param('greet_en', "Hi !");
//!     sess.set_param("greet_en", "Hi !")?;
//!     sess.flush()?;
//!     // print $sess->header();
//!     print!("{}", sess.header("text/plain; charset=UTF-8"));
//!     println!("greet_en was {v:?}");
//!     Ok(())
//! }
//! ```
//!
//! # Flushing: the CGI-world answer to auto-flush
//!
//! CGI::Session flushes a session when the object is destroyed, and documents that this is
//! unreliable (global destruction order, dead database handles). Here:
//!
//! * call [`CgiSession::flush`] (or [`CgiSession::close`]) before printing the header, so
//!   that a failing store can still turn into a `503` response;
//! * as a safety net, dropping a [`CgiSession`] with unsaved changes flushes it, blocking (a
//!   CGI program is synchronous, so blocking in `Drop` is fine), and logs any error (on
//!   standard error, which the web server puts in its error log). Errors there cannot reach
//!   the response any more, which is why the explicit call is preferred. A process that
//!   exits with [`std::process::exit`] runs no destructors and so does not flush.
//!
//! `CgiSession` is for synchronous programs: inside an async runtime its methods return
//! [`CgiError::InsideAsyncRuntime`]; use [`cgi_session::Session`] there.
#![forbid(unsafe_code)]

mod error;
mod log;
#[cfg(feature = "memcache")]
mod memcached;
mod request;
mod runtime;
mod session;

pub use error::CgiError;
pub use log::{StderrLog, LOG_ENV};
#[cfg(feature = "memcache")]
pub use memcached::{connect_memcached, Client, ClientConfig};
pub use request::{CgiRequest, DEFAULT_MAX_BODY, FORM_URLENCODED};
pub use runtime::block_on;
pub use session::CgiSession;

pub use cgi_session::client_addr::{ForwardedHeader, TrustedProxies};
pub use cgi_session::{
    DriverArgs, LockMode, Session, SessionId, SessionLock, SessionStore, DEFAULT_COOKIE_NAME,
};
/// `tracing`'s levels, re-exported for [`StderrLog::level`].
pub use tracing::Level;
