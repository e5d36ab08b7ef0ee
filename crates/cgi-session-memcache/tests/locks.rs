//! Session locks in memcached (`Driver::try_lock` / `Driver::unlock`), against real memcached
//! processes: `add` with the lease as exptime, release by compare-and-delete on the CAS value.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use cgi_session_core::{Driver, DriverError, LockAttempt, LockToken, SessionId};
use cgi_session_memcache::client::{Client, ClientConfig, GetOptions, Protocol};
use cgi_session_memcache::{MemcacheDriver, ReplicatedHandle, LOCK_KEY_PREFIX};
use memcached_harness::MemcachedServer;

const ID: &str = "5ee0c1d2a1b2c3d4e5f60718293a4b5c";

fn id() -> SessionId {
    SessionId::parse(ID).unwrap()
}

async fn client(server: &MemcachedServer) -> Client {
    Client::connect(
        ClientConfig::new(server.addr().to_string())
            .pool_size(2)
            .timeout(Duration::from_secs(2)),
    )
    .await
    .expect("connect to the test memcached")
}

fn acquired(attempt: LockAttempt) -> LockToken {
    match attempt {
        LockAttempt::Acquired(token) => token,
        other => panic!("expected the lock, got {other:?}"),
    }
}

/// The lock item's remaining TTL as memcached reports it (`mg <key> t`), `None` if absent.
async fn lock_ttl(client: &Client, key: &str) -> Option<i64> {
    client
        .get(key, GetOptions::new().ttl_remaining(true))
        .await
        .unwrap()
        .map(|item| item.ttl_remaining.expect("ttl reported"))
}

