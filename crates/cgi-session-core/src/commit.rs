//! Group commit: the saves of one session id within this process are combined.
//!
//! A browser sends several requests with one cookie at once. If each request wrote its own
//! copy of the session with a conditional (CAS) write, all but one would be refused, reload,
//! and race again: under load most writes are refused and the retries pile up. Instead, every
//! save of a session id goes through a queue for that id, kept here (the batches themselves
//! are written by the engine, `engine::merge`):
//!
//! * the first save of an id *leads*: it writes its own change at once, in its request's
//!   task; the saves queued while it writes are taken over by a tokio task that goes on
//!   until the id's queue is empty (a leading request that is cancelled mid-write hands the
//!   rest of its work to a task too, so it cannot strand the others);
//! * the leader applies the queued changes in order to one copy of the session (the last copy
//!   it wrote, or the copy the first request loaded, or a fresh read), each request's changed
//!   parameters (`engine::Delta`) and update closures alike, and writes the result once, with CAS;
//! * saves that arrive meanwhile queue up and form the next batch, which starts from the copy
//!   just written (no read), so a hot session costs one write per batch, not per request;
//! * a CAS write refused because *another process* wrote the session re-reads it, re-applies
//!   every change (closures run again on the fresh copy) and writes again, backing off with
//!   random jitter, until the store's save deadline ([`Error::Contended`](crate::Error::Contended) after it).
//!
//! Nothing here is shared between processes; across processes, CAS keeps updates safe.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::id::SessionId;

/// How long the copy a leader wrote last is kept for the next batch of the same id, once its
/// queue ran empty. A request that loaded the session before that write would otherwise start
/// the next batch from an older copy, and its write would be refused (a wasted round trip).
const KEEP_LAST_WRITTEN: Duration = Duration::from_secs(1);

/// One id's queue of saves (`J`), and the copy (`B`) its last leader wrote.
#[derive(Debug)]
struct Slot<J, B> {
    /// Saves waiting for the leader.
    jobs: Vec<J>,
    /// Whether a leader runs for the id.
    leading: bool,
    /// The copy the last leader wrote, and when it stopped.
    last: Option<(B, Instant)>,
}

impl<J, B> Default for Slot<J, B> {
    fn default() -> Self {
        Self {
            jobs: Vec::new(),
            leading: false,
            last: None,
        }
    }
}

/// The per-id queues of this process: saves `J`, carrying copies `B` from batch to batch.
#[derive(Debug)]
pub(crate) struct Committer<J, B> {
    state: Mutex<Queues<J, B>>,
}

impl<J, B> Default for Committer<J, B> {
    fn default() -> Self {
        Self {
            state: Mutex::new(Queues {
                slots: HashMap::new(),
                last_sweep: None,
            }),
        }
    }
}

#[derive(Debug)]
struct Queues<J, B> {
    slots: HashMap<SessionId, Slot<J, B>>,
    last_sweep: Option<Instant>,
}

impl<J, B> Queues<J, B> {
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

impl<J, B> Committer<J, B> {
    fn queues(&self) -> MutexGuard<'_, Queues<J, B>> {
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

    /// Queues `job` for `id` behind the leader running for it (`None`). When none runs, the
    /// caller becomes the leader and gets `job` back to write at once (nothing else can be
    /// queued: a leader stops only when its queue is empty) with `carry`, the copy the last
    /// leader wrote if it is still fresh.
    pub(crate) fn enqueue(&self, id: &SessionId, job: J) -> Option<(J, Option<B>)> {
        let mut queues = self.queues();
        let slot = queues.slots.entry(id.clone()).or_default();
        if slot.leading {
            slot.jobs.push(job);
            return None;
        }
        slot.leading = true;
        let now = Instant::now();
        let carry = slot
            .last
            .take()
            .filter(|(_, at)| now - *at < KEEP_LAST_WRITTEN)
            .map(|(base, _)| base);
        Some((job, carry))
    }

    /// For the leader of `id`: everything queued since its last batch, or `None` when the
    /// queue is empty; the leader then stops, leaving `carry` (the copy it wrote last) for
    /// the next batch.
    pub(crate) fn next_batch(&self, id: &SessionId, carry: &mut Option<B>) -> Option<Vec<J>> {
        let mut queues = self.queues();
        let now = Instant::now();
        let slot = queues.slots.get_mut(id)?;
        if !slot.jobs.is_empty() {
            return Some(std::mem::take(&mut slot.jobs));
        }
        slot.leading = false;
        slot.last = carry.take().map(|base| (base, now));
        if slot.last.is_none() {
            queues.slots.remove(id);
        }
        queues.sweep(now);
        None
    }

    /// Drops the queue of `id` when its leader stopped abnormally (its waiting saves then
    /// fail, and the next save starts a new leader).
    pub(crate) fn abandon(&self, id: &SessionId) {
        self.queues().slots.remove(id);
    }
}
