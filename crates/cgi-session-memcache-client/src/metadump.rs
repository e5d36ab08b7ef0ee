//! Key listing: `lru_crawler metadump hash` on a dedicated connection, and the parser of its
//! lines.

use bytes::{Buf, BytesMut};

use crate::conn;
use crate::error::{Error, Result};
use crate::pool::ServerPool;
use crate::proto;

/// One line of `lru_crawler metadump`.
///
/// ```no_run
/// # async fn demo(client: cgi_session_memcache_client::Client) -> cgi_session_memcache_client::Result<()> {
/// for entry in client.metadump().await?.entries {
///     println!("{} bytes, expires {:?}", entry.size, entry.exp);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetadumpEntry {
    /// The key, URL-decoded.
    pub key: Vec<u8>,
    /// Absolute Unix expiry time; `None` if the item never expires.
    pub exp: Option<i64>,
    /// Absolute Unix time of the last access.
    pub last_access: i64,
    /// CAS token.
    pub cas: u64,
    /// Item size in memory (bytes, header included).
    pub size: u64,
    /// Client flags, if the server prints them (1.6.18 does not).
    pub flags: Option<u32>,
    /// Whether the item has been fetched since it was stored, if printed.
    pub fetched: Option<bool>,
}

/// A metadump line that could not be understood (skipped, not fatal).
///
/// ```
/// let e = cgi_session_memcache_client::MetadumpLineError { line: 3, reason: "no key".into() };
/// assert_eq!(e.to_string(), "metadump line 3: no key");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadump line {line}: {reason}")]
pub struct MetadumpLineError {
    /// 1-based line number in the dump.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

/// The result of [`Client::metadump`](crate::Client::metadump).
///
/// ```
/// let dump = cgi_session_memcache_client::Metadump::default();
/// assert!(dump.entries.is_empty() && dump.skipped.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metadump {
    /// Every item line understood.
    pub entries: Vec<MetadumpEntry>,
    /// Lines that were not understood, with their positions.
    pub skipped: Vec<MetadumpLineError>,
}

