//! The command line, the store it opens, and the server loop.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use cgi_session::{
    parse_expire, CookieConfig, LockMode, OpenError, OpenedDriver, OpenedMemcache, SessionStore,
    StoreKind, StoreSpec,
};
use cgi_session_tower::{ForwardedHeader, Key, SessionLayer, SigningKeys, TrustedProxies};
use clap::Parser;

use crate::server::{default_max_connections, open_file_limit, ServerLimits};

/// The demo's command line.
///
/// ```
/// use clap::Parser;
/// let args = cgi_session_demo::Args::parse_from([
///     "cgi-session-demo", "--dsn", "driver:memcache", "--servers", "127.0.0.1:11211",
/// ]);
/// assert_eq!(args.listen.to_string(), "127.0.0.1:8080");
/// assert_eq!(args.expire, "+30m");
/// ```
#[derive(Debug, Clone, Parser)]
#[command(
    name = "cgi-session-demo",
    version,
    about = "The cgi-session demo web app: greet_en, a visit counter, login/logout, session metadata",
    long_about = "The cgi-session demo web app: the Perl driver's greet_en, a visit counter, login/logout \
(with session id regeneration) and the session's metadata.\n\n\
With no options it keeps sessions in files in a fresh temporary directory (removed at exit) and \
listens on 127.0.0.1:8080. Use --dsn 'driver:memcache' --servers 127.0.0.1:11211 for memcached."
)]
#[non_exhaustive]
pub struct Args {
    /// Address to listen on. Port 0 picks a free port. Only loopback unless you give another
    /// address explicitly.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// CGI::Session DSN: driver:file (default), driver:memory, driver:memcache (keys
    /// `sessions:<id>`) or driver:memcached (keys are the bare ids, as Debian's Perl
    /// CGI::Session::Driver::memcached stores them), optionally with ;serializer:json;id:random.
    #[arg(long)]
    pub dsn: Option<String>,

    /// memcached servers for driver:memcache or driver:memcached, host:port, comma-separated (default
    /// 127.0.0.1:11211; several form a pool, keys spread with ketama). Giving it implies
    /// driver:memcache when --dsn is not given.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT]")]
    pub servers: Option<String>,

    /// Idle timeout of the sessions, CGI::Session syntax (+30m, 2h, 3600; 0 for none).
    #[arg(long, default_value = "+30m", allow_hyphen_values = true)]
    pub expire: String,

    /// Directory of driver:file (default: a fresh temporary directory, removed at exit).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Mark the cookie Secure (only sent over HTTPS: use behind a TLS proxy).
    #[arg(long)]
    pub secure: bool,

    /// Sign the cookie with a key made at start-up (sessions do not survive a restart then).
    /// Implied by --cookie-key-file.
    #[arg(long)]
    pub signed: bool,

    /// Ip matching (CGI::Session's -ip_match): a session is given only to the client address
    /// it was created from; another address gets a fresh session.
    #[arg(long)]
    pub ip_match: bool,

    /// Reverse proxies whose forwarding header is believed (for ip matching and the session's
    /// remote_addr): addresses and CIDR blocks, comma-separated (e.g. 127.0.0.1,::1 for
    /// nginx on the same host). Default: none, the connection's address is the client's.
    #[arg(long, value_name = "ADDR[/BITS],...", default_value = "", hide_default_value = true, value_parser = parse_trusted_proxies)]
    pub trusted_proxies: TrustedProxies,

    /// The header the trusted proxies write the client address in: x-forwarded-for or
    /// forwarded (RFC 7239). The other one is ignored.
    #[arg(long, default_value = "x-forwarded-for", value_parser = parse_forwarded_header)]
    pub forwarded_header: ForwardedHeader,

    /// Sign the cookie with the key in this file (at least 64 bytes, e.g. made with
    /// `openssl rand -base64 64 > key`; trailing whitespace is ignored). Sessions then survive
    /// restarts, and several demos sharing a store and the key share sessions.
    #[arg(long, value_name = "FILE")]
    pub cookie_key_file: Option<PathBuf>,

    /// A retired signing key (repeatable, newest first): cookies it signed are still
    /// accepted, and sent again signed with --cookie-key-file's key (key rotation).
    #[arg(long, value_name = "FILE", requires = "cookie_key_file")]
    pub previous_cookie_key_file: Vec<PathBuf>,

