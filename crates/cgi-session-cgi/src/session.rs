//! [`CgiSession`]: one CGI request's session, CGI::Session's object with blocking methods,
//! flushed on drop.

use std::fmt;
use std::io::{self, Write};

use cgi_session::cookie::SigningKeys;
use cgi_session::{DriverArgs, LockMode, Session, SessionId, SessionLock, SessionStore};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::CgiError;
use crate::log;
use crate::request::CgiRequest;
use crate::runtime::block_on;

/// One CGI request's session: CGI::Session's object, with blocking methods.
///
/// A thin wrapper over [`cgi_session::Session`] ([`CgiSession::session`] gives it back for
/// anything not wrapped here). Dropping it with unsaved changes flushes it (see the
/// [crate documentation](crate#flushing-the-cgi-world-answer-to-auto-flush)).
///
/// ```
/// use cgi_session_cgi::{CgiRequest, CgiSession, DriverArgs};
///
/// let dir = tempfile::tempdir().unwrap();
/// let args = || DriverArgs::new().directory(dir.path());
///
/// // Request 1: no cookie.
/// let req = CgiRequest::from_parts([("REMOTE_ADDR", "192.0.2.7")], std::io::empty(), 0)?;
/// let mut sess = CgiSession::new("driver:file", &req, args())?;
/// assert!(sess.is_new());
/// sess.set_param("greet_en", "Hi !")?;
/// sess.set_expire("+1h")?;
/// sess.flush()?;
/// let header = sess.header("text/html");
/// assert!(header.starts_with("Set-Cookie: CGISESSID="));
/// let cookie = sess.cookie().unwrap();
///
/// // Request 2: the browser sends the cookie back.
/// let cookie_header = format!("CGISESSID={}", cookie.value());
/// let req = CgiRequest::from_parts([("HTTP_COOKIE", cookie_header.as_str())], std::io::empty(), 0)?;
/// let sess = CgiSession::new("driver:file", &req, args())?;
/// assert_eq!(sess.param::<String>("greet_en")?.as_deref(), Some("Hi !"));
/// # Ok::<(), cgi_session_cgi::CgiError>(())
/// ```
pub struct CgiSession {
    session: Session,
    store: SessionStore,
    /// The session lock, when held (store lock mode `EveryRequest`, or after `lock`).
    lock: Option<SessionLock>,
    /// The keys signing the cookie, when ids travel signed.
    keys: Option<SigningKeys>,
}

impl fmt::Debug for CgiSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CgiSession")
            .field("session", &self.session)
            .finish()
    }
}

impl CgiSession {
    /// `CGI::Session->new($dsn, $cgi, \%args)`: builds the store the DSN names with `args`
    /// (for `driver:memcache`, `DriverArgs::handle` with a client from
    /// `connect_memcached`), then loads the session whose id the request claims (cookie
    /// first, then parameter), or creates a new one.
    ///
    /// # Errors
    /// [`CgiError::Open`] for a bad DSN or driver set-up; [`CgiError::Session`] when the
    /// store fails (503 via [`CgiError::http_status`] when it is unreachable).
    pub fn new(dsn: &str, request: &CgiRequest, args: DriverArgs) -> Result<Self, CgiError> {
        let store = cgi_session::builder_from_dsn(dsn, &args)?.build();
        Self::from_store(&store, request)
    }

    /// Opens the store `spec` names (memcached servers or a directory, the same
    /// [`StoreSpec`](cgi_session::StoreSpec) the demo and the operator CLI open stores with),
    /// lets `configure` adjust the store (expiry, lock mode, cookie...), then loads the
    /// request's session as [`CgiSession::from_store`] does.
    ///
    /// ```
    /// use cgi_session::StoreSpec;
    /// use cgi_session_cgi::{CgiRequest, CgiSession};
    ///
    /// let dir = std::env::temp_dir();
    /// let spec = StoreSpec::new("driver:file").directory(&dir);
    /// let req = CgiRequest::from_parts([("REQUEST_METHOD", "GET")], std::io::empty(), 0)?;
    /// let mut sess = CgiSession::open(&spec, &req, |b| b.default_expire(600))?;
    /// assert!(sess.is_new());
    /// sess.discard();
    /// # Ok::<(), cgi_session_cgi::CgiError>(())
    /// ```
    ///
    /// # Errors
    /// [`CgiError::Open`] for a bad DSN or driver set-up (503 via [`CgiError::http_status`] when
    /// memcached cannot be reached); [`CgiError::Session`] when the store fails.
    pub fn open(
        spec: &cgi_session::StoreSpec,
        request: &CgiRequest,
        configure: impl FnOnce(cgi_session::SessionStoreBuilder) -> cgi_session::SessionStoreBuilder,
    ) -> Result<Self, CgiError> {
        log::ensure_installed();
        let builder = block_on(spec.builder())??;
        Self::from_store(&configure(builder).build(), request)
    }

