//! The meta-protocol dialect (memcached 1.6+): how each data operation is encoded as a meta
//! command (`mg`, `ms`, `md`, `mn`) and how its reply is read.

use crate::conn::Check;
use crate::error::{Error, Result};
use crate::key;
use crate::options::{DeleteStatus, GetOptions, Item, SetMode, SetOptions, StoreStatus};
use crate::pool::ServerPool;
use crate::proto::{MetaCode, MetaFlags, Reply, ReplyKind};

/// One meta command being encoded: the command, the key and its flags go straight into the
/// one buffer that is handed to the connection (no per-flag strings). The key must have been
/// validated (by [`crate::node::Node`], once).
struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    /// `<cmd> <key>`, with room for `data` (a value and its CRLF) after the flags.
    fn new(cmd: &str, key: &[u8], data: usize) -> Encoder {
        // cmd, spaces, up to 8 numeric flags of 20 digits, the opaque token, CRLFs.
        let mut bytes = Vec::with_capacity(cmd.len() + key.len() + 96 + data);
        bytes.extend_from_slice(cmd.as_bytes());
        bytes.push(b' ');
        bytes.extend_from_slice(key);
        Encoder { bytes }
    }

    /// ` <flag>`.
    fn flag(&mut self, flag: u8) -> &mut Self {
        self.bytes.extend_from_slice(&[b' ', flag]);
        self
    }

    /// ` <flag><n>`.
    fn num_flag(&mut self, flag: u8, n: u64) -> &mut Self {
        self.flag(flag);
        push_decimal(&mut self.bytes, n);
        self
    }

    /// ` <n>` (the data length of `ms`).
    fn num(&mut self, n: u64) -> &mut Self {
        self.bytes.push(b' ');
        push_decimal(&mut self.bytes, n);
        self
    }

    /// ` O<opaque>\r\n`, then `data` and its CRLF: the finished request.
    fn finish(mut self, opaque: u32, data: Option<&[u8]>) -> Vec<u8> {
        self.num_flag(b'O', u64::from(opaque));
        self.bytes.extend_from_slice(b"\r\n");
        if let Some(data) = data {
            self.bytes.extend_from_slice(data);
            self.bytes.extend_from_slice(b"\r\n");
        }
        self.bytes
    }
}

/// Appends `n` in decimal.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // n % 10 < 10: the cast cannot truncate.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The bytes of `mg <key> v [c] [f] [l] [T<ttl>] [t] O<opaque>`.
fn encode_get(key: &[u8], opts: &GetOptions, opaque: u32) -> Vec<u8> {
    let mut e = Encoder::new("mg", key, 0);
    e.flag(b'v');
    if opts.cas {
        e.flag(b'c');
    }
    if opts.flags {
        e.flag(b'f');
    }
    if opts.last_access {
        e.flag(b'l');
    }
    // `T` before `t`: memcached handles flags in order, so `t` then
    // reports the new TTL.
    if let Some(ttl) = opts.touch_ttl {
        e.num_flag(b'T', u64::from(ttl));
    }
    if opts.ttl_remaining {
        e.flag(b't');
    }
    e.finish(opaque, None)
}

/// The bytes of `ms <key> <len> T<ttl> F<flags> [C<cas>] M<mode> c O<opaque>` and the value.
fn encode_set(key: &[u8], value: &[u8], opts: &SetOptions, opaque: u32) -> Vec<u8> {
    let mut e = Encoder::new("ms", key, value.len() + 2);
    e.num(value.len() as u64)
        .num_flag(b'T', u64::from(opts.ttl))
        .num_flag(b'F', u64::from(opts.flags));
    if let Some(cas) = opts.cas {
        e.num_flag(b'C', cas);
    }
    e.flag(b'M').bytes.push(match opts.mode {
        SetMode::Set => b'S',
        SetMode::Add => b'E',
        SetMode::Replace => b'R',
    });
    e.flag(b'c');
    e.finish(opaque, Some(value))
}

