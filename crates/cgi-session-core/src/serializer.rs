//! The [`Serializer`] plug point and the JSON serializer.

use std::fmt::Debug;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::error::SerializeError;
use crate::record::Record;

/// Turns CGI::Session's flat session map into bytes and back: CGI::Session's `serializer:`
/// plug point.
///
/// Readers must treat the bytes as untrusted: malformed input is an error, never a panic.
///
/// ```
/// use cgi_session_core::{JsonSerializer, Serializer};
/// use serde_json::json;
///
/// let map = json!({"_SESSION_ID": "abc", "user": "alice"});
/// let bytes = JsonSerializer.freeze(map.as_object().unwrap()).unwrap();
/// assert_eq!(JsonSerializer.thaw(&bytes).unwrap(), *map.as_object().unwrap());
/// ```
pub trait Serializer: Send + Sync + Debug + 'static {
    /// The name used in DSN strings (`serializer:<name>`).
    fn name(&self) -> &'static str;

    /// Encodes the map.
    ///
    /// # Errors
    /// When a value cannot be represented in this format.
    fn freeze(&self, map: &Map<String, Value>) -> Result<Vec<u8>, SerializeError>;

    /// Decodes bytes written by [`Serializer::freeze`] (or by CGI::Session's serializer of the
    /// same name).
    ///
    /// # Errors
    /// [`SerializeError::Syntax`] when the bytes are not in this format or do not hold a map.
    fn thaw(&self, bytes: &[u8]) -> Result<Map<String, Value>, SerializeError>;

    /// Encodes the map as a new version of `previous`, the stored bytes it was read from
    /// (`None` for a new session, or when the session was not read from stored bytes).
    ///
    /// Formats that can say more than a [`Value`] holds (Perl byte strings versus character
    /// strings, blessed objects) override this so that values the application did not change
    /// are written back exactly as they were stored: a Perl program sharing the session reads
    /// them unchanged. The default ignores `previous` and calls [`Serializer::freeze`].
    ///
    /// Implementations must treat `previous` as untrusted; when it does not decode they fall
    /// back to [`Serializer::freeze`].
    ///
    /// # Errors
    /// As [`Serializer::freeze`].
    fn freeze_over(
        &self,
        map: &Map<String, Value>,
        previous: Option<&[u8]>,
    ) -> Result<Vec<u8>, SerializeError> {
        let _ = previous;
        self.freeze(map)
    }

    /// Decodes a whole record (what the session layer calls on every load). The default
    /// thaws the flat map ([`Serializer::thaw`]) and reads it with [`Record::from_map`];
    /// a format that can do less work per request overrides it (JSON keeps each parameter
    /// as its stored text until it is read). An override must accept what the default
    /// accepts, giving an equal record, and refuse what the default refuses, but that it may
    /// keep a parameter whose value the full decoder refuses as stored text (reading that
    /// parameter is then the error; see [`JsonSerializer`]).
    ///
    /// # Errors
    /// As [`Serializer::thaw`]; [`SerializeError::NotARecord`] when the bytes hold a map that
    /// is not a session.
    fn thaw_record(&self, bytes: &Bytes) -> Result<Record, SerializeError> {
        Record::from_map(self.thaw(bytes)?)
    }

    /// Encodes a whole record as a new version of its stored bytes
    /// ([`Record::stored_bytes`]), what the session layer calls on every save. The default
    /// builds the flat map ([`Record::with_map`]) and calls [`Serializer::freeze_over`].
    ///
    /// # Errors
    /// As [`Serializer::freeze`].
    fn freeze_record(&self, record: &mut Record) -> Result<Vec<u8>, SerializeError> {
        let previous = record.stored_shared();
        record.with_map(|map| self.freeze_over(map, previous.as_deref()))
    }
}

/// JSON, as CGI::Session::Serialize::json writes it: one JSON object.
///
/// Records are read without decoding their parameters: each keeps its stored JSON text until
/// it is read, and is written back as that text when nobody changed it
/// ([`record::Params`](crate::record::Params)). The bytes written are those of
/// `serde_json::to_vec` of the record's flat map.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonSerializer;

impl Serializer for JsonSerializer {
    fn name(&self) -> &'static str {
        "json"
    }

    fn freeze(&self, map: &Map<String, Value>) -> Result<Vec<u8>, SerializeError> {
        serde_json::to_vec(map).map_err(|e| SerializeError::Syntax {
            format: "json",
            message: e.to_string(),
        })
    }

    fn thaw(&self, bytes: &[u8]) -> Result<Map<String, Value>, SerializeError> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(SerializeError::Syntax {
                format: "json",
                message: "the top-level value is not an object".into(),
            }),
            Err(e) => Err(SerializeError::Syntax {
                format: "json",
                message: e.to_string(),
            }),
        }
    }

    fn thaw_record(&self, bytes: &Bytes) -> Result<Record, SerializeError> {
        crate::record::json::decode(bytes)
    }

    fn freeze_record(&self, record: &mut Record) -> Result<Vec<u8>, SerializeError> {
        crate::record::json::encode(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            &b""[..],
            b"[1,2]",
            b"{\"a\":",
            b"\xff\xfe",
            b"null",
            b"{\"a\":1}trailing",
        ] {
            assert!(JsonSerializer.thaw(bad).is_err(), "{bad:?}");
        }
    }
}
