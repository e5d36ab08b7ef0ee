//! The demo on a pool of three real memcached servers when one of them dies: new visitors
//! still get sessions, sessions on the live servers keep working, sessions on the dead one
//! get a 503 with a text body, and the log says so in a few lines, not one per request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use memcached_harness::MemcachedServer;

/// The running binary; killed when dropped.
struct Demo {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cgi-session-demo"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("Open http://") {
                    let _ = tx.send(rest.split('/').next().unwrap_or_default().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the demo starts and prints its address")
            .parse()
            .unwrap();
        Self { child, addr }
    }

    /// Stops the demo and returns what it logged.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut err);
        }
        err
    }
}

/// `GET /`: status, the session cookie (`CGISESSID=<id>`) it set, body.
fn get(addr: SocketAddr, cookie: Option<&str>) -> (u16, Option<String>, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{cookie}\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let set_cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .map(|c| c.split(';').next().unwrap().to_owned());
    (status, set_cookie, body.to_owned())
}

#[test]
fn one_dead_server_of_three_leaves_new_visitors_and_the_other_sessions_alone() {
    let servers: Vec<MemcachedServer> = (0..3).map(|_| MemcachedServer::start()).collect();
    let list = servers
        .iter()
        .map(|s| s.addr().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let demo = Demo::start(&[
        "--listen",
        "127.0.0.1:0",
        "--dsn",
        "driver:memcache",
        "--servers",
        &list,
    ]);
    // Sessions made while all three are up, spread over the pool.
    let cookies: Vec<String> = (0..30)
        .map(|_| {
            let (status, cookie, _) = get(demo.addr, None);
            assert_eq!(status, 200);
            cookie.expect("a new session")
        })
        .collect();
    let mut servers = servers;
    let dead_addr = servers[2].addr().to_string();
    servers[2].kill();

    let (mut live, mut dead) = (0, 0);
    for cookie in &cookies {
        let (status, set_cookie, body) = get(demo.addr, Some(cookie));
        match status {
            200 => live += 1,
            503 => {
                dead += 1;
                assert!(
                    body.contains("unavailable"),
                    "a text body for the visitor: {body:?}"
                );
                assert!(!body.contains(&dead_addr), "no internals: {body:?}");
                assert!(
                    set_cookie.is_none(),
                    "no new session for them: {set_cookie:?}"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        live > 0 && dead > 0,
        "{live} live, {dead} on the dead server"
    );
    assert_eq!(live + dead, cookies.len());

    // 300 new visitors during the outage: every one gets a session, on a live server.
    for _ in 0..300 {
        let (status, cookie, body) = get(demo.addr, None);
        assert_eq!(status, 200, "{body}");
        let cookie = cookie.expect("a new session");
        let (status, _, _) = get(demo.addr, Some(&cookie));
        assert_eq!(status, 200, "the new session works");
    }

    // About 600 requests met the dead server (the 300 new ones may each try it once): the log
    // holds a few lines, not one per request.
    let log = demo.stop();
    let lines = log.lines().filter(|l| l.contains(&dead_addr)).count();
    eprintln!("{lines} log lines name the dead server ({dead} of its sessions answered 503)");
    assert!(
        (1..=20).contains(&lines),
        "{lines} log lines name the dead server:\n{log}"
    );
}

#[test]
fn the_demo_starts_with_a_server_dead_from_the_start_and_serves_new_visitors() {
    let mut servers: Vec<MemcachedServer> = (0..3).map(|_| MemcachedServer::start()).collect();
    let dead_addr = servers[1].addr().to_string();
    servers[1].kill();
    let list = servers
        .iter()
        .map(|s| s.addr().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let demo = Demo::start(&[
        "--listen",
        "127.0.0.1:0",
        "--dsn",
        "driver:memcache",
        "--servers",
        &list,
    ]);
    for _ in 0..300 {
        let (status, cookie, body) = get(demo.addr, None);
        assert_eq!(status, 200, "{body}");
        let (status, _, _) = get(demo.addr, Some(&cookie.expect("a new session")));
        assert_eq!(status, 200, "the new session works");
    }
    let log = demo.stop();
    assert!(
        log.lines()
            .any(|l| l.contains(&dead_addr) && l.contains("WARN")),
        "the start-up says which server is down:\n{log}"
    );
}
