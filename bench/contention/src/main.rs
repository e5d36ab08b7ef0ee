//! `contention-server`: the HTTP server of the same-session contention benchmark (issue 12).
//!
//! One hot session, one counter `n`, three routes:
//!
//! - `GET /inc`: reads `n` and stores `n + 1` (the read-modify-write under test);
//! - `GET /read`: returns `n` without changing it (to measure lost updates);
//! - `GET /stats`: the cgi-session store's [`StoreStats`] as JSON (`{}` for tower-sessions).
//!
//! For tower-sessions the increment is the natural `get` then `insert` (what users write); for
//! cgi-session it is [`SessionHandle::update`], the atomic read-modify-write. Driven by wrk
//! from `scripts/bench-contention.sh`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use cgi_session::memcache::client::{Client, ClientConfig};
use cgi_session::memcache::MemcacheDriver;
use cgi_session::{LockMode, MemoryDriver, SessionStore, StoreStats};
use cgi_session_tower::{SessionError, SessionHandle, SessionLayer};
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use tower_sessions::{MemoryStore, Session, SessionManagerLayer};
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};
use tower_sessions_redis_store::RedisStore;

/// Which session library and store serve the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    /// tower-sessions with its in-process `MemoryStore`.
    TsMemory,
    /// tower-sessions with `tower-sessions-redis-store` (fred pool).
    TsRedis,
    /// cgi-session with `MemoryDriver`.
    CgiMemory,
    /// cgi-session with the memcached driver and its bundled client.
    CgiMemcached,
}

/// The cgi-session lock mode, as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Lock {
    /// `LockMode::Off`: optimistic (group commit in process, CAS across processes).
    Off,
    /// `LockMode::EveryRequest`: every request holds the session lock (PHP's way).
    EveryRequest,
}

