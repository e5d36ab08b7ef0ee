//! Loading a session: one function per kind of reader.
//!
//! * [`load_request`]: a request's load (`SessionStore::load` and `new_session`): strict ids,
//!   ip matching, expiry, lifetime refresh and access-time write-back;
//! * [`load_for_update`]: the engine re-reading a session to save onto it (`update`, a group
//!   commit's fresh copy, `reload`): as a request's load, without the ip check;
//! * [`load_for_find`]: `SessionStore::find`: read-only, no ip check, no lifetime or
//!   access-time refresh.
//!
//! Each is made of the same steps: [`read`] (shared with concurrent loads of the id),
//! [`open`] (idle expiry, per-parameter expiry) and [`refresh`] (lifetime, access time).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{decode, Inner, Session};
use crate::driver::Loaded;
use crate::error::Error;
use crate::id::SessionId;
use crate::record::Record;
use crate::shared_read;

/// A request's load: the stored session under `claimed`, or an empty session when there is
/// no id, the id is malformed, nothing is stored, it expired (removed, and the empty session
/// says so) or, with ip matching on, it belongs to another address than `remote_addr` (the
/// stored session is left alone).
pub(crate) async fn load_request(
    store: &Arc<Inner>,
    claimed: Option<&str>,
    remote_addr: Option<&str>,
) -> Result<Session, Error> {
    let Some(id) = parse_claimed(claimed) else {
        return Ok(Session::empty(store, false));
    };
    let touch = touch_on_read(store);
    let Some(stored) = read(store, id, touch).await? else {
        return Ok(Session::empty(store, false));
    };
    if !ip_allows(store, &stored, remote_addr) {
        return Ok(Session::empty(store, false));
    }
    open_and_refresh(store, stored, touch).await
}

/// Loads `id` to save onto it (no ip check; expiry and refresh as on a request's load). An
/// empty session when nothing is stored (or it expired).
pub(crate) async fn load_for_update(store: &Arc<Inner>, id: &SessionId) -> Result<Session, Error> {
    let touch = touch_on_read(store);
    let Some(stored) = read(store, id.clone(), touch).await? else {
        return Ok(Session::empty(store, false));
    };
    open_and_refresh(store, stored, touch).await
}

/// Loads `id` for `find`: read-only (no ip check, no lifetime or access-time refresh);
/// expired sessions are removed and come back empty.
pub(crate) async fn load_for_find(store: &Arc<Inner>, id: &SessionId) -> Result<Session, Error> {
    let Some(stored) = read(store, id.clone(), None).await? else {
        return Ok(Session::empty(store, false));
    };
    let now = store.clock.now();
    Ok(open(store, stored, now)
        .await?
        .unwrap_or_else(|| Session::empty(store, true)))
}

/// [`open`] then [`refresh`], for the loads that refresh: an empty, expired session when the
/// stored one had expired.
async fn open_and_refresh(
    store: &Arc<Inner>,
    stored: Stored,
    touch: Option<Duration>,
) -> Result<Session, Error> {
    let now = store.clock.now();
    let Some(mut session) = open(store, stored, now).await? else {
        return Ok(Session::empty(store, true));
    };
    refresh(&mut session, touch, now).await?;
    Ok(session)
}

fn parse_claimed(claimed: Option<&str>) -> Option<SessionId> {
    match SessionId::parse(claimed?) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::debug!(error = %e, "ignoring a malformed session id");
            None
        }
    }
}

/// The lifetime refresh to ask for in the read itself, where the driver does that (a guess:
/// the store's default timeout; corrected by [`refresh`] once the session's own is known). A
/// driver that leaves lifetimes alone on reads is never asked to touch on a read: an item
/// another program wrote, perhaps undecodable here, keeps its lifetime.
fn touch_on_read(store: &Inner) -> Option<Duration> {
    if store.driver.refreshes_on_load() {
        store.ttl_for_idle(store.default_expire)
    } else {
        None
    }
}

/// A stored session as read and decoded.
struct Stored {
    id: SessionId,
    record: Record,
    loaded: Arc<Loaded>,
    /// When the read was sent.
    read_sent: Instant,
}

