//! [`CgiError`]: what went wrong, the HTTP status it answers with, and the response for the
//! visitor (plain words; the details go to the log).

use std::io;

use crate::log;

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
    #[cfg(feature = "memcache")]
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
            #[cfg(feature = "memcache")]
            Self::Memcached(e) => e.is_unavailable(),
            Self::Session(e) => e.is_unavailable(),
            Self::Open(e) => e.is_unavailable(),
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
            #[cfg(feature = "memcache")]
            Self::Memcached(e) if e.is_unavailable() => Some(UNAVAILABLE_RETRY_AFTER_SECS),
            Self::Open(e) if e.is_unavailable() => Some(UNAVAILABLE_RETRY_AFTER_SECS),
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
    /// i.e. the web server's error log (see [`StderrLog`](crate::StderrLog)). Call it once per error.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_responses_say_what_happened_and_log_the_details() {
        // What `param::<i64>("visits")` gives for the string a Perl page stored.
        let type_error = CgiError::Session(cgi_session::Error::ParamType {
            name: "visits".into(),
            source: serde_json::from_value::<i64>(serde_json::json!("7")).unwrap_err(),
        });
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
}
