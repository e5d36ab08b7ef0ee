//! The behaviour suite every cgi-session [`Driver`] runs.
//!
//! It ports the behaviour list of CGI::Session's generic driver test suite (`t/g4` in
//! CGI::Session 4.48: numbered `b1_`..`b7_` below) and adds the behaviours cgi-session fixes
//! (strict ids, no rewrite of an untouched session, ip mismatch keeps the stored session,
//! merge on concurrent writes, no resurrection after delete, ...).
//!
//! A driver crate runs the whole suite with one macro call in an integration test, giving an
//! async function that builds a fresh [`Fixture`]:
//!
//! ```ignore
//! async fn fixture() -> cgi_session_conformance::Fixture {
//!     cgi_session_conformance::Fixture::new(MyDriver::new())
//! }
//! cgi_session_conformance::conformance_suite!(fixture);
//! ```
//!
//! Each behaviour becomes its own `#[tokio::test]`, so a failure names the behaviour.
//! Expiry is tested with a [`ManualClock`], never by sleeping.
#![forbid(unsafe_code)]

use std::any::Any;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cgi_session_core::{
    async_trait, ConflictPolicy, Driver, DriverError, ListedSession, Loaded, LockAttempt,
    LockToken, ManualClock, SessionId, SessionStore, SessionStoreBuilder, StoreMode, StoreOutcome,
};

pub mod behaviours;

/// A driver under test, and whatever must live as long as it (a server process, a temp dir).
pub struct Fixture {
    /// The driver under test.
    pub driver: Arc<dyn Driver>,
    /// Dropped at the end of the test.
    pub guard: Box<dyn Any + Send + Sync>,
    /// Whether the driver lists sessions (`find`); if not, `find` must fail with
    /// `Unsupported`.
    pub supports_listing: bool,
    /// Increments each of the 8 concurrent workers does in the atomic-update test.
    pub increments_per_worker: u32,
    /// Whether the driver has session locks; if not, taking one must fail with
    /// `Unsupported`.
    pub supports_locks: bool,
}

impl Fixture {
    /// A fixture for `driver`, with listing supported and 1,000 increments per worker.
    pub fn new(driver: impl Driver) -> Self {
        Self {
            driver: Arc::new(driver),
            guard: Box::new(()),
            supports_listing: true,
            increments_per_worker: 1_000,
            supports_locks: true,
        }
    }

    /// Keeps `guard` alive for the test.
    #[must_use]
    pub fn with_guard(mut self, guard: impl Any + Send + Sync) -> Self {
        self.guard = Box::new(guard);
        self
    }

    /// Sets [`Fixture::increments_per_worker`].
    #[must_use]
    pub fn increments_per_worker(mut self, n: u32) -> Self {
        self.increments_per_worker = n;
        self
    }

    /// Declares that the driver has no session locks.
    #[must_use]
    pub fn without_locks(mut self) -> Self {
        self.supports_locks = false;
        self
    }

    /// Declares that the driver cannot list sessions.
    #[must_use]
    pub fn without_listing(mut self) -> Self {
        self.supports_listing = false;
        self
    }
}

/// Counts the calls that reach the wrapped (real) driver, to assert what the session layer
/// does and does not do.
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn Driver>,
    /// `load` calls.
    pub loads: AtomicUsize,
    /// `store` calls.
    pub stores: AtomicUsize,
    /// `remove` calls.
    pub removes: AtomicUsize,
    /// `touch` calls.
    pub touches: AtomicUsize,
}

impl Counting {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Driver>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            loads: AtomicUsize::new(0),
            stores: AtomicUsize::new(0),
            removes: AtomicUsize::new(0),
            touches: AtomicUsize::new(0),
        })
    }

    /// All calls so far.
    pub fn total(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
            + self.stores.load(Ordering::SeqCst)
            + self.removes.load(Ordering::SeqCst)
            + self.touches.load(Ordering::SeqCst)
    }

    /// The calls since the previous `take` (or since the start), resetting the counts.
    pub fn take(&self) -> Calls {
        Calls {
            loads: self.loads.swap(0, Ordering::SeqCst),
            stores: self.stores.swap(0, Ordering::SeqCst),
            removes: self.removes.swap(0, Ordering::SeqCst),
            touches: self.touches.swap(0, Ordering::SeqCst),
        }
    }
}

