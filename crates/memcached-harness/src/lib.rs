//! Start real `memcached` processes for tests and benchmarks — no mocks.
//!
//! Each [`MemcachedServer`] runs its own `memcached` on a free loopback port
//! (`127.0.0.1`, UDP off). Starting waits (by polling, with a deadline) until
//! the server accepts connections *and* answers `version`. The handle can
//! [`kill`](MemcachedServer::kill) the process (SIGKILL),
//! [`restart`](MemcachedServer::restart) it on the same port,
//! [`pause`](MemcachedServer::pause) it (SIGSTOP: a hung server that still
//! accepts TCP connections) and [`resume`](MemcachedServer::resume) it, and
//! read its counters with [`stats`](MemcachedServer::stats). Dropping the
//! handle kills and reaps the process.
//!
//! For TLS (`-Z`) and authentication (`-Y`) tests,
//! [`Builder::tls`] starts the server with a certificate the test made (and
//! [`Builder::tls_client_ca`] makes it require client certificates), and
//! [`Builder::auth`] writes an auth file for one user. The harness itself
//! then talks to the server over a second, plain listener
//! ([`MemcachedServer::plain_addr`]) and logs in first, so readiness checks
//! and [`stats`](MemcachedServer::stats) keep working.
//!
//! ```no_run
//! let server = memcached_harness::MemcachedServer::builder()
//!     .tls("/tmp/t/server.pem", "/tmp/t/server.key")
//!     .auth("app", "s3cret")
//!     .start();
//! println!("TLS on {}, plain (for the harness) on {}", server.addr(), server.plain_addr());
//! assert_eq!(server.stats()["cmd_get"], "0");
//! ```
//!
//! The binary is `memcached` from `PATH`, or the path in the
//! `MEMCACHED_BIN` environment variable. If it is missing, starting panics
//! with "install memcached: apt-get install memcached".
//!
//! ```no_run
//! use memcached_harness::MemcachedServer;
//!
//! let server = MemcachedServer::builder().arg("-I").arg("2m").memory_mb(64).start();
//! println!("memcached listening on {}", server.addr());
//! let stats = server.stats();
//! assert_eq!(stats["cmd_get"], "0");
//! ```
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::process::{free_port, thread_states, StartError};

mod process;
mod spawn;
mod stats;
#[cfg(test)]
mod tests;

/// Builder for a [`MemcachedServer`]: extra command-line arguments, memory and
/// start-up deadline.
///
/// ```no_run
/// let server = memcached_harness::MemcachedServer::builder()
///     .arg("-I")
///     .arg("2m")
///     .memory_mb(32)
///     .start();
/// # drop(server);
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    args: Vec<String>,
    memory_mb: u32,
    ready_timeout: Duration,
    tls: Option<TlsFiles>,
    auth: Option<(String, String)>,
}

/// The files of a TLS server.
#[derive(Debug, Clone)]
struct TlsFiles {
    chain: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            args: Vec::new(),
            memory_mb: 64,
            ready_timeout: Duration::from_secs(10),
            tls: None,
            auth: None,
        }
    }
}

