//! The layer's behaviour, through a real axum router and real drivers: the memory driver
//! wrapped in a call-counting decorator, and a real memcached for the "store down" cases.

mod common;

#[cfg(feature = "connect-info")]
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use cgi_session::memcache::client::{Client, ClientConfig};
use cgi_session::memcache::MemcacheDriver;
use cgi_session::{CookieConfig, MemoryDriver, SessionId, SessionStore};
use cgi_session_conformance::{Calls, Counting};
use cgi_session_tower::{Key, SessionError, SessionHandle, SessionLayer};
use common::call;
#[cfg(feature = "connect-info")]
use common::call_from;
use http::StatusCode;
use memcached_harness::MemcachedServer;

// ----- the app under test ------------------------------------------------------------------

async fn ignore(_session: SessionHandle) -> &'static str {
    "ignored"
}

async fn no_session() -> &'static str {
    "plain"
}

async fn read(session: SessionHandle) -> Result<String, SessionError> {
    let greet: Option<String> = session.get("greet_en").await?;
    let user: Option<String> = session.get("user").await?;
    Ok(format!(
        "{}|{}",
        greet.unwrap_or_default(),
        user.unwrap_or_default()
    ))
}

async fn write(session: SessionHandle) -> Result<&'static str, SessionError> {
    session.set("greet_en", "Hi !").await?;
    Ok("stored")
}

async fn count(session: SessionHandle) -> Result<String, SessionError> {
    let n = session
        .update(|s| {
            let n = s.get::<u64>("visits")?.unwrap_or(0) + 1;
            s.set("visits", &n)?;
            Ok(n)
        })
        .await?;
    Ok(n.to_string())
}

async fn login(session: SessionHandle) -> Result<&'static str, SessionError> {
    session.regenerate_id().await?;
    session.set("user", "ann").await?;
    Ok("welcome")
}

async fn logout(session: SessionHandle) -> Result<&'static str, SessionError> {
    session.delete().await?;
    Ok("bye")
}

/// A handler that swallows the store error and answers 200: the layer must still say 503.
async fn careless(session: SessionHandle) -> &'static str {
    let _ = session.get::<String>("greet_en").await;
    "all good (not really)"
}

/// Changes the session, then another "request" deletes it before the layer saves.
async fn vanish(State(store): State<SessionStore>, session: SessionHandle) -> &'static str {
    let _ = session.set("greet_en", "too late").await;
    let id = session
        .guard()
        .await
        .ok()
        .and_then(|s| s.id().map(|i| i.as_str().to_owned()));
    if let Ok(mut other) = store.load(id.as_deref(), None).await {
        other.delete();
        let _ = other.flush().await;
    }
    "changed"
}

fn app(layer: SessionLayer) -> Router {
    let store = layer.store().clone();
    Router::new()
        .route("/ignore", get(ignore))
        .route("/plain", get(no_session))
        .route("/read", get(read))
        .route("/write", get(write))
        .route("/count", get(count))
        .route("/login", get(login))
        .route("/logout", get(logout))
        .route("/careless", get(careless))
        .route("/vanish", get(vanish))
        .with_state(store)
        .layer(layer)
}

fn counting_store(expire: i64) -> (Arc<Counting>, SessionStore) {
    let driver = Counting::new(Arc::new(MemoryDriver::new()));
    let store = SessionStore::builder_dyn(driver.clone())
        .default_expire(expire)
        .build();
    (driver, store)
}

fn is_removal(set_cookie: &str) -> bool {
    set_cookie.contains("Max-Age=0")
}

// ----- tests -------------------------------------------------------------------------------

#[tokio::test]
async fn a_handler_that_ignores_the_session_causes_no_store_io_and_no_cookie() {
    let (driver, store) = counting_store(1800);
    let app = app(SessionLayer::new(store));
    let stored = call(&app, "/write", None).await;
    let cookie = stored.cookie_pair();
    driver.take();

    for (path, cookie) in [
        ("/ignore", None),
        ("/ignore", Some(cookie.as_str())),
        ("/plain", Some(cookie.as_str())),
        ("/plain", None),
    ] {
        let r = call(&app, path, cookie).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(r.set_cookies.is_empty(), "{path}: {:?}", r.set_cookies);
        assert_eq!(driver.take().total(), 0, "{path} with cookie {cookie:?}");
    }
}

