//! [`MemcacheDriver`]: sessions in memcached through any [`MemcacheHandle`].

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cgi_session_core::{
    Clock, Driver, DriverError, ListedSession, Loaded, LockAttempt, LockToken, SessionId,
    StoreMode, StoreOutcome, SystemClock,
};
use cgi_session_memcache_client::memcached_exptime;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::handle::{DeleteIfOutcome, HandleError, MemcacheHandle, NAME};

/// The Perl driver's key prefix: sessions live under `sessions:<id>`.
pub const DEFAULT_PREFIX: &str = "sessions:";

/// Lifetime of sessions that have no idle timeout (memcached would otherwise keep them until
/// evicted, as the Perl driver does): one day.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(86_400);

/// Client flag marking a gzip-compressed value: the bit Perl's Cache::Memcached uses
/// (`F_COMPRESS`), so that Perl readers decompress it too.
pub const FLAG_COMPRESSED: u32 = 2;

/// Item size limit assumed when the server does not say (memcached's default, 1 MiB).
pub const DEFAULT_ITEM_SIZE_MAX: u64 = 1024 * 1024;

/// memcached's per-item overhead that counts against `item_size_max` besides key and value
/// (item header, CAS, suffix): a conservative allowance.
const ITEM_OVERHEAD: u64 = 64;

/// Largest value accepted when decompressing, against zip bombs.
const MAX_DECOMPRESSED: u64 = 64 * 1024 * 1024;

/// What session lock keys start with, before the session's own key: `lock:sessions:<id>`
/// (not under the session prefix, so listing sessions never sees locks).
pub const LOCK_KEY_PREFIX: &str = "lock:";

/// What the health probe's keys start with after the prefix (`<prefix>__cgi_session_probe__<hex>`).
/// [`check`](MemcacheDriver::check) deletes its key right after; one left behind (a probe
/// cut short) expires within 30 s, and listing never reports it.
const PROBE_MARKER: &str = "__cgi_session_probe__";

/// The value of a lock item: it only has to exist (the holder's token is its CAS value).
const LOCK_VALUE: &[u8] = b"locked";

/// Shortest lease sent to memcached, whose expiry times are whole seconds.
const MIN_LEASE: Duration = Duration::from_secs(1);

const NO_DELETE_IF: &str = "session locks with this memcached client (it has no compare-and-delete, e.g. the memcache crate or servers spoken to in the text protocol; releasing a lock without one would let a request whose lease ended free the lock another request took since)";

const NO_CAS: &str = "session locks with this memcached server or client (it returned no CAS value for the lock item, e.g. memcached run with -C; releasing a lock without comparing it would let a request whose lease ended free the lock another request took since)";

