//! What every test of the `cgi-session` tool shares: running it, and making sessions to
//! look at with a store of the library.
#![allow(dead_code)] // each test binary uses part of it

use std::path::Path;

use assert_cmd::Command;
use cgi_session::memcache::client::{Client, ClientConfig};
use cgi_session::{store_from_dsn, DriverArgs, SessionStore};
use memcached_harness::MemcachedServer;
use serde_json::Value;

pub fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cgi-session"))
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Creates a session with `params` and an idle timeout; returns its full id.
pub async fn make_session(store: &SessionStore, params: &[(&str, Value)], expire: i64) -> String {
    let mut s = store.new_session(None, Some("192.0.2.7")).await.unwrap();
    for (k, v) in params {
        s.set_value(k, v.clone()).unwrap();
    }
    s.set_expire(expire);
    s.flush().await.unwrap();
    s.id().unwrap().as_str().to_owned()
}

pub fn memcache_store(client: &Client) -> SessionStore {
    store_from_dsn("driver:memcache", &DriverArgs::new().handle(client.clone())).unwrap()
}

pub fn mc(server: &MemcachedServer) -> [String; 4] {
    [
        "--dsn".into(),
        "driver:memcache".into(),
        "--servers".into(),
        server.addr().to_string(),
    ]
}

pub fn file(dir: &Path) -> [String; 4] {
    [
        "--dsn".into(),
        "driver:file".into(),
        "--dir".into(),
        dir.display().to_string(),
    ]
}

pub fn stdout_json(assert: &assert_cmd::assert::Assert) -> Value {
    serde_json::from_slice(&assert.get_output().stdout).unwrap()
}

/// A client of `server` alone.
pub async fn connect(server: &MemcachedServer) -> Client {
    Client::connect(ClientConfig::new(server.addr().to_string()))
        .await
        .unwrap()
}
