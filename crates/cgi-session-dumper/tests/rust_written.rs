//! Text written by this crate, checked against what Perl's CGI::Session thaws from it.
//!
//! `tests/data/rust_written/samples.json` holds sample maps; `NAME.dump` (characters style) and
//! `NAME.bytes.dump` ([`StringStyle::Utf8Bytes`]) are this crate's output for them (rewrite them
//! with `CGI_SESSION_DUMPER_BLESS=1 cargo test -p cgi-session-dumper --test rust_written`), and
//! `NAME.perl.json` / `NAME.bytes.perl.json` record what Perl 5.36's
//! `CGI::Session::Serialize::default->thaw` returned for those files (`perl
//! tests/data/gen-vectors.pl`; Perl strings are written as JSON characters, byte strings are
//! *not* decoded, so a UTF-8 byte string shows up as mojibake there).

use std::path::PathBuf;

use cgi_session_core::Serializer;
use cgi_session_dumper::{DataDumperSerializer, StringStyle};
use serde_json::{json, Map, Value};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/rust_written")
}

fn samples() -> Map<String, Value> {
    let text = std::fs::read(dir().join("samples.json")).unwrap();
    sorted(&serde_json::from_slice::<Value>(&text).unwrap())
        .as_object()
        .unwrap()
        .clone()
}

/// Keys in sorted order at every level, so the goldens do not depend on whether serde_json's
/// `preserve_order` feature is enabled somewhere in the workspace.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        Value::Object(m) => {
            let mut entries: Vec<_> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        v => v.clone(),
    }
}

fn read_json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir().join(name)).unwrap()).unwrap()
}

/// The map as Perl should see it: floats as strings of their digits, booleans as 1 / "".
fn as_perl_sees_it(v: &Value) -> Value {
    match v {
        Value::Bool(b) => {
            if *b {
                json!(1)
            } else {
                json!("")
            }
        }
        Value::Number(n) if n.is_f64() => json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.iter().map(as_perl_sees_it).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), as_perl_sees_it(v)))
                .collect(),
        ),
        v => v.clone(),
    }
}

/// A stored session in which Perl blessed, under each key of `map`, the classes `map` uses
/// there (with other contents, so nothing is copied from it).
fn perl_objects_for(map: &Map<String, Value>) -> String {
    fn classes(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Array(a) => a.iter().for_each(|v| classes(v, out)),
            Value::Object(m) => {
                if let Some(Value::String(c)) = m.get("__perl_bless__") {
                    out.push(c.clone());
                }
                m.values().for_each(|v| classes(v, out));
            }
            _ => {}
        }
    }
    let quote = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    let entries: Vec<String> = map
        .iter()
        .map(|(k, v)| {
            let mut found = Vec::new();
            classes(v, &mut found);
            let objects: Vec<String> = found
                .iter()
                .map(|c| format!("bless( {{'previous' => 1}}, {} )", quote(c)))
                .collect();
            format!("{} => [{}]", quote(k), objects.join(","))
        })
        .collect();
    format!("$D = {{{}}};;$D", entries.join(","))
}

#[test]
fn output_matches_goldens_and_perl_reads_it_back() {
    let bless = std::env::var_os("CGI_SESSION_DUMPER_BLESS").is_some();
    for (style, suffix) in [
        (StringStyle::Characters, ""),
        (StringStyle::Utf8Bytes, ".bytes"),
    ] {
        let s = DataDumperSerializer::new().with_string_style(style);
        for (name, map) in samples() {
            let map = map.as_object().unwrap();
            // Written over a stored copy in which Perl blessed the samples' classes under the
            // same keys: objects are blessed only into classes Perl itself stored there (see
            // `BLESS_TAG`).
            let previous = perl_objects_for(map);
            let text = s.freeze_over(map, Some(previous.as_bytes())).unwrap();
            let golden = dir().join(format!("{name}{suffix}.dump"));
            if bless {
                std::fs::write(&golden, &text).unwrap();
                continue;
            }
            assert_eq!(
                String::from_utf8(text.clone()).unwrap(),
                std::fs::read_to_string(&golden).unwrap(),
                "{name}{suffix}"
            );
            // What Perl thawed from that text (recorded).
            let perl = read_json(&format!("{name}{suffix}.perl.json"));
            let mut expected = as_perl_sees_it(&Value::Object(map.clone()));
            if style == StringStyle::Utf8Bytes {
                // Perl sees the UTF-8 bytes of non-ASCII text, one "character" per byte.
                expected = latin1_view(&expected);
            }
            if name == "numbers" {
                // Perl reads the quoted floats as strings and numifies them on use.
                assert_eq!(perl["float"], json!("3.25"));
                assert_eq!(perl["tiny"], json!("1e-300"));
                assert_eq!(perl["huge"], json!("1e300"));
                let mut p = perl.clone();
                for k in ["float", "tiny", "huge"] {
                    p[k] = expected[k].clone();
                }
                assert_eq!(p, expected, "{name}{suffix}");
            } else {
                assert_eq!(perl, expected, "{name}{suffix}");
            }
            // And this crate reads its own text back.
            let back = s.thaw(&text).unwrap();
            let mut want = as_perl_sees_it(&Value::Object(map.clone()));
            if name == "numbers" {
                for (k, v) in [("float", "3.25"), ("tiny", "1e-300"), ("huge", "1e300")] {
                    want[k] = json!(v);
                }
            }
            if name == "structures" {
                want["bools"] = json!([1, ""]);
            }
            assert_eq!(Value::Object(back), want, "{name}{suffix}");
        }
    }
}

fn latin1_view(v: &Value) -> Value {
    let conv = |s: &str| s.bytes().map(char::from).collect::<String>();
    match v {
        Value::String(s) => Value::String(conv(s)),
        Value::Array(a) => Value::Array(a.iter().map(latin1_view).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (conv(k), latin1_view(v))).collect())
        }
        v => v.clone(),
    }
}

#[test]
fn characters_style_output_is_what_data_dumper_writes_for_character_strings() {
    // Data::Dumper 2.184 wrote `"\x{263a}caf\x{e9} \x{1f600}"` for the character string
    // "\x{263a}caf\x{e9} \x{1f600}" (see tests/data/vectors/utf8.dump).
    let map = json!({"chars": "☺café 😀"});
    let text = DataDumperSerializer::new()
        .freeze_to_string(map.as_object().unwrap())
        .unwrap();
    assert_eq!(
        text,
        r#"$D = {'chars' => "\x{263a}caf\x{e9} \x{1f600}"};;$D"#
    );
}
