//! CGI::Session reimagined in Rust: server-side sessions behind a modular API, so that an
//! application can "right-size" its storage (files on a laptop, memcached in production)
//! without changing its session code.
//!
//! This facade re-exports the session engine ([`cgi_session_core`]) and adds CGI::Session's
//! DSN strings: `driver:file;serializer:json;id:random` picks the implementations by name at
//! run time, with the driver's arguments in [`DriverArgs`] (CGI::Session's `\%args`).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use cgi_session::{store_from_dsn, DriverArgs};
//!
//! let dir = tempfile::tempdir().unwrap();
//! // CGI::Session->new("driver:file", $cgi, {Directory => $dir})
//! let store = store_from_dsn("driver:file", &DriverArgs::new().directory(dir.path()))?;
//! let mut session = store.new_session(None, None).await?;
//! session.set("greet_en", "Hi !")?;
//! session.flush().await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! The method-by-method mapping from CGI::Session is in [`cgi_session_core`]'s documentation.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

pub use cgi_session_core::*;

mod spec;
pub use spec::{OpenedDriver, StoreKind, StoreSpec};
#[cfg(feature = "memcache")]
pub use spec::{OpenedMemcache, DEFAULT_MEMCACHED};

/// The memcached driver and its bundled client (feature `memcache`, on by default).
#[cfg(feature = "memcache")]
pub use cgi_session_memcache as memcache;

/// The drivers a DSN can name: `memcache` keeps sessions under `sessions:<id>` (the Perl driver's
/// `CGI::Session::Driver::memcache`), `memcached` under the bare id (Debian's
/// `CGI::Session::Driver::memcached`).
#[cfg(feature = "memcache")]
pub const DRIVERS: &[&str] = &["file", "memory", "memcache", "memcached"];
/// The drivers a DSN can name.
#[cfg(not(feature = "memcache"))]
pub const DRIVERS: &[&str] = &["file", "memory"];
/// The serializers a DSN can name: `json`, and for sessions shared with Perl
/// CGI::Session's own `default` (Data::Dumper) and `storable` (Storable's `freeze`).
pub const SERIALIZERS: &[&str] = &["json", "default", "storable"];

/// CGI::Session's default serializer (Data::Dumper's format), re-exported.
pub use cgi_session_dumper::DataDumperSerializer;
/// How Perl's serializers write strings set from Rust (the DSN's `strings:bytes` /
/// `strings:characters`), re-exported.
pub use cgi_session_dumper::StringStyle;
/// CGI::Session's Storable serializer (`serializer:storable`), re-exported.
pub use cgi_session_storable::StorableSerializer;
/// The id generators a DSN can name (`md5` and `random` are the same secure generator).
pub const ID_GENERATORS: &[&str] = &["random", "md5", "incr", "static"];

/// Arguments for the driver and id generator a DSN names: CGI::Session's `\%args`
/// (`Directory`, `IDFile`, `IDInit`, `IDIncr`, ...).
///
/// ```
/// use cgi_session::DriverArgs;
///
/// let args = DriverArgs::new()
///     .directory("/var/lib/myapp/sessions")
///     .id_file("/var/lib/myapp/session-ids")
///     .id_init(1000);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct DriverArgs {
    #[cfg(feature = "memcache")]
    handle: Option<Arc<dyn memcache::MemcacheHandle>>,
    #[cfg(feature = "memcache")]
    prefix: Option<String>,
    #[cfg(feature = "memcache")]
    hashed_keys: bool,
    directory: Option<PathBuf>,
    capacity: Option<usize>,
    id_file: Option<PathBuf>,
    id_init: u64,
    id_incr: u64,
}

impl Default for DriverArgs {
    fn default() -> Self {
        Self {
            #[cfg(feature = "memcache")]
            handle: None,
            #[cfg(feature = "memcache")]
            prefix: None,
            #[cfg(feature = "memcache")]
            hashed_keys: false,
            directory: None,
            capacity: None,
            id_file: None,
            id_init: 0,
            id_incr: 1,
        }
    }
}

impl DriverArgs {
    /// No arguments: every driver's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// `Handle` of the `memcache` driver: any memcached client implementing
    /// [`MemcacheHandle`](memcache::MemcacheHandle), such as the bundled
    /// [`memcache::client::Client`] (the Perl driver's `{Handle => $memd}`).
    #[cfg(feature = "memcache")]
    pub fn handle(mut self, handle: impl memcache::MemcacheHandle) -> Self {
        self.handle = Some(Arc::new(handle));
        self
    }

