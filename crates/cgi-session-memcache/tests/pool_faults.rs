//! Fault tests with three real memcached processes on loopback: a server killed under load,
//! a server hung with SIGSTOP, with and without replicas. Each test prints its figures (run
//! with `--nocapture`) and asserts the guarantees.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cgi_session_core::{Error, SessionId, SessionStore};
use cgi_session_memcache::client::{Client, ClientConfig, GetOptions};
use cgi_session_memcache::{MemcacheDriver, ReplicatedHandle};
use memcached_harness::MemcachedServer;

const SESSIONS: usize = 2000;
const WORKERS: usize = 16;

fn three() -> Vec<MemcachedServer> {
    (0..3).map(|_| MemcachedServer::start()).collect()
}

async fn pool(servers: &[MemcachedServer], timeout: Duration) -> Client {
    Client::connect(
        ClientConfig::pool(servers.iter().map(|s| s.addr().to_string()))
            .pool_size(2)
            .timeout(timeout)
            .connect_timeout(timeout)
            .failure_limit(2)
            .retry_delay(Duration::from_millis(300)),
    )
    .await
    .expect("connect to the three servers")
}

fn is_unavailable(e: &Error) -> bool {
    matches!(e, Error::Driver(d) if d.is_unavailable())
}

/// What one pass of requests did.
#[derive(Debug, Default)]
struct Pass {
    requests: usize,
    /// Indexes of the requests that failed, with the error text.
    failed: Vec<(usize, String)>,
    /// Latency of every request, by index.
    latency: Vec<Duration>,
}

impl Pass {
    fn worst(&self, pick: impl Fn(usize) -> bool) -> Duration {
        (0..self.latency.len())
            .filter(|&i| pick(i))
            .map(|i| self.latency[i])
            .max()
            .unwrap_or_default()
    }
    fn mean(&self, pick: impl Fn(usize) -> bool) -> Duration {
        let picked: Vec<Duration> = (0..self.latency.len())
            .filter(|&i| pick(i))
            .map(|i| self.latency[i])
            .collect();
        if picked.is_empty() {
            return Duration::ZERO;
        }
        picked.iter().sum::<Duration>() / picked.len() as u32
    }
}

/// Runs `op(i)` for every index in `0..n` on `WORKERS` tasks; `progress` counts finished ones.
async fn run<F, Fut>(n: usize, progress: Arc<AtomicUsize>, op: F) -> Pass
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(vec![(Duration::ZERO, None::<String>); n]));
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let (op, next, results, progress) =
            (op.clone(), next.clone(), results.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let started = Instant::now();
                let outcome = op(i).await;
                let took = started.elapsed();
                results.lock().unwrap()[i] = (took, outcome.err());
                progress.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let results = std::mem::take(&mut *results.lock().unwrap());
    let mut pass = Pass {
        requests: n,
        ..Pass::default()
    };
    for (i, (took, err)) in results.into_iter().enumerate() {
        pass.latency.push(took);
        if let Some(e) = err {
            pass.failed.push((i, e));
        }
    }
    pass
}

async fn create_sessions(store: &SessionStore, n: usize) -> Vec<String> {
    let ids = Arc::new(Mutex::new(vec![String::new(); n]));
    let (store2, ids2) = (store.clone(), ids.clone());
    let pass = run(n, Arc::default(), move |i| {
        let (store, ids) = (store2.clone(), ids2.clone());
        async move {
            let mut s = store
                .new_session(None, None)
                .await
                .map_err(|e| e.to_string())?;
            s.set("n", &0i64).map_err(|e| e.to_string())?;
            s.flush().await.map_err(|e| e.to_string())?;
            ids.lock().unwrap()[i] = s.id().expect("new session has an id").as_str().to_string();
            Ok(())
        }
    })
    .await;
    assert!(
        pass.failed.is_empty(),
        "creating sessions failed: {:?}",
        pass.failed.first()
    );
    let ids = ids.lock().unwrap().clone();
    ids
}

