//! Creating a session when the store cannot take some ids (a server of a pool is down): the
//! session is created under a fresh id, ids tried on the failing server are never used again,
//! and the retries are bounded (in ids, and in failures that waited for a timeout).

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cgi_session_core::{
    async_trait, Driver, DriverError, Loaded, MemoryDriver, SessionId, SessionStore, StoreMode,
    StoreOutcome,
};
use common::{Hooks, Scripted};

/// How the "down server" answers.
#[derive(Debug, Clone, Copy)]
enum Down {
    /// Refused at once.
    Fast,
    /// After waiting `.0`, unavailable.
    Slow(Duration),
    /// After waiting `.0`, outcome unknown.
    Unknown(Duration),
}

/// Ids whose first character `is_down` sends to a "down server".
#[derive(Debug)]
struct PartlyDown {
    down: Down,
    all_down: bool,
    /// Every id a store was tried with, in order, and whether it failed.
    tried: Mutex<Vec<(String, bool)>>,
}

impl PartlyDown {
    fn new(down: Down, all_down: bool) -> Arc<Scripted<Self>> {
        Scripted::new(Self {
            down,
            all_down,
            tried: Mutex::new(Vec::new()),
        })
    }
    /// About a third of the ids live on the down server.
    fn is_down(&self, id: &SessionId) -> bool {
        self.all_down || id.as_str().as_bytes()[0].is_multiple_of(3)
    }
    fn tried(&self) -> Vec<(String, bool)> {
        self.tried.lock().unwrap().clone()
    }
}

#[async_trait]
impl Hooks for PartlyDown {
    const NAME: &'static str = "partly-down";

    async fn load(
        &self,
        memory: &MemoryDriver,
        id: &SessionId,
        touch: Option<Duration>,
    ) -> Result<Option<Loaded>, DriverError> {
        if self.is_down(id) {
            return Err(DriverError::Unavailable {
                driver: Self::NAME,
                source: "connection refused (scripted)".into(),
            });
        }
        memory.load(id, touch).await
    }
    async fn store(
        &self,
        memory: &MemoryDriver,
        id: &SessionId,
        data: &[u8],
        mode: StoreMode,
        ttl: Option<Duration>,
    ) -> Result<StoreOutcome, DriverError> {
        let down = self.is_down(id);
        self.tried
            .lock()
            .unwrap()
            .push((id.as_str().to_owned(), down));
        if !down {
            return memory.store(id, data, mode, ttl).await;
        }
        match self.down {
            Down::Fast => Err(DriverError::Unavailable {
                driver: Self::NAME,
                source: "connection refused (scripted)".into(),
            }),
            Down::Slow(wait) => {
                tokio::time::sleep(wait).await;
                Err(DriverError::Unavailable {
                    driver: Self::NAME,
                    source: "connect timed out (scripted)".into(),
                })
            }
            Down::Unknown(wait) => {
                tokio::time::sleep(wait).await;
                Err(DriverError::OutcomeUnknown {
                    driver: Self::NAME,
                    source: "no reply within the timeout (scripted)".into(),
                })
            }
        }
    }
}

#[tokio::test]
async fn new_sessions_are_created_under_ids_the_store_can_take() {
    let driver = PartlyDown::new(Down::Fast, false);
    let store = SessionStore::builder_dyn(driver.clone()).build();
    let mut created = Vec::new();
    for _ in 0..300 {
        let mut s = store.new_session(None, None).await.unwrap();
        s.set("n", &1u64).unwrap();
        s.flush().await.unwrap();
        created.push(s.id().unwrap().as_str().to_owned());
    }
    let tried = driver.tried();
    let failed: HashSet<&String> = tried.iter().filter(|t| t.1).map(|t| &t.0).collect();
    println!(
        "300 sessions, a third of the ids on a down server: {} stores tried, {} failed",
        tried.len(),
        failed.len()
    );
    assert!(failed.len() > 30, "the test exercised the retry");
    for id in &created {
        assert!(!failed.contains(id), "a session kept an id that failed");
        let s = store.load(Some(id), None).await.unwrap();
        assert_eq!(s.get::<u64>("n").unwrap(), Some(1));
    }
    let all: HashSet<&String> = tried.iter().map(|t| &t.0).collect();
    assert_eq!(all.len(), tried.len(), "no id was tried twice");
}

#[tokio::test]
async fn a_store_down_as_a_whole_fails_after_bounded_tries_and_never_reuses_an_id() {
    let driver = PartlyDown::new(Down::Fast, true);
    let store = SessionStore::builder_dyn(driver.clone()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("n", &1u64).unwrap();
    let err = s.flush().await.unwrap_err();
    assert!(
        matches!(&err, cgi_session_core::Error::Driver(d) if d.is_unavailable()),
        "{err}"
    );
    let first = driver.tried();
    assert!(
        (2..=16).contains(&first.len()),
        "{} tries: bounded",
        first.len()
    );
    // The session now holds an id never tried: flushing again (a retry) sends none of the
    // ids that failed.
    let now = s.id().unwrap().as_str().to_owned();
    assert!(first.iter().all(|(id, _)| *id != now));
    let _ = s.flush().await.unwrap_err();
    let all = driver.tried();
    let distinct: HashSet<&String> = all.iter().map(|t| &t.0).collect();
    assert_eq!(distinct.len(), all.len(), "an id was tried twice");
}

#[tokio::test]
async fn failures_that_wait_for_a_timeout_end_the_retries_early() {
    for down in [
        Down::Slow(Duration::from_millis(150)),
        Down::Unknown(Duration::from_millis(150)),
    ] {
        let driver = PartlyDown::new(down, true);
        let store = SessionStore::builder_dyn(driver.clone()).build();
        let mut s = store.new_session(None, None).await.unwrap();
        let started = Instant::now();
        let err = s.flush().await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(
            driver.tried().len(),
            2,
            "{down:?}: two slow failures, then the error"
        );
        assert!(took < Duration::from_secs(2), "{down:?}: {took:?}");
        if matches!(down, Down::Unknown(_)) {
            assert!(err.outcome_unknown(), "{err}");
        } else {
            assert!(!err.outcome_unknown(), "{err}");
        }
    }
}

#[tokio::test]
async fn an_existing_session_on_the_down_server_fails_instead_of_starting_over() {
    let driver = PartlyDown::new(Down::Fast, false);
    let store = SessionStore::builder_dyn(driver.clone()).build();
    let id = (0..)
        .map(|i| format!("{i:03}{}", "a".repeat(29)))
        .find(|id| id.as_bytes()[0].is_multiple_of(3))
        .unwrap();
    let err = store.new_session(Some(&id), None).await.unwrap_err();
    assert!(
        matches!(&err, cgi_session_core::Error::Driver(d) if d.is_unavailable()),
        "{err}"
    );
    assert!(driver.tried().is_empty(), "no new session was stored");
}
