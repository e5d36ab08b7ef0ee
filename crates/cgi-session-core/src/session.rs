//! [`Session`]'s methods: one request's view of a session (CGI::Session's object).
//!
//! The accessors (id and status, parameters, expiry) work on the session in memory; the
//! methods that reach the store (`flush`, `update`, `reload`, `regenerate_id`) hand over to
//! the engine (`crate::engine::save`).

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::engine::{save, Changes, Session};
use crate::error::{Error, SerializeError};
use crate::expire::{self, parse_expire, Expiry};
use crate::id::SessionId;
use crate::record::{self, Params};

impl Session {
    // ----- identity and status -------------------------------------------------------------

    /// The id (CGI::Session's `id`); `None` for an empty session from `load`.
    pub fn id(&self) -> Option<&SessionId> {
        self.id.as_ref()
    }

    /// Whether the session was created by this request and not yet flushed.
    pub fn is_new(&self) -> bool {
        self.is_new
    }

    /// Whether this is an empty session: `load` found nothing usable (no id).
    pub fn is_empty(&self) -> bool {
        self.id.is_none()
    }

    /// Whether the claimed session had expired (it was deleted when loaded). A new session
    /// issued in its place by `new_session` keeps this flag, as CGI::Session's `new` does, so
    /// that an application can say "your session expired".
    pub fn is_expired(&self) -> bool {
        self.is_expired
    }

    /// Whether this request changed the session since it was loaded or last flushed.
    pub fn is_modified(&self) -> bool {
        self.changes.any()
    }

    /// Whether [`Session::delete`] was called.
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// Creation time, Unix seconds (CGI::Session's `ctime`).
    pub fn ctime(&self) -> i64 {
        self.record.ctime
    }

    /// Last access time, Unix seconds (CGI::Session's `atime`): now, for a loaded session.
    pub fn atime(&self) -> i64 {
        self.record.atime
    }

    /// The address that created the session (CGI::Session's `remote_addr`).
    pub fn remote_addr(&self) -> Option<&str> {
        Some(self.record.remote_addr.as_str()).filter(|a| !a.is_empty())
    }

    // ----- parameters ----------------------------------------------------------------------