/// Lists one server's items (`lru_crawler metadump hash`) on a dedicated connection (the
/// server refuses to pipeline other commands with it).
/// Reads the dump. memcached runs one crawler at a time and answers `BUSY currently
/// processing crawler request` while another listing (from any client) is under way: that is
/// retried, with growing pauses, until the client's timeout has passed.
pub(crate) async fn read(pool: &ServerPool) -> Result<Metadump> {
    let deadline = tokio::time::Instant::now() + pool.settings().timeout;
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        match read_once(pool).await {
            Err(Error::Server { message, .. })
                if message.starts_with("BUSY")
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

async fn read_once(pool: &ServerPool) -> Result<Metadump> {
    let server = pool.server();
    let timeout = pool.settings().timeout;
    let mut stream = pool.connect().await?;
    // `hash` walks the hash table: every item is seen once, including items being moved
    // between LRU segments at that moment, which `metadump all` (a walk of the LRUs) was
    // reported to miss right after they were read.
    conn::write_all(
        &mut stream,
        b"lru_crawler metadump hash\r\n",
        server,
        timeout,
    )
    .await?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut dump = Metadump::default();
    let mut line_no = 0usize;
    loop {
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            line_no += 1;
            let mut line = &buf[..pos];
            if let Some(l) = line.strip_suffix(b"\r") {
                line = l;
            }
            if line == b"END" {
                return Ok(dump);
            }
            if line_no == 1 && !line.starts_with(b"key=") {
                let text = String::from_utf8_lossy(line).into_owned();
                if let Some(msg) = text
                    .strip_prefix("SERVER_ERROR ")
                    .or_else(|| text.strip_prefix("CLIENT_ERROR "))
                {
                    return Err(Error::Server {
                        server: server.to_string(),
                        message: msg.to_string(),
                    });
                }
                if text.starts_with("ERROR") || text.starts_with("BUSY") {
                    return Err(Error::Server {
                        server: server.to_string(),
                        message: text,
                    });
                }
            }
            match parse_metadump_line(line) {
                Ok(entry) => dump.entries.push(entry),
                Err(reason) => dump.skipped.push(MetadumpLineError {
                    line: line_no,
                    reason,
                }),
            }
            buf.advance(pos + 1);
        }
        if buf.len() > proto::MAX_LINE {
            return Err(Error::protocol(
                server,
                format!(
                    "metadump line {} is longer than {} bytes",
                    line_no + 1,
                    proto::MAX_LINE
                ),
            ));
        }
        if conn::read_some(&mut stream, &mut buf, server, timeout).await? == 0 {
            return Err(Error::unavailable(
                server,
                "the server closed the connection before the end of the metadump",
            ));
        }
    }
}

fn url_decode(s: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "bad %-escape in key".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Parses one line of `lru_crawler metadump` output (`key=<url-encoded> exp=... la=...
/// cas=... fetch=... cls=... size=...`). `read` uses it; with the `fuzzing` feature it is
/// exported (hidden) for the fuzz targets.
///
/// # Errors
/// A description of what is wrong with the line.
pub fn parse_metadump_line(line: &[u8]) -> std::result::Result<MetadumpEntry, String> {
    let mut key = None;
    let mut exp = None;
    let mut la = None;
    let mut cas = None;
    let mut size = None;
    let mut flags = None;
    let mut fetched = None;
    fn num<T: std::str::FromStr>(name: &str, v: &[u8]) -> std::result::Result<T, String> {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("field {name} is not a number"))
    }
    for field in line.split(|&b| b == b' ').filter(|f| !f.is_empty()) {
        let Some(eq) = field.iter().position(|&b| b == b'=') else {
            return Err("a field has no '='".into());
        };
        let (name, value) = (&field[..eq], &field[eq + 1..]);
        match name {
            b"key" => key = Some(url_decode(value)?),
            b"exp" => exp = Some(num::<i64>("exp", value)?),
            b"la" => la = Some(num::<i64>("la", value)?),
            b"cas" => cas = Some(num::<u64>("cas", value)?),
            b"size" => size = Some(num::<u64>("size", value)?),
            b"flags" => flags = Some(num::<u32>("flags", value)?),
            b"fetch" => fetched = Some(value == b"yes"),
            _ => {}
        }
    }
    let missing = |f: &str| format!("field {f} is missing");
    Ok(MetadumpEntry {
        key: key.ok_or_else(|| missing("key"))?,
        exp: match exp.ok_or_else(|| missing("exp"))? {
            -1 => None,
            e => Some(e),
        },
        last_access: la.ok_or_else(|| missing("la"))?,
        cas: cas.ok_or_else(|| missing("cas"))?,
        size: size.ok_or_else(|| missing("size"))?,
        flags,
        fetched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadump_lines() {
        let e = parse_metadump_line(
            b"key=sessions%3Aabc exp=-1 la=1795762418 cas=7 fetch=no cls=1 size=70",
        )
        .unwrap();
        assert_eq!((e.key.as_slice(), e.exp), (&b"sessions:abc"[..], None));
        let e = parse_metadump_line(
            b"key=k%2F%C3%A9 exp=-1 la=1795769520 cas=2 fetch=yes cls=1 size=69",
        )
        .unwrap();
        assert_eq!(e.key, "k/é".as_bytes());
        assert_eq!(e.exp, None);
        assert_eq!(e.cas, 2);
        assert_eq!(e.size, 69);
        assert_eq!(e.fetched, Some(true));
        let e = parse_metadump_line(b"key=a exp=17 la=1 cas=3 size=5 flags=9").unwrap();
        assert_eq!((e.exp, e.flags), (Some(17), Some(9)));
        assert!(parse_metadump_line(b"garbage").is_err());
        assert!(parse_metadump_line(b"key=a%zz exp=1 la=1 cas=1 size=1").is_err());
        assert!(parse_metadump_line(b"key=a exp=x la=1 cas=1 size=1").is_err());
        assert!(parse_metadump_line(b"key=a la=1 cas=1 size=1").is_err());
    }

    /// memcached runs one crawler at a time: a listing that meets another one (`BUSY`) tries
    /// again instead of failing.
    #[tokio::test]
    async fn a_busy_crawler_is_waited_for() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap().to_string();
        let peer = tokio::spawn(async move {
            let replies: [&[u8]; 3] = [
                b"BUSY currently processing crawler request\r\n",
                b"BUSY currently processing crawler request\r\n",
                b"key=a exp=-1 la=1 cas=3 fetch=no cls=1 size=5\r\nEND\r\n",
            ];
            for reply in replies {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 64];
                let n = sock.read(&mut request).await.unwrap();
                assert_eq!(&request[..n], b"lru_crawler metadump hash\r\n");
                sock.write_all(reply).await.unwrap();
            }
        });
        let pool = crate::pool::tests::pool(server);
        let dump = read(&pool).await.unwrap();
        assert_eq!(dump.entries.len(), 1);
        assert_eq!(dump.entries[0].key, b"a");
        peer.await.unwrap();
    }
}
