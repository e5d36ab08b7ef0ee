//! [`SessionError`]: what a handler gets when the session cannot be used.

use std::sync::Arc;

use cgi_session_core::web::WebError;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// Why a [`SessionHandle`](crate::SessionHandle) operation failed.
///
/// Store failures while loading or regenerating are also remembered by the middleware, which answers
/// the request with 503 (store unavailable) or 500 (other store failure) whatever the handler
/// returns: a request never silently continues with a fresh, empty session.
///
/// As an actix-web [`ResponseError`] it is a 503 or a 500 with a short text body (and
/// `Retry-After` when a retry can help); the cause is logged by the middleware, not sent to
/// the client.
///
/// ```
/// use actix_web::ResponseError;
/// use cgi_session_actix::SessionError;
///
/// let e = SessionError::MissingMiddleware;
/// assert_eq!(e.error_response().status(), 500);
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session store could not be reached (down, hung, refused). The request is answered
    /// with 503 Service Unavailable; retry once the store is back.
    #[error("the session store is unavailable ({0}); the request was answered with 503: check that the store (e.g. memcached) is running and reachable")]
    Unavailable(Arc<cgi_session_core::Error>),

    /// The session is busy: other requests kept it locked, or other processes kept writing it,
    /// past the store's deadline. The request is answered with 503 and `Retry-After`; it can be
    /// retried as it is.
    #[error("the session is busy ({0}); the request was answered with 503 and Retry-After")]
    Busy(Arc<cgi_session_core::Error>),

    /// Session locks are off for this middleware but the handler called
    /// [`SessionHandle::lock`](crate::SessionHandle::lock).
    #[error("session locks are off: build the middleware with `.lock_mode(LockMode::OnDemand)` (or `EveryRequest`) to use `SessionHandle::lock`")]
    LockingOff,

    /// The store failed in another way while loading or saving (the request is answered with
    /// 500), or the handler's own call failed (a type mismatch in `get`, a reserved name in
    /// `set`: nothing is recorded then).
    #[error("session error: {0}")]
    Session(Arc<cgi_session_core::Error>),

    /// The handler asked for a [`SessionHandle`](crate::SessionHandle) but no
    /// [`SessionMiddleware`](crate::SessionMiddleware) wraps the route.
    #[error(
        "no session middleware: add `.wrap(SessionMiddleware::new(store))` to the App (or to this scope)"
    )]
    MissingMiddleware,
}

/// What the visitor reads when the middleware is misconfigured.
const MISCONFIGURED: &str =
    "Server misconfiguration: the session middleware is not set up for this route.\n";

impl SessionError {
    /// Whether the store could not be reached (the response is a 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Whether the session was busy past its deadline (the response is a 503 with
    /// `Retry-After`).
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Busy(_))
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.shared()
            .and_then(|e| StatusCode::from_u16(e.status()).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The `Retry-After` the response carries, in seconds.
    pub fn retry_after(&self) -> Option<u64> {
        self.shared().and_then(|e| e.retry_after())
    }

    /// The text body the response carries: what happened, for a person, without internals.
    pub fn body(&self) -> &'static str {
        self.shared()
            .map_or(MISCONFIGURED, |e| e.body(MISCONFIGURED))
    }

    /// The shared classification of this error (`None` for [`SessionError::MissingMiddleware`]).
    pub(crate) fn shared(&self) -> Option<WebError> {
        match self {
            Self::Unavailable(e) => Some(WebError::Unavailable(Arc::clone(e))),
            Self::Busy(e) => Some(WebError::Busy(Arc::clone(e))),
            Self::Session(e) => Some(WebError::Session(Arc::clone(e))),
            Self::LockingOff => Some(WebError::LockingOff),
            Self::MissingMiddleware => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn from_store(e: cgi_session_core::Error) -> Self {
        WebError::from_store(e).into()
    }
}

impl From<WebError> for SessionError {
    fn from(e: WebError) -> Self {
        match e {
            WebError::Unavailable(e) => Self::Unavailable(e),
            WebError::Busy(e) => Self::Busy(e),
            WebError::LockingOff => Self::LockingOff,
            WebError::Session(e) => Self::Session(e),
        }
    }
}

impl From<cgi_session_core::Error> for SessionError {
    /// Classifies a session error: busy (503 with `Retry-After`), store unavailable (503),
    /// anything else (500).
    fn from(e: cgi_session_core::Error) -> Self {
        WebError::from_store(e).into()
    }
}

impl SessionError {
    /// Logs the details of an error a handler answered with (the client only gets
    /// [`SessionError::body`]).
    pub(crate) fn log_as_answer(&self) {
        cgi_session_core::web::log_answer(self, self.status().as_u16(), self.is_busy());
    }
}

impl ResponseError for SessionError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    /// The status, `Content-Type: text/plain`, `Cache-Control: no-store`, `Retry-After` where
    /// it applies and [`SessionError::body`]: words for the visitor, no internals. The details
    /// (the store's address, the parameter and type involved) are logged at error level (warn
    /// for a busy session) by the [`SessionMiddleware`](crate::SessionMiddleware) when the
    /// response passes through it, or by the extractor for
    /// [`SessionError::MissingMiddleware`].
    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        response
            .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
            .insert_header((CACHE_CONTROL, "no-store"));
        if let Some(secs) = self.retry_after() {
            response.insert_header((RETRY_AFTER, secs));
        }
        response.body(self.body())
    }
}

#[cfg(test)]
mod limiter_tests {
    use super::*;

    #[test]
    fn a_session_too_large_to_save_says_so() {
        let e = SessionError::from_store(cgi_session_core::Error::Driver(
            cgi_session_core::DriverError::TooLarge {
                driver: "memcache",
                size: 2_000_000,
                limit: 1_048_576,
            },
        ));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(e.body().contains("too large"), "{}", e.body());
    }

    #[test]
    fn a_write_with_an_unknown_outcome_says_so() {
        let e = SessionError::from_store(cgi_session_core::Error::Driver(
            cgi_session_core::DriverError::OutcomeUnknown {
                driver: "memcache",
                source: "127.0.0.1:11211: no reply within 1 s".into(),
            },
        ));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.retry_after().is_some());
        assert!(
            e.body().contains("may or may not have been saved"),
            "{}",
            e.body()
        );
        assert!(!e.body().contains("127.0.0.1"));
    }
}
