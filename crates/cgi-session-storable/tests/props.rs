//! Property tests: write -> read identity on the JSON model (both string styles, with and
//! without a previous image), and a reader that never panics on arbitrary or mutated input.

use cgi_session_core::Serializer;
use cgi_session_storable::{StorableSerializer, StringStyle};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{0,8}",
        any::<String>(),
        "\\PC{0,10}",
        "[a-z]{250,260}", // around SX_SCALAR's 255-byte limit
        Just("__perl_bless__".to_owned()),
        Just("__perl_ref__".to_owned()),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        (-200i64..200).prop_map(Value::from),
        (0..=i64::MAX as u64).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![Just(Value::Null), number(), text().prop_map(Value::String)];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner.clone(), 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            // Tagged forms, as the reader produces them.
            inner.clone().prop_map(|v| {
                let mut m = Map::new();
                m.insert("__perl_ref__".into(), v);
                Value::Object(m)
            }),
            ("[A-Z][a-z]{0,5}(::[A-Z][a-z]{0,5})?", inner).prop_map(|(class, v)| {
                let mut m = Map::new();
                m.insert("__perl_bless__".into(), Value::String(class));
                m.insert("value".into(), v);
                Value::Object(m)
            }),
        ]
    })
}

fn session_map() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(text(), json_value(), 0..8).prop_map(|m| m.into_iter().collect())
}

fn style() -> impl Strategy<Value = StringStyle> {
    prop_oneof![Just(StringStyle::Characters), Just(StringStyle::Utf8Bytes)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn freeze_then_thaw_is_the_identity(map in session_map(), style in style()) {
        let s = StorableSerializer::new().with_string_style(style);
        let bytes = s.freeze(&map).unwrap();
        prop_assert_eq!(s.thaw(&bytes).unwrap(), map.clone());
        prop_assert_eq!(s.freeze_over(&map, None).unwrap(), bytes);
    }

    #[test]
    fn freeze_over_writes_the_new_map(old in session_map(), new in session_map(),
                                      keep in any::<prop::sample::Index>(), style in style()) {
        let s = StorableSerializer::new().with_string_style(style);
        let previous = s.freeze(&old).unwrap();
        // Unchanged: byte for byte.
        prop_assert_eq!(&s.freeze_over(&old, Some(&previous)).unwrap(), &previous);
        // Some old values kept, some changed, some new: reads back as the new map.
        let mut mixed = new.clone();
        if !old.is_empty() {
            let (k, v) = old.iter().nth(keep.index(old.len())).unwrap();
            mixed.insert(k.clone(), v.clone());
        }
        let bytes = s.freeze_over(&mixed, Some(&previous)).unwrap();
        prop_assert_eq!(s.thaw(&bytes).unwrap(), mixed);
    }

    #[test]
    fn thaw_never_panics_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = StorableSerializer::new().thaw(&data);
        let mut with_header = b"\x04\x0b\x0812345678\x04\x08\x08\x08".to_vec();
        with_header.extend_from_slice(&data);
        let _ = StorableSerializer::new().thaw(&with_header);
        let mut net = b"\x05\x0b".to_vec();
        net.extend_from_slice(&data);
        let _ = StorableSerializer::new().thaw(&net);
    }

    #[test]
    fn mutated_images_never_panic_and_what_reads_writes_back(
        map in session_map(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let s = StorableSerializer::new();
        let mut data = s.freeze(&map).unwrap();
        for (at, byte, op) in edits {
            let i = if data.is_empty() { 0 } else { at.index(data.len()) };
            match op {
                0 if !data.is_empty() => data[i] = byte,
                1 => data.insert(i, byte),
                _ if !data.is_empty() => { data.remove(i); }
                _ => data.push(byte),
            }
        }
        if let Ok(read) = s.thaw(&data) {
            let again = s.freeze_over(&read, Some(&data)).unwrap();
            prop_assert_eq!(s.thaw(&again).unwrap(), read.clone());
            // Written fresh, Perl's yes/no become 1 and "": stable from then on.
            let once = s.thaw(&s.freeze(&read).unwrap()).unwrap();
            prop_assert_eq!(s.thaw(&s.freeze(&once).unwrap()).unwrap(), once);
        }
    }
}
