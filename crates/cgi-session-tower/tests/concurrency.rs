//! Many requests of one session at once, through the layer: `update`, the lock modes, and the
//! 503 answers when a session stays busy. (The demo's tests run the same over real HTTP with
//! memcached and files: `crates/cgi-session-demo/tests/contention/`.)

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use cgi_session::{LockMode, MemoryDriver, SessionId, SessionStore};
use cgi_session_tower::{SessionError, SessionHandle, SessionLayer};
use http::{Request, StatusCode};
use tower::ServiceExt;

async fn count(session: SessionHandle) -> Result<String, SessionError> {
    let n = session
        .update(|s| {
            let n = s.get::<u64>("n")?.unwrap_or(0) + 1;
            s.set("n", &n)?;
            Ok(n)
        })
        .await?;
    Ok(n.to_string())
}

/// Reads, works a little, writes: without a lock, concurrent requests lose updates.
async fn slow_count_locked(session: SessionHandle) -> Result<String, SessionError> {
    let n = {
        let s = session.lock().await?;
        s.get::<u64>("n")?.unwrap_or(0) + 1
    };
    tokio::time::sleep(Duration::from_millis(2)).await;
    session.set("n", &n).await?;
    Ok(n.to_string())
}

async fn read(session: SessionHandle) -> Result<String, SessionError> {
    Ok(session.get::<u64>("n").await?.unwrap_or(0).to_string())
}

fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/count", get(count))
        .route("/locked", get(slow_count_locked))
        .route("/read", get(read))
        .layer(layer)
}

struct Reply {
    status: StatusCode,
    cookie: Option<String>,
    retry_after: Option<String>,
    content_type: Option<String>,
    body: String,
}

async fn call(app: &Router, path: &str, cookie: Option<&str>) -> Reply {
    let mut req = Request::get(path);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (status, cookie, retry_after, content_type) = {
        let header = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        (
            res.status(),
            header("set-cookie").map(|c| c.split(';').next().unwrap().to_owned()),
            header("retry-after"),
            header("content-type"),
        )
    };
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    Reply {
        status,
        cookie,
        retry_after,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `NAME=value` and the id of a fresh stored session.
async fn fresh_session(app: &Router) -> (String, SessionId) {
    let first = call(app, "/count", None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let pair = first.cookie.expect("a session cookie");
    let id = SessionId::parse(pair.split_once('=').unwrap().1).unwrap();
    (pair, id)
}

async fn in_flight(app: &Router, path: &'static str, cookie: &str, n: usize) -> Vec<Reply> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (app, cookie) = (app.clone(), cookie.to_owned());
            tokio::spawn(async move { call(&app, path, Some(&cookie)).await })
        })
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn update_counts_every_one_of_200_requests_sent_at_once() {
    let store = SessionStore::builder(MemoryDriver::new()).build();
    let app = app(SessionLayer::new(store.clone()));
    let (cookie, _) = fresh_session(&app).await;
    let replies = in_flight(&app, "/count", &cookie, 200).await;
    let mut counts: Vec<u64> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.body.parse().unwrap()
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (2..=201).collect::<Vec<u64>>(), "each view once");
    assert_eq!(call(&app, "/read", Some(&cookie)).await.body, "201");
    let stats = store.stats();
    assert_eq!(stats.contended, 0, "{stats:?}");
    assert!(stats.batches <= stats.saves, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_demand_lock_serializes_read_then_write_handlers() {
    let store = SessionStore::builder(MemoryDriver::new()).build();
    let app = app(SessionLayer::new(store.clone()).lock_mode(LockMode::OnDemand));
    let (cookie, id) = fresh_session(&app).await;
    let replies = in_flight(&app, "/locked", &cookie, 20).await;
    for r in &replies {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(call(&app, "/read", Some(&cookie)).await.body, "21");
    assert!(store.stats().lock_waits > 0, "{:?}", store.stats());
    // Every lock was released with its response: it is free at once.
    let again = store.lock(&id).await.unwrap();
    assert!(again.release().await.unwrap());
}

#[tokio::test]
async fn lock_with_locking_off_is_a_500_that_says_how_to_turn_it_on() {
    let store = SessionStore::builder(MemoryDriver::new()).build();
    let app = app(SessionLayer::new(store));
    let (cookie, _) = fresh_session(&app).await;
    let r = call(&app, "/locked", Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.body.contains("misconfiguration"), "{}", r.body);
    assert!(SessionError::LockingOff
        .to_string()
        .contains("LockMode::OnDemand"));
}

#[tokio::test]
async fn a_lock_held_past_the_wait_is_a_503_with_retry_after_and_a_text_body() {
    let wait = Duration::from_millis(200);
    let store = SessionStore::builder(MemoryDriver::new())
        .lock_wait(wait)
        .build();
    let app = app(SessionLayer::new(store.clone()).lock_mode(LockMode::EveryRequest));
    let (cookie, id) = fresh_session(&app).await;
    let held = store.lock(&id).await.unwrap();
    let started = tokio::time::Instant::now();
    let r = call(&app, "/count", Some(&cookie)).await;
    assert!(started.elapsed() >= wait);
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    assert!(r
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("text/plain")));
    assert!(r.body.contains("busy"), "{}", r.body);
    assert_eq!(store.stats().lock_timeouts, 1);
    assert!(held.release().await.unwrap());
    // Released: the next request goes through, and releases the lock it took.
    let r = call(&app, "/count", Some(&cookie)).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "2"));
    let free = store.lock(&id).await.unwrap();
    assert!(free.release().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_request_lock_counts_every_request_and_frees_the_lock() {
    let store = SessionStore::builder(MemoryDriver::new()).build();
    let app = app(SessionLayer::new(store.clone()).lock_mode(LockMode::EveryRequest));
    let (cookie, id) = fresh_session(&app).await;
    let replies = in_flight(&app, "/count", &cookie, 50).await;
    for r in &replies {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(call(&app, "/read", Some(&cookie)).await.body, "51");
    let stats = store.stats();
    // Each of the 50, and the read (the first request had no cookie: nothing to lock).
    assert_eq!(stats.lock_acquired, 51, "{stats:?}");
    let free = store.lock(&id).await.unwrap();
    assert!(free.release().await.unwrap());
}
