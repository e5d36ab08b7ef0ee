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
//!   lines, CRLF-terminated, ready to print.
//!
//! The async work runs on a small current-thread tokio runtime owned by this crate (one per
//! process, built on first use); [`block_on`] runs any other future on it, and
//! [`connect_memcached`] builds the bundled memcached client on it, so that its connections
//! live as long as the program.
//!
//! # The seed's synopsis, line for line
//!
//! ```no_run
//! use cgi_session_cgi::{connect_memcached, CgiRequest, CgiSession, ClientConfig, DriverArgs};
//!
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

use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use cgi_session::cookie_header::{self, SessionCookie};

pub use cgi_session::memcache::client::{Client, ClientConfig};
pub use cgi_session::{
    DriverArgs, LockMode, Session, SessionId, SessionLock, SessionStore, DEFAULT_COOKIE_NAME,
};

mod log;
pub use log::{StderrLog, LOG_ENV};
/// `tracing`'s levels, re-exported for [`StderrLog::level`].
pub use tracing::Level;

/// Largest request body [`CgiRequest::from_env`] reads: 1 MiB. Larger bodies are refused with
/// [`CgiError::BodyTooLarge`] before anything is read.
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

/// The media type of HTML forms, the only POST body this crate parses.
pub const FORM_URLENCODED: &str = "application/x-www-form-urlencoded";

/// Errors of the CGI adapter. [`CgiError::http_status`] says which response to send, and
/// [`CgiError::response`] builds it: plain words for the visitor ([`CgiError::body`]), while
/// the message (`Display`, with server addresses, parameter and type names) goes to the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgiError {
    /// The request body is larger than the limit; nothing was read.
    #[error("request body of {length} bytes is larger than the limit of {limit} bytes; send less data or raise the limit (CgiRequest::from_env_with_limit)")]
    BodyTooLarge {
        /// `CONTENT_LENGTH`.
        length: u64,
        /// The limit in force.
        limit: u64,
    },
    /// `CONTENT_LENGTH` is not a number.
    #[error("CONTENT_LENGTH {0:?} is not a byte count; the web server or client sent a malformed request")]
    BadContentLength(String),
    /// Standard input ended before `CONTENT_LENGTH` bytes were read.
    #[error("the request body ended after {read} of {expected} bytes; the client disconnected or the web server did not pass the body")]
    TruncatedBody {
        /// Bytes announced.
        expected: u64,
        /// Bytes received.
        read: u64,
    },
    /// Reading the request body failed.
    #[error("reading the request body from standard input failed: {0}")]
    Body(#[source] io::Error),
    /// The DSN or the driver arguments cannot be used.
    #[error(transparent)]
    Open(#[from] cgi_session::OpenError),
    /// The session layer failed (store unreachable, corrupt data, bad expiry string...).
    #[error(transparent)]
    Session(#[from] cgi_session::Error),
    /// memcached could not be reached when connecting.
    #[error(transparent)]
    Memcached(#[from] cgi_session::memcache::client::Error),
    /// The internal async runtime could not be started.
    #[error("could not start the async runtime: {0}; the system may be out of file descriptors or threads")]
    Runtime(#[source] io::Error),
    /// A blocking call was made from inside an async runtime.
    #[error("cgi-session-cgi is a blocking API and was called from inside an async runtime; use cgi_session::Session directly in async code")]
    InsideAsyncRuntime,
}

impl CgiError {
    /// The HTTP status a CGI program should answer with: 413 for a body over the limit, 400
    /// for a malformed request, 503 when the session store is unreachable or the session is
    /// busy past its deadline (locked, or written by other processes), 500 otherwise.
    ///
    /// ```
    /// use cgi_session_cgi::CgiError;
    /// let e = CgiError::BodyTooLarge { length: 5_000_000, limit: 1_048_576 };
    /// assert_eq!(e.http_status(), 413);
    /// assert_eq!(e.status_line(), "413 Content Too Large");
    /// ```
    pub fn http_status(&self) -> u16 {
        match self {
            Self::BodyTooLarge { .. } => 413,
            Self::BadContentLength(_) | Self::TruncatedBody { .. } | Self::Body(_) => 400,
            Self::Session(e) if e.is_busy() => 503,
            e if e.is_unavailable() => 503,
            _ => 500,
        }
    }

    /// [`CgiError::http_status`] with its reason phrase, for a CGI `Status:` header.
    pub fn status_line(&self) -> &'static str {
        match self.http_status() {
            413 => "413 Content Too Large",
            400 => "400 Bad Request",
            503 => "503 Service Unavailable",
            _ => "500 Internal Server Error",
        }
    }

    /// Whether the session store could not be reached (a 503 a retry can cure).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Memcached(e) => e.is_unavailable(),
            Self::Session(cgi_session::Error::Driver(e)) => e.is_unavailable(),
            _ => false,
        }
    }

    /// The `Retry-After` of the response, in seconds: for a busy session and an unreachable
    /// store, `None` otherwise.
    ///
    /// ```
    /// use cgi_session_cgi::CgiError;
    /// assert_eq!(CgiError::BadContentLength("ten".into()).retry_after(), None);
    /// ```
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Session(e) => e.retry_after().map(|d| d.as_secs().max(1)),
            Self::Memcached(e) if e.is_unavailable() => Some(UNAVAILABLE_RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// What happened, in words for the visitor: no server address, parameter name, type or
    /// other internals (those are in [`CgiError`]'s `Display`, for the log).
    ///
    /// ```
    /// use cgi_session_cgi::CgiError;
    /// let e = CgiError::BodyTooLarge { length: 5_000_000, limit: 1_048_576 };
    /// assert_eq!(e.body(), "The data sent is too large.");
    /// ```
    pub fn body(&self) -> &'static str {
        match self {
            Self::BodyTooLarge { .. } => "The data sent is too large.",
            Self::BadContentLength(_) | Self::TruncatedBody { .. } | Self::Body(_) => {
                "The request could not be read; please send it again."
            }
            Self::Session(e) if e.is_busy() => {
                "This session is busy with other requests; please try again in a moment."
            }
            Self::Session(cgi_session::Error::Driver(cgi_session::DriverError::TooLarge {
                ..
            })) => "The session has grown too large to be stored; the last change was not saved.",
            Self::Session(e) if e.outcome_unknown() => {
                "The session store did not answer in time: your last change may or may not have been saved. Please check, and try again shortly if it is missing."
            }
            e if e.is_unavailable() => {
                "The session store is unavailable; please try again shortly."
            }
            Self::Open(_) | Self::InsideAsyncRuntime => {
                "Server misconfiguration: sessions are not set up correctly."
            }
            Self::Runtime(_) => "The server is out of resources; please try again shortly.",
            _ => "The session could not be used.",
        }
    }

    /// A complete CGI error response for the visitor: `Status`, `Retry-After` when a retry
    /// can help (a busy session, an unreachable store), `Content-Type: text/plain`,
    /// `Cache-Control: no-store` and [`CgiError::body`]. The details (this error's message,
    /// with the server's address or the parameter and type involved) are logged, at error
    /// level (warn for a client's mistake or a busy session): by default on standard error,
    /// i.e. the web server's error log (see [`StderrLog`]). Call it once per error.
    ///
    /// ```
    /// use cgi_session_cgi::CgiError;
    /// let e = CgiError::BadContentLength("ten".into());
    /// let response = e.response();
    /// assert!(response.starts_with("Status: 400 Bad Request\r\nContent-Type: text/plain"));
    /// assert!(response.ends_with("\r\n\r\nThe request could not be read; please send it again.\n"));
    /// assert!(!response.contains("CONTENT_LENGTH")); // the details are in the log
    /// ```
    pub fn response(&self) -> String {
        log::ensure_installed();
        let status = self.status_line();
        if self.http_status() < 500 || matches!(self, Self::Session(e) if e.is_busy()) {
            tracing::warn!(error = %self, "answered {status}");
        } else {
            tracing::error!(error = %self, "answered {status}");
        }
        let retry = self
            .retry_after()
            .map(|secs| format!("Retry-After: {secs}\r\n"))
            .unwrap_or_default();
        format!(
            "Status: {status}\r\n{retry}Content-Type: text/plain; charset=UTF-8\r\nCache-Control: no-store\r\n\r\n{}\n",
            self.body()
        )
    }
}

/// `Retry-After` for a memcached server that could not be reached when connecting (the
/// session layer's own value for an unreachable store).
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

// ----- the runtime ------------------------------------------------------------------------

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fn runtime() -> Result<&'static tokio::runtime::Runtime, CgiError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CgiError::Runtime)?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Runs `future` to completion on this crate's runtime (a current-thread tokio runtime, one per
/// process, built on first use). Tasks spawned by earlier calls (such as the memcached
/// client's connections) make progress while it runs.
///
/// ```
/// let n = cgi_session_cgi::block_on(async { 40 + 2 }).unwrap();
/// assert_eq!(n, 42);
/// ```
///
/// # Errors
/// [`CgiError::InsideAsyncRuntime`] when called from async code; [`CgiError::Runtime`] when
/// the runtime cannot start.
pub fn block_on<F: Future>(future: F) -> Result<F::Output, CgiError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(CgiError::InsideAsyncRuntime);
    }
    Ok(runtime()?.block_on(future))
}

