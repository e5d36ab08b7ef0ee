//! Typed expiry: idle timeouts as `Duration`, absolute expiry and browser-session cookies,
//! through the store (the rule every process follows, the lifetimes given to the driver, the
//! cookie). The clock is a `ManualClock`: nothing sleeps.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cgi_session_core::{
    async_trait, Driver, DriverError, Expiry, FileDriver, ManualClock, MemoryDriver, SessionId,
    SessionStore, StoreMode, StoreOutcome,
};
use common::{Hooks, Scripted};

const START: i64 = 1_800_000_000;

/// Records the lifetime of every write.
#[derive(Debug, Default)]
struct TtlLog(Mutex<Vec<Option<Duration>>>);

#[async_trait]
impl Hooks for TtlLog {
    const NAME: &'static str = "ttl-log";

    async fn store(
        &self,
        memory: &MemoryDriver,
        id: &SessionId,
        data: &[u8],
        mode: StoreMode,
        ttl: Option<Duration>,
    ) -> Result<StoreOutcome, DriverError> {
        self.0.lock().unwrap().push(ttl);
        memory.store(id, data, mode, ttl).await
    }
}

fn at(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap())
}

fn setup() -> (ManualClock, MemoryDriver, Arc<Scripted<TtlLog>>) {
    let clock = ManualClock::new(START);
    let memory = MemoryDriver::new().with_clock(clock.clone());
    let driver = Scripted::over(memory.clone(), TtlLog::default());
    (clock, memory, driver)
}

fn store_over(driver: &Arc<Scripted<TtlLog>>, clock: &ManualClock) -> SessionStore {
    SessionStore::builder_dyn(Arc::clone(driver) as Arc<dyn Driver>)
        .clock(clock.clone())
        .default_idle_timeout(Duration::from_secs(600))
        .build()
}

async fn new_stored(store: &SessionStore) -> String {
    let mut s = store.new_session(None, None).await.unwrap();
    s.flush().await.unwrap();
    s.id().unwrap().as_str().to_owned()
}

#[tokio::test]
async fn typed_idle_timeout_is_the_perl_setter_in_seconds() {
    let (clock, _memory, driver) = setup();
    let store = store_over(&driver, &clock);
    let mut s = store.new_session(None, None).await.unwrap();
    assert_eq!(s.expire(), Some(600), "the builder's Duration default");
    assert_eq!(s.idle_timeout(), Some(Duration::from_secs(600)));
    s.set_idle_timeout(Duration::from_millis(1500));
    assert_eq!(s.expire(), Some(2), "rounded up to whole seconds");
    s.set_idle_timeout(Duration::ZERO);
    assert_eq!((s.expire(), s.idle_timeout()), (None, None));
    s.set_expire(-1);
    assert_eq!(s.idle_timeout(), None, "negative: expires at the next load");
    s.set_expire_str("+10m").unwrap();
    assert_eq!(s.idle_timeout(), Some(Duration::from_secs(600)));
    assert_eq!(s.expires_at(), Some(at(START + 600)));
    s.flush().await.unwrap();
}

#[tokio::test]
async fn a_session_past_its_absolute_expiry_is_gone_however_active_it_was() {
    let (clock, memory, driver) = setup();
    let store = store_over(&driver, &clock);
    let mut s = store.new_session(None, None).await.unwrap();
    s.set_expires_at(at(START + 1000));
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    // Used every 300 s (well within the idle timeout of 600 s) until the absolute expiry.
    for _ in 0..3 {
        clock.advance(300);
        let mut s = store.load(Some(&id), None).await.unwrap();
        assert!(!s.is_empty(), "still alive at {}", clock_now(&clock));
        assert_eq!(s.absolute_expiry(), Some(at(START + 1000)));
        assert!(s.expires_at().unwrap() <= at(START + 1000));
        s.set("n", &1).unwrap();
        s.flush().await.unwrap();
    }
    clock.advance(100); // START + 1000
                        // The store's item ends with it (its lifetime is not extended by the grace period that
                        // lets a load report an idle expiry), so the claimed id finds nothing.
    let mut fresh = store.new_session(Some(&id), None).await.unwrap();
    assert_ne!(
        fresh.id().unwrap().as_str(),
        id,
        "a new session, not the old one"
    );
    assert!(fresh.get::<i64>("n").unwrap().is_none());
    fresh.discard();
    memory.sweep();
    assert!(memory.is_empty(), "the expired session was removed");
}

fn clock_now(clock: &ManualClock) -> i64 {
    use cgi_session_core::Clock;
    clock.now()
}

#[tokio::test]
async fn the_store_lifetime_never_outlasts_the_absolute_expiry() {
    let (clock, memory, driver) = setup();
    let store = SessionStore::builder_dyn(Arc::clone(&driver) as Arc<dyn Driver>)
        .clock(clock.clone())
        .default_idle_timeout(Duration::from_secs(600))
        .max_lifetime(Duration::from_secs(900))
        .build();
    let id = new_stored(&store).await;
    clock.advance(500);
    let mut s = store.load(Some(&id), None).await.unwrap();
    s.set("n", &1).unwrap();
    s.flush().await.unwrap();
    let ttls = driver.0.lock().unwrap().clone();
    assert_eq!(
        ttls,
        vec![
            Some(Duration::from_secs(610)), // idle 600 + grace 10, before the absolute 900
            Some(Duration::from_secs(400)), // 900 - 500: the absolute expiry comes first
        ]
    );
    // The driver's own expiry removes the item at the absolute expiry, not 10 s later.
    clock.advance(400);
    memory.sweep();
    assert!(
        memory.is_empty(),
        "the item did not outlive the absolute expiry"
    );
}

