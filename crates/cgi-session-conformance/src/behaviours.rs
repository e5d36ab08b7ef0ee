//! The behaviours, one `pub async fn` each (see [`conformance_suite!`](crate::conformance_suite)).
//!
//! `b1_`..`b7_` follow the behaviour list of CGI::Session's generic driver test suite.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::time::Duration;

use cgi_session_core::{
    ConflictPolicy, Driver, DriverError, Error, IdGenerator, LockAttempt, ManualClock,
    SecureRandomIds, SessionId, StoreMode, StoreOutcome,
};
use serde_json::{json, Value};

use crate::{store_builder, Counting, Fixture};

fn clock() -> ManualClock {
    ManualClock::starting_now()
}

fn id_of(s: &cgi_session_core::Session) -> String {
    s.id().expect("session has an id").as_str().to_owned()
}

/// 1. `load` with no id: an empty session, not expired.
pub async fn b1_load_without_id_is_empty(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let s = store.load(None, None).await.unwrap();
    assert!(s.id().is_none());
    assert!(s.is_empty());
    assert!(!s.is_expired());
    assert!(!s.is_new());
}

/// 2. `new` with an unknown id issues a fresh id (strict); scalar, array and hash values
///    (with odd keys) round-trip in memory; `names` lists 3.
pub async fn b2_new_with_unknown_id_gets_fresh_id_and_keeps_values(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let claimed = "0123456789abcdef0123456789abcdef";
    let mut s = store.new_session(Some(claimed), None).await.unwrap();
    assert_ne!(
        id_of(&s),
        claimed,
        "an unknown claimed id must not be adopted"
    );
    assert!(s.is_new());
    assert_eq!(s.ctime(), s.atime());
    assert_eq!(s.expire(), None);
    s.set("author", "Sherzod Ruzmetov").unwrap();
    s.set("emails", &["sherzodr@cpan.org", "sherzodr@handalak.com"])
        .unwrap();
    s.set(
        "blogs",
        &json!({"./lost+found": "http://author.handalak.com/", "Yigitlik": "http://yigitlik.uz/"}),
    )
    .unwrap();
    assert_eq!(s.names().len(), 3);
    assert_eq!(
        s.get::<Vec<String>>("emails").unwrap().unwrap()[1],
        "sherzodr@handalak.com"
    );
    assert_eq!(
        s.get_value("blogs").unwrap()["./lost+found"],
        "http://author.handalak.com/"
    );
    s.flush().await.unwrap();
    assert!(!s.is_new(), "flush clears is_new");
}

/// 3. Reloading a second later: same id, not expired, atime > ctime, values intact.
pub async fn b3_reload_keeps_id_values_and_times(f: Fixture) {
    let clock = clock();
    let store = store_builder(f.driver.clone(), &clock).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("author", "Sherzod").unwrap();
    s.set("emails", &["a@x", "b@x"]).unwrap();
    s.set(
        "blogs",
        &json!({"./lost+found": "x", "nested": {"deep": [1, 2]}}),
    )
    .unwrap();
    s.flush().await.unwrap();
    let id = id_of(&s);
    clock.advance(1);
    let s = store.load(Some(&id), None).await.unwrap();
    assert_eq!(id_of(&s), id);
    assert!(!s.is_expired());
    assert!(s.atime() > s.ctime());
    assert_eq!(s.names().len(), 3);
    assert_eq!(
        s.get_value("blogs").unwrap()["nested"]["deep"],
        json!([1, 2])
    );
    for (t, v) in [
        ("+1s", 1),
        ("+1m", 60),
        ("2h", 7200),
        ("5d", 432_000),
        ("-10s", -10),
        ("1s", 1),
    ] {
        assert_eq!(cgi_session_core::parse_expire(t).unwrap(), v);
    }
}