/// Command line of `contention-server`.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Same-session contention benchmark server (issue 12): GET /inc, /read, /stats"
)]
struct Args {
    /// Session library and store.
    #[arg(long, value_enum)]
    store: StoreKind,
    /// Redis URL for ts-redis (loopback only), e.g. redis://127.0.0.1:6379.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// memcached HOST:PORT for cgi-memcached (loopback only).
    #[arg(long, default_value = "127.0.0.1:11211")]
    memcached: String,
    /// Session lock mode for cgi-session stores.
    #[arg(long, value_enum, default_value = "off")]
    lock: Lock,
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Connections to the store (memcached pool size per server, or Redis pool size).
    #[arg(long, default_value_t = 4)]
    pool: usize,
    /// Tokio worker threads (the benchmark machine has 2 cores, shared with wrk).
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

/// Refuses any address outside 127.0.0.0/8 or ::1: this benchmark only talks to this machine.
fn require_loopback(what: &str, host_port: &str) -> Result<(), String> {
    let host = host_port
        .trim_start_matches("redis://")
        .rsplit_once(':')
        .map_or(host_port, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let ok = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {host_port:?} is not a loopback address; this benchmark only uses 127.0.0.1"
        ))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    require_loopback("--listen", &args.listen.to_string())?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// Builds the router for the chosen store and serves it until SIGINT/SIGTERM.
async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let lock_mode = match args.lock {
        Lock::Off => LockMode::Off,
        Lock::EveryRequest => LockMode::EveryRequest,
    };
    let app = match args.store {
        StoreKind::TsMemory => ts_router(SessionManagerLayer::new(MemoryStore::default())),
        StoreKind::TsRedis => {
            require_loopback("--redis", &args.redis)?;
            let pool = Pool::new(
                Config::from_url(&args.redis)?,
                None,
                None,
                None,
                args.pool.max(1),
            )?;
            let _task = pool.connect();
            pool.wait_for_connect().await?;
            ts_router(SessionManagerLayer::new(RedisStore::new(pool)))
        }
        StoreKind::CgiMemory => cgi_router(SessionStore::builder(MemoryDriver::new()), lock_mode),
        StoreKind::CgiMemcached => {
            require_loopback("--memcached", &args.memcached)?;
            let client = Client::connect(
                ClientConfig::new(args.memcached.as_str())
                    .pool_size(args.pool)
                    .timeout(Duration::from_secs(2))
                    .connect_timeout(Duration::from_secs(1)),
            )
            .await?;
            let driver = MemcacheDriver::new(client);
            let report = driver.check().await?;
            eprintln!(
                "contention-server: memcached {} at {} is alive",
                report.version, args.memcached
            );
            cgi_router(SessionStore::builder(driver), lock_mode)
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!(
        "contention-server: {:?} (lock {:?}) listening on http://{}",
        args.store,
        args.lock,
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

// ---------------------------------------------------------------------------------------------
// tower-sessions

/// The tower-sessions app over any of its stores.
fn ts_router<S>(layer: SessionManagerLayer<S>) -> Router
where
    S: tower_sessions::SessionStore + Clone,
{
    Router::new()
        .route("/inc", get(ts_inc))
        .route("/read", get(ts_read))
        .route("/stats", get(|| async { Json(json!({})) }))
        .layer(layer.with_secure(false))
}

/// Maps a tower-sessions error to a 500 with its message.
fn ts_error(e: tower_sessions::session::Error) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The natural read-modify-write of tower-sessions: `get` then `insert`.
async fn ts_inc(session: Session) -> Result<String, (StatusCode, String)> {
    let n: u64 = session.get("n").await.map_err(ts_error)?.unwrap_or(0);
    session.insert("n", n + 1).await.map_err(ts_error)?;
    Ok((n + 1).to_string())
}

/// Reads `n` without changing it.
async fn ts_read(session: Session) -> Result<String, (StatusCode, String)> {
    let n: u64 = session.get("n").await.map_err(ts_error)?.unwrap_or(0);
    Ok(n.to_string())
}

// ---------------------------------------------------------------------------------------------
// cgi-session

/// The cgi-session app over the store that `builder` makes.
fn cgi_router(builder: cgi_session::SessionStoreBuilder, lock_mode: LockMode) -> Router {
    let store = builder.default_expire(3600).lock_mode(lock_mode).build();
    Router::new()
        .route("/inc", get(cgi_inc))
        .route("/read", get(cgi_read))
        .route("/stats", get(cgi_stats))
        .with_state(store.clone())
        .layer(SessionLayer::new(store).lock_mode(lock_mode))
}

/// The atomic read-modify-write of cgi-session: `update` on the freshest copy.
async fn cgi_inc(session: SessionHandle) -> Result<String, SessionError> {
    let n = session
        .update(|s| {
            let n = s.get::<u64>("n")?.unwrap_or(0);
            s.set("n", &(n + 1))?;
            Ok(n + 1)
        })
        .await?;
    Ok(n.to_string())
}

/// Reads `n` without changing it.
async fn cgi_read(session: SessionHandle) -> Result<String, SessionError> {
    let n: u64 = session.get("n").await?.unwrap_or(0);
    Ok(n.to_string())
}

/// The store's counters as JSON.
async fn cgi_stats(State(store): State<SessionStore>) -> Json<Value> {
    Json(stats_json(&store.stats()))
}

/// [`StoreStats`] as a JSON object (it has no `Serialize`).
fn stats_json(s: &StoreStats) -> Value {
    json!({
        "loads": s.loads,
        "reads": s.reads,
        "saves": s.saves,
        "batches": s.batches,
        "writes": s.writes,
        "conflicts": s.conflicts,
        "contended": s.contended,
        "lock_acquired": s.lock_acquired,
        "lock_waits": s.lock_waits,
        "lock_polls": s.lock_polls,
        "lock_wait_micros": s.lock_wait_micros,
        "lock_timeouts": s.lock_timeouts,
    })
}
