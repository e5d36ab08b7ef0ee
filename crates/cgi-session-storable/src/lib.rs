//! CGI::Session's `storable` serializer for cgi-session: the binary image of Perl's
//! `Storable::freeze` (what `CGI::Session::Serialize::storable` stores) and of
//! `Storable::nfreeze` (network order, what portable programs store).
//!
//! [`StorableSerializer`] reads both without evaluating anything (no class is loaded, no
//! `STORABLE_thaw` hook runs) and writes what `Storable::freeze` writes on x86_64, so that
//! Perl's CGI::Session thaws it to the same data. Its format is Perl's `Storable.xs`
//! (binary version 2.11; opcodes `SX_*`).
//!
//! # The JSON model (the same as the `default` serializer's)
//!
//! | Storable                                             | JSON                                  |
//! |------------------------------------------------------|---------------------------------------|
//! | `SX_UNDEF`, `SX_SV_UNDEF`, `SX_SVUNDEF_ELEM`          | `null`                                |
//! | `SX_BYTE`, `SX_INTEGER`, `SX_NETINT` (integers)       | number (i64)                          |
//! | `SX_DOUBLE`                                          | number (f64); NaN and infinities as the strings `"NaN"`, `"Inf"`, `"-Inf"` |
//! | `SX_SCALAR`, `SX_LSCALAR` (byte string)              | string: the bytes as UTF-8 when they are valid UTF-8, otherwise one character per byte (Latin-1) |
//! | `SX_UTF8STR`, `SX_LUTF8STR` (character string)       | string                                |
//! | `SX_SV_YES`, `SX_SV_NO`, `SX_BOOLEAN_TRUE`/`FALSE`    | `true`, `false`                       |
//! | reference to an array / a hash (`SX_HASH`, `SX_FLAG_HASH`) | array / object                  |
//! | reference to a scalar `\V`                           | `{"__perl_ref__": V}`                 |
//! | a blessed referent (`SX_BLESS`, `SX_IX_BLESS`)       | `{"__perl_bless__": "Class", "value": V}` where `V` is what the reference alone would be |
//! | `SX_OBJECT` (a value shared by several references)   | a copy of the value at each place     |
//!
//! Hash keys follow the strings' rule (a key flagged utf8 is UTF-8, a key Perl downgraded
//! to Latin-1 is Latin-1, other keys are UTF-8 when valid, else Latin-1). `SX_OVERLOAD`
//! and weak references read as plain references.
//!
//! ```
//! use cgi_session_core::Serializer;
//! use cgi_session_storable::StorableSerializer;
//! use serde_json::json;
//!
//! // perl -MStorable=freeze -e 'print freeze({a => 1})'
//! let perl = b"\x04\x0b\x0812345678\x04\x08\x08\x08\x03\x01\x00\x00\x00\x08\x81\x01\x00\x00\x00a";
//! let map = StorableSerializer::new().thaw(perl)?;
//! assert_eq!(map["a"], json!(1));
//! // The same data, written back, is what Perl wrote.
//! assert_eq!(StorableSerializer::new().freeze(&map)?, perl);
//! # Ok::<(), cgi_session_core::SerializeError>(())
//! ```
//!
//! # Values the application did not change come back to Perl unchanged
//!
//! [`Serializer::freeze_over`] writes each top-level value that equals what the previous
//! image held exactly as it was stored: the same byte or character string, the same integer
//! or double opcode, the same classes, the same sharing. Changed and new values are written
//! in the form described on [`StorableSerializer`].
//!
//! # Blessed objects: only where Perl put them
//!
//! A `__perl_bless__` object written from Rust becomes a Perl object **only** when its class
//! was read blessed from the previous value of the same top-level key; everywhere else
//! (and always with [`Serializer::freeze`]) it is written as a plain hash with the two keys
//! `__perl_bless__` and `value`. Data from a web form can therefore never choose a Perl
//! class (whose `DESTROY` or overloading would run in the Perl application).
#![forbid(unsafe_code)]

mod read;
mod write;

use cgi_session_core::{SerializeError, Serializer};
use serde_json::{Map, Value};

pub use cgi_session_dumper::{StringStyle, BLESS_TAG, BLESS_VALUE, REF_TAG};

/// The serializer's name, as used in DSN strings (`serializer:storable`) and in error
/// messages.
///
/// ```
/// assert_eq!(cgi_session_storable::FORMAT, "storable");
/// ```
pub const FORMAT: &str = "storable";

