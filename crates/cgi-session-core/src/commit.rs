//! Group commit: the saves of one session id within this process are combined.
//!
//! A browser sends several requests with one cookie at once. If each request wrote its own
//! copy of the session with a conditional (CAS) write, all but one would be refused, reload,
//! and race again: under load most writes are refused and the retries pile up. Instead, every
//! save of a session id goes through this module's queue for that id:
//!
//! * the first save of an id starts a *leader* task (a tokio task, so that a request that is
//!   cancelled cannot strand the others) that takes everything queued for the id;
//! * the leader applies the queued changes in order to one copy of the session (the last copy
//!   it wrote, or the copy the first request loaded, or a fresh read), each request's changed
//!   parameters ([`Delta`]) and update closures alike, and writes the result once, with CAS;
//! * saves that arrive meanwhile queue up and form the next batch, which starts from the copy
//!   just written (no read), so a hot session costs one write per batch, not per request;
//! * a CAS write refused because *another process* wrote the session re-reads it, re-applies
//!   every change (closures run again on the fresh copy) and writes again, backing off with
//!   random jitter, until the store's save deadline ([`Error::Contended`] after it).
//!
//! Nothing here is shared between processes; across processes, CAS keeps updates safe.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::driver::{StoreMode, StoreOutcome, Version};
use crate::error::{DriverError, Error};
use crate::id::SessionId;
use crate::record::Record;
use crate::session::Session;
use crate::store::{ConflictPolicy, Inner};

/// An update closure, type-erased (its result is kept by the closure itself).
pub(crate) type Apply = Box<dyn FnMut(&mut Session) -> Result<(), Error> + Send>;

/// What one request changed: the new values of the parameters it set, the names it removed,
/// and its expiry changes. Applying it to a newer copy keeps everybody else's changes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Delta {
    pub(crate) set: Vec<(String, Value)>,
    pub(crate) removed: Vec<String>,
    pub(crate) etime: Option<Option<i64>>,
    pub(crate) expire_list: Vec<(String, Option<i64>)>,
}

