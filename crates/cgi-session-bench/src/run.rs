//! Setting up each workload (memcached, stores, the session pool) and running every cell.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{BenchError, LoadConfig, Workload, SESSION_EXPIRE_SECS};
use crate::cycle::{run_phase, Target};
use crate::measure::measure_segment;
use crate::report::{Cell, Report};
use crate::samples::sample_record;
use cgi_session_core::{
    FileDriver, JsonSerializer, MemoryDriver, Serializer, SessionStore, SessionStoreBuilder,
};
use cgi_session_dumper::DataDumperSerializer;
use cgi_session_memcache::client::{Client, ClientConfig, GetOptions, SetOptions};
use cgi_session_memcache::MemcacheDriver;
use memcached_harness::MemcachedServer;

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
        async move { crate::work::create_sample_session(&store, i).await }
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
            local_target(
                session_builder(SessionStore::builder(MemoryDriver::new())).build(),
                n,
            )
            .await
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
            local_target(session_builder(SessionStore::builder(driver)).build(), n).await
        }
    }
}

/// The read-write session cycle over an in-process or file `store`, with its pool of `n`
/// sessions, and the stored size of one of them.
async fn local_target(store: SessionStore, n: usize) -> Result<(Target, usize), BenchError> {
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
