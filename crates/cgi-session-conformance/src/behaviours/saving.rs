//! Saving: concurrent writers (merge, conflict policies, atomic updates, group commit), delete and regenerate.

use cgi_session_core::{ConflictPolicy, Error, SessionId};

use super::{clock, id_of};
use crate::{store_builder, Counting, Fixture};

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
