//! The work of one cycle, shared by the load program, the criterion micro-benchmarks and the
//! `cycle_instructions` example, so that they all measure the same thing.

use std::hint::black_box;

use cgi_session_core::record::Record;
use cgi_session_core::{JsonSerializer, SessionStore};

use crate::samples::sample_params;

/// Stores benchmark session `i` (its [`sample_params`] with 5 tags, created from 127.0.0.1)
/// and returns its id.
///
/// # Errors
/// The store's error, as text.
pub async fn create_sample_session(store: &SessionStore, i: usize) -> Result<String, String> {
    let mut s = store
        .new_session(None, Some("127.0.0.1"))
        .await
        .map_err(|e| e.to_string())?;
    for (k, v) in sample_params(i, 5) {
        s.set_value(&k, v).map_err(|e| e.to_string())?;
    }
    s.flush().await.map_err(|e| e.to_string())?;
    s.id()
        .map(|id| id.as_str().to_owned())
        .ok_or_else(|| "a new session has no id".to_string())
}

/// One session cycle: load `id`, read `user`, then (unless `read_only`) increment `counter`,
/// and flush (which writes only when something changed).
///
/// # Errors
/// The store's error, as text; an error too when the session is gone (evicted?).
pub async fn session_cycle(store: &SessionStore, id: &str, read_only: bool) -> Result<(), String> {
    let mut s = store
        .load(Some(id), None)
        .await
        .map_err(|e| e.to_string())?;
    if s.id().is_none() {
        return Err("session: a benchmark session is missing (evicted?)".into());
    }
    let name: Option<String> = s.get("user").map_err(|e| e.to_string())?;
    black_box(&name);
    if !read_only {
        let n: i64 = s.get("counter").map_err(|e| e.to_string())?.unwrap_or(0);
        s.set("counter", &(n + 1)).map_err(|e| e.to_string())?;
    }
    s.flush().await.map_err(|e| e.to_string())
}

/// The record codec's part of a session cycle, JSON: decode `stored`, read `user` and
/// `counter`, set `counter`, encode. Returns the encoded length.
///
/// # Errors
/// When the bytes are not a JSON session record with those parameters.
pub fn record_cycle(stored: &[u8]) -> Result<usize, String> {
    let mut r = Record::decode(&JsonSerializer, stored).map_err(|e| e.to_string())?;
    let user: Option<String> = r
        .params
        .get_as("user")
        .transpose()
        .map_err(|e| e.to_string())?;
    black_box(&user);
    let n: i64 = r
        .params
        .get_as("counter")
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or(0);
    r.params.insert("counter".into(), (n + 1).into());
    Ok(r.encode(&JsonSerializer).map_err(|e| e.to_string())?.len())
}
