//! What the data operations take and return: [`GetOptions`] and [`Item`] for reads,
//! [`SetOptions`] and [`StoreStatus`] for stores, [`DeleteStatus`], and memcached's expiry
//! times ([`memcached_exptime`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// Longest relative expiration memcached accepts: 30 days in seconds. Larger
/// exptimes are read as absolute Unix times.
pub const MAX_RELATIVE_EXPTIME: u32 = 2_592_000;

/// Converts a TTL into memcached's `exptime`.
///
/// memcached reads an exptime of up to 30 days (2,592,000 s) as "seconds from
/// now" but anything larger as an **absolute Unix time**. A naive relative
/// value of, say, 31 days (2,678,400) therefore means a moment in January
/// 1970: the item expires at once (checked on 1.6.18). This function sends
/// TTLs over 30 days as `now_unix + ttl` instead.
///
/// * A zero TTL gives 0, which memcached reads as "never expires".
/// * A sub-second remainder rounds up, so a tiny non-zero TTL never becomes 0.
/// * Absolute times past `u32::MAX` are clamped.
///
/// Absolute times depend on the client's clock agreeing with the server's.
///
/// ```
/// use std::time::Duration;
/// use cgi_session_memcache_client::memcached_exptime;
/// let now = 1_700_000_000;
/// assert_eq!(memcached_exptime(Duration::from_secs(1800), now), 1800);
/// assert_eq!(memcached_exptime(Duration::from_secs(2_592_000), now), 2_592_000);
/// assert_eq!(memcached_exptime(Duration::from_secs(2_592_001), now), 1_702_592_001);
/// assert_eq!(memcached_exptime(Duration::ZERO, now), 0);
/// assert_eq!(memcached_exptime(Duration::from_millis(10), now), 1);
/// ```
pub fn memcached_exptime(ttl: Duration, now_unix: i64) -> u32 {
    let mut secs = ttl.as_secs();
    if ttl.subsec_nanos() > 0 {
        secs = secs.saturating_add(1);
    }
    if secs == 0 {
        return 0;
    }
    if secs <= u64::from(MAX_RELATIVE_EXPTIME) {
        return secs as u32;
    }
    let abs = i128::from(now_unix) + i128::from(secs);
    abs.clamp(i128::from(MAX_RELATIVE_EXPTIME) + 1, i128::from(u32::MAX)) as u32
}

/// [`memcached_exptime`] with the current system time.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(cgi_session_memcache_client::exptime_from_now(Duration::from_secs(60)), 60);
/// assert!(cgi_session_memcache_client::exptime_from_now(Duration::from_secs(40 * 86_400)) > 1_600_000_000);
/// ```
pub fn exptime_from_now(ttl: Duration) -> u32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    memcached_exptime(ttl, now)
}

/// What [`Client::get`](crate::Client::get) asks for besides the value.
///
/// ```
/// use cgi_session_memcache_client::GetOptions;
/// let opts = GetOptions::new().cas(true).touch(1800).flags(true);
/// assert_eq!(opts.touch_ttl, Some(1800));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GetOptions {
    /// Return the CAS token (`c`).
    pub cas: bool,
    /// Set a new exptime while reading (`T<ttl>`); see [`memcached_exptime`].
    /// Note for round-trip counting: memcached (checked on 1.6.18) counts
    /// such a fetch under `cmd_touch`/`touch_hits` when the key exists and
    /// under `cmd_get`/`get_misses` when it does not.
    pub touch_ttl: Option<u32>,
    /// Return seconds since last access (`l`).
    pub last_access: bool,
    /// Return the client flags (`f`).
    pub flags: bool,
    /// Return the remaining TTL (`t`; after a touch, the new one).
    pub ttl_remaining: bool,
}