/// The memcached driver: Perl's `CGI::Session::Driver::memcache` (`driver:memcache`), done properly.
///
/// - Keys are `sessions:<id>` by default (the Perl driver's scheme, so Perl apps share sessions),
///   with a configurable prefix, or `<prefix><sha256(id) in hex>` with
///   [`MemcacheDriverBuilder::hashed_keys`] (a dump of the server then yields no usable
///   cookie). Keys are valid by construction (see [`MemcacheDriver::key_for`]) and checked
///   by the client before anything is sent.
/// - Items get real TTLs: the session's idle timeout (plus the store's grace), or
///   [`DEFAULT_LIFETIME`] for sessions without one; TTLs over 30 days are sent as absolute
///   Unix times, as memcached requires.
/// - A read never changes an item's TTL by default: an item written by another program
///   (a Perl application sharing the sessions, perhaps in a format this store cannot decode)
///   keeps the lifetime that program gave it. The session layer keeps sessions in use alive
///   by writing back their access time once half of their idle timeout has passed. Where no
///   other program shares the keys, [`MemcacheDriverBuilder::refresh_ttl_on_read`] makes
///   every read slide the TTL in the same round trip (`mg <key> v c f T<ttl>`).
/// - Creation uses `add`, saves use CAS, so concurrent updates are detected.
/// - A dead or hung server is an error naming it ([`DriverError::Unavailable`]), never an
///   empty session. A save or delete that was sent and then got no reply (timeout, lost
///   connection) is [`DriverError::OutcomeUnknown`]: memcached may still have applied it.
/// - Sessions larger than the server's item size limit get [`DriverError::TooLarge`] before
///   anything is sent; values above a threshold can be gzip-compressed.
/// - Session locks ([`Driver::try_lock`]): an `add` of the lock item
///   ([`MemcacheDriver::lock_key_for`]) whose exptime is the lease, released with a
///   compare-and-delete on its CAS value, so a request whose lease ended never frees another
///   request's lock. Handles without compare-and-delete get [`DriverError::Unsupported`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use cgi_session_core::SessionStore;
/// use cgi_session_memcache::MemcacheDriver;
/// use cgi_session_memcache_client::{Client, ClientConfig};
///
/// // my $memd = Cache::Memcached->new({servers => ['127.0.0.1:11211']});
/// let memd = Client::connect(ClientConfig::new("127.0.0.1:11211")).await?;
/// // CGI::Session->new("driver:memcache", $cgi, {Handle => $memd});
/// let driver = MemcacheDriver::new(memd);
/// driver.check().await?; // the Perl driver's manual "is it alive?" test, built in
/// let store = SessionStore::builder(driver).build();
/// let mut session = store.new_session(None, None).await?;
/// session.set("greet_en", "Hi !")?;
/// session.flush().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MemcacheDriver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handle: Arc<dyn MemcacheHandle>,
    /// The handle's description, for the operation spans' `server` field.
    described: String,
    prefix: String,
    hashed: bool,
    default_lifetime: Duration,
    refresh_ttl_on_read: bool,
    compress_above: Option<usize>,
    item_size_max: OnceCell<u64>,
    clock: Arc<dyn Clock>,
    /// Set once the handle was asked whether it can release locks safely.
    lock_probe: OnceCell<()>,
    /// Why session locks are refused, once known.
    lock_refusal: std::sync::OnceLock<&'static str>,
}

/// Configures a [`MemcacheDriver`].
#[derive(Debug)]
#[must_use]
pub struct MemcacheDriverBuilder {
    handle: Arc<dyn MemcacheHandle>,
    prefix: String,
    hashed: bool,
    default_lifetime: Duration,
    refresh_ttl_on_read: bool,
    compress_above: Option<usize>,
    item_size_max: Option<u64>,
}

impl MemcacheDriverBuilder {
    /// The key prefix ([`DEFAULT_PREFIX`] by default). It must be a valid part of a memcached
    /// key: no whitespace or control characters, at most 100 bytes.
    ///
    /// An empty prefix stores each session under its bare id, the key scheme of Debian's
    /// Perl `CGI::Session::Driver::memcached` (`driver:memcached`). The trade-off: sessions
    /// then share the key space with everything else in that memcached. Ids are checked
    /// (`A-Z a-z 0-9 _ -`, so a key with `:` such as `sessions:<id>` or a lock key is never
    /// taken for a session), but another application's key that looks like an id (`42`,
    /// `user_7`, a hex digest) is listed by [`Driver::list`] and
    /// [`list_keys`](MemcacheDriver::list_keys) (listing reads the keys of the whole server,
    /// and `find` skips what does not decode as a session stored under that id), and a session
    /// id equal to such a key (the `incr` and `static` id generators make that possible)
    /// finds that item, which is then refused as not a session of that id (`_SESSION_ID`
    /// differs). Session locks live under `lock:<id>`.
    ///
    /// ```
    /// # fn demo(memd: cgi_session_memcache_client::Client) -> Result<(), cgi_session_core::DriverError> {
    /// use cgi_session_core::SessionId;
    /// use cgi_session_memcache::MemcacheDriver;
    ///
    /// let driver = MemcacheDriver::builder(memd).prefix("").build()?;
    /// let id = SessionId::parse("9f3c0e1d2b4a").unwrap();
    /// assert_eq!(driver.key_for(&id), "9f3c0e1d2b4a");
    /// assert_eq!(driver.lock_key_for(&id), "lock:9f3c0e1d2b4a");
    /// # Ok(()) }
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Store sessions under a SHA-256 digest of the id instead of the id itself, so that a key
    /// dump yields no usable cookie. The Perl driver cannot read such keys, and ids from
    /// the guessable `incr` generator are not hidden by it.
    pub fn hashed_keys(mut self, on: bool) -> Self {
        self.hashed = on;
        self
    }

