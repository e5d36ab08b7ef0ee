//! End to end under a real CGI-capable web server: lighttpd (Debian package `lighttpd`) with
//! mod_cgi runs the CGI example of cgi-session-cgi (`examples/greet_cgi.rs`, built by this
//! package as the binary `e2e-greet-cgi`) on a loopback port; the sessions live in a real
//! memcached (memcached-harness) or in a temporary directory.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cgi_session::memcache::client::GetOptions;
use cgi_session_cgi::{block_on, connect_memcached, ClientConfig};
use memcached_harness::MemcachedServer;

const PROGRAM: &str = env!("CARGO_BIN_EXE_e2e-greet-cgi");

fn lighttpd_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("LIGHTTPD_BIN") {
        return bin.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("lighttpd"))
        .find(|p| p.is_file())
        .expect(
            "lighttpd not found: install it with `apt-get install lighttpd` (or set LIGHTTPD_BIN)",
        )
}

/// A lighttpd serving `greet-cgi` at `/cgi-bin/greet`; killed on drop.
struct Lighttpd {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Lighttpd {
    fn start(env: &[(&str, &str)]) -> Lighttpd {
        let dir = tempfile::tempdir().unwrap();
        let docroot = dir.path().join("htdocs");
        std::fs::create_dir_all(docroot.join("cgi-bin")).unwrap();
        std::os::unix::fs::symlink(PROGRAM, docroot.join("cgi-bin/greet")).unwrap();
        // A free loopback port: bound by the OS, then released for lighttpd.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let setenv: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("\"{k}\" => \"{v}\""))
            .collect();
        let conf = format!(
            r#"server.document-root = "{docroot}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{log}"
server.breakagelog = "{breakage}"
server.modules = ("mod_cgi", "mod_setenv")
setenv.add-environment = ({setenv})
$HTTP["url"] =~ "^/cgi-bin/" {{ cgi.assign = ("" => "") }}
"#,
            docroot = docroot.display(),
            log = dir.path().join("error.log").display(),
            breakage = dir.path().join("cgi-stderr.log").display(),
            setenv = setenv.join(", "),
        );
        let conf_path = dir.path().join("lighttpd.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(lighttpd_binary())
            .arg("-D")
            .arg("-f")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting lighttpd");
        let server = Lighttpd {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "lighttpd did not listen on {} within 15 s; its log:\n{}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// lighttpd's error log, then the CGI programs' standard error (its `breakagelog`).
    fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name));
        let mut log = read("error.log").unwrap_or_default();
        log.push_str(&read("cgi-stderr.log").unwrap_or_default());
        log
    }

    /// One HTTP/1.0 exchange that must succeed.
    fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        let resp = self.exchange(method, target, headers, body);
        assert_eq!(resp.status, 200, "{resp:?}\nlighttpd log:\n{}", self.log());
        resp
    }

