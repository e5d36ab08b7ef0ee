//! CGI::Session's `default` serializer for cgi-session: the Data::Dumper text that Perl's
//! `CGI::Session::Serialize::default` writes, such as
//!
//! ```text
//! $D = {'user' => 'alice','_SESSION_ID' => '12830b38d71787550572d3cb587ddae7','_SESSION_ATIME' => 1795762418,'_SESSION_CTIME' => 1795762418,'_SESSION_REMOTE_ADDR' => ''};;$D
//! ```
//!
//! [`DataDumperSerializer`] writes that text so that Perl's `CGI::Session` thaws it to the same
//! data, and reads it (from Perl or from itself) **without evaluating anything**: the reader
//! parses the subset of Perl that Data::Dumper emits and rejects the rest with
//! [`SerializeError::Syntax`] naming the byte offset.
//!
//! # What Perl writes (verified with Data::Dumper 2.184, CGI::Session 4.48, Perl 5.36)
//!
//! `freeze` is `Data::Dumper->new([$data], ["D"])` with `Indent(0)`, `Purity(1)`, `Useqq(0)`,
//! `Deepcopy(0)`, `Quotekeys(1)`, `Terse(0)`, and `;$D` appended to `Dump()`'s `$D = ...;`.
//! `thaw` runs the text in a `Safe` compartment and re-blesses objects. Data::Dumper's XS writer
//! then emits:
//!
//! * keys always quoted; strings in single quotes with only `\\` and `\'` escaped, control
//!   characters (newline, tab, NUL...) raw;
//! * a scalar that Perl holds as an integer (`IOK`, e.g. `time()` or `42`) bare when its text is
//!   at most 10 characters (`1234567890`, `-999999999`), otherwise quoted (`'12345678901'`);
//!   strings stay quoted even when numeric (`'42'`, `'007'`); every float is quoted (`'3.14'`,
//!   `'3'` for 3.0, `'1e+20'`, `'0.333333333333333'`);
//! * a *character* string (UTF8 flag on) as `"\x{263a}caf\x{e9}"` (double quotes, non-ASCII as
//!   `\x{...}`, `$ @ " \` backslashed); a *byte* string as raw bytes in single quotes (so
//!   `"caf\x{e9}"` without the flag becomes the single byte `0xE9`, and UTF-8 bytes stay UTF-8);
//! * `undef`, `[...]`, `{...}`, `bless( {...}, 'Class' )`, `\'scalar'`;
//! * a reference seen twice as a placeholder (`{}`, `[]`, `do{my $o}`) plus a statement after the
//!   hash: `$D = {'b' => [1,2],'a' => []};$D->{'a'} = $D->{'b'};;$D`; a cycle as
//!   `$D->{'self'} = $D;`; code references as `sub { "DUMMY" }`.
//!
//! # The JSON model
//!
//! | Perl                          | JSON                                                  |
//! |-------------------------------|-------------------------------------------------------|
//! | `undef`                       | `null`                                                |
//! | bare integer `42`             | number (i64; u64 above `i64::MAX`; beyond u64 its digits as a string) |
//! | bare float `2.5`              | number (f64)                                          |
//! | quoted `'42'`, `'3.14'`       | **string** `"42"`, `"3.14"` (quoted numbers stay strings; the session layer accepts numeric strings for its reserved fields) |
//! | `'...'`, `"..."`              | string                                                |
//! | `[...]`, `{...}`              | array, object                                         |
//! | `bless( V, 'Class' )`         | `{"__perl_bless__": "Class", "value": V}`             |
//! | `\V`                          | `{"__perl_ref__": V}`                                 |
//! | `$D->{'a'}` back-reference    | a copy of the value it points to                      |
//!
//! Writing maps the other way, with these choices (all losses are documented on
//! [`DataDumperSerializer`]): integers are always bare, floats quoted, `true`/`false` become
//! `1`/`''`, strings with non-ASCII characters use `"\x{...}"` (see [`StringStyle`]).
//!
//! ```
//! use cgi_session_core::Serializer;
//! use cgi_session_dumper::DataDumperSerializer;
//! use serde_json::json;
//!
//! let stored = b"$D = {'user' => 'alice','_SESSION_ID' => '12830b38d71787550572d3cb587ddae7','_SESSION_ATIME' => 1795762418,'_SESSION_CTIME' => 1795762418,'_SESSION_REMOTE_ADDR' => ''};;$D";
//! let map = DataDumperSerializer::new().thaw(stored)?;
//! assert_eq!(map["user"], json!("alice"));
//! assert_eq!(map["_SESSION_ATIME"], json!(1795762418));
//!
//! let text = DataDumperSerializer::new().freeze(&map)?;
//! assert_eq!(DataDumperSerializer::new().thaw(&text)?, map);
//! # Ok::<(), cgi_session_core::SerializeError>(())
//! ```
#![forbid(unsafe_code)]

