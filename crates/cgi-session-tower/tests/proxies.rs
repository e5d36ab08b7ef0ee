//! Ip matching behind a reverse proxy, over real HTTP (an axum server on a loopback port, so
//! the connection's address is 127.0.0.1): the forwarded address counts only when the
//! connection comes from a trusted proxy.

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Extension, Router};
use cgi_session::{MemoryDriver, SessionStore};
use cgi_session_tower::{
    ClientAddr, ForwardedHeader, SessionError, SessionHandle, SessionLayer, TrustedProxies,
};
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

/// The address the session was created from (`_SESSION_REMOTE_ADDR`).
async fn remote(session: SessionHandle) -> Result<String, SessionError> {
    Ok(session
        .guard()
        .await?
        .remote_addr()
        .unwrap_or_default()
        .to_owned())
}

/// The address the layer recorded for logs.
async fn client(addr: Option<Extension<ClientAddr>>) -> String {
    addr.map(|Extension(ClientAddr(ip))| ip.to_string())
        .unwrap_or_default()
}

/// Serves the routes over `layer` (ip matching on) on a free loopback port.
async fn serve(proxies: TrustedProxies) -> SocketAddr {
    let store = SessionStore::builder(MemoryDriver::new())
        .default_expire(600)
        .ip_match(true)
        .build();
    let app = Router::new()
        .route("/count", get(count))
        .route("/remote", get(remote))
        .route("/client", get(client))
        .layer(SessionLayer::new(store).trusted_proxies(proxies));
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

struct Reply {
    status: u16,
    /// `CGISESSID=<id>` when the answer set the session cookie.
    cookie: Option<String>,
    body: String,
}

async fn send(addr: SocketAddr, path: &str, cookie: Option<&str>, headers: &[&str]) -> Reply {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        request.push_str(&format!("Cookie: {c}\r\n"));
    }
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let cookie = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.trim().split(';').next().unwrap().to_owned())
        .find(|c| c.len() > "CGISESSID=".len());
    Reply {
        status,
        cookie,
        body: body.to_owned(),
    }
}

/// `GET /count`: the counter shown.
async fn count_with(addr: SocketAddr, cookie: &str, headers: &[&str]) -> u64 {
    let r = send(addr, "/count", Some(cookie), headers).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body.parse().unwrap()
}

#[tokio::test]
async fn behind_a_trusted_proxy_ip_matching_uses_the_forwarded_address() {
    let addr = serve(TrustedProxies::parse("127.0.0.1, ::1").unwrap()).await;
    let first = send(addr, "/count", None, &["X-Forwarded-For: 192.0.2.1"]).await;
    assert_eq!((first.status, first.body.as_str()), (200, "1"));
    let cookie = first.cookie.expect("a session");
    let r = send(
        addr,
        "/remote",
        Some(&cookie),
        &["X-Forwarded-For: 192.0.2.1"],
    )
    .await;
    assert_eq!(
        r.body, "192.0.2.1",
        "the session belongs to the forwarded address"
    );
    assert_eq!(
        count_with(addr, &cookie, &["X-Forwarded-For: 192.0.2.1"]).await,
        2
    );
    // What the client wrote left of the proxy's entry is not believed.
    let spoofed = ["X-Forwarded-For: 192.0.2.2, 192.0.2.1"];
    assert_eq!(count_with(addr, &cookie, &spoofed).await, 3);
    // The same cookie from another client address: a fresh session (ip matching).
    assert_eq!(
        count_with(addr, &cookie, &["X-Forwarded-For: 192.0.2.2"]).await,
        1
    );
    // A chain of proxies: X-Forwarded-For on two lines, the trusted hop skipped.
    let two_lines = ["X-Forwarded-For: 192.0.2.1", "X-Forwarded-For: 127.0.0.1"];
    assert_eq!(count_with(addr, &cookie, &two_lines).await, 4);
    // Without the header the connection's address is the client's: not the owner.
    assert_eq!(count_with(addr, &cookie, &[]).await, 1);
    // Garbage in the header: the proxy's own address, never a panic or a 500.
    let r = send(addr, "/client", None, &["X-Forwarded-For: <script>, ::zz"]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "127.0.0.1"));
    // The owner still has the session.
    assert_eq!(
        count_with(addr, &cookie, &["X-Forwarded-For: 192.0.2.1"]).await,
        5
    );
    // The address handlers (and their logs) see.
    let r = send(addr, "/client", None, &["X-Forwarded-For: 2001:db8::7"]).await;
    assert_eq!(r.body, "2001:db8::7");
}

#[tokio::test]
async fn from_an_untrusted_connection_the_forwarding_headers_are_ignored() {
    for proxies in [
        TrustedProxies::none(),
        TrustedProxies::parse("10.0.0.0/8").unwrap(),
    ] {
        let addr = serve(proxies).await;
        let first = send(addr, "/count", None, &["X-Forwarded-For: 192.0.2.1"]).await;
        let cookie = first.cookie.expect("a session");
        let r = send(addr, "/remote", Some(&cookie), &[]).await;
        assert_eq!(r.body, "127.0.0.1", "the connection's address");
        // Another forwarded address changes nothing: the header is not believed.
        let other = ["X-Forwarded-For: 192.0.2.2", "Forwarded: for=192.0.2.2"];
        assert_eq!(count_with(addr, &cookie, &other).await, 2);
        let r = send(addr, "/client", None, &["X-Forwarded-For: 192.0.2.9"]).await;
        assert_eq!(r.body, "127.0.0.1");
    }
}

#[tokio::test]
async fn the_forwarded_header_when_configured_and_only_it() {
    let proxies = TrustedProxies::parse("127.0.0.1")
        .unwrap()
        .header(ForwardedHeader::Forwarded);
    let addr = serve(proxies).await;
    let fwd = ["Forwarded: for=\"[2001:db8:cafe::17]:4711\";proto=https"];
    let r = send(addr, "/client", None, &fwd).await;
    assert_eq!(r.body, "2001:db8:cafe::17");
    // X-Forwarded-For is not what these proxies write: ignored.
    let r = send(addr, "/client", None, &["X-Forwarded-For: 192.0.2.1"]).await;
    assert_eq!(r.body, "127.0.0.1");
    // Obfuscated and broken values: the proxy's address.
    for value in [
        "for=_hidden",
        "for=unknown",
        "for=\"unterminated",
        "for=[::1]",
    ] {
        let header = format!("Forwarded: {value}");
        let r = send(addr, "/client", None, &[&header]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "127.0.0.1"), "{value}");
    }
    let first = send(addr, "/count", None, &fwd).await;
    let cookie = first.cookie.expect("a session");
    assert_eq!(count_with(addr, &cookie, &fwd).await, 2);
    assert_eq!(
        count_with(addr, &cookie, &["Forwarded: for=192.0.2.3"]).await,
        1
    );
}
