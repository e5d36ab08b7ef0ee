//! [`RequestSession::finish`]: what happens after the handler, as plain data ([`Outcome`]).

use cookie::Cookie;

use super::error::{StoreLogs, WebError};
use super::request::RequestSession;
use crate::cookie::SigningKeys;
use crate::{Error, Session, SessionId};

/// What an adapter does to the handler's response once the session is saved.
#[derive(Debug)]
pub enum Outcome {
    /// The response stands; with a `Set-Cookie` header for this cookie, if any.
    Cookie(Option<Cookie<'static>>),
    /// The response is replaced by the error's (status, `Retry-After` where it applies, a
    /// short text body), unless it already is a server error.
    Error(WebError),
}

impl RequestSession {
    /// After the handler: saves the session if needed and decides which cookie to send (the
    /// session's, signed with the newest of `keys`, or a removal cookie) or which error to
    /// answer with (a store failure met while the handler ran or while saving); then releases
    /// the session lock if the request held it. `resign` asks for the cookie to be sent again
    /// (an older key signed it).
    ///
    /// Nothing happens if the session was never used. A deleted session is removed (removal
    /// cookie), a new session that was not changed is dropped (nothing stored; a removal
    /// cookie if the client sent one), and a changed session is flushed. The cookie is sent
    /// when the client does not have the session's id yet, and refreshed on every use when
    /// the session has an idle timeout. A session deleted meanwhile by another request
    /// ([`Error::Gone`]) is not brought back: the response stands and the cookie is removed.
    pub async fn finish(&self, keys: Option<&SigningKeys>, resign: bool) -> Outcome {
        let lock = self.state.lock().await.store_lock.take();
        let outcome = self.save(keys, resign).await;
        if let Some(lock) = lock {
            if let Err(e) = lock.release().await {
                tracing::warn!(error = %e, "could not release the session lock; the store frees it when its lease ends");
            }
        }
        outcome
    }

    async fn save(&self, keys: Option<&SigningKeys>, resign: bool) -> Outcome {
        let mut state = self.state.lock().await;
        if let Some(failure) = state.failure.take() {
            if let Some(mut session) = state.session.take() {
                session.discard();
            }
            return Outcome::Error(failure);
        }
        // Never used by the handler: no I/O, no cookie.
        let Some(mut session) = state.session.take() else {
            return Outcome::Cookie(None);
        };
        drop(state);

        let cookie = if session.is_deleted() {
            if let Err(e) = session.flush().await {
                if let Some(err) = flush_failed(&self.logs, &mut session, e) {
                    return Outcome::Error(err);
                }
            }
            Some(self.removal_cookie())
        } else if session.is_new() && !session.is_modified() {
            // Used but not changed: nothing worth storing. A cookie naming a session that is
            // gone (expired, deleted, tampered with) is cleared so that the client stops
            // sending it.
            session.discard();
            self.cookie_sent.then(|| self.removal_cookie())
        } else {
            // Read before the flush, which resets it.
            let lifetime_changed = session.cookie_lifetime_changed();
            if session.needs_flush() {
                if let Err(e) = session.flush().await {
                    if let Some(err) = flush_failed(&self.logs, &mut session, e) {
                        return Outcome::Error(err);
                    }
                    // The session is gone: drop the cookie.
                    return Outcome::Cookie(Some(self.removal_cookie()));
                }
            }
            let id_is_new_to_client =
                session.id().map(SessionId::as_str) != self.claimed.as_deref();
            // A browser-session cookie carries no lifetime to slide: it is sent when it
            // changes.
            let slides =
                session.expire().is_some_and(|e| e > 0) && !session.is_browser_session_cookie();
            (id_is_new_to_client || slides || lifetime_changed || resign)
                .then(|| session_cookie(keys, &session))
                .flatten()
        };
        Outcome::Cookie(cookie)
    }

    /// A cookie telling the client to forget the session cookie (never signed: it holds
    /// nothing).
    fn removal_cookie(&self) -> Cookie<'static> {
        self.store.cookie_config().removal_cookie()
    }
}

/// Handles a failed flush: the error to answer with (503/500), or `None` when the session was
/// deleted meanwhile (the response stands).
fn flush_failed(logs: &StoreLogs, session: &mut Session, e: Error) -> Option<WebError> {
    session.discard();
    if let Error::Gone { .. } = e {
        tracing::warn!(error = %e, "session changes not saved");
        return None;
    }
    Some(WebError::logged(logs, e, "saving the session"))
}

/// The session's cookie ([`Session::cookie`], built from the store's one cookie
/// configuration), signed with the newest key when there are keys.
fn session_cookie(keys: Option<&SigningKeys>, session: &Session) -> Option<Cookie<'static>> {
    let cookie = session.cookie()?;
    Some(match keys {
        None => cookie,
        Some(keys) => keys.sign(cookie),
    })
}
