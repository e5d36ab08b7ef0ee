//! The bodies of cgi-session's fuzz targets, one function per parser that reads untrusted
//! bytes. Each must return normally for every input: a panic is a bug.
//!
//! The coverage-guided targets in `fuzz/` (cargo-fuzz, libFuzzer) call these functions;
//! `scripts/fuzz.sh` runs them for a long time. The tests of this crate replay the committed
//! corpus (seeds and every crash found so far) and a bounded random run, so `cargo test`
//! keeps a fuzz smoke run without a nightly toolchain.
#![forbid(unsafe_code)]

use cgi_session::record::{self, Record};
use cgi_session::{
    DataDumperSerializer, Dsn, JsonSerializer, Serializer, SessionId, StorableSerializer,
};
use cgi_session_memcache_client::proto::{parse_reply, Parsed, ReplyKind};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target, by name: the names of `fuzz/fuzz_targets/*.rs` and `fuzz/corpus/*`.
pub const TARGETS: &[(&str, Target)] = &[
    ("json_session", json_session),
    ("perl_session", perl_session),
    ("storable_session", storable_session),
    ("dsn", dsn),
    ("cookie_and_id", cookie_and_id),
    ("meta_reply", meta_reply),
    ("text_reply", text_reply),
    ("metadump_line", metadump_line),
    ("sealed_item", sealed_item),
];

/// The JSON session reader: bytes -> session record, by the record codec (parameters kept as
/// their stored text) and by the map path (`thaw` + `Record::from_map`), which must agree;
/// inside the record codec, its hand-written fast path and serde_json's walk must agree
/// whenever the fast path does not give up; anything accepted re-encodes to the same record,
/// and canonical bytes re-encode to themselves.
pub fn json_session(data: &[u8]) {
    match record::json_decode_paths(data) {
        (None, _) => {}
        (Some(Err(fast)), Err(walked)) => assert_eq!(fast.to_string(), walked.to_string()),
        (Some(Ok(fast)), Ok(walked)) => {
            assert_eq!(fast, walked, "the fast path and serde_json's walk disagree");
            let mut fast = fast;
            let mut walked = walked;
            assert_eq!(
                fast.encode(&JsonSerializer).expect("encodes"),
                walked.encode(&JsonSerializer).expect("encodes"),
                "the fast path and serde_json's walk keep different texts"
            );
        }
        (Some(fast), walked) => {
            panic!("the fast path read {fast:?}, serde_json's walk {walked:?}")
        }
    }
    let by_map = JsonSerializer
        .thaw(data)
        .map_err(|e| e.to_string())
        .and_then(|map| Record::from_map(map).map_err(|e| e.to_string()));
    let by_record = Record::decode(&JsonSerializer, data);
    let mut record = match (by_record, by_map) {
        (Err(_), Err(_)) => return,
        (Err(e), Ok(_)) => panic!("the record reader refused what the map path accepts: {e}"),
        (Ok(record), Ok(expected)) => {
            assert_eq!(record, expected, "the two readers disagree");
            record
        }
        // Accepted with a parameter the full decoder refuses (kept as stored text).
        (Ok(record), Err(_)) => record,
    };
    let bytes = record
        .encode(&JsonSerializer)
        .expect("an accepted record encodes");
    let again = Record::decode(&JsonSerializer, &bytes).expect("our record reads back");
    assert_eq!(again, record);
    if let Ok(canonical) = JsonSerializer.freeze(&record.to_map()) {
        if let Ok(mut read) = Record::decode(&JsonSerializer, &canonical) {
            assert_eq!(
                read.encode(&JsonSerializer).expect("encodes"),
                canonical,
                "canonical bytes re-encode to themselves"
            );
        }
    }
}

/// The Perl Data::Dumper reader; anything accepted is written and read back stably.
pub fn perl_session(data: &[u8]) {
    let perl = DataDumperSerializer::new();
    let Ok(map) = perl.thaw(data) else {
        return;
    };
    let written = perl.freeze(&map).expect("an accepted map can be written");
    let once = perl.thaw(&written).expect("our own output reads back");
    let twice = perl
        .thaw(&perl.freeze(&once).expect("written again"))
        .expect("read again");
    assert_eq!(once, twice);
    let _ = Record::from_map(once);
}

