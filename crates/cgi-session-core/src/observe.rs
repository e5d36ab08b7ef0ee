//! Observability: the [`metrics`] a store records and the [`tracing`] spans of its operations.
//!
//! # Metrics
//!
//! Recorded through the `metrics` facade: nothing is kept (and next to nothing is spent)
//! until the application installs a recorder, e.g. `metrics-exporter-prometheus` (the demo
//! serves them at `/metrics`). Label values are fixed strings, so recording allocates
//! nothing, except for store errors (which name the server).
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `cgi_session_loads_total` | counter | `result`: `hit`, `miss`, `expired`, `error` | loads of a claimed session id by a request (`SessionStore::load`, `new_session`); a request without an id is not counted. `miss`: nothing usable under the id (not stored, malformed, or another address under ip matching); `error`: the store failed or the session does not decode |
//! | `cgi_session_saves_total` | counter | `result`: `written`, `conflict`, `contended`, `gone`, `error` | saves that reached the store: a flush of a new or changed session, an update; untouched sessions cost nothing and are not counted |
//! | `cgi_session_deletes_total` | counter | `result`: `ok`, `error` | flushes of a deleted stored session |
//! | `cgi_session_regenerations_total` | counter | `result`: `ok`, `error` | `Session::regenerate_id` |
//! | `cgi_session_operation_seconds` | histogram | `op`: `load`, `save`, `delete`, `regenerate` | how long each counted operation took, in seconds |
//! | `cgi_session_store_reads_total` | counter | | reads sent to the store (concurrent loads of one id share a read, so this can be below the loads) |
//! | `cgi_session_save_conflicts_total` | counter | | writes refused because another process had written the session (CAS conflicts) |
//! | `cgi_session_save_retries_total` | counter | | writes retried on a fresh copy after a conflict |
//! | `cgi_session_locks_acquired_total` | counter | | session locks taken ([`LockMode`](crate::LockMode)) |
//! | `cgi_session_lock_waits_total` | counter | | lock acquisitions that had to wait |
//! | `cgi_session_lock_timeouts_total` | counter | | lock waits that gave up ([`Error::LockTimeout`]) |
//! | `cgi_session_lock_wait_seconds` | histogram | | time from asking for a lock to holding it |
//! | `cgi_session_store_errors_total` | counter | `driver`, `server`, `kind`: `unavailable`, `outcome_unknown`, `too_large`, `other` | failed store operations, by server, as the driver reports them ([`record_store_error`]; the memcached and file drivers do) |
//!
//! # Spans
//!
//! Each counted operation runs in a `DEBUG` span named `session.load`, `session.save`,
//! `session.delete` or `session.regenerate` (target `cgi_session_core::observe`), with the
//! fields `session` (the id's 8-character prefix, never the whole id; for a regeneration,
//! the old id's), `driver` (the store's name) and `server` (filled in by drivers that know it, [`record_server`]). Events logged
//! during the operation carry them; `RUST_LOG=cgi_session_core=debug` shows them.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use cgi_session_core::{observe, MemoryDriver, SessionStore};
//! let store = SessionStore::builder(MemoryDriver::new()).build();
//! // With a recorder installed (see the `metrics` crate), this counts one miss:
//! let session = store.load(Some("0123456789abcdef0123456789abcdef"), None).await.unwrap();
//! assert!(session.is_empty());
//! assert_eq!(observe::LOADS_TOTAL, "cgi_session_loads_total");
//! # });
//! ```

use std::fmt;
use std::time::Instant;

use metrics::{counter, histogram, Label};

use crate::error::{DriverError, Error};

