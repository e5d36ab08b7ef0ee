//! The reader: parses the subset of Perl that Data::Dumper emits. Nothing is evaluated.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Display;
use std::ops::{Bound, Range};

use cgi_session_core::SerializeError;
use serde_json::{Map, Number, Value};

use crate::write::{as_bless, as_ref};
use crate::{BLESS_TAG, BLESS_VALUE, FORMAT, MAX_DEPTH, REF_TAG};

/// One step of a Perl path such as `$D->{'a'}[0]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    /// `{'key'}`
    Key(String),
    /// `[3]`
    Index(usize),
    /// Into the referent of a `\...` scalar reference (only for positions inside the dump).
    Deref,
}

/// A copy to make after parsing: `target = source` (both paths from the root).
#[derive(Debug)]
struct Fixup {
    target: Vec<Seg>,
    source: Vec<Seg>,
    at: usize,
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    /// The variable name from `$NAME = `, if any.
    var: Option<&'a [u8]>,
    /// Path of the value being parsed.
    path: Vec<Seg>,
    /// Back-references found inside the main value (`Purity(0)` output), in document order.
    inline: Vec<Fixup>,
    /// `$D->... = $D->...;` statements after the main value (`Purity(1)` output).
    statements: Vec<Fixup>,
    /// `do{my $o}` placeholders: (path, byte offset).
    placeholders: Vec<(Vec<Seg>, usize)>,
    /// The top-level hash's entries: key and the byte range of `'key' => value`.
    top: Vec<(String, Range<usize>)>,
    /// The classes named by a `bless( ..., 'Class' )` in the text, by top-level key.
    blessed: HashMap<String, BTreeSet<String>>,
}

/// A stored dump as the base of a new version: its text, its top-level entries (each with the
/// byte range of `'key' => value` and its value) and the classes Perl blessed in each.
pub(crate) struct Previous<'a> {
    pub(crate) src: &'a [u8],
    /// Empty when entries cannot be copied on their own: the dump shares references between
    /// entries (back-references, `$D->... = ...` statements), which a copy would cut.
    pub(crate) entries: HashMap<String, (Range<usize>, Value)>,
    /// The classes Perl blessed inside each top-level entry.
    pub(crate) blessed_classes: HashMap<String, BTreeSet<String>>,
}

/// Parses `src` as the base of a new version; `None` when it does not parse.
pub(crate) fn previous(src: &[u8]) -> Option<Previous<'_>> {
    let mut p = Parser::new(src);
    let root = p.document().ok()?;
    let self_contained =
        p.inline.is_empty() && p.statements.is_empty() && p.placeholders.is_empty();
    let top = std::mem::take(&mut p.top);
    let blessed_classes = std::mem::take(&mut p.blessed);
    let mut values = p.resolve(root, src.len()).ok()?;
    let entries = if self_contained {
        top.into_iter()
            .filter_map(|(key, span)| {
                let value = values.remove(&key)?;
                Some((key, (span, value)))
            })
            .collect()
    } else {
        HashMap::new()
    };
    Some(Previous {
        src,
        entries,
        blessed_classes,
    })
}

/// Parses and resolves a whole dump.
pub(crate) fn thaw(src: &[u8]) -> Result<Map<String, Value>, SerializeError> {
    let mut p = Parser::new(src);
    let root = p.document()?;
    p.resolve(root, src.len())
}

