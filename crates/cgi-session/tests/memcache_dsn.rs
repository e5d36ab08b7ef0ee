//! `driver:memcache` through the DSN, as the seed's synopsis uses it, against a real
//! memcached started by the test.

use cgi_session::memcache::client::{Client, ClientConfig};
use cgi_session::memcache::MemcacheDriver;
use cgi_session::{store_from_dsn, DriverArgs, OpenError};
use memcached_harness::MemcachedServer;

#[tokio::test]
async fn the_seed_synopsis_in_rust() {
    let server = MemcachedServer::start();
    // my $memd = Cache::Memcached->new({servers => [...]});
    let memd = Client::connect(ClientConfig::new(server.addr().to_string()))
        .await
        .unwrap();
    let report = MemcacheDriver::new(memd.clone()).check().await.unwrap();
    assert!(report.version.starts_with("1.6"), "{report:?}");

    // CGI::Session->new("driver:memcache", $cgi, {'Handle' => $memd});
    let store = store_from_dsn("driver:memcache", &DriverArgs::new().handle(memd.clone())).unwrap();
    assert_eq!(store.driver().name(), "memcache");
    let mut sess = store.new_session(None, None).await.unwrap();
    assert_eq!(sess.get::<String>("greet_en").unwrap(), None);
    sess.set("greet_en", "Hi !").unwrap();
    sess.flush().await.unwrap();
    let id = sess.id().unwrap().as_str().to_owned();

    // The next request, with the cookie.
    let sess = store.new_session(Some(&id), None).await.unwrap();
    assert_eq!(
        sess.get::<String>("greet_en").unwrap().as_deref(),
        Some("Hi !")
    );

    // The item sits where the seed's driver puts it.
    let raw = memd
        .get(format!("sessions:{id}"), Default::default())
        .await
        .unwrap()
        .expect("stored under sessions:<id>");
    let json: serde_json::Value = serde_json::from_slice(&raw.value).unwrap();
    assert_eq!(json["greet_en"], "Hi !");
    assert_eq!(json["_SESSION_ID"], id.as_str());
}

#[tokio::test]
async fn memcache_without_a_handle_says_how_to_pass_one() {
    let err = store_from_dsn("d:memcache", &DriverArgs::new()).unwrap_err();
    assert!(matches!(err, OpenError::Dsn(_)));
    assert!(err.to_string().contains("DriverArgs::handle"), "{err}");
}

#[tokio::test]
async fn prefix_and_hashed_keys_through_driver_args() {
    let server = MemcachedServer::start();
    let memd = Client::connect(ClientConfig::new(server.addr().to_string()))
        .await
        .unwrap();
    let args = DriverArgs::new()
        .handle(memd.clone())
        .prefix("myapp:")
        .hashed_keys(true);
    let store = store_from_dsn("driver:memcache;id:md5", &args).unwrap();
    let mut s = store.new_session(None, None).await.unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    let plain = memd
        .get(format!("myapp:{id}"), Default::default())
        .await
        .unwrap();
    assert!(plain.is_none(), "the id itself is not the key");
    assert!(!store.load(Some(&id), None).await.unwrap().is_empty());
    let bad = DriverArgs::new().handle(memd).prefix("bad prefix");
    assert!(matches!(
        store_from_dsn("driver:memcache", &bad),
        Err(OpenError::Driver(_))
    ));
}
