//! Benchmarks of cgi-session.
//!
//! This crate holds:
//!
//! * the **load program** `cgi-session-load` (`cargo run --release -p cgi-session-bench --bin
//!   cgi-session-load`), which measures the *session cycle* (load a random session, read the
//!   user name, increment a counter, save) against the bare client doing the same round trips,
//!   at several concurrencies, and prints one table; its engine is [`run`], configured by
//!   [`LoadConfig`], and its table is [`Report::table`];
//! * criterion micro-benchmarks in `benches/micro.rs` (serializers, the reply parser, id
//!   generation), which use the sample sessions of [`sample_record`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), cgi_session_bench::BenchError> {
//! use std::time::Duration;
//! use cgi_session_bench::{run, LoadConfig, Workload};
//!
//! let mut config = LoadConfig::default();
//! config.sessions = 100;
//! config.duration = Duration::from_millis(500);
//! config.warmup = Duration::from_millis(100);
//! config.concurrency = vec![1, 8];
//! config.workloads = vec![Workload::Raw, Workload::Json];
//! let report = run(&config).await?; // starts its own memcached (servers is None)
//! println!("{}", report.table());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cgi_session_core::record::Record;
use cgi_session_core::{
    FileDriver, JsonSerializer, MemoryDriver, Serializer, SessionStore, SessionStoreBuilder,
};
use cgi_session_dumper::DataDumperSerializer;
use cgi_session_memcache::client::{Client, ClientConfig, GetOptions, SetOptions, StoreStatus};
use cgi_session_memcache::MemcacheDriver;
use hdrhistogram::Histogram;
use memcached_harness::MemcachedServer;
use serde_json::{Map, Value};

/// Idle timeout given to every benchmark session (seconds); reads refresh the item's TTL in
/// the same round trip, as in production.
pub const SESSION_EXPIRE_SECS: i64 = 3600;

/// What one table row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Workload {
    /// The bundled client alone: `mg` with CAS and TTL refresh, then a CAS `ms` of the same
    /// bytes. The limit for the session layer's design (two round trips).
    Raw,
    /// [`Workload::Raw`] over a pool of 8 connections instead of the default 2 ("8 plain
    /// connections" when run at concurrency 8).
    RawPool8,
    /// The bundled client, read only: one `mg` with CAS and TTL refresh.
    RawRo,
    /// cgi-session over the memcached driver with the JSON serializer.
    Json,
    /// Read-only session cycle (load, read the name, flush that writes nothing), JSON.
    JsonRo,
    /// cgi-session over the memcached driver with Perl's `default` (Data::Dumper) serializer.
    Perl,
    /// cgi-session over the in-process memory driver (JSON).
    Memory,
    /// cgi-session over the file driver in a temporary directory (JSON).
    File,
}

impl Workload {
    /// Every workload, in table order.
    pub const ALL: [Workload; 8] = [
        Workload::Raw,
        Workload::RawPool8,
        Workload::RawRo,
        Workload::Json,
        Workload::JsonRo,
        Workload::Perl,
        Workload::Memory,
        Workload::File,
    ];

    /// The name used by `--only` and in the table.
    ///
    /// ```
    /// assert_eq!(cgi_session_bench::Workload::JsonRo.name(), "json-ro");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Workload::Raw => "raw",
            Workload::RawPool8 => "raw-pool8",
            Workload::RawRo => "raw-ro",
            Workload::Json => "json",
            Workload::JsonRo => "json-ro",
            Workload::Perl => "perl",
            Workload::Memory => "memory",
            Workload::File => "file",
        }
    }

    /// Whether the workload needs a memcached server.
    pub fn needs_memcached(self) -> bool {
        !matches!(self, Workload::Memory | Workload::File)
    }

    /// Whether the cycle only reads.
    pub fn read_only(self) -> bool {
        matches!(self, Workload::RawRo | Workload::JsonRo)
    }

    /// What the table shows, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Workload::Raw => "bundled client: mg (CAS, TTL) + CAS ms of the same bytes, pool 2",
            Workload::RawPool8 => "as raw, over a pool of 8 connections",
            Workload::RawRo => "bundled client: one mg (CAS, TTL), pool 2",
            Workload::Json => "session load + read + increment + flush, memcache driver, json",
            Workload::JsonRo => "session load + read + flush (no change), memcache driver, json",
            Workload::Perl => "as json, Perl `default` (Data::Dumper) serializer",
            Workload::Memory => "as json, memory driver (in-process)",
            Workload::File => "as json, file driver (temp dir)",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = BenchError;

    /// ```
    /// use cgi_session_bench::Workload;
    /// assert_eq!("raw-ro".parse::<Workload>().unwrap(), Workload::RawRo);
    /// assert!("nope".parse::<Workload>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == wanted)
            .ok_or_else(|| {
                BenchError::Config(format!(
                    "unknown workload {s:?}: choose from {}",
                    Workload::ALL.map(Workload::name).join(", ")
                ))
            })
    }
}

