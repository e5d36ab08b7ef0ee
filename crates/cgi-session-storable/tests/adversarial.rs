//! Malformed and hostile images: each is an error (never a panic, a hang or a huge
//! allocation), with a message that says what is wrong.

use cgi_session_core::Serializer;
use cgi_session_storable::{StorableSerializer, MAX_DEPTH};

const NATIVE: &[u8] = b"\x04\x0b\x0812345678\x04\x08\x08\x08";

fn img(body: &[u8]) -> Vec<u8> {
    let mut v = NATIVE.to_vec();
    v.extend_from_slice(body);
    v
}

fn err(bytes: &[u8]) -> String {
    match StorableSerializer::new().thaw(bytes) {
        Ok(map) => panic!("accepted {bytes:?} as {map:?}"),
        Err(e) => e.to_string(),
    }
}

/// `SX_HASH` with one entry: `value` under key `k`.
fn one(value: &[u8]) -> Vec<u8> {
    let mut body = b"\x03\x01\x00\x00\x00".to_vec();
    body.extend_from_slice(value);
    body.extend_from_slice(b"\x01\x00\x00\x00k");
    img(&body)
}

#[test]
fn headers_that_are_not_freeze_or_nfreeze() {
    assert!(err(b"").contains("ends"));
    assert!(err(b"pst0\x04\x0b").contains("pst0"));
    assert!(err(b"\x04\x0d").contains("newer"));
    assert!(err(b"\x04\x0b\x041234\x04\x04\x04\x08\x03\x00\x00\x00\x00").contains("byte order"));
    assert!(
        err(b"\x04\x0b\x0887654321\x04\x08\x08\x08\x03\x00\x00\x00\x00").contains("byte order")
    );
    assert!(err(b"\x04\x0b\x0812345678\x04\x08\x04\x08\x03\x00\x00\x00\x00").contains("sizes"));
    assert!(err(b"\x04\x0b\xff").contains("claims 255 bytes"));
}

#[test]
fn the_top_level_must_be_one_plain_hash() {
    assert!(err(&img(b"\x02\x00\x00\x00\x00")).contains("not a hash"));
    assert!(err(&img(b"\x0a\x01x")).contains("not a hash"));
    assert!(err(&img(b"\x11\x03Foo\x03\x00\x00\x00\x00")).contains("not a hash"));
    assert!(err(&img(b"\x03\x00\x00\x00\x00junk")).contains("unexpected bytes"));
}

#[test]
fn lengths_beyond_the_input_are_refused_before_allocating() {
    // A hash, an array, a string, a key and a class name claiming 2 GiB.
    assert!(err(&img(b"\x03\xff\xff\xff\x7f")).contains("claims"));
    assert!(err(&one(b"\x04\x02\xff\xff\xff\x7f")).contains("claims"));
    assert!(err(&one(b"\x01\xff\xff\xff\xff")).contains("claims"));
    assert!(err(&one(b"\x18\xff\xff\xff\x7fab")).contains("claims"));
    assert!(err(&img(b"\x03\x01\x00\x00\x00\x08\x81\xff\xff\xff\x7fk")).contains("claims"));
    assert!(err(&one(b"\x04\x11\x80\xff\xff\xff\x7fFoo")).contains("claims"));
    assert!(err(&img(b"\x03\xff\xff\xff\xff")).contains("negative"));
}

#[test]
fn unsupported_opcodes_are_named() {
    for (op, name) in [
        (11u8, "tied"),
        (12, "tied"),
        (13, "tied"),
        (19, "STORABLE_freeze"),
        (21, "tied"),
        (26, "code"),
        (29, "version string"),
        (32, "regular expression"),
        (33, "2 GiB"),
        (36, "unknown"),
        (200, "unknown"),
    ] {
        let msg = err(&one(&[op, 0, 0, 0, 0]));
        assert!(msg.contains(name), "{op}: {msg}");
    }
    // A hash key stored as a Perl value (SHV_K_ISSV).
    assert!(err(&img(b"\x19\x00\x01\x00\x00\x00\x08\x81\x08\x0a\x01k")).contains("SHV_K_ISSV"));
}

#[test]
fn cycles_are_refused() {
    // $h{self} = \%h: the value refers back to the root hash (tag 0).
    assert!(err(&one(b"\x04\x00\x00\x00\x00\x00")).contains("contains itself"));
    // $r = \$r: a reference to itself (tag 1).
    assert!(err(&one(b"\x04\x00\x00\x00\x00\x01")).contains("itself"));
    // An array that holds a reference to itself.
    assert!(err(&one(b"\x04\x02\x01\x00\x00\x00\x04\x00\x00\x00\x00\x02")).contains("itself"));
}

