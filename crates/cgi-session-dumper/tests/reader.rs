//! The reader on hand-written input: accepted layouts and refused input.

use cgi_session_core::{SerializeError, Serializer};
use cgi_session_dumper::{DataDumperSerializer, MAX_DEPTH};
use serde_json::{json, Value};

fn thaw(text: &str) -> Result<Value, SerializeError> {
    DataDumperSerializer::new()
        .thaw(text.as_bytes())
        .map(Value::Object)
}

fn thaw_err(text: &str) -> String {
    match DataDumperSerializer::new().thaw(text.as_bytes()) {
        Err(SerializeError::Syntax { format, message }) => {
            assert_eq!(format, "default");
            assert!(message.contains(" at byte "), "{message}");
            message
        }
        other => panic!("{text:?} should fail, got {other:?}"),
    }
}

#[test]
fn accepted_layouts() {
    let want = json!({"a": 1});
    for text in [
        "$D = {'a' => 1};;$D",
        "$D = {'a' => 1};$D",
        "$D = {'a' => 1};",
        "$D = {'a' => 1}",
        "{'a' => 1}",
        "{a => 1,}",
        "  $D={\"a\"=>1,};;$D;\n",
        "$VAR1 = {\n          'a' => 1\n        };\n",
        "$D = {\r\n\t'a'\t=>\t1\r\n};\r\n;$D\r\n",
    ] {
        assert_eq!(thaw(text).unwrap(), want, "{text:?}");
    }
    assert_eq!(
        thaw("$D = {foo => [1,2,], -bar => {Foo::Bar => undef}, 7 => '', -3 => 'x'};").unwrap(),
        json!({"foo": [1, 2], "-bar": {"Foo::Bar": null}, "7": "", "-3": "x"})
    );
}

