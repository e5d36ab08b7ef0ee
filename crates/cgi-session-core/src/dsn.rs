//! CGI::Session's DSN strings: `driver:file;serializer:json;id:random`.

use crate::error::DsnError;

/// A parsed DSN: the names of the driver, serializer and id generator, and (an addition to
/// CGI::Session's DSN) how Perl's serializers write strings set from Rust.
///
/// Keys may be abbreviated to a prefix (`d`, `dr`, `se`, `i`, `st`...; `s` is `serializer`),
/// keys and values are case-insensitive (lowercased), values are word characters. Parts left
/// out take the defaults: `driver:file`, `serializer:json`, `id:random`, and no `strings`
/// (the serializer's own default). Whether a name exists is checked when the DSN is resolved
/// against the available implementations (the `cgi-session` crate).
///
/// `strings:bytes` suits a Perl application that never decodes its input (CGI.pm without
/// `-utf8`): text set from Rust reaches it as UTF-8 bytes, as its own values are;
/// `strings:characters` suits one that decodes (`-utf8`, `Encode::decode`).
///
/// ```
/// use cgi_session_core::Dsn;
///
/// let dsn = Dsn::parse("DR:Memcache; se:JSON").unwrap();
/// assert_eq!(dsn.driver, "memcache");
/// assert_eq!(dsn.serializer, "json");
/// assert_eq!(dsn.id, "random");
/// assert_eq!(dsn.strings, None);
/// let perl = Dsn::parse("driver:memcache;serializer:default;strings:bytes").unwrap();
/// assert_eq!(perl.strings.as_deref(), Some("bytes"));
/// assert!(Dsn::parse("colour:blue").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dsn {
    /// Driver name.
    pub driver: String,
    /// Serializer name.
    pub serializer: String,
    /// Id generator name.
    pub id: String,
    /// How Perl's serializers write strings set from Rust (`bytes` or `characters`), if given.
    pub strings: Option<String>,
}

impl Default for Dsn {
    fn default() -> Self {
        Self {
            driver: "file".into(),
            serializer: "json".into(),
            id: "random".into(),
            strings: None,
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
        const KEYS: [&str; 4] = ["driver", "serializer", "id", "strings"];
        let mut seen = [false; 4];
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
            let which = KEYS
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
                return Err(DsnError::Duplicate { key: KEYS[which] });
            }
            match which {
                0 => dsn.driver = value,
                1 => dsn.serializer = value,
                2 => dsn.id = value,
                _ => dsn.strings = Some(value),
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
        )?;
        if let Some(strings) = &self.strings {
            write!(f, ";strings:{strings}")?;
        }
        Ok(())
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
        let dsn = Dsn::parse("d:memcache;se:default;st:Bytes").unwrap();
        assert_eq!(dsn.strings.as_deref(), Some("bytes"));
        assert_eq!(Dsn::parse(&dsn.to_string()).unwrap(), dsn);
    }
}
