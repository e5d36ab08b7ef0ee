//! The classic text-protocol dialect (`get`/`gets`/`gat`/`gats`, `set`/`add`/`replace`/`cas`,
//! `delete`, `touch`), for proxies such as twemproxy that do not speak meta: how each data
//! operation is encoded and how its reply is read.

use crate::admin;
use crate::conn::Check;
use crate::error::{Error, Result};
use crate::key;
use crate::options::{DeleteStatus, GetOptions, Item, SetMode, SetOptions, StoreStatus};
use crate::pool::ServerPool;
use crate::proto::{Reply, ReplyKind, TextStatus};

/// Sends one text-protocol request (`write`: a store or delete, see
/// [`Error::OutcomeUnknown`]).
async fn call(
    pool: &ServerPool,
    line: String,
    key: &[u8],
    data: Option<&[u8]>,
    kind: ReplyKind,
    write: bool,
) -> Result<Reply> {
    let mut bytes = line.into_bytes();
    bytes.extend_from_slice(b"\r\n");
    if let Some(data) = data {
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(b"\r\n");
    }
    tracing::debug!(server = %pool.server(), key = %key::log_prefix(key), "memcached text request");
    let check = if kind == ReplyKind::TextGet {
        Check::Key(key.to_vec())
    } else {
        Check::None
    };
    pool.call(bytes, kind, check, write).await
}

async fn read(pool: &ServerPool, line: String, key: &[u8]) -> Result<Reply> {
    call(pool, line, key, None, ReplyKind::TextGet, false).await
}

/// `get`/`gets`, or `gat`/`gats` to touch; without `gat` (twemproxy) a read and a `touch`,
/// pipelined.
pub(crate) async fn get(
    pool: &ServerPool,
    key: &[u8],
    opts: GetOptions,
    gat: bool,
) -> Result<Option<Item>> {
    let k = String::from_utf8_lossy(key);
    let cmd = if opts.cas { "gets" } else { "get" };
    let reply = match opts.touch_ttl {
        Some(ttl) if gat => {
            let cmd = if opts.cas { "gats" } else { "gat" };
            read(pool, format!("{cmd} {ttl} {k}"), key).await?
        }
        Some(ttl) => {
            let (read, touched) =
                tokio::join!(read(pool, format!("{cmd} {k}"), key), touch(pool, key, ttl));
            let reply = read?;
            touched?;
            reply
        }
        None => read(pool, format!("{cmd} {k}"), key).await?,
    };
    match reply {
        Reply::Value(None) => Ok(None),
        Reply::Value(Some(v)) => Ok(Some(Item {
            value: v.value,
            cas: if opts.cas { v.cas } else { None },
            flags: opts.flags.then_some(v.flags),
            last_access_secs: None,
            ttl_remaining: None,
        })),
        other => Err(pool.unexpected(cmd, &other)),
    }
}

/// `set`/`add`/`replace`, or `cas` when a CAS token is given; the new CAS is read back.
pub(crate) async fn set(
    pool: &ServerPool,
    key: &[u8],
    value: &[u8],
    opts: SetOptions,
) -> Result<StoreStatus> {
    let k = String::from_utf8_lossy(key);
    let (cmd, cas) = match (opts.cas, opts.mode) {
        (Some(cas), _) => ("cas", format!(" {cas}")),
        (None, SetMode::Add) => ("add", String::new()),
        (None, SetMode::Replace) => ("replace", String::new()),
        (None, _) => ("set", String::new()),
    };
    let line = format!("{cmd} {k} {} {} {}{cas}", opts.flags, opts.ttl, value.len());
    match call(pool, line, key, Some(value), ReplyKind::TextStatus, true).await? {
        Reply::Status(TextStatus::Stored) => Ok(StoreStatus::Stored {
            cas: cas_of(pool, key, value, opts.flags).await,
        }),
        Reply::Status(TextStatus::NotStored) => Ok(StoreStatus::NotStored),
        Reply::Status(TextStatus::Exists) => Ok(StoreStatus::Exists),
        Reply::Status(TextStatus::NotFound) => Ok(StoreStatus::NotFound),
        other => Err(pool.unexpected(cmd, &other)),
    }
}

/// The text protocol does not return the new CAS after a store: read it
/// back with `gets`, and trust it only if the item still holds exactly
/// what was written (then a CAS save based on it cannot overwrite
/// anybody else's data). `None` if it changed or the read fails.
async fn cas_of(pool: &ServerPool, key: &[u8], value: &[u8], flags: u32) -> Option<u64> {
    let line = format!("gets {}", String::from_utf8_lossy(key));
    match read(pool, line, key).await {
        Ok(Reply::Value(Some(v))) if v.value == value && v.flags == flags => v.cas,
        _ => None,
    }
}

/// `delete <key>`; a CAS-guarded delete does not exist in this protocol.
pub(crate) async fn delete(
    pool: &ServerPool,
    key: &[u8],
    cas: Option<u64>,
) -> Result<DeleteStatus> {
    if cas.is_some() {
        return Err(Error::Unsupported {
            server: pool.server().to_string(),
            what: "a CAS-guarded delete (the text protocol has none; use the meta protocol)",
        });
    }
    let line = format!("delete {}", String::from_utf8_lossy(key));
    match call(pool, line, key, None, ReplyKind::TextStatus, true).await? {
        Reply::Status(TextStatus::Deleted) => Ok(DeleteStatus::Deleted),
        Reply::Status(TextStatus::NotFound) => Ok(DeleteStatus::NotFound),
        other => Err(pool.unexpected("delete", &other)),
    }
}

/// `touch <key> <exptime>`.
pub(crate) async fn touch(pool: &ServerPool, key: &[u8], exptime: u32) -> Result<bool> {
    let line = format!("touch {} {exptime}", String::from_utf8_lossy(key));
    match call(pool, line, key, None, ReplyKind::TextStatus, false).await? {
        Reply::Status(TextStatus::Touched) => Ok(true),
        Reply::Status(TextStatus::NotFound) => Ok(false),
        other => Err(pool.unexpected("touch", &other)),
    }
}

/// No `mn` here: `version` is the cheap liveness check.
pub(crate) async fn noop(pool: &ServerPool) -> Result<()> {
    admin::version(pool).await.map(|_| ())
}

/// Key listing needs `lru_crawler`, which a proxy cannot offer for its servers.
pub(crate) fn no_listing(pool: &ServerPool) -> Error {
    Error::Unsupported {
        server: pool.server().to_string(),
        what: "listing keys (a proxy such as twemproxy cannot list its servers' keys; use the meta protocol against each memcached)",
    }
}