/// Connects the bundled memcached client on this crate's runtime: the seed's
/// `Cache::Memcached->new(...)`, except that a dead server is an error here (unless the
/// config is [`lazy`](ClientConfig::lazy)).
///
/// ```no_run
/// use cgi_session_cgi::{connect_memcached, ClientConfig, DriverArgs};
/// let memd = connect_memcached(ClientConfig::new("127.0.0.1:11211"))?;
/// let args = DriverArgs::new().handle(memd);
/// # Ok::<(), cgi_session_cgi::CgiError>(())
/// ```
///
/// # Errors
/// [`CgiError::Memcached`] naming the server when it cannot be reached.
pub fn connect_memcached(config: ClientConfig) -> Result<Client, CgiError> {
    log::ensure_installed();
    Ok(block_on(Client::connect(config))??)
}

// ----- the request ------------------------------------------------------------------------

/// What a CGI program needs from its request: cookies, query-string and form parameters, the
/// client's address. CGI::Session's `$cgi` query object.
///
/// ```
/// use cgi_session_cgi::CgiRequest;
///
/// let env = [
///     ("REQUEST_METHOD", "POST"),
///     ("QUERY_STRING", "lang=en&CGISESSID=from-query"),
///     ("HTTP_COOKIE", "theme=dark; CGISESSID=from-cookie"),
///     ("CONTENT_TYPE", "application/x-www-form-urlencoded"),
///     ("CONTENT_LENGTH", "21"),
///     ("REMOTE_ADDR", "192.0.2.7"),
/// ];
/// let req = CgiRequest::from_parts(env, &b"greet_en=Hi+%21&x=%zz"[..], 1024).unwrap();
/// assert_eq!(req.cookie("theme"), Some("dark"));
/// assert_eq!(req.param("greet_en"), Some("Hi !"));
/// assert_eq!(req.param("x"), Some("%zz"));  // malformed escapes are kept, never a panic
/// assert_eq!(req.param("lang"), Some("en"));
/// assert_eq!(req.remote_addr(), Some("192.0.2.7"));
/// // CGI::Session's order: the cookie first, then the parameter.
/// assert_eq!(req.session_id("CGISESSID"), Some("from-cookie"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CgiRequest {
    method: String,
    /// `HTTP_COOKIE` as the server passed it (bytes: other cookies may not be UTF-8).
    cookie_header: Vec<u8>,
    cookies: Vec<(String, String)>,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
    remote_addr: Option<String>,
}

