//! The middleware's behaviour through a real actix-web `App` (actix's in-process test service)
//! and real drivers: the memory driver wrapped in the conformance suite's call-counting
//! decorator, and a real memcached for the "store down" cases. The same cases as the tower
//! layer's `tests/layer.rs`; `tests/http.rs` runs the memcached ones through actix's HTTP server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{web, App};
use cgi_session::memcache::client::{Client, ClientConfig};
use cgi_session::memcache::MemcacheDriver;
use cgi_session::{CookieConfig, LockMode, MemoryDriver, SessionId, SessionStore};
use cgi_session_actix::{
    Key, SessionError, SessionHandle, SessionMiddleware, SigningKeys, TrustedProxies,
};
use cgi_session_conformance::{Calls, Counting};
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

/// Removes `greet_en`, answering what it held.
async fn forget(session: SessionHandle) -> Result<String, SessionError> {
    let old = session.remove("greet_en").await?;
    Ok(format!("{old:?}"))
}

/// A handler that swallows the store error and answers 200: the middleware must still say 503.
async fn careless(session: SessionHandle) -> &'static str {
    let _ = session.get::<String>("greet_en").await;
    "all good (not really)"
}

/// Stores a word where a later request expects a number.
async fn set_word(session: SessionHandle) -> Result<&'static str, SessionError> {
    session.set("visits", "seven").await?;
    Ok("stored")
}

/// Reads `visits` as a number: a type mismatch when it holds a word.
async fn read_number(session: SessionHandle) -> Result<String, SessionError> {
    let n: Option<i64> = session.get("visits").await?;
    Ok(format!("{n:?}"))
}

/// Changes the session, then another "request" deletes it before the middleware saves.
async fn vanish(store: web::Data<SessionStore>, session: SessionHandle) -> &'static str {
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

/// The app: every handler above behind `$middleware`.
macro_rules! app {
    ($middleware:expr) => {{
        let middleware: SessionMiddleware = $middleware;
        let store = middleware.store().clone();
        test::init_service(
            App::new()
                .app_data(web::Data::new(store))
                .wrap(middleware)
                .route("/ignore", web::get().to(ignore))
                .route("/plain", web::get().to(no_session))
                .route("/read", web::get().to(read))
                .route("/write", web::get().to(write))
                .route("/count", web::get().to(count))
                .route("/login", web::get().to(login))
                .route("/logout", web::get().to(logout))
                .route("/forget", web::get().to(forget))
                .route("/careless", web::get().to(careless))
                .route("/set-word", web::get().to(set_word))
                .route("/read-number", web::get().to(read_number))
                .route("/vanish", web::get().to(vanish)),
        )
        .await
    }};
}

/// One GET of `$path` with an optional `Cookie` header (and client address).
macro_rules! call {
    ($app:expr, $path:expr, $cookie:expr) => {
        call!($app, $path, $cookie, None)
    };
    ($app:expr, $path:expr, $cookie:expr, $from:expr) => {{
        let req = request($path, $cookie, $from).to_request();
        reply(test::call_service(&$app, req).await).await
    }};
}

fn request(path: &str, cookie: Option<&str>, from: Option<SocketAddr>) -> TestRequest {
    let mut req = TestRequest::get().uri(path);
    if let Some(c) = cookie {
        req = req.insert_header(("cookie", c));
    }
    if let Some(addr) = from {
        req = req.peer_addr(addr);
    }
    req
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    set_cookies: Vec<String>,
    retry_after: Option<String>,
    content_type: Option<String>,
    body: String,
}

impl Reply {
    /// The one Set-Cookie header, if any.
    fn cookie(&self) -> Option<&str> {
        assert!(self.set_cookies.len() <= 1, "{:?}", self.set_cookies);
        self.set_cookies.first().map(String::as_str)
    }

    /// `NAME=value` of the Set-Cookie header, for the next request's Cookie header.
    fn cookie_pair(&self) -> String {
        let c = self.cookie().expect("a Set-Cookie header");
        c.split(';').next().unwrap().to_owned()
    }
}

