//! [`WebError`]: a session failure classified as an HTTP answer, and [`StoreLogs`], the
//! rate limits for logging store failures.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{DriverError, Error};

/// A session failure as a web adapter answers it: 503 (unavailable or busy, with
/// `Retry-After` where a retry can help) or 500, with a short text body for the visitor.
///
/// Each adapter's `SessionError` has one variant for each of these (plus its own
/// "no middleware" variant) and converts from it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WebError {
    /// The session store could not be reached (down, hung, refused): 503.
    #[error("the session store is unavailable ({0}); the request was answered with 503: check that the store (e.g. memcached) is running and reachable")]
    Unavailable(Arc<Error>),

    /// The session stayed busy (locked, or written by other processes) past the store's
    /// deadline: 503 with `Retry-After`.
    #[error("the session is busy ({0}); the request was answered with 503 and Retry-After")]
    Busy(Arc<Error>),

    /// Session locks are off but the handler asked for the session lock: 500.
    #[error("session locks are off: set the lock mode to `LockMode::OnDemand` (or `EveryRequest`) to lock the session")]
    LockingOff,

    /// Another store failure, or the handler's own call failed (a type mismatch, a reserved
    /// name): 500.
    #[error("session error: {0}")]
    Session(Arc<Error>),
}

impl WebError {
    /// Classifies a session error: busy (503 with `Retry-After`), store unavailable (503),
    /// anything else (500).
    pub fn from_store(e: Error) -> Self {
        if e.is_busy() {
            Self::Busy(Arc::new(e))
        } else if e.is_unavailable() {
            Self::Unavailable(Arc::new(e))
        } else {
            Self::Session(Arc::new(e))
        }
    }

    /// Whether the store could not be reached (the response is a 503).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Whether the session was busy past its deadline (a 503 with `Retry-After`).
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Busy(_))
    }

    /// The HTTP status this error answers with: 503 or 500.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unavailable(_) | Self::Busy(_) => 503,
            Self::Session(_) | Self::LockingOff => 500,
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
    /// `misconfigured` is the adapter's words for a misconfiguration ([`WebError::LockingOff`]).
    pub fn body(&self, misconfigured: &'static str) -> &'static str {
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
            Self::LockingOff => misconfigured,
        }
    }

    /// Whether `self` and `other` are copies of one error (the same store failure).
    pub fn same_as(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Unavailable(a), Self::Unavailable(b))
            | (Self::Busy(a), Self::Busy(b))
            | (Self::Session(a), Self::Session(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Classifies a store failure met while doing `what` (e.g. "saving the session") and logs
    /// it with the answer it gets: 503 with `Retry-After` (busy), 503 (unavailable) or 500.
    ///
    /// Outages and contention are logged at most once per [`LOG_INTERVAL`] for each kind of
    /// failure (see [`LogLimiter`]): a store that is down fails every request, and one line
    /// per request would bury everything else (17,597 lines in 12 s of a one-server outage
    /// before).
    pub fn logged(logs: &StoreLogs, e: Error, what: &str) -> Self {
        let err = Self::from_store(e);
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
}

/// Logs the details of an error a handler answered with (the client only gets its body):
/// at warn level for a busy session, at error level otherwise.
pub fn log_answer(error: &dyn fmt::Display, status: u16, busy: bool) {
    if busy {
        tracing::warn!(error = %error, "a handler answered {status} with Retry-After: the session was busy");
    } else {
        tracing::error!(error = %error, "a handler answered {status} because of a session error");
    }
}

/// How often one kind of store outage (or busy session) is logged at most.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// An adapter's rate limits for logging store failures (one per layer or middleware, shared
/// by its requests).
#[derive(Debug)]
pub struct StoreLogs {
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
fn kind_of(err: &WebError) -> String {
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
pub struct LogLimiter {
    interval: Duration,
    state: std::sync::Mutex<Option<HashMap<String, (Instant, u64)>>>,
}

impl LogLimiter {
    /// How many kinds are tracked at most.
    pub const KINDS: usize = 256;

    /// A limiter letting one event of a kind through per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: std::sync::Mutex::new(None),
        }
    }

    /// `Some(n)`: log this event, mentioning the `n` events of its kind not logged since the
    /// last one; `None`: do not log it (it is counted).
    pub fn admit(&self, kind: &str, now: Instant) -> Option<u64> {
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

fn is_too_large(e: &Error) -> bool {
    matches!(e, Error::Driver(DriverError::TooLarge { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_too_large_to_save_says_so() {
        let e = WebError::from_store(Error::Driver(DriverError::TooLarge {
            driver: "memcache",
            size: 2_000_000,
            limit: 1_048_576,
        }));
        assert_eq!(e.status(), 500);
        assert!(e.body("").contains("too large"), "{}", e.body(""));
    }

    #[test]
    fn a_write_with_an_unknown_outcome_says_so() {
        let e = WebError::from_store(Error::Driver(DriverError::OutcomeUnknown {
            driver: "memcache",
            source: "127.0.0.1:11211: no reply within 1 s".into(),
        }));
        assert_eq!(e.status(), 503);
        assert!(e.retry_after().is_some());
        assert!(e.body("").contains("may or may not have been saved"));
        assert!(!e.body("").contains("127.0.0.1"));
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