impl fmt::Debug for CgiRequest {
    /// Lists names only: cookie and parameter values may hold session ids or secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        f.debug_struct("CgiRequest")
            .field("method", &self.method)
            .field("cookies", &names(&self.cookies))
            .field("query", &names(&self.query))
            .field("form", &names(&self.form))
            .field("remote_addr", &self.remote_addr)
            .finish()
    }
}

impl CgiRequest {
    /// Reads the request from the process environment and, for an
    /// `application/x-www-form-urlencoded` POST, from standard input (at most
    /// [`DEFAULT_MAX_BODY`] bytes). Other bodies (e.g. `multipart/form-data`) are left unread
    /// on standard input.
    ///
    /// # Errors
    /// [`CgiError::BodyTooLarge`], [`CgiError::BadContentLength`],
    /// [`CgiError::TruncatedBody`], [`CgiError::Body`]: answer with
    /// [`CgiError::response`].
    pub fn from_env() -> Result<Self, CgiError> {
        Self::from_env_with_limit(DEFAULT_MAX_BODY)
    }

    /// [`CgiRequest::from_env`] with another body size limit.
    ///
    /// # Errors
    /// As [`CgiRequest::from_env`].
    pub fn from_env_with_limit(max_body: u64) -> Result<Self, CgiError> {
        log::ensure_installed();
        // Values as bytes: `HTTP_COOKIE` may hold bytes that are not UTF-8 (a latin-1 `ç` in
        // another cookie of the site), which must not spoil the session cookie.
        let vars = std::env::vars_os()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.into_encoded_bytes()));
        Self::from_parts(vars, io::stdin().lock(), max_body)
    }

    /// Builds a request from CGI meta-variables and a body reader (what
    /// [`CgiRequest::from_env`] does with the real environment and standard input); for
    /// tests and for servers that hand over the variables another way.
    ///
    /// Values are text (`&str`, `String`) or bytes (`&[u8]`, `Vec<u8>`): `HTTP_COOKIE` is read
    /// as bytes, so a cookie that is not UTF-8 is passed as the browser sent it; other
    /// variables are read as text (invalid UTF-8 replaced by `U+FFFD`).
    ///
    /// ```
    /// use cgi_session_cgi::CgiRequest;
    ///
    /// // A Perl page set `lang` in latin-1: the session cookie is still found.
    /// let env: [(&str, &[u8]); 1] =
    ///     [("HTTP_COOKIE", b"lang=fran\xe7ais; CGISESSID=5ee0c1d2a1b2c3d4e5f60718293a4b5c")];
    /// let req = CgiRequest::from_parts(env, std::io::empty(), 0)?;
    /// assert_eq!(req.session_id("CGISESSID"), Some("5ee0c1d2a1b2c3d4e5f60718293a4b5c"));
    /// assert_eq!(req.cookie("lang"), Some("fran\u{FFFD}ais"));
    /// # Ok::<(), cgi_session_cgi::CgiError>(())
    /// ```
    ///
    /// # Errors
    /// As [`CgiRequest::from_env`].
    pub fn from_parts<I, K, V>(
        vars: I,
        mut body: impl Read,
        max_body: u64,
    ) -> Result<Self, CgiError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let mut req = CgiRequest::default();
        let mut content_type = String::new();
        let mut content_length = String::new();
        for (k, v) in vars {
            let raw = v.as_ref();
            if k.as_ref() == "HTTP_COOKIE" {
                req.cookie_header = raw.to_vec();
                req.cookies = cookie_header::pairs([raw])
                    .map(|c| {
                        (
                            String::from_utf8_lossy(c.name).into_owned(),
                            String::from_utf8_lossy(c.value).into_owned(),
                        )
                    })
                    .collect();
                continue;
            }
            let v = String::from_utf8_lossy(raw);
            let v = v.as_ref();
            match k.as_ref() {
                "REQUEST_METHOD" => req.method = v.trim().to_ascii_uppercase(),
                "QUERY_STRING" => req.query = parse_urlencoded(raw),
                "REMOTE_ADDR" => {
                    req.remote_addr = Some(v.trim().to_owned()).filter(|a| !a.is_empty());
                }
                "CONTENT_TYPE" => content_type = v.to_owned(),
                "CONTENT_LENGTH" => content_length = v.trim().to_owned(),
                _ => {}
            }
        }
        let media_type = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if req.method == "POST" && media_type == FORM_URLENCODED && !content_length.is_empty() {
            let length: u64 = content_length
                .parse()
                .map_err(|_| CgiError::BadContentLength(content_length.clone()))?;
            if length > max_body {
                return Err(CgiError::BodyTooLarge {
                    length,
                    limit: max_body,
                });
            }
            let mut bytes = Vec::new();
            (&mut body)
                .take(length)
                .read_to_end(&mut bytes)
                .map_err(CgiError::Body)?;
            let read = bytes.len() as u64;
            if read < length {
                return Err(CgiError::TruncatedBody {
                    expected: length,
                    read,
                });
            }
            req.form = parse_urlencoded(&bytes);
        }
        Ok(req)
    }

    /// The request method (`GET`, `POST`...), upper-cased; empty when the server gave none.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The value of the first cookie named `name`, as sent (not percent-decoded; one pair of
    /// surrounding double quotes removed; bytes that are not UTF-8 replaced by `U+FFFD`).
    /// `HTTP_COOKIE` is parsed by the parser every adapter shares
    /// ([`cgi_session::cookie_header`]).
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All cookies in the order sent.
    pub fn cookies(&self) -> impl Iterator<Item = (&str, &str)> {
        self.cookies.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The first value of parameter `name` (CGI.pm's `param($name)`): form fields of a POST
    /// body first, then the query string.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// Every value of parameter `name`, form fields first.
    pub fn param_all(&self, name: &str) -> Vec<&str> {
        self.params()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
            .collect()
    }

    /// All parameters, form fields of a POST body first, then the query string (CGI.pm's
    /// order), with repeats. Pass it to [`CgiSession::save_params`] for CGI::Session's
    /// `save_param`.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.form
            .iter()
            .chain(self.query.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `REMOTE_ADDR`, the client's address (used for ip matching).
    pub fn remote_addr(&self) -> Option<&str> {
        self.remote_addr.as_deref()
    }

    /// The session id the client claims, in CGI::Session's order (`$cgi->cookie($name) ||
    /// $cgi->param($name)`): the first cookie `name` when it is a well-formed id (stored or
    /// not); no id at all (a fresh session) when that cookie is malformed; the parameter
    /// `name` when no such cookie was sent or it is empty.
    ///
    /// The cookie is found by [`cgi_session::cookie_header::session_cookie`], the parser every
    /// adapter shares: other cookies may hold any bytes, and when the session cookie appears
    /// twice the first one counts, as in CGI.pm.
    ///
    /// ```
    /// use cgi_session_cgi::CgiRequest;
    ///
    /// let env = [
    ///     ("HTTP_COOKIE", "CGISESSID=; theme=dark"),
    ///     ("QUERY_STRING", "CGISESSID=from-query"),
    /// ];
    /// let req = CgiRequest::from_parts(env, std::io::empty(), 0)?;
    /// assert_eq!(req.session_id("CGISESSID"), Some("from-query")); // an empty cookie falls through
    /// let env = [("HTTP_COOKIE", "CGISESSID=a/b"), ("QUERY_STRING", "CGISESSID=from-query")];
    /// let req = CgiRequest::from_parts(env, std::io::empty(), 0)?;
    /// assert_eq!(req.session_id("CGISESSID"), None); // a malformed cookie: a fresh session
    /// # Ok::<(), cgi_session_cgi::CgiError>(())
    /// ```
    pub fn session_id(&self, name: &str) -> Option<&str> {
        match cookie_header::session_cookie([&self.cookie_header[..]], name) {
            SessionCookie::Id(id) => Some(id),
            SessionCookie::Malformed => None,
            _ => self.param(name).filter(|v| !v.is_empty()),
        }
    }
}

fn parse_urlencoded(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes)
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

// ----- the session ------------------------------------------------------------------------

/// One CGI request's session: CGI::Session's object, with blocking methods.
///
/// A thin wrapper over [`cgi_session::Session`] ([`CgiSession::session`] gives it back for
/// anything not wrapped here). Dropping it with unsaved changes flushes it (see the
/// [crate documentation](crate#flushing-the-cgi-world-answer-to-auto-flush)).
///
/// ```
/// use cgi_session_cgi::{CgiRequest, CgiSession, DriverArgs};
///
/// let dir = tempfile::tempdir().unwrap();
/// let args = || DriverArgs::new().directory(dir.path());
///
/// // Request 1: no cookie.
/// let req = CgiRequest::from_parts([("REMOTE_ADDR", "192.0.2.7")], std::io::empty(), 0)?;
/// let mut sess = CgiSession::new("driver:file", &req, args())?;
/// assert!(sess.is_new());
/// sess.set_param("greet_en", "Hi !")?;
/// sess.set_expire("+1h")?;
/// sess.flush()?;
/// let header = sess.header("text/html");
/// assert!(header.starts_with("Set-Cookie: CGISESSID="));
/// let cookie = sess.cookie().unwrap();
///
/// // Request 2: the browser sends the cookie back.
/// let cookie_header = format!("CGISESSID={}", cookie.value());
/// let req = CgiRequest::from_parts([("HTTP_COOKIE", cookie_header.as_str())], std::io::empty(), 0)?;
/// let sess = CgiSession::new("driver:file", &req, args())?;
/// assert_eq!(sess.param::<String>("greet_en")?.as_deref(), Some("Hi !"));
/// # Ok::<(), cgi_session_cgi::CgiError>(())
/// ```
pub struct CgiSession {
    session: Session,
    store: SessionStore,
    /// The session lock, when held (store lock mode `EveryRequest`, or after `lock`).
    lock: Option<SessionLock>,
}

impl fmt::Debug for CgiSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CgiSession")
            .field("session", &self.session)
            .finish()
    }
}

