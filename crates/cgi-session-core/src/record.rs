//! The stored layout, identical to CGI::Session's: one map holding the user's parameters beside
//! the reserved `_SESSION_*` keys.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::error::SerializeError;
use crate::serializer::Serializer;

pub(crate) mod json;
mod params;

pub use params::{Iter as ParamsIter, Params};

/// For the fuzz targets of `cgi-session-fuzz`, not a stable API: JSON bytes read by the JSON
/// record reader's fast path (`None` when it gives up on them) and by serde_json's walk,
/// which must agree whenever the fast path does not give up.
#[doc(hidden)]
pub fn json_decode_paths(
    bytes: &[u8],
) -> (
    Option<Result<Record, SerializeError>>,
    Result<Record, SerializeError>,
) {
    let bytes = Bytes::copy_from_slice(bytes);
    (json::decode_scanned(&bytes), json::decode_serde(&bytes))
}

/// Reserved key: the session id.
pub const KEY_ID: &str = "_SESSION_ID";
/// Reserved key: creation time (Unix seconds).
pub const KEY_CTIME: &str = "_SESSION_CTIME";
/// Reserved key: last access time (Unix seconds).
pub const KEY_ATIME: &str = "_SESSION_ATIME";
/// Reserved key: idle timeout in seconds (absent when the session has none).
pub const KEY_ETIME: &str = "_SESSION_ETIME";
/// Reserved key: the client address that created the session (`''` if unknown).
pub const KEY_REMOTE_ADDR: &str = "_SESSION_REMOTE_ADDR";
/// Reserved key: per-parameter idle timeouts (name -> seconds).
pub const KEY_EXPIRE_LIST: &str = "_SESSION_EXPIRE_LIST";
/// Reserved key: absolute expiry (Unix seconds): the session ends then however active it is.
/// Kept among [`Record::extra`] (Perl's CGI::Session keeps it but does not enforce it).
pub const KEY_EXPIRES_AT: &str = "_SESSION_EXPIRES_AT";
/// Reserved key: `1` when the session's cookie is a browser-session cookie (no `Max-Age` or
/// `Expires`). Kept among [`Record::extra`].
pub const KEY_BROWSER_COOKIE: &str = "_SESSION_BROWSER_COOKIE";
/// The prefix of every reserved name.
pub const RESERVED_PREFIX: &str = "_SESSION_";

/// Whether `name` is reserved for the session's own fields.
pub fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// A decoded session: the reserved fields, typed, and the user's parameters.
///
/// [`Record::to_map`] and [`Record::from_map`] convert to and from CGI::Session's flat map, which
/// is what a [`Serializer`] encodes. [`Record::decode`] and [`Record::encode`] go through the
/// serializer's record methods ([`Serializer::thaw_record`], [`Serializer::freeze_record`]):
/// JSON keeps each parameter as its stored text until it is read ([`Params`]). They also
/// remember the stored bytes the record was read from (or last written as), so that a
/// serializer can write values nobody changed exactly as they were stored
/// ([`Serializer::freeze_over`]); equality ignores them.
///
/// ```
/// use cgi_session_core::record::Record;
/// use cgi_session_core::JsonSerializer;
///
/// let stored = br#"{"_SESSION_ID":"abc","_SESSION_CTIME":1,"_SESSION_ATIME":2,"_SESSION_REMOTE_ADDR":"","n":1}"#;
/// let mut record = Record::decode(&JsonSerializer, stored)?;
/// assert_eq!(record.params["n"], 1);
/// assert_eq!(record.stored_bytes(), Some(&stored[..]));
/// record.params.insert("n".into(), 2.into());
/// let bytes = record.encode(&JsonSerializer)?;
/// assert_eq!(Record::decode(&JsonSerializer, &bytes)?.params["n"], 2);
/// # Ok::<(), cgi_session_core::SerializeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Record {
    /// `_SESSION_ID`.
    pub id: String,
    /// `_SESSION_CTIME`.
    pub ctime: i64,
    /// `_SESSION_ATIME`.
    pub atime: i64,
    /// `_SESSION_ETIME`.
    pub etime: Option<i64>,
    /// `_SESSION_REMOTE_ADDR` (`""` when unknown).
    pub remote_addr: String,
    /// `_SESSION_EXPIRE_LIST`, or `None` when the session never had one (CGI::Session writes the
    /// key only once it has been used).
    pub expire_list: Option<BTreeMap<String, i64>>,
    /// The user's parameters.
    pub params: Params,
    /// Other `_SESSION_*` keys found in storage, kept so that they survive a rewrite.
    pub extra: Map<String, Value>,
    /// The stored bytes this record was decoded from or last encoded as.
    stored: Option<Bytes>,
    /// What the serializer that decoded `stored` noted about them ([`Record::stored_note`]).
    note: StoredNote,
}

