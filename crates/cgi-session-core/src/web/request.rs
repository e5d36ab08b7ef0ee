//! [`RequestSession`]: one request's lazily loaded session, shared by an adapter's middleware
//! and the handler's session handle.

use std::net::IpAddr;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use super::error::{StoreLogs, WebError};
use crate::{Error, LockMode, Session, SessionId, SessionLock, SessionStore};

/// Exclusive access to the request's loaded [`Session`], from [`RequestSession::loaded`] or
/// [`RequestSession::lock`]. Holding it blocks the request's other session operations (and
/// the save after the handler) until it is dropped.
pub type SessionGuard<'a> = MappedMutexGuard<'a, Session>;

/// One request's session: loaded from the store on first use (async, behind a tokio mutex),
/// with the store failures met while the handler ran remembered so that the adapter answers
/// 503/500 after it ([`RequestSession::finish`]).
///
/// An adapter makes one per request (no store I/O), shares it (in an `Arc`) between its
/// middleware and the handler's session handle, and forwards the handle's methods to it.
#[derive(Debug)]
pub struct RequestSession {
    pub(super) store: SessionStore,
    /// The id the client's cookie holds (verified when cookies are signed).
    pub(super) claimed: Option<String>,
    /// Whether the request carried a session cookie at all (even one that failed to verify).
    pub(super) cookie_sent: bool,
    remote_addr: Option<RemoteAddr>,
    /// When this request takes the session lock.
    lock_mode: LockMode,
    /// The adapter's rate limits for logging store failures.
    pub(super) logs: Arc<StoreLogs>,
    pub(super) state: Mutex<State>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// Loaded on first use.
    pub(super) session: Option<Session>,
    /// A store failure seen while the handler ran; the adapter answers 503/500.
    pub(super) failure: Option<WebError>,
    /// The session lock, when this request holds it; released after saving.
    pub(super) store_lock: Option<SessionLock>,
}

impl RequestSession {
    /// The session of a request whose cookie holds `claimed` (verified when cookies are
    /// signed); `cookie_sent` tells whether a session cookie was sent at all (even one that
    /// failed to verify). `remote_addr` is the client address for the store's ip matching.
    /// No store I/O.
    pub fn new(
        store: SessionStore,
        claimed: Option<String>,
        cookie_sent: bool,
        remote_addr: Option<String>,
        lock_mode: LockMode,
        logs: Arc<StoreLogs>,
    ) -> Self {
        Self {
            store,
            claimed,
            cookie_sent,
            remote_addr: remote_addr.map(RemoteAddr::Text),
            lock_mode,
            logs,
            state: Mutex::new(State::default()),
        }
    }

    /// The client address for the store's ip matching, as an address: it is written out
    /// only when the session is loaded (a request that never uses its session does not pay
    /// for it). Replaces the `remote_addr` given to [`RequestSession::new`].
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use cgi_session_core::web::RequestSession;
    /// use cgi_session_core::{LockMode, MemoryDriver, SessionStore};
    ///
    /// let store = SessionStore::builder(MemoryDriver::new()).build();
    /// let request = RequestSession::new(store, None, false, None, LockMode::Off, Arc::default())
    ///     .client_ip("192.0.2.7".parse().unwrap());
    /// # let _ = request;
    /// ```
    #[must_use]
    pub fn client_ip(mut self, ip: IpAddr) -> Self {
        self.remote_addr = Some(RemoteAddr::Ip(ip));
        self
    }

