//! Error types. Each message says what went wrong and what to do about it.

use std::path::PathBuf;
use std::time::Duration;

/// A boxed error from a driver's backend (an I/O error, a memcached client error...).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the session layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage backend failed or could not be reached. The session was neither loaded nor
    /// created: the request should fail (e.g. HTTP 503) rather than continue with an empty session.
    #[error(transparent)]
    Driver(#[from] DriverError),

    /// Stored bytes could not be decoded. Nothing was changed in the store.
    #[error("session {id} could not be decoded: {source}; the stored bytes were left untouched")]
    Corrupt {
        /// The session's id (redacted when printed).
        id: crate::SessionId,
        /// Why decoding failed.
        #[source]
        source: SerializeError,
    },

    /// The session could not be encoded (a value the serializer cannot represent).
    #[error("session could not be encoded: {0}")]
    Encode(#[source] SerializeError),

    /// A typed read found a value of another type.
    #[error("parameter `{name}` does not hold the requested type: {source}")]
    ParamType {
        /// Parameter name.
        name: String,
        /// serde's explanation.
        #[source]
        source: serde_json::Error,
    },

    /// Names starting with `_SESSION_` are reserved for the session's own fields.
    #[error("parameter name `{0}` is reserved (names starting with `_SESSION_` belong to the session itself)")]
    ReservedName(String),

    /// An id could not be generated.
    #[error(transparent)]
    Id(#[from] IdError),

    /// A time string such as `+10m` could not be parsed.
    #[error(transparent)]
    Expire(#[from] ExpireParseError),

    /// The session was changed by another request since it was loaded and the conflict policy
    /// is [`ConflictPolicy::Error`](crate::ConflictPolicy::Error) (or an adopted id was taken).
    #[error("session {id} was changed by another request since it was loaded ({attempts} attempt(s)); reload it and apply the change again")]
    Conflict {
        /// The session's id (redacted when printed).
        id: crate::SessionId,
        /// How many writes were tried.
        attempts: u32,
    },

    /// Other processes kept writing the session, so that this save could not get through
    /// before the store's save deadline
    /// ([`SessionStoreBuilder::save_deadline`](crate::SessionStoreBuilder::save_deadline)).
    /// Nothing was saved; the request can be retried ([`Error::retry_after`]).
    #[error("session {id} is changed by other processes so often that this save could not get through within {waited:?} ({attempts} write attempt(s)); nothing was saved: retry shortly, or raise the save deadline")]
    Contended {
        /// The session's id (redacted when printed).
        id: crate::SessionId,
        /// How many writes were tried.
        attempts: u32,
        /// How long the save waited in all.
        waited: Duration,
    },

    /// The session's lock stayed held by another request past the store's lock wait
    /// ([`SessionStoreBuilder::lock_wait`](crate::SessionStoreBuilder::lock_wait)).
    /// The request can be retried ([`Error::retry_after`]).
    #[error("session {id} is locked by another request; gave up after waiting {waited:?}: retry shortly, or raise the lock wait")]
    LockTimeout {
        /// The session's id (redacted when printed).
        id: crate::SessionId,
        /// How long the request waited.
        waited: Duration,
    },

    /// The session was deleted (logout) or expired while this request held it; the write was
    /// dropped so that a deleted session never comes back.
    #[error("session {id} was deleted or expired while this request held it; its changes were not saved")]
    Gone {
        /// The session's id (redacted when printed).
        id: crate::SessionId,
    },

    /// The operation needs a session with an id (e.g. `regenerate_id` on an empty session
    /// returned by `load`).
    #[error("this session has no id (it came from `load` and nothing was stored); use `new_session` to create one")]
    NoId,

    /// A new session could not be created because every generated id was already taken.
    #[error("could not create a session: {attempts} generated ids were all in use; check the id generator")]
    IdCollision {
        /// Ids tried.
        attempts: u32,
    },
}

impl Error {
    /// Whether the session is busy (contended saves or a held lock past their deadlines): the
    /// request failed only because of other requests and can be retried as it is. Web layers
    /// answer it with 503 and a `Retry-After` of [`Error::retry_after`].
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Contended { .. } | Self::LockTimeout { .. })
    }

    /// Whether the store could not be reached, or a write's answer never came
    /// ([`DriverError::is_unavailable`]): the one question every adapter asks before answering
    /// 503 instead of 500.
    ///
    /// ```
    /// use cgi_session_core::{DriverError, Error};
    ///
    /// let down = DriverError::Unavailable { driver: "memcache", source: "connection refused".into() };
    /// assert!(Error::Driver(down).is_unavailable());
    /// assert!(!Error::NoId.is_unavailable());
    /// ```
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Driver(d) if d.is_unavailable())
    }

    /// How long a client should wait before retrying, for errors that a retry can cure (a busy
    /// session, an unreachable store); `None` for the others.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Contended { .. } | Self::LockTimeout { .. } => Some(Duration::from_secs(1)),
            e if e.is_unavailable() => Some(Duration::from_secs(5)),
            _ => None,
        }
    }

    /// Whether a write was sent to the store and its answer never came
    /// ([`DriverError::OutcomeUnknown`]): the change **may or may not have been saved**. Web
    /// layers answer it with 503, `Retry-After`, and a text saying so (never "nothing was
    /// saved").
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Driver(d) if d.is_outcome_unknown())
    }

    /// A copy of this error for each of several requests whose changes were saved together
    /// (a group commit reports its one failure to all of them). Sources that cannot be cloned
    /// are kept as their messages.
    pub(crate) fn replicate(&self) -> Self {
        match self {
            Self::Driver(d) => Self::Driver(d.replicate()),
            Self::Corrupt { id, source } => Self::Corrupt {
                id: id.clone(),
                source: source.clone(),
            },
            Self::Encode(e) => Self::Encode(e.clone()),
            Self::ReservedName(n) => Self::ReservedName(n.clone()),
            Self::Expire(e) => Self::Expire(e.clone()),
            Self::Conflict { id, attempts } => Self::Conflict {
                id: id.clone(),
                attempts: *attempts,
            },
            Self::Contended {
                id,
                attempts,
                waited,
            } => Self::Contended {
                id: id.clone(),
                attempts: *attempts,
                waited: *waited,
            },
            Self::LockTimeout { id, waited } => Self::LockTimeout {
                id: id.clone(),
                waited: *waited,
            },
            Self::Gone { id } => Self::Gone { id: id.clone() },
            Self::NoId => Self::NoId,
            Self::IdCollision { attempts } => Self::IdCollision {
                attempts: *attempts,
            },
            other => Self::Driver(DriverError::Backend {
                driver: "session",
                source: other.to_string().into(),
            }),
        }
    }
}

