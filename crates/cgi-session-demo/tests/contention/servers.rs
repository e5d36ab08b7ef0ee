//! The servers under test: the in-process app on each store, the demo binary (one or two
//! processes on one memcached) with its log collected.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use cgi_session::memcache::client::{Client as Memcache, ClientConfig};
use cgi_session::memcache::MemcacheDriver;
use cgi_session::{FileDriver, MemoryDriver, SessionStore};
use memcached_harness::MemcachedServer;
use tokio::task::JoinHandle;

/// The stores of the in-process app.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Memory,
    File,
    Memcached,
}

/// A store and what it lives on (kept alive with it).
pub(crate) struct Backend {
    pub(crate) store: SessionStore,
    _dir: Option<tempfile::TempDir>,
    pub(crate) memcached: Option<MemcachedServer>,
}

pub(crate) async fn memcache_client(addr: SocketAddr) -> Memcache {
    Memcache::connect(ClientConfig::new(addr.to_string()))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to memcached at {addr}: {e}"))
}

pub(crate) async fn backend(kind: Kind) -> Backend {
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
pub(crate) struct InProcess {
    pub(crate) addr: SocketAddr,
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

pub(crate) async fn serve_in_process(store: SessionStore) -> InProcess {
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
pub(crate) struct Demo {
    name: &'static str,
    child: Child,
    pub(crate) addr: SocketAddr,
    stderr: Arc<Mutex<Tail>>,
}

impl Demo {
    /// SIGKILL, then reap.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last lines of its stderr, for failure messages.
    pub(crate) fn stderr_tail(&self) -> String {
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

pub(crate) fn start_on(name: &'static str, memcached: &MemcachedServer, extra: &[&str]) -> Demo {
    let mut args = memcache_args(memcached);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start_demo(name, &args)
}
