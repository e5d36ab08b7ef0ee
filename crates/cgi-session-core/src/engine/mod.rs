//! The session engine: what happens between a request and the store.
//!
//! This module holds the state: the store's shared state ([`Inner`]: its settings and the
//! in-process coordination of loads, saves and locks) and one request's session ([`Session`],
//! with what it changed: [`Changes`]). The protocol is in three files, in the order a request
//! meets it:
//!
//! * [`load`]: reading a session (strict ids, ip matching, idle and per-parameter expiry,
//!   lifetime refresh and access-time write-back);
//! * [`save`]: flushing it (create-with-retry of a new session, a changed one handed to the
//!   group commit, delete), `update`, `reload` and `regenerate_id`;
//! * [`merge`]: the group commit's batches: the queued changes applied in order to one copy,
//!   written with CAS, re-applied onto a fresh copy when another process wrote meanwhile, and
//!   the [`ConflictPolicy`](crate::ConflictPolicy) applied.
//!
//! Module dependencies: `save` uses `merge` and `load`; `merge` uses `load` (a fresh read)
//! and the per-id queues of `crate::commit`; all three use this module's types. The
//! user-facing methods of [`Session`] are in `crate::session`; `SessionStore` is in
//! `crate::store`.

use std::collections::BTreeSet;
use std::ops::Deref;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::commit::Committer;
use crate::config::{Config, ConflictPolicy};
use crate::driver::Version;
use crate::error::{Error, SerializeError};
use crate::id::SessionId;
use crate::lock::LocalLocks;
use crate::record::Record;
use crate::shared_read::SharedReads;
use crate::stats::StatCounters;

pub(crate) mod load;
pub(crate) mod merge;
pub(crate) mod save;
#[cfg(test)]
mod tests;

/// A store's shared state: its settings and this process's coordination of the requests.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) stats: StatCounters,
    /// The group commit's per-id queues.
    pub(crate) committer: Committer<Job, Carry>,
    /// Loads of one id in flight share a read.
    pub(crate) shared_reads: SharedReads,
    /// The in-process queues of session locks.
    pub(crate) local_locks: Arc<LocalLocks>,
    /// Set once the "ip matching without a client address" warning was logged.
    pub(crate) warned_no_client_addr: AtomicBool,
}

impl Inner {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            config,
            stats: StatCounters::default(),
            committer: Committer::default(),
            shared_reads: SharedReads::default(),
            local_locks: Arc::default(),
            warned_no_client_addr: AtomicBool::new(false),
        }
    }
}

/// The settings are read everywhere: `store.driver`, `store.clock`...
impl Deref for Inner {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.config
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
    pub(crate) store: Arc<Inner>,
    pub(crate) id: Option<SessionId>,
    pub(crate) record: Record,
    pub(crate) version: Option<Version>,
    /// Stored under `id` (loaded or flushed).
    pub(crate) stored: bool,
    pub(crate) is_new: bool,
    pub(crate) is_expired: bool,
    pub(crate) deleted: bool,
    /// The id was chosen by the client (`static` generator): never replaced on a collision.
    pub(crate) adopted: bool,
    pub(crate) changes: Changes,
    /// A working copy inside a group commit: never warns when dropped.
    pub(crate) detached: bool,
    /// When `record` was last known current: when the read that fetched it was sent, or when
    /// the write of it completed.
    pub(crate) synced_at: Instant,
}

impl Session {
    /// An empty session (no id): nothing usable was stored; `expired` when it had expired.
    pub(crate) fn empty(store: &Arc<Inner>, expired: bool) -> Self {
        let now = store.clock.now();
        Self::with_record(
            store,
            None,
            Record::new(String::new(), now, String::new()),
            expired,
        )
    }

