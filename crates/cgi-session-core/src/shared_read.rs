//! Shared reads: loads of one session id within this process share one store read.
//!
//! A browser sends several requests with one cookie at once, and each request loads the
//! session. Without coordination every one of them sends its own read of the same item; on a
//! hot session that is one store round trip (and, for memcached, one server wake-up) per
//! request, for bytes that are the same for all of them.
//!
//! Here the loads of an id queue behind the read in flight for it and share the *next* read:
//!
//! * a load that finds no read in flight for its id sends one (it *leads*);
//! * loads that arrive while that read is in flight wait; when it completes, the first of them
//!   sends one more read, for itself and all the others that waited, and new arrivals queue
//!   behind that one;
//! * so every load is answered by a read *sent after the load began*: it sees every write that
//!   completed before it began, exactly as if it had sent its own read (read-your-writes
//!   across requests and processes holds). A load never takes the result of a read that was
//!   already in flight when it arrived.
//! * A read that fails (store down, timeout) hands its error to the loads waiting behind it
//!   as well: an error carries no session data, so it cannot be stale, and the waiting
//!   requests do not each wait for a timeout of their own.
//!
//! A leader whose request is cancelled mid-read hands the read over to the next waiting load;
//! a waiting load that is cancelled after being handed the lead passes it on in turn. Loads
//! with different lifetime refreshes (`touch`) are not combined.
//!
//! Nothing here is shared between processes.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::driver::{Driver, Loaded};
use crate::error::DriverError;
use crate::id::SessionId;
use crate::stats::StatCounters;

/// What one store read found, as handed to every load that shares it.
type Outcome = Result<Option<Arc<Loaded>>, DriverError>;

/// A load's answer: what was found, and when the read was sent (see `engine::Base::at`).
pub(crate) type SharedLoad = (Option<Arc<Loaded>>, Instant);

/// The message a waiting load receives.
enum Wake {
    /// The read sent for this load (by another load) completed.
    Done { outcome: Outcome, sent: Instant },
    /// Send the next read, for yourself and these waiting loads.
    Lead(Vec<Waiter>),
}

type Waiter = oneshot::Sender<Wake>;

/// One id with a read in flight.
struct Slot {
    touch: Option<Duration>,
    /// Loads that arrived while the read was in flight: they share the next one.
    waiting: Vec<Waiter>,
}

/// The ids of this process with a read in flight.
#[derive(Default)]
pub(crate) struct SharedReads {
    slots: Mutex<HashMap<SessionId, Slot>>,
}

impl std::fmt::Debug for SharedReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedReads")
            .field("ids_in_flight", &self.slots().len())
            .finish()
    }
}

impl SharedReads {
    fn slots(&self) -> MutexGuard<'_, HashMap<SessionId, Slot>> {
        // Only single inserts, removes and takes happen under the lock: a panic elsewhere
        // cannot leave the map inconsistent.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Passes the lead to the first waiting load still there (with `extra`, loads that were
    /// promised a read that was never sent), or forgets the id when nobody waits.
    fn hand_over(&self, id: &SessionId, extra: Vec<Waiter>) {
        let mut slots = self.slots();
        // Taken out (one lookup, the common case: nobody waits), and put back for the next
        // leader when somebody does.
        let mut slot = slots.remove(id);
        let mut next = extra;
        if let Some(slot) = &mut slot {
            next.append(&mut slot.waiting);
        }
        while !next.is_empty() {
            let first = next.remove(0);
            match first.send(Wake::Lead(std::mem::take(&mut next))) {
                Ok(()) => {
                    if let Some(slot) = slot {
                        slots.insert(id.clone(), slot);
                    }
                    return;
                }
                // That load is gone: try the next one.
                Err(Wake::Lead(rest)) => next = rest,
                Err(Wake::Done { .. }) => unreachable!("a Lead message comes back as sent"),
            }
        }
    }
}

/// The leader's duty: answer its cohort, then pass the lead on; if the leading load is
/// cancelled before its read completes, the cohort is handed over instead (the next leader
/// sends a read after all of them began).
struct Lead<'a> {
    reads: &'a SharedReads,
    id: &'a SessionId,
    cohort: Vec<Waiter>,
    done: bool,
}