    /// `CGI::Session->new` on a store configured in code (expiry, ip matching, cookie
    /// settings...).
    ///
    /// ```
    /// use cgi_session_cgi::{CgiRequest, CgiSession, SessionStore};
    /// use cgi_session::MemoryDriver;
    ///
    /// let store = SessionStore::builder(MemoryDriver::new()).default_expire(600).build();
    /// let req = CgiRequest::from_parts([("QUERY_STRING", "CGISESSID=%2e%2e%2f")], std::io::empty(), 0)?;
    /// let sess = CgiSession::from_store(&store, &req)?;
    /// assert!(sess.is_new()); // a malformed claimed id gives a fresh session
    /// assert_eq!(sess.expire(), Some(600));
    /// # let mut sess = sess; sess.discard();
    /// # Ok::<(), cgi_session_cgi::CgiError>(())
    /// ```
    ///
    /// # Errors
    /// [`CgiError::Session`] when the store fails.
    pub fn from_store(store: &SessionStore, request: &CgiRequest) -> Result<Self, CgiError> {
        let claimed = request.session_id(store.cookie_name());
        Self::load(store, request, claimed, None)
    }

    /// [`CgiSession::from_store`] with signed cookies: the claimed id (cookie, then
    /// parameter) must be signed with one of `keys` (an altered, unsigned or retired-key
    /// value counts as no id: a fresh session), and [`CgiSession::cookie`] and
    /// [`CgiSession::header`] sign with the newest key. Key rotation: put the new key first
    /// and keep the old one as [`SigningKeys::previous`]; a cookie the old key signed still
    /// works, and the header this request prints carries it signed with the new key.
    ///
    /// ```
    /// use cgi_session::cookie::{Key, SigningKeys};
    /// use cgi_session::MemoryDriver;
    /// use cgi_session_cgi::{CgiRequest, CgiSession, SessionStore};
    ///
    /// let store = SessionStore::builder(MemoryDriver::new()).default_expire(600).build();
    /// let (old, new) = (Key::generate(), Key::generate());
    /// let req = CgiRequest::from_parts([("REQUEST_METHOD", "GET")], std::io::empty(), 0)?;
    /// let mut sess = CgiSession::from_store_signed(&store, &req, &SigningKeys::new(old.clone()))?;
    /// sess.set_param("user", "ann")?;
    /// sess.flush()?;
    /// let cookie = format!("CGISESSID={}", sess.cookie().unwrap().value());
    ///
    /// // After the rotation: the old key's cookie is accepted and re-signed.
    /// let keys = SigningKeys::new(new).previous(old);
    /// let req = CgiRequest::from_parts([("HTTP_COOKIE", cookie.as_str())], std::io::empty(), 0)?;
    /// let sess = CgiSession::from_store_signed(&store, &req, &keys)?;
    /// assert_eq!(sess.param::<String>("user")?.as_deref(), Some("ann"));
    /// assert!(keys.verify("CGISESSID", sess.cookie().unwrap().value()).unwrap().by_newest);
    /// # Ok::<(), cgi_session_cgi::CgiError>(())
    /// ```
    ///
    /// # Errors
    /// [`CgiError::Session`] when the store fails.
    pub fn from_store_signed(
        store: &SessionStore,
        request: &CgiRequest,
        keys: &SigningKeys,
    ) -> Result<Self, CgiError> {
        let claimed = request.signed_session_id(store.cookie_name(), keys);
        Self::load(
            store,
            request,
            claimed.as_ref().map(|(id, _)| id.as_str()),
            Some(keys.clone()),
        )
    }