    /// One HTTP/1.0 exchange, whatever its status.
    fn exchange(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut req = format!("{method} {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(body);
        stream.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Response {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    fn get(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", target, headers, "")
    }

    /// `total` GETs of `target` with `cookie`, `in_flight` at a time (one blocking client
    /// thread each), whatever their status; in the order they completed.
    fn get_in_parallel(
        &self,
        target: &str,
        cookie: &str,
        total: usize,
        in_flight: usize,
    ) -> Vec<Response> {
        let next = AtomicUsize::new(0);
        let answers = Mutex::new(Vec::with_capacity(total));
        std::thread::scope(|scope| {
            for _ in 0..in_flight {
                scope.spawn(|| {
                    while next.fetch_add(1, Ordering::Relaxed) < total {
                        let r = self.exchange("GET", target, &[("Cookie", cookie)], "");
                        answers.lock().unwrap().push(r);
                    }
                });
            }
        });
        answers.into_inner().unwrap()
    }

    /// The end of lighttpd's error log (the CGI program's standard error goes there too).
    fn log_tail(&self) -> String {
        let log = self.log();
        let mut start = log.len().saturating_sub(3000);
        while !log.is_char_boundary(start) {
            start += 1;
        }
        log[start..].to_owned()
    }

    /// Checks answers to requests of the session `id` that each counted one visit: all `200`
    /// (else a status histogram and the first bodies), all on the same session, and the
    /// `visits:` values exactly `first..first + answers.len()`, each once.
    fn assert_every_visit_counted_once(&self, answers: &[Response], id: &str, first: u64) {
        let short = &id[..8];
        let mut statuses = BTreeMap::<u16, usize>::new();
        for r in answers {
            *statuses.entry(r.status).or_default() += 1;
        }
        if statuses.keys().any(|&s| s != 200) {
            let bodies: Vec<String> = answers
                .iter()
                .filter(|r| r.status != 200)
                .take(3)
                .map(|r| {
                    let retry = r.header("retry-after").unwrap_or("-");
                    let body: String = r.body.chars().take(400).collect();
                    format!("{} (Retry-After: {retry}): {body}", r.status)
                })
                .collect();
            panic!(
                "session {short}: statuses {statuses:?} of {} answers; first failures:\n{}\nlighttpd log (end):\n{}",
                answers.len(),
                bodies.join("\n"),
                self.log_tail()
            );
        }
        for r in answers {
            assert_eq!(
                r.body_line("new session: "),
                Some("false"),
                "session {short}: a request got a fresh session: {}",
                r.body
            );
            assert!(
                r.cookie_value() == Some(id),
                "session {short}: an answer set another session cookie"
            );
        }
        let mut seen: Vec<u64> = answers
            .iter()
            .map(|r| {
                r.visits()
                    .unwrap_or_else(|| panic!("no `visits:` line in {}", r.body))
            })
            .collect();
        seen.sort_unstable();
        let expected: Vec<u64> = (first..first + answers.len() as u64).collect();
        if seen != expected {
            let mut counts = BTreeMap::<u64, usize>::new();
            for &n in &seen {
                *counts.entry(n).or_default() += 1;
            }
            let repeated: Vec<(u64, usize)> = counts
                .iter()
                .filter(|(_, &c)| c > 1)
                .map(|(&n, &c)| (n, c))
                .take(20)
                .collect();
            let missing: Vec<u64> = expected
                .iter()
                .copied()
                .filter(|n| !counts.contains_key(n))
                .take(20)
                .collect();
            panic!(
                "session {short}: the visits printed are not exactly {first}..={} once each: \
                 {} answers, values {:?}..={:?}, repeated (value, times) {repeated:?}, missing {missing:?}",
                first + answers.len() as u64 - 1,
                seen.len(),
                seen.first(),
                seen.last(),
            );
        }
    }

    /// One more visit of session `id`, which must print `visits: {expected}`.
    fn assert_next_visit(&self, id: &str, expected: u64) {
        let cookie = format!("CGISESSID={id}");
        let r = self.exchange("GET", "/cgi-bin/greet", &[("Cookie", &cookie)], "");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.visits(), Some(expected), "{}", r.body);
    }
}

impl Drop for Lighttpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    /// The session id from `Set-Cookie: CGISESSID=...`, checking the cookie's attributes.
    fn session_cookie(&self) -> String {
        let cookie = self
            .headers
            .iter()
            .find(|(k, v)| k == "set-cookie" && v.starts_with("CGISESSID="))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no session cookie in {self:?}"));
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Lax"), "{cookie}");
        assert!(cookie.contains("Path=/"), "{cookie}");
        assert!(cookie.contains("Max-Age=3600"), "{cookie}");
        let value = cookie["CGISESSID=".len()..]
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(value.len(), 32, "{cookie}");
        assert!(value.bytes().all(|b| b.is_ascii_hexdigit()), "{cookie}");
        value
    }

    fn line(&self, label: &str) -> &str {
        self.body
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no `{label}` line in {self:?}"))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of the `CGISESSID` cookie set, unchecked (and never printed by the caller).
    fn cookie_value(&self) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .find_map(|(_, v)| v.strip_prefix("CGISESSID="))
            .and_then(|v| v.split(';').next())
    }

    fn body_line(&self, label: &str) -> Option<&str> {
        self.body.lines().find_map(|l| l.strip_prefix(label))
    }

    /// The `visits: N` line.
    fn visits(&self) -> Option<u64> {
        self.body_line("visits: ")?.parse().ok()
    }

    fn before(&self) -> &str {
        self.line("greet_en before: ")
    }

    fn is_new(&self) -> bool {
        self.line("new session: ") == "true"
    }
}

#[test]
fn two_requests_share_a_memcached_session_through_the_cookie() {
    let memcached = MemcachedServer::start();
    let addr = memcached.addr().to_string();
    let web = Lighttpd::start(&[("CGI_SESSION_MEMCACHED", &addr)]);

    // Request 1: no cookie: a new session; greet_en is set from the query string.
    let r1 = web.get("/cgi-bin/greet?greet_en=Hello%20there", &[]);
    assert!(r1.is_new(), "{r1:?}");
    assert_eq!(r1.before(), "(none)");
    assert_eq!(r1.line("store: "), "driver:memcache");
    let id = r1.session_cookie();

    // It is in memcached under the key `sessions:<id>` (the Perl memcache driver's), as JSON.
    let client = connect_memcached(ClientConfig::new(addr.clone())).unwrap();
    let item = block_on(client.get(format!("sessions:{id}"), GetOptions::new()))
        .unwrap()
        .unwrap()
        .expect("the session is stored in memcached");
    let stored: serde_json::Value = serde_json::from_slice(&item.value).unwrap();
    assert_eq!(stored["greet_en"], "Hello there");
    assert_eq!(stored["_SESSION_REMOTE_ADDR"], "127.0.0.1");

    // Request 2: the browser sends the cookie back and reads greet_en.
    let cookie = format!("theme=dark; CGISESSID={id}");
    let r2 = web.get("/cgi-bin/greet", &[("Cookie", &cookie)]);
    assert!(!r2.is_new(), "{r2:?}");
    assert_eq!(r2.before(), "Hello there");
    assert_eq!(r2.line("greet_en now: "), "Hi !");
    assert_eq!(r2.session_cookie(), id);

    // The id in the query string (no cookie) finds the same session.
    let r3 = web.get(
        &format!("/cgi-bin/greet?CGISESSID={id}&greet_en=third"),
        &[],
    );
    assert!(!r3.is_new(), "{r3:?}");
    assert_eq!(r3.before(), "Hi !");
    assert_eq!(r3.session_cookie(), id);

    // ... and so does a form field of a POST.
    let r4 = web.request(
        "POST",
        "/cgi-bin/greet",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("CGISESSID={id}&greet_en=posted+%E2%98%BA"),
    );
    assert!(!r4.is_new(), "{r4:?}");
    assert_eq!(r4.before(), "third");
    let r5 = web.get("/cgi-bin/greet", &[("Cookie", &cookie)]);
    assert_eq!(r5.before(), "posted \u{263A}");

    // A malformed cookie value gets a fresh session (and never reaches memcached as a key).
    for bad in [
        "CGISESSID=../../etc/passwd",
        "CGISESSID=\"a b\"; =; ;;",
        "CGISESSID=%00%0d%0a",
    ] {
        let r = web.get("/cgi-bin/greet", &[("Cookie", bad)]);
        assert!(r.is_new(), "{bad}: {r:?}");
        assert_eq!(r.before(), "(none)");
        assert_ne!(r.session_cookie(), id);
    }

    // A stale cookie beats a valid query parameter (CGI::Session's order): fresh session.
    let stale = "CGISESSID=0123456789abcdef0123456789abcdef";
    let r = web.get(
        &format!("/cgi-bin/greet?CGISESSID={id}"),
        &[("Cookie", stale)],
    );
    assert!(r.is_new(), "{r:?}");
    assert_ne!(r.session_cookie(), id);
}

#[test]
fn sessions_in_files_survive_between_cgi_processes() {
    let sessions = tempfile::tempdir().unwrap();
    let dir = sessions.path().to_str().unwrap().to_owned();
    let web = Lighttpd::start(&[("CGI_SESSION_DIR", &dir)]);

    let r1 = web.get("/cgi-bin/greet", &[]);
    assert!(r1.is_new());
    assert_eq!(r1.line("store: "), "driver:file");
    let id = r1.session_cookie();
    assert!(Path::new(&dir).join(format!("cgisess_{id}")).is_file());

    let r2 = web.get("/cgi-bin/greet", &[("Cookie", &format!("CGISESSID={id}"))]);
    assert!(!r2.is_new());
    assert_eq!(r2.before(), "Hi !");
    assert_eq!(r2.session_cookie(), id);
}

#[test]
fn a_dead_memcached_is_a_503_not_an_empty_session() {
    let mut memcached = MemcachedServer::start();
    let addr = memcached.addr().to_string();
    memcached.kill();
    let web = Lighttpd::start(&[("CGI_SESSION_MEMCACHED", &addr)]);
    let mut stream = TcpStream::connect(web.addr).unwrap();
    stream
        .write_all(b"GET /cgi-bin/greet HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.0 503"), "{raw}");
    assert!(raw.contains("\r\nRetry-After: 5\r\n"), "{raw}");
    assert!(!raw.contains("Set-Cookie"), "{raw}");
    // The visitor reads what happened, without the server's address or any type name...
    let body = raw.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(
        body,
        "The session store is unavailable; please try again shortly.\n"
    );
    let port = addr.rsplit(':').next().unwrap();
    for internal in ["127.0.0.1", port, "::", "memcache", "Error"] {
        assert!(!body.contains(internal), "{internal:?} in {body:?}");
    }
    // ... and the server's error log has the details, from the program's standard error.
    let log = web.log();
    assert!(
        log.lines()
            .any(|l| l.contains("greet: ERROR") && l.contains(&addr)),
        "the error log names the server: {log}"
    );
}

