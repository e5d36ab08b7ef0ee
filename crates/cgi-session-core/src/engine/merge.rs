//! The group commit's batches: the saves of one session id queued in this process
//! (`crate::commit` keeps the queues) are applied in order to one copy and written once.
//!
//! A batch starts from the freshest copy at hand (the one this process wrote last, or one a
//! request loaded later, or a fresh read), applies each request's changed parameters
//! ([`Delta`](super::Delta)) and update closures in order, and writes the result with CAS. A write refused
//! because another process wrote meanwhile is retried on a fresh copy (every change
//! re-applied, closures run again), with jittered backoff, until the save deadline. The
//! [`ConflictPolicy`] decides how a request's own copy counts: `Merge` re-applies its changes,
//! `LastWriteWins` writes its copy over the stored one, `Error` refuses it unless it is the
//! very copy that is written onto.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::load::load_for_update;
use super::{decode, Apply, Base, Carry, Committed, Inner, Job, Session};
use crate::backoff::jitter;
use crate::config::ConflictPolicy;
use crate::driver::{StoreMode, StoreOutcome};
use crate::error::{DriverError, Error};
use crate::id::SessionId;

/// Queues `job` for `id` and waits for the batch that carries it to be written.
///
/// The save that finds no leader for its id leads: it writes its own change at once, in its
/// own task, with no task spawned and no hand-over between tasks (which cost a lone save
/// about 3,000 instructions). Saves that queue while that write is in flight are written
/// together by a task spawned for them ([`lead_saves`]). If the leading request is cancelled
/// (dropped) mid-write, its lead goes on in a task ([`FinishOnDrop`]): the write in flight
/// completes and the saves queued behind it are not stranded.
pub(crate) async fn submit(
    inner: &Arc<Inner>,
    id: &SessionId,
    mut job: Job,
) -> Result<Committed, Error> {
    let (tx, rx) = oneshot::channel();
    job.reply = Some(tx);
    if let Some((job, carry)) = inner.committer.enqueue(id, job) {
        FinishOnDrop(Some(Box::pin(lead_own_save(
            Arc::clone(inner),
            id.clone(),
            job,
            carry,
        ))))
        .await;
    }
    rx.await.map_err(|_| {
        Error::Driver(DriverError::Backend {
            driver: inner.driver.name(),
            source: "the task saving this session ended without an answer (is the runtime shutting down?)".into(),
        })
    })?
}

/// A leader running in a request's task. Dropped before it is done (the request was
/// cancelled), the rest of it runs in a task of its own; outside a runtime it is dropped,
/// and its [`LeaderGuard`] releases the id's queue.
struct FinishOnDrop(Option<Pin<Box<dyn Future<Output = ()> + Send>>>);

impl Future for FinishOnDrop {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(lead) = self.0.as_mut() {
            ready!(lead.as_mut().poll(cx));
            self.0 = None;
        }
        Poll::Ready(())
    }
}

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        if let Some(lead) = self.0.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(lead);
            }
        }
    }
}

/// The leader of a request's task: writes the request's own save, then hands the saves
/// queued meanwhile (if any) to a task, so that the request is answered after its own write.
async fn lead_own_save(inner: Arc<Inner>, id: SessionId, job: Job, carry: Option<Carry>) {
    let mut guard = LeaderGuard::new(&inner, &id);
    let mut carry = write_batch(&inner, &id, vec![job], carry).await;
    if let Some(jobs) = inner.committer.next_batch(&id, &mut carry) {
        // Still the leader (the queue was not empty): the task takes over.
        tokio::spawn(lead_saves(inner, id, jobs, carry));
    }
    guard.done = true;
}

/// Removes the id's queue if the leader stops abnormally, so that the next save starts a new
/// leader instead of queueing forever (waiting saves then fail: their senders are dropped).
struct LeaderGuard {
    inner: Arc<Inner>,
    id: SessionId,
    done: bool,
}

impl LeaderGuard {
    fn new(inner: &Arc<Inner>, id: &SessionId) -> Self {
        Self {
            inner: Arc::clone(inner),
            id: id.clone(),
            done: false,
        }
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        if !self.done {
            self.inner.committer.abandon(&self.id);
        }
    }
}

/// The leader in a task of its own: writes `jobs`, then the batches queued after them, until
/// the id's queue is empty.
async fn lead_saves(inner: Arc<Inner>, id: SessionId, jobs: Vec<Job>, mut carry: Option<Carry>) {
    let mut guard = LeaderGuard::new(&inner, &id);
    let mut jobs = Some(jobs);
    while let Some(batch) = jobs
        .take()
        .or_else(|| inner.committer.next_batch(&id, &mut carry))
    {
        // Boxed: the batch's state (copies of the session, the jobs) is large, and would
        // otherwise be part of this task's future, copied several times when it is spawned.
        carry = Box::pin(write_batch(&inner, &id, batch, carry)).await;
    }
    guard.done = true;
}