/// Sets `n` in every session of `ids`.
async fn update_all(
    store: &SessionStore,
    ids: &Arc<Vec<String>>,
    n: i64,
    progress: Arc<AtomicUsize>,
) -> Pass {
    let (store, ids) = (store.clone(), ids.clone());
    run(ids.len(), progress, move |i| {
        let (store, ids) = (store.clone(), ids.clone());
        async move {
            store
                .update(&ids[i], move |s| s.set("n", &n))
                .await
                .map_err(|e| {
                    if is_unavailable(&e) {
                        format!("unavailable: {e}")
                    } else {
                        e.to_string()
                    }
                })
        }
    })
    .await
}

/// Deletes every session of `ids`.
async fn delete_all(store: &SessionStore, ids: &[String]) -> Pass {
    let (store, ids) = (store.clone(), Arc::new(ids.to_vec()));
    run(ids.len(), Arc::default(), move |i| {
        let (store, ids) = (store.clone(), ids.clone());
        async move {
            let mut s = store
                .load(Some(&ids[i]), None)
                .await
                .map_err(|e| e.to_string())?;
            if s.id().is_none() {
                return Err("not found before delete".into());
            }
            s.delete();
            s.flush().await.map_err(|e| e.to_string())
        }
    })
    .await
}

/// Reads `n` of every session; `None` for a session that is not there.
async fn read_all(store: &SessionStore, ids: &Arc<Vec<String>>) -> (Vec<Option<i64>>, Pass) {
    let values = Arc::new(Mutex::new(vec![None; ids.len()]));
    let (store2, ids2, values2) = (store.clone(), ids.clone(), values.clone());
    let pass = run(ids.len(), Arc::default(), move |i| {
        let (store, ids, values) = (store2.clone(), ids2.clone(), values2.clone());
        async move {
            let s = store.load(Some(&ids[i]), None).await.map_err(|e| {
                if is_unavailable(&e) {
                    format!("unavailable: {e}")
                } else {
                    e.to_string()
                }
            })?;
            if s.id().is_some() {
                values.lock().unwrap()[i] = s.get::<i64>("n").map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    })
    .await;
    let values = values.lock().unwrap().clone();
    (values, pass)
}

/// Probes server `idx` until the client no longer marks it down.
async fn wait_back(client: &Client, idx: usize) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = client
            .server(idx)
            .unwrap()
            .get("probe", GetOptions::new())
            .await
            .is_ok();
        if ok && !client.is_marked_down(idx) {
            return;
        }
        assert!(Instant::now() < end, "server {idx} did not come back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `progress` reaches `n`.
async fn wait_progress(progress: &AtomicUsize, n: usize) {
    let end = Instant::now() + Duration::from_secs(30);
    while progress.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < end, "the load made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Three servers, a store without replicas over them holding `SESSIONS` sessions, and the
/// server each session lives on.
struct Unreplicated {
    servers: Vec<MemcachedServer>,
    client: Client,
    store: SessionStore,
    ids: Arc<Vec<String>>,
    home: Vec<usize>,
}

async fn unreplicated(timeout: Duration) -> Unreplicated {
    let servers = three();
    let client = pool(&servers, timeout).await;
    let driver = MemcacheDriver::new(client.clone());
    let store = SessionStore::builder(driver.clone())
        .default_expire(3600)
        .build();
    let ids = Arc::new(create_sessions(&store, SESSIONS).await);
    let home = ids
        .iter()
        .map(|id| client.server_for(driver.key_for(&SessionId::parse(id).unwrap())))
        .collect();
    Unreplicated {
        servers,
        client,
        store,
        ids,
        home,
    }
}

/// Checks every session after a fault: deleted ones must stay gone, the others must hold
/// `expected`. Returns (lost, resurrected, rolled back).
fn audit(
    values: &[Option<i64>],
    deleted: &std::collections::HashSet<usize>,
    expected: i64,
) -> (usize, usize, usize) {
    let (mut lost, mut resurrected, mut rolled_back) = (0, 0, 0);
    for (i, v) in values.iter().enumerate() {
        match (deleted.contains(&i), v) {
            (true, Some(_)) => resurrected += 1,
            (true, None) => {}
            (false, None) => lost += 1,
            (false, Some(n)) if *n < expected => rolled_back += 1,
            (false, Some(_)) => {}
        }
    }
    (lost, resurrected, rolled_back)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_lose_nothing_and_resurrect_nothing_when_a_server_dies_or_hangs() {
    let timeout = Duration::from_millis(300);
    let mut servers = three();
    let client = pool(&servers, timeout).await;
    let handle = ReplicatedHandle::new(client.clone(), 1);
    assert_eq!(handle.copies(), 2);
    let driver = MemcacheDriver::new(handle.clone());
    let store = SessionStore::builder(driver.clone())
        .default_expire(3600)
        .build();
    let ids = Arc::new(create_sessions(&store, SESSIONS).await);

    // 1. Kill server 1 while every session is being updated (n = 1).
    let progress = Arc::new(AtomicUsize::new(0));
    let load = {
        let (store, ids, progress) = (store.clone(), ids.clone(), progress.clone());
        tokio::spawn(async move { update_all(&store, &ids, 1, progress).await })
    };
    wait_progress(&progress, SESSIONS / 4).await;
    servers[1].kill();
    let during_kill = load.await.unwrap();
    // While it is down, log out the first 200 users.
    let deleted: std::collections::HashSet<usize> = (0..200).collect();
    let deletes = delete_all(&store, &ids[..200]).await;
    // It comes back empty.
    servers[1].restart();
    wait_back(&client, 1).await;
    let (values, check) = read_all(&store, &ids).await;
    let (lost, resurrected, rolled_back) = audit(&values, &deleted, 1);
    println!(
        "replicas=1, kill one of 3 under load: sessions checked {}, lost {lost}, resurrected {resurrected}, rolled back {rolled_back}, requests failed {} of {} (updates {}, deletes {}, reads after return {}), worst latency during the fault {:?}",
        values.len(),
        during_kill.failed.len() + deletes.failed.len() + check.failed.len(),
        during_kill.requests + deletes.requests + check.requests,
        during_kill.failed.len(),
        deletes.failed.len(),
        check.failed.len(),
        during_kill.worst(|_| true).max(deletes.worst(|_| true)),
    );
    assert!(
        during_kill.failed.is_empty(),
        "{:?}",
        during_kill.failed.first()
    );
    assert!(deletes.failed.is_empty(), "{:?}", deletes.failed.first());
    assert!(check.failed.is_empty(), "{:?}", check.failed.first());
    assert_eq!((lost, resurrected, rolled_back), (0, 0, 0));

    // 2. Hang server 2 (SIGSTOP) while sessions are updated (n = 2) and 200 more are
    //    deleted; then let it resume with its stale copies.
    servers[2].pause();
    let paused_at = Instant::now();
    let live: Arc<Vec<String>> = Arc::new(ids[400..].to_vec());
    let during_hang = update_all(&store, &live, 2, Arc::default()).await;
    let deletes2 = delete_all(&store, &ids[200..400]).await;
    let hang_time = paused_at.elapsed();
    servers[2].resume();
    wait_back(&client, 2).await;
    // The returning server really holds stale copies of deleted sessions: the test would
    // catch a read that trusted it.
    let mut stale_deleted = 0;
    for id in &ids[200..400] {
        let key = driver.key_for(&SessionId::parse(id).unwrap());
        if handle.servers_for(&key).contains(&2)
            && client
                .server(2)
                .unwrap()
                .get(&key, GetOptions::new())
                .await
                .unwrap()
                .is_some_and(|i| i.value.len() > 13)
        {
            stale_deleted += 1;
        }
    }
    println!("copies of deleted sessions still on the returning server: {stale_deleted}");
    assert!(stale_deleted > 0);
    let deleted: std::collections::HashSet<usize> = (0..400).collect();
    let (values, check2) = read_all(&store, &ids).await;
    let (lost2, resurrected2, _) = audit(&values, &deleted, 1);
    let rolled_back2 = values[400..].iter().filter(|v| **v == Some(1)).count();
    let worst_hang = during_hang.worst(|_| true).max(deletes2.worst(|_| true));
    println!(
        "replicas=1, SIGSTOP one of 3 for {hang_time:?} (timeout {timeout:?}): sessions checked {}, lost {lost2}, resurrected {resurrected2}, rolled back {rolled_back2}, requests failed {} of {}, worst latency during the fault {worst_hang:?}, mean {:?}",
        values.len(),
        during_hang.failed.len() + deletes2.failed.len() + check2.failed.len(),
        during_hang.requests + deletes2.requests + check2.requests,
        during_hang.mean(|_| true),
    );
    assert!(
        during_hang.failed.is_empty(),
        "{:?}",
        during_hang.failed.first()
    );
    assert!(deletes2.failed.is_empty(), "{:?}", deletes2.failed.first());
    assert!(check2.failed.is_empty(), "{:?}", check2.failed.first());
    assert_eq!((lost2, resurrected2, rolled_back2), (0, 0, 0));
    // An update is at most three exchanges (load; store = read + write), each bounded by
    // the timeout; the slack covers a loaded CI machine.
    assert!(
        worst_hang < timeout * 3 + Duration::from_secs(2),
        "worst latency {worst_hang:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replicas_only_the_dead_servers_sessions_fail() {
    let timeout = Duration::from_millis(500);
    let Unreplicated {
        mut servers,
        store,
        ids,
        home,
        ..
    } = unreplicated(timeout).await;
    let (_, before) = read_all(&store, &ids).await;
    assert!(before.failed.is_empty());

    servers[1].kill();
    let (values, during) = read_all(&store, &ids).await;
    let on_dead = home.iter().filter(|&&h| h == 1).count();
    let others = |i: usize| home[i] != 1;
    let failed_others = during.failed.iter().filter(|(i, _)| others(*i)).count();
    println!(
        "no replicas, kill one of 3: sessions checked {}, on the dead server {on_dead}, lost (others) {}, requests failed {} (others {failed_others}); others' latency before: mean {:?} worst {:?}; during: mean {:?} worst {:?}; dead server's requests worst {:?}",
        values.len(),
        (0..values.len()).filter(|&i| others(i) && values[i].is_none()).count(),
        during.failed.len(),
        before.mean(others),
        before.worst(others),
        during.mean(others),
        during.worst(others),
        during.worst(|i| !others(i)),
    );
    assert_eq!(
        failed_others,
        0,
        "{:?}",
        during.failed.iter().find(|(i, _)| others(*i))
    );
    assert_eq!(
        during.failed.len(),
        on_dead,
        "every session of the dead server fails"
    );
    for (i, e) in &during.failed {
        assert_eq!(home[*i], 1);
        assert!(e.starts_with("unavailable:"), "{e}");
        assert!(
            e.contains(&servers[1].addr().to_string()),
            "the error names the server: {e}"
        );
    }
    assert!((0..values.len()).all(|i| !others(i) || values[i] == Some(0)));
    assert!(
        during.worst(others) < timeout,
        "a dead server stalled others: {:?}",
        during.worst(others)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_costs_at_most_the_timeout() {
    let timeout = Duration::from_millis(300);
    let Unreplicated {
        mut servers,
        client,
        store,
        ids,
        home,
    } = unreplicated(timeout).await;

    servers[0].pause();
    let (values, during) = read_all(&store, &ids).await;
    servers[0].resume();
    let others = |i: usize| home[i] != 0;
    let on_hung = home.iter().filter(|&&h| h == 0).count();
    let timed_out = during
        .failed
        .iter()
        .filter(|(_, e)| e.contains("did not answer"))
        .count();
    let worst = during.worst(|_| true);
    println!(
        "no replicas, SIGSTOP one of 3 (timeout {timeout:?}): sessions checked {}, on the hung server {on_hung}, requests failed {} ({timed_out} by timeout, the rest at once while marked down), others failed {}, worst latency {worst:?} (hung server's sessions), others' worst {:?} mean {:?}",
        values.len(),
        during.failed.len(),
        during.failed.iter().filter(|(i, _)| others(*i)).count(),
        during.worst(others),
        during.mean(others),
    );
    assert!(during
        .failed
        .iter()
        .all(|(i, e)| home[*i] == 0 && e.starts_with("unavailable:")));
    assert_eq!(during.failed.len(), on_hung);
    assert!((0..values.len()).all(|i| !others(i) || values[i] == Some(0)));
    // The timeout bounds the damage: nobody waits much longer than one timeout, and once
    // the server is marked down its sessions fail at once.
    assert!(
        worst < timeout + Duration::from_secs(1),
        "worst latency {worst:?}"
    );
    assert!(
        timed_out < on_hung,
        "marking the server down should spare later requests the wait"
    );
    wait_back(&client, 0).await;
    let (_, after) = read_all(&store, &ids).await;
    assert!(after.failed.is_empty(), "{:?}", after.failed.first());
}