/// A latin-1 byte in another cookie (what a Perl page that set `lang=français` leaves in every
/// later request) does not hide the session cookie; a stored session that does not decode is
/// reported in lighttpd's error log, prefixed with the program's name, its id shortened.
#[test]
fn non_utf8_cookies_keep_the_session_and_warnings_reach_the_error_log() {
    let sessions = tempfile::tempdir().unwrap();
    let dir = sessions.path().to_str().unwrap().to_owned();
    let web = Lighttpd::start(&[("CGI_SESSION_DIR", &dir)]);
    let id = web.get("/cgi-bin/greet", &[]).session_cookie();

    for cookie in [
        [&b"lang=fran\xe7ais; CGISESSID="[..], id.as_bytes()].concat(),
        [
            &b"_ga=GA1.1.1234567890.1700000000; CGISESSID=\""[..],
            id.as_bytes(),
            b"\"; x=\xff\xfe",
        ]
        .concat(),
    ] {
        let mut request = b"GET /cgi-bin/greet HTTP/1.0\r\nHost: 127.0.0.1\r\nCookie: ".to_vec();
        request.extend_from_slice(&cookie);
        request.extend_from_slice(b"\r\n\r\n");
        let mut stream = TcpStream::connect(web.addr).unwrap();
        stream.write_all(&request).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let raw = String::from_utf8_lossy(&raw);
        assert!(raw.starts_with("HTTP/1.0 200"), "{raw}");
        assert!(raw.contains("new session: false"), "logged out: {raw}");
    }

    let broken = "0000000000000000000000000000dddd";
    std::fs::write(
        Path::new(&dir).join(format!("cgisess_{broken}")),
        b"{ not json",
    )
    .unwrap();
    let r = web.get(
        "/cgi-bin/greet",
        &[("Cookie", &format!("CGISESSID={broken}"))],
    );
    assert!(r.is_new());
    let log = web.log();
    let line = log
        .lines()
        .find(|l| l.contains("does not decode"))
        .unwrap_or_else(|| panic!("no warning in lighttpd's error log: {log}"));
    // The prefix is the program's name as the server runs it (here the link `greet`).
    assert!(line.contains("greet: WARN "), "{line}");
    assert!(line.contains("00000000…"), "{line}");
    assert!(!log.contains(broken), "the full id is never logged: {log}");
}

