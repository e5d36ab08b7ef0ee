//! The sealed item's layout and the seal/open functions.
//!
//! The layout is in the crate documentation ("The sealed item").

use cgi_session_core::SessionId;
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Tag, XNonce};

use crate::key::KeyRing;

/// The first bytes of every sealed item. The first byte is not ASCII, so no serializer's
/// output (JSON, Data::Dumper, Storable) starts with it.
pub const MAGIC: [u8; 4] = [0x89, b'c', b's', b'e'];
/// The format version written.
pub const VERSION: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 1 + 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The bytes sealing adds to an item (header, nonce and tag).
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// Why a stored item could not be opened. The session was not loaded and the item was left
/// untouched; the session layer reports it as a store failure (`DriverError::Backend`, whose
/// source this is), never as a new empty session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The item does not start with the sealed format's magic bytes.
    #[error("the stored item is not sealed (it was written without encryption, e.g. by a Perl application or before sealing was turned on); remove it, or open the store with `SealedDriver::accept_unsealed(true)` while migrating")]
    NotSealed,
    /// A format version this crate does not know.
    #[error("the stored item is sealed in format version {version}, which this version of cgi-session-sealed cannot read; upgrade it")]
    UnknownVersion {
        /// The version found.
        version: u8,
    },
    /// Shorter than a sealed item can be.
    #[error("the stored item is truncated ({len} bytes; a sealed item has at least {OVERHEAD})")]
    Truncated {
        /// Its length.
        len: usize,
    },
    /// Sealed with a key whose id is not in the key ring.
    #[error("the stored item was sealed with key id {key_id}, which is not in the key ring (configured: {configured}); add that key as a previous key, or let the session expire")]
    UnknownKey {
        /// The key id written in the item.
        key_id: u32,
        /// The ids configured, for the message.
        configured: String,
    },
    /// The authentication tag does not match.
    #[error("the stored item failed authentication with key id {key_id}: its bytes were changed, it was moved from another session id, or the key configured under that id is not the one that sealed it; the item was left untouched")]
    Forged {
        /// The key id written in the item.
        key_id: u32,
    },
}

/// The key id written in a sealed item, or `None` when the bytes are not a sealed item of a
/// known version: what an operator checks to see which sessions still use an old key.
///
/// ```
/// use cgi_session_sealed::{key_id_of, seal, KeyRing, SealingKey};
/// use cgi_session_core::SessionId;
///
/// let ring = KeyRing::new(SealingKey::generate(7)?);
/// let id = SessionId::parse("0123456789abcdef0123456789abcdef").unwrap();
/// let sealed = seal(&ring, &id, b"{}")?;
/// assert_eq!(key_id_of(&sealed), Some(7));
/// assert_eq!(key_id_of(b"{}"), None);
/// # Ok::<(), cgi_session_sealed::KeyError>(())
/// ```
pub fn key_id_of(item: &[u8]) -> Option<u32> {
    if item.len() < HEADER_LEN || item[..4] != MAGIC || item[4] != VERSION {
        return None;
    }
    Some(u32::from_be_bytes([item[5], item[6], item[7], item[8]]))
}

/// Whether the bytes start like a sealed item (magic bytes), whatever their version.
pub fn is_sealed(item: &[u8]) -> bool {
    item.starts_with(&MAGIC)
}

/// Seals `plain` for session `id` with the ring's current key and a fresh random nonce.
///
/// # Errors
///
/// [`KeyError::Randomness`](crate::KeyError::Randomness) when the operating system's
/// generator fails (nothing is sealed with a nonce that is not random).
pub fn seal(keys: &KeyRing, id: &SessionId, plain: &[u8]) -> Result<Vec<u8>, crate::KeyError> {
    let key = keys.current();
    let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&key.id().to_be_bytes());
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| crate::KeyError::Randomness(e.to_string()))?;
    out.extend_from_slice(&nonce);
    let aad = associated_data(&out[..HEADER_LEN], id);
    let start = out.len();
    out.extend_from_slice(plain);
    let tag = key
        .cipher
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, &mut out[start..])
        // Only for inputs beyond XChaCha20's 256 GiB limit per message.
        .map_err(|_| crate::KeyError::Length { len: plain.len() })?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Opens an item sealed by [`seal`] for session `id`, with the key its key id names.
