//! The `memory` driver: sessions in this process, bounded, with expired entries swept.
//!
//! Sessions are spread over shards by a hash of their id; each shard is a mutex over a hash
//! map and an intrusive doubly linked list in recency order, so that a load, a store and an
//! eviction cost O(1) and contend only with operations on the same shard.
//!
//! Session locks ([`Driver::try_lock`]) are kept apart: a map from id to the holder's token (a
//! counter) and the end of its lease, behind their own mutex. They are shared by the clones of
//! one driver, hence by the stores of this process that use it, and by nothing else.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use hashlink::LinkedHashMap;

use super::{
    Driver, ListedSession, Loaded, LockAttempt, LockToken, StoreMode, StoreOutcome, Version,
};
use crate::clock::{Clock, SystemClock};
use crate::error::DriverError;
use crate::SessionId;

#[cfg(test)]
mod tests;

/// The default number of sessions a [`MemoryDriver`] holds.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The number of shards of a driver whose capacity is at least [`SHARDED_FROM`].
const DEFAULT_SHARDS: usize = 16;

/// Below this capacity a driver has a single shard, so that eviction is exactly least recently
/// used.
const SHARDED_FROM: usize = 4_096;

/// How many entries from the least recently used end a full shard looks at for an expired one
/// to evict before it evicts a live one.
const EXPIRED_PROBE: usize = 8;

#[derive(Debug)]
struct Entry {
    data: Vec<u8>,
    version: Version,
    expires_at: Option<i64>,
    last_access: i64,
}

fn is_expired(e: &Entry, now: i64) -> bool {
    e.expires_at.is_some_and(|at| at <= now)
}

/// One shard: its sessions in a map that keeps them in recency order (`hashlink`'s
/// `LinkedHashMap`: least recently used at the front, most recently used at the back), so that
/// every operation but [`Shard::retain`] is O(1).
#[derive(Debug)]
struct Shard {
    capacity: usize,
    entries: LinkedHashMap<SessionId, Entry>,
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: LinkedHashMap::new(),
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry, without changing its recency.
    fn peek(&self, id: &SessionId) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// The entry, made the most recently used.
    fn get_mut(&mut self, id: &SessionId) -> Option<&mut Entry> {
        self.entries.to_back(id)
    }

    /// Inserts or replaces the entry, made the most recently used. The caller makes room first.
    fn put(&mut self, id: &SessionId, entry: Entry) {
        if let Some(e) = self.entries.to_back(id) {
            *e = entry;
        } else {
            self.entries.insert(id.clone(), entry);
        }
    }

    fn remove(&mut self, id: &SessionId) -> Option<Entry> {
        self.entries.remove(id)
    }

    /// Makes room for one more entry when the shard is full: evicts an expired entry among the
    /// [`EXPIRED_PROBE`] least recently used if there is one, else the least recently used.
    fn make_room(&mut self, now: i64) {
        if self.len() < self.capacity {
            return;
        }
        let expired = self
            .entries
            .iter()
            .take(EXPIRED_PROBE)
            .find(|(_, e)| is_expired(e, now))
            .map(|(id, _)| id.clone());
        if let Some(id) = expired {
            self.entries.remove(&id);
            return;
        }
        while self.len() >= self.capacity {
            if self.entries.pop_front().is_none() {
                break;
            }
        }
    }

    /// Removes the entries `keep` refuses (a full scan: for [`MemoryDriver::sweep`]); returns
    /// how many.
    fn retain(&mut self, keep: impl Fn(&Entry) -> bool) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| keep(e));
        before - self.entries.len()
    }

    /// Every session of the shard, least recently used first.
    fn iter(&self) -> impl Iterator<Item = (&SessionId, &Entry)> {
        self.entries.iter()
    }
}

/// A held session lock.
#[derive(Debug, Clone, Copy)]
struct HeldLock {
    token: u64,
    /// The last clock second in which the lease may still run: it has ended once the clock
    /// reads more than this.
    last_second: i64,
}

impl HeldLock {
    fn ended(&self, now: i64) -> bool {
        now > self.last_second
    }
}

#[derive(Debug, Default)]
struct Locks {
    held: HashMap<SessionId, HeldLock>,
    next_token: u64,
}

#[derive(Debug)]
struct Shared {
    shards: Box<[Mutex<Shard>]>,
    /// Picks a shard; independent of the shards' own maps' hashers.
    hasher: RandomState,
    next_version: AtomicU64,
    locks: Mutex<Locks>,
}

