//! Reading stored values with Perl's scalar rules ([`Session::get_perl`](crate::Session::get_perl)).
//!
//! Perl has no separate string and number types: `'visits' => '7'` is the number 7 to Perl,
//! `undef` is "no value", `1` is a string "1" when printed. A session written by Perl therefore
//! holds numbers as strings half of the time, and Rust's typed reads (`get::<i64>`) refuse
//! them. This deserializer reads a stored value into any `T: Deserialize` the way Perl would
//! use it, recursively (fields of structs, elements of vectors):
//!
//! - where a number is asked for, a string holding a whole number (`"7"`, `" -3 "`, `"1e3"`
//!   where a float is asked for) is that number; any other string is still an error (Perl
//!   would silently read `"7 apples"` as 7; a Rust program should hear about it);
//! - where a string is asked for, a number is its decimal text;
//! - where a `bool` is asked for, Perl's truth: `undef`, `""`, `"0"` and 0 are false, everything
//!   else is true;
//! - `undef` is `None` for an `Option`, and "no value" for the parameter itself.
//!
//! serde's own `Deserializer` for `serde_json::Value` handles everything else.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::Value;

/// A stored value read with Perl's rules.
pub(crate) struct PerlScalar<'a>(pub(crate) &'a Value);

type E = serde_json::Error;

fn invalid(what: &str, v: &Value) -> E {
    de::Error::custom(format!("expected {what}, found {}", describe(v)))
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "undef".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() > 40 => "a string".into(),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "a hash".into(),
    }
}

/// Perl's numification of a whole string, or `None` when it is not entirely a number.
fn integer(s: &str) -> Option<i128> {
    let t = s.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.strip_prefix('+').unwrap_or(t).parse().ok()
}

fn float(s: &str) -> Option<f64> {
    let t = s.trim();
    // Rust also parses "inf" and "NaN"; Perl's numeric strings here are decimal numbers.
    if t.is_empty()
        || t.bytes()
            .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E')
    {
        return None;
    }
    t.parse().ok()
}

/// Perl's truth of a scalar.
fn truth(v: &Value) -> Option<bool> {
    match v {
        Value::Null => Some(false),
        Value::Bool(b) => Some(*b),
        Value::Number(n) => Some(n.as_f64() != Some(0.0)),
        Value::String(s) => Some(!(s.is_empty() || s == "0")),
        Value::Array(_) | Value::Object(_) => None,
    }
}

macro_rules! int_method {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
            match self.0 {
                Value::String(s) => {
                    let n = integer(s).ok_or_else(|| invalid("a whole number", self.0))?;
                    let n = <$ty>::try_from(n)
                        .map_err(|_| de::Error::custom(format!("{n} is out of range")))?;
                    visitor.$visit(n)
                }
                v => v.$method(visitor),
            }
        }
    };
}

macro_rules! float_method {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
            match self.0 {
                Value::String(s) => {
                    let n = float(s).ok_or_else(|| invalid("a number", self.0))?;
                    #[allow(clippy::cast_possible_truncation)]
                    visitor.$visit(n as $ty)
                }
                v => v.$method(visitor),
            }
        }
    };
}

