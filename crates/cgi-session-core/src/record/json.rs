//! The JSON record codec without a `Value` tree: the top level is parsed in place (each
//! parameter kept as its JSON text, see [`Params`]) and a record is written by splicing the
//! parameters' texts between the reserved fields.
//!
//! The bytes written are those `serde_json::to_vec` writes for the record's flat map (keys
//! sorted, compact), given parameters that were read from such bytes or set since; a
//! parameter read from other JSON (spaces, other number spellings, from Perl's JSON module)
//! keeps its spelling. `serde_json` decodes the values and escapes what needs escaping: only
//! the top-level walk is here, so that no parameter is decoded before it is read. That walk
//! is a hand-written scanner ([`scan`]) for well-formed records, with serde_json's own walk
//! ([`decode_serde`]) behind it for everything the scanner is unsure of; the writer puts
//! integers and strings that need no escapes directly.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{Params, Record, Reserved, KEY_ATIME, KEY_CTIME, KEY_ETIME, KEY_EXPIRE_LIST, KEY_ID};
use super::{KEY_REMOTE_ADDR, RESERVED_PREFIX};
use crate::error::SerializeError;
use crate::record::params::{name_order, Encoded, Entry, Name};

fn syntax(message: impl fmt::Display) -> SerializeError {
    SerializeError::Syntax {
        format: "json",
        message: message.to_string(),
    }
}

/// A map key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Reads the top-level object in one pass: reserved fields decoded, parameters kept as text.
struct RecordVisitor<'b> {
    /// The whole stored text: parameters share it.
    bytes: &'b Bytes,
}

impl RecordVisitor<'_> {
    /// `text`, a part of the stored bytes, shared rather than copied.
    fn share(&self, text: &str) -> Bytes {
        let start = (text.as_ptr() as usize).wrapping_sub(self.bytes.as_ptr() as usize);
        let end = start.wrapping_add(text.len());
        if start <= end && end <= self.bytes.len() {
            self.bytes.slice(start..end)
        } else {
            Bytes::copy_from_slice(text.as_bytes())
        }
    }
}

impl<'de> Visitor<'de> for RecordVisitor<'_> {
    type Value = (Reserved, Vec<Entry>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut reserved = Reserved::default();
        let mut params = Vec::with_capacity(map.size_hint().unwrap_or(4));
        while let Some(Key(name)) = map.next_key::<Key<'de>>()? {
            let raw: &'de RawValue = map.next_value()?;
            let text = raw.get();
            if name.starts_with(RESERVED_PREFIX) {
                reserved.put(name, reserved_value(text).map_err(de::Error::custom)?);
                continue;
            }
            let name = match name {
                Cow::Borrowed(stored) => Name::Stored(self.share(stored)),
                Cow::Owned(own) => Name::Own(Arc::from(own)),
            };
            params.push(Entry::stored(name, self.share(text)));
        }
        Ok((reserved, params))
    }
}

/// Reads a record from JSON bytes.
///
/// What decoding the whole document into a map and reading it with [`Record::from_map`]
/// accepts, this accepts, giving an equal record; and it refuses the same syntax errors and
/// non-records. A parameter is only checked as JSON syntax here (by the scanner, or by
/// serde_json's skip when the scanner gives up: they accept the same), so a few texts the
/// full decoder refuses are accepted inside a parameter's value: a lone UTF-16
/// surrogate escape, a number beyond `f64`, nesting deeper than 128. Such a parameter is kept
/// and written back as it was stored; reading it ([`Params::get_as`], `Session::get`) is an
/// error and [`Params::get`] sees `null`. The rest of the session stays usable.
pub(crate) fn decode(bytes: &Bytes) -> Result<Record, SerializeError> {
    match decode_scanned(bytes) {
        Some(read) => read,
        None => decode_serde(bytes),
    }
}

/// A reserved field's value from its JSON text (a value serde_json's skip accepted).
fn reserved_value(text: &str) -> serde_json::Result<Value> {
    // Most reserved fields are plain integers: no need for serde_json there. (The text is
    // JSON: no `+` or leading zeros; `-0` is left to serde_json.)
    match text.parse::<i64>() {
        Ok(n) if text != "-0" => Ok(Value::from(n)),
        _ => serde_json::from_str(text),
    }
}