impl CgiSession {
    /// `CGI::Session->new($dsn, $cgi, \%args)`: builds the store the DSN names with `args`
    /// (for `driver:memcache`, [`DriverArgs::handle`] with a client from
    /// [`connect_memcached`]), then loads the session whose id the request claims (cookie
    /// first, then parameter), or creates a new one.
    ///
    /// # Errors
    /// [`CgiError::Open`] for a bad DSN or driver set-up; [`CgiError::Session`] when the
    /// store fails (503 via [`CgiError::http_status`] when it is unreachable).
    pub fn new(dsn: &str, request: &CgiRequest, args: DriverArgs) -> Result<Self, CgiError> {
        let store = cgi_session::builder_from_dsn(dsn, &args)?.build();
        Self::from_store(&store, request)
    }

    /// `CGI::Session->new` on a store configured in code (expiry, ip matching, cookie
    /// settings...).
    ///
    /// ```
    /// use cgi_session_cgi::{CgiRequest, CgiSession, SessionStore};
    /// use cgi_session::MemoryDriver;
    ///
    /// let store = SessionStore::builder(MemoryDriver::new()).default_expire(600).build();
    /// let req = CgiRequest::from_parts([("QUERY_STRING", "CGISESSID=%2e%2e%2f")], std::io::empty(), 0)?;
    /// let sess = CgiSession::from_store(&store, &req)?;
    /// assert!(sess.is_new()); // a malformed claimed id gives a fresh session
    /// assert_eq!(sess.expire(), Some(600));
    /// # let mut sess = sess; sess.discard();
    /// # Ok::<(), cgi_session_cgi::CgiError>(())
    /// ```
    ///
    /// # Errors
    /// [`CgiError::Session`] when the store fails.
    pub fn from_store(store: &SessionStore, request: &CgiRequest) -> Result<Self, CgiError> {
        log::ensure_installed();
        let claimed = request.session_id(store.cookie_name());
        let remote = request.remote_addr();
        let (session, lock) = block_on(async {
            // `LockMode::EveryRequest`: the session is locked before it is read, until close.
            let lock = match claimed.and_then(|c| SessionId::parse(c).ok()) {
                Some(id) if store.lock_mode() == LockMode::EveryRequest => {
                    Some(store.lock(&id).await?)
                }
                _ => None,
            };
            let session = store.new_session(claimed, remote).await?;
            Ok::<_, cgi_session::Error>((session, lock))
        })??;
        Ok(Self {
            session,
            store: store.clone(),
            lock,
        })
    }

