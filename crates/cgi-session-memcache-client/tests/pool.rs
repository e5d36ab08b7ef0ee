//! Pools of real memcached servers: distribution, failure policies, the text protocol,
//! per-server admin commands. (That the modula distribution finds keys where Perl's
//! Cache::Memcached put them is tested with Perl in `cgi-session-e2e`.)

use std::time::{Duration, Instant};

use cgi_session_memcache_client::{
    Client, ClientConfig, DeleteStatus, Error, FailurePolicy, GetOptions, Protocol, SetMode,
    SetOptions, StoreStatus,
};
use memcached_harness::MemcachedServer;

fn three() -> Vec<MemcachedServer> {
    (0..3).map(|_| MemcachedServer::start()).collect()
}

fn addrs(servers: &[MemcachedServer]) -> Vec<String> {
    servers.iter().map(|s| s.addr().to_string()).collect()
}

#[tokio::test]
async fn ketama_spreads_keys_and_each_key_lives_on_one_server() {
    let servers = three();
    let client = Client::connect(ClientConfig::pool(addrs(&servers)))
        .await
        .unwrap();
    for i in 0..300 {
        let key = format!("k{i}");
        assert!(client
            .set(&key, b"x", SetOptions::new().ttl(60))
            .await
            .unwrap()
            .is_stored());
    }
    let mut counts = Vec::new();
    for (server, stats) in client.each_server(|s| async move { s.stats().await }).await {
        let items: u64 = stats.unwrap()["curr_items"].parse().unwrap();
        counts.push(items);
        assert!(items > 50, "{server} holds only {items} of 300 keys");
    }
    assert_eq!(counts.iter().sum::<u64>(), 300);
    let versions = client
        .each_server(|s| async move { s.version().await })
        .await;
    assert_eq!(versions.len(), 3);
    assert!(versions
        .iter()
        .all(|(_, v)| v.as_ref().unwrap().starts_with("1.")));
    let dumps = client
        .each_server(|s| async move { s.metadump().await })
        .await;
    let listed: usize = dumps
        .iter()
        .map(|(_, d)| d.as_ref().unwrap().entries.len())
        .sum();
    assert_eq!(listed, 300);
    assert_eq!(client.metadump().await.unwrap().entries.len(), 300);
    assert!(client
        .each_server(|s| async move { s.item_size_max().await })
        .await
        .iter()
        .all(|(_, m)| *m.as_ref().unwrap() >= 1 << 20));
    assert!(matches!(
        client.server(7),
        Err(Error::NoSuchServer { index: 7, count: 3 })
    ));
}