#[tokio::test]
async fn a_read_only_request_loads_once_writes_nothing_and_sends_no_cookie_without_expiry() {
    let (driver, store) = counting_store(0);
    let app = app(SessionLayer::new(store));
    let cookie = call(&app, "/write", None).await.cookie_pair();
    driver.take();

    let r = call(&app, "/read", Some(&cookie)).await;
    assert_eq!(r.body, "Hi !|");
    let calls = driver.take();
    assert_eq!(
        calls,
        Calls {
            loads: 1,
            stores: 0,
            removes: 0,
            touches: 0
        }
    );
    assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
}

#[tokio::test]
async fn a_read_only_request_with_an_idle_timeout_refreshes_the_cookie_but_writes_nothing() {
    let (driver, store) = counting_store(1800);
    let app = app(SessionLayer::new(store));
    let cookie = call(&app, "/write", None).await.cookie_pair();
    driver.take();

    let r = call(&app, "/read", Some(&cookie)).await;
    assert_eq!(r.body, "Hi !|");
    let calls = driver.take();
    assert_eq!((calls.loads, calls.stores, calls.removes), (1, 0, 0));
    // Same id, Max-Age slid forward.
    assert_eq!(r.cookie_pair(), cookie);
    assert!(
        r.cookie().unwrap().contains("Max-Age=1800"),
        "{:?}",
        r.cookie()
    );
}

#[tokio::test]
async fn a_new_session_that_is_only_read_is_not_stored() {
    let (driver, store) = counting_store(1800);
    let app = app(SessionLayer::new(store));
    let r = call(&app, "/read", None).await;
    assert_eq!(r.body, "|");
    assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
    assert_eq!(driver.take().total(), 0);

    // A cookie naming a session that is not stored: one load, then the cookie is cleared.
    let r = call(
        &app,
        "/read",
        Some("CGISESSID=0123456789abcdef0123456789abcdef"),
    )
    .await;
    assert_eq!(r.body, "|");
    assert!(is_removal(r.cookie().unwrap()), "{:?}", r.cookie());
    let calls = driver.take();
    assert_eq!((calls.loads, calls.stores), (1, 0));
}