    /// Takes the session lock (see [`LockMode`]) and reloads the session under it, keeping
    /// this request's unsaved changes; held until [`CgiSession::close`] (or drop). Other
    /// requests of the session that lock it wait, here and in other processes sharing the
    /// store. A new session has no other request: nothing is locked.
    ///
    /// # Errors
    /// [`CgiError::Session`] with [`cgi_session::Error::LockTimeout`] (503) when the lock stays
    /// held past the store's lock wait, or when the driver has no locks.
    pub fn lock(&mut self) -> Result<(), CgiError> {
        if self.lock.is_some() || self.session.is_new() {
            return Ok(());
        }
        let Some(id) = self.session.id().cloned() else {
            return Ok(());
        };
        let store_lock = {
            let (session, store) = (&mut self.session, &self.store);
            block_on(async move {
                let lock = store.lock(&id).await?;
                session.reload().await?;
                Ok::<_, cgi_session::Error>(lock)
            })??
        };
        self.lock = Some(store_lock);
        Ok(())
    }

    /// Atomic read-modify-write (see [`cgi_session::Session::update`]): runs `change` on the
    /// freshest stored copy of the session and writes it at once, re-running `change` if
    /// another request wrote the session in between. Use it for values computed from their
    /// old value, such as counters.
    ///
    /// ```
    /// use cgi_session_cgi::{CgiRequest, CgiSession, DriverArgs};
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let args = || DriverArgs::new().directory(dir.path());
    /// let req = CgiRequest::from_parts([("REMOTE_ADDR", "192.0.2.7")], std::io::empty(), 0)?;
    /// let mut sess = CgiSession::new("driver:file", &req, args())?;
    /// let n = sess.update(|s| {
    ///     let n = s.get::<u64>("visits")?.unwrap_or(0) + 1;
    ///     s.set("visits", &n)?;
    ///     Ok(n)
    /// })?;
    /// assert_eq!(n, 1);
    /// sess.close()?;
    /// # Ok::<(), cgi_session_cgi::CgiError>(())
    /// ```
    ///
    /// # Errors
    /// What `change` returns; store errors (503 when the store is unreachable or the session
    /// stays contended past the save deadline).
    pub fn update<R, F>(&mut self, change: F) -> Result<R, CgiError>
    where
        F: FnMut(&mut Session) -> Result<R, cgi_session::Error> + Send + 'static,
        R: Send + 'static,
    {
        Ok(block_on(self.session.update(change))??)
    }

    /// The id (CGI::Session's `id`). Its `Display` is shortened; never log `as_str()`.
    pub fn id(&self) -> Option<&SessionId> {
        self.session.id()
    }

    /// A parameter (CGI::Session's `param($name)`), `Ok(None)` when unset.
    ///
    /// # Errors
    /// [`CgiError::Session`] when the stored value is not a `T`.
    pub fn param<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, CgiError> {
        Ok(self.session.get(name)?)
    }

    /// A parameter read with Perl's scalar rules, for sessions a Perl page writes (`'7'` is 7
    /// where a number is asked for, `undef` is `None`): see
    /// [`Session::get_perl`](cgi_session::Session::get_perl).
    ///
    /// # Errors
    /// [`CgiError::Session`] when the stored value is not a `T` even with Perl's rules.
    pub fn param_perl<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, CgiError> {
        Ok(self.session.get_perl(name)?)
    }

    /// The parameter names (CGI::Session's `param()`).
    pub fn param_names(&self) -> Vec<&str> {
        self.session.names()
    }