impl Delta {
    pub(crate) fn apply(&self, record: &mut Record) {
        for (name, value) in &self.set {
            record.params.insert(name.clone(), value.clone());
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
    fn duplicate(&self) -> Self {
        Self {
            record: self.record.clone(),
            version: self.version,
            at: self.at,
        }
    }
}

/// What a committed save hands back: the session as written, and its new version.
#[derive(Debug)]
pub(crate) struct Committed {
    pub(crate) record: Arc<Record>,
    pub(crate) version: Option<Version>,
}

/// One queued save.
pub(crate) struct Job {
    pub(crate) delta: Option<Delta>,
    pub(crate) apply: Option<Apply>,
    pub(crate) policy: ConflictPolicy,
    pub(crate) base: Option<Base>,
    pub(crate) enqueued: Instant,
    reply: Option<oneshot::Sender<Result<Committed, Error>>>,
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
    fn needs_cas(&self) -> bool {
        self.apply.is_some() || self.policy != ConflictPolicy::LastWriteWins
    }

    fn answer(&mut self, result: Result<Committed, Error>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(result);
        }
    }
}

/// How long the copy a leader wrote last is kept for the next batch of the same id, once its
/// queue ran empty. A request that loaded the session before that write would otherwise start
/// the next batch from an older copy, and its write would be refused (a wasted round trip).
const KEEP_LAST_WRITTEN: Duration = Duration::from_secs(1);

/// One id's queue.
#[derive(Debug, Default)]
struct Slot {
    /// Saves waiting for the leader.
    jobs: Vec<Job>,
    /// Whether a leader runs for the id.
    leading: bool,
    /// The copy the last leader wrote, and when it stopped.
    last: Option<(Base, Instant)>,
}

/// The per-id queues of this process.
#[derive(Debug, Default)]
pub(crate) struct Committer {
    state: Mutex<Queues>,
}

#[derive(Debug, Default)]
struct Queues {
    slots: HashMap<SessionId, Slot>,
    last_sweep: Option<Instant>,
}

impl Queues {
    /// Forgets idle ids whose last copy is too old to use (at most once a second).
    fn sweep(&mut self, now: Instant) {
        if self.last_sweep.is_some_and(|t| now - t < KEEP_LAST_WRITTEN) {
            return;
        }
        self.last_sweep = Some(now);
        self.slots.retain(|_, slot| {
            slot.leading
                || slot
                    .last
                    .as_ref()
                    .is_some_and(|(_, at)| now - *at < KEEP_LAST_WRITTEN)
        });
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

impl Committer {
    fn queues(&self) -> MutexGuard<'_, Queues> {
        // A panic while the map was locked cannot leave it inconsistent (single inserts,
        // removes and takes): keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets the copy kept for `id` (the session was removed or moved).
    pub(crate) fn forget(&self, id: &SessionId) {
        let mut queues = self.queues();
        if let Some(slot) = queues.slots.get_mut(id) {
            slot.last = None;
            if !slot.leading {
                queues.slots.remove(id);
            }
        }
    }
}

/// Queues `job` for `id` and waits for the batch that carries it to be written.
pub(crate) async fn submit(
    inner: &Arc<Inner>,
    id: &SessionId,
    mut job: Job,
) -> Result<Committed, Error> {
    let (tx, rx) = oneshot::channel();
    job.reply = Some(tx);
    let lead = {
        let mut queues = inner.committer.queues();
        let slot = queues.slots.entry(id.clone()).or_default();
        slot.jobs.push(job);
        if slot.leading {
            None
        } else {
            slot.leading = true;
            let now = Instant::now();
            Some(
                slot.last
                    .take()
                    .filter(|(_, at)| now - *at < KEEP_LAST_WRITTEN)
                    .map(|(base, _)| base),
            )
        }
    };
    if let Some(carry) = lead {
        tokio::spawn(lead_saves(Arc::clone(inner), id.clone(), carry));
    }
    rx.await.map_err(|_| {
        Error::Driver(DriverError::Backend {
            driver: inner.driver.name(),
            source: "the task saving this session ended without an answer (is the runtime shutting down?)".into(),
        })
    })?
}

/// Removes the id's queue if the leader stops abnormally, so that the next save starts a new
/// leader instead of queueing forever (waiting saves then fail: their senders are dropped).
struct LeaderGuard {
    inner: Arc<Inner>,
    id: SessionId,
    done: bool,
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        if !self.done {
            self.inner.committer.queues().slots.remove(&self.id);
        }
    }
}

/// The leader: takes and writes batches until the id's queue is empty.
async fn lead_saves(inner: Arc<Inner>, id: SessionId, mut carry: Option<Base>) {
    let mut guard = LeaderGuard {
        inner: Arc::clone(&inner),
        id: id.clone(),
        done: false,
    };
    loop {
        let jobs = {
            let mut queues = inner.committer.queues();
            let now = Instant::now();
            match queues.slots.get_mut(&id) {
                Some(slot) if !slot.jobs.is_empty() => std::mem::take(&mut slot.jobs),
                Some(slot) => {
                    slot.leading = false;
                    slot.last = carry.take().map(|base| (base, now));
                    if slot.last.is_none() {
                        queues.slots.remove(&id);
                    }
                    queues.sweep(now);
                    guard.done = true;
                    return;
                }
                None => {
                    guard.done = true;
                    return;
                }
            }
        };
        carry = write_batch(&inner, &id, jobs, carry).await;
    }
}

/// Applies `jobs` in order to one copy of the session and writes it; answers every job.
/// Returns the copy written, for the next batch.
async fn write_batch(
    inner: &Arc<Inner>,
    id: &SessionId,
    mut jobs: Vec<Job>,
    carry: Option<Base>,
) -> Option<Base> {
    let started = jobs
        .iter()
        .map(|j| j.enqueued)
        .min()
        .unwrap_or_else(Instant::now);
    let deadline = started + inner.save_deadline;
    // Start from the freshest copy at hand: the one this process wrote last, or one a request
    // read later (e.g. under the session lock, after another process wrote); else a fresh
    // read. (Requests keep their own copies: `LastWriteWins` and `Error` saves need them.)
    let newest_loaded = jobs
        .iter()
        .filter_map(|j| j.base.as_ref())
        .max_by_key(|b| b.at);
    let mut base = match (carry, newest_loaded) {
        (Some(c), Some(b)) if b.at > c.at => Some(b.duplicate()),
        (Some(c), _) => Some(c),
        (None, b) => b.map(Base::duplicate),
    };
    let mut attempts = 0u32;
    let stats = &inner.stats;
    loop {
        let Base {
            record, version, ..
        } = match base.take() {
            Some(b) => b,
            None => match read_fresh(inner, id).await {
                Ok(Some(b)) => b,
                Ok(None) => {
                    fail_all(&mut jobs, &Error::Gone { id: id.clone() });
                    return None;
                }
                Err(e) => {
                    fail_all(&mut jobs, &e);
                    return None;
                }
            },
        };
        let mut work = Session::working(inner, id.clone(), record, version);
        // Apply every change in order; a closure that fails (or panics) is answered at once
        // with its error and its changes are rolled back; the others go on.
        let mut deleted_by: Option<usize> = None;
        let mut changed = false;
        let mut i = 0;
        while i < jobs.len() {
            if deleted_by.is_some() {
                break;
            }
            let job = &mut jobs[i];
            let Some(apply) = job.apply.as_mut() else {
                match job.policy {
                    // The request's own copy replaces the session (CGI::Session's way).
                    ConflictPolicy::LastWriteWins => {
                        if let Some(own) = &job.base {
                            *work.record_mut() = own.record.clone();
                        }
                        if let Some(delta) = &job.delta {
                            delta.apply(work.record_mut());
                        }
                    }
                    // Only onto the very copy the request loaded.
                    ConflictPolicy::Error
                        if changed || job.base.as_ref().map(|b| b.version) != Some(version) =>
                    {
                        let mut refused = jobs.remove(i);
                        refused.answer(Err(Error::Conflict {
                            id: id.clone(),
                            attempts: 1,
                        }));
                        continue;
                    }
                    _ => {
                        if let Some(delta) = &job.delta {
                            delta.apply(work.record_mut());
                        }
                    }
                }
                changed = true;
                i += 1;
                continue;
            };
            let snapshot = work.record_mut().clone();
            if let Some(delta) = &job.delta {
                delta.apply(work.record_mut());
            }
            let outcome = match catch_unwind(AssertUnwindSafe(|| apply(&mut work))) {
                Ok(result) => result,
                Err(_) => Err(Error::Driver(DriverError::Backend {
                    driver: "session",
                    source: "the session update closure panicked; its changes were dropped".into(),
                })),
            };
            match outcome {
                Ok(()) => {
                    if work.is_deleted() {
                        deleted_by = Some(i);
                    }
                    changed = true;
                    i += 1;
                }
                Err(e) => {
                    *work.record_mut() = snapshot;
                    work.undelete();
                    let mut failed = jobs.remove(i);
                    failed.answer(Err(e));
                }
            }
        }
        if let Some(at) = deleted_by {
            // A closure deleted the session: later changes in this batch find it gone.
            for job in jobs.iter_mut().skip(at + 1) {
                job.answer(Err(Error::Gone { id: id.clone() }));
            }
            jobs.truncate(at + 1);
            let removed = inner.driver.remove(id).await;
            let record = Arc::new(work.into_record());
            for job in &mut jobs {
                job.answer(match &removed {
                    Ok(_) => Ok(Committed {
                        record: Arc::clone(&record),
                        version: None,
                    }),
                    Err(e) => Err(Error::Driver(e.replicate())),
                });
            }
            return None;
        }
        if jobs.is_empty() {
            let version = work.version();
            return Some(Base {
                record: work.into_record(),
                version,
                at: Instant::now(),
            });
        }
        work.record_mut().atime = inner.clock.now();
        let ttl = inner.ttl_for(work.record_mut().etime);
        let bytes = match work.encode() {
            Ok(b) => b,
            Err(e) => {
                fail_all(&mut jobs, &e);
                return None;
            }
        };
        let expected = if jobs.iter().any(Job::needs_cas) {
            version
        } else {
            None
        };
        attempts += 1;
        stats.writes.fetch_add(1, Ordering::Relaxed);
        let outcome = inner
            .driver
            .store(id, &bytes, StoreMode::Replace { expected }, ttl)
            .await;
        match outcome {
            Ok(StoreOutcome::Stored(version)) => {
                stats.saves.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                let record = work.into_record();
                let shared = Arc::new(record.clone());
                for job in &mut jobs {
                    job.answer(Ok(Committed {
                        record: Arc::clone(&shared),
                        version,
                    }));
                }
                return Some(Base {
                    record,
                    version,
                    at: Instant::now(),
                });
            }
            Ok(StoreOutcome::NotFound | StoreOutcome::Exists) => {
                fail_all(&mut jobs, &Error::Gone { id: id.clone() });
                return None;
            }
            Ok(StoreOutcome::Conflict) => {
                stats.conflicts.fetch_add(1, Ordering::Relaxed);
                // `ConflictPolicy::Error`: those saves fail at once; the others are
                // re-applied to a fresh copy.
                let attempts_now = attempts;
                jobs.retain_mut(|job| {
                    if job.apply.is_none() && job.policy == ConflictPolicy::Error {
                        job.answer(Err(Error::Conflict {
                            id: id.clone(),
                            attempts: attempts_now,
                        }));
                        false
                    } else {
                        true
                    }
                });
                if jobs.is_empty() {
                    return None;
                }
                let now = Instant::now();
                if now >= deadline {
                    stats
                        .contended
                        .fetch_add(jobs.len() as u64, Ordering::Relaxed);
                    tracing::warn!(
                        session = %id,
                        attempts,
                        waited_ms = (now - started).as_millis() as u64,
                        saves = jobs.len(),
                        "session save gave up: other processes kept writing this session until the save deadline"
                    );
                    fail_all(
                        &mut jobs,
                        &Error::Contended {
                            id: id.clone(),
                            attempts,
                            waited: now - started,
                        },
                    );
                    return None;
                }
                let pause = jitter(attempts).min(deadline - now);
                tokio::time::sleep(pause).await;
            }
            Err(e) => {
                fail_all(&mut jobs, &Error::Driver(e));
                return None;
            }
        }
    }
}

/// Reads the stored session for a batch (as `SessionStore::update` would: expired sessions
/// and parameters are handled as on any load).
async fn read_fresh(inner: &Arc<Inner>, id: &SessionId) -> Result<Option<Base>, Error> {
    let session = Session::load_for_update(inner, id).await?;
    Ok(session.into_base())
}

fn fail_all(jobs: &mut [Job], e: &Error) {
    for job in jobs {
        job.answer(Err(e.replicate()));
    }
}

/// A random pause before retry number `attempt` (1-based): "full jitter" over an exponential
/// range from 1 ms up to 64 ms, so that racing processes spread out instead of colliding again.
pub(crate) fn jitter(attempt: u32) -> Duration {
    let cap_us: u64 = 1_000u64 << attempt.saturating_sub(1).min(6);
    let r = getrandom::u64().unwrap_or(cap_us / 2);
    Duration::from_micros(r % (cap_us + 1))
}