/// What went wrong in a benchmark run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A setting is unusable.
    #[error("invalid benchmark setting: {0}")]
    Config(String),
    /// memcached could not be reached or started.
    #[error(
        "memcached: {0} (install it with `apt-get install memcached`, or pass --servers host:port)"
    )]
    Memcached(String),
    /// Filling the session pool failed.
    #[error("could not create the benchmark sessions: {0}")]
    Populate(String),
}

/// Settings of one [`run`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoadConfig {
    /// `host:port` of a running memcached; `None` starts one with memcached-harness.
    pub servers: Option<String>,
    /// Sessions in the pool each workload picks from at random.
    pub sessions: usize,
    /// Measured time of one cell (workload x concurrency).
    pub duration: Duration,
    /// Unmeasured time before each cell.
    pub warmup: Duration,
    /// Sessions in flight at once; one cell per value.
    pub concurrency: Vec<usize>,
    /// Workloads to run, in this order.
    pub workloads: Vec<Workload>,
    /// Connections of the client pool (the client's default is 2); [`Workload::RawPool8`]
    /// always uses 8.
    pub pool_size: usize,
    /// Seed of the random session picks.
    pub seed: u64,
    /// Print each cell on standard error as it finishes.
    pub progress: bool,
    /// Segments per cell: for each concurrency the workloads take turns, `rounds` times, each
    /// for `duration / rounds`.
    pub rounds: u32,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            servers: None,
            sessions: 10_000,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            concurrency: vec![1, 8, 64],
            workloads: Workload::ALL.to_vec(),
            pool_size: 2,
            seed: 0x5EED_CAFE,
            progress: false,
            rounds: 5,
        }
    }
}

impl LoadConfig {
    fn validate(&self) -> Result<(), BenchError> {
        if self.sessions == 0 {
            return Err(BenchError::Config("--sessions must be at least 1".into()));
        }
        if self.concurrency.is_empty() || self.concurrency.contains(&0) {
            return Err(BenchError::Config(
                "--concurrency needs one or more values of at least 1, e.g. 1,8,64".into(),
            ));
        }
        if self.concurrency.iter().any(|&c| c > 100_000) {
            return Err(BenchError::Config(
                "--concurrency values above 100000 are not supported".into(),
            ));
        }
        if self.workloads.is_empty() {
            return Err(BenchError::Config(
                "--only needs at least one workload".into(),
            ));
        }
        if self.duration.is_zero() {
            return Err(BenchError::Config("--duration-secs must be above 0".into()));
        }
        if self.pool_size == 0 {
            return Err(BenchError::Config("--pool-size must be at least 1".into()));
        }
        Ok(())
    }
}

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

/// Everything a [`run`] measured.
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

/// The parameters of benchmark session `i`: a user name, an integer counter and a list of
/// `tags` short strings (5 gives a stored session of about 300 bytes).
///
/// ```
/// let p = cgi_session_bench::sample_params(7, 5);
/// assert_eq!(p["user"], "user-0000007");
/// assert_eq!(p["recent"].as_array().unwrap().len(), 5);
/// ```
pub fn sample_params(i: usize, tags: usize) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("user".into(), Value::from(format!("user-{i:07}")));
    m.insert("counter".into(), Value::from(0i64));
    let recent: Vec<Value> = (0..tags)
        .map(|t| Value::from(format!("/page/{t}/{:05}", (i * 31 + t) % 100_000)))
        .collect();
    m.insert("recent".into(), Value::Array(recent));
    m
}

