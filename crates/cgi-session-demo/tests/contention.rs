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

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use cgi_session::memcache::client::{Client as Memcache, ClientConfig, GetOptions, Item};
use cgi_session::memcache::MemcacheDriver;
use cgi_session::{FileDriver, MemoryDriver, SessionStore};
use cgi_session_demo::SessionInfo;
use http::{HeaderMap, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use memcached_harness::MemcachedServer;
use tokio::task::JoinHandle;

/// Page views (or greetings) sent in each case, after the first view that made the session.
const TOTAL: usize = 1_000;
/// How long one request may take before it is recorded as a transport failure (no test
/// relies on it: it only keeps a hung server from hanging the test).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How many unexpected answers a failure message shows.
const SAMPLES: usize = 5;

// ----- HTTP ------------------------------------------------------------------------------

/// One request: method, path, urlencoded form (POST only).
#[derive(Debug, Clone)]
struct Call {
    method: &'static str,
    path: String,
    form: Option<String>,
}

impl Call {
    fn get(path: &str) -> Self {
        Call {
            method: "GET",
            path: path.to_owned(),
            form: None,
        }
    }

    fn post(path: &str, form: String) -> Self {
        Call {
            method: "POST",
            path: path.to_owned(),
            form: Some(form),
        }
    }
}

/// One answer, or why there was none.
#[derive(Debug, Clone)]
struct Reply {
    /// The status, or the transport failure (connection refused or reset, timeout).
    status: Result<u16, String>,
    headers: HeaderMap,
    body: String,
    elapsed: Duration,
}

impl Reply {
    fn is(&self, status: u16) -> bool {
        self.status == Ok(status)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `CGISESSID=<id>` from the Set-Cookie header.
    fn cookie(&self) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|c| c.split(';').next().unwrap_or("").trim().to_owned())
            .find(|pair| pair.starts_with("CGISESSID=") && pair.len() > "CGISESSID=".len())
    }

    /// The status and the start of the body, for messages (no cookie, no full id).
    fn describe(&self) -> String {
        let status = match &self.status {
            Ok(s) => s.to_string(),
            Err(e) => format!("no answer ({e})"),
        };
        let body: String = self.body.chars().take(160).collect();
        let more = if self.body.chars().count() > 160 {
            "…"
        } else {
            ""
        };
        format!(
            "{status} after {:?}, content-type {:?}, body {body:?}{more}",
            self.elapsed,
            self.header("content-type").unwrap_or("-")
        )
    }
}

/// hyper's client over TCP with keep-alive (one pool shared by every task of a test).
#[derive(Clone)]
struct Http(Client<HttpConnector, Body>);

impl Http {
    fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Http(Client::builder(TokioExecutor::new()).build(connector))
    }

    async fn send(
        &self,
        addr: SocketAddr,
        call: &Call,
        cookie: Option<&str>,
        timeout: Duration,
    ) -> Reply {
        assert!(addr.ip().is_loopback(), "requests go to loopback only");
        let mut req = Request::builder()
            .method(call.method)
            .uri(format!("http://{addr}{}", call.path));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let body = match &call.form {
            Some(form) => {
                req = req.header("content-type", "application/x-www-form-urlencoded");
                Body::from(form.clone())
            }
            None => Body::empty(),
        };
        let req = req.body(body).expect("a valid request");
        let start = Instant::now();
        let exchange = async {
            let res = self.0.request(req).await.map_err(|e| chain(&e))?;
            let (parts, body) = res.into_parts();
            let bytes = axum::body::to_bytes(Body::new(body), 1 << 20)
                .await
                .map_err(|e| format!("reading the body: {}", chain(&e)))?;
            Ok::<_, String>((parts, bytes))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok((parts, bytes))) => Reply {
                status: Ok(parts.status.as_u16()),
                headers: parts.headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
                elapsed: start.elapsed(),
            },
            Ok(Err(e)) => Reply {
                status: Err(e),
                headers: HeaderMap::new(),
                body: String::new(),
                elapsed: start.elapsed(),
            },
            Err(_) => Reply {
                status: Err(format!("no complete answer within {timeout:?}")),
                headers: HeaderMap::new(),
                body: String::new(),
                elapsed: start.elapsed(),
            },
        }
    }

    async fn get(&self, addr: SocketAddr, path: &str, cookie: Option<&str>) -> Reply {
        self.send(addr, &Call::get(path), cookie, REQUEST_TIMEOUT)
            .await
    }
}