    /// A new session under `id`, not stored yet (written by its first flush).
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
        if let Some(lifetime) = store.max_lifetime {
            record.set_absolute_expiry(Some(now.saturating_add(lifetime)));
        }
        record.set_browser_session_cookie(store.browser_session_cookies);
        let mut session = Self::with_record(store, Some(id), record, was_expired);
        session.is_new = true;
        session.adopted = adopted;
        session
    }

    /// A stored session, as read (`synced_at`: when the read was sent).
    pub(crate) fn loaded(
        store: &Arc<Inner>,
        id: SessionId,
        record: Record,
        version: Option<Version>,
        synced_at: Instant,
    ) -> Self {
        let mut session = Self::with_record(store, Some(id), record, false);
        session.version = version;
        session.stored = true;
        session.synced_at = synced_at;
        session
    }

    /// A working copy of a stored session inside a group commit (see [`merge`]).
    pub(crate) fn working(
        store: &Arc<Inner>,
        id: SessionId,
        record: Record,
        version: Option<Version>,
    ) -> Self {
        let mut session = Self::loaded(store, id, record, version, Instant::now());
        session.detached = true;
        session
    }

    fn with_record(
        store: &Arc<Inner>,
        id: Option<SessionId>,
        record: Record,
        is_expired: bool,
    ) -> Self {
        Self {
            store: Arc::clone(store),
            id,
            record,
            version: None,
            stored: false,
            is_new: false,
            is_expired,
            deleted: false,
            adopted: false,
            changes: Changes::default(),
            detached: false,
            synced_at: Instant::now(),
        }
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
    pub(crate) fn into_base(self) -> Option<Base> {
        self.id.as_ref()?;
        let (version, at) = (self.version, self.synced_at);
        Some(Base {
            record: self.into_record(),
            version,
            at,
        })
    }

    /// This session's copy, to start a batch from.
    pub(crate) fn base(&self) -> Base {
        Base {
            record: self.record.clone(),
            version: self.version,
            at: self.synced_at,
        }
    }

    pub(crate) fn encode(&mut self) -> Result<bytes::Bytes, Error> {
        self.record
            .encode(self.store.serializer.as_ref())
            .map_err(Error::Encode)
    }
}

/// Decodes the stored bytes of `id`, which must be a record of that id.
pub(crate) fn decode(store: &Inner, id: &SessionId, bytes: bytes::Bytes) -> Result<Record, Error> {
    let corrupt = |source| Error::Corrupt {
        id: id.clone(),
        source,
    };
    let record = Record::decode_bytes(store.serializer.as_ref(), bytes).map_err(corrupt)?;
    if record.id != id.as_str() {
        return Err(corrupt(SerializeError::NotARecord(
            "the stored _SESSION_ID does not match the id it is stored under".into(),
        )));
    }
    Ok(record)
}

/// What this request changed, so that a save can be merged onto a newer stored version.
#[derive(Debug, Default, Clone)]
pub(crate) struct Changes {
    pub(crate) set: BTreeSet<String>,
    pub(crate) removed: BTreeSet<String>,
    pub(crate) etime: bool,
    pub(crate) expire_list: BTreeSet<String>,
    /// Reserved keys kept in `record.extra` that changed (absolute expiry, cookie kind).
    pub(crate) extra: BTreeSet<String>,
    /// Write the access time back even though nothing else changed.
    pub(crate) atime: bool,
}

impl Changes {
    /// The changes as values taken from `record`, to re-apply onto a newer copy.
    pub(crate) fn delta(&self, record: &Record) -> Delta {
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
            extra: self
                .extra
                .iter()
                .map(|key| (key.clone(), record.extra.get(key).cloned()))
                .collect(),
        }
    }

    pub(crate) fn any(&self) -> bool {
        self.any_but_atime() || self.atime
    }

    /// Changes the application made (not only the access-time write-back).
    pub(crate) fn any_but_atime(&self) -> bool {
        !self.set.is_empty()
            || !self.removed.is_empty()
            || self.etime
            || !self.expire_list.is_empty()
            || !self.extra.is_empty()
    }
}

