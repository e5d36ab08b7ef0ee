//! Images made by the real Perl Storable (`tests/data/gen-vectors.pl`: Storable 3.26, perl
//! 5.36, x86_64), in both `freeze` (native) and `nfreeze` (network) order, read into the
//! JSON model; and written back over themselves byte for byte.

use std::path::PathBuf;

use cgi_session_core::Serializer;
use cgi_session_storable::StorableSerializer;
use serde_json::{json, Map, Value};

fn vector(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/vectors")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn both(name: &str) -> [Map<String, Value>; 2] {
    let s = StorableSerializer::new();
    let native = s.thaw(&vector(&format!("{name}.freeze"))).unwrap();
    let network = s.thaw(&vector(&format!("{name}.nfreeze"))).unwrap();
    [native, network]
}

#[test]
#[allow(clippy::approx_constant)] // 3.14 is the number the Perl script stored, not PI
fn scalars_integers_doubles_and_both_kinds_of_strings() {
    for (i, m) in both("scalars").iter().enumerate() {
        assert_eq!(m["small"], json!(42));
        assert_eq!(m["neg"], json!(-5));
        assert_eq!(m["big"], json!(1_795_762_418));
        assert_eq!(m["negbig"], json!(-1000));
        assert_eq!(m["str"], json!("hello"));
        assert_eq!(m["numstr"], json!("42"), "a Perl string stays a string");
        assert_eq!(m["empty"], json!(""));
        assert_eq!(m["long"], json!("x".repeat(300)));
        assert_eq!(m["bytes_utf8"], json!("café"), "UTF-8 bytes read as text");
        assert_eq!(
            m["bytes_latin1"],
            json!("caf\u{e9}"),
            "other bytes as Latin-1"
        );
        assert_eq!(m["chars"], json!("café"));
        assert_eq!(m["smile"], json!("☺"));
        assert_eq!(m["long_utf8"], json!("☺".repeat(100)));
        assert_eq!(m["undef"], Value::Null);
        assert_eq!(m["umax"], json!("18446744073709551615"));
        if i == 0 {
            // freeze: native 64-bit integers and doubles.
            assert_eq!(m["min"], json!(i64::MIN));
            assert_eq!(m["float"], json!(3.14));
        } else {
            // nfreeze writes integers beyond 32 bits and doubles as strings.
            assert_eq!(m["min"], json!(i64::MIN.to_string()));
            assert_eq!(m["float"], json!("3.14"));
        }
    }
}

#[test]
fn arrays_hashes_references_undef_and_immortals() {
    for m in both("structures") {
        assert_eq!(m["list"], json!([1, null, "x", [2]]));
        assert_eq!(m["h"], json!({"./lost+found": 1, "deep": {"k": ["v"]}}));
        assert_eq!(m["sref"], json!({"__perl_ref__": "text"}));
        assert_eq!(m["rref"], json!({"__perl_ref__": {"__perl_ref__": "x"}}));
        assert_eq!(m["empty_a"], json!([]));
        assert_eq!(m["empty_h"], json!({}));
        assert_eq!(m["yes"], json!({"__perl_ref__": true}));
        assert_eq!(m["no"], json!({"__perl_ref__": false}));
        assert_eq!(m["sparse"], json!([null, null, 1]));
    }
}

#[test]
fn blessed_objects_as_the_dumper_represents_them() {
    for m in both("blessed") {
        assert_eq!(
            m["obj"],
            json!({"__perl_bless__": "My::Cart", "value": {"name": "n", "items": [1, 2]}})
        );
        assert_eq!(
            m["obj2"],
            json!({"__perl_bless__": "My::Cart", "value": {}})
        );
        assert_eq!(
            m["arr"],
            json!({"__perl_bless__": "My::List", "value": [1]})
        );
        assert_eq!(
            m["sc"],
            json!({"__perl_bless__": "My::Scalar", "value": {"__perl_ref__": "s"}})
        );
    }
    for m in both("overload") {
        assert_eq!(
            m["o"],
            json!({"__perl_bless__": "My::Overloaded", "value": {"v": 1}})
        );
    }
}