/// Call counts taken from a [`Counting`] driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calls {
    /// `load` calls.
    pub loads: usize,
    /// `store` calls.
    pub stores: usize,
    /// `remove` calls.
    pub removes: usize,
    /// `touch` calls.
    pub touches: usize,
}

impl Calls {
    /// All calls.
    pub fn total(self) -> usize {
        self.loads + self.stores + self.removes + self.touches
    }
}

#[async_trait]
impl Driver for Counting {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn refreshes_on_load(&self) -> bool {
        self.inner.refreshes_on_load()
    }
    async fn load(
        &self,
        id: &SessionId,
        touch: Option<Duration>,
    ) -> Result<Option<Loaded>, DriverError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(id, touch).await
    }
    async fn store(
        &self,
        id: &SessionId,
        data: &[u8],
        mode: StoreMode,
        ttl: Option<Duration>,
    ) -> Result<StoreOutcome, DriverError> {
        self.stores.fetch_add(1, Ordering::SeqCst);
        self.inner.store(id, data, mode, ttl).await
    }
    async fn remove(&self, id: &SessionId) -> Result<bool, DriverError> {
        self.removes.fetch_add(1, Ordering::SeqCst);
        self.inner.remove(id).await
    }
    async fn touch(&self, id: &SessionId, ttl: Option<Duration>) -> Result<bool, DriverError> {
        self.touches.fetch_add(1, Ordering::SeqCst);
        self.inner.touch(id, ttl).await
    }
    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<LockAttempt, DriverError> {
        self.inner.try_lock(id, lease).await
    }
    async fn unlock(&self, id: &SessionId, token: LockToken) -> Result<bool, DriverError> {
        self.inner.unlock(id, token).await
    }
    async fn list(
        &self,
        visit: &mut (dyn FnMut(ListedSession) -> ControlFlow<()> + Send),
    ) -> Result<(), DriverError> {
        self.inner.list(visit).await
    }
}

/// A store over `driver` with a manual clock, as the behaviours use it.
pub fn store_builder(driver: Arc<dyn Driver>, clock: &ManualClock) -> SessionStoreBuilder {
    SessionStore::builder_dyn(driver)
        .clock(clock.clone())
        .conflict_policy(ConflictPolicy::default())
}

/// Runs every behaviour of the suite as its own `#[tokio::test]`.
///
/// `$fixture` is the path of an `async fn() -> Fixture` that builds a fresh driver.
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:path) => {
        $crate::conformance_suite!(@tests $fixture;
            b1_load_without_id_is_empty,
            b2_new_with_unknown_id_gets_fresh_id_and_keeps_values,
            b3_reload_keeps_id_values_and_times,
            b4_expired_session_is_empty_and_removed,
            b5_session_removed_by_driver_gets_new_id,
            b6_flushed_session_is_found_and_delete_removes_it,
            b7_after_delete_new_id_and_structured_values_survive,
            untouched_session_is_not_rewritten,
            read_only_load_is_one_driver_call,
            malformed_ids_never_reach_the_driver,
            corrupt_bytes_are_an_error_and_left_alone,
            ip_mismatch_keeps_the_stored_session,
            per_parameter_expiry_removes_only_that_parameter,
            sliding_expiry_keeps_an_active_session,
            concurrent_changes_to_different_keys_merge,
            conflict_policy_error_and_last_write_wins,
            delete_while_held_is_not_resurrected,
            atomic_updates_from_8_workers_lose_nothing,
            concurrent_flushes_of_one_session_all_succeed,
            session_updates_from_50_requests_lose_nothing,
            locks_exclude_and_time_out,
            lock_lease_frees_a_crashed_holder,
            regenerate_id_moves_data_and_removes_old_record,
            find_visits_sessions_and_drops_expired,
            listing_reports_size_access_and_expiry,
            reserved_names_and_typed_reads,
            driver_contract_create_replace_remove,
        );
    };
    (@tests $fixture:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let fixture = $fixture().await;
                $crate::behaviours::$name(fixture).await;
            }
        )*
    };
}
