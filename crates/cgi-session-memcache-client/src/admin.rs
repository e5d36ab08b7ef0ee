//! Administrative commands, the same in both dialects: `version`, `stats [<arg>]` and the
//! item size limit (`stats settings`).

use std::collections::HashMap;

use crate::conn::Check;
use crate::error::{Error, Result};
use crate::pool::ServerPool;
use crate::proto::{Reply, ReplyKind};

/// `stats` or `stats <arg>`; `arg` must be printable ASCII.
pub(crate) fn stats_request(arg: Option<&str>) -> Result<Vec<u8>> {
    let Some(arg) = arg else {
        return Ok(b"stats\r\n".to_vec());
    };
    if arg.trim().is_empty() || !arg.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(Error::InvalidKey {
            reason: "the stats argument is empty or has control characters".into(),
        });
    }
    Ok(format!("stats {arg}\r\n").into_bytes())
}

/// `version`.
pub(crate) async fn version(pool: &ServerPool) -> Result<String> {
    match pool
        .call(
            b"version\r\n".to_vec(),
            ReplyKind::Version,
            Check::None,
            false,
        )
        .await?
    {
        Reply::Version(v) => Ok(v),
        other => Err(pool.unexpected("version", &other)),
    }
}

/// A `stats` request built by [`stats_request`].
pub(crate) async fn stats(pool: &ServerPool, request: Vec<u8>) -> Result<HashMap<String, String>> {
    match pool
        .call(request, ReplyKind::Stats, Check::None, false)
        .await?
    {
        Reply::Stats(lines) => Ok(lines.into_iter().collect()),
        other => Err(pool.unexpected("stats", &other)),
    }
}

/// `item_size_max` from `stats settings`.
pub(crate) async fn item_size_max(pool: &ServerPool) -> Result<u64> {
    let settings = stats(pool, b"stats settings\r\n".to_vec()).await?;
    settings
        .get("item_size_max")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            Error::protocol(
                pool.server(),
                "`stats settings` has no numeric item_size_max",
            )
        })
}
