//! Sessions through twemproxy (Debian package `nutcracker`) in front of three real memcached
//! servers: the bundled client's text-protocol mode, ketama placement identical to
//! twemproxy's, and the whole conformance suite through the proxy.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cgi_session_memcache::client::{Client, ClientConfig, GetOptions, Protocol, SetOptions};
use memcached_harness::MemcachedServer;

/// A running `nutcracker` (twemproxy) with its config in a temp directory; killed on drop.
struct Nutcracker {
    child: Child,
    port: u16,
    dir: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Nutcracker {
    /// Starts twemproxy with ketama + md5 over `servers` (weight 1 each), ejecting nothing.
    fn start(servers: &[MemcachedServer]) -> Nutcracker {
        let mut last = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let stats_port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "cgi-session-nutcracker-{}-{port}-{attempt}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let mut yaml = format!(
                "sessions:\n  listen: 127.0.0.1:{port}\n  hash: md5\n  distribution: ketama\n  \
                 auto_eject_hosts: false\n  timeout: 1000\n  server_retry_timeout: 2000\n  \
                 server_failure_limit: 2\n  servers:\n"
            );
            for s in servers {
                yaml.push_str(&format!("   - {}:1\n", s.addr()));
            }
            let conf = dir.join("nutcracker.yml");
            std::fs::write(&conf, yaml).expect("write nutcracker config");
            let child = Command::new("nutcracker")
                .arg("-c")
                .arg(&conf)
                .arg("-s")
                .arg(stats_port.to_string())
                .arg("-o")
                .arg(dir.join("nutcracker.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run nutcracker (Debian package `nutcracker`)");
            let mut nc = Nutcracker { child, port, dir };
            if nc.wait_ready(Duration::from_secs(10)) {
                return nc;
            }
            last = std::fs::read_to_string(nc.dir.join("nutcracker.log")).unwrap_or_default();
        }
        panic!("nutcracker did not start: {last}");
    }

    /// Polls until the proxy answers `version` (forwarded to a backend).
    fn wait_ready(&mut self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 64];
                if s.write_all(b"version\r\n").is_ok()
                    && s.read(&mut buf)
                        .is_ok_and(|n| buf[..n].starts_with(b"VERSION"))
                {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The bundled client in text mode, as twemproxy needs it (no `gat`).
async fn proxy_client(nc: &Nutcracker) -> Client {
    Client::connect(
        ClientConfig::new(nc.addr())
            .protocol(Protocol::Text)
            .gat(false)
            .pool_size(4),
    )
    .await
    .expect("connect to nutcracker")
}

#[tokio::test]
async fn ketama_places_keys_exactly_where_twemproxy_does() {
    let servers: Vec<_> = (0..3).map(|_| MemcachedServer::start()).collect();
    let nc = Nutcracker::start(&servers);
    let via_proxy = proxy_client(&nc).await;
    let direct = Client::connect(ClientConfig::pool(
        servers.iter().map(|s| s.addr().to_string()),
    ))
    .await
    .unwrap();
    let mut per_server = [0usize; 3];
    for i in 0..300 {
        let key = format!("sessions:{i:08x}");
        assert!(via_proxy
            .set(&key, format!("v{i}"), SetOptions::new().ttl(600))
            .await
            .unwrap()
            .is_stored());
        let home = direct.server_for(&key);
        per_server[home] += 1;
        for s in 0..3 {
            let found = direct
                .server(s)
                .unwrap()
                .get(&key, GetOptions::new())
                .await
                .unwrap();
            assert_eq!(
                found.is_some(),
                s == home,
                "{key}: twemproxy and the bundled ketama disagree (server {s})"
            );
        }
        // And the text client reads it back through the proxy, touching it.
        let item = via_proxy
            .get(&key, GetOptions::new().cas(true).touch(900))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(item.value, format!("v{i}").as_bytes());
        assert!(item.cas.is_some());
    }
    println!("300 keys through twemproxy, placed as the bundled ketama predicts: {per_server:?}");
    assert!(per_server.iter().all(|&n| n > 40), "{per_server:?}");
}

#[tokio::test]
async fn a_dead_backend_behind_the_proxy_is_reported_unavailable() {
    let mut servers: Vec<_> = (0..3).map(|_| MemcachedServer::start()).collect();
    let nc = Nutcracker::start(&servers);
    let client = proxy_client(&nc).await;
    let direct = Client::connect(
        ClientConfig::pool(servers.iter().map(|s| s.addr().to_string())).lazy(true),
    )
    .await
    .unwrap();
    servers[0].kill();
    let (mut failed, mut ok) = (0, 0);
    for i in 0..60 {
        let key = format!("d{i}");
        match client.set(&key, b"v", SetOptions::new().ttl(60)).await {
            Ok(s) => {
                assert!(s.is_stored());
                assert_ne!(direct.server_for(&key), 0);
                ok += 1;
            }
            Err(e) => {
                assert!(e.is_unavailable(), "{e}");
                assert_eq!(direct.server_for(&key), 0);
                failed += 1;
            }
        }
    }
    assert!(failed > 0 && ok > 0, "failed {failed}, ok {ok}");
    // The proxy connections stay usable for keys of live servers.
    let live_key = (0..100)
        .map(|i| format!("live{i}"))
        .find(|k| direct.server_for(k) != 0)
        .unwrap();
    assert!(client
        .set(&live_key, b"v", SetOptions::new())
        .await
        .unwrap()
        .is_stored());
}

mod conformance_through_twemproxy {
    use cgi_session_conformance::{conformance_suite, Fixture};
    use cgi_session_memcache::MemcacheDriver;
    use memcached_harness::MemcachedServer;

    async fn fixture() -> Fixture {
        let servers: Vec<_> = (0..3).map(|_| MemcachedServer::start()).collect();
        let nc = super::Nutcracker::start(&servers);
        let client = super::proxy_client(&nc).await;
        // twemproxy does not proxy `stats`: give the item size limit up front.
        let driver = MemcacheDriver::builder(client)
            .item_size_max(1024 * 1024)
            .build()
            .unwrap();
        Fixture::new(driver)
            .with_guard((nc, servers))
            .without_listing()
            // The text protocol has no compare-and-delete: a lock could not be released safely.
            .without_locks()
    }

    conformance_suite!(fixture);
}
