//! [`Params`]: the user's parameters of a record, decoded only when they are read.

use std::cmp::Ordering;
use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// The user's parameters of a session: name → value, as CGI::Session keeps them.
///
/// Read from JSON, a parameter keeps the JSON text it was stored as and is decoded only when
/// it is read ([`Params::get`] decodes it into a [`Value`] once; [`Params::get_as`] decodes
/// straight into the type asked for). A parameter nobody changed is written back as the
/// very text it was read as, so a request that reads two parameters of a large session and
/// changes one decodes and encodes only those. Names are kept sorted, as JSON writes them.
///
/// ```
/// use cgi_session_core::record::Params;
/// use serde_json::json;
///
/// let mut params = Params::new();
/// params.insert("user".into(), json!("alice"));
/// params.insert("n".into(), json!(1));
/// assert_eq!(params.get("user"), Some(&json!("alice")));
/// assert_eq!(params.get_as::<i64>("n").transpose()?, Some(1));
/// assert_eq!(params.keys().collect::<Vec<_>>(), ["n", "user"]);
/// assert_eq!(params["missing"], json!(null));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Params {
    /// Sorted by name (byte order, the order of `serde_json::Map`); names are unique.
    entries: Vec<Entry>,
}

#[derive(Clone)]
pub(crate) struct Entry {
    name: Name,
    slot: Slot,
}

impl Entry {
    /// A parameter read from stored JSON: its name and its value's text.
    pub(crate) fn stored(name: Name, text: Bytes) -> Self {
        Entry {
            name,
            slot: Slot {
                raw: Some(text),
                value: OnceLock::new(),
            },
        }
    }
}

/// A parameter's name: shared with the stored text it was read from when it had no escapes
/// (no copy, and written back as it is), else its own text.
#[derive(Clone)]
pub(crate) enum Name {
    /// The name's UTF-8 text inside the stored JSON, between its quotes, without escapes.
    Stored(Bytes),
    /// A name given by the application, or stored with escapes.
    Own(Arc<str>),
}

impl Name {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Stored(b) => b,
            Name::Own(s) => s.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Made only from a `&str` (see `record::json`), so this never fails.
            Name::Stored(b) => std::str::from_utf8(b).unwrap_or_default(),
            Name::Own(s) => s,
        }
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// One parameter's value: its stored JSON text while unchanged, decoded on first use.
#[derive(Clone)]
struct Slot {
    /// The JSON text the value was read as; `None` once the value was replaced.
    raw: Option<Bytes>,
    /// The decoded value (set at once for values given as [`Value`]s).
    value: OnceLock<Value>,
}

impl Slot {
    fn decoded(value: Value) -> Self {
        Slot {
            raw: None,
            value: OnceLock::from(value),
        }
    }

    fn value(&self) -> &Value {
        self.value.get_or_init(|| match &self.raw {
            Some(raw) => decode_text(raw),
            None => Value::Null,
        })
    }

    fn into_value(self) -> Value {
        let Slot { raw, value } = self;
        match value.into_inner() {
            Some(v) => v,
            None => raw.as_deref().map_or(Value::Null, decode_text),
        }
    }

    fn same_as(&self, other: &Slot) -> bool {
        match (&self.raw, &other.raw) {
            (Some(a), Some(b)) if a == b => true,
            _ => self.value() == other.value(),
        }
    }
}

/// A stored value's text decoded. The text was checked as JSON when the record was read
/// (see `record::json`); what the full decoder still refuses (a lone surrogate escape, a
/// number beyond `f64`, deep nesting) is seen as `null`, and reading it as a type is the error.
fn decode_text(raw: &[u8]) -> Value {
    serde_json::from_slice(raw).unwrap_or(Value::Null)
}

