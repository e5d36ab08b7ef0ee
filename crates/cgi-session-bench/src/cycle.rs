//! One session cycle per workload (the targets), and the workers that run cycles until a
//! deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cgi_session_core::SessionStore;
use cgi_session_memcache::client::{Client, GetOptions, SetOptions, StoreStatus};
use hdrhistogram::Histogram;

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
pub(crate) enum Target {
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
            } => crate::work::session_cycle(store, &ids[idx], *read_only).await,
        }
    }
}

pub(crate) struct WorkerResult {
    pub(crate) cycles: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) latency: Histogram<u64>,
}

pub(crate) fn new_histogram() -> Histogram<u64> {
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

pub(crate) async fn run_phase(
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
