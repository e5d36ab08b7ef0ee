//! The reader: parses the subset of Perl that Data::Dumper emits. Nothing is evaluated.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::ops::Range;

use bytes::Bytes;
use cgi_session_core::SerializeError;
use serde_json::{Map, Value};

use crate::{FORMAT, MAX_DEPTH};

mod resolve;
mod scalars;
mod values;

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
pub(crate) struct Previous {
    pub(crate) src: Bytes,
    /// Empty when entries cannot be copied on their own: the dump shares references between
    /// entries (back-references, `$D->... = ...` statements), which a copy would cut.
    pub(crate) entries: HashMap<String, (Range<usize>, Value)>,
    /// The classes Perl blessed inside each top-level entry.
    pub(crate) blessed_classes: HashMap<String, BTreeSet<String>>,
}

/// Parses `src` as the base of a new version; `None` when it does not parse.
pub(crate) fn previous(src: &[u8]) -> Option<Previous> {
    thaw_noted(&Bytes::copy_from_slice(src))
        .ok()
        .map(|(_, previous)| previous)
}

/// Parses and resolves a whole dump, and notes it as the base of its next version (one parse
/// for both: a session is decoded when it is loaded and written over when it is saved).
pub(crate) fn thaw_noted(src: &Bytes) -> Result<(Map<String, Value>, Previous), SerializeError> {
    let mut p = Parser::new(src);
    let root = p.document()?;
    let self_contained =
        p.inline.is_empty() && p.statements.is_empty() && p.placeholders.is_empty();
    let top = std::mem::take(&mut p.top);
    let blessed_classes = std::mem::take(&mut p.blessed);
    let values = p.resolve(root, src.len())?;
    let entries = if self_contained {
        top.into_iter()
            .filter_map(|(key, span)| {
                let value = values.get(&key)?.clone();
                Some((key, (span, value)))
            })
            .collect()
    } else {
        HashMap::new()
    };
    let previous = Previous {
        src: src.clone(),
        entries,
        blessed_classes,
    };
    Ok((values, previous))
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
}
