//! CGI::Session's DSN strings: `driver:file;serializer:json;id:random`.

use crate::error::DsnError;

/// A parsed DSN: the names of the driver, serializer and id generator.
///
/// Keys may be abbreviated to any unique prefix (`d`, `dr`, `se`, `i`...), keys and values are
/// case-insensitive (lowercased), values are word characters. Parts left out take the
/// defaults: `driver:file`, `serializer:json`, `id:random`. Whether a name exists is checked
/// when the DSN is resolved against the available implementations (the `cgi-session` crate).
///
/// ```
/// use cgi_session_core::Dsn;
///
/// let dsn = Dsn::parse("DR:Memcache; se:JSON").unwrap();
/// assert_eq!(dsn.driver, "memcache");
/// assert_eq!(dsn.serializer, "json");
/// assert_eq!(dsn.id, "random");
/// assert!(Dsn::parse("colour:blue").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// Driver name.
    pub driver: String,
    /// Serializer name.
    pub serializer: String,
    /// Id generator name.
    pub id: String,
}

impl Default for Dsn {
    fn default() -> Self {
        Self {
            driver: "file".into(),
            serializer: "json".into(),
            id: "random".into(),
        }
    }
}

impl Dsn {
    /// Parses a DSN string; an empty string gives the defaults.
    ///
    /// # Errors
    /// [`DsnError`] for a part that is not `key:value`, an unknown or repeated key, or a value
    /// with characters other than letters, digits and `_`.
    pub fn parse(input: &str) -> Result<Self, DsnError> {
        let mut dsn = Self::default();
        let mut seen = [false; 3];
        for part in input.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (key, value) = part.split_once(':').ok_or_else(|| DsnError::Syntax {
                part: part.to_owned(),
            })?;
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim().to_ascii_lowercase();
            let which = ["driver", "serializer", "id"]
                .iter()
                .position(|full| !key.is_empty() && full.starts_with(&key))
                .ok_or(DsnError::UnknownKey { key: key.clone() })?;
            if value.is_empty()
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(DsnError::Value { value });
            }
            if std::mem::replace(&mut seen[which], true) {
                return Err(DsnError::Duplicate {
                    key: ["driver", "serializer", "id"][which],
                });
            }
            match which {
                0 => dsn.driver = value,
                1 => dsn.serializer = value,
                _ => dsn.id = value,
            }
        }
        Ok(dsn)
    }
}

impl std::str::FromStr for Dsn {
    type Err = DsnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl std::fmt::Display for Dsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "driver:{};serializer:{};id:{}",
            self.driver, self.serializer, self.id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_case() {
        for (input, driver, ser, id) in [
            ("", "file", "json", "random"),
            ("driver:file;serializer:json;id:md5", "file", "json", "md5"),
            ("d:memory", "memory", "json", "random"),
            ("dr:File;SE:Json;I:Incr", "file", "json", "incr"),
            (" driver : memcache ; ", "memcache", "json", "random"),
            ("s:default", "file", "default", "random"),
        ] {
            let dsn = Dsn::parse(input).unwrap();
            assert_eq!(
                (
                    dsn.driver.as_str(),
                    dsn.serializer.as_str(),
                    dsn.id.as_str()
                ),
                (driver, ser, id),
                "{input}"
            );
        }
    }

    #[test]
    fn errors() {
        assert!(matches!(Dsn::parse("file"), Err(DsnError::Syntax { .. })));
        assert!(matches!(
            Dsn::parse("x:file"),
            Err(DsnError::UnknownKey { .. })
        ));
        assert!(matches!(
            Dsn::parse(":file"),
            Err(DsnError::UnknownKey { .. })
        ));
        assert!(matches!(
            Dsn::parse("d:file;driver:memory"),
            Err(DsnError::Duplicate { key: "driver" })
        ));
        assert!(matches!(Dsn::parse("d:fi/le"), Err(DsnError::Value { .. })));
        assert!(matches!(Dsn::parse("d:"), Err(DsnError::Value { .. })));
    }

    #[test]
    fn display_round_trips() {
        let dsn = Dsn::parse("d:memory;i:incr").unwrap();
        assert_eq!(Dsn::parse(&dsn.to_string()).unwrap(), dsn);
    }
}