    /// `Memcached` of the `memcached` driver (Debian's `{Memcached => $memd}`): the same
    /// argument as [`handle`](Self::handle), under the name that driver gives it. Either
    /// name works for either memcached driver.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use cgi_session::memcache::client::{Client, ClientConfig};
    /// use cgi_session::{store_from_dsn, DriverArgs};
    ///
    /// // my $memd = Cache::Memcached->new({servers => ['127.0.0.1:11211']});
    /// let memd = Client::connect(ClientConfig::new("127.0.0.1:11211")).await?;
    /// // CGI::Session->new("driver:memcached;serializer:default", $sid, {Memcached => $memd})
    /// let store = store_from_dsn(
    ///     "driver:memcached;serializer:default",
    ///     &DriverArgs::new().memcached(memd),
    /// )?;
    /// # let _ = store; Ok(()) }
    /// ```
    #[cfg(feature = "memcache")]
    pub fn memcached(self, handle: impl memcache::MemcacheHandle) -> Self {
        self.handle(handle)
    }

    /// Key prefix of the `memcache` driver (`sessions:` by default, the Perl driver's). The
    /// `memcached` driver has none (its keys are the bare ids) and refuses one.
    #[cfg(feature = "memcache")]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Hashed keys for the `memcache` driver (off by default; Perl cannot read them).
    #[cfg(feature = "memcache")]
    pub fn hashed_keys(mut self, on: bool) -> Self {
        self.hashed_keys = on;
        self
    }

    /// `Directory` of the `file` driver (default: the system's temp directory).
    pub fn directory(mut self, dir: impl Into<PathBuf>) -> Self {
        self.directory = Some(dir.into());
        self
    }

    /// How many sessions the `memory` driver holds.
    pub fn capacity(mut self, sessions: usize) -> Self {
        self.capacity = Some(sessions);
        self
    }

    /// `IDFile` of the `incr` id generator (required by it).
    pub fn id_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.id_file = Some(file.into());
        self
    }

    /// `IDInit` of the `incr` id generator (default 0).
    pub fn id_init(mut self, init: u64) -> Self {
        self.id_init = init;
        self
    }

    /// `IDIncr` of the `incr` id generator (default 1).
    pub fn id_incr(mut self, incr: u64) -> Self {
        self.id_incr = incr;
        self
    }
}

/// Errors from resolving a DSN: a bad string, or a driver that could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The DSN string is wrong or names something that does not exist.
    #[error(transparent)]
    Dsn(#[from] DsnError),
    /// The driver could not be set up (e.g. a missing directory).
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// memcached could not be reached, or refused the TLS handshake or the login (the message
    /// names the server).
    #[cfg(feature = "memcache")]
    #[error(transparent)]
    Memcached(#[from] memcache::client::Error),
}

impl OpenError {
    /// Whether the store could not be reached (a memcached server that does not answer): a
    /// web adapter answers 503 and a retry may succeed, unlike for a wrong DSN, directory,
    /// certificate or password.
    ///
    /// ```
    /// use cgi_session::{DriverError, OpenError};
    ///
    /// let down = DriverError::Unavailable { driver: "memcache", source: "connection refused".into() };
    /// assert!(OpenError::Driver(down).is_unavailable());
    /// let bad = cgi_session::store_from_dsn("driver:mysql", &Default::default()).unwrap_err();
    /// assert!(!bad.is_unavailable());
    /// ```
    pub fn is_unavailable(&self) -> bool {
        match self {
            OpenError::Dsn(_) => false,
            OpenError::Driver(e) => e.is_unavailable(),
            #[cfg(feature = "memcache")]
            OpenError::Memcached(e) => e.is_unavailable(),
        }
    }
}

fn unknown(kind: &'static str, name: &str, valid: &[&'static str]) -> DsnError {
    DsnError::UnknownName {
        kind,
        name: name.to_owned(),
        valid: valid.to_vec(),
    }
}

/// The driver a DSN names, set up with `args`.
///
/// # Errors
/// [`OpenError::Dsn`] for an unknown name (the message lists the valid ones),
/// [`OpenError::Driver`] when the driver cannot be set up.
pub fn driver_by_name(name: &str, args: &DriverArgs) -> Result<Arc<dyn Driver>, OpenError> {
    match name {
        "file" => {
            let driver = match &args.directory {
                Some(dir) => FileDriver::new(dir)?,
                None => FileDriver::in_temp_dir()?,
            };
            Ok(Arc::new(driver))
        }
        "memory" => Ok(Arc::new(match args.capacity {
            Some(n) => MemoryDriver::with_capacity(n),
            None => MemoryDriver::new(),
        })),
        #[cfg(feature = "memcache")]
        flavour @ ("memcache" | "memcached") => {
            let handle = args.handle.clone().ok_or_else(|| {
                DsnError::Argument(if flavour == "memcache" {
                    "driver:memcache needs a memcached client: pass it with DriverArgs::handle(client) (the Perl driver's {Handle => $memd}), or open the store with StoreSpec::servers"
                } else {
                    "driver:memcached needs a memcached client: pass it with DriverArgs::memcached(client) (Perl's {Memcached => $memd}), or open the store with StoreSpec::servers"
                }
                .to_owned())
            })?;
            Ok(Arc::new(memcache_driver(flavour, handle, args)?))
        }
        other => Err(unknown("driver", other, DRIVERS).into()),
    }
}

