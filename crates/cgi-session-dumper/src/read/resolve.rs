//! After parsing: back-references and `do{my $o}` placeholders resolved by copying, within
//! a bound on the size of the result.

use std::collections::BTreeMap;
use std::ops::Bound;

use cgi_session_core::SerializeError;
use serde_json::{Map, Value};

use crate::{as_bless, as_ref, BLESS_VALUE, MAX_DEPTH, REF_TAG};

use super::{syntax, Fixup, Parser, Seg};

impl<'a> Parser<'a> {
    /// Applies back-references and `do{my $o}` placeholders, in document order.
    pub(super) fn resolve(
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
