//! Which store the command line names, opened.

use std::path::PathBuf;
use std::sync::Arc;

use cgi_session::memcache::client::{Client, ClientConfig, Distribution, TlsConfig};
use cgi_session::memcache::{MemcacheDriver, ReplicatedHandle};
use cgi_session::{Driver, Dsn, FileDriver};

use crate::{util, CliError, Global};

/// The store kind of the DSN.
pub(crate) enum Target {
    /// `driver:file` in this directory.
    File(PathBuf),
    /// `driver:memcache` or `driver:memcached` on these servers.
    Memcache(Vec<String>),
}

/// The key prefix the DSN and `--prefix` give: `sessions:` for driver:memcache unless
/// `--prefix` says otherwise, none for driver:memcached (bare ids), which refuses one.
pub(crate) fn key_prefix(global: &Global) -> Result<String, CliError> {
    let dsn = Dsn::parse(&global.dsn).map_err(|e| CliError::Usage(e.to_string()))?;
    match (dsn.driver.as_str(), &global.prefix) {
        ("memcached", Some(p)) if !p.is_empty() => Err(CliError::Usage(
            "driver:memcached keeps sessions under their bare ids and has no key prefix; drop --prefix, or use driver:memcache".into(),
        )),
        ("memcached", _) => Ok(String::new()),
        (_, Some(p)) => Ok(p.clone()),
        (_, None) => Ok(cgi_session::memcache::DEFAULT_PREFIX.to_owned()),
    }
}

/// Resolves the DSN and the options naming the store.
pub(crate) fn target(global: &Global) -> Result<Target, CliError> {
    let dsn = Dsn::parse(&global.dsn).map_err(|e| CliError::Usage(e.to_string()))?;
    match dsn.driver.as_str() {
        "file" => Ok(Target::File(
            global.dir.clone().unwrap_or_else(std::env::temp_dir),
        )),
        "memcache" | "memcached" => {
            key_prefix(global)?;
            let servers: Vec<String> = global
                .servers
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            if servers.is_empty() {
                return Err(CliError::Usage(
                    "--servers is empty: give at least one memcached host:port".into(),
                ));
            }
            Ok(Target::Memcache(servers))
        }
        "memory" => Err(CliError::Usage(
            "driver:memory keeps sessions inside one process, out of this tool's reach; use driver:file, driver:memcache or driver:memcached".into(),
        )),
        other => Err(CliError::Usage(format!(
            "unknown driver {other:?}; this tool works with driver:file, driver:memcache and driver:memcached"
        ))),
    }
}

/// The memcached password for `--auth-user`, from `MEMCACHED_PASSWORD` (checked before any
/// command runs, so that a missing one is a usage error).
pub(crate) fn password(global: &Global) -> Result<Option<String>, CliError> {
    if global.auth_user.is_none() {
        return Ok(None);
    }
    std::env::var("MEMCACHED_PASSWORD").map(Some).map_err(|_| {
        CliError::Usage(
            "--auth-user needs the password in the MEMCACHED_PASSWORD environment variable".into(),
        )
    })
}

/// A client for `servers`: one, or a pool that places keys as the application's client does.
pub(crate) async fn connect(global: &Global, servers: &[String]) -> Result<Client, CliError> {
    let distribution = match global.distribution.as_str() {
        "modula" => Distribution::Modula,
        _ => Distribution::Ketama,
    };
    let mut config = ClientConfig::pool(servers.iter().map(String::as_str))
        .distribution(distribution)
        .pool_size(1)
        .timeout(global.timeout)
        .connect_timeout(global.timeout);
    if let Some(ca) = &global.tls_ca {
        let mut tls = TlsConfig::new().ca_file(ca);
        if let Some(name) = &global.tls_server_name {
            tls = tls.server_name(name.clone());
        }
        if let (Some(cert), Some(key)) = (&global.tls_cert, &global.tls_key) {
            tls = tls.client_cert(cert, key);
        }
        config = config.tls(tls);
    }
    if let (Some(user), Some(password)) = (&global.auth_user, password(global)?) {
        config = config.auth(user.clone(), password);
    }
    match Client::connect(config.clone()).await {
        Ok(client) => Ok(client),
        // Part of a pool down: say which, and work with the others (a session on a down
        // server then fails with its name; listing keys needs every server).
        Err(e) if e.is_unavailable() && servers.len() > 1 => {
            let client = Client::connect(config.lazy(true))
                .await
                .map_err(|e| CliError::Failed(e.to_string()))?;
            let answers = client.version_per_server().await;
            let down: Vec<&(String, _)> = answers.iter().filter(|(_, a)| a.is_err()).collect();
            if down.len() == servers.len() {
                return Err(CliError::Failed(e.to_string()));
            }
            for (server, answer) in &down {
                if let Err(e) = answer {
                    eprintln!(
                        "warning: memcached at {} is down ({}); going on with {} of {} servers",
                        util::escape(server),
                        util::escape_message(&e.to_string()),
                        servers.len() - down.len(),
                        servers.len()
                    );
                }
            }
            Ok(client)
        }
        Err(e) => Err(CliError::Failed(e.to_string())),
    }
}