/// [`decode`]'s fast path: the top level split by the hand-written scanner ([`scan`]), each
/// member read as the serde_json walk of [`decode_serde`] reads it. `None` (give up: the
/// caller runs [`decode_serde`]) for anything but UTF-8 text of one object with plain
/// names and well-formed values, and for a reserved field serde_json refuses.
pub(crate) fn decode_scanned(bytes: &Bytes) -> Option<Result<Record, SerializeError>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut reserved = Reserved::default();
    let mut params = Vec::with_capacity(8);
    scan::members(bytes, |member| {
        let reserved_name = bytes
            .get(member.name.clone())?
            .starts_with(RESERVED_PREFIX.as_bytes());
        if reserved_name {
            let key = text.get(member.name)?;
            let value = if member.plain_string {
                // What serde_json decodes a string without escapes to.
                let inner = member.value.start + 1..member.value.end - 1;
                Value::String(text.get(inner)?.to_owned())
            } else {
                reserved_value(text.get(member.value)?).ok()?
            };
            reserved.put(key, value);
        } else {
            let name = Name::Stored(bytes.slice(member.name));
            params.push(Entry::stored(name, bytes.slice(member.value)));
        }
        Some(())
    })?;
    Some(reserved.finish(Params::from_stored(params)))
}

/// [`decode`] by serde_json's walk of the top level: the reference the fast path agrees
/// with, and the reader of everything it gives up on (which gives serde_json's errors).
pub(crate) fn decode_serde(bytes: &Bytes) -> Result<Record, SerializeError> {
    let first = bytes
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t'));
    if first.is_some_and(|b| b != b'{') {
        // Still a syntax error first when the bytes are not JSON at all.
        return match serde_json::from_slice::<de::IgnoredAny>(bytes) {
            Err(e) => Err(syntax(e)),
            Ok(_) => Err(syntax("the top-level value is not an object")),
        };
    }
    let visitor = RecordVisitor { bytes };
    // One UTF-8 check of the whole text, rather than one per key and per value as reading
    // from bytes does; text that is not UTF-8 is read as bytes for serde_json's exact error.
    let read = match std::str::from_utf8(bytes) {
        Ok(text) => whole_map(serde_json::Deserializer::from_str(text), visitor),
        Err(_) => whole_map(serde_json::Deserializer::from_slice(bytes), visitor),
    };
    let (reserved, params) = read.map_err(syntax)?;
    reserved.finish(Params::from_stored(params))
}

/// The document as one map, with nothing after it.
fn whole_map<'de, R, V>(
    mut de: serde_json::Deserializer<R>,
    visitor: V,
) -> serde_json::Result<V::Value>
where
    R: serde_json::de::Read<'de>,
    V: Visitor<'de>,
{
    let value = de.deserialize_map(visitor)?;
    de.end()?;
    Ok(value)
}

