//! `http-compare`: one axum app serving the same routes over one of two session libraries, for
//! `scripts/bench-compare.sh`:
//!
//! - `--backend cgi-session-memcached`: cgi-session's tower layer over memcached (the bundled
//!   client, `driver:memcache`);
//! - `--backend tower-sessions-redis`: tower-sessions' layer over Redis
//!   (tower-sessions-redis-store, fred).
//!
//! Routes (the same for both):
//!
//! | route | what |
//! |---|---|
//! | `GET /plain` | no session (the baseline) |
//! | `GET /create` | stores `counter = 0` in a new session and sends its cookie |
//! | `GET /read` | reads `counter` from the session (read-only: nothing written) |
//! | `GET /write` | increments `counter` (a read and a write) |
//!
//! Both sessions idle out after 30 minutes, both cookies are unsigned and `HttpOnly`. The app
//! prints `listening on http://ADDR/` once it accepts connections.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;

const COUNTER: &str = "counter";
const IDLE_SECS: i64 = 1800;

#[derive(Debug)]
struct Args {
    backend: String,
    server: String,
    listen: SocketAddr,
    pool: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: http-compare --backend cgi-session-memcached|tower-sessions-redis \
         --server HOST:PORT [--listen 127.0.0.1:0] [--pool 2]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        backend: String::new(),
        server: String::new(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        pool: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--backend" => args.backend = value,
            "--server" => args.server = value,
            "--listen" => args.listen = value.parse().unwrap_or_else(|_| usage()),
            "--pool" => args.pool = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if args.server.is_empty() || args.pool == 0 {
        usage();
    }
    args
}

async fn plain() -> &'static str {
    "no session here\n"
}

/// The cgi-session app: memcached through the bundled client.
mod cgi {
    use cgi_session::{SessionStore, StoreSpec};
    use cgi_session_tower::{SessionError, SessionHandle, SessionLayer};

    use super::*;

    pub async fn app(server: &str, pool: usize) -> Result<Router, Box<dyn std::error::Error>> {
        let spec = StoreSpec::new("driver:memcache")
            .servers([server])
            .pool_size(pool)
            .timeout(Duration::from_secs(1));
        let opened = spec.open().await?;
        let store: SessionStore = spec
            .builder_over(&opened)?
            .default_expire(IDLE_SECS)
            .build();
        Ok(Router::new()
            .route("/plain", get(plain))
            .route("/create", get(create))
            .route("/read", get(read))
            .route("/write", get(write))
            .layer(SessionLayer::new(store)))
    }

    async fn create(session: SessionHandle) -> Result<&'static str, SessionError> {
        session.set(COUNTER, &0u64).await?;
        Ok("created\n")
    }

    async fn read(session: SessionHandle) -> Result<String, SessionError> {
        let n: u64 = session.get(COUNTER).await?.unwrap_or(0);
        Ok(format!("counter {n}\n"))
    }

    async fn write(session: SessionHandle) -> Result<String, SessionError> {
        // cgi-session's read-modify-write (compare-and-swap, retried on a conflict).
        let n = session
            .update(|s| {
                let n = s.get::<u64>(COUNTER)?.unwrap_or(0) + 1;
                s.set(COUNTER, &n)?;
                Ok(n)
            })
            .await?;
        Ok(format!("counter {n}\n"))
    }
}

/// The tower-sessions app: Redis through tower-sessions-redis-store (fred).
mod ts {
    use axum::http::StatusCode;
    use tower_sessions::{Expiry, Session, SessionManagerLayer};
    use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};
    use tower_sessions_redis_store::RedisStore;

    use super::*;

    type Failed = (StatusCode, String);

    fn failed(e: impl std::fmt::Display) -> Failed {
        (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
    }

    pub async fn app(server: &str, pool: usize) -> Result<Router, Box<dyn std::error::Error>> {
        let config = Config::from_url(&format!("redis://{server}"))?;
        let pool = Pool::new(config, None, None, None, pool)?;
        pool.init().await?;
        let layer = SessionManagerLayer::new(RedisStore::new(pool))
            .with_secure(false)
            .with_expiry(Expiry::OnInactivity(time::Duration::seconds(IDLE_SECS)));
        Ok(Router::new()
            .route("/plain", get(plain))
            .route("/create", get(create))
            .route("/read", get(read))
            .route("/write", get(write))
            .layer(layer))
    }

    async fn create(session: Session) -> Result<&'static str, Failed> {
        session.insert(COUNTER, 0u64).await.map_err(failed)?;
        Ok("created\n")
    }

    async fn read(session: Session) -> Result<String, Failed> {
        let n: u64 = session.get(COUNTER).await.map_err(failed)?.unwrap_or(0);
        Ok(format!("counter {n}\n"))
    }

    async fn write(session: Session) -> Result<String, Failed> {
        // tower-sessions' way: a read, then a write of the whole record (no compare-and-swap).
        let n = session
            .get::<u64>(COUNTER)
            .await
            .map_err(failed)?
            .unwrap_or(0)
            + 1;
        session.insert(COUNTER, n).await.map_err(failed)?;
        Ok(format!("counter {n}\n"))
    }
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = parse_args();
    let app = match args.backend.as_str() {
        "cgi-session-memcached" => cgi::app(&args.server, args.pool).await,
        "tower-sessions-redis" => ts::app(&args.server, args.pool).await,
        _ => usage(),
    };
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {} at {}: {e}", args.backend, args.server);
            return std::process::ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("listening on http://{addr}/ ({})", args.backend),
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown())
    .await;
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
