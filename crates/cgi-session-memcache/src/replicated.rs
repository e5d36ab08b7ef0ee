//! [`ReplicatedHandle`]: every session on several servers of a pool, with versions that keep
//! a server which comes back with old or missing data from resurrecting a deleted session or
//! rolling back a newer one.

use std::collections::BTreeSet;

use async_trait::async_trait;
use bytes::Bytes;
use cgi_session_core::{StoreMode, StoreOutcome};
use cgi_session_memcache_client::{
    Client, Error, GetOptions, Item, SetMode, SetOptions, StoreStatus,
};

use crate::bundled::{delete_if_outcome, listed_key, store_outcome};
use crate::handle::{DeleteIfOutcome, HandleError, ListedKey, MemcacheHandle, ServerInfo};

/// First bytes of every replicated value.
const MAGIC: &[u8; 4] = b"RPL1";
/// Envelope size: magic, version (u64, big-endian), kind byte.
pub const ENVELOPE_LEN: usize = 13;
const KIND_DATA: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;
/// Lifetime of a tombstone when the deleted item's own TTL is not known: one day.
pub const DEFAULT_TOMBSTONE_TTL: u32 = 86_400;

fn envelope(version: u64, kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(ENVELOPE_LEN + payload.len());
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&version.to_be_bytes());
    v.push(kind);
    v.extend_from_slice(payload);
    v
}

/// A value as [`ReplicatedHandle`] stores it, taken apart: the session's version, whether it
/// is a tombstone (the session was deleted), and the bytes the driver wrote (the serialized
/// session, gzip-compressed when the item's client flags say
/// [`FLAG_COMPRESSED`](crate::FLAG_COMPRESSED)).
///
/// For tools that read items directly (an operator's `show`), not for applications, which
/// read through a [`ReplicatedHandle`].
///
/// ```
/// use cgi_session_memcache::decode_replica;
///
/// let mut stored = b"RPL1".to_vec();
/// stored.extend_from_slice(&7u64.to_be_bytes());
/// stored.push(0); // data, not a tombstone
/// stored.extend_from_slice(br#"{"_SESSION_ID":"abc"}"#);
/// let copy = decode_replica(&stored).unwrap();
/// assert_eq!((copy.version, copy.tombstone), (7, false));
/// assert_eq!(copy.payload, br#"{"_SESSION_ID":"abc"}"#);
///
/// // A value written without replication is no envelope.
/// assert!(decode_replica(br#"{"_SESSION_ID":"abc"}"#).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaEnvelope<'a> {
    /// The session's version (each write adds one; a delete too).
    pub version: u64,
    /// The copy marks a deleted session.
    pub tombstone: bool,
    /// What the driver stored (empty for a tombstone).
    pub payload: &'a [u8],
}

/// Takes apart a value written by a [`ReplicatedHandle`] (the `RPL1` envelope); `None` when
/// `value` is not in that envelope (written without replication).
///
/// See [`ReplicaEnvelope`] for an example.
pub fn decode_replica(value: &[u8]) -> Option<ReplicaEnvelope<'_>> {
    if value.len() < ENVELOPE_LEN || &value[..4] != MAGIC || value[12] > KIND_TOMBSTONE {
        return None;
    }
    let mut version = [0u8; 8];
    version.copy_from_slice(&value[4..12]);
    Some(ReplicaEnvelope {
        version: u64::from_be_bytes(version),
        tombstone: value[12] == KIND_TOMBSTONE,
        payload: &value[ENVELOPE_LEN..],
    })
}

/// One copy as read from one server.
#[derive(Debug, Clone)]
struct Replica {
    version: u64,
    tombstone: bool,
    /// The driver's bytes: a slice of the value read, not a copy.
    payload: Bytes,
    flags: u32,
    cas: Option<u64>,
    ttl: Option<i64>,
}

impl Replica {
    fn parse(item: Item) -> Replica {
        let (version, tombstone, payload) = match decode_replica(&item.value) {
            Some(e) => (e.version, e.tombstone, item.value.slice(ENVELOPE_LEN..)),
            // Written without replication (e.g. before replicas were turned on): the oldest
            // possible version.
            None => (0, false, item.value),
        };
        Replica {
            version,
            tombstone,
            payload,
            flags: item.flags.unwrap_or(0),
            cas: item.cas,
            ttl: item.ttl_remaining,
        }
    }
}

