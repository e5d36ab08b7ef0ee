//! A pool of three real memcached processes with one server dead from the start, or hung
//! mid-write: new sessions avoid the dead server, existing sessions on it fail clearly (never
//! a silent new session), and a save whose reply never comes is "outcome unknown". Each test
//! prints its figures (run with `--nocapture`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cgi_session_core::{Error, SessionId, SessionStore};
use cgi_session_memcache::client::{Client, ClientConfig, GetOptions};
use cgi_session_memcache::MemcacheDriver;
use memcached_harness::MemcachedServer;

const NEW_SESSIONS: usize = 300;
const WORKERS: usize = 12;

fn three() -> Vec<MemcachedServer> {
    (0..3).map(|_| MemcachedServer::start()).collect()
}

/// A pool over the three servers, lazy so that it starts with a server down.
async fn pool(servers: &[MemcachedServer], timeout: Duration) -> Client {
    Client::connect(
        ClientConfig::pool(servers.iter().map(|s| s.addr().to_string()))
            .pool_size(2)
            .timeout(timeout)
            .connect_timeout(timeout)
            .failure_limit(2)
            .retry_delay(Duration::from_millis(500))
            .lazy(true),
    )
    .await
    .expect("a lazy client connects nothing")
}

fn is_unavailable(e: &Error) -> bool {
    matches!(e, Error::Driver(d) if d.is_unavailable())
}

/// A well-formed id whose session lives on server `server`.
fn id_on(client: &Client, driver: &MemcacheDriver, server: usize) -> SessionId {
    (0u64..)
        .map(|i| {
            SessionId::parse(&format!("{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))).unwrap()
        })
        .find(|id| client.server_for(driver.key_for(id)) == server)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_sessions_avoid_a_server_dead_from_the_start() {
    let timeout = Duration::from_millis(500);
    let mut servers = three();
    let dead = 1;
    servers[dead].kill();
    let client = pool(&servers, timeout).await;
    let driver = MemcacheDriver::new(client.clone());
    let store = SessionStore::builder(driver.clone())
        .default_expire(3600)
        .build();

    // 300 new visitors, 12 at a time.
    let ids = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (store, ids, failures, latencies, next) = (
                store.clone(),
                ids.clone(),
                failures.clone(),
                latencies.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::SeqCst) < NEW_SESSIONS {
                    let started = Instant::now();
                    let created = async {
                        let mut s = store.new_session(None, None).await?;
                        s.set("n", &0i64)?;
                        s.flush().await?;
                        Ok::<_, Error>(s.id().expect("a new session has an id").clone())
                    }
                    .await;
                    latencies.lock().unwrap().push(started.elapsed());
                    match created {
                        Ok(id) => ids.lock().unwrap().push(id),
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let ids = ids.lock().unwrap().clone();
    let failures = failures.lock().unwrap().clone();
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort();
    let on_dead = ids
        .iter()
        .filter(|id| client.server_for(driver.key_for(id)) == dead)
        .count();
    println!(
        "one of 3 dead from the start: {} of {NEW_SESSIONS} new sessions created, {} failed, {on_dead} on the dead server; create latency median {:?}, worst {:?}",
        ids.len(),
        failures.len(),
        latencies[latencies.len() / 2],
        latencies.last().unwrap(),
    );
    assert!(failures.is_empty(), "{:?}", failures.first());
    assert_eq!(ids.len(), NEW_SESSIONS);
    assert_eq!(
        on_dead, 0,
        "new sessions are never placed on the dead server"
    );
    let distinct: std::collections::HashSet<&SessionId> = ids.iter().collect();
    assert_eq!(distinct.len(), NEW_SESSIONS);

    // Sessions on the live servers all work.
    for id in &ids {
        store
            .update(id.as_str(), |s| s.set("n", &1i64))
            .await
            .unwrap();
        let s = store.load(Some(id.as_str()), None).await.unwrap();
        assert_eq!(s.get::<i64>("n").unwrap(), Some(1));
    }

    // A session whose id belongs to the dead server: the clear "unavailable" error naming
    // the server, never a fresh empty session under another id.
    let theirs = id_on(&client, &driver, dead);
    let err = store.load(Some(theirs.as_str()), None).await.unwrap_err();
    assert!(is_unavailable(&err), "{err}");
    assert!(!err.outcome_unknown());
    assert!(
        err.to_string().contains(&servers[dead].addr().to_string()),
        "the error names the server: {err}"
    );
    let err = store
        .new_session(Some(theirs.as_str()), None)
        .await
        .unwrap_err();
    assert!(is_unavailable(&err), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_whose_reply_never_comes_is_outcome_unknown() {
    let timeout = Duration::from_millis(300);
    let mut servers = three();
    let client = pool(&servers, timeout).await;
    let driver = MemcacheDriver::new(client.clone());
    let store = SessionStore::builder(driver.clone())
        .default_expire(3600)
        .build();
    let hung = 2;
    // A session on the server that will hang, counter at 35.
    let id = loop {
        let mut s = store.new_session(None, None).await.unwrap();
        s.set("counter", &35i64).unwrap();
        s.flush().await.unwrap();
        let id = s.id().unwrap().clone();
        if client.server_for(driver.key_for(&id)) == hung {
            break id;
        }
    };
    let key = driver.key_for(&id);
    let mut s = store.load(Some(id.as_str()), None).await.unwrap();
    let connections_before: u64 = servers[hung].stats()["total_connections"].parse().unwrap();

    // The server freezes after the session was read; the save is sent and never answered.
    servers[hung].pause();
    s.set("counter", &36i64).unwrap();
    let started = Instant::now();
    let err = s.flush().await.unwrap_err();
    let took = started.elapsed();
    println!("save to a hung server: {took:?}: {err}");
    assert!(err.outcome_unknown(), "{err}");
    assert!(
        is_unavailable(&err),
        "still an outage for layers that only know 503: {err}"
    );
    assert!(err.retry_after().is_some());
    assert!(
        err.to_string().contains("may or may not have been saved"),
        "{err}"
    );
    assert!(took < timeout * 3 + Duration::from_secs(1), "{took:?}");
    servers[hung].resume();

    // memcached executes the write it had received once it runs again: the change landed,
    // which is why the error could not say "not saved".
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = store.load(Some(id.as_str()), None).await {
            if s.get::<i64>("counter").unwrap() == Some(36) {
                break;
            }
        }
        assert!(Instant::now() < end, "the timed-out save never landed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The connection the save used was closed, never reused: later requests get their own
    // replies on new connections (the late reply went nowhere).
    let opened: u64 = servers[hung].stats()["total_connections"]
        .parse::<u64>()
        .unwrap()
        - connections_before;
    assert!(opened >= 1, "no new connection after the timed-out save");
    store
        .update(id.as_str(), |s| s.set("counter", &37i64))
        .await
        .unwrap();
    let raw = client
        .get(&key, GetOptions::new())
        .await
        .unwrap()
        .expect("the session is stored");
    assert!(!raw.value.is_empty());
    let s = store.load(Some(id.as_str()), None).await.unwrap();
    assert_eq!(s.get::<i64>("counter").unwrap(), Some(37));
}
