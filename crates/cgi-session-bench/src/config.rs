//! What to measure: the workloads, the load program's settings and its errors.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

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

/// Settings of one [`run`](crate::run).
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
    pub(crate) fn validate(&self) -> Result<(), BenchError> {
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
