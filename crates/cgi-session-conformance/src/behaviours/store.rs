//! The store and the driver: `find`, listing, reserved names, the driver contract, session locks.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use cgi_session_core::{
    Driver, DriverError, Error, LockAttempt, SessionId, StoreMode, StoreOutcome,
};
use serde_json::Value;

use super::{clock, fresh_id, id_of};
use crate::{store_builder, Fixture};

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
