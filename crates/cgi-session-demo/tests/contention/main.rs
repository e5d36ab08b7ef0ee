//! Several requests on one session at once (issue 12), over real HTTP on loopback: a browser
//! that sends many requests with one cookie must get an answer to each (200, or a 503 with a
//! text body and `Retry-After` when a deadline passes), and every page view must be counted
//! exactly once, on every store, in one process or in two processes sharing memcached, with
//! and without the session lock.
//!
//! The in-process app is served on a loopback port with `cgi_session_demo::serve`; the binary
//! is started with `--listen 127.0.0.1:0`. Requests go through hyper's client over TCP with
//! keep-alive, `in_flight` tasks sharing one cookie. Every demo process and memcached is
//! killed when its guard is dropped, also when a test fails.
//!
//! The cases are here; the helpers are in `client.rs` (requests and what their answers must
//! show), `servers.rs` (the in-process app and the demo binary) and `locks.rs` (a request held
//! in the background, the lock item in memcached).

use std::time::{Duration, Instant};

use memcached_harness::MemcachedServer;

mod client;
mod locks;
mod servers;

use crate::client::{count_views, greet_many, id_of, new_session, Call, Http};
use crate::locks::{hold, wait_for_lock, wait_for_no_lock};
use crate::servers::{backend, memcache_client, serve_in_process, start_on, Kind};

// ----- 1. one process, every store: every view counted ----------------------------------