/// 4. Once the idle timeout passed, `load` gives an empty, expired session, the data is gone
///    from the store, and a new session gets a different fresh id.
pub async fn b4_expired_session_is_empty_and_removed(f: Fixture) {
    let clock = clock();
    let store = store_builder(f.driver.clone(), &clock).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("author", "x").unwrap();
    s.set_expire_str("+1s").unwrap();
    s.flush().await.unwrap();
    let id = id_of(&s);
    clock.advance(2);
    let s = store.load(Some(&id), None).await.unwrap();
    assert!(s.id().is_none());
    assert!(s.is_empty());
    assert!(s.is_expired());
    assert!(s.get_value("author").is_none());
    let sid = SessionId::parse(&id).unwrap();
    assert!(
        f.driver.load(&sid, None).await.unwrap().is_none(),
        "an expired session is removed when loaded"
    );
    let fresh = store.new_session(None, None).await.unwrap();
    assert_ne!(id_of(&fresh), id);
    assert!(!fresh.is_expired());
    assert!(!fresh.is_empty());
    assert_eq!(fresh.atime(), fresh.ctime());
    let mut renewed = store.new_session(Some(&id), None).await.unwrap();
    assert_ne!(id_of(&renewed), id);
    renewed.discard();
}

/// 5. A session the driver removed directly is not found: `new(id)` issues another id.
pub async fn b5_session_removed_by_driver_gets_new_id(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.flush().await.unwrap();
    let id = id_of(&s);
    assert!(f
        .driver
        .remove(&SessionId::parse(&id).unwrap())
        .await
        .unwrap());
    let mut s = store.new_session(Some(&id), None).await.unwrap();
    assert_ne!(id_of(&s), id);
    assert!(s.is_new());
    s.discard();
}

/// 6. A flushed session is found again by `new(id)`; `delete` + `flush` removes it.
pub async fn b6_flushed_session_is_found_and_delete_removes_it(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let id = {
        let mut s = store.new_session(None, None).await.unwrap();
        s.set("k", "v").unwrap();
        s.flush().await.unwrap();
        id_of(&s)
    };
    let mut s = store.new_session(Some(&id), None).await.unwrap();
    assert_eq!(id_of(&s), id);
    assert!(!s.is_new());
    assert_eq!(s.get::<String>("k").unwrap().as_deref(), Some("v"));
    s.delete();
    s.flush().await.unwrap();
    let sid = SessionId::parse(&id).unwrap();
    assert!(f.driver.load(&sid, None).await.unwrap().is_none());
}

/// 7. After delete, `new(id)` gets a new id; an array with a null element and structured
///    values survive a reload.
pub async fn b7_after_delete_new_id_and_structured_values_survive(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.flush().await.unwrap();
    let id = id_of(&s);
    s.delete();
    s.flush().await.unwrap();
    let mut s = store.new_session(Some(&id), None).await.unwrap();
    assert_ne!(id_of(&s), id);
    let value = json!([1, null, "three", {"four": [4.5, {"five": true}]}, "ünïcödé ☺"]);
    s.set_value("list", value.clone()).unwrap();
    s.flush().await.unwrap();
    let new_id = id_of(&s);
    let s = store.load(Some(&new_id), None).await.unwrap();
    assert_eq!(s.get_value("list"), Some(&value));
}

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

/// Fix (RT#47794): two requests holding the same session and changing different keys both
/// keep their change (merge, the default policy).
pub async fn concurrent_changes_to_different_keys_merge(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("shared", "original").unwrap();
    s.set("gone", &1).unwrap();
    s.flush().await.unwrap();
    let id = id_of(&s);
    let mut a = store.load(Some(&id), None).await.unwrap();
    let mut b = store.load(Some(&id), None).await.unwrap();
    a.set("cart", &["book"]).unwrap();
    b.set("theme", "dark").unwrap();
    b.remove("gone");
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    assert_eq!(b.get::<Vec<String>>("cart").unwrap().unwrap(), ["book"]);
    let s = store.load(Some(&id), None).await.unwrap();
    assert_eq!(s.get::<Vec<String>>("cart").unwrap().unwrap(), ["book"]);
    assert_eq!(s.get::<String>("theme").unwrap().as_deref(), Some("dark"));
    assert_eq!(
        s.get::<String>("shared").unwrap().as_deref(),
        Some("original")
    );
    assert!(s.get_value("gone").is_none());
}