/// An error and its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Sends `total` requests (`call(i)` for i in 0..total) with `in_flight` tasks sharing
/// `cookie`; request i goes to `targets[i % targets.len()]`. Returns every answer.
async fn load(
    http: &Http,
    targets: &[SocketAddr],
    cookie: &str,
    total: usize,
    in_flight: usize,
    call: fn(usize) -> Call,
) -> Vec<Reply> {
    let next = Arc::new(AtomicUsize::new(0));
    let targets: Arc<[SocketAddr]> = targets.into();
    let mut tasks = Vec::with_capacity(in_flight);
    for _ in 0..in_flight {
        let (http, next, targets, cookie) = (
            http.clone(),
            Arc::clone(&next),
            Arc::clone(&targets),
            cookie.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut replies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return replies;
                }
                let addr = targets[i % targets.len()];
                replies.push(
                    http.send(addr, &call(i), Some(&cookie), REQUEST_TIMEOUT)
                        .await,
                );
            }
        }));
    }
    let mut all = Vec::with_capacity(total);
    for task in tasks {
        all.extend(task.await.expect("a request task panicked"));
    }
    assert_eq!(all.len(), total);
    all
}

/// The statuses of a batch, the first few unexpected answers, and latencies.
struct Summary {
    expected: u16,
    histogram: BTreeMap<String, usize>,
    samples: Vec<String>,
    unexpected: usize,
    median: Duration,
    max: Duration,
}

impl Summary {
    fn of(replies: &[Reply], expected: u16) -> Self {
        let mut histogram = BTreeMap::new();
        let mut samples = Vec::new();
        let mut unexpected = 0;
        for r in replies {
            let key = match &r.status {
                Ok(s) => s.to_string(),
                Err(_) => "no answer".to_owned(),
            };
            *histogram.entry(key).or_insert(0) += 1;
            if !r.is(expected) {
                unexpected += 1;
                if samples.len() < SAMPLES {
                    samples.push(r.describe());
                }
            }
        }
        let mut times: Vec<Duration> = replies.iter().map(|r| r.elapsed).collect();
        times.sort();
        Summary {
            expected,
            histogram,
            samples,
            unexpected,
            median: times.get(times.len() / 2).copied().unwrap_or_default(),
            max: times.last().copied().unwrap_or_default(),
        }
    }

    fn all_expected(&self) -> bool {
        self.unexpected == 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "statuses {:?} (expected all {}), median {:?}, max {:?}",
            self.histogram, self.expected, self.median, self.max
        )?;
        for (i, s) in self.samples.iter().enumerate() {
            write!(f, "\n  unexpected #{}: {s}", i + 1)?;
        }
        Ok(())
    }
}

/// The first 8 characters of a session id: never print more.
fn short(id: &str) -> String {
    format!("{}…", id.chars().take(8).collect::<String>())
}

/// The id in `CGISESSID=<id>`.
fn id_of(cookie: &str) -> &str {
    cookie.split_once('=').map_or("", |(_, id)| id)
}

/// A first `GET /` without a cookie, which must make the session: its cookie.
async fn new_session(http: &Http, addr: SocketAddr) -> String {
    let first = http.get(addr, "/", None).await;
    assert!(first.is(200), "first view: {}", first.describe());
    first.cookie().unwrap_or_else(|| {
        panic!(
            "the first view sets no session cookie: {}",
            first.describe()
        )
    })
}