impl PartialEq for Record {
    /// Compares the session's contents; the remembered stored bytes are not part of it.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.ctime == other.ctime
            && self.atime == other.atime
            && self.etime == other.etime
            && self.remote_addr == other.remote_addr
            && self.expire_list == other.expire_list
            && self.params == other.params
            && self.extra == other.extra
    }
}

impl Record {
    /// A fresh record created at `now`.
    pub fn new(id: String, now: i64, remote_addr: String) -> Self {
        Self {
            id,
            ctime: now,
            atime: now,
            etime: None,
            remote_addr,
            expire_list: None,
            params: Params::new(),
            extra: Map::new(),
            stored: None,
            note: StoredNote::default(),
        }
    }

    /// When the session expires (Unix seconds), given the store's last access when the driver
    /// tracks one: the earlier of the idle expiry (`_SESSION_ETIME` seconds after the later of
    /// that access and `_SESSION_ATIME`, CGI::Session's rule) and the absolute expiry
    /// ([`Record::absolute_expiry`]). `None` when it has neither. The session layer, `find`,
    /// purging and the CLI all use this one rule.
    ///
    /// ```
    /// use cgi_session_core::record::Record;
    ///
    /// let mut record = Record::new("abc".into(), 1_000, String::new());
    /// assert_eq!(record.expires_at(None), None);
    /// record.etime = Some(600);
    /// assert_eq!(record.expires_at(None), Some(1_600));
    /// assert_eq!(record.expires_at(Some(2_000)), Some(2_600), "a later access slides it");
    /// record.set_absolute_expiry(Some(2_100));
    /// assert_eq!(record.expires_at(Some(2_000)), Some(2_100), "but not past the absolute expiry");
    /// ```
    pub fn expires_at(&self, store_last_access: Option<i64>) -> Option<i64> {
        let idle = self.etime.filter(|e| *e != 0).map(|etime| {
            let last = store_last_access.map_or(self.atime, |at| at.max(self.atime));
            last.saturating_add(etime)
        });
        match (idle, self.absolute_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The absolute expiry (`_SESSION_EXPIRES_AT`, Unix seconds): the session ends then,
    /// however recently it was used. `None` when it has none (or the stored value is not a
    /// number).
    pub fn absolute_expiry(&self) -> Option<i64> {
        self.extra.get(KEY_EXPIRES_AT).and_then(as_int)
    }

    /// Sets or clears the absolute expiry (Unix seconds).
    pub fn set_absolute_expiry(&mut self, unix: Option<i64>) {
        match unix {
            Some(at) => self.extra.insert(KEY_EXPIRES_AT.into(), Value::from(at)),
            None => self.extra.remove(KEY_EXPIRES_AT),
        };
    }

    /// Whether the session's cookie is a browser-session cookie (`_SESSION_BROWSER_COOKIE`):
    /// sent without `Max-Age` or `Expires`, so the browser forgets it when it closes.
    pub fn browser_session_cookie(&self) -> bool {
        self.extra
            .get(KEY_BROWSER_COOKIE)
            .and_then(as_int)
            .is_some_and(|v| v != 0)
    }

    /// Makes the session's cookie a browser-session cookie, or a persistent one again.
    pub fn set_browser_session_cookie(&mut self, on: bool) {
        if on {
            self.extra.insert(KEY_BROWSER_COOKIE.into(), Value::from(1));
        } else {
            self.extra.remove(KEY_BROWSER_COOKIE);
        }
    }

    /// Decodes stored bytes with `serializer` and remembers them (see
    /// [`Record::stored_bytes`]).
    ///
    /// # Errors
    /// The serializer's error when the bytes do not decode;
    /// [`SerializeError::NotARecord`] when they are not a session.
    pub fn decode(serializer: &dyn Serializer, bytes: &[u8]) -> Result<Self, SerializeError> {
        Self::decode_bytes(serializer, Bytes::copy_from_slice(bytes))
    }

    /// [`Record::decode`] of bytes the record may keep without copying them.
    ///
    /// # Errors
    /// As [`Record::decode`].
    pub fn decode_bytes(serializer: &dyn Serializer, bytes: Bytes) -> Result<Self, SerializeError> {
        let mut record = serializer.thaw_record(&bytes)?;
        record.stored = Some(bytes);
        Ok(record)
    }

    /// Encodes the record with `serializer` as a new version of the bytes it was read from
    /// ([`Serializer::freeze_record`]), and remembers the result as its stored bytes.
    ///
    /// # Errors
    /// The serializer's error when a value cannot be represented.
    pub fn encode(&mut self, serializer: &dyn Serializer) -> Result<Bytes, SerializeError> {
        let bytes = Bytes::from(serializer.freeze_record(self)?);
        self.stored = Some(bytes.clone());
        self.note = StoredNote::default();
        Ok(bytes)
    }

    /// What the serializer that decoded this record noted about its stored bytes
    /// ([`Record::set_stored_note`]), for its [`Serializer::freeze_record`] to reuse work its
    /// [`Serializer::thaw_record`] did: the Data::Dumper serializer notes where each value sits
    /// in the stored text, so that a save does not parse the text again. Encoding the record
    /// drops it (the stored bytes are then new); clones share it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cgi_session_core::record::Record;
    /// use cgi_session_core::JsonSerializer;
    ///
    /// let mut record = Record::new("abc".into(), 1, String::new());
    /// record.set_stored_note(Arc::new(42u32));
    /// let copy = record.clone();
    /// assert_eq!(copy.stored_note().and_then(|n| n.downcast_ref::<u32>()), Some(&42));
    /// record.encode(&JsonSerializer)?;
    /// assert!(record.stored_note().is_none(), "new stored bytes: the note is gone");
    /// # Ok::<(), cgi_session_core::SerializeError>(())
    /// ```
    pub fn stored_note(&self) -> Option<&Arc<dyn Any + Send + Sync>> {
        self.note.0.as_ref()
    }

    /// Attaches a serializer's note about the bytes being decoded (from
    /// [`Serializer::thaw_record`]; see [`Record::stored_note`]). A serializer that uses it
    /// checks that the note is about the bytes it encodes over.
    pub fn set_stored_note(&mut self, note: Arc<dyn Any + Send + Sync>) {
        self.note = StoredNote(Some(note));
    }

    /// The stored bytes this record was decoded from or last encoded as, if any.
    pub fn stored_bytes(&self) -> Option<&[u8]> {
        self.stored.as_deref()
    }

    /// [`Record::stored_bytes`], shared (no copy), for encoding over them while the record is
    /// borrowed mutably.
    pub(crate) fn stored_shared(&self) -> Option<Bytes> {
        self.stored.clone()
    }

    /// CGI::Session's flat map.
    pub fn to_map(&self) -> Map<String, Value> {
        self.reserved_into(self.params.to_map())
    }

    /// `map` (the parameters) with the reserved keys added.
    fn reserved_into(&self, mut map: Map<String, Value>) -> Map<String, Value> {
        for (k, v) in &self.extra {
            map.insert(k.clone(), v.clone());
        }
        map.insert(KEY_ID.into(), Value::from(self.id.clone()));
        map.insert(KEY_CTIME.into(), Value::from(self.ctime));
        map.insert(KEY_ATIME.into(), Value::from(self.atime));
        map.insert(
            KEY_REMOTE_ADDR.into(),
            Value::from(self.remote_addr.clone()),
        );
        if let Some(etime) = self.etime {
            map.insert(KEY_ETIME.into(), Value::from(etime));
        }
        if let Some(list) = &self.expire_list {
            let list: Map<String, Value> = list
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(*v)))
                .collect();
            map.insert(KEY_EXPIRE_LIST.into(), Value::Object(list));
        }
        map
    }