///
/// # Errors
///
/// [`OpenError`]: not sealed, unknown format version, truncated, unknown key id, or failed
/// authentication (changed bytes, another session's item, another key under that id). Never
/// panics, whatever the bytes.
pub fn open(keys: &KeyRing, id: &SessionId, item: &[u8]) -> Result<Vec<u8>, OpenError> {
    if !is_sealed(item) {
        return Err(OpenError::NotSealed);
    }
    if item.len() < MAGIC.len() + 1 {
        return Err(OpenError::Truncated { len: item.len() });
    }
    if item[4] != VERSION {
        return Err(OpenError::UnknownVersion { version: item[4] });
    }
    if item.len() < OVERHEAD {
        return Err(OpenError::Truncated { len: item.len() });
    }
    let key_id = u32::from_be_bytes([item[5], item[6], item[7], item[8]]);
    let key = keys.find(key_id).ok_or_else(|| OpenError::UnknownKey {
        key_id,
        configured: keys
            .ids()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    let (header, rest) = item.split_at(HEADER_LEN);
    let (nonce, rest) = rest.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let aad = associated_data(header, id);
    let mut plain = ciphertext.to_vec();
    key.cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            &aad,
            &mut plain,
            Tag::from_slice(tag),
        )
        .map_err(|_| OpenError::Forged { key_id })?;
    Ok(plain)
}

fn associated_data(header: &[u8], id: &SessionId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + id.as_str().len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(id.as_str().as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SealingKey;

    fn id(s: &str) -> SessionId {
        SessionId::parse(s).unwrap()
    }

    fn ring(current: u32, previous: &[u32]) -> KeyRing {
        let key = |i: u32| SealingKey::new(i, [i as u8; 32]);
        KeyRing::new(key(current))
            .with_previous(previous.iter().map(|&i| key(i)))
            .unwrap()
    }

    const PLAIN: &[u8] = b"{\"greeting\":\"secret-greeting-1234\"}";

    #[test]
    fn seal_then_open_round_trips_and_hides_the_bytes() {
        let keys = ring(1, &[]);
        let a = id("aaaaaaaaaaaaaaaa");
        let sealed = seal(&keys, &a, PLAIN).unwrap();
        assert_eq!(sealed.len(), PLAIN.len() + OVERHEAD);
        assert_eq!(OVERHEAD, 49, "as the crate documentation says");
        assert!(sealed.starts_with(&MAGIC));
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(open(&keys, &a, &sealed).unwrap(), PLAIN);
        // A fresh nonce each time: sealing twice gives two different items.
        assert_ne!(seal(&keys, &a, PLAIN).unwrap(), sealed);
        assert_eq!(
            open(&keys, &a, &seal(&keys, &a, b"").unwrap()).unwrap(),
            b""
        );
    }

    #[test]
    fn an_item_moved_to_another_id_is_refused() {
        let keys = ring(1, &[]);
        let sealed = seal(&keys, &id("victim"), PLAIN).unwrap();
        assert_eq!(
            open(&keys, &id("attacker"), &sealed),
            Err(OpenError::Forged { key_id: 1 })
        );
    }

    #[test]
    fn every_changed_byte_is_refused() {
        let keys = ring(1, &[2]);
        let a = id("aaaa");
        let sealed = seal(&keys, &a, PLAIN).unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            let err = open(&keys, &a, &bad).unwrap_err();
            let expected_kind = match i {
                0..=3 => matches!(err, OpenError::NotSealed),
                4 => matches!(err, OpenError::UnknownVersion { version: 0 }),
                // Key id 1 -> 0: unknown; the last byte flips 1 to 0, the others make
                // unknown ids too, except none lands on 2.
                5..=8 => matches!(err, OpenError::UnknownKey { .. }),
                _ => err == OpenError::Forged { key_id: 1 },
            };
            assert!(expected_kind, "byte {i}: {err:?}");
        }
        // Truncations.
        for len in 0..sealed.len() {
            assert!(open(&keys, &a, &sealed[..len]).is_err(), "length {len}");
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(open(&keys, &a, &longer).is_err());
    }

    #[test]
    fn a_key_id_rewritten_to_another_configured_key_is_refused() {
        let keys = ring(1, &[2]);
        let a = id("aaaa");
        let mut sealed = seal(&keys, &a, PLAIN).unwrap();
        sealed[5..9].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(
            open(&keys, &a, &sealed),
            Err(OpenError::Forged { key_id: 2 })
        );
    }

    #[test]
    fn rotation_seals_with_the_newest_and_opens_with_any() {
        let old = ring(1, &[]);
        let a = id("aaaa");
        let by_old = seal(&old, &a, PLAIN).unwrap();
        assert_eq!(key_id_of(&by_old), Some(1));
        let rotated = ring(2, &[1]);
        assert_eq!(open(&rotated, &a, &by_old).unwrap(), PLAIN);
        let by_new = seal(&rotated, &a, PLAIN).unwrap();
        assert_eq!(key_id_of(&by_new), Some(2));
        // The old ring cannot read what the new key sealed: it names the key id.
        let err = open(&old, &a, &by_new).unwrap_err();
        assert_eq!(
            err,
            OpenError::UnknownKey {
                key_id: 2,
                configured: "1".into()
            }
        );
        assert!(err.to_string().contains("key id 2"), "{err}");
        // Once the old key is dropped, its items are refused by id.
        let retired = ring(2, &[]);
        assert!(matches!(
            open(&retired, &a, &by_old),
            Err(OpenError::UnknownKey { key_id: 1, .. })
        ));
    }

    #[test]
    fn same_id_different_key_is_refused() {
        let a = id("aaaa");
        let sealed = seal(&ring(1, &[]), &a, PLAIN).unwrap();
        let other = KeyRing::new(SealingKey::new(1, [9; 32]));
        assert_eq!(
            open(&other, &a, &sealed),
            Err(OpenError::Forged { key_id: 1 })
        );
    }

    #[test]
    fn plaintext_and_future_versions_are_named() {
        let keys = ring(1, &[]);
        let a = id("aaaa");
        assert_eq!(open(&keys, &a, PLAIN), Err(OpenError::NotSealed));
        assert_eq!(open(&keys, &a, b""), Err(OpenError::NotSealed));
        let mut future = seal(&keys, &a, PLAIN).unwrap();
        future[4] = 2;
        assert_eq!(
            open(&keys, &a, &future),
            Err(OpenError::UnknownVersion { version: 2 })
        );
        assert_eq!(key_id_of(&future), None);
        assert!(is_sealed(&future));
    }
}