/// Sessions kept in this process's memory: for tests, single-process apps and development.
///
/// It is bounded: it never holds more than `capacity` sessions. When a session is created in a
/// full driver, one is evicted: an expired one if one is near the least recently used end, else
/// the least recently used one (as memcached does under memory pressure). Loads, stores and
/// touches make a session the most recently used. Every operation but [`sweep`](Self::sweep)
/// and [`list`](Driver::list) takes constant time, at capacity as below it. Lifetimes given by
/// the session layer are honoured: an expired session is never returned, and is dropped when
/// next accessed, when evicted or by [`sweep`](Self::sweep). Sessions without a lifetime live
/// until evicted. Cloning shares the same storage.
///
/// The sessions are spread over shards (16 from a capacity of 4,096, else one), each with its
/// own lock and an equal part of the capacity, so that operations on different sessions
/// seldom wait for each other. Eviction is least recently used *within a shard*: globally it is
/// approximate, and a shard may evict while others have room (memcached's slab classes behave
/// the same way). With a single shard ([`with_shards(1)`](Self::with_shards)) it is exact.
///
/// Session locks ([`Driver::try_lock`]) are kept apart from the sessions (they are neither
/// counted nor evicted) and read the driver's [`Clock`], which ticks in whole seconds: a lease
/// is rounded up to whole seconds and counted from the end of the second in which it was
/// taken, so it lasts at least as long as asked and at most two seconds longer (one for a
/// lease of whole seconds). With a [`ManualClock`](crate::ManualClock) reading `t`, a
/// 10-second lease taken at `t` is held while the clock reads up to `t + 10` and can be taken
/// over from `t + 11`.
///
/// ```
/// # tokio_test_block_on(async {
/// use cgi_session_core::{MemoryDriver, SessionStore};
///
/// let store = SessionStore::builder(MemoryDriver::new()).build();
/// let mut s = store.new_session(None, None).await.unwrap();
/// s.set("greet_en", &"Hi !").unwrap();
/// s.flush().await.unwrap();
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryDriver {
    shared: Arc<Shared>,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryDriver {
    /// A driver holding up to [`DEFAULT_CAPACITY`] sessions.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A driver holding up to `capacity` sessions (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let shards = if capacity >= SHARDED_FROM {
            DEFAULT_SHARDS
        } else {
            1
        };
        Self {
            shared: Arc::new(Shared::new(capacity, shards)),
            capacity,
            clock: Arc::new(SystemClock),
        }
    }

    /// Spreads the sessions over `shards` shards: rounded down to a power of two, at least 1
    /// and at most the capacity. Call it before storing anything: it replaces the storage.
    #[must_use]
    pub fn with_shards(mut self, shards: usize) -> Self {
        let shards = shards.clamp(1, self.capacity);
        let shards = 1 << shards.ilog2();
        self.shared = Arc::new(Shared::new(self.capacity, shards));
        self
    }

    /// Uses `clock` for lifetimes (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many sessions are held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.shared.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired session, and every session lock whose lease has ended; returns
    /// how many sessions were removed (locks are not counted).
    pub fn sweep(&self) -> usize {
        let now = self.clock.now();
        let removed = self
            .shared
            .shards
            .iter()
            .map(|s| lock(s).retain(|e| !is_expired(e, now)))
            .sum();
        self.locks().held.retain(|_, l| !l.ended(now));
        removed
    }

    fn shard_index(&self, id: &SessionId) -> usize {
        // The mask keeps the low bits; truncating the hash is intended.
        #[allow(clippy::cast_possible_truncation)]
        let hash = self.shared.hasher.hash_one(id) as usize;
        hash & (self.shared.shards.len() - 1)
    }

    fn shard(&self, id: &SessionId) -> MutexGuard<'_, Shard> {
        lock(&self.shared.shards[self.shard_index(id)])
    }

    fn locks(&self) -> MutexGuard<'_, Locks> {
        lock(&self.shared.locks)
    }

    fn bump(&self) -> Version {
        self.shared.next_version.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn expiry(&self, now: i64, ttl: Option<Duration>) -> Option<i64> {
        ttl.map(|t| now.saturating_add(i64::try_from(t.as_secs()).unwrap_or(i64::MAX)))
    }
}