    /// Runs `f` on CGI::Session's flat map without copying the parameters: they are moved
    /// into the map for the call and back afterwards ([`Record::to_map`] clones them).
    pub fn with_map<R>(&mut self, f: impl FnOnce(&Map<String, Value>) -> R) -> R {
        let params = std::mem::take(&mut self.params);
        let mut map = self.reserved_into(params.into_map());
        let result = f(&map);
        for key in [
            KEY_ID,
            KEY_CTIME,
            KEY_ATIME,
            KEY_REMOTE_ADDR,
            KEY_ETIME,
            KEY_EXPIRE_LIST,
        ] {
            map.remove(key);
        }
        for key in self.extra.keys() {
            map.remove(key);
        }
        self.params = Params::from(map);
        result
    }

    /// Reads CGI::Session's flat map. Numbers stored as strings (as Perl may write them) are
    /// accepted; anything else malformed in a reserved field is an error.
    ///
    /// # Errors
    /// [`SerializeError::NotARecord`] when `_SESSION_ID` is missing or a reserved field has the
    /// wrong type.
    pub fn from_map(map: Map<String, Value>) -> Result<Self, SerializeError> {
        let mut reserved = Reserved::default();
        let mut params = Params::new();
        for (k, v) in map {
            if is_reserved(&k) {
                reserved.put(k, v);
            } else {
                params.insert(k, v);
            }
        }
        reserved.finish(params)
    }
}

