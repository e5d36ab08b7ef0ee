//! The reader: Storable's binary format (as `Storable.xs`'s `retrieve` reads it) into a node
//! graph, then into the JSON model. Nothing is evaluated, no class is loaded.
//!
//! Every object Storable's reader registers with `SEEN()` becomes one [`Node`], in the same
//! order, so that a node's index is its Storable tag number and `SX_OBJECT <tag>` is a plain
//! index into [`Doc::nodes`].

use std::collections::HashSet;

use cgi_session_core::SerializeError;
use serde_json::{Map, Number, Value};

use crate::{BLESS_TAG, BLESS_VALUE, FORMAT, MAX_DEPTH, REF_TAG};

// Opcodes, from Storable.xs (`#define SX_...`).
pub(crate) const SX_OBJECT: u8 = 0;
pub(crate) const SX_LSCALAR: u8 = 1;
pub(crate) const SX_ARRAY: u8 = 2;
pub(crate) const SX_HASH: u8 = 3;
pub(crate) const SX_REF: u8 = 4;
pub(crate) const SX_UNDEF: u8 = 5;
pub(crate) const SX_INTEGER: u8 = 6;
pub(crate) const SX_DOUBLE: u8 = 7;
pub(crate) const SX_BYTE: u8 = 8;
pub(crate) const SX_NETINT: u8 = 9;
pub(crate) const SX_SCALAR: u8 = 10;
const SX_TIED_ARRAY: u8 = 11;
const SX_TIED_HASH: u8 = 12;
const SX_TIED_SCALAR: u8 = 13;
pub(crate) const SX_SV_UNDEF: u8 = 14;
pub(crate) const SX_SV_YES: u8 = 15;
pub(crate) const SX_SV_NO: u8 = 16;
pub(crate) const SX_BLESS: u8 = 17;
pub(crate) const SX_IX_BLESS: u8 = 18;
const SX_HOOK: u8 = 19;
pub(crate) const SX_OVERLOAD: u8 = 20;
const SX_TIED_KEY: u8 = 21;
const SX_TIED_IDX: u8 = 22;
pub(crate) const SX_UTF8STR: u8 = 23;
pub(crate) const SX_LUTF8STR: u8 = 24;
pub(crate) const SX_FLAG_HASH: u8 = 25;
const SX_CODE: u8 = 26;
pub(crate) const SX_WEAKREF: u8 = 27;
pub(crate) const SX_WEAKOVERLOAD: u8 = 28;
const SX_VSTRING: u8 = 29;
const SX_LVSTRING: u8 = 30;
pub(crate) const SX_SVUNDEF_ELEM: u8 = 31;
const SX_REGEXP: u8 = 32;
const SX_LOBJECT: u8 = 33;
pub(crate) const SX_BOOLEAN_TRUE: u8 = 34;
pub(crate) const SX_BOOLEAN_FALSE: u8 = 35;

// Per-key flags of an SX_FLAG_HASH entry (`SHV_K_...`).
pub(crate) const SHV_K_UTF8: u8 = 0x01;
pub(crate) const SHV_K_WASUTF8: u8 = 0x02;
const SHV_K_ISSV: u8 = 0x08;
const SHV_K_PLACEHOLDER: u8 = 0x10;

/// Storable's binary major version (`STORABLE_BIN_MAJOR`).
pub(crate) const BIN_MAJOR: u8 = 2;
/// The newest binary minor version this reader knows (`STORABLE_BIN_MINOR` of Storable 3.32).
const BIN_MINOR_MAX: u8 = 12;

/// Index of a node: its Storable tag number.
pub(crate) type NodeId = usize;

