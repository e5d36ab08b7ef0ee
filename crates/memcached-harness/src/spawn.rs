//! Starting `memcached` and waiting until it answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::process::{memcached_binary, running_as_root, StartError, INSTALL_HINT};
use crate::MemcachedServer;

impl MemcachedServer {
    pub(crate) fn spawn_and_wait(&mut self) -> Result<(), StartError> {
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
    pub(crate) fn plain_connection(
        &self,
        timeout: Duration,
    ) -> std::io::Result<BufReader<TcpStream>> {
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

    pub(crate) fn answers_version(&self) -> bool {
        let Ok(mut reader) = self.plain_connection(Duration::from_millis(500)) else {
            return false;
        };
        if reader.get_mut().write_all(b"version\r\n").is_err() {
            return false;
        }
        let mut line = String::new();
        reader.read_line(&mut line).is_ok() && line.starts_with("VERSION ")
    }
}