/// Reads and decodes `id`.
///
/// A copy reflects every write completed before its read was *sent*: that instant, not the
/// reply's, orders it against the copies this process wrote (see `merge`). Concurrent loads
/// of the id share one read sent after they all began.
async fn read(
    store: &Inner,
    id: SessionId,
    touch: Option<Duration>,
) -> Result<Option<Stored>, Error> {
    let (found, read_sent) = shared_read::load(
        &store.shared_reads,
        store.driver.as_ref(),
        &store.stats,
        &id,
        touch,
    )
    .await?;
    let Some(loaded) = found else {
        return Ok(None);
    };
    let record = decode(store, &id, bytes::Bytes::copy_from_slice(&loaded.data))?;
    Ok(Some(Stored {
        id,
        record,
        loaded,
        read_sent,
    }))
}

/// Ip matching: whether the session may be given to `remote_addr`.
///
/// Without a client address there is nothing to compare: the session is given, and a warning
/// is logged once per store (the web layer should pass the address).
fn ip_allows(store: &Inner, stored: &Stored, remote_addr: Option<&str>) -> bool {
    if !store.ip_match {
        return true;
    }
    match remote_addr {
        Some(addr) if stored.record.remote_addr != addr => {
            tracing::warn!(session = %stored.id, "ip mismatch: issuing a fresh session and leaving the stored one alone");
            false
        }
        Some(_) => true,
        None => {
            if !store.warned_no_client_addr.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    session = %stored.id,
                    "ip matching is on but a session was loaded without the client's address, so its address was not checked: pass the client address (REMOTE_ADDR) to `new_session`/`load` (logged once per store)"
                );
            }
            true
        }
    }
}

/// Applies idle expiry (an expired session is removed: `None`) and per-parameter expiry.
async fn open(store: &Arc<Inner>, stored: Stored, now: i64) -> Result<Option<Session>, Error> {
    let Stored {
        id,
        record,
        loaded,
        read_sent,
    } = stored;
    if let Some(expires_at) = record.expires_at(loaded.last_access) {
        if expires_at <= now {
            store.committer.forget(&id);
            store.driver.remove(&id).await?;
            return Ok(None);
        }
    }
    let last_access = loaded
        .last_access
        .map_or(record.atime, |la| la.max(record.atime));
    let mut session = Session::loaded(store, id, record, loaded.version, read_sent);
    // Per-parameter expiry, counted from the last access; the expire-list entry stays,
    // as in CGI::Session.
    let expired_params: Vec<String> = session
        .record
        .expire_list
        .iter()
        .flatten()
        .filter(|(name, secs)| {
            **secs != 0
                && last_access.saturating_add(**secs) <= now
                && session.record.params.contains_key(name)
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in expired_params {
        session.record.params.remove(&name);
        session.changes.removed.insert(name);
    }
    Ok(Some(session))
}

/// Refreshes a loaded session's lifetime and access time (`touch`: what the read asked for).
async fn refresh(session: &mut Session, touch: Option<Duration>, now: i64) -> Result<(), Error> {
    let store = Arc::clone(&session.store);
    // Where reads refresh lifetimes, give the session the lifetime a write would give it (its
    // own timeout, or the driver's default lifetime when it has none), not the store default
    // the read guessed: a read never shortens a lifetime.
    let wanted = store.ttl_for(&session.record, now);
    if store.driver.refreshes_on_load() && wanted != touch {
        if let Some(id) = &session.id {
            store.driver.touch(id, wanted).await?;
        }
    }
    // Reads do not rewrite the session, so the stored access time lags. Write it back once
    // half of the idle timeout has passed: a session that is only read still slides (also for
    // readers such as Perl's CGI::Session that only see the stored `_SESSION_ATIME`), at the
    // cost of one write per half timeout.
    if atime_write_back_due(session.record.etime, session.record.atime, now) {
        session.changes.atime = true;
    }
    session.record.atime = now;
    Ok(())
}

/// Whether a session with idle timeout `etime`, last written with access time `atime`, gets
/// its access time written back at `now`: once half of the timeout has passed.
pub(crate) fn atime_write_back_due(etime: Option<i64>, atime: i64, now: i64) -> bool {
    etime
        .filter(|e| *e > 0)
        .is_some_and(|etime| now - atime >= (etime / 2).max(1))
}
