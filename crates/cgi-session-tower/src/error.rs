//! [`SessionError`]: what a handler gets when the session cannot be used.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::StatusCode;

/// Why a [`SessionHandle`](crate::SessionHandle) operation failed.
///
/// Store failures while loading or regenerating are also remembered by the layer, which answers
/// the request with 503 (store unavailable) or 500 (other store failure) whatever the handler
/// returns: a request never silently continues with a fresh, empty session.
///
/// As an axum response it is a 503 or a 500 with a short text body; the cause is logged by
/// the layer, not sent to the client.
///
/// ```
/// use axum::response::IntoResponse;
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
    Unavailable(Arc<cgi_session::Error>),

    /// The store failed in another way while loading or saving (the request is answered with
    /// 500), or the handler's own call failed (a type mismatch in `get`, a reserved name in
    /// `set`: nothing is recorded then).
    #[error("session error: {0}")]
    Session(Arc<cgi_session::Error>),

    /// The handler asked for a [`SessionHandle`](crate::SessionHandle) but no
    /// [`SessionLayer`](crate::SessionLayer) wraps the route.
    #[error(
        "no session layer: add `.layer(SessionLayer::new(store))` to the router (or to this route)"
    )]
    MissingLayer,
}

impl SessionError {
    /// Whether the store could not be reached (the response is a 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Session(_) | Self::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn from_store(e: cgi_session::Error) -> Self {
        if is_unavailable(&e) {
            Self::Unavailable(Arc::new(e))
        } else {
            Self::Session(Arc::new(e))
        }
    }
}

pub(crate) fn is_unavailable(e: &cgi_session::Error) -> bool {
    matches!(e, cgi_session::Error::Driver(d) if d.is_unavailable())
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        let body = match self {
            Self::Unavailable(_) => "The session store is unavailable; please try again shortly.",
            Self::Session(_) => "The session could not be used.",
            Self::MissingLayer => "Server misconfiguration: no session layer.",
        };
        (self.status(), body).into_response()
    }
}
