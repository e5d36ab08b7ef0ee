//! Scripted fake servers: exact bytes on the wire, for the cases a real
//! memcached never produces.

use std::time::Duration;

use cgi_session_memcache_client::{Client, ClientConfig, Error, GetOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

async fn client(addr: &str) -> Client {
    Client::connect(
        ClientConfig::new(addr)
            .pool_size(1)
            .lazy(true)
            .timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap()
}

/// Reads one request line; returns its `O` token (e.g. "O5").
async fn read_request(conn: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    let n = conn.read_line(&mut line).await.unwrap();
    assert!(n > 0, "client closed the connection");
    assert!(line.ends_with("\r\n"), "request line {line:?}");
    line.split_whitespace()
        .find(|t| t.starts_with('O'))
        .unwrap_or_else(|| panic!("no opaque token in {line:?}"))
        .to_string()
}

async fn accept(l: &TcpListener) -> BufReader<TcpStream> {
    BufReader::new(l.accept().await.unwrap().0)
}

#[tokio::test]
async fn garbled_reply_is_a_protocol_error_and_the_connection_is_replaced() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut first = accept(&l).await;
        read_request(&mut first).await;
        first.write_all(b"XX what is this\r\n").await.unwrap();
        // The client must open a new connection for the next request.
        let mut second = accept(&l).await;
        let o = read_request(&mut second).await;
        second
            .write_all(format!("VA 2 {o}\r\nok\r\n").as_bytes())
            .await
            .unwrap();
        // The first connection was closed by the client.
        let mut rest = String::new();
        assert_eq!(first.read_line(&mut rest).await.unwrap(), 0);
    });
    let c = client(&addr).await;
    let err = c.get("k", GetOptions::new()).await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err}");
    assert!(err.to_string().contains(&addr), "{err}");
    let item = c.get("k", GetOptions::new()).await.unwrap().unwrap();
    assert_eq!(&item.value[..], b"ok");
    server.await.unwrap();
}

#[tokio::test]
async fn reply_split_across_writes_parses() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut conn = accept(&l).await;
        let o = read_request(&mut conn).await;
        let reply = format!("VA 11 c42 {o}\r\nhello world\r\n");
        for chunk in reply.as_bytes().chunks(3) {
            conn.write_all(chunk).await.unwrap();
            conn.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let o = read_request(&mut conn).await;
        conn.write_all(format!("EN {o}\r\n").as_bytes())
            .await
            .unwrap();
    });
    let c = client(&addr).await;
    let item = c
        .get("k", GetOptions::new().cas(true))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&item.value[..], b"hello world");
    assert_eq!(item.cas, Some(42));
    assert_eq!(c.get("k2", GetOptions::new()).await.unwrap(), None);
    server.await.unwrap();
}

#[tokio::test]
async fn wrong_va_length_is_a_protocol_error() {
    for bad in [
        "VA 1 {o}\r\nhi\r\n",
        "VA 3 {o}\r\nhi\r\nEN\r\n",
        "VA x {o}\r\nhi\r\n",
    ] {
        let (l, addr) = listener().await;
        let bad = bad.to_string();
        let server = tokio::spawn(async move {
            let mut conn = accept(&l).await;
            let o = read_request(&mut conn).await;
            conn.write_all(bad.replace("{o}", &o).as_bytes())
                .await
                .unwrap();
            // Keep the connection open until the client closes it.
            let mut rest = String::new();
            let _ = conn.read_line(&mut rest).await;
        });
        let c = client(&addr).await;
        let err = c.get("k", GetOptions::new()).await.unwrap_err();
        assert!(matches!(err, Error::Protocol { .. }), "{err}");
        drop(c);
        server.await.unwrap();
    }
}

#[tokio::test]
async fn mismatched_opaque_is_a_protocol_error() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut conn = accept(&l).await;
        read_request(&mut conn).await;
        conn.write_all(b"EN O999999\r\n").await.unwrap();
        let mut rest = String::new();
        let _ = conn.read_line(&mut rest).await;
    });
    let c = client(&addr).await;
    let err = c.get("k", GetOptions::new()).await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err}");
    drop(c);
    server.await.unwrap();
}

#[tokio::test]
async fn dropped_request_does_not_shift_replies() {
    let (l, addr) = listener().await;
    let (got_first_tx, got_first_rx) = oneshot::channel();
    let server = tokio::spawn(async move {
        let mut conn = accept(&l).await;
        let o1 = read_request(&mut conn).await;
        got_first_tx.send(()).unwrap();
        let o2 = read_request(&mut conn).await;
        // Answer both only now, in order.
        conn.write_all(format!("VA 5 {o1}\r\nfirst\r\nVA 6 {o2}\r\nsecond\r\n").as_bytes())
            .await
            .unwrap();
        let o3 = read_request(&mut conn).await;
        conn.write_all(format!("VA 5 {o3}\r\nthird\r\n").as_bytes())
            .await
            .unwrap();
    });
    let c = client(&addr).await;
    // Start a get and drop its future once the server has the request.
    tokio::select! {
        r = c.get("first", GetOptions::new()) => panic!("first get should not finish: {r:?}"),
        _ = got_first_rx => {}
    }
    let second = c.get("second", GetOptions::new()).await.unwrap().unwrap();
    assert_eq!(&second.value[..], b"second");
    let third = c.get("third", GetOptions::new()).await.unwrap().unwrap();
    assert_eq!(&third.value[..], b"third");
    server.await.unwrap();
}

#[tokio::test]
async fn server_closing_the_connection_fails_in_flight_requests() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut conn = accept(&l).await;
        read_request(&mut conn).await;
        drop(conn);
        let mut conn = accept(&l).await;
        let o = read_request(&mut conn).await;
        conn.write_all(format!("HD {o}\r\n").as_bytes())
            .await
            .unwrap();
    });
    let c = client(&addr).await;
    let err = c.get("k", GetOptions::new()).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(c.touch("k", 10).await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn server_error_keeps_the_connection() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut conn = accept(&l).await;
        read_request(&mut conn).await;
        conn.write_all(b"SERVER_ERROR out of memory storing object\r\n")
            .await
            .unwrap();
        let o = read_request(&mut conn).await;
        conn.write_all(format!("EN {o}\r\n").as_bytes())
            .await
            .unwrap();
    });
    let c = client(&addr).await;
    let err = c.get("k", GetOptions::new()).await.unwrap_err();
    assert!(matches!(err, Error::Server { .. }), "{err}");
    assert_eq!(c.get("k", GetOptions::new()).await.unwrap(), None);
    server.await.unwrap();
}
