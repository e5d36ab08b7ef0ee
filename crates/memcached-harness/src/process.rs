//! Helpers for starting and watching the process: free ports, thread states, the binary.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;

pub(crate) const INSTALL_HINT: &str = "install memcached: apt-get install memcached";

pub(crate) enum StartError {
    PortTaken(String),
    Fatal(String),
}

pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind a loopback port to find a free one: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("cannot read the local address of a loopback socket: {e}"))
        .port()
}

/// The state letter of every thread of `pid` (`R`, `S`, `T`, ...).
pub(crate) fn thread_states(pid: u32) -> Vec<char> {
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

pub(crate) fn running_as_root() -> bool {
    // The owner of /proc/self is the effective uid of this process.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

pub(crate) fn memcached_binary() -> String {
    std::env::var("MEMCACHED_BIN").unwrap_or_else(|_| "memcached".to_string())
}
