//! The metrics a store records (see `cgi_session_core::observe`), read back from a local
//! recorder after known traffic: loads by result, saves, conflicts and retries, deletes,
//! regenerations, lock waits, operation latencies and store errors.

use std::collections::HashMap;
use std::future::Future;

use cgi_session_core::{observe, DriverError, ManualClock, MemoryDriver, SessionId, SessionStore};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Runs `test` on a current-thread runtime with a recorder of its own (spawned tasks run on
/// this thread too, so they record into it), and returns what was recorded.
fn recorded<F: Future<Output = ()>>(test: impl FnOnce() -> F) -> Metrics {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test());
    });
    Metrics::from(&snapshotter)
}

/// `name{label="value",...}` -> value (counters), or the number of samples (histograms).
struct Metrics(HashMap<String, u64>);

impl Metrics {
    fn from(snapshotter: &Snapshotter) -> Self {
        let mut map = HashMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = if labels.is_empty() {
                key.name().to_owned()
            } else {
                format!("{}{{{}}}", key.name(), labels.join(","))
            };
            let n = match value {
                DebugValue::Counter(n) => n,
                DebugValue::Histogram(samples) => samples.len() as u64,
                DebugValue::Gauge(_) => continue,
            };
            map.insert(name, n);
        }
        Metrics(map)
    }

    fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }
}