/// The memcached driver of `flavour` over `handle`: `memcache` keeps sessions under
/// `<prefix><id>` (Perl's `CGI::Session::Driver::memcache`), `memcached` under the bare id
/// (Debian's `CGI::Session::Driver::memcached`: the keys share the key space with everything
/// else in that memcached; see `MemcacheDriverBuilder::prefix`).
#[cfg(feature = "memcache")]
fn memcache_driver(
    flavour: &str,
    handle: Arc<dyn memcache::MemcacheHandle>,
    args: &DriverArgs,
) -> Result<memcache::MemcacheDriver, OpenError> {
    if flavour != "memcache" && flavour != "memcached" {
        return Err(DsnError::Argument(format!(
            "driver:{flavour} is not a memcached driver: use driver:memcache or driver:memcached"
        ))
        .into());
    }
    let prefix = key_prefix(flavour, args.prefix.as_deref())?;
    Ok(memcache::MemcacheDriver::builder_dyn(handle)
        .prefix(prefix)
        .hashed_keys(args.hashed_keys)
        .build()?)
}

/// The key prefix of a memcached flavour: `prefix` (default `sessions:`) for `memcache`; none
/// for `memcached`, which refuses one.
#[cfg(feature = "memcache")]
pub(crate) fn key_prefix(flavour: &str, prefix: Option<&str>) -> Result<String, OpenError> {
    match (flavour, prefix) {
        ("memcached", Some(p)) if !p.is_empty() => Err(DsnError::Argument(
            "driver:memcached stores sessions under their bare ids and takes no key prefix; use driver:memcache for prefixed keys"
                .to_owned(),
        )
        .into()),
        ("memcached", _) => Ok(String::new()),
        (_, Some(p)) => Ok(p.to_owned()),
        (_, None) => Ok(memcache::DEFAULT_PREFIX.to_owned()),
    }
}

/// The serializer a DSN names.
///
/// # Errors
/// [`DsnError::UnknownName`] listing the valid names.
pub fn serializer_by_name(name: &str) -> Result<Arc<dyn Serializer>, DsnError> {
    match name {
        "json" => Ok(Arc::new(JsonSerializer)),
        "default" => Ok(Arc::new(DataDumperSerializer::new())),
        "storable" => Ok(Arc::new(StorableSerializer::new())),
        other => Err(unknown("serializer", other, SERIALIZERS)),
    }
}

/// The string styles a DSN's `strings:` can name (for Perl's serializers).
pub const STRING_STYLES: &[&str] = &["bytes", "characters"];

/// The serializer a parsed DSN names, with its `strings:` style.
///
/// ```
/// use cgi_session::{serializer_for, Dsn};
///
/// let s = serializer_for(&Dsn::parse("serializer:default;strings:bytes")?)?;
/// assert_eq!(s.name(), "default");
/// assert!(serializer_for(&Dsn::parse("serializer:json;strings:bytes")?).is_err());
/// # Ok::<(), cgi_session::DsnError>(())
/// ```
///
/// # Errors
/// [`DsnError::UnknownName`] for an unknown serializer or style; [`DsnError::Argument`] for a
/// style given to `json` (it has only one way to write text).
pub fn serializer_for(dsn: &Dsn) -> Result<Arc<dyn Serializer>, DsnError> {
    let Some(strings) = dsn.strings.as_deref() else {
        return serializer_by_name(&dsn.serializer);
    };
    let style = match strings {
        "bytes" => StringStyle::Utf8Bytes,
        "characters" => StringStyle::Characters,
        other => return Err(unknown("strings", other, STRING_STYLES)),
    };
    match dsn.serializer.as_str() {
        "default" => Ok(Arc::new(
            DataDumperSerializer::new().with_string_style(style),
        )),
        "storable" => Ok(Arc::new(StorableSerializer::new().with_string_style(style))),
        "json" => Err(DsnError::Argument(
            "`strings:` applies to Perl's serializers (default, storable); JSON writes text one way: remove `strings:` or choose serializer:default"
                .to_owned(),
        )),
        other => Err(unknown("serializer", other, SERIALIZERS)),
    }
}