mod read;
mod write;

use std::sync::Arc;

use bytes::Bytes;
use cgi_session_core::record::Record;
use cgi_session_core::{SerializeError, Serializer};
use serde_json::{Map, Value};

/// The serializer's name, as used in DSN strings (`serializer:default`) and in error messages.
///
/// ```
/// assert_eq!(cgi_session_dumper::FORMAT, "default");
/// ```
pub const FORMAT: &str = "default";

/// Deepest nesting of hashes, arrays, `bless` and `\` wrappers (the session hash counts as 1)
/// that is read or written; deeper input is an error rather than a stack overflow.
///
/// ```
/// use cgi_session_core::Serializer;
/// use cgi_session_dumper::{DataDumperSerializer, MAX_DEPTH};
///
/// let deep = format!("$D = {{'a' => {}{}}};", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
/// assert!(DataDumperSerializer::new().thaw(deep.as_bytes()).is_err());
/// ```
pub const MAX_DEPTH: usize = 128;

/// Key naming the class in the JSON form of a blessed object:
/// `{"__perl_bless__": "Class", "value": ...}` is `bless( ..., 'Class' )`.
///
/// Writing blesses such an object only into a class that Perl itself blessed, under the same
/// top-level key, in the stored copy being rewritten ([`Serializer::freeze_over`]); anywhere
/// else (a new session, a key or class the stored copy does not have) it is written as a plain
/// hash with these two keys. So data that reaches a session from outside can never make Perl
/// build an object of a class it
/// names; objects Perl stored come back to Perl as the same objects.
///
/// ```
/// use cgi_session_core::Serializer;
/// use cgi_session_dumper::{DataDumperSerializer, BLESS_TAG, BLESS_VALUE};
///
/// let map = DataDumperSerializer::new().thaw(b"$D = {'o' => bless( {'x' => 1}, 'My::Class' )};;$D")?;
/// assert_eq!(map["o"][BLESS_TAG], "My::Class");
/// assert_eq!(map["o"][BLESS_VALUE]["x"], 1);
/// # Ok::<(), cgi_session_core::SerializeError>(())
/// ```
pub const BLESS_TAG: &str = "__perl_bless__";

/// Key holding the blessed value next to [`BLESS_TAG`].
///
/// ```
/// assert_eq!(cgi_session_dumper::BLESS_VALUE, "value");
/// ```
pub const BLESS_VALUE: &str = "value";

/// Key of the JSON form of a scalar reference: `{"__perl_ref__": V}` is `\V`.
///
/// ```
/// use cgi_session_core::Serializer;
/// use cgi_session_dumper::{DataDumperSerializer, REF_TAG};
///
/// let map = DataDumperSerializer::new().thaw(b"$D = {'r' => \\'text'};;$D")?;
/// assert_eq!(map["r"][REF_TAG], "text");
/// # Ok::<(), cgi_session_core::SerializeError>(())
/// ```
pub const REF_TAG: &str = "__perl_ref__";

