//! A hand-written scanner of a stored record's top level: the fast path of
//! [`decode`](super::decode).
//!
//! serde_json's generic walk of the top level (its `MapAccess` machinery, a `RawValue` skip
//! per value) cost about 6,500 instructions for the 300-byte record of the benchmarks
//! (callgrind, `cycle_instructions record`), the largest single cost of the session layer;
//! this scanner does the same work, including handing the members over, in about 3,200.
//! It does only what the record reader needs: it checks the JSON syntax of the whole text
//! and hands each top-level member over as the byte ranges of its name and of its value's
//! text. It decodes nothing: serde_json still decodes every value that is read, and decides
//! every error.
//!
//! It must never accept what serde_json refuses, and the ranges it gives must be those
//! serde_json's walk finds (a value's text from its first byte to its last, without the
//! whitespace around it). Whatever it is unsure of, it gives up on (`None`) and the caller
//! runs serde_json instead, which then gives the record or the exact error: a name with
//! escapes or control characters, any syntax error, nesting deeper than [`MAX_DEPTH`].
//! Inside a value it accepts what serde_json's skip (`ignore_value`, which `RawValue`
//! uses) accepts, and no more: any `\uXXXX` escape (a lone surrogate too: the skip does not
//! decode it), numbers of the JSON grammar whatever their size, `true`, `false`, `null`,
//! arrays and objects; whitespace is `' '`, `\n`, `\r` and `\t`. The text must be UTF-8
//! already (the caller checks the whole text once).

use std::ops::Range;

/// The deepest nesting inside one value the scanner follows (the skip has no limit: deeper
/// values are left to it).
pub(super) const MAX_DEPTH: u32 = 128;

/// One member of the top-level object, as byte ranges of the text.
pub(super) struct Member {
    /// The name, without its quotes.
    pub(super) name: Range<usize>,
    /// The value's JSON text.
    pub(super) value: Range<usize>,
    /// Whether the value is a string without escapes (its text between the quotes is the
    /// string).
    pub(super) plain_string: bool,
}

/// Calls `member` for each member of the top-level object in `text` (in stored order),
/// having checked the syntax up to it; `None` when the text is not one JSON object with
/// plain names followed by whitespace only, or when `member` gives up. `text` must be
/// valid UTF-8.
pub(super) fn members(text: &[u8], mut member: impl FnMut(Member) -> Option<()>) -> Option<()> {
    let mut s = Scan {
        b: text,
        i: 0,
        escapes: 0,
    };
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            s.eat(b'"')?;
            let name = s.plain_name()?;
            s.ws();
            s.eat(b':')?;
            s.ws();
            let start = s.i;
            let escapes = s.escapes;
            s.value()?;
            member(Member {
                name,
                value: start..s.i,
                plain_string: text.get(start) == Some(&b'"') && s.escapes == escapes,
            })?;
            s.ws();
            match s.next()? {
                b',' => s.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == text.len()).then_some(())
}

/// How many bytes `s` begins with that serde_json writes as they are inside a string (not
/// `"`, `\` or a control character).
pub(super) fn plain_len(s: &[u8]) -> usize {
    let mut scan = Scan {
        b: s,
        i: 0,
        escapes: 0,
    };
    scan.skip_plain();
    scan.i
}

/// A cursor over the text.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    /// How many escapes the strings seen so far had.
    escapes: u32,
}

/// One in each byte of a word, for the word-at-a-time string scan.
const ONES: u64 = u64::MAX / 255;

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// Skips JSON whitespace.
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    /// Moves to the next `"`, `\` or control character of a string (or the end of the text).
    fn skip_plain(&mut self) {
        // Eight bytes at a time while none is special (serde_json's skip does the same);
        // the lowest flagged byte of a word is exact, the byte loop below rechecks it anyway.
        while let Some(word) = self.b.get(self.i..self.i + 8) {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(word);
            let w = u64::from_le_bytes(bytes);
            let ctrl = w.wrapping_sub(ONES * 0x20) & !w;
            let q = w ^ (ONES * u64::from(b'"'));
            let quote = q.wrapping_sub(ONES) & !q;
            let bs = w ^ (ONES * u64::from(b'\\'));
            let backslash = bs.wrapping_sub(ONES) & !bs;
            let found = (ctrl | quote | backslash) & (ONES << 7);
            if found != 0 {
                self.i += (found.trailing_zeros() / 8) as usize;
                break;
            }
            self.i += 8;
        }
        while let Some(c) = self.peek() {
            if c == b'"' || c == b'\\' || c < 0x20 {
                return;
            }
            self.i += 1;
        }
    }

    /// A top-level name after its opening quote, without escapes or control characters:
    /// its range, the closing quote eaten.
    fn plain_name(&mut self) -> Option<Range<usize>> {
        let start = self.i;
        self.skip_plain();
        let end = self.i;
        self.eat(b'"')?;
        Some(start..end)
    }

    /// A string after its opening quote, through its closing quote.
    fn string(&mut self) -> Option<()> {
        loop {
            self.skip_plain();
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                        self.escapes = self.escapes.wrapping_add(1);
                    }
                    b'u' => {
                        let hex = self.b.get(self.i..self.i + 4)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.i += 4;
                        self.escapes = self.escapes.wrapping_add(1);
                    }
                    _ => return None,
                },
                _ => return None, // a control character
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// An object member's name and colon, whitespace after it skipped.
    fn member_name(&mut self) -> Option<()> {
        self.eat(b'"')?;
        self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(())
    }

    /// One value starting at the cursor (whitespace before it skipped), without recursion:
    /// `object` tells whether the innermost open container is an object, the bits of `outer`
    /// the same of the ones around it (bit 0 for the next one out).
    fn value(&mut self) -> Option<()> {
        let mut depth = 0u32;
        let mut object = false;
        let mut outer = 0u128;
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    self.string()?;
                }
                b'-' | b'0'..=b'9' => self.number()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                open @ (b'[' | b'{') => {
                    self.i += 1;
                    self.ws();
                    let close = if open == b'[' { b']' } else { b'}' };
                    if self.peek() == Some(close) {
                        self.i += 1; // empty: a complete value
                    } else {
                        if depth == MAX_DEPTH {
                            return None;
                        }
                        outer = (outer << 1) | u128::from(object);
                        object = open == b'{';
                        depth += 1;
                        if object {
                            self.member_name()?;
                        }
                        continue;
                    }
                }
                _ => return None,
            }
            // A value is complete: close the containers it completes, up to the next value.
            loop {
                if depth == 0 {
                    return Some(());
                }
                self.ws();
                match self.next()? {
                    b',' => {
                        self.ws();
                        if object {
                            self.member_name()?;
                        }
                        break;
                    }
                    b']' if !object => {}
                    b'}' if object => {}
                    _ => return None,
                }
                depth -= 1;
                object = outer & 1 != 0;
                outer >>= 1;
            }
        }
    }
}