    fn load(
        store: &SessionStore,
        request: &CgiRequest,
        claimed: Option<&str>,
        keys: Option<SigningKeys>,
    ) -> Result<Self, CgiError> {
        log::ensure_installed();
        let remote = request.remote_addr();
        let (session, lock) = block_on(async {
            // `LockMode::EveryRequest`: the session is locked before it is read, until close.
            let lock = match claimed.and_then(|c| SessionId::parse(c).ok()) {
                Some(id) if store.lock_mode() == LockMode::EveryRequest => {
                    Some(store.lock(&id).await?)
                }
                _ => None,
            };
            let session = store.new_session(claimed, remote).await?;
            Ok::<_, cgi_session::Error>((session, lock))
        })??;
        Ok(Self {
            session,
            store: store.clone(),
            lock,
            keys,
        })
    }

    /// Takes the session lock (see [`LockMode`]) and reloads the session under it, keeping
    /// this request's unsaved changes; held until [`CgiSession::close`] (or drop). Other
    /// requests of the session that lock it wait, here and in other processes sharing the
    /// store. A new session has no other request: nothing is locked.
    ///
    /// # Errors
    /// [`CgiError::Session`] with [`cgi_session::Error::LockTimeout`] (503) when the lock stays
    /// held past the store's lock wait, or when the driver has no locks.
    pub fn lock(&mut self) -> Result<(), CgiError> {
        if self.lock.is_some() || self.session.is_new() {
            return Ok(());
        }
        let Some(id) = self.session.id().cloned() else {
            return Ok(());
        };
        let store_lock = {
            let (session, store) = (&mut self.session, &self.store);
            block_on(async move {
                let lock = store.lock(&id).await?;
                session.reload().await?;
                Ok::<_, cgi_session::Error>(lock)
            })??
        };
        self.lock = Some(store_lock);
        Ok(())
    }

    /// Atomic read-modify-write (see [`cgi_session::Session::update`]): runs `change` on the
    /// freshest stored copy of the session and writes it at once, re-running `change` if
    /// another request wrote the session in between. Use it for values computed from their
    /// old value, such as counters.
    ///
    /// ```
    /// use cgi_session_cgi::{CgiRequest, CgiSession, DriverArgs};
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let args = || DriverArgs::new().directory(dir.path());
    /// let req = CgiRequest::from_parts([("REMOTE_ADDR", "192.0.2.7")], std::io::empty(), 0)?;
    /// let mut sess = CgiSession::new("driver:file", &req, args())?;
    /// let n = sess.update(|s| {
    ///     let n = s.get::<u64>("visits")?.unwrap_or(0) + 1;
    ///     s.set("visits", &n)?;
    ///     Ok(n)
    /// })?;
    /// assert_eq!(n, 1);
    /// sess.close()?;
    /// # Ok::<(), cgi_session_cgi::CgiError>(())
    /// ```
    ///
    /// # Errors
    /// What `change` returns; store errors (503 when the store is unreachable or the session
    /// stays contended past the save deadline).
    pub fn update<R, F>(&mut self, change: F) -> Result<R, CgiError>
    where
        F: FnMut(&mut Session) -> Result<R, cgi_session::Error> + Send + 'static,
        R: Send + 'static,
    {
        Ok(block_on(self.session.update(change))??)
    }

    /// The id (CGI::Session's `id`). Its `Display` is shortened; never log `as_str()`.
    pub fn id(&self) -> Option<&SessionId> {
        self.session.id()
    }

    /// A parameter (CGI::Session's `param($name)`), `Ok(None)` when unset.
    ///
    /// # Errors
    /// [`CgiError::Session`] when the stored value is not a `T`.
    pub fn param<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, CgiError> {
        Ok(self.session.get(name)?)
    }

    /// A parameter read with Perl's scalar rules, for sessions a Perl page writes (`'7'` is 7
    /// where a number is asked for, `undef` is `None`): see
    /// [`Session::get_perl`](cgi_session::Session::get_perl).
    ///
    /// # Errors
    /// [`CgiError::Session`] when the stored value is not a `T` even with Perl's rules.
    pub fn param_perl<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, CgiError> {
        Ok(self.session.get_perl(name)?)
    }

    /// The parameter names (CGI::Session's `param()`).
    pub fn param_names(&self) -> Vec<&str> {
        self.session.names()
    }