/// A full stored record (the `_SESSION_*` fields around [`sample_params`]), as the session
/// layer writes it: the input of the serializer micro-benchmarks and of the `raw` workload.
///
/// ```
/// use cgi_session_core::{JsonSerializer, Serializer};
/// let r = cgi_session_bench::sample_record(0, 5);
/// let n = JsonSerializer.freeze(&r.to_map()).unwrap().len();
/// assert!((250..350).contains(&n), "{n}");
/// ```
pub fn sample_record(i: usize, tags: usize) -> Record {
    let mut record = Record::new(
        format!(
            "{:032x}",
            (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
        ),
        1_767_225_600,
        "127.0.0.1".into(),
    );
    record.etime = Some(SESSION_EXPIRE_SECS);
    record.params = sample_params(i, tags);
    record
}

/// CAS attempts of one raw cycle (the session layer's default merge also tries 8 writes).
const RAW_MAX_ATTEMPTS: u32 = 8;

/// SplitMix64: a small, fast generator for picking sessions (not for anything secret).
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        // n <= usize::MAX; the modulo bias is irrelevant for picking among sessions.
        (self.next() % (n as u64)) as usize
    }
}

/// What a workload drives.
#[derive(Debug)]
enum Target {
    Raw {
        client: Client,
        keys: Vec<String>,
        ttl: u32,
        read_only: bool,
    },
    Session {
        store: SessionStore,
        ids: Vec<String>,
        read_only: bool,
    },
}

impl Target {
    fn len(&self) -> usize {
        match self {
            Target::Raw { keys, .. } => keys.len(),
            Target::Session { ids, .. } => ids.len(),
        }
    }

    async fn cycle(&self, idx: usize) -> Result<(), String> {
        match self {
            Target::Raw {
                client,
                keys,
                ttl,
                read_only,
            } => {
                let key = &keys[idx];
                // Like the session layer's merge: a CAS conflict re-reads and writes again.
                for _ in 0..RAW_MAX_ATTEMPTS {
                    let item = client
                        .get(key, GetOptions::new().cas(true).flags(true).touch(*ttl))
                        .await
                        .map_err(|e| e.to_string())?
                        .ok_or("raw: a benchmark key is missing (evicted?)")?;
                    std::hint::black_box(&item.value);
                    if *read_only {
                        return Ok(());
                    }
                    match client
                        .set(key, &item.value, SetOptions::new().ttl(*ttl).cas(item.cas))
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        StoreStatus::Stored { .. } => return Ok(()),
                        StoreStatus::Exists => continue,
                        other => return Err(format!("raw: CAS write not stored: {other:?}")),
                    }
                }
                Err(format!("raw: {RAW_MAX_ATTEMPTS} CAS conflicts in a row"))
            }
            Target::Session {
                store,
                ids,
                read_only,
            } => {
                let mut s = store
                    .load(Some(&ids[idx]), None)
                    .await
                    .map_err(|e| e.to_string())?;
                if s.id().is_none() {
                    return Err("session: a benchmark session is missing (evicted?)".into());
                }
                let name: Option<String> = s.get("user").map_err(|e| e.to_string())?;
                std::hint::black_box(&name);
                if !*read_only {
                    let n: i64 = s.get("counter").map_err(|e| e.to_string())?.unwrap_or(0);
                    s.set("counter", &(n + 1)).map_err(|e| e.to_string())?;
                }
                s.flush().await.map_err(|e| e.to_string())
            }
        }
    }
}