    /// Sets a parameter (CGI::Session's `param($name, $value)`).
    ///
    /// # Errors
    /// [`CgiError::Session`] for a reserved `_SESSION_*` name or a value that cannot be stored.
    pub fn set_param<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), CgiError> {
        Ok(self.session.set(name, value)?)
    }

    /// Removes a parameter (CGI::Session's `clear($name)`), returning its value.
    pub fn clear_param(&mut self, name: &str) -> Option<Value> {
        self.session.remove(name)
    }

    /// Copies request parameters into the session (CGI::Session's `save_param`): one value
    /// is stored as a string, several as an array; with `only`, just those names.
    ///
    /// # Errors
    /// [`CgiError::Session`] for a reserved `_SESSION_*` name.
    pub fn save_params(
        &mut self,
        request: &CgiRequest,
        only: Option<&[&str]>,
    ) -> Result<(), CgiError> {
        Ok(self.session.save_params(request.params(), only)?)
    }

    /// The idle timeout in seconds (CGI::Session's `expire()`).
    pub fn expire(&self) -> Option<i64> {
        self.session.expire()
    }

    /// Sets the idle timeout in CGI::Session's syntax (`"+10m"`, `"2h"`, `"0"` cancels).
    ///
    /// # Errors
    /// [`CgiError::Session`] for a malformed time string.
    pub fn set_expire(&mut self, time: &str) -> Result<(), CgiError> {
        Ok(self.session.set_expire_str(time)?)
    }

    /// Sets the idle timeout in seconds (0 cancels it).
    pub fn set_expire_secs(&mut self, secs: i64) {
        self.session.set_expire(secs);
    }

    /// Whether the session was created by this request (before its first flush).
    pub fn is_new(&self) -> bool {
        self.session.is_new()
    }

    /// Whether the claimed session had expired (a fresh one was issued).
    pub fn is_expired(&self) -> bool {
        self.session.is_expired()
    }

    /// Whether this request changed the session and has not flushed it.
    pub fn is_modified(&self) -> bool {
        self.session.is_modified()
    }

    /// Marks the session for deletion (CGI::Session's `delete`); the next flush removes it and
    /// [`CgiSession::header`] then sends a removal cookie.
    pub fn delete(&mut self) {
        self.session.delete();
    }

    /// Forgets this request's unsaved changes, so that nothing is flushed on drop.
    pub fn discard(&mut self) {
        self.session.discard();
    }

    /// Saves the session if it is new, changed or deleted (CGI::Session's `flush`).
    ///
    /// # Errors
    /// [`CgiError::Session`] when the store fails (see [`cgi_session::Session::flush`]).
    pub fn flush(&mut self) -> Result<(), CgiError> {
        if !self.session.needs_flush() {
            return Ok(());
        }
        Ok(block_on(self.session.flush())??)
    }

    /// Flushes and consumes the session (CGI::Session's `close`), reporting the error that a
    /// flush on drop could only log.
    ///
    /// # Errors
    /// As [`CgiSession::flush`].
    pub fn close(mut self) -> Result<(), CgiError> {
        let result = self.flush();
        if result.is_err() {
            // Already reported to the caller: do not try again on drop.
            self.session.discard();
        }
        let released = self.release_lock();
        result.and(released)
    }

    /// Releases the session lock if this request holds it.
    fn release_lock(&mut self) -> Result<(), CgiError> {
        if let Some(lock) = self.lock.take() {
            block_on(lock.release())??;
        }
        Ok(())
    }

    /// The session cookie (CGI::Session's `cookie()`): `HttpOnly`, `SameSite=Lax`, `Path=/`,
    /// `Max-Age` when the session has an idle timeout.
    pub fn cookie(&self) -> Option<cookie::Cookie<'static>> {
        self.session.cookie()
    }

    /// The CGI header block (CGI::Session's `header()`): `Set-Cookie`, then `Content-Type`,
    /// then the empty line, all CRLF-terminated. Print it before the body.
    pub fn header(&self, content_type: &str) -> String {
        self.session.header(content_type)
    }

    /// Writes [`CgiSession::header`] to standard output.
    ///
    /// # Errors
    /// When standard output cannot be written.
    pub fn print_header(&self, content_type: &str) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(self.header(content_type).as_bytes())?;
        out.flush()
    }

    /// The wrapped session, for anything not wrapped here (per-parameter expiry, `dump`...).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The wrapped session, mutably. Async methods on it need [`block_on`].
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