/// `cgi_session_loads_total{result}`.
pub const LOADS_TOTAL: &str = "cgi_session_loads_total";
/// `cgi_session_saves_total{result}`.
pub const SAVES_TOTAL: &str = "cgi_session_saves_total";
/// `cgi_session_deletes_total{result}`.
pub const DELETES_TOTAL: &str = "cgi_session_deletes_total";
/// `cgi_session_regenerations_total{result}`.
pub const REGENERATIONS_TOTAL: &str = "cgi_session_regenerations_total";
/// `cgi_session_operation_seconds{op}` (histogram).
pub const OPERATION_SECONDS: &str = "cgi_session_operation_seconds";
/// `cgi_session_store_reads_total`.
pub const STORE_READS_TOTAL: &str = "cgi_session_store_reads_total";
/// `cgi_session_save_conflicts_total`.
pub const SAVE_CONFLICTS_TOTAL: &str = "cgi_session_save_conflicts_total";
/// `cgi_session_save_retries_total`.
pub const SAVE_RETRIES_TOTAL: &str = "cgi_session_save_retries_total";
/// `cgi_session_locks_acquired_total`.
pub const LOCKS_ACQUIRED_TOTAL: &str = "cgi_session_locks_acquired_total";
/// `cgi_session_lock_waits_total`.
pub const LOCK_WAITS_TOTAL: &str = "cgi_session_lock_waits_total";
/// `cgi_session_lock_timeouts_total`.
pub const LOCK_TIMEOUTS_TOTAL: &str = "cgi_session_lock_timeouts_total";
/// `cgi_session_lock_wait_seconds` (histogram).
pub const LOCK_WAIT_SECONDS: &str = "cgi_session_lock_wait_seconds";
/// `cgi_session_store_errors_total{driver, server, kind}`.
pub const STORE_ERRORS_TOTAL: &str = "cgi_session_store_errors_total";

/// The target of the operation spans.
const TARGET: &str = "cgi_session_core::observe";

/// A counted session operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Load,
    Save,
    Delete,
    Regenerate,
}

/// The span of one operation: `session` is shown as its prefix only.
pub(crate) fn span(op: Op, driver: &'static str, session: IdPrefix<'_>) -> tracing::Span {
    use tracing::field::Empty;
    match op {
        Op::Load => {
            tracing::debug_span!(target: TARGET, "session.load", session = %session, driver, server = Empty)
        }
        Op::Save => {
            tracing::debug_span!(target: TARGET, "session.save", session = %session, driver, server = Empty)
        }
        Op::Delete => {
            tracing::debug_span!(target: TARGET, "session.delete", session = %session, driver, server = Empty)
        }
        Op::Regenerate => {
            tracing::debug_span!(target: TARGET, "session.regenerate", session = %session, driver, server = Empty)
        }
    }
}

/// Records the operation's duration, and its outcome in its counter.
pub(crate) fn finish<T>(op: Op, started: Instant, result: &Result<T, Error>) {
    let secs = started.elapsed().as_secs_f64();
    match op {
        Op::Load => histogram!("cgi_session_operation_seconds", "op" => "load").record(secs),
        Op::Save => {
            histogram!("cgi_session_operation_seconds", "op" => "save").record(secs);
            match result {
                Ok(_) => counter!("cgi_session_saves_total", "result" => "written").increment(1),
                Err(Error::Conflict { .. }) => {
                    counter!("cgi_session_saves_total", "result" => "conflict").increment(1);
                }
                Err(Error::Contended { .. }) => {
                    counter!("cgi_session_saves_total", "result" => "contended").increment(1);
                }
                Err(Error::Gone { .. }) => {
                    counter!("cgi_session_saves_total", "result" => "gone").increment(1);
                }
                Err(_) => counter!("cgi_session_saves_total", "result" => "error").increment(1),
            }
        }
        Op::Delete => {
            histogram!("cgi_session_operation_seconds", "op" => "delete").record(secs);
            match result {
                Ok(_) => counter!("cgi_session_deletes_total", "result" => "ok").increment(1),
                Err(_) => counter!("cgi_session_deletes_total", "result" => "error").increment(1),
            }
        }
        Op::Regenerate => {
            histogram!("cgi_session_operation_seconds", "op" => "regenerate").record(secs);
            match result {
                Ok(_) => counter!("cgi_session_regenerations_total", "result" => "ok").increment(1),
                Err(_) => {
                    counter!("cgi_session_regenerations_total", "result" => "error").increment(1);
                }
            }
        }
    }
}

