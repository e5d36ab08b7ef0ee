//! The engine's protocol, exercised through its own functions (`load`, `save`, `merge`)
//! rather than through `SessionStore`: merging concurrent changes, the conflict policies,
//! access-time write-back, and the warning for ip matching without a client address.

use std::io;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::load::{atime_write_back_due, load_for_update, load_request};
use super::merge::submit;
use super::save::flush;
use super::{Inner, Job, Session};
use crate::clock::ManualClock;
use crate::config::{Config, ConflictPolicy};
use crate::driver::memory::MemoryDriver;
use crate::error::Error;
use crate::id::SessionId;

const START: i64 = 1_700_000_000;

fn store_with(config: impl FnOnce(&mut Config)) -> (Arc<Inner>, ManualClock) {
    let clock = ManualClock::new(START);
    let mut settings = Config::new(Arc::new(MemoryDriver::new().with_clock(clock.clone())));
    settings.clock = Arc::new(clock.clone());
    config(&mut settings);
    (Arc::new(Inner::new(settings)), clock)
}

/// A session stored under a fresh id with `n = 0`, created from `addr`.
async fn stored_session(store: &Arc<Inner>, addr: Option<&str>) -> SessionId {
    let id = store.generate_id().await.unwrap();
    let mut session = Session::create(store, id.clone(), false, addr, false);
    session.set("n", &0).unwrap();
    flush(&mut session).await.unwrap();
    id
}

async fn load(store: &Arc<Inner>, id: &SessionId) -> Session {
    let session = load_request(store, Some(id.as_str()), None).await.unwrap();
    assert_eq!(session.id(), Some(id), "the session is found");
    session
}

/// What is stored now, read as the engine reads it for a save.
async fn stored(store: &Arc<Inner>, id: &SessionId) -> serde_json::Value {
    let mut session = load_for_update(store, id).await.unwrap();
    session.discard();
    serde_json::Value::Object(session.params().to_map())
}

/// Two requests that loaded the same version of a stored session (`n = 0`) under `policy`:
/// the first sets `a`, the second `b`.
async fn two_requests(policy: ConflictPolicy) -> (Arc<Inner>, SessionId, Session, Session) {
    let (store, _) = store_with(|c| c.conflict = policy);
    let id = stored_session(&store, None).await;
    let mut a = load(&store, &id).await;
    let mut b = load(&store, &id).await;
    a.set("a", &1).unwrap();
    b.set("b", &2).unwrap();
    (store, id, a, b)
}

#[tokio::test]
async fn saves_of_different_parameters_from_one_version_are_merged() {
    let (store, id, mut a, mut b) = two_requests(ConflictPolicy::Merge).await;
    flush(&mut a).await.unwrap();
    // `b` still holds the version before `a`'s write: its change is re-applied onto a's.
    flush(&mut b).await.unwrap();
    assert_eq!(stored(&store, &id).await, json!({"n": 0, "a": 1, "b": 2}));
    assert_eq!(
        b.get::<i64>("a").unwrap(),
        Some(1),
        "b holds the copy written"
    );
}

