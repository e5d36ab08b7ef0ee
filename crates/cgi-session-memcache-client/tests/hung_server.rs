//! A hung server (real memcached frozen with SIGSTOP) in a pool of three: once it is marked
//! down, one probe request per retry delay waits for the timeout and every other request of
//! its keys fails at once; a write whose reply never comes is reported as "outcome unknown"
//! and its connection is never used again. Each test prints its figures (`--nocapture`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cgi_session_memcache_client::{Client, ClientConfig, GetOptions, SetOptions};
use memcached_harness::MemcachedServer;

fn three() -> Vec<MemcachedServer> {
    (0..3).map(|_| MemcachedServer::start()).collect()
}

fn addrs(servers: &[MemcachedServer]) -> Vec<String> {
    servers.iter().map(|s| s.addr().to_string()).collect()
}

fn total_connections(server: &MemcachedServer) -> u64 {
    server.stats()["total_connections"].parse().unwrap()
}

/// Polls `check` every 20 ms until it holds; panics after `limit`.
async fn poll_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request of the load: when it started, how long it took, whether it failed.
#[derive(Debug, Clone, Copy)]
struct Sample {
    started: Instant,
    took: Duration,
    ok: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_costs_one_probe_per_retry_delay() {
    const CLIENTS: usize = 12;
    let timeout = Duration::from_millis(300);
    let retry_delay = Duration::from_millis(500);
    let hang = Duration::from_secs(4);
    let mut servers = three();
    let client = Client::connect(
        ClientConfig::pool(addrs(&servers))
            .pool_size(2)
            .timeout(timeout)
            .connect_timeout(timeout)
            .failure_limit(2)
            .retry_delay(retry_delay),
    )
    .await
    .unwrap();
    // Keys of every server; the load hits them all, a third on the server that will hang.
    let keys: Arc<Vec<String>> = Arc::new((0..300).map(|i| format!("k{i}")).collect());
    for k in keys.iter() {
        client
            .set(k, b"v", SetOptions::new().ttl(600))
            .await
            .unwrap();
    }
    let hung = 1;
    let on_hung = keys.iter().filter(|k| client.server_for(k) == hung).count();
    assert!(on_hung > 30, "{on_hung} keys on server {hung}");

    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::<(usize, Sample)>::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, keys, stop, samples, next) = (
                client.clone(),
                keys.clone(),
                stop.clone(),
                samples.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let k = &keys[next.fetch_add(1, Ordering::Relaxed) % keys.len()];
                    let server = client.server_for(k);
                    let started = Instant::now();
                    let ok = client.get(k, GetOptions::new()).await.is_ok();
                    let sample = Sample {
                        started,
                        took: started.elapsed(),
                        ok,
                    };
                    samples.lock().unwrap().push((server, sample));
                    if !ok {
                        // A failing request returns at once; don't spin the CPU.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(200)).await;
    servers[hung].pause();
    let paused_at = Instant::now();
    poll_until("the hung server marked down", timeout * 10, || async {
        client.is_marked_down(hung)
    })
    .await;
    let marked_at = Instant::now();
    // Under load for `hang`, then let it run again.
    while paused_at.elapsed() < hang {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    servers[hung].resume();
    let resumed_at = Instant::now();
    poll_until(
        "the server marked up again",
        Duration::from_secs(10),
        || async { !client.is_marked_down(hung) },
    )
    .await;
    let back_after = resumed_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    let samples = samples.lock().unwrap().clone();
    // "Waited the timeout": a request that took most of it.
    let waited = |s: &Sample| s.took >= timeout * 3 / 4;
    let in_window = |s: &Sample| s.started >= paused_at && s.started < resumed_at;
    let window: Vec<&(usize, Sample)> = samples.iter().filter(|(_, s)| in_window(s)).collect();
    let burst = window
        .iter()
        .filter(|(_, s)| s.started < marked_at && waited(s))
        .count();
    let after_marking: Vec<&(usize, Sample)> = window
        .iter()
        .copied()
        .filter(|(_, s)| s.started >= marked_at)
        .collect();
    let waited_after = after_marking.iter().filter(|(_, s)| waited(s)).count();
    let hung_requests = after_marking.iter().filter(|(srv, _)| *srv == hung).count();
    let others_failed = window
        .iter()
        .filter(|(srv, s)| *srv != hung && !s.ok)
        .count();
    let others_worst = window
        .iter()
        .filter(|(srv, _)| *srv != hung)
        .map(|(_, s)| s.took)
        .max()
        .unwrap_or_default();
    let down_time = resumed_at - marked_at;
    let intervals = (down_time.as_secs_f64() / retry_delay.as_secs_f64()).ceil() as usize + 1;
    let blocked: Duration = window
        .iter()
        .filter(|(_, s)| waited(s))
        .map(|(_, s)| s.took)
        .sum();
    println!(
        "one of 3 hung for {hang:?} under {CLIENTS} clients (timeout {timeout:?}, retry delay {retry_delay:?}): \
         {} requests in the window; before it was marked down {burst} waited the timeout (requests already in flight); \
         after: {waited_after} of {} requests waited the timeout ({:.2}%; {:.2}% of the hung server's {hung_requests}), \
         {intervals} retry intervals; time blocked in timeouts {:.1}% of client time; \
         other servers' requests failed {others_failed}, worst {others_worst:?}; marked up {back_after:?} after resume",
        window.len(),
        after_marking.len(),
        100.0 * waited_after as f64 / after_marking.len().max(1) as f64,
        100.0 * waited_after as f64 / hung_requests.max(1) as f64,
        100.0 * blocked.as_secs_f64() / (CLIENTS as f64 * (resumed_at - paused_at).as_secs_f64()),
    );
    assert_eq!(others_failed, 0, "other servers' keys are unaffected");
    assert!(
        hung_requests > 10 * intervals,
        "the load reached the hung server ({hung_requests} requests)"
    );
    assert!(
        waited_after <= 2 * intervals,
        "{waited_after} requests waited the timeout in {intervals} retry intervals"
    );
    assert!(
        back_after < retry_delay + timeout + Duration::from_secs(2),
        "marked up {back_after:?} after it resumed"
    );
}

#[tokio::test]
async fn a_write_whose_reply_never_comes_has_an_unknown_outcome_and_its_connection_is_dropped() {
    let mut server = MemcachedServer::start();
    let timeout = Duration::from_millis(300);
    let client = Client::connect(
        ClientConfig::new(server.addr().to_string())
            .pool_size(1)
            .timeout(timeout),
    )
    .await
    .unwrap();
    client
        .set("counter", b"35", SetOptions::new().ttl(600))
        .await
        .unwrap();
    let before = total_connections(&server);

    server.pause();
    let started = Instant::now();
    let err = client
        .set("counter", b"36", SetOptions::new().ttl(600))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(err.is_outcome_unknown(), "{err}");
    assert!(err.is_timeout() && err.is_unavailable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("may or may not have been applied"), "{text}");
    assert!(text.contains(&server.addr().to_string()), "{text}");
    assert!(took < timeout + Duration::from_secs(1), "{took:?}");
    // A read that times out is a plain timeout: nothing was changed.
    let read = client.get("counter", GetOptions::new()).await.unwrap_err();
    assert!(read.is_timeout() && !read.is_outcome_unknown(), "{read}");
    server.resume();

    // The write was sent in full: memcached executes it when it runs again, so "unknown" was
    // the honest answer. The next requests get their own replies on a new connection.
    poll_until(
        "the timed-out write lands",
        Duration::from_secs(5),
        || async {
            client
                .get("counter", GetOptions::new())
                .await
                .unwrap()
                .is_some_and(|i| &i.value[..] == b"36")
        },
    )
    .await;
    client
        .set("counter", b"37", SetOptions::new().ttl(600))
        .await
        .unwrap();
    let item = client
        .get("counter", GetOptions::new())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&item.value[..], b"37");
    // The connections that timed out (the write's and the read's) were replaced, each by
    // one new connection (+1: the `stats` connection of this reading).
    let opened = total_connections(&server) - before;
    assert!(
        (2..=3).contains(&opened),
        "{opened} connections opened since the pause"
    );
}

#[tokio::test]
async fn a_write_refused_before_it_was_sent_is_not_reported_as_unknown() {
    let mut servers = three();
    let client = Client::connect(
        ClientConfig::pool(addrs(&servers))
            .failure_limit(1)
            .retry_delay(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let key = (0..1000)
        .map(|i| format!("w{i}"))
        .find(|k| client.server_for(k) == 2)
        .unwrap();
    servers[2].kill();
    // Killed: the write fails on a closed connection or a refused connect.
    let first = client.set(&key, b"v", SetOptions::new()).await.unwrap_err();
    assert!(first.is_unavailable(), "{first}");
    assert!(client.is_marked_down(2));
    // Marked down: refused at once, nothing sent, so the outcome is known (not applied).
    let refused = client.set(&key, b"v", SetOptions::new()).await.unwrap_err();
    assert!(
        refused.is_unavailable() && !refused.is_outcome_unknown(),
        "{refused}"
    );
    assert!(refused.to_string().contains("marked down"), "{refused}");
}
