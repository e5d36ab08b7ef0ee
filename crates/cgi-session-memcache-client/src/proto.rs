//! Wire format: a strict, incremental reply parser (the meta requests are encoded in
//! `crate::meta`).
//!
//! The parser is a pure function over a byte buffer: it returns
//! [`Parsed::NeedMore`] when the buffer holds only part of a reply, the reply
//! and the number of bytes it used, or a [`ParseError`]. It never panics, caps
//! the length of header lines ([`MAX_LINE`]) and of values (configurable), and
//! checks lengths, flag tokens and every CRLF.

use bytes::Bytes;

/// Longest header line accepted (`VA ...`, `HD ...`, `STAT ...`), CRLF included.
pub const MAX_LINE: usize = 8 * 1024;

/// Most bytes a `stats` reply may take in total.
pub const MAX_STATS: usize = 1024 * 1024;

/// What kind of reply a request expects; chosen by the request, because the
/// same bytes mean different things after `mg` and after `stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyKind {
    /// A meta command reply (`HD`, `VA`, `EN`, `NS`, `EX`, `NF`, `MN`).
    Meta,
    /// `VERSION <text>`.
    Version,
    /// `STAT <name> <value>` lines ending with `END`.
    Stats,
    /// Classic text protocol, one-key `get`/`gets`/`gat`/`gats`: `END`, or
    /// one `VALUE <key> <flags> <bytes> [<cas>]` block then `END`.
    TextGet,
    /// Classic text protocol, one status line: `STORED`, `NOT_STORED`,
    /// `EXISTS`, `NOT_FOUND`, `DELETED`, `TOUCHED`.
    TextStatus,
}

/// One value of a classic text-protocol `get` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextValue {
    /// The key the server echoed.
    pub key: Vec<u8>,
    /// Client flags.
    pub flags: u32,
    /// CAS unique (`gets`/`gats` only).
    pub cas: Option<u64>,
    /// The value.
    pub value: Bytes,
}

/// A classic text-protocol status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextStatus {
    /// `STORED`.
    Stored,
    /// `NOT_STORED`.
    NotStored,
    /// `EXISTS` (CAS mismatch).
    Exists,
    /// `NOT_FOUND`.
    NotFound,
    /// `DELETED`.
    Deleted,
    /// `TOUCHED`.
    Touched,
}

/// The status code of a meta reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaCode {
    /// `HD`: success, no value.
    Hd,
    /// `VA`: success with a value.
    Va,
    /// `EN`: miss.
    En,
    /// `NS`: not stored.
    Ns,
    /// `EX`: exists (CAS mismatch).
    Ex,
    /// `NF`: not found.
    Nf,
    /// `MN`: the reply to `mn`.
    Mn,
}

impl MetaCode {
    fn as_str(self) -> &'static str {
        match self {
            MetaCode::Hd => "HD",
            MetaCode::Va => "VA",
            MetaCode::En => "EN",
            MetaCode::Ns => "NS",
            MetaCode::Ex => "EX",
            MetaCode::Nf => "NF",
            MetaCode::Mn => "MN",
        }
    }
}

/// The return flags of a meta reply in the order sent (`c42 f0 O7`): each a flag byte and
/// its token, kept as received in one buffer (one allocation however many flags; none
/// without flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaFlags(Vec<u8>);

impl MetaFlags {
    /// Each flag and its token, in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.0
            .split(|&b| b == b' ')
            .filter_map(|tok| tok.split_first().map(|(&f, rest)| (f, rest)))
    }

    /// The token of flag `f`, if present.
    pub fn get(&self, f: u8) -> Option<&[u8]> {
        self.iter().find(|(k, _)| *k == f).map(|(_, v)| v)
    }
}

impl<T: AsRef<[u8]>> FromIterator<(u8, T)> for MetaFlags {
    /// Flags as a server would send them (`(b'c', "42")` is `c42`).
    fn from_iter<I: IntoIterator<Item = (u8, T)>>(flags: I) -> Self {
        let mut raw = Vec::new();
        for (f, tok) in flags {
            if !raw.is_empty() {
                raw.push(b' ');
            }
            raw.push(f);
            raw.extend_from_slice(tok.as_ref());
        }
        MetaFlags(raw)
    }
}

