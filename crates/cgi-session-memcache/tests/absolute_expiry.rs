//! Absolute expiry against real memcached: the item's TTL (memcached's own `mg <key> t`)
//! never outlasts the session's absolute expiry, on writes and on reads that refresh it.

use std::time::{Duration, SystemTime};

use cgi_session_core::{Expiry, SessionStore};
use cgi_session_memcache::client::{Client, ClientConfig, GetOptions};
use cgi_session_memcache::MemcacheDriver;
use memcached_harness::MemcachedServer;

async fn client(server: &MemcachedServer) -> Client {
    Client::connect(ClientConfig::new(server.addr().to_string()).timeout(Duration::from_secs(2)))
        .await
        .expect("connect to the test memcached")
}

async fn ttl_left(client: &Client, key: &str) -> i64 {
    client
        .get(key, GetOptions::new().ttl_remaining(true))
        .await
        .unwrap()
        .expect("item present")
        .ttl_remaining
        .expect("ttl reported")
}

#[tokio::test]
async fn the_item_ttl_never_outlasts_the_absolute_expiry() {
    let server = MemcachedServer::start();
    let c = client(&server).await;
    for refresh_on_read in [false, true] {
        let driver = MemcacheDriver::builder(c.clone())
            .refresh_ttl_on_read(refresh_on_read)
            .build()
            .unwrap();
        let store = SessionStore::builder(driver.clone())
            .default_idle_timeout(Duration::from_secs(3600))
            .build();

        // Idle expiry alone: idle timeout + grace.
        let mut idle = store.new_session(None, None).await.unwrap();
        idle.flush().await.unwrap();
        let ttl = ttl_left(&c, &driver.key_for(idle.id().unwrap())).await;
        assert!((3600..=3610).contains(&ttl), "idle ttl {ttl}");

        // An absolute expiry in two minutes: the TTL ends with it, not an hour later.
        let mut s = store.new_session(None, None).await.unwrap();
        let deadline = SystemTime::now() + Duration::from_secs(120);
        s.set_expires_at(deadline);
        s.flush().await.unwrap();
        let id = s.id().unwrap().as_str().to_owned();
        let key = driver.key_for(s.id().unwrap());
        let ttl = ttl_left(&c, &key).await;
        assert!((1..=120).contains(&ttl), "absolute ttl {ttl}");

        // A read (which may refresh the TTL in the same round trip) does not extend it.
        let loaded = store.load(Some(&id), None).await.unwrap();
        assert!(!loaded.is_empty());
        let ttl = ttl_left(&c, &key).await;
        assert!((1..=120).contains(&ttl), "after a read: ttl {ttl}");

        // Nor does a write of a change.
        let mut again = store.load(Some(&id), None).await.unwrap();
        again.set("n", &1).unwrap();
        again.flush().await.unwrap();
        let ttl = ttl_left(&c, &key).await;
        assert!((1..=120).contains(&ttl), "after a write: ttl {ttl}");

        // Back to idle expiry: the TTL is the idle one again.
        again.set_expiry(Expiry::OnInactivity(Duration::from_secs(1800)));
        again.flush().await.unwrap();
        let ttl = ttl_left(&c, &key).await;
        assert!((1800..=1810).contains(&ttl), "idle again: ttl {ttl}");
    }
}

#[tokio::test]
async fn a_store_max_lifetime_bounds_every_new_sessions_item() {
    let server = MemcachedServer::start();
    let c = client(&server).await;
    let driver = MemcacheDriver::new(c.clone());
    let store = SessionStore::builder(driver.clone())
        .default_idle_timeout(Duration::from_secs(3600))
        .max_lifetime(Duration::from_secs(300))
        .build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.flush().await.unwrap();
    let ttl = ttl_left(&c, &driver.key_for(s.id().unwrap())).await;
    assert!((1..=300).contains(&ttl), "ttl {ttl}");
    assert!(s.absolute_expiry().is_some());
}
