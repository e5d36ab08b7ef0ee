//! The session `show` and `rm` name: found by id or unique prefix, with the driver that
//! reads and removes it whole (all copies of a replicated one).

use std::ops::ControlFlow;
use std::sync::Arc;

use cgi_session::{Driver, DriverError, Loaded, SessionId};

use crate::cli::{CliError, Global};
use crate::memcached::{self, Replicas};
use crate::store::Store;
use crate::util::show_id;

/// Finds the session `input` names: an exact id, or a unique prefix of one.
pub(crate) async fn resolve(
    g: &Global,
    store: &Store,
    input: &str,
) -> Result<(SessionId, Option<Loaded>), CliError> {
    let shown = show_id(input, g.full_ids);
    let id = SessionId::parse(input).map_err(|_| {
        CliError::Usage(format!(
            "{shown} is not a session id: ids are 1 to 128 characters of A-Z a-z 0-9 _ -"
        ))
    })?;
    let driver = store.driver();
    match driver.load(&id, None).await {
        Ok(Some(loaded)) => return Ok((id, Some(loaded))),
        Ok(None) => {}
        Err(e) => {
            // A replicated copy read over the plain pool: its envelope hides the gzip a
            // compressed session has, so only the replicated driver reads it.
            if let Some(m) = store.memcache() {
                if m.replicated.is_none()
                    && memcached::replicas(m, &store.spec, &id).await?.is_some()
                {
                    return Ok((id, None));
                }
            }
            return Err(CliError::failed(e));
        }
    }
    let missing = || CliError::Failed(format!("no session {shown} on {}", store.describe()));
    let mut matches = Vec::new();
    match driver
        .list(&mut |listed| {
            let candidate = listed.id;
            // A key several servers hold (replicas) is listed once per server.
            if candidate.as_str().starts_with(input) && !matches.contains(&candidate) {
                matches.push(candidate);
            }
            ControlFlow::Continue(())
        })
        .await
    {
        Ok(()) => {}
        // Hashed keys: digests cannot be matched against a prefix.
        Err(DriverError::Unsupported { .. }) => return Err(missing()),
        Err(e) => return Err(CliError::failed(e)),
    }
    match matches.len() {
        0 => Err(missing()),
        1 => {
            let id = matches.remove(0);
            let loaded = driver.load(&id, None).await.map_err(CliError::failed)?;
            Ok((id, loaded))
        }
        n => Err(CliError::Failed(format!(
            "{n} sessions start with {shown}; give more characters"
        ))),
    }
}

/// The driver that reads and removes session `id` whole: the store's, or for a replicated
/// session one that works on all of its copies.
pub(crate) async fn session_driver(
    store: &Store,
    id: &SessionId,
) -> Result<(Arc<dyn Driver>, Option<Replicas>), CliError> {
    if let Some(m) = store.memcache() {
        if let Some(r) = memcached::replicas(m, &store.spec, id).await? {
            return Ok((r.driver.clone(), Some(r)));
        }
    }
    Ok((store.driver(), None))
}