/// One Perl value, as Storable recorded it (enough to write it back the same way).
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// Being read (its children are being parsed).
    Pending,
    /// A simple opcode without payload: `SX_UNDEF`, `SX_SV_UNDEF`, `SX_SVUNDEF_ELEM`,
    /// `SX_SV_YES`, `SX_SV_NO`, `SX_BOOLEAN_TRUE`, `SX_BOOLEAN_FALSE`.
    Simple(u8),
    /// `SX_BYTE`, `SX_INTEGER` or `SX_NETINT` (the opcode) and the value.
    Int(u8, i64),
    /// `SX_DOUBLE`.
    Double(f64),
    /// A string: the utf8 flag and the byte range in the input.
    Str {
        utf8: bool,
        start: usize,
        end: usize,
    },
    /// `SX_REF`, `SX_OVERLOAD`, `SX_WEAKREF` or `SX_WEAKOVERLOAD` (the opcode) to a node.
    Ref(u8, NodeId),
    /// `SX_ARRAY`.
    Array(Vec<NodeId>),
    /// `SX_HASH` (`flags` `None`) or `SX_FLAG_HASH` with its hash flags byte.
    Hash {
        flags: Option<u8>,
        entries: Vec<Entry>,
    },
}

/// One hash entry as stored.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The per-key flags byte (0 in a plain `SX_HASH`).
    pub(crate) key_flags: u8,
    /// The key's bytes: a range of the input.
    pub(crate) key: (usize, usize),
    pub(crate) value: NodeId,
}

impl Entry {
    /// A restricted hash's placeholder for a deleted key: not a visible entry.
    pub(crate) fn is_placeholder(&self) -> bool {
        self.key_flags & SHV_K_PLACEHOLDER != 0
    }
}

/// A node and the class it is blessed into (an index into [`Doc::classes`]).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) class: Option<usize>,
}

/// A decoded Storable image.
#[derive(Debug)]
pub(crate) struct Doc<'a> {
    pub(crate) src: &'a [u8],
    pub(crate) nodes: Vec<Node>,
    /// Class names in the order `SX_BLESS` introduced them: raw bytes.
    pub(crate) classes: Vec<(usize, usize)>,
}

pub(crate) fn syntax(message: String) -> SerializeError {
    SerializeError::Syntax {
        format: FORMAT,
        message,
    }
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        SX_TIED_ARRAY => "SX_TIED_ARRAY (a tied array)",
        SX_TIED_HASH => "SX_TIED_HASH (a tied hash)",
        SX_TIED_SCALAR => "SX_TIED_SCALAR (a tied scalar)",
        SX_TIED_KEY => "SX_TIED_KEY (a tied hash element)",
        SX_TIED_IDX => "SX_TIED_IDX (a tied array element)",
        SX_HOOK => "SX_HOOK (an object frozen by its class's STORABLE_freeze hook)",
        SX_CODE => "SX_CODE (a code reference)",
        SX_VSTRING | SX_LVSTRING => "SX_VSTRING (a version string)",
        SX_REGEXP => "SX_REGEXP (a regular expression)",
        SX_LOBJECT => "SX_LOBJECT (a value larger than 2 GiB)",
        _ => "an unknown opcode",
    }
}

/// Decodes bytes Perl holds as a byte string: UTF-8 when valid (what a Perl program that
/// stores its input undecoded holds), otherwise one character per byte (Latin-1, Perl's own
/// reading of a byte string). The same rule as the `default` serializer's reader.
pub(crate) fn decode_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    netorder: bool,
    nodes: Vec<Node>,
    classes: Vec<(usize, usize)>,
}

/// Parses a whole image: the header, then the root hash. The root must be a hash (what
/// CGI::Session freezes) and the input must end with it.
pub(crate) fn parse(src: &[u8]) -> Result<Doc<'_>, SerializeError> {
    let mut p = Parser {
        src,
        pos: 0,
        netorder: false,
        nodes: Vec::new(),
        classes: Vec::new(),
    };
    p.header()?;
    let root = p.item(1, None)?;
    if p.pos != src.len() {
        return Err(syntax(format!(
            "{} unexpected bytes after the end of the data at byte {}",
            src.len() - p.pos,
            p.pos
        )));
    }
    match &p.nodes[root] {
        Node {
            kind: Kind::Hash { .. },
            class: None,
        } => {}
        _ => {
            return Err(syntax(
                "the top-level value is not a hash (CGI::Session freezes its data hash)".into(),
            ))
        }
    }
    debug_assert_eq!(root, 0);
    Ok(Doc {
        src,
        nodes: p.nodes,
        classes: p.classes,
    })
}