/// The id generator a DSN names. `md5` selects [`SecureRandomIds`], like `random`: the ids
/// have the same shape as CGI::Session's md5 ids but come from the OS CSPRNG.
///
/// # Errors
/// [`DsnError::UnknownName`] listing the valid names; [`DsnError::Argument`] when `incr` has
/// no `IDFile`.
pub fn id_generator_by_name(
    name: &str,
    args: &DriverArgs,
) -> Result<Arc<dyn IdGenerator>, DsnError> {
    match name {
        "random" | "md5" => Ok(Arc::new(SecureRandomIds)),
        "incr" => {
            let file = args.id_file.clone().ok_or_else(|| {
                DsnError::Argument(
                    "id:incr needs IDFile: call DriverArgs::id_file(path)".to_owned(),
                )
            })?;
            Ok(Arc::new(IncrIds::new(file, args.id_init, args.id_incr)))
        }
        "static" => Ok(Arc::new(StaticIds)),
        other => Err(unknown("id generator", other, ID_GENERATORS)),
    }
}

/// A store builder for a DSN string, for further options (expiry, ip matching, cookies...).
///
/// ```
/// use cgi_session::{builder_from_dsn, DriverArgs};
///
/// let store = builder_from_dsn("d:memory;id:md5", &DriverArgs::new())
///     .unwrap()
///     .default_expire(3600)
///     .ip_match(true)
///     .build();
/// assert_eq!(store.driver().name(), "memory");
///
/// let err = builder_from_dsn("driver:mysql", &DriverArgs::new()).unwrap_err();
/// assert!(err.to_string().contains("file, memory"));
/// ```
///
/// # Errors
/// See [`OpenError`].
pub fn builder_from_dsn(dsn: &str, args: &DriverArgs) -> Result<SessionStoreBuilder, OpenError> {
    let dsn = Dsn::parse(dsn)?;
    let serializer = serializer_for(&dsn)?;
    let ids = id_generator_by_name(&dsn.id, args)?;
    let driver = driver_by_name(&dsn.driver, args)?;
    Ok(SessionStore::builder_dyn(driver)
        .serializer_dyn(serializer)
        .id_generator_dyn(ids))
}

/// A store for a DSN string with default options: `CGI::Session->new($dsn, ..., \%args)`'s
/// set-up half. An empty DSN means `driver:file;serializer:json;id:random`.
///
/// # Errors
/// See [`OpenError`].
pub fn store_from_dsn(dsn: &str, args: &DriverArgs) -> Result<SessionStore, OpenError> {
    Ok(builder_from_dsn(dsn, args)?.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_the_valid_choices() {
        let cases = [
            ("driver:mysql", "file, memory"),
            ("driver:memcachedb", "file, memory"),
            ("serializer:yaml", "json, default"),
            ("id:uuid", "random, md5, incr, static"),
        ];
        for (dsn, listed) in cases {
            let msg = builder_from_dsn(dsn, &DriverArgs::new())
                .unwrap_err()
                .to_string();
            assert!(msg.contains(listed), "{dsn}: {msg}");
        }
    }

    #[test]
    fn incr_needs_an_id_file() {
        let err = builder_from_dsn("d:memory;id:incr", &DriverArgs::new()).unwrap_err();
        assert!(err.to_string().contains("IDFile"), "{err}");
    }

    #[test]
    fn file_driver_reports_a_missing_directory() {
        let args = DriverArgs::new().directory("/nonexistent/cgi-session-test");
        let err = builder_from_dsn("driver:file", &args).unwrap_err();
        assert!(matches!(err, OpenError::Driver(_)), "{err}");
    }

    #[tokio::test]
    async fn dsn_picks_each_implementation() {
        let dir = tempfile::tempdir().unwrap();
        let args = DriverArgs::new()
            .directory(dir.path())
            .id_file(dir.path().join("ids"))
            .id_init(41);
        let store = store_from_dsn("DR:File;SE:JSON;I:Incr", &args).unwrap();
        assert_eq!(store.driver().name(), "file");
        assert_eq!(store.serializer().name(), "json");
        let mut s = store.new_session(None, None).await.unwrap();
        assert_eq!(s.id().unwrap().as_str(), "42");
        s.flush().await.unwrap();
        assert!(dir.path().join("cgisess_42").exists());

        let store = store_from_dsn("", &DriverArgs::new()).unwrap();
        assert_eq!(store.driver().name(), "file");
        assert_eq!(store.id_generator().name(), "random");
        let perl = store_from_dsn("se:default;d:memory", &DriverArgs::new()).unwrap();
        assert_eq!(perl.serializer().name(), "default");
        let md5 = store_from_dsn("id:md5;d:memory", &DriverArgs::new()).unwrap();
        assert_eq!(md5.id_generator().name(), "random");
    }
}
