//! The harness against real memcached processes.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::MemcachedServer;

fn connect_fails(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
}

#[test]
fn start_answers_and_counts() {
    let server = MemcachedServer::start();
    assert!(server.answers_version());
    let stats = server.stats();
    assert_eq!(stats["cmd_get"], "0");
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(b"mg nokey v\r\n").unwrap();
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "EN\r\n");
    assert_eq!(server.stats()["cmd_get"], "1");
}

#[test]
fn builder_args_reach_memcached() {
    let server = MemcachedServer::builder()
        .arg("-I")
        .arg("2m")
        .memory_mb(32)
        .start();
    let settings = server.stats_arg("settings");
    assert_eq!(settings["item_size_max"], "2097152");
    assert_eq!(settings["maxbytes"], (32u64 * 1024 * 1024).to_string());
}

#[test]
fn kill_and_restart_same_port() {
    let mut server = MemcachedServer::start();
    let port = server.port();
    server.kill();
    assert!(!server.is_running());
    assert!(connect_fails(server.addr()));
    server.restart();
    assert_eq!(server.port(), port);
    assert!(server.is_running());
    assert!(server.answers_version());
}

#[test]
fn pause_and_resume() {
    let mut server = MemcachedServer::start();
    server.pause();
    assert!(
        !server.answers_version(),
        "a stopped server must not answer"
    );
    server.resume();
    assert!(server.answers_version());
}

#[test]
fn two_servers_get_different_ports() {
    let a = MemcachedServer::start();
    let b = MemcachedServer::start();
    assert_ne!(a.port(), b.port());
}

#[test]
fn auth_server_is_ready_and_answers_stats_after_login() {
    let mut server = MemcachedServer::builder().auth("app", "s3cret").start();
    assert_eq!(server.stats()["curr_items"], "0");
    let file = server.auth_file.clone().expect("auth file written");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "app:s3cret\n");
    // Without logging in, memcached refuses commands.
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(b"version\r\n").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    assert_eq!(line, "CLIENT_ERROR unauthenticated\r\n");
    server.restart();
    assert!(server.answers_version());
    drop(server);
    assert!(!file.exists(), "the auth file is removed with the server");
}

#[test]
fn drop_kills_the_process() {
    let server = MemcachedServer::start();
    let addr = server.addr();
    drop(server);
    assert!(connect_fails(addr));
}
