//! [`SessionError`]: what a handler gets when the session cannot be used.

use std::sync::Arc;

use cgi_session_core::web::WebError;

use axum_core::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};

/// Why a [`SessionHandle`](crate::SessionHandle) operation failed.
///
/// Store failures while loading or regenerating are also remembered by the layer, which answers
/// the request with 503 (store unavailable) or 500 (other store failure) whatever the handler
/// returns: a request never silently continues with a fresh, empty session.
///
/// As an axum response it is a 503 or a 500 with a short text body (and `Retry-After` when a
/// retry can help); the cause is logged by the layer, not sent to the client.
///
/// ```
/// use axum_core::response::IntoResponse;
/// use cgi_session_tower::SessionError;
///
/// let e = SessionError::MissingLayer;
/// assert_eq!(e.into_response().status(), 500);
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

    /// Session locks are off for this layer but the handler called
    /// [`SessionHandle::lock`](crate::SessionHandle::lock).
    #[error("session locks are off: build the layer with `.lock_mode(LockMode::OnDemand)` (or `EveryRequest`) to use `SessionHandle::lock`")]
    LockingOff,

    /// The store failed in another way while loading or saving (the request is answered with
    /// 500), or the handler's own call failed (a type mismatch in `get`, a reserved name in
    /// `set`: nothing is recorded then).
    #[error("session error: {0}")]
    Session(Arc<cgi_session_core::Error>),

    /// The handler asked for a [`SessionHandle`](crate::SessionHandle) but no
    /// [`SessionLayer`](crate::SessionLayer) wraps the route.
    #[error(
        "no session layer: add `.layer(SessionLayer::new(store))` to the router (or to this route)"
    )]
    MissingLayer,
}

/// What the visitor reads when the layer is misconfigured.
const MISCONFIGURED: &str =
    "Server misconfiguration: the session layer is not set up for this route.\n";

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

    /// Status, `Content-Type: text/plain`, `Cache-Control: no-store`, `Retry-After` where it
    /// applies, and the text body, as response parts for any body type.
    pub(crate) fn response_parts(&self) -> (StatusCode, http::HeaderMap, &'static str) {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = self.retry_after() {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        (self.status(), headers, self.body())
    }

    /// The shared classification of this error (`None` for [`SessionError::MissingLayer`]).
    pub(crate) fn shared(&self) -> Option<WebError> {
        match self {
            Self::Unavailable(e) => Some(WebError::Unavailable(Arc::clone(e))),
            Self::Busy(e) => Some(WebError::Busy(Arc::clone(e))),
            Self::Session(e) => Some(WebError::Session(Arc::clone(e))),
            Self::LockingOff => Some(WebError::LockingOff),
            Self::MissingLayer => None,
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

/// Put in the extensions of the response made from a [`SessionError`], so that the layer can
/// log the error's details (once: a store failure the layer logged already is not logged
/// again).
#[derive(Debug, Clone)]
pub(crate) struct AnsweredWith(pub(crate) SessionError);

impl IntoResponse for SessionError {
    /// The status, `Content-Type: text/plain`, `Cache-Control: no-store`, `Retry-After` where
    /// it applies and [`SessionError::body`]: words for the visitor, no internals. The details
    /// (the store's address, the parameter and type involved) are logged at error level (warn
    /// for a busy session) by the [`SessionLayer`](crate::SessionLayer) when the response
    /// passes through it, or here for [`SessionError::MissingLayer`].
    fn into_response(self) -> Response {
        let (status, headers, body) = self.response_parts();
        if matches!(self, Self::MissingLayer) {
            // No layer will see this response.
            self.log_as_answer();
        }
        let mut response = (status, headers, body).into_response();
        response.extensions_mut().insert(AnsweredWith(self));
        response
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
