//! The error type.

use std::sync::Arc;
use std::time::Duration;

/// Hint appended to availability errors.
const CHECK_HINT: &str =
    "is it running, and reachable at that address from this host (host, port, firewall)?";

/// Everything that can go wrong talking to memcached.
///
/// [`is_unavailable`](Error::is_unavailable) tells apart "the server could not
/// be reached or did not answer in time" (retry later, serve degraded) from
/// bugs and bad input.
///
/// ```
/// use cgi_session_memcache_client::{Error, Key};
/// let err = Key::new("has space").unwrap_err();
/// assert!(matches!(err, Error::InvalidKey { .. }));
/// assert!(!err.is_unavailable());
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server could not be reached, refused the connection, or closed it.
    #[error("memcached at {server} is unavailable: {reason}; {CHECK_HINT}")]
    Unavailable {
        /// The server address as configured.
        server: String,
        /// What happened (connect refused, connection closed, ...).
        reason: String,
        /// The underlying I/O error, if any.
        #[source]
        source: Option<Arc<std::io::Error>>,
    },
    /// The server did not answer (or accept a connection) in time. The
    /// connection was closed; the next request opens a new one.
    #[error("memcached at {server} did not answer within {after:?}; {CHECK_HINT}")]
    Timeout {
        /// The server address as configured.
        server: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// A write (store or delete) was sent in full, and then its reply did
    /// not come: the server did not answer in time, or the connection was
    /// lost. The write **may or may not have been applied**: memcached
    /// executes every command it has read, even after the client gave up or
    /// closed the connection (a hung server that resumes applies it then).
    /// The connection was closed and is never reused, so a late reply cannot
    /// reach another request.
    ///
    /// An availability failure ([`is_unavailable`](Error::is_unavailable) is
    /// true; [`is_timeout`](Error::is_timeout) is true when it timed out);
    /// [`is_outcome_unknown`](Error::is_outcome_unknown) tells it apart. A
    /// write that failed before any of it was sent is an
    /// [`Unavailable`](Error::Unavailable) or [`Timeout`](Error::Timeout)
    /// error instead: it was not applied.
    #[error("the outcome of a write to memcached at {server} is unknown (it may or may not have been applied): {reason}; the connection was closed; {CHECK_HINT}")]
    OutcomeUnknown {
        /// The server address as configured.
        server: String,
        /// What happened after the write was sent.
        reason: String,
        /// Whether the reply did not come in time (else the connection was lost).
        timed_out: bool,
    },
    /// The server sent something that is not valid meta-protocol. The
    /// connection was closed; the next request opens a new one.
    #[error("memcached at {server} sent an invalid reply: {detail}; the connection was closed and will be reopened (is this a memcached >= 1.6 server speaking the meta protocol?)")]
    Protocol {
        /// The server address as configured.
        server: String,
        /// What was wrong.
        detail: String,
    },
    /// A key was rejected before anything was sent.
    #[error("invalid memcached key: {reason}; keys must be 1 to 250 bytes without spaces or control characters (hash or encode longer or binary keys)")]
    InvalidKey {
        /// Why the key was rejected (the key itself is not included).
        reason: String,
    },
    /// A value was larger than the client's `max_value_size`.
    #[error("value of {len} bytes is larger than the limit of {max} bytes; store less data, or raise the server's item size (memcached -I) and the client's max_value_size")]
    ValueTooLarge {
        /// The value's size.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The server answered `SERVER_ERROR` (e.g. "object too large for cache",
    /// "out of memory"). The connection stays usable.
    #[error("memcached at {server} reported an error: {message}")]
    Server {
        /// The server address as configured.
        server: String,
        /// The text after `SERVER_ERROR`.
        message: String,
    },
    /// The operation is not available in the protocol spoken to this server
    /// (e.g. a CAS-guarded delete in the text protocol).
    #[error("memcached at {server} does not support {what} in the protocol configured for it")]
    Unsupported {
        /// The server address as configured.
        server: String,
        /// What was asked.
        what: &'static str,
    },
    /// The TLS handshake with the server failed: its certificate is not
    /// signed by the configured CA, does not name the host connected to
    /// (see [`TlsConfig::server_name`](crate::TlsConfig::server_name)), has
    /// expired, or the server refused the client certificate (or wanted one
    /// and none was configured). Also returned when a TLS client reaches a
    /// server that does not speak TLS.
    ///
    /// This is a configuration problem, not an outage:
    /// [`is_unavailable`](Error::is_unavailable) is false, and the server is
    /// not marked down. Every new connection fails the same way until the
    /// configuration (or the server's certificate) is fixed.
    #[error("TLS handshake with memcached at {server} failed: {detail}; check that the CA file (TlsConfig::ca_file) holds the CA that signed the server's certificate, that the server name (TlsConfig::server_name, by default the host of the address) is in the certificate, and that a client certificate is configured if the server requires one (memcached -o ssl_verify_mode)")]
    Tls {
        /// The server address as configured.
        server: String,
        /// What rustls or the server reported.
        detail: String,
    },
    /// memcached refused the credentials (`CLIENT_ERROR authentication
    /// failure`), or requires authentication (`memcached -Y`) and none is
    /// configured (`CLIENT_ERROR unauthenticated`). Nothing was read or
    /// written: a request never turns into a silent miss.
    ///
    /// A configuration problem, not an outage:
    /// [`is_unavailable`](Error::is_unavailable) is false.
    #[error("memcached at {server} refused authentication: {reason}; check the username and password (ClientConfig::auth) against the server's auth file (memcached -Y)")]
    Auth {
        /// The server address as configured.
        server: String,
        /// What went wrong (the password is never included).
        reason: String,
    },
    /// The client configuration cannot be used: a TLS CA file, client
    /// certificate or key that cannot be read or parsed, a server name that
    /// is not a valid DNS name or IP address, or credentials memcached's
    /// authentication cannot carry. Reported by [`Client::connect`](crate::Client::connect)
    /// before anything is sent.
    #[error("invalid memcached client configuration: {detail}")]
    Config {
        /// What is wrong, and with which setting.
        detail: String,
    },
    /// A per-server operation named a server index the client does not have.
    #[error("server index {index} is out of range: this client has {count} server(s) (see Client::servers)")]
    NoSuchServer {
        /// The index asked for.
        index: usize,
        /// How many servers the client has.
        count: usize,
    },
}

impl Error {
    /// True for [`Error::Unavailable`] and [`Error::Timeout`]: the server is
    /// down, unreachable or hung. A session store usually degrades or retries
    /// later rather than treating this as a bug.
    ///
    /// ```
    /// use cgi_session_memcache_client::Error;
    /// let e = Error::Timeout { server: "127.0.0.1:11211".into(), after: std::time::Duration::from_millis(500) };
    /// assert!(e.is_unavailable());
    /// assert_eq!(
    ///     e.to_string(),
    ///     "memcached at 127.0.0.1:11211 did not answer within 500ms; is it running, and reachable at that address from this host (host, port, firewall)?"
    /// );
    /// ```
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. } | Error::Timeout { .. } | Error::OutcomeUnknown { .. }
        )
    }

    /// True for [`Error::OutcomeUnknown`]: a write was sent and its reply
    /// never came, so it may or may not have been applied.
    ///
    /// ```
    /// use cgi_session_memcache_client::Error;
    /// let e = Error::Timeout { server: "a:1".into(), after: std::time::Duration::from_secs(1) };
    /// assert!(!e.is_outcome_unknown());
    /// ```
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown { .. })
    }

    /// True for [`Error::Timeout`], and for an [`Error::OutcomeUnknown`]
    /// whose reply did not come in time.
    ///
    /// ```
    /// use cgi_session_memcache_client::Error;
    /// let e = Error::Timeout { server: "a:1".into(), after: std::time::Duration::from_secs(1) };
    /// assert!(e.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. }
                | Error::OutcomeUnknown {
                    timed_out: true,
                    ..
                }
        )
    }

    /// This error as the failure of a write that was sent in full: a
    /// timeout or a lost connection becomes [`Error::OutcomeUnknown`];
    /// other errors are returned as they are.
    pub(crate) fn after_write(self) -> Error {
        match self {
            Error::Timeout { server, after } => Error::OutcomeUnknown {
                server,
                reason: format!("no reply within {after:?}"),
                timed_out: true,
            },
            Error::Unavailable { server, reason, .. } => Error::OutcomeUnknown {
                server,
                reason,
                timed_out: false,
            },
            other => other,
        }
    }

    pub(crate) fn unavailable(server: &str, reason: impl Into<String>) -> Error {
        Error::Unavailable {
            server: server.to_string(),
            reason: reason.into(),
            source: None,
        }
    }

    pub(crate) fn io(server: &str, what: &str, e: std::io::Error) -> Error {
        if let Some(cause) = tls_cause(&e) {
            return Error::Tls {
                server: server.to_string(),
                detail: format!("{what}: {cause}"),
            };
        }
        Error::Unavailable {
            server: server.to_string(),
            reason: format!("{what}: {e}"),
            source: Some(Arc::new(e)),
        }
    }

    pub(crate) fn protocol(server: &str, detail: impl Into<String>) -> Error {
        Error::Protocol {
            server: server.to_string(),
            detail: detail.into(),
        }
    }
}

/// The rustls error inside an I/O error, if any.
pub(crate) fn tls_cause(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