/// One parsed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// A meta reply: code, return flags (`(flag, token)`), value for `VA`.
    Meta {
        /// The status code.
        code: MetaCode,
        /// Return flags in the order sent, e.g. `c42`.
        flags: MetaFlags,
        /// The value (only for `VA`).
        value: Option<Bytes>,
    },
    /// `VERSION <text>`.
    Version(String),
    /// `STAT` lines.
    Stats(Vec<(String, String)>),
    /// `SERVER_ERROR <msg>`: the server stayed in step (e.g. object too large).
    ServerError(String),
    /// `CLIENT_ERROR <msg>`: the request was malformed; the stream may be out of step.
    ClientError(String),
    /// `ERROR` (unknown command); the stream may be out of step.
    Error(String),
    /// A text-protocol `get` reply: `None` for a miss (`END` alone).
    Value(Option<TextValue>),
    /// A text-protocol status line.
    Status(TextStatus),
}

impl Reply {
    /// The value of a return flag, if present.
    pub fn flag(&self, f: u8) -> Option<&[u8]> {
        match self {
            Reply::Meta { flags, .. } => flags.get(f),
            _ => None,
        }
    }

    /// A short description for error messages (never includes values).
    pub fn describe(&self) -> String {
        match self {
            Reply::Meta { code, flags, .. } => {
                let mut s = code.as_str().to_string();
                for (f, _) in flags.iter() {
                    s.push(' ');
                    s.push(char::from(f));
                }
                s
            }
            Reply::Version(_) => "VERSION".into(),
            Reply::Stats(_) => "STAT lines".into(),
            Reply::ServerError(m) => format!("SERVER_ERROR {m}"),
            Reply::ClientError(m) => format!("CLIENT_ERROR {m}"),
            Reply::Error(m) => format!("ERROR {m}").trim_end().to_string(),
            Reply::Value(None) => "END".into(),
            Reply::Value(Some(_)) => "VALUE".into(),
            Reply::Status(s) => format!("{s:?}"),
        }
    }
}

/// Result of one parse attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The buffer holds only part of a reply; read more bytes.
    NeedMore,
    /// A complete reply, and how many bytes of the buffer it used.
    Done(Reply, usize),
}

/// A reply that breaks the protocol. The connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