/// How the writer encodes strings that contain non-ASCII characters. ASCII-only strings are
/// always written in single quotes, exactly as Data::Dumper writes them.
///
/// ```
/// use cgi_session_core::Serializer;
/// use cgi_session_dumper::{DataDumperSerializer, StringStyle};
/// use serde_json::json;
///
/// let map = json!({"s": "café"}).as_object().unwrap().clone();
/// let chars = DataDumperSerializer::new().freeze(&map)?;
/// assert_eq!(chars, br#"$D = {'s' => "caf\x{e9}"};;$D"#);
/// let bytes = DataDumperSerializer::new().with_string_style(StringStyle::Utf8Bytes).freeze(&map)?;
/// assert_eq!(bytes, "$D = {'s' => 'café'};;$D".as_bytes());
/// // Both read back as the same Rust string.
/// assert_eq!(DataDumperSerializer::new().thaw(&bytes)?, map);
/// # Ok::<(), cgi_session_core::SerializeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StringStyle {
    /// `"caf\x{e9}"`: Perl reads a *character* string (`length` 4, `"\x{263a}"` is one
    /// character), which is what Data::Dumper itself writes for a UTF8-flagged string and what
    /// a Perl program using `use utf8` / `decode_utf8` / `CGI -utf8` expects. Verified: Perl's
    /// `CGI::Session::Serialize::default->thaw` of `{'s' => "\x{263a}caf\x{e9} \x{1f600}"}`
    /// yields a 7-character string that prints (with `binmode STDOUT, ':utf8'`) as `☺café 😀`.
    #[default]
    Characters,
    /// `'café'` with the raw UTF-8 bytes inside single quotes: Perl reads a *byte* string
    /// holding UTF-8 (`length` 5), which is what a Perl program that never decodes its input
    /// (plain `CGI->param`) stores and prints back unchanged.
    Utf8Bytes,
}

/// CGI::Session's default serializer (`serializer:default`): Data::Dumper text with variable
/// `$D`.
///
/// Reading never evaluates Perl. It accepts what Data::Dumper emits with any `Indent`,
/// `Useqq`, `Quotekeys`, `Purity` and `Deepcopy` setting: optional `$D = ` and trailing `;`,
/// `;;$D` or `;$D`; single- and double-quoted strings (`\n \t \r \f \b \a \e \$ \@ \" \\ \xHH
/// \x{263a} \0 \NNN`); bare, quoted or small-integer keys; `=>`, `,` and trailing commas;
/// whitespace anywhere between tokens; `undef`; numbers; `bless( ..., 'Class' )`; `\...`;
/// back-references `$D->{'a'}[0]` inline or as `$D->... = $D->...;` statements (resolved by
/// copying, in document order) and `do{my $o}` placeholders that such a statement fills.
/// It refuses, with [`SerializeError::Syntax`] and a byte offset: cycles (`$D->{'x'} = $D`),
/// back-references to values not yet defined, `sub { "DUMMY" }`, `qr//`, globs,
/// `${...} = ...` and `\do{my $o}` (shared references to references), interpolation, nesting
/// deeper than [`MAX_DEPTH`], back-references that expand to more than 16 times the input
/// (minimum 1 MiB), and a top-level value that is not a hash. It never panics.
///
/// Raw (non-escaped) bytes inside a string literal are decoded as UTF-8 when they are valid
/// UTF-8, otherwise one character per byte (Latin-1, which is Perl's own meaning of a byte
/// string: Data::Dumper writes the character string `"caf\x{e9}"` without UTF8 flag as the
/// bytes `caf\xE9`). A Perl byte string that holds UTF-8 therefore reads as the text it encodes.
///
/// Writing produces `$D = {...};;$D` in the layout of `CGI::Session::Serialize::default`
/// (`Indent(0)`, keys quoted). Differences from Perl's own output, none of which change what
/// Perl thaws: integers longer than 10 characters are bare (Data::Dumper quotes them for
/// 32-bit perls; a 64-bit perl reads every i64/u64 literal exactly); float text is Rust's
/// shortest round-trip form (`'0.3333333333333333'`) instead of Perl's `%.15g`.
///
/// Rewriting a stored session ([`Serializer::freeze_over`], which the session store uses)
/// copies every top-level value the application did not change byte for byte from the stored
/// text, so a Perl program reads it exactly as it stored it: a byte string stays a byte string
/// of the same length, a Latin-1 string stays Latin-1, an object stays blessed. Only changed
/// and new values are written in this writer's form (see [`StringStyle`]). Dumps whose entries
/// share references (`$D->{'a'} = $D->{'b'}` statements) are rewritten whole.
///
/// Round-trip losses (write then read): a float comes back as the string of its digits (as a
/// Perl-written float does); `true` / `false` come back as `1` / `""` (Perl has no booleans);
/// an object that looks like a tagged value (`{"__perl_ref__": ...}` alone, or exactly
/// `__perl_bless__` + `value`) is written as a reference, or as `bless(...)` where
/// [`BLESS_TAG`] allows it, which reads back as the same JSON. Everything else — strings (any Unicode), i64/u64, null, arrays, objects with
/// any keys — reads back identically.
///
/// ```
/// use cgi_session_core::Serializer;
/// use cgi_session_dumper::DataDumperSerializer;
/// use serde_json::json;
///
/// let s = DataDumperSerializer::new();
/// assert_eq!(s.name(), "default");
///
/// let map = json!({"it's": ["a\\b", null, 42, {"n": -1}], "pi": 3.5, "ok": true});
/// let text = s.freeze(map.as_object().unwrap())?;
/// assert_eq!(
///     String::from_utf8(text.clone()).unwrap(),
///     r"$D = {'it\'s' => ['a\\b',undef,42,{'n' => -1}],'ok' => 1,'pi' => '3.5'};;$D"
/// );
/// let back = s.thaw(&text)?;
/// assert_eq!(back["it's"], map["it's"]);
/// assert_eq!(back["pi"], json!("3.5")); // floats come back as strings
/// assert_eq!(back["ok"], json!(1)); // booleans as 1 / ""
///
/// // Never evaluated: anything outside Data::Dumper's output is an error.
/// assert!(s.thaw(b"$D = {'a' => system('rm -rf /')};").is_err());
/// # Ok::<(), cgi_session_core::SerializeError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataDumperSerializer {
    strings: StringStyle,
}

