//! Keys: [`SealingKey`] (a 32-byte key and its id), [`KeyRing`] (the newest key seals, every
//! key opens) and the loaders from hex, base64 and files.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::{Key, XChaCha20Poly1305};
use zeroize::Zeroizing;

/// The length of a key in bytes (256 bits).
pub const KEY_LEN: usize = 32;

/// A key that cannot be used, or a key ring that cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is not 32 bytes long.
    #[error("a sealing key must be {KEY_LEN} bytes, this one has {len}; generate one with `cgi_session_sealed::generate_key_hex()` (or `openssl rand -hex 32`)")]
    Length {
        /// The length found (of the decoded bytes).
        len: usize,
    },
    /// The text is neither 64 hex digits nor base64 of 32 bytes.
    #[error("a sealing key in text must be 64 hex digits or the base64 of 32 bytes (standard or URL-safe alphabet, padded or not); this text of {len} characters is neither")]
    Encoding {
        /// The length of the text (the text itself is never repeated).
        len: usize,
    },
    /// The key file could not be read.
    #[error(
        "sealing key file {path:?} could not be read: {source}; check the path and its permissions"
    )]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Two keys of a ring have the same id.
    #[error("two sealing keys have the id {id}: every key of a ring needs its own id (give a new key the next number)")]
    DuplicateId {
        /// The repeated id.
        id: u32,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Randomness(String),
}

/// A 32-byte XChaCha20-Poly1305 key and its id, which is written in clear into every item it
/// seals so that the right key can be found when the item is opened.
///
/// Ids are chosen by the operator: give each new key the next number. `Debug` shows the id,
/// never the key; the key bytes are wiped from memory when the key is dropped.
///
/// ```
/// use cgi_session_sealed::SealingKey;
///
/// let key = SealingKey::from_text(1, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")?;
/// assert_eq!(key.id(), 1);
/// assert_eq!(format!("{key:?}"), "SealingKey { id: 1, .. }");
/// // The same key in base64:
/// let same = SealingKey::from_text(1, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
/// # Ok::<(), cgi_session_sealed::KeyError>(())
/// ```
#[derive(Clone)]
pub struct SealingKey {
    id: u32,
    pub(crate) cipher: XChaCha20Poly1305,
}

impl SealingKey {
    /// A key from its 32 bytes.
    pub fn new(id: u32, bytes: [u8; KEY_LEN]) -> Self {
        let bytes = Zeroizing::new(bytes);
        Self {
            id,
            cipher: XChaCha20Poly1305::new(Key::from_slice(&bytes[..])),
        }
    }

    /// A key from a slice, which must be 32 bytes long.
    ///
    /// # Errors
    ///
    /// [`KeyError::Length`] for any other length.
    pub fn from_slice(id: u32, bytes: &[u8]) -> Result<Self, KeyError> {
        let array: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyError::Length { len: bytes.len() })?;
        Ok(Self::new(id, array))
    }

    /// A key from text: 64 hex digits, or the base64 of 32 bytes (standard or URL-safe
    /// alphabet, with or without padding). Whitespace around it is ignored.
    ///
    /// # Errors
    ///
    /// [`KeyError::Encoding`] when the text is neither; [`KeyError::Length`] when it decodes
    /// to another length than 32 bytes.
    pub fn from_text(id: u32, text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if let Some(bytes) = decode_hex(text) {
            return Self::from_slice(id, &bytes);
        }
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            if let Ok(bytes) = engine.decode(text) {
                return Self::from_slice(id, &Zeroizing::new(bytes));
            }
        }
        Err(KeyError::Encoding { len: text.len() })
    }

    /// A key from a file holding either the 32 raw bytes or the key as text
    /// ([`SealingKey::from_text`]: hex or base64, a trailing newline allowed).
    ///
    /// # Errors
    ///
    /// [`KeyError::File`] when the file cannot be read; the errors of
    /// [`SealingKey::from_text`] otherwise.
    ///
    /// ```
    /// use cgi_session_sealed::SealingKey;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("session.key");
    /// std::fs::write(&path, format!("{}\n", cgi_session_sealed::generate_key_hex()?)).unwrap();
    /// let key = SealingKey::from_file(3, &path)?;
    /// assert_eq!(key.id(), 3);
    /// # Ok::<(), cgi_session_sealed::KeyError>(())
    /// ```
    pub fn from_file(id: u32, path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::File {
            path: path.to_owned(),
            source,
        })?);
        if bytes.len() == KEY_LEN {
            return Self::from_slice(id, &bytes);
        }
        match std::str::from_utf8(&bytes) {
            Ok(text) => Self::from_text(id, text),
            Err(_) => Err(KeyError::Length { len: bytes.len() }),
        }
    }

    /// A new random key from the operating system's generator (for tests and key creation;
    /// a key that is not saved anywhere is lost with the process, and so are the sessions it
    /// sealed).
    ///
    /// # Errors
    ///
    /// [`KeyError::Randomness`] when the generator fails.
    pub fn generate(id: u32) -> Result<Self, KeyError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut bytes[..]).map_err(|e| KeyError::Randomness(e.to_string()))?;
        Ok(Self::new(id, *bytes))
    }

    /// The key's id.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A new random key as 64 hex digits, to be kept in a file or a secret store and loaded