#[test]
fn shared_references_are_expanded() {
    for m in both("shared") {
        assert_eq!(m["a"], json!([1, 2]));
        assert_eq!(m["b"], json!([1, 2]));
        assert_eq!(m["c"], json!([{"k": "v"}, {"k": "v"}]));
    }
}

#[test]
fn utf8_downgraded_and_byte_keys() {
    for m in both("keys") {
        assert_eq!(m["café"], json!(1), "a key Perl downgraded to Latin-1");
        assert_eq!(m["☺"], json!(2));
        assert_eq!(m["plain"], json!(3));
        assert_eq!(m["bytesé"], json!(4), "a byte key holding UTF-8");
        assert_eq!(m["nested"], json!({"☺": "x"}));
    }
}

#[test]
fn doubles_including_infinities() {
    let [native, network] = both("doubles");
    assert_eq!(native["inf"], json!("Inf"));
    assert_eq!(native["ninf"], json!("-Inf"));
    assert_eq!(native["half"], json!(0.5));
    assert_eq!(native["third"], json!(1.0 / 3.0));
    assert_eq!(network["inf"], json!("Inf"));
    assert_eq!(network["half"], json!("0.5"));
}

#[test]
fn a_session_written_by_cgi_session() {
    let m = StorableSerializer::new()
        .thaw(&vector("cgi_session.freeze"))
        .unwrap();
    assert_eq!(m["user"], json!("alice"));
    assert_eq!(m["greet"], json!("café"));
    assert_eq!(m["_SESSION_ETIME"], json!(600));
    assert_eq!(m["_SESSION_EXPIRE_LIST"], json!({"logged_in": 300}));
    assert!(m["_SESSION_ATIME"].is_i64());
    assert_eq!(m["_SESSION_ID"].as_str().map(str::len), Some(32));
    let record = cgi_session_core::record::Record::from_map(m);
    assert!(record.is_ok(), "{record:?}");
}

#[test]
fn every_vector_written_over_itself_is_unchanged() {
    let s = StorableSerializer::new();
    for name in [
        "scalars",
        "structures",
        "blessed",
        "shared",
        "keys",
        "doubles",
        "overload",
    ] {
        let perl = vector(&format!("{name}.freeze"));
        let map = s.thaw(&perl).unwrap();
        assert_eq!(s.freeze_over(&map, Some(&perl)).unwrap(), perl, "{name}");
        // nfreeze images are written in native order, with the same values.
        let net = vector(&format!("{name}.nfreeze"));
        let map = s.thaw(&net).unwrap();
        let native = s.freeze_over(&map, Some(&net)).unwrap();
        assert_eq!(s.thaw(&native).unwrap(), map, "{name}");
    }
    let perl = vector("cgi_session.freeze");
    let map = s.thaw(&perl).unwrap();
    assert_eq!(s.freeze_over(&map, Some(&perl)).unwrap(), perl);
}

#[test]
fn freeze_writes_what_perl_writes_for_plain_data() {
    // perl -MStorable=freeze -e 'print freeze({a => 1})' and friends.
    let s = StorableSerializer::new();
    let cases: [(&[u8], Value); 2] = [
        (
            b"\x04\x0b\x0812345678\x04\x08\x08\x08\x03\x01\x00\x00\x00\x08\x81\x01\x00\x00\x00a",
            json!({"a": 1}),
        ),
        (
            b"\x04\x0b\x0812345678\x04\x08\x08\x08\x03\x01\x00\x00\x00\x04\x02\x03\x00\x00\x00\
              \x08\x81\x06\x00\x01\x00\x00\x00\x00\x00\x00\x05\x01\x00\x00\x00l",
            json!({"l": [1, 256, null]}),
        ),
    ];
    for (perl, value) in cases {
        let map = value.as_object().unwrap();
        assert_eq!(s.thaw(perl).unwrap(), *map);
        assert_eq!(s.freeze(map).unwrap(), perl, "{value}");
    }
}