    /// Lifetime of sessions with no idle timeout ([`DEFAULT_LIFETIME`] by default).
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = lifetime;
        self
    }

    /// Refresh a session's TTL on every read, in the read's own round trip (off by default).
    ///
    /// Turn it on only when no other program writes these keys: a read then also changes the
    /// lifetime of items this store cannot decode, and gives a Perl session without expiry
    /// the store's idle timeout. Off, a read leaves the TTL alone and sessions in use are
    /// kept alive by the session layer's write-back of their access time.
    ///
    /// ```
    /// # fn demo(memd: cgi_session_memcache_client::Client) -> Result<(), cgi_session_core::DriverError> {
    /// use cgi_session_memcache::MemcacheDriver;
    ///
    /// let driver = MemcacheDriver::builder(memd).refresh_ttl_on_read(true).build()?;
    /// # Ok(()) }
    /// ```
    pub fn refresh_ttl_on_read(mut self, on: bool) -> Self {
        self.refresh_ttl_on_read = on;
        self
    }

    /// Gzip values larger than `bytes` (flagged with [`FLAG_COMPRESSED`] in the item's client
    /// flags, as Perl's Cache::Memcached does). Off by default.
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.compress_above = Some(bytes);
        self
    }

    /// The server's item size limit, if known up front; otherwise it is read from the server
    /// (`stats settings`) before the first write.
    pub fn item_size_max(mut self, bytes: u64) -> Self {
        self.item_size_max = Some(bytes);
        self
    }

    /// Builds the driver.
    ///
    /// # Errors
    /// [`DriverError::Config`] when the prefix is not a valid key part.
    pub fn build(self) -> Result<MemcacheDriver, DriverError> {
        if self.prefix.len() > 100
            || self
                .prefix
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == 0x7f)
        {
            return Err(DriverError::Config {
                driver: NAME,
                message: format!(
                    "key prefix {:?} is not usable in memcached keys: use at most 100 bytes without spaces or control characters",
                    self.prefix
                ),
            });
        }
        let item_size_max = OnceCell::new();
        if let Some(max) = self.item_size_max {
            let _ = item_size_max.set(max);
        }
        Ok(MemcacheDriver {
            inner: Arc::new(Inner {
                described: self.handle.describe(),
                handle: self.handle,
                prefix: self.prefix,
                hashed: self.hashed,
                default_lifetime: self.default_lifetime,
                refresh_ttl_on_read: self.refresh_ttl_on_read,
                compress_above: self.compress_above,
                item_size_max,
                clock: Arc::new(SystemClock),
                lock_probe: OnceCell::new(),
                lock_refusal: std::sync::OnceLock::new(),
            }),
        })
    }
}

/// What [`MemcacheDriver::check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// The server(s), as the handle describes them.
    pub server: String,
    /// The server's version.
    pub version: String,
    /// The item size limit.
    pub item_size_max: u64,
    /// Time of the set/get/delete probe.
    pub probe_time: Duration,
}

impl MemcacheDriver {
    /// A driver with default settings over `handle` (any [`MemcacheHandle`]).
    pub fn new(handle: impl MemcacheHandle) -> Self {
        Self::builder(handle)
            .build()
            .unwrap_or_else(|_| unreachable!("the default prefix is valid"))
    }

    /// Starts configuring a driver over `handle`.
    pub fn builder(handle: impl MemcacheHandle) -> MemcacheDriverBuilder {
        Self::builder_dyn(Arc::new(handle))
    }

    /// [`MemcacheDriver::builder`] for a shared handle.
    pub fn builder_dyn(handle: Arc<dyn MemcacheHandle>) -> MemcacheDriverBuilder {
        MemcacheDriverBuilder {
            handle,
            prefix: DEFAULT_PREFIX.into(),
            hashed: false,
            default_lifetime: DEFAULT_LIFETIME,
            refresh_ttl_on_read: false,
            compress_above: None,
            item_size_max: None,
        }
    }

    /// The handle.
    pub fn handle(&self) -> &Arc<dyn MemcacheHandle> {
        &self.inner.handle
    }

    /// The memcached key of session `id`.
    ///
    /// Built once per operation, in one allocation of its exact size, and a valid memcached
    /// key by construction: the prefix was checked when the driver was built (at most 100
    /// bytes, no whitespace or control bytes) and an id is 1 to 128 bytes of
    /// `A-Z a-z 0-9 _ -` (a digest: 64 hex digits), so the key (lock keys included) is at
    /// most 233 bytes; the client checks it once (its only check) before sending.
    pub fn key_for(&self, id: &SessionId) -> String {
        self.build_key("", id)
    }