/// The reserved fields of a stored record as found, before they are checked
/// ([`Record::from_map`] and the JSON codec read them alike).
#[derive(Default)]
pub(crate) struct Reserved {
    id: Option<Value>,
    ctime: Option<Value>,
    atime: Option<Value>,
    etime: Option<Value>,
    remote_addr: Option<Value>,
    expire_list: Option<Value>,
    extra: Map<String, Value>,
}

impl Reserved {
    /// One `_SESSION_*` entry (the last of a name counts).
    pub(crate) fn put(&mut self, key: impl AsRef<str> + Into<String>, value: Value) {
        let slot = match key.as_ref() {
            KEY_ID => &mut self.id,
            KEY_CTIME => &mut self.ctime,
            KEY_ATIME => &mut self.atime,
            KEY_ETIME => &mut self.etime,
            KEY_REMOTE_ADDR => &mut self.remote_addr,
            KEY_EXPIRE_LIST => &mut self.expire_list,
            _ => {
                self.extra.insert(key.into(), value);
                return;
            }
        };
        *slot = Some(value);
    }

    /// The record, once the fields are checked.
    pub(crate) fn finish(self, params: Params) -> Result<Record, SerializeError> {
        let id = match self.id {
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return Err(SerializeError::NotARecord(format!(
                    "{KEY_ID} is missing or not a string"
                )))
            }
        };
        let ctime = int_field(self.ctime, KEY_CTIME)?.unwrap_or(0);
        let atime = int_field(self.atime, KEY_ATIME)?.unwrap_or(ctime);
        let etime = int_field(self.etime, KEY_ETIME)?;
        let remote_addr = match self.remote_addr {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s,
            Some(_) => {
                return Err(SerializeError::NotARecord(format!(
                    "{KEY_REMOTE_ADDR} is not a string"
                )))
            }
        };
        let expire_list = match self.expire_list {
            None | Some(Value::Null) => None,
            Some(Value::Object(obj)) => {
                let mut list = BTreeMap::new();
                for (k, v) in obj {
                    let secs = as_int(&v).ok_or_else(|| {
                        SerializeError::NotARecord(format!(
                            "{KEY_EXPIRE_LIST} entry `{k}` is not an integer"
                        ))
                    })?;
                    list.insert(k, secs);
                }
                Some(list)
            }
            Some(_) => {
                return Err(SerializeError::NotARecord(format!(
                    "{KEY_EXPIRE_LIST} is not a map"
                )))
            }
        };
        Ok(Record {
            id,
            ctime,
            atime,
            etime,
            remote_addr,
            expire_list,
            params,
            extra: self.extra,
            stored: None,
            note: StoredNote::default(),
        })
    }
}