impl DataDumperSerializer {
    /// The serializer with [`StringStyle::Characters`].
    ///
    /// ```
    /// use cgi_session_dumper::{DataDumperSerializer, StringStyle};
    /// assert_eq!(DataDumperSerializer::new().string_style(), StringStyle::Characters);
    /// ```
    pub const fn new() -> Self {
        Self {
            strings: StringStyle::Characters,
        }
    }

    /// Chooses how non-ASCII strings are written (reading accepts both forms).
    ///
    /// ```
    /// use cgi_session_dumper::{DataDumperSerializer, StringStyle};
    /// let s = DataDumperSerializer::new().with_string_style(StringStyle::Utf8Bytes);
    /// assert_eq!(s.string_style(), StringStyle::Utf8Bytes);
    /// ```
    #[must_use]
    pub const fn with_string_style(mut self, style: StringStyle) -> Self {
        self.strings = style;
        self
    }

    /// How non-ASCII strings are written.
    ///
    /// ```
    /// use cgi_session_dumper::{DataDumperSerializer, StringStyle};
    /// assert_eq!(DataDumperSerializer::default().string_style(), StringStyle::Characters);
    /// ```
    pub const fn string_style(&self) -> StringStyle {
        self.strings
    }

    /// [`Serializer::freeze`] as a `String` (the output is always valid UTF-8). Nothing is
    /// blessed (see [`BLESS_TAG`]).
    ///
    /// # Errors
    /// [`SerializeError::Syntax`] when the map nests deeper than [`MAX_DEPTH`].
    ///
    /// ```
    /// use cgi_session_dumper::DataDumperSerializer;
    /// use serde_json::json;
    ///
    /// let map = json!({"o": {"__perl_bless__": "Foo", "value": [1]}, "r": {"__perl_ref__": "x"}});
    /// let text = DataDumperSerializer::new().freeze_to_string(map.as_object().unwrap())?;
    /// assert_eq!(text, r"$D = {'o' => {'__perl_bless__' => 'Foo','value' => [1]},'r' => \'x'};;$D");
    /// # Ok::<(), cgi_session_core::SerializeError>(())
    /// ```
    pub fn freeze_to_string(&self, map: &Map<String, Value>) -> Result<String, SerializeError> {
        write::freeze(map, self.strings)
    }
}

