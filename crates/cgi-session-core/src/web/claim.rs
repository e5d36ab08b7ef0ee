//! [`Claim`]: what a request's session cookie claims.

use crate::cookie::SigningKeys;
use crate::cookie_header::{self, SessionCookie};
use crate::SessionStore;

/// What the request's session cookie claims, read before the handler (no store I/O).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    /// The session id (verified when cookies are signed).
    pub id: Option<String>,
    /// Whether a session cookie was sent at all (even one that failed to verify).
    pub sent: bool,
    /// Whether a previous key signed it: send it again signed with the newest key.
    pub resign: bool,
}

impl Claim {
    /// Reads the store's session cookie from the values of the request's `Cookie` header(s),
    /// verifying its signature when there are `keys`: a tampered or unsigned value counts as
    /// no id (logged at debug level).
    ///
    /// The headers are read with the one cookie parser every adapter shares
    /// ([`cookie_header`]): raw bytes (a latin-1 byte in another cookie does not hide the
    /// session cookie), several `Cookie` headers, and the first session cookie counts, as in
    /// CGI.pm.
    pub fn from_cookie_headers<'a>(
        cookies: impl IntoIterator<Item = &'a [u8]>,
        store: &SessionStore,
        keys: Option<&SigningKeys>,
    ) -> Self {
        let name = store.cookie_name();
        let Some(raw) = cookie_header::first_value(cookies, name) else {
            return Self::default();
        };
        let (id, resign) = match keys {
            None => (
                SessionCookie::from_value(raw).id().map(str::to_owned),
                false,
            ),
            Some(keys) => {
                let verified = std::str::from_utf8(raw)
                    .ok()
                    .and_then(|value| keys.verify(name, value));
                match verified {
                    None => {
                        tracing::debug!(
                            "session cookie failed signature verification; treating the request as having no session"
                        );
                        (None, false)
                    }
                    Some(v) => (
                        SessionCookie::from_value(v.value.as_bytes())
                            .id()
                            .map(str::to_owned),
                        !v.by_newest,
                    ),
                }
            }
        };
        Self {
            id,
            sent: true,
            resign,
        }
    }
}