/// A serializer's note about the stored bytes; shared by clones of the record.
#[derive(Clone, Default)]
struct StoredNote(Option<Arc<dyn Any + Send + Sync>>);

impl std::fmt::Debug for StoredNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn int_field(value: Option<Value>, key: &str) -> Result<Option<i64>, SerializeError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => as_int(&v)
            .map(Some)
            .ok_or_else(|| SerializeError::NotARecord(format!("{key} is not an integer"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_through_the_flat_map() {
        let mut r = Record::new("abc".into(), 100, "192.0.2.7".into());
        r.etime = Some(600);
        r.expire_list = Some(BTreeMap::from([("logged_in".to_string(), 300)]));
        r.params.insert("user".into(), json!("alice"));
        let map = r.to_map();
        assert_eq!(map["_SESSION_ETIME"], json!(600));
        assert_eq!(map["_SESSION_EXPIRE_LIST"], json!({"logged_in": 300}));
        assert_eq!(Record::from_map(map).unwrap(), r);
    }

    #[test]
    fn with_map_sees_the_flat_map_and_restores_the_record() {
        let mut r = Record::new("abc".into(), 100, String::new());
        r.etime = Some(60);
        r.params.insert("user".into(), json!("alice"));
        r.extra.insert("_SESSION_FUTURE".into(), json!(1));
        let before = r.clone();
        let seen = r.with_map(|m| m.clone());
        assert_eq!(seen, before.to_map());
        assert_eq!(r, before);
    }

    #[test]
    fn accepts_perl_style_numeric_strings_and_keeps_unknown_reserved_keys() {
        let map = json!({
            "_SESSION_ID": "x", "_SESSION_CTIME": "1795762418", "_SESSION_ATIME": 1795762419,
            "_SESSION_FUTURE": 1, "a": 1
        });
        let Value::Object(map) = map else {
            unreachable!()
        };
        let r = Record::from_map(map).unwrap();
        assert_eq!(r.ctime, 1_795_762_418);
        assert_eq!(r.remote_addr, "");
        assert!(r.extra.contains_key("_SESSION_FUTURE"));
        assert_eq!(r.params.len(), 1);
        assert!(r.to_map().contains_key("_SESSION_FUTURE"));
    }

    #[test]
    fn absolute_expiry_and_browser_cookie_live_in_reserved_keys_and_bound_the_idle_expiry() {
        let mut r = Record::new("abc".into(), 1_000, String::new());
        r.set_absolute_expiry(Some(1_300));
        assert_eq!(r.expires_at(None), Some(1_300), "absolute only");
        r.etime = Some(100);
        assert_eq!(r.expires_at(None), Some(1_100), "idle first");
        assert_eq!(r.expires_at(Some(1_250)), Some(1_300), "absolute first");
        r.set_browser_session_cookie(true);
        let map = r.to_map();
        assert_eq!(map[KEY_EXPIRES_AT], json!(1_300));
        assert_eq!(map[KEY_BROWSER_COOKIE], json!(1));
        let back = Record::from_map(map).unwrap();
        assert_eq!(back, r);
        assert!(back.params.is_empty(), "reserved keys are not parameters");
        assert!(back.browser_session_cookie());
        r.set_absolute_expiry(None);
        r.set_browser_session_cookie(false);
        assert!(!r.to_map().contains_key(KEY_EXPIRES_AT));
        assert!(!r.browser_session_cookie());
        assert_eq!(r.expires_at(None), Some(1_100));
    }

    #[test]
    fn rejects_maps_that_are_not_sessions() {
        for bad in [
            json!({"a": 1}),
            json!({"_SESSION_ID": [1]}),
            json!({"_SESSION_ID": "x", "_SESSION_ATIME": "soon"}),
            json!({"_SESSION_ID": "x", "_SESSION_EXPIRE_LIST": [1]}),
            json!({"_SESSION_ID": "x", "_SESSION_EXPIRE_LIST": {"a": "b"}}),
            json!({"_SESSION_ID": "x", "_SESSION_REMOTE_ADDR": 5}),
        ] {
            let Value::Object(map) = bad else {
                unreachable!()
            };
            assert!(Record::from_map(map).is_err());
        }
    }
}
