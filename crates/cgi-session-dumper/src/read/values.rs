//! Containers and their contents: values, hashes, arrays, hash keys, `bless(...)` and
//! `do{\\(my $o = ...)}`.

use cgi_session_core::SerializeError;
use serde_json::{Map, Value};

use crate::{as_bless, as_ref, BLESS_TAG, BLESS_VALUE, MAX_DEPTH, REF_TAG};

use super::{is_word, Fixup, Parser, Seg};

impl<'a> Parser<'a> {
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

    pub(super) fn hash(&mut self, level: usize) -> Result<Value, SerializeError> {
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
    pub(super) fn hash_key(&mut self) -> Result<String, SerializeError> {
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
}