/// What one server holds for a key.
#[derive(Debug)]
enum Slot {
    /// The server answered: the copy, or `None` for a miss.
    Read(Option<Replica>),
    /// The server is down or did not answer.
    Failed(Error),
}

/// All copies of one key.
struct State {
    servers: Vec<usize>,
    slots: Vec<Slot>,
}

impl State {
    /// The newest copy (highest version; on a tie, the one first in ring order).
    fn newest(&self) -> Option<&Replica> {
        let mut best: Option<&Replica> = None;
        for slot in &self.slots {
            if let Slot::Read(Some(c)) = slot {
                if best.is_none_or(|b| c.version > b.version) {
                    best = Some(c);
                }
            }
        }
        best
    }

    fn max_version(&self) -> u64 {
        self.newest().map_or(0, |c| c.version)
    }

    /// The first failure when every copy failed; otherwise `None`, and the copies that
    /// failed are counted as store errors (the operation goes on without them).
    fn all_failed(&self) -> Option<Error> {
        if self.slots.iter().any(|slot| matches!(slot, Slot::Read(_))) {
            for slot in &self.slots {
                if let Slot::Failed(e) = slot {
                    masked_failure(e);
                }
            }
            return None;
        }
        self.slots.iter().find_map(|slot| match slot {
            Slot::Failed(e) => Some(e.clone()),
            Slot::Read(_) => None,
        })
    }
}

/// A [`MemcacheHandle`] that keeps every session on `replicas + 1` servers of a pool: the
/// key's own server on the ring and the next distinct ones ([`Client::placement`]).
///
/// Design: the bundled client places keys and tracks which servers are down; this handle
/// adds the consistency protocol on top, because it needs a version per session that plain
/// memcached CAS values cannot give (each server numbers its own CAS values). Every value
/// is stored in a 13-byte envelope (`RPL1`, a 64-bit version, data or tombstone), so:
///
/// - **Reads** ask every copy at once and return the highest version; copies that are
///   missing or older are repaired on the spot. A read succeeds while any copy's server
///   answers, so with one replica, losing one server loses no session.
/// - **Writes** read every copy, check the mode against the newest (`Cas` compares the
///   session's version, which is what this handle returns as the CAS value), then write
///   version + 1 to every live copy in ring order, each with that server's CAS value (or
///   `add` where the copy is missing). The first live copy decides races: a writer that
///   loses there writes nothing and gets a conflict.
/// - **Deletes** write a tombstone with a higher version (kept for the session's remaining
///   TTL, or [`DEFAULT_TOMBSTONE_TTL`]), so a server that was down or hung during the delete
///   and comes back with the old session cannot resurrect it, and a server that missed a save
///   cannot roll it back: the newer version wins on every read.
///
/// Guaranteed: no resurrection and no rollback as long as at least one server that
/// acknowledged the latest write or delete still holds it, and as long as the clients agree
/// on which servers are down. Not guaranteed: a session whose every copy is lost (all its
/// servers restarted or evicted it) is gone; a tombstone that expired before a stale copy
/// returned cannot stop that copy; two clients that disagree on liveness may both write the
/// same version to different copies (the copy first in ring order then wins).
///
/// **Session locks** are not replicated: the lock item lives on the key's own server only
/// (the first of [`servers_for`](Self::servers_for)), as a plain memcached item, taken with
/// `add` and released with a compare-and-delete on that server's CAS value. Replicating it
/// would not make it safe: CAS values differ per server, so a release could not be atomic
/// across copies, and copies taken by different requests on different servers would let both
/// hold the lock. While that server is down, locks of its keys fail with an unavailable error
/// (never a second holder elsewhere), even though the sessions themselves can still be read
/// from their replicas.
///
/// Costs: a load is one round of parallel reads; a save is a parallel read plus one write per
/// copy; values are 13 bytes larger and are not readable by Perl's Cache::Memcached.
/// A server that hangs delays requests of sessions with a copy on it by at most the
/// client's timeout until it is marked down (see `ClientConfig::failure_limit`).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use cgi_session_memcache::{MemcacheDriver, ReplicatedHandle};
/// use cgi_session_memcache::client::{Client, ClientConfig};
/// let pool = Client::connect(
///     ClientConfig::pool(["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"]).lazy(true),
/// )
/// .await?;
/// let driver = MemcacheDriver::new(ReplicatedHandle::new(pool, 1));
/// # let _ = driver; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ReplicatedHandle {
    client: Client,
    copies: usize,
}

