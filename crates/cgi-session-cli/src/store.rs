//! The store the command line names: a [`StoreSpec`] made of the global options, opened.

use std::sync::Arc;

use cgi_session::memcache::client::{Distribution, TlsConfig};
use cgi_session::{
    Driver, DriverError, OpenError, OpenedDriver, OpenedMemcache, StoreKind, StoreSpec,
};

use crate::cli::{CliError, Global};
use crate::util;

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

/// The store the global options name (`--replicas` aside: only the session commands apply
/// it), and what kind it is. `driver:memory` is refused: it is out of this tool's reach.
pub(crate) fn spec(g: &Global) -> Result<(StoreSpec, StoreKind), CliError> {
    let distribution = match g.distribution.as_str() {
        "modula" => Distribution::Modula,
        _ => Distribution::Ketama,
    };
    let mut spec = StoreSpec::new(g.dsn.as_str())
        .servers(&g.servers)
        .distribution(distribution)
        .timeout(g.timeout)
        .pool_size(1)
        .hashed_keys(g.hashed_keys);
    if let Some(dir) = &g.dir {
        spec = spec.directory(dir);
    }
    if let Some(prefix) = &g.prefix {
        spec = spec.prefix(prefix);
    }
    if let Some(ca) = &g.tls_ca {
        let mut tls = TlsConfig::new().ca_file(ca);
        if let Some(name) = &g.tls_server_name {
            tls = tls.server_name(name.clone());
        }
        if let (Some(cert), Some(key)) = (&g.tls_cert, &g.tls_key) {
            tls = tls.client_cert(cert, key);
        }
        spec = spec.tls(tls);
    }
    if let (Some(user), Some(password)) = (&g.auth_user, password(g)?) {
        spec = spec.auth(user, password);
    }
    match spec.kind().map_err(open_error)? {
        StoreKind::Memory => Err(CliError::Usage(
            "driver:memory keeps sessions inside one process, out of this tool's reach; use driver:file, driver:memcache or driver:memcached".into(),
        )),
        kind => Ok((spec, kind)),
    }
}

/// A store that could not be opened: the command line's fault (exit 2) or the store's (1).
pub(crate) fn open_error(e: OpenError) -> CliError {
    match e {
        OpenError::Dsn(e) => CliError::Usage(e.to_string()),
        OpenError::Driver(e @ DriverError::Config { .. }) => CliError::Usage(e.to_string()),
        e => CliError::Failed(e.to_string()),
    }
}

/// The store the session commands (ls, show, rm, purge) work on, opened.
pub(crate) struct Store {
    pub(crate) opened: OpenedDriver,
    /// What opened it (for drivers over other handles of the same servers).
    pub(crate) spec: StoreSpec,
    kind: StoreKind,
}

impl Store {
    /// Opens the store; a pool with servers down is opened with the others, and a warning
    /// names each one that is down.
    pub(crate) async fn open(g: &Global) -> Result<Store, CliError> {
        let (mut spec, kind) = spec(g)?;
        if let Some(n) = g.replicas {
            spec = spec.replicas(n);
        }
        let opened = spec.open().await.map_err(open_error)?;
        if let OpenedDriver::Memcache(m) = &opened {
            let total = m.client.as_ref().map_or(0, |c| c.servers().len());
            for (server, e) in &m.down {
                eprintln!(
                    "warning: memcached at {} is down ({}); going on with {} of {total} servers",
                    util::escape(server),
                    util::escape_message(&e.to_string()),
                    total - m.down.len(),
                );
            }
        }
        Ok(Store { opened, spec, kind })
    }

    pub(crate) fn driver(&self) -> Arc<dyn Driver> {
        self.opened.driver()
    }

    /// The memcached side, for memcached stores.
    pub(crate) fn memcache(&self) -> Option<&OpenedMemcache> {
        match &self.opened {
            OpenedDriver::Memcache(m) => Some(m),
            _ => None,
        }
    }

    /// Keys are bare ids (driver:memcached): they share the server with other applications.
    pub(crate) fn bare_ids(&self) -> bool {
        matches!(&self.kind, StoreKind::Memcache { prefix, .. } if prefix.is_empty())
    }

    /// `directory /dir` or `memcached host:port,host:port`, for messages.
    pub(crate) fn describe(&self) -> String {
        describe(&self.kind)
    }
}

/// `directory /dir` or `memcached host:port,host:port`, for messages.
pub(crate) fn describe(kind: &StoreKind) -> String {
    match kind {
        StoreKind::File { directory } => format!("directory {}", directory.display()),
        StoreKind::Memcache { servers, .. } => format!("memcached {}", servers.join(",")),
        _ => "memory".to_owned(),
    }
}
