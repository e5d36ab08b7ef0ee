//! Session ids and the [`IdGenerator`] plug point.
//!
//! A [`SessionId`] is validated when it is built, so an id a client claims (from a cookie or a
//! query parameter) that is not well formed never reaches a driver: it is treated as no id at all.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::IdError;

/// The longest id accepted, in bytes.
///
/// Long enough for every generator shipped here (32 hex digits, decimal counters) and for ids of
/// other applications, short enough that `sessions:<id>` stays far below memcached's 250-byte key
/// limit.
pub const MAX_ID_LEN: usize = 128;

/// A well-formed session id: 1 to [`MAX_ID_LEN`] bytes of `A-Z a-z 0-9 _ -`.
///
/// `Debug` and `Display` print only a short prefix (`5ee0c1d2…`), so an id never lands whole
/// in a log line; [`SessionId::as_str`] gives the full value for cookies and storage keys.
///
/// ```
/// use cgi_session_core::SessionId;
///
/// let id = SessionId::parse("5ee0c1d2a1b2c3d4e5f60718293a4b5c").unwrap();
/// assert_eq!(id.to_string(), "5ee0c1d2…");
/// assert!(SessionId::parse("../etc/passwd").is_err());
/// assert!(SessionId::parse("abc\r\nset x 0 0 1").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// Validates `raw` and wraps it.
    ///
    /// # Errors
    /// [`IdError::Malformed`] when `raw` is empty, longer than [`MAX_ID_LEN`] or holds a byte
    /// outside `A-Z a-z 0-9 _ -` (spaces, CR/LF, path separators, dots, non-ASCII...).
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let ok_len = !raw.is_empty() && raw.len() <= MAX_ID_LEN;
        let ok_bytes = raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok_len && ok_bytes {
            Ok(Self(Arc::from(raw)))
        } else {
            Err(IdError::Malformed { len: raw.len() })
        }
    }

    /// The full id. Put it in a cookie or a storage key; never in a log line.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 characters followed by `…`: safe to log.
    pub fn redacted(&self) -> String {
        // Ids are ASCII (see `parse`), so byte counts are character counts. Short ids (incr,
        // static) are shown partly masked all the same. (Built by hand: `format!` costs more
        // than the rest of a demo request's id handling.)
        let keep = if self.0.len() > 8 {
            8
        } else {
            self.0.len() / 2
        };
        let mut out = String::with_capacity(keep + '…'.len_utf8());
        out.push_str(self.0.get(..keep).unwrap_or_default());
        out.push('…');
        out
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.redacted())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::str::FromStr for SessionId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Makes ids for new sessions: CGI::Session's `id:` plug point.
///
/// Implementations must be cheap to share (`Send + Sync`); a generator that does blocking I/O
/// says so with [`IdGenerator::is_blocking`] and is then run on tokio's blocking pool.
///
/// ```
/// use cgi_session_core::{IdGenerator, SecureRandomIds};
///
/// let id = SecureRandomIds.generate().unwrap();
/// assert_eq!(id.as_str().len(), 32);
/// ```
pub trait IdGenerator: Send + Sync + fmt::Debug + 'static {
    /// The name used in DSN strings (`id:<name>`).
    fn name(&self) -> &'static str;

    /// A fresh id.
    ///
    /// # Errors
    /// When the generator cannot produce an id (no OS randomness, an unreadable `IDFile`, or a
    /// `static` generator without a claimed id).
    fn generate(&self) -> Result<SessionId, IdError>;

    /// Whether a claimed id that is not stored is adopted as the id of the new session.
    ///
    /// Only CGI::Session's `static` generator does this; every other generator issues a fresh
    /// id (strict mode: an attacker cannot choose a victim's id).
    fn adopts_claimed_id(&self) -> bool {
        false
    }

    /// Whether [`IdGenerator::generate`] blocks (file I/O): it is then run off the async threads.
    fn is_blocking(&self) -> bool {
        false
    }
}

/// The default generator: 128 bits from the operating system's CSPRNG, printed as 32 lowercase
/// hex digits, the same shape as CGI::Session's `md5` ids so they fit the same cookies and keys.
///
/// The DSN names `md5` and `random` both select it: CGI::Session's md5 ids (MD5 of pid, time and
/// `rand`) are predictable and had a CVE filed against them, so `id:md5` is kept as a name only.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecureRandomIds;

impl IdGenerator for SecureRandomIds {
    fn name(&self) -> &'static str {
        "random"
    }

    fn generate(&self) -> Result<SessionId, IdError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| IdError::Randomness(e.to_string()))?;
        let mut hex = String::with_capacity(32);
        for b in bytes {
            use fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
        }
        Ok(SessionId(Arc::from(hex)))
    }
}