impl GetOptions {
    /// Value only.
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::GetOptions::new(), Default::default());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`cas`](Self::cas).
    ///
    /// ```
    /// assert!(cgi_session_memcache_client::GetOptions::new().cas(true).cas);
    /// ```
    pub fn cas(mut self, on: bool) -> Self {
        self.cas = on;
        self
    }

    /// Sets [`touch_ttl`](Self::touch_ttl) to `Some(exptime)`.
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::GetOptions::new().touch(60).touch_ttl, Some(60));
    /// ```
    pub fn touch(mut self, exptime: u32) -> Self {
        self.touch_ttl = Some(exptime);
        self
    }

    /// Sets [`last_access`](Self::last_access).
    ///
    /// ```
    /// assert!(cgi_session_memcache_client::GetOptions::new().last_access(true).last_access);
    /// ```
    pub fn last_access(mut self, on: bool) -> Self {
        self.last_access = on;
        self
    }

    /// Sets [`flags`](Self::flags).
    ///
    /// ```
    /// assert!(cgi_session_memcache_client::GetOptions::new().flags(true).flags);
    /// ```
    pub fn flags(mut self, on: bool) -> Self {
        self.flags = on;
        self
    }

    /// Sets [`ttl_remaining`](Self::ttl_remaining).
    ///
    /// ```
    /// assert!(cgi_session_memcache_client::GetOptions::new().ttl_remaining(true).ttl_remaining);
    /// ```
    pub fn ttl_remaining(mut self, on: bool) -> Self {
        self.ttl_remaining = on;
        self
    }
}

/// A value read by [`Client::get`](crate::Client::get), with the metadata asked for.
///
/// ```no_run
/// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
/// use cgi_session_memcache_client::GetOptions;
/// if let Some(item) = client.get("k", GetOptions::new().cas(true)).await? {
///     println!("{} bytes, cas {:?}", item.value.len(), item.cas);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Item {
    /// The stored bytes.
    pub value: Bytes,
    /// CAS token, if [`GetOptions::cas`] was set.
    pub cas: Option<u64>,
    /// Client flags, if [`GetOptions::flags`] was set.
    pub flags: Option<u32>,
    /// Seconds since the item was last accessed, if
    /// [`GetOptions::last_access`] was set. This is the age **before** this
    /// fetch (checked on 1.6.18: a fetch 2 s after the set reports 2).
    /// Whether a fetch resets it depends on memcached's internal LRU
    /// bookkeeping (usually not within a minute, but not always: a test that
    /// relied on it was flaky), so treat it as approximate.
    pub last_access_secs: Option<u32>,
    /// Seconds until expiry if [`GetOptions::ttl_remaining`] was set; `-1`
    /// means the item never expires. After a touch, the new TTL.
    pub ttl_remaining: Option<i64>,
}

impl Item {
    /// An item holding `value` and no metadata, for adapters of other clients that hand back
    /// what they read in this shape (cgi-session-memcache's `MemcacheHandle` returns items).
    /// The bytes are moved, not copied.
    ///
    /// ```
    /// let item = cgi_session_memcache_client::Item::new(b"v".to_vec()).with_cas(Some(7)).with_flags(2);
    /// assert_eq!((&item.value[..], item.cas, item.flags), (&b"v"[..], Some(7), Some(2)));
    /// ```
    pub fn new(value: impl Into<Bytes>) -> Self {
        Item {
            value: value.into(),
            cas: None,
            flags: None,
            last_access_secs: None,
            ttl_remaining: None,
        }
    }

    /// Sets [`cas`](Self::cas).
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::Item::new(vec![]).with_cas(Some(3)).cas, Some(3));
    /// ```
    pub fn with_cas(mut self, cas: Option<u64>) -> Self {
        self.cas = cas;
        self
    }

    /// Sets [`flags`](Self::flags).
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::Item::new(vec![]).with_flags(1).flags, Some(1));
    /// ```
    pub fn with_flags(mut self, flags: u32) -> Self {
        self.flags = Some(flags);
        self
    }
}

