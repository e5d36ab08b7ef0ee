//! The per-request session logic every web adapter shares (`cgi-session-tower`,
//! `cgi-session-actix`): the lazily loaded session of one request and its operations
//! ([`RequestSession`]), what its session cookie claims ([`Claim`]), the classification of store failures into HTTP answers
//! ([`WebError`]) with rate-limited logging ([`StoreLogs`]), and the decision taken after the
//! handler ([`RequestSession::finish`] → [`Outcome`]: which cookie to send, or which error to
//! answer with).
//!
//! Nothing here depends on an HTTP framework: statuses are `u16`, bodies `&'static str`,
//! cookies [`cookie::Cookie`]s. Each adapter turns them into its framework's types.

mod claim;
mod error;
mod finish;
mod request;

pub use claim::Claim;
pub use error::{log_answer, LogLimiter, StoreLogs, WebError, LOG_INTERVAL};
pub use finish::Outcome;
pub use request::{RequestSession, SessionGuard};