/// Tries to take the lock until it is acquired; fails after `within`.
async fn acquire_within(
    driver: &MemcacheDriver,
    id: &SessionId,
    lease: Duration,
    within: Duration,
) -> LockToken {
    let deadline = Instant::now() + within;
    loop {
        match driver.try_lock(id, lease).await.unwrap() {
            LockAttempt::Acquired(token) => return token,
            LockAttempt::Held => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "the lock was still held {within:?} later"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_held_lock_is_refused_and_only_its_token_releases_it() {
    let server = MemcachedServer::start();
    let c = client(&server).await;
    let driver = MemcacheDriver::new(c.clone());
    let id = id();
    let lease = Duration::from_secs(30);

    let token = acquired(driver.try_lock(&id, lease).await.unwrap());
    assert_eq!(
        driver.try_lock(&id, lease).await.unwrap(),
        LockAttempt::Held
    );

    // A wrong token releases nothing.
    for wrong in [
        LockToken(token.0 + 1),
        LockToken(token.0.wrapping_sub(1)),
        LockToken(0),
    ] {
        assert!(!driver.unlock(&id, wrong).await.unwrap(), "{wrong:?}");
        assert_eq!(
            driver.try_lock(&id, lease).await.unwrap(),
            LockAttempt::Held
        );
    }
    assert!(lock_ttl(&c, &driver.lock_key_for(&id)).await.is_some());

    // The right one does, once; the next request then takes the lock with a new token.
    assert!(driver.unlock(&id, token).await.unwrap());
    assert_eq!(lock_ttl(&c, &driver.lock_key_for(&id)).await, None);
    assert!(!driver.unlock(&id, token).await.unwrap(), "released twice");
    let next = acquired(driver.try_lock(&id, lease).await.unwrap());
    assert_ne!(next, token);
    assert!(
        !driver.unlock(&id, token).await.unwrap(),
        "an old token frees a new lock"
    );
    assert!(driver.unlock(&id, next).await.unwrap());

    // Locks of other sessions are independent.
    let other = SessionId::parse("another_session_id").unwrap();
    let a = acquired(driver.try_lock(&id, lease).await.unwrap());
    let b = acquired(driver.try_lock(&other, lease).await.unwrap());
    assert!(driver.unlock(&other, b).await.unwrap());
    assert_eq!(
        driver.try_lock(&id, lease).await.unwrap(),
        LockAttempt::Held
    );
    assert!(driver.unlock(&id, a).await.unwrap());
}

#[tokio::test]
async fn concurrent_requests_get_the_lock_exactly_once() {
    let server = MemcachedServer::start();
    let driver = MemcacheDriver::new(client(&server).await);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let driver = driver.clone();
            tokio::spawn(async move { driver.try_lock(&id(), Duration::from_secs(30)).await })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        if let LockAttempt::Acquired(_) = task.await.unwrap().unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

#[tokio::test]
async fn the_lock_item_lives_for_the_lease_under_its_own_key() {
    let server = MemcachedServer::start();
    let c = client(&server).await;
    let driver = MemcacheDriver::new(c.clone());
    let id = id();
    let key = driver.lock_key_for(&id);
    assert_eq!(key, format!("lock:sessions:{ID}"));
    assert_eq!(key, format!("{LOCK_KEY_PREFIX}{}", driver.key_for(&id)));

    // memcached's clock ticks once a second: the TTL read right after the add is the lease,
    // or one less if a tick fell in between. Sub-second leases round up, zero becomes 1 s.
    for (lease, want) in [
        (Duration::from_secs(7), 7),
        (Duration::from_millis(2500), 3),
        (Duration::from_secs(45 * 60), 2700),
        (Duration::from_millis(200), 1),
        (Duration::ZERO, 1),
    ] {
        let token = acquired(driver.try_lock(&id, lease).await.unwrap());
        let ttl = lock_ttl(&c, &key).await.expect("lock item present");
        assert!(
            ttl == want || ttl == want - 1,
            "lease {lease:?}: ttl {ttl}, want {want}"
        );
        // `unlock` may find a 1 s lock already expired; either way it must be gone after.
        let _ = driver.unlock(&id, token).await.unwrap();
        assert_eq!(lock_ttl(&c, &key).await, None);
    }

    // The lock is not a session: no session item, and listing sessions does not see it.
    let token = acquired(driver.try_lock(&id, Duration::from_secs(30)).await.unwrap());
    let item = c.get(&key, GetOptions::new()).await.unwrap().unwrap();
    assert_eq!(&item.value[..], b"locked");
    assert!(c
        .get(driver.key_for(&id), GetOptions::new())
        .await
        .unwrap()
        .is_none());
    let mut listed = Vec::new();
    driver
        .list(&mut |session| {
            listed.push(session.id);
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    assert!(driver.unlock(&id, token).await.unwrap());
}

#[tokio::test]
async fn an_abandoned_lock_is_free_again_after_its_lease() {
    let server = MemcachedServer::start();
    let driver = MemcacheDriver::new(client(&server).await);
    let id = id();
    let lease = Duration::from_secs(1);
    let started = Instant::now();
    let _crashed_holder = acquired(driver.try_lock(&id, lease).await.unwrap());
    // Nobody unlocks: memcached's expiry frees it.
    let token = acquire_within(&driver, &id, lease, Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(driver.unlock(&id, token).await.unwrap());
}

#[tokio::test]
async fn a_holder_whose_lease_ended_cannot_free_the_next_holders_lock() {
    let server = MemcachedServer::start();
    let c = client(&server).await;
    let driver = MemcacheDriver::new(c.clone());
    let id = id();
    let slow = acquired(driver.try_lock(&id, Duration::from_secs(1)).await.unwrap());
    // The slow holder's lease ends; another request takes the lock, for longer.
    let next = acquire_within(
        &driver,
        &id,
        Duration::from_secs(30),
        Duration::from_secs(5),
    )
    .await;
    assert_ne!(slow, next);

    // The slow holder finishes and releases "its" lock: nothing happens.
    assert!(!driver.unlock(&id, slow).await.unwrap());
    assert_eq!(
        driver.try_lock(&id, Duration::from_secs(30)).await.unwrap(),
        LockAttempt::Held
    );
    let ttl = lock_ttl(&c, &driver.lock_key_for(&id))
        .await
        .expect("still locked");
    assert!(ttl >= 29, "the new holder's lease is intact: ttl {ttl}");
    assert!(driver.unlock(&id, next).await.unwrap());
}

#[tokio::test]
async fn hashed_keys_give_a_hashed_lock_key() {
    let server = MemcachedServer::start();
    let c = client(&server).await;
    let driver = MemcacheDriver::builder(c.clone())
        .hashed_keys(true)
        .build()
        .unwrap();
    let id = id();
    let key = driver.lock_key_for(&id);
    assert_eq!(key, format!("lock:{}", driver.key_for(&id)));
    assert!(!key.contains(ID), "{key}");
    assert_eq!(key.len(), "lock:sessions:".len() + 64, "{key}");

    let token = acquired(driver.try_lock(&id, Duration::from_secs(30)).await.unwrap());
    assert!(
        lock_ttl(&c, &key).await.is_some(),
        "the lock is under the hashed key"
    );
    assert_eq!(lock_ttl(&c, &format!("lock:sessions:{ID}")).await, None);
    let dump = c.metadump().await.unwrap();
    for entry in &dump.entries {
        let listed = String::from_utf8_lossy(&entry.key);
        assert!(!listed.contains(ID), "the id leaked into key {listed}");
    }
    assert!(driver.unlock(&id, token).await.unwrap());
    assert_eq!(lock_ttl(&c, &key).await, None);
}

#[tokio::test]
async fn a_dead_server_is_an_unavailable_error_naming_it() {
    let mut server = MemcachedServer::start();
    let addr = server.addr().to_string();
    let c = client(&server).await;
    // One driver that has already locked (and so asked the server what it supports), one
    // that has not.
    let used = MemcacheDriver::new(c.clone());
    let token = acquired(used.try_lock(&id(), Duration::from_secs(30)).await.unwrap());
    let fresh = MemcacheDriver::new(c);

    server.kill();
    for err in [
        used.try_lock(&id(), Duration::from_secs(30))
            .await
            .unwrap_err(),
        used.unlock(&id(), token).await.unwrap_err(),
        fresh
            .try_lock(&id(), Duration::from_secs(30))
            .await
            .unwrap_err(),
    ] {
        assert!(err.is_unavailable(), "{err}");
        assert!(err.to_string().contains(&addr), "{err}");
    }

    // Back (empty): locks work again with the same client.
    server.restart();
    let token = acquire_within(
        &fresh,
        &id(),
        Duration::from_secs(30),
        Duration::from_secs(5),
    )
    .await;
    assert!(fresh.unlock(&id(), token).await.unwrap());
}

#[tokio::test]
async fn a_client_without_compare_and_delete_takes_no_lock() {
    let server = MemcachedServer::start();
    let meta = client(&server).await;
    // The text protocol (what twemproxy speaks) has no CAS-guarded delete.
    let text =
        Client::connect(ClientConfig::new(server.addr().to_string()).protocol(Protocol::Text))
            .await
            .unwrap();
    let driver = MemcacheDriver::new(text);
    for _ in 0..2 {
        let err = driver
            .try_lock(&id(), Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(matches!(err, DriverError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("compare-and-delete"), "{err}");
        assert_eq!(
            lock_ttl(&meta, &driver.lock_key_for(&id())).await,
            None,
            "a lock that could not be released safely was taken"
        );
    }
    let err = driver.unlock(&id(), LockToken(7)).await.unwrap_err();
    assert!(matches!(err, DriverError::Unsupported { .. }), "{err}");
}

#[tokio::test]
async fn a_server_without_cas_values_is_refused() {
    // `-C`: memcached keeps no CAS values, so a lock token would mean nothing.
    let server = MemcachedServer::builder().arg("-C").start();
    let c = client(&server).await;
    let driver = MemcacheDriver::new(c.clone());
    let err = driver
        .try_lock(&id(), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("CAS"), "{err}");
    // Refused from then on without touching the server; the first lock item only expires.
    let key = driver.lock_key_for(&SessionId::parse("other").unwrap());
    let err = driver
        .try_lock(&SessionId::parse("other").unwrap(), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::Unsupported { .. }), "{err}");
    assert_eq!(lock_ttl(&c, &key).await, None);
}

#[tokio::test]
async fn replicated_sessions_keep_their_lock_on_the_primary_only() {
    let mut servers = [MemcachedServer::start(), MemcachedServer::start()];
    let addrs: Vec<String> = servers.iter().map(|s| s.addr().to_string()).collect();
    let pool = Client::connect(
        ClientConfig::pool(addrs.clone())
            .timeout(Duration::from_secs(2))
            .failure_limit(0),
    )
    .await
    .unwrap();
    let handle = ReplicatedHandle::new(pool.clone(), 1);
    let driver = MemcacheDriver::new(handle.clone());
    let id = id();
    let key = driver.lock_key_for(&id);
    let placement = handle.servers_for(&key);
    let (primary, replica) = (placement[0], placement[1]);

    let token = acquired(driver.try_lock(&id, Duration::from_secs(30)).await.unwrap());
    let on = |server: usize| {
        let pool = pool.clone();
        let key = key.clone();
        async move {
            pool.server(server)
                .unwrap()
                .get(key, GetOptions::new().cas(true))
                .await
                .unwrap()
        }
    };
    let item = on(primary).await.expect("the lock is on the primary");
    assert_eq!(
        &item.value[..],
        b"locked",
        "a plain item, no replication envelope"
    );
    assert_eq!(
        item.cas,
        Some(token.0),
        "the token is the primary's CAS value"
    );
    assert!(on(replica).await.is_none(), "the lock is not replicated");
    assert_eq!(
        driver.try_lock(&id, Duration::from_secs(30)).await.unwrap(),
        LockAttempt::Held
    );
    assert!(!driver.unlock(&id, LockToken(token.0 + 1)).await.unwrap());
    assert!(driver.unlock(&id, token).await.unwrap());
    assert!(on(primary).await.is_none());

    // The primary down: no lock anywhere else (that would make two holders possible).
    servers[primary].kill();
    let err = driver
        .try_lock(&id, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains(&addrs[primary]), "{err}");
    assert!(on(replica).await.is_none());
}

/// The `memcache` crate has no compare-and-delete: locks are refused before any is taken.
#[cfg(feature = "memcache-crate")]
#[tokio::test]
async fn the_memcache_crate_takes_no_lock() {
    use cgi_session_memcache::memcache_crate::MemcacheCrateHandle;

    let server = MemcachedServer::start();
    let meta = client(&server).await;
    let url = format!("memcache://{}", server.addr());
    let crate_client = memcache::Client::connect(url.as_str()).unwrap();
    let driver = MemcacheDriver::new(MemcacheCrateHandle::new(
        crate_client,
        server.addr().to_string(),
    ));
    let err = driver
        .try_lock(&id(), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(err, DriverError::Unsupported { .. }), "{err}");
    assert_eq!(lock_ttl(&meta, &driver.lock_key_for(&id())).await, None);
}