impl Builder {
    /// Adds one extra command-line argument for `memcached` (e.g. `-I`, `2m`).
    ///
    /// ```no_run
    /// let server = memcached_harness::MemcachedServer::builder().arg("-c").arg("64").start();
    /// # drop(server);
    /// ```
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds several extra command-line arguments.
    ///
    /// ```no_run
    /// let server = memcached_harness::MemcachedServer::builder().args(["-I", "2m"]).start();
    /// # drop(server);
    /// ```
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Serves TLS on [`addr`](MemcachedServer::addr) (`-Z -o
    /// ssl_chain_cert=<chain>,ssl_key=<key>`, PEM files; paths must not
    /// contain commas). The server also listens without TLS on
    /// [`plain_addr`](MemcachedServer::plain_addr), which the harness uses
    /// for its readiness check and [`stats`](MemcachedServer::stats).
    ///
    /// ```no_run
    /// let server = memcached_harness::MemcachedServer::builder()
    ///     .tls("/tmp/t/server.pem", "/tmp/t/server.key")
    ///     .start();
    /// assert_ne!(server.addr(), server.plain_addr());
    /// ```
    pub fn tls(mut self, cert_chain: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        let client_ca = self.tls.take().and_then(|t| t.client_ca);
        self.tls = Some(TlsFiles {
            chain: cert_chain.as_ref().to_path_buf(),
            key: key.as_ref().to_path_buf(),
            client_ca,
        });
        self
    }

    /// With [`tls`](Self::tls): requires every TLS client to present a
    /// certificate signed by the CA in this PEM file (`-o
    /// ssl_ca_cert=<ca>,ssl_verify_mode=2`).
    ///
    /// # Panics
    ///
    /// [`start`](Self::start) panics if [`tls`](Self::tls) was not set.
    ///
    /// ```no_run
    /// let server = memcached_harness::MemcachedServer::builder()
    ///     .tls("/tmp/t/server.pem", "/tmp/t/server.key")
    ///     .tls_client_ca("/tmp/t/ca.pem")
    ///     .start();
    /// # drop(server);
    /// ```
    pub fn tls_client_ca(mut self, ca: impl AsRef<Path>) -> Self {
        let ca = Some(ca.as_ref().to_path_buf());
        match self.tls.as_mut() {
            Some(tls) => tls.client_ca = ca,
            None => {
                self.tls = Some(TlsFiles {
                    chain: PathBuf::new(),
                    key: PathBuf::new(),
                    client_ca: ca,
                })
            }
        }
        self
    }

    /// Turns on memcached's ASCII authentication (`-Y <auth file>`) with one
    /// user. The harness writes the auth file (removed when the server is
    /// dropped) and logs in before its own commands.
    ///
    /// ```no_run
    /// let server = memcached_harness::MemcachedServer::builder().auth("app", "s3cret").start();
    /// assert_eq!(server.stats()["curr_items"], "0");
    /// ```
    pub fn auth(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some((username.into(), password.into()));
        self
    }

    /// Sets the cache size in MiB (`-m`, default 64).
    ///
    /// ```no_run
    /// let server = memcached_harness::MemcachedServer::builder().memory_mb(16).start();
    /// # drop(server);
    /// ```
    pub fn memory_mb(mut self, mb: u32) -> Self {
        self.memory_mb = mb;
        self
    }

    /// Sets how long to wait for the server to answer `version` (default 10 s).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let server = memcached_harness::MemcachedServer::builder()
    ///     .ready_timeout(Duration::from_secs(30))
    ///     .start();
    /// # drop(server);
    /// ```
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Starts the server on a free loopback port and waits until it is ready.
    ///
    /// # Panics
    ///
    /// If the `memcached` binary is missing, or the server does not become
    /// ready (the message includes memcached's own error output).
    ///
    /// ```no_run
    /// let server = memcached_harness::MemcachedServer::builder().start();
    /// # drop(server);
    /// ```
    pub fn start(self) -> MemcachedServer {
        if let Some(tls) = &self.tls {
            assert!(
                !tls.chain.as_os_str().is_empty(),
                "Builder::tls_client_ca needs Builder::tls (the server's certificate and key)"
            );
        }
        let mut last_error = String::new();
        for _attempt in 0..8 {
            let port = free_port();
            let plain_port = if self.tls.is_some() {
                free_port()
            } else {
                port
            };
            let mut server = MemcachedServer {
                child: None,
                port,
                plain_port,
                config: self.clone(),
                paused: false,
                auth_file: None,
            };
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(StartError::PortTaken(msg)) => {
                    last_error = msg;
                    continue;
                }
                Err(StartError::Fatal(msg)) => panic!("{msg}"),
            }
        }
        panic!("could not start memcached on a free port after 8 attempts: {last_error}");
    }
}

/// A running `memcached` process owned by a test. Killed and reaped on drop.
///
/// ```no_run
/// let server = memcached_harness::MemcachedServer::start();
/// let addr = server.addr(); // 127.0.0.1:<port>
/// # drop(addr);
/// ```
#[derive(Debug)]
pub struct MemcachedServer {
    child: Option<Child>,
    port: u16,
    /// The plain (non-TLS) port; equals `port` without TLS.
    plain_port: u16,
    config: Builder,
    paused: bool,
    /// The auth file written for [`Builder::auth`].
    auth_file: Option<PathBuf>,
}

impl MemcachedServer {
    /// Starts a server with default settings (64 MiB, no extra arguments).
    ///
    /// # Panics
    ///
    /// See [`Builder::start`].
    ///
    /// ```no_run
    /// let server = memcached_harness::MemcachedServer::start();
    /// # drop(server);
    /// ```
    pub fn start() -> MemcachedServer {
        Builder::default().start()
    }

