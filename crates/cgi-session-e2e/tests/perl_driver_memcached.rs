//! `driver:memcached`: Rust and Debian's Perl `CGI::Session::Driver::memcached` 0.04
//! (libcgi-session-driver-memcached-perl, `{Memcached => $memd}`) sharing sessions in one real
//! memcached, keyed by the bare session id: both directions, delete both ways, the key and the
//! item's lifetime.

use cgi_session::memcache::client::{Client, GetOptions};
use cgi_session::memcache::DEFAULT_LIFETIME;
use cgi_session::DriverArgs;
use cgi_session_e2e::{Perl, SharedStore};
use memcached_harness::MemcachedServer;
use serde_json::{json, Value};

/// Runs `tests/perl/memcached-driver-tool.pl` against `server`.
fn perl(server: &MemcachedServer, args: &[&str]) -> String {
    Perl::with_tool(server.addr().to_string(), "memcached-driver-tool.pl").run(args)
}

fn perl_read(server: &MemcachedServer, id: &str) -> Value {
    serde_json::from_str(&perl(server, &["read", id])).unwrap()
}

async fn fixture() -> SharedStore {
    // CGI::Session->new("driver:memcached;serializer:default", $sid, {Memcached => $memd})
    SharedStore::start("driver:memcached;serializer:default", |c| {
        DriverArgs::new().memcached(c)
    })
    .await
}

/// What memcached holds under `key`: the value and its remaining TTL (-1: none).
async fn item(client: &Client, key: &str) -> Option<(Vec<u8>, i64)> {
    client
        .get(key, GetOptions::new().ttl_remaining(true))
        .await
        .unwrap()
        .map(|i| (i.value.to_vec(), i.ttl_remaining.unwrap()))
}

#[tokio::test]
async fn perl_writes_rust_reads_and_writes_back_perl_reads_under_the_bare_id() {
    let f = fixture().await;
    let id = perl(
        &f.server,
        &["create", &json!({"user": "alice", "n": 1}).to_string(), ""],
    );

    // The real package, and the key it uses: the bare id, no prefix, no TTL.
    let seen = perl_read(&f.server, &id);
    assert_eq!(seen["driver_version"], "0.04");
    assert_eq!(
        seen["driver"],
        "/usr/share/perl5/CGI/Session/Driver/memcached.pm"
    );
    let (value, ttl) = item(&f.client, &id)
        .await
        .expect("stored under the bare id");
    assert!(
        value.starts_with(b"$D = {"),
        "CGI::Session's default serializer"
    );
    assert_eq!(ttl, -1, "Perl's driver sets no TTL");
    assert!(item(&f.client, &format!("sessions:{id}")).await.is_none());

    // Rust reads it; the read leaves the item's lifetime alone.
    let mut s = f.store.new_session(Some(&id), None).await.unwrap();
    assert_eq!(s.id().unwrap().as_str(), id, "Rust found Perl's session");
    assert_eq!(s.get_value("user"), Some(&json!("alice")));
    assert_eq!(item(&f.client, &id).await.unwrap().1, -1);

    // Rust writes back: same key, the documented lifetime for a session without expiry.
    s.set("user", "bob").unwrap();
    s.set("from_rust", &json!(["a", 1])).unwrap();
    s.flush().await.unwrap();
    let (_, ttl) = item(&f.client, &id).await.unwrap();
    let lifetime = i64::try_from(DEFAULT_LIFETIME.as_secs()).unwrap();
    assert!(
        ttl > lifetime - 60 && ttl <= lifetime + 60,
        "a Rust write gives the documented lifetime: {ttl}"
    );
    assert!(item(&f.client, &format!("sessions:{id}")).await.is_none());

    let seen = perl_read(&f.server, &id);
    assert_eq!(seen["is_empty"], false);
    assert_eq!(seen["params"]["user"], "bob");
    assert_eq!(seen["params"]["n"], 1);
    assert_eq!(seen["params"]["from_rust"], json!(["a", 1]));

    // And Perl writes again on top of Rust's write; Rust sees it.
    perl(&f.server, &["set", &id, &json!({"n": 2}).to_string()]);
    let s = f.store.new_session(Some(&id), None).await.unwrap();
    assert_eq!(s.get_value("n"), Some(&json!(2)));
    assert_eq!(s.get_value("user"), Some(&json!("bob")));
}

#[tokio::test]
async fn rust_writes_perl_reads_with_its_expiry() {
    let f = fixture().await;
    let mut s = f.store.new_session(None, Some("192.0.2.7")).await.unwrap();
    s.set("user", "carol").unwrap();
    s.set("smile", "☺").unwrap();
    s.set_expire_str("+10m").unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    let (_, ttl) = item(&f.client, &id)
        .await
        .expect("stored under the bare id");
    assert!(ttl > 600, "the idle timeout plus the store's grace: {ttl}");

    let seen = perl_read(&f.server, &id);
    assert_eq!(seen["id"], id.as_str());
    assert_eq!(seen["params"]["user"], "carol");
    assert_eq!(seen["params"]["smile"], "☺");
}

#[tokio::test]
async fn delete_both_ways() {
    let f = fixture().await;

    // Perl creates, Rust deletes, Perl finds nothing.
    let id = perl(&f.server, &["create", r#"{"user":"dave"}"#, "600"]);
    let mut s = f.store.new_session(Some(&id), None).await.unwrap();
    assert!(!s.is_empty());
    s.delete();
    s.flush().await.unwrap();
    assert!(item(&f.client, &id).await.is_none(), "the key is gone");
    assert_eq!(perl_read(&f.server, &id)["is_empty"], true);

    // Rust creates, Perl deletes, Rust finds nothing.
    let mut s = f.store.new_session(None, None).await.unwrap();
    s.set("user", "erin").unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    perl(&f.server, &["delete", &id]);
    assert!(item(&f.client, &id).await.is_none(), "the key is gone");
    let s = f.store.load(Some(&id), None).await.unwrap();
    assert!(s.is_empty());
}
