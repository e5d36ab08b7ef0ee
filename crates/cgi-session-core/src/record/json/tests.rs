use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::{decode, encode};
use crate::record::{Record, KEY_BROWSER_COOKIE, KEY_EXPIRES_AT};
use crate::{JsonSerializer, Serializer};

/// What the map path (the serializer's `thaw` + `Record::from_map`) makes of `bytes`.
fn by_map(bytes: &[u8]) -> Result<Record, crate::SerializeError> {
    Record::from_map(JsonSerializer.thaw(bytes)?)
}

pub(super) fn canonical(record: &Record) -> Vec<u8> {
    serde_json::to_vec(&record.to_map()).unwrap()
}

pub(super) fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        "[a-z\"\\\\/\u{0}-\u{1f}é€😀]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

prop_compose! {
    pub(super) fn record()(
        id in "[0-9a-f]{1,32}",
        ctime in any::<i64>(),
        atime in any::<i64>(),
        etime in proptest::option::of(any::<i64>()),
        remote in "[0-9.:a-f]{0,15}",
        list in proptest::option::of(prop::collection::btree_map("[a-z_]{1,5}", any::<i64>(), 0..3)),
        params in prop::collection::btree_map("[a-zA-Z_ \"é\\\\]{0,8}|_SESSION_[A-Z]{1,3}", value(), 0..8),
        absolute in proptest::option::of(any::<i64>()),
        browser in any::<bool>(),
    ) -> Record {
        let mut r = Record::new(id, ctime, remote);
        r.atime = atime;
        r.etime = etime;
        r.expire_list = list;
        for (k, v) in params {
            if !crate::record::is_reserved(&k) {
                r.params.insert(k, v);
            }
        }
        r.set_absolute_expiry(absolute);
        r.set_browser_session_cookie(browser);
        r
    }
}

proptest! {
    /// The splicing encoder writes exactly what serde_json writes for the flat map, whether
    /// the parameters were set as values or read back as stored text; the reader gives the
    /// record the map path gives.
    #[test]
    fn writes_serde_jsons_bytes_and_reads_what_the_map_path_reads(r in record()) {
        let expected = canonical(&r);
        prop_assert_eq!(&encode(&r).unwrap(), &expected);
        let read = decode(&Bytes::from(expected.clone())).unwrap();
        prop_assert_eq!(&read, &by_map(&expected).unwrap());
        prop_assert_eq!(&read, &r);
        prop_assert_eq!(encode(&read).unwrap(), expected);
    }

    /// Any bytes: where the map path accepts, the record reader accepts and agrees; where the
    /// map path refuses for syntax, so does the reader.
    #[test]
    fn accepts_and_refuses_like_the_map_path(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        agree(&bytes)?;
    }

    #[test]
    fn mutated_records_are_read_like_the_map_path(r in record(), at in any::<prop::sample::Index>(), b in any::<u8>()) {
        let mut bytes = canonical(&r);
        let i = at.index(bytes.len());
        bytes[i] = b;
        agree(&bytes)?;
    }
}

fn agree(bytes: &[u8]) -> Result<(), TestCaseError> {
    let fast = decode(&Bytes::copy_from_slice(bytes));
    match (fast, by_map(bytes)) {
        (Ok(fast), Ok(slow)) => prop_assert_eq!(fast, slow),
        (Err(_), Err(_)) => {}
        (Ok(fast), Err(_)) => {
            // Only a parameter's value may be beyond what the full decoder takes: it is kept
            // as stored and written back unchanged.
            let written = encode(&fast).unwrap();
            let again = decode(&Bytes::from(written)).unwrap();
            prop_assert_eq!(again, fast);
        }
        (Err(e), Ok(_)) => prop_assert!(false, "refused what the map path accepts: {e}"),
    }
    Ok(())
}

#[test]
fn refuses_what_is_not_a_session() {
    for bad in [
        &b""[..],
        b"   ",
        b"[1,2]",
        b"null",
        b"\"x\"",
        b"{\"a\":",
        b"{\"a\":1}trailing",
        b"{\"a\":1}",
        b"{\"_SESSION_ID\":[1]}",
        b"{\"_SESSION_ID\":\"x\",\"_SESSION_ATIME\":\"soon\"}",
        b"{\"_SESSION_ID\":\"x\",\"_SESSION_EXPIRE_LIST\":{\"a\":\"b\"}}",
        b"{\"_SESSION_ID\":\"x\",\"a\":tru}",
        b"{\"_SESSION_ID\":\"x\",\"a\":\"\xff\"}",
        b"{\"_SESSION_ID\":\"x\",\"a\":\"\\q\"}",
        b"{\"_SESSION_ID\":\"x\",\"a\":[1,}",
        b"\xff\xfe",
    ] {
        assert!(decode(&Bytes::from_static(bad)).is_err(), "{bad:?}");
        assert!(by_map(bad).is_err(), "{bad:?}");
    }
    let err = decode(&Bytes::from_static(b"[1]")).unwrap_err().to_string();
    assert!(err.contains("not an object"), "{err}");
}