/// Deepest nesting of the JSON model (arrays, objects, and the `__perl_ref__` and
/// `__perl_bless__` wrappers; the session hash counts as 1) that is read or written; deeper
/// input is an error rather than a stack overflow. The same limit as the `default`
/// serializer's.
///
/// ```
/// use cgi_session_core::Serializer;
/// use cgi_session_storable::{StorableSerializer, MAX_DEPTH};
/// use serde_json::{json, Value};
///
/// let mut deep = json!(1);
/// for _ in 0..MAX_DEPTH {
///     deep = Value::Array(vec![deep]);
/// }
/// let map = json!({ "a": deep });
/// assert!(StorableSerializer::new().freeze(map.as_object().unwrap()).is_err());
/// ```
pub const MAX_DEPTH: usize = 128;

/// CGI::Session's Storable serializer (`serializer:storable`).
///
/// **Reading** accepts `Storable::freeze` images of a little-endian LP64 perl (x86_64,
/// aarch64: header byte order `12345678`, sizes 4/8/8/8) and `Storable::nfreeze` images
/// (any machine), binary versions 2.0 to 2.12, whose top-level value is a hash. It refuses,
/// with [`SerializeError::Syntax`] and a byte offset: other byte orders and sizes, files
/// written by `Storable::store` (`pst0` magic), objects frozen by a `STORABLE_freeze` hook
/// (`SX_HOOK`), tied variables, code references, regular expressions, version strings,
/// values over 2 GiB (`SX_LOBJECT`), hash keys stored as values, cycles (a value that
/// contains itself), back-references that expand to more than 16 times the input (at least
/// 1 MiB), nesting deeper than [`MAX_DEPTH`], lengths beyond the end of the input, character
/// strings that are not valid UTF-8, and trailing bytes. It never panics and allocates
/// nothing from a length before checking it against the input's size.
///
/// **Writing** produces `Storable::freeze`'s native image for x86_64 (header
/// `04 0b 08 "12345678" 04 08 08 08`), which Perl's `Storable::thaw` reads on any
/// little-endian 64-bit perl. Values written from Rust take these forms:
///
/// * `null`: `SX_UNDEF`; integers: `SX_BYTE` (-128..=127) or `SX_INTEGER` (64-bit); u64 above
///   `i64::MAX`: its decimal digits as a byte string (as Storable writes such a number);
///   floats: `SX_DOUBLE`; `true` / `false`: the integer 1 and the empty string (what Perl's
///   `!!1` and `!!0` hold; they read back as `1` and `""`);
/// * strings: ASCII as a byte string (`SX_SCALAR`); non-ASCII as a character string
///   (`SX_UTF8STR`, Perl's `length` counts characters) with [`StringStyle::Characters`], the
///   default, or as a byte string of UTF-8 bytes with [`StringStyle::Utf8Bytes`] (what a Perl
///   program that never decodes its input holds);
/// * keys: the same rule (non-ASCII keys in an `SX_FLAG_HASH` with the utf8 key flag in
///   `Characters` style); arrays and objects as references to arrays and hashes;
///   `{"__perl_ref__": V}` as `\V`; `__perl_bless__` objects as plain hashes (see the crate
///   documentation for when [`Serializer::freeze_over`] blesses).
///
/// Round-trip losses (write then read): `true`/`false` come back as `1`/`""`; u64 above
/// `i64::MAX` as a string. Everything else in the JSON model reads back identically.
///
/// ```
/// use cgi_session_core::Serializer;
/// use cgi_session_storable::StorableSerializer;
/// use serde_json::json;
///
/// let s = StorableSerializer::new();
/// assert_eq!(s.name(), "storable");
/// let map = json!({"user": "zoë", "n": [1, null, 2.5], "r": {"__perl_ref__": "x"}});
/// let bytes = s.freeze(map.as_object().unwrap())?;
/// assert_eq!(&s.thaw(&bytes)?, map.as_object().unwrap());
///
/// // Never evaluated: a code reference (SX_CODE) is refused, as is anything truncated.
/// assert!(s.thaw(&bytes[..bytes.len() - 1]).is_err());
/// # Ok::<(), cgi_session_core::SerializeError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorableSerializer {
    strings: StringStyle,
}

impl StorableSerializer {
    /// The serializer with [`StringStyle::Characters`].
    ///
    /// ```
    /// use cgi_session_storable::{StorableSerializer, StringStyle};
    /// assert_eq!(StorableSerializer::new().string_style(), StringStyle::Characters);
    /// ```
    pub const fn new() -> Self {
        Self {
            strings: StringStyle::Characters,
        }
    }