#[test]
fn back_references_must_point_backwards_to_scalars() {
    assert!(err(&one(b"\x00\x00\x00\x00\x07")).contains("not seen yet"));
    // A hash value that is the root hash itself (not a reference to it).
    assert!(err(&one(b"\x00\x00\x00\x00\x00")).contains("where a scalar is expected"));
    assert!(err(&one(b"\x12\x00\x0a\x00")).contains("not named"));
    // SX_OVERLOAD to something that is not an object.
    assert!(err(&one(b"\x14\x03\x00\x00\x00\x00")).contains("not an object"));
}

#[test]
fn shared_references_that_explode_are_refused_quickly() {
    // The session value is an array of 61 array references; each array holds two
    // references to the previous array: 2^60 leaves when expanded, in 700 bytes.
    const N: u32 = 60;
    let mut body = b"\x03\x01\x00\x00\x00".to_vec();
    body.extend_from_slice(b"\x04\x02"); // tags 1, 2
    body.extend_from_slice(&(N + 1).to_le_bytes());
    body.extend_from_slice(b"\x04\x02\x02\x00\x00\x00\x08\x80\x08\x80"); // tags 3..6
    let mut last = 4u32;
    let mut tag = 7u32;
    for _ in 0..N {
        body.extend_from_slice(b"\x04\x02\x02\x00\x00\x00"); // SX_REF, SX_ARRAY of 2
        let array = tag + 1;
        tag += 2;
        for _ in 0..2 {
            body.extend_from_slice(b"\x04\x00"); // SX_REF to SX_OBJECT <last>
            body.extend_from_slice(&last.to_be_bytes());
            tag += 1;
        }
        last = array;
    }
    body.extend_from_slice(b"\x01\x00\x00\x00k");
    let start = std::time::Instant::now();
    let msg = err(&img(&body));
    assert!(msg.contains("expand"), "{msg}");
    assert!(start.elapsed().as_secs() < 5);
    // Fewer levels expand within the bound and read fine.
    let s = StorableSerializer::new();
    let mut small = b"\x03\x01\x00\x00\x00\x04\x02\x02\x00\x00\x00".to_vec();
    small.extend_from_slice(b"\x04\x02\x02\x00\x00\x00\x08\x80\x08\x80"); // tags 3..6
    small.extend_from_slice(b"\x04\x00\x00\x00\x00\x04"); // another ref to array #4
    small.extend_from_slice(b"\x01\x00\x00\x00k");
    let map = s.thaw(&img(&small)).unwrap();
    assert_eq!(map["k"], serde_json::json!([[0, 0], [0, 0]]));
}

#[test]
fn deep_nesting_is_refused() {
    // MAX_DEPTH + 1 nested array references.
    let mut body = b"\x03\x01\x00\x00\x00".to_vec();
    for _ in 0..MAX_DEPTH + 1 {
        body.extend_from_slice(b"\x04\x02\x01\x00\x00\x00");
    }
    body.push(5);
    body.extend_from_slice(b"\x01\x00\x00\x00k");
    assert!(err(&img(&body)).contains("deeper"));
    // A million nested references: refused while parsing, without exhausting the stack.
    let mut body = b"\x03\x01\x00\x00\x00".to_vec();
    body.extend(std::iter::repeat_n(4u8, 1_000_000));
    assert!(err(&img(&body)).contains("deeper"));
}

#[test]
fn character_strings_and_utf8_keys_must_be_utf8() {
    assert!(err(&one(b"\x17\x01\xff")).contains("not valid UTF-8"));
    assert!(err(&img(
        b"\x19\x00\x01\x00\x00\x00\x08\x81\x01\x01\x00\x00\x00\xff"
    ))
    .contains("UTF-8"));
}

#[test]
fn every_truncation_of_a_real_image_is_an_error() {
    let s = StorableSerializer::new();
    let good = s
        .freeze(
            serde_json::json!({"a": [1, "x", null, {"b": 2.5}], "c": {"__perl_ref__": "é"}})
                .as_object()
                .unwrap(),
        )
        .unwrap();
    assert!(s.thaw(&good).is_ok());
    for n in 0..good.len() {
        assert!(s.thaw(&good[..n]).is_err(), "{n}");
    }
}