async fn reply<B: MessageBody>(res: ServiceResponse<B>) -> Reply {
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (retry_after, content_type) = (header("retry-after"), header("content-type"));
    let status = res.status();
    let set_cookies = res
        .headers()
        .get_all("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = test::read_body(res).await;
    Reply {
        status,
        set_cookies,
        retry_after,
        content_type,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn is_removal(set_cookie: &str) -> bool {
    set_cookie.contains("Max-Age=0")
}

fn counting_store(expire: i64) -> (Arc<Counting>, SessionStore) {
    let driver = Counting::new(Arc::new(MemoryDriver::new()));
    let store = SessionStore::builder_dyn(driver.clone())
        .default_expire(expire)
        .build();
    (driver, store)
}

/// Each test on its own actix system (a current-thread tokio runtime).
fn run<F: std::future::Future>(test: F) -> F::Output {
    actix_web::rt::System::new().block_on(test)
}

// ----- lazy load, save on change -----------------------------------------------------------

#[test]
fn a_handler_that_ignores_the_session_causes_no_store_io_and_no_cookie() {
    run(async {
        let (driver, store) = counting_store(1800);
        let app = app!(SessionMiddleware::new(store));
        let cookie = call!(app, "/write", None).cookie_pair();
        driver.take();
        for (path, cookie) in [
            ("/ignore", None),
            ("/ignore", Some(cookie.as_str())),
            ("/plain", Some(cookie.as_str())),
            ("/plain", None),
        ] {
            let r = call!(app, path, cookie);
            assert_eq!(r.status, StatusCode::OK, "{path}");
            assert!(r.set_cookies.is_empty(), "{path}: {:?}", r.set_cookies);
            assert_eq!(driver.take().total(), 0, "{path} with cookie {cookie:?}");
        }
    });
}

#[test]
fn a_read_only_request_loads_once_writes_nothing_and_sends_no_cookie_without_expiry() {
    run(async {
        let (driver, store) = counting_store(0);
        let app = app!(SessionMiddleware::new(store));
        let cookie = call!(app, "/write", None).cookie_pair();
        driver.take();
        let r = call!(app, "/read", Some(&cookie));
        assert_eq!(r.body, "Hi !|");
        let expected = Calls {
            loads: 1,
            stores: 0,
            removes: 0,
            touches: 0,
        };
        assert_eq!(driver.take(), expected);
        assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
    });
}

#[test]
fn a_read_only_request_with_an_idle_timeout_refreshes_the_cookie_but_writes_nothing() {
    run(async {
        let (driver, store) = counting_store(1800);
        let app = app!(SessionMiddleware::new(store));
        let cookie = call!(app, "/write", None).cookie_pair();
        driver.take();
        let r = call!(app, "/read", Some(&cookie));
        assert_eq!(r.body, "Hi !|");
        let calls = driver.take();
        assert_eq!((calls.loads, calls.stores, calls.removes), (1, 0, 0));
        assert_eq!(r.cookie_pair(), cookie, "same id");
        assert!(r.cookie().unwrap().contains("Max-Age=1800"), "{r:?}");
    });
}

#[test]
fn browser_session_cookies_carry_no_lifetime_and_are_not_resent_on_reads() {
    run(async {
        let driver = Counting::new(Arc::new(MemoryDriver::new()));
        let store = SessionStore::builder_dyn(driver.clone())
            .default_expire(1800)
            .browser_session_cookies(true)
            .build();
        let app = app!(SessionMiddleware::new(store));
        let first = call!(app, "/write", None);
        let cookie = first
            .cookie()
            .expect("a new session sends its cookie")
            .to_owned();
        assert!(
            !cookie.contains("Max-Age") && !cookie.contains("Expires"),
            "{cookie}"
        );
        // A read slides the stored session, but a browser-session cookie has nothing to slide.
        let r = call!(app, "/read", Some(&first.cookie_pair()));
        assert_eq!(r.body, "Hi !|");
        assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
    });
}

#[test]
fn a_new_session_that_is_only_read_is_not_stored() {
    run(async {
        let (driver, store) = counting_store(1800);
        let app = app!(SessionMiddleware::new(store));
        let r = call!(app, "/read", None);
        assert_eq!(r.body, "|");
        assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
        assert_eq!(driver.take().total(), 0);

        // A cookie naming a session that is not stored: one load, then the cookie is cleared.
        let r = call!(
            app,
            "/read",
            Some("CGISESSID=0123456789abcdef0123456789abcdef")
        );
        assert_eq!(r.body, "|");
        assert!(is_removal(r.cookie().unwrap()), "{r:?}");
        let calls = driver.take();
        assert_eq!((calls.loads, calls.stores), (1, 0));
    });
}

#[test]
fn a_change_is_written_once_with_an_httponly_samesite_lax_cookie() {
    run(async {
        let (driver, store) = counting_store(1800);
        let app = app!(SessionMiddleware::new(store));
        let r = call!(app, "/write", None);
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
        let again = call!(app, "/write", Some(&r.cookie_pair()));
        let calls = driver.take();
        assert_eq!((calls.loads, calls.stores), (1, 0));
        assert_eq!(again.cookie_pair(), r.cookie_pair());

        // `remove` is a change: written, and the value is gone.
        let cookie = r.cookie_pair();
        assert_eq!(
            call!(app, "/forget", Some(&cookie)).body,
            "Some(String(\"Hi !\"))"
        );
        assert_eq!(driver.take().stores, 1);
        assert_eq!(call!(app, "/read", Some(&cookie)).body, "|");
    });
}

#[test]
fn secure_and_the_cookie_name_come_from_the_stores_cookie_config() {
    run(async {
        let store = SessionStore::builder(MemoryDriver::new())
            .cookie(CookieConfig {
                name: "MYSESS".into(),
                secure: true,
                ..CookieConfig::default()
            })
            .build();
        let app = app!(SessionMiddleware::new(store));
        let r = call!(app, "/write", None);
        let c = r.cookie().unwrap();
        assert!(c.starts_with("MYSESS="), "{c}");
        assert!(c.contains("Secure") && c.contains("HttpOnly"), "{c}");
        assert!(!c.contains("Max-Age"), "no idle timeout: {c}");
        let pair = r.cookie_pair();
        assert_eq!(call!(app, "/read", Some(&pair)).body, "Hi !|");
        // The id under the default name is not read.
        let id = &pair["MYSESS=".len()..];
        let r = call!(app, "/read", Some(&format!("CGISESSID={id}")));
        assert_eq!(r.body, "|");
    });
}

#[test]
fn the_counter_goes_up_across_requests() {
    run(async {
        let (_driver, store) = counting_store(1800);
        let app = app!(SessionMiddleware::new(store));
        let first = call!(app, "/count", None);
        assert_eq!(first.body, "1");
        let cookie = first.cookie_pair();
        for n in 2..=4 {
            let r = call!(app, "/count", Some(&cookie));
            assert_eq!(r.body, n.to_string());
            assert_eq!(r.cookie_pair(), cookie);
        }
        // Without the cookie: a fresh session.
        assert_eq!(call!(app, "/count", None).body, "1");
    });
}

// ----- signed cookies ----------------------------------------------------------------------

#[test]
fn a_tampered_or_unsigned_cookie_gets_a_fresh_session_not_the_victims() {
    run(async {
        let (driver, store) = counting_store(1800);
        let app = app!(SessionMiddleware::new(store).signed(Key::generate()));
        let victim = call!(app, "/login", None);
        let pair = victim.cookie_pair();
        let value = &pair["CGISESSID=".len()..];
        assert!(value.len() > 32, "the signed value carries a MAC: {value}");
        assert_eq!(call!(app, "/read", Some(&pair)).body, "|ann");
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
            let cookie = format!("CGISESSID={f}");
            let r = call!(app, "/read", Some(&cookie));
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(
                r.body, "|",
                "forged cookie {f} reached the victim's session"
            );
            assert!(is_removal(r.cookie().unwrap()), "{r:?}");
            assert_eq!(
                driver.take().total(),
                0,
                "treated as no id: nothing looked up"
            );
            // A change with a forged cookie creates a new session under a new, signed id.
            let w = call!(app, "/write", Some(&cookie));
            assert_ne!(w.cookie_pair(), pair);
            assert!(!w.cookie_pair().contains(bare_id));
            driver.take();
        }
        assert_eq!(call!(app, "/read", Some(&pair)).body, "|ann", "intact");
    });
}

#[test]
fn key_rotation_accepts_the_previous_key_and_re_signs_with_the_newest() {
    run(async {
        let (old, new) = (Key::generate(), Key::generate());
        let (driver, store) = counting_store(0);
        let before = app!(SessionMiddleware::new(store.clone()).signed(old.clone()));
        let old_cookie = call!(before, "/count", None).cookie_pair();

        let rotated = app!(SessionMiddleware::new(store.clone())
            .signed(SigningKeys::new(new.clone()).previous(old.clone())));
        driver.take();
        // A handler that does not use the session still sends nothing.
        let r = call!(rotated, "/ignore", Some(&old_cookie));
        assert!(r.set_cookies.is_empty(), "{r:?}");
        assert_eq!(driver.take().total(), 0);
        // A read-only use (no idle timeout, so no cookie otherwise): the same session, the
        // cookie sent again under the newest key.
        let r = call!(rotated, "/read", Some(&old_cookie));
        assert_eq!(r.status, StatusCode::OK);
        let new_cookie = r.cookie_pair();
        assert_ne!(new_cookie, old_cookie, "re-signed");
        assert_eq!(driver.take().stores, 0, "re-signing writes nothing");
        assert_eq!(call!(rotated, "/count", Some(&new_cookie)).body, "2");
        // Signed by the newest key: not sent again.
        let r = call!(rotated, "/read", Some(&new_cookie));
        assert!(r.set_cookies.is_empty(), "{r:?}");

        // Once the old key is dropped, its cookies are no cookie; the new one still works.
        let only_new = app!(SessionMiddleware::new(store).signed(new));
        assert_eq!(call!(only_new, "/count", Some(&old_cookie)).body, "1");
        assert_eq!(call!(only_new, "/count", Some(&new_cookie)).body, "3");
    });
}

// ----- logout, login, ip matching ----------------------------------------------------------

#[test]
fn logout_removes_the_session_and_the_cookie() {
    run(async {
        let (driver, store) = counting_store(1800);
        let app = app!(SessionMiddleware::new(store));
        let cookie = call!(app, "/write", None).cookie_pair();
        driver.take();
        let r = call!(app, "/logout", Some(&cookie));
        assert_eq!(r.status, StatusCode::OK);
        let c = r.cookie().unwrap();
        assert!(is_removal(c) && c.starts_with("CGISESSID=;"), "{c}");
        let calls = driver.take();
        assert_eq!((calls.loads, calls.removes, calls.stores), (1, 1, 0));
        assert_eq!(call!(app, "/read", Some(&cookie)).body, "|");
    });
}

#[test]
fn login_regenerates_the_id_and_the_old_id_stops_working() {
    run(async {
        let (_driver, store) = counting_store(1800);
        let app = app!(SessionMiddleware::new(store.clone()));
        let before = call!(app, "/write", None).cookie_pair();
        let r = call!(app, "/login", Some(&before));
        assert_eq!(r.status, StatusCode::OK);
        let after = r.cookie_pair();
        assert_ne!(before, after);
        assert_eq!(call!(app, "/read", Some(&after)).body, "Hi !|ann");
        let old = store
            .load(Some(&before["CGISESSID=".len()..]), None)
            .await
            .unwrap();
        assert!(old.is_empty());
        assert_eq!(call!(app, "/read", Some(&before)).body, "|");
    });
}

#[test]
fn ip_matching_uses_the_peer_address() {
    run(async {
        let store = SessionStore::builder(MemoryDriver::new())
            .ip_match(true)
            .build();
        let app = app!(SessionMiddleware::new(store));
        let home: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let other: SocketAddr = "127.0.0.2:40000".parse().unwrap();
        let cookie = call!(app, "/write", None, Some(home)).cookie_pair();
        assert_eq!(call!(app, "/read", Some(&cookie), Some(home)).body, "Hi !|");
        assert_eq!(call!(app, "/read", Some(&cookie), Some(other)).body, "|");
    });
}

#[test]
fn behind_a_trusted_proxy_ip_matching_uses_the_forwarded_address_and_only_there() {
    run(async {
        let store = SessionStore::builder(MemoryDriver::new())
            .ip_match(true)
            .build();
        let proxies = TrustedProxies::parse("10.0.0.1").unwrap();
        let app = app!(SessionMiddleware::new(store).trusted_proxies(proxies));
        let proxy: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let stranger: SocketAddr = "192.0.2.9:40000".parse().unwrap();
        let via = |path: &str, cookie: Option<&str>, from: SocketAddr, xff: &str| {
            request(path, cookie, Some(from))
                .insert_header(("x-forwarded-for", xff.to_owned()))
                .to_request()
        };
        let first =
            reply(test::call_service(&app, via("/write", None, proxy, "198.51.100.7")).await).await;
        let cookie = first.cookie_pair();
        // The same visitor through the proxy: the session.
        let same = via("/read", Some(&cookie), proxy, "203.0.113.1, 198.51.100.7");
        assert_eq!(
            reply(test::call_service(&app, same).await).await.body,
            "Hi !|"
        );
        // Another visitor through the proxy: a fresh session.
        let other = via("/read", Some(&cookie), proxy, "198.51.100.8");
        assert_eq!(reply(test::call_service(&app, other).await).await.body, "|");
        // A direct client forging the header is not believed: its own address counts.
        let forged = via("/read", Some(&cookie), stranger, "198.51.100.7");
        assert_eq!(
            reply(test::call_service(&app, forged).await).await.body,
            "|"
        );
    });
}

#[test]
fn a_session_deleted_meanwhile_is_not_brought_back() {
    run(async {
        let (_driver, store) = counting_store(1800);
        let app = app!(SessionMiddleware::new(store));
        let cookie = call!(app, "/write", None).cookie_pair();
        let r = call!(app, "/vanish", Some(&cookie));
        assert_eq!(r.status, StatusCode::OK);
        assert!(is_removal(r.cookie().unwrap()), "{r:?}");
        assert_eq!(call!(app, "/read", Some(&cookie)).body, "|");
    });
}

#[test]
fn without_the_middleware_the_extractor_says_so() {
    run(async {
        let app = test::init_service(App::new().route("/read", web::get().to(read))).await;
        let r = call!(app, "/read", None);
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(r.body.contains("session middleware"), "{}", r.body);
    });
}

#[test]
fn malformed_or_foreign_cookies_never_reach_the_store() {
    run(async {
        let (driver, store) = counting_store(1800);
        let app = app!(SessionMiddleware::new(store));
        let cookie = call!(app, "/write", None).cookie_pair();
        driver.take();
        let mixed = format!("theme=dark; {cookie}; lang=en");
        assert_eq!(call!(app, "/read", Some(&mixed)).body, "Hi !|");
        assert_eq!(driver.take().loads, 1);
        for bad in [
            "CGISESSID=../../etc/passwd",
            "CGISESSID=",
            "CGISESSID=abc def",
            "CGISESSID=%0d%0aset",
            "garbage without equals",
            ";;;=;",
        ] {
            let r = call!(app, "/read", Some(bad));
            assert_eq!(r.status, StatusCode::OK, "{bad:?}");
            assert_eq!(r.body, "|", "{bad:?}");
            assert_eq!(driver.take().total(), 0, "{bad:?} reached the driver");
        }
    });
}

// ----- errors: busy, store down, handler errors --------------------------------------------

#[test]
fn a_lock_held_past_the_wait_is_a_503_with_retry_after_and_a_text_body() {
    run(async {
        let store = SessionStore::builder(MemoryDriver::new())
            .lock_wait(Duration::from_millis(200))
            .build();
        let app = app!(SessionMiddleware::new(store.clone()).lock_mode(LockMode::EveryRequest));
        let first = call!(app, "/count", None);
        let cookie = first.cookie_pair();
        let id = SessionId::parse(&cookie["CGISESSID=".len()..]).unwrap();
        let held = store.lock(&id).await.unwrap();
        let r = call!(app, "/count", Some(&cookie));
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
        assert_eq!(r.retry_after.as_deref(), Some("1"));
        assert!(r.content_type.unwrap().starts_with("text/plain"));
        assert!(r.body.contains("busy"), "{}", r.body);
        assert!(held.release().await.unwrap());
        // Released: the next request goes through, and releases the lock it took.
        let r = call!(app, "/count", Some(&cookie));
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "2"));
        assert!(store.lock(&id).await.unwrap().release().await.unwrap());
    });
}