    /// Chooses how non-ASCII strings written from Rust are stored (reading accepts both).
    ///
    /// ```
    /// use cgi_session_core::Serializer;
    /// use cgi_session_storable::{StorableSerializer, StringStyle};
    /// use serde_json::json;
    ///
    /// let map = json!({"s": "é"}).as_object().unwrap().clone();
    /// let chars = StorableSerializer::new().freeze(&map)?;
    /// assert!(chars.ends_with(b"\x17\x02\xc3\xa9\x01\x00\x00\x00s")); // SX_UTF8STR
    /// let bytes = StorableSerializer::new()
    ///     .with_string_style(StringStyle::Utf8Bytes)
    ///     .freeze(&map)?;
    /// assert!(bytes.ends_with(b"\x0a\x02\xc3\xa9\x01\x00\x00\x00s")); // SX_SCALAR
    /// // Both read back as the same Rust string.
    /// assert_eq!(StorableSerializer::new().thaw(&bytes)?, map);
    /// # Ok::<(), cgi_session_core::SerializeError>(())
    /// ```
    #[must_use]
    pub const fn with_string_style(mut self, style: StringStyle) -> Self {
        self.strings = style;
        self
    }

    /// How non-ASCII strings are written.
    ///
    /// ```
    /// use cgi_session_storable::{StorableSerializer, StringStyle};
    /// let s = StorableSerializer::new().with_string_style(StringStyle::Utf8Bytes);
    /// assert_eq!(s.string_style(), StringStyle::Utf8Bytes);
    /// ```
    pub const fn string_style(&self) -> StringStyle {
        self.strings
    }
}

impl Serializer for StorableSerializer {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn freeze(&self, map: &Map<String, Value>) -> Result<Vec<u8>, SerializeError> {
        write::freeze(map, self.strings)
    }

    fn thaw(&self, bytes: &[u8]) -> Result<Map<String, Value>, SerializeError> {
        read::thaw(bytes)
    }

    /// Writes `map` over `previous`: top-level values equal to what `previous` held are
    /// written exactly as stored (string kinds, number kinds, classes, shared references
    /// among them); a key present in `previous` keeps its stored bytes; a `__perl_bless__`
    /// object is written blessed only when its class was read blessed from the previous
    /// value of the same key. Without `previous`, or when it does not decode, this is
    /// [`Serializer::freeze`].
    ///
    /// ```
    /// use cgi_session_core::Serializer;
    /// use cgi_session_storable::StorableSerializer;
    /// use serde_json::json;
    ///
    /// let s = StorableSerializer::new();
    /// // perl -MStorable=freeze -e 'print freeze({o => bless({x => 1}, "Cart")})'
    /// let perl = b"\x04\x0b\x0812345678\x04\x08\x08\x08\x03\x01\x00\x00\x00\x04\x11\x04Cart\
    ///              \x03\x01\x00\x00\x00\x08\x81\x01\x00\x00\x00x\x01\x00\x00\x00o";
    /// let mut map = s.thaw(perl)?;
    /// assert_eq!(map["o"], json!({"__perl_bless__": "Cart", "value": {"x": 1}}));
    ///
    /// // Unchanged: written back byte for byte.
    /// assert_eq!(s.freeze_over(&map, Some(perl))?, perl);
    ///
    /// // A new value naming a class is a plain hash for Perl (the class name is a string
    /// // value, not an SX_BLESS)...
    /// map.insert("evil".into(), json!({"__perl_bless__": "Cart", "value": {}}));
    /// let bytes = s.freeze_over(&map, Some(perl))?;
    /// assert_eq!(bytes.windows(6).filter(|w| *w == b"\x11\x04Cart").count(), 1);
    /// assert!(bytes.windows(6).any(|w| w == b"\x0a\x04Cart"));
    /// // ...and reads back as the same JSON.
    /// assert_eq!(s.thaw(&bytes)?, map);
    /// # Ok::<(), cgi_session_core::SerializeError>(())
    /// ```
    fn freeze_over(
        &self,
        map: &Map<String, Value>,
        previous: Option<&[u8]>,
    ) -> Result<Vec<u8>, SerializeError> {
        if let Some(doc) = previous.and_then(|p| read::parse(p).ok()) {
            if let Ok(bytes) = write::freeze_over(map, self.strings, &doc) {
                return Ok(bytes);
            }
        }
        self.freeze(map)
    }
}