/// The memcache driver over `servers` with the command line's prefix and key scheme.
pub(crate) async fn memcache_driver(
    global: &Global,
    servers: &[String],
) -> Result<MemcacheDriver, CliError> {
    let client = connect(global, servers).await?;
    driver_over(global, MemcacheDriver::builder(client))
}

fn driver_over(
    global: &Global,
    builder: cgi_session::memcache::MemcacheDriverBuilder,
) -> Result<MemcacheDriver, CliError> {
    builder
        .prefix(key_prefix(global)?)
        .hashed_keys(global.hashed_keys)
        .build()
        .map_err(|e| CliError::Usage(e.to_string()))
}

/// The sessions in memcached: the driver the commands use, and what they need besides.
pub(crate) struct Memcache {
    /// Through a [`ReplicatedHandle`] with `--replicas`, else over the plain client.
    pub(crate) driver: MemcacheDriver,
    /// The pool, for reading single servers.
    pub(crate) client: Client,
    /// `--replicas`' handle.
    pub(crate) replicated: Option<ReplicatedHandle>,
    /// `host:port,host:port`, for messages.
    pub(crate) servers: String,
    /// Keys are bare ids (driver:memcached): they share the server with other applications.
    pub(crate) bare_ids: bool,
    global_prefix: String,
    hashed: bool,
}

impl Memcache {
    /// A driver with this store's key scheme over a [`ReplicatedHandle`] keeping `copies`
    /// copies of each session, and the handle.
    pub(crate) fn replicated_driver(
        &self,
        copies: usize,
    ) -> Result<(MemcacheDriver, ReplicatedHandle), CliError> {
        let handle = ReplicatedHandle::new(self.client.clone(), copies.saturating_sub(1));
        let driver = MemcacheDriver::builder(handle.clone())
            .prefix(self.global_prefix.clone())
            .hashed_keys(self.hashed)
            .build()
            .map_err(|e| CliError::Usage(e.to_string()))?;
        Ok((driver, handle))
    }
}

/// The file driver over the directory.
pub(crate) fn file_driver(dir: &std::path::Path) -> Result<FileDriver, CliError> {
    FileDriver::new(dir).map_err(|e| CliError::Failed(e.to_string()))
}

/// The store the session commands (ls, show, rm, purge) work on.
pub(crate) enum Store {
    File(FileDriver),
    Memcache(Box<Memcache>),
}

impl Store {
    pub(crate) async fn open(global: &Global) -> Result<Store, CliError> {
        match target(global)? {
            Target::File(dir) => Ok(Store::File(file_driver(&dir)?)),
            Target::Memcache(servers) => {
                let client = connect(global, &servers).await?;
                let replicated = global
                    .replicas
                    .map(|n| ReplicatedHandle::new(client.clone(), n));
                let driver = match &replicated {
                    Some(handle) => driver_over(global, MemcacheDriver::builder(handle.clone()))?,
                    None => driver_over(global, MemcacheDriver::builder(client.clone()))?,
                };
                let global_prefix = key_prefix(global)?;
                Ok(Store::Memcache(Box::new(Memcache {
                    driver,
                    client,
                    replicated,
                    servers: servers.join(","),
                    bare_ids: global_prefix.is_empty(),
                    global_prefix,
                    hashed: global.hashed_keys,
                })))
            }
        }
    }

    pub(crate) fn driver(&self) -> Arc<dyn Driver> {
        match self {
            Store::File(d) => Arc::new(d.clone()),
            Store::Memcache(m) => Arc::new(m.driver.clone()),
        }
    }

    /// `file /dir` or `memcached host:port`, for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Store::File(d) => format!("directory {}", d.dir().display()),
            Store::Memcache(m) => format!("memcached {}", m.servers),
        }
    }
}
