//! Vectors written by Perl 5.36's CGI::Session 4.48 / Data::Dumper 2.184 (regenerate with
//! `perl tests/data/gen-vectors.pl`): each `NAME.dump` is what Perl stored, `NAME.json` what
//! Perl's own `CGI::Session::Serialize::default->thaw` returned, in this crate's JSON model.

use std::path::PathBuf;

use cgi_session_core::Serializer;
use cgi_session_dumper::DataDumperSerializer;
use serde_json::{json, Map, Value};

fn vectors() -> Vec<(String, Vec<u8>, Map<String, Value>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("vector directory") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("dump") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let dump = std::fs::read(&path).unwrap();
        let expected: Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
        out.push((name, dump, expected.as_object().unwrap().clone()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn vector(name: &str) -> (Vec<u8>, Map<String, Value>) {
    vectors()
        .into_iter()
        .find(|v| v.0 == name)
        .map(|v| (v.1, v.2))
        .unwrap_or_else(|| panic!("no vector {name}"))
}

#[test]
fn every_perl_vector_thaws_like_perl() {
    let all = vectors();
    assert!(all.len() >= 16, "only {} vectors", all.len());
    for (name, dump, expected) in all {
        let got = DataDumperSerializer::new()
            .thaw(&dump)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn every_perl_vector_survives_rewrite() {
    // Perl -> Rust -> Rust writer -> Rust reader gives the same map.
    let s = DataDumperSerializer::new();
    for (name, dump, _) in vectors() {
        let map = s.thaw(&dump).unwrap();
        let again = s.thaw(&s.freeze(&map).unwrap()).unwrap();
        assert_eq!(again, map, "{name}");
    }
}

#[test]
fn spec_simple_example() {
    let (dump, _) = vector("session_simple");
    let text = String::from_utf8(dump.clone()).unwrap();
    assert!(
        text.starts_with("$D = {") && text.ends_with("};;$D"),
        "{text}"
    );
    let map = DataDumperSerializer::new().thaw(&dump).unwrap();
    assert_eq!(map["user"], json!("alice"));
    assert_eq!(map["_SESSION_REMOTE_ADDR"], json!(""));
    assert!(map["_SESSION_CTIME"].is_i64());
    assert_eq!(map.len(), 5);

    // The literal example from the spec.
    let spec = b"$D = {'user' => 'alice','_SESSION_ID' => '12830b38d71787550572d3cb587ddae7','_SESSION_ATIME' => 1795762418,'_SESSION_CTIME' => 1795762418,'_SESSION_REMOTE_ADDR' => ''};;$D";
    let map = DataDumperSerializer::new().thaw(spec).unwrap();
    assert_eq!(
        Value::Object(map),
        json!({"user": "alice", "_SESSION_ID": "12830b38d71787550572d3cb587ddae7",
               "_SESSION_ATIME": 1795762418, "_SESSION_CTIME": 1795762418,
               "_SESSION_REMOTE_ADDR": ""})
    );
}

#[test]
fn spec_expiry_example() {
    let (dump, _) = vector("session_expiry");
    let map = DataDumperSerializer::new().thaw(&dump).unwrap();
    assert_eq!(map["_SESSION_ETIME"], json!(600));
    assert_eq!(map["_SESSION_EXPIRE_LIST"], json!({"logged_in": 300}));
    assert_eq!(map["_SESSION_REMOTE_ADDR"], json!("192.0.2.7"));
    assert_eq!(map["logged_in"], json!(1));
}

#[test]
fn numbers_versus_numeric_strings() {
    let (dump, _) = vector("numbers");
    let map = DataDumperSerializer::new().thaw(&dump).unwrap();
    assert_eq!(map["int"], json!(42));
    assert_eq!(map["str42"], json!("42"));
    assert_eq!(map["lead0"], json!("007"));
    assert_eq!(map["float"], json!("3.14"));
    assert_eq!(map["nv_int"], json!("3"));
    assert_eq!(map["ten"], json!(1234567890));
    assert_eq!(map["eleven"], json!("12345678901"));
    assert_eq!(map["negten"], json!(-999999999));
    assert_eq!(map["negeleven"], json!("-1234567890"));
    assert_eq!(map["used"], json!(17));
}

#[test]
fn utf8_and_latin1_strings() {
    let (dump, _) = vector("utf8");
    let map = DataDumperSerializer::new().thaw(&dump).unwrap();
    assert_eq!(map["chars"], json!("☺café 😀"));
    assert_eq!(map["latin1_chars"], json!("café")); // raw byte 0xE9
    assert_eq!(map["utf8_bytes"], json!("café")); // raw bytes C3 A9
    assert_eq!(map["clé"], json!("latin-1 key"));
    assert_eq!(map["mixed"], json!("☺$x@y\"q\\ \n"));
}

#[test]
fn odd_keys() {
    let (dump, _) = vector("odd_keys");
    let map = DataDumperSerializer::new().thaw(&dump).unwrap();
    assert_eq!(map["./lost+found"], json!(1));
    assert_eq!(map["it's"], json!("it's"));
    assert_eq!(map["back\\slash"], json!("a\\b"));
    assert_eq!(map[""], json!("empty key"));
    assert_eq!(map["=>"], json!(","));
}

#[test]
fn indent_and_useqq_layouts() {
    let s = DataDumperSerializer::new();
    let expected = json!({"a": [1, {"b": null}], "c d": "x'y", "n": -3, "s": "3"});
    let (dump, _) = vector("indent1");
    assert!(dump.contains(&b'\n'));
    assert_eq!(Value::Object(s.thaw(&dump).unwrap()), expected);
    // Useqq's pure-Perl writer leaves numeric strings bare, so Perl itself reads '3' as 3.
    let (dump, _) = vector("indent2_useqq");
    let map = s.thaw(&dump).unwrap();
    assert_eq!(map["s"], json!(3));
    assert_eq!(map["c d"], json!("x'y"));
    let (dump, _) = vector("useqq_escapes");
    let map = s.thaw(&dump).unwrap();
    assert_eq!(map["t"], json!("☺\t\n\r\0\u{1}\u{1b}\u{7f}$@\"\\"));
    assert_eq!(map["l"], json!("é"));
}

#[test]
fn back_references_are_copied() {
    let s = DataDumperSerializer::new();
    let (dump, _) = vector("backref");
    let map = s.thaw(&dump).unwrap();
    assert_eq!(map["a"], json!([1, 2, {"k": "v"}]));
    assert_eq!(map["b"], map["a"]);
    assert_eq!(map["c"], json!({"k": "v"}));
    let (dump, _) = vector("backref_deep");
    let map = s.thaw(&dump).unwrap();
    assert_eq!(map["x"]["y"][0], json!({"k": "v"}));
    let (dump, _) = vector("backref_inline");
    assert!(String::from_utf8_lossy(&dump).contains("'b' => $D->{'a'}"));
    let map = s.thaw(&dump).unwrap();
    assert_eq!(map["b"], map["a"]);
    let (dump, _) = vector("backref_scalar_ref");
    assert!(String::from_utf8_lossy(&dump).contains("do{my $o}"));
    let map = s.thaw(&dump).unwrap();
    assert_eq!(map["b"], json!({"__perl_ref__": "shared scalar"}));
}

#[test]
fn blessed_objects_are_tagged() {
    let (dump, _) = vector("blessed");
    let s = DataDumperSerializer::new();
    let map = s.thaw(&dump).unwrap();
    assert_eq!(
        map["obj"],
        json!({"__perl_bless__": "My::Class", "value": {"name": "x", "list": [1, 2]}})
    );
    assert_eq!(
        map["arr"],
        json!({"__perl_bless__": "Foo", "value": [1, "two"]})
    );
    // Written fresh, nothing is blessed: a class name from data is not a Perl object.
    let text = s.freeze_to_string(&map).unwrap();
    assert!(
        text.contains("'arr' => {'__perl_bless__' => 'Foo','value' => [1,'two']}"),
        "{text}"
    );
    // Rewritten over Perl's copy: unchanged objects are copied, changed ones stay blessed
    // into the classes Perl blessed, and a new class named by data is not blessed.
    let mut changed = map.clone();
    changed["arr"]["value"][1] = json!("three");
    changed.insert(
        "new".into(),
        json!({"__perl_bless__": "Other::Class", "value": {}}),
    );
    let text = String::from_utf8(s.freeze_over(&changed, Some(&dump)).unwrap()).unwrap();
    assert!(text.contains("bless( [1,'three'], 'Foo' )"), "{text}");
    assert!(
        text.contains("'new' => {'__perl_bless__' => 'Other::Class','value' => {}}"),
        "{text}"
    );
    let obj_entry = dump_entry(&dump, "obj");
    assert!(text.contains(&obj_entry), "{obj_entry} copied into {text}");
    assert_eq!(s.thaw(text.as_bytes()).unwrap(), changed);
}

/// The text of `'key' => ...` in a one-line dump (up to the next top-level entry).
fn dump_entry(dump: &[u8], key: &str) -> String {
    let text = String::from_utf8_lossy(dump);
    let start = text.find(&format!("'{key}' => ")).expect("entry present");
    let mut depth = 0i32;
    let mut end = text.len();
    for (i, c) in text[start..].char_indices() {
        match c {
            '[' | '{' | '(' => depth += 1,
            ']' | '}' | ')' if depth == 0 => {
                end = start + i;
                break;
            }
            ']' | '}' | ')' => depth -= 1,
            ',' if depth == 0 => {
                end = start + i;
                break;
            }
            _ => {}
        }
    }
    text[start..end].to_owned()
}

#[test]
fn every_perl_vector_rewritten_over_itself_reads_the_same() {
    let s = DataDumperSerializer::new();
    for (name, dump, _) in vectors() {
        let map = s.thaw(&dump).unwrap();
        let again = s.freeze_over(&map, Some(&dump)).unwrap();
        assert_eq!(s.thaw(&again).unwrap(), map, "{name}");
    }
}

#[test]
fn untouched_byte_strings_are_copied_and_changed_values_written_fresh() {
    let s = DataDumperSerializer::new();
    // What Perl stores for a UTF-8 byte string, a Latin-1 character string and binary.
    let stored: &[u8] =
        b"$D = {'b' => 'caf\xc3\xa9','l' => 'caf\xe9','x' => '\xff\x00','n' => 1};;$D";
    let mut map = s.thaw(stored).unwrap();
    assert_eq!(map["b"], "café");
    assert_eq!(map["l"], "café", "Latin-1 reads as the same text");
    map.insert("n".into(), json!(2));
    let text = s.freeze_over(&map, Some(stored)).unwrap();
    assert_eq!(
        text,
        b"$D = {'b' => 'caf\xc3\xa9','l' => 'caf\xe9','n' => 2,'x' => '\xff\x00'};;$D".to_vec()
    );
    // Without the stored copy (or with one that does not parse) everything is written fresh.
    let fresh = s.freeze(&map).unwrap();
    assert_eq!(s.freeze_over(&map, None).unwrap(), fresh);
    assert_eq!(s.freeze_over(&map, Some(b"garbage")).unwrap(), fresh);
}