impl Lead<'_> {
    fn finish(mut self, outcome: &Outcome, sent: Instant) {
        self.done = true;
        for waiter in self.cohort.drain(..) {
            let _ = waiter.send(Wake::Done {
                outcome: replicate(outcome),
                sent,
            });
        }
        if outcome.is_err() {
            // A failure says nothing about the data: the loads queued meanwhile get it too.
            let waiting = self
                .reads
                .slots()
                .remove(self.id)
                .map(|slot| slot.waiting)
                .unwrap_or_default();
            for waiter in waiting {
                let _ = waiter.send(Wake::Done {
                    outcome: replicate(outcome),
                    sent,
                });
            }
            return;
        }
        self.reads.hand_over(self.id, Vec::new());
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if !self.done {
            let cohort = std::mem::take(&mut self.cohort);
            self.reads.hand_over(self.id, cohort);
        }
    }
}

/// A waiting load's receiver: if the load is cancelled after the lead was handed to it, the
/// lead goes on to the next waiting load instead of being lost with it.
struct Ticket<'a> {
    reads: &'a SharedReads,
    id: &'a SessionId,
    rx: oneshot::Receiver<Wake>,
    answered: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        self.rx.close();
        if let Ok(Wake::Lead(rest)) = self.rx.try_recv() {
            self.reads.hand_over(self.id, rest);
        }
    }
}

fn replicate(outcome: &Outcome) -> Outcome {
    match outcome {
        Ok(found) => Ok(found.clone()),
        Err(e) => Err(e.replicate()),
    }
}

/// Loads `id` through the driver, sharing the read with the other loads of `id` that began
/// before it was sent (see the module documentation).
pub(crate) async fn load(
    reads: &SharedReads,
    driver: &dyn Driver,
    stats: &StatCounters,
    id: &SessionId,
    touch: Option<Duration>,
) -> Result<SharedLoad, DriverError> {
    stats.loads.fetch_add(1, Ordering::Relaxed);
    // `None`: read alone (a read with another lifetime refresh is in flight).
    let joined = {
        let mut slots = reads.slots();
        match slots.entry(id.clone()) {
            Entry::Occupied(mut slot) if slot.get().touch == touch => {
                let (tx, rx) = oneshot::channel();
                slot.get_mut().waiting.push(tx);
                Some(Some(rx))
            }
            Entry::Occupied(_) => None,
            Entry::Vacant(slot) => {
                slot.insert(Slot {
                    touch,
                    waiting: Vec::new(),
                });
                Some(None)
            }
        }
    };
    let Some(rx) = joined else {
        return read(driver, stats, id, touch).await;
    };
    let cohort = match rx {
        None => Vec::new(),
        Some(rx) => {
            let mut ticket = Ticket {
                reads,
                id,
                rx,
                answered: false,
            };
            let wake = (&mut ticket.rx).await;
            ticket.answered = true;
            match wake {
                Ok(Wake::Done { outcome, sent }) => return outcome.map(|found| (found, sent)),
                Ok(Wake::Lead(cohort)) => cohort,
                // The message was lost (the runtime is shutting down, or a handover
                // panicked): lead, so that the id is handed on or freed after this read
                // instead of staying queued forever.
                Err(_) => Vec::new(),
            }
        }
    };
    let lead = Lead {
        reads,
        id,
        cohort,
        done: false,
    };
    let (outcome, sent) = match read(driver, stats, id, touch).await {
        Ok((found, sent)) => (Ok(found), sent),
        Err(e) => (Err(e), Instant::now()),
    };
    lead.finish(&outcome, sent);
    outcome.map(|found| (found, sent))
}

/// One store read, not shared.
async fn read(
    driver: &dyn Driver,
    stats: &StatCounters,
    id: &SessionId,
    touch: Option<Duration>,
) -> Result<SharedLoad, DriverError> {
    stats.reads.fetch_add(1, Ordering::Relaxed);
    let sent = Instant::now();
    let found = driver.load(id, touch).await?;
    Ok((found.map(Arc::new), sent))
}
