//! The demo binary's cookie options over HTTP: signing keys from files with rotation (two
//! demos sharing one session directory, as two releases of an app during a key change), and
//! browser-session cookies.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::Demo;

/// A minimal HTTP/1.1 request: status, the full Set-Cookie header (if any), body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &str,
) -> (u16, Option<String>, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{cookie}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let set_cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .map(str::to_owned);
    (status, set_cookie, body.to_owned())
}

fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

fn greeting(demo: &Demo, cookie: &str) -> Option<String> {
    let (status, _, body) = request(demo.addr, "GET", "/api/session", Some(cookie), "");
    assert_eq!(status, 200, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    info["greet_en"].as_str().map(str::to_owned)
}

fn key_file(dir: &Path, name: &str, byte: u8) -> String {
    let path = dir.join(name);
    std::fs::write(&path, [byte; 64]).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn signing_keys_from_files_rotate_across_two_demos_sharing_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = dir.path().join("sessions");
    std::fs::create_dir(&sessions).unwrap();
    let sessions = sessions.to_string_lossy().into_owned();
    let (k1, k2) = (key_file(dir.path(), "k1", 1), key_file(dir.path(), "k2", 2));

    let old = Demo::start(&["--dir", &sessions, "--cookie-key-file", &k1]);
    let new = Demo::start(&[
        "--dir",
        &sessions,
        "--cookie-key-file",
        &k2,
        "--previous-cookie-key-file",
        &k1,
    ]);

    let (status, set_cookie, _) = request(old.addr, "POST", "/greet", None, "greet_en=Hi");
    assert!((200..400).contains(&status), "{status}");
    let by_k1 = pair(&set_cookie.expect("a session cookie"));
    assert!(by_k1.len() > "CGISESSID=".len() + 32, "signed: {by_k1}");
    assert_eq!(greeting(&old, &by_k1).as_deref(), Some("Hi"));

    // The new release accepts the old key's cookie and sends it again signed with its key.
    let (_, resent, body) = request(new.addr, "GET", "/api/session", Some(&by_k1), "");
    assert!(body.contains("\"greet_en\":\"Hi\""), "{body}");
    let by_k2 = pair(&resent.expect("the cookie is re-signed"));
    assert_ne!(by_k2, by_k1);
    assert_eq!(greeting(&new, &by_k2).as_deref(), Some("Hi"));
    // The old release, which only knows k1, refuses the new signature.
    assert_eq!(greeting(&old, &by_k2), None);
    // An unsigned id is no session for either.
    let bare = format!("CGISESSID={}", &by_k1[by_k1.len() - 32..]);
    assert_eq!(greeting(&new, &bare), None);
}

#[test]
fn browser_session_cookies_have_no_lifetime_and_a_bad_key_file_is_refused() {
    let demo = Demo::start(&["--browser-session-cookies", "--signed"]);
    let (_, set_cookie, _) = request(demo.addr, "POST", "/greet", None, "greet_en=Hi");
    let set_cookie = set_cookie.expect("a session cookie");
    assert!(
        !set_cookie.contains("Max-Age") && !set_cookie.contains("Expires"),
        "{set_cookie}"
    );
    assert_eq!(greeting(&demo, &pair(&set_cookie)).as_deref(), Some("Hi"));
    drop(demo);

    let persistent = Demo::start(&["--max-lifetime", "1h"]);
    let (_, set_cookie, _) = request(persistent.addr, "POST", "/greet", None, "greet_en=Hi");
    let set_cookie = set_cookie.expect("a session cookie");
    assert!(
        set_cookie.contains("Max-Age=1800") && set_cookie.contains("Expires="),
        "idle timeout within the absolute expiry: {set_cookie}"
    );
    drop(persistent);

    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "too short\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cgi-session-demo"))
        .args(["--listen", "127.0.0.1:0", "--cookie-key-file"])
        .arg(&short)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("at least 64") && err.contains("openssl rand"),
        "{err}"
    );
}
