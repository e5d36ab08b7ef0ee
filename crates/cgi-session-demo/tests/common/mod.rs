//! What the tests that run the demo binary share: starting it on a free loopback port with its
//! log collected, and a minimal HTTP client.
// Each test file uses a part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// The running binary, killed when dropped, with its log (stderr) collected.
pub struct Demo {
    pub child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    /// Starts the binary with `--listen 127.0.0.1:0` and `args`; panics with its log if it
    /// does not start.
    pub fn start(args: &[&str]) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cgi-session-demo"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the demo binary starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("Open http://") {
                    let _ = tx.send(rest.split('/').next().unwrap().to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!("the demo did not start; log:\n{}", log.lock().unwrap());
            }
        };
        Demo { child, addr, log }
    }

    /// What the demo logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

/// A minimal HTTP/1.1 GET: status, Set-Cookie, body.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    cookie: Option<&str>,
) -> (u16, Option<String>, String) {
    http_request(addr, "GET", path, cookie, &[], "")
}

/// A minimal HTTP/1.1 request with extra header lines and, for a POST, a urlencoded form:
/// status, Set-Cookie (its first part), body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    headers: &[&str],
    form: &str,
) -> (u16, Option<String>, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        head.push_str(&format!("Cookie: {c}\r\n"));
    }
    for h in headers {
        head.push_str(&format!("{h}\r\n"));
    }
    if method == "POST" {
        head.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            form.len()
        ));
    }
    write!(stream, "{head}\r\n{form}").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let set_cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .map(|c| c.split(';').next().unwrap().to_owned());
    (status, set_cookie, body.to_owned())
}

/// The visitor acts (`POST /greet`), which gives them a session (anonymous page views store
/// none): its cookie, `CGISESSID=<id>`.
pub fn start_session(addr: SocketAddr) -> String {
    let (status, cookie, body) = http_request(addr, "POST", "/greet", None, &[], "greet_en=Hi");
    assert_eq!(status, 303, "{body}");
    cookie.expect("a session for the visitor who acts")
}
