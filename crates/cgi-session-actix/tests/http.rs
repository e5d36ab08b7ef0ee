//! The middleware in actix-web's real HTTP server (two workers, a loopback port) on a real
//! memcached, with a client writing raw HTTP/1.1 bytes and memcached's own `stats` telling
//! what was stored: lazy loading, saving on change, the cookie across requests, signed
//! cookies and key rotation, many requests of one session at once, ip matching from the
//! connection's address, and a killed memcached answered with 503.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use cgi_session::memcache::client::{Client, ClientConfig};
use cgi_session::memcache::MemcacheDriver;
use cgi_session::{LockMode, SessionStore};
use cgi_session_actix::{Key, SessionError, SessionHandle, SessionMiddleware, SigningKeys};
use memcached_harness::MemcachedServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn ignore(_session: SessionHandle) -> &'static str {
    "ignored"
}

async fn read(session: SessionHandle) -> Result<String, SessionError> {
    let greet: Option<String> = session.get("greet_en").await?;
    Ok(greet.unwrap_or_default())
}

async fn write(session: SessionHandle) -> Result<&'static str, SessionError> {
    session.set("greet_en", "Hi !").await?;
    Ok("stored")
}

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

/// Reads, works a little, writes, under the session lock: concurrent requests wait their turn.
async fn slow_count_locked(session: SessionHandle) -> Result<String, SessionError> {
    let n = {
        let s = session.lock().await?;
        s.get::<u64>("visits")?.unwrap_or(0) + 1
    };
    tokio::time::sleep(Duration::from_millis(2)).await;
    session.set("visits", &n).await?;
    Ok(n.to_string())
}

async fn logout(session: SessionHandle) -> Result<&'static str, SessionError> {
    session.delete().await?;
    Ok("bye")
}

