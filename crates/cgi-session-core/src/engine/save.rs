//! Saving a session: what `flush`, `update`, `reload` and `regenerate_id` do.
//!
//! * a new session is created with an add-only write, under a fresh id when the store cannot
//!   take the one it has ([`create_stored`]: create-with-retry);
//! * a changed stored session hands what it changed to the group commit ([`commit`], batches
//!   written by [`merge`](super::merge)) and takes the copy that was written;
//! * a deleted session is removed;
//! * [`regenerate_id`] re-creates the session under a new id and removes the old record.

use std::sync::Arc;
use std::time::Duration;

use super::load::load_for_update;
use super::merge::{capture, submit, take_result};
use super::{Apply, Changes, Committed, Delta, Job, Session};
use crate::driver::{StoreMode, StoreOutcome};
use crate::error::{DriverError, Error};
use crate::id::SessionId;

/// `Session::flush`: a new session is created, a deleted one removed, a changed one saved
/// through the group commit; an untouched one costs nothing.
pub(crate) async fn flush(session: &mut Session) -> Result<(), Error> {
    let Some(id) = session.id.clone() else {
        return if session.changes.any() {
            Err(Error::NoId)
        } else {
            Ok(())
        };
    };
    if session.deleted {
        if session.stored {
            session.store.committer.forget(&id);
            session.store.driver.remove(&id).await?;
            session.stored = false;
        }
        session.changes = Changes::default();
        session.is_new = false;
        return Ok(());
    }
    if session.is_new {
        return create_stored(session).await;
    }
    if !session.changes.any() {
        return Ok(());
    }
    let delta = session.changes.delta(&session.record);
    let only_atime = !session.changes.any_but_atime();
    match commit(session, id, Some(delta), None).await {
        // A session that no longer fits the store (its limit was lowered, or another program
        // grew it) still serves reads: skipping the access-time write-back costs only the
        // sliding of a stored timestamp, failing would fail every request.
        Err(Error::Driver(e @ DriverError::TooLarge { .. })) if only_atime => {
            tracing::warn!(error = %e, "access-time write-back skipped: the session is larger than the store accepts");
            session.changes = Changes::default();
            Ok(())
        }
        other => other,
    }
}

/// `Session::update`: `change` on the freshest stored copy, written at once with this
/// request's unsaved changes (a session not stored yet has no other writer: `change` runs on
/// it directly).
pub(crate) async fn update<R, F>(session: &mut Session, mut change: F) -> Result<R, Error>
where
    F: FnMut(&mut Session) -> Result<R, Error> + Send + 'static,
    R: Send + 'static,
{
    let Some(id) = session.id.clone() else {
        return Err(Error::NoId);
    };
    if session.deleted {
        return Err(Error::Gone { id });
    }
    if session.is_new || !session.stored {
        let snapshot = session.record.clone();
        let changes = session.changes.clone();
        return match change(session) {
            Ok(r) => Ok(r),
            Err(e) => {
                session.record = snapshot;
                session.changes = changes;
                Err(e)
            }
        };
    }
    let delta = session
        .changes
        .any()
        .then(|| session.changes.delta(&session.record));
    let (apply, result) = capture(change);
    commit(session, id, delta, Some(apply)).await?;
    take_result(&result)
}

/// `SessionStore::update`: `change` on the freshest stored copy of `id`, no request copy.
pub(crate) async fn update_stored<R, F>(
    store: &Arc<super::Inner>,
    id: &SessionId,
    change: F,
) -> Result<R, Error>
where
    F: FnMut(&mut Session) -> Result<R, Error> + Send + 'static,
    R: Send + 'static,
{
    let (apply, result) = capture(change);
    let job = Job::new(None, Some(apply), store.conflict, None);
    submit(store, id, job).await?;
    take_result(&result)
}

/// `Session::reload`: the stored session with this request's unsaved changes on top.
pub(crate) async fn reload(session: &mut Session) -> Result<(), Error> {
    let Some(id) = session.id.clone() else {
        return Ok(());
    };
    if !session.stored || session.is_new {
        return Ok(());
    }
    let fresh = load_for_update(&session.store, &id).await?;
    let delta = session.changes.delta(&session.record);
    let Some(base) = fresh.into_base() else {
        // Deleted or expired meanwhile: nothing stored any more.
        session.stored = false;
        session.changes = Changes::default();
        session.is_expired = true;
        return Ok(());
    };
    session.record = base.record;
    session.version = base.version;
    session.synced_at = base.at;
    delta.apply(&mut session.record);
    Ok(())
}