#[test]
fn string_escapes() {
    assert_eq!(
        thaw(r"$D = {'s' => 'a\\b\'c\n\x'};").unwrap(),
        json!({"s": "a\\b'c\\n\\x"})
    );
    assert_eq!(
        thaw(r#"$D = {"s" => "\n\t\r\f\b\a\e\0\101\x41\x{263A}\x{1F600}\$\@\"\\\{"};"#).unwrap(),
        json!({"s": "\n\t\r\u{c}\u{8}\u{7}\u{1b}\0AA\u{263a}\u{1f600}$@\"\\{"})
    );
    assert_eq!(thaw(r#"{"s" => "a@ b"}"#).unwrap(), json!({"s": "a@ b"}));
}

/// A single-quoted string is decoded as a whole: escapes anywhere in it, and bytes that are
/// not UTF-8 make the whole string one character per byte (Perl's reading of a byte string).
#[test]
fn single_quoted_strings_with_escapes_and_bytes() {
    let thaw_bytes = |b: &[u8]| DataDumperSerializer::new().thaw(b).map(Value::Object);
    assert_eq!(
        thaw_bytes(b"$D = {'s' => 'caf\xE9 \\\\ \\' x', 't' => '\\\\'};").unwrap(),
        json!({"s": "caf\u{e9} \\ ' x", "t": "\\"})
    );
    assert_eq!(
        thaw_bytes("$D = {'s' => 'é\\\\\\\\'};".as_bytes()).unwrap(),
        json!({"s": "é\\\\"})
    );
    // `\'` escapes the quote: the string never ends; after `\\` the quote ends it.
    assert!(thaw_err(r"$D = {'a' => 'x\'};").contains("unterminated single-quoted"));
    assert_eq!(thaw(r"$D = {'a' => 'x\\'};").unwrap(), json!({"a": "x\\"}));
}

#[test]
fn numbers() {
    assert_eq!(
        thaw("{a => -0, b => 9223372036854775807, c => 18446744073709551615, d => 18446744073709551616, e => 2.5, f => -1e3, g => 1e999}").unwrap(),
        json!({"a": 0, "b": i64::MAX, "c": u64::MAX, "d": "18446744073709551616", "e": 2.5, "f": -1000.0, "g": "1e999"})
    );
}

#[test]
fn refused_input() {
    for (text, needle) in [
        ("", "expected `{`"),
        ("$D = [1];", "must be a hash"),
        ("$D = 'x';", "must be a hash"),
        ("$D = {'a' => 1", "unterminated hash"),
        ("$D = {'a' => 'x};", "unterminated single-quoted"),
        ("$D = {'a' => \"x};", "unterminated double-quoted"),
        ("$D = {'a' => sub { \"DUMMY\" }};", "code reference"),
        ("$D = {'a' => qr/x/};", "regular expressions"),
        ("$D = {'a' => \\*::STDOUT};", "globs"),
        ("$D = {'a' => system('ls')};", "bareword `system`"),
        ("$D = {'a' => \"$ENV{HOME}\"};", "interpolation"),
        ("$D = {'a' => \"@INC\"};", "interpolation"),
        ("$D = {'a' => \"\\N{U+263A}\"};", "unsupported escape"),
        ("$D = {'a' => \"\\x{D800}\"};", "not a Unicode scalar"),
        ("$D = {'a' => 012};", "leading zero"),
        ("$D = {'a' => 1_000};", "malformed number"),
        ("$D = {'a' => 1} + 1;", "expected `;`"),
        ("$D = {'a' => 1};print 1;", "unexpected `p`"),
        ("$D = {'a' => 1};;$D;x", "unexpected text"),
        ("$D = {'a' => {}};$D->{'a'} = $D;;$D", "cyclic"),
        ("$D = {'a' => {}};$D->{'a'}{'b'} = $D->{'a'};;$D", "cyclic"),
        ("$D = {'a' => $D};", "cyclic"),
        ("$D = {'a' => {'b' => $D->{'a'}}};", "cyclic"),
        ("$D = {'a' => $D->{'c'},'b' => 1};", "does not exist"),
        (
            "$D = {'a' => $D->{'b'}[0],'b' => [$D->{'c'}],'c' => 1};",
            "before that value is defined",
        ),
        (
            "$D = {'a' => {},'b' => {}};$D->{'a'} = $D->{'b'};$D->{'b'} = $D->{'c'};;$D",
            "before that value is defined",
        ),
        (
            "$D = {'a' => {}};$D->{'a'} = $X->{'b'};;$D",
            "unknown variable",
        ),
        ("$D = {'a' => {}};$D{'a'} = $D->{'b'};;$D", "expected `->`"),
        ("{'a' => $D->{'b'}}", "without a `$NAME = `"),
        ("$D = {'a' => do{my $o}};", "never assigned"),
        (
            "$D = {'a' => \\do{my $o}};${$D->{'a'}} = $D;;$D",
            "not supported",
        ),
        ("$D = {'a' => bless( 'x', 'C' )};", "`bless` needs"),
        ("$D = {'a' => bless( {}, C )};", "class name"),
        ("$D = {'a' => 1};$D->{'a'} = 5;", "back-reference such as"),
        (
            "$D = {'a' => [1],'b' => 2};$D->{'a'}[5] = $D->{'b'};",
            "cannot assign to `$D->{'a'}[5]`",
        ),
        ("$D = {a b => 1};", "`=>`"),
        ("$D = {'a' => 1 'b' => 2};", "expected `,` or `}`"),
        ("$D = {'a' => [1 2]};", "expected `,` or `]`"),
        ("\u{feff}{}", "expected `{`"),
    ] {
        let message = thaw_err(text);
        assert!(message.contains(needle), "{text:?}: {message}");
    }
}

#[test]
fn inline_references_may_point_forward() {
    // Data::Dumper only points backwards, but the whole hash literal is known, so a forward
    // reference has one meaning (Perl's own eval would give undef for any inline reference).
    assert_eq!(
        thaw("$D = {'a' => $D->{'b'},'b' => [1]};").unwrap(),
        json!({"a": [1], "b": [1]})
    );
}

#[test]
fn depth_limit() {
    let ok = format!(
        "{{'a' => {}{}}}",
        "[".repeat(MAX_DEPTH - 1),
        "]".repeat(MAX_DEPTH - 1)
    );
    assert!(thaw(&ok).is_ok());
    let deep = format!(
        "{{'a' => {}{}}}",
        "[".repeat(MAX_DEPTH),
        "]".repeat(MAX_DEPTH)
    );
    assert!(thaw_err(&deep).contains("nested deeper"));
    // Far beyond: no stack overflow.
    let hostile = format!("{{'a' => {}", "[".repeat(1_000_000));
    assert!(thaw_err(&hostile).contains("nested deeper"));
    let refs = format!("{{'a' => {}1}}", "\\".repeat(1_000_000));
    assert!(thaw_err(&refs).contains("nested deeper"));
    // Writing refuses the same depth.
    let mut v = json!(1);
    for _ in 0..MAX_DEPTH {
        v = json!([v]);
    }
    let map = json!({ "a": v });
    assert!(DataDumperSerializer::new()
        .freeze(map.as_object().unwrap())
        .is_err());
}

#[test]
fn back_references_cannot_nest_past_the_depth_limit() {
    // Each statement copies the previous deep value one level deeper.
    let mut text = format!("$D = {{'a0' => {}1{}", "[".repeat(100), "]".repeat(100));
    for i in 1..40 {
        text.push_str(&format!(",'a{i}' => [{{}}]"));
    }
    text.push_str("};");
    for i in 1..40 {
        text.push_str(&format!("$D->{{'a{i}'}}[0] = $D->{{'a{}'}};", i - 1));
    }
    assert!(thaw_err(&text).contains("nested deeper"));
}

#[test]
fn expansion_attack_is_refused() {
    // Each level doubles the previous one: 2^40 values if copied naively.
    let mut text = String::from("$D = {'l0' => ['xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx']");
    for i in 1..40 {
        text.push_str(&format!(
            ",'l{i}' => [$D->{{'l{p}'}},$D->{{'l{p}'}}]",
            p = i - 1
        ));
    }
    text.push_str("};");
    assert!(thaw_err(&text).contains("too much data"));
}