    /// The memcached key of session `id`'s lock: [`LOCK_KEY_PREFIX`] followed by
    /// [`key_for`](Self::key_for) (`lock:sessions:<id>` by default; with hashed keys, the
    /// digest: the id is never in it either).
    pub fn lock_key_for(&self, id: &SessionId) -> String {
        self.build_key(LOCK_KEY_PREFIX, id)
    }

    /// `<lead><prefix><id or its digest in hex>`, allocated once at its final size.
    fn build_key(&self, lead: &str, id: &SessionId) -> String {
        let prefix = self.inner.prefix.as_str();
        let id = id.as_str();
        let tail = if self.inner.hashed { 64 } else { id.len() };
        let mut key = String::with_capacity(lead.len() + prefix.len() + tail);
        key.push_str(lead);
        key.push_str(prefix);
        if self.inner.hashed {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for b in Sha256::digest(id.as_bytes()) {
                key.push(char::from(HEX[usize::from(b >> 4)]));
                key.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        } else {
            key.push_str(id);
        }
        debug_assert!(cgi_session_memcache_client::validate_key(key.as_bytes()).is_ok());
        key
    }

    fn lock_refused(reason: &'static str) -> DriverError {
        DriverError::Unsupported {
            driver: NAME,
            operation: reason,
        }
    }

    /// Asks the handle once whether it can compare-and-delete, so that no lock is taken that
    /// could not be released: a compare-and-delete of `key` (the lock key, so the question
    /// goes to the server that will hold the lock) on a CAS value that no item has (memcached
    /// numbers items from 1 up; without CAS values all are 0), so nothing is deleted.
    async fn check_lock_support(&self, key: &str) -> Result<(), DriverError> {
        if let Some(reason) = self.inner.lock_refusal.get() {
            return Err(Self::lock_refused(reason));
        }
        self.inner
            .lock_probe
            .get_or_try_init(|| async {
                match self.inner.handle.delete_if(key, u64::MAX).await {
                    Ok(_) => Ok(()),
                    Err(HandleError::Unsupported(_)) => {
                        let _ = self.inner.lock_refusal.set(NO_DELETE_IF);
                        Ok(())
                    }
                    Err(e) => Err(DriverError::from(e)),
                }
            })
            .await?;
        match self.inner.lock_refusal.get() {
            Some(reason) => Err(Self::lock_refused(reason)),
            None => Ok(()),
        }
    }

    /// memcached's exptime for a lifetime (`None`: the default lifetime).
    pub fn exptime(&self, ttl: Option<Duration>) -> u32 {
        let ttl = ttl.unwrap_or(self.inner.default_lifetime);
        memcached_exptime(ttl, self.inner.clock.now())
    }

    async fn item_size_max(&self) -> Result<u64, DriverError> {
        self.inner
            .item_size_max
            .get_or_try_init(|| async {
                match self.inner.handle.server_info().await {
                    Ok(info) => Ok(info.item_size_max.unwrap_or(DEFAULT_ITEM_SIZE_MAX)),
                    Err(e @ HandleError::Unavailable(_)) => Err(DriverError::from(e)),
                    // A proxy (twemproxy) or a client that cannot ask: assume memcached's
                    // default; `MemcacheDriverBuilder::item_size_max` sets the real one.
                    Err(e) => {
                        tracing::warn!(error = %e, "memcached item size limit unknown; assuming 1 MiB (set it with MemcacheDriverBuilder::item_size_max)");
                        Ok(DEFAULT_ITEM_SIZE_MAX)
                    }
                }
            })
            .await
            .copied()
    }

    fn encode<'a>(&self, data: &'a [u8]) -> Result<(Cow<'a, [u8]>, u32), DriverError> {
        match self.inner.compress_above {
            Some(limit) if data.len() > limit => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(data)
                    .and_then(|()| gz.finish())
                    .map(|bytes| (Cow::Owned(bytes), FLAG_COMPRESSED))
                    .map_err(|e| DriverError::Backend {
                        driver: NAME,
                        source: Box::new(e),
                    })
            }
            _ => Ok((Cow::Borrowed(data), 0)),
        }
    }

    fn decode(&self, value: Vec<u8>, flags: u32) -> Result<Vec<u8>, DriverError> {
        if flags & !FLAG_COMPRESSED != 0 {
            return Err(DriverError::Backend {
                driver: NAME,
                source: format!(
                    "the item has client flags {flags} that cgi-session does not understand (1 is Perl Storable, written by Cache::Memcached for references); is another application using the key prefix?"
                )
                .into(),
            });
        }
        if flags & FLAG_COMPRESSED == 0 {
            return Ok(value);
        }
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(value.as_slice())
            .take(MAX_DECOMPRESSED)
            .read_to_end(&mut out)
            .map_err(|e| DriverError::Backend {
                driver: NAME,
                source: format!("a compressed session does not decompress: {e}").into(),
            })?;
        Ok(out)
    }

    /// The Perl driver's manual health check, built in: the server's version and item size limit,
    /// then a set/get/delete round trip on a probe key.
    ///
    /// # Errors
    /// [`DriverError::Unavailable`] naming the server when it does not answer;
    /// [`DriverError::Backend`] when the probe value does not read back.
    pub async fn check(&self) -> Result<HealthReport, DriverError> {
        let handle = &self.inner.handle;
        let info = handle.server_info().await.map_err(DriverError::from)?;
        let mut token = [0u8; 8];
        let _ = getrandom::fill(&mut token);
        let mut suffix = String::new();
        for b in token {
            let _ = write!(suffix, "{b:02x}");
        }
        let key = format!("{}{PROBE_MARKER}{suffix}", self.inner.prefix);
        let value = format!("it_is_{}", self.inner.clock.now());
        let started = Instant::now();
        let written = handle
            .write(&key, value.as_bytes(), 0, 30, StoreMode::Create)
            .await?;
        let probe_failed = |what: &str| DriverError::Backend {
            driver: NAME,
            source: format!("{}: {what}", handle.describe()).into(),
        };
        if !matches!(written, StoreOutcome::Stored(_)) {
            return Err(probe_failed("storing the probe key failed"));
        }
        let read = handle.get(&key, None).await.map_err(DriverError::from)?;
        if read.map(|item| item.value) != Some(value.into_bytes().into()) {
            return Err(probe_failed(
                "the probe value could not be read back (is the server out of memory?)",
            ));
        }
        handle.delete(&key).await.map_err(DriverError::from)?;
        let probe_time = started.elapsed();
        Ok(HealthReport {
            server: handle.describe(),
            version: info.version,
            item_size_max: info.item_size_max.unwrap_or(DEFAULT_ITEM_SIZE_MAX),
            probe_time,
        })
    }

    /// Every key under the prefix the server lists (`lru_crawler metadump`): only items the
    /// crawler reaches are listed, and with hashed keys these are digests, not ids. The keys
    /// of this driver's own health probe ([`check`](Self::check)) are never listed.
    ///
    /// # Errors
    /// Store errors; [`DriverError::Unsupported`] when the handle cannot list keys.
    pub async fn list_keys(&self) -> Result<Vec<crate::ListedKey>, DriverError> {
        let keys = self.inner.handle.list_keys().await?;
        let prefix = self.inner.prefix.as_str();
        Ok(keys
            .into_iter()
            .filter(|k| {
                k.key
                    .strip_prefix(prefix)
                    .is_some_and(|rest| !rest.starts_with(PROBE_MARKER))
            })
            .collect())
    }
}

