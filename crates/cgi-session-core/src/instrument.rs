//! The session operations, observed: each counted operation (a request's load of a claimed
//! id, a save, a delete, an id regeneration) runs in its span and records its outcome and
//! duration (`crate::observe` names them). The engine (`crate::engine`) does the work.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use crate::engine::load::load_request;
use crate::engine::{save, Inner, Session};
use crate::error::Error;
use crate::id::SessionId;
use crate::observe::{self, IdPrefix, LoadResult, Op};

/// A request's load (`SessionStore::load` and `new_session`): a claimed id is counted as a
/// hit, miss, expiry or error; no id costs nothing.
pub(crate) async fn load(
    inner: &Arc<Inner>,
    claimed: Option<&str>,
    remote_addr: Option<&str>,
) -> Result<Session, Error> {
    if claimed.is_none() {
        return load_request(inner, None, remote_addr).await;
    }
    let span = observe::span(Op::Load, inner.driver.name(), IdPrefix(claimed));
    let started = Instant::now();
    let result = load_request(inner, claimed, remote_addr)
        .instrument(span)
        .await;
    observe::load_result(match &result {
        Ok(s) if s.id.is_some() => LoadResult::Hit,
        Ok(s) if s.is_expired => LoadResult::Expired,
        Ok(_) => LoadResult::Miss,
        Err(_) => LoadResult::Error,
    });
    observe::finish(Op::Load, started, &result);
    result
}

/// `Session::flush`: a delete of a stored session, or a save of a new or changed one, is
/// counted; an untouched session costs nothing.
pub(crate) async fn flush(session: &mut Session) -> Result<(), Error> {
    let op = if session.id.is_none() {
        None
    } else if session.deleted {
        session.stored.then_some(Op::Delete)
    } else if session.is_new || session.changes.any() {
        Some(Op::Save)
    } else {
        None
    };
    let Some(op) = op else {
        return save::flush(session).await;
    };
    let span = span_of(op, session);
    let started = Instant::now();
    let result = save::flush(session).instrument(span).await;
    observe::finish(op, started, &result);
    result
}

/// `Session::update` of a stored session, counted as a save.
pub(crate) async fn update<R, F>(session: &mut Session, change: F) -> Result<R, Error>
where
    F: FnMut(&mut Session) -> Result<R, Error> + Send + 'static,
    R: Send + 'static,
{
    if session.id.is_none() || session.deleted || session.is_new || !session.stored {
        // Runs on the session in memory (or fails): nothing reaches the store.
        return save::update(session, change).await;
    }
    let span = span_of(Op::Save, session);
    let started = Instant::now();
    let result = save::update(session, change).instrument(span).await;
    observe::finish(Op::Save, started, &result);
    result
}

/// `SessionStore::update`, counted as a save.
pub(crate) async fn update_stored<R, F>(
    inner: &Arc<Inner>,
    id: &SessionId,
    change: F,
) -> Result<R, Error>
where
    F: FnMut(&mut Session) -> Result<R, Error> + Send + 'static,
    R: Send + 'static,
{
    let span = observe::span(Op::Save, inner.driver.name(), IdPrefix(Some(id.as_str())));
    let started = Instant::now();
    let result = save::update_stored(inner, id, change)
        .instrument(span)
        .await;
    observe::finish(Op::Save, started, &result);
    result
}

/// `Session::regenerate_id`.
pub(crate) async fn regenerate_id(session: &mut Session) -> Result<(), Error> {
    let span = span_of(Op::Regenerate, session);
    let started = Instant::now();
    let result = save::regenerate_id(session).instrument(span).await;
    observe::finish(Op::Regenerate, started, &result);
    result
}

fn span_of(op: Op, session: &Session) -> tracing::Span {
    observe::span(
        op,
        session.store.driver.name(),
        IdPrefix(session.id.as_ref().map(SessionId::as_str)),
    )
}
