//! [`SessionHandle`]: the handler's lazily loaded session.

use std::sync::Arc;

use axum_core::extract::FromRequestParts;
use cgi_session_core::web::RequestSession;
use cgi_session_core::Session;
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::SessionError;

/// Exclusive access to the request's loaded [`Session`], from [`SessionHandle::guard`] or
/// [`SessionHandle::lock`].
///
/// Holding it blocks the handle's other methods (and the layer's save) until it is dropped.
pub type SessionGuard<'a> = cgi_session_core::web::SessionGuard<'a>;

/// The request's session, as an axum extractor: loaded from the store on first use (async,
/// behind a tokio mutex), saved by [`SessionLayer`](crate::SessionLayer) after the handler
/// returns, only if it changed.
///
/// Cloning is cheap; all clones share the same session. Taking the extractor costs nothing:
/// a handler that takes it but never calls a method causes no store I/O.
///
/// ```
/// use cgi_session_tower::{SessionError, SessionHandle};
///
/// // A visit counter: a read-modify-write, so `update` (parallel requests each count once).
/// async fn count(session: SessionHandle) -> Result<String, SessionError> {
///     let n = session
///         .update(|s| {
///             let n = s.get::<u64>("visits")?.unwrap_or(0) + 1;
///             s.set("visits", &n)?;
///             Ok(n)
///         })
///         .await?;
///     Ok(format!("visit number {n}"))
/// }
///
/// // A greeting: a plain write (for one parameter, the last request's value stays).
/// async fn greet(session: SessionHandle) -> Result<&'static str, SessionError> {
///     session.set("greet_en", "Hi !").await?;
///     Ok("saved")
/// }
///
/// // Login: a new id against session fixation, then the user.
/// async fn login(session: SessionHandle) -> Result<&'static str, SessionError> {
///     session.regenerate_id().await?;
///     session.set("user", "ann").await?;
///     Ok("welcome")
/// }
///
/// // Logout: the stored session is removed and the cookie cleared.
/// async fn logout(session: SessionHandle) -> Result<&'static str, SessionError> {
///     session.delete().await?;
///     Ok("bye")
/// }
/// # let _ = (count, greet, login, logout);
/// ```
#[derive(Debug, Clone)]
pub struct SessionHandle(pub(crate) Arc<RequestSession>);