#[test]
fn loads_count_hits_misses_and_expiries_and_saves_count_writes() {
    let m = recorded(|| async {
        let clock = ManualClock::new(1_000_000);
        let store = SessionStore::builder(MemoryDriver::new().with_clock(clock.clone()))
            .clock(clock.clone())
            .default_expire(60)
            .build();
        // A request without an id: no load counted; its save is.
        let mut s = store.new_session(None, None).await.unwrap();
        s.set("n", &1).unwrap();
        s.flush().await.unwrap();
        let id = s.id().unwrap().as_str().to_owned();
        // Three hits; the second changes the session, the others save nothing.
        for n in 0..3 {
            let mut s = store.new_session(Some(&id), None).await.unwrap();
            assert!(!s.is_new());
            if n == 1 {
                s.set("n", &2).unwrap();
            }
            s.flush().await.unwrap();
        }
        // Two misses: an id nothing is stored under, and a malformed one.
        assert!(store
            .load(Some("0123456789abcdef0123456789abcdef"), None)
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .load(Some("not an id"), None)
            .await
            .unwrap()
            .is_empty());
        // One expiry.
        clock.advance(61);
        let expired = store.load(Some(&id), None).await.unwrap();
        assert!(expired.is_expired());
    });
    assert_eq!(m.get(r#"cgi_session_loads_total{result="hit"}"#), 3);
    assert_eq!(m.get(r#"cgi_session_loads_total{result="miss"}"#), 2);
    assert_eq!(m.get(r#"cgi_session_loads_total{result="expired"}"#), 1);
    assert_eq!(m.get(r#"cgi_session_loads_total{result="error"}"#), 0);
    assert_eq!(m.get(r#"cgi_session_operation_seconds{op="load"}"#), 6);
    assert_eq!(m.get(r#"cgi_session_saves_total{result="written"}"#), 2);
    assert_eq!(m.get(r#"cgi_session_operation_seconds{op="save"}"#), 2);
    // Reads sent: the three hits, the miss and the expired session (not the malformed id).
    assert_eq!(m.get(observe::STORE_READS_TOTAL), 5);
}

#[test]
fn a_save_onto_a_copy_another_process_changed_counts_a_conflict_and_a_retry() {
    let m = recorded(|| async {
        let driver = MemoryDriver::new();
        // Two "processes" sharing the store's data.
        let one = SessionStore::builder(driver.clone()).build();
        let two = SessionStore::builder(driver).build();
        let mut s = one.new_session(None, None).await.unwrap();
        s.flush().await.unwrap();
        let id = s.id().unwrap().as_str().to_owned();
        let mut a = one.load(Some(&id), None).await.unwrap();
        let mut b = two.load(Some(&id), None).await.unwrap();
        a.set("a", &1).unwrap();
        a.flush().await.unwrap();
        b.set("b", &2).unwrap();
        b.flush().await.unwrap();
        assert_eq!(
            b.get::<i64>("a").unwrap(),
            Some(1),
            "merged onto the fresh copy"
        );
        // A delete and a regeneration.
        let mut c = one.load(Some(&id), None).await.unwrap();
        c.regenerate_id().await.unwrap();
        c.delete();
        c.flush().await.unwrap();
    });
    assert_eq!(m.get(observe::SAVE_CONFLICTS_TOTAL), 1);
    assert_eq!(m.get(observe::SAVE_RETRIES_TOTAL), 1);
    assert_eq!(m.get(r#"cgi_session_saves_total{result="written"}"#), 3);
    assert_eq!(m.get(r#"cgi_session_regenerations_total{result="ok"}"#), 1);
    assert_eq!(m.get(r#"cgi_session_deletes_total{result="ok"}"#), 1);
    assert_eq!(m.get(r#"cgi_session_operation_seconds{op="delete"}"#), 1);
    assert_eq!(
        m.get(r#"cgi_session_operation_seconds{op="regenerate"}"#),
        1
    );
}

#[test]
fn a_save_refused_under_the_error_policy_counts_as_a_conflict() {
    let m = recorded(|| async {
        let store = SessionStore::builder(MemoryDriver::new())
            .conflict_policy(cgi_session_core::ConflictPolicy::Error)
            .build();
        let mut s = store.new_session(None, None).await.unwrap();
        s.flush().await.unwrap();
        let id = s.id().unwrap().as_str().to_owned();
        let mut a = store.load(Some(&id), None).await.unwrap();
        let mut b = store.load(Some(&id), None).await.unwrap();
        a.set("a", &1).unwrap();
        a.flush().await.unwrap();
        b.set("b", &2).unwrap();
        assert!(b.flush().await.is_err());
        b.discard();
    });
    assert_eq!(m.get(r#"cgi_session_saves_total{result="written"}"#), 2);
    assert_eq!(m.get(r#"cgi_session_saves_total{result="conflict"}"#), 1);
}

#[test]
fn a_lock_taken_while_held_counts_a_wait() {
    let m = recorded(|| async {
        let store = SessionStore::builder(MemoryDriver::new()).build();
        let id = SessionId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let first = store.lock(&id).await.unwrap();
        let waiting = tokio::spawn({
            let (store, id) = (store.clone(), id.clone());
            async move { store.lock(&id).await }
        });
        while store.stats().lock_waits == 0 {
            tokio::task::yield_now().await;
        }
        assert!(first.release().await.unwrap());
        let second = waiting.await.unwrap().unwrap();
        assert!(second.release().await.unwrap());
    });
    assert_eq!(m.get(observe::LOCKS_ACQUIRED_TOTAL), 2);
    assert_eq!(m.get(observe::LOCK_WAITS_TOTAL), 1);
    assert_eq!(m.get(observe::LOCK_TIMEOUTS_TOTAL), 0);
    assert_eq!(m.get(observe::LOCK_WAIT_SECONDS), 2);
}

#[test]
fn store_errors_are_counted_by_driver_server_and_kind() {
    let m = recorded(|| async {
        let down = DriverError::Unavailable {
            driver: "memcache",
            source: "connection refused".into(),
        };
        observe::record_store_error("memcache", Some("127.0.0.1:1"), &down);
        observe::record_store_error("memcache", Some("127.0.0.1:1"), &down);
        observe::record_store_error("file", None, &down);
    });
    assert_eq!(
        m.get(r#"cgi_session_store_errors_total{driver="memcache",kind="unavailable",server="127.0.0.1:1"}"#),
        2
    );
    assert_eq!(
        m.get(r#"cgi_session_store_errors_total{driver="file",kind="unavailable",server=""}"#),
        1
    );
}

#[test]
fn a_file_driver_failure_is_a_store_error_of_the_file_driver() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = dir.path().join("sessions");
    std::fs::create_dir(&sessions).unwrap();
    let metrics = recorded(|| async {
        let store =
            SessionStore::builder(cgi_session_core::FileDriver::new(&sessions).unwrap()).build();
        // The directory goes away under the store: writing a session fails.
        std::fs::remove_dir(&sessions).unwrap();
        let mut s = store.new_session(None, None).await.unwrap();
        s.set("n", &1).unwrap();
        assert!(s.flush().await.is_err());
        s.discard();
    });
    assert!(
        metrics.get("cgi_session_store_errors_total{driver=\"file\",kind=\"other\",server=\"\"}")
            >= 1,
        "{:?}",
        metrics.0
    );
}