/// with [`SealingKey::from_text`] or [`SealingKey::from_file`].
///
/// # Errors
///
/// [`KeyError::Randomness`] when the operating system's generator fails.
///
/// ```
/// let hex = cgi_session_sealed::generate_key_hex()?;
/// assert_eq!(hex.len(), 64);
/// cgi_session_sealed::SealingKey::from_text(1, &hex)?;
/// # Ok::<(), cgi_session_sealed::KeyError>(())
/// ```
pub fn generate_key_hex() -> Result<String, KeyError> {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(&mut bytes[..]).map_err(|e| KeyError::Randomness(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn decode_hex(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    if text.len() != 2 * KEY_LEN || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = text
        .as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect::<Option<Vec<u8>>>()?;
    Some(Zeroizing::new(bytes))
}

/// The keys of a [`SealedDriver`](crate::SealedDriver): the current key seals every item
/// written; the current and the previous keys open items (the key id in each item picks the
/// key).
///
/// **Rotation**: add a new key with the next id as the current key and keep the old one as
/// a previous key. Items sealed with the old key stay readable and are sealed with the new
/// key when their session is next saved. Sessions that are only read keep the old key, so
/// drop the old key only after the longest session lifetime has passed (an item sealed with
/// a key that is no longer in the ring fails to open, with an error naming the key id).
///
/// ```
/// use cgi_session_sealed::{KeyRing, SealingKey};
///
/// let ring = KeyRing::new(SealingKey::generate(2)?)
///     .with_previous([SealingKey::generate(1)?])?;
/// assert_eq!(ring.current_id(), 2);
/// assert_eq!(ring.ids().collect::<Vec<_>>(), [2, 1]);
/// // Two keys with one id are refused.
/// assert!(KeyRing::new(SealingKey::generate(1)?).with_previous([SealingKey::generate(1)?]).is_err());
/// # Ok::<(), cgi_session_sealed::KeyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct KeyRing {
    /// The current key first, then the previous ones.
    keys: Vec<SealingKey>,
}

impl KeyRing {
    /// A ring with one key, which seals and opens.
    pub fn new(current: SealingKey) -> Self {
        Self {
            keys: vec![current],
        }
    }

    /// Adds keys that only open items (older keys kept during a rotation).
    ///
    /// # Errors
    ///
    /// [`KeyError::DuplicateId`] when two keys of the ring have the same id.
    pub fn with_previous(
        mut self,
        previous: impl IntoIterator<Item = SealingKey>,
    ) -> Result<Self, KeyError> {
        for key in previous {
            if self.find(key.id).is_some() {
                return Err(KeyError::DuplicateId { id: key.id });
            }
            self.keys.push(key);
        }
        Ok(self)
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> u32 {
        self.keys[0].id
    }

    /// The ids of every key, the current one first.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.iter().map(|k| k.id)
    }

    pub(crate) fn current(&self) -> &SealingKey {
        &self.keys[0]
    }

    pub(crate) fn find(&self, id: u32) -> Option<&SealingKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn text_forms_decode_to_the_same_key() {
        use chacha20poly1305::aead::{Aead, Payload};
        let nonce = chacha20poly1305::XNonce::default();
        let seal = |k: &SealingKey| {
            k.cipher
                .encrypt(
                    &nonce,
                    Payload {
                        msg: b"x",
                        aad: b"",
                    },
                )
                .unwrap()
        };
        let reference = seal(&SealingKey::new(1, std::array::from_fn(|i| i as u8)));
        for text in [
            HEX,
            &HEX.to_uppercase(),
            "  AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
        ] {
            assert_eq!(seal(&SealingKey::from_text(1, text).unwrap()), reference);
        }
    }

    #[test]
    fn bad_text_and_lengths_are_refused_without_echoing_the_key() {
        let err = SealingKey::from_text(1, &HEX[..62]).unwrap_err();
        // 62 hex digits are valid base64 of 46 bytes... or not; either way refused.
        assert!(matches!(
            err,
            KeyError::Encoding { .. } | KeyError::Length { .. }
        ));
        assert!(!err.to_string().contains(&HEX[..20]));
        let err = SealingKey::from_text(1, "not a key!").unwrap_err();
        assert!(matches!(err, KeyError::Encoding { len: 10 }), "{err:?}");
        assert!(matches!(
            SealingKey::from_slice(1, &[0; 16]),
            Err(KeyError::Length { len: 16 })
        ));
        // base64 of 16 bytes.
        assert!(matches!(
            SealingKey::from_text(1, "AAECAwQFBgcICQoLDA0ODw=="),
            Err(KeyError::Length { len: 16 })
        ));
    }

    #[test]
    fn files_hold_raw_bytes_or_text() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [7u8; 32]).unwrap();
        assert_eq!(SealingKey::from_file(5, &raw).unwrap().id(), 5);
        let text = dir.path().join("text");
        std::fs::write(&text, format!("{HEX}\n")).unwrap();
        SealingKey::from_file(5, &text).unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, [0xffu8; 7]).unwrap();
        assert!(matches!(
            SealingKey::from_file(5, &short),
            Err(KeyError::Length { len: 7 })
        ));
        let err = SealingKey::from_file(5, dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = SealingKey::from_text(9, HEX).unwrap();
        let ring = KeyRing::new(key.clone());
        for shown in [
            format!("{key:?}"),
            format!("{ring:?}"),
            format!("{ring:#?}"),
        ] {
            assert!(shown.contains('9'), "{shown}");
            for needle in ["0001020304", "1f", "cipher", "AAEC"] {
                assert!(!shown.contains(needle), "{shown} shows {needle}");
            }
        }
    }
}
