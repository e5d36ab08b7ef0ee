//! The fast path of the JSON reader (the scanner) against serde_json's walk: whenever the
//! fast path decides, both give the same record, the same written bytes or the same error.

use bytes::Bytes;
use proptest::prelude::*;

use super::tests::{canonical, record};
use super::{decode, decode_scanned, decode_serde, encode};
use crate::record::Record;

/// The fast path (scanner) and serde_json's walk on `bytes`: when the fast path does not give
/// up, both accept with equal records written back to the same bytes, or both refuse with
/// the same error. Returns whether the fast path decided.
fn paths_agree(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let bytes = Bytes::copy_from_slice(bytes);
    let slow = decode_serde(&bytes);
    match (decode_scanned(&bytes), slow) {
        (None, _) => return Ok(false),
        (Some(Ok(fast)), Ok(slow)) => {
            prop_assert_eq!(encode(&fast).unwrap(), encode(&slow).unwrap());
            prop_assert_eq!(fast, slow);
        }
        (Some(Err(fast)), Err(slow)) => prop_assert_eq!(fast.to_string(), slow.to_string()),
        (Some(fast), slow) => prop_assert!(false, "fast path {fast:?}, serde_json {slow:?}"),
    }
    Ok(true)
}

fn plain_names(r: &Record) -> bool {
    r.params.keys().all(|k| !k.contains(['"', '\\']))
}

/// Bytes that look like JSON, to reach the scanner's corners more often than random bytes.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    const TOKENS: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"\"",
        b"\"_SESSION_ID\":",
        b"\"_SESSION_ATIME\":",
        b"\"k\":",
        b"\"v\"",
        b"\\",
        b"\\u",
        b"d83D",
        b"0",
        b"-",
        b"12",
        b".",
        b"e",
        b"E+",
        b"true",
        b"nul",
        b"l",
        b"false",
        b" ",
        b"\n",
        b"\x0c",
        b"\x01",
        "é".as_bytes(),
        b"\xff",
    ];
    let token = prop::sample::select(TOKENS);
    prop::collection::vec(token, 0..40).prop_map(|ts| {
        let mut out = b"{\"_SESSION_ID\":\"x\",".to_vec();
        ts.into_iter().for_each(|t| out.extend_from_slice(t));
        out
    })
}

fn fragment() -> impl Strategy<Value = Vec<u8>> {
    let from = |alphabet: &'static [u8], len: std::ops::Range<usize>| {
        prop::collection::vec(prop::sample::select(alphabet), len)
    };
    prop_oneof![
        from(b"\\\"u0aF9g/bnrtx \x00\x1f\x7f\xc3\xa9", 0..10).prop_map(|mut body| {
            body.insert(0, b'"');
            body.push(b'"');
            body
        }),
        from(b"-+.eE0129", 1..8),
        from(b"truefalsn ", 1..7),
        from(b"[]{},:\"1 n", 1..12),
    ]
}

proptest! {
    /// Canonical records (names without escapes) always take the fast path, and it agrees
    /// with serde_json's walk; so do the same records written with whitespace.
    #[test]
    fn canonical_records_take_the_fast_path(r in record()) {
        let bytes = canonical(&r);
        prop_assert_eq!(paths_agree(&bytes)?, plain_names(&r));
        let pretty = serde_json::to_vec_pretty(&r.to_map()).unwrap();
        prop_assert_eq!(paths_agree(&pretty)?, plain_names(&r));
    }

    #[test]
    fn the_fast_path_agrees_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        paths_agree(&bytes)?;
    }

    #[test]
    fn the_fast_path_agrees_on_json_like_bytes(bytes in jsonish()) {
        paths_agree(&bytes)?;
    }

    /// Short fragments of each sub-grammar the scanner checks (strings and escapes,
    /// numbers, literals, nesting), as a parameter's value, as a reserved value and as a name.
    #[test]
    fn the_fast_path_agrees_on_fragments(frag in fragment()) {
        for (before, after) in [
            (&br#"{"_SESSION_ID":"x","p":"#[..], &b"}"[..]),
            (br#"{"_SESSION_ID":"#, b"}"),
            (br#"{"_SESSION_ID":"x","#, b":1}"),
        ] {
            paths_agree(&[before, &frag, after].concat())?;
        }
    }

    /// Several bytes of a canonical record replaced, inserted or removed.
    #[test]
    fn the_fast_path_agrees_on_mutated_records(
        r in record(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(&b"{}[],:\"\\ -.0e1tnu\x1f\xc3"[..]), 0u8..3), 1..4),
    ) {
        let mut bytes = canonical(&r);
        for (at, b, op) in edits {
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = b,
                1 => bytes.insert(i, b),
                _ => { bytes.remove(i); }
            }
        }
        paths_agree(&bytes)?;
    }
}

