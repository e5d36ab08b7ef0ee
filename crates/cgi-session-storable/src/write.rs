//! The writer: what `Storable::freeze` writes on x86_64 (native order), from the JSON model
//! and, for values kept from a previous image, from that image's nodes.

use std::collections::{HashMap, HashSet};

use cgi_session_core::SerializeError;
use cgi_session_dumper::StringStyle;
use serde_json::{Map, Number, Value};

use crate::read::{
    decode_bytes, syntax, Doc, Entry, Kind, NodeId, ToJson, BIN_MAJOR, SHV_K_UTF8, SHV_K_WASUTF8,
    SX_ARRAY, SX_BLESS, SX_BYTE, SX_DOUBLE, SX_FLAG_HASH, SX_HASH, SX_INTEGER, SX_IX_BLESS,
    SX_LSCALAR, SX_LUTF8STR, SX_NETINT, SX_OBJECT, SX_REF, SX_SCALAR, SX_UNDEF, SX_UTF8STR,
};
use crate::{BLESS_TAG, BLESS_VALUE, MAX_DEPTH, REF_TAG};

/// The binary minor version Storable 3.x writes (`STORABLE_BIN_WRITE_MINOR`).
const BIN_WRITE_MINOR: u8 = 11;

/// `Storable::freeze`'s header on x86_64: major 2 (native order), minor 11, byte order
/// "12345678", sizes of int, long, pointer and NV.
pub(crate) const HEADER: [u8; 15] = [
    BIN_MAJOR << 1,
    BIN_WRITE_MINOR,
    8,
    b'1',
    b'2',
    b'3',
    b'4',
    b'5',
    b'6',
    b'7',
    b'8',
    4,
    8,
    8,
    8,
];

/// `{"__perl_bless__": "Class", "value": inner}` -> `("Class", inner)`.
fn as_bless(map: &Map<String, Value>) -> Option<(&str, &Value)> {
    if map.len() != 2 {
        return None;
    }
    match (map.get(BLESS_TAG), map.get(BLESS_VALUE)) {
        (Some(Value::String(class)), Some(inner)) => Some((class, inner)),
        _ => None,
    }
}

/// `{"__perl_ref__": inner}` -> `inner`.
fn as_ref(map: &Map<String, Value>) -> Option<&Value> {
    if map.len() == 1 {
        map.get(REF_TAG)
    } else {
        None
    }
}

fn too_deep() -> SerializeError {
    syntax(format!(
        "the value is nested deeper than {MAX_DEPTH} levels; store a flatter structure"
    ))
}

fn i32_len(n: usize, what: &str) -> Result<[u8; 4], SerializeError> {
    match i32::try_from(n) {
        Ok(v) => Ok(v.to_le_bytes()),
        Err(_) => Err(syntax(format!(
            "{what} of {n} is too large for Storable (at most {} without 64-bit \
             extensions)",
            i32::MAX
        ))),
    }
}

