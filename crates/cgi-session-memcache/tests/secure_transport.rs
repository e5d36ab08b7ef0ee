//! Sessions over an authenticated memcached (`memcached -Y`): the right
//! password works end to end; a wrong one is an error at the session layer,
//! never a fresh empty session in place of the user's.

use std::time::Duration;

use cgi_session_core::{Error, SessionStore};
use cgi_session_memcache::client::{Client, ClientConfig};
use cgi_session_memcache::MemcacheDriver;
use memcached_harness::MemcachedServer;

fn config(server: &MemcachedServer) -> ClientConfig {
    ClientConfig::new(server.addr().to_string())
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn wrong_password_is_an_error_not_a_fresh_session() {
    let server = MemcachedServer::builder().auth("app", "s3cret").start();
    let good = Client::connect(config(&server).auth("app", "s3cret"))
        .await
        .unwrap();
    let store = SessionStore::builder(MemcacheDriver::new(good)).build();
    let mut session = store.new_session(None, None).await.unwrap();
    session.set("user", "alice").unwrap();
    session.flush().await.unwrap();
    let id = session
        .id()
        .expect("flushed session has an id")
        .as_str()
        .to_string();

    let again = store.new_session(Some(&id), None).await.unwrap();
    assert!(!again.is_new());
    assert_eq!(
        again.get::<String>("user").unwrap().as_deref(),
        Some("alice")
    );

    // Same server, wrong password (lazy, so the store is built and every request fails).
    let bad = Client::connect(config(&server).lazy(true).auth("app", "wrong"))
        .await
        .unwrap();
    let bad_store = SessionStore::builder(MemcacheDriver::new(bad)).build();
    let err = bad_store
        .new_session(Some(&id), None)
        .await
        .expect_err("a wrong password must not yield a fresh session");
    match &err {
        Error::Driver(d) => assert!(!d.is_unavailable(), "a configuration error: {err}"),
        other => panic!("expected a driver error, got {other}"),
    }
    let text = format!("{err:#}");
    let chain = std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
    .map(|e| e.to_string())
    .collect::<Vec<_>>()
    .join(": ");
    assert!(chain.contains("authentication"), "{text} / {chain}");
    assert!(bad_store.load(Some(&id), None).await.is_err());

    // A server requiring auth and a client without credentials: also an error.
    let none = Client::connect(config(&server).lazy(true)).await.unwrap();
    let none_store = SessionStore::builder(MemcacheDriver::new(none)).build();
    assert!(none_store.new_session(Some(&id), None).await.is_err());
}