/// Finds the first complete line (ending in CRLF) in `buf`, starting at `from`.
/// Returns the line without CRLF and the offset just past it.
fn line_at(buf: &[u8], from: usize) -> Result<Option<(&[u8], usize)>, ParseError> {
    let rest = buf.get(from..).unwrap_or_default();
    let window = &rest[..rest.len().min(MAX_LINE)];
    match window.iter().position(|&b| b == b'\n') {
        Some(0) => err("reply line starts with a bare LF"),
        Some(i) => {
            if window[i - 1] != b'\r' {
                return err("reply line ends with LF without CR");
            }
            let line = &window[..i - 1];
            if let Some(b) = line.iter().find(|&&b| b == b'\r') {
                let _ = b;
                return err("reply line contains a stray CR");
            }
            Ok(Some((line, from + i + 1)))
        }
        None if window.len() >= MAX_LINE => err(format!(
            "reply line longer than {MAX_LINE} bytes without CRLF"
        )),
        None => Ok(None),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn parse_decimal(tok: &[u8]) -> Option<u64> {
    if tok.is_empty() || tok.len() > 20 || !tok.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(tok).ok()?.parse().ok()
}

/// The flags after a meta reply's code (and length): `None` when the line ends there.
fn parse_flags(rest: Option<&[u8]>) -> Result<MetaFlags, ParseError> {
    let Some(rest) = rest else {
        return Ok(MetaFlags::default());
    };
    for tok in rest.split(|&b| b == b' ') {
        let (&f, rest) = match tok.split_first() {
            Some(x) => x,
            None => return err("empty flag token (double space)"),
        };
        if !f.is_ascii_alphabetic() {
            return err(format!("invalid return flag byte 0x{f:02x}"));
        }
        if !rest.iter().all(|b| b.is_ascii_graphic()) {
            return err(format!(
                "return flag '{}' has a non-printable token",
                char::from(f)
            ));
        }
    }
    Ok(MetaFlags(rest.to_vec()))
}

/// The first space-separated token of `line` and what follows its space, if any.
fn split_token(line: &[u8]) -> (&[u8], Option<&[u8]>) {
    match line.iter().position(|&b| b == b' ') {
        Some(at) => (&line[..at], Some(&line[at + 1..])),
        None => (line, None),
    }
}

fn error_line(line: &[u8]) -> Option<Reply> {
    if let Some(rest) = line.strip_prefix(b"SERVER_ERROR") {
        return Some(Reply::ServerError(text(rest).trim().to_string()));
    }
    if let Some(rest) = line.strip_prefix(b"CLIENT_ERROR") {
        return Some(Reply::ClientError(text(rest).trim().to_string()));
    }
    if line == b"ERROR" || line.starts_with(b"ERROR ") {
        return Some(Reply::Error(text(&line[5..]).trim().to_string()));
    }
    None
}

/// Parses one reply of `kind` from the start of `buf`.
///
/// `max_value` caps the length a `VA` reply may announce.
pub fn parse_reply(kind: ReplyKind, buf: &[u8], max_value: usize) -> Result<Parsed, ParseError> {
    match kind {
        ReplyKind::Meta => parse_meta(buf, max_value),
        ReplyKind::Version => parse_version(buf),
        ReplyKind::Stats => parse_stats(buf),
        ReplyKind::TextGet => parse_text_get(buf, max_value),
        ReplyKind::TextStatus => parse_text_status(buf),
    }
}

fn parse_text_status(buf: &[u8]) -> Result<Parsed, ParseError> {
    let Some((line, after)) = line_at(buf, 0)? else {
        return Ok(Parsed::NeedMore);
    };
    if let Some(reply) = error_line(line) {
        return Ok(Parsed::Done(reply, after));
    }
    let status = match line {
        b"STORED" => TextStatus::Stored,
        b"NOT_STORED" => TextStatus::NotStored,
        b"EXISTS" => TextStatus::Exists,
        b"NOT_FOUND" => TextStatus::NotFound,
        b"DELETED" => TextStatus::Deleted,
        b"TOUCHED" => TextStatus::Touched,
        other => {
            let shown: String = text(other).chars().take(16).collect();
            return err(format!("unknown status line {shown:?}"));
        }
    };
    Ok(Parsed::Done(Reply::Status(status), after))
}

fn parse_text_get(buf: &[u8], max_value: usize) -> Result<Parsed, ParseError> {
    let Some((line, after)) = line_at(buf, 0)? else {
        return Ok(Parsed::NeedMore);
    };
    if let Some(reply) = error_line(line) {
        return Ok(Parsed::Done(reply, after));
    }
    if line == b"END" {
        return Ok(Parsed::Done(Reply::Value(None), after));
    }
    let tokens: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    if tokens[0] != b"VALUE" {
        let shown: String = text(tokens[0]).chars().take(16).collect();
        return err(format!("expected VALUE or END, got {shown:?}"));
    }
    if !(4..=5).contains(&tokens.len()) || tokens[1].is_empty() {
        return err("VALUE line without key, flags and length");
    }
    let flags = parse_decimal(tokens[2])
        .and_then(|f| u32::try_from(f).ok())
        .ok_or_else(|| ParseError("VALUE line with bad flags".into()))?;
    let Some(len) = parse_decimal(tokens[3]) else {
        return err("VALUE line with a bad length");
    };
    if len > max_value as u64 {
        return err(format!(
            "VALUE announces {len} bytes, over the client's limit of {max_value} bytes"
        ));
    }
    let cas = match tokens.get(4) {
        None => None,
        Some(tok) => {
            Some(parse_decimal(tok).ok_or_else(|| ParseError("VALUE line with a bad CAS".into()))?)
        }
    };
    let len = len as usize;
    let end = after + len;
    if buf.len() < end + 2 {
        return Ok(Parsed::NeedMore);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return err(format!(
            "VALUE data of announced length {len} is not followed by CRLF"
        ));
    }
    let Some((tail, used)) = line_at(buf, end + 2)? else {
        return Ok(Parsed::NeedMore);
    };
    if tail != b"END" {
        return err("a one-key get reply has more than one VALUE or no END");
    }
    Ok(Parsed::Done(
        Reply::Value(Some(TextValue {
            key: tokens[1].to_vec(),
            flags,
            cas,
            value: Bytes::copy_from_slice(&buf[after..end]),
        })),
        used,
    ))
}

fn parse_meta(buf: &[u8], max_value: usize) -> Result<Parsed, ParseError> {
    let Some((line, after)) = line_at(buf, 0)? else {
        return Ok(Parsed::NeedMore);
    };
    if let Some(reply) = error_line(line) {
        return Ok(Parsed::Done(reply, after));
    }
    let (code_tok, rest) = split_token(line);
    let code = match code_tok {
        b"HD" => MetaCode::Hd,
        b"VA" => MetaCode::Va,
        b"EN" => MetaCode::En,
        b"NS" => MetaCode::Ns,
        b"EX" => MetaCode::Ex,
        b"NF" => MetaCode::Nf,
        b"MN" => MetaCode::Mn,
        other => {
            let shown: String = text(other).chars().take(16).collect();
            return err(format!("unknown reply code {shown:?}"));
        }
    };
    if code == MetaCode::Mn && rest.is_some() {
        return err("MN reply with extra tokens");
    }
    if code != MetaCode::Va {
        let flags = parse_flags(rest)?;
        return Ok(Parsed::Done(
            Reply::Meta {
                code,
                flags,
                value: None,
            },
            after,
        ));
    }
    let Some((len_tok, rest)) = rest.map(split_token) else {
        return err("VA reply without a length");
    };
    let Some(len) = parse_decimal(len_tok) else {
        return err(format!("VA reply with a bad length {:?}", text(len_tok)));
    };
    if len > max_value as u64 {
        return err(format!(
            "VA reply announces {len} bytes, over the client's limit of {max_value} bytes"
        ));
    }
    let flags = parse_flags(rest)?;
    let len = len as usize;
    let end = after + len;
    if buf.len() < end + 2 {
        return Ok(Parsed::NeedMore);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return err(format!(
            "VA value of announced length {len} is not followed by CRLF"
        ));
    }
    Ok(Parsed::Done(
        Reply::Meta {
            code,
            flags,
            value: Some(Bytes::copy_from_slice(&buf[after..end])),
        },
        end + 2,
    ))
}

fn parse_version(buf: &[u8]) -> Result<Parsed, ParseError> {
    let Some((line, after)) = line_at(buf, 0)? else {
        return Ok(Parsed::NeedMore);
    };
    if let Some(reply) = error_line(line) {
        return Ok(Parsed::Done(reply, after));
    }
    match line.strip_prefix(b"VERSION ") {
        Some(v) if !v.is_empty() => Ok(Parsed::Done(Reply::Version(text(v)), after)),
        _ => err("expected a VERSION line"),
    }
}

fn parse_stats(buf: &[u8]) -> Result<Parsed, ParseError> {
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        if pos > MAX_STATS {
            return err(format!("stats reply longer than {MAX_STATS} bytes"));
        }
        let Some((line, after)) = line_at(buf, pos)? else {
            return Ok(Parsed::NeedMore);
        };
        if pos == 0 {
            if let Some(reply) = error_line(line) {
                return Ok(Parsed::Done(reply, after));
            }
        }
        if line == b"END" {
            return Ok(Parsed::Done(Reply::Stats(out), after));
        }
        let Some(rest) = line.strip_prefix(b"STAT ") else {
            return err("expected a STAT line or END");
        };
        let s = text(rest);
        let (name, value) = s.split_once(' ').unwrap_or((s.as_str(), ""));
        if name.is_empty() {
            return err("STAT line without a name");
        }
        out.push((name.to_string(), value.to_string()));
        pos = after;
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(buf: &[u8]) -> Result<Parsed, ParseError> {
        parse_reply(ReplyKind::Meta, buf, 1 << 20)
    }

    #[test]
    fn simple_codes() {
        for (s, c) in [
            ("HD", MetaCode::Hd),
            ("EN", MetaCode::En),
            ("NS", MetaCode::Ns),
            ("EX", MetaCode::Ex),
            ("NF", MetaCode::Nf),
            ("MN", MetaCode::Mn),
        ] {
            let buf = format!("{s}\r\n");
            assert_eq!(
                meta(buf.as_bytes()).unwrap(),
                Parsed::Done(
                    Reply::Meta {
                        code: c,
                        flags: MetaFlags::default(),
                        value: None
                    },
                    4
                )
            );
        }
    }

    #[test]
    fn value_with_flags() {
        let buf = b"VA 2 c12 f5 t-1 O7\r\nhi\r\nEN\r\n";
        let Parsed::Done(r, n) = meta(buf).unwrap() else {
            panic!()
        };
        assert_eq!(n, 24);
        assert_eq!(r.flag(b'c'), Some(&b"12"[..]));
        assert_eq!(r.flag(b't'), Some(&b"-1"[..]));
        assert_eq!(r.flag(b'O'), Some(&b"7"[..]));
        match r {
            Reply::Meta { value, .. } => assert_eq!(value.unwrap(), &b"hi"[..]),
            _ => panic!(),
        }
    }

    #[test]
    fn flags_keep_their_order_and_tokens_in_one_buffer() {
        let Parsed::Done(r, _) = meta(b"HD c12 f0 O7 k\r\n").unwrap() else {
            panic!()
        };
        let Reply::Meta { flags, .. } = &r else {
            panic!()
        };
        let pairs: Vec<(u8, &[u8])> = flags.iter().collect();
        assert_eq!(
            pairs,
            [(b'c', &b"12"[..]), (b'f', b"0"), (b'O', b"7"), (b'k', b"")]
        );
        assert_eq!(
            *flags,
            [(b'c', "12"), (b'f', "0"), (b'O', "7"), (b'k', "")]
                .into_iter()
                .collect::<MetaFlags>()
        );
        assert_eq!(r.describe(), "HD c f O k");
        assert_eq!(r.flag(b'f'), Some(&b"0"[..]));
        assert_eq!(r.flag(b'x'), None);
        // No flags: none to iterate.
        let Parsed::Done(r, _) = meta(b"VA 1\r\nx\r\n").unwrap() else {
            panic!()
        };
        assert_eq!(r.describe(), "VA");
        // Empty tokens are refused, as before.
        assert!(meta(b"HD c1  O2\r\n").is_err());
        assert!(meta(b"HD c1 \r\n").is_err());
        assert!(meta(b"HD \r\n").is_err());
        assert!(meta(b"VA 1 \r\nx\r\n").is_err());
        assert!(meta(b"MN \r\n").is_err());
    }

    #[test]
    fn partial_and_errors() {
        assert_eq!(meta(b"VA 2 c1\r\nh").unwrap(), Parsed::NeedMore);
        assert_eq!(meta(b"VA 2 c1\r\nhi\r").unwrap(), Parsed::NeedMore);
        assert_eq!(meta(b"H").unwrap(), Parsed::NeedMore);
        assert!(meta(b"VA 2\r\nhiX\r\n").is_err());
        assert!(meta(b"VA x\r\n").is_err());
        assert!(meta(b"VA\r\n").is_err());
        assert!(meta(b"VA -1\r\n").is_err());
        assert!(meta(b"ZZ\r\n").is_err());
        assert!(meta(b"HD\n").is_err());
        assert!(meta(b"HD 1x\r\n").is_err());
        assert!(meta(b"HD  \r\n").is_err());
        assert!(parse_reply(ReplyKind::Meta, b"VA 100 \r\n", 10).is_err());
        assert!(meta(&vec![b'H'; MAX_LINE + 1]).is_err());
    }

    #[test]
    fn error_lines() {
        assert_eq!(
            meta(b"SERVER_ERROR out of memory\r\n").unwrap(),
            Parsed::Done(Reply::ServerError("out of memory".into()), 28)
        );
        assert!(matches!(
            meta(b"CLIENT_ERROR bad\r\n").unwrap(),
            Parsed::Done(Reply::ClientError(_), _)
        ));
        assert!(matches!(
            meta(b"ERROR\r\n").unwrap(),
            Parsed::Done(Reply::Error(_), 7)
        ));
    }

    #[test]
    fn stats_and_version() {
        let buf = b"STAT pid 1\r\nSTAT version 1.6.18\r\nEND\r\n";
        let Parsed::Done(Reply::Stats(s), n) = parse_reply(ReplyKind::Stats, buf, 0).unwrap()
        else {
            panic!()
        };
        assert_eq!(n, buf.len());
        assert_eq!(s[1], ("version".into(), "1.6.18".into()));
        assert_eq!(
            parse_reply(ReplyKind::Stats, b"STAT pid 1\r\n", 0).unwrap(),
            Parsed::NeedMore
        );
        assert_eq!(
            parse_reply(ReplyKind::Version, b"VERSION 1.6.18\r\n", 0).unwrap(),
            Parsed::Done(Reply::Version("1.6.18".into()), 16)
        );
        assert!(parse_reply(ReplyKind::Version, b"HD\r\n", 0).is_err());
    }

    #[test]
    fn text_replies() {
        let get = |b: &[u8]| parse_reply(ReplyKind::TextGet, b, 100);
        assert_eq!(
            get(b"END\r\n").unwrap(),
            Parsed::Done(Reply::Value(None), 5)
        );
        let buf = b"VALUE k 5 2 9\r\nhi\r\nEND\r\n";
        let Parsed::Done(Reply::Value(Some(v)), n) = get(buf).unwrap() else {
            panic!()
        };
        assert_eq!(
            (n, v.key.as_slice(), v.flags, v.cas),
            (buf.len(), &b"k"[..], 5, Some(9))
        );
        assert_eq!(&v.value[..], b"hi");
        assert_eq!(get(b"VALUE k 5 2\r\nhi\r\nEN").unwrap(), Parsed::NeedMore);
        assert_eq!(get(b"VALUE k 5 2\r\nh").unwrap(), Parsed::NeedMore);
        assert!(get(b"VALUE k 5 2\r\nhiX\r\nEND\r\n").is_err());
        assert!(get(b"VALUE k x 2\r\nhi\r\nEND\r\n").is_err());
        assert!(get(b"VALUE k 1 200\r\n").is_err());
        assert!(get(b"VALUE k 5 2 9 9\r\n").is_err());
        assert!(get(b"VALUE k 5 2\r\nhi\r\nVALUE j 5 2\r\nhi\r\nEND\r\n").is_err());
        assert!(get(b"STORED\r\n").is_err());
        assert!(matches!(
            get(b"SERVER_ERROR Connection refused\r\n").unwrap(),
            Parsed::Done(Reply::ServerError(_), _)
        ));
        let st = |b: &[u8]| parse_reply(ReplyKind::TextStatus, b, 0);
        assert_eq!(
            st(b"NOT_STORED\r\n").unwrap(),
            Parsed::Done(Reply::Status(TextStatus::NotStored), 12)
        );
        assert_eq!(st(b"TOUCH").unwrap(), Parsed::NeedMore);
        assert!(st(b"WHAT\r\n").is_err());
    }
}
