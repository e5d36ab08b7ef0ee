//! Session locks: opt-in serialization of the requests of one session (PHP's default, and
//! memcached-session-manager's "non-sticky locking").
//!
//! A lock has two layers:
//!
//! * **in this process**, a queue per session id (an async mutex): requests of this process
//!   wait their turn here, without asking the store, so a process never polls the store for a
//!   lock that it holds itself;
//! * **in the store**, the driver's lock ([`Driver::try_lock`](crate::Driver::try_lock)): an
//!   item with a lease (memcached: `add` of a lock key with the lease as TTL), released only
//!   by its holder (the token is compared atomically), freed by the store when the lease ends
//!   if the holder crashed. A process waiting for another process's lock polls with jittered
//!   backoff, up to the store's lock wait ([`Error::LockTimeout`] after it).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use crate::backoff::jitter;
use crate::config::Config;
use crate::driver::Driver;
use crate::driver::{LockAttempt, LockToken};
use crate::error::Error;
use crate::id::SessionId;
use crate::stats::StatCounters;

/// The in-process queues, one async mutex per locked id.
#[derive(Debug, Default)]
pub(crate) struct LocalLocks {
    map: Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<()>>>>,
}

impl LocalLocks {
    fn map(&self) -> MutexGuard<'_, HashMap<SessionId, Arc<tokio::sync::Mutex<()>>>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn entry(&self, id: &SessionId) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(self.map().entry(id.clone()).or_default())
    }

    /// Drops `guard` and forgets the id's mutex when nobody else waits for it.
    fn release(&self, id: &SessionId, guard: OwnedMutexGuard<()>) {
        let mut map = self.map();
        drop(guard);
        if map.get(id).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(id);
        }
    }
}

/// A held session lock, from [`SessionStore::lock`](crate::SessionStore::lock).
///
/// Release it with [`SessionLock::release`] once the session is saved. Dropping it unreleased
/// (a cancelled request) releases it in a background task; if no runtime is left, the store
/// frees it when its lease ends.
#[must_use = "a session lock is held until `release().await`"]
pub struct SessionLock {
    driver: Arc<dyn Driver>,
    locks: Arc<LocalLocks>,
    id: SessionId,
    token: Option<LockToken>,
    local: Option<OwnedMutexGuard<()>>,
    acquired: Instant,
}

impl fmt::Debug for SessionLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLock")
            .field("id", &self.id)
            .field("held", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl SessionLock {
    /// Waits for the lock of `id`: first this process's queue, then the store's lock, polled
    /// with jittered backoff, until the store's lock wait has passed.
    pub(crate) async fn acquire(
        config: &Config,
        locks: &Arc<LocalLocks>,
        stats: &StatCounters,
        id: &SessionId,
    ) -> Result<Self, Error> {
        let started = Instant::now();
        let deadline = started + config.lock_wait;
        let timeout = || {
            stats.lock_timeouts.fetch_add(1, Ordering::Relaxed);
            let waited = started.elapsed();
            tracing::warn!(session = %id, waited_ms = waited.as_millis() as u64, "gave up waiting for the session lock");
            Error::LockTimeout {
                id: id.clone(),
                waited,
            }
        };
        let mutex = locks.entry(id);
        let mut waited = false;
        let local = match mutex.clone().try_lock_owned() {
            Ok(g) => g,
            Err(_) => {
                waited = true;
                stats.lock_waits.fetch_add(1, Ordering::Relaxed);
                match tokio::time::timeout_at(deadline, mutex.lock_owned()).await {
                    Ok(g) => g,
                    Err(_) => {
                        // `mutex` (our clone) is dropped before forgetting the entry.
                        locks.forget_if_unused(id);
                        return Err(timeout());
                    }
                }
            }
        };
        let mut polls = 0u32;
        loop {
            stats.lock_polls.fetch_add(1, Ordering::Relaxed);
            let attempt = config.driver.try_lock(id, config.lock_lease).await;
            match attempt {
                Ok(LockAttempt::Acquired(token)) => {
                    stats.lock_acquired.fetch_add(1, Ordering::Relaxed);
                    let waited = started.elapsed();
                    stats
                        .lock_wait_micros
                        .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
                    crate::observe::lock_waited(waited);
                    return Ok(Self {
                        driver: Arc::clone(&config.driver),
                        locks: Arc::clone(locks),
                        id: id.clone(),
                        token: Some(token),
                        local: Some(local),
                        acquired: Instant::now(),
                    });
                }
                Ok(_) => {
                    polls += 1;
                    if !waited {
                        waited = true;
                        stats.lock_waits.fetch_add(1, Ordering::Relaxed);
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        locks.release(id, local);
                        return Err(timeout());
                    }
                    // Polls start at ~1-2 ms and back off to ~64 ms, with full jitter.
                    let pause = jitter(polls.saturating_add(1)).max(Duration::from_micros(500));
                    tokio::time::sleep(pause.min(deadline - now)).await;
                }
                Err(e) => {
                    locks.release(id, local);
                    return Err(Error::Driver(e));
                }
            }
        }
    }

    /// The locked session's id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// How long the lock has been held.
    pub fn held_for(&self) -> Duration {
        self.acquired.elapsed()
    }

    /// Releases the lock. `Ok(false)` when the lease had already ended (the lock may have been
    /// taken by another request since; nothing of it was touched).
    ///
    /// # Errors
    /// [`Error::Driver`] when the store cannot be reached: the lock is then freed when its
    /// lease ends.
    pub async fn release(mut self) -> Result<bool, Error> {
        let (id, held) = (self.id.clone(), self.acquired.elapsed());
        // In its own task, so that a caller cancelled meanwhile (the client went away) still
        // frees the lock instead of leaving it until its lease ends.
        let result = match tokio::spawn(async move { self.release_now().await }).await {
            Ok(r) => r,
            Err(e) => Err(Error::Driver(crate::error::DriverError::Backend {
                driver: "session",
                source: format!("the task releasing the session lock failed: {e}").into(),
            })),
        };
        if let Ok(false) = result {
            tracing::warn!(session = %id, held_ms = held.as_millis() as u64, "the session lock's lease ended before the request released it; raise the lock lease above the longest request");
        }
        result
    }

    async fn release_now(&mut self) -> Result<bool, Error> {
        let Some(token) = self.token.take() else {
            return Ok(false);
        };
        let result = self.driver.unlock(&self.id, token).await;
        if let Some(local) = self.local.take() {
            self.locks.release(&self.id, local);
        }
        result.map_err(Error::from)
    }
}

impl LocalLocks {
    fn forget_if_unused(&self, id: &SessionId) {
        let mut map = self.map();
        if map.get(id).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(id);
        }
    }
}

impl Drop for SessionLock {
    fn drop(&mut self) {
        if self.token.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(session = %self.id, "session lock dropped outside a runtime; the store frees it when its lease ends");
            if let Some(local) = self.local.take() {
                self.locks.release(&self.id, local);
            }
            return;
        };
        let mut moved = SessionLock {
            driver: Arc::clone(&self.driver),
            locks: Arc::clone(&self.locks),
            id: self.id.clone(),
            token: self.token.take(),
            local: self.local.take(),
            acquired: self.acquired,
        };
        runtime.spawn(async move {
            if let Err(e) = moved.release_now().await {
                tracing::warn!(session = %moved.id, error = %e, "could not release a dropped session lock; the store frees it when its lease ends");
            }
        });
    }
}