/// actix-web's HTTP server on a free loopback port, stopped when dropped.
struct Served {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl Served {
    async fn stop(self) {
        self.handle.stop(false).await;
    }
}

fn serve(middleware: SessionMiddleware) -> Served {
    let server = HttpServer::new(move || {
        App::new()
            .wrap(middleware.clone())
            .route("/ignore", web::get().to(ignore))
            .route("/read", web::get().to(read))
            .route("/write", web::get().to(write))
            .route("/count", web::get().to(count))
            .route("/logout", web::get().to(logout))
            .route("/locked", web::get().to(slow_count_locked))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Served { addr, handle }
}

/// A store on `server` (sessions idle out after 30 minutes).
async fn store_on(server: &MemcachedServer) -> SessionStore {
    let client = Client::connect(
        ClientConfig::new(server.addr().to_string())
            .timeout(Duration::from_millis(500))
            .connect_timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    SessionStore::builder(MemcacheDriver::new(client))
        .default_expire(1800)
        .build()
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

    /// The `Set-Cookie` headers.
    fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `CGISESSID=<value>` of the one `Set-Cookie` header.
    fn cookie_pair(&self) -> String {
        let cookies = self.set_cookies();
        assert_eq!(cookies.len(), 1, "{self:?}");
        cookies[0].split(';').next().unwrap().to_owned()
    }
}

/// One HTTP/1.1 GET with an optional `Cookie` header, from `from` (an address of the loopback
/// range) when given.
async fn get_from(
    addr: SocketAddr,
    path: &str,
    cookie: Option<&str>,
    from: Option<[u8; 4]>,
) -> Reply {
    let cookies: Vec<&[u8]> = cookie.iter().map(|c| c.as_bytes()).collect();
    get_raw(addr, path, &cookies, from).await
}

/// One HTTP/1.1 GET with the raw header values `cookie_headers` (each one `Cookie:` header).
async fn get_raw(
    addr: SocketAddr,
    path: &str,
    cookie_headers: &[&[u8]],
    from: Option<[u8; 4]>,
) -> Reply {
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n").into_bytes();
    for value in cookie_headers {
        request.extend_from_slice(b"Cookie: ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    let mut stream = match from {
        None => TcpStream::connect(addr).await.unwrap(),
        Some(ip) => {
            let socket = TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::from((ip, 0))).unwrap();
            socket.connect(addr).await.unwrap()
        }
    };
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

async fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Reply {
    get_from(addr, path, cookie, None).await
}

/// memcached's own counters (its `stats` command): items stored now, and the get, set and
/// touch commands served so far.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Stats {
    curr_items: u64,
    cmd_get: u64,
    cmd_set: u64,
    cmd_touch: u64,
}

async fn stats(server: &MemcachedServer) -> Stats {
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream.write_all(b"stats\r\n").await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !raw.ends_with(b"END\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "memcached closed the stats connection");
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(raw).unwrap();
    let stat = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    Stats {
        curr_items: stat("curr_items"),
        cmd_get: stat("cmd_get"),
        cmd_set: stat("cmd_set"),
        cmd_touch: stat("cmd_touch"),
    }
}

fn run<F: std::future::Future>(test: F) -> F::Output {
    actix_web::rt::System::new().block_on(test)
}

#[test]
fn lazy_load_save_on_change_and_the_cookie_across_requests_on_memcached() {
    let memcached = MemcachedServer::start();
    run(async {
        let served = serve(SessionMiddleware::new(store_on(&memcached).await));
        let addr = served.addr;

        // A handler that does not use the session: no store I/O, no cookie.
        let before = stats(&memcached).await;
        let r = get(addr, "/ignore", None).await;
        assert_eq!((r.status, r.body.as_str()), (200, "ignored"));
        assert!(r.set_cookies().is_empty(), "{r:?}");
        assert_eq!(stats(&memcached).await, before, "no store I/O");

        // A new session that is only read: not stored, no cookie.
        let r = get(addr, "/read", None).await;
        assert_eq!((r.status, r.body.as_str()), (200, ""));
        assert!(r.set_cookies().is_empty(), "{r:?}");
        let after = stats(&memcached).await;
        assert_eq!((after.curr_items, after.cmd_set), (0, before.cmd_set));

        // A change: stored once, and the cookie sent.
        let r = get(addr, "/count", None).await;
        assert_eq!((r.status, r.body.as_str()), (200, "1"), "{r:?}");
        let cookie = r.cookie_pair();
        let set_cookie = r.set_cookies()[0].to_owned();
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=1800"] {
            assert!(set_cookie.contains(attr), "{attr} missing in {set_cookie}");
        }
        assert_eq!(stats(&memcached).await.curr_items, 1);

        // The cookie brings the session back, request after request (one item all along).
        for n in 2..=5 {
            let r = get(addr, "/count", Some(&cookie)).await;
            assert_eq!(r.body, n.to_string(), "{r:?}");
            assert_eq!(r.cookie_pair(), cookie, "refreshed, never replaced");
        }
        assert_eq!(stats(&memcached).await.curr_items, 1);

        // With the cookie, a handler that does not use the session still does no store I/O.
        let before = stats(&memcached).await;
        let r = get(addr, "/ignore", Some(&cookie)).await;
        assert!(r.set_cookies().is_empty(), "{r:?}");
        assert_eq!(stats(&memcached).await, before);

        // Logout: the item is gone and the cookie removed.
        let r = get(addr, "/logout", Some(&cookie)).await;
        assert_eq!(r.status, 200);
        assert!(r.set_cookies()[0].contains("Max-Age=0"), "{r:?}");
        assert_eq!(stats(&memcached).await.curr_items, 0);
        assert_eq!(get(addr, "/count", Some(&cookie)).await.body, "1");
        served.stop().await;
    });
}

#[test]
fn a_killed_memcached_is_a_503_with_retry_after_and_a_text_body() {
    let mut memcached = MemcachedServer::start();
    run(async {
        let served = serve(SessionMiddleware::new(store_on(&memcached).await));
        let addr = served.addr;
        let cookie = get(addr, "/write", None).await.cookie_pair();
        assert_eq!(get(addr, "/read", Some(&cookie)).await.body, "Hi !");

        memcached.kill();

        for (path, cookie) in [
            ("/read", Some(cookie.as_str())),
            ("/count", Some(cookie.as_str())),
            ("/write", None),
        ] {
            let r = get(addr, path, cookie).await;
            assert_eq!(r.status, 503, "{path}: {r:?}");
            let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!(retry >= 1, "{r:?}");
            assert!(r.header("content-type").unwrap().starts_with("text/plain"));
            assert_eq!(r.header("cache-control"), Some("no-store"));
            assert!(r.body.contains("unavailable"), "{r:?}");
            assert!(!r.body.contains("127.0.0.1"), "{r:?}");
            assert!(r.set_cookies().is_empty(), "no silent new session: {r:?}");
        }
        // A handler that does not use the session still works.
        assert_eq!(get(addr, "/ignore", Some(&cookie)).await.status, 200);
        served.stop().await;
    });
}

#[test]
fn signed_cookies_tampering_and_key_rotation_over_http() {
    let memcached = MemcachedServer::start();
    run(async {
        let store = store_on(&memcached).await;
        let (old, new) = (Key::generate(), Key::generate());
        let served = serve(SessionMiddleware::new(store.clone()).signed(old.clone()));
        let signed = get(served.addr, "/count", None).await.cookie_pair();
        assert_eq!(get(served.addr, "/count", Some(&signed)).await.body, "2");

        // A tampered value, and the bare id without its signature, are no cookie.
        let value = &signed["CGISESSID=".len()..];
        let mut tampered = value.as_bytes().to_vec();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'a' { b'b' } else { b'a' };
        let tampered = format!("CGISESSID={}", String::from_utf8(tampered).unwrap());
        let bare = format!("CGISESSID={}", &value[value.len() - 32..]);
        for forged in [&tampered, &bare] {
            let before = stats(&memcached).await;
            let r = get(served.addr, "/read", Some(forged)).await;
            assert_eq!((r.status, r.body.as_str()), (200, ""), "{forged}");
            assert!(r.set_cookies()[0].contains("Max-Age=0"), "{r:?}");
            assert_eq!(
                stats(&memcached).await.cmd_get,
                before.cmd_get,
                "not looked up"
            );
        }
        served.stop().await;

        // Rotation: the new key signs, the old one is still accepted and its cookie re-signed.
        let rotated = serve(
            SessionMiddleware::new(store.clone())
                .signed(SigningKeys::new(new.clone()).previous(old)),
        );
        let r = get(rotated.addr, "/count", Some(&signed)).await;
        assert_eq!(r.body, "3", "{r:?}");
        let resigned = r.cookie_pair();
        assert_ne!(resigned, signed);
        assert_eq!(get(rotated.addr, "/count", Some(&resigned)).await.body, "4");
        rotated.stop().await;

        // The old key retired: only the re-signed cookie keeps the session.
        let retired = serve(SessionMiddleware::new(store).signed(new));
        assert_eq!(get(retired.addr, "/count", Some(&signed)).await.body, "1");
        assert_eq!(get(retired.addr, "/count", Some(&resigned)).await.body, "5");
        retired.stop().await;
    });
}

#[test]
fn concurrent_requests_of_one_session_lose_no_update() {
    let memcached = MemcachedServer::start();
    run(async {
        let served = serve(SessionMiddleware::new(store_on(&memcached).await));
        let addr = served.addr;
        let cookie = get(addr, "/count", None).await.cookie_pair();
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let cookie = cookie.clone();
                actix_web::rt::spawn(async move { get(addr, "/count", Some(&cookie)).await })
            })
            .collect();
        let mut counts = Vec::new();
        for t in tasks {
            let r = t.await.unwrap();
            assert_eq!(r.status, 200, "{r:?}");
            counts.push(r.body.parse::<u64>().unwrap());
        }
        counts.sort_unstable();
        assert_eq!(counts, (2..=101).collect::<Vec<u64>>(), "each request once");
        assert_eq!(get(addr, "/count", Some(&cookie)).await.body, "102");
        served.stop().await;
    });
}

#[test]
fn ip_matching_uses_the_connections_address() {
    let memcached = MemcachedServer::start();
    run(async {
        let client = Client::connect(ClientConfig::new(memcached.addr().to_string()))
            .await
            .unwrap();
        let store = SessionStore::builder(MemcacheDriver::new(client))
            .ip_match(true)
            .build();
        let served = serve(SessionMiddleware::new(store));
        let r = get_from(served.addr, "/write", None, Some([127, 0, 0, 1])).await;
        let cookie = r.cookie_pair();
        let home = get_from(served.addr, "/read", Some(&cookie), Some([127, 0, 0, 1])).await;
        assert_eq!(home.body, "Hi !");
        // The same cookie from another address of the loopback range: not that session.
        let other = get_from(served.addr, "/read", Some(&cookie), Some([127, 0, 0, 2])).await;
        assert_eq!((other.status, other.body.as_str()), (200, ""), "{other:?}");
        served.stop().await;
    });
}

#[test]
fn cookie_headers_as_browsers_send_them_keep_the_session() {
    let memcached = MemcachedServer::start();
    run(async {
        let served =
            serve(SessionMiddleware::new(store_on(&memcached).await).signed(Key::generate()));
        let session = get(served.addr, "/count", None).await.cookie_pair();
        let session = session.as_bytes();
        let cat = |parts: &[&[u8]]| parts.concat();
        // Each case is the list of `Cookie:` header values of one request.
        let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
            (
                "analytics cookies with `=` and dots around it",
                vec![cat(&[
                    b"_ga=GA1.1.1234567890.1700000000; ",
                    session,
                    b"; prefs=eyJhIjoxfQ==",
                ])],
            ),
            (
                "a latin-1 byte in another cookie (a Perl page set it)",
                vec![cat(&[b"lang=fran\xe7ais; ", session, b"; x=\xff"])],
            ),
            (
                "several Cookie headers, one per cookie",
                vec![
                    b"lang=fran\xe7ais".to_vec(),
                    b"theme=dark".to_vec(),
                    session.to_vec(),
                ],
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
            let r = get_raw(served.addr, "/count", &headers, None).await;
            assert_eq!(r.status, 200, "{what}: {r:?}");
            assert_eq!(
                r.body,
                visits.to_string(),
                "{what}: the visitor was logged out"
            );
        }
        served.stop().await;
    });
}

#[test]
fn on_demand_locks_serialize_read_then_write_handlers_across_workers() {
    let memcached = MemcachedServer::start();
    run(async {
        let store = store_on(&memcached).await;
        let served = serve(SessionMiddleware::new(store).lock_mode(LockMode::OnDemand));
        let addr = served.addr;
        let cookie = get(addr, "/count", None).await.cookie_pair();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let cookie = cookie.clone();
                actix_web::rt::spawn(async move { get(addr, "/locked", Some(&cookie)).await })
            })
            .collect();
        for t in tasks {
            let r = t.await.unwrap();
            assert_eq!(r.status, 200, "{r:?}");
        }
        assert_eq!(
            get(addr, "/count", Some(&cookie)).await.body,
            "22",
            "no update lost"
        );
        served.stop().await;
    });
}
