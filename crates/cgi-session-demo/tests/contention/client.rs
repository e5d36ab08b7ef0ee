//! The client side: requests over hyper with one cookie, `in_flight` at once, and what the
//! answers must show (every view counted, every greeting redirected).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use cgi_session_demo::SessionInfo;
use http::{HeaderMap, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Page views (or greetings) sent in each case, after the first view that made the session.
const TOTAL: usize = 1_000;
/// How long one request may take before it is recorded as a transport failure (no test
/// relies on it: it only keeps a hung server from hanging the test).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How many unexpected answers a failure message shows.
const SAMPLES: usize = 5;

/// One request: method, path, urlencoded form (POST only).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    method: &'static str,
    path: String,
    form: Option<String>,
}

impl Call {
    pub(crate) fn get(path: &str) -> Self {
        Call {
            method: "GET",
            path: path.to_owned(),
            form: None,
        }
    }

    pub(crate) fn post(path: &str, form: String) -> Self {
        Call {
            method: "POST",
            path: path.to_owned(),
            form: Some(form),
        }
    }
}

/// One answer, or why there was none.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    /// The status, or the transport failure (connection refused or reset, timeout).
    status: Result<u16, String>,
    headers: HeaderMap,
    pub(crate) body: String,
    pub(crate) elapsed: Duration,
}

impl Reply {
    pub(crate) fn is(&self, status: u16) -> bool {
        self.status == Ok(status)
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
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
    pub(crate) fn describe(&self) -> String {
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
pub(crate) struct Http(Client<HttpConnector, Body>);

impl Http {
    pub(crate) fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Http(Client::builder(TokioExecutor::new()).build(connector))
    }

    pub(crate) async fn send(
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

    pub(crate) async fn get(&self, addr: SocketAddr, path: &str, cookie: Option<&str>) -> Reply {
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
pub(crate) fn short(id: &str) -> String {
    format!("{}…", id.chars().take(8).collect::<String>())
}

/// The id in `CGISESSID=<id>`.
pub(crate) fn id_of(cookie: &str) -> &str {
    cookie.split_once('=').map_or("", |(_, id)| id)
}

/// The visitor acts (`POST /greet`, which makes the session: anonymous views store none),
/// then views the page once (the counter's first visit): the session's cookie.
pub(crate) async fn new_session(http: &Http, addr: SocketAddr) -> String {
    let acted = http
        .send(
            addr,
            &Call::post("/greet", "greet_en=start".to_owned()),
            None,
            REQUEST_TIMEOUT,
        )
        .await;
    assert!(acted.is(303), "POST /greet: {}", acted.describe());
    let cookie = acted.cookie().unwrap_or_else(|| {
        panic!(
            "acting (POST /greet) sets no session cookie: {}",
            acted.describe()
        )
    });
    let first = http.get(addr, "/", Some(&cookie)).await;
    assert!(first.is(200), "first view: {}", first.describe());
    assert_eq!(
        page_counter(&first.body),
        Some(1),
        "the first view is counted"
    );
    cookie
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
pub(crate) async fn count_views(
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
pub(crate) async fn greet_many(
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
