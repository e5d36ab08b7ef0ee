//! [`StoreStats`]: counters of a store's loads, saves and locks.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::counter;

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

/// One counter: kept here for [`StoreStats`], and mirrored to a `metrics` counter where it
/// has one (see `crate::observe`).
pub(crate) struct Stat {
    value: AtomicU64,
    mirror: Option<fn(u64)>,
}

impl Stat {
    const fn plain() -> Self {
        Self {
            value: AtomicU64::new(0),
            mirror: None,
        }
    }

    const fn mirrored(mirror: fn(u64)) -> Self {
        Self {
            value: AtomicU64::new(0),
            mirror: Some(mirror),
        }
    }

    /// Adds `n` (to the metric too).
    pub(crate) fn fetch_add(&self, n: u64, order: Ordering) -> u64 {
        if let Some(mirror) = self.mirror {
            mirror(n);
        }
        self.value.fetch_add(n, order)
    }

    pub(crate) fn load(&self, order: Ordering) -> u64 {
        self.value.load(order)
    }
}

impl std::fmt::Debug for Stat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.load(Ordering::Relaxed).fmt(f)
    }
}

#[derive(Debug)]
pub(crate) struct StatCounters {
    pub(crate) loads: Stat,
    pub(crate) reads: Stat,
    pub(crate) saves: Stat,
    pub(crate) batches: Stat,
    pub(crate) writes: Stat,
    pub(crate) conflicts: Stat,
    pub(crate) contended: Stat,
    pub(crate) lock_acquired: Stat,
    pub(crate) lock_waits: Stat,
    pub(crate) lock_polls: Stat,
    pub(crate) lock_wait_micros: Stat,
    pub(crate) lock_timeouts: Stat,
}

impl Default for StatCounters {
    fn default() -> Self {
        // The metrics that mirror a counter; the others (loads, saves, contended) are counted
        // per request by `crate::instrument` instead.
        Self {
            loads: Stat::plain(),
            reads: Stat::mirrored(|n| counter!("cgi_session_store_reads_total").increment(n)),
            saves: Stat::plain(),
            batches: Stat::plain(),
            writes: Stat::plain(),
            conflicts: Stat::mirrored(|n| {
                counter!("cgi_session_save_conflicts_total").increment(n);
            }),
            contended: Stat::plain(),
            lock_acquired: Stat::mirrored(|n| {
                counter!("cgi_session_locks_acquired_total").increment(n);
            }),
            lock_waits: Stat::mirrored(|n| counter!("cgi_session_lock_waits_total").increment(n)),
            lock_polls: Stat::plain(),
            lock_wait_micros: Stat::plain(),
            lock_timeouts: Stat::mirrored(|n| {
                counter!("cgi_session_lock_timeouts_total").increment(n);
            }),
        }
    }
}

impl StatCounters {
    pub(crate) fn snapshot(&self) -> StoreStats {
        let r = |c: &Stat| c.load(Ordering::Relaxed);
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
