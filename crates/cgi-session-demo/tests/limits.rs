//! The demo binary sheds slow clients: header, body and idle timeouts, the connection limit
//! and the shutdown deadline, over real loopback connections to the real binary on the embedded
//! default store. Timings are asserted with generous upper bounds only; the measured figures
//! are printed (`--nocapture`).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::Demo;

impl Demo {
    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        stream
    }

    /// `GET /plain` on a fresh connection: its status. Connections are accepted in order, so
    /// when this is answered, every connection opened before it has been accepted.
    fn get_plain(&self) -> u16 {
        let mut stream = self.connect();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET /plain HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        status(&raw).unwrap_or(0)
    }

    /// Waits (polling) for the log to hold `what`.
    fn wait_for_log(&self, what: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if log.contains(what) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {what:?} in the log within {within:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn status(raw: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(raw);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Reads until the server closes the connection (EOF or reset) or `within` passes: what was
/// read, and after how long it was closed (`None`: still open).
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, Option<Duration>) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < within {
        match stream.read(&mut buf) {
            Ok(0) => return (got, Some(start.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (got, Some(start.elapsed())),
        }
    }
    (got, None)
}

/// Sends a form POST's header announcing 100 bytes, then the body one byte per second from a
/// thread until `stop` (or the connection fails).
fn slow_post(demo: &Demo, stop: &Arc<AtomicBool>) -> TcpStream {
    let mut stream = demo.connect();
    write!(
        stream,
        "POST /greet HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 100\r\n\r\ngreet_en=",
        demo.addr
    )
    .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if writer.write_all(b"a").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    stream
}

#[test]
fn a_half_sent_header_is_closed_within_the_header_timeout() {
    let demo = Demo::start(&["--header-timeout", "1s", "--log-interval", "1s"]);
    let mut half = demo.connect();
    write!(half, "GET / HTTP/1.1\r\nHost: {}\r\nX-Slow: ", demo.addr).unwrap();
    let mut silent = demo.connect();

    let (got, closed) = read_until_closed(&mut half, Duration::from_secs(15));
    let closed = closed.expect("the half-header connection is closed");
    eprintln!("half-header connection closed after {closed:?} (header timeout 1 s)");
    assert!(closed < Duration::from_secs(10), "{closed:?}");
    assert!(got.is_empty() || status(&got) == Some(408), "{got:?}");

    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(15));
    let closed = closed.expect("a connection that sends nothing is closed too");
    eprintln!("silent connection closed {closed:?} after the half-header one");

    // Counted, not logged one by one (the two closes may fall into two log intervals when the
    // machine is busy: then two lines of one each).
    let closed_in = |log: &str| -> u32 {
        log.lines()
            .filter_map(|l| {
                l.split("closed ")
                    .nth(1)?
                    .split(" connection(s)")
                    .next()?
                    .parse::<u32>()
                    .ok()
            })
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = demo.log();
        if closed_in(&log) >= 2 || Instant::now() >= deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(closed_in(&log), 2, "{log}");
    assert!(
        log.lines().filter(|l| l.contains("connection(s)")).count() <= 2,
        "{log}"
    );
    assert!(log.contains("--header-timeout"), "{log}");
    // The server still serves.
    assert_eq!(demo.get_plain(), 200);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let demo = Demo::start(&["--idle-timeout", "1s", "--header-timeout", "5s"]);
    let mut stream = demo.connect();
    write!(stream, "GET /plain HTTP/1.1\r\nHost: {}\r\n\r\n", demo.addr).unwrap();
    // The whole response (it has a Content-Length), then silence from both sides.
    let (got, closed) = read_until_closed(&mut stream, Duration::from_secs(15));
    let closed = closed.expect("the idle connection is closed");
    eprintln!("idle keep-alive connection closed {closed:?} after its request (idle timeout 1 s)");
    assert_eq!(status(&got), Some(200), "{}", String::from_utf8_lossy(&got));
    assert!(closed < Duration::from_secs(10), "{closed:?}");
}

#[test]
fn a_body_sent_at_one_byte_per_second_gets_408() {
    let demo = Demo::start(&["--body-timeout", "2s", "--log-interval", "1s"]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut stream = slow_post(&demo, &stop);
    let (got, closed) = read_until_closed(&mut stream, Duration::from_secs(20));
    stop.store(true, Ordering::Relaxed);
    let closed = closed.expect("the slow upload's connection is closed");
    eprintln!("slow body answered and closed after {closed:?} (body timeout 2 s)");
    assert!(closed < Duration::from_secs(15), "{closed:?}");
    let text = String::from_utf8_lossy(&got);
    assert_eq!(status(&got), Some(408), "{text}");
    assert!(text.contains("did not arrive within 2s"), "{text}");
    demo.wait_for_log("answered 408 to 1 request(s)", Duration::from_secs(10));
    assert_eq!(demo.get_plain(), 200);
}

#[test]
fn sigterm_with_eight_stalled_clients_exits_within_the_shutdown_deadline() {
    let mut demo = Demo::start(&["--shutdown-deadline", "2s", "--body-timeout", "10m"]);
    let stop = Arc::new(AtomicBool::new(false));
    let stalled: Vec<TcpStream> = (0..8).map(|_| slow_post(&demo, &stop)).collect();
    // All eight have been accepted once a later connection is answered.
    assert_eq!(demo.get_plain(), 200);

    let pid = demo.child.id().to_string();
    let start = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "still running {:?} after SIGTERM; log:\n{}",
            start.elapsed(),
            demo.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    eprintln!("exited {took:?} after SIGTERM with 8 stalled clients (deadline 2 s)");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(12), "{took:?}");
    // The log thread may lag the exit by a moment.
    let log = demo.wait_for_log("closing 8 connection(s) still open", Duration::from_secs(5));
    assert!(log.contains("shutting down"), "{log}");
    drop(stalled);
}

#[test]
fn past_the_connection_limit_connections_are_refused_and_summarised() {
    let demo = Demo::start(&[
        "--max-connections",
        "4",
        "--log-interval",
        "1s",
        "--header-timeout",
        "60s",
        "--idle-timeout",
        "60s",
    ]);
    // Four keep-alive connections, each answered once (so surely accepted), then held open.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = demo.connect();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(stream, "GET /plain HTTP/1.1\r\nHost: {}\r\n\r\n", demo.addr).unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).unwrap();
        assert_eq!(status(&buf[..n]), Some(200));
        held.push(stream);
    }

    // More connections are refused at once: a 503 or a plain close, never a wait.
    const REFUSED: usize = 20;
    for _ in 0..REFUSED {
        let mut extra = demo.connect();
        let (got, closed) = read_until_closed(&mut extra, Duration::from_secs(10));
        assert!(closed.is_some(), "a connection past the limit is closed");
        assert!(got.is_empty() || status(&got) == Some(503), "{got:?}");
    }

    // Summarised: a line or two with the count, not one per connection.
    demo.wait_for_log("limit 4", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1500));
    let log = demo.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("refused")).collect();
    let total: usize = lines
        .iter()
        .map(|l| {
            let n = l
                .split("refused ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            n.parse::<usize>().unwrap()
        })
        .sum();
    eprintln!("refusal log lines:\n{}", lines.join("\n"));
    assert_eq!(total, REFUSED, "{log}");
    assert!(lines.len() <= 2, "{log}");

    // Once the four close, new connections are served again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if demo.get_plain() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served again after the four closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