/// Hostile ids in cookies and query strings, an oversize cookie, and stored items that are
/// not sessions: each request gets a fresh session, nothing reaches memcached but the
/// sessions the program meant to create (checked with the server's counters and a key
/// dump), and the foreign items are left untouched.
#[test]
fn hostile_input_through_cgi_gets_fresh_sessions_and_writes_nothing_else() {
    let memcached = MemcachedServer::start();
    let addr = memcached.addr().to_string();
    let web = Lighttpd::start(&[("CGI_SESSION_MEMCACHED", &addr)]);
    let client = connect_memcached(ClientConfig::new(addr.clone())).unwrap();

    let long = "a".repeat(251);
    let oversize = format!("CGISESSID={}", "b".repeat(6000));
    let cookies = [
        "CGISESSID=abc%0D%0Aflush_all%0D%0A".to_owned(),
        "CGISESSID=abc%20set%20x%200%200%201".to_owned(),
        "CGISESSID=abc%00def".to_owned(),
        format!("CGISESSID={long}"),
        oversize,
        "CGISESSID=%C3%BCn%C3%AF".to_owned(),
        "CGISESSID=..%2F..%2Fetc%2Fpasswd".to_owned(),
        "CGISESSID=a/b".to_owned(),
        "CGISESSID=..".to_owned(),
    ];
    let queries = [
        "CGISESSID=abc%0D%0Adelete%20sessions%3Ax",
        "CGISESSID=%2E%2E%2F",
        "CGISESSID=a%20b",
        "CGISESSID=%FF%FE",
    ];
    let reads_before = memcached.stats()["cmd_get"].parse::<u64>().unwrap()
        + memcached.stats()["cmd_touch"].parse::<u64>().unwrap();
    let mut issued = Vec::new();
    let mut refused_by_lighttpd = 0;
    let requests = cookies
        .iter()
        .map(|c| ("/cgi-bin/greet".to_owned(), Some(c.as_str())))
        .chain(
            queries
                .iter()
                .map(|q| (format!("/cgi-bin/greet?{q}"), None)),
        );
    for (target, cookie) in requests {
        let headers: Vec<(&str, &str)> = cookie.map(|c| ("Cookie", c)).into_iter().collect();
        let r = web.exchange("GET", &target, &headers, "");
        if r.status == 400 {
            // The web server refused the request before running the program.
            refused_by_lighttpd += 1;
            continue;
        }
        assert_eq!(r.status, 200, "{target} {cookie:?}: {r:?}");
        assert!(r.is_new(), "{target} {cookie:?}: {r:?}");
        issued.push(r.session_cookie());
    }
    assert!(
        issued.len() >= 10,
        "most hostile requests reach the program ({refused_by_lighttpd} refused by lighttpd)"
    );
    let stats = memcached.stats();
    let reads_after =
        stats["cmd_get"].parse::<u64>().unwrap() + stats["cmd_touch"].parse::<u64>().unwrap();
    assert_eq!(reads_after, reads_before, "no hostile id was looked up");
    let mut keys: Vec<String> = block_on(client.metadump())
        .unwrap()
        .unwrap()
        .entries
        .into_iter()
        .map(|e| String::from_utf8(e.key).unwrap())
        .collect();
    keys.sort();
    let mut expected: Vec<String> = issued.iter().map(|id| format!("sessions:{id}")).collect();
    expected.sort();
    assert_eq!(keys, expected, "only the sessions the program created");

    // Stored items that are not sessions: a fresh session, the bytes untouched.
    for (id, bytes) in [
        (
            "0000000000000000000000000000aaaa",
            &b"{\"_SESSION_ID\":"[..],
        ),
        (
            "0000000000000000000000000000bbbb",
            &b"\xff\xfe not utf-8"[..],
        ),
        (
            "0000000000000000000000000000cccc",
            &b"{\"another_app\":1}"[..],
        ),
    ] {
        let key = format!("sessions:{id}");
        block_on(client.set(&key, bytes, Default::default()))
            .unwrap()
            .unwrap();
        let r = web.get("/cgi-bin/greet", &[("Cookie", &format!("CGISESSID={id}"))]);
        assert!(r.is_new(), "{id}: {r:?}");
        assert_ne!(r.session_cookie(), id);
        let item = block_on(client.get(&key, GetOptions::new()))
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(item.value.as_ref(), bytes, "{id}: left untouched");
    }
}

