//! [`Session`]: one request's view of a session.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::commit::{self, Base, Committed, Delta, Job};
use crate::driver::{StoreMode, StoreOutcome, Version};
use crate::error::{DriverError, Error, SerializeError};
use crate::expire::parse_expire;
use crate::id::SessionId;
use crate::record::{self, Record};
use crate::store::{capture, take_result, Inner};

/// Why a session is being loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Load,
    New,
    Update,
    /// `find`: read-only, no ip check, no lifetime refresh.
    Find,
}

/// What this request changed, so that a save can be merged onto a newer stored version.
#[derive(Debug, Default, Clone)]
struct Changes {
    set: BTreeSet<String>,
    removed: BTreeSet<String>,
    etime: bool,
    expire_list: BTreeSet<String>,
    /// Write the access time back even though nothing else changed.
    atime: bool,
}

impl Changes {
    /// The changes as values taken from `record`, to re-apply onto a newer copy.
    fn delta(&self, record: &Record) -> Delta {
        Delta {
            set: self
                .set
                .iter()
                .filter_map(|name| Some((name.clone(), record.params.get(name)?.clone())))
                .collect(),
            removed: self.removed.iter().cloned().collect(),
            etime: self.etime.then_some(record.etime),
            expire_list: self
                .expire_list
                .iter()
                .map(|name| {
                    let secs = record
                        .expire_list
                        .as_ref()
                        .and_then(|l| l.get(name))
                        .copied();
                    (name.clone(), secs)
                })
                .collect(),
        }
    }
}

impl Changes {
    fn any(&self) -> bool {
        self.any_but_atime() || self.atime
    }

    /// Changes the application made (not only the access-time write-back).
    fn any_but_atime(&self) -> bool {
        !self.set.is_empty()
            || !self.removed.is_empty()
            || self.etime
            || !self.expire_list.is_empty()
    }
}

/// One request's view of a session: CGI::Session's object.
///
/// Get one from [`SessionStore::new_session`](crate::SessionStore::new_session) or
/// [`SessionStore::load`](crate::SessionStore::load); read and change parameters; then call
/// [`Session::flush`], which writes only if something changed.
///
/// Rust cannot run async code when a value is dropped, so there is no auto-flush on
/// destruction (CGI::Session's own documentation calls its auto-flush unreliable). Instead the
/// type is `#[must_use]`, and dropping a session with unsaved changes logs a warning (and, in
/// debug builds, panics in tests run with `CGI_SESSION_STRICT_DROP=1`).
///
/// `Debug` never prints the full id.
#[must_use = "a session's changes are only saved by `flush().await`"]
pub struct Session {
    store: Arc<Inner>,
    id: Option<SessionId>,
    record: Record,
    version: Option<Version>,
    /// Stored under `id` (loaded or flushed).
    stored: bool,
    is_new: bool,
    is_expired: bool,
    deleted: bool,
    /// The id was chosen by the client (`static` generator): never replaced on a collision.
    adopted: bool,
    changes: Changes,
    /// A working copy inside a group commit: never warns when dropped.
    detached: bool,
    /// When `record` was last known current: when the read that fetched it was sent, or when
    /// the write of it completed.
    synced_at: tokio::time::Instant,
}

