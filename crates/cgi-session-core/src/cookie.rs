//! The session cookie's one home: its settings ([`CookieConfig`], set once on the store) and
//! everything every adapter sends from them: the session cookie, the removal cookie and the
//! CGI header block ([`cgi_header`], CGI::Session's `header()`).
//!
//! [`Session::cookie`](crate::Session::cookie) and [`Session::header`](crate::Session::header)
//! are built here; the tower layer adds only its signature, and the CGI adapter prints
//! [`Session::header`](crate::Session::header). Reading the cookie back from a request is
//! [`cookie_header`](crate::cookie_header)'s job.
//!
//! ```
//! use cgi_session_core::cookie::cgi_header;
//! use cgi_session_core::CookieConfig;
//!
//! let config = CookieConfig { secure: true, ..CookieConfig::default() };
//! let cookie = config.session_cookie("5ee0c1d2a1b2c3d4e5f60718293a4b5c", Some(1800));
//! assert_eq!(
//!     cookie.to_string(),
//!     "CGISESSID=5ee0c1d2a1b2c3d4e5f60718293a4b5c; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=1800"
//! );
//! let header = cgi_header(Some(&cookie), "text/plain");
//! assert!(header.starts_with("Set-Cookie: CGISESSID=5ee0c1d2"));
//! assert!(header.ends_with("\r\nContent-Type: text/plain\r\n\r\n"));
//! ```

use ::cookie::Cookie;

use crate::id::SessionId;
use crate::record::Record;

/// The `SameSite` attribute of the session cookie (the `cookie` crate's type).
pub use ::cookie::SameSite;

/// CGI::Session's cookie name.
pub const DEFAULT_COOKIE_NAME: &str = "CGISESSID";

/// Settings of the session cookie (CGI::Session's `name()` and `cookie()`), given to the store
/// once ([`SessionStoreBuilder::cookie`](crate::SessionStoreBuilder::cookie)) and used by every
/// adapter.
///
/// Defaults fix CGI::Session's flaws: `HttpOnly` and `SameSite=Lax` are on; `Secure` is off
/// by default only because the demo runs on plain HTTP: turn it on in production.
///
/// ```
/// use cgi_session_core::{CookieConfig, MemoryDriver, SameSite, SessionStore};
///
/// let store = SessionStore::builder(MemoryDriver::new())
///     .cookie(CookieConfig {
///         name: "MYSESSID".into(),
///         secure: true,
///         same_site: Some(SameSite::Strict),
///         ..CookieConfig::default()
///     })
///     .build();
/// assert_eq!(store.cookie_name(), "MYSESSID");
/// ```
#[derive(Debug, Clone)]
pub struct CookieConfig {
    /// Cookie name, [`DEFAULT_COOKIE_NAME`] by default.
    pub name: String,
    /// `Path`, `/` by default.
    pub path: String,
    /// `Domain`, none by default.
    pub domain: Option<String>,
    /// `Secure`.
    pub secure: bool,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `SameSite`.
    pub same_site: Option<SameSite>,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_COOKIE_NAME.into(),
            path: "/".into(),
            domain: None,
            secure: false,
            http_only: true,
            same_site: Some(SameSite::Lax),
        }
    }
}

impl CookieConfig {
    /// The cookie carrying the session id `value`: this config's name, `Path`, `Domain`,
    /// `Secure`, `HttpOnly` and `SameSite`, and `Max-Age` when `max_age` (the session's idle
    /// timeout in seconds) is above 0; without it the cookie lasts as long as the browser
    /// session.
    ///
    /// ```
    /// use cgi_session_core::CookieConfig;
    ///
    /// let config = CookieConfig { domain: Some("example.org".into()), ..CookieConfig::default() };
    /// let cookie = config.session_cookie("abc", None);
    /// assert_eq!(cookie.to_string(), "CGISESSID=abc; HttpOnly; SameSite=Lax; Path=/; Domain=example.org");
    /// assert_eq!(config.session_cookie("abc", Some(0)).max_age(), None);
    /// ```
    pub fn session_cookie(&self, value: &str, max_age: Option<i64>) -> Cookie<'static> {
        let mut cookie = self.unset(value.to_owned());
        if let Some(secs) = max_age.filter(|s| *s > 0) {
            cookie.set_max_age(::cookie::time::Duration::seconds(secs));
        }
        cookie
    }

    /// The cookie telling the browser to forget the session cookie: the same name, `Path`,
    /// `Domain` and flags, an empty value, `Max-Age=0` and an `Expires` in the past (sent
    /// after a logout, or when the client's id is no longer usable).
    ///
    /// ```
    /// use cgi_session_core::CookieConfig;
    ///
    /// let removal = CookieConfig::default().removal_cookie().to_string();
    /// assert!(removal.starts_with("CGISESSID=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0; Expires="));
    /// ```
    pub fn removal_cookie(&self) -> Cookie<'static> {
        let mut cookie = self.unset(String::new());
        cookie.make_removal();
        cookie
    }

    /// Name, value and the attributes every session cookie carries.
    fn unset(&self, value: String) -> Cookie<'static> {
        let mut builder = Cookie::build((self.name.clone(), value))
            .path(self.path.clone())
            .http_only(self.http_only)
            .secure(self.secure);
        if let Some(same_site) = self.same_site {
            builder = builder.same_site(same_site);
        }
        if let Some(domain) = &self.domain {
            builder = builder.domain(domain.clone());
        }
        builder.build()
    }
}

