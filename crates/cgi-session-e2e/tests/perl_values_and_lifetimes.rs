//! What a Rust service does to sessions a Perl CGI::Session application owns, against the real
//! CGI::Session in one real memcached:
//!
//! - a read never changes an item's lifetime (a Perl session without expiry keeps no TTL; an
//!   item Rust cannot decode keeps its bytes and its TTL); a write gives the documented one;
//! - values Rust did not change come back to Perl byte-identical (`length`, `utf8::is_utf8`,
//!   the bytes, the class of an object), whatever form Perl stored them in;
//! - a map from Rust with a `__perl_bless__` key never becomes a Perl object of a class Perl
//!   did not store;
//! - Perl's untyped scalars read with Perl's rules where the app asks (`get_perl`).

use cgi_session::memcache::client::{Client, GetOptions};
use cgi_session::{builder_from_dsn, DriverArgs, SessionStore, Undecodable};
use cgi_session_e2e::{connect, perl_sharing_store, Perl};
use memcached_harness::MemcachedServer;
use serde_json::{json, Value};
use tower::ServiceExt;

/// Runs `tests/perl/values-tool.pl` with `serializer` against `server`.
fn perl(server: &MemcachedServer, serializer: &str, args: &[&str]) -> String {
    let mut all = vec![serializer];
    all.extend_from_slice(args);
    Perl::with_tool(server.addr().to_string(), "values-tool.pl").run(&all)
}

fn perl_create(server: &MemcachedServer, serializer: &str, expire: Option<&str>) -> String {
    let mut args = vec!["create"];
    args.extend(expire);
    perl(server, serializer, &args)
}

fn perl_inspect(server: &MemcachedServer, id: &str) -> Value {
    serde_json::from_str(&perl(server, "default", &["inspect", id])).expect("JSON")
}

/// The Rust side as a migrating team configures it (the README's Perl-sharing DSN), with the
/// demo's idle timeout.
fn rust_store(client: &Client) -> SessionStore {
    perl_sharing_store(client).default_expire(1800).build()
}

/// The item's remaining TTL in seconds (-1: none) and its bytes.
async fn item(client: &Client, id: &str) -> (i64, Vec<u8>) {
    let got = client
        .get(
            &format!("sessions:{id}"),
            GetOptions::new().ttl_remaining(true),
        )
        .await
        .unwrap()
        .expect("the item is stored");
    (got.ttl_remaining.expect("ttl reported"), got.value.to_vec())
}

#[tokio::test]
async fn a_rust_read_leaves_a_perl_sessions_lifetime_alone_and_a_write_gives_the_documented_one() {
    let server = MemcachedServer::start();
    let c = connect(&server).await;
    let store = rust_store(&c);
    // An hour, not seconds: a read after half the idle timeout writes the access time back
    // (and sets a TTL), so a short timeout would make this depend on how fast Perl runs.
    for expire in [None, Some("+1h")] {
        let id = perl_create(&server, "default", expire);
        let (ttl, bytes) = item(&c, &id).await;
        assert_eq!(ttl, -1, "Perl's driver sets no TTL");

        // A read-only Rust request (the demo's GET).
        let mut s = store.new_session(Some(&id), None).await.unwrap();
        assert_eq!(s.get::<i64>("visits").unwrap(), Some(1), "{expire:?}");
        s.flush().await.unwrap();
        assert_eq!(
            item(&c, &id).await,
            (-1, bytes),
            "{expire:?}: a read changes neither the TTL nor the bytes"
        );

        // A Rust write: the session's own timeout plus grace, or one day without one.
        s.set("visits", &2).unwrap();
        s.flush().await.unwrap();
        let (ttl, _) = item(&c, &id).await;
        match expire {
            None => assert!((86_390..=86_400).contains(&ttl), "one day: {ttl}"),
            Some(_) => assert!((3_600..=3_610).contains(&ttl), "1 h + grace: {ttl}"),
        }
    }
}