#[tokio::test]
async fn a_change_is_written_once_with_an_httponly_samesite_lax_cookie() {
    let (driver, store) = counting_store(1800);
    let app = app(SessionLayer::new(store));
    let r = call(&app, "/write", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let calls = driver.take();
    assert_eq!((calls.loads, calls.stores), (0, 1));
    let c = r.cookie().unwrap();
    assert!(c.starts_with("CGISESSID="), "{c}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=1800"] {
        assert!(c.contains(attr), "{attr} missing in {c}");
    }
    assert!(!c.contains("Secure"), "{c}");
    let id = &r.cookie_pair()["CGISESSID=".len()..];
    assert!(SessionId::parse(id).is_ok(), "{id}");

    // Setting the same value again is not a change: one load, no write.
    let again = call(&app, "/write", Some(&r.cookie_pair())).await;
    let calls = driver.take();
    assert_eq!((calls.loads, calls.stores), (1, 0));
    assert_eq!(again.cookie_pair(), r.cookie_pair());
}

#[tokio::test]
async fn secure_and_the_cookie_name_are_configurable() {
    // One place for the cookie's settings: the store's CookieConfig (the layer had its own
    // `cookie_name` and `secure` setters before).
    let store = SessionStore::builder(MemoryDriver::new())
        .cookie(CookieConfig {
            name: "MYSESS".into(),
            secure: true,
            ..CookieConfig::default()
        })
        .build();
    let app = app(SessionLayer::new(store));
    let r = call(&app, "/write", None).await;
    let c = r.cookie().unwrap();
    assert!(c.starts_with("MYSESS="), "{c}");
    assert!(c.contains("Secure") && c.contains("HttpOnly"), "{c}");
    assert!(
        !c.contains("Max-Age"),
        "no idle timeout, a browser-session cookie: {c}"
    );
    let pair = r.cookie_pair();
    assert_eq!(call(&app, "/read", Some(&pair)).await.body, "Hi !|");
    // The id under the default name is not read.
    let id = &pair["MYSESS=".len()..];
    let r = call(&app, "/read", Some(&format!("CGISESSID={id}"))).await;
    assert_eq!(r.body, "|");

    // The store's cookie name is the default.
    let store = SessionStore::builder(MemoryDriver::new())
        .cookie_name("FROMSTORE")
        .build();
    let r = call(&app_with(store), "/write", None).await;
    assert!(r.cookie().unwrap().starts_with("FROMSTORE="));
}

fn app_with(store: SessionStore) -> Router {
    app(SessionLayer::new(store))
}

#[tokio::test]
async fn the_counter_goes_up_across_requests() {
    let (_driver, store) = counting_store(1800);
    let app = app(SessionLayer::new(store));
    let first = call(&app, "/count", None).await;
    assert_eq!(first.body, "1");
    let cookie = first.cookie_pair();
    for n in 2..=4 {
        let r = call(&app, "/count", Some(&cookie)).await;
        assert_eq!(r.body, n.to_string());
        assert_eq!(r.cookie_pair(), cookie);
    }
    // Without the cookie: a fresh session.
    assert_eq!(call(&app, "/count", None).await.body, "1");
}

#[tokio::test]
async fn a_tampered_signed_cookie_gets_a_fresh_session_not_the_victims() {
    let (driver, store) = counting_store(1800);
    let app = app(SessionLayer::new(store).signed(Key::generate()));
    let victim = call(&app, "/login", None).await;
    let pair = victim.cookie_pair();
    let value = &pair["CGISESSID=".len()..];
    // The signed value carries the id after a MAC.
    assert!(value.len() > 32, "{value}");
    assert_eq!(call(&app, "/read", Some(&pair)).await.body, "|ann");
    driver.take();

    // Flip one character of the id part, of the MAC part; send the bare id; send garbage.
    let bare_id = &value[value.len() - 32..];
    let mut forged = Vec::new();
    for at in [value.len() - 1, 3] {
        let mut bytes = value.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
        forged.push(String::from_utf8(bytes).unwrap());
    }
    forged.push(bare_id.to_owned());
    forged.push("not-signed-at-all".to_owned());
    for f in forged {
        let r = call(&app, "/read", Some(&format!("CGISESSID={f}"))).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.body, "|",
            "forged cookie {f} reached the victim's session"
        );
        assert!(is_removal(r.cookie().unwrap()), "{:?}", r.cookie());
        // Treated as no id: nothing was even looked up.
        assert_eq!(driver.take().total(), 0);
        // A change with a forged cookie creates a new session under a new, signed id.
        let w = call(&app, "/write", Some(&format!("CGISESSID={f}"))).await;
        assert_ne!(w.cookie_pair(), pair);
        assert!(!w.cookie_pair().contains(bare_id));
        driver.take();
    }
    // The victim's session is intact.
    assert_eq!(call(&app, "/read", Some(&pair)).await.body, "|ann");
}

#[tokio::test]
async fn logout_removes_the_session_and_the_cookie() {
    let (driver, store) = counting_store(1800);
    let app = app(SessionLayer::new(store));
    let cookie = call(&app, "/write", None).await.cookie_pair();
    driver.take();
    let r = call(&app, "/logout", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK);
    let c = r.cookie().unwrap();
    assert!(is_removal(c), "{c}");
    assert!(c.starts_with("CGISESSID=;"), "{c}");
    let calls = driver.take();
    assert_eq!((calls.loads, calls.removes, calls.stores), (1, 1, 0));
    // The old id no longer loads.
    let r = call(&app, "/read", Some(&cookie)).await;
    assert_eq!(r.body, "|");
}

#[tokio::test]
async fn login_regenerates_the_id_and_the_old_id_stops_working() {
    let (_driver, store) = counting_store(1800);
    let app = app(SessionLayer::new(store.clone()));
    let before = call(&app, "/write", None).await.cookie_pair();
    let r = call(&app, "/login", Some(&before)).await;
    assert_eq!(r.status, StatusCode::OK);
    let after = r.cookie_pair();
    assert_ne!(before, after);
    // Data moved with the session.
    assert_eq!(call(&app, "/read", Some(&after)).await.body, "Hi !|ann");
    // The old id is gone from the store.
    let old = store
        .load(Some(&before["CGISESSID=".len()..]), None)
        .await
        .unwrap();
    assert!(old.is_empty());
    assert_eq!(call(&app, "/read", Some(&before)).await.body, "|");
}

