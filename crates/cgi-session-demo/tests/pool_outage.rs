//! The demo on a pool of three real memcached servers when one of them dies: new visitors
//! still get sessions, sessions on the live servers keep working, sessions on the dead one
//! get a 503 with a text body, and the log says so in a few lines, not one per request.

use std::net::SocketAddr;

use memcached_harness::MemcachedServer;

mod common;
use common::{http_get, start_session, Demo};

/// `GET /`: status, the session cookie (`CGISESSID=<id>`) it set, body.
fn get(addr: SocketAddr, cookie: Option<&str>) -> (u16, Option<String>, String) {
    http_get(addr, "/", cookie)
}

#[test]
fn one_dead_server_of_three_leaves_new_visitors_and_the_other_sessions_alone() {
    let servers: Vec<MemcachedServer> = (0..3).map(|_| MemcachedServer::start()).collect();
    let list = servers
        .iter()
        .map(|s| s.addr().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let demo = Demo::start(&["--dsn", "driver:memcache", "--servers", &list]);
    // Sessions made while all three are up, spread over the pool.
    let cookies: Vec<String> = (0..30).map(|_| start_session(demo.addr)).collect();
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
        let cookie = start_session(demo.addr);
        let (status, _, _) = get(demo.addr, Some(&cookie));
        assert_eq!(status, 200, "the new session works");
    }

    // About 600 requests met the dead server (the 300 new ones may each try it once): the log
    // holds a few lines, not one per request.
    let log = demo.log();
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
    let demo = Demo::start(&["--dsn", "driver:memcache", "--servers", &list]);
    for _ in 0..300 {
        let cookie = start_session(demo.addr);
        let (status, _, _) = get(demo.addr, Some(&cookie));
        assert_eq!(status, 200, "the new session works");
    }
    let log = demo.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&dead_addr) && l.contains("WARN")),
        "the start-up says which server is down:\n{log}"
    );
}
