//! The `memory` driver: sessions in this process, bounded, with expired entries swept.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::{Driver, Loaded, StoreMode, StoreOutcome, Version};
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

#[derive(Debug, Default)]
struct State {
    entries: HashMap<SessionId, Entry>,
    next_version: Version,
}

/// Sessions kept in this process's memory: for tests, single-process apps and development.
///
/// It is bounded: when it holds `capacity` sessions, expired ones are swept first, then the
/// least recently used one is evicted (as memcached does under memory pressure). Lifetimes given
/// by the session layer are honoured; sessions without one live until evicted. Cloning shares
/// the same storage.
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

    /// Removes every expired session; returns how many were removed.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now();
        let mut state = self.lock();
        let before = state.entries.len();
        state.entries.retain(|_, e| !is_expired(e, now));
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

    async fn traverse(
        &self,
        visit: &mut (dyn FnMut(SessionId) -> ControlFlow<()> + Send),
    ) -> Result<(), DriverError> {
        let now = self.clock.now();
        let ids: Vec<SessionId> = self
            .lock()
            .entries
            .iter()
            .filter(|(_, e)| !is_expired(e, now))
            .map(|(k, _)| k.clone())
            .collect();
        for id in ids {
            if visit(id).is_break() {
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
}