/// `GET /api/session`, or what went wrong.
async fn session_info(http: &Http, addr: SocketAddr, cookie: &str) -> Result<SessionInfo, String> {
    let r = http.get(addr, "/api/session", Some(cookie)).await;
    if !r.is(200) {
        return Err(format!("GET /api/session: {}", r.describe()));
    }
    serde_json::from_str(&r.body).map_err(|e| format!("GET /api/session: {e}: {}", r.describe()))
}

/// The counter a page shows, if it shows one.
fn page_counter(page: &str) -> Option<u64> {
    let start = page.find("id=\"counter\">")? + "id=\"counter\">".len();
    let end = start + page[start..].find('<')?;
    page[start..end].parse().ok()
}

/// Makes a session on `targets[0]`, then sends `TOTAL` page views with `in_flight` at once
/// spread over `targets`. `Err` lists what is wrong: answers other than 200, a counter other
/// than 1 + `TOTAL`.
async fn count_views(
    label: &str,
    http: &Http,
    targets: &[SocketAddr],
    in_flight: usize,
) -> Result<(), String> {
    let cookie = new_session(http, targets[0]).await;
    let started = Instant::now();
    let replies = load(http, targets, &cookie, TOTAL, in_flight, |_| Call::get("/")).await;
    let took = started.elapsed();
    let summary = Summary::of(&replies, 200);
    let shown: std::collections::BTreeSet<u64> = replies
        .iter()
        .filter_map(|r| page_counter(&r.body))
        .collect();
    let info = session_info(http, targets[0], &cookie).await;
    let expected = 1 + TOTAL as u64;
    let mut problems = Vec::new();
    if !summary.all_expected() {
        problems.push(format!(
            "{} of {TOTAL} answers were not 200",
            summary.unexpected
        ));
    }
    let counter = match &info {
        Ok(info) => {
            if info.counter != expected {
                problems.push(format!(
                    "counter {} instead of {expected}: {} page views lost (or {} counted twice)",
                    info.counter,
                    expected.saturating_sub(info.counter),
                    info.counter.saturating_sub(expected),
                ));
            }
            info.counter.to_string()
        }
        Err(e) => {
            problems.push(e.clone());
            "unreadable".to_owned()
        }
    };
    let figures = format!(
        "{label}: {TOTAL} views at {in_flight} in flight on session {} in {took:?}: {summary}; \
         counter {counter} (expected {expected}); {} distinct counters shown on the pages",
        short(id_of(&cookie)),
        shown.len()
    );
    eprintln!("{figures}");
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{figures}", problems.join("; ")))
    }
}

/// Makes a session, then sends `TOTAL` `POST /greet` (`greet_en=v<i>`) with `in_flight` at
/// once: every answer must be 303, and `greet_en` must end as one of the values sent (and the
/// visit counted when the session was made must still be there).
async fn greet_many(
    label: &str,
    http: &Http,
    addr: SocketAddr,
    in_flight: usize,
) -> Result<(), String> {
    let cookie = new_session(http, addr).await;
    let started = Instant::now();
    let replies = load(http, &[addr], &cookie, TOTAL, in_flight, |i| {
        Call::post("/greet", format!("greet_en=v{i}"))
    })
    .await;
    let took = started.elapsed();
    let summary = Summary::of(&replies, 303);
    let info = session_info(http, addr, &cookie).await;
    let mut problems = Vec::new();
    if !summary.all_expected() {
        problems.push(format!(
            "{} of {TOTAL} answers were not 303",
            summary.unexpected
        ));
    }
    let sent = |g: &str| {
        g.strip_prefix('v')
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n < TOTAL && g == format!("v{n}"))
    };
    let end = match &info {
        Ok(info) => {
            if !info.greet_en.as_deref().is_some_and(sent) {
                problems.push(format!(
                    "greet_en is {:?}, not one of the values sent (v0..v{})",
                    info.greet_en,
                    TOTAL - 1
                ));
            }
            if info.counter != 1 {
                problems.push(format!(
                    "the visit counted when the session was made is gone or changed: counter {}",
                    info.counter
                ));
            }
            format!("greet_en {:?}, counter {}", info.greet_en, info.counter)
        }
        Err(e) => {
            problems.push(e.clone());
            "session unreadable".to_owned()
        }
    };
    let figures = format!(
        "{label}: {TOTAL} greetings at {in_flight} in flight on session {} in {took:?}: {summary}; {end}",
        short(id_of(&cookie)),
    );
    eprintln!("{figures}");
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{figures}", problems.join("; ")))
    }
}