fn syntax(message: String) -> SerializeError {
    SerializeError::Syntax {
        format: FORMAT,
        message,
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
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

impl<'a> Parser<'a> {
    fn new(src: &'a [u8]) -> Self {
        Parser {
            src,
            pos: 0,
            var: None,
            path: Vec::new(),
            inline: Vec::new(),
            statements: Vec::new(),
            placeholders: Vec::new(),
            top: Vec::new(),
            blessed: HashMap::new(),
        }
    }

    fn err(&self, at: usize, message: impl Display) -> SerializeError {
        syntax(format!("{message} at byte {at}"))
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.src.get(self.pos.saturating_add(offset)).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, token: &[u8], what: &str) -> Result<(), SerializeError> {
        if self
            .src
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(token))
        {
            self.pos += token.len();
            Ok(())
        } else {
            Err(self.err(self.pos, format!("expected {what}")))
        }
    }

    /// Reads `[A-Za-z_][A-Za-z0-9_]*`, or returns an empty slice.
    fn ident(&mut self) -> &'a [u8] {
        let start = self.pos;
        if self
            .peek()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        {
            while self.peek().is_some_and(is_word) {
                self.pos += 1;
            }
        }
        self.src.get(start..self.pos).unwrap_or_default()
    }

    /// `[$D = ] {...} [; statements] [;$D] [;]`
    fn document(&mut self) -> Result<Value, SerializeError> {
        self.skip_ws();
        if self.peek() == Some(b'$') {
            self.pos += 1;
            let name = self.ident();
            if name.is_empty() {
                return Err(self.err(self.pos, "expected a variable name after `$`"));
            }
            self.var = Some(name);
            self.skip_ws();
            if self.peek() != Some(b'=') || matches!(self.peek_at(1), Some(b'=' | b'>' | b'~')) {
                return Err(self.err(self.pos, "expected `=` after the variable name"));
            }
            self.pos += 1;
            self.skip_ws();
        }
        if self.peek() != Some(b'{') {
            return Err(self.err(
                self.pos,
                "expected `{`: the top-level value of a session must be a hash",
            ));
        }
        let root = self.hash(0)?;
        self.skip_ws();
        match self.peek() {
            None => return Ok(root),
            Some(b';') => self.pos += 1,
            Some(_) => return Err(self.err(self.pos, "expected `;` after the hash")),
        }
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Ok(root),
                Some(b';') => self.pos += 1,
                Some(b'$') if self.peek_at(1) == Some(b'{') => {
                    return Err(self.err(
                        self.pos,
                        "`${...} = ...` (a shared reference to a reference) is not supported",
                    ))
                }
                Some(b'$') => {
                    let at = self.pos;
                    let target = self.var_path()?;
                    self.skip_ws();
                    if target.is_empty() {
                        // The trailing `$D` that makes the dump evaluate to the hash.
                        if self.peek() == Some(b';') {
                            self.pos += 1;
                        }
                        self.skip_ws();
                        if self.pos < self.src.len() {
                            return Err(self.err(self.pos, "unexpected text after the final `$D`"));
                        }
                        return Ok(root);
                    }
                    if self.peek() != Some(b'=')
                        || matches!(self.peek_at(1), Some(b'=' | b'>' | b'~'))
                    {
                        return Err(self.err(self.pos, "expected `=` in an assignment statement"));
                    }
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() != Some(b'$') {
                        return Err(self.err(
                            self.pos,
                            "expected a back-reference such as `$D->{'key'}` on the right of `=`",
                        ));
                    }
                    let source = self.var_path()?;
                    self.statements.push(Fixup { target, source, at });
                    self.skip_ws();
                    match self.peek() {
                        None | Some(b';') => {}
                        Some(_) => {
                            return Err(self.err(self.pos, "expected `;` after the statement"))
                        }
                    }
                }
                Some(b) => {
                    return Err(self.err(
                        self.pos,
                        format!(
                            "unexpected `{}` after the hash",
                            char::from(b).escape_default()
                        ),
                    ))
                }
            }
        }
    }

    /// `$D` followed by subscripts: `$D->{'a'}[0]{b}`. The name must be the dump's variable.
    fn var_path(&mut self) -> Result<Vec<Seg>, SerializeError> {
        let at = self.pos;
        self.expect(b"$", "`$`")?;
        let name = self.ident();
        match self.var {
            Some(var) if var == name => {}
            Some(_) => {
                return Err(self.err(
                    at,
                    format!(
                        "unknown variable `${}` (only the dump's own variable can be referenced)",
                        String::from_utf8_lossy(name)
                    ),
                ))
            }
            None => {
                return Err(self.err(
                    at,
                    "back-reference in a dump without a `$NAME = ` assignment",
                ))
            }
        }
        let mut path = Vec::new();
        loop {
            let arrow = self
                .src
                .get(self.pos..)
                .is_some_and(|r| r.starts_with(b"->"));
            if arrow {
                self.pos += 2;
            } else if path.is_empty() {
                if matches!(self.peek(), Some(b'{' | b'[')) {
                    // `$D{'a'}` would subscript the hash `%D`, not the dumped value.
                    return Err(self.err(
                        self.pos,
                        "expected `->` before the first subscript (`$D{...}` is another variable)",
                    ));
                }
                return Ok(path);
            }
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.skip_ws();
                    let key = self.hash_key()?;
                    self.skip_ws();
                    self.expect(b"}", "`}` closing the subscript")?;
                    path.push(Seg::Key(key));
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.skip_ws();
                    let start = self.pos;
                    while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                        self.pos += 1;
                    }
                    let index =
                        std::str::from_utf8(self.src.get(start..self.pos).unwrap_or_default())
                            .ok()
                            .and_then(|d| d.parse::<usize>().ok())
                            .ok_or_else(|| self.err(start, "expected an array index"))?;
                    self.skip_ws();
                    self.expect(b"]", "`]` closing the subscript")?;
                    path.push(Seg::Index(index));
                }
                _ if arrow => return Err(self.err(self.pos, "expected `{` or `[` after `->`")),
                _ => return Ok(path),
            }
            if path.len() > MAX_DEPTH {
                return Err(self.err(at, format!("path deeper than {MAX_DEPTH} levels")));
            }
        }
    }

    /// A value inside `level` enclosing containers.
    fn value(&mut self, level: usize) -> Result<Value, SerializeError> {
        let at = self.pos;
        match self.peek() {
            None => Err(self.err(at, "unexpected end of input, expected a value")),
            Some(b'\'') => self.single_quoted().map(Value::String),
            Some(b'"') => self.double_quoted().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'{') => self.hash(level),
            Some(b'[') => self.array(level),
            Some(b'\\') => {
                self.pos += 1;
                self.skip_ws();
                if self
                    .src
                    .get(self.pos..)
                    .is_some_and(|r| r.starts_with(b"do"))
                {
                    return Err(self.err(
                        at,
                        "`\\do{my $o}` (a shared reference to a reference) is not supported",
                    ));
                }
                self.enter(level, at)?;
                self.path.push(Seg::Deref);
                let inner = self.value(level + 1);
                self.path.pop();
                let mut map = Map::new();
                map.insert(REF_TAG.to_owned(), inner?);
                Ok(Value::Object(map))
            }
            Some(b'$') => {
                let source = self.var_path()?;
                if self.path.starts_with(&source) {
                    return Err(self.err(
                        at,
                        "cyclic back-reference (a structure that contains itself) cannot be represented",
                    ));
                }
                self.inline.push(Fixup {
                    target: self.path.clone(),
                    source,
                    at,
                });
                Ok(Value::Null)
            }
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
                let word = self.ident();
                match word {
                    b"undef" => Ok(Value::Null),
                    b"bless" => self.bless(level, at),
                    b"do" => {
                        self.skip_ws();
                        self.expect(b"{", "`{` in `do{my $o}`")?;
                        self.skip_ws();
                        if self.peek() == Some(b'\\') {
                            return self.scalar_ref_block(level, at);
                        }
                        self.expect(b"my", "`my` in `do{my $o}`")?;
                        self.skip_ws();
                        self.expect(b"$o", "`$o` in `do{my $o}`")?;
                        self.skip_ws();
                        self.expect(b"}", "`}` closing `do{my $o}`")?;
                        self.placeholders.push((self.path.clone(), at));
                        Ok(Value::Null)
                    }
                    b"sub" => Err(self.err(
                        at,
                        "code reference (`sub { ... }`) cannot be thawed; it was not stored by Perl either (Data::Dumper writes a dummy)",
                    )),
                    b"qr" => Err(self.err(at, "regular expressions (`qr//`) are not supported")),
                    _ => Err(self.err(
                        at,
                        format!(
                            "unexpected bareword `{}`; expected a value",
                            String::from_utf8_lossy(word)
                        ),
                    )),
                }
            }
            Some(b'*') => Err(self.err(at, "globs (`*main::FH`) are not supported")),
            Some(b) => Err(self.err(
                at,
                format!(
                    "unexpected `{}`, expected a value",
                    char::from(b).escape_default()
                ),
            )),
        }
    }

    /// `do{\\(my $o = VALUE)}` (Data::Dumper's form of a blessed scalar reference), after
    /// `do{`: a [`REF_TAG`] object.
    fn scalar_ref_block(&mut self, level: usize, at: usize) -> Result<Value, SerializeError> {
        self.enter(level, at)?;
        for (token, what) in [
            (&b"\\"[..], "`\\`"),
            (b"(", "`(`"),
            (b"my", "`my`"),
            (b"$o", "`$o`"),
            (b"=", "`=`"),
        ] {
            self.skip_ws();
            self.expect(token, &format!("{what} in `do{{\\(my $o = ...)}}`"))?;
        }
        self.skip_ws();
        self.path.push(Seg::Deref);
        let inner = self.value(level + 1);
        self.path.pop();
        let inner = inner?;
        for token in [&b")"[..], b"}"] {
            self.skip_ws();
            self.expect(token, "`)}` closing `do{\\(my $o = ...)}`")?;
        }
        let mut map = Map::new();
        map.insert(REF_TAG.to_owned(), inner);
        Ok(Value::Object(map))
    }

    /// Checks that a container opened inside `level` containers stays within [`MAX_DEPTH`].
    fn enter(&self, level: usize, at: usize) -> Result<(), SerializeError> {
        if level >= MAX_DEPTH {
            Err(self.err(at, format!("nested deeper than {MAX_DEPTH} levels")))
        } else {
            Ok(())
        }
    }

    /// `bless( value, 'Class' )`, after the word `bless`.
    fn bless(&mut self, level: usize, at: usize) -> Result<Value, SerializeError> {
        self.enter(level, at)?;
        self.skip_ws();
        self.expect(b"(", "`(` after `bless`")?;
        self.skip_ws();
        let inner_at = self.pos;
        let inner = self.value(level + 1)?;
        let blessable = match &inner {
            Value::Array(_) => true,
            Value::Object(m) => as_ref(m).is_some() || as_bless(m).is_none(),
            _ => false,
        };
        if !blessable {
            return Err(self.err(inner_at, "`bless` needs a hash, array or scalar reference"));
        }
        self.skip_ws();
        self.expect(b",", "`,` between the blessed value and the class name")?;
        self.skip_ws();
        let class = match self.peek() {
            Some(b'\'') => self.single_quoted()?,
            Some(b'"') => self.double_quoted()?,
            _ => return Err(self.err(self.pos, "expected the class name as a quoted string")),
        };
        self.skip_ws();
        self.expect(b")", "`)` closing `bless(`")?;
        if let Some(Seg::Key(top)) = self.path.first() {
            self.blessed
                .entry(top.clone())
                .or_default()
                .insert(class.clone());
        }
        let mut map = Map::new();
        map.insert(BLESS_TAG.to_owned(), Value::String(class));
        map.insert(BLESS_VALUE.to_owned(), inner);
        Ok(Value::Object(map))
    }

    fn hash(&mut self, level: usize) -> Result<Value, SerializeError> {
        let at = self.pos;
        self.enter(level, at)?;
        self.expect(b"{", "`{`")?;
        let mut map = Map::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(Value::Object(map));
            }
            let entry_start = self.pos;
            let key = self.hash_key()?;
            self.skip_ws();
            self.expect(b"=>", "`=>` after the hash key")?;
            self.skip_ws();
            self.path.push(Seg::Key(key));
            let value = self.value(level + 1);
            let key = match self.path.pop() {
                Some(Seg::Key(key)) => key,
                _ => return Err(self.err(at, "internal error: path stack out of step")),
            };
            if level == 0 {
                self.top.push((key.clone(), entry_start..self.pos));
            }
            map.insert(key, value?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                None => return Err(self.err(at, "unterminated hash `{`")),
                Some(_) => return Err(self.err(self.pos, "expected `,` or `}` in the hash")),
            }
        }
    }

    fn array(&mut self, level: usize) -> Result<Value, SerializeError> {
        let at = self.pos;
        self.enter(level, at)?;
        self.expect(b"[", "`[`")?;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(b']') {
                self.pos += 1;
                return Ok(Value::Array(items));
            }
            self.path.push(Seg::Index(items.len()));
            let item = self.value(level + 1);
            self.path.pop();
            items.push(item?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {}
                None => return Err(self.err(at, "unterminated array `[`")),
                Some(_) => return Err(self.err(self.pos, "expected `,` or `]` in the array")),
            }
        }
    }

    /// A hash key: a quoted string, a bareword (`foo`, `-foo`, `Foo::Bar`) or a small integer.
    fn hash_key(&mut self) -> Result<String, SerializeError> {
        let at = self.pos;
        match self.peek() {
            Some(b'\'') => return self.single_quoted(),
            Some(b'"') => return self.double_quoted(),
            _ => {}
        }
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let word_start = self.pos;
        while self.peek().is_some_and(is_word)
            || (self
                .src
                .get(self.pos..)
                .is_some_and(|r| r.starts_with(b"::"))
                && self.peek_at(2).is_some_and(is_word))
        {
            self.pos += if self.peek() == Some(b':') { 2 } else { 1 };
        }
        let word = self.src.get(word_start..self.pos).unwrap_or_default();
        let text = self.src.get(start..self.pos).unwrap_or_default();
        let first = word.first().copied();
        let ok = match first {
            None => false,
            Some(b'0'..=b'9') => {
                // A number before `=>` is a numeric literal: accept only canonical integers,
                // which Perl stringifies back to the same digits.
                word.iter().all(u8::is_ascii_digit)
                    && (word == b"0" || (first != Some(b'0') && word.len() <= 15))
            }
            Some(_) => true,
        };
        if !ok {
            return Err(self.err(at, "expected a hash key (a quoted string or a bareword)"));
        }
        let key = String::from_utf8_lossy(text).into_owned();
        Ok(if key == "-0" { "0".to_owned() } else { key })
    }

    /// `'...'`: only `\\` and `\'` are escapes; every other byte is literal.
    fn single_quoted(&mut self) -> Result<String, SerializeError> {
        let at = self.pos;
        self.pos += 1;
        let mut raw = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err(at, "unterminated single-quoted string")),
                Some(b'\'') => {
                    self.pos += 1;
                    let mut s = String::with_capacity(raw.len());
                    decode_raw(&raw, &mut s);
                    return Ok(s);
                }
                Some(b'\\') if matches!(self.peek_at(1), Some(b'\\' | b'\'')) => {
                    raw.push(self.peek_at(1).unwrap_or(b'\\'));
                    self.pos += 2;
                }
                Some(b) => {
                    raw.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    /// `"..."` with the escapes Data::Dumper's `Useqq` and UTF-8 writers emit. Interpolation
    /// (`$x`, `@x`) is refused, never performed.
    fn double_quoted(&mut self) -> Result<String, SerializeError> {
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
    fn number(&mut self) -> Result<Value, SerializeError> {
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

    /// Applies back-references and `do{my $o}` placeholders, in document order.
    fn resolve(
        self,
        mut root: Value,
        input_len: usize,
    ) -> Result<Map<String, Value>, SerializeError> {
        let assigned: std::collections::BTreeSet<&[Seg]> = self
            .statements
            .iter()
            .map(|f| f.target.as_slice())
            .collect();
        if let Some((_, at)) = self
            .placeholders
            .iter()
            .find(|(path, _)| !assigned.contains(path.as_slice()))
        {
            return Err(self.err(*at, "`do{my $o}` placeholder is never assigned"));
        }
        let fixups: Vec<&Fixup> = self.inline.iter().chain(&self.statements).collect();
        let mut pending: BTreeMap<&[Seg], usize> = BTreeMap::new();
        for f in &fixups {
            *pending.entry(f.target.as_slice()).or_default() += 1;
        }
        let mut budget = input_len.saturating_mul(16).max(1 << 20);
        for f in fixups {
            let describe = || describe_path(&f.source);
            if f.target.starts_with(&f.source) {
                return Err(self.err(
                    f.at,
                    format!("cyclic back-reference to `{}` (a structure that contains itself) cannot be represented", describe()),
                ));
            }
            let overlaps_pending = (0..=f.source.len())
                .any(|k| f.source.get(..k).is_some_and(|p| pending.contains_key(p)))
                || pending
                    .range::<[Seg], _>((Bound::Included(f.source.as_slice()), Bound::Unbounded))
                    .next()
                    .is_some_and(|(t, _)| t.starts_with(&f.source));
            if overlaps_pending {
                return Err(self.err(
                    f.at,
                    format!(
                        "back-reference to `{}` before that value is defined",
                        describe()
                    ),
                ));
            }
            match pending.get_mut(f.target.as_slice()) {
                Some(n) if *n > 1 => *n -= 1,
                _ => {
                    pending.remove(f.target.as_slice());
                }
            }
            let (source, _) = lookup(&root, &f.source).ok_or_else(|| {
                self.err(
                    f.at,
                    format!("back-reference to `{}`, which does not exist", describe()),
                )
            })?;
            let (cost, depth) = measure(source, budget).ok_or_else(|| {
                self.err(
                    f.at,
                    "back-references expand to too much data (possible expansion attack)",
                )
            })?;
            budget -= cost;
            let copy = source.clone();
            let (slot, enclosing) = lookup_mut(&mut root, &f.target).ok_or_else(|| {
                self.err(
                    f.at,
                    format!(
                        "cannot assign to `{}`: no such element",
                        describe_path(&f.target)
                    ),
                )
            })?;
            if enclosing + depth > MAX_DEPTH {
                return Err(self.err(
                    f.at,
                    format!("back-reference makes the value nested deeper than {MAX_DEPTH} levels"),
                ));
            }
            *slot = copy;
        }
        match root {
            Value::Object(map) => Ok(map),
            _ => Err(syntax("the top-level value is not a hash".into())),
        }
    }
}

fn hex(digits: &[u8]) -> u32 {
    digits.iter().fold(0u32, |acc, &d| {
        let v = char::from(d).to_digit(16).unwrap_or(0);
        acc.wrapping_mul(16).wrapping_add(v)
    })
}

fn describe_path(path: &[Seg]) -> String {
    let mut s = String::from("$D");
    for (i, seg) in path.iter().enumerate() {
        if i == 0 && *seg != Seg::Deref {
            s.push_str("->");
        }
        match seg {
            Seg::Key(k) => {
                s.push_str("{'");
                s.push_str(&k.replace('\\', "\\\\").replace('\'', "\\'"));
                s.push_str("'}");
            }
            Seg::Index(n) => s.push_str(&format!("[{n}]")),
            Seg::Deref => s.push_str("->$*"),
        }
    }
    s
}

fn is_bless_wrapper(v: &Value) -> bool {
    matches!(v, Value::Object(m) if as_bless(m).is_some())
}

/// Follows `path`; returns the value and how many containers enclose it.
fn lookup<'v>(root: &'v Value, path: &[Seg]) -> Option<(&'v Value, usize)> {
    let mut v = root;
    let mut enclosing = 0;
    for seg in path {
        if is_bless_wrapper(v) {
            v = v.get(BLESS_VALUE)?;
            enclosing += 1;
        }
        v = match seg {
            Seg::Key(k) => v.as_object()?.get(k)?,
            Seg::Index(i) => v.as_array()?.get(*i)?,
            Seg::Deref => as_ref(v.as_object()?)?,
        };
        enclosing += 1;
    }
    Some((v, enclosing))
}

fn lookup_mut<'v>(root: &'v mut Value, path: &[Seg]) -> Option<(&'v mut Value, usize)> {
    let mut v = root;
    let mut enclosing = 0;
    for seg in path {
        if is_bless_wrapper(v) {
            v = v.get_mut(BLESS_VALUE)?;
            enclosing += 1;
        }
        v = match seg {
            Seg::Key(k) => v.as_object_mut()?.get_mut(k)?,
            Seg::Index(i) => v.as_array_mut()?.get_mut(*i)?,
            Seg::Deref => {
                let m = v.as_object_mut()?;
                if m.len() != 1 {
                    return None;
                }
                m.get_mut(REF_TAG)?
            }
        };
        enclosing += 1;
    }
    Some((v, enclosing))
}

/// Size (values plus string bytes) and nesting depth of `v`, or `None` once the size passes
/// `budget`. Iterative, so hostile depth cannot overflow the stack.
fn measure(v: &Value, budget: usize) -> Option<(usize, usize)> {
    let mut cost = 0usize;
    let mut max_depth = 0usize;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        cost = cost.saturating_add(1);
        match v {
            Value::String(s) => cost = cost.saturating_add(s.len()),
            Value::Array(items) => {
                max_depth = max_depth.max(depth + 1);
                stack.extend(items.iter().map(|i| (i, depth + 1)));
            }
            Value::Object(map) => {
                max_depth = max_depth.max(depth + 1);
                for (k, i) in map {
                    cost = cost.saturating_add(k.len());
                    stack.push((i, depth + 1));
                }
            }
            _ => {}
        }
        if cost > budget {
            return None;
        }
    }
    Some((cost, max_depth))
}
