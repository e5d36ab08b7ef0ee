//! The `memory` driver: sessions in this process, bounded, with expired entries swept.
//!
//! Session locks ([`Driver::try_lock`]) are kept in the same state: a map from id to the
//! holder's token (a counter) and the end of its lease. They are shared by the clones of one
//! driver, hence by the stores of this process that use it, and by nothing else.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    Driver, ListedSession, Loaded, LockAttempt, LockToken, StoreMode, StoreOutcome, Version,
};
use crate::clock::{Clock, SystemClock};
use crate::error::DriverError;
use crate::SessionId;

/// The default number of sessions a [`MemoryDriver`] holds.
pub const DEFAULT_CAPACITY: usize = 100_000;

#[derive(Debug)]
struct Entry {
    data: Vec<u8>,
    version: Version,
    expires_at: Option<i64>,
    last_access: i64,
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
struct State {
    entries: HashMap<SessionId, Entry>,
    next_version: Version,
    locks: HashMap<SessionId, HeldLock>,
    next_token: u64,
}

/// Sessions kept in this process's memory: for tests, single-process apps and development.
///
/// It is bounded: when it holds `capacity` sessions, expired ones are swept first, then the
/// least recently used one is evicted (as memcached does under memory pressure). Lifetimes given
/// by the session layer are honoured; sessions without one live until evicted. Cloning shares
/// the same storage.
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
    state: Arc<Mutex<State>>,
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
        Self {
            state: Arc::default(),
            capacity: capacity.max(1),
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` for lifetimes (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many sessions are held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired session, and every session lock whose lease has ended; returns
    /// how many sessions were removed (locks are not counted).
    pub fn sweep(&self) -> usize {
        let now = self.clock.now();
        let mut state = self.lock();
        let before = state.entries.len();
        state.entries.retain(|_, e| !is_expired(e, now));
        state.locks.retain(|_, l| !l.ended(now));
        before - state.entries.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave an entry half-written (every update is a
        // single insert or remove), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expiry(&self, now: i64, ttl: Option<Duration>) -> Option<i64> {
        ttl.map(|t| now.saturating_add(i64::try_from(t.as_secs()).unwrap_or(i64::MAX)))
    }
}

/// A lease in whole seconds, rounded up.
fn lease_secs(lease: Duration) -> i64 {
    let secs = lease
        .as_secs()
        .saturating_add(u64::from(lease.subsec_nanos() > 0));
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn is_expired(e: &Entry, now: i64) -> bool {
    e.expires_at.is_some_and(|at| at <= now)
}

impl State {
    fn bump(&mut self) -> Version {
        self.next_version += 1;
        self.next_version
    }

    fn make_room(&mut self, capacity: usize, now: i64) {
        if self.entries.len() < capacity {
            return;
        }
        self.entries.retain(|_, e| !is_expired(e, now));
        while self.entries.len() >= capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_access)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.entries.remove(&k);
                }
                None => break,
            }
        }
    }
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
        let mut state = self.lock();
        let Some(entry) = state.entries.get_mut(id) else {
            return Ok(None);
        };
        if is_expired(entry, now) {
            state.entries.remove(id);
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
        let mut state = self.lock();
        let live = state.entries.get(id).filter(|e| !is_expired(e, now));
        match (mode, live) {
            (StoreMode::Create, Some(_)) => return Ok(StoreOutcome::Exists),
            (StoreMode::Replace { .. }, None) => return Ok(StoreOutcome::NotFound),
            (StoreMode::Replace { expected: Some(v) }, Some(e)) if e.version != v => {
                return Ok(StoreOutcome::Conflict)
            }
            _ => {}
        }
        if !state.entries.contains_key(id) {
            state.make_room(self.capacity, now);
        }
        let version = state.bump();
        state.entries.insert(
            id.clone(),
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
            .lock()
            .entries
            .remove(id)
            .is_some_and(|e| !is_expired(&e, now)))
    }

    async fn touch(&self, id: &SessionId, ttl: Option<Duration>) -> Result<bool, DriverError> {
        let now = self.clock.now();
        let expires_at = self.expiry(now, ttl);
        let mut state = self.lock();
        match state.entries.get_mut(id) {
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
        let mut state = self.lock();
        match state.locks.get(id) {
            Some(held) if !held.ended(now) => return Ok(LockAttempt::Held),
            Some(_) => {}
            // Ids whose holders never released them would pile up: clear ended leases first
            // when there are many.
            None if state.locks.len() >= self.capacity => {
                state.locks.retain(|_, l| !l.ended(now));
            }
            None => {}
        }
        state.next_token = state.next_token.wrapping_add(1);
        let token = state.next_token;
        state.locks.insert(
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
        let mut state = self.lock();
        match state.locks.get(id) {
            Some(held) if held.token == token.0 => {
                let live = !held.ended(now);
                state.locks.remove(id);
                Ok(live)
            }
            _ => Ok(false),
        }
    }

    async fn list(
        &self,
        visit: &mut (dyn FnMut(ListedSession) -> ControlFlow<()> + Send),
    ) -> Result<(), DriverError> {
        let now = self.clock.now();
        let listed: Vec<ListedSession> = self
            .lock()
            .entries
            .iter()
            .filter(|(_, e)| !is_expired(e, now))
            .map(|(k, e)| {
                ListedSession::new(k.clone())
                    .size(e.data.len() as u64)
                    .last_access(e.last_access)
                    .expires_at(e.expires_at)
            })
            .collect();
        for session in listed {
            if visit(session).is_break() {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn id(s: &str) -> SessionId {
        SessionId::parse(s).unwrap()
    }

    #[tokio::test]
    async fn expired_entries_are_swept_and_invisible() {
        let clock = ManualClock::new(1_000);
        let d = MemoryDriver::new().with_clock(clock.clone());
        d.store(
            &id("a"),
            b"1",
            StoreMode::Create,
            Some(Duration::from_secs(10)),
        )
        .await
        .unwrap();
        d.store(&id("b"), b"2", StoreMode::Create, None)
            .await
            .unwrap();
        clock.advance(10);
        assert_eq!(d.load(&id("a"), None).await.unwrap(), None);
        assert_eq!(d.len(), 1, "loading an expired entry removes it");
        d.store(
            &id("c"),
            b"3",
            StoreMode::Create,
            Some(Duration::from_secs(1)),
        )
        .await
        .unwrap();
        clock.advance(1);
        assert_eq!(d.sweep(), 1);
        assert_eq!(d.len(), 1);
    }

    #[tokio::test]
    async fn bounded_evicts_least_recently_used() {
        let clock = ManualClock::new(1_000);
        let d = MemoryDriver::with_capacity(2).with_clock(clock.clone());
        d.store(&id("a"), b"1", StoreMode::Create, None)
            .await
            .unwrap();
        clock.advance(1);
        d.store(&id("b"), b"2", StoreMode::Create, None)
            .await
            .unwrap();
        clock.advance(1);
        // Reading `a` makes `b` the least recently used.
        assert!(d.load(&id("a"), None).await.unwrap().is_some());
        clock.advance(1);
        d.store(&id("c"), b"3", StoreMode::Create, None)
            .await
            .unwrap();
        assert_eq!(d.len(), 2);
        assert!(d.load(&id("b"), None).await.unwrap().is_none());
        assert!(d.load(&id("a"), None).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn touch_on_load_extends_lifetime() {
        let clock = ManualClock::new(1_000);
        let d = MemoryDriver::new().with_clock(clock.clone());
        let ttl = Some(Duration::from_secs(10));
        d.store(&id("a"), b"1", StoreMode::Create, ttl)
            .await
            .unwrap();
        clock.advance(8);
        let loaded = d.load(&id("a"), ttl).await.unwrap().unwrap();
        assert_eq!(loaded.last_access, Some(1_000));
        clock.advance(8);
        assert!(d.load(&id("a"), ttl).await.unwrap().is_some());
    }

    fn acquired(attempt: LockAttempt) -> LockToken {
        match attempt {
            LockAttempt::Acquired(token) => token,
            other => panic!("expected the lock, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn lock_excludes_until_released_with_its_token() {
        let d = MemoryDriver::new().with_clock(ManualClock::new(1_000));
        let a = id("a");
        let lease = Duration::from_secs(30);
        let token = acquired(d.try_lock(&a, lease).await.unwrap());
        assert_eq!(d.try_lock(&a, lease).await.unwrap(), LockAttempt::Held);
        // Another id is independent.
        let other = acquired(d.try_lock(&id("b"), lease).await.unwrap());
        assert_ne!(other, token);

        let wrong = LockToken(token.0.wrapping_add(1_000));
        assert!(
            !d.unlock(&a, wrong).await.unwrap(),
            "a wrong token frees nothing"
        );
        assert_eq!(d.try_lock(&a, lease).await.unwrap(), LockAttempt::Held);
        assert!(
            !d.unlock(&a, other).await.unwrap(),
            "b's token does not free a"
        );

        assert!(d.unlock(&a, token).await.unwrap());
        assert!(!d.unlock(&a, token).await.unwrap(), "released once only");
        let again = acquired(d.try_lock(&a, lease).await.unwrap());
        assert_ne!(again, token, "every acquisition gets a new token");
        // A clone shares the locks.
        assert_eq!(
            d.clone().try_lock(&a, lease).await.unwrap(),
            LockAttempt::Held
        );
    }

    #[tokio::test]
    async fn ended_lease_is_taken_over_and_the_stale_holder_frees_nothing() {
        let clock = ManualClock::new(1_000);
        let d = MemoryDriver::new().with_clock(clock.clone());
        let a = id("a");
        let lease = Duration::from_secs(10);
        let stale = acquired(d.try_lock(&a, lease).await.unwrap());
        clock.advance(10);
        assert_eq!(
            d.try_lock(&a, lease).await.unwrap(),
            LockAttempt::Held,
            "the lease runs until the end of its last second"
        );
        clock.advance(1);
        let fresh = acquired(d.try_lock(&a, lease).await.unwrap());
        assert_ne!(fresh, stale);
        assert!(!d.unlock(&a, stale).await.unwrap());
        assert_eq!(
            d.try_lock(&a, lease).await.unwrap(),
            LockAttempt::Held,
            "the stale holder's release left the new holder's lock alone"
        );
        assert!(d.unlock(&a, fresh).await.unwrap());
    }

    #[tokio::test]
    async fn sub_second_leases_round_up_and_late_release_reports_false() {
        let clock = ManualClock::new(1_000);
        let d = MemoryDriver::new().with_clock(clock.clone());
        let a = id("a");
        let token = acquired(d.try_lock(&a, Duration::from_millis(1)).await.unwrap());
        assert_eq!(
            d.try_lock(&a, Duration::ZERO).await.unwrap(),
            LockAttempt::Held
        );
        clock.advance(2);
        // Nobody took it, but the lease ended: the release says so, and frees it all the same.
        assert!(!d.unlock(&a, token).await.unwrap());
        acquired(d.try_lock(&a, Duration::from_secs(1)).await.unwrap());
    }

    #[tokio::test]
    async fn locks_are_not_sessions() {
        let clock = ManualClock::new(1_000);
        let d = MemoryDriver::with_capacity(2).with_clock(clock.clone());
        let lease = Duration::from_secs(5);
        for s in ["a", "b", "c"] {
            acquired(d.try_lock(&id(s), lease).await.unwrap());
        }
        assert!(d.is_empty(), "locks are not counted as sessions");
        assert_eq!(d.load(&id("a"), None).await.unwrap(), None);
        let mut seen = 0;
        d.list(&mut |_| {
            seen += 1;
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
        assert_eq!(seen, 0, "listing shows no lock");
        // Storing and removing the session leaves its lock alone.
        d.store(&id("a"), b"x", StoreMode::Create, None)
            .await
            .unwrap();
        assert!(d.remove(&id("a")).await.unwrap());
        assert_eq!(
            d.try_lock(&id("a"), lease).await.unwrap(),
            LockAttempt::Held
        );
        // Beyond capacity, ended leases are cleared; live ones never are.
        assert_eq!(d.lock().locks.len(), 3);
        clock.advance(6);
        acquired(d.try_lock(&id("d"), lease).await.unwrap());
        assert_eq!(d.lock().locks.len(), 1);
        clock.advance(6);
        assert_eq!(d.sweep(), 0);
        assert!(d.lock().locks.is_empty(), "sweep drops ended leases");
    }
}