async fn in_process_views(kind: Kind, in_flight: usize) {
    let backend = backend(kind).await;
    let server = serve_in_process(backend.store.clone()).await;
    let http = Http::new();
    let label = format!("in-process {kind:?}");
    if let Err(e) = count_views(&label, &http, &[server.addr], in_flight).await {
        panic!("{e}");
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_counts_every_view_with_2_in_flight() {
    in_process_views(Kind::Memory, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_counts_every_view_with_8_in_flight() {
    in_process_views(Kind::Memory, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_counts_every_view_with_50_in_flight() {
    in_process_views(Kind::Memory, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_count_every_view_with_2_in_flight() {
    in_process_views(Kind::File, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_count_every_view_with_8_in_flight() {
    in_process_views(Kind::File, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_count_every_view_with_50_in_flight() {
    in_process_views(Kind::File, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_counts_every_view_with_2_in_flight() {
    in_process_views(Kind::Memcached, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_counts_every_view_with_8_in_flight() {
    in_process_views(Kind::Memcached, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_counts_every_view_with_50_in_flight() {
    in_process_views(Kind::Memcached, 50).await;
}

// ----- 2. two processes on one memcached -------------------------------------------------

async fn two_processes_views(in_flight: usize) {
    let memcached = MemcachedServer::start();
    let a = start_on("A", &memcached, &[]);
    let b = start_on("B", &memcached, &[]);
    let http = Http::new();
    let label = "two processes on one memcached";
    if let Err(e) = count_views(label, &http, &[a.addr, b.addr], in_flight).await {
        panic!("{e}\n{}\n{}", a.stderr_tail(), b.stderr_tail());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_memcached_count_every_view_with_8_in_flight() {
    two_processes_views(8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_memcached_count_every_view_with_50_in_flight() {
    two_processes_views(50).await;
}

// ----- 3. many greetings at once ---------------------------------------------------------

async fn in_process_greetings(kind: Kind) {
    let backend = backend(kind).await;
    let server = serve_in_process(backend.store.clone()).await;
    let http = Http::new();
    let label = format!("in-process {kind:?}");
    if let Err(e) = greet_many(&label, &http, server.addr, 8).await {
        panic!("{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greetings_on_memcached_all_redirect_and_one_of_them_stays() {
    in_process_greetings(Kind::Memcached).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greetings_on_files_all_redirect_and_one_of_them_stays() {
    in_process_greetings(Kind::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greetings_in_memory_all_redirect_and_one_of_them_stays() {
    in_process_greetings(Kind::Memory).await;
}

// ----- 4. the session lock ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lock_holder_delays_others_only_until_its_lease_ends() {
    const LEASE: Duration = Duration::from_secs(3);
    const WAIT: Duration = Duration::from_secs(10);
    let memcached = MemcachedServer::start();
    let lock = [
        "--lock",
        "every-request",
        "--lock-lease",
        "3s",
        "--lock-wait",
        "10s",
    ];
    let mut a = start_on("A", &memcached, &lock);
    let b = start_on("B", &memcached, &lock);
    let http = Http::new();
    let memcache = memcache_client(memcached.addr()).await;
    let cookie = new_session(&http, a.addr).await;
    let id = id_of(&cookie).to_owned();

    let mut holder = hold(&http, a.addr, &cookie);
    let item = wait_for_lock(&memcache, &id, &mut holder).await;
    // -1 would be an item that never expires: a crashed holder would lock the session out.
    assert!(
        item.ttl_remaining
            .is_some_and(|t| t >= 1 && t <= LEASE.as_secs() as i64),
        "the lock item's remaining TTL when first read is {:?} s, not within 1..={} s (the lease)",
        item.ttl_remaining,
        LEASE.as_secs()
    );

    a.kill();
    let killed = Instant::now();
    let r = http.get(b.addr, "/", Some(&cookie)).await;
    eprintln!(
        "lock held by a killed process: GET / on B answered {}, {:?} after the kill",
        r.describe(),
        killed.elapsed()
    );
    assert!(
        r.is(200),
        "GET / on B after the lock holder A was killed: {}\n{}",
        r.describe(),
        b.stderr_tail()
    );
    assert!(
        r.elapsed < LEASE + WAIT,
        "GET / on B took {:?}, not below lease + wait ({:?})",
        r.elapsed,
        LEASE + WAIT
    );
    // Gone: released by B, or at the latest expired with A's lease.
    let within = (LEASE + Duration::from_secs(2)).saturating_sub(killed.elapsed());
    let gone = wait_for_no_lock(&memcache, &id, within.max(Duration::from_secs(2))).await;
    assert!(gone.is_ok(), "{}", gone.unwrap_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_lock_holder_makes_others_answer_503_with_retry_after_at_lock_wait() {
    let memcached = MemcachedServer::start();
    let a = start_on(
        "A",
        &memcached,
        &[
            "--lock",
            "every-request",
            "--lock-lease",
            "30s",
            "--lock-wait",
            "10s",
        ],
    );
    let b = start_on(
        "B",
        &memcached,
        &[
            "--lock",
            "every-request",
            "--lock-lease",
            "30s",
            "--lock-wait",
            "1s",
        ],
    );
    let http = Http::new();
    let memcache = memcache_client(memcached.addr()).await;
    let cookie = new_session(&http, a.addr).await;
    let id = id_of(&cookie).to_owned();

    let mut holder = hold(&http, a.addr, &cookie);
    wait_for_lock(&memcache, &id, &mut holder).await;
    let r = http.get(b.addr, "/", Some(&cookie)).await;
    eprintln!(
        "lock held by a live process: GET / on B answered {}",
        r.describe()
    );
    let problems: Vec<String> = [
        (!r.is(503)).then(|| "the status is not 503".to_owned()),
        r.body
            .trim()
            .is_empty()
            .then(|| "the body is empty".to_owned()),
        (!r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")))
        .then(|| "the body is not text/plain".to_owned()),
        match r.header("retry-after") {
            Some(v) if is_retry_after(v) => None,
            Some(v) => Some(format!(
                "Retry-After {v:?} is neither seconds nor an HTTP date"
            )),
            None => Some("no Retry-After header".to_owned()),
        },
        (r.elapsed < Duration::from_secs(1)).then(|| {
            format!(
                "answered after {:?}, before the lock wait of 1 s",
                r.elapsed
            )
        }),
        (r.elapsed >= Duration::from_secs(6)).then(|| {
            format!(
                "answered after {:?}, long past the lock wait of 1 s",
                r.elapsed
            )
        }),
        holder
            .0
            .is_finished()
            .then(|| "the holder's /hold request ended early".to_owned()),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(
        problems.is_empty(),
        "GET / on B while A holds the lock: {}: {}\n{}\n{}",
        problems.join("; "),
        r.describe(),
        a.stderr_tail(),
        b.stderr_tail()
    );
}

/// Retry-After: delay-seconds or an HTTP date.
fn is_retry_after(value: &str) -> bool {
    let v = value.trim();
    (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())) || v.ends_with("GMT")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_mode_on_one_process_counts_every_view_with_8_in_flight() {
    let memcached = MemcachedServer::start();
    let demo = start_on("A", &memcached, &["--lock", "every-request"]);
    let http = Http::new();
    if let Err(e) = count_views("one process, --lock every-request", &http, &[demo.addr], 8).await {
        panic!("{e}\n{}", demo.stderr_tail());
    }
    // Every request released the lock it took.
    let memcache = memcache_client(memcached.addr()).await;
    let cookie = new_session(&http, demo.addr).await;
    let r = http.get(demo.addr, "/", Some(&cookie)).await;
    assert!(r.is(200), "{}", r.describe());
    let gone = wait_for_no_lock(&memcache, id_of(&cookie), Duration::from_secs(5)).await;
    assert!(
        gone.is_ok(),
        "after the last request: {}",
        gone.unwrap_err()
    );
}

// ----- 5. error answers have a body ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_memcached_is_a_503_with_a_text_body_with_and_without_a_cookie() {
    let mut backend = backend(Kind::Memcached).await;
    let server = serve_in_process(backend.store.clone()).await;
    let http = Http::new();
    let cookie = new_session(&http, server.addr).await;
    backend.memcached.as_mut().expect("memcached").kill();

    let mut problems = Vec::new();
    for (what, call, cookie) in [
        // A new visitor who acts: the session cannot be stored.
        (
            "POST /greet without a cookie",
            Call::post("/greet", "greet_en=Hi".to_owned()),
            None,
        ),
        ("GET / with a valid cookie", Call::get("/"), Some(&*cookie)),
    ] {
        let r = http
            .send(server.addr, &call, cookie, Duration::from_secs(30))
            .await;
        eprintln!("dead memcached, {what}: {}", r.describe());
        if !r.is(503) || r.body.trim().is_empty() {
            problems.push(format!("{what}: {}", r.describe()));
        } else if !r
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain"))
        {
            problems.push(format!("{what}: not text/plain: {}", r.describe()));
        }
    }
    // An anonymous view needs no store: the page is served.
    let r = http.get(server.addr, "/", None).await;
    if !r.is(200) {
        problems.push(format!("GET / without a cookie: {}", r.describe()));
    }
    assert!(
        problems.is_empty(),
        "with memcached dead, a request that needs the store must answer 503 with a text body:\n{}",
        problems.join("\n")
    );
}