    /// Send browser-session cookies (no Max-Age or Expires: the browser forgets the session
    /// when it closes); the stored session still ends after --expire idle time.
    #[arg(long)]
    pub browser_session_cookies: bool,

    /// End every session this long after it was created, however active (an absolute
    /// expiry on top of --expire), e.g. 12h.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    pub max_lifetime: Option<Duration>,

    /// Session lock: off (requests of one session run at once; saves are merged), every-request
    /// (each request holds the session's lock until its save, as PHP does), on-demand.
    #[arg(long, default_value = "off", value_parser = parse_lock_mode)]
    pub lock: LockMode,

    /// How long a session lock lasts at most (a crashed holder frees it then), e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub lock_lease: Duration,

    /// How long a request waits for a session lock before answering 503, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub lock_wait: Duration,

    /// How long a save keeps retrying while other processes write the same session, before
    /// answering 503, e.g. 5s.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub save_deadline: Duration,

    /// How long a client has to send a complete request header (from the connection's opening
    /// for its first request, from the first byte for later ones); then the connection is
    /// closed.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = positive_duration, help_heading = "Server limits")]
    pub header_timeout: Duration,

    /// How long a request body may take to arrive in full, from its header; then the request
    /// is answered 408 and the connection closed.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = positive_duration, help_heading = "Server limits")]
    pub body_timeout: Duration,

    /// How long a keep-alive connection may stay silent between requests before it is closed.
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = positive_duration, help_heading = "Server limits")]
    pub idle_timeout: Duration,

    /// Open connections at most. Past it a new connection gets a 503 (Retry-After: 1) and is
    /// closed at once; refusals are logged as one summary line per --log-interval. Default:
    /// half of (the open-file limit minus 32), at most 10000 (10000 when the limit is
    /// unknown).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Server limits")]
    pub max_connections: Option<u32>,

    /// On SIGTERM or Ctrl-C: stop accepting, close idle connections, let requests in flight
    /// finish for at most this long, then close what is left and exit.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = humantime::parse_duration, help_heading = "Server limits")]
    pub shutdown_deadline: Duration,

    /// How often refused and timed-out connections are summarised in the log (one line per
    /// kind, only when there were some).
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = positive_duration, help_heading = "Server limits")]
    pub log_interval: Duration,
}

impl Args {
    /// The session layer over `store` with the cookie signing the options ask for: the key
    /// of --cookie-key-file (and the retired ones of --previous-cookie-key-file), or a key
    /// made now with --signed, or none.
    ///
    /// ```
    /// use clap::Parser;
    /// use cgi_session::{MemoryDriver, SessionStore};
    ///
    /// let args = cgi_session_demo::Args::parse_from(["cgi-session-demo", "--cookie-key-file", "/nonexistent"]);
    /// let store = SessionStore::builder(MemoryDriver::new()).build();
    /// let err = args.session_layer(store).unwrap_err().to_string();
    /// assert!(err.contains("/nonexistent"), "{err}");
    /// ```
    ///
    /// # Errors
    /// [`DemoError::CookieKey`] when a key file cannot be read or is too short.
    pub fn session_layer(&self, store: SessionStore) -> Result<SessionLayer, DemoError> {
        let mut layer = SessionLayer::new(store);
        layer = match &self.cookie_key_file {
            Some(path) => {
                let mut keys = SigningKeys::new(read_key(path)?);
                for older in &self.previous_cookie_key_file {
                    keys = keys.previous(read_key(older)?);
                }
                layer.signing_keys(keys)
            }
            None if self.signed => layer.signed(Key::generate()),
            None => layer,
        };
        if !self.trusted_proxies.is_empty() {
            let proxies = self.trusted_proxies.clone().header(self.forwarded_header);
            let nets: Vec<String> = proxies.nets().iter().map(ToString::to_string).collect();
            tracing::info!(
                "client addresses: {} believed from {}",
                proxies.forwarded_header().name(),
                nets.join(", ")
            );
            layer = layer.trusted_proxies(proxies);
        }
        Ok(layer)
    }

