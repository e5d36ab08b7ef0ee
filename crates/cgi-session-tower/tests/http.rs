//! The layer over real HTTP: an axum server on a loopback port and a client writing raw bytes,
//! so that `Cookie` headers arrive exactly as browsers send them (latin-1 bytes, several
//! headers, quotes), and error responses are read as the visitor sees them, with the layer's
//! log captured.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use cgi_session::memcache::client::{Client, ClientConfig};
use cgi_session::memcache::MemcacheDriver;
use cgi_session::{MemoryDriver, SessionStore};
use cgi_session_tower::{Key, SessionError, SessionHandle, SessionLayer};
use memcached_harness::MemcachedServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// Serves `layer` over HTTP on a free loopback port; the server runs as long as the test.
async fn serve(layer: SessionLayer) -> SocketAddr {
    let app = Router::new()
        .route("/count", get(count))
        .route("/set-word", get(set_word))
        .route("/read-number", get(read_number))
        .layer(layer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `Set-Cookie: CGISESSID=...` (the first part), if any.
    fn session_cookie(&self) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .find_map(|(_, v)| v.split(';').next())
    }
}

/// One HTTP/1.1 GET with the raw header lines `cookie_headers` (each one `Cookie:` header).
async fn get_with(addr: SocketAddr, path: &str, cookie_headers: &[&[u8]]) -> Reply {
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n").into_bytes();
    for value in cookie_headers {
        request.extend_from_slice(b"Cookie: ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .expect("the server answers")
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A fresh session with one visit; returns its `CGISESSID=<id>` pair.
async fn first_visit(addr: SocketAddr) -> String {
    let r = get_with(addr, "/count", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "1"), "{r:?}");
    r.session_cookie().expect("a session cookie").to_owned()
}

#[tokio::test]
async fn cookie_headers_as_browsers_send_them_keep_the_session() {
    let store = SessionStore::builder(MemoryDriver::new())
        .default_expire(1800)
        .build();
    let addr = serve(SessionLayer::new(store)).await;
    let session = first_visit(addr).await;
    let session = session.as_bytes();

    let cat = |parts: &[&[u8]]| parts.concat();
    // Each case is the list of `Cookie:` header values of one request.
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "Chrome, one header, analytics cookies with `=` and dots",
            vec![cat(&[
                b"_ga=GA1.1.1234567890.1700000000; ",
                session,
                b"; prefs=eyJhIjoxfQ==; _gid=GA1.2.1.2",
            ])],
        ),
        (
            "a latin-1 byte in another cookie (a Perl page set it)",
            vec![cat(&[b"lang=fran\xe7ais; ", session])],
        ),
        (
            "the latin-1 byte after the session cookie",
            vec![cat(&[session, b"; lang=fran\xe7ais"])],
        ),
        (
            "Firefox, an empty value and a cookie without `=`",
            vec![cat(&[b"empty=; flag; ", session])],
        ),
        (
            "several Cookie headers, one per cookie (HTTP/2 style)",
            vec![
                b"lang=fran\xe7ais".to_vec(),
                b"theme=dark".to_vec(),
                session.to_vec(),
            ],
        ),
        (
            "a quoted session cookie",
            vec![cat(&[
                b"CGISESSID=\"",
                &session[b"CGISESSID=".len()..],
                b"\"",
            ])],
        ),
        (
            "a second, older session cookie after the first (CGI.pm takes the first)",
            vec![cat(&[
                session,
                b"; CGISESSID=0123456789abcdef0123456789abcdef",
            ])],
        ),
    ];
    for (visits, (what, headers)) in (2..).zip(&cases) {
        let headers: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
        let r = get_with(addr, "/count", &headers).await;
        assert_eq!(r.status, 200, "{what}: {r:?}");
        assert_eq!(
            r.body,
            visits.to_string(),
            "{what}: the visitor was logged out"
        );
        // The cookie is refreshed (sliding expiry), never replaced.
        if let Some(c) = r.session_cookie() {
            assert_eq!(c.as_bytes(), session, "{what}: a new session id");
        }
    }
}

#[tokio::test]
async fn the_first_session_cookie_counts_as_in_cgi_pm() {
    let store = SessionStore::builder(MemoryDriver::new()).build();
    let addr = serve(SessionLayer::new(store)).await;
    let session = first_visit(addr).await;
    for first in [
        &b"CGISESSID=0123456789abcdef0123456789abcdef"[..],
        b"CGISESSID=",
        b"CGISESSID=a/b",
    ] {
        let header = [first, b"; ", session.as_bytes()].concat();
        let r = get_with(addr, "/count", &[&header]).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            "1",
            "{}: a fresh session",
            String::from_utf8_lossy(first)
        );
    }
}