async fn poll_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn consistent_policy_fails_fast_for_the_dead_servers_keys_only() {
    let mut servers = three();
    let client = Client::connect(
        ClientConfig::pool(addrs(&servers))
            .failure_limit(2)
            .retry_delay(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("s{i}")).collect();
    for k in &keys {
        client
            .set(k, b"v", SetOptions::new().ttl(60))
            .await
            .unwrap();
    }
    servers[1].kill();
    // Two failures mark it down.
    poll_until("server 1 marked down", Duration::from_secs(5), || async {
        let _ = client
            .server(1)
            .unwrap()
            .get("probe", GetOptions::new())
            .await;
        client.is_marked_down(1)
    })
    .await;
    for k in &keys {
        let started = Instant::now();
        let got = client.get(k, GetOptions::new()).await;
        if client.server_for(k) == 1 {
            let e = got.unwrap_err();
            assert!(e.is_unavailable(), "{e}");
            assert!(e.to_string().contains("marked down"), "{e}");
            assert!(started.elapsed() < Duration::from_millis(100));
        } else {
            assert!(got.unwrap().is_some(), "a key of a live server was lost");
        }
    }
}

#[tokio::test]
async fn failover_policy_moves_keys_of_a_dead_server_and_back() {
    let mut servers = three();
    let client = Client::connect(
        ClientConfig::pool(addrs(&servers))
            .failure_policy(FailurePolicy::Failover)
            .failure_limit(1)
            .retry_delay(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let key = (0..1000)
        .map(|i| format!("f{i}"))
        .find(|k| client.server_for(k) == 2)
        .unwrap();
    client
        .set(&key, b"before", SetOptions::new().ttl(60))
        .await
        .unwrap();
    servers[2].kill();
    let first = client.get(&key, GetOptions::new()).await;
    assert!(first.unwrap_err().is_unavailable());
    assert!(client.is_marked_down(2));
    let moved_to = client.server_for(&key);
    assert_ne!(moved_to, 2);
    // Available, but the data stayed on the dead server: a fresh start.
    assert_eq!(client.get(&key, GetOptions::new()).await.unwrap(), None);
    client
        .set(&key, b"during", SetOptions::new().ttl(60))
        .await
        .unwrap();
    servers[2].restart();
    poll_until("server 2 back", Duration::from_secs(5), || async {
        client
            .server(2)
            .unwrap()
            .get("probe", GetOptions::new())
            .await
            .is_ok()
    })
    .await;
    assert_eq!(client.server_for(&key), 2, "the key moves back");
}

#[tokio::test]
async fn text_protocol_against_memcached() {
    let server = MemcachedServer::start();
    let c = Client::connect(ClientConfig::new(server.addr().to_string()).protocol(Protocol::Text))
        .await
        .unwrap();
    assert_eq!(c.get("t1", GetOptions::new()).await.unwrap(), None);
    // The new CAS is read back (the text protocol does not return it).
    let StoreStatus::Stored {
        cas: Some(stored_cas),
    } = c
        .set("t1", b"hello", SetOptions::new().ttl(60).flags(3))
        .await
        .unwrap()
    else {
        panic!("set through the text protocol should store and report the CAS")
    };
    let item = c
        .get("t1", GetOptions::new().cas(true).flags(true))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&item.value[..], item.flags), (&b"hello"[..], Some(3)));
    let cas = item.cas.unwrap();
    assert_eq!(cas, stored_cas);
    assert_eq!(
        c.set("t1", b"x", SetOptions::new().cas(Some(cas + 1000)))
            .await
            .unwrap(),
        StoreStatus::Exists
    );
    assert!(c
        .set("t1", b"world", SetOptions::new().cas(Some(cas)))
        .await
        .unwrap()
        .is_stored());
    assert_eq!(
        c.set("t1", b"x", SetOptions::new().mode(SetMode::Add))
            .await
            .unwrap(),
        StoreStatus::NotStored
    );
    assert_eq!(
        c.set("nope", b"x", SetOptions::new().mode(SetMode::Replace))
            .await
            .unwrap(),
        StoreStatus::NotStored
    );
    assert_eq!(
        c.set("nope", b"x", SetOptions::new().cas(Some(1)))
            .await
            .unwrap(),
        StoreStatus::NotFound
    );
    // gat/gats: read and touch at once.
    let touched = c
        .get("t1", GetOptions::new().cas(true).touch(500))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&touched.value[..], b"world");
    assert!(touched.cas.is_some());
    assert!(c.touch("t1", 600).await.unwrap());
    assert!(!c.touch("nope", 600).await.unwrap());
    assert!(matches!(
        c.delete("t1", Some(1)).await,
        Err(Error::Unsupported { .. })
    ));
    assert_eq!(c.delete("t1", None).await.unwrap(), DeleteStatus::Deleted);
    assert_eq!(c.delete("t1", None).await.unwrap(), DeleteStatus::NotFound);
    c.noop().await.unwrap();
    assert!(c.version().await.unwrap().starts_with("1."));
    // Pipelined: many concurrent requests on one connection stay in step.
    let c1 = Client::connect(
        ClientConfig::new(server.addr().to_string())
            .protocol(Protocol::Text)
            .gat(false)
            .pool_size(1),
    )
    .await
    .unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let c1 = c1.clone();
            tokio::spawn(async move {
                let key = format!("p{i}");
                c1.set(&key, format!("v{i}"), SetOptions::new().ttl(60))
                    .await
                    .unwrap();
                let got = c1
                    .get(&key, GetOptions::new().touch(120))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(got.value, format!("v{i}").as_bytes());
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}
