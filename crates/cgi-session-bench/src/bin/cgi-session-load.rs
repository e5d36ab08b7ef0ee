//! `cgi-session-load`: the session-cycle load benchmark.
//!
//! ```text
//! cargo run --release -p cgi-session-bench --bin cgi-session-load -- \
//!     [--servers 127.0.0.1:11211] [--sessions 10000] [--duration-secs 5] \
//!     [--concurrency 1,8,64] [--only raw,json,...] [--threads 1,2]
//! ```
//!
//! Without `--servers` it starts its own memcached on a free loopback port. It prints one
//! table per runtime (`--threads`: 1 is tokio's current-thread runtime, more its
//! multi-threaded one with that many workers): cycles/s, p50/p99 latency, memcached commands
//! per cycle and the ratio to the bare client (`raw`) at the same concurrency.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use cgi_session_bench::{run, LoadConfig, Workload};
use clap::Parser;

/// Session-cycle load benchmark: cgi-session over memcached (and the memory and file drivers)
/// against the bare memcached client doing the same round trips.
#[derive(Debug, Parser)]
#[command(name = "cgi-session-load", version)]
struct Args {
    /// memcached to use, `host:port`; without it a memcached is started on 127.0.0.1.
    #[arg(long)]
    servers: Option<String>,
    /// Sessions in the pool each cycle picks from at random.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Measured seconds per cell (workload x concurrency); fractions allowed.
    #[arg(long, default_value_t = 5.0)]
    duration_secs: f64,
    /// Unmeasured seconds before each cell.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Sessions in flight, comma-separated: one cell per value.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    concurrency: Vec<usize>,
    /// Workloads, comma-separated: raw, raw-pool8, raw-ro, json, json-ro, perl, memory, file
    /// (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Connections of the memcached client pool (raw-pool8 always uses 8).
    #[arg(long, default_value_t = 2)]
    pool_size: usize,
    /// Runtimes to measure, comma-separated worker counts: 1 runs everything on one thread
    /// (memcached gets the other core); more uses tokio's multi-threaded runtime with that
    /// many workers (sharing the cores with memcached). One table per value.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Turns per cell: for each concurrency the workloads alternate in this many segments of
    /// duration/rounds each, so that drifts of the machine hit all of them alike.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Do not print each cell on standard error as it finishes.
    #[arg(long)]
    quiet: bool,
    /// Describe the workloads and exit.
    #[arg(long)]
    list: bool,
}

fn secs(v: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| format!("{flag} must be a number of seconds >= 0"))
}

fn config(args: &Args) -> Result<LoadConfig, String> {
    let workloads = if args.only.is_empty() {
        Workload::ALL.to_vec()
    } else {
        args.only
            .iter()
            .map(|s| s.parse::<Workload>().map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut c = LoadConfig::default();
    c.servers = args.servers.clone();
    c.sessions = args.sessions;
    c.duration = secs(args.duration_secs, "--duration-secs")?;
    c.warmup = secs(args.warmup_secs, "--warmup-secs")?;
    c.concurrency = args.concurrency.clone();
    c.workloads = workloads;
    c.pool_size = args.pool_size;
    c.progress = !args.quiet;
    c.rounds = args.rounds;
    Ok(c)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for w in Workload::ALL {
            println!("{:<10} {}", w.name(), w.describe());
        }
        return ExitCode::SUCCESS;
    }
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for (turn, &threads) in args.threads.iter().enumerate() {
        if turn > 0 {
            println!();
        }
        failed |= !run_on(threads, &config, turn == 0);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs the whole table on a runtime of `threads` workers and prints it; false on failure.
fn run_on(threads: usize, config: &LoadConfig, with_header: bool) -> bool {
    let (runtime, name) = if threads <= 1 {
        (
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            "tokio current-thread".to_string(),
        )
    } else {
        (
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build(),
            format!("tokio multi-thread, {threads} workers"),
        )
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return false;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(report) => {
            if with_header {
                print!("{}", report.header());
            }
            println!("runtime: {name}");
            println!();
            print!("{}", report.table());
            let errors = report.error_summary();
            if !errors.is_empty() {
                println!();
                print!("{errors}");
            }
            true
        }
        Err(e) => {
            eprintln!("error ({name}): {e}");
            false
        }
    }
}