/// Hands this request's changes (and an update closure) to the group commit, starting from
/// this session's copy, and takes the copy that was written.
async fn commit(
    session: &mut Session,
    id: SessionId,
    delta: Option<Delta>,
    apply: Option<Apply>,
) -> Result<(), Error> {
    let job = Job::new(delta, apply, session.store.conflict, Some(session.base()));
    match submit(&session.store, &id, job).await {
        Ok(committed) => {
            adopt(session, committed);
            Ok(())
        }
        Err(Error::Gone { .. }) => {
            session.stored = false;
            session.changes = Changes::default();
            Err(Error::Gone { id })
        }
        Err(e) => Err(e),
    }
}

/// Takes the copy a group commit wrote.
fn adopt(session: &mut Session, committed: Committed) {
    session.record = Arc::try_unwrap(committed.record).unwrap_or_else(|shared| (*shared).clone());
    session.version = committed.version;
    session.changes = Changes::default();
    session.synced_at = tokio::time::Instant::now();
}

/// Ids tried at most by [`create_stored`]: with one of three servers down, 16 ids all landing
/// on it has a chance of 3^-16 (about 2e-8) per new session.
const MAX_IDS: u32 = 16;
/// Failures that took this long waited for a timeout rather than failing at once.
const SLOW: Duration = Duration::from_millis(100);
/// Failures that waited for a timeout that end [`create_stored`]'s retries.
const MAX_SLOW_FAILURES: u32 = 2;

/// Writes a new session (add-only). A generated id that is taken, or whose store server is
/// down or hung ([`DriverError::is_unavailable`]: with several servers, another id most
/// likely lands on another one), is replaced by a fresh id and the write tried again, up to
/// [`MAX_IDS`] ids; failures that waited (a hung server's timeout) end the retries after
/// [`MAX_SLOW_FAILURES`], so a store that is down as a whole answers within about two
/// timeouts. An id that was tried on a failing server is never used again (a write whose
/// outcome is unknown may still land under it), even when every attempt fails. An adopted
/// (client-chosen) id is never replaced.
async fn create_stored(session: &mut Session) -> Result<(), Error> {
    let ttl = session
        .store
        .ttl_for(&session.record, session.store.clock.now());
    let mut unavailable: Option<DriverError> = None;
    let mut slow_failures = 0;
    for attempt in 1..=MAX_IDS {
        let Some(id) = session.id.clone() else {
            return Err(Error::NoId);
        };
        let bytes = session.encode()?;
        let started = tokio::time::Instant::now();
        match session
            .store
            .driver
            .store(&id, &bytes, StoreMode::Create, ttl)
            .await
        {
            Ok(StoreOutcome::Stored(version)) => {
                if attempt > 1 {
                    tracing::debug!(
                        session = %id,
                        attempts = attempt,
                        "new session created under another id"
                    );
                }
                session.version = version;
                session.synced_at = tokio::time::Instant::now();
                session.stored = true;
                session.is_new = false;
                session.changes = Changes::default();
                return Ok(());
            }
            Ok(_) if session.adopted => {
                return Err(Error::Conflict {
                    id,
                    attempts: attempt,
                })
            }
            Ok(_) => {
                tracing::warn!(session = %id, "generated id already in use; generating another");
                fresh_id(session).await?;
            }
            Err(e) if e.is_unavailable() && !session.adopted => {
                // Never reuse this id: a fresh one is taken before anything else can happen,
                // even if this was the last attempt.
                fresh_id(session).await?;
                if e.is_outcome_unknown() || started.elapsed() >= SLOW {
                    slow_failures += 1;
                }
                tracing::debug!(
                    session = %id,
                    attempt,
                    error = %e,
                    "the store cannot take a new session under this id; trying another"
                );
                unavailable = Some(e);
                if slow_failures >= MAX_SLOW_FAILURES {
                    break;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(match unavailable {
        Some(e) => Error::Driver(e),
        None => Error::IdCollision { attempts: MAX_IDS },
    })
}

/// Replaces a (new, unstored) session's id with a freshly generated one.
async fn fresh_id(session: &mut Session) -> Result<(), Error> {
    let fresh = session.store.generate_id().await?;
    session.record.id = fresh.as_str().to_owned();
    session.id = Some(fresh);
    Ok(())
}

/// `Session::regenerate_id`: a new id for the session, keeping its data; the record under the
/// old id is removed. Written at once.
pub(crate) async fn regenerate_id(session: &mut Session) -> Result<(), Error> {
    let Some(old) = session.id.clone() else {
        return Err(Error::NoId);
    };
    let new = session.store.generate_id().await?;
    session.record.id = new.as_str().to_owned();
    session.id = Some(new);
    session.adopted = false;
    if !session.stored {
        // Never written: nothing to move.
        return Ok(());
    }
    session.is_new = true;
    session.stored = false;
    session.record.atime = session.store.clock.now();
    create_stored(session).await?;
    session.store.committer.forget(&old);
    session.store.driver.remove(&old).await?;
    Ok(())
}