/// The Perl Storable reader (`serializer:storable`); anything accepted is written fresh and
/// read back stably (Perl's immortal yes/no come back as 1 and ""), and written over its own
/// image it reads back as the same map.
pub fn storable_session(data: &[u8]) {
    let storable = StorableSerializer::new();
    let Ok(map) = storable.thaw(data) else {
        return;
    };
    let written = storable
        .freeze(&map)
        .expect("an accepted map can be written");
    let once = storable.thaw(&written).expect("our own output reads back");
    let twice = storable
        .thaw(&storable.freeze(&once).expect("written again"))
        .expect("read again");
    assert_eq!(once, twice);
    let over = storable
        .freeze_over(&map, Some(data))
        .expect("an accepted map can be written over its image");
    assert_eq!(
        storable.thaw(&over).expect("rewritten output reads back"),
        map
    );
    let _ = Record::from_map(map);
}

/// The DSN parser; anything accepted prints to a DSN that parses to the same value.
pub fn dsn(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = Dsn::parse(text) {
        assert_eq!(Dsn::parse(&parsed.to_string()).as_ref(), Ok(&parsed));
    }
}

/// The cookie header and query string of a CGI request, and the id they carry.
pub fn cookie_and_id(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let vars = [
        ("HTTP_COOKIE", text.as_ref()),
        ("QUERY_STRING", text.as_ref()),
        ("REQUEST_METHOD", "GET"),
    ];
    if let Ok(request) = cgi_session_cgi::CgiRequest::from_parts(vars, std::io::empty(), 1024) {
        if let Some(id) = request.session_id("CGISESSID") {
            if let Ok(parsed) = SessionId::parse(id) {
                assert_eq!(parsed.as_str(), id);
                assert!(!parsed.to_string().contains(id) || id.len() <= 8);
            }
        }
    }
    for c in cookie::Cookie::split_parse(text.as_ref()).flatten() {
        let _ = SessionId::parse(c.value());
    }
}

fn replies(kind: ReplyKind, data: &[u8]) {
    let mut rest = data;
    while !rest.is_empty() {
        match parse_reply(kind, rest, 1 << 20) {
            Ok(Parsed::Done(_, used)) => {
                assert!(used > 0 && used <= rest.len(), "a reply uses its own bytes");
                rest = &rest[used..];
            }
            Ok(Parsed::NeedMore) | Err(_) => return,
        }
    }
}

/// memcached's meta-protocol replies, as a stream.
pub fn meta_reply(data: &[u8]) {
    replies(ReplyKind::Meta, data);
    replies(ReplyKind::Version, data);
    replies(ReplyKind::Stats, data);
}

/// memcached's classic text-protocol replies, as a stream.
pub fn text_reply(data: &[u8]) {
    replies(ReplyKind::TextGet, data);
    replies(ReplyKind::TextStatus, data);
}

/// One line of `lru_crawler metadump` output.
pub fn metadump_line(data: &[u8]) {
    for line in data.split(|b| *b == b'\n') {
        let _ = cgi_session_memcache_client::parse_metadump_line(line);
    }
}

/// The id and keys the `sealed_item` target opens items with; its seeds were sealed with them.
pub const SEALED_ITEM_ID: &str = "fuzzfuzzfuzzfuzz";

/// The key ring of the `sealed_item` target: key 2 (bytes all 2) current, key 1 (bytes all 1)
/// previous.
pub fn sealed_item_keys() -> cgi_session_sealed::KeyRing {
    use cgi_session_sealed::{KeyRing, SealingKey};
    KeyRing::new(SealingKey::new(2, [2; 32]))
        .with_previous([SealingKey::new(1, [1; 32])])
        .expect("two distinct key ids")
}

/// The sealed-item reader of `cgi-session-sealed` (stored bytes are untrusted: memcached
/// takes writes from anyone who reaches it): never panics; what opens was sealed for this id
/// with a key of the ring, and seals and opens again to the same bytes.
pub fn sealed_item(data: &[u8]) {
    let keys = sealed_item_keys();
    let id = SessionId::parse(SEALED_ITEM_ID).expect("a valid id");
    let _ = cgi_session_sealed::is_sealed(data);
    let key_id = cgi_session_sealed::key_id_of(data);
    let Ok(plain) = cgi_session_sealed::open(&keys, &id, data) else {
        return;
    };
    assert!(
        matches!(key_id, Some(1 | 2)),
        "opened with a key of the ring"
    );
    let again = cgi_session_sealed::seal(&keys, &id, &plain).expect("seals");
    assert_eq!(cgi_session_sealed::key_id_of(&again), Some(2));
    assert_eq!(
        cgi_session_sealed::open(&keys, &id, &again).expect("opens"),
        plain
    );
    let other = SessionId::parse("fuzzfuzzfuzzfuzy").expect("a valid id");
    assert!(cgi_session_sealed::open(&keys, &other, data).is_err());
}
