//! Signing keys with rotation and the cookie of each kind of expiry, through a real axum
//! router over the memory driver.

mod common;

use std::time::{Duration, SystemTime};

use axum::routing::get;
use axum::Router;
use cgi_session::{Expiry, MemoryDriver, SessionStore};
use cgi_session_tower::{Key, SessionError, SessionHandle, SessionLayer, SigningKeys};
use common::call;
use http::StatusCode;

async fn read(session: SessionHandle) -> Result<String, SessionError> {
    Ok(session.get::<String>("user").await?.unwrap_or_default())
}

async fn login(session: SessionHandle) -> Result<&'static str, SessionError> {
    session.set("user", "ann").await?;
    Ok("welcome")
}

async fn browser_only(session: SessionHandle) -> Result<&'static str, SessionError> {
    session.guard().await?.set_expiry(Expiry::OnSessionEnd);
    Ok("browser")
}

async fn until_an_hour(session: SessionHandle) -> Result<&'static str, SessionError> {
    let at = SystemTime::now() + Duration::from_secs(3600);
    session.guard().await?.set_expiry(Expiry::AtDateTime(at));
    Ok("absolute")
}

fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/read", get(read))
        .route("/login", get(login))
        .route("/browser", get(browser_only))
        .route("/absolute", get(until_an_hour))
        .layer(layer)
}

fn store(expire: i64) -> SessionStore {
    SessionStore::builder(MemoryDriver::new())
        .default_expire(expire)
        .build()
}

#[tokio::test]
async fn rotation_accepts_the_previous_key_resigns_with_the_newest_and_refuses_a_retired_one() {
    let (k1, k2, k3) = (Key::generate(), Key::generate(), Key::generate());
    // No idle timeout: the cookie is not refreshed on every request, so a re-send is due to
    // the rotation alone.
    let store = store(0);
    let before = app(SessionLayer::new(store.clone()).signed(k1.clone()));
    let signed_by_k1 = call(&before, "/login", None).await.cookie_pair();

    // The key rotates: k2 signs, k1 still verifies.
    let rotated = app(SessionLayer::new(store.clone())
        .signing_keys(SigningKeys::new(k2.clone()).previous(k1.clone())));
    let r = call(&rotated, "/read", Some(&signed_by_k1)).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ann"));
    let resigned = r.cookie_pair();
    assert_ne!(
        resigned, signed_by_k1,
        "sent again, signed with the newest key"
    );
    // The re-signed cookie names the same session, and is not re-sent again.
    let r = call(&rotated, "/read", Some(&resigned)).await;
    assert_eq!(r.body, "ann");
    assert!(r.cookie().is_none(), "{:?}", r.set_cookies);
    // A new session is signed with the newest key: the old key alone refuses it.
    let fresh = call(&rotated, "/login", None).await.cookie_pair();
    let old_only = app(SessionLayer::new(store.clone()).signed(k1.clone()));
    assert_eq!(call(&old_only, "/read", Some(&fresh)).await.body, "");

    // k1 is retired: its cookies count as no cookie (and are cleared).
    let retired =
        app(SessionLayer::new(store.clone()).signing_keys(SigningKeys::new(k3).previous(k2)));
    let r = call(&retired, "/read", Some(&signed_by_k1)).await;
    assert_eq!(
        r.body, "",
        "a cookie signed with a retired key reached the session"
    );
    assert!(r.cookie().unwrap().contains("Max-Age=0"));
    let r = call(&retired, "/read", Some(&resigned)).await;
    assert_eq!(r.body, "ann", "the cookie re-signed by k2 still works");
}

#[tokio::test]
async fn each_expiry_kind_sends_its_cookie_and_a_change_sends_it_again() {
    let store = store(1800);
    let app = app(SessionLayer::new(store).signed(Key::generate()));
    let login = call(&app, "/login", None).await;
    let idle = login.cookie().unwrap().to_owned();
    assert!(
        idle.contains("Max-Age=1800") && !idle.contains("Expires"),
        "{idle}"
    );
    let pair = login.cookie_pair();

    // Switching to a browser-session cookie sends the cookie again, without a lifetime.
    let r = call(&app, "/browser", Some(&pair)).await;
    let browser = r.cookie().expect("the cookie is sent again").to_owned();
    assert!(
        !browser.contains("Max-Age") && !browser.contains("Expires"),
        "{browser}"
    );
    // A browser-session cookie is not refreshed on every request (it has no Max-Age to slide).
    let r = call(&app, "/read", Some(&pair)).await;
    assert_eq!(r.body, "ann");
    assert!(r.cookie().is_none(), "{:?}", r.set_cookies);

    // Absolute expiry: Expires is the date, Max-Age what is left of the hour.
    let r = call(&app, "/absolute", Some(&pair)).await;
    let absolute = r.cookie().expect("the cookie is sent again").to_owned();
    assert!(absolute.contains("Expires="), "{absolute}");
    let max_age: i64 = absolute
        .split("Max-Age=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((3590..=3600).contains(&max_age), "{absolute}");
    assert_eq!(call(&app, "/read", Some(&pair)).await.body, "ann");
}