/// The `Error` policy refuses a stale write; `LastWriteWins` overwrites (CGI::Session's way).
pub async fn conflict_policy_error_and_last_write_wins(f: Fixture) {
    let clock = clock();
    for policy in [ConflictPolicy::Error, ConflictPolicy::LastWriteWins] {
        let counting = Counting::new(f.driver.clone());
        let store = store_builder(counting.clone(), &clock)
            .conflict_policy(policy)
            .build();
        let mut s = store.new_session(None, None).await.unwrap();
        s.set("v", "0").unwrap();
        s.flush().await.unwrap();
        let id = id_of(&s);
        let mut a = store.load(Some(&id), None).await.unwrap();
        let mut b = store.load(Some(&id), None).await.unwrap();
        a.set("a", "1").unwrap();
        a.flush().await.unwrap();
        b.set("b", "2").unwrap();
        counting.take();
        let result = b.flush().await;
        let calls = counting.take();
        // No read: `LastWriteWins` writes at once (one unconditional write); `Error` gives up
        // at once (at most one refused write; none when this process knows the copy is stale).
        assert_eq!(calls.loads, 0, "{policy:?}: {calls:?}");
        match policy {
            ConflictPolicy::LastWriteWins => assert_eq!(calls.stores, 1, "{calls:?}"),
            _ => assert!(calls.stores <= 1, "{calls:?}"),
        }
        let s = store.load(Some(&id), None).await.unwrap();
        match policy {
            ConflictPolicy::Error => {
                assert!(matches!(result, Err(Error::Conflict { .. })), "{result:?}");
                b.discard();
                assert!(s.get_value("a").is_some() && s.get_value("b").is_none());
            }
            _ => {
                result.unwrap();
                assert!(s.get_value("a").is_none() && s.get_value("b").is_some());
            }
        }
    }
}

/// Fix: a session deleted (logout) while a slow request holds it does not come back when
/// that request saves.
pub async fn delete_while_held_is_not_resurrected(f: Fixture) {
    for policy in [
        ConflictPolicy::default(),
        ConflictPolicy::LastWriteWins,
        ConflictPolicy::Error,
    ] {
        let store = store_builder(f.driver.clone(), &clock())
            .conflict_policy(policy)
            .build();
        let mut s = store.new_session(None, None).await.unwrap();
        s.set("user", "ann").unwrap();
        s.flush().await.unwrap();
        let id = id_of(&s);
        let mut slow = store.load(Some(&id), None).await.unwrap();
        let mut logout = store.load(Some(&id), None).await.unwrap();
        logout.delete();
        logout.flush().await.unwrap();
        slow.set("cart", &["book"]).unwrap();
        let err = slow.flush().await.unwrap_err();
        assert!(matches!(err, Error::Gone { .. }), "{policy:?}: {err}");
        let sid = SessionId::parse(&id).unwrap();
        assert!(
            f.driver.load(&sid, None).await.unwrap().is_none(),
            "{policy:?}"
        );
    }
}