impl Shared {
    fn new(capacity: usize, shards: usize) -> Self {
        // Shard `i` holds an equal part of the capacity, the first ones one more for the rest.
        let (part, rest) = (capacity / shards, capacity % shards);
        Self {
            shards: (0..shards)
                .map(|i| Mutex::new(Shard::new(part + usize::from(i < rest))))
                .collect(),
            hasher: RandomState::new(),
            next_version: AtomicU64::new(0),
            locks: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while a shard or the locks are held but a broken invariant (which the
    // tests would show), so a poisoned lock is used as it is.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A lease in whole seconds, rounded up.
fn lease_secs(lease: Duration) -> i64 {
    let secs = lease
        .as_secs()
        .saturating_add(u64::from(lease.subsec_nanos() > 0));
    i64::try_from(secs).unwrap_or(i64::MAX)
}

#[async_trait]
impl Driver for MemoryDriver {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn load(
        &self,
        id: &SessionId,
        touch: Option<Duration>,
    ) -> Result<Option<Loaded>, DriverError> {
        let now = self.clock.now();
        let expires_at = self.expiry(now, touch);
        let mut shard = self.shard(id);
        let Some(entry) = shard.get_mut(id) else {
            return Ok(None);
        };
        if is_expired(entry, now) {
            shard.remove(id);
            return Ok(None);
        }
        let previous_access = entry.last_access;
        entry.last_access = now;
        if touch.is_some() {
            entry.expires_at = expires_at;
        }
        Ok(Some(Loaded {
            data: entry.data.clone(),
            version: Some(entry.version),
            last_access: Some(previous_access),
        }))
    }

    async fn store(
        &self,
        id: &SessionId,
        data: &[u8],
        mode: StoreMode,
        ttl: Option<Duration>,
    ) -> Result<StoreOutcome, DriverError> {
        let now = self.clock.now();
        let expires_at = self.expiry(now, ttl);
        let mut shard = self.shard(id);
        let present = shard.peek(id);
        let live = present.filter(|e| !is_expired(e, now));
        match (mode, live) {
            (StoreMode::Create, Some(_)) => return Ok(StoreOutcome::Exists),
            (StoreMode::Replace { .. }, None) => return Ok(StoreOutcome::NotFound),
            (StoreMode::Replace { expected: Some(v) }, Some(e)) if e.version != v => {
                return Ok(StoreOutcome::Conflict)
            }
            _ => {}
        }
        if present.is_none() {
            shard.make_room(now);
        }
        let version = self.bump();
        shard.put(
            id,
            Entry {
                data: data.to_vec(),
                version,
                expires_at,
                last_access: now,
            },
        );
        Ok(StoreOutcome::Stored(Some(version)))
    }

    async fn remove(&self, id: &SessionId) -> Result<bool, DriverError> {
        let now = self.clock.now();
        Ok(self
            .shard(id)
            .remove(id)
            .is_some_and(|e| !is_expired(&e, now)))
    }

    async fn touch(&self, id: &SessionId, ttl: Option<Duration>) -> Result<bool, DriverError> {
        let now = self.clock.now();
        let expires_at = self.expiry(now, ttl);
        let mut shard = self.shard(id);
        match shard.get_mut(id) {
            Some(e) if !is_expired(e, now) => {
                e.expires_at = expires_at;
                e.last_access = now;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Takes the lock unless another token holds it with a lease that has not ended; see the
    /// [type documentation](MemoryDriver) for how leases are counted.
    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<LockAttempt, DriverError> {
        let now = self.clock.now();
        let mut locks = self.locks();
        match locks.held.get(id) {
            Some(held) if !held.ended(now) => return Ok(LockAttempt::Held),
            Some(_) => {}
            // Ids whose holders never released them would pile up: clear ended leases first
            // when there are many.
            None if locks.held.len() >= self.capacity => {
                locks.held.retain(|_, l| !l.ended(now));
            }
            None => {}
        }
        locks.next_token = locks.next_token.wrapping_add(1);
        let token = locks.next_token;
        locks.held.insert(
            id.clone(),
            HeldLock {
                token,
                last_second: now.saturating_add(lease_secs(lease)),
            },
        );
        Ok(LockAttempt::Acquired(LockToken(token)))
    }

    /// Releases the lock when `token` holds it; `Ok(false)` when another token holds it, none,
    /// or its lease has ended (then it is dropped all the same).
    async fn unlock(&self, id: &SessionId, token: LockToken) -> Result<bool, DriverError> {
        let now = self.clock.now();
        let mut locks = self.locks();
        match locks.held.get(id) {
            Some(held) if held.token == token.0 => {
                let live = !held.ended(now);
                locks.held.remove(id);
                Ok(live)
            }
            _ => Ok(false),
        }
    }

    /// Lists the live sessions, one shard at a time (each is locked while it is copied).
    async fn list(
        &self,
        visit: &mut (dyn FnMut(ListedSession) -> ControlFlow<()> + Send),
    ) -> Result<(), DriverError> {
        let now = self.clock.now();
        for shard in self.shared.shards.iter() {
            let listed: Vec<ListedSession> = lock(shard)
                .iter()
                .filter(|(_, e)| !is_expired(e, now))
                .map(|(id, e)| {
                    ListedSession::new(id.clone())
                        .size(e.data.len() as u64)
                        .last_access(e.last_access)
                        .expires_at(e.expires_at)
                })
                .collect();
            for session in listed {
                if visit(session).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