/// Errors reported by a [`Driver`](crate::Driver).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The backend is down, hung or unreachable.
    #[error("session store `{driver}` is unavailable: {source}")]
    Unavailable {
        /// The driver's name.
        driver: &'static str,
        /// The underlying cause (names the server where there is one).
        #[source]
        source: BoxError,
    },
    /// A write was sent and its answer never came (the server hung past the timeout, or the
    /// connection was lost): the change **may or may not have been saved**, e.g. a memcached
    /// server frozen mid-request executes what it had received when it resumes. Also an
    /// outage: [`is_unavailable`](Self::is_unavailable) is true, so a layer that does not
    /// tell the two apart still answers 503; [`is_outcome_unknown`](Self::is_outcome_unknown)
    /// tells them apart.
    #[error("session store `{driver}` did not confirm a write; the change may or may not have been saved: {source}")]
    OutcomeUnknown {
        /// The driver's name.
        driver: &'static str,
        /// The underlying cause (names the server where there is one).
        #[source]
        source: BoxError,
    },
    /// The driver cannot do this operation (e.g. listing sessions).
    #[error("the `{driver}` driver does not support {operation}")]
    Unsupported {
        /// The driver's name.
        driver: &'static str,
        /// What was asked.
        operation: &'static str,
    },
    /// The session is larger than the backend accepts.
    #[error("session of {size} bytes is too large for the `{driver}` store (limit {limit} bytes); store less in the session")]
    TooLarge {
        /// The driver's name.
        driver: &'static str,
        /// Encoded size.
        size: usize,
        /// The backend's limit.
        limit: usize,
    },
    /// The driver is misconfigured.
    #[error("the `{driver}` driver is misconfigured: {message}")]
    Config {
        /// The driver's name.
        driver: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Any other backend failure.
    #[error("session store `{driver}` failed: {source}")]
    Backend {
        /// The driver's name.
        driver: &'static str,
        /// The underlying cause.
        #[source]
        source: BoxError,
    },
}