/// What a request's load of a claimed id found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoadResult {
    Hit,
    Miss,
    Expired,
    Error,
}

pub(crate) fn load_result(result: LoadResult) {
    match result {
        LoadResult::Hit => counter!("cgi_session_loads_total", "result" => "hit").increment(1),
        LoadResult::Miss => counter!("cgi_session_loads_total", "result" => "miss").increment(1),
        LoadResult::Expired => {
            counter!("cgi_session_loads_total", "result" => "expired").increment(1);
        }
        LoadResult::Error => counter!("cgi_session_loads_total", "result" => "error").increment(1),
    }
}

/// A write refused by a conflict is retried on a fresh copy.
pub(crate) fn save_retried() {
    counter!("cgi_session_save_retries_total").increment(1);
}

/// A lock was taken after `waited`.
pub(crate) fn lock_waited(waited: std::time::Duration) {
    histogram!("cgi_session_lock_wait_seconds").record(waited.as_secs_f64());
}

/// For drivers: counts a failed store operation in `cgi_session_store_errors_total`, with the
/// `server` it failed on when the driver knows it (empty otherwise), and notes the server in
/// the current operation span. Call it once per operation that fails (not for a miss, a
/// conflict or any other answer the store gave).
///
/// ```
/// use cgi_session_core::{observe, DriverError};
///
/// let e = DriverError::Unavailable { driver: "memcache", source: "connection refused".into() };
/// observe::record_store_error("memcache", Some("127.0.0.1:11211"), &e);
/// ```
pub fn record_store_error(driver: &'static str, server: Option<&str>, error: &DriverError) {
    let kind = match error {
        DriverError::OutcomeUnknown { .. } => "outcome_unknown",
        e if e.is_unavailable() => "unavailable",
        DriverError::TooLarge { .. } => "too_large",
        _ => "other",
    };
    let labels = vec![
        Label::new("driver", driver),
        Label::new("server", server.unwrap_or("").to_owned()),
        Label::new("kind", kind),
    ];
    counter!(STORE_ERRORS_TOTAL, labels).increment(1);
    if let Some(server) = server {
        record_server(&server);
    }
}

/// For drivers: names the server an operation went to in the current operation span (its
/// `server` field), when the spans are enabled (`value` is formatted only then).
pub fn record_server(server: &dyn fmt::Display) {
    if tracing::enabled!(target: TARGET, tracing::Level::DEBUG) {
        tracing::Span::current().record("server", tracing::field::display(server));
    }
}

/// A session id shown as its prefix (the first 8 characters and `…`, as `SessionId`'s
/// `Display`); a claimed id that is not a well-formed id is shown as `(malformed)`.
#[derive(Clone, Copy)]
pub(crate) struct IdPrefix<'a>(pub(crate) Option<&'a str>);

impl fmt::Display for IdPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(id) = self.0 else {
            return f.write_str("(none)");
        };
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return f.write_str("(malformed)");
        }
        let keep = if id.len() > 8 { 8 } else { id.len() / 2 };
        write!(f, "{}…", &id[..keep])
    }
}

#[cfg(test)]
mod tests {
    use super::IdPrefix;

    #[test]
    fn prefixes_never_show_the_whole_id() {
        let show = |s| IdPrefix(Some(s)).to_string();
        assert_eq!(show("0123456789abcdef0123456789abcdef"), "01234567…");
        assert_eq!(show("1234"), "12…");
        assert_eq!(show("a b"), "(malformed)");
        assert_eq!(show(""), "(malformed)");
        assert_eq!(IdPrefix(None).to_string(), "(none)");
    }
}