#[tokio::test]
async fn signed_cookies_next_to_latin1_cookies_keep_the_session() {
    let store = SessionStore::builder(MemoryDriver::new()).build();
    let addr = serve(SessionLayer::new(store).signed(Key::generate())).await;
    let session = first_visit(addr).await;
    let header = [b"lang=fran\xe7ais; ", session.as_bytes(), b"; x=\xff"].concat();
    let r = get_with(addr, "/count", &[&header]).await;
    assert_eq!(r.body, "2", "{r:?}");
    // Several headers, the signed value holding `=` and `+/` (base64).
    let r = get_with(addr, "/count", &[b"lang=fran\xe7ais", session.as_bytes()]).await;
    assert_eq!(r.body, "3", "{r:?}");
}

// ----- error responses ---------------------------------------------------------------------

/// Log lines captured from the layer (a `tracing` subscriber for this test's thread: the
/// server runs on the same current-thread runtime).
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

/// What a visitor may never see in an error body.
fn assert_no_internals(body: &str, port: u16) {
    for internal in [
        "127.0.0.1",
        &port.to_string(),
        "::",
        "memcache",
        "Error",
        "i64",
        "visits",
        "`",
    ] {
        assert!(
            !body.contains(internal),
            "{internal:?} in the body {body:?}"
        );
    }
}

/// The layer over a memcached that was killed before the first request: the address served,
/// and the dead server's port.
async fn serve_on_a_dead_memcached() -> (SocketAddr, u16) {
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
    let addr = serve(SessionLayer::new(
        SessionStore::builder(MemcacheDriver::new(client)).build(),
    ))
    .await;
    (addr, port)
}

#[tokio::test]
async fn a_store_that_is_down_is_a_plain_503_with_the_details_in_the_log() {
    let log = Captured::default();
    let _guard = tracing::subscriber::set_default(log.subscriber());
    let (addr, port) = serve_on_a_dead_memcached().await;
    let r = get_with(
        addr,
        "/count",
        &[b"lang=fran\xe7ais; CGISESSID=0123456789abcdef0123456789abcdef"],
    )
    .await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("5"), "{r:?}");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(
        r.body,
        "The session store is unavailable; please try again shortly.\n"
    );
    assert_no_internals(&r.body, port);
    let logged = log.text();
    assert!(
        logged.contains(&format!("127.0.0.1:{port}")) && logged.contains("503"),
        "the log names the server: {logged}"
    );
    // Logged once: the layer logged the failure when it happened, not again as the answer.
    assert_eq!(
        logged.matches(&format!("127.0.0.1:{port}")).count(),
        1,
        "{logged}"
    );
}

/// An outage fails every request: the layer logs it once per 10 s, not once per request.
#[tokio::test]
async fn an_outage_is_logged_once_per_interval_not_once_per_request() {
    let log = Captured::default();
    let _guard = tracing::subscriber::set_default(log.subscriber());
    let (addr, _) = serve_on_a_dead_memcached().await;
    let started = std::time::Instant::now();
    for _ in 0..50 {
        let r = get_with(
            addr,
            "/count",
            &[b"CGISESSID=0123456789abcdef0123456789abcdef"],
        )
        .await;
        assert_eq!(r.status, 503, "{r:?}");
    }
    let logged = log.text();
    let lines = logged.matches("answering 503").count();
    // 50 failures well within one 10-s interval (each is refused at once): one line. Should
    // the machine be slow enough to cross an interval, one more.
    let allowed = 1 + usize::from(started.elapsed() >= Duration::from_secs(10));
    assert!((1..=allowed).contains(&lines), "{lines} lines: {logged}");
}

#[tokio::test]
async fn a_handler_error_is_a_plain_500_with_the_details_in_the_log() {
    let log = Captured::default();
    let _guard = tracing::subscriber::set_default(log.subscriber());
    let addr = serve(SessionLayer::new(
        SessionStore::builder(MemoryDriver::new()).build(),
    ))
    .await;
    let r = get_with(addr, "/set-word", &[]).await;
    let cookie = r.session_cookie().unwrap().to_owned();
    let r = get_with(addr, "/read-number", &[cookie.as_bytes()]).await;
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(r.body, "The session could not be used.\n");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_no_internals(&r.body, addr.port());
    let logged = log.text();
    assert!(
        logged.contains("visits") && logged.contains("does not hold the requested type"),
        "the log has the details: {logged}"
    );
    assert!(logged.contains("answered 500"), "{logged}");
}