impl MemcacheDriver {
    async fn load_op(
        &self,
        id: &SessionId,
        touch: Option<Duration>,
    ) -> Result<Option<Loaded>, DriverError> {
        let key = self.key_for(id);
        let touch = touch
            .filter(|_| self.inner.refresh_ttl_on_read)
            .map(|t| self.exptime(Some(t)));
        let Some(item) = self.inner.handle.get(&key, touch).await? else {
            return Ok(None);
        };
        // The value's bytes move from the reply into `Loaded` (no copy unless compressed).
        Ok(Some(Loaded {
            data: self.decode(Vec::from(item.value), item.flags.unwrap_or(0))?,
            version: item.cas,
            last_access: None,
        }))
    }

    async fn store_op(
        &self,
        id: &SessionId,
        data: &[u8],
        mode: StoreMode,
        ttl: Option<Duration>,
    ) -> Result<StoreOutcome, DriverError> {
        let key = self.key_for(id);
        let (value, flags) = self.encode(data)?;
        let limit = self.item_size_max().await?;
        let size = value.len() as u64 + key.len() as u64 + ITEM_OVERHEAD;
        if size > limit {
            return Err(DriverError::TooLarge {
                driver: NAME,
                size: value.len(),
                limit: usize::try_from(limit.saturating_sub(key.len() as u64 + ITEM_OVERHEAD))
                    .unwrap_or(usize::MAX),
            });
        }
        Ok(self
            .inner
            .handle
            .write(&key, &value, flags, self.exptime(ttl), mode)
            .await?)
    }

