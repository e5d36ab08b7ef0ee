//! Scalars: single- and double-quoted strings with their escapes, and numbers.

use cgi_session_core::SerializeError;
use serde_json::{Number, Value};

use super::{is_word, Parser};

impl<'a> Parser<'a> {
    /// `'...'`: only `\\` and `\'` are escapes; every other byte is literal.
    pub(super) fn single_quoted(&mut self) -> Result<String, SerializeError> {
        let at = self.pos;
        self.pos += 1;
        // The bytes between escapes are copied in runs (found with memchr), not byte by byte:
        // strings are most of a stored session. A string without escapes is decoded straight
        // from the input.
        let mut raw = Vec::new();
        loop {
            let rest = self.src.get(self.pos..).unwrap_or_default();
            let Some(i) = memchr::memchr2(b'\'', b'\\', rest) else {
                return Err(self.err(at, "unterminated single-quoted string"));
            };
            let run = &rest[..i];
            if rest[i] == b'\'' {
                self.pos += i + 1;
                let mut s = String::with_capacity(raw.len() + run.len());
                if raw.is_empty() {
                    decode_raw(run, &mut s);
                } else {
                    raw.extend_from_slice(run);
                    decode_raw(&raw, &mut s);
                }
                return Ok(s);
            }
            raw.extend_from_slice(run);
            self.pos += i;
            // A backslash: an escape only before `\` or `'`, else a literal backslash.
            match self.peek_at(1) {
                Some(escaped @ (b'\\' | b'\'')) => {
                    raw.push(escaped);
                    self.pos += 2;
                }
                _ => {
                    raw.push(b'\\');
                    self.pos += 1;
                }
            }
        }
    }

    /// `"..."` with the escapes Data::Dumper's `Useqq` and UTF-8 writers emit. Interpolation
    /// (`$x`, `@x`) is refused, never performed.
    pub(super) fn double_quoted(&mut self) -> Result<String, SerializeError> {
        let at = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut raw = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.err(at, "unterminated double-quoted string"));
            };
            let here = self.pos;
            self.pos += 1;
            let c = match b {
                b'"' => {
                    decode_raw(&raw, &mut out);
                    return Ok(out);
                }
                b'$' => {
                    return Err(self.err(
                        here,
                        "unescaped `$` in a double-quoted string (interpolation is not supported)",
                    ))
                }
                b'@' if self
                    .peek()
                    .is_some_and(|n| is_word(n) || matches!(n, b'{' | b'$' | b':')) =>
                {
                    return Err(self.err(
                        here,
                        "unescaped `@` in a double-quoted string (interpolation is not supported)",
                    ))
                }
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.err(at, "unterminated double-quoted string"));
                    };
                    self.pos += 1;
                    match e {
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'f' => '\x0c',
                        b'b' => '\x08',
                        b'a' => '\x07',
                        b'e' => '\x1b',
                        b'0'..=b'7' => {
                            let mut code = u32::from(e - b'0');
                            for _ in 0..2 {
                                match self.peek() {
                                    Some(d @ b'0'..=b'7') => {
                                        code = code * 8 + u32::from(d - b'0');
                                        self.pos += 1;
                                    }
                                    _ => break,
                                }
                            }
                            self.code_point(code, here)?
                        }
                        b'x' => {
                            let code = if self.peek() == Some(b'{') {
                                self.pos += 1;
                                let start = self.pos;
                                while self.peek().is_some_and(|d| d.is_ascii_hexdigit()) {
                                    self.pos += 1;
                                }
                                let digits = self.src.get(start..self.pos).unwrap_or_default();
                                if digits.len() > 8 {
                                    return Err(self.err(here, "`\\x{...}` code point too large"));
                                }
                                let code = hex(digits);
                                self.expect(b"}", "`}` closing `\\x{`")?;
                                code
                            } else {
                                let start = self.pos;
                                while self.pos - start < 2
                                    && self.peek().is_some_and(|d| d.is_ascii_hexdigit())
                                {
                                    self.pos += 1;
                                }
                                hex(self.src.get(start..self.pos).unwrap_or_default())
                            };
                            self.code_point(code, here)?
                        }
                        e if e.is_ascii_alphanumeric() => {
                            return Err(self.err(
                                here,
                                format!(
                                    "unsupported escape `\\{}` in a double-quoted string",
                                    char::from(e)
                                ),
                            ))
                        }
                        // `\$`, `\@`, `\"`, `\\`, and any other punctuation or raw byte: itself.
                        e => {
                            raw.push(e);
                            continue;
                        }
                    }
                }
                b => {
                    raw.push(b);
                    continue;
                }
            };
            decode_raw(&raw, &mut out);
            raw.clear();
            out.push(c);
        }
    }

    fn code_point(&self, code: u32, at: usize) -> Result<char, SerializeError> {
        char::from_u32(code).ok_or_else(|| {
            self.err(
                at,
                format!(
                    "code point {code:#x} is not a Unicode scalar value (surrogate or too large)"
                ),
            )
        })
    }

    /// A bare number. Integers become JSON integers (i64, or u64 above `i64::MAX`); integers
    /// beyond u64 keep their digits as a string; other numbers become floats (or keep their
    /// text as a string when it is not a finite f64).
    pub(super) fn number(&mut self) -> Result<Value, SerializeError> {
        let at = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let int_digits = self.pos - int_start;
        if int_digits == 0 {
            return Err(self.err(at, "expected a digit after `-`"));
        }
        if int_digits > 1 && self.src.get(int_start) == Some(&b'0') {
            return Err(self.err(
                at,
                "numbers with a leading zero (Perl octal literals) are not supported",
            ));
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') && self.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
            is_float = true;
            self.pos += 1;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let save = self.pos;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                is_float = true;
                while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    self.pos += 1;
                }
            } else {
                self.pos = save;
            }
        }
        if self.peek().is_some_and(|b| is_word(b) || b == b'.') {
            return Err(self.err(self.pos, "malformed number"));
        }
        let text =
            std::str::from_utf8(self.src.get(at..self.pos).unwrap_or_default()).unwrap_or_default();
        if !is_float {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Value::Number(i.into()));
            }
            if let Ok(u) = text.parse::<u64>() {
                return Ok(Value::Number(u.into()));
            }
            return Ok(Value::String(text.to_owned()));
        }
        Ok(text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or_else(|| Value::String(text.to_owned()), Value::Number))
    }
}

fn hex(digits: &[u8]) -> u32 {
    digits.iter().fold(0u32, |acc, &d| {
        let v = char::from(d).to_digit(16).unwrap_or(0);
        acc.wrapping_mul(16).wrapping_add(v)
    })
}

/// Decodes the raw bytes of a string literal: UTF-8 when valid (what a Perl program that
/// stored UTF-8 byte strings meant), otherwise one character per byte (Perl's own reading of
/// a byte string, e.g. `'caf\xE9'` written for the character string "café").
fn decode_raw(bytes: &[u8], out: &mut String) {
    match std::str::from_utf8(bytes) {
        Ok(s) => out.push_str(s),
        Err(_) => out.extend(bytes.iter().map(|&b| char::from(b))),
    }
}