impl Drop for CgiSession {
    /// Flushes a session with unsaved changes, blocking, and logs errors (by default on
    /// standard error, the web server's error log): CGI::Session's auto-flush on destruction.
    fn drop(&mut self) {
        if !self.session.needs_flush() || std::thread::panicking() {
            if let Err(e) = self.release_lock() {
                tracing::warn!(error = %e, "releasing the session lock failed; it is freed when its lease ends");
            }
            return;
        }
        let id = self
            .session
            .id()
            .map(SessionId::redacted)
            .unwrap_or_default();
        match block_on(self.session.flush()) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(session = %id, error = %e, "flushing the session when it was dropped failed; its changes are lost (call `flush` or `close` to answer with an error instead)");
            }
            Err(e) => {
                tracing::error!(session = %id, error = %e, "the session was dropped with unsaved changes and could not be flushed; its changes are lost");
                self.session.discard();
            }
        }
        if let Err(e) = self.release_lock() {
            tracing::warn!(session = %id, error = %e, "releasing the session lock failed; it is freed when its lease ends");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(vars: &[(&str, &str)], body: &[u8], limit: u64) -> Result<CgiRequest, CgiError> {
        CgiRequest::from_parts(vars.iter().copied(), body, limit)
    }

    #[test]
    fn cookie_beats_parameter_and_empty_cookie_falls_through() {
        let r = req(
            &[
                ("HTTP_COOKIE", "CGISESSID=stale"),
                ("QUERY_STRING", "CGISESSID=fresh"),
            ],
            b"",
            0,
        )
        .unwrap();
        assert_eq!(r.session_id("CGISESSID"), Some("stale"));
        let r = req(
            &[
                ("HTTP_COOKIE", "CGISESSID=; other=1"),
                ("QUERY_STRING", "CGISESSID=fresh"),
            ],
            b"",
            0,
        )
        .unwrap();
        assert_eq!(r.session_id("CGISESSID"), Some("fresh"));
        let r = req(&[], b"", 0).unwrap();
        assert_eq!(r.session_id("CGISESSID"), None);
    }

    #[test]
    fn perl_scalars_read_with_perl_rules() {
        let store = SessionStore::builder(cgi_session::MemoryDriver::new()).build();
        let mut s = CgiSession::from_store(&store, &req(&[], b"", 0).unwrap()).unwrap();
        // What a Perl page stores: numbers as strings, undef.
        s.set_param("visits", "7").unwrap();
        s.set_param("nick", &serde_json::Value::Null).unwrap();
        assert!(s.param::<i64>("visits").is_err());
        assert_eq!(s.param_perl::<i64>("visits").unwrap(), Some(7));
        assert_eq!(s.param_perl::<String>("nick").unwrap(), None);
        s.discard();
    }

    #[test]
    fn form_fields_come_before_the_query_string() {
        let body = b"CGISESSID=posted&a=1&a=2";
        let len = body.len().to_string();
        let r = req(
            &[
                ("REQUEST_METHOD", "post"),
                (
                    "CONTENT_TYPE",
                    "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
                ),
                ("CONTENT_LENGTH", &len),
                ("QUERY_STRING", "CGISESSID=query&a=3"),
            ],
            body,
            1024,
        )
        .unwrap();
        assert_eq!(r.method(), "POST");
        assert_eq!(r.session_id("CGISESSID"), Some("posted"));
        assert_eq!(r.param_all("a"), ["1", "2", "3"]);
    }

    #[test]
    fn malformed_cookies_and_escapes_never_panic() {
        for header in [
            "",
            ";;;",
            "=",
            "=value",
            "novalue",
            "a=\"",
            "a=\"\"",
            "CGISESSID=\u{0}\r\n",
            "CGISESSID=%ZZ%",
            "\u{FFFD}=\u{263A}; x",
        ] {
            let r = req(&[("HTTP_COOKIE", header)], b"", 0).unwrap();
            let _ = r.session_id("CGISESSID");
        }
        let r = req(&[("HTTP_COOKIE", " a = \"quoted\" ;b=c=d")], b"", 0).unwrap();
        assert_eq!(r.cookie("a"), Some("quoted"));
        assert_eq!(r.cookie("b"), Some("c=d"));
        for qs in ["%", "%%%", "a=%E9%", "=x&&&", "a=b=c", "%FF%FE=%C3"] {
            let _ = req(&[("QUERY_STRING", qs)], b"", 0).unwrap();
        }
        let r = req(&[("QUERY_STRING", "a=%E9x&b=%zz")], b"", 0).unwrap();
        assert_eq!(r.param("a"), Some("\u{FFFD}x"));
        assert_eq!(r.param("b"), Some("%zz"));
    }

    #[test]
    fn bodies_over_the_limit_or_malformed_lengths_are_refused() {
        let post = |len: &str| {
            req(
                &[
                    ("REQUEST_METHOD", "POST"),
                    ("CONTENT_TYPE", FORM_URLENCODED),
                    ("CONTENT_LENGTH", len),
                ],
                b"a=1",
                2,
            )
        };
        let e = post("3").unwrap_err();
        assert!(
            matches!(
                e,
                CgiError::BodyTooLarge {
                    length: 3,
                    limit: 2
                }
            ),
            "{e}"
        );
        assert_eq!(e.http_status(), 413);
        for bad in ["-1", "two", "1e3", "99999999999999999999999"] {
            let e = post(bad).unwrap_err();
            assert!(matches!(e, CgiError::BadContentLength(_)), "{bad}: {e}");
            assert_eq!(e.http_status(), 400);
        }
        let e = req(
            &[
                ("REQUEST_METHOD", "POST"),
                ("CONTENT_TYPE", FORM_URLENCODED),
                ("CONTENT_LENGTH", "10"),
            ],
            b"a=1",
            100,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                CgiError::TruncatedBody {
                    expected: 10,
                    read: 3
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn other_bodies_are_left_unread() {
        let mut body: &[u8] = b"--boundary";
        let r = CgiRequest::from_parts(
            [
                ("REQUEST_METHOD", "POST"),
                ("CONTENT_TYPE", "multipart/form-data; boundary=x"),
                ("CONTENT_LENGTH", "99999999"),
            ],
            &mut body,
            10,
        )
        .unwrap();
        assert_eq!(r.params().count(), 0);
        assert_eq!(body, b"--boundary");
    }

    #[test]
    fn debug_does_not_show_values() {
        let r = req(&[("HTTP_COOKIE", "CGISESSID=secretvalue123")], b"", 0).unwrap();
        let dbg = format!("{r:?}");
        assert!(
            dbg.contains("CGISESSID") && !dbg.contains("secretvalue123"),
            "{dbg}"
        );
    }

    #[test]
    fn dropping_a_changed_session_flushes_it() {
        let store = SessionStore::builder(cgi_session::MemoryDriver::new()).build();
        let r = req(&[], b"", 0).unwrap();
        let mut s = CgiSession::from_store(&store, &r).unwrap();
        s.set_param("n", &1).unwrap();
        let id = s.id().unwrap().as_str().to_owned();
        drop(s);
        let cookie = format!("CGISESSID={id}");
        let r = req(&[("HTTP_COOKIE", &cookie)], b"", 0).unwrap();
        let mut s = CgiSession::from_store(&store, &r).unwrap();
        assert!(!s.is_new());
        assert_eq!(s.param::<i64>("n").unwrap(), Some(1));
        // delete on drop, too
        s.delete();
        drop(s);
        let s = CgiSession::from_store(&store, &r).unwrap();
        assert!(s.is_new());
        s.close().unwrap();
    }

    const ID: &str = "5ee0c1d2a1b2c3d4e5f60718293a4b5c";

    /// `HTTP_COOKIE` as raw bytes, as `from_env` passes it.
    fn with_cookie(header: &[u8]) -> CgiRequest {
        CgiRequest::from_parts([("HTTP_COOKIE", header)], std::io::empty(), 0).unwrap()
    }

    #[test]
    fn cookie_headers_as_browsers_send_them_find_the_session() {
        let cases: Vec<Vec<u8>> = vec![
            // Chrome, with analytics cookies (dots, `=` padding) around the session cookie.
            format!("_ga=GA1.1.1234567890.1700000000; CGISESSID={ID}; prefs=eyJhIjoxfQ==")
                .into_bytes(),
            // Firefox, with an empty cookie and one set without `=`.
            format!("empty=; flag; CGISESSID={ID}").into_bytes(),
            // A Perl page set `lang` in latin-1: the byte 0xE7 is not UTF-8.
            [&b"lang=fran\xe7ais; CGISESSID="[..], ID.as_bytes()].concat(),
            // Quoted (RFC 6265), and a second session cookie, which CGI.pm ignores.
            format!("CGISESSID=\"{ID}\"; CGISESSID=0123456789abcdef").into_bytes(),
        ];
        for header in &cases {
            let r = with_cookie(header);
            assert_eq!(
                r.session_id("CGISESSID"),
                Some(ID),
                "{}",
                String::from_utf8_lossy(header)
            );
        }
        let r = with_cookie(&cases[2]);
        assert_eq!(r.cookie("lang"), Some("fran\u{FFFD}ais"));
        let r = with_cookie(&cases[0]);
        assert_eq!(r.cookie("prefs"), Some("eyJhIjoxfQ=="));
        // The first session cookie counts: empty falls through to the parameter, malformed
        // gives no id.
        let r = CgiRequest::from_parts(
            [
                ("HTTP_COOKIE", format!("CGISESSID=; CGISESSID={ID}")),
                ("QUERY_STRING", "CGISESSID=fromquery".to_owned()),
            ],
            std::io::empty(),
            0,
        )
        .unwrap();
        assert_eq!(r.session_id("CGISESSID"), Some("fromquery"));
        let r = with_cookie(format!("CGISESSID=a%2Fb; CGISESSID={ID}").as_bytes());
        assert_eq!(r.session_id("CGISESSID"), None);
    }

    #[test]
    fn a_latin1_cookie_next_to_the_session_cookie_keeps_the_session() {
        let store = SessionStore::builder(cgi_session::MemoryDriver::new()).build();
        let mut s = CgiSession::from_store(&store, &req(&[], b"", 0).unwrap()).unwrap();
        s.set_param("greet_en", "Hi !").unwrap();
        let id = s.id().unwrap().as_str().to_owned();
        s.close().unwrap();
        let header = [&b"lang=fran\xe7ais; CGISESSID="[..], id.as_bytes()].concat();
        let s = CgiSession::from_store(&store, &with_cookie(&header)).unwrap();
        assert!(!s.is_new());
        assert_eq!(
            s.param::<String>("greet_en").unwrap().as_deref(),
            Some("Hi !")
        );
        s.close().unwrap();
    }

    #[test]
    fn error_responses_say_what_happened_and_log_the_details() {
        let store = SessionStore::builder(cgi_session::MemoryDriver::new()).build();
        let mut s = CgiSession::from_store(&store, &req(&[], b"", 0).unwrap()).unwrap();
        s.set_param("visits", "7").unwrap();
        let type_error = s.param::<i64>("visits").unwrap_err();
        s.discard();
        let unavailable = || cgi_session::DriverError::Unavailable {
            driver: "memcache",
            source: "127.0.0.1:11211: connection refused".into(),
        };
        let cases = [
            (
                CgiError::Session(cgi_session::Error::Driver(unavailable())),
                "503 Service Unavailable",
                Some(5),
                "The session store is unavailable; please try again shortly.",
                "127.0.0.1:11211",
            ),
            (
                CgiError::Session(cgi_session::Error::Driver(
                    cgi_session::DriverError::OutcomeUnknown {
                        driver: "memcache",
                        source: "127.0.0.1:11211: no reply within 1 s".into(),
                    },
                )),
                "503 Service Unavailable",
                Some(5),
                "The session store did not answer in time: your last change may or may not have been saved. Please check, and try again shortly if it is missing.",
                "127.0.0.1:11211",
            ),
            (
                type_error,
                "500 Internal Server Error",
                None,
                "The session could not be used.",
                "visits",
            ),
            (
                CgiError::BodyTooLarge {
                    length: 5_000_000,
                    limit: 1_048_576,
                },
                "413 Content Too Large",
                None,
                "The data sent is too large.",
                "5000000",
            ),
        ];
        for (error, status, retry, body, detail) in cases {
            let log = crate::log::tests::Buffer::default();
            let sub = crate::log::subscriber("test".into(), tracing::Level::WARN, log.clone());
            let response = tracing::subscriber::with_default(sub, || error.response());
            let (head, text) = response.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with(&format!("Status: {status}\r\n")), "{head}");
            assert_eq!(head.contains("Retry-After:"), retry.is_some(), "{head}");
            if let Some(secs) = retry {
                assert!(head.contains(&format!("Retry-After: {secs}\r\n")), "{head}");
            }
            assert!(head.contains("Cache-Control: no-store"), "{head}");
            assert_eq!(text, format!("{body}\n"));
            for internal in [
                "127.0.0.1",
                "11211",
                "memcache",
                "visits",
                "i64",
                "::",
                "`",
                "5000000",
            ] {
                assert!(!text.contains(internal), "{internal} in {text}");
            }
            let logged = log.text();
            assert!(
                logged.starts_with("test: ") && logged.contains(detail),
                "the details are logged: {logged}"
            );
        }
    }

    #[tokio::test]
    async fn blocking_calls_inside_a_runtime_are_refused() {
        let e = block_on(async {}).unwrap_err();
        assert!(matches!(e, CgiError::InsideAsyncRuntime));
    }
}