impl Session {
    pub(crate) fn empty(store: &Arc<Inner>, expired: bool) -> Self {
        let now = store.clock.now();
        Self {
            store: Arc::clone(store),
            id: None,
            record: Record::new(String::new(), now, String::new()),
            version: None,
            stored: false,
            is_new: false,
            is_expired: expired,
            deleted: false,
            adopted: false,
            changes: Changes::default(),
            detached: false,
            synced_at: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn create(
        store: &Arc<Inner>,
        id: SessionId,
        adopted: bool,
        remote_addr: Option<&str>,
        was_expired: bool,
    ) -> Self {
        let now = store.clock.now();
        let mut record = Record::new(
            id.as_str().to_owned(),
            now,
            remote_addr.unwrap_or("").to_owned(),
        );
        record.etime = store.default_expire;
        Self {
            store: Arc::clone(store),
            id: Some(id),
            record,
            version: None,
            stored: false,
            is_new: true,
            is_expired: was_expired,
            deleted: false,
            adopted,
            changes: Changes::default(),
            detached: false,
            synced_at: tokio::time::Instant::now(),
        }
    }

    /// A working copy of a stored session inside a group commit (see `commit.rs`).
    pub(crate) fn working(
        store: &Arc<Inner>,
        id: SessionId,
        record: Record,
        version: Option<Version>,
    ) -> Self {
        Self {
            store: Arc::clone(store),
            id: Some(id),
            record,
            version,
            stored: true,
            is_new: false,
            is_expired: false,
            deleted: false,
            adopted: false,
            changes: Changes::default(),
            detached: true,
            synced_at: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn record_mut(&mut self) -> &mut Record {
        &mut self.record
    }

    pub(crate) fn version(&self) -> Option<Version> {
        self.version
    }

    pub(crate) fn undelete(&mut self) {
        self.deleted = false;
    }

    /// The record, leaving an empty one behind (the session is done with).
    pub(crate) fn into_record(mut self) -> Record {
        self.detached = true;
        std::mem::replace(
            &mut self.record,
            Record::new(String::new(), 0, String::new()),
        )
    }

    /// The stored copy this session was loaded as, for a group commit; `None` when empty.
    pub(crate) fn into_base(mut self) -> Option<Base> {
        self.id.as_ref()?;
        let version = self.version;
        self.detached = true;
        Some(Base {
            record: std::mem::replace(
                &mut self.record,
                Record::new(String::new(), 0, String::new()),
            ),
            version,
            at: self.synced_at,
        })
    }

    /// Loads `id` as `SessionStore::update` does (no ip check; expiry applied).
    pub(crate) async fn load_for_update(store: &Arc<Inner>, id: &SessionId) -> Result<Self, Error> {
        Self::load(store, Some(id.as_str()), None, Purpose::Update).await
    }

    pub(crate) async fn load(
        store: &Arc<Inner>,
        claimed: Option<&str>,
        remote_addr: Option<&str>,
        purpose: Purpose,
    ) -> Result<Self, Error> {
        let Some(raw) = claimed else {
            return Ok(Self::empty(store, false));
        };
        let id = match SessionId::parse(raw) {
            Ok(id) => id,
            Err(e) => {
                tracing::debug!(error = %e, "ignoring a malformed session id");
                return Ok(Self::empty(store, false));
            }
        };
        // Refresh the lifetime in the read itself where the driver does that (a guess: the
        // store's default timeout; corrected below once the session's own is known). A
        // driver that leaves lifetimes alone on reads is never asked to touch on a read:
        // an item another program wrote, perhaps undecodable here, keeps its lifetime.
        let touch = match purpose {
            Purpose::Find => None,
            _ if !store.driver.refreshes_on_load() => None,
            _ => store.ttl_for(store.default_expire),
        };
        // A copy reflects every write completed before its read was *sent*: that instant, not
        // the reply's, orders it against the copies this process wrote (see `commit.rs`).
        // Concurrent loads of the id share one read sent after they all began.
        let (found, read_sent) = crate::shared_read::load(store, &id, touch).await?;
        let Some(loaded) = found else {
            return Ok(Self::empty(store, false));
        };
        let record = decode(store, &id, &loaded.data)?;
        if purpose != Purpose::Find && store.ip_match {
            if let Some(addr) = remote_addr {
                if record.remote_addr != addr {
                    tracing::warn!(session = %id, "ip mismatch: issuing a fresh session and leaving the stored one alone");
                    return Ok(Self::empty(store, false));
                }
            }
        }
        let now = store.clock.now();
        let last_access = loaded
            .last_access
            .map_or(record.atime, |la| la.max(record.atime));
        if let Some(expires_at) = record.expires_at(loaded.last_access) {
            if expires_at <= now {
                store.committer.forget(&id);
                store.driver.remove(&id).await?;
                return Ok(Self::empty(store, true));
            }
        }
        let mut session = Self {
            store: Arc::clone(store),
            id: Some(id),
            record,
            version: loaded.version,
            stored: true,
            is_new: false,
            is_expired: false,
            deleted: false,
            adopted: false,
            changes: Changes::default(),
            detached: false,
            synced_at: read_sent,
        };
        // Per-parameter expiry, counted from the last access; the expire-list entry stays,
        // as in CGI::Session.
        let expired_params: Vec<String> = session
            .record
            .expire_list
            .iter()
            .flatten()
            .filter(|(name, secs)| {
                **secs != 0
                    && last_access.saturating_add(**secs) <= now
                    && session.record.params.contains_key(*name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired_params {
            session.record.params.remove(&name);
            session.changes.removed.insert(name);
        }
        if purpose != Purpose::Find {
            // Where reads refresh lifetimes, give the session the lifetime a write would give
            // it (its own timeout, or the driver's default lifetime when it has none), not
            // the store default the read guessed: a read never shortens a lifetime.
            let wanted = store.ttl_for(session.record.etime);
            if store.driver.refreshes_on_load() && wanted != touch {
                if let Some(id) = &session.id {
                    store.driver.touch(id, wanted).await?;
                }
            }
            // Reads do not rewrite the session, so the stored access time lags. Write it back
            // once half of the idle timeout has passed: a session that is only read still
            // slides (also for readers such as Perl's CGI::Session that only see the stored
            // `_SESSION_ATIME`), at the cost of one write per half timeout.
            if let Some(etime) = session.record.etime.filter(|e| *e > 0) {
                if now - session.record.atime >= (etime / 2).max(1) {
                    session.changes.atime = true;
                }
            }
            session.record.atime = now;
        }
        Ok(session)
    }

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
        match self.record.params.get(name) {
            None => Ok(None),
            Some(v) => T::deserialize(v)
                .map(Some)
                .map_err(|source| Error::ParamType {
                    name: name.to_owned(),
                    source,
                }),
        }
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
        self.record.params.insert(name.to_owned(), value);
        self.changes.removed.remove(name);
        self.changes.set.insert(name.to_owned());
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
        let names: Vec<String> = self.record.params.keys().cloned().collect();
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
        self.record.params.keys().map(String::as_str).collect()
    }

    /// All parameters (CGI::Session's `param_hashref`, read-only).
    pub fn params(&self) -> &Map<String, Value> {
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
        let Some(id) = self.id.clone() else {
            return if self.changes.any() {
                Err(Error::NoId)
            } else {
                Ok(())
            };
        };
        if self.deleted {
            if self.stored {
                self.store.committer.forget(&id);
                self.store.driver.remove(&id).await?;
                self.stored = false;
            }
            self.changes = Changes::default();
            self.is_new = false;
            return Ok(());
        }
        if self.is_new {
            return self.create_stored().await;
        }
        if !self.changes.any() {
            return Ok(());
        }
        let delta = self.changes.delta(&self.record);
        let only_atime = !self.changes.any_but_atime();
        match self.commit(id, Some(delta), None).await {
            // A session that no longer fits the store (its limit was lowered, or another
            // program grew it) still serves reads: skipping the access-time write-back costs
            // only the sliding of a stored timestamp, failing would fail every request.
            Err(Error::Driver(e @ DriverError::TooLarge { .. })) if only_atime => {
                tracing::warn!(error = %e, "access-time write-back skipped: the session is larger than the store accepts");
                self.changes = Changes::default();
                Ok(())
            }
            other => other,
        }
    }

    /// Hands this request's changes (and an update closure) to the group commit, starting
    /// from this session's copy, and takes the copy that was written.
    async fn commit(
        &mut self,
        id: SessionId,
        delta: Option<Delta>,
        apply: Option<commit::Apply>,
    ) -> Result<(), Error> {
        let base = Base {
            record: self.record.clone(),
            version: self.version,
            at: self.synced_at,
        };
        let job = Job::new(delta, apply, self.store.conflict, Some(base));
        match commit::submit(&self.store, &id, job).await {
            Ok(committed) => {
                self.adopt(committed);
                Ok(())
            }
            Err(Error::Gone { .. }) => Err(self.gone(id)),
            Err(e) => Err(e),
        }
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
    pub async fn update<R, F>(&mut self, mut change: F) -> Result<R, Error>
    where
        F: FnMut(&mut Session) -> Result<R, Error> + Send + 'static,
        R: Send + 'static,
    {
        let Some(id) = self.id.clone() else {
            return Err(Error::NoId);
        };
        if self.deleted {
            return Err(Error::Gone { id });
        }
        if self.is_new || !self.stored {
            let snapshot = self.record.clone();
            let changes = self.changes.clone();
            return match change(self) {
                Ok(r) => Ok(r),
                Err(e) => {
                    self.record = snapshot;
                    self.changes = changes;
                    Err(e)
                }
            };
        }
        let delta = self.changes.any().then(|| self.changes.delta(&self.record));
        let (apply, result) = capture(change);
        self.commit(id, delta, Some(apply)).await?;
        take_result(&result)
    }

    /// Reloads the stored session, keeping this request's unsaved changes on top of it (used
    /// after taking the session lock, so that the request works on what the previous holder
    /// saved). A session that is not stored (new) is left as it is.
    ///
    /// # Errors
    /// Store errors; [`Error::Corrupt`] when the stored bytes do not decode.
    pub async fn reload(&mut self) -> Result<(), Error> {
        let Some(id) = self.id.clone() else {
            return Ok(());
        };
        if !self.stored || self.is_new {
            return Ok(());
        }
        let fresh = Self::load_for_update(&self.store, &id).await?;
        let delta = self.changes.delta(&self.record);
        let Some(base) = fresh.into_base() else {
            // Deleted or expired meanwhile: nothing stored any more.
            self.stored = false;
            self.changes = Changes::default();
            self.is_expired = true;
            return Ok(());
        };
        self.record = base.record;
        self.version = base.version;
        self.synced_at = base.at;
        delta.apply(&mut self.record);
        Ok(())
    }

    /// Takes the copy a group commit wrote.
    fn adopt(&mut self, committed: Committed) {
        self.record = Arc::try_unwrap(committed.record).unwrap_or_else(|shared| (*shared).clone());
        self.version = committed.version;
        self.changes = Changes::default();
        self.synced_at = tokio::time::Instant::now();
    }

    fn gone(&mut self, id: SessionId) -> Error {
        self.stored = false;
        self.changes = Changes::default();
        Error::Gone { id }
    }

    /// Writes a new session (add-only). A generated id that is taken, or whose store server
    /// is down or hung ([`DriverError::is_unavailable`]: with several servers, another id
    /// most likely lands on another one), is replaced by a fresh id and the write tried
    /// again, up to `MAX_IDS` ids; failures that waited (a hung server's timeout) end the
    /// retries after `MAX_SLOW_FAILURES`, so a store that is down as a whole answers within
    /// about two timeouts. An id that was tried on a failing server is never used again (a
    /// write whose outcome is unknown may still land under it), even when every attempt
    /// fails. An adopted (client-chosen) id is never replaced.
    async fn create_stored(&mut self) -> Result<(), Error> {
        /// Ids tried at most: with one of three servers down, 16 ids all landing on it has
        /// a chance of 3^-16 (about 2e-8) per new session.
        const MAX_IDS: u32 = 16;
        /// Failures that took this long waited for a timeout rather than failing at once.
        const SLOW: std::time::Duration = std::time::Duration::from_millis(100);
        const MAX_SLOW_FAILURES: u32 = 2;
        let ttl = self.store.ttl_for(self.record.etime);
        let mut unavailable: Option<DriverError> = None;
        let mut slow_failures = 0;
        for attempt in 1..=MAX_IDS {
            let Some(id) = self.id.clone() else {
                return Err(Error::NoId);
            };
            let bytes = self.encode()?;
            let started = tokio::time::Instant::now();
            match self
                .store
                .driver
                .store(&id, &bytes, StoreMode::Create, ttl)
                .await
            {
                Ok(StoreOutcome::Stored(version)) => {
                    if attempt > 1 {
                        tracing::debug!(
                            session = %id,
                            attempts = attempt,
                            "new session created under another id"
                        );
                    }
                    self.version = version;
                    self.synced_at = tokio::time::Instant::now();
                    self.stored = true;
                    self.is_new = false;
                    self.changes = Changes::default();
                    return Ok(());
                }
                Ok(_) if self.adopted => {
                    return Err(Error::Conflict {
                        id,
                        attempts: attempt,
                    })
                }
                Ok(_) => {
                    tracing::warn!(session = %id, "generated id already in use; generating another");
                    self.fresh_id().await?;
                }
                Err(e) if e.is_unavailable() && !self.adopted => {
                    // Never reuse this id: a fresh one is taken before anything else can
                    // happen, even if this was the last attempt.
                    self.fresh_id().await?;
                    if e.is_outcome_unknown() || started.elapsed() >= SLOW {
                        slow_failures += 1;
                    }
                    tracing::debug!(
                        session = %id,
                        attempt,
                        error = %e,
                        "the store cannot take a new session under this id; trying another"
                    );
                    unavailable = Some(e);
                    if slow_failures >= MAX_SLOW_FAILURES {
                        break;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(match unavailable {
            Some(e) => Error::Driver(e),
            None => Error::IdCollision { attempts: MAX_IDS },
        })
    }

    /// Replaces this (new, unstored) session's id with a freshly generated one.
    async fn fresh_id(&mut self) -> Result<(), Error> {
        let fresh = self.store.generate_id().await?;
        self.record.id = fresh.as_str().to_owned();
        self.id = Some(fresh);
        Ok(())
    }

    /// Gives the session a new id, keeping its data, and removes the record under the old id
    /// (use it at login, against session fixation). Written at once.
    ///
    /// # Errors
    /// [`Error::NoId`] for an empty session; store and id generator errors.
    pub async fn regenerate_id(&mut self) -> Result<(), Error> {
        let Some(old) = self.id.clone() else {
            return Err(Error::NoId);
        };
        let new = self.store.generate_id().await?;
        self.record.id = new.as_str().to_owned();
        self.id = Some(new);
        self.adopted = false;
        if !self.stored {
            // Never written: nothing to move.
            return Ok(());
        }
        self.is_new = true;
        self.stored = false;
        self.record.atime = self.store.clock.now();
        self.create_stored().await?;
        self.store.committer.forget(&old);
        self.store.driver.remove(&old).await?;
        Ok(())
    }

    pub(crate) fn encode(&mut self) -> Result<Vec<u8>, Error> {
        self.record
            .encode(self.store.serializer.as_ref())
            .map_err(Error::Encode)
    }

    // ----- HTTP helpers --------------------------------------------------------------------

    /// The cookie to send (CGI::Session's `cookie()`): the id, `Path=/`, `HttpOnly`,
    /// `SameSite=Lax` (see [`CookieConfig`](crate::CookieConfig)), and `Max-Age` when the
    /// session has an idle timeout. A deleted session yields a removal cookie; an empty
    /// session none.
    pub fn cookie(&self) -> Option<cookie::Cookie<'static>> {
        crate::cookie::for_session(
            &self.store.cookie,
            self.id.as_ref(),
            self.deleted,
            self.record.etime,
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

fn decode(store: &Inner, id: &SessionId, bytes: &[u8]) -> Result<Record, Error> {
    let corrupt = |source| Error::Corrupt {
        id: id.clone(),
        source,
    };
    let record = Record::decode(store.serializer.as_ref(), bytes).map_err(corrupt)?;
    if record.id != id.as_str() {
        return Err(corrupt(SerializeError::NotARecord(
            "the stored _SESSION_ID does not match the id it is stored under".into(),
        )));
    }
    Ok(record)
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
