//! Scripted fake servers: exact bytes on the wire, for the cases a real
//! memcached never produces; and a real memcached frozen with SIGSTOP, for
//! replies that arrive after the request timed out.

use std::time::{Duration, Instant};

use cgi_session_memcache_client::{Client, ClientConfig, Error, GetOptions, SetOptions};
use memcached_harness::MemcachedServer;
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

#[tokio::test]
async fn a_timed_out_request_closes_its_connection_and_the_next_one_opens_a_new_one() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut first = accept(&l).await;
        let late = read_request(&mut first).await;
        // Hung: no answer until the client has given up and closed the connection.
        let mut rest = String::new();
        assert_eq!(first.read_line(&mut rest).await.unwrap(), 0, "{rest:?}");
        // The late reply goes nowhere (the peer is gone; a write error is fine).
        let _ = first
            .write_all(format!("VA 7 {late}\r\nvalue-a\r\n").as_bytes())
            .await;
        let mut second = accept(&l).await;
        let o = read_request(&mut second).await;
        second
            .write_all(format!("VA 7 {o}\r\nvalue-b\r\n").as_bytes())
            .await
            .unwrap();
        let o = read_request(&mut second).await;
        second
            .write_all(format!("EN {o}\r\n").as_bytes())
            .await
            .unwrap();
        2
    });
    let c = Client::connect(
        ClientConfig::new(&addr)
            .pool_size(1)
            .lazy(true)
            .timeout(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let err = c.get("a", GetOptions::new()).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let b = c.get("b", GetOptions::new()).await.unwrap().unwrap();
    assert_eq!(&b.value[..], b"value-b");
    assert_eq!(c.get("c", GetOptions::new()).await.unwrap(), None);
    assert_eq!(server.await.unwrap(), 2, "connections accepted");
}

fn total_connections(server: &MemcachedServer) -> u64 {
    server.stats()["total_connections"].parse().unwrap()
}

/// A real memcached frozen with SIGSTOP: requests on every pooled connection
/// time out; once it runs again it executes what it had received and answers
/// into closed connections. Later requests get their own replies, never the
/// late ones, and exactly the connections that timed out are replaced.
#[tokio::test]
async fn late_replies_of_a_hung_server_never_reach_later_requests() {
    for pool_size in [1usize, 3] {
        let mut server = MemcachedServer::start();
        let c = Client::connect(
            ClientConfig::new(server.addr().to_string())
                .pool_size(pool_size)
                .timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap();
        for i in 0..pool_size {
            c.set(format!("a{i}"), format!("value-a{i}"), SetOptions::new())
                .await
                .unwrap();
        }
        for i in 0..2 * pool_size {
            c.set(format!("b{i}"), format!("value-b{i}"), SetOptions::new())
                .await
                .unwrap();
        }
        let before = total_connections(&server);

        server.pause();
        // One request per pooled connection (the pool spreads requests in flight), and a
        // write, all timing out.
        let gets: Vec<_> = (0..pool_size)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move { c.get(format!("a{i}"), GetOptions::new()).await })
            })
            .collect();
        let write = c.set("w", "written-late", SetOptions::new()).await;
        let write = write.unwrap_err();
        assert!(write.is_timeout() && write.is_outcome_unknown(), "{write}");
        for get in gets {
            let err = get.await.unwrap().unwrap_err();
            assert!(err.is_timeout() && !err.is_outcome_unknown(), "{err}");
        }
        server.resume();

        for round in 0..2 {
            for i in 0..2 * pool_size {
                let item = c
                    .get(format!("b{i}"), GetOptions::new())
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("b{i} missing (round {round})"));
                assert_eq!(
                    item.value,
                    format!("value-b{i}").as_bytes(),
                    "pool {pool_size}"
                );
            }
        }
        // +1: the `stats` connection of this reading itself.
        assert_eq!(
            total_connections(&server) - before,
            pool_size as u64 + 1,
            "pool {pool_size}: every connection that timed out, and only those, replaced"
        );

        // What the server had received before the client gave up may still be executed
        // (memcached 1.6 runs the commands it reads even from a closed connection): the
        // write that timed out did happen.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let w = c.get("w", GetOptions::new()).await.unwrap();
            if let Some(w) = w {
                assert_eq!(&w.value[..], b"written-late");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the timed-out write never took effect"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