// ----- servers ---------------------------------------------------------------------------

/// The stores of the in-process app.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Memory,
    File,
    Memcached,
}

/// A store and what it lives on (kept alive with it).
struct Backend {
    store: SessionStore,
    _dir: Option<tempfile::TempDir>,
    memcached: Option<MemcachedServer>,
}

async fn memcache_client(addr: SocketAddr) -> Memcache {
    Memcache::connect(ClientConfig::new(addr.to_string()))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to memcached at {addr}: {e}"))
}

async fn backend(kind: Kind) -> Backend {
    match kind {
        Kind::Memory => Backend {
            store: SessionStore::builder(MemoryDriver::new())
                .default_expire(1800)
                .build(),
            _dir: None,
            memcached: None,
        },
        Kind::File => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let driver = FileDriver::new(dir.path()).expect("the file driver");
            Backend {
                store: SessionStore::builder(driver).default_expire(1800).build(),
                _dir: Some(dir),
                memcached: None,
            }
        }
        Kind::Memcached => {
            let server = MemcachedServer::start();
            let driver = MemcacheDriver::new(memcache_client(server.addr()).await);
            Backend {
                store: SessionStore::builder(driver).default_expire(1800).build(),
                _dir: None,
                memcached: Some(server),
            }
        }
    }
}

/// The demo app served in this process on a loopback port; stopped when dropped.
struct InProcess {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Keep-alive connections would hold a graceful shutdown open: end it now.
        self.task.abort();
    }
}

async fn serve_in_process(store: SessionStore) -> InProcess {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(cgi_session_demo::serve(
        listener,
        cgi_session_demo::app(store),
        async move {
            let _ = stopped.await;
        },
    ));
    InProcess {
        addr,
        stop: Some(stop),
        task,
    }
}

/// The last lines a demo process wrote on stderr.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    count: usize,
}

impl Tail {
    const KEEP: usize = 20;

    fn push(&mut self, line: String) {
        self.count += 1;
        if self.lines.len() == Self::KEEP {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

/// The running binary, killed (SIGKILL) and reaped when dropped.
struct Demo {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Tail>>,
}

impl Demo {
    /// SIGKILL, then reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last lines of its stderr, for failure messages.
    fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = format!(
            "--- {} stderr: {} lines, the last {}:",
            self.name,
            tail.count,
            tail.lines.len()
        );
        for line in &tail.lines {
            text.push_str("\n  ");
            text.extend(line.chars().take(300));
        }
        text
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the demo binary on a loopback port with `args` and waits (with a deadline) for the
/// address it prints. Panics with its stderr when it does not start.
fn start_demo(name: &'static str, args: &[&str]) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cgi-session-demo"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the demo binary starts");
    // Both pipes are drained for the life of the process, so that it never blocks on them.
    let stderr = Arc::new(Mutex::new(Tail::default()));
    let stderr_reader = {
        let pipe = child.stderr.take().expect("stderr piped");
        let stderr = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                stderr.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        })
    };
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut banner = String::new();
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent {
                banner.push_str(&line);
                banner.push('\n');
                if let Some(rest) = line.strip_prefix("Open http://") {
                    let addr = rest.split('/').next().unwrap_or("").to_owned();
                    let _ = tx.send(Ok(addr));
                    sent = true;
                }
            }
        }
        if !sent {
            let _ = tx.send(Err(banner));
        }
    });
    let outcome = rx.recv_timeout(Duration::from_secs(30));
    if let Ok(Ok(addr)) = &outcome {
        if let Ok(addr) = addr.parse::<SocketAddr>() {
            return Demo {
                name,
                child,
                addr,
                stderr,
            };
        }
    }
    let _ = child.kill();
    let status = child.wait();
    let _ = stderr_reader.join();
    let demo_stderr: Vec<String> = stderr
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .lines
        .iter()
        .cloned()
        .collect();
    panic!(
        "demo {name} with {args:?} did not start: {outcome:?}; exit {status:?}; stderr:\n{}",
        demo_stderr.join("\n")
    );
}