#[tokio::test]
async fn the_absolute_expiry_is_stored_so_every_process_honours_it() {
    let (clock, _memory, driver) = setup();
    let writer = SessionStore::builder_dyn(Arc::clone(&driver) as Arc<dyn Driver>)
        .clock(clock.clone())
        .max_lifetime(Duration::from_secs(100))
        .build();
    // Another process: no idle timeout, no max lifetime of its own.
    let reader = SessionStore::builder_dyn(Arc::clone(&driver) as Arc<dyn Driver>)
        .clock(clock.clone())
        .build();
    let id = new_stored(&writer).await;
    clock.advance(99);
    let s = reader.load(Some(&id), None).await.unwrap();
    assert_eq!(s.absolute_expiry(), Some(at(START + 100)));
    clock.advance(1);
    let s = reader.load(Some(&id), None).await.unwrap();
    assert!(s.is_empty(), "past the absolute expiry");
    let mut found = 0;
    reader
        .find(|_| {
            found += 1;
            async { std::ops::ControlFlow::Continue(()) }
        })
        .await
        .unwrap();
    assert_eq!(found, 0, "find does not see it either");
}

#[tokio::test]
async fn concurrent_expiry_changes_and_parameters_are_merged() {
    let (clock, _memory, driver) = setup();
    let store = store_over(&driver, &clock);
    let id = new_stored(&store).await;
    let mut a = store.load(Some(&id), None).await.unwrap();
    let mut b = store.load(Some(&id), None).await.unwrap();
    a.set_expiry(Expiry::AtDateTime(at(START + 5000)));
    b.set("user", "alice").unwrap();
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    let s = store.load(Some(&id), None).await.unwrap();
    assert_eq!(s.absolute_expiry(), Some(at(START + 5000)));
    assert_eq!(s.expire(), None, "AtDateTime replaces the idle timeout");
    assert_eq!(s.get::<String>("user").unwrap().as_deref(), Some("alice"));
}

#[tokio::test]
async fn each_expiry_kind_gives_its_cookie() {
    let (clock, _memory, driver) = setup();
    let store = store_over(&driver, &clock);
    let mut s = store.new_session(None, None).await.unwrap();
    let idle = s.cookie().unwrap();
    assert_eq!(idle.max_age(), Some(cookie::time::Duration::seconds(600)));
    assert_eq!(idle.expires(), None);

    s.set_expiry(Expiry::AtDateTime(at(START + 120)));
    let absolute = s.cookie().unwrap();
    assert_eq!(
        absolute.max_age(),
        Some(cookie::time::Duration::seconds(120))
    );
    assert_eq!(
        absolute.expires_datetime().map(|t| t.unix_timestamp()),
        Some(START + 120)
    );

    s.set_expiry(Expiry::OnSessionEnd);
    assert!(s.is_browser_session_cookie());
    let browser = s.cookie().unwrap().to_string();
    assert!(
        !browser.contains("Max-Age") && !browser.contains("Expires"),
        "{browser}"
    );
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();

    // Stored: another request sends the same kind of cookie.
    let again = store.load(Some(&id), None).await.unwrap();
    assert!(again.is_browser_session_cookie());
    assert_eq!(again.cookie().unwrap().max_age(), None);
    assert_eq!(
        again.expire(),
        Some(600),
        "the stored session keeps its idle timeout"
    );

    let browser_store = SessionStore::builder_dyn(Arc::clone(&driver) as Arc<dyn Driver>)
        .clock(clock.clone())
        .browser_session_cookies(true)
        .build();
    let mut fresh = browser_store.new_session(None, None).await.unwrap();
    assert!(fresh.is_browser_session_cookie());
    fresh.set_expiry(Expiry::OnInactivity(Duration::from_secs(60)));
    assert_eq!(
        fresh.cookie().unwrap().max_age(),
        Some(cookie::time::Duration::seconds(60))
    );
    fresh.flush().await.unwrap();
}

#[tokio::test]
async fn the_file_driver_without_ttls_honours_the_absolute_expiry_through_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let store = SessionStore::builder(FileDriver::new(dir.path()).unwrap())
        .clock(clock.clone())
        .default_idle_timeout(Duration::from_secs(600))
        .max_lifetime(Duration::from_secs(900))
        .build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("n", &1).unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    for _ in 0..2 {
        clock.advance(400);
        let mut s = store.load(Some(&id), None).await.unwrap();
        assert!(!s.is_empty());
        s.set("n", &2).unwrap();
        s.flush().await.unwrap();
    }
    clock.advance(100); // START + 900: active 100 s ago, but past its lifetime
    let mut found = 0;
    store
        .find(|_| {
            found += 1;
            async { std::ops::ControlFlow::Continue(()) }
        })
        .await
        .unwrap();
    assert_eq!(found, 0);
    let s = store.load(Some(&id), None).await.unwrap();
    assert!(s.is_empty());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "removed");
}
