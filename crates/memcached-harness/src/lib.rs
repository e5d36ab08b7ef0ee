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

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "install memcached: apt-get install memcached";

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

enum StartError {
    PortTaken(String),
    Fatal(String),
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind a loopback port to find a free one: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read the local address of a loopback socket: {e}"))
        .port()
}

/// The state letter of every thread of `pid` (`R`, `S`, `T`, ...).
fn thread_states(pid: u32) -> Vec<char> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let stat = std::fs::read_to_string(entry.ok()?.path().join("stat")).ok()?;
        // Format: "tid (comm) S ...": the state follows the last ')'.
        let after = &stat[stat.rfind(')')? + 1..];
        after.trim_start().chars().next()
    })
    .collect()
}

fn running_as_root() -> bool {
    // The owner of /proc/self is the effective uid of this process.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn memcached_binary() -> String {
    std::env::var("MEMCACHED_BIN").unwrap_or_else(|_| "memcached".to_string())
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

    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let mut cmd = Command::new(memcached_binary());
        if running_as_root() {
            cmd.arg("-u").arg("root");
        }
        match &self.config.tls {
            None => {
                cmd.arg("-l").arg("127.0.0.1");
            }
            Some(tls) => {
                let mut opts = format!(
                    "ssl_chain_cert={},ssl_key={}",
                    tls.chain.display(),
                    tls.key.display()
                );
                if let Some(ca) = &tls.client_ca {
                    opts.push_str(&format!(",ssl_ca_cert={},ssl_verify_mode=2", ca.display()));
                }
                cmd.arg("-l")
                    .arg(format!(
                        "127.0.0.1:{},notls:127.0.0.1:{}",
                        self.port, self.plain_port
                    ))
                    .arg("-Z")
                    .arg("-o")
                    .arg(opts);
            }
        }
        if let Some((user, password)) = &self.config.auth {
            if self.auth_file.is_none() {
                static SEQ: AtomicU64 = AtomicU64::new(0);
                let path = std::env::temp_dir().join(format!(
                    "memcached-harness-auth-{}-{}-{}",
                    std::process::id(),
                    self.port,
                    SEQ.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&path, format!("{user}:{password}\n")).map_err(|e| {
                    StartError::Fatal(format!(
                        "cannot write the memcached auth file {}: {e}",
                        path.display()
                    ))
                })?;
                self.auth_file = Some(path);
            }
            if let Some(path) = &self.auth_file {
                cmd.arg("-Y").arg(path);
            }
        }
        cmd.arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg("0")
            .arg("-m")
            .arg(self.config.memory_mb.to_string())
            .args(&self.config.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StartError::Fatal(format!(
                    "memcached binary `{}` not found in PATH; {INSTALL_HINT} (or set MEMCACHED_BIN)",
                    memcached_binary()
                )))
            }
            Err(e) => {
                return Err(StartError::Fatal(format!(
                    "cannot start `{}`: {e}; {INSTALL_HINT}",
                    memcached_binary()
                )))
            }
        };
        self.child = Some(child);
        self.paused = false;
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), StartError> {
        let deadline = Instant::now() + self.config.ready_timeout;
        loop {
            let child = self
                .child
                .as_mut()
                .ok_or_else(|| StartError::Fatal("memcached is not running".into()))?;
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                self.child = None;
                let msg = format!(
                    "memcached on port {} exited at start-up ({status}): {}",
                    self.port,
                    stderr.trim()
                );
                if stderr.contains("in use") || stderr.contains("failed to listen") {
                    return Err(StartError::PortTaken(msg));
                }
                return Err(StartError::Fatal(msg));
            }
            if self.answers_version() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(StartError::Fatal(format!(
                    "memcached on port {} did not answer `version` within {:?}",
                    self.port, self.config.ready_timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Connects to [`plain_addr`](Self::plain_addr) and logs in if the
    /// server has authentication.
    fn plain_connection(&self, timeout: Duration) -> std::io::Result<BufReader<TcpStream>> {
        let stream = TcpStream::connect_timeout(&self.plain_addr(), timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut reader = BufReader::new(stream);
        if let Some((user, password)) = &self.config.auth {
            let login = format!(
                "set harness_auth 0 -1 {}\r\n{user} {password}\r\n",
                user.len() + 1 + password.len()
            );
            reader.get_mut().write_all(login.as_bytes())?;
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line != "STORED\r\n" {
                return Err(std::io::Error::other(format!(
                    "login refused: {}",
                    line.trim_end()
                )));
            }
        }
        Ok(reader)
    }

    fn answers_version(&self) -> bool {
        let Ok(mut reader) = self.plain_connection(Duration::from_millis(500)) else {
            return false;
        };
        if reader.get_mut().write_all(b"version\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        reader.read_line(&mut line).is_ok() && line.starts_with("VERSION ")
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

    /// Runs `stats` over a fresh plain TCP connection and returns the counters
    /// (e.g. `cmd_get`, `cmd_set`, `cmd_touch`, `get_hits`, `curr_items`).
    ///
    /// # Panics
    ///
    /// If the server does not answer within 5 s.
    ///
    /// ```no_run
    /// let server = memcached_harness::MemcachedServer::start();
    /// let stats = server.stats();
    /// let gets: u64 = stats["cmd_get"].parse().unwrap();
    /// assert_eq!(gets, 0);
    /// ```
    pub fn stats(&self) -> HashMap<String, String> {
        self.stats_arg("")
    }

    /// Runs `stats <arg>` (e.g. `settings`, `items`, `slabs`); an empty
    /// `arg` runs plain `stats`.
    ///
    /// # Panics
    ///
    /// If the server does not answer within 5 s or answers with an error.
    ///
    /// ```no_run
    /// let server = memcached_harness::MemcachedServer::builder().arg("-I").arg("2m").start();
    /// assert_eq!(server.stats_arg("settings")["item_size_max"], "2097152");
    /// ```
    pub fn stats_arg(&self, arg: &str) -> HashMap<String, String> {
        let port = self.port;
        let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
            panic!("stats on memcached at 127.0.0.1:{port}: {what}: {e}")
        };
        let mut reader = self
            .plain_connection(Duration::from_secs(5))
            .unwrap_or_else(|e| fail("connect", &e));
        let cmd = if arg.is_empty() {
            "stats\r\n".to_string()
        } else {
            format!("stats {arg}\r\n")
        };
        reader
            .get_mut()
            .write_all(cmd.as_bytes())
            .unwrap_or_else(|e| fail("write", &e));
        let mut out = HashMap::new();
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .unwrap_or_else(|e| fail("read", &e));
            if n == 0 {
                fail("read", &"connection closed before END");
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line == "END" {
                return out;
            }
            let mut parts = line.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("STAT"), Some(name), value) => {
                    out.insert(name.to_string(), value.unwrap_or("").to_string());
                }
                _ => fail("unexpected reply line", &line),
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_fails(addr: SocketAddr) -> bool {
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
    }

    #[test]
    fn start_answers_and_counts() {
        let server = MemcachedServer::start();
        assert!(server.answers_version());
        let stats = server.stats();
        assert_eq!(stats["cmd_get"], "0");
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.write_all(b"mg nokey v\r\n").unwrap();
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "EN\r\n");
        assert_eq!(server.stats()["cmd_get"], "1");
    }

    #[test]
    fn builder_args_reach_memcached() {
        let server = MemcachedServer::builder()
            .arg("-I")
            .arg("2m")
            .memory_mb(32)
            .start();
        let settings = server.stats_arg("settings");
        assert_eq!(settings["item_size_max"], "2097152");
        assert_eq!(settings["maxbytes"], (32u64 * 1024 * 1024).to_string());
    }

    #[test]
    fn kill_and_restart_same_port() {
        let mut server = MemcachedServer::start();
        let port = server.port();
        server.kill();
        assert!(!server.is_running());
        assert!(connect_fails(server.addr()));
        server.restart();
        assert_eq!(server.port(), port);
        assert!(server.is_running());
        assert!(server.answers_version());
    }

    #[test]
    fn pause_and_resume() {
        let mut server = MemcachedServer::start();
        server.pause();
        assert!(
            !server.answers_version(),
            "a stopped server must not answer"
        );
        server.resume();
        assert!(server.answers_version());
    }

    #[test]
    fn two_servers_get_different_ports() {
        let a = MemcachedServer::start();
        let b = MemcachedServer::start();
        assert_ne!(a.port(), b.port());
    }

    #[test]
    fn auth_server_is_ready_and_answers_stats_after_login() {
        let mut server = MemcachedServer::builder().auth("app", "s3cret").start();
        assert_eq!(server.stats()["curr_items"], "0");
        let file = server.auth_file.clone().expect("auth file written");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "app:s3cret\n");
        // Without logging in, memcached refuses commands.
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.write_all(b"version\r\n").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        assert_eq!(line, "CLIENT_ERROR unauthenticated\r\n");
        server.restart();
        assert!(server.answers_version());
        drop(server);
        assert!(!file.exists(), "the auth file is removed with the server");
    }

    #[test]
    fn drop_kills_the_process() {
        let server = MemcachedServer::start();
        let addr = server.addr();
        drop(server);
        assert!(connect_fails(addr));
    }
}