    async fn remove_op(&self, id: &SessionId) -> Result<bool, DriverError> {
        let key = self.key_for(id);
        self.inner
            .handle
            .delete(&key)
            .await
            .map_err(DriverError::from)
    }

    async fn touch_op(&self, id: &SessionId, ttl: Option<Duration>) -> Result<bool, DriverError> {
        let key = self.key_for(id);
        self.inner
            .handle
            .touch(&key, self.exptime(ttl))
            .await
            .map_err(DriverError::from)
    }

    /// `add` of the lock item ([`MemcacheDriver::lock_key_for`]) with the lease as its
    /// exptime (rounded up to whole seconds, at least 1 s): created means acquired, with the
    /// item's CAS value as the token; already there means held. A holder that never unlocks
    /// is freed by memcached's expiry when the lease ends.
    ///
    /// Caveats: memcached's clock ticks in whole seconds, so a lease may end up to about one
    /// second early (choose leases well above the longest request); an eviction under memory
    /// pressure or a restart of the server frees a lock early too; with
    /// [`FailurePolicy::Failover`](cgi_session_memcache_client::FailurePolicy::Failover) the
    /// lock moves with its key when a server is marked down, so clients that disagree on
    /// which servers are down may both hold it.
    ///
    /// # Errors
    /// [`DriverError::Unsupported`] when the handle cannot release a lock safely (no
    /// compare-and-delete, or no CAS value returned), checked before the first lock is taken;
    /// [`DriverError::Unavailable`] naming the server when it is down or hung.
    async fn try_lock_op(
        &self,
        id: &SessionId,
        lease: Duration,
    ) -> Result<LockAttempt, DriverError> {
        let key = self.lock_key_for(id);
        self.check_lock_support(&key).await?;
        let exptime = self.exptime(Some(lease.max(MIN_LEASE)));
        let outcome = self
            .inner
            .handle
            .add_lock(&key, LOCK_VALUE, exptime)
            .await?;
        match outcome {
            StoreOutcome::Stored(Some(cas @ 1..)) => Ok(LockAttempt::Acquired(LockToken(cas))),
            StoreOutcome::Stored(_) => {
                // The item stays until its lease ends: deleting it without a CAS value could
                // free a lock that is not ours.
                let _ = self.inner.lock_refusal.set(NO_CAS);
                Err(Self::lock_refused(NO_CAS))
            }
            StoreOutcome::Exists => Ok(LockAttempt::Held),
            other => Err(DriverError::Backend {
                driver: NAME,
                source: format!(
                    "{}: unexpected reply {other:?} to the add of a session lock",
                    self.inner.handle.describe()
                )
                .into(),
            }),
        }
    }

    /// A compare-and-delete of the lock item on the token (its CAS value): `Ok(true)` when
    /// it was still ours and is gone, `Ok(false)` when it expired or another request holds it
    /// now (that lock is left alone).
    ///
    /// # Errors
    /// [`DriverError::Unsupported`] when the handle has no compare-and-delete;
    /// [`DriverError::Unavailable`] naming the server when it is down or hung.
    async fn unlock_op(&self, id: &SessionId, token: LockToken) -> Result<bool, DriverError> {
        let key = self.lock_key_for(id);
        if token.0 == 0 {
            // Never handed out (0 is memcached's "no CAS"), and `C0` could match an item of
            // a server without CAS values.
            return Ok(false);
        }
        let outcome = self.inner.handle.delete_if(&key, token.0).await?;
        Ok(matches!(outcome, DeleteIfOutcome::Deleted))
    }