/// The `Set-Cookie` header value of `cookie`: exactly the text of its `Display`
/// (`name=value; HttpOnly; SameSite=Lax; Secure; Path=/; Domain=...; Max-Age=...`), written
/// straight into one string: the `cookie` crate's formatting costs several times more, on
/// every response that refreshes a session cookie. A cookie with `Expires` or `Partitioned`
/// is written by the `cookie` crate itself.
///
/// ```
/// use cgi_session_core::cookie::set_cookie_value;
/// use cgi_session_core::CookieConfig;
///
/// let cookie = CookieConfig::default().session_cookie("abc", Some(1800));
/// assert_eq!(set_cookie_value(&cookie), cookie.to_string());
/// assert_eq!(set_cookie_value(&cookie), "CGISESSID=abc; HttpOnly; SameSite=Lax; Path=/; Max-Age=1800");
/// ```
pub fn set_cookie_value(cookie: &Cookie<'_>) -> String {
    if cookie.expires().is_some() || cookie.partitioned().is_some() {
        return cookie.to_string();
    }
    let (name, value) = (cookie.name(), cookie.value());
    let path = cookie.path();
    let domain = cookie.domain();
    let mut out = String::with_capacity(
        name.len() + value.len() + path.map_or(0, str::len) + domain.map_or(0, str::len) + 72,
    );
    out.push_str(name);
    out.push('=');
    out.push_str(value);
    if cookie.http_only() == Some(true) {
        out.push_str("; HttpOnly");
    }
    if let Some(same_site) = cookie.same_site() {
        out.push_str(match same_site {
            SameSite::Strict => "; SameSite=Strict",
            SameSite::Lax => "; SameSite=Lax",
            SameSite::None => "; SameSite=None",
        });
    }
    // As the `cookie` crate: `SameSite=None` implies `Secure` unless told otherwise.
    if cookie.secure() == Some(true)
        || cookie.secure().is_none() && cookie.same_site() == Some(SameSite::None)
    {
        out.push_str("; Secure");
    }
    if let Some(path) = path {
        out.push_str("; Path=");
        out.push_str(path);
    }
    if let Some(domain) = domain {
        out.push_str("; Domain=");
        out.push_str(domain);
    }
    if let Some(max_age) = cookie.max_age() {
        out.push_str("; Max-Age=");
        push_int(&mut out, max_age.whole_seconds());
    }
    out
}

/// Appends `n` in decimal.
fn push_int(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    let mut digits = [0u8; 20];
    let mut rest = n.unsigned_abs();
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + u8::try_from(rest % 10).unwrap_or(0);
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &d in &digits[start..] {
        out.push(char::from(d));
    }
}

/// The CGI header block (CGI::Session's `header()`): `Set-Cookie` when there is a cookie, then
/// `Content-Type`, then the empty line ending the headers, all CRLF-terminated.
///
/// ```
/// use cgi_session_core::cookie::cgi_header;
///
/// assert_eq!(cgi_header(None, "text/html"), "Content-Type: text/html\r\n\r\n");
/// ```
pub fn cgi_header(cookie: Option<&Cookie<'_>>, content_type: &str) -> String {
    let mut out = String::new();
    if let Some(c) = cookie {
        out.push_str("Set-Cookie: ");
        out.push_str(&set_cookie_value(c));
        out.push_str("\r\n");
    }
    out.push_str("Content-Type: ");
    out.push_str(content_type);
    out.push_str("\r\n\r\n");
    out
}

