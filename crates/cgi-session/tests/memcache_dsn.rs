//! `driver:memcache` through the DSN, as the Perl driver's synopsis uses it, against a real
//! memcached started by the test.

use cgi_session::memcache::client::{Client, ClientConfig};
use cgi_session::memcache::MemcacheDriver;
use cgi_session::{store_from_dsn, DriverArgs, OpenError};
use memcached_harness::MemcachedServer;

#[tokio::test]
async fn the_perl_drivers_synopsis_in_rust() {
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

    // The item sits where the Perl driver puts it.
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

/// Debian's `driver:memcached`: the same driver with the bare id as the key, its argument
/// under the name `Memcached`; listing sessions skips every other key of the server.
#[tokio::test]
async fn driver_memcached_keys_sessions_by_the_bare_id() {
    let server = MemcachedServer::start();
    let memd = Client::connect(ClientConfig::new(server.addr().to_string()))
        .await
        .unwrap();
    // CGI::Session->new("driver:memcached", $sid, {Memcached => $memd})
    let store = store_from_dsn(
        "driver:memcached;serializer:default",
        &DriverArgs::new().memcached(memd.clone()),
    )
    .unwrap();
    let mut s = store.new_session(None, None).await.unwrap();
    s.set("greet_en", "Hi !").unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    let raw = memd
        .get(&id, Default::default())
        .await
        .unwrap()
        .expect("stored under the bare id");
    assert!(raw.value.starts_with(b"$D = {"), "serializer:default");
    assert!(memd
        .get(format!("sessions:{id}"), Default::default())
        .await
        .unwrap()
        .is_none());
    let back = store.new_session(Some(&id), None).await.unwrap();
    assert_eq!(
        back.get::<String>("greet_en").unwrap().as_deref(),
        Some("Hi !")
    );

    // Another application's keys in the same memcached: id-shaped ones included.
    for (key, value) in [
        ("42", &b"7"[..]),
        ("user_7", br#"{"name":"x"}"#),
        ("abcdef", br#"$D = {'_SESSION_ID' => 'someone_else'};;$D"#),
        ("cache:page:/", b"<html>"),
    ] {
        let opts = cgi_session::memcache::client::SetOptions::new();
        memd.set(key, value, opts).await.unwrap();
    }
    // A driver:memcache session in the same server.
    let prefixed =
        store_from_dsn("driver:memcache", &DriverArgs::new().handle(memd.clone())).unwrap();
    let mut other = prefixed.new_session(None, None).await.unwrap();
    other.flush().await.unwrap();

    let mut found = Vec::new();
    store
        .find(|s| {
            found.push(s.id().unwrap().as_str().to_owned());
            async { std::ops::ControlFlow::Continue(()) }
        })
        .await
        .unwrap();
    assert_eq!(found, [id.as_str()], "only the session, no foreign key");

    // A foreign key is never taken for a session of that id.
    let foreign = store.load(Some("user_7"), None).await;
    assert!(
        foreign.as_ref().map_or(true, |s| s.is_empty()),
        "{foreign:?}"
    );

    // Session locks: `lock:<id>`, outside the ids.
    let driver = MemcacheDriver::builder(memd.clone())
        .prefix("")
        .build()
        .unwrap();
    let sid = cgi_session::SessionId::parse(&id).unwrap();
    assert_eq!(driver.lock_key_for(&sid), format!("lock:{id}"));

    let mut s = store.new_session(Some(&id), None).await.unwrap();
    s.delete();
    s.flush().await.unwrap();
    assert!(memd.get(&id, Default::default()).await.unwrap().is_none());
    assert!(memd
        .get("user_7", Default::default())
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn driver_memcached_refuses_a_prefix_and_names_its_argument() {
    let err = store_from_dsn("d:memcached", &DriverArgs::new()).unwrap_err();
    assert!(err.to_string().contains("DriverArgs::memcached"), "{err}");
    assert!(err.to_string().contains("Memcached =>"), "{err}");
    let memd = Client::connect(ClientConfig::new("127.0.0.1:1").lazy(true))
        .await
        .unwrap();
    let err = store_from_dsn(
        "driver:memcached",
        &DriverArgs::new().memcached(memd.clone()).prefix("myapp:"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("bare ids"), "{err}");
    // The Perl driver's name for the argument works too.
    assert!(store_from_dsn("driver:memcached", &DriverArgs::new().handle(memd)).is_ok());
}
