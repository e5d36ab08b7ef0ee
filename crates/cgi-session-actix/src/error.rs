//! [`SessionError`]: what a handler gets when the session cannot be used.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        match self {
            Self::Unavailable(_) | Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Session(_) | Self::MissingMiddleware | Self::LockingOff => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The `Retry-After` the response carries, in seconds.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Unavailable(e) | Self::Busy(e) => e.retry_after().map(|d| d.as_secs().max(1)),
            _ => None,
        }
    }

    /// The text body the response carries: what happened, for a person, without internals.
    pub fn body(&self) -> &'static str {
        match self {
            Self::Unavailable(e) if e.outcome_unknown() => {
                "The session store did not answer in time: your last change may or may not have been saved. Please check, and try again shortly if it is missing.\n"
            }
            Self::Unavailable(_) => "The session store is unavailable; please try again shortly.\n",
            Self::Busy(_) => {
                "This session is busy with other requests; please try again in a moment.\n"
            }
            Self::Session(e) if is_too_large(e) => {
                "The session has grown too large to be stored; the last change was not saved.\n"
            }
            Self::Session(_) => "The session could not be used.\n",
            Self::MissingMiddleware | Self::LockingOff => {
                "Server misconfiguration: the session middleware is not set up for this route.\n"
            }
        }
    }

    pub(crate) fn from_store(e: cgi_session_core::Error) -> Self {
        if e.is_busy() {
            Self::Busy(Arc::new(e))
        } else if e.is_unavailable() {
            Self::Unavailable(Arc::new(e))
        } else {
            Self::Session(Arc::new(e))
        }
    }
}

impl From<cgi_session_core::Error> for SessionError {
    /// Classifies a session error: busy (503 with `Retry-After`), store unavailable (503),
    /// anything else (500).
    fn from(e: cgi_session_core::Error) -> Self {
        Self::from_store(e)
    }
}

/// Classifies a store failure met while doing `what` (e.g. "saving the session") and logs it
/// with the answer it gets: 503 with `Retry-After` (busy), 503 (unavailable) or 500.
///
/// Outages and contention are logged at most once per [`LOG_INTERVAL`] for each kind of
/// failure (see [`LogLimiter`]): a store that is down fails every request, and one line per
/// request would bury everything else (17,597 lines in 12 s of a one-server outage before).
pub(crate) fn logged_store_failure(
    logs: &StoreLogs,
    e: cgi_session_core::Error,
    what: &str,
) -> SessionError {
    let err = SessionError::from_store(e);
    if err.is_busy() {
        if let Some(more) = logs.busy.admit(&kind_of(&err), Instant::now()) {
            tracing::warn!(error = %err, "session busy while {what}; answering 503 with Retry-After{}", more_text(more));
        }
    } else if err.is_unavailable() {
        if let Some(more) = logs.outage.admit(&kind_of(&err), Instant::now()) {
            tracing::error!(error = %err, "session store unavailable while {what}; answering 503{}", more_text(more));
        }
    } else {
        tracing::error!(error = %err, "session store failed while {what}; answering 500");
    }
    err
}

/// How often one kind of store outage (or busy session) is logged at most.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A middleware's rate limits for logging store failures (one per middleware, shared by its
/// requests).
#[derive(Debug)]
pub(crate) struct StoreLogs {
    outage: LogLimiter,
    busy: LogLimiter,
}

impl Default for StoreLogs {
    fn default() -> Self {
        Self {
            outage: LogLimiter::new(LOG_INTERVAL),
            busy: LogLimiter::new(LOG_INTERVAL),
        }
    }
}

/// The kind of a failure for rate limiting: its message without digits, so that counters and
/// delays in it ("the next try is in 731 ms", a session id prefix) do not make every failure
/// a kind of its own.
fn kind_of(err: &SessionError) -> String {
    err.to_string()
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect()
}

fn more_text(more: u64) -> String {
    if more == 0 {
        String::new()
    } else {
        format!(
            " ({more} more such answer(s) in the {} s before this one were not logged)",
            LOG_INTERVAL.as_secs()
        )
    }
}

/// Lets one event of a kind through per interval and counts the others: the first event of a
/// kind (its message without digits: the same failure) after a quiet interval is logged at
/// once, the next ones only once the interval has passed, each with the number of events it
/// stands for. At most [`LogLimiter::KINDS`] kinds are tracked; past that, events are logged.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    interval: Duration,
    state: std::sync::Mutex<Option<HashMap<String, (Instant, u64)>>>,
}

impl LogLimiter {
    const KINDS: usize = 256;

    pub(crate) const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: std::sync::Mutex::new(None),
        }
    }

    /// `Some(n)`: log this event, mentioning the `n` events of its kind not logged since the
    /// last one; `None`: do not log it (it is counted).
    pub(crate) fn admit(&self, kind: &str, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let kinds = state.get_or_insert_with(HashMap::new);
        if let Some((last, skipped)) = kinds.get_mut(kind) {
            if now.saturating_duration_since(*last) < self.interval {
                *skipped += 1;
                return None;
            }
            let more = *skipped;
            *last = now;
            *skipped = 0;
            return Some(more);
        }
        if kinds.len() >= Self::KINDS {
            let interval = self.interval;
            kinds.retain(|_, (last, _)| now.saturating_duration_since(*last) < interval);
            if kinds.len() >= Self::KINDS {
                return Some(0);
            }
        }
        kinds.insert(kind.to_owned(), (now, 0));
        Some(0)
    }
}

fn is_too_large(e: &cgi_session_core::Error) -> bool {
    matches!(
        e,
        cgi_session_core::Error::Driver(cgi_session_core::DriverError::TooLarge { .. })
    )
}

impl SessionError {
    /// Whether `self` and `other` are copies of one error (the same store failure).
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Unavailable(a), Self::Unavailable(b))
            | (Self::Busy(a), Self::Busy(b))
            | (Self::Session(a), Self::Session(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Logs the details of an error a handler answered with (the client only gets
    /// [`SessionError::body`]).
    pub(crate) fn log_as_answer(&self) {
        let status = self.status().as_u16();
        if self.is_busy() {
            tracing::warn!(error = %self, "a handler answered {status} with Retry-After: the session was busy");
        } else {
            tracing::error!(error = %self, "a handler answered {status} because of a session error");
        }
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

    #[test]
    fn one_line_per_interval_and_kind_each_counting_the_ones_left_out() {
        let limiter = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(
            limiter.admit("down", at(0)),
            Some(0),
            "the first failure at once"
        );
        assert_eq!(
            limiter.admit("other server down", at(1)),
            Some(0),
            "another kind too"
        );
        let mut logged = Vec::new();
        // A failing request every 10 ms for 60 s.
        for ms in (10..60_000).step_by(10) {
            if let Some(more) = limiter.admit("down", at(ms)) {
                logged.push((ms, more));
            }
        }
        assert_eq!(
            logged,
            [10_000, 20_000, 30_000, 40_000, 50_000].map(|ms| (ms, 999)),
            "one line per 10 s of a 60-s outage, each counting the 999 left out before it"
        );
        // After a quiet interval the next failure is logged at once, with what was left.
        assert_eq!(limiter.admit("down", at(80_000)), Some(999));
        assert_eq!(limiter.admit("down", at(80_001)), None);
        assert_eq!(limiter.admit("other server down", at(80_002)), Some(0));
    }
}
