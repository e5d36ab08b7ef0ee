//! [`StoreStats`]: counters of a store's loads, saves and locks.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of a store's saves and locks since it was built, from [`SessionStore::stats`](crate::SessionStore::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Session loads asked of the store (each request's load counts once).
    pub loads: u64,
    /// Reads sent to the store for them: loads of one id that begin while a read of it is in
    /// flight share the next read, so on a hot session this is well below `loads`.
    pub reads: u64,
    /// Saves of changed sessions written (each request's flush or update counts once).
    pub saves: u64,
    /// Writes that carried them (a batch of combined saves is one write).
    pub batches: u64,
    /// Writes sent to the store, including refused ones.
    pub writes: u64,
    /// Writes refused because another process had changed the session (CAS conflicts).
    pub conflicts: u64,
    /// Saves that failed with [`Error::Contended`](crate::Error::Contended).
    pub contended: u64,
    /// Session locks taken.
    pub lock_acquired: u64,
    /// Lock acquisitions that had to wait (the lock was held, here or elsewhere).
    pub lock_waits: u64,
    /// Times the store's lock was asked for (each poll counts).
    pub lock_polls: u64,
    /// Total time spent waiting for locks, in microseconds.
    pub lock_wait_micros: u64,
    /// Lock waits that gave up with [`Error::LockTimeout`](crate::Error::LockTimeout).
    pub lock_timeouts: u64,
}

#[derive(Debug, Default)]
pub(crate) struct StatCounters {
    pub(crate) loads: AtomicU64,
    pub(crate) reads: AtomicU64,
    pub(crate) saves: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) conflicts: AtomicU64,
    pub(crate) contended: AtomicU64,
    pub(crate) lock_acquired: AtomicU64,
    pub(crate) lock_waits: AtomicU64,
    pub(crate) lock_polls: AtomicU64,
    pub(crate) lock_wait_micros: AtomicU64,
    pub(crate) lock_timeouts: AtomicU64,
}

impl StatCounters {
    pub(crate) fn snapshot(&self) -> StoreStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StoreStats {
            loads: r(&self.loads),
            reads: r(&self.reads),
            saves: r(&self.saves),
            batches: r(&self.batches),
            writes: r(&self.writes),
            conflicts: r(&self.conflicts),
            contended: r(&self.contended),
            lock_acquired: r(&self.lock_acquired),
            lock_waits: r(&self.lock_waits),
            lock_polls: r(&self.lock_polls),
            lock_wait_micros: r(&self.lock_wait_micros),
            lock_timeouts: r(&self.lock_timeouts),
        }
    }
}
