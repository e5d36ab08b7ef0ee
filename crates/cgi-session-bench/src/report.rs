//! The measurements: one [`Cell`] per workload and concurrency, and the [`Report`] table.

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::Workload;
use hdrhistogram::Histogram;

/// One cell of the table: a workload at one concurrency.
#[derive(Debug, Clone)]
pub struct Cell {
    /// The workload.
    pub workload: Workload,
    /// Sessions in flight.
    pub concurrency: usize,
    /// Cycles completed in the measured time.
    pub cycles: u64,
    /// Cycles that failed (not counted in `cycles`).
    pub errors: u64,
    /// The first error seen, if any (ids in it are redacted by the session layer).
    pub first_error: Option<String>,
    /// Measured wall time.
    pub elapsed: Duration,
    /// Latency of successful cycles, in nanoseconds.
    pub latency: Histogram<u64>,
    /// memcached commands per cycle (`cmd_get + cmd_touch + cmd_set` and deletes, from the
    /// server's counters), when the workload uses memcached.
    pub commands_per_cycle: Option<f64>,
    /// CPU time of this process (all threads) per completed cycle, in microseconds.
    pub client_cpu_us: Option<f64>,
    /// CPU time of the memcached process per completed cycle, in microseconds, when the
    /// program started memcached itself.
    pub server_cpu_us: Option<f64>,
}

impl Cell {
    /// Successful cycles per second.
    pub fn cycles_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.cycles as f64 / secs
        } else {
            0.0
        }
    }

    /// A latency quantile in microseconds (0 when nothing was recorded).
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            0.0
        } else {
            self.latency.value_at_quantile(q) as f64 / 1000.0
        }
    }
}

/// Everything a [`run`](crate::run) measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The cells, workload by workload, in the order run.
    pub cells: Vec<Cell>,
    /// memcached's version, when a memcached workload ran.
    pub memcached_version: Option<String>,
    /// Whether memcached was started by the program (false with `--servers`).
    pub own_memcached: bool,
    /// Stored size in bytes of session 0 per workload (value as written to the store).
    pub value_sizes: Vec<(Workload, usize)>,
    /// Sessions in the pool.
    pub sessions: usize,
    /// Measured time per cell.
    pub duration: Duration,
}

impl Report {
    /// The cell of `workload` at `concurrency`, if it ran.
    pub fn cell(&self, workload: Workload, concurrency: usize) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.workload == workload && c.concurrency == concurrency)
    }

    fn ratio(&self, cell: &Cell, base: Workload) -> Option<f64> {
        let b = self.cell(base, cell.concurrency)?;
        let bc = b.cycles_per_sec();
        (bc > 0.0 && cell.workload != base).then(|| cell.cycles_per_sec() / bc)
    }

    /// The table: one row per cell with cycles/s, p50/p99 latency, memcached commands per
    /// cycle, CPU time per cycle of this process and of memcached, and the ratios to `raw` (and, for read-only rows, to `raw-ro`) at the same
    /// concurrency.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<10} {:>5} {:>10} {:>8} {:>8} {:>5} {:>7} {:>7} {:>6} {:>7} {:>7}",
            "workload",
            "conc",
            "cycles/s",
            "p50 us",
            "p99 us",
            "cmds",
            "cli us",
            "srv us",
            "errors",
            "vs raw",
            "vs ro"
        );
        let _ = writeln!(out, "{}", "-".repeat(92));
        for cell in &self.cells {
            let fmt_ratio =
                |r: Option<f64>| r.map_or_else(|| "-".to_string(), |r| format!("{r:.3}"));
            let vs_ro = if cell.workload.read_only() {
                self.ratio(cell, Workload::RawRo)
            } else {
                None
            };
            let _ = writeln!(
                out,
                "{:<10} {:>5} {:>10.0} {:>8.1} {:>8.1} {:>5} {:>7} {:>7} {:>6} {:>7} {:>7}",
                cell.workload.name(),
                cell.concurrency,
                cell.cycles_per_sec(),
                cell.quantile_us(0.50),
                cell.quantile_us(0.99),
                cell.commands_per_cycle
                    .map_or_else(|| "-".to_string(), |c| format!("{c:.2}")),
                cell.client_cpu_us
                    .map_or_else(|| "-".to_string(), |c| format!("{c:.1}")),
                cell.server_cpu_us
                    .filter(|_| cell.workload.needs_memcached())
                    .map_or_else(|| "-".to_string(), |c| format!("{c:.1}")),
                cell.errors,
                fmt_ratio(self.ratio(cell, Workload::Raw)),
                fmt_ratio(vs_ro),
            );
        }
        out
    }

    /// A header describing the run (sessions, value sizes, memcached), printed above the table.
    pub fn header(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "cgi-session-load: {} sessions, {:.1} s per cell",
            self.sessions,
            self.duration.as_secs_f64()
        );
        if let Some(v) = &self.memcached_version {
            let _ = writeln!(
                out,
                "memcached {v} ({})",
                if self.own_memcached {
                    "started by this program on 127.0.0.1"
                } else {
                    "--servers"
                }
            );
        }
        if !self.value_sizes.is_empty() {
            let sizes: Vec<String> = self
                .value_sizes
                .iter()
                .map(|(w, n)| format!("{w} {n} B"))
                .collect();
            let _ = writeln!(out, "stored value sizes: {}", sizes.join(", "));
        }
        out
    }

    /// Which errors happened, if any (one line per cell with errors).
    pub fn error_summary(&self) -> String {
        let mut out = String::new();
        for c in self.cells.iter().filter(|c| c.errors > 0) {
            let _ = writeln!(
                out,
                "{} at {}: {} errors, first: {}",
                c.workload,
                c.concurrency,
                c.errors,
                c.first_error.as_deref().unwrap_or("?")
            );
        }
        out
    }
}