impl SessionHandle {
    /// The loaded session, for everything [`Session`] offers (expiry, metadata, `names`,
    /// `dump`...), held exclusively by this request's handler until the guard is dropped.
    /// Loads it on first use. This takes no session lock: see [`SessionHandle::lock`].
    ///
    /// Do not call `flush` or `discard` on it: the layer saves after the handler.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`] when the store cannot be reached (the request is then
    /// answered with 503), [`SessionError::Busy`] when the session lock stayed held past the
    /// lock wait (503 with `Retry-After`), [`SessionError::Session`] for other store failures
    /// (500).
    pub async fn guard(&self) -> Result<SessionGuard<'_>, SessionError> {
        self.0.loaded().await.map_err(SessionError::from)
    }

    /// Takes the session lock (when the layer's [`LockMode`](cgi_session_core::LockMode) is `OnDemand`), reloads the
    /// session under it (this request's unsaved changes are kept on top), and returns it. The
    /// lock is held until the layer has saved the session after the handler: other requests
    /// of the session that ask for it wait (up to the store's lock wait), in this process and
    /// in others sharing the store. With `EveryRequest` the lock is already held; this is then
    /// [`SessionHandle::guard`].
    ///
    /// ```
    /// use cgi_session_tower::{SessionError, SessionHandle};
    ///
    /// // Checkout: no other request of this session may run between the read and the write.
    /// async fn checkout(session: SessionHandle) -> Result<String, SessionError> {
    ///     let mut s = session.lock().await?;
    ///     let cart: Vec<String> = s.get("cart").map_err(SessionError::from)?.unwrap_or_default();
    ///     s.remove("cart");
    ///     Ok(format!("ordered {} items", cart.len()))
    /// }
    /// # let _ = checkout;
    /// ```
    ///
    /// # Errors
    /// [`SessionError::LockingOff`] when the layer's lock mode is `Off`; otherwise as
    /// [`SessionHandle::guard`].
    pub async fn lock(&self) -> Result<SessionGuard<'_>, SessionError> {
        self.0.lock().await.map_err(SessionError::from)
    }

    /// Atomic read-modify-write: runs `change` on the freshest stored copy of the session and
    /// saves the result at once; if another request or process wrote the session in between,
    /// `change` runs again on the fresh copy. Use it for every value computed from its old
    /// value (counters, carts): requests of one session sent at once (what browsers do) then
    /// never lose an update. Returns what `change` returned.
    ///
    /// Concurrent updates of one session in this process are written together (one write for
    /// many requests). `change` may run more than once and must not wait. This request's other
    /// unsaved changes are saved with it.
    ///
    /// ```
    /// use cgi_session_tower::{SessionError, SessionHandle};
    ///
    /// async fn count(session: SessionHandle) -> Result<String, SessionError> {
    ///     let n = session
    ///         .update(|s| {
    ///             let n = s.get::<u64>("visits")?.unwrap_or(0) + 1;
    ///             s.set("visits", &n)?;
    ///             Ok(n)
    ///         })
    ///         .await?;
    ///     Ok(format!("visit number {n}"))
    /// }
    /// # let _ = count;
    /// ```
    ///
    /// # Errors
    /// As [`SessionHandle::guard`]; [`SessionError::Busy`] when other processes kept writing
    /// the session past the save deadline (the request is answered with 503 and
    /// `Retry-After`); [`SessionError::Session`] with what `change` returned.
    pub async fn update<R, F>(&self, change: F) -> Result<R, SessionError>
    where
        F: FnMut(&mut Session) -> Result<R, cgi_session_core::Error> + Send + 'static,
        R: Send + 'static,
    {
        self.0.update(change).await.map_err(SessionError::from)
    }

    /// A parameter (CGI::Session's `param($name)`); `None` when unset.
    ///
    /// # Errors
    /// As [`SessionHandle::lock`]; [`SessionError::Session`] when the stored value is not a
    /// `T`.
    pub async fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, SessionError> {
        self.0.get(name).await.map_err(SessionError::from)
    }

    /// A parameter read with Perl's scalar rules, for sessions a Perl application writes
    /// (`'7'` is 7 where a number is asked for, `undef` is `None`): see
    /// [`Session::get_perl`](cgi_session_core::Session::get_perl).
    ///
    /// # Errors
    /// As [`SessionHandle::get`].
    pub async fn get_perl<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, SessionError> {
        self.0.get_perl(name).await.map_err(SessionError::from)
    }

    /// Sets a parameter (CGI::Session's `param($name, $value)`); saved after the handler.
    ///
    /// # Errors
    /// As [`SessionHandle::lock`]; [`SessionError::Session`] for a reserved name
    /// (`_SESSION_*`) or a value that cannot be encoded.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), SessionError> {
        self.0.set(name, value).await.map_err(SessionError::from)
    }

    /// Removes a parameter (CGI::Session's `clear($name)`), returning its value.
    ///
    /// # Errors
    /// As [`SessionHandle::lock`].
    pub async fn remove(&self, name: &str) -> Result<Option<serde_json::Value>, SessionError> {
        self.0.remove(name).await.map_err(SessionError::from)
    }

    /// Gives the session a new id, keeping its data (call it at login, against session
    /// fixation). A stored session is moved at once and the old id stops working; the layer
    /// sends the new cookie.
    ///
    /// # Errors
    /// As [`SessionHandle::lock`]; a store failure while moving the session is recorded like
    /// a load failure (503 or 500).
    pub async fn regenerate_id(&self) -> Result<(), SessionError> {
        self.0.regenerate_id().await.map_err(SessionError::from)
    }

    /// Marks the session for deletion (CGI::Session's `delete`, i.e. logout): the layer
    /// removes it from the store and sends a removal cookie.
    ///
    /// # Errors
    /// As [`SessionHandle::lock`] (the session is loaded to learn whether it is stored).
    pub async fn delete(&self) -> Result<(), SessionError> {
        self.0.delete().await.map_err(SessionError::from)
    }

    /// The first 8 characters of the id followed by `…`, safe to show or log (never the full
    /// id). Loads the session on first use.
    ///
    /// # Errors
    /// As [`SessionHandle::lock`].
    pub async fn id_prefix(&self) -> Result<String, SessionError> {
        self.0.id_prefix().await.map_err(SessionError::from)
    }

    /// Whether the session was loaded by this request so far (no I/O; `false` while another
    /// clone holds the lock).
    pub fn is_loaded(&self) -> bool {
        self.0.is_loaded()
    }

    /// Whether the session is in the store: the client's cookie named a live session, or this
    /// request already wrote it ([`update`](Self::update), [`regenerate_id`](Self::regenerate_id)
    /// of a stored one). Loads the session on first use (no store I/O for a client without a
    /// cookie).
    ///
    /// For data that is only worth keeping once the visitor has a session for another reason
    /// (a page-view counter, "last seen"): write it only when this is `true`, and an anonymous
    /// view stores nothing and sends no cookie (the layer drops a new session the handler did
    /// not change), so bots cannot fill the store.
    ///
    /// ```
    /// use cgi_session_tower::{SessionError, SessionHandle};
    ///
    /// async fn home(session: SessionHandle) -> Result<String, SessionError> {
    ///     if !session.is_stored().await? {
    ///         return Ok("welcome, stranger".to_owned()); // nothing stored, no cookie
    ///     }
    ///     let n = session
    ///         .update(|s| {
    ///             let n = s.get::<u64>("visits")?.unwrap_or(0) + 1;
    ///             s.set("visits", &n)?;
    ///             Ok(n)
    ///         })
    ///         .await?;
    ///     Ok(format!("welcome back, visit {n}"))
    /// }
    /// # let _ = home;
    /// ```
    ///
    /// # Errors
    /// As [`SessionHandle::guard`].
    pub async fn is_stored(&self) -> Result<bool, SessionError> {
        self.0.is_stored().await.map_err(SessionError::from)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionHandle {
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<SessionHandle>()
            .cloned()
            .ok_or(SessionError::MissingLayer)
    }
}