    /// Sets a parameter (CGI::Session's `param($name, $value)`).
    ///
    /// # Errors
    /// [`CgiError::Session`] for a reserved `_SESSION_*` name or a value that cannot be stored.
    pub fn set_param<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), CgiError> {
        Ok(self.session.set(name, value)?)
    }

    /// Removes a parameter (CGI::Session's `clear($name)`), returning its value.
    pub fn clear_param(&mut self, name: &str) -> Option<Value> {
        self.session.remove(name)
    }

    /// Copies request parameters into the session (CGI::Session's `save_param`): one value
    /// is stored as a string, several as an array; with `only`, just those names.
    ///
    /// # Errors
    /// [`CgiError::Session`] for a reserved `_SESSION_*` name.
    pub fn save_params(
        &mut self,
        request: &CgiRequest,
        only: Option<&[&str]>,
    ) -> Result<(), CgiError> {
        Ok(self.session.save_params(request.params(), only)?)
    }

    /// The idle timeout in seconds (CGI::Session's `expire()`).
    pub fn expire(&self) -> Option<i64> {
        self.session.expire()
    }

    /// Sets the idle timeout in CGI::Session's syntax (`"+10m"`, `"2h"`, `"0"` cancels).
    ///
    /// # Errors
    /// [`CgiError::Session`] for a malformed time string.
    pub fn set_expire(&mut self, time: &str) -> Result<(), CgiError> {
        Ok(self.session.set_expire_str(time)?)
    }

    /// Sets the idle timeout in seconds (0 cancels it).
    pub fn set_expire_secs(&mut self, secs: i64) {
        self.session.set_expire(secs);
    }

    /// Sets how the session expires, typed: idle, at a date-time, or with a browser-session
    /// cookie ([`Session::set_expiry`](cgi_session::Session::set_expiry); see
    /// [`cgi_session::Expiry`]). [`CgiSession::header`] then sends the matching cookie.
    pub fn set_expiry(&mut self, expiry: cgi_session::Expiry) {
        self.session.set_expiry(expiry);
    }

    /// Whether the session was created by this request (before its first flush).
    pub fn is_new(&self) -> bool {
        self.session.is_new()
    }

    /// Whether the claimed session had expired (a fresh one was issued).
    pub fn is_expired(&self) -> bool {
        self.session.is_expired()
    }

    /// Whether this request changed the session and has not flushed it.
    pub fn is_modified(&self) -> bool {
        self.session.is_modified()
    }

    /// Marks the session for deletion (CGI::Session's `delete`); the next flush removes it and
    /// [`CgiSession::header`] then sends a removal cookie.
    pub fn delete(&mut self) {
        self.session.delete();
    }

    /// Forgets this request's unsaved changes, so that nothing is flushed on drop.
    pub fn discard(&mut self) {
        self.session.discard();
    }

    /// Saves the session if it is new, changed or deleted (CGI::Session's `flush`).
    ///
    /// # Errors
    /// [`CgiError::Session`] when the store fails (see [`cgi_session::Session::flush`]).
    pub fn flush(&mut self) -> Result<(), CgiError> {
        if !self.session.needs_flush() {
            return Ok(());
        }
        Ok(block_on(self.session.flush())??)
    }

    /// Flushes and consumes the session (CGI::Session's `close`), reporting the error that a
    /// flush on drop could only log.
    ///
    /// # Errors
    /// As [`CgiSession::flush`].
    pub fn close(mut self) -> Result<(), CgiError> {
        let result = self.flush();
        if result.is_err() {
            // Already reported to the caller: do not try again on drop.
            self.session.discard();
        }
        let released = self.release_lock();
        result.and(released)
    }

    /// Releases the session lock if this request holds it.
    fn release_lock(&mut self) -> Result<(), CgiError> {
        if let Some(lock) = self.lock.take() {
            block_on(lock.release())??;
        }
        Ok(())
    }

    /// The session cookie (CGI::Session's `cookie()`): `HttpOnly`, `SameSite=Lax`, `Path=/`,
    /// its lifetime (`Max-Age` = the idle timeout, `Expires` for an absolute expiry, neither
    /// for a browser-session cookie: see [`cgi_session::Expiry`]), signed with the newest key
    /// when the session was opened with [`CgiSession::from_store_signed`] (a removal cookie is
    /// never signed: it holds nothing).
    pub fn cookie(&self) -> Option<cookie::Cookie<'static>> {
        let cookie = self.session.cookie()?;
        Some(match &self.keys {
            Some(keys) if !self.session.is_deleted() => keys.sign(cookie),
            _ => cookie,
        })
    }

    /// The CGI header block (CGI::Session's `header()`): `Set-Cookie`, then `Content-Type`,
    /// then the empty line, all CRLF-terminated. Print it before the body.
    pub fn header(&self, content_type: &str) -> String {
        cgi_session::cookie::cgi_header(self.cookie().as_ref(), content_type)
    }

    /// Writes [`CgiSession::header`] to standard output.
    ///
    /// # Errors
    /// When standard output cannot be written.
    pub fn print_header(&self, content_type: &str) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(self.header(content_type).as_bytes())?;
        out.flush()
    }

    /// The wrapped session, for anything not wrapped here (per-parameter expiry, `dump`...).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The wrapped session, mutably. Async methods on it need [`block_on`].
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