#[cfg(feature = "connect-info")]
#[tokio::test]
async fn ip_matching_uses_the_connection_address() {
    let store = SessionStore::builder(MemoryDriver::new())
        .ip_match(true)
        .build();
    let app = app(SessionLayer::new(store));
    let home: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let other: SocketAddr = "127.0.0.2:40000".parse().unwrap();
    let cookie = call_from(&app, "/write", None, Some(home))
        .await
        .cookie_pair();
    let same = call_from(&app, "/read", Some(&cookie), Some(home)).await;
    assert_eq!(same.body, "Hi !|");
    let stolen = call_from(&app, "/read", Some(&cookie), Some(other)).await;
    assert_eq!(stolen.body, "|");
}

#[tokio::test]
async fn a_session_deleted_meanwhile_is_not_brought_back() {
    let (_driver, store) = counting_store(1800);
    let app = app(SessionLayer::new(store));
    let cookie = call(&app, "/write", None).await.cookie_pair();
    let r = call(&app, "/vanish", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(is_removal(r.cookie().unwrap()), "{:?}", r.cookie());
    assert_eq!(call(&app, "/read", Some(&cookie)).await.body, "|");
}

#[tokio::test]
async fn without_the_layer_the_extractor_says_so() {
    let app: Router = Router::new().route("/read", get(read));
    let r = call(&app, "/read", None).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.body.contains("session layer"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_is_down_turns_into_503() {
    let mut server = MemcachedServer::start();
    let client = Client::connect(
        ClientConfig::new(server.addr().to_string())
            .timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    let store = SessionStore::builder(MemcacheDriver::new(client))
        .default_expire(1800)
        .build();
    let app = app(SessionLayer::new(store));
    let cookie = call(&app, "/write", None).await.cookie_pair();
    assert_eq!(call(&app, "/read", Some(&cookie)).await.body, "Hi !|");

    server.kill();

    // Loading fails: 503, and no cookie is issued for a silent new session.
    let r = call(&app, "/read", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
    // Even when the handler swallows the error.
    let r = call(&app, "/careless", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.set_cookies.is_empty());
    // Saving a new session fails: 503, no cookie.
    let r = call(&app, "/write", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
    // A handler that does not use the session still works.
    assert_eq!(
        call(&app, "/ignore", Some(&cookie)).await.status,
        StatusCode::OK
    );

    // Back up: the session is still there.
    server.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = call(&app, "/read", Some(&cookie)).await;
        if r.status == StatusCode::OK {
            // memcached lost its memory on restart: the session is gone, a fresh one shows.
            assert_eq!(r.body, "|");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "store did not come back"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_store_that_is_down_at_start_is_a_503_too() {
    // A lazy client to a port nothing listens on (a killed server's).
    let port = {
        let mut server = MemcachedServer::start();
        let port = server.port();
        server.kill();
        port
    };
    let client = Client::connect(
        ClientConfig::new(format!("127.0.0.1:{port}"))
            .lazy(true)
            .timeout(Duration::from_millis(300))
            .connect_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let store = SessionStore::builder(MemcacheDriver::new(client)).build();
    let app = app(SessionLayer::new(store));
    let r = call(
        &app,
        "/count",
        Some("CGISESSID=0123456789abcdef0123456789abcdef"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.contains("unavailable"), "{}", r.body);
}

#[tokio::test]
async fn malformed_or_foreign_cookies_never_reach_the_store() {
    let (driver, store) = counting_store(1800);
    let app = app(SessionLayer::new(store));
    let cookie = call(&app, "/write", None).await.cookie_pair();
    driver.take();

    // The session cookie among others, in any order, is found.
    let mixed = format!("theme=dark; {cookie}; lang=en");
    assert_eq!(call(&app, "/read", Some(&mixed)).await.body, "Hi !|");
    assert_eq!(driver.take().loads, 1);

    for bad in [
        "CGISESSID=../../etc/passwd",
        "CGISESSID=",
        "CGISESSID=café",
        "CGISESSID=abc def",
        "CGISESSID=%0d%0aset",
        "garbage without equals",
        ";;;=;",
    ] {
        let r = call(&app, "/read", Some(bad)).await;
        assert_eq!(r.status, StatusCode::OK, "{bad:?}");
        assert_eq!(r.body, "|", "{bad:?}");
        assert_eq!(driver.take().total(), 0, "{bad:?} reached the driver");
    }
}