impl Serializer for DataDumperSerializer {
    fn name(&self) -> &'static str {
        FORMAT
    }

    fn freeze(&self, map: &Map<String, Value>) -> Result<Vec<u8>, SerializeError> {
        self.freeze_to_string(map).map(String::into_bytes)
    }

    fn thaw(&self, bytes: &[u8]) -> Result<Map<String, Value>, SerializeError> {
        read::thaw(bytes)
    }

    /// Rewrites a stored session: unchanged top-level values are copied byte for byte from
    /// `previous`, objects are blessed only into classes `previous` blessed.
    ///
    /// ```
    /// use cgi_session_core::Serializer;
    /// use cgi_session_dumper::DataDumperSerializer;
    /// use serde_json::json;
    ///
    /// // A Perl app without `-utf8` stored "café" as 5 bytes, and an object.
    /// let stored = b"$D = {'name' => 'caf\xc3\xa9','o' => bless( {'n' => 1}, 'My::Cart' ),'visits' => 1};;$D";
    /// let s = DataDumperSerializer::new();
    /// let mut map = s.thaw(stored)?;
    /// assert_eq!(map["name"], "café");
    /// map.insert("visits".into(), json!(2));
    /// map.insert("evil".into(), json!({"__perl_bless__": "Some::Class", "value": {}}));
    /// let text = s.freeze_over(&map, Some(stored))?;
    /// assert_eq!(
    ///     text,
    ///     b"$D = {'evil' => {'__perl_bless__' => 'Some::Class','value' => {}},'name' => 'caf\xc3\xa9','o' => bless( {'n' => 1}, 'My::Cart' ),'visits' => 2};;$D"
    /// );
    /// # Ok::<(), cgi_session_core::SerializeError>(())
    /// ```
    fn freeze_over(
        &self,
        map: &Map<String, Value>,
        previous: Option<&[u8]>,
    ) -> Result<Vec<u8>, SerializeError> {
        match previous.and_then(read::previous) {
            Some(previous) => write::freeze_over(map, self.strings, &previous),
            None => self.freeze(map),
        }
    }

    /// Decodes a stored session and notes, from the same parse, where each top-level value
    /// sits in the text ([`Record::set_stored_note`]), for the save that rewrites it.
    fn thaw_record(&self, bytes: &Bytes) -> Result<Record, SerializeError> {
        let (map, previous) = read::thaw_noted(bytes)?;
        let mut record = Record::from_map(map)?;
        record.set_stored_note(Arc::new(previous));
        Ok(record)
    }

    /// [`Serializer::freeze_over`] the record's stored bytes, with the note its decoding left
    /// when it is about those bytes (no second parse), else parsing them.
    fn freeze_record(&self, record: &mut Record) -> Result<Vec<u8>, SerializeError> {
        let noted = record
            .stored_note()
            .and_then(|note| Arc::clone(note).downcast::<read::Previous>().ok())
            .filter(|previous| record.stored_bytes() == Some(&previous.src[..]));
        if let Some(previous) = noted {
            return record.with_map(|map| write::freeze_over(map, self.strings, &previous));
        }
        let stored = record.stored_bytes().map(<[u8]>::to_vec);
        record.with_map(|map| self.freeze_over(map, stored.as_deref()))
    }
}

/// `{"__perl_bless__": "Class", "value": inner}` -> `("Class", inner)`.
pub(crate) fn as_bless(map: &Map<String, Value>) -> Option<(&str, &Value)> {
    if map.len() != 2 {
        return None;
    }
    match (map.get(BLESS_TAG), map.get(BLESS_VALUE)) {
        (Some(Value::String(class)), Some(inner)) => Some((class, inner)),
        _ => None,
    }
}

/// `{"__perl_ref__": inner}` -> `inner`.
pub(crate) fn as_ref(map: &Map<String, Value>) -> Option<&Value> {
    if map.len() == 1 {
        map.get(REF_TAG)
    } else {
        None
    }
}