/// Requests of one session in parallel, counting visits: the first request creates the session
/// (visit 1), then `total` requests with its cookie run `in_flight` at a time, each its own
/// CGI process, and must each count exactly one visit. Returns the session id.
fn count_visits_in_parallel(web: &Lighttpd, what: &str, total: usize, in_flight: usize) -> String {
    let r1 = web.get("/cgi-bin/greet", &[]);
    assert!(r1.is_new(), "{}", r1.body);
    assert_eq!(r1.visits(), Some(1), "{}", r1.body);
    let id = r1.session_cookie();
    let cookie = format!("CGISESSID={id}");

    let started = Instant::now();
    let answers = web.get_in_parallel("/cgi-bin/greet", &cookie, total, in_flight);
    let took = started.elapsed();
    assert_eq!(answers.len(), total);
    web.assert_every_visit_counted_once(&answers, &id, 2);
    let total = total as u64;
    web.assert_next_visit(&id, total + 2);
    eprintln!(
        "{what}: {total} requests of one session, {in_flight} in flight, all 200, visits 2..={} once each, in {:.1} s",
        total + 1,
        took.as_secs_f64()
    );
    id
}

#[test]
fn parallel_requests_on_one_cookie_count_every_visit_on_memcached() {
    let memcached = MemcachedServer::start();
    let addr = memcached.addr().to_string();
    let web = Lighttpd::start(&[("CGI_SESSION_MEMCACHED", &addr)]);
    let conflicts = || memcached.stats()["cas_badval"].parse::<u64>().unwrap();
    let before = conflicts();
    count_visits_in_parallel(&web, "memcached, no lock", 200, 8);
    // For the record: how often a save lost a race and was retried (a CAS mismatch).
    eprintln!("memcached, no lock: {} CAS conflicts", conflicts() - before);
}