impl<'a> Parser<'a> {
    fn remaining(&self) -> usize {
        self.src.len() - self.pos
    }

    fn eof(&self, what: &str) -> SerializeError {
        syntax(format!(
            "the data ends at byte {} inside {what}",
            self.src.len()
        ))
    }

    fn byte(&mut self, what: &str) -> Result<u8, SerializeError> {
        let b = *self.src.get(self.pos).ok_or_else(|| self.eof(what))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], SerializeError> {
        if n > self.remaining() {
            return Err(syntax(format!(
                "{what} at byte {} claims {n} bytes but only {} remain",
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.src[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], SerializeError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// `RLEN`: a 32-bit length or count, in the image's byte order.
    fn len32(&mut self, what: &str) -> Result<u32, SerializeError> {
        let b = self.array::<4>(what)?;
        Ok(if self.netorder {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    /// A length stored as a (signed) I32 count that must be positive.
    fn count(&mut self, what: &str) -> Result<usize, SerializeError> {
        let at = self.pos;
        let n = self.len32(what)?;
        if n > i32::MAX as u32 {
            return Err(syntax(format!("negative {what} at byte {at}")));
        }
        Ok(n as usize)
    }

    fn header(&mut self) -> Result<(), SerializeError> {
        let first = self.byte("the header")?;
        let major = first >> 1;
        self.netorder = first & 1 == 1;
        if major != BIN_MAJOR {
            return Err(syntax(format!(
                "not a Storable image made by Storable::freeze or nfreeze (binary major version \
                 {major}, expected {BIN_MAJOR}; files written by Storable::store start with \
                 \"pst0\" and are not supported)"
            )));
        }
        let minor = self.byte("the header")?;
        if minor > BIN_MINOR_MAX {
            return Err(syntax(format!(
                "Storable binary version {major}.{minor} is newer than this reader knows \
                 ({BIN_MAJOR}.{BIN_MINOR_MAX})"
            )));
        }
        if self.netorder {
            return Ok(());
        }
        let n = self.byte("the header")?;
        let order = self.take(usize::from(n), "the byte-order string")?;
        if order != b"12345678" {
            return Err(syntax(format!(
                "written by Storable::freeze on a machine with byte order {:?}; only \
                 little-endian 64-bit (\"12345678\") native images and nfreeze (network \
                 order) images are supported",
                String::from_utf8_lossy(order)
            )));
        }
        let sizes = if minor >= 2 {
            self.take(4, "the header")?
        } else {
            self.take(3, "the header")?
        };
        if sizes[..3] != [4, 8, 8] || sizes.get(3).is_some_and(|&nv| nv != 8) {
            return Err(syntax(format!(
                "written by Storable::freeze with int/long/pointer/NV sizes {sizes:?}; only \
                 4/8/8/8 (x86_64 and other LP64 machines) is supported"
            )));
        }
        Ok(())
    }

    /// Reads one object; `class` is the class an enclosing `SX_BLESS` gives it.
    fn item(&mut self, depth: usize, class: Option<usize>) -> Result<NodeId, SerializeError> {
        // A reference and its container are two levels here, one in the JSON model.
        if depth > 2 * MAX_DEPTH + 2 {
            return Err(syntax(format!(
                "nested deeper than {MAX_DEPTH} levels at byte {}",
                self.pos
            )));
        }
        let at = self.pos;
        let op = self.byte("a value")?;
        match op {
            SX_OBJECT => {
                let tag = u32::from_be_bytes(self.array::<4>("a back-reference")?);
                if class.is_some() {
                    return Err(syntax(format!(
                        "a class given to a back-reference at byte {at}"
                    )));
                }
                let tag = tag as usize;
                if tag >= self.nodes.len() {
                    return Err(syntax(format!(
                        "back-reference at byte {at} to object #{tag}, which was not seen yet"
                    )));
                }
                return Ok(tag);
            }
            SX_BLESS | SX_IX_BLESS if class.is_some() => {
                return Err(syntax(format!("a bless inside a bless at byte {at}")));
            }
            SX_BLESS => {
                let mut len = usize::from(self.byte("a class name")?);
                if len & 0x80 != 0 {
                    len = self.count("class name length")?;
                }
                let start = self.pos;
                self.take(len, "a class name")?;
                self.classes.push((start, start + len));
                return self.item(depth, Some(self.classes.len() - 1));
            }
            SX_IX_BLESS => {
                let mut idx = usize::from(self.byte("a class index")?);
                if idx & 0x80 != 0 {
                    idx = self.count("class index")?;
                }
                if idx >= self.classes.len() {
                    return Err(syntax(format!(
                        "class #{idx} at byte {at} was not named before"
                    )));
                }
                return self.item(depth, Some(idx));
            }
            _ => {}
        }
        let id = self.nodes.len();
        self.nodes.push(Node {
            kind: Kind::Pending,
            class,
        });
        let kind = match op {
            SX_UNDEF | SX_SV_UNDEF | SX_SVUNDEF_ELEM | SX_SV_YES | SX_SV_NO | SX_BOOLEAN_TRUE
            | SX_BOOLEAN_FALSE => Kind::Simple(op),
            SX_BYTE => Kind::Int(op, i64::from(self.byte("a small integer")?) - 128),
            SX_INTEGER => Kind::Int(op, i64::from_le_bytes(self.array::<8>("an integer")?)),
            SX_NETINT => Kind::Int(
                op,
                i64::from(i32::from_be_bytes(self.array::<4>("an integer")?)),
            ),
            SX_DOUBLE => Kind::Double(f64::from_le_bytes(self.array::<8>("a double")?)),
            SX_SCALAR | SX_UTF8STR => {
                let len = usize::from(self.byte("a string")?);
                let start = self.pos;
                self.take(len, "a string")?;
                Kind::Str {
                    utf8: op == SX_UTF8STR,
                    start,
                    end: start + len,
                }
            }
            SX_LSCALAR | SX_LUTF8STR => {
                let len = self.len32("a string")? as usize;
                let start = self.pos;
                self.take(len, "a string")?;
                Kind::Str {
                    utf8: op == SX_LUTF8STR,
                    start,
                    end: start + len,
                }
            }
            SX_REF | SX_OVERLOAD | SX_WEAKREF | SX_WEAKOVERLOAD => {
                let target = self.item(depth + 1, None)?;
                if matches!(op, SX_OVERLOAD | SX_WEAKOVERLOAD) && self.nodes[target].class.is_none()
                {
                    return Err(syntax(format!(
                        "an overloaded reference at byte {at} to a value that is not an object"
                    )));
                }
                Kind::Ref(op, target)
            }
            SX_ARRAY => {
                let len = self.count("array length")?;
                if len > self.remaining() {
                    return Err(syntax(format!(
                        "array at byte {at} claims {len} items but only {} bytes remain",
                        self.remaining()
                    )));
                }
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    items.push(self.item(depth + 1, None)?);
                }
                Kind::Array(items)
            }
            SX_HASH | SX_FLAG_HASH => {
                let flags = if op == SX_FLAG_HASH {
                    Some(self.byte("a hash")?)
                } else {
                    None
                };
                let len = self.count("hash size")?;
                // Each entry takes at least a value byte and a 4-byte key length.
                if len > self.remaining() / 5 {
                    return Err(syntax(format!(
                        "hash at byte {at} claims {len} entries but only {} bytes remain",
                        self.remaining()
                    )));
                }
                let mut entries = Vec::with_capacity(len);
                for _ in 0..len {
                    let value = self.item(depth + 1, None)?;
                    let key_flags = if flags.is_some() {
                        self.byte("a hash key")?
                    } else {
                        0
                    };
                    if key_flags & SHV_K_ISSV != 0 {
                        return Err(syntax(format!(
                            "a hash key stored as a Perl value (SHV_K_ISSV) before byte {}",
                            self.pos
                        )));
                    }
                    let klen = self.count("hash key length")?;
                    let start = self.pos;
                    let key = self.take(klen, "a hash key")?;
                    if key_flags & SHV_K_UTF8 != 0 && std::str::from_utf8(key).is_err() {
                        return Err(syntax(format!(
                            "a utf8 hash key at byte {start} is not valid UTF-8"
                        )));
                    }
                    entries.push(Entry {
                        key_flags,
                        key: (start, start + klen),
                        value,
                    });
                }
                Kind::Hash { flags, entries }
            }
            other => {
                return Err(syntax(format!(
                    "{} at byte {at} is not supported: CGI::Session data holds scalars, \
                     arrays, hashes, references and plain blessed objects",
                    opcode_name(other)
                )));
            }
        };
        self.nodes[id].kind = kind;
        Ok(id)
    }
}

impl Doc<'_> {
    /// The raw bytes of a class name.
    pub(crate) fn class_bytes(&self, idx: usize) -> &[u8] {
        let (s, e) = self.classes[idx];
        &self.src[s..e]
    }

    /// The bytes of a range of the input.
    pub(crate) fn bytes(&self, (s, e): (usize, usize)) -> &[u8] {
        &self.src[s..e]
    }

    /// The root hash's visible entries.
    pub(crate) fn root_entries(&self) -> (Option<u8>, &[Entry]) {
        match &self.nodes[0].kind {
            Kind::Hash { flags, entries } => (*flags, entries),
            _ => (None, &[]),
        }
    }

    /// A hash key as a Rust string.
    pub(crate) fn key_string(&self, entry: &Entry) -> String {
        let bytes = self.bytes(entry.key);
        if entry.key_flags & SHV_K_UTF8 != 0 {
            // Checked when parsed.
            String::from_utf8_lossy(bytes).into_owned()
        } else if entry.key_flags & SHV_K_WASUTF8 != 0 {
            // A character key that Perl downgraded to Latin-1 bytes.
            bytes.iter().map(|&b| char::from(b)).collect()
        } else {
            decode_bytes(bytes)
        }
    }

    /// Every class name blessed anywhere below `id`.
    pub(crate) fn classes_below(&self, id: NodeId) -> HashSet<usize> {
        let mut classes = HashSet::new();
        let mut seen = HashSet::new();
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            if !seen.insert(n) {
                continue;
            }
            let node = &self.nodes[n];
            if let Some(c) = node.class {
                classes.insert(c);
            }
            match &node.kind {
                Kind::Ref(_, t) => stack.push(*t),
                Kind::Array(items) => stack.extend(items),
                Kind::Hash { entries, .. } => stack.extend(entries.iter().map(|e| e.value)),
                _ => {}
            }
        }
        classes
    }
}

/// Turns nodes into the JSON model, expanding back-references, with a bound on the work.
pub(crate) struct ToJson<'d, 'a> {
    doc: &'d Doc<'a>,
    budget: usize,
    limit: usize,
    on_path: Vec<bool>,
}

impl<'d, 'a> ToJson<'d, 'a> {
    pub(crate) fn new(doc: &'d Doc<'a>) -> Self {
        // Back-references may repeat values, but not explode: at most 16 times the input
        // (at least 1 MiB) of values and string bytes in all.
        let limit = doc.src.len().saturating_mul(16).max(1 << 20);
        Self {
            doc,
            budget: limit,
            limit,
            on_path: vec![false; doc.nodes.len()],
        }
    }

    fn spend(&mut self, n: usize) -> Result<(), SerializeError> {
        match self.budget.checked_sub(n) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => Err(syntax(format!(
                "back-references expand to more than {} values and string bytes; refusing \
                 to expand further",
                self.limit
            ))),
        }
    }

    /// The root hash as the session map.
    pub(crate) fn root_map(&mut self) -> Result<Map<String, Value>, SerializeError> {
        match self.referent(0, 1)? {
            Value::Object(map) => Ok(map),
            _ => Err(syntax("the top-level value is not a hash".into())),
        }
    }

    /// The JSON of a hash value or array item (a Perl scalar slot), at JSON nesting `level`.
    pub(crate) fn slot(&mut self, id: NodeId, level: usize) -> Result<Value, SerializeError> {
        if self.doc.nodes[id].class.is_some() {
            return Err(syntax(format!(
                "object #{id} is blessed but is not behind a reference"
            )));
        }
        self.scalar(id, level)
    }

    /// A scalar's JSON, ignoring a class (the caller handles it).
    fn scalar(&mut self, id: NodeId, level: usize) -> Result<Value, SerializeError> {
        self.spend(1)?;
        let doc = self.doc;
        Ok(match &doc.nodes[id].kind {
            Kind::Pending => {
                return Err(syntax(format!(
                    "object #{id} refers to itself (cycles are not supported)"
                )))
            }
            Kind::Simple(SX_SV_YES | SX_BOOLEAN_TRUE) => Value::Bool(true),
            Kind::Simple(SX_SV_NO | SX_BOOLEAN_FALSE) => Value::Bool(false),
            Kind::Simple(_) => Value::Null,
            Kind::Int(_, i) => Value::from(*i),
            Kind::Double(f) => match Number::from_f64(*f) {
                Some(n) => Value::Number(n),
                // Perl's own spelling of these doubles.
                None if f.is_nan() => Value::from("NaN"),
                None if *f > 0.0 => Value::from("Inf"),
                None => Value::from("-Inf"),
            },
            Kind::Str { utf8, start, end } => {
                let bytes = &doc.src[*start..*end];
                self.spend(bytes.len())?;
                if *utf8 {
                    match std::str::from_utf8(bytes) {
                        Ok(s) => Value::from(s),
                        Err(_) => {
                            return Err(syntax(format!(
                                "a utf8 string at byte {start} is not valid UTF-8"
                            )))
                        }
                    }
                } else {
                    Value::String(decode_bytes(bytes))
                }
            }
            Kind::Ref(_, target) => self.referent(*target, level)?,
            Kind::Array(_) | Kind::Hash { .. } => {
                return Err(syntax(format!(
                    "object #{id} is an array or hash where a scalar is expected"
                )))
            }
        })
    }

    /// The JSON (at nesting `level`) of what a reference points to, with its class if blessed.
    fn referent(&mut self, id: NodeId, level: usize) -> Result<Value, SerializeError> {
        let doc = self.doc;
        let node = &doc.nodes[id];
        // The bless wrapper is one level, the array, hash or `__perl_ref__` object another.
        let level_inner = level + usize::from(node.class.is_some());
        if level_inner > MAX_DEPTH {
            return Err(syntax(format!(
                "values nest deeper than {MAX_DEPTH} levels"
            )));
        }
        if self.on_path[id] {
            return Err(syntax(format!(
                "object #{id} contains itself (cycles are not supported)"
            )));
        }
        self.on_path[id] = true;
        let inner = match &node.kind {
            Kind::Array(items) => {
                self.spend(1)?;
                let mut out = Vec::with_capacity(items.len());
                for &item in items {
                    out.push(self.slot(item, level_inner + 1)?);
                }
                Value::Array(out)
            }
            Kind::Hash { entries, .. } => {
                self.spend(1)?;
                let mut out = Map::new();
                for e in entries.iter().filter(|e| !e.is_placeholder()) {
                    let key = doc.key_string(e);
                    self.spend(key.len())?;
                    let value = self.slot(e.value, level_inner + 1)?;
                    out.insert(key, value);
                }
                Value::Object(out)
            }
            _ => {
                let mut m = Map::new();
                m.insert(REF_TAG.to_owned(), self.scalar(id, level_inner + 1)?);
                Value::Object(m)
            }
        };
        self.on_path[id] = false;
        Ok(match node.class {
            None => inner,
            Some(c) => {
                let mut m = Map::new();
                m.insert(
                    BLESS_TAG.to_owned(),
                    Value::String(decode_bytes(doc.class_bytes(c))),
                );
                m.insert(BLESS_VALUE.to_owned(), inner);
                Value::Object(m)
            }
        })
    }
}

/// Bytes -> session map.
pub(crate) fn thaw(src: &[u8]) -> Result<Map<String, Value>, SerializeError> {
    let doc = parse(src)?;
    ToJson::new(&doc).root_map()
}
