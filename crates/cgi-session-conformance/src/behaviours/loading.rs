//! Loading: what a read costs, what ids reach the driver, bad bytes, ip matching, expiry.

use std::sync::atomic::Ordering;

use cgi_session_core::{Error, SessionId, StoreMode, StoreOutcome};

use super::{clock, id_of};
use crate::{store_builder, Counting, Fixture};

/// Fix: loading and flushing a session that was not changed writes nothing (CGI::Session
/// rewrites every loaded session).
pub async fn untouched_session_is_not_rewritten(f: Fixture) {
    let counting = Counting::new(f.driver.clone());
    let store = store_builder(counting.clone(), &clock()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("k", "v").unwrap();
    s.flush().await.unwrap();
    let id = id_of(&s);
    let stores = counting.stores.load(Ordering::SeqCst);
    let mut s = store.new_session(Some(&id), None).await.unwrap();
    assert_eq!(s.get::<String>("k").unwrap().as_deref(), Some("v"));
    s.set("k", "v").unwrap(); // the same value: not a change
    assert!(!s.is_modified());
    s.flush().await.unwrap();
    assert_eq!(counting.stores.load(Ordering::SeqCst), stores, "no rewrite");
    assert_eq!(counting.removes.load(Ordering::SeqCst), 0);
}

/// Fix: a request that only reads a session (no idle timeout) costs exactly one driver call.
pub async fn read_only_load_is_one_driver_call(f: Fixture) {
    let counting = Counting::new(f.driver.clone());
    let store = store_builder(counting.clone(), &clock())
        .default_expire(3600)
        .build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("name", "ann").unwrap();
    s.flush().await.unwrap();
    let id = id_of(&s);
    let before = counting.total();
    let mut s = store.load(Some(&id), None).await.unwrap();
    assert_eq!(s.get::<String>("name").unwrap().as_deref(), Some("ann"));
    s.flush().await.unwrap();
    assert_eq!(counting.total() - before, 1, "one load, nothing else");
}

/// Fix: claimed ids that are not well formed are treated as no id and never reach a driver.
pub async fn malformed_ids_never_reach_the_driver(f: Fixture) {
    let counting = Counting::new(f.driver.clone());
    let store = store_builder(counting.clone(), &clock()).build();
    let long = "a".repeat(300);
    for bad in [
        "",
        " ",
        "abc def",
        "abc\r\nset sessions:x 0 0 1\r\nx",
        "a\0b",
        "../../etc/passwd",
        "a/b",
        "a\\b",
        "..",
        "ünï",
        long.as_str(),
    ] {
        let s = store.load(Some(bad), None).await.unwrap();
        assert!(s.is_empty(), "{bad:?}");
        let mut s = store.new_session(Some(bad), None).await.unwrap();
        assert!(s.is_new());
        s.discard();
    }
    assert_eq!(counting.loads.load(Ordering::SeqCst), 0);
    assert_eq!(counting.stores.load(Ordering::SeqCst), 0);
}

/// Bad stored bytes: `load` gives a distinct error, `new` issues a fresh session, and the
/// stored bytes are left untouched.
pub async fn corrupt_bytes_are_an_error_and_left_alone(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let garbage: &[&[u8]] = &[
        b"\xff\xfe not json",
        b"{\"user\":",
        b"[1,2,3]",
        b"{\"no_session_id\":1}",
        b"{\"_SESSION_ID\":\"someone-else\",\"_SESSION_CTIME\":1}",
    ];
    for (n, bytes) in garbage.iter().enumerate() {
        let id = SessionId::parse(&format!("corrupt{n}")).unwrap();
        let stored = f
            .driver
            .store(&id, bytes, StoreMode::Create, None)
            .await
            .unwrap();
        assert!(matches!(stored, StoreOutcome::Stored(_)));
        let err = store.load(Some(id.as_str()), None).await.unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(!err.to_string().contains(id.as_str()) || id.as_str().len() <= 8);
        let mut fresh = store.new_session(Some(id.as_str()), None).await.unwrap();
        assert_ne!(fresh.id().unwrap(), &id);
        fresh.discard();
        let still = f.driver.load(&id, None).await.unwrap().unwrap();
        assert_eq!(still.data, *bytes, "stored bytes left alone");
    }
}

/// Fix: with ip matching, a request from another address gets a fresh session and the stored
/// session survives (CGI::Session deleted it).
pub async fn ip_mismatch_keeps_the_stored_session(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock())
        .ip_match(true)
        .build();
    let mut s = store.new_session(None, Some("192.0.2.7")).await.unwrap();
    assert_eq!(s.remote_addr(), Some("192.0.2.7"));
    s.set("user", "victim").unwrap();
    s.flush().await.unwrap();
    let id = id_of(&s);
    let mut other = store
        .new_session(Some(&id), Some("198.51.100.1"))
        .await
        .unwrap();
    assert_ne!(id_of(&other), id);
    assert!(other.get_value("user").is_none());
    other.discard();
    let owner = store.load(Some(&id), Some("192.0.2.7")).await.unwrap();
    assert_eq!(
        owner.get::<String>("user").unwrap().as_deref(),
        Some("victim")
    );
}

/// A parameter with its own timeout is removed once it passes; the others stay and the
/// expire-list entry stays (as in CGI::Session).
pub async fn per_parameter_expiry_removes_only_that_parameter(f: Fixture) {
    let clock = clock();
    let store = store_builder(f.driver.clone(), &clock).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("logged_in", &true).unwrap();
    s.set("user", "ann").unwrap();
    s.set_param_expire_str("logged_in", "+5m").unwrap();
    assert_eq!(s.param_expire("logged_in"), Some(300));
    s.flush().await.unwrap();
    let id = id_of(&s);
    clock.advance(299);
    let mut s = store.load(Some(&id), None).await.unwrap();
    assert!(s.get_value("logged_in").is_some(), "not yet");
    s.flush().await.unwrap();
    clock.advance(300);
    let mut s = store.load(Some(&id), None).await.unwrap();
    assert!(s.get_value("logged_in").is_none());
    assert_eq!(s.get::<String>("user").unwrap().as_deref(), Some("ann"));
    assert_eq!(s.param_expire("logged_in"), Some(300));
    s.flush().await.unwrap();
    let s = store.load(Some(&id), None).await.unwrap();
    assert!(s.get_value("logged_in").is_none(), "the removal was saved");
}

/// A session that is read more often than its idle timeout stays alive even though reads do
/// not rewrite it every time.
pub async fn sliding_expiry_keeps_an_active_session(f: Fixture) {
    let clock = clock();
    let store = store_builder(f.driver.clone(), &clock).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set_expire(100);
    s.set("n", &1).unwrap();
    s.flush().await.unwrap();
    let id = id_of(&s);
    for _ in 0..5 {
        clock.advance(60);
        let mut s = store.load(Some(&id), None).await.unwrap();
        assert!(!s.is_empty(), "an active session must not expire");
        s.flush().await.unwrap();
    }
    clock.advance(101);
    let s = store.load(Some(&id), None).await.unwrap();
    assert!(s.is_expired(), "an idle one must");
}