/// What one request changed: the new values of the parameters it set, the names it removed,
/// and its expiry changes. Applying it to a newer copy keeps everybody else's changes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Delta {
    pub(crate) set: Vec<(String, Value)>,
    pub(crate) removed: Vec<String>,
    pub(crate) etime: Option<Option<i64>>,
    pub(crate) expire_list: Vec<(String, Option<i64>)>,
    pub(crate) extra: Vec<(String, Option<Value>)>,
}

impl Delta {
    pub(crate) fn apply(&self, record: &mut Record) {
        for (name, value) in &self.set {
            record.params.set(name, value.clone());
        }
        for name in &self.removed {
            record.params.remove(name);
        }
        if let Some(etime) = self.etime {
            record.etime = etime;
        }
        for (name, secs) in &self.expire_list {
            let list = record.expire_list.get_or_insert_with(Default::default);
            match secs {
                Some(secs) => {
                    list.insert(name.clone(), *secs);
                }
                None => {
                    list.remove(name);
                }
            }
        }
        for (key, value) in &self.extra {
            match value {
                Some(v) => record.extra.insert(key.clone(), v.clone()),
                None => record.extra.remove(key),
            };
        }
    }
}

/// A copy of the stored session to start a batch from.
#[derive(Debug)]
pub(crate) struct Base {
    pub(crate) record: Record,
    pub(crate) version: Option<Version>,
    /// When this copy was known current: when its read was sent (it reflects every write
    /// completed before), or when its write completed. A read sent after this process's last
    /// write completed is at least as fresh as that write; one sent earlier may not be.
    pub(crate) at: Instant,
}

impl Base {
    pub(crate) fn duplicate(&self) -> Self {
        Self {
            record: self.record.clone(),
            version: self.version,
            at: self.at,
        }
    }
}

/// The copy a leader wrote last, carried to the id's next batch (see [`merge`]).
#[derive(Debug)]
pub(crate) enum Carry {
    /// A copy in memory (a batch whose saves all failed wrote nothing).
    Copy(Base),
    /// The bytes just written: most batches start from a copy a request loaded later, so
    /// these are decoded only when a batch starts from them.
    Written {
        bytes: bytes::Bytes,
        version: Option<Version>,
        at: Instant,
    },
}

/// What a committed save hands back: the session as written, and its new version.
#[derive(Debug)]
pub(crate) struct Committed {
    pub(crate) record: Arc<Record>,
    pub(crate) version: Option<Version>,
}

/// An update closure, type-erased (its result is kept by the closure itself).
pub(crate) type Apply = Box<dyn FnMut(&mut Session) -> Result<(), Error> + Send>;

/// One queued save.
pub(crate) struct Job {
    pub(crate) delta: Option<Delta>,
    pub(crate) apply: Option<Apply>,
    pub(crate) policy: ConflictPolicy,
    /// The copy the request loaded (none for `SessionStore::update`).
    pub(crate) base: Option<Base>,
    pub(crate) enqueued: Instant,
    pub(crate) reply: Option<oneshot::Sender<Result<Committed, Error>>>,
}

impl Job {
    pub(crate) fn new(
        delta: Option<Delta>,
        apply: Option<Apply>,
        policy: ConflictPolicy,
        base: Option<Base>,
    ) -> Self {
        Self {
            delta,
            apply,
            policy,
            base,
            enqueued: Instant::now(),
            reply: None,
        }
    }

    /// Whether the write must be conditional for this job: update closures always (they read
    /// what they change), changes under `LastWriteWins` never.
    pub(crate) fn needs_cas(&self) -> bool {
        self.apply.is_some() || self.policy != ConflictPolicy::LastWriteWins
    }

    pub(crate) fn answer(&mut self, result: Result<Committed, Error>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(result);
        }
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("delta", &self.delta.is_some())
            .field("apply", &self.apply.is_some())
            .finish_non_exhaustive()
    }
}
