//! Key validation.

use crate::error::Error;

/// Longest key memcached accepts, in bytes.
pub const MAX_KEY_LEN: usize = 250;

/// A key checked against memcached's rules: 1 to 250 bytes, no ASCII
/// whitespace, no control bytes (`0x00..=0x20`, `0x7f`). Checked before
/// anything is written to a socket, so a key can never inject a command
/// (a `\r\n` inside a key would otherwise start a new command).
///
/// Every operation validates its key; build a `Key` up front to check once.
///
/// ```
/// use cgi_session_memcache_client::Key;
/// let key = Key::new("cgisess_0123abcd").unwrap();
/// assert_eq!(key.as_bytes(), b"cgisess_0123abcd");
/// assert!(Key::new("").is_err());
/// assert!(Key::new("a\r\nflush_all").is_err());
/// assert!(Key::new("x".repeat(251)).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(Vec<u8>);

impl Key {
    /// Validates `key` and wraps it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if it is empty, longer than 250 bytes, or
    /// contains whitespace or control bytes.
    ///
    /// ```
    /// let k = cgi_session_memcache_client::Key::new(b"abc").unwrap();
    /// assert_eq!(k.len(), 3);
    /// ```
    pub fn new(key: impl AsRef<[u8]>) -> Result<Key, Error> {
        let key = key.as_ref();
        validate(key)?;
        Ok(Key(key.to_vec()))
    }

    /// The key's bytes.
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::Key::new("k").unwrap().as_bytes(), b"k");
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key's length in bytes (never 0).
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::Key::new("key").unwrap().len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a valid key is never empty.
    ///
    /// ```
    /// assert!(!cgi_session_memcache_client::Key::new("k").unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Checks a key without copying it.
///
/// # Errors
///
/// [`Error::InvalidKey`], as for [`Key::new`].
///
/// ```
/// assert!(cgi_session_memcache_client::validate_key(b"ok").is_ok());
/// assert!(cgi_session_memcache_client::validate_key(b"not ok").is_err());
/// ```
pub fn validate_key(key: &[u8]) -> Result<(), Error> {
    validate(key)
}

fn validate(key: &[u8]) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::InvalidKey {
            reason: "the key is empty".into(),
        });
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidKey {
            reason: format!("the key is {} bytes long", key.len()),
        });
    }
    // One pass without early exit (the compiler vectorises it); the position only on failure.
    let bad = key
        .iter()
        .fold(false, |bad, &b| bad | (b <= b' ') | (b == 0x7f));
    if !bad {
        return Ok(());
    }
    if let Some(pos) = key.iter().position(|&b| b <= b' ' || b == 0x7f) {
        return Err(Error::InvalidKey {
            reason: format!(
                "byte {pos} of the key is whitespace or a control character (0x{:02x})",
                key[pos]
            ),
        });
    }
    Ok(())
}

/// A short, log-safe prefix of a key (session ids must not end up in logs).
pub(crate) fn log_prefix(key: &[u8]) -> String {
    let shown = &key[..key.len().min(6)];
    let mut s = String::from_utf8_lossy(shown).into_owned();
    if key.len() > shown.len() {
        s.push('…');
    }
    s
}