    /// Returns a [`Builder`] for a customised server.
    ///
    /// ```no_run
    /// let server = memcached_harness::MemcachedServer::builder().arg("-I").arg("2m").start();
    /// # drop(server);
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The server's address, `127.0.0.1:<port>`.
    ///
    /// ```no_run
    /// let server = memcached_harness::MemcachedServer::start();
    /// assert!(server.addr().ip().is_loopback());
    /// ```
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The address without TLS: [`addr`](Self::addr) unless the server was
    /// started with [`Builder::tls`], then a second listener (`-l
    /// notls:...`) for the harness's own commands. With TLS, use
    /// [`addr`](Self::addr) for the code under test.
    ///
    /// ```no_run
    /// let server = memcached_harness::MemcachedServer::start();
    /// assert_eq!(server.addr(), server.plain_addr());
    /// ```
    pub fn plain_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.plain_port))
    }

    /// The server's TCP port.
    ///
    /// ```no_run
    /// let server = memcached_harness::MemcachedServer::start();
    /// assert_ne!(server.port(), 0);
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, or `None` after [`kill`](Self::kill).
    ///
    /// ```no_run
    /// let server = memcached_harness::MemcachedServer::start();
    /// assert!(server.pid().is_some());
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running (started and not killed).
    ///
    /// ```no_run
    /// let mut server = memcached_harness::MemcachedServer::start();
    /// server.kill();
    /// assert!(!server.is_running());
    /// ```
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the process with SIGKILL and reaps it. The port stays reserved
    /// for [`restart`](Self::restart). Does nothing if already killed.
    ///
    /// ```no_run
    /// let mut server = memcached_harness::MemcachedServer::start();
    /// server.kill();
    /// assert!(std::net::TcpStream::connect(server.addr()).is_err());
    /// ```
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// Starts memcached again on the same port (killing it first if it is
    /// running) and waits until it answers. The cache starts empty.
    ///
    /// # Panics
    ///
    /// If the server cannot be started on that port again.
    ///
    /// ```no_run
    /// let mut server = memcached_harness::MemcachedServer::start();
    /// let port = server.port();
    /// server.kill();
    /// server.restart();
    /// assert_eq!(server.port(), port);
    /// ```
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + self.config.ready_timeout;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(StartError::PortTaken(msg)) if Instant::now() < deadline => {
                    let _ = msg;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(StartError::PortTaken(msg)) | Err(StartError::Fatal(msg)) => {
                    panic!("cannot restart memcached on port {}: {msg}", self.port)
                }
            }
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("memcached on port {} is not running", self.port));
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run `kill -{sig} {pid}`: {e}"));
        assert!(status.success(), "`kill -{sig} {pid}` failed: {status}");
    }

    /// Freezes the process with SIGSTOP: it keeps its listening socket (the
    /// kernel still completes TCP handshakes) but answers nothing, like a hung
    /// server.
    ///
    /// # Panics
    ///
    /// If the server is not running or the `kill` command fails.
    ///
    /// ```no_run
    /// let mut server = memcached_harness::MemcachedServer::start();
    /// server.pause();
    /// // ... requests now time out ...
    /// server.resume();
    /// ```
    pub fn pause(&mut self) {
        self.signal("STOP");
        self.paused = true;
        // SIGSTOP takes effect asynchronously: wait until every thread is
        // stopped, so no request is served after `pause` returns.
        self.wait_threads("stopped", |state| state == 'T' || state == 't');
    }

    /// Polls `/proc/<pid>/task/*/stat` until every thread's state satisfies `ok`.
    fn wait_threads(&self, what: &str, ok: impl Fn(char) -> bool) {
        let Some(pid) = self.pid() else { return };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let states = thread_states(pid);
            if !states.is_empty() && states.iter().all(|&s| ok(s)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "memcached (pid {pid}) threads not {what} after 5s: {states:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Resumes a process frozen by [`pause`](Self::pause) (SIGCONT).
    ///
    /// # Panics
    ///
    /// If the server is not running or the `kill` command fails.
    ///
    /// ```no_run
    /// let mut server = memcached_harness::MemcachedServer::start();
    /// server.pause();
    /// server.resume();
    /// ```
    pub fn resume(&mut self) {
        self.signal("CONT");
        self.paused = false;
        self.wait_threads("running", |state| state != 'T' && state != 't');
    }
}

impl Drop for MemcachedServer {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped (paused) process.
        self.kill();
        if let Some(path) = self.auth_file.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}
