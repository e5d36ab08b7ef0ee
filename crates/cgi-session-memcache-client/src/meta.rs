//! The meta-protocol dialect (memcached 1.6+): how each data operation is encoded as a meta
//! command (`mg`, `ms`, `md`, `mn`) and how its reply is read.

use crate::conn::Check;
use crate::error::{Error, Result};
use crate::key;
use crate::options::{DeleteStatus, GetOptions, Item, SetMode, SetOptions, StoreStatus};
use crate::pool::ServerPool;
use crate::proto::{encode_meta, MetaCode, Reply, ReplyKind};

/// Sends one meta command with a fresh opaque token and waits for its reply (`ms` and `md`
/// as writes, see [`Error::OutcomeUnknown`]).
async fn call(
    pool: &ServerPool,
    cmd: &str,
    key: &[u8],
    mut args: Vec<String>,
    data: Option<&[u8]>,
) -> Result<Reply> {
    let opaque = pool.next_opaque();
    args.push(format!("O{opaque}"));
    let mut bytes = Vec::with_capacity(64 + key.len() + data.map_or(0, |d| d.len() + 2));
    encode_meta(&mut bytes, cmd, key, &args);
    if let Some(data) = data {
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(b"\r\n");
    }
    tracing::debug!(server = %pool.server(), cmd, key = %key::log_prefix(key), "memcached request");
    let write = matches!(cmd, "ms" | "md");
    pool.call(bytes, ReplyKind::Meta, Check::Opaque(opaque), write)
        .await
}

fn parse_num<T: std::str::FromStr>(
    flags: &[(u8, Vec<u8>)],
    flag: u8,
    server: &str,
) -> Result<Option<T>> {
    match flags.iter().find(|(f, _)| *f == flag) {
        None => Ok(None),
        Some((_, tok)) => std::str::from_utf8(tok)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| {
                Error::protocol(
                    server,
                    format!(
                        "return flag '{}' has a non-numeric token {:?}",
                        char::from(flag),
                        String::from_utf8_lossy(tok)
                    ),
                )
            }),
    }
}

fn code(reply: &Reply) -> Option<MetaCode> {
    match reply {
        Reply::Meta { code, .. } => Some(*code),
        _ => None,
    }
}

/// `mg <key> v [c] [f] [l] [T<ttl>] [t]`: the reply's value is moved into the [`Item`].
pub(crate) async fn get(pool: &ServerPool, key: &[u8], opts: GetOptions) -> Result<Option<Item>> {
    let mut args = vec!["v".to_string()];
    if opts.cas {
        args.push("c".into());
    }
    if opts.flags {
        args.push("f".into());
    }
    if opts.last_access {
        args.push("l".into());
    }
    // `T` before `t`: memcached handles flags in order, so `t` then
    // reports the new TTL.
    if let Some(ttl) = opts.touch_ttl {
        args.push(format!("T{ttl}"));
    }
    if opts.ttl_remaining {
        args.push("t".into());
    }
    let server = pool.server();
    match call(pool, "mg", key, args, None).await? {
        Reply::Meta {
            code: MetaCode::Va,
            value: Some(value),
            flags,
        } => Ok(Some(Item {
            cas: parse_num(&flags, b'c', server)?,
            flags: parse_num(&flags, b'f', server)?,
            last_access_secs: parse_num(&flags, b'l', server)?,
            ttl_remaining: parse_num(&flags, b't', server)?,
            value,
        })),
        Reply::Meta {
            code: MetaCode::En, ..
        } => Ok(None),
        other => Err(pool.unexpected("mg", &other)),
    }
}

/// `ms <key> <len> T<ttl> F<flags> [C<cas>] M<mode> c`.
pub(crate) async fn set(
    pool: &ServerPool,
    key: &[u8],
    value: &[u8],
    opts: SetOptions,
) -> Result<StoreStatus> {
    let mut args = vec![
        value.len().to_string(),
        format!("T{}", opts.ttl),
        format!("F{}", opts.flags),
    ];
    if let Some(cas) = opts.cas {
        args.push(format!("C{cas}"));
    }
    args.push(
        match opts.mode {
            SetMode::Set => "MS",
            SetMode::Add => "ME",
            SetMode::Replace => "MR",
        }
        .into(),
    );
    args.push("c".into());
    let reply = call(pool, "ms", key, args, Some(value)).await?;
    match &reply {
        Reply::Meta {
            code: MetaCode::Hd,
            flags,
            ..
        } => Ok(StoreStatus::Stored {
            cas: parse_num(flags, b'c', pool.server())?,
        }),
        _ => match code(&reply) {
            Some(MetaCode::Ns) => Ok(StoreStatus::NotStored),
            Some(MetaCode::Ex) => Ok(StoreStatus::Exists),
            Some(MetaCode::Nf) => Ok(StoreStatus::NotFound),
            _ => Err(pool.unexpected("ms", &reply)),
        },
    }
}

/// `md <key> [C<cas>]`.
pub(crate) async fn delete(
    pool: &ServerPool,
    key: &[u8],
    cas: Option<u64>,
) -> Result<DeleteStatus> {
    let args = cas.map(|c| vec![format!("C{c}")]).unwrap_or_default();
    let reply = call(pool, "md", key, args, None).await?;
    match code(&reply) {
        Some(MetaCode::Hd) => Ok(DeleteStatus::Deleted),
        Some(MetaCode::Nf) => Ok(DeleteStatus::NotFound),
        Some(MetaCode::Ex) => Ok(DeleteStatus::Exists),
        _ => Err(pool.unexpected("md", &reply)),
    }
}

/// `mg <key> T<ttl>`.
pub(crate) async fn touch(pool: &ServerPool, key: &[u8], exptime: u32) -> Result<bool> {
    let reply = call(pool, "mg", key, vec![format!("T{exptime}")], None).await?;
    match code(&reply) {
        Some(MetaCode::Hd) => Ok(true),
        Some(MetaCode::En) => Ok(false),
        _ => Err(pool.unexpected("mg T", &reply)),
    }
}

/// `mn`, answered `MN`.
pub(crate) async fn noop(pool: &ServerPool) -> Result<()> {
    let reply = pool
        .call(b"mn\r\n".to_vec(), ReplyKind::Meta, Check::None, false)
        .await?;
    match code(&reply) {
        Some(MetaCode::Mn) => Ok(()),
        _ => Err(pool.unexpected("mn", &reply)),
    }
}
