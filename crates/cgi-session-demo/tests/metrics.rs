//! `GET /metrics` of the demo binary on a real memcached: after known traffic (new sessions,
//! page views with a cookie, unknown ids, then a dead memcached), the Prometheus text holds
//! exactly the counts that traffic makes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use memcached_harness::MemcachedServer;

mod common;
use common::{http_get, Demo};

/// `POST /greet` without a cookie: a new session holding `greet_en`. Returns the cookie.
fn new_session(addr: SocketAddr) -> String {
    let body = "greet_en=hi";
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /greet HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 303"), "{raw}");
    raw.lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .expect("a new session's cookie")
}

/// The scrape as `name{labels}` -> value.
fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let (status, _, body) = http_get(addr, "/metrics", None);
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn count(m: &HashMap<String, f64>, name: &str) -> u64 {
    m.get(name).copied().unwrap_or(0.0) as u64
}

#[test]
fn metrics_count_the_traffic_exactly() {
    let mut memcached = MemcachedServer::start();
    let server = memcached.addr().to_string();
    let demo = Demo::start(&["--dsn", "driver:memcache", "--servers", &server]);

    let before = scrape(demo.addr);
    assert_eq!(
        count(&before, r#"cgi_session_loads_total{result="hit"}"#),
        0
    );

    // 3 new sessions (one save each; no load: no cookie yet).
    let cookies: Vec<String> = (0..3).map(|_| new_session(demo.addr)).collect();
    // 5 views with the first cookie: a load (hit) and a save (the visit counter) each.
    for _ in 0..5 {
        let (status, set_cookie, _) = http_get(demo.addr, "/", Some(&cookies[0]));
        assert_eq!(status, 200);
        assert!(set_cookie.is_some(), "the cookie is refreshed");
    }
    // 2 reads with the second: a load (hit) each, nothing saved.
    for _ in 0..2 {
        let (status, _, body) = http_get(demo.addr, "/api/session", Some(&cookies[1]));
        assert_eq!(status, 200, "{body}");
    }
    // 4 reads with an id nothing is stored under: a miss each, nothing saved.
    for _ in 0..4 {
        let (status, _, _) = http_get(
            demo.addr,
            "/api/session",
            Some("CGISESSID=0123456789abcdef0123456789abcdef"),
        );
        assert_eq!(status, 200);
    }
    let m = scrape(demo.addr);
    assert_eq!(count(&m, r#"cgi_session_loads_total{result="hit"}"#), 7);
    assert_eq!(count(&m, r#"cgi_session_loads_total{result="miss"}"#), 4);
    assert_eq!(count(&m, r#"cgi_session_loads_total{result="error"}"#), 0);
    assert_eq!(
        count(&m, r#"cgi_session_operation_seconds_count{op="load"}"#),
        11
    );
    assert_eq!(count(&m, r#"cgi_session_saves_total{result="written"}"#), 8);
    assert_eq!(
        count(&m, r#"cgi_session_operation_seconds_count{op="save"}"#),
        8
    );
    assert_eq!(count(&m, "cgi_session_store_reads_total"), 11);
    assert!(m
        .keys()
        .all(|k| !k.starts_with("cgi_session_store_errors_total")));

    // memcached dies: the next view's load fails on it, and the error names it.
    memcached.kill();
    let (status, _, _) = http_get(demo.addr, "/", Some(&cookies[2]));
    assert_eq!(status, 503);
    let m = scrape(demo.addr);
    assert_eq!(count(&m, r#"cgi_session_loads_total{result="error"}"#), 1);
    assert_eq!(count(&m, r#"cgi_session_loads_total{result="hit"}"#), 7);
    assert_eq!(
        count(
            &m,
            &format!(
                r#"cgi_session_store_errors_total{{driver="memcache",server="{server}",kind="unavailable"}}"#
            )
        ),
        1,
        "{m:?}"
    );
    assert!(!demo.log().is_empty());
}

/// With two copies of each session on two servers, a load survives one dead server; the
/// copy that failed is counted as a store error of that server, none of the live one.
#[test]
fn a_replica_that_fails_under_a_successful_load_is_counted_by_server() {
    use cgi_session::memcache::client::{Client, ClientConfig};
    use cgi_session::memcache::{MemcacheDriver, ReplicatedHandle};
    use cgi_session::SessionStore;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let live = MemcachedServer::start();
    let mut dead = MemcachedServer::start();
    let (live_addr, dead_addr) = (live.addr().to_string(), dead.addr().to_string());
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let client = Client::connect(
                    ClientConfig::pool([live_addr.clone(), dead_addr.clone()]).lazy(true),
                )
                .await
                .unwrap();
                let driver = MemcacheDriver::new(ReplicatedHandle::new(client, 1));
                let store = SessionStore::builder(driver).build();
                let mut s = store.new_session(None, None).await.unwrap();
                s.set("greet_en", "hi").unwrap();
                s.flush().await.unwrap();
                let id = s.id().unwrap().as_str().to_owned();
                dead.kill();
                let again = store.load(Some(&id), None).await.unwrap();
                assert_eq!(
                    again.get::<String>("greet_en").unwrap().as_deref(),
                    Some("hi")
                );
            });
    });
    let mut errors = HashMap::new();
    let mut hits = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let DebugValue::Counter(n) = value else {
            continue;
        };
        let label = |name: &str| {
            key.labels()
                .find(|l| l.key() == name)
                .map(|l| l.value().to_owned())
        };
        match key.name() {
            "cgi_session_store_errors_total" => {
                errors.insert(label("server").unwrap(), (n, label("kind").unwrap()));
            }
            "cgi_session_loads_total" if label("result").as_deref() == Some("hit") => hits = n,
            _ => {}
        }
    }
    assert_eq!(hits, 1);
    assert_eq!(
        errors,
        HashMap::from([(dead_addr, (1, "unavailable".to_owned()))]),
        "one error, of the dead server only"
    );
}

/// The operation spans name the memcached server: the handle's servers, and the one that
/// failed when an operation fails.
#[test]
fn the_operation_spans_name_the_server() {
    use std::sync::{Arc, Mutex};

    use cgi_session::memcache::client::{Client, ClientConfig};
    use cgi_session::memcache::MemcacheDriver;
    use cgi_session::SessionStore;
    use tracing_subscriber::fmt::format::FmtSpan;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut memcached = MemcachedServer::start();
    let server = memcached.addr().to_string();
    let sink = Sink::default();
    let out = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("cgi_session_core=debug")
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || out.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let client = Client::connect(ClientConfig::new(server.clone()))
                    .await
                    .unwrap();
                let store = SessionStore::builder(MemcacheDriver::new(client)).build();
                let mut s = store.new_session(None, None).await.unwrap();
                s.set("greet_en", "hi").unwrap();
                s.flush().await.unwrap();
                let id = s.id().unwrap().as_str().to_owned();
                memcached.kill();
                assert!(store.load(Some(&id), None).await.is_err());
            });
    });
    let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let line = |span: &str| {
        log.lines()
            .find(|l| l.contains(span))
            .unwrap_or_else(|| panic!("{span} in:\n{log}"))
            .to_owned()
    };
    assert!(
        line("session.save{session=")
            .contains(&format!("driver=\"memcache\" server=memcached {server}")),
        "{log}"
    );
    // The failed load names the server that failed.
    assert!(
        line("session.load{").contains(&format!("server={server}")),
        "{log}"
    );
}