    /// The session, loaded (and, with [`LockMode::EveryRequest`], locked) on first use.
    ///
    /// # Errors
    /// A store failure, remembered for the answer after the handler; the one remembered
    /// before, if any.
    pub async fn loaded(&self) -> Result<SessionGuard<'_>, WebError> {
        let mut state = self.state.lock().await;
        if let Some(failure) = &state.failure {
            return Err(failure.clone());
        }
        if state.session.is_none() {
            if self.lock_mode == LockMode::EveryRequest && state.store_lock.is_none() {
                // PHP's way: the session is locked before it is read, until it is saved.
                if let Some(id) = self
                    .claimed
                    .as_deref()
                    .and_then(|c| SessionId::parse(c).ok())
                {
                    match self.store.lock(&id).await {
                        Ok(lock) => state.store_lock = Some(lock),
                        Err(e) => {
                            return Err(self.record(&mut state, e, "waiting for the session lock"))
                        }
                    }
                }
            }
            let remote_addr = self.remote_addr.as_ref().map(RemoteAddr::text);
            match self
                .store
                .new_session(self.claimed.as_deref(), remote_addr.as_deref())
                .await
            {
                Ok(session) => state.session = Some(session),
                Err(e) => return Err(self.record(&mut state, e, "loading the session")),
            }
        }
        MutexGuard::try_map(state, |s| s.session.as_mut()).map_err(|_| no_session())
    }

    /// Takes the session lock (with [`LockMode::OnDemand`]), reloads the session under it
    /// (this request's unsaved changes are kept on top), and returns it; the lock is held
    /// until the session is saved after the handler. With `EveryRequest` the lock is already
    /// held: this is [`RequestSession::loaded`].
    ///
    /// # Errors
    /// [`WebError::LockingOff`] when the lock mode is `Off`; otherwise as
    /// [`RequestSession::loaded`].
    pub async fn lock(&self) -> Result<SessionGuard<'_>, WebError> {
        match self.lock_mode {
            LockMode::Off => return Err(WebError::LockingOff),
            LockMode::EveryRequest => return self.loaded().await,
            _ => {}
        }
        drop(self.loaded().await?);
        let mut state = self.state.lock().await;
        if state.store_lock.is_none() {
            let stored_id = state
                .session
                .as_ref()
                .filter(|s| !s.is_new())
                .and_then(|s| s.id().cloned());
            if let Some(id) = stored_id {
                match self.store.lock(&id).await {
                    Ok(lock) => state.store_lock = Some(lock),
                    Err(e) => {
                        return Err(self.record(&mut state, e, "waiting for the session lock"))
                    }
                }
                let reloaded = match state.session.as_mut() {
                    Some(session) => session.reload().await,
                    None => Ok(()),
                };
                if let Err(e) = reloaded {
                    return Err(self.record(&mut state, e, "reloading the locked session"));
                }
            }
        }
        MutexGuard::try_map(state, |s| s.session.as_mut()).map_err(|_| no_session())
    }

    /// Atomic read-modify-write ([`Session::update`]) of the loaded session.
    ///
    /// # Errors
    /// As [`RequestSession::loaded`]; a busy or unavailable store is remembered;
    /// [`WebError::Session`] with what `change` returned.
    pub async fn update<R, F>(&self, change: F) -> Result<R, WebError>
    where
        F: FnMut(&mut Session) -> Result<R, Error> + Send + 'static,
        R: Send + 'static,
    {
        drop(self.loaded().await?);
        let mut state = self.state.lock().await;
        let Some(session) = state.session.as_mut() else {
            return Err(no_session());
        };
        match session.update(change).await {
            Ok(r) => Ok(r),
            Err(e) if e.is_busy() || e.is_unavailable() => {
                Err(self.record(&mut state, e, "updating the session"))
            }
            Err(e) => Err(WebError::Session(Arc::new(e))),
        }
    }

    /// A parameter ([`Session::get`]); `None` when unset.
    ///
    /// # Errors
    /// As [`RequestSession::loaded`]; [`WebError::Session`] when the value is not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, WebError> {
        let session = self.loaded().await?;
        session
            .get(name)
            .map_err(|e| WebError::Session(Arc::new(e)))
    }

    /// A parameter read with Perl's scalar rules ([`Session::get_perl`]).
    ///
    /// # Errors
    /// As [`RequestSession::get`].
    pub async fn get_perl<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, WebError> {
        let session = self.loaded().await?;
        session
            .get_perl(name)
            .map_err(|e| WebError::Session(Arc::new(e)))
    }

    /// Sets a parameter ([`Session::set`]); saved after the handler.
    ///
    /// # Errors
    /// As [`RequestSession::loaded`]; [`WebError::Session`] for a reserved name or a value
    /// that cannot be encoded.
    pub async fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<(), WebError> {
        let mut session = self.loaded().await?;
        session
            .set(name, value)
            .map_err(|e| WebError::Session(Arc::new(e)))
    }

    /// Removes a parameter ([`Session::remove`]), returning its value.
    ///
    /// # Errors
    /// As [`RequestSession::loaded`].
    pub async fn remove(&self, name: &str) -> Result<Option<serde_json::Value>, WebError> {
        let mut session = self.loaded().await?;
        Ok(session.remove(name))
    }

    /// Gives the session a new id ([`Session::regenerate_id`]); a store failure is remembered.
    ///
    /// # Errors
    /// As [`RequestSession::loaded`].
    pub async fn regenerate_id(&self) -> Result<(), WebError> {
        drop(self.loaded().await?);
        let mut state = self.state.lock().await;
        let Some(session) = state.session.as_mut() else {
            return Err(no_session());
        };
        match session.regenerate_id().await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.record(&mut state, e, "regenerating the session id")),
        }
    }

    /// Marks the session for deletion ([`Session::delete`]); removed after the handler.
    ///
    /// # Errors
    /// As [`RequestSession::loaded`].
    pub async fn delete(&self) -> Result<(), WebError> {
        let mut session = self.loaded().await?;
        session.delete();
        Ok(())
    }

    /// The first 8 characters of the id followed by `…` ([`SessionId::redacted`]).
    ///
    /// # Errors
    /// As [`RequestSession::loaded`].
    pub async fn id_prefix(&self) -> Result<String, WebError> {
        let session = self.loaded().await?;
        Ok(session.id().map(|id| id.redacted()).unwrap_or_default())
    }

    /// Whether the session was loaded by this request so far (no I/O; `false` while the
    /// session is held by someone else).
    pub fn is_loaded(&self) -> bool {
        self.state
            .try_lock()
            .map(|s| s.session.is_some())
            .unwrap_or(false)
    }

    /// Whether the session is in the store (not new, not deleted).
    ///
    /// # Errors
    /// As [`RequestSession::loaded`].
    pub async fn is_stored(&self) -> Result<bool, WebError> {
        let session = self.loaded().await?;
        Ok(!session.is_new() && !session.is_deleted())
    }

    /// Whether an error the handler answered with is still to be logged: not when it is the
    /// store failure this request remembered (logged when it happened). `None` stands for an
    /// adapter's own error (e.g. a missing middleware), always logged.
    pub async fn answer_needs_log(&self, error: Option<&WebError>) -> bool {
        let Some(error) = error else {
            return true;
        };
        !self
            .state
            .lock()
            .await
            .failure
            .as_ref()
            .is_some_and(|f| f.same_as(error))
    }

    /// Remembers a store failure so that the adapter answers with 503/500, logs it, and
    /// returns the handler's error.
    fn record(&self, state: &mut State, e: Error, what: &str) -> WebError {
        let err = WebError::logged(&self.logs, e, what);
        state.failure = Some(err.clone());
        err
    }
}

/// The client address of a request, as given: text, or an address written out when needed.
#[derive(Debug)]
enum RemoteAddr {
    Text(String),
    Ip(IpAddr),
}

impl RemoteAddr {
    fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::Text(text) => std::borrow::Cow::Borrowed(text),
            Self::Ip(ip) => std::borrow::Cow::Owned(ip_text(*ip)),
        }
    }
}

/// `ip` as its `Display` writes it; IPv4 without the formatting machinery (which costs about
/// ten times more than the digits).
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

fn no_session() -> WebError {
    WebError::Session(Arc::new(Error::NoId))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let mut cases: Vec<IpAddr> = [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "127.0.0.1",
            "::1",
            "::ffff:1.2.3.4",
            "2001:db8::7",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        for octet in 0..=255u8 {
            cases.push(IpAddr::from([octet, 9, 10, octet.wrapping_mul(7)]));
        }
        for ip in cases {
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }
}