#[test]
fn parallel_requests_on_one_cookie_count_every_visit_on_files() {
    let sessions = tempfile::tempdir().unwrap();
    let dir = sessions.path().to_str().unwrap().to_owned();
    let web = Lighttpd::start(&[("CGI_SESSION_DIR", &dir)]);
    let id = count_visits_in_parallel(&web, "files, no lock", 200, 8);
    assert!(Path::new(&dir).join(format!("cgisess_{id}")).is_file());
}

/// `CGI_SESSION_LOCK=every-request`: each CGI process holds the session lock (a `lock:` item
/// in memcached) while it reads and saves the session. Every visit is counted, and every lock
/// is released: once all answers are in, the session is the only item left.
#[test]
fn parallel_requests_with_every_request_locks_count_every_visit_and_release_the_locks() {
    let memcached = MemcachedServer::start();
    let addr = memcached.addr().to_string();
    let web = Lighttpd::start(&[
        ("CGI_SESSION_MEMCACHED", &addr),
        ("CGI_SESSION_LOCK", "every-request"),
    ]);
    let deletes_before: u64 = memcached.stats()["delete_hits"].parse().unwrap();
    let total = 100;
    let id = count_visits_in_parallel(&web, "memcached, every-request lock", total, 8);
    let short = &id[..8];

    // Each request with the cookie took the lock and released it (a compare-and-delete).
    let stats = memcached.stats();
    let deletes = stats["delete_hits"].parse::<u64>().unwrap() - deletes_before;
    eprintln!(
        "memcached, every-request lock: {deletes} locks released, {} CAS conflicts",
        stats["cas_badval"]
    );
    assert!(
        deletes > total as u64,
        "session {short}: only {deletes} deletes for {} locked requests",
        total + 1
    );
    // The lock serialized the requests: no save lost a race to another process.
    assert_eq!(
        stats["cas_badval"], "0",
        "session {short}: saves conflicted under the session lock"
    );
    // No lock item is left behind: the lock key is gone and the session is the only item.
    let client = connect_memcached(ClientConfig::new(addr.clone())).unwrap();
    let lock_key = format!("{}sessions:{id}", cgi_session::memcache::LOCK_KEY_PREFIX);
    let lock = block_on(client.get(&lock_key, GetOptions::new()))
        .unwrap()
        .unwrap();
    assert!(
        lock.is_none(),
        "session {short}: its lock item is still in memcached"
    );
    let keys: Vec<String> = block_on(client.metadump())
        .unwrap()
        .unwrap()
        .entries
        .into_iter()
        .map(|e| String::from_utf8_lossy(&e.key).into_owned())
        .collect();
    assert!(
        keys.len() == 1 && keys[0] == format!("sessions:{id}"),
        "session {short}: memcached holds {} items, {} of them locks",
        keys.len(),
        keys.iter().filter(|k| k.starts_with("lock:")).count()
    );
    assert_eq!(stats["curr_items"], "1", "session {short}");
}