impl Drop for CgiSession {
    /// Flushes a session with unsaved changes, blocking, and logs errors (by default on
    /// standard error, the web server's error log): CGI::Session's auto-flush on destruction.
    fn drop(&mut self) {
        if !self.session.needs_flush() || std::thread::panicking() {
            if let Err(e) = self.release_lock() {
                tracing::warn!(error = %e, "releasing the session lock failed; it is freed when its lease ends");
            }
            return;
        }
        let id = self
            .session
            .id()
            .map(SessionId::redacted)
            .unwrap_or_default();
        match block_on(self.session.flush()) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(session = %id, error = %e, "flushing the session when it was dropped failed; its changes are lost (call `flush` or `close` to answer with an error instead)");
            }
            Err(e) => {
                tracing::error!(session = %id, error = %e, "the session was dropped with unsaved changes and could not be flushed; its changes are lost");
                self.session.discard();
            }
        }
        if let Err(e) = self.release_lock() {
            tracing::warn!(session = %id, error = %e, "releasing the session lock failed; it is freed when its lease ends");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::tests::{req, with_cookie};

    #[test]
    fn perl_scalars_read_with_perl_rules() {
        let store = SessionStore::builder(cgi_session::MemoryDriver::new()).build();
        let mut s = CgiSession::from_store(&store, &req(&[], b"", 0).unwrap()).unwrap();
        // What a Perl page stores: numbers as strings, undef.
        s.set_param("visits", "7").unwrap();
        s.set_param("nick", &serde_json::Value::Null).unwrap();
        assert!(s.param::<i64>("visits").is_err());
        assert_eq!(s.param_perl::<i64>("visits").unwrap(), Some(7));
        assert_eq!(s.param_perl::<String>("nick").unwrap(), None);
        s.discard();
    }

    #[test]
    fn dropping_a_changed_session_flushes_it() {
        let store = SessionStore::builder(cgi_session::MemoryDriver::new()).build();
        let r = req(&[], b"", 0).unwrap();
        let mut s = CgiSession::from_store(&store, &r).unwrap();
        s.set_param("n", &1).unwrap();
        let id = s.id().unwrap().as_str().to_owned();
        drop(s);
        let cookie = format!("CGISESSID={id}");
        let r = req(&[("HTTP_COOKIE", &cookie)], b"", 0).unwrap();
        let mut s = CgiSession::from_store(&store, &r).unwrap();
        assert!(!s.is_new());
        assert_eq!(s.param::<i64>("n").unwrap(), Some(1));
        // delete on drop, too
        s.delete();
        drop(s);
        let s = CgiSession::from_store(&store, &r).unwrap();
        assert!(s.is_new());
        s.close().unwrap();
    }

    #[test]
    fn a_latin1_cookie_next_to_the_session_cookie_keeps_the_session() {
        let store = SessionStore::builder(cgi_session::MemoryDriver::new()).build();
        let mut s = CgiSession::from_store(&store, &req(&[], b"", 0).unwrap()).unwrap();
        s.set_param("greet_en", "Hi !").unwrap();
        let id = s.id().unwrap().as_str().to_owned();
        s.close().unwrap();
        let header = [&b"lang=fran\xe7ais; CGISESSID="[..], id.as_bytes()].concat();
        let s = CgiSession::from_store(&store, &with_cookie(&header)).unwrap();
        assert!(!s.is_new());
        assert_eq!(
            s.param::<String>("greet_en").unwrap().as_deref(),
            Some("Hi !")
        );
        s.close().unwrap();
    }
}