impl ReplicatedHandle {
    /// Keeps `replicas` extra copies of every key (at most one per server; 0 replicas
    /// still versions values, so deletes cannot be undone by a returning server).
    pub fn new(client: Client, replicas: usize) -> Self {
        let copies = (replicas + 1).min(client.servers().len().max(1));
        ReplicatedHandle { client, copies }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Copies kept of each key.
    pub fn copies(&self) -> usize {
        self.copies
    }

    /// The servers (indexes into `Client::servers`) holding `key`'s copies, in ring order.
    pub fn servers_for(&self, key: &str) -> Vec<usize> {
        self.client.placement(key, self.copies)
    }

    /// [`Client::set`] on server `server`.
    async fn set_on(
        &self,
        server: usize,
        key: &str,
        value: &[u8],
        opts: SetOptions,
    ) -> Result<StoreStatus, Error> {
        self.client.server(server)?.set(key, value, opts).await
    }

    /// The key's own server on the ring, up or not: where its session lock lives.
    fn primary(&self, key: &str) -> Result<usize, HandleError> {
        self.client
            .placement(key, 1)
            .first()
            .copied()
            .ok_or_else(|| Error::NoSuchServer { index: 0, count: 0 }.into())
    }

    async fn read_all(&self, key: &str, touch: Option<u32>) -> State {
        let servers = self.servers_for(key);
        let mut opts = GetOptions::new().cas(true).flags(true).ttl_remaining(true);
        if let Some(t) = touch {
            opts = opts.touch(t);
        }
        let tasks: Vec<_> = servers
            .iter()
            .map(|&s| {
                let server = self.client.server(s);
                let key = key.to_string();
                tokio::spawn(async move { server?.get(key, opts).await })
            })
            .collect();
        let mut slots = Vec::with_capacity(tasks.len());
        for (task, &s) in tasks.into_iter().zip(&servers) {
            slots.push(match task.await {
                Ok(Ok(item)) => Slot::Read(item.map(Replica::parse)),
                Ok(Err(e)) => Slot::Failed(e),
                Err(join) => Slot::Failed(Error::Unavailable {
                    server: self.client.servers()[s].clone(),
                    reason: format!("the request task failed: {join}"),
                    source: None,
                }),
            });
        }
        State { servers, slots }
    }

    /// Writes `value` (an envelope) to every live copy in ring order. The first copy written
    /// decides races. Returns how many copies took it, or the status that stopped it.
    async fn write_all(
        &self,
        key: &str,
        state: &State,
        value: &[u8],
        flags: u32,
        exptime: u32,
    ) -> Result<Result<usize, StoreStatus>, HandleError> {
        let mut written = 0usize;
        let mut last_err = None;
        for (slot, &server) in state.slots.iter().zip(&state.servers) {
            let opts = SetOptions::new().ttl(exptime).flags(flags);
            let opts = match slot {
                Slot::Read(Some(copy)) if copy.cas.is_some() => opts.cas(copy.cas),
                Slot::Read(Some(_)) => opts,
                Slot::Read(None) => opts.mode(SetMode::Add),
                // Down at read time: skip it; a later read repairs it.
                Slot::Failed(_) => continue,
            };
            match self.set_on(server, key, value, opts).await {
                Ok(StoreStatus::Stored { .. }) => written += 1,
                Ok(other) if written == 0 => return Ok(Err(other)),
                Ok(other) => {
                    tracing::warn!(
                        server = %self.client.servers()[server],
                        status = ?other,
                        "a replica changed while it was written; the next read repairs it"
                    );
                }
                Err(e) if e.is_unavailable() => {
                    // Counted here unless it is the error this write ends with (the driver
                    // counts that one).
                    if let Some(earlier) = last_err.replace(e) {
                        masked_failure(&earlier);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        if written == 0 {
            if let Some(e) = last_err {
                return Err(e.into());
            }
        }
        if let Some(e) = last_err {
            masked_failure(&e);
        }
        Ok(Ok(written))
    }

    /// Brings lagging live copies up to the newest one (best effort).
    async fn repair(&self, key: &str, state: &State, newest: &Replica) {
        let kind = if newest.tombstone {
            KIND_TOMBSTONE
        } else {
            KIND_DATA
        };
        let exptime = match newest.ttl {
            Some(t) if t > 0 => u32::try_from(t).unwrap_or(DEFAULT_TOMBSTONE_TTL),
            Some(-1) => 0,
            _ => DEFAULT_TOMBSTONE_TTL,
        };
        let value = envelope(newest.version, kind, &newest.payload);
        for (slot, &server) in state.slots.iter().zip(&state.servers) {
            let opts = SetOptions::new().ttl(exptime).flags(newest.flags);
            let opts = match slot {
                Slot::Read(Some(c)) if c.version < newest.version => opts.cas(c.cas),
                Slot::Read(None) => opts.mode(SetMode::Add),
                _ => continue,
            };
            if let Ok(StoreStatus::Stored { .. }) = self.set_on(server, key, &value, opts).await {
                tracing::info!(server = %self.client.servers()[server], "replica repaired");
            }
        }
    }
}

#[async_trait]
impl MemcacheHandle for ReplicatedHandle {
    fn describe(&self) -> String {
        format!(
            "memcached pool {} ({} copies of each session)",
            self.client.servers().join(", "),
            self.copies
        )
    }

    async fn get(&self, key: &str, touch: Option<u32>) -> Result<Option<Item>, HandleError> {
        let state = self.read_all(key, touch).await;
        if let Some(e) = state.all_failed() {
            return Err(e.into());
        }
        let Some(newest) = state.newest().cloned() else {
            return Ok(None);
        };
        let lagging = state.slots.iter().any(|s| match s {
            Slot::Read(Some(c)) => c.version < newest.version,
            Slot::Read(None) => true,
            Slot::Failed(_) => false,
        });
        if lagging {
            self.repair(key, &state, &newest).await;
        }
        if newest.tombstone {
            return Ok(None);
        }
        Ok(Some(
            Item::new(newest.payload)
                .with_cas(Some(newest.version))
                .with_flags(newest.flags),
        ))
    }

    async fn write(
        &self,
        key: &str,
        value: &[u8],
        flags: u32,
        exptime: u32,
        mode: StoreMode,
    ) -> Result<StoreOutcome, HandleError> {
        let state = self.read_all(key, None).await;
        if let Some(e) = state.all_failed() {
            return Err(e.into());
        }
        let live = state.newest().filter(|c| !c.tombstone);
        match (mode, live) {
            (StoreMode::Create, Some(_)) => return Ok(StoreOutcome::Exists),
            (StoreMode::Replace { .. }, None) => return Ok(StoreOutcome::NotFound),
            (
                StoreMode::Replace {
                    expected: Some(v), ..
                },
                Some(c),
            ) if c.version != v => return Ok(StoreOutcome::Conflict),
            _ => {}
        }
        let version = state.max_version() + 1;
        let stored = envelope(version, KIND_DATA, value);
        match self.write_all(key, &state, &stored, flags, exptime).await? {
            Ok(_) => Ok(StoreOutcome::Stored(Some(version))),
            // The first copy changed under this write: another writer won the race.
            Err(_) if mode == StoreMode::Create => Ok(StoreOutcome::Exists),
            Err(_) => Ok(StoreOutcome::Conflict),
        }
    }

    async fn delete(&self, key: &str) -> Result<bool, HandleError> {
        let state = self.read_all(key, None).await;
        if let Some(e) = state.all_failed() {
            return Err(e.into());
        }
        let Some(newest) = state.newest().cloned() else {
            return Ok(false);
        };
        if newest.tombstone {
            return Ok(false);
        }
        let ttl = state
            .slots
            .iter()
            .filter_map(|s| match s {
                Slot::Read(Some(c)) => c.ttl,
                _ => None,
            })
            .max();
        let exptime = match ttl {
            Some(t) if t > 0 => u32::try_from(t).unwrap_or(DEFAULT_TOMBSTONE_TTL),
            _ => DEFAULT_TOMBSTONE_TTL,
        };
        let tombstone = envelope(state.max_version() + 1, KIND_TOMBSTONE, b"");
        match self.write_all(key, &state, &tombstone, 0, exptime).await? {
            Ok(_) => Ok(true),
            // Someone wrote meanwhile: try once more against the new state.
            Err(_) => {
                let state = self.read_all(key, None).await;
                let tombstone = envelope(state.max_version() + 1, KIND_TOMBSTONE, b"");
                Ok(self
                    .write_all(key, &state, &tombstone, 0, exptime)
                    .await?
                    .is_ok())
            }
        }
    }

    /// A plain `add` on the key's own server only, without envelope: see "Session locks" in
    /// the type's documentation.
    async fn add_lock(
        &self,
        key: &str,
        value: &[u8],
        exptime: u32,
    ) -> Result<StoreOutcome, HandleError> {
        let server = self.primary(key)?;
        let opts = SetOptions::new().ttl(exptime).mode(SetMode::Add);
        store_outcome(
            self.set_on(server, key, value, opts).await?,
            StoreMode::Create,
        )
    }

    /// A compare-and-delete on the key's own server only, for the items
    /// [`add_lock`](MemcacheHandle::add_lock) wrote (session locks). Not meant for session
    /// values, whose copies are removed with [`delete`](MemcacheHandle::delete).
    async fn delete_if(&self, key: &str, cas: u64) -> Result<DeleteIfOutcome, HandleError> {
        let server = self.primary(key)?;
        let status = self.client.server(server)?.delete(key, Some(cas)).await?;
        delete_if_outcome(status)
    }

    async fn touch(&self, key: &str, exptime: u32) -> Result<bool, HandleError> {
        let state = self.read_all(key, Some(exptime)).await;
        if let Some(e) = state.all_failed() {
            return Err(e.into());
        }
        Ok(state.newest().is_some_and(|c| !c.tombstone))
    }

    async fn server_info(&self) -> Result<ServerInfo, HandleError> {
        let mut version = None;
        let mut limit: Option<u64> = None;
        let mut last_err = None;
        for (_, answer) in self
            .client
            .each_server(|s| async move { s.version().await })
            .await
        {
            match answer {
                Ok(v) => {
                    version.get_or_insert(v);
                }
                Err(e) => last_err = Some(e),
            }
        }
        for (_, answer) in self
            .client
            .each_server(|s| async move { s.item_size_max().await })
            .await
        {
            if let Ok(max) = answer {
                limit = Some(limit.map_or(max, |l| l.min(max)));
            }
        }
        match version {
            Some(version) => Ok(ServerInfo {
                version,
                item_size_max: limit.map(|l| l.saturating_sub(ENVELOPE_LEN as u64)),
            }),
            None => Err(last_err
                .unwrap_or(Error::NoSuchServer { index: 0, count: 0 })
                .into()),
        }
    }

    async fn list_keys(&self) -> Result<Vec<ListedKey>, HandleError> {
        // Every server's keys (an error if any fails: never a partial listing), each key
        // once although it has several copies.
        let mut seen = BTreeSet::new();
        Ok(self
            .client
            .metadump()
            .await?
            .entries
            .into_iter()
            .filter_map(listed_key)
            .filter(|k| seen.insert(k.key.clone()))
            .collect())
    }
}

/// Counts the failure of one copy that the operation survived, by the server it names.
fn masked_failure(e: &Error) {
    let as_driver = cgi_session_core::DriverError::from(HandleError::from(e.clone()));
    cgi_session_core::observe::record_store_error(
        crate::handle::NAME,
        crate::driver::client_server(e),
        &as_driver,
    );
}