/// Applies `jobs` in order to one copy of the session and writes it; answers every job.
/// Returns the copy written, for the next batch.
async fn write_batch(
    inner: &Arc<Inner>,
    id: &SessionId,
    mut jobs: Vec<Job>,
    carry: Option<Carry>,
) -> Option<Carry> {
    let started = jobs
        .iter()
        .map(|j| j.enqueued)
        .min()
        .unwrap_or_else(Instant::now);
    let deadline = started + inner.save_deadline;
    // Start from the freshest copy at hand: the one this process wrote last, or one a request
    // read later (e.g. under the session lock, after another process wrote); else a fresh
    // read. A `Merge` save does not need its request's copy once the batch has it, so it is
    // taken rather than copied; `LastWriteWins` and `Error` saves keep theirs (they use them).
    let newest_loaded = jobs
        .iter_mut()
        .filter(|j| j.base.is_some())
        .max_by_key(|j| j.base.as_ref().map(|b| b.at));
    let newest_loaded = newest_loaded.filter(|j| {
        carry
            .as_ref()
            .is_none_or(|c| j.base.as_ref().is_some_and(|b| b.at > c.at()))
    });
    let mut base = match newest_loaded {
        Some(job) if job.policy == ConflictPolicy::Merge && job.apply.is_none() => job.base.take(),
        Some(job) => job.base.as_ref().map(Base::duplicate),
        None => carry.and_then(|c| c.into_base(inner, id)),
    };
    let mut attempts = 0u32;
    let stats = &inner.stats;
    loop {
        let Base {
            record, version, ..
        } = match base.take() {
            Some(b) => b,
            // Boxed: a fresh read is the rare case (another process wrote meanwhile), and its
            // state would otherwise double the size of every batch's future.
            None => match Box::pin(read_fresh(inner, id)).await {
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
        // Boxed: keeps the batch future small enough for the allocator's per-thread cache.
        let mut work = Box::new(Session::working(inner, id.clone(), record, version));
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
                            work.record = own.record.clone();
                        }
                        if let Some(delta) = &job.delta {
                            delta.apply(&mut work.record);
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
                            delta.apply(&mut work.record);
                        }
                    }
                }
                changed = true;
                i += 1;
                continue;
            };
            let snapshot = work.record.clone();
            if let Some(delta) = &job.delta {
                delta.apply(&mut work.record);
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
                    work.record = snapshot;
                    work.deleted = false;
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
            let version = work.version;
            return Some(Carry::Copy(Base {
                record: work.into_record(),
                version,
                at: Instant::now(),
            }));
        }
        work.record.atime = inner.clock.now();
        let ttl = inner.ttl_for(&work.record, work.record.atime);
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
                // The copy written goes to the saves (a lone save takes it without a copy);
                // the next batch gets the bytes, decoded only if it starts from them.
                let shared = Arc::new(work.into_record());
                for job in &mut jobs {
                    job.answer(Ok(Committed {
                        record: Arc::clone(&shared),
                        version,
                    }));
                }
                return Some(Carry::Written {
                    bytes,
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
                crate::observe::save_retried();
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

impl Carry {
    /// When the copy was known current (see [`Base::at`]).
    fn at(&self) -> Instant {
        match self {
            Carry::Copy(base) => base.at,
            Carry::Written { at, .. } => *at,
        }
    }

    /// The copy, decoded if need be; `None` (a fresh read) in the unlikely case that bytes
    /// this process just wrote do not decode.
    fn into_base(self, inner: &Inner, id: &SessionId) -> Option<Base> {
        match self {
            Carry::Copy(base) => Some(base),
            Carry::Written { bytes, version, at } => match decode(inner, id, bytes) {
                Ok(record) => Some(Base {
                    record,
                    version,
                    at,
                }),
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "the copy just written does not decode; reading the session again");
                    None
                }
            },
        }
    }
}

/// Reads the stored session for a batch (as `SessionStore::update` would: expired sessions
/// and parameters are handled as on any load).
async fn read_fresh(inner: &Arc<Inner>, id: &SessionId) -> Result<Option<Base>, Error> {
    let session = load_for_update(inner, id).await?;
    Ok(session.into_base())
}

fn fail_all(jobs: &mut [Job], e: &Error) {
    for job in jobs {
        job.answer(Err(e.replicate()));
    }
}

/// Wraps an update closure so that its last successful result is kept for the caller.
pub(crate) fn capture<R, F>(mut change: F) -> (Apply, Arc<Mutex<Option<R>>>)
where
    F: FnMut(&mut Session) -> Result<R, Error> + Send + 'static,
    R: Send + 'static,
{
    let result = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&result);
    let apply: Apply = Box::new(move |session: &mut Session| {
        let r = change(session)?;
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
        Ok(())
    });
    (apply, result)
}

/// The result kept by [`capture`]'s closure.
pub(crate) fn take_result<R>(result: &Mutex<Option<R>>) -> Result<R, Error> {
    result
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .ok_or(Error::NoId)
}
