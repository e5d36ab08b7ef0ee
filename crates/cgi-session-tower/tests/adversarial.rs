//! Hostile input through the tower layer, against a real memcached: forged and malformed
//! cookies, oversize cookies, corrupt or foreign stored items, and a server that answers with
//! garbage. Each case gets a clear error or a fresh session, writes nothing the application
//! did not intend (checked with a key dump and the server's counters), and never panics.

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use cgi_session::memcache::client::{Client, ClientConfig, SetOptions};
use cgi_session::{store_from_dsn, DriverArgs};
use cgi_session_tower::{SessionHandle, SessionLayer};
use http::{Request, StatusCode};
use memcached_harness::MemcachedServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// A typical handler: reads one parameter, counts a visit.
async fn visit(session: SessionHandle) -> Result<String, cgi_session_tower::SessionError> {
    let n = session.get::<u64>("visits").await?.unwrap_or(0) + 1;
    session.set("visits", &n).await?;
    Ok(n.to_string())
}

async fn app_on(client: Client) -> Router {
    let store = store_from_dsn("driver:memcache", &DriverArgs::new().handle(client)).unwrap();
    Router::new()
        .route("/", get(visit))
        .layer(SessionLayer::new(store))
}

struct Reply {
    status: StatusCode,
    session: Option<String>,
}

async fn request(app: &Router, cookie_header: Option<&str>) -> Reply {
    let mut req = Request::get("/");
    if let Some(c) = cookie_header {
        req = req.header("cookie", c);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let session = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("CGISESSID="))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
        .filter(|v| !v.is_empty());
    Reply {
        status: res.status(),
        session,
    }
}

async fn keys(client: &Client) -> Vec<String> {
    let mut keys: Vec<String> = client
        .metadump()
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| String::from_utf8(e.key).unwrap())
        .collect();
    keys.sort();
    keys
}

fn is_session_key(key: &str) -> bool {
    key.strip_prefix("sessions:").is_some_and(|id| {
        id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[tokio::test]
async fn hostile_cookies_get_fresh_sessions_and_reach_nothing() {
    let server = MemcachedServer::start();
    let client = Client::connect(ClientConfig::new(server.addr().to_string()))
        .await
        .unwrap();
    let app = app_on(client.clone()).await;
    let long = "a".repeat(251);
    let huge = "b".repeat(16 * 1024);
    let hostile = [
        "CGISESSID=abc\r\nflush_all\r\n".to_owned(),
        "CGISESSID=abc%0D%0Aflush_all%0D%0A".to_owned(),
        "CGISESSID=abc def".to_owned(),
        "CGISESSID=abc\0def".to_owned(),
        format!("CGISESSID={long}"),
        format!("CGISESSID={huge}"),
        "CGISESSID=ünïcödé".to_owned(),
        "CGISESSID=../../etc/passwd".to_owned(),
        "CGISESSID=..".to_owned(),
        "CGISESSID=a/b".to_owned(),
        "CGISESSID=a\\b".to_owned(),
        "CGISESSID=".to_owned(),
        "CGISESSID".to_owned(),
        ";;;===;".to_owned(),
        // Quotes are removed (RFC 6265's quoted form): what they hold must be a valid id.
        "CGISESSID=\"a b\"".to_owned(),
        "CGISESSID=\"unbalanced".to_owned(),
    ];
    let gets_before = server.stats()["cmd_get"].clone();
    let mut issued = Vec::new();
    for cookie in &hostile {
        // Header values with CR/LF/NUL cannot even be built by `http`: those are refused
        // before the layer; the others reach it.
        let Ok(value) = http::HeaderValue::from_bytes(cookie.as_bytes()) else {
            continue;
        };
        let reply = request(&app, value.to_str().ok()).await;
        assert_eq!(reply.status, StatusCode::OK, "{cookie:?}");
        let id = reply.session.expect("a fresh session is issued");
        assert!(!cookie.contains(&id), "{cookie:?} was adopted");
        issued.push(format!("sessions:{id}"));
    }
    assert_eq!(
        server.stats()["cmd_get"],
        gets_before,
        "no malformed id reached memcached"
    );
    issued.sort();
    assert_eq!(
        keys(&client).await,
        issued,
        "only the sessions the app created"
    );
    assert!(issued.iter().all(|k| is_session_key(k)));
}

#[tokio::test]
async fn corrupt_or_foreign_items_never_become_someone_elses_session() {
    let server = MemcachedServer::start();
    let client = Client::connect(ClientConfig::new(server.addr().to_string()))
        .await
        .unwrap();
    let app = app_on(client.clone()).await;
    let cases: [(&str, &[u8], u32); 5] = [
        (
            "0000000000000000000000000000aaaa",
            b"{\"_SESSION_ID\":\"0000",
            0,
        ),
        (
            "0000000000000000000000000000bbbb",
            b"\xff\xfe\xfd not utf-8",
            0,
        ),
        (
            "0000000000000000000000000000cccc",
            b"{\"other_app\":true}",
            0,
        ),
        (
            "0000000000000000000000000000dddd",
            b"{\"_SESSION_ID\":\"someone-else\",\"visits\":99}",
            0,
        ),
        ("0000000000000000000000000000eeee", b"\x04\x0b\x03\x00", 1),
    ];
    for (id, bytes, flags) in cases {
        let key = format!("sessions:{id}");
        client
            .set(&key, bytes, SetOptions::new().flags(flags))
            .await
            .unwrap();
        let reply = request(&app, Some(&format!("CGISESSID={id}"))).await;
        match reply.status {
            // Undecodable bytes: a fresh session, the stored item left alone.
            StatusCode::OK => {
                let fresh = reply.session.expect("fresh session");
                assert_ne!(fresh, id, "{id}");
            }
            // Another application's item (unknown client flags): a clear server error.
            status => assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{id}"),
        }
        let still = client
            .get(&key, Default::default())
            .await
            .unwrap()
            .expect("item left in place");
        assert_eq!(still.value.as_ref(), bytes, "{id}: bytes untouched");
    }
}

/// A scripted peer that answers every request with garbage.
async fn garbage_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let _ = socket
                        .write_all(b"VA 99999999999 garbage\r\n\x00\xff\r\nHD HD HD\r\n")
                        .await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_server_answering_garbage_is_an_error_not_a_session() {
    let addr = garbage_server().await;
    let client = Client::connect(
        ClientConfig::new(addr.to_string())
            .lazy(true)
            .timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    let app = app_on(client).await;
    for cookie in [None, Some("CGISESSID=5ee0c1d2a1b2c3d4e5f60718293a4b5c")] {
        let reply = request(&app, cookie).await;
        assert!(
            reply.status.is_server_error(),
            "{cookie:?}: {}",
            reply.status
        );
        assert!(
            reply.session.is_none(),
            "no cookie for a session never stored"
        );
    }
}