#[test]
fn lock_with_locking_off_is_a_500_that_says_how_to_turn_it_on() {
    async fn locked(session: SessionHandle) -> Result<&'static str, SessionError> {
        let _locked = session.lock().await?;
        Ok("locked")
    }
    run(async {
        let store = SessionStore::builder(MemoryDriver::new()).build();
        let app = test::init_service(
            App::new()
                .wrap(SessionMiddleware::new(store))
                .route("/locked", web::get().to(locked)),
        )
        .await;
        let r = call!(app, "/locked", None);
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{r:?}");
        assert!(r.body.contains("not set up"), "{}", r.body);
        assert!(SessionError::LockingOff
            .to_string()
            .contains("LockMode::OnDemand"));
    });
}

/// Log lines captured from the middleware (a `tracing` subscriber for this test's thread:
/// actix's test service runs the app on it).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        let this = self.clone();
        tracing_subscriber::fmt()
            .with_writer(move || this.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish()
    }
}

/// A store on a memcached that was killed before the first request, and the dead port.
async fn store_on_a_dead_memcached() -> (SessionStore, u16) {
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
    (
        SessionStore::builder(MemcacheDriver::new(client)).build(),
        port,
    )
}

#[test]
fn an_outage_is_a_plain_503_logged_once_per_interval_not_once_per_request() {
    let log = Captured::default();
    let _guard = tracing::subscriber::set_default(log.subscriber());
    run(async {
        let (store, port) = store_on_a_dead_memcached().await;
        let app = app!(SessionMiddleware::new(store));
        let started = std::time::Instant::now();
        for path in ["/count", "/careless", "/read"].repeat(10) {
            let cookie = "lang=fran\u{e7}ais; CGISESSID=0123456789abcdef0123456789abcdef";
            let r = call!(app, path, Some(cookie));
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {r:?}");
            assert!(r.set_cookies.is_empty(), "{r:?}");
            assert!(r.retry_after.as_deref().unwrap().parse::<u64>().unwrap() >= 1);
            assert!(r.content_type.as_deref().unwrap().starts_with("text/plain"));
            assert_eq!(
                r.body,
                "The session store is unavailable; please try again shortly.\n"
            );
        }
        let logged = log.text();
        assert!(
            logged.contains(&format!("127.0.0.1:{port}")) && logged.contains("answering 503"),
            "the log names the server: {logged}"
        );
        let lines = logged.matches("answering 503").count();
        // 30 failures well within one 10-s interval: one line (two on a machine slow enough to
        // cross an interval).
        let allowed = 1 + usize::from(started.elapsed() >= Duration::from_secs(10));
        assert!((1..=allowed).contains(&lines), "{lines} lines: {logged}");
        assert!(
            !logged.contains("0123456789abcdef0123456789abcdef"),
            "{logged}"
        );
    });
}

#[test]
fn a_handler_error_is_a_plain_500_with_the_details_in_the_log() {
    let log = Captured::default();
    let _guard = tracing::subscriber::set_default(log.subscriber());
    run(async {
        let app = app!(SessionMiddleware::new(
            SessionStore::builder(MemoryDriver::new()).build()
        ));
        let cookie = call!(app, "/set-word", None).cookie_pair();
        let r = call!(app, "/read-number", Some(&cookie));
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{r:?}");
        assert_eq!(r.body, "The session could not be used.\n");
        assert!(r.set_cookies.is_empty(), "{r:?}");
        let logged = log.text();
        assert!(
            logged.contains("visits") && logged.contains("does not hold the requested type"),
            "the log has the details: {logged}"
        );
        assert!(logged.contains("answered 500"), "{logged}");
    });
}