/// How [`Client::set`](crate::Client::set) stores (`ms ... M<mode>`).
///
/// ```
/// assert_eq!(cgi_session_memcache_client::SetMode::default(), cgi_session_memcache_client::SetMode::Set);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetMode {
    /// Store unconditionally (`MS`).
    #[default]
    Set,
    /// Store only if the key does not exist (`ME`); else `NotStored`.
    Add,
    /// Store only if the key exists (`MR`); else `NotStored`.
    Replace,
}

/// Options for [`Client::set`](crate::Client::set).
///
/// ```
/// use cgi_session_memcache_client::{SetMode, SetOptions};
/// let opts = SetOptions::new().mode(SetMode::Add).ttl(1800).flags(1);
/// assert_eq!(opts.ttl, 1800);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetOptions {
    /// Set, add or replace.
    pub mode: SetMode,
    /// Store only if the item's CAS token still equals this (`C<cas>`).
    pub cas: Option<u64>,
    /// memcached exptime (0 = never). Use [`memcached_exptime`] for TTLs
    /// that may exceed 30 days.
    pub ttl: u32,
    /// Client flags stored with the item.
    pub flags: u32,
}

impl SetOptions {
    /// Plain set, no expiry, flags 0.
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::SetOptions::new().ttl, 0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`mode`](Self::mode).
    ///
    /// ```
    /// use cgi_session_memcache_client::{SetMode, SetOptions};
    /// assert_eq!(SetOptions::new().mode(SetMode::Replace).mode, SetMode::Replace);
    /// ```
    pub fn mode(mut self, mode: SetMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`cas`](Self::cas).
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::SetOptions::new().cas(Some(7)).cas, Some(7));
    /// ```
    pub fn cas(mut self, cas: Option<u64>) -> Self {
        self.cas = cas;
        self
    }

    /// Sets [`ttl`](Self::ttl) (a memcached exptime).
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::SetOptions::new().ttl(60).ttl, 60);
    /// ```
    pub fn ttl(mut self, exptime: u32) -> Self {
        self.ttl = exptime;
        self
    }

    /// Sets [`flags`](Self::flags).
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::SetOptions::new().flags(3).flags, 3);
    /// ```
    pub fn flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }
}

/// Outcome of [`Client::set`](crate::Client::set).
///
/// ```
/// use cgi_session_memcache_client::StoreStatus;
/// assert!(StoreStatus::Stored { cas: Some(1) }.is_stored());
/// assert!(!StoreStatus::Exists.is_stored());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreStatus {
    /// Stored; `cas` is the item's new CAS token.
    Stored {
        /// The new CAS token.
        cas: Option<u64>,
    },
    /// Not stored: `Add` on an existing key or `Replace` on a missing one.
    NotStored,
    /// Not stored: the CAS token did not match (someone else wrote first).
    Exists,
    /// Not stored: CAS given but the key does not exist.
    NotFound,
}

impl StoreStatus {
    /// True for [`StoreStatus::Stored`].
    ///
    /// ```
    /// assert!(!cgi_session_memcache_client::StoreStatus::NotStored.is_stored());
    /// ```
    pub fn is_stored(&self) -> bool {
        matches!(self, StoreStatus::Stored { .. })
    }
}

/// Outcome of [`Client::delete`](crate::Client::delete).
///
/// ```
/// assert_ne!(cgi_session_memcache_client::DeleteStatus::Deleted, cgi_session_memcache_client::DeleteStatus::NotFound);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeleteStatus {
    /// The item was deleted.
    Deleted,
    /// There was no such item.
    NotFound,
    /// Not deleted: the CAS token did not match.
    Exists,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptime_edges() {
        assert_eq!(
            memcached_exptime(Duration::from_secs(u64::MAX), 1),
            u32::MAX
        );
        assert_eq!(
            memcached_exptime(Duration::from_secs(2_592_001), -10_000_000),
            2_592_001
        );
    }
}
