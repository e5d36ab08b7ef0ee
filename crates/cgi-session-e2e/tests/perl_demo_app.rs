//! A session created by Perl's CGI::Session (with `CGI::Session::Driver::memcache`, the Perl
//! driver this project started from) is picked up by the Rust demo web app when the browser
//! sends the same CGISESSID cookie, and the demo's changes are seen by Perl.

use axum::body::Body;
use cgi_session_e2e::{connect, perl_sharing_store, Perl};
use memcached_harness::MemcachedServer;
use serde_json::{json, Value};
use tower::ServiceExt;

async fn get(app: &axum::Router, path: &str, cookie: &str) -> (Value, Option<String>) {
    let req = axum::http::Request::get(path)
        .header("cookie", format!("CGISESSID={cookie}"))
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    let set_cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (json, set_cookie)
}

#[tokio::test]
async fn the_demo_app_reads_a_session_perl_created() {
    let server = MemcachedServer::start();
    let perl = Perl::new(server.addr().to_string());
    let id = perl.create(
        &json!({"greet_en": "Hi from Perl !", "user": "perl-user"}),
        None,
        &[],
    );

    let client = connect(&server).await;
    let store = perl_sharing_store(&client).build();
    let app = cgi_session_demo::app(store);

    let (info, set_cookie) = get(&app, "/api/session", &id).await;
    assert_eq!(info["greet_en"], "Hi from Perl !");
    assert_eq!(info["user"], "perl-user");
    assert_eq!(
        info["id_prefix"],
        format!("{}…", &id[..8]),
        "the same session"
    );
    assert!(
        set_cookie.is_none(),
        "a read keeps the cookie: {set_cookie:?}"
    );

    // A page view in Rust counts a visit; Perl sees it.
    let req = axum::http::Request::get("/")
        .header("cookie", format!("CGISESSID={id}"))
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert!(res.status().is_success());
    let seen = perl.read(&id);
    assert_eq!(seen["params"]["visits"], 1, "{seen}");
    assert_eq!(seen["params"]["greet_en"], "Hi from Perl !");
}
