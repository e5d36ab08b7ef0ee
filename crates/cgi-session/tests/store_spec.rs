//! `StoreSpec`: a store opened from a DSN and a server list or a directory, against real
//! memcached processes started by the test.

use std::time::Duration;

use cgi_session::memcache::client::{Client, ClientConfig};
use cgi_session::{OpenError, OpenedDriver, StoreKind, StoreSpec};
use memcached_harness::MemcachedServer;

fn stored_keys(server: &MemcachedServer) -> u64 {
    server.stats()["curr_items"].parse().unwrap()
}

#[test]
fn kinds_are_checked_without_opening_anything() {
    assert_eq!(
        StoreSpec::new("driver:memory").kind().unwrap(),
        StoreKind::Memory
    );
    assert_eq!(
        StoreSpec::new("").kind().unwrap(),
        StoreKind::File {
            directory: std::env::temp_dir()
        }
    );
    assert_eq!(
        StoreSpec::new("driver:memcached").kind().unwrap(),
        StoreKind::Memcache {
            servers: vec![cgi_session::DEFAULT_MEMCACHED.to_owned()],
            prefix: String::new(),
        }
    );
    let cases = [
        (StoreSpec::new("driver:mysql"), "file, memory"),
        (
            StoreSpec::new("driver:memcache").servers([" ", ""]),
            "host:port",
        ),
        (
            StoreSpec::new("driver:memcached").prefix("app:"),
            "bare ids",
        ),
        (StoreSpec::new("driver:file;serializer:yaml"), "json"),
    ];
    for (spec, says) in cases {
        let err = match spec.kind() {
            Ok(_) => builder_error(spec),
            Err(e) => e,
        };
        assert!(matches!(err, OpenError::Dsn(_)), "{err}");
        assert!(err.to_string().contains(says), "{err}");
    }
}

/// The serializer is checked when the builder is made, not by `kind`.
fn builder_error(spec: StoreSpec) -> OpenError {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(spec.builder())
        .unwrap_err()
}

#[tokio::test]
async fn a_directory_opens_the_file_driver() {
    let dir = tempfile::tempdir().unwrap();
    let spec = StoreSpec::new("driver:file;id:incr")
        .args(cgi_session::DriverArgs::new().id_file(dir.path().join("ids")))
        .directory(dir.path());
    assert!(matches!(spec.open().await.unwrap(), OpenedDriver::File(_)));
    let store = spec.builder().await.unwrap().build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.flush().await.unwrap();
    assert!(dir.path().join("cgisess_1").exists());

    let missing = StoreSpec::new("driver:file").directory(dir.path().join("missing"));
    let err = missing.open().await.unwrap_err();
    assert!(matches!(err, OpenError::Driver(_)), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test]
async fn the_memcached_flavours_keep_their_key_schemes() {
    let server = MemcachedServer::start();
    let addr = server.addr().to_string();
    let client = Client::connect(ClientConfig::new(addr.clone()))
        .await
        .unwrap();
    for (dsn, key) in [
        ("driver:memcache", "sessions:"),
        ("driver:memcache", "app:"),
        ("driver:memcached;serializer:default", ""),
    ] {
        let mut spec = StoreSpec::new(dsn).servers([addr.as_str()]);
        if key == "app:" {
            spec = spec.prefix(key);
        }
        let store = spec.builder().await.unwrap().build();
        let mut s = store.new_session(None, None).await.unwrap();
        s.set("n", &1).unwrap();
        s.flush().await.unwrap();
        let id = s.id().unwrap().as_str().to_owned();
        let raw = client
            .get(format!("{key}{id}"), Default::default())
            .await
            .unwrap();
        assert!(raw.is_some(), "{dsn}: stored under {key}<id>");
    }
}

#[tokio::test]
async fn a_pool_opens_without_its_dead_servers_and_fails_only_when_all_are_dead() {
    let live = MemcachedServer::start();
    let mut dead = MemcachedServer::start();
    let dead_addr = dead.addr().to_string();
    dead.kill();
    let spec = StoreSpec::new("driver:memcache")
        .servers([live.addr().to_string(), dead_addr.clone()])
        .timeout(Duration::from_millis(500));
    let OpenedDriver::Memcache(m) = spec.open().await.unwrap() else {
        panic!("a memcached driver");
    };
    assert_eq!(m.down.len(), 1);
    assert_eq!(m.down[0].0, dead_addr);
    assert!(m.down[0].1.is_unavailable());

    let all_dead = StoreSpec::new("driver:memcache")
        .servers([dead_addr.as_str(), dead_addr.as_str()])
        .timeout(Duration::from_millis(500));
    let err = all_dead.open().await.unwrap_err();
    assert!(matches!(err, OpenError::Memcached(_)), "{err}");
    assert!(err.is_unavailable(), "a retry may succeed: {err}");
    assert!(err.to_string().contains(&dead_addr), "{err}");
    let one_dead = StoreSpec::new("driver:memcache").servers([dead_addr.as_str()]);
    let err = one_dead.open().await.unwrap_err();
    assert!(err.to_string().contains(&dead_addr), "{err}");
}

#[tokio::test]
async fn replicas_write_every_copy() {
    let (a, b) = (MemcachedServer::start(), MemcachedServer::start());
    let spec = StoreSpec::new("driver:memcache")
        .servers([a.addr().to_string(), b.addr().to_string()])
        .replicas(1);
    let opened = spec.open().await.unwrap();
    let OpenedDriver::Memcache(m) = &opened else {
        panic!("a memcached driver");
    };
    assert_eq!(m.replicated.as_ref().map(|h| h.copies()), Some(2));
    let store = spec.builder_over(&opened).unwrap().build();
    let mut s = store.new_session(None, None).await.unwrap();
    s.flush().await.unwrap();
    assert_eq!((stored_keys(&a), stored_keys(&b)), (1, 1));
}
