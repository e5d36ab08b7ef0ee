//! `freeze_over`: what stays as Perl stored it, what is written in Rust's form, and when a
//! value is written blessed. The images over which Rust writes are Perl's
//! (`tests/data/vectors`, see `gen-vectors.pl`).

use std::path::PathBuf;

use cgi_session_core::Serializer;
use cgi_session_storable::StorableSerializer;
use serde_json::{json, Map, Value};

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/vectors")
            .join(name),
    )
    .unwrap()
}

fn contains(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn map(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn untouched_values_keep_their_string_kind_and_number_kind() {
    let s = StorableSerializer::new();
    let perl = vector("scalars.freeze");
    let mut m = s.thaw(&perl).unwrap();
    m.insert("str".into(), json!("changed"));
    m.insert("new".into(), json!("é"));
    let bytes = s.freeze_over(&m, Some(&perl)).unwrap();
    assert_eq!(s.thaw(&bytes).unwrap(), m);
    // Byte strings stay byte strings (UTF-8 bytes and Latin-1 bytes), the character string
    // stays a character string, the big integer stays SX_INTEGER.
    assert_eq!(
        contains(&bytes, b"\x0a\x05caf\xc3\xa9\x0a\x00\x00\x00bytes_utf8"),
        1
    );
    assert_eq!(
        contains(&bytes, b"\x0a\x04caf\xe9\x0c\x00\x00\x00bytes_latin1"),
        1
    );
    assert_eq!(
        contains(&bytes, b"\x17\x05caf\xc3\xa9\x05\x00\x00\x00chars"),
        1
    );
    assert_eq!(
        contains(&bytes, b"\x0a\x02\x34\x32\x06\x00\x00\x00numstr"),
        1
    );
    // Changed and new values in Rust's form.
    assert_eq!(contains(&bytes, b"\x0a\x07changed\x03\x00\x00\x00str"), 1);
    assert_eq!(contains(&bytes, b"\x17\x02\xc3\xa9\x03\x00\x00\x00new"), 1);
    // Without the previous image, the Latin-1 byte string is written as characters.
    let fresh = s.freeze(&m).unwrap();
    assert_eq!(
        contains(&fresh, b"\x17\x05caf\xc3\xa9\x0c\x00\x00\x00bytes_latin1"),
        1
    );
}

#[test]
fn a_new_map_naming_a_class_is_never_blessed() {
    let s = StorableSerializer::new();
    let evil = map(json!({
        "o": {"__perl_bless__": "My::Cart", "value": {"x": 1}},
        "a": [{"__perl_bless__": "File::Temp", "value": []}],
    }));
    for bytes in [
        s.freeze(&evil).unwrap(),
        s.freeze_over(&evil, None).unwrap(),
        s.freeze_over(&evil, Some(b"garbage")).unwrap(),
    ] {
        assert_eq!(contains(&bytes, b"\x11"), 0, "no SX_BLESS");
        assert_eq!(s.thaw(&bytes).unwrap(), evil, "the same JSON reads back");
    }
}

#[test]
fn only_classes_read_blessed_under_the_same_key_are_written_blessed() {
    let s = StorableSerializer::new();
    let perl = vector("blessed.freeze");
    let mut m = s.thaw(&perl).unwrap();
    // The application edits the object Perl stored under "obj": still a My::Cart.
    m["obj"]["value"]["name"] = json!("edited");
    // It replaces "arr" with an object of a class Perl stored under another key.
    m.insert(
        "arr".into(),
        json!({"__perl_bless__": "My::Cart", "value": [1]}),
    );
    // And adds a new key naming a class Perl did store.
    m.insert(
        "new".into(),
        json!({"__perl_bless__": "My::Cart", "value": {}}),
    );
    let bytes = s.freeze_over(&m, Some(&perl)).unwrap();
    assert_eq!(s.thaw(&bytes).unwrap(), m);
    let again = s.thaw(&bytes).unwrap();
    assert_eq!(again["obj"]["value"]["name"], "edited");
    // Blessed: obj (edited, same class under the same key), obj2 and sc (untouched).
    // Not blessed: arr (My::Cart was never under "arr") and new.
    assert_eq!(
        contains(&bytes, b"\x11\x08My::Cart"),
        1,
        "one SX_BLESS My::Cart"
    );
    assert_eq!(contains(&bytes, b"\x11\x0aMy::Scalar"), 1);
    assert_eq!(contains(&bytes, b"\x11\x08My::List"), 0);
    // My::Cart's class index is 0: obj2 refers to it with SX_IX_BLESS, nothing else does.
    let bless_ix = contains(&bytes, b"\x12\x00");
    assert_eq!(bless_ix, 1, "{bytes:?}");
}

#[test]
fn a_nested_object_keeps_its_class_when_its_container_changes() {
    let s = StorableSerializer::new();
    let previous = s.freeze(&map(json!({"list": []}))).unwrap();
    // Build a previous image where "list" holds a blessed hash, as Perl writes it:
    // {list => [bless({}, 'Item')]}
    let perl: &[u8] = b"\x04\x0b\x0812345678\x04\x08\x08\x08\x03\x01\x00\x00\x00\x04\x02\x01\
                        \x00\x00\x00\x04\x11\x04Item\x03\x00\x00\x00\x00\x04\x00\x00\x00list";
    let mut m = s.thaw(perl).unwrap();
    assert_eq!(m["list"], json!([{"__perl_bless__": "Item", "value": {}}]));
    m["list"]
        .as_array_mut()
        .unwrap()
        .push(json!({"__perl_bless__": "Item", "value": {"n": 2}}));
    let bytes = s.freeze_over(&m, Some(perl)).unwrap();
    assert_eq!(s.thaw(&bytes).unwrap(), m);
    assert_eq!(contains(&bytes, b"\x11\x04Item"), 1);
    assert_eq!(contains(&bytes, b"\x12\x00"), 1, "the second Item by index");
    // Over an image without that class, the same map is not blessed at all.
    let bytes = s.freeze_over(&m, Some(&previous)).unwrap();
    assert_eq!(contains(&bytes, b"\x11"), 0);
}

#[test]
fn shared_values_stay_shared_and_keys_keep_their_bytes() {
    let s = StorableSerializer::new();
    let perl = vector("shared.freeze");
    let mut m = s.thaw(&perl).unwrap();
    m.insert("c".into(), json!("changed"));
    let bytes = s.freeze_over(&m, Some(&perl)).unwrap();
    assert_eq!(s.thaw(&bytes).unwrap(), m);
    // "a" and "b" still point to one array: one SX_ARRAY of 2, one back-reference.
    assert_eq!(contains(&bytes, b"\x02\x02\x00\x00\x00"), 1);
    assert_eq!(contains(&bytes, b"\x04\x00\x00\x00\x00"), 1);

    let perl = vector("keys.freeze");
    let mut m = s.thaw(&perl).unwrap();
    m.insert("café".into(), json!("changed"));
    let bytes = s.freeze_over(&m, Some(&perl)).unwrap();
    assert_eq!(s.thaw(&bytes).unwrap(), m);
    // The key Perl stored as Latin-1 (flag WASUTF8) is still Latin-1 with that flag.
    assert_eq!(contains(&bytes, b"\x02\x04\x00\x00\x00caf\xe9"), 1);
}

#[test]
fn a_previous_image_that_does_not_decode_is_ignored() {
    let s = StorableSerializer::new();
    let m = map(json!({"a": 1}));
    let expected = s.freeze(&m).unwrap();
    for bad in [
        &b""[..],
        b"\x04\x0b",
        b"\x05\x0b\x03\xff\xff\xff\xff",
        b"$D = {};",
    ] {
        assert_eq!(s.freeze_over(&m, Some(bad)).unwrap(), expected);
    }
}