/// One reserved field as the encoder writes it.
#[derive(Clone, Copy)]
enum Field<'a> {
    Str(&'a str),
    Int(i64),
    List(&'a BTreeMap<String, i64>),
    Value(&'a Value),
}

/// A reserved field to write: (name, whether the name is written as it is: the
/// `_SESSION_*` names need no escapes, names found in storage may), field.
type Reserve<'a> = (&'a str, bool, Field<'a>);

/// Writes `record` as one JSON object: keys sorted, compact (as `serde_json::to_vec` writes
/// its flat map).
pub(crate) fn encode(record: &Record) -> Result<Vec<u8>, SerializeError> {
    // The typed fields, in name order (byte order: ATIME < CTIME < ETIME < EXPIRE_LIST < ID
    // < REMOTE_ADDR), so that the common record (no extras) needs no sorting.
    let mut typed: [Reserve<'_>; 6] = [("", true, Field::Int(0)); 6];
    let mut n = 0;
    let mut push = |field| {
        typed[n] = field;
        n += 1;
    };
    push((KEY_ATIME, true, Field::Int(record.atime)));
    push((KEY_CTIME, true, Field::Int(record.ctime)));
    if let Some(etime) = record.etime {
        push((KEY_ETIME, true, Field::Int(etime)));
    }
    if let Some(list) = &record.expire_list {
        push((KEY_EXPIRE_LIST, true, Field::List(list)));
    }
    push((KEY_ID, true, Field::Str(&record.id)));
    push((KEY_REMOTE_ADDR, true, Field::Str(&record.remote_addr)));
    let typed = &typed[..n];
    debug_assert!(typed.is_sorted_by(|a, b| a.0 < b.0));
    let with_extras: Vec<Reserve<'_>>;
    let fields = if record.extra.is_empty() {
        typed
    } else {
        let mut all = typed.to_vec();
        for (k, v) in &record.extra {
            // The typed fields win over stray copies kept among the extras.
            if !typed.iter().any(|(f, _, _)| *f == k) {
                all.push((k, false, Field::Value(v)));
            }
        }
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        with_extras = all;
        &with_extras[..]
    };

    let mut out = Vec::with_capacity(
        record.stored_bytes().map_or(256, |b| b.len() + 32) + record.params.len() * 8,
    );
    out.push(b'{');
    let mut first = true;
    let mut reserved = fields.iter().peekable();
    for (name, value) in record.params.encoded() {
        let name_bytes = name.as_bytes();
        while let Some((key, plain, field)) =
            reserved.next_if(|(k, _, _)| name_order(k.as_bytes(), name_bytes).is_le())
        {
            put_field(&mut out, &mut first, key, *plain, field)?;
        }
        if name_bytes.starts_with(RESERVED_PREFIX.as_bytes())
            && fields.iter().any(|(k, _, _)| k.as_bytes() == name_bytes)
        {
            continue; // a parameter under a reserved name: the reserved field was written
        }
        match name {
            // Stored without escapes: serde_json would write it as it is.
            Name::Stored(text) => put_plain_key(&mut out, &mut first, text),
            Name::Own(text) => put_key(&mut out, &mut first, text)?,
        }
        match value {
            Encoded::Raw(text) => out.extend_from_slice(text),
            Encoded::Value(v) => write_value(&mut out, v)?,
        }
    }
    for (key, plain, field) in reserved {
        put_field(&mut out, &mut first, key, *plain, field)?;
    }
    out.push(b'}');
    Ok(out)
}

/// Whether serde_json writes `s` as it is between quotes: it escapes `"`, `\` and the
/// control characters below 0x20, nothing else (not 0x7f, not non-ASCII).
fn needs_no_escape(s: &str) -> bool {
    scan::plain_len(s.as_bytes()) == s.len()
}

/// Writes `s` as a JSON string, as serde_json does.
fn write_str(out: &mut Vec<u8>, s: &str) -> Result<(), SerializeError> {
    if needs_no_escape(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(&mut *out, s).map_err(syntax)
    }
}

/// Writes an integer, as serde_json does (with `itoa`, as it does).
fn write_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Writes a value set by the application, as serde_json does; the common scalars directly.
fn write_value(out: &mut Vec<u8>, v: &Value) -> Result<(), SerializeError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::String(s) => return write_str(out, s),
        Value::Number(n) if n.is_u64() || n.is_i64() => match n.as_u64() {
            Some(u) => write_int(out, u),
            None => write_int(out, n.as_i64().unwrap_or_default()),
        },
        _ => return serde_json::to_writer(&mut *out, v).map_err(syntax),
    }
    Ok(())
}

/// Writes `"key":` (escaped as serde_json does), after a comma unless it is the first.
fn put_key(out: &mut Vec<u8>, first: &mut bool, key: &str) -> Result<(), SerializeError> {
    if !std::mem::take(first) {
        out.push(b',');
    }
    write_str(out, key)?;
    out.push(b':');
    Ok(())
}

/// Writes `"key":` for a key that needs no escapes.
fn put_plain_key(out: &mut Vec<u8>, first: &mut bool, key: &[u8]) {
    // (Bytes pushed one by one: a slice chosen at run time would be a `memcpy` call.)
    if !std::mem::take(first) {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(key);
    out.extend_from_slice(b"\":");
}

fn put_field(
    out: &mut Vec<u8>,
    first: &mut bool,
    key: &str,
    plain: bool,
    field: &Field<'_>,
) -> Result<(), SerializeError> {
    if plain {
        put_plain_key(out, first, key.as_bytes());
    } else {
        put_key(out, first, key)?;
    }
    match field {
        Field::Str(s) => write_str(out, s),
        Field::Int(n) => {
            write_int(out, *n);
            Ok(())
        }
        Field::List(l) => serde_json::to_writer(&mut *out, l).map_err(syntax),
        Field::Value(v) => write_value(out, v),
    }
}

mod scan;

#[cfg(test)]
mod fast_path_tests;
#[cfg(test)]
mod tests;
