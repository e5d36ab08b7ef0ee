//! The behaviours, one `pub async fn` each (see [`conformance_suite!`](crate::conformance_suite)).
//!
//! `b1_`..`b7_` follow the behaviour list of CGI::Session's generic driver test suite.
//! They are grouped by concern in the submodules and all re-exported here, where the macro
//! finds them.

use cgi_session_core::{IdGenerator, ManualClock, SecureRandomIds};

mod cgi_session;
mod loading;
mod saving;
mod store;

pub use cgi_session::*;
pub use loading::*;
pub use saving::*;
pub use store::*;

pub(crate) fn clock() -> ManualClock {
    ManualClock::starting_now()
}

pub(crate) fn id_of(s: &cgi_session_core::Session) -> String {
    s.id().expect("session has an id").as_str().to_owned()
}

pub(crate) fn fresh_id() -> String {
    SecureRandomIds.generate().unwrap().as_str().to_owned()
}
