//! No stored session for an anonymous view: the demo binary on a real memcached, 10,000
//! cookieless page views (and bots' made-up cookies) leave memcached's item count unchanged;
//! a visitor who acts still gets a session.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use http::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use memcached_harness::MemcachedServer;

mod common;
use common::{http_get, start_session, Demo};

/// Page views sent without a cookie.
const VIEWS: usize = 10_000;
/// Requests in flight at once (over keep-alive connections).
const IN_FLIGHT: usize = 32;

fn counter(page: &str) -> u64 {
    let start = page.find("id=\"counter\">").expect("a counter") + "id=\"counter\">".len();
    let end = start + page[start..].find('<').unwrap();
    page[start..end].parse().unwrap()
}

/// `curr_items` and `total_items` (every item ever stored) of `server`.
fn items(server: &MemcachedServer) -> (u64, u64) {
    let stats = server.stats();
    (
        stats["curr_items"].parse().unwrap(),
        stats["total_items"].parse().unwrap(),
    )
}

/// Sends `total` `GET /` (with `cookie(i)` when it gives one), `IN_FLIGHT` at once over
/// keep-alive; panics unless every answer is a 200 that sets no session.
async fn views(addr: SocketAddr, total: usize, cookie: fn(usize) -> Option<String>) {
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build_http();
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (client, next) = (client.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    let mut req = Request::get(format!("http://{addr}/"));
                    if let Some(c) = cookie(i) {
                        req = req.header("cookie", c);
                    }
                    let res = client.request(req.body(Body::empty()).unwrap()).await;
                    let res = res.unwrap_or_else(|e| panic!("view {i}: {e}"));
                    assert_eq!(res.status(), 200, "view {i}");
                    // No new session: at most the removal of a cookie naming none.
                    for set in res.headers().get_all("set-cookie") {
                        let set = set.to_str().unwrap();
                        assert!(set.starts_with("CGISESSID=;"), "view {i} set {set}");
                    }
                    let body = axum::body::to_bytes(Body::new(res.into_body()), 1 << 20)
                        .await
                        .unwrap();
                    let page = String::from_utf8_lossy(&body);
                    assert_eq!(counter(&page), 0, "view {i} was counted");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_anonymous_views_leave_memcached_item_count_unchanged() {
    let server = MemcachedServer::start();
    let servers = server.addr().to_string();
    let demo = Demo::start(&["--dsn", "driver:memcache", "--servers", &servers]);
    let addr = demo.addr;

    // One real visitor first, so that "unchanged" is not just "empty".
    let owner = tokio::task::spawn_blocking(move || start_session(addr))
        .await
        .unwrap();
    let before = items(&server);
    assert_eq!(before.0, 1, "the visitor who acted has a session");

    views(addr, VIEWS, |_| None).await;
    assert_eq!(
        items(&server),
        before,
        "{VIEWS} anonymous views stored something"
    );

    // Bots sending made-up (well-formed) session ids: looked up, never stored.
    views(addr, 500, |i| Some(format!("CGISESSID={i:032x}"))).await;
    assert_eq!(items(&server), before, "made-up cookies stored something");

    // The real visitor's session still counts their views, and a new visitor who acts still
    // gets one.
    let after = tokio::task::spawn_blocking(move || {
        let (status, _, page) = http_get(addr, "/", Some(&owner));
        assert_eq!((status, counter(&page)), (200, 1));
        let newcomer = start_session(addr);
        let (_, _, page) = http_get(addr, "/", Some(&newcomer));
        counter(&page)
    })
    .await
    .unwrap();
    assert_eq!(after, 1);
    assert_eq!(items(&server).0, 2, "the newcomer's session is stored");
}