/// CGI::Session's `incr` generator: ids are successive integers kept in a file (`IDFile`),
/// starting after `IDInit` (default 0) in steps of `IDIncr` (default 1).
///
/// The counter file is locked exclusively while it is read and rewritten, so several processes
/// sharing it never hand out the same id.
///
/// ```
/// use cgi_session_core::{IdGenerator, IncrIds};
///
/// let dir = tempfile::tempdir().unwrap();
/// let ids = IncrIds::new(dir.path().join("ids"), 0, 1);
/// assert_eq!(ids.generate().unwrap().as_str(), "1");
/// assert_eq!(ids.generate().unwrap().as_str(), "2");
/// ```
#[derive(Debug, Clone)]
pub struct IncrIds {
    file: PathBuf,
    init: u64,
    incr: u64,
}

impl IncrIds {
    /// A generator keeping its counter in `file`.
    pub fn new(file: impl Into<PathBuf>, init: u64, incr: u64) -> Self {
        Self {
            file: file.into(),
            init,
            incr,
        }
    }
}

impl IdGenerator for IncrIds {
    fn name(&self) -> &'static str {
        "incr"
    }

    fn is_blocking(&self) -> bool {
        true
    }

    fn generate(&self) -> Result<SessionId, IdError> {
        let io = |e: std::io::Error| IdError::IdFile {
            path: self.file.clone(),
            source: e,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.file)
            .map_err(io)?;
        file.lock().map_err(io)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io)?;
        let text = text.trim();
        let current = if text.is_empty() {
            self.init
        } else {
            text.parse::<u64>().map_err(|_| IdError::IdFileContent {
                path: self.file.clone(),
            })?
        };
        let next = current
            .checked_add(self.incr)
            .ok_or_else(|| IdError::IdFileContent {
                path: self.file.clone(),
            })?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.set_len(0).map_err(io)?;
        file.write_all(next.to_string().as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        // The lock is released when `file` is closed.
        Ok(SessionId(Arc::from(next.to_string())))
    }
}

/// CGI::Session's `static` generator: the id the client claims is used as is, even when no
/// session is stored under it. Useful for fixed, application-chosen ids; never for ids that
/// come from browsers (it allows session fixation).
#[derive(Debug, Clone, Copy, Default)]
pub struct StaticIds;

impl IdGenerator for StaticIds {
    fn name(&self) -> &'static str {
        "static"
    }

    fn generate(&self) -> Result<SessionId, IdError> {
        Err(IdError::StaticWithoutId)
    }

    fn adopts_claimed_id(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_ids_are_rejected() {
        let long = "a".repeat(MAX_ID_LEN + 1);
        for bad in [
            "",
            " ",
            "abc def",
            "abc\r\nset",
            "a\0b",
            "../x",
            "a/b",
            "a\\b",
            "..",
            "é",
            long.as_str(),
        ] {
            assert!(SessionId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(SessionId::parse(&"a".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn random_ids_are_32_lowercase_hex_and_distinct() {
        let a = SecureRandomIds.generate().unwrap();
        let b = SecureRandomIds.generate().unwrap();
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert_eq!(id.as_str().len(), 32);
            assert!(id
                .as_str()
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        }
    }

    #[test]
    fn redaction_never_shows_whole_id() {
        let id = SessionId::parse("0123456789abcdef").unwrap();
        assert_eq!(format!("{id}"), "01234567…");
        assert_eq!(format!("{id:?}"), "SessionId(01234567…)");
        let short = SessionId::parse("42").unwrap();
        assert_eq!(short.redacted(), "4…");
    }

    #[test]
    fn incr_follows_init_and_step_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        let g = IncrIds::new(&path, 10, 5);
        assert_eq!(g.generate().unwrap().as_str(), "15");
        assert_eq!(g.generate().unwrap().as_str(), "20");
        let g2 = IncrIds::new(&path, 10, 5);
        assert_eq!(g2.generate().unwrap().as_str(), "25");
    }

    #[test]
    fn incr_is_unique_across_threads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let g = IncrIds::new(&path, 0, 1);
                std::thread::spawn(move || {
                    (0..50)
                        .map(|_| g.generate().unwrap().as_str().to_owned())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .map(|s| s.parse().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (1..=200).collect::<Vec<_>>());
    }

    #[test]
    fn incr_rejects_garbage_counter_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        std::fs::write(&path, "not a number").unwrap();
        let err = IncrIds::new(&path, 0, 1).generate().unwrap_err();
        assert!(matches!(err, IdError::IdFileContent { .. }), "{err}");
    }

    #[test]
    fn static_generator_adopts_and_cannot_invent() {
        assert!(StaticIds.adopts_claimed_id());
        assert!(matches!(
            StaticIds.generate(),
            Err(IdError::StaticWithoutId)
        ));
    }
}