/// The first save leads and writes its own change at once (in its own task); a save submitted
/// meanwhile from the same stale copy starts from the copy the leader wrote, not from a read,
/// and is written after it: both changes are kept. (Saves that queue while a write is in
/// flight share one write: `tests/group_commit.rs`.)
#[tokio::test(flavor = "current_thread")]
async fn a_save_submitted_with_the_leaders_starts_from_the_copy_it_wrote() {
    let (store, id, mut a, mut b) = two_requests(ConflictPolicy::Merge).await;
    let job = |s: &mut Session| {
        let delta = s.changes.delta(&s.record);
        s.discard();
        Job::new(Some(delta), None, ConflictPolicy::Merge, Some(s.base()))
    };
    let (job_a, job_b) = (job(&mut a), job(&mut b));
    let before = store.stats.snapshot();
    let (ra, rb) = tokio::join!(submit(&store, &id, job_a), submit(&store, &id, job_b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        ra.record.params.to_map(),
        json!({"n": 0, "a": 1}).as_object().unwrap().clone()
    );
    assert_eq!(
        rb.record.params.to_map(),
        json!({"n": 0, "a": 1, "b": 2}).as_object().unwrap().clone(),
        "b's change applied onto the copy a wrote"
    );
    let after = store.stats.snapshot();
    assert_eq!(after.writes, before.writes + 2, "one write each");
    assert_eq!(after.conflicts, before.conflicts, "no write was refused");
    assert_eq!(after.loads, before.loads, "no fresh read");
    assert_eq!(stored(&store, &id).await, json!({"n": 0, "a": 1, "b": 2}));
}

#[tokio::test]
async fn the_error_policy_refuses_a_save_from_a_stale_copy() {
    let (store, id, mut a, mut b) = two_requests(ConflictPolicy::Error).await;
    flush(&mut a).await.unwrap();
    let refused = flush(&mut b).await;
    assert!(
        matches!(refused, Err(Error::Conflict { ref id, .. }) if *id == *b.id().unwrap()),
        "{refused:?}"
    );
    assert_eq!(stored(&store, &id).await, json!({"n": 0, "a": 1}));
    b.discard();
}

#[tokio::test]
async fn last_write_wins_writes_the_request_copy_over_the_stored_one() {
    let (store, id, mut a, mut b) = two_requests(ConflictPolicy::LastWriteWins).await;
    flush(&mut a).await.unwrap();
    flush(&mut b).await.unwrap();
    // CGI::Session's way: b's whole copy replaces the session, a's change is lost.
    assert_eq!(stored(&store, &id).await, json!({"n": 0, "b": 2}));
}

#[test]
fn the_access_time_is_written_back_once_half_the_idle_timeout_passed() {
    assert!(!atime_write_back_due(Some(100), START, START + 49));
    assert!(atime_write_back_due(Some(100), START, START + 50));
    assert!(!atime_write_back_due(None, START, START + 1_000_000));
    assert!(!atime_write_back_due(Some(-1), START, START + 1_000_000));
    assert!(
        atime_write_back_due(Some(1), START, START + 1),
        "at least a second"
    );
}

/// A read-only request loads the session `elapsed` seconds after it was written (idle timeout
/// 100 s) and flushes; returns whether that wrote, and the stored access time after it.
async fn read_only_request_after(elapsed: i64) -> (bool, i64) {
    let (store, clock) = store_with(|c| c.default_expire = Some(100));
    let id = stored_session(&store, None).await;
    clock.advance(elapsed);
    let mut session = load(&store, &id).await;
    assert!(
        !session.changes.any_but_atime(),
        "the request changed nothing"
    );
    assert_eq!(
        session.atime(),
        START + elapsed,
        "the loaded session's atime is now"
    );
    let writes_before = store.stats.snapshot().writes;
    flush(&mut session).await.unwrap();
    let wrote = store.stats.snapshot().writes > writes_before;
    // A load sets the in-memory atime to now: read the stored one.
    let bytes = store.driver.load(&id, None).await.unwrap().unwrap().data;
    let record = super::decode(&store, &id, bytes.into()).unwrap();
    (wrote, record.atime)
}

#[tokio::test]
async fn a_read_only_session_old_enough_gets_its_access_time_written_back() {
    let (wrote, atime) = read_only_request_after(50).await;
    assert!(wrote, "half the idle timeout passed: written back");
    assert_eq!(atime, START + 50);
}

#[tokio::test]
async fn a_read_only_session_not_old_enough_is_not_written() {
    let (wrote, atime) = read_only_request_after(49).await;
    assert!(!wrote, "less than half the idle timeout passed: no write");
    assert_eq!(atime, START, "the stored access time is the creation's");
}

/// Captures what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn ip_matching_without_a_client_address_warns_once_per_store() {
    const WARNING: &str = "ip matching is on but a session was loaded without the client's address";
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    // The test's runtime runs on this thread only: every event of the loads below is seen.
    let _guard = tracing::subscriber::set_default(subscriber);

    let (store, _) = store_with(|c| c.ip_match = true);
    let id = stored_session(&store, Some("192.0.2.7")).await;
    let with_addr = load_request(&store, Some(id.as_str()), Some("192.0.2.7")).await;
    assert_eq!(with_addr.unwrap().id(), Some(&id));
    assert_eq!(
        captured.count(WARNING),
        0,
        "an address was given: no warning"
    );
    for _ in 0..3 {
        // Without an address the address cannot be checked: the session is given as before.
        let session = load_request(&store, Some(id.as_str()), None).await.unwrap();
        assert_eq!(session.id(), Some(&id));
    }
    assert_eq!(
        captured.count(WARNING),
        1,
        "once per store, not per request"
    );
    let full_id_logged = captured.count(id.as_str());
    assert_eq!(full_id_logged, 0, "the full session id is never logged");

    let (other, _) = store_with(|c| c.ip_match = true);
    let id = stored_session(&other, Some("192.0.2.7")).await;
    let _ = load_request(&other, Some(id.as_str()), None).await.unwrap();
    assert_eq!(captured.count(WARNING), 2, "another store warns once too");

    let (off, _) = store_with(|_| {});
    let id = stored_session(&off, Some("192.0.2.7")).await;
    let _ = load_request(&off, Some(id.as_str()), None).await.unwrap();
    assert_eq!(
        captured.count(WARNING),
        2,
        "ip matching off: nothing to warn about"
    );
}