impl DriverError {
    /// Whether the backend could not be reached (down, hung, refused), including a write whose
    /// outcome is unknown ([`DriverError::OutcomeUnknown`]).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::OutcomeUnknown { .. })
    }

    /// Whether a write was sent and never confirmed, so that it may or may not have been
    /// applied ([`DriverError::OutcomeUnknown`]).
    ///
    /// ```
    /// use cgi_session_core::DriverError;
    /// let e = DriverError::OutcomeUnknown { driver: "memcache", source: "no reply within 1s".into() };
    /// assert!(e.is_outcome_unknown() && e.is_unavailable());
    /// let down = DriverError::Unavailable { driver: "memcache", source: "connection refused".into() };
    /// assert!(!down.is_outcome_unknown());
    /// ```
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Self::OutcomeUnknown { .. })
    }

    /// A copy with the same variant and message (sources kept as their messages).
    pub(crate) fn replicate(&self) -> Self {
        let text = |e: &BoxError| -> BoxError {
            let mut message = e.to_string();
            let mut cause = e.source();
            while let Some(c) = cause {
                message.push_str(": ");
                message.push_str(&c.to_string());
                cause = c.source();
            }
            message.into()
        };
        match self {
            Self::Unavailable { driver, source } => Self::Unavailable {
                driver,
                source: text(source),
            },
            Self::OutcomeUnknown { driver, source } => Self::OutcomeUnknown {
                driver,
                source: text(source),
            },
            Self::Unsupported { driver, operation } => Self::Unsupported { driver, operation },
            Self::TooLarge {
                driver,
                size,
                limit,
            } => Self::TooLarge {
                driver,
                size: *size,
                limit: *limit,
            },
            Self::Config { driver, message } => Self::Config {
                driver,
                message: message.clone(),
            },
            Self::Backend { driver, source } => Self::Backend {
                driver,
                source: text(source),
            },
        }
    }
}

/// Errors of a [`Serializer`](crate::Serializer).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SerializeError {
    /// The bytes are not in the serializer's format.
    #[error("not valid {format}: {message}")]
    Syntax {
        /// The serializer's name.
        format: &'static str,
        /// What is wrong, with a position where known.
        message: String,
    },
    /// The bytes decode, but not to a session record (missing or mistyped `_SESSION_*` field).
    #[error("not a session record: {0}")]
    NotARecord(String),
}

/// Errors of an [`IdGenerator`](crate::IdGenerator) or of parsing an id.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The text is not a well-formed id.
    #[error("malformed session id ({len} bytes): ids are 1 to 128 characters of A-Z a-z 0-9 _ -")]
    Malformed {
        /// Length of the rejected text (the text itself is not repeated).
        len: usize,
    },
    /// The OS random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Randomness(String),
    /// The `incr` generator's counter file could not be used.
    #[error(
        "id counter file {path:?} could not be used: {source}; check IDFile and its permissions"
    )]
    IdFile {
        /// The `IDFile`.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The `incr` generator's counter file holds something other than a number.
    #[error("id counter file {path:?} does not hold a number (or the counter overflowed); fix or remove it")]
    IdFileContent {
        /// The `IDFile`.
        path: PathBuf,
    },
    /// A blocking generator's task on tokio's blocking pool failed (panicked or was
    /// cancelled at shutdown).
    #[error("the id generator's task failed: {0}")]
    Task(String),
    /// The `static` generator only uses the id the client claims.
    #[error("the `static` id generator needs a claimed id; pass one or choose `id:random`")]
    StaticWithoutId,
}

/// An expiry time string that does not follow CGI::Session's syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExpireParseError {
    /// Not `[+-]<digits>[unit]`.
    #[error("invalid expiry {input:?}: expected an optional sign, digits and an optional unit s m h d w M y, without spaces (e.g. \"+10m\", \"2h\", \"-10s\", \"3600\")")]
    Syntax {
        /// The rejected text.
        input: String,
    },
    /// The unit is not one of s m h d w M y.
    #[error("invalid expiry {input:?}: unknown unit {unit:?}; valid units are s m h d w M y (M = 30 days, y = 365 days)")]
    Unit {
        /// The rejected text.
        input: String,
        /// The rejected unit.
        unit: char,
    },
    /// The value does not fit in 64 bits of seconds.
    #[error("invalid expiry {input:?}: the number is too large")]
    Overflow {
        /// The rejected text.
        input: String,
    },
}

/// A DSN string that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DsnError {
    /// A part is not `key:value`.
    #[error("invalid DSN part {part:?}: expected key:value pairs joined by `;`, e.g. \"driver:file;serializer:json;id:random\"")]
    Syntax {
        /// The offending part.
        part: String,
    },
    /// The key is not a prefix of driver, serializer, id or strings.
    #[error("unknown DSN key {key:?}: valid keys are driver, serializer, id, strings (or a prefix: d, dr, se, i, st)")]
    UnknownKey {
        /// The offending key.
        key: String,
    },
    /// A key appears twice.
    #[error("DSN key {key:?} is given twice")]
    Duplicate {
        /// The repeated key.
        key: &'static str,
    },
    /// The value is not a known name for that key.
    #[error("unknown {kind} {name:?} in DSN; valid choices: {}", valid.join(", "))]
    UnknownName {
        /// driver, serializer or id.
        kind: &'static str,
        /// The rejected name.
        name: String,
        /// The names that would work.
        valid: Vec<&'static str>,
    },
    /// The value holds characters other than word characters.
    #[error("invalid DSN value {value:?}: values are word characters (letters, digits, _)")]
    Value {
        /// The offending value.
        value: String,
    },
    /// A driver argument the chosen driver needs is missing or wrong.
    #[error("driver argument problem: {0}")]
    Argument(String),
}
