//! memcached's counters, read over a plain connection.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::time::Duration;

use crate::MemcachedServer;

impl MemcachedServer {
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