/// The keys that sign session cookies, with rotation: the newest signs, every key verifies.
///
/// Signing (HMAC-SHA256, the `cookie` crate's signed jar) makes a cookie whose value was
/// altered, or signed with a key not in the set, count as no cookie. To rotate, put a new key
/// first and keep the old one as [`previous`](Self::previous) until every cookie it signed has
/// expired: cookies signed with it still verify, and adapters re-send them signed with the
/// newest key ([`Verified::by_newest`]). Every adapter (tower, actix-web, CGI) uses this type.
///
/// ```
/// use cgi_session_core::cookie::{Key, SigningKeys};
/// use cgi_session_core::CookieConfig;
///
/// let old = Key::generate();
/// let signed_by_old = SigningKeys::new(old.clone())
///     .sign(CookieConfig::default().session_cookie("abc", None));
///
/// // Rotation: a new key signs; the old one is still accepted.
/// let keys = SigningKeys::new(Key::generate()).previous(old);
/// let verified = keys.verify("CGISESSID", signed_by_old.value()).unwrap();
/// assert_eq!(verified.value, "abc");
/// assert!(!verified.by_newest, "re-send it signed with the newest key");
///
/// let fresh = keys.sign(CookieConfig::default().session_cookie("abc", None));
/// assert!(keys.verify("CGISESSID", fresh.value()).unwrap().by_newest);
/// assert!(keys.verify("CGISESSID", "abc").is_none(), "an unsigned value is refused");
/// ```
#[derive(Clone)]
pub struct SigningKeys {
    /// Newest first; never empty.
    keys: Vec<Key>,
}

/// The `cookie` crate's signing key (64 bytes: [`Key::generate`], [`Key::from`] a secret of
/// at least 64 bytes, or `Key::derive_from` a 32-byte master key with the `cookie` crate's
/// `key-expansion` feature).
pub use ::cookie::Key;

/// A cookie value that [`SigningKeys::verify`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// The value without its signature.
    pub value: String,
    /// Whether the newest key signed it; `false` when an older one did, and the adapter should
    /// send the cookie again signed with the newest key.
    pub by_newest: bool,
}

impl SigningKeys {
    /// Signs with `newest` and accepts only cookies it signed.
    pub fn new(newest: Key) -> Self {
        Self { keys: vec![newest] }
    }

    /// Also accepts cookies signed with `older` (never signs with it). Call it once per
    /// retired key, newest retired key first.
    #[must_use]
    pub fn previous(mut self, older: Key) -> Self {
        self.keys.push(older);
        self
    }

    /// How many keys verify (the newest and the previous ones).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always `false`: there is at least the newest key.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `cookie` with its value signed by the newest key (attributes unchanged).
    pub fn sign(&self, cookie: Cookie<'static>) -> Cookie<'static> {
        let name = cookie.name().to_owned();
        let mut jar = ::cookie::CookieJar::new();
        jar.signed_mut(&self.keys[0]).add(cookie.clone());
        jar.get(&name).cloned().unwrap_or(cookie)
    }

    /// The value of the cookie `name` whose signed value is `signed_value`, when one of the
    /// keys signed it; `None` when it was altered, unsigned or signed with another key.
    pub fn verify(&self, name: &str, signed_value: &str) -> Option<Verified> {
        self.keys.iter().enumerate().find_map(|(i, key)| {
            let cookie = Cookie::new(name.to_owned(), signed_value.to_owned());
            let verified = ::cookie::CookieJar::new().signed(key).verify(cookie)?;
            Some(Verified {
                value: verified.value().to_owned(),
                by_newest: i == 0,
            })
        })
    }
}

impl std::fmt::Debug for SigningKeys {
    /// Shows how many keys there are, never the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl From<Key> for SigningKeys {
    fn from(key: Key) -> Self {
        Self::new(key)
    }
}

/// How long a session's cookie lasts: `Max-Age` and `Expires`, each when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Lifetime {
    /// Seconds (`Max-Age`); only above 0 is it sent.
    pub(crate) max_age: Option<i64>,
    /// Unix seconds (`Expires`).
    pub(crate) expires: Option<i64>,
}

