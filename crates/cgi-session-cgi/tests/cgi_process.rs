//! The `greet-cgi` program run as a web server runs it (a child process with the CGI
//! meta-variables in its environment), without a web server: what it prints on standard
//! output (the response) and on standard error (the server's error log).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};

#[cfg(feature = "memcache")]
use memcached_harness::MemcachedServer;

const PROGRAM: &str = env!("CARGO_BIN_EXE_greet-cgi");
const ID: &str = "5ee0c1d2a1b2c3d4e5f60718293a4b5c";

/// Runs `greet-cgi` for a GET with the `Cookie` header `cookie` (raw bytes, as a browser
/// sends them) and the extra environment `env`; nothing else of the test's environment.
fn run_cgi(cookie: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(PROGRAM);
    cmd.env_clear()
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", "GET")
        .env("QUERY_STRING", "")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("SCRIPT_NAME", "/cgi-bin/greet")
        .env("SERVER_PROTOCOL", "HTTP/1.1");
    if let Some(cookie) = cookie {
        cmd.env("HTTP_COOKIE", OsStr::from_bytes(cookie));
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running greet-cgi");
    assert!(out.status.success(), "{out:?}");
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `CGISESSID` value of the response's `Set-Cookie`.
fn cookie_set(out: &Output) -> String {
    let text = stdout(out);
    text.lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: CGISESSID="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie in {text}"))
        .to_owned()
}

fn dir_env(dir: &Path) -> (&'static str, String) {
    ("CGI_SESSION_DIR", dir.to_str().unwrap().to_owned())
}

#[test]
fn a_stored_session_that_does_not_decode_is_reported_on_stderr_with_the_program_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("cgisess_{ID}"));
    std::fs::write(&file, b"{\"_SESSION_ID\": truncated").unwrap();
    let (k, v) = dir_env(dir.path());
    let cookie = format!("CGISESSID={ID}");
    let out = run_cgi(Some(cookie.as_bytes()), &[(k, &v)]);

    // The visitor gets a new session (JSON's default), the bytes are left alone...
    assert!(
        stdout(&out).contains("new session: true"),
        "{}",
        stdout(&out)
    );
    assert_ne!(cookie_set(&out), ID);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"{\"_SESSION_ID\": truncated"
    );
    // ... and the server's error log says so, on one line, prefixed with the program's name,
    // with the id shortened.
    let log = stderr(&out);
    let line = log
        .lines()
        .find(|l| l.contains("does not decode"))
        .unwrap_or_else(|| panic!("no warning on stderr: {log:?}"));
    assert!(line.starts_with("greet-cgi: WARN "), "{line}");
    assert!(line.contains("5ee0c1d2…"), "{line}");
    assert!(!log.contains(ID), "the full id is never logged: {log}");
}

#[test]
fn cgi_session_log_off_keeps_stderr_quiet() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(format!("cgisess_{ID}")), b"not json").unwrap();
    let (k, v) = dir_env(dir.path());
    let cookie = format!("CGISESSID={ID}");
    let out = run_cgi(
        Some(cookie.as_bytes()),
        &[(k, &v), ("CGI_SESSION_LOG", "off")],
    );
    assert!(stdout(&out).contains("new session: true"));
    assert_eq!(stderr(&out), "", "nothing logged");
    // Errors only: the warning is not shown either.
    let out = run_cgi(
        Some(cookie.as_bytes()),
        &[(k, &v), ("CGI_SESSION_LOG", "error")],
    );
    assert_eq!(stderr(&out), "");
}

#[test]
fn a_latin1_byte_in_another_cookie_keeps_the_visitor_logged_in() {
    let dir = tempfile::tempdir().unwrap();
    let (k, v) = dir_env(dir.path());
    let first = run_cgi(None, &[(k, &v)]);
    let id = cookie_set(&first);
    // Firefox's header after a Perl page set `lang` in latin-1, with a quoted cookie and a
    // second (older) session cookie after the real one.
    let header = [
        &b"lang=fran\xe7ais; theme=\"dark\"; CGISESSID="[..],
        id.as_bytes(),
        b"; CGISESSID=0123456789abcdef0123456789abcdef",
    ]
    .concat();
    let out = run_cgi(Some(&header), &[(k, &v)]);
    let text = stdout(&out);
    assert!(text.contains("new session: false"), "{text}");
    assert!(text.contains("visits: 2"), "{text}");
    assert_eq!(cookie_set(&out), id);
    assert_eq!(stderr(&out), "");
}

#[test]
#[cfg(feature = "memcache")]
fn a_dead_memcached_is_a_plain_503_for_the_visitor_with_the_details_in_the_log() {
    let mut memcached = MemcachedServer::start();
    let addr = memcached.addr().to_string();
    let port = memcached.addr().port().to_string();
    memcached.kill();
    let out = run_cgi(None, &[("CGI_SESSION_MEMCACHED", &addr)]);
    let response = stdout(&out);
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("Status: 503 Service Unavailable\r\n"),
        "{head}"
    );
    assert!(head.contains("Retry-After: 5\r\n"), "{head}");
    assert!(!head.contains("Set-Cookie"), "{head}");
    assert_eq!(
        body,
        "The session store is unavailable; please try again shortly.\n"
    );
    for internal in ["127.0.0.1", port.as_str(), "::", "memcache", "Error"] {
        assert!(!response.contains(internal), "{internal:?} in {response}");
    }
    let log = stderr(&out);
    let line = log
        .lines()
        .find(|l| l.contains(&addr))
        .unwrap_or_else(|| panic!("the log names the server: {log:?}"));
    assert!(line.starts_with("greet-cgi: ERROR "), "{line}");
    assert!(line.contains("503"), "{line}");
}