/// What a blessed object's `value` is in Perl.
enum Blessable<'v> {
    Array(&'v [Value]),
    Hash(&'v Map<String, Value>),
    Scalar(&'v Value),
}

struct Writer<'d, 'a> {
    out: Vec<u8>,
    style: StringStyle,
    /// The next tag number Perl's reader will give an object.
    tag: u32,
    /// Class names already introduced with `SX_BLESS`, and their index.
    classes: HashMap<Vec<u8>, u32>,
    /// The previous image, when writing over it.
    doc: Option<&'d Doc<'a>>,
    /// Nodes of the previous image already written, and their new tag numbers.
    written: HashMap<NodeId, u32>,
}

/// Writes `map` as `Storable::freeze` would. No value is written blessed.
pub(crate) fn freeze(
    map: &Map<String, Value>,
    style: StringStyle,
) -> Result<Vec<u8>, SerializeError> {
    let mut w = Writer::new(style, None);
    w.hash(map, 1, &HashMap::new())?;
    Ok(w.out)
}

/// Writes `map` over a previous image: unchanged top-level values are written as they were
/// stored (with their classes, string kinds, number kinds, and shared references among them);
/// changed ones as by [`freeze`], except that a `__perl_bless__` object is written blessed
/// when its class was read blessed somewhere in the previous value of the same top-level key.
pub(crate) fn freeze_over(
    map: &Map<String, Value>,
    style: StringStyle,
    doc: &Doc<'_>,
) -> Result<Vec<u8>, SerializeError> {
    let (root_flags, entries) = doc.root_entries();
    let before = ToJson::new(doc).root_map()?;
    // The visible entries and their keys as text (decoded once, for both uses below).
    let stored: Vec<(String, &Entry)> = entries
        .iter()
        .filter(|e| !e.is_placeholder())
        .map(|e| (doc.key_string(e), e))
        .collect();
    // Keys in the order the previous image stored them, then the new ones: an unchanged
    // map is written back byte for byte.
    let mut order: Vec<(&String, &Value)> = Vec::with_capacity(map.len());
    let mut placed = HashSet::with_capacity(map.len());
    for (key, _) in &stored {
        if let Some((k, v)) = map.get_key_value(key) {
            if placed.insert(k) {
                order.push((k, v));
            }
        }
    }
    // Perl's hash semantics: the last entry of a key wins.
    let previous: HashMap<String, &Entry> = stored.into_iter().collect();
    order.extend(map.iter().filter(|(k, _)| !placed.contains(k)));
    let mut w = Writer::new(style, Some(doc));
    w.seen();
    let mut keys = Vec::with_capacity(order.len());
    for (key, _) in &order {
        keys.push(match previous.get(*key) {
            // The key as Perl stored it (Latin-1 bytes stay Latin-1 bytes); a restricted
            // hash's "locked" bit is dropped with the restriction below.
            Some(e) => (
                e.key_flags & (SHV_K_UTF8 | SHV_K_WASUTF8),
                doc.bytes(e.key).to_vec(),
            ),
            None => w.fresh_key(key),
        });
    }
    let flagged = root_flags.is_some() || keys.iter().any(|(f, _)| *f != 0);
    w.hash_head(flagged, order.len())?;
    for ((key, value), (key_flags, key_bytes)) in order.into_iter().zip(keys) {
        match previous.get(key) {
            Some(e) if before.get(key) == Some(value) => {
                w.node(e.value, 2)?;
            }
            Some(e) => {
                let mut allowed = HashMap::new();
                for c in doc.classes_below(e.value) {
                    let raw = doc.class_bytes(c);
                    allowed.insert(decode_bytes(raw), raw.to_vec());
                }
                w.slot(value, 2, &allowed)?;
            }
            None => w.slot(value, 2, &HashMap::new())?,
        }
        w.key(flagged, key_flags, &key_bytes)?;
    }
    Ok(w.out)
}

impl<'d, 'a> Writer<'d, 'a> {
    fn new(style: StringStyle, doc: Option<&'d Doc<'a>>) -> Self {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&HEADER);
        Self {
            out,
            style,
            tag: 0,
            classes: HashMap::new(),
            doc,
            written: HashMap::new(),
        }
    }

    /// Perl's reader registers one more object.
    fn seen(&mut self) -> u32 {
        let t = self.tag;
        self.tag = self.tag.wrapping_add(1);
        t
    }

    fn len32(&mut self, n: usize, what: &str) -> Result<(), SerializeError> {
        let b = i32_len(n, what)?;
        self.out.extend_from_slice(&b);
        Ok(())
    }

    /// The flags and bytes of a key written from Rust.
    fn fresh_key(&self, key: &str) -> (u8, Vec<u8>) {
        if key.is_ascii() || self.style == StringStyle::Utf8Bytes {
            (0, key.as_bytes().to_vec())
        } else {
            (SHV_K_UTF8, key.as_bytes().to_vec())
        }
    }

    fn hash_head(&mut self, flagged: bool, len: usize) -> Result<(), SerializeError> {
        if flagged {
            self.out.extend_from_slice(&[SX_FLAG_HASH, 0]);
        } else {
            self.out.push(SX_HASH);
        }
        self.len32(len, "a hash size")
    }

    fn key(&mut self, flagged: bool, flags: u8, bytes: &[u8]) -> Result<(), SerializeError> {
        if flagged {
            self.out.push(flags);
        }
        self.len32(bytes.len(), "a hash key length")?;
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    fn string(&mut self, bytes: &[u8], utf8: bool) -> Result<(), SerializeError> {
        let (small, large) = if utf8 {
            (SX_UTF8STR, SX_LUTF8STR)
        } else {
            (SX_SCALAR, SX_LSCALAR)
        };
        match u8::try_from(bytes.len()) {
            Ok(n) => self.out.extend_from_slice(&[small, n]),
            Err(_) => {
                self.out.push(large);
                self.len32(bytes.len(), "a string length")?;
            }
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    fn int(&mut self, i: i64) {
        if (-128..=127).contains(&i) {
            // (i + 128) is in 0..=255.
            self.out.extend_from_slice(&[SX_BYTE, (i + 128) as u8]);
        } else {
            self.out.push(SX_INTEGER);
            self.out.extend_from_slice(&i.to_le_bytes());
        }
    }

    fn bless(&mut self, raw: &[u8]) -> Result<(), SerializeError> {
        if let Some(&idx) = self.classes.get(raw) {
            self.out.push(SX_IX_BLESS);
            match u8::try_from(idx) {
                Ok(i) if i <= 127 => self.out.push(i),
                _ => {
                    self.out.push(0x80);
                    self.len32(idx as usize, "a class index")?;
                }
            }
        } else {
            let idx =
                u32::try_from(self.classes.len()).map_err(|_| syntax("too many classes".into()))?;
            self.classes.insert(raw.to_vec(), idx);
            self.out.push(SX_BLESS);
            match u8::try_from(raw.len()) {
                Ok(n) if n <= 127 => self.out.push(n),
                _ => {
                    self.out.push(0x80);
                    self.len32(raw.len(), "a class name length")?;
                }
            }
            self.out.extend_from_slice(raw);
        }
        Ok(())
    }

    /// A hash (the session hash, or the referent of a hash reference) at nesting `level`.
    fn hash(
        &mut self,
        map: &Map<String, Value>,
        level: usize,
        allowed: &HashMap<String, Vec<u8>>,
    ) -> Result<(), SerializeError> {
        if level > MAX_DEPTH {
            return Err(too_deep());
        }
        self.seen();
        let keys: Vec<(u8, Vec<u8>)> = map.keys().map(|k| self.fresh_key(k)).collect();
        let flagged = keys.iter().any(|(f, _)| *f != 0);
        self.hash_head(flagged, map.len())?;
        for (value, (flags, bytes)) in map.values().zip(keys) {
            self.slot(value, level + 1, allowed)?;
            self.key(flagged, flags, &bytes)?;
        }
        Ok(())
    }

    /// A value from Rust in a scalar slot (hash value, array item, referent of `\`), at
    /// JSON nesting `level`.
    fn slot(
        &mut self,
        value: &Value,
        level: usize,
        allowed: &HashMap<String, Vec<u8>>,
    ) -> Result<(), SerializeError> {
        match value {
            Value::Null => {
                self.seen();
                self.out.push(SX_UNDEF);
            }
            // What Perl's `!!1` and `!!0` hold: 1 and "" (written as mutable values).
            Value::Bool(true) => {
                self.seen();
                self.int(1);
            }
            Value::Bool(false) => {
                self.seen();
                self.string(b"", false)?;
            }
            Value::Number(n) => {
                self.seen();
                self.number(n)?;
            }
            Value::String(s) => {
                self.seen();
                let utf8 = !s.is_ascii() && self.style != StringStyle::Utf8Bytes;
                self.string(s.as_bytes(), utf8)?;
            }
            Value::Array(items) => {
                if level > MAX_DEPTH {
                    return Err(too_deep());
                }
                self.seen();
                self.out.push(SX_REF);
                self.seen();
                self.out.push(SX_ARRAY);
                self.len32(items.len(), "an array length")?;
                for item in items {
                    self.slot(item, level + 1, allowed)?;
                }
            }
            Value::Object(map) => {
                if level > MAX_DEPTH {
                    return Err(too_deep());
                }
                self.seen();
                self.out.push(SX_REF);
                if let Some(inner) = as_ref(map) {
                    // `\V`: the referent is a scalar holding V.
                    self.slot(inner, level + 1, allowed)?;
                } else if let Some((raw, inner)) = self.blessable(map, allowed) {
                    if level + 1 > MAX_DEPTH {
                        return Err(too_deep());
                    }
                    self.bless(&raw)?;
                    match inner {
                        Blessable::Array(items) => {
                            self.seen();
                            self.out.push(SX_ARRAY);
                            self.len32(items.len(), "an array length")?;
                            for item in items {
                                self.slot(item, level + 2, allowed)?;
                            }
                        }
                        // A blessed scalar: the scalar itself carries the class.
                        Blessable::Scalar(scalar) => self.slot(scalar, level + 2, allowed)?,
                        Blessable::Hash(m) => self.hash(m, level + 1, allowed)?,
                    }
                } else {
                    self.hash(map, level, allowed)?;
                }
            }
        }
        Ok(())
    }

    /// A `__perl_bless__` object that may be written blessed: its class is allowed and its
    /// value is something Perl can bless (an array, a hash or a scalar behind `__perl_ref__`).
    fn blessable<'v>(
        &self,
        map: &'v Map<String, Value>,
        allowed: &HashMap<String, Vec<u8>>,
    ) -> Option<(Vec<u8>, Blessable<'v>)> {
        let (class, inner) = as_bless(map)?;
        let raw = allowed.get(class)?.clone();
        let inner = match inner {
            Value::Array(items) => Blessable::Array(items),
            Value::Object(m) => match as_ref(m) {
                Some(scalar) => Blessable::Scalar(scalar),
                None => Blessable::Hash(m),
            },
            _ => return None,
        };
        Some((raw, inner))
    }

    fn number(&mut self, n: &Number) -> Result<(), SerializeError> {
        if let Some(i) = n.as_i64() {
            self.int(i);
        } else if let Some(u) = n.as_u64() {
            // Storable writes an unsigned integer above IV_MAX as its decimal string.
            self.string(u.to_string().as_bytes(), false)?;
        } else if let Some(f) = n.as_f64() {
            self.out.push(SX_DOUBLE);
            self.out.extend_from_slice(&f.to_le_bytes());
        } else {
            self.string(n.to_string().as_bytes(), false)?;
        }
        Ok(())
    }

    /// A node of the previous image in a scalar slot, written as it was stored. A node
    /// written before is a back-reference (`SX_OBJECT`), as Storable writes shared values.
    fn node(&mut self, id: NodeId, depth: usize) -> Result<(), SerializeError> {
        // Only nodes whose JSON form was produced (so bounded) are written; this guards
        // the stack all the same.
        if depth > 3 * MAX_DEPTH {
            return Err(too_deep());
        }
        if let Some(&t) = self.written.get(&id) {
            self.out.push(SX_OBJECT);
            self.out.extend_from_slice(&t.to_be_bytes());
            return Ok(());
        }
        let Some(doc) = self.doc else {
            return Err(syntax("internal: no previous image".into()));
        };
        let t = self.seen();
        self.written.insert(id, t);
        let node = &doc.nodes[id];
        if let Some(c) = node.class {
            self.bless(doc.class_bytes(c))?;
        }
        match &node.kind {
            Kind::Pending => return Err(syntax("internal: unfinished node".into())),
            Kind::Simple(op) => self.out.push(*op),
            Kind::Int(op, i) => match *op {
                SX_BYTE => self.int(*i),
                SX_NETINT => {
                    self.out.push(SX_NETINT);
                    // Read from 4 bytes, so it fits.
                    self.out.extend_from_slice(&(*i as i32).to_be_bytes());
                }
                _ => {
                    self.out.push(SX_INTEGER);
                    self.out.extend_from_slice(&i.to_le_bytes());
                }
            },
            Kind::Double(f) => {
                self.out.push(SX_DOUBLE);
                self.out.extend_from_slice(&f.to_le_bytes());
            }
            Kind::Str { utf8, start, end } => self.string(&doc.src[*start..*end], *utf8)?,
            Kind::Ref(op, target) => {
                self.out.push(*op);
                self.node(*target, depth + 1)?;
            }
            Kind::Array(items) => {
                self.out.push(SX_ARRAY);
                self.len32(items.len(), "an array length")?;
                for &item in items {
                    self.node(item, depth + 1)?;
                }
            }
            Kind::Hash { flags, entries } => {
                match flags {
                    Some(f) => self.out.extend_from_slice(&[SX_FLAG_HASH, *f]),
                    None => self.out.push(SX_HASH),
                }
                self.len32(entries.len(), "a hash size")?;
                for e in entries {
                    self.node(e.value, depth + 1)?;
                    self.key(flags.is_some(), e.key_flags, doc.bytes(e.key))?;
                }
            }
        }
        Ok(())
    }
}