/// The binary's options for a store on `memcached`.
fn memcache_args(memcached: &MemcachedServer) -> Vec<String> {
    vec![
        "--dsn".into(),
        "driver:memcache".into(),
        "--servers".into(),
        memcached.addr().to_string(),
    ]
}

fn start_on(name: &'static str, memcached: &MemcachedServer, extra: &[&str]) -> Demo {
    let mut args = memcache_args(memcached);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start_demo(name, &args)
}

/// A task aborted when dropped.
struct Background<T>(JoinHandle<T>);

impl<T> Drop for Background<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts `GET /hold?ms=600000` on `addr` with `cookie` in the background.
fn hold(http: &Http, addr: SocketAddr, cookie: &str) -> Background<Reply> {
    let (http, cookie) = (http.clone(), cookie.to_owned());
    Background(tokio::spawn(async move {
        http.send(
            addr,
            &Call::get("/hold?ms=600000"),
            Some(&cookie),
            Duration::from_secs(700),
        )
        .await
    }))
}

/// The memcached key of the lock of session `id`.
fn lock_key(id: &str) -> String {
    format!("lock:sessions:{id}")
}

/// Polls memcached until the lock item of session `id` exists (its first read, with the
/// remaining TTL), with a deadline; fails early, with its answer, if the holder's request
/// ends first.
async fn wait_for_lock(memcache: &Memcache, id: &str, holder: &mut Background<Reply>) -> Item {
    let key = lock_key(id);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let item = memcache
            .get(&key, GetOptions::new().ttl_remaining(true))
            .await
            .unwrap_or_else(|e| panic!("reading lock:sessions:{}: {e}", short(id)));
        if let Some(item) = item {
            return item;
        }
        if holder.0.is_finished() {
            let answer = (&mut holder.0).await.map(|r| r.describe());
            panic!(
                "no lock item lock:sessions:{} while /hold ran; /hold answered: {answer:?}",
                short(id)
            );
        }
        assert!(
            Instant::now() < deadline,
            "no lock item lock:sessions:{} within 10 s of starting /hold?ms=600000",
            short(id)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls memcached until the lock item of session `id` is gone, with a deadline; returns how
/// long that took.
async fn wait_for_no_lock(
    memcache: &Memcache,
    id: &str,
    within: Duration,
) -> Result<Duration, String> {
    let key = lock_key(id);
    let start = Instant::now();
    loop {
        let item = memcache
            .get(&key, GetOptions::new().ttl_remaining(true))
            .await
            .unwrap_or_else(|e| panic!("reading lock:sessions:{}: {e}", short(id)));
        match item {
            None => return Ok(start.elapsed()),
            Some(item) if start.elapsed() >= within => {
                return Err(format!(
                "the lock item lock:sessions:{} is still there after {:?} (remaining TTL {:?} s)",
                short(id),
                start.elapsed(),
                item.ttl_remaining
            ))
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

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
    for (what, cookie) in [
        ("without a cookie", None),
        ("with a valid cookie", Some(&*cookie)),
    ] {
        let r = http.get(server.addr, "/", cookie).await;
        eprintln!("dead memcached, GET / {what}: {}", r.describe());
        if !r.is(503) || r.body.trim().is_empty() {
            problems.push(format!("GET / {what}: {}", r.describe()));
        } else if !r
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain"))
        {
            problems.push(format!("GET / {what}: not text/plain: {}", r.describe()));
        }
    }
    assert!(
        problems.is_empty(),
        "with memcached dead, GET / must answer 503 with a text body:\n{}",
        problems.join("\n")
    );
}