/// The bytes of `md <key> [C<cas>] O<opaque>`.
fn encode_delete(key: &[u8], cas: Option<u64>, opaque: u32) -> Vec<u8> {
    let mut e = Encoder::new("md", key, 0);
    if let Some(cas) = cas {
        e.num_flag(b'C', cas);
    }
    e.finish(opaque, None)
}

/// The bytes of `mg <key> T<exptime> O<opaque>`.
fn encode_touch(key: &[u8], exptime: u32, opaque: u32) -> Vec<u8> {
    let mut e = Encoder::new("mg", key, 0);
    e.num_flag(b'T', u64::from(exptime));
    e.finish(opaque, None)
}

/// Sends one encoded meta command (made with `opaque`) and waits for its reply (`ms` and
/// `md` as writes, see [`Error::OutcomeUnknown`]).
async fn call(
    pool: &ServerPool,
    cmd: &'static str,
    key: &[u8],
    opaque: u32,
    bytes: Vec<u8>,
) -> Result<Reply> {
    tracing::debug!(server = %pool.server(), cmd, key = %key::log_prefix(key), "memcached request");
    let write = matches!(cmd, "ms" | "md");
    pool.call(bytes, ReplyKind::Meta, Check::Opaque(opaque), write)
        .await
}

fn parse_num<T: std::str::FromStr>(flags: &MetaFlags, flag: u8, server: &str) -> Result<Option<T>> {
    match flags.get(flag) {
        None => Ok(None),
        Some(tok) => std::str::from_utf8(tok)
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
    let opaque = pool.next_opaque();
    let bytes = encode_get(key, &opts, opaque);
    let server = pool.server();
    match call(pool, "mg", key, opaque, bytes).await? {
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
    let opaque = pool.next_opaque();
    let bytes = encode_set(key, value, &opts, opaque);
    let reply = call(pool, "ms", key, opaque, bytes).await?;
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
    let opaque = pool.next_opaque();
    let bytes = encode_delete(key, cas, opaque);
    let reply = call(pool, "md", key, opaque, bytes).await?;
    match code(&reply) {
        Some(MetaCode::Hd) => Ok(DeleteStatus::Deleted),
        Some(MetaCode::Nf) => Ok(DeleteStatus::NotFound),
        Some(MetaCode::Ex) => Ok(DeleteStatus::Exists),
        _ => Err(pool.unexpected("md", &reply)),
    }
}

/// `mg <key> T<ttl>`.
pub(crate) async fn touch(pool: &ServerPool, key: &[u8], exptime: u32) -> Result<bool> {
    let opaque = pool.next_opaque();
    let bytes = encode_touch(key, exptime, opaque);
    let reply = call(pool, "mg", key, opaque, bytes).await?;
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The encoder this module had before (flags formatted into a `Vec<String>`, then
    /// joined): the new one must produce the very same bytes.
    fn legacy(
        cmd: &str,
        key: &[u8],
        mut args: Vec<String>,
        opaque: u32,
        data: Option<&[u8]>,
    ) -> Vec<u8> {
        args.push(format!("O{opaque}"));
        let mut out = Vec::new();
        out.extend_from_slice(cmd.as_bytes());
        out.push(b' ');
        out.extend_from_slice(key);
        for a in &args {
            out.push(b' ');
            out.extend_from_slice(a.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if let Some(data) = data {
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    fn legacy_get(key: &[u8], opts: &GetOptions, opaque: u32) -> Vec<u8> {
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
        if let Some(ttl) = opts.touch_ttl {
            args.push(format!("T{ttl}"));
        }
        if opts.ttl_remaining {
            args.push("t".into());
        }
        legacy("mg", key, args, opaque, None)
    }

    fn legacy_set(key: &[u8], value: &[u8], opts: &SetOptions, opaque: u32) -> Vec<u8> {
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
        legacy("ms", key, args, opaque, Some(value))
    }

    #[test]
    fn commands_encode_to_these_bytes() {
        let key = b"sessions:abc";
        let table: Vec<(Vec<u8>, &[u8])> = vec![
            (
                encode_get(key, &GetOptions::new(), 1),
                b"mg sessions:abc v O1\r\n",
            ),
            (
                encode_get(
                    key,
                    &GetOptions::new().cas(true).flags(true).touch(3610),
                    42,
                ),
                b"mg sessions:abc v c f T3610 O42\r\n",
            ),
            (
                encode_get(
                    key,
                    &GetOptions {
                        cas: true,
                        touch_ttl: Some(0),
                        last_access: true,
                        flags: true,
                        ttl_remaining: true,
                    },
                    u32::MAX,
                ),
                b"mg sessions:abc v c f l T0 t O4294967295\r\n",
            ),
            (
                encode_set(key, b"{}", &SetOptions::new(), 0),
                b"ms sessions:abc 2 T0 F0 MS c O0\r\n{}\r\n",
            ),
            (
                encode_set(
                    key,
                    b"",
                    &SetOptions::new()
                        .ttl(1_800)
                        .flags(2)
                        .cas(Some(u64::MAX))
                        .mode(SetMode::Replace),
                    7,
                ),
                b"ms sessions:abc 0 T1800 F2 C18446744073709551615 MR c O7\r\n\r\n",
            ),
            (
                encode_set(key, b"v", &SetOptions::new().mode(SetMode::Add).ttl(30), 9),
                b"ms sessions:abc 1 T30 F0 ME c O9\r\nv\r\n",
            ),
            (encode_delete(key, None, 3), b"md sessions:abc O3\r\n"),
            (
                encode_delete(key, Some(10), 4),
                b"md sessions:abc C10 O4\r\n",
            ),
            (encode_touch(key, 60, 5), b"mg sessions:abc T60 O5\r\n"),
        ];
        for (got, want) in table {
            assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
        }
    }

    #[test]
    fn decimals() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, u64::from(u32::MAX), u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    fn get_options() -> impl Strategy<Value = GetOptions> {
        (
            any::<bool>(),
            proptest::option::of(any::<u32>()),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(cas, touch_ttl, last_access, flags, ttl_remaining)| GetOptions {
                    cas,
                    touch_ttl,
                    last_access,
                    flags,
                    ttl_remaining,
                },
            )
    }

    fn set_options() -> impl Strategy<Value = SetOptions> {
        (
            prop_oneof![
                Just(SetMode::Set),
                Just(SetMode::Add),
                Just(SetMode::Replace)
            ],
            proptest::option::of(any::<u64>()),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(|(mode, cas, ttl, flags)| SetOptions {
                mode,
                cas,
                ttl,
                flags,
            })
    }

    proptest! {
        #[test]
        fn the_encoder_writes_the_bytes_the_legacy_encoder_wrote(
            key in "[!-~]{1,250}",
            value in proptest::collection::vec(any::<u8>(), 0..600),
            get in get_options(),
            set in set_options(),
            cas in proptest::option::of(any::<u64>()),
            exptime in any::<u32>(),
            opaque in any::<u32>(),
        ) {
            let key = key.as_bytes();
            prop_assert_eq!(encode_get(key, &get, opaque), legacy_get(key, &get, opaque));
            prop_assert_eq!(
                encode_set(key, &value, &set, opaque),
                legacy_set(key, &value, &set, opaque)
            );
            let del_args = cas.map(|c| vec![format!("C{c}")]).unwrap_or_default();
            prop_assert_eq!(encode_delete(key, cas, opaque), legacy("md", key, del_args, opaque, None));
            prop_assert_eq!(
                encode_touch(key, exptime, opaque),
                legacy("mg", key, vec![format!("T{exptime}")], opaque, None)
            );
        }
    }
}
