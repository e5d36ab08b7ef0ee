//! The writer: JSON model -> `$D = {...};;$D`, as `CGI::Session::Serialize::default` writes it
//! (Data::Dumper with `Indent(0)`, `Purity(1)`, `Useqq(0)`, `Quotekeys(1)`, `Terse(0)`, variable
//! name `D`, then `;$D` appended).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use cgi_session_core::SerializeError;
use serde_json::{Map, Number, Value};

use crate::read::Previous;
use crate::{as_bless, as_ref, StringStyle, BLESS_TAG, BLESS_VALUE, FORMAT, MAX_DEPTH, REF_TAG};

/// How values are written.
#[derive(Clone, Copy)]
pub(crate) struct Cx<'a> {
    pub(crate) style: StringStyle,
    /// The classes a `__perl_bless__` object may be blessed into: only classes that Perl
    /// itself blessed in the stored copy, under the same top-level key. Any other such object
    /// is written as a plain hash, so
    /// that data from outside (a form field, a JSON body) can never make a Perl object of a
    /// class it names.
    pub(crate) blessable: &'a BTreeSet<String>,
}

/// Writes `map` as Data::Dumper text (no value is blessed).
pub(crate) fn freeze(
    map: &Map<String, Value>,
    style: StringStyle,
) -> Result<String, SerializeError> {
    let none = BTreeSet::new();
    let cx = Cx {
        style,
        blessable: &none,
    };
    let mut out = String::with_capacity(64 + 32 * map.len());
    out.push_str("$D = ");
    write_hash(&mut out, map, 1, cx)?;
    out.push_str(";;$D");
    Ok(out)
}

/// Writes `map` as a new version of `previous`: each top-level entry whose value is unchanged
/// is copied byte for byte from it (so Perl reads exactly what it stored: byte strings stay
/// byte strings, Latin-1 stays Latin-1, objects stay blessed); the others are written fresh,
/// blessing only classes `previous` blessed under the same key.
pub(crate) fn freeze_over(
    map: &Map<String, Value>,
    style: StringStyle,
    previous: &Previous,
) -> Result<Vec<u8>, SerializeError> {
    let none = BTreeSet::new();
    let mut out: Vec<u8> = Vec::with_capacity(64 + previous.src.len());
    out.extend_from_slice(b"$D = {");
    let mut fresh = String::new();
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match previous.entries.get(key.as_str()) {
            Some((span, old)) if old == value => out.extend_from_slice(&previous.src[span.clone()]),
            _ => {
                fresh.clear();
                write_str(&mut fresh, key, style);
                fresh.push_str(" => ");
                let cx = Cx {
                    style,
                    blessable: previous.blessed_classes.get(key.as_str()).unwrap_or(&none),
                };
                write_value(&mut fresh, value, 1, cx)?;
                out.extend_from_slice(fresh.as_bytes());
            }
        }
    }
    out.extend_from_slice(b"};;$D");
    Ok(out)
}

fn error(message: String) -> SerializeError {
    SerializeError::Syntax {
        format: FORMAT,
        message,
    }
}

/// `level` is the nesting level of the container being written (the session hash is 1).
fn check_level(level: usize) -> Result<(), SerializeError> {
    if level > MAX_DEPTH {
        Err(error(format!(
            "the value is nested deeper than {MAX_DEPTH} levels; store a flatter structure"
        )))
    } else {
        Ok(())
    }
}

fn write_hash(
    out: &mut String,
    map: &Map<String, Value>,
    level: usize,
    cx: Cx<'_>,
) -> Result<(), SerializeError> {
    check_level(level)?;
    out.push('{');
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, key, cx.style);
        out.push_str(" => ");
        write_value(out, value, level, cx)?;
    }
    out.push('}');
    Ok(())
}

/// Writes `value`, which sits inside `level` enclosing containers.
fn write_value(
    out: &mut String,
    value: &Value,
    level: usize,
    cx: Cx<'_>,
) -> Result<(), SerializeError> {
    match value {
        Value::Null => out.push_str("undef"),
        // Perl's own booleans dump as 1 and '' (`!!1`, `!!0`); they read back as 1 and "".
        Value::Bool(true) => out.push('1'),
        Value::Bool(false) => out.push_str("''"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s, cx.style),
        Value::Array(items) => {
            check_level(level + 1)?;
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item, level + 1, cx)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            if let Some((class, inner)) =
                as_bless(map).filter(|(class, _)| cx.blessable.contains(*class))
            {
                check_level(level + 1)?;
                let blessable = match inner {
                    Value::Array(_) => true,
                    Value::Object(m) => as_ref(m).is_some() || as_bless(m).is_none(),
                    _ => false,
                };
                if !blessable {
                    return Err(error(format!(
                        "cannot write `{BLESS_TAG}` {class:?}: its `{BLESS_VALUE}` must be an \
                         array, an object or a `{REF_TAG}` object (Perl blesses references only)"
                    )));
                }
                out.push_str("bless( ");
                match inner {
                    // Data::Dumper's form for a blessed scalar reference: `bless( \'v', ...)`
                    // would bless a read-only constant, which Perl refuses at thaw time.
                    Value::Object(m) if as_ref(m).is_some() => {
                        check_level(level + 2)?;
                        out.push_str("do{\\(my $o = ");
                        if let Some(referent) = as_ref(m) {
                            write_value(out, referent, level + 2, cx)?;
                        }
                        out.push_str(")}");
                    }
                    inner => write_value(out, inner, level + 1, cx)?,
                }
                out.push_str(", ");
                write_str(out, class, cx.style);
                out.push_str(" )");
            } else if let Some(inner) = as_ref(map) {
                check_level(level + 1)?;
                out.push('\\');
                write_value(out, inner, level + 1, cx)?;
            } else {
                write_hash(out, map, level + 1, cx)?;
            }
        }
    }
    Ok(())
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        // Data::Dumper's XS writer quotes integers longer than 10 characters "so that a 32 bit
        // system reads them better"; a 64-bit perl reads any i64/u64 literal exactly, and a bare
        // number keeps its type when this crate reads it back, so all integers are bare here.
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        // Data::Dumper quotes every non-integer ('3.14', '1e+20'); so does this writer. Perl
        // numifies the string to the same double; this crate reads it back as a string.
        out.push('\'');
        let a = f.abs();
        if f == 0.0 || (1e-5..1e16).contains(&a) {
            let _ = write!(out, "{f}");
        } else {
            let _ = write!(out, "{f:e}");
        }
        out.push('\'');
    } else {
        // Only reachable with serde_json's `arbitrary_precision`: keep the digits, quoted.
        write_single_quoted(out, &n.to_string());
    }
}

/// Writes a string (or hash key; `Quotekeys(1)` quotes every key).
fn write_str(out: &mut String, s: &str, style: StringStyle) {
    if s.is_ascii() || style == StringStyle::Utf8Bytes {
        write_single_quoted(out, s);
    } else {
        write_double_quoted(out, s);
    }
}

/// `'...'` with only `\` and `'` escaped, as Data::Dumper's `Useqq(0)` writer does; control
/// characters are written raw (Perl's single quotes keep them).
fn write_single_quoted(out: &mut String, s: &str) {
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

/// `"..."` with every non-ASCII character as `\x{hex}`, as Data::Dumper writes a Perl character
/// string (UTF8 flag on) even with `Useqq(0)`; Perl reads it back as the same characters.
fn write_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("\\$"),
            '@' => out.push_str("\\@"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let _ = write!(out, "\\x{{{:x}}}", u32::from(c));
            }
        }
    }
    out.push('"');
}
