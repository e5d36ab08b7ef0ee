//! The demo app in-process (tower's `oneshot`), and the real binary on a loopback port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use cgi_session::{MemoryDriver, SessionStore};
use cgi_session_demo::{app, SessionInfo};
use http::{Request, StatusCode};
use memcached_harness::MemcachedServer;
use tower::ServiceExt;

mod common;
use common::{http_get, start_session};

struct Reply {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Option<String>,
    body: String,
}

impl Reply {
    /// `CGISESSID=<id>` from the Set-Cookie header.
    fn pair(&self) -> String {
        let c = self.set_cookie.as_deref().expect("a Set-Cookie header");
        c.split(';').next().unwrap().to_owned()
    }
}

async fn send(app: &Router, method: &str, path: &str, cookie: Option<&str>, form: &str) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if method == "POST" {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::from(form.to_owned())).unwrap())
        .await
        .unwrap();
    let header = |name: &str| {
        let all: Vec<String> = res
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert!(all.len() <= 1, "{name}: {all:?}");
        all.into_iter().next()
    };
    let (status, location, set_cookie) = (res.status(), header("location"), header("set-cookie"));
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    Reply {
        status,
        location,
        set_cookie,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn counter(page: &str) -> u64 {
    let start = page.find("id=\"counter\">").expect("a counter") + "id=\"counter\">".len();
    let end = start + page[start..].find('<').unwrap();
    page[start..end].parse().unwrap()
}

/// The visitor acts (`POST /greet`): the cookie of the session that gives them.
async fn act(app: &Router) -> String {
    let r = send(app, "POST", "/greet", None, "greet_en=Hi").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    r.pair()
}

fn demo() -> Router {
    app(SessionStore::builder(MemoryDriver::new())
        .default_expire(1800)
        .build())
}

#[tokio::test]
async fn the_counter_goes_up_with_the_cookie_and_restarts_without_it() {
    let app = demo();
    // An anonymous view: not counted, nothing stored, no cookie.
    let first = send(&app, "GET", "/", None, "").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(counter(&first.body), 0);
    assert_eq!(first.set_cookie, None);
    assert!(first.body.contains("id=\"no-session\""));
    // Once the visitor has acted, their views are counted.
    let cookie = act(&app).await;
    for n in 1..=5 {
        let r = send(&app, "GET", "/", Some(&cookie), "").await;
        assert_eq!(counter(&r.body), n);
        assert_eq!(r.pair(), cookie, "same session");
    }
    let api: SessionInfo = serde_json::from_str(
        &send(&app, "GET", "/api/session", Some(&cookie), "")
            .await
            .body,
    )
    .unwrap();
    assert_eq!(api.counter, 5, "the API only reads");
    assert_eq!(api.expire, Some(1800));
    assert_eq!(counter(&send(&app, "GET", "/", None, "").await.body), 0);
}

#[tokio::test]
async fn the_page_and_the_api_never_show_a_full_id() {
    let app = demo();
    let cookie = act(&app).await;
    let first = send(&app, "GET", "/", Some(&cookie), "").await;
    let id = &cookie["CGISESSID=".len()..];
    assert_eq!(id.len(), 32);
    let prefix = format!("{}…", &id[..8]);
    for page in [
        first.body.clone(),
        send(&app, "GET", "/", Some(&cookie), "").await.body,
    ] {
        assert!(!page.contains(id), "full id in the page");
        assert!(
            !page.contains(&id[..9]),
            "more than 8 characters of the id in the page"
        );
        assert!(page.contains(&format!("id=\"id-prefix\">{prefix}<")));
        assert!(page.contains("id=\"ctime\">20"), "ctime shown as a date");
        assert!(page.contains("after 30 min without a visit"));
    }
    let api = send(&app, "GET", "/api/session", Some(&cookie), "")
        .await
        .body;
    assert!(!api.contains(&id[..9]), "{api}");
    let info: SessionInfo = serde_json::from_str(&api).unwrap();
    assert_eq!(info.id_prefix.as_deref(), Some(prefix.as_str()));
}

#[tokio::test]
async fn greet_en_is_stored_and_shown_escaped() {
    let app = demo();
    // The greeting is what starts the session.
    let r = send(
        &app,
        "POST",
        "/greet",
        None,
        "greet_en=%3Cscript%3Ealert(1)%3C%2Fscript%3E+Hi+!",
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/"));
    let cookie = r.pair();
    let page = send(&app, "GET", "/", Some(&cookie), "").await.body;
    assert!(
        !page.contains("<script>"),
        "user input reached the page unescaped"
    );
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; Hi !"));
    let info: SessionInfo = serde_json::from_str(
        &send(&app, "GET", "/api/session", Some(&cookie), "")
            .await
            .body,
    )
    .unwrap();
    assert_eq!(
        info.greet_en.as_deref(),
        Some("<script>alert(1)</script> Hi !")
    );
}

#[tokio::test]
async fn login_gives_a_new_id_and_logout_ends_the_session() {
    let app = demo();
    let before = act(&app).await;
    send(&app, "GET", "/", Some(&before), "").await;
    send(&app, "GET", "/", Some(&before), "").await;

    let r = send(&app, "POST", "/login", Some(&before), "username=ann").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let after = r.pair();
    assert_ne!(after, before);
    let info: SessionInfo = serde_json::from_str(
        &send(&app, "GET", "/api/session", Some(&after), "")
            .await
            .body,
    )
    .unwrap();
    assert_eq!(info.user.as_deref(), Some("ann"));
    assert_eq!(info.counter, 2, "the data moved with the session");
    // The old id is dead.
    let old: SessionInfo = serde_json::from_str(
        &send(&app, "GET", "/api/session", Some(&before), "")
            .await
            .body,
    )
    .unwrap();
    assert_eq!((old.user, old.counter), (None, 0));

    let r = send(&app, "POST", "/logout", Some(&after), "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let removal = r.set_cookie.unwrap();
    assert!(removal.contains("Max-Age=0"), "{removal}");
    // The next view (with the dead cookie) is anonymous again: not counted, nothing stored,
    // the cookie cleared.
    let next = send(&app, "GET", "/", Some(&after), "").await;
    assert_eq!(counter(&next.body), 0);
    assert!(next.set_cookie.unwrap().contains("Max-Age=0"));
    assert!(next.body.contains("id=\"username\""), "logged out");
}

#[tokio::test]
async fn the_plain_page_uses_no_session() {
    let app = demo();
    let r = send(&app, "GET", "/plain", None, "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.set_cookie.is_none());
    assert!(r.body.contains("does not use the session"));
}

// ----- the binary --------------------------------------------------------------------------

/// The running binary, stopped (SIGTERM, then SIGKILL) when dropped.
struct Demo {
    child: Child,
    addr: SocketAddr,
    banner: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_binary(args: &[&str]) -> Result<Demo, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cgi-session-demo"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = String::new();
        while let Some(Ok(line)) = lines.next() {
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Open http://") {
                let _ = tx.send(Ok(banner));
                return;
            }
        }
        let _ = tx.send(Err(banner));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(banner)) => {
            let line = banner
                .lines()
                .find(|l| l.starts_with("Open http://"))
                .unwrap();
            let addr = line["Open http://".len()..].split('/').next().unwrap();
            Ok(Demo {
                addr: addr.parse().unwrap(),
                child,
                banner,
            })
        }
        other => {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            Err(format!(
                "{other:?}; exit {:?}; stderr: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

#[test]
fn the_binary_serves_the_demo_on_the_default_store_and_cleans_up() {
    let mut demo = start_binary(&["--listen", "127.0.0.1:0"]).unwrap();
    assert!(demo.addr.ip().is_loopback());
    assert_ne!(demo.addr.port(), 0, "the real port is printed");
    let dir = demo
        .banner
        .lines()
        .find_map(|l| l.strip_prefix("cgi-session demo: sessions in files in "))
        .expect("the store is named")
        .to_owned();
    assert!(std::path::Path::new(&dir).is_dir());

    let (status, cookie, body) = http_get(demo.addr, "/", None);
    assert_eq!((status, cookie, counter(&body)), (200, None, 0));
    // An anonymous view stores nothing.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let cookie = start_session(demo.addr);
    let (_, _, body) = http_get(demo.addr, "/", Some(&cookie));
    assert_eq!(counter(&body), 1);
    let (_, _, body) = http_get(demo.addr, "/", Some(&cookie));
    assert_eq!(counter(&body), 2);
    // One session file.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    // SIGTERM: a clean stop that removes the temporary directory.
    let pid = demo.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(!std::path::Path::new(&dir).exists(), "temp dir left behind");
}

#[test]
fn the_binary_runs_on_memcached() {
    let server = MemcachedServer::start();
    let addr = server.addr().to_string();
    let demo = start_binary(&[
        "--listen",
        "127.0.0.1:0",
        "--dsn",
        "driver:memcache",
        "--servers",
        &addr,
    ])
    .unwrap();
    assert!(demo.banner.contains(&format!("memcached at {addr}")));
    let (status, cookie, body) = http_get(demo.addr, "/", None);
    assert_eq!((status, cookie, counter(&body)), (200, None, 0));
    assert_eq!(server.stats()["curr_items"], "0");
    let cookie = start_session(demo.addr);
    let (_, _, body) = http_get(demo.addr, "/", Some(&cookie));
    assert_eq!(counter(&body), 1);
    let (_, _, body) = http_get(demo.addr, "/", Some(&cookie));
    assert_eq!(counter(&body), 2);
    assert_eq!(server.stats()["curr_items"], "1");
}

/// `driver:memcached` (Debian's Perl driver's key scheme): the session is stored under the
/// bare id the cookie carries.
#[test]
fn the_binary_runs_on_driver_memcached_with_bare_id_keys() {
    let server = MemcachedServer::start();
    let addr = server.addr().to_string();
    let demo = start_binary(&[
        "--listen",
        "127.0.0.1:0",
        "--dsn",
        "driver:memcached",
        "--servers",
        &addr,
    ])
    .unwrap();
    assert!(demo.banner.contains("keys: the bare session ids"));
    let cookie = start_session(demo.addr);
    let (status, _, _) = http_get(demo.addr, "/", Some(&cookie));
    assert_eq!(status, 200);
    let (_, _, body) = http_get(demo.addr, "/", Some(&cookie));
    assert_eq!(counter(&body), 2);
    let id = cookie.split_once('=').unwrap().1;
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    write!(stream, "get {id}\r\nget sessions:{id}\r\nquit\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    assert_eq!(
        raw.matches("VALUE ").count(),
        1,
        "one item, under the bare id"
    );
    assert!(raw.starts_with(&format!("VALUE {id} ")));
}

#[test]
fn the_binary_says_clearly_when_memcached_is_dead() {
    let port = {
        let mut server = MemcachedServer::start();
        let port = server.port();
        server.kill();
        port
    };
    let output = Command::new(env!("CARGO_BIN_EXE_cgi-session-demo"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--servers",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("memcached at 127.0.0.1:{port} is not usable")),
        "{stderr}"
    );
    assert!(stderr.contains("--servers"), "{stderr}");
}

#[test]
fn bad_options_are_refused_with_a_reason() {
    for (args, expected) in [
        (&["--expire", "10 minutes"][..], "--expire"),
        (&["--dsn", "driver:mysql"][..], "file, memory"),
        (
            &["--dsn", "driver:memory", "--servers", "127.0.0.1:1"][..],
            "--servers is for driver:memcache",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_cgi-session-demo"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn the_binary_spreads_sessions_over_a_pool_and_names_a_dead_member() {
    let (a, b) = (MemcachedServer::start(), MemcachedServer::start());
    let servers = format!("{},{}", a.addr(), b.addr());
    let demo = start_binary(&["--listen", "127.0.0.1:0", "--servers", &servers]).unwrap();
    assert!(demo
        .banner
        .contains(&format!("memcached at {}, {}", a.addr(), b.addr())));
    for _ in 0..24 {
        let cookie = start_session(demo.addr);
        let (status, _, _) = http_get(demo.addr, "/", Some(&cookie));
        assert_eq!(status, 200);
        let (_, _, body) = http_get(demo.addr, "/", Some(&cookie));
        assert_eq!(
            counter(&body),
            2,
            "each session is found again on its server"
        );
    }
    let items = |s: &MemcachedServer| s.stats()["curr_items"].parse::<u32>().unwrap();
    assert_eq!(items(&a) + items(&b), 24);
    assert!(
        items(&a) > 0 && items(&b) > 0,
        "keys spread over both servers"
    );

    // With every server of the pool dead the demo refuses to start and names them (with part
    // of the pool down it starts: `tests/pool_outage.rs`).
    let mut dead = MemcachedServer::start();
    let dead_addr = dead.addr().to_string();
    dead.kill();
    let output = Command::new(env!("CARGO_BIN_EXE_cgi-session-demo"))
        .args(["--listen", "127.0.0.1:0", "--servers", &dead_addr])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&dead_addr), "{stderr}");
}