/// The byte order of names (`a.cmp(b)`), decided on the first bytes without a `memcmp` call
/// when they differ, as they mostly do between a session's few names.
pub(crate) fn name_order(a: &[u8], b: &[u8]) -> Ordering {
    match (a.first(), b.first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

/// What [`Params::encoded`] hands the encoder for one parameter.
pub(crate) enum Encoded<'a> {
    /// The JSON text the value was read as.
    Raw(&'a [u8]),
    /// A value set since.
    Value(&'a Value),
}

impl Params {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many parameters there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|e| name_order(e.name.as_bytes(), name.as_bytes()))
    }

    /// Whether a parameter of that name exists.
    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// The parameter's value, decoded on first use.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let i = self.find(name).ok()?;
        Some(self.entries[i].slot.value())
    }

    /// The parameter decoded as `T`: straight from its stored JSON text when it was not
    /// decoded yet (no [`Value`] is built), else from its [`Value`]. `None` when absent.
    ///
    /// # Errors
    /// Inside the `Some`: the value is not a `T`.
    pub fn get_as<T: DeserializeOwned>(&self, name: &str) -> Option<Result<T, serde_json::Error>> {
        let i = self.find(name).ok()?;
        let slot = &self.entries[i].slot;
        Some(match (slot.value.get(), &slot.raw) {
            (None, Some(raw)) => serde_json::from_slice(raw),
            _ => T::deserialize(slot.value()),
        })
    }

    /// Sets a parameter (replacing any value of that name).
    pub fn insert(&mut self, name: String, value: Value) {
        self.set(&name, value);
    }

    /// [`Params::insert`] with a borrowed name, copied only when the parameter is new.
    pub(crate) fn set(&mut self, name: &str, value: Value) {
        match self.find(name) {
            Ok(i) => self.entries[i].slot = Slot::decoded(value),
            Err(i) => self.entries.insert(
                i,
                Entry {
                    name: Name::Own(Arc::from(name)),
                    slot: Slot::decoded(value),
                },
            ),
        }
    }

    /// Removes a parameter, giving back its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self.find(name).ok()?;
        Some(self.entries.remove(i).slot.into_value())
    }

    /// The names, sorted.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Names and values (each decoded on first use), sorted by name.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.entries.iter())
    }

    /// The parameters as a `serde_json` map (every value decoded and copied).
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect()
    }

    /// The parameters as a `serde_json` map, moving the values.
    pub fn into_map(self) -> Map<String, Value> {
        self.entries
            .into_iter()
            .map(|e| (e.name.as_str().to_owned(), e.slot.into_value()))
            .collect()
    }

    /// Parameters read from stored JSON, in stored order; for a name given twice the last
    /// one counts (as when the text is decoded into a map).
    pub(crate) fn from_stored(mut entries: Vec<Entry>) -> Self {
        // As written by the record codec: already sorted, no name twice.
        if entries
            .windows(2)
            .all(|w| name_order(w[0].name.as_bytes(), w[1].name.as_bytes()).is_lt())
        {
            return Params { entries };
        }
        // Stable: of equal names the later stays later.
        entries.sort_by(|a, b| name_order(a.name.as_bytes(), b.name.as_bytes()));
        entries.dedup_by(|later, kept| {
            let same = later.name == kept.name;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        Params { entries }
    }

    /// Each parameter in name order, as the encoder writes it.
    pub(crate) fn encoded(&self) -> impl Iterator<Item = (&Name, Encoded<'_>)> + '_ {
        self.entries.iter().map(|e| {
            let v = match (&e.slot.raw, e.slot.value.get()) {
                (Some(raw), _) => Encoded::Raw(raw),
                (None, Some(v)) => Encoded::Value(v),
                (None, None) => Encoded::Value(&Value::Null),
            };
            (&e.name, v)
        })
    }
}

/// The iterator of [`Params::iter`]: names and values, sorted by name.
#[derive(Clone)]
pub struct Iter<'a>(std::slice::Iter<'a, Entry>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a Value);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|e| (e.name.as_str(), e.slot.value()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("remaining", &self.0.len())
            .finish()
    }
}

impl<'a> IntoIterator for &'a Params {
    type Item = (&'a str, &'a Value);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

static NULL: Value = Value::Null;

impl std::ops::Index<&str> for Params {
    type Output = Value;

    /// The value, or `null` when there is no parameter of that name (as `Value`'s index).
    fn index(&self, name: &str) -> &Value {
        self.get(name).unwrap_or(&NULL)
    }
}

impl PartialEq for Params {
    /// Same names with equal values (compared as text first, decoded when the texts differ).
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|(a, b)| a.name == b.name && a.slot.same_as(&b.slot))
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl From<Map<String, Value>> for Params {
    fn from(map: Map<String, Value>) -> Self {
        map.into_iter().collect()
    }
}

impl FromIterator<(String, Value)> for Params {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        let mut params = Params::new();
        for (name, value) in iter {
            params.insert(name, value);
        }
        params
    }
}

impl Serialize for Params {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(pairs: &[(&str, &str)]) -> Params {
        Params::from_stored(
            pairs
                .iter()
                .map(|(k, v)| {
                    let name = Name::Stored(Bytes::copy_from_slice(k.as_bytes()));
                    Entry::stored(name, Bytes::copy_from_slice(v.as_bytes()))
                })
                .collect(),
        )
    }

    #[test]
    fn stored_text_is_decoded_on_demand_and_the_last_duplicate_wins() {
        let p = raw(&[("b", "[1,2]"), ("a", "\"x\""), ("b", "3")]);
        assert_eq!(p.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(p.get_as::<i64>("b").unwrap().unwrap(), 3);
        assert!(
            p.get_as::<i64>("a").unwrap().is_err(),
            "a string is not an i64"
        );
        assert_eq!(p.get("a"), Some(&json!("x")));
        assert!(p.get_as::<i64>("zz").is_none());
    }

    #[test]
    fn equality_compares_values_not_spelling() {
        let a = raw(&[("n", "1.50"), ("s", "\"\\u0041\"")]);
        let mut b = Params::new();
        b.insert("n".into(), json!(1.5));
        b.insert("s".into(), json!("A"));
        assert_eq!(a, b);
        b.insert("s".into(), json!("B"));
        assert_ne!(a, b);
    }

    #[test]
    fn changed_values_are_encoded_from_the_value_others_keep_their_text() {
        let mut p = raw(&[("a", "1.50"), ("b", "2")]);
        p.insert("b".into(), json!(3));
        let seen: Vec<(String, String)> = p
            .encoded()
            .map(|(k, v)| {
                let text = match v {
                    Encoded::Raw(r) => String::from_utf8(r.to_vec()).unwrap(),
                    Encoded::Value(v) => v.to_string(),
                };
                (k.as_str().to_owned(), text)
            })
            .collect();
        assert_eq!(
            seen,
            [("a".into(), "1.50".into()), ("b".into(), "3".into())]
        );
        assert_eq!(p.remove("a"), Some(json!(1.5)));
        assert_eq!(p.into_map(), *json!({"b": 3}).as_object().unwrap());
    }
}