#[test]
fn the_fast_path_decides_what_it_is_sure_of_and_agrees() {
    let deep = |n: usize| {
        format!(
            r#"{{"_SESSION_ID":"x","d":{}1{}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    let decided = [
        r#"{"_SESSION_ID":"x"}"#.to_string(),
        r#" {"_SESSION_ID" : "x" ,"a":[ ],"b":{ },"c":{"k":[1,{"l":null}]}} "#.into(),
        "{\"_SESSION_ID\":\"x\",\r\n\t\"é\":\"€\\u00e9\\n\\/\"}".into(),
        r#"{"_SESSION_ID":"x","bad":"\ud800","big":1e999,"n":-0.5E+3}"#.into(),
        r#"{"_SESSION_ID":"x","_SESSION_ID":"y","n":1,"n":2,"_SESSION_ATIME":"7"}"#.into(),
        r#"{"_SESSION_ID":12,"_SESSION_CTIME":-0,"_SESSION_ETIME":1.5,"_SESSION_REMOTE_ADDR":null}"#.into(),
        r#"{"_SESSION_ID":"x","_SESSION_EXPIRE_LIST":{"a":"30","b":1}}"#.into(),
        r#"{"_SESSION_ID":"\u0078"}"#.into(),
        deep(128),
        // Refused, by both alike: not sessions.
        "{}".into(),
        r#"{"a":1}"#.into(),
        r#"{"_SESSION_ID":[1]}"#.into(),
        r#"{"_SESSION_ID":"x","_SESSION_EXPIRE_LIST":{"a":"b"}}"#.into(),
    ];
    for text in &decided {
        assert!(paths_agree(text.as_bytes()).unwrap(), "gave up on {text}");
    }
    let given_up: [&[u8]; 19] = [
        b"",
        b"[1]",
        b"{\"_SESSION_ID\":\"x\"",
        b"{\"_SESSION_ID\":\"x\",}",
        b"{\"_SESSION_ID\":\"x\"}x",
        b"{\"_SESSION_ID\":\"x\"}\x0c",
        b"{\"\\u005fSESSION_ID\":\"x\"}",
        b"{\"_SESSION_ID\":\"x\",\"a\x01\":1}",
        b"{\"_SESSION_ID\":\"x\",\"a\":\"\x1f\"}",
        b"{\"_SESSION_ID\":\"x\",\"a\":\"\\u12g4\"}",
        b"{\"_SESSION_ID\":\"x\",\"a\":01}",
        b"{\"_SESSION_ID\":\"x\",\"a\":1.}",
        b"{\"_SESSION_ID\":\"x\",\"a\":1e}",
        b"{\"_SESSION_ID\":\"x\",\"a\":-}",
        b"{\"_SESSION_ID\":\"x\",\"a\":[1,]}",
        b"{\"_SESSION_ID\":\"x\",\"a\":{\"k\" 1}}",
        b"{\"_SESSION_ID\":\"x\",\"a\":[}",
        b"{\"_SESSION_ID\":\"\\ud800\"}",
        b"{\"_SESSION_ID\":\"x\",\"a\":\"\xff\"}",
    ];
    for bytes in given_up {
        assert!(!paths_agree(bytes).unwrap(), "decided {bytes:?}");
    }
    // Deeper than the scanner follows: serde_json's skip decides (and accepts).
    let deeper = deep(129);
    assert!(!paths_agree(deeper.as_bytes()).unwrap());
    assert!(decode(&Bytes::from(deeper)).is_ok());
}

proptest! {
    /// The shortcut of the name order is the byte order.
    #[test]
    fn name_order_is_byte_order(a in prop::collection::vec(any::<u8>(), 0..4), b in prop::collection::vec(any::<u8>(), 0..4)) {
        prop_assert_eq!(crate::record::params::name_order(&a, &b), a.cmp(&b));
    }
}