/// Fix: 8 concurrent workers incrementing one counter through `update` lose no increment.
pub async fn atomic_updates_from_8_workers_lose_nothing(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("counter", &0).unwrap();
    s.flush().await.unwrap();
    let id = id_of(&s);
    let per_worker = f.increments_per_worker;
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                for _ in 0..per_worker {
                    store
                        .update(&id, |s| {
                            let n = s.get::<u64>("counter")?.unwrap_or(0);
                            s.set("counter", &(n + 1))
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let s = store.load(Some(&id), None).await.unwrap();
    assert_eq!(
        s.get::<u64>("counter").unwrap(),
        Some(8 * u64::from(per_worker))
    );
}

/// Fix: `regenerate_id` moves the data to a new id and removes the old record.
pub async fn regenerate_id_moves_data_and_removes_old_record(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("cart", &["book"]).unwrap();
    s.flush().await.unwrap();
    let old = id_of(&s);
    s.set("user", "ann").unwrap();
    s.regenerate_id().await.unwrap();
    let new = id_of(&s);
    assert_ne!(old, new);
    assert!(!s.needs_flush());
    let old_sid = SessionId::parse(&old).unwrap();
    assert!(f.driver.load(&old_sid, None).await.unwrap().is_none());
    let s = store.load(Some(&new), None).await.unwrap();
    assert_eq!(s.get::<Vec<String>>("cart").unwrap().unwrap(), ["book"]);
    assert_eq!(s.get::<String>("user").unwrap().as_deref(), Some("ann"));
    let fixated = store.load(Some(&old), None).await.unwrap();
    assert!(fixated.is_empty());
}

/// `find` visits every live session, deletes expired ones on the way, and stops on `Break`;
/// drivers that cannot list sessions say so.
pub async fn find_visits_sessions_and_drops_expired(f: Fixture) {
    let clock = clock();
    let store = store_builder(f.driver.clone(), &clock).build();
    let mut ids = Vec::new();
    for n in 0..3 {
        let mut s = store.new_session(None, None).await.unwrap();
        s.set("n", &n).unwrap();
        if n == 2 {
            s.set_expire(10);
        }
        s.flush().await.unwrap();
        ids.push(id_of(&s));
    }
    clock.advance(11);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let result = store
        .find(move |s| {
            let seen = seen2.clone();
            async move {
                seen.lock().unwrap().push(id_of(&s));
                ControlFlow::Continue(())
            }
        })
        .await;
    if !f.supports_listing {
        let err = result.unwrap_err();
        assert!(err.to_string().contains("does not support"), "{err}");
        return;
    }
    result.unwrap();
    let seen = seen.lock().unwrap().clone();
    for id in &ids[..2] {
        assert!(seen.contains(id), "find missed a live session");
    }
    assert!(!seen.contains(&ids[2]), "find visited an expired session");
    let expired = SessionId::parse(&ids[2]).unwrap();
    assert!(f.driver.load(&expired, None).await.unwrap().is_none());
    let mut count = 0;
    store
        .find(|_s| {
            count += 1;
            async { ControlFlow::Break(()) }
        })
        .await
        .unwrap();
    assert_eq!(count, 1, "Break stops the traversal");
}

/// [`Driver::list`] reports every stored session once with what the driver knows of it: a
/// size no smaller than the stored bytes, a recent last access, a store expiry in the future.
pub async fn listing_reports_size_access_and_expiry(f: Fixture) {
    let d: &dyn Driver = f.driver.as_ref();
    let id = SessionId::parse("listing0123456789").unwrap();
    let data = vec![b'x'; 100];
    d.store(
        &id,
        &data,
        StoreMode::Create,
        Some(Duration::from_secs(600)),
    )
    .await
    .unwrap();
    let mut listed = Vec::new();
    let result = d
        .list(&mut |s| {
            listed.push(s);
            ControlFlow::Continue(())
        })
        .await;
    if !f.supports_listing {
        assert!(
            matches!(result, Err(DriverError::Unsupported { .. })),
            "{result:?}"
        );
        return;
    }
    result.unwrap();
    let mine: Vec<_> = listed.iter().filter(|s| s.id == id).collect();
    assert_eq!(mine.len(), 1, "listed once: {listed:?}");
    let s = mine[0];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if let Some(size) = s.size {
        assert!(size >= 100, "size {size} is smaller than the stored bytes");
    }
    if let Some(at) = s.last_access {
        assert!(
            (now - 120..=now + 120).contains(&at),
            "last access {at}, now {now}"
        );
    }
    if let Some(at) = s.expires_at {
        assert!(
            at > now - 120,
            "store expiry {at} is in the past (now {now})"
        );
    }
    assert!(d.remove(&id).await.unwrap());
}

/// `_SESSION_*` names are refused; typed reads of the wrong type fail clearly.
pub async fn reserved_names_and_typed_reads(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    assert!(matches!(
        s.set("_SESSION_ID", "evil"),
        Err(Error::ReservedName(_))
    ));
    s.set("n", "not a number").unwrap();
    assert!(matches!(s.get::<u32>("n"), Err(Error::ParamType { .. })));
    assert_eq!(s.get::<u32>("missing").unwrap(), None);
    s.clear();
    assert!(s.names().is_empty());
    s.set("a", &1).unwrap();
    s.set("b", &2).unwrap();
    s.set("c", &3).unwrap();
    s.clear_names(["a", "b"]);
    assert_eq!(s.names(), ["c"]);
    assert!(!s.dump().contains(s.id().unwrap().as_str()));
    assert!(!format!("{s:?}").contains(s.id().unwrap().as_str()));
    s.flush().await.unwrap();
    assert_eq!(
        s.get_value("c"),
        Some(&Value::from(3)),
        "values survive flush"
    );
}

/// The driver's own contract: create is an add, replace never recreates, versions detect
/// concurrent writes, remove reports what it did.
pub async fn driver_contract_create_replace_remove(f: Fixture) {
    let d: &dyn Driver = f.driver.as_ref();
    let id = SessionId::parse("contract0123").unwrap();
    assert!(d.load(&id, None).await.unwrap().is_none());
    assert_eq!(
        d.store(&id, b"x", StoreMode::Replace { expected: None }, None)
            .await
            .unwrap(),
        StoreOutcome::NotFound
    );
    let StoreOutcome::Stored(v1) = d.store(&id, b"one", StoreMode::Create, None).await.unwrap()
    else {
        panic!("create failed")
    };
    assert_eq!(
        d.store(&id, b"two", StoreMode::Create, None).await.unwrap(),
        StoreOutcome::Exists
    );
    let loaded = d.load(&id, None).await.unwrap().unwrap();
    assert_eq!(loaded.data, b"one");
    assert_eq!(loaded.version, v1);
    let outcome = d
        .store(&id, b"three", StoreMode::Replace { expected: v1 }, None)
        .await
        .unwrap();
    assert!(matches!(outcome, StoreOutcome::Stored(_)));
    if v1.is_some() {
        assert_eq!(
            d.store(&id, b"four", StoreMode::Replace { expected: v1 }, None)
                .await
                .unwrap(),
            StoreOutcome::Conflict,
            "a stale version must be refused"
        );
    }
    assert!(d.touch(&id, None).await.unwrap());
    assert!(d.remove(&id).await.unwrap());
    assert!(!d.remove(&id).await.unwrap());
    assert!(!d.touch(&id, None).await.unwrap());
}

/// Fix: many requests saving one session at once (a browser's parallel requests) all
/// succeed; changes to different parameters are all kept; for one parameter, one of the
/// values written is kept.
pub async fn concurrent_flushes_of_one_session_all_succeed(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.flush().await.unwrap();
    let id = id_of(&s);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let mut s = store.new_session(Some(&id), None).await.unwrap();
                s.set(&format!("k{i}"), &i).unwrap();
                s.set("last", &i).unwrap();
                s.flush().await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let s = store.load(Some(&id), None).await.unwrap();
    for i in 0..50 {
        assert_eq!(s.get::<u32>(&format!("k{i}")).unwrap(), Some(i), "k{i}");
    }
    assert!(s.get::<u32>("last").unwrap().is_some_and(|v| v < 50));
    assert_eq!(store.stats().contended, 0);
}

/// Fix: 50 concurrent requests, each loading the session and counting with
/// `Session::update`, lose no update, and every request sees a distinct count.
pub async fn session_updates_from_50_requests_lose_nothing(f: Fixture) {
    let store = store_builder(f.driver.clone(), &clock()).build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.flush().await.unwrap();
    let id = id_of(&s);
    let rounds = 10u64;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..rounds {
                    let mut s = store.new_session(Some(&id), None).await.unwrap();
                    let n = s
                        .update(|s| {
                            let n = s.get::<u64>("visits")?.unwrap_or(0) + 1;
                            s.set("visits", &n)?;
                            Ok(n)
                        })
                        .await
                        .unwrap();
                    // The session now holds the copy written: this count or a later one.
                    assert!(s.get::<u64>("visits").unwrap().unwrap() >= n);
                    seen.push(n);
                }
                seen
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let expected: Vec<u64> = (1..=50 * rounds).collect();
    assert_eq!(all, expected, "every update saw a distinct count");
    let s = store.load(Some(&id), None).await.unwrap();
    assert_eq!(s.get::<u64>("visits").unwrap(), Some(50 * rounds));
}

/// Session locks: a held lock makes others wait, in this process and from another store
/// (another process), until the lock wait ends; released, it is free at once. Drivers without
/// locks say so.
pub async fn locks_exclude_and_time_out(f: Fixture) {
    let wait = Duration::from_millis(300);
    let store = store_builder(f.driver.clone(), &clock())
        .lock_wait(wait)
        .build();
    let other_process = store_builder(f.driver.clone(), &clock())
        .lock_wait(wait)
        .build();
    let id = SessionId::parse(&fresh_id()).unwrap();
    let held = match store.lock(&id).await {
        Ok(l) => l,
        Err(Error::Driver(DriverError::Unsupported { .. })) if !f.supports_locks => return,
        Err(e) => panic!("taking a free lock: {e}"),
    };
    assert!(
        f.supports_locks,
        "the fixture says this driver has no locks"
    );
    for contender in [&store, &other_process] {
        let started = std::time::Instant::now();
        let err = contender.lock(&id).await.unwrap_err();
        assert!(matches!(err, Error::LockTimeout { .. }), "{err}");
        assert!(err.is_busy() && err.retry_after().is_some());
        assert!(started.elapsed() >= wait);
    }
    assert!(held.release().await.unwrap());
    let again = other_process.lock(&id).await.unwrap();
    // Another holder waiting in this process gets it as soon as it is released.
    let waiter = {
        let store = store_builder(f.driver.clone(), &clock())
            .lock_wait(Duration::from_secs(10))
            .build();
        let id = id.clone();
        tokio::spawn(async move { store.lock(&id).await })
    };
    assert!(again.release().await.unwrap());
    let next = waiter.await.unwrap().unwrap();
    assert!(next.release().await.unwrap());
    assert!(store.stats().lock_timeouts >= 1);
}

/// Session locks: a holder that never releases (a crashed process) blocks others only until
/// its lease ends; its late release then frees nothing.
pub async fn lock_lease_frees_a_crashed_holder(f: Fixture) {
    if !f.supports_locks {
        return;
    }
    let id = SessionId::parse(&fresh_id()).unwrap();
    let lease = Duration::from_secs(1);
    let crashed = match f.driver.try_lock(&id, lease).await.unwrap() {
        LockAttempt::Acquired(t) => t,
        other => panic!("a free lock: {other:?}"),
    };
    let store = store_builder(f.driver.clone(), &clock())
        .lock_wait(Duration::from_secs(10))
        .build();
    let lock = store.lock(&id).await.unwrap();
    assert!(
        !f.driver.unlock(&id, crashed).await.unwrap(),
        "a stale holder must not free the new holder's lock"
    );
    assert!(lock.release().await.unwrap());
}

fn fresh_id() -> String {
    SecureRandomIds.generate().unwrap().as_str().to_owned()
}