#[tokio::test]
async fn an_item_rust_cannot_decode_is_left_untouched_ttl_included() {
    let server = MemcachedServer::start();
    let c = connect(&server).await;
    let store = rust_store(&c);
    // A Perl app on `serializer:storable`: not Data::Dumper text.
    let id = perl_create(&server, "storable", None);
    c.touch(&format!("sessions:{id}"), 5000).await.unwrap();
    let before = item(&c, &id).await;

    let err = store.load(Some(&id), None).await.unwrap_err();
    assert!(
        matches!(err, cgi_session::Error::Corrupt { .. }),
        "a clear error: {err}"
    );
    // What the web adapters call: with a Perl format the session is not replaced either.
    assert_eq!(store.undecodable(), Undecodable::Fail);
    let err = store.new_session(Some(&id), None).await.unwrap_err();
    assert!(matches!(err, cgi_session::Error::Corrupt { .. }), "{err}");
    // Through HTTP (the demo app on that store): a 500 with a text body, and no new cookie
    // (a new one would log the user out of the Perl pages that can read the session).
    let app = cgi_session_demo::app(store.clone());
    let res = app
        .oneshot(
            axum::http::Request::get("/")
                .header("cookie", format!("CGISESSID={id}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert!(res.headers().get("set-cookie").is_none(), "{res:?}");
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    assert!(!body.is_empty(), "a text body");
    // A store that opts into replacing issues a new session and still leaves the item alone.
    let replacing = perl_sharing_store(&c)
        .on_undecodable(Undecodable::StartNew)
        .build();
    let s = replacing.new_session(Some(&id), None).await.unwrap();
    assert_ne!(s.id().unwrap().as_str(), id);
    let after = item(&c, &id).await;
    assert_eq!(after.1, before.1, "bytes untouched");
    assert!(
        (before.0 - 2..=before.0).contains(&after.0),
        "TTL untouched: {} then {}",
        before.0,
        after.0
    );
}

#[tokio::test]
async fn values_rust_did_not_change_come_back_to_perl_byte_identical() {
    let server = MemcachedServer::start();
    let c = connect(&server).await;
    let store = rust_store(&c);
    let id = perl_create(&server, "default", None);
    let before = perl_inspect(&server, &id);
    // What Perl itself reads back: the byte string is 5 bytes, the Latin-1 text 4 (as bytes:
    // Data::Dumper wrote its raw Latin-1 byte), the wide text 4 characters, the object blessed.
    assert_eq!(
        before["bytes"],
        json!({"length": 5, "utf8": 0, "hex": "636166c3a9"})
    );
    assert_eq!(before["latin"]["length"], 4);
    assert_eq!(before["wide"]["length"], 4);
    assert_eq!(before["wide"]["utf8"], 1);
    assert_eq!(
        before["binary"],
        json!({"length": 3, "utf8": 0, "hex": "ff00fe"})
    );
    assert_eq!(before["cart"], json!({"ref": "My::Cart", "blessed": 1}));

    // Rust reads them as text, and changes only the counter (and adds a value).
    let mut s = store.new_session(Some(&id), None).await.unwrap();
    assert_eq!(s.get::<String>("bytes").unwrap().as_deref(), Some("café"));
    assert_eq!(s.get::<String>("wide").unwrap().as_deref(), Some("☺ ok"));
    s.update(|s| {
        let n = s.get::<i64>("visits")?.unwrap_or(0);
        s.set("visits", &(n + 1))
    })
    .await
    .unwrap();
    s.set("from_rust", "naïve").unwrap();
    s.flush().await.unwrap();

    let after = perl_inspect(&server, &id);
    for key in ["bytes", "latin", "wide", "binary", "cart"] {
        assert_eq!(after[key], before[key], "{key} is what Perl stored");
    }
    assert_eq!(after["visits"]["length"], 1);
    assert_eq!(after["visits"]["hex"], "32", "visits = 2");
    // A value set from Rust reaches Perl as characters: 5 of them, `ï` one character (Perl
    // keeps text in the Latin-1 range without its utf8 flag).
    assert_eq!(
        after["from_rust"],
        json!({"length": 5, "utf8": 0, "hex": "6e61ef7665"}),
    );
}

#[tokio::test]
async fn a_map_with_a_bless_key_from_rust_is_a_plain_hash_in_perl() {
    let server = MemcachedServer::start();
    let c = connect(&server).await;
    let store = rust_store(&c);
    // A new Rust session holding data from outside that names a Perl class.
    let mut s = store.new_session(None, None).await.unwrap();
    s.set_value(
        "profile",
        json!({"__perl_bless__": "File::Temp", "value": {"UNLINK": 1}}),
    )
    .unwrap();
    s.flush().await.unwrap();
    let id = s.id().unwrap().as_str().to_owned();
    assert_eq!(perl_inspect(&server, &id)["profile"]["ref"], "HASH");

    // The same on a Perl session with an object of its own: only Perl's own class is blessed.
    let id = perl_create(&server, "default", None);
    let mut s = store.new_session(Some(&id), None).await.unwrap();
    s.set_value(
        "profile",
        json!({"__perl_bless__": "File::Temp", "value": {"UNLINK": 1}}),
    )
    .unwrap();
    s.flush().await.unwrap();
    let seen = perl_inspect(&server, &id);
    assert_eq!(seen["profile"]["ref"], "HASH");
    assert_eq!(seen["cart"], json!({"ref": "My::Cart", "blessed": 1}));
}

#[tokio::test]
async fn perl_scalars_read_with_perl_rules_where_the_app_asks() {
    let server = MemcachedServer::start();
    let c = connect(&server).await;
    let store = rust_store(&c);
    let id = perl_create(&server, "default", None);
    let s = store.load(Some(&id), None).await.unwrap();
    // Strict reads keep their types...
    assert_eq!(s.get_value("count_str"), Some(&json!("7")));
    assert!(s.get::<i64>("count_str").is_err());
    assert!(s.get::<String>("nick").is_err(), "undef is not a String");
    // ...Perl's rules read what the Perl page meant.
    assert_eq!(s.get_perl::<i64>("count_str").unwrap(), Some(7));
    assert_eq!(s.get_perl::<String>("nick").unwrap(), None);
    assert_eq!(
        s.get_perl::<String>("visits").unwrap().as_deref(),
        Some("1")
    );
    assert_eq!(s.get_perl::<bool>("visits").unwrap(), Some(true));
    assert!(s.get_perl::<i64>("bytes").is_err(), "text is not a number");

    // The same where axum handlers read it.
    async fn visits(
        session: cgi_session_tower::SessionHandle,
    ) -> Result<String, cgi_session_tower::SessionError> {
        let n: Option<i64> = session.get_perl("count_str").await?;
        let nick: Option<String> = session.get_perl("nick").await?;
        Ok(format!("{n:?} {nick:?}"))
    }
    let app = axum::Router::new()
        .route("/visits", axum::routing::get(visits))
        .layer(cgi_session_tower::SessionLayer::new(store));
    let res = app
        .oneshot(
            axum::http::Request::get("/visits")
                .header("cookie", format!("CGISESSID={id}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    assert_eq!(&body[..], b"Some(7) None");
}

/// A Perl app on CGI.pm without `-utf8` handles text as UTF-8 bytes: with `strings:bytes` in
/// the DSN, text set from Rust reaches it the same way (and a page printing it raw shows it
/// right); without, it reaches it as characters.
#[tokio::test]
async fn strings_bytes_in_the_dsn_gives_a_bytes_app_utf8_bytes() {
    let server = MemcachedServer::start();
    let c = connect(&server).await;
    for (dsn, want) in [
        (
            "driver:memcache;serializer:default;strings:bytes",
            json!({"length": 5, "utf8": 0, "hex": "636166c3a9"}),
        ),
        (
            "driver:memcache;serializer:default",
            json!({"length": 4, "utf8": 0, "hex": "636166e9"}),
        ),
    ] {
        let store = builder_from_dsn(dsn, &DriverArgs::new().handle(c.clone()))
            .unwrap()
            .build();
        let id = perl_create(&server, "default", None);
        let mut s = store.new_session(Some(&id), None).await.unwrap();
        s.set("from_rust", "café").unwrap();
        s.flush().await.unwrap();
        let seen = perl_inspect(&server, &id);
        assert_eq!(seen["from_rust"], want, "{dsn}");
        assert_eq!(
            seen["bytes"]["length"], 5,
            "{dsn}: Perl's own value unchanged"
        );
    }
}
