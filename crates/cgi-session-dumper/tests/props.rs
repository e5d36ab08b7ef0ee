//! Property tests: write -> read identity on the JSON model, and a reader that never panics on
//! arbitrary or mutated input.

use cgi_session_core::record::Record;
use cgi_session_core::Serializer;
use cgi_session_dumper::{DataDumperSerializer, StringStyle};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Strings with quotes, backslashes, `$ @ " '`, control characters and any Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{0,8}",
        "[\\\\'\"$@{}\\[\\]=>,;\\n\\t\\r\\x00 a-z]{0,12}",
        any::<String>(),
        "\\PC{0,10}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    // Up to 4 levels of arrays / objects below the session hash.
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn session_map() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(text(), json_value(), 0..8).prop_map(|m| m.into_iter().collect())
}

fn style() -> impl Strategy<Value = StringStyle> {
    prop_oneof![Just(StringStyle::Characters), Just(StringStyle::Utf8Bytes)]
}

/// Generated objects must not collide with the tagged forms (`__perl_ref__` alone, or
/// `__perl_bless__` + `value`); random keys practically never do, but be exact.
fn has_tag(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().any(has_tag),
        Value::Object(m) => {
            m.contains_key("__perl_ref__")
                || m.contains_key("__perl_bless__")
                || m.values().any(has_tag)
        }
        _ => false,
    }
}

/// A session record's flat map: `params` (reserved names left out) and the reserved fields.
fn record_map(params: Map<String, Value>) -> Map<String, Value> {
    let mut map: Map<String, Value> = params
        .into_iter()
        .filter(|(k, _)| !k.starts_with("_SESSION_"))
        .collect();
    map.insert("_SESSION_ID".into(), "abc".into());
    map.insert("_SESSION_CTIME".into(), 1.into());
    map.insert("_SESSION_ATIME".into(), 2.into());
    map.insert("_SESSION_REMOTE_ADDR".into(), "".into());
    map
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A decoded record is written over its stored text exactly as `freeze_over` writes over
    /// it (the decoding's note spares the save a second parse, and changes nothing), and so
    /// is the next version, which has no note.
    #[test]
    fn a_record_is_written_over_its_stored_text_as_freeze_over_writes(
        params in session_map(),
        (name, value) in (text(), json_value()),
        style in style(),
    ) {
        prop_assume!(!params.values().any(has_tag) && !has_tag(&value));
        prop_assume!(!name.starts_with("_SESSION_"));
        let s = DataDumperSerializer::new().with_string_style(style);
        let stored = s.freeze(&record_map(params)).unwrap();
        let mut record = Record::decode(&s, &stored).unwrap();
        record.params.insert(name, value);
        record.atime = 3;
        let expected = s.freeze_over(&record.to_map(), Some(&stored)).unwrap();
        let written = record.encode(&s).unwrap();
        prop_assert_eq!(&written[..], &expected[..]);
        record.atime = 4;
        let expected = s.freeze_over(&record.to_map(), Some(&written)).unwrap();
        prop_assert_eq!(&record.encode(&s).unwrap()[..], &expected[..]);
    }

    #[test]
    fn write_then_read_is_identity(map in session_map(), style in style()) {
        prop_assume!(!map.values().any(has_tag));
        let s = DataDumperSerializer::new().with_string_style(style);
        let text = s.freeze(&map).unwrap();
        let back = s.thaw(&text).unwrap();
        prop_assert_eq!(back, map);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = DataDumperSerializer::new().thaw(&bytes);
    }

    #[test]
    fn arbitrary_dumper_like_text_never_panics(
        text in "[$D =>{}\\[\\]',\"\\\\;a-z0-9\\- \\n_.@e(){}]{0,200}",
    ) {
        let _ = DataDumperSerializer::new().thaw(text.as_bytes());
    }

    /// Fuzz-style: take a valid dump and mutate it (flip, insert interesting tokens, delete,
    /// truncate). The reader must not panic; whatever it accepts must be writable, and
    /// write -> read must then be stable.
    #[test]
    fn mutated_dumps_never_panic(
        map in session_map(),
        mutations in prop::collection::vec(
            (any::<prop::sample::Index>(), 0u8..5, any::<u8>(), prop::sample::select(vec![
                "'", "\"", "\\", "$D", "$D->{'a'}", "=>", ",", "{", "}", "[", "]", ";", "undef",
                "bless( ", ", 'X' )", "do{my $o}", "\\do{\\(my $o = ", ")}", "\\x{", "\\x{110000}",
                "-", "1e999", "18446744073709551616", "->[0]", " = ", "sub {", "\u{e9}", "\u{263a}",
            ])),
            1..6,
        ),
    ) {
        let s = DataDumperSerializer::new();
        let mut bytes = s.freeze(&map).unwrap();
        for (at, kind, byte, token) in mutations {
            let i = at.index(bytes.len() + 1);
            match kind {
                0 => { if let Some(b) = bytes.get_mut(i) { *b ^= byte | 1; } }
                1 => { bytes.splice(i..i, token.bytes()); }
                2 => { if i < bytes.len() { bytes.remove(i); } }
                3 => bytes.truncate(i),
                _ => { bytes.insert(i, byte); }
            }
        }
        if let Ok(got) = s.thaw(&bytes) {
            // Floats read from a mutated dump come back as strings once, then stay put.
            let once = s.thaw(&s.freeze(&got).unwrap()).unwrap();
            let twice = s.thaw(&s.freeze(&once).unwrap()).unwrap();
            prop_assert_eq!(twice, once);
        }
    }
}
