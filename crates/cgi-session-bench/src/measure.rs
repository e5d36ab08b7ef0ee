//! Measuring one cell: CPU time of this process and of memcached, memcached's command
//! counts, latency histograms.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Workload;
use crate::cycle::{new_histogram, run_phase, Target};
use crate::report::Cell;
use cgi_session_memcache::client::Client;
use hdrhistogram::Histogram;

/// CPU time used so far by all threads of process `pid` (this process when `None`), in
/// nanoseconds, from `/proc/<pid>/task/*/schedstat`; `None` where that is not readable.
pub fn process_cpu_ns(pid: Option<u32>) -> Option<u64> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}/task"),
        None => "/proc/self/task".to_string(),
    };
    let mut total = 0u64;
    let mut any = false;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = text
            .split_whitespace()
            .next()
            .and_then(|t| t.parse::<u64>().ok())
        {
            total = total.saturating_add(ns);
            any = true;
        }
    }
    any.then_some(total)
}

/// memcached's command counters that one cycle moves.
async fn command_count(client: &Client) -> Option<u64> {
    let stats = client.stats().await.ok()?;
    let get = |k: &str| {
        stats
            .get(k)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(
        get("cmd_get")
            + get("cmd_touch")
            + get("cmd_set")
            + get("delete_hits")
            + get("delete_misses"),
    )
}

/// Measures one segment of a cell; the cell's figures are the sum of its segments.
pub(crate) struct Segment {
    cycles: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    latency: Histogram<u64>,
    commands: Option<u64>,
    client_cpu_ns: Option<u64>,
    server_cpu_ns: Option<u64>,
}

pub(crate) async fn measure_segment(
    target: &Arc<Target>,
    concurrency: usize,
    seed: u64,
    length: Duration,
    stats_client: Option<&Client>,
    server_pid: Option<u32>,
) -> Segment {
    let before = match stats_client {
        Some(c) => command_count(c).await,
        None => None,
    };
    let server_before = server_pid.and_then(|p| process_cpu_ns(Some(p)));
    let client_before = process_cpu_ns(None);
    let (results, elapsed) = run_phase(target, concurrency, seed, length, true).await;
    let client_after = process_cpu_ns(None);
    let server_after = server_pid.and_then(|p| process_cpu_ns(Some(p)));
    let after = match stats_client {
        Some(c) => command_count(c).await,
        None => None,
    };
    let mut seg = Segment {
        cycles: 0,
        errors: 0,
        first_error: None,
        elapsed,
        latency: new_histogram(),
        commands: before.zip(after).map(|(b, a)| a.saturating_sub(b)),
        client_cpu_ns: client_before
            .zip(client_after)
            .map(|(b, a)| a.saturating_sub(b)),
        server_cpu_ns: server_before
            .zip(server_after)
            .map(|(b, a)| a.saturating_sub(b)),
    };
    for r in results {
        seg.cycles += r.cycles;
        seg.errors += r.errors;
        if seg.first_error.is_none() {
            seg.first_error = r.first_error;
        }
        let _ = seg.latency.add(&r.latency);
    }
    seg
}

impl Cell {
    pub(crate) fn empty(workload: Workload, concurrency: usize, memcached: bool) -> Self {
        Cell {
            workload,
            concurrency,
            cycles: 0,
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
            latency: new_histogram(),
            commands_per_cycle: memcached.then_some(0.0),
            client_cpu_us: Some(0.0),
            server_cpu_us: Some(0.0),
        }
    }

    /// Adds a segment; `commands_per_cycle` holds the raw command count until `finish`.
    pub(crate) fn add(&mut self, seg: Segment) {
        self.cycles += seg.cycles;
        self.errors += seg.errors;
        if self.first_error.is_none() {
            self.first_error = seg.first_error;
        }
        self.elapsed += seg.elapsed;
        let _ = self.latency.add(&seg.latency);
        self.commands_per_cycle = match (self.commands_per_cycle, seg.commands) {
            (Some(total), Some(n)) => Some(total + n as f64),
            _ => None,
        };
        let sum = |acc: Option<f64>, ns: Option<u64>| match (acc, ns) {
            (Some(total), Some(n)) => Some(total + n as f64),
            _ => None,
        };
        self.client_cpu_us = sum(self.client_cpu_us, seg.client_cpu_ns);
        self.server_cpu_us = sum(self.server_cpu_us, seg.server_cpu_ns);
    }

    pub(crate) fn finish(&mut self) {
        let done = self.cycles + self.errors;
        self.commands_per_cycle = self
            .commands_per_cycle
            .filter(|_| done > 0)
            .map(|total| total / done as f64);
        // Nanoseconds in total -> microseconds per completed cycle.
        let per_cycle = |total: Option<f64>| {
            total
                .filter(|_| self.cycles > 0)
                .map(|ns| ns / 1000.0 / self.cycles as f64)
        };
        self.client_cpu_us = per_cycle(self.client_cpu_us);
        self.server_cpu_us = per_cycle(self.server_cpu_us);
    }
}
