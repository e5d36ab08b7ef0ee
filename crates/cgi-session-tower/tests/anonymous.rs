//! No stored session for an anonymous view: a handler that writes only when
//! `SessionHandle::is_stored` leaves the store empty for visitors without a session, and the
//! layer sends them no cookie.

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use cgi_session::{MemoryDriver, SessionStore};
use cgi_session_tower::{SessionError, SessionHandle, SessionLayer};
use http::Request;
use tower::ServiceExt;

/// Counts views of stored sessions only.
async fn home(session: SessionHandle) -> Result<String, SessionError> {
    if !session.is_stored().await? {
        return Ok("0".to_owned());
    }
    let n = session
        .update(|s| {
            let n = s.get::<u64>("visits")?.unwrap_or(0) + 1;
            s.set("visits", &n)?;
            Ok(n)
        })
        .await?;
    Ok(n.to_string())
}

/// The visitor acts: now there is something worth keeping.
async fn greet(session: SessionHandle) -> Result<&'static str, SessionError> {
    session.set("greet_en", "Hi !").await?;
    Ok("saved")
}

async fn call(app: &Router, method: &str, cookie: Option<&str>) -> (Option<String>, String) {
    let mut req = Request::builder().method(method).uri("/");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
    (cookie, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn anonymous_views_store_nothing_and_a_visitor_who_acts_gets_a_session() {
    let driver = MemoryDriver::new();
    let store = SessionStore::builder(driver.clone())
        .default_expire(600)
        .build();
    let app = Router::new()
        .route("/", get(home).merge(post(greet)))
        .layer(SessionLayer::new(store));
    for _ in 0..1_000 {
        let (cookie, body) = call(&app, "GET", None).await;
        assert_eq!((cookie, body.as_str()), (None, "0"));
    }
    // A cookie naming no stored session (a bot's guess, an expired session): nothing stored
    // either; the cookie is cleared.
    let (cookie, _) = call(
        &app,
        "GET",
        Some("CGISESSID=0123456789abcdef0123456789abcdef"),
    )
    .await;
    assert_eq!(cookie.as_deref(), Some("CGISESSID="));
    assert!(driver.is_empty(), "{} sessions stored", driver.len());

    let (cookie, _) = call(&app, "POST", None).await;
    let cookie = cookie.expect("the visitor who acts gets a session");
    assert_eq!(driver.len(), 1);
    for n in 1..=3 {
        let (_, body) = call(&app, "GET", Some(&cookie)).await;
        assert_eq!(body, n.to_string(), "views of a stored session are counted");
    }
    assert_eq!(driver.len(), 1);
}