    /// A parameter decoded into `T` (CGI::Session's `param($name)`); `Ok(None)` when unset.
    ///
    /// # Errors
    /// [`Error::ParamType`] when the stored value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Error> {
        self.record
            .params
            .get_as(name)
            .transpose()
            .map_err(|source| Error::ParamType {
                name: name.to_owned(),
                source,
            })
    }

    /// A parameter decoded into `T` with Perl's scalar rules, for sessions a Perl application
    /// writes: a string holding a number reads as that number (`'visits' => '7'` is 7), a
    /// number reads as its text where a string is asked for, `undef` is "no value"
    /// (`Ok(None)`), a `bool` is Perl's truth (`undef`, `""`, `"0"` and 0 are false); the
    /// same inside structs, vectors and maps. A string that is not entirely a number is
    /// still an error where a number is asked for.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cgi_session_core::{MemoryDriver, SessionStore};
    /// use serde_json::json;
    ///
    /// let store = SessionStore::builder(MemoryDriver::new()).build();
    /// let mut s = store.new_session(None, None).await?;
    /// // What a Perl page stores: `$s->param(visits => '7'); $s->param(nick => undef);`
    /// s.set_value("visits", json!("7"))?;
    /// s.set_value("nick", json!(null))?;
    /// assert!(s.get::<i64>("visits").is_err(), "strict: a string is not an i64");
    /// assert_eq!(s.get_perl::<i64>("visits")?, Some(7));
    /// assert_eq!(s.get_perl::<String>("nick")?, None);
    /// # Ok::<(), cgi_session_core::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::ParamType`] when the stored value is not a `T` even with Perl's rules.
    pub fn get_perl<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Error> {
        match self.record.params.get(name) {
            None => Ok(None),
            Some(v) => crate::perl_scalar::read(v).map_err(|source| Error::ParamType {
                name: name.to_owned(),
                source,
            }),
        }
    }

    /// A parameter as a raw JSON-model value.
    pub fn get_value(&self, name: &str) -> Option<&Value> {
        self.record.params.get(name)
    }

    /// Sets a parameter (CGI::Session's `param($name, $value)`). Setting a value equal to the
    /// current one is not a change.
    ///
    /// # Errors
    /// [`Error::ReservedName`] for names starting with `_SESSION_`; [`Error::Encode`] when
    /// `value` cannot be represented.
    pub fn set<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), Error> {
        let value = serde_json::to_value(value).map_err(|e| {
            Error::Encode(SerializeError::Syntax {
                format: "json",
                message: e.to_string(),
            })
        })?;
        self.set_value(name, value)
    }

    /// Sets a parameter from a raw value.
    ///
    /// # Errors
    /// [`Error::ReservedName`] for names starting with `_SESSION_`.
    pub fn set_value(&mut self, name: &str, value: Value) -> Result<(), Error> {
        if record::is_reserved(name) {
            return Err(Error::ReservedName(name.to_owned()));
        }
        if self.record.params.get(name) == Some(&value) {
            return Ok(());
        }
        self.record.params.set(name, value);
        self.changes.removed.remove(name);
        if !self.changes.set.contains(name) {
            self.changes.set.insert(name.to_owned());
        }
        Ok(())
    }

    /// Removes a parameter, returning its value (CGI::Session's `clear($name)`).
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let old = self.record.params.remove(name)?;
        self.changes.set.remove(name);
        self.changes.removed.insert(name.to_owned());
        Some(old)
    }

    /// Removes every parameter (CGI::Session's `clear()`).
    pub fn clear(&mut self) {
        let names: Vec<String> = self.record.params.keys().map(str::to_owned).collect();
        for name in names {
            let _ = self.remove(&name);
        }
    }

    /// Removes the listed parameters (CGI::Session's `clear([names])`).
    pub fn clear_names<I, S>(&mut self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for name in names {
            let _ = self.remove(name.as_ref());
        }
    }

    /// The parameter names (CGI::Session's `param()`), sorted.
    pub fn names(&self) -> Vec<&str> {
        self.record.params.keys().collect()
    }

    /// All parameters (CGI::Session's `param_hashref`, read-only).
    pub fn params(&self) -> &Params {
        &self.record.params
    }

    /// Copies query parameters into the session (CGI::Session's `save_param`): a parameter
    /// with one value is stored as a string, several as an array. With `only`, just those
    /// names are copied.
    ///
    /// # Errors
    /// [`Error::ReservedName`] for names starting with `_SESSION_`.
    pub fn save_params<'a, I>(&mut self, query: I, only: Option<&[&str]>) -> Result<(), Error>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut grouped: Map<String, Value> = Map::new();
        for (name, value) in query {
            if only.is_some_and(|o| !o.contains(&name)) {
                continue;
            }
            match grouped.get_mut(name) {
                None => {
                    grouped.insert(name.to_owned(), Value::from(value));
                }
                Some(Value::Array(values)) => values.push(Value::from(value)),
                Some(single) => {
                    let first = single.take();
                    *single = Value::Array(vec![first, Value::from(value)]);
                }
            }
        }
        for (name, value) in grouped {
            self.set_value(&name, value)?;
        }
        Ok(())
    }

    // ----- expiry --------------------------------------------------------------------------

    /// The idle timeout in seconds (CGI::Session's `expire()`), `None` when there is none.
    pub fn expire(&self) -> Option<i64> {
        self.record.etime
    }

    /// Sets the idle timeout in seconds (CGI::Session's `expire($secs)`); 0 cancels it, a
    /// negative value expires the session at its next load.
    pub fn set_expire(&mut self, secs: i64) {
        let new = (secs != 0).then_some(secs);
        if new != self.record.etime {
            self.record.etime = new;
            self.changes.etime = true;
        }
    }

    /// Sets the idle timeout from CGI::Session's syntax (`"+10m"`, `"2h"`, `"-10s"`...).
    ///
    /// # Errors
    /// [`Error::Expire`] for a malformed time string.
    pub fn set_expire_str(&mut self, time: &str) -> Result<(), Error> {
        self.set_expire(parse_expire(time)?);
        Ok(())
    }

    /// The idle timeout as a [`Duration`]; `None` when there is none or it is negative (the
    /// session expires at its next load).
    pub fn idle_timeout(&self) -> Option<Duration> {
        let secs = u64::try_from(self.record.etime?).ok()?;
        Some(Duration::from_secs(secs))
    }

    /// Sets the idle timeout ([`Session::set_expire`] with a [`Duration`], rounded up to whole
    /// seconds); [`Duration::ZERO`] cancels it.
    pub fn set_idle_timeout(&mut self, timeout: Duration) {
        self.set_expire(expire::duration_secs(timeout));
    }

    /// The absolute expiry: when the session ends however active it is; `None` when it has
    /// none.
    pub fn absolute_expiry(&self) -> Option<SystemTime> {
        self.record.absolute_expiry().map(expire::system_time)
    }

    /// When the session expires if it is not used again: the earlier of its idle expiry
    /// (counted from now, its last access) and its absolute expiry; `None` when neither.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.record.expires_at(None).map(expire::system_time)
    }

    /// Makes the session end at `at` (whole seconds) however active it is, on top of its idle
    /// timeout (whichever comes first). Stored in the session, so every process honours it;
    /// the store's item lifetime (memcached's TTL) never outlasts it, and the cookie carries
    /// `Expires` = `at` (unless it is a browser-session cookie).
    pub fn set_expires_at(&mut self, at: SystemTime) {
        self.set_absolute(Some(expire::unix_secs(at)));
    }

    /// Removes the absolute expiry.
    pub fn clear_expires_at(&mut self) {
        self.set_absolute(None);
    }

    /// Whether the cookie is a browser-session cookie (no `Max-Age`, no `Expires`).
    pub fn is_browser_session_cookie(&self) -> bool {
        self.record.browser_session_cookie()
    }

    /// Sends the cookie as a browser-session cookie (`true`: no `Max-Age` or `Expires`, the
    /// browser drops it when it closes) or a persistent one (`false`). The stored session
    /// still expires by its idle timeout and absolute expiry.
    pub fn set_browser_session_cookie(&mut self, on: bool) {
        if self.record.browser_session_cookie() != on {
            self.record.set_browser_session_cookie(on);
            self.changes
                .extra
                .insert(record::KEY_BROWSER_COOKIE.to_owned());
        }
    }

    /// Sets how the session expires, typed (see [`Expiry`] for what each kind does to the
    /// idle timeout, the absolute expiry and the cookie).
    pub fn set_expiry(&mut self, expiry: Expiry) {
        match expiry {
            Expiry::OnInactivity(timeout) => {
                self.set_idle_timeout(timeout);
                self.clear_expires_at();
                self.set_browser_session_cookie(false);
            }
            Expiry::AtDateTime(at) => {
                self.set_expire(0);
                self.set_expires_at(at);
                self.set_browser_session_cookie(false);
            }
            Expiry::OnSessionEnd => {
                if self.record.etime.is_none() {
                    if let Some(default) = self.store.default_expire {
                        self.set_expire(default);
                    }
                }
                self.clear_expires_at();
                self.set_browser_session_cookie(true);
            }
        }
    }

    /// Whether this request changed what the cookie carries besides the id (the idle timeout,
    /// the absolute expiry or the cookie kind) since the session was loaded or last flushed:
    /// an adapter then sends the cookie again. Read it before [`Session::flush`], which
    /// resets it.
    pub fn cookie_lifetime_changed(&self) -> bool {
        self.changes.etime || !self.changes.extra.is_empty()
    }

    fn set_absolute(&mut self, unix: Option<i64>) {
        if self.record.absolute_expiry() != unix {
            self.record.set_absolute_expiry(unix);
            self.changes.extra.insert(record::KEY_EXPIRES_AT.to_owned());
        }
    }

    /// A parameter's own idle timeout in seconds (CGI::Session's `expire($name)`).
    pub fn param_expire(&self, name: &str) -> Option<i64> {
        self.record.expire_list.as_ref()?.get(name).copied()
    }

    /// Gives a parameter its own idle timeout in seconds (CGI::Session's
    /// `expire($name, $secs)`): once that long passes without access, the parameter is
    /// removed when the session is loaded. 0 removes the timeout.
    pub fn set_param_expire(&mut self, name: &str, secs: i64) {
        let list = self.record.expire_list.get_or_insert_with(Default::default);
        let changed = if secs == 0 {
            list.remove(name).is_some()
        } else {
            list.insert(name.to_owned(), secs) != Some(secs)
        };
        if changed {
            self.changes.expire_list.insert(name.to_owned());
        }
    }

    /// [`Session::set_param_expire`] with CGI::Session's time syntax.
    ///
    /// # Errors
    /// [`Error::Expire`] for a malformed time string.
    pub fn set_param_expire_str(&mut self, name: &str, time: &str) -> Result<(), Error> {
        self.set_param_expire(name, parse_expire(time)?);
        Ok(())
    }

    // ----- lifecycle -----------------------------------------------------------------------

    /// Marks the session for deletion (CGI::Session's `delete`); the stored session is removed
    /// by the next [`Session::flush`].
    pub fn delete(&mut self) {
        self.deleted = true;
    }

    /// Forgets this request's unsaved changes (no warning on drop).
    pub fn discard(&mut self) {
        self.changes = Changes::default();
        self.is_new = false;
        self.deleted = false;
    }

    /// Whether dropping the session now would lose something.
    pub fn needs_flush(&self) -> bool {
        self.id.is_some() && (self.is_new || self.changes.any() || (self.deleted && self.stored))
    }

    /// Saves the session (CGI::Session's `flush`): a new or changed session is written, a
    /// deleted one removed; an untouched session costs nothing.
    ///
    /// Only what this request changed is written: concurrent saves of the session in this
    /// process are combined into one write (each request's changed parameters applied in
    /// order); a session changed meanwhile by another process is handled by the store's
    /// [`ConflictPolicy`](crate::ConflictPolicy) (by default its changes are kept and this
    /// request's re-applied). For one parameter set by two requests the last write wins: to
    /// change a value from its old value, use [`Session::update`].
    ///
    /// After a successful flush the session holds the copy that was written (with the
    /// changes of the other requests saved with it).
    ///
    /// # Errors
    /// [`Error::Driver`] when the store fails; [`Error::Gone`] when the session was deleted or
    /// expired meanwhile (it is not brought back); [`Error::Contended`] when other processes
    /// kept writing it past the save deadline; [`Error::Conflict`] under
    /// [`ConflictPolicy::Error`](crate::ConflictPolicy::Error); [`Error::NoId`] when changes
    /// were made to an empty session.
    pub async fn flush(&mut self) -> Result<(), Error> {
        crate::instrument::flush(self).await
    }

    /// Atomic read-modify-write: runs `change` on the freshest stored copy of the session and
    /// writes the result at once, re-running `change` on a fresh copy if another process wrote
    /// the session in between (until the store's save deadline). This request's unsaved
    /// changes are written with it. Use it whenever a value is computed from its old value
    /// (counters, lists, balances): concurrent requests of one session then never lose an
    /// update.
    ///
    /// Concurrent updates and saves of the session in this process are applied in order to one
    /// copy and written together (a group commit): many requests, one write.
    ///
    /// `change` may run more than once and must not wait; it gets a working copy of the
    /// session (call `get`, `set`, `remove`, `set_expire`, `delete`... on it, not `flush`).
    /// If it returns an error, its changes are dropped and this request's unsaved changes
    /// stay unsaved. Afterwards this session holds the copy that was written.
    ///
    /// A session created by this request and not yet stored has no other writer: `change`
    /// runs on it directly and the session is created by the next flush.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cgi_session_core::{MemoryDriver, SessionStore};
    ///
    /// let store = SessionStore::builder(MemoryDriver::new()).build();
    /// let mut first = store.new_session(None, None).await.unwrap();
    /// first.flush().await.unwrap();
    /// let id = first.id().unwrap().as_str().to_owned();
    ///
    /// // Two requests loaded the session at the same time; both count a visit.
    /// let mut a = store.new_session(Some(&id), None).await.unwrap();
    /// let mut b = store.new_session(Some(&id), None).await.unwrap();
    /// for s in [&mut a, &mut b] {
    ///     s.update(|s| {
    ///         let n = s.get::<u64>("visits")?.unwrap_or(0) + 1;
    ///         s.set("visits", &n)
    ///     })
    ///     .await
    ///     .unwrap();
    /// }
    /// assert_eq!(b.get::<u64>("visits").unwrap(), Some(2));
    /// # });
    /// ```
    ///
    /// # Errors
    /// What `change` returns; [`Error::Gone`] when the session was deleted meanwhile;
    /// [`Error::Contended`] past the save deadline; [`Error::NoId`] on an empty session;
    /// store errors.
    pub async fn update<R, F>(&mut self, change: F) -> Result<R, Error>
    where
        F: FnMut(&mut Session) -> Result<R, Error> + Send + 'static,
        R: Send + 'static,
    {
        crate::instrument::update(self, change).await
    }

    /// Reloads the stored session, keeping this request's unsaved changes on top of it (used
    /// after taking the session lock, so that the request works on what the previous holder
    /// saved). A session that is not stored (new) is left as it is.
    ///
    /// # Errors
    /// Store errors; [`Error::Corrupt`] when the stored bytes do not decode.
    pub async fn reload(&mut self) -> Result<(), Error> {
        save::reload(self).await
    }

    /// Gives the session a new id, keeping its data, and removes the record under the old id
    /// (use it at login, against session fixation). Written at once.
    ///
    /// # Errors
    /// [`Error::NoId`] for an empty session; store and id generator errors.
    pub async fn regenerate_id(&mut self) -> Result<(), Error> {
        crate::instrument::regenerate_id(self).await
    }

    // ----- HTTP helpers --------------------------------------------------------------------

    /// The cookie to send (CGI::Session's `cookie()`): the id, `Path=/`, `HttpOnly`,
    /// `SameSite=Lax` (see [`CookieConfig`](crate::CookieConfig)), and its lifetime: `Max-Age`
    /// = the idle timeout, capped by the absolute expiry, which also sets `Expires`; neither
    /// for a browser-session cookie (see [`Expiry`]). A deleted session yields a removal
    /// cookie; an empty session none.
    pub fn cookie(&self) -> Option<cookie::Cookie<'static>> {
        crate::cookie::for_session(
            &self.store.cookie,
            self.id.as_ref(),
            self.deleted,
            crate::cookie::Lifetime::of(&self.record, self.store.clock.now()),
        )
    }

    /// The CGI header block (CGI::Session's `header()`): `Set-Cookie` when there is a cookie,
    /// then `Content-Type`, then the blank line ending the headers.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cgi_session_core::{MemoryDriver, SessionStore};
    ///
    /// let store = SessionStore::builder(MemoryDriver::new()).build();
    /// let mut s = store.new_session(None, None).await.unwrap();
    /// let header = s.header("text/html; charset=UTF-8");
    /// assert!(header.starts_with("Set-Cookie: CGISESSID="));
    /// assert!(header.ends_with("Content-Type: text/html; charset=UTF-8\r\n\r\n"));
    /// s.flush().await.unwrap();
    /// # });
    /// ```
    pub fn header(&self, content_type: &str) -> String {
        crate::cookie::cgi_header(self.cookie().as_ref(), content_type)
    }

    /// A readable dump of the session (CGI::Session's `dump`), with the id shortened.
    pub fn dump(&self) -> String {
        let mut map = self.record.to_map();
        if let Some(id) = &self.id {
            map.insert(record::KEY_ID.into(), Value::from(id.redacted()));
        } else {
            map.remove(record::KEY_ID);
        }
        serde_json::to_string_pretty(&Value::Object(map)).unwrap_or_default()
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("is_new", &self.is_new)
            .field("is_expired", &self.is_expired)
            .field("deleted", &self.deleted)
            .field("modified", &self.changes.any())
            .field("names", &self.names())
            .finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.detached && self.needs_flush() && !std::thread::panicking() {
            let id = self
                .id
                .as_ref()
                .map(SessionId::redacted)
                .unwrap_or_default();
            tracing::warn!(
                session = %id,
                "session dropped with unsaved changes: call `flush().await` before it goes out of scope"
            );
            if cfg!(debug_assertions) && std::env::var_os("CGI_SESSION_STRICT_DROP").is_some() {
                panic!(
                    "session {id} dropped with unsaved changes (CGI_SESSION_STRICT_DROP is set)"
                );
            }
        }
    }
}
