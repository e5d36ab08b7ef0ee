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

mod config;
mod cycle;
mod measure;
mod report;
mod run;
mod samples;
mod work;

pub use config::{BenchError, LoadConfig, Workload, SESSION_EXPIRE_SECS};
pub use measure::process_cpu_ns;
pub use report::{Cell, Report};
pub use run::run;
pub use samples::{sample_params, sample_record};
pub use work::{create_sample_session, record_cycle, session_cycle};