impl<'de> de::Deserializer<'de> for PerlScalar<'de> {
    type Error = E;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Seq(items.iter())),
            Value::Object(map) => visitor.visit_map(Entries {
                iter: map.iter(),
                value: None,
            }),
            v => v.deserialize_any(visitor),
        }
    }

    int_method!(deserialize_i8, visit_i8, i8);
    int_method!(deserialize_i16, visit_i16, i16);
    int_method!(deserialize_i32, visit_i32, i32);
    int_method!(deserialize_i64, visit_i64, i64);
    int_method!(deserialize_i128, visit_i128, i128);
    int_method!(deserialize_u8, visit_u8, u8);
    int_method!(deserialize_u16, visit_u16, u16);
    int_method!(deserialize_u32, visit_u32, u32);
    int_method!(deserialize_u64, visit_u64, u64);
    int_method!(deserialize_u128, visit_u128, u128);
    float_method!(deserialize_f32, visit_f32, f32);
    float_method!(deserialize_f64, visit_f64, f64);

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match truth(self.0) {
            Some(b) => visitor.visit_bool(b),
            None => Err(invalid("a scalar", self.0)),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.0 {
            Value::Number(n) => visitor.visit_string(n.to_string()),
            Value::Bool(b) => visitor.visit_str(if *b { "1" } else { "" }),
            v => v.deserialize_str(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.0 {
            Value::Array(items) => visitor.visit_seq(Seq(items.iter())),
            v => Err(invalid("an array", v)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, E> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, E> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(Entries {
                iter: map.iter(),
                value: None,
            }),
            v => Err(invalid("a hash", v)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, E> {
        self.deserialize_map(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, E> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, E> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            v => Err(invalid("undef", v)),
        }
    }

    forward_to_deserialize_any! {
        char bytes byte_buf unit_struct identifier ignored_any
    }
}

struct Seq<'a>(std::slice::Iter<'a, Value>);

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = E;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, E> {
        self.0
            .next()
            .map(|v| seed.deserialize(PerlScalar(v)))
            .transpose()
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Entries<'a> {
    iter: serde_json::map::Iter<'a>,
    value: Option<&'a Value>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = E;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, E> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                // Hash keys are strings in Perl too; a numeric key type reads them as numbers.
                seed.deserialize(PerlKey(k)).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, E> {
        match self.value.take() {
            Some(v) => seed.deserialize(PerlScalar(v)),
            None => Err(de::Error::custom(
                "a hash value was asked for before its key",
            )),
        }
    }
}

macro_rules! key_int {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
            let n = integer(self.0)
                .and_then(|n| <$ty>::try_from(n).ok())
                .ok_or_else(|| invalid("a whole number", &Value::String(self.0.into())))?;
            visitor.$visit(n)
        }
    };
}

/// A hash key: a string, or a number where one is asked for.
struct PerlKey<'a>(&'a str);

impl<'de> de::Deserializer<'de> for PerlKey<'de> {
    type Error = E;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        visitor.visit_borrowed_str(self.0)
    }
    key_int!(deserialize_i8, visit_i8, i8);
    key_int!(deserialize_i16, visit_i16, i16);
    key_int!(deserialize_i32, visit_i32, i32);
    key_int!(deserialize_i64, visit_i64, i64);
    key_int!(deserialize_u8, visit_u8, u8);
    key_int!(deserialize_u16, visit_u16, u16);
    key_int!(deserialize_u32, visit_u32, u32);
    key_int!(deserialize_u64, visit_u64, u64);
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, E> {
        let s: de::value::StrDeserializer<'_, E> = self.0.into_deserializer();
        de::Deserializer::deserialize_enum(s, name, variants, visitor)
    }
    forward_to_deserialize_any! {
        bool i128 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// Map stored values into `T` with Perl's rules; `Ok(None)` for `undef`.
pub(crate) fn read<T: de::DeserializeOwned>(v: &Value) -> Result<Option<T>, E> {
    if v.is_null() {
        return Ok(None);
    }
    T::deserialize(PerlScalar(v)).map(Some)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_json::json;

    use super::read;

    #[test]
    fn numbers_from_strings_and_strings_from_numbers() {
        assert_eq!(read::<i64>(&json!("7")).unwrap(), Some(7));
        assert_eq!(read::<i64>(&json!(" -3 ")).unwrap(), Some(-3));
        assert_eq!(read::<u8>(&json!("255")).unwrap(), Some(255));
        assert!(read::<u8>(&json!("256")).is_err(), "out of range");
        assert!(read::<i64>(&json!("7 apples")).is_err());
        assert!(read::<i64>(&json!("")).is_err());
        assert!(read::<i64>(&json!("1.5")).is_err(), "not a whole number");
        assert_eq!(read::<f64>(&json!("1.5")).unwrap(), Some(1.5));
        assert_eq!(read::<f64>(&json!("1e3")).unwrap(), Some(1000.0));
        assert!(read::<f64>(&json!("inf")).is_err());
        assert_eq!(read::<String>(&json!(7)).unwrap().as_deref(), Some("7"));
        assert_eq!(read::<String>(&json!("x")).unwrap().as_deref(), Some("x"));
        assert_eq!(read::<i64>(&json!(null)).unwrap(), None, "undef: no value");
        assert_eq!(read::<String>(&json!(null)).unwrap(), None);
    }

    #[test]
    fn perl_truth() {
        for (v, want) in [
            (json!(""), false),
            (json!("0"), false),
            (json!(0), false),
            (json!("0.0"), true),
            (json!("00"), true),
            (json!(1), true),
            (json!("yes"), true),
        ] {
            assert_eq!(read::<bool>(&v).unwrap(), Some(want), "{v}");
        }
        assert!(read::<bool>(&json!([])).is_err());
    }

    #[test]
    fn nested_values_follow_the_same_rules() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct Cart {
            items: Vec<u32>,
            total: f64,
            note: Option<String>,
            paid: bool,
            by_id: BTreeMap<u32, String>,
        }
        let stored = json!({
            "items": ["1", 2, "3"], "total": "9.5", "note": null, "paid": "1",
            "by_id": {"7": 42}
        });
        assert_eq!(
            read::<Cart>(&stored).unwrap(),
            Some(Cart {
                items: vec![1, 2, 3],
                total: 9.5,
                note: None,
                paid: true,
                by_id: BTreeMap::from([(7, "42".to_owned())]),
            })
        );
        assert!(read::<Cart>(&json!({"items": ["x"]})).is_err());
    }
}