struct WorkerResult {
    cycles: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

fn new_histogram() -> Histogram<u64> {
    // 1 ns .. 60 s at 3 significant digits; the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 60_000_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!("3 sigfig is valid")))
}

async fn worker(target: Arc<Target>, seed: u64, until: Instant, record: bool) -> WorkerResult {
    let mut rng = SplitMix(seed);
    let n = target.len();
    let mut res = WorkerResult {
        cycles: 0,
        errors: 0,
        first_error: None,
        latency: new_histogram(),
    };
    loop {
        let start = Instant::now();
        if start >= until {
            break;
        }
        let idx = rng.below(n);
        match target.cycle(idx).await {
            Ok(()) => {
                res.cycles += 1;
                if record {
                    let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    res.latency.saturating_record(ns.max(1));
                }
            }
            Err(e) => {
                res.errors += 1;
                if res.first_error.is_none() {
                    res.first_error = Some(e);
                }
            }
        }
    }
    res
}

async fn run_phase(
    target: &Arc<Target>,
    concurrency: usize,
    seed: u64,
    length: Duration,
    record: bool,
) -> (Vec<WorkerResult>, Duration) {
    let start = Instant::now();
    let until = start + length;
    let handles: Vec<_> = (0..concurrency)
        .map(|w| {
            tokio::spawn(worker(
                Arc::clone(target),
                seed ^ ((w as u64 + 1) * 0x9E37_79B9),
                until,
                record,
            ))
        })
        .collect();
    let mut results = Vec::with_capacity(concurrency);
    for h in handles {
        if let Ok(r) = h.await {
            results.push(r);
        }
    }
    (results, start.elapsed())
}

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
struct Segment {
    cycles: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    latency: Histogram<u64>,
    commands: Option<u64>,
    client_cpu_ns: Option<u64>,
    server_cpu_ns: Option<u64>,
}

async fn measure_segment(
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
    fn empty(workload: Workload, concurrency: usize, memcached: bool) -> Self {
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
    fn add(&mut self, seg: Segment) {
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

    fn finish(&mut self) {
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

/// Runs `f(i)` for `0..n` with up to 64 in flight, stopping at the first error.
async fn populate<F, Fut, T>(n: usize, f: F) -> Result<Vec<T>, BenchError>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>> + Send + 'static,
    T: Send + 'static,
{
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let end = (start + 64).min(n);
        let handles: Vec<_> = (start..end).map(|i| tokio::spawn(f(i))).collect();
        for h in handles {
            let v = h
                .await
                .map_err(|e| BenchError::Populate(format!("task failed: {e}")))?
                .map_err(BenchError::Populate)?;
            out.push(v);
        }
        start = end;
    }
    Ok(out)
}

async fn populate_sessions(store: &SessionStore, n: usize) -> Result<Vec<String>, BenchError> {
    let store = store.clone();
    populate(n, move |i| {
        let store = store.clone();
        async move {
            let mut s = store
                .new_session(None, Some("127.0.0.1"))
                .await
                .map_err(|e| e.to_string())?;
            for (k, v) in sample_params(i, 5) {
                s.set_value(&k, v).map_err(|e| e.to_string())?;
            }
            s.flush().await.map_err(|e| e.to_string())?;
            s.id()
                .map(|id| id.as_str().to_owned())
                .ok_or_else(|| "a new session has no id".to_string())
        }
    })
    .await
}

async fn connect(addr: &str, pool: usize) -> Result<Client, BenchError> {
    Client::connect(
        ClientConfig::new(addr)
            .pool_size(pool)
            .timeout(Duration::from_secs(5)),
    )
    .await
    .map_err(|e| BenchError::Memcached(format!("cannot connect to {addr}: {e}")))
}

fn session_builder(builder: SessionStoreBuilder) -> SessionStoreBuilder {
    builder.default_expire(SESSION_EXPIRE_SECS)
}

/// Builds a workload's target, filling its pool of sessions. Returns the target and the size
/// of one stored value.
async fn setup(
    workload: Workload,
    config: &LoadConfig,
    addr: Option<&str>,
    run_tag: &str,
    tmp: &tempfile::TempDir,
) -> Result<(Target, usize), BenchError> {
    let need_addr = || addr.ok_or_else(|| BenchError::Memcached("no server address".into()));
    let n = config.sessions;
    match workload {
        Workload::Raw | Workload::RawPool8 | Workload::RawRo => {
            let pool = if workload == Workload::RawPool8 {
                8
            } else {
                config.pool_size
            };
            let client = connect(need_addr()?, pool).await?;
            let ttl = u32::try_from(SESSION_EXPIRE_SECS).unwrap_or(3600) + 10;
            let prefix = format!("bench-{run_tag}-{}:", workload.name());
            let value_size = std::sync::atomic::AtomicUsize::new(0);
            let c = client.clone();
            let keys = populate(n, move |i| {
                let c = c.clone();
                let key = format!("{prefix}{i}");
                async move {
                    let value = JsonSerializer
                        .freeze(&sample_record(i, 5).to_map())
                        .map_err(|e| e.to_string())?;
                    c.set(&key, &value, SetOptions::new().ttl(ttl))
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(key)
                }
            })
            .await?;
            if let Ok(Some(item)) = client.get(&keys[0], GetOptions::new()).await {
                value_size.store(item.value.len(), std::sync::atomic::Ordering::Relaxed);
            }
            Ok((
                Target::Raw {
                    client,
                    keys,
                    ttl,
                    read_only: workload.read_only(),
                },
                value_size.into_inner(),
            ))
        }
        Workload::Json | Workload::JsonRo | Workload::Perl => {
            let client = connect(need_addr()?, config.pool_size).await?;
            let prefix = format!("bench-{run_tag}-{}:", workload.name());
            let driver = MemcacheDriver::builder(client.clone())
                .prefix(prefix)
                .build()
                .map_err(|e| BenchError::Config(e.to_string()))?;
            let key_of = |id: &str| -> Result<String, BenchError> {
                let id = cgi_session_core::SessionId::parse(id)
                    .map_err(|e| BenchError::Populate(e.to_string()))?;
                Ok(driver.key_for(&id))
            };
            let builder = SessionStore::builder(driver.clone());
            let builder = if workload == Workload::Perl {
                builder.serializer(DataDumperSerializer::new())
            } else {
                builder.serializer(JsonSerializer)
            };
            let store = session_builder(builder).build();
            let ids = populate_sessions(&store, n).await?;
            let size = match client.get(key_of(&ids[0])?, GetOptions::new()).await {
                Ok(Some(item)) => item.value.len(),
                _ => 0,
            };
            Ok((
                Target::Session {
                    store,
                    ids,
                    read_only: workload.read_only(),
                },
                size,
            ))
        }
        Workload::Memory => {
            let store = session_builder(SessionStore::builder(MemoryDriver::new())).build();
            let ids = populate_sessions(&store, n).await?;
            let size = stored_size_via_serializer(&store, &ids[0]).await;
            Ok((
                Target::Session {
                    store,
                    ids,
                    read_only: false,
                },
                size,
            ))
        }
        Workload::File => {
            let dir = tmp.path().join("file-driver");
            {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| {
                        BenchError::Config(format!("cannot create {}: {e}", dir.display()))
                    })?;
            }
            let driver = FileDriver::new(&dir).map_err(|e| BenchError::Config(e.to_string()))?;
            let store = session_builder(SessionStore::builder(driver)).build();
            let ids = populate_sessions(&store, n).await?;
            let size = stored_size_via_serializer(&store, &ids[0]).await;
            Ok((
                Target::Session {
                    store,
                    ids,
                    read_only: false,
                },
                size,
            ))
        }
    }
}

async fn stored_size_via_serializer(store: &SessionStore, id: &str) -> usize {
    let Ok(id) = cgi_session_core::SessionId::parse(id) else {
        return 0;
    };
    match store.driver().load(&id, None).await {
        Ok(Some(loaded)) => loaded.data.len(),
        _ => 0,
    }
}

fn memcached_on_path() -> bool {
    let bin = std::env::var_os("MEMCACHED_BIN").unwrap_or_else(|| "memcached".into());
    std::process::Command::new(bin)
        .arg("-V")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs every cell of `config` and returns the measurements. Call it inside a tokio runtime
/// with the time and I/O drivers enabled.
///
/// When [`LoadConfig::servers`] is `None` and a workload needs memcached, a memcached is
/// started on a free loopback port (64 MiB) and stopped at the end.
///
/// # Errors
/// [`BenchError::Config`] for unusable settings, [`BenchError::Memcached`] when memcached
/// cannot be started or reached, [`BenchError::Populate`] when the session pool cannot be
/// written. Errors of single cycles are counted in the table instead.
pub async fn run(config: &LoadConfig) -> Result<Report, BenchError> {
    config.validate()?;
    let needs_memcached = config.workloads.iter().any(|w| w.needs_memcached());
    let mut own: Option<MemcachedServer> = None;
    let addr: Option<String> = match (&config.servers, needs_memcached) {
        (_, false) => None,
        (Some(list), true) => {
            let servers: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            match servers.as_slice() {
                [one] => Some((*one).to_string()),
                [] => return Err(BenchError::Config("--servers is empty".into())),
                _ => {
                    return Err(BenchError::Config(
                        "--servers: the bundled client talks to one server; give one host:port"
                            .into(),
                    ))
                }
            }
        }
        (None, true) => {
            if !memcached_on_path() {
                return Err(BenchError::Memcached("no memcached binary on PATH".into()));
            }
            let server = tokio::task::spawn_blocking(|| {
                // 256 MiB: the pools of all workloads (10,000 x ~300 B each) fit many times over.
                MemcachedServer::builder().memory_mb(256).start()
            })
            .await
            .map_err(|e| BenchError::Memcached(format!("could not start memcached: {e}")))?;
            let a = server.addr().to_string();
            own = Some(server);
            Some(a)
        }
    };
    let stats_client = match &addr {
        Some(a) => Some(connect(a, 1).await?),
        None => None,
    };
    let memcached_version = match &stats_client {
        Some(c) => Some(
            c.version()
                .await
                .map_err(|e| BenchError::Memcached(e.to_string()))?,
        ),
        None => None,
    };
    // Keys of this run differ from any earlier run's (with --servers the store may be shared).
    let run_tag = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64 & 0xFF_FFFF_FFFF)
            .unwrap_or(0)
    );
    let tmp = tempfile::tempdir().map_err(|e| BenchError::Config(format!("temp dir: {e}")))?;
    let mut value_sizes = Vec::new();
    let mut targets = Vec::new();
    for &workload in &config.workloads {
        let (target, size) = setup(workload, config, addr.as_deref(), &run_tag, &tmp).await?;
        value_sizes.push((workload, size));
        targets.push((workload, Arc::new(target)));
    }
    // For each concurrency, the workloads take turns in `rounds` segments, so that slow drifts
    // of the machine (other load, CPU frequency) hit every workload alike and the ratios
    // compare figures measured side by side.
    let rounds = config.rounds.max(1);
    let segment = config.duration / rounds;
    let mut cells = Vec::new();
    for (ci, &c) in config.concurrency.iter().enumerate() {
        let mut row: Vec<Cell> = targets
            .iter()
            .map(|(w, _)| Cell::empty(*w, c, w.needs_memcached()))
            .collect();
        for round in 0..rounds {
            for (cell, (workload, target)) in row.iter_mut().zip(&targets) {
                let seed = config.seed ^ ((ci as u64) << 40) ^ (u64::from(round) << 20);
                if round == 0 && !config.warmup.is_zero() {
                    let _ = run_phase(target, c, seed.rotate_left(7), config.warmup, false).await;
                }
                let stats = if workload.needs_memcached() {
                    stats_client.as_ref()
                } else {
                    None
                };
                let server_pid = if workload.needs_memcached() {
                    own.as_ref().and_then(MemcachedServer::pid)
                } else {
                    None
                };
                cell.add(measure_segment(target, c, seed, segment, stats, server_pid).await);
            }
        }
        for mut cell in row {
            cell.finish();
            if config.progress {
                eprintln!(
                    "  {:<10} conc {:>4}: {:>9.0} cycles/s, p50 {:.1} us, p99 {:.1} us, {} errors",
                    cell.workload.name(),
                    c,
                    cell.cycles_per_sec(),
                    cell.quantile_us(0.5),
                    cell.quantile_us(0.99),
                    cell.errors
                );
            }
            cells.push(cell);
        }
    }
    let order = |c: &Cell| {
        (
            config.workloads.iter().position(|w| *w == c.workload),
            config.concurrency.iter().position(|x| *x == c.concurrency),
        )
    };
    cells.sort_by_key(order);
    drop(own);
    Ok(Report {
        cells,
        memcached_version,
        own_memcached: config.servers.is_none() && needs_memcached,
        value_sizes,
        sessions: config.sessions,
        duration: config.duration,
    })
}