#[test]
fn a_parameter_read_from_other_json_keeps_its_spelling_until_changed() {
    let stored = br#" { "_SESSION_ID" : "x", "b" : "\u0041", "a" : 1.50 , "c":[ 1 ,2] } "#;
    let mut r = decode(&Bytes::from_static(stored)).unwrap();
    assert_eq!(r.params.get_as::<f64>("a").unwrap().unwrap(), 1.5);
    assert_eq!(r.params["b"], json!("A"));
    assert_eq!(
        String::from_utf8(encode(&r).unwrap()).unwrap(),
        r#"{"_SESSION_ATIME":0,"_SESSION_CTIME":0,"_SESSION_ID":"x","_SESSION_REMOTE_ADDR":"","a":1.50,"b":"\u0041","c":[ 1 ,2]}"#
    );
    r.params.insert("a".into(), json!(2));
    let text = String::from_utf8(encode(&r).unwrap()).unwrap();
    assert!(text.contains(r#""a":2,"b":"\u0041""#), "{text}");
}

#[test]
fn a_parameter_the_full_decoder_refuses_is_kept_and_reading_it_is_an_error() {
    let stored = br#"{"_SESSION_ID":"x","bad":"\ud800","big":1e999,"ok":1}"#;
    assert!(by_map(stored).is_err());
    let r = decode(&Bytes::from_static(stored)).unwrap();
    assert!(r.params.get_as::<String>("bad").unwrap().is_err());
    assert!(r.params.get_as::<f64>("big").unwrap().is_err());
    assert_eq!(r.params.get_as::<i64>("ok").unwrap().unwrap(), 1);
    let text = String::from_utf8(encode(&r).unwrap()).unwrap();
    assert!(
        text.contains(r#""bad":"\ud800","big":1e999,"ok":1"#),
        "{text}"
    );
}

#[test]
fn reserved_fields_perl_style_numbers_duplicates_and_extras() {
    let stored = br#"{"_SESSION_ID":"x","_SESSION_CTIME":"17","_SESSION_ETIME":null,"n":1,"n":2,"_SESSION_FUTURE":[1],"_SESSION_EXPIRE_LIST":{"n":"30"}}"#;
    let r = decode(&Bytes::from_static(stored)).unwrap();
    assert_eq!(r, by_map(stored).unwrap());
    assert_eq!((r.ctime, r.atime, r.etime), (17, 17, None));
    assert_eq!(r.params["n"], json!(2), "the last of a name counts");
    assert_eq!(r.extra["_SESSION_FUTURE"], json!([1]));
    assert_eq!(r.expire_list, Some(BTreeMap::from([("n".to_string(), 30)])));
    assert_eq!(encode(&r).unwrap(), canonical(&r));
}

#[test]
fn a_parameter_under_a_reserved_name_never_doubles_a_key() {
    let mut r = Record::new("x".into(), 1, String::new());
    r.params.insert("_SESSION_ID".into(), json!("forged"));
    r.params.insert("_SESSION_ZZZ".into(), json!(1));
    r.set_absolute_expiry(Some(5));
    r.extra.insert(KEY_BROWSER_COOKIE.into(), json!(1));
    let bytes = encode(&r).unwrap();
    assert_eq!(bytes, canonical(&r));
    let back = decode(&Bytes::from(bytes)).unwrap();
    assert_eq!(back.id, "x");
    assert_eq!(back.extra[KEY_EXPIRES_AT], json!(5));
    assert_eq!(back.extra["_SESSION_ZZZ"], json!(1));
}

#[test]
fn application_values_and_names_are_written_as_serde_json_writes_them() {
    let mut r = Record::new("x\"y".into(), -5, "\u{7f}é\n".into());
    r.etime = Some(i64::MIN);
    r.expire_list = Some(BTreeMap::from([("a".to_string(), 1)]));
    for (k, v) in [
        ("u", json!(u64::MAX)),
        ("i", json!(i64::MIN)),
        ("f", json!(0.1)),
        ("s", json!("tab\there")),
        ("t", json!(true)),
        ("z", json!(null)),
        ("w\"", json!(false)),
        ("\u{1}", json!("plain")),
    ] {
        r.params.insert(k.into(), v);
    }
    r.extra.insert("_SESSION_ETIME2".into(), json!(3));
    assert_eq!(encode(&r).unwrap(), canonical(&r));
}