impl Lifetime {
    /// The cookie lifetime of `record` at `now`: none for a browser-session cookie;
    /// otherwise `Max-Age` = the idle timeout, capped by what is left until the absolute
    /// expiry, which also gives `Expires`.
    pub(crate) fn of(record: &Record, now: i64) -> Self {
        if record.browser_session_cookie() {
            return Self::default();
        }
        let absolute = record.absolute_expiry();
        let until_absolute = absolute.map(|at| at.saturating_sub(now).max(0));
        let idle = record.etime.filter(|e| *e > 0);
        let max_age = match (idle, until_absolute) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self {
            max_age,
            expires: absolute,
        }
    }
}

/// [`Session::cookie`](crate::Session::cookie): none without an id, the removal cookie for a
/// deleted session, otherwise the session cookie with its [`Lifetime`].
pub(crate) fn for_session(
    config: &CookieConfig,
    id: Option<&SessionId>,
    deleted: bool,
    lifetime: Lifetime,
) -> Option<Cookie<'static>> {
    let id = id?;
    Some(if deleted {
        config.removal_cookie()
    } else {
        let mut cookie = config.session_cookie(id.as_str(), lifetime.max_age);
        if let Some(at) = lifetime
            .expires
            .and_then(|at| ::cookie::time::OffsetDateTime::from_unix_timestamp(at).ok())
        {
            cookie.set_expires(at);
            if lifetime.max_age == Some(0) {
                // Past the absolute expiry: the browser should drop it now.
                cookie.set_max_age(::cookie::time::Duration::ZERO);
            }
        }
        cookie
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "5ee0c1d2a1b2c3d4e5f60718293a4b5c";

    #[test]
    fn rotation_signs_with_the_newest_and_accepts_the_previous_keys_only() {
        let (a, b, c) = (Key::generate(), Key::generate(), Key::generate());
        let by = |k: &Key| {
            SigningKeys::new(k.clone()).sign(CookieConfig::default().session_cookie(ID, Some(60)))
        };
        let keys = SigningKeys::new(c.clone()).previous(b.clone());
        let newest = keys.verify(DEFAULT_COOKIE_NAME, by(&c).value()).unwrap();
        assert_eq!((newest.value.as_str(), newest.by_newest), (ID, true));
        let older = keys.verify(DEFAULT_COOKIE_NAME, by(&b).value()).unwrap();
        assert_eq!((older.value.as_str(), older.by_newest), (ID, false));
        assert!(
            keys.verify(DEFAULT_COOKIE_NAME, by(&a).value()).is_none(),
            "a retired key"
        );
        let mut tampered = by(&c).value().to_owned();
        tampered.pop();
        tampered.push('0');
        assert!(keys.verify(DEFAULT_COOKIE_NAME, &tampered).is_none());
        let signed = keys.sign(CookieConfig::default().session_cookie(ID, Some(60)));
        assert_eq!(
            signed.max_age(),
            Some(::cookie::time::Duration::seconds(60))
        );
        assert_ne!(signed.value(), ID);
        assert!(!format!("{keys:?}").contains(&format!("{:?}", c.master())));
    }

    #[test]
    fn the_set_cookie_value_is_the_cookie_crates_text() {
        let id = SessionId::parse(ID).unwrap();
        let mut seen = 0;
        for secure in [false, true] {
            for http_only in [false, true] {
                for same_site in [
                    None,
                    Some(SameSite::Strict),
                    Some(SameSite::Lax),
                    Some(SameSite::None),
                ] {
                    for domain in [None, Some("example.org".to_owned())] {
                        for path in ["/", "/app"] {
                            let config = CookieConfig {
                                name: "S".into(),
                                path: path.into(),
                                domain: domain.clone(),
                                secure,
                                http_only,
                                same_site,
                            };
                            for max_age in [
                                None,
                                Some(-5),
                                Some(0),
                                Some(1),
                                Some(1800),
                                Some(i64::from(i32::MAX)),
                            ] {
                                let lifetime = Lifetime {
                                    max_age,
                                    expires: None,
                                };
                                let cookie =
                                    for_session(&config, Some(&id), false, lifetime).unwrap();
                                assert_eq!(set_cookie_value(&cookie), cookie.to_string());
                                let expiring = for_session(
                                    &config,
                                    Some(&id),
                                    false,
                                    Lifetime {
                                        max_age,
                                        expires: Some(1_000_000),
                                    },
                                )
                                .unwrap();
                                assert_eq!(set_cookie_value(&expiring), expiring.to_string());
                                seen += 1;
                            }
                            let removal = config.removal_cookie();
                            assert_eq!(set_cookie_value(&removal), removal.to_string());
                        }
                    }
                }
            }
        }
        assert_eq!(seen, 2 * 2 * 4 * 2 * 2 * 6);
        // Attributes a session cookie never has, set by hand.
        let mut odd = Cookie::new("a", "b");
        odd.set_secure(false);
        odd.set_same_site(SameSite::None);
        assert_eq!(set_cookie_value(&odd), odd.to_string());
        odd.set_max_age(::cookie::time::Duration::seconds(-90));
        assert_eq!(set_cookie_value(&odd), odd.to_string());
        odd.set_partitioned(true);
        assert_eq!(set_cookie_value(&odd), odd.to_string());
    }

    #[test]
    fn each_kind_of_expiry_gives_its_cookie_lifetime() {
        let config = CookieConfig::default();
        let id = SessionId::parse(ID).unwrap();
        let now = 1_000_000;
        let mut record = Record::new(ID.into(), now, String::new());
        let cookie = |r: &Record| {
            for_session(&config, Some(&id), false, Lifetime::of(r, now))
                .unwrap()
                .to_string()
        };
        assert!(!cookie(&record).contains("Max-Age"), "no expiry at all");
        record.etime = Some(1800);
        assert!(cookie(&record).ends_with("; Max-Age=1800"), "idle");
        record.set_absolute_expiry(Some(now + 600));
        let absolute = cookie(&record);
        assert!(absolute.contains("; Max-Age=600"), "{absolute}");
        assert!(
            absolute.contains("Expires=Mon, 12 Jan 1970 13:56:40 GMT"),
            "{absolute}"
        );
        record.etime = None;
        assert!(cookie(&record).contains("; Max-Age=600"));
        record.set_absolute_expiry(Some(now - 1));
        assert!(cookie(&record).contains("; Max-Age=0"), "past it");
        record.etime = Some(1800);
        record.set_absolute_expiry(None);
        record.set_browser_session_cookie(true);
        let browser = cookie(&record);
        assert_eq!(
            browser,
            format!("CGISESSID={ID}; HttpOnly; SameSite=Lax; Path=/")
        );
    }

    #[test]
    fn every_attribute_of_the_config_reaches_the_cookie() {
        let config = CookieConfig {
            name: "S".into(),
            path: "/app".into(),
            domain: Some("example.org".into()),
            secure: true,
            http_only: false,
            same_site: None,
        };
        assert_eq!(
            config.session_cookie(ID, Some(60)).to_string(),
            format!("S={ID}; Secure; Path=/app; Domain=example.org; Max-Age=60")
        );
        let removal = config.removal_cookie();
        assert_eq!(removal.name(), "S");
        assert_eq!(removal.value(), "");
        assert_eq!(removal.path(), Some("/app"));
        assert_eq!(removal.domain(), Some("example.org"));
        assert_eq!(removal.secure(), Some(true));
        assert_eq!(removal.max_age(), Some(::cookie::time::Duration::ZERO));
    }

    #[test]
    fn a_session_without_an_id_has_no_cookie_and_a_deleted_one_a_removal_cookie() {
        let config = CookieConfig::default();
        let id = SessionId::parse(ID).unwrap();
        let idle = |secs| Lifetime {
            max_age: Some(secs),
            expires: None,
        };
        assert!(for_session(&config, None, false, idle(60)).is_none());
        let live = for_session(&config, Some(&id), false, idle(60)).unwrap();
        assert_eq!(live.value(), ID);
        assert_eq!(live.max_age(), Some(::cookie::time::Duration::seconds(60)));
        let negative = for_session(&config, Some(&id), false, idle(-1)).unwrap();
        assert_eq!(negative.max_age(), None);
        let gone = for_session(&config, Some(&id), true, idle(60)).unwrap();
        assert_eq!(gone.value(), "");
        assert_eq!(gone.max_age(), Some(::cookie::time::Duration::ZERO));
        assert_eq!(
            cgi_header(Some(&gone), "text/plain"),
            format!("Set-Cookie: {gone}\r\nContent-Type: text/plain\r\n\r\n")
        );
    }
}