    /// The server limits the options give.
    ///
    /// ```
    /// use clap::Parser;
    /// let args = cgi_session_demo::Args::parse_from(["cgi-session-demo", "--max-connections", "4"]);
    /// let limits = args.server_limits();
    /// assert_eq!(limits.max_connections, 4);
    /// assert_eq!(limits.body_timeout, std::time::Duration::from_secs(30));
    /// ```
    pub fn server_limits(&self) -> ServerLimits {
        ServerLimits {
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self
                .max_connections
                .map_or_else(default_max_connections, |max| {
                    usize::try_from(max).unwrap_or(usize::MAX)
                }),
            shutdown_deadline: self.shutdown_deadline,
            log_interval: self.log_interval,
        }
    }
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_trusted_proxies(s: &str) -> Result<TrustedProxies, String> {
    TrustedProxies::parse(s).map_err(|e| e.to_string())
}

fn parse_forwarded_header(s: &str) -> Result<ForwardedHeader, String> {
    match s.to_ascii_lowercase().as_str() {
        "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
        "forwarded" => Ok(ForwardedHeader::Forwarded),
        _ => Err(format!("{s:?}: expected x-forwarded-for or forwarded")),
    }
}

/// A signing key from a file: its bytes without trailing whitespace, at least 64 of them.
fn read_key(path: &std::path::Path) -> Result<Key, DemoError> {
    let failed = |message: String| DemoError::CookieKey {
        path: path.to_owned(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    Key::try_from(&bytes[..end]).map_err(|_| {
        failed(format!(
            "it holds {end} bytes and a key needs at least 64: make one with `openssl rand -base64 64 > {}`",
            path.display()
        ))
    })
}

fn parse_lock_mode(s: &str) -> Result<LockMode, String> {
    LockMode::parse(s).ok_or_else(|| format!("{s:?}: expected off, every-request or on-demand"))
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The DSN or the driver set-up is wrong.
    #[error("cannot open the session store: {0}")]
    Store(#[from] cgi_session::OpenError),
    /// `--expire` is not a CGI::Session time.
    #[error("--expire: {0}")]
    Expire(#[from] cgi_session::ExpireParseError),
    /// memcached could not be reached (no server of `--servers` answered), or refused the TLS
    /// handshake or the login.
    #[error("memcached at {server} is not usable: {message}\nStart it (e.g. `memcached -l 127.0.0.1 -p 11211`) or point --servers at a running one; or drop --dsn/--servers to use the embedded file store.")]
    Memcached {
        /// The server given.
        server: String,
        /// What failed.
        message: String,
    },
    /// The options do not fit together.
    #[error("{0}")]
    Usage(String),
    /// A cookie signing key file cannot be used.
    #[error("cookie key file {}: {message}", path.display())]
    CookieKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}; pick another address with --listen (port 0 picks a free port)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A temporary directory could not be made or the server failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A store opened from the command line, and what it is, for the start-up message.
#[derive(Debug)]
#[non_exhaustive]
pub struct OpenedStore {
    /// The store.
    pub store: SessionStore,
    /// Where the sessions live, in words.
    pub description: String,
    /// The temporary directory of the default file store, removed when this is dropped.
    pub temp_dir: Option<tempfile::TempDir>,
}

/// Opens the store the options describe: the file driver in a fresh temporary directory by
/// default; for `driver:memcache`, the bundled client over `--servers` (a pool when several),
/// connected at once ([`StoreSpec`]).
///
/// # Errors
/// [`DemoError`] with what to do: a bad DSN or expiry, a dead memcached, options that do not
/// fit together.
pub async fn open_store(args: &Args) -> Result<OpenedStore, DemoError> {
    let dsn_text = match (&args.dsn, &args.servers) {
        (Some(dsn), _) => dsn.clone(),
        (None, Some(_)) => "driver:memcache".to_owned(),
        (None, None) => "driver:file".to_owned(),
    };
    let expire = parse_expire(&args.expire)?;
    let mut spec = StoreSpec::new(dsn_text.as_str()).timeout(Duration::from_secs(1));
    if let Some(servers) = &args.servers {
        spec = spec.servers(servers.split(','));
    }
    let mut temp_dir = None;
    let description = match spec.kind()? {
        StoreKind::Memcache { servers, prefix } => {
            if args.dir.is_some() {
                return Err(DemoError::Usage(format!(
                    "--dir is for driver:file; {dsn_text} keeps sessions in memcached"
                )));
            }
            let keys = if prefix.is_empty() {
                "keys: the bare session ids".to_owned()
            } else {
                format!("keys: {prefix}<id>")
            };
            format!("memcached at {} ({keys})", servers.join(", "))
        }
        StoreKind::File { .. } => {
            no_servers(args, &dsn_text)?;
            let dir = match &args.dir {
                Some(dir) => dir.clone(),
                None => {
                    let t = tempfile::Builder::new()
                        .prefix("cgi-session-demo-")
                        .tempdir()?;
                    let path = t.path().to_path_buf();
                    temp_dir = Some(t);
                    path
                }
            };
            spec = spec.directory(&dir);
            format!("files in {}", dir.display())
        }
        _ => {
            no_servers(args, &dsn_text)?;
            "the memory driver".to_owned()
        }
    };
    let opened = spec.open().await.map_err(|e| match e {
        OpenError::Memcached(e) => DemoError::Memcached {
            server: args
                .servers
                .clone()
                .unwrap_or_else(|| cgi_session::DEFAULT_MEMCACHED.to_owned()),
            message: e.to_string(),
        },
        e => e.into(),
    })?;
    if let OpenedDriver::Memcache(m) = &opened {
        warn_down(m);
        tracing::info!("{description}: connected");
    }
    let store = spec
        .builder_over(&opened)?
        .default_expire(expire)
        .ip_match(args.ip_match)
        .browser_session_cookies(args.browser_session_cookies)
        .max_lifetime(args.max_lifetime.unwrap_or_default())
        .lock_mode(args.lock)
        .lock_lease(args.lock_lease)
        .lock_wait(args.lock_wait)
        .save_deadline(args.save_deadline)
        .cookie(CookieConfig {
            secure: args.secure,
            ..CookieConfig::default()
        })
        .build();
    Ok(OpenedStore {
        store,
        description,
        temp_dir,
    })
}

/// `--servers` is for the memcached drivers only.
fn no_servers(args: &Args, dsn: &str) -> Result<(), DemoError> {
    if args.servers.is_some() {
        return Err(DemoError::Usage(format!(
            "--servers is for driver:memcache or driver:memcached, but the DSN is {dsn}"
        )));
    }
    Ok(())
}

/// Names in the log each server of the pool that did not answer: the demo starts without
/// them; their sessions get 503 until they are back, new sessions go to the others.
fn warn_down(m: &OpenedMemcache) {
    let total = m.client.as_ref().map_or(0, |c| c.servers().len());
    for (server, error) in &m.down {
        tracing::warn!(
            "memcached at {server} is down ({error}); starting with {} of {total} servers: its sessions get 503 until it is back, new sessions go to the others",
            total - m.down.len(),
        );
    }
}

/// Runs the demo: opens the store, listens, prints where to point the browser, serves until
/// Ctrl-C or SIGTERM (then drains for at most `--shutdown-deadline`).
///
/// # Errors
/// See [`DemoError`].
pub async fn run(args: Args) -> Result<(), DemoError> {
    let opened = open_store(&args).await?;
    let layer = args.session_layer(opened.store.clone())?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| DemoError::Listen {
            addr: args.listen,
            source,
        })?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        tracing::warn!("listening on {addr}, which is reachable from other machines");
    }
    let shown = if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "cgi-session demo: sessions in {}", opened.description)?;
    writeln!(out, "Open http://{shown}/ in your browser (Ctrl-C to stop)")?;
    out.flush()?;
    drop(out);
    let limits = args.server_limits();
    let files = open_file_limit();
    tracing::info!(
        "limits: header {}, body {}, idle {}, {} connections at most (open-file limit {}), shutdown deadline {}",
        humantime::format_duration(limits.header_timeout),
        humantime::format_duration(limits.body_timeout),
        humantime::format_duration(limits.idle_timeout),
        limits.max_connections,
        files.map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
        humantime::format_duration(limits.shutdown_deadline),
    );
    if let Some(files) = files {
        if limits.max_connections as u64 > files.saturating_sub(16) {
            tracing::warn!(
                "--max-connections {} does not fit the open-file limit of {files}: accepts will fail before the limit is reached (raise `ulimit -n` or lower --max-connections)",
                limits.max_connections
            );
        }
    }
    crate::serve_with(
        listener,
        crate::app_with_layer(layer),
        limits,
        shutdown_signal(),
    )
    .await?;
    drop(opened);
    Ok(())
}

/// Ctrl-C or SIGTERM: stop serving (and remove the temporary directory).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