    async fn list_op(
        &self,
        visit: &mut (dyn FnMut(ListedSession) -> ControlFlow<()> + Send),
    ) -> Result<(), DriverError> {
        if self.inner.hashed {
            return Err(DriverError::Unsupported {
                driver: NAME,
                operation: "listing sessions with hashed keys (the keys are digests, not ids; MemcacheDriver::list_keys shows them)",
            });
        }
        for listed in self.list_keys().await? {
            let Some(raw) = listed.key.strip_prefix(&self.inner.prefix) else {
                continue;
            };
            if let Ok(id) = SessionId::parse(raw) {
                let mut session = ListedSession::new(id).expires_at(listed.exp);
                session.size = listed.size;
                session.last_access = listed.last_access;
                if visit(session).is_break() {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// The operations' failures are counted by server (`cgi_session_store_errors_total`, see
/// `cgi_session_core::observe`) on their way out.
#[async_trait]
impl Driver for MemcacheDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn refreshes_on_load(&self) -> bool {
        self.inner.refresh_ttl_on_read
    }

    async fn load(
        &self,
        id: &SessionId,
        touch: Option<Duration>,
    ) -> Result<Option<Loaded>, DriverError> {
        self.note_server();
        observed(self.load_op(id, touch).await)
    }

    async fn store(
        &self,
        id: &SessionId,
        data: &[u8],
        mode: StoreMode,
        ttl: Option<Duration>,
    ) -> Result<StoreOutcome, DriverError> {
        self.note_server();
        observed(self.store_op(id, data, mode, ttl).await)
    }

    async fn remove(&self, id: &SessionId) -> Result<bool, DriverError> {
        self.note_server();
        observed(self.remove_op(id).await)
    }

    async fn touch(&self, id: &SessionId, ttl: Option<Duration>) -> Result<bool, DriverError> {
        self.note_server();
        observed(self.touch_op(id, ttl).await)
    }

    /// See [`MemcacheDriver`]'s session locks: an `add` of the lock item with the lease as its
    /// exptime, released with a compare-and-delete on its CAS value.
    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<LockAttempt, DriverError> {
        self.note_server();
        observed(self.try_lock_op(id, lease).await)
    }

    /// A compare-and-delete of the lock item on the token (its CAS value): `Ok(true)` when
    /// it was still ours and is gone, `Ok(false)` when it expired or another request holds it
    /// now (that lock is left alone).
    async fn unlock(&self, id: &SessionId, token: LockToken) -> Result<bool, DriverError> {
        self.note_server();
        observed(self.unlock_op(id, token).await)
    }

    async fn list(
        &self,
        visit: &mut (dyn FnMut(ListedSession) -> ControlFlow<()> + Send),
    ) -> Result<(), DriverError> {
        observed(self.list_op(visit).await)
    }
}

impl MemcacheDriver {
    /// Names the server(s) in the operation span (a failure names the one that failed).
    fn note_server(&self) {
        cgi_session_core::observe::record_server(&self.inner.described);
    }
}

/// Counts a failed operation in the store errors, by the server the client's error names.
/// Refusals that are not failures of the store (unsupported, misconfigured) are not counted.
fn observed<T>(result: Result<T, DriverError>) -> Result<T, DriverError> {
    if let Err(e) = &result {
        if !matches!(
            e,
            DriverError::Unsupported { .. } | DriverError::Config { .. }
        ) {
            cgi_session_core::observe::record_store_error(NAME, server_of(e), e);
        }
    }
    result
}

/// The server a failure happened on, when the bundled client's error is among its causes.
pub(crate) fn server_of<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a str> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(client) = c.downcast_ref::<cgi_session_memcache_client::Error>() {
            return client_server(client);
        }
        cause = c.source();
    }
    None
}

/// The server the bundled client's error names.
pub(crate) fn client_server(e: &cgi_session_memcache_client::Error) -> Option<&str> {
    use cgi_session_memcache_client::Error as E;
    match e {
        E::Unavailable { server, .. }
        | E::Timeout { server, .. }
        | E::OutcomeUnknown { server, .. }
        | E::Protocol { server, .. }
        | E::Server { server, .. }
        | E::Unsupported { server, .. }
        | E::Tls { server, .. }
        | E::Auth { server, .. } => Some(server),
        _ => None,
    }
}
