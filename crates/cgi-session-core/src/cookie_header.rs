//! One parser for `Cookie` request headers, shared by every adapter (the tower layer, the CGI
//! adapter), so that they all find the same session cookie in the same header as CGI.pm does.
//!
//! It works on the header's raw bytes: a browser sends other cookies of the site as they were
//! set, and a Perl page that set `lang=français` in latin-1 makes every later `Cookie` header
//! hold a byte that is not UTF-8 (and that `http::HeaderValue::to_str` refuses). Such bytes in
//! *other* cookies never hide the session cookie.
//!
//! The rules, in the order they apply:
//!
//! * **Several headers** are read in order, as if joined with `; ` (HTTP/2 clients send one
//!   `Cookie` header per cookie; RFC 9113 §8.2.3).
//! * Each header is **split on `;`** (never on `,`: commas are part of values, RFC 6265).
//! * Each piece is split at its **first `=`**: the name before it, the value after it (a value
//!   may hold more `=`, as base64 and signed values do). Names and values are **trimmed** of
//!   ASCII whitespace.
//! * A piece **without `=`** (what `document.cookie = "flag"` makes a browser send) and a piece
//!   with an **empty name** name no cookie and are skipped.
//! * A value in **double quotes** (`a="x"`, RFC 6265's quoted form) loses one pair of them.
//! * Values are **not percent-decoded**: session ids never need escaping, so a `%` in a session
//!   cookie makes it malformed.
//! * When a name appears **more than once, the first one counts** (CGI.pm's rule: browsers send
//!   the cookie with the longest path first, RFC 6265 §5.4). A later session cookie is not
//!   used even when the first is empty or malformed, so that a Perl page and a Rust page always
//!   pick the same session.
//!
//! Nothing is allocated and nothing panics, whatever the bytes.
//!
//! Where CGI.pm (`CGI::Cookie->parse`, 4.x) reads the same header differently, only in cases
//! browsers do not produce for a session cookie CGI::Session set: it also splits on `,`, keeps
//! the quotes of a quoted value, does not trim around `=`, and percent-decodes values.
//!
//! ```
//! use cgi_session_core::cookie_header::{session_cookie, SessionCookie};
//!
//! // Chrome's header, with a latin-1 byte in another cookie, then a second header (HTTP/2).
//! let headers: [&[u8]; 2] = [
//!     b"lang=fran\xe7ais; theme=\"dark\"; flag",
//!     b"CGISESSID=5ee0c1d2a1b2c3d4e5f60718293a4b5c",
//! ];
//! assert_eq!(
//!     session_cookie(headers, "CGISESSID"),
//!     SessionCookie::Id("5ee0c1d2a1b2c3d4e5f60718293a4b5c")
//! );
//! assert_eq!(session_cookie([&b"a=1"[..]], "CGISESSID"), SessionCookie::Absent);
//! assert_eq!(session_cookie([&b"CGISESSID=../x"[..]], "CGISESSID"), SessionCookie::Malformed);
//! ```

use std::fmt;

use crate::id::MAX_ID_LEN;

/// One `name=value` cookie of a `Cookie` header, as the raw bytes sent (trimmed, one pair of
/// surrounding double quotes removed from the value).
///
/// Its `Debug` shows the name and only the value's length: values may be session ids or other
/// secrets.
///
/// ```
/// use cgi_session_core::cookie_header::pairs;
///
/// let all: Vec<_> = pairs([&b"a=1; b=\"two\"; c=x=y"[..]]).collect();
/// assert_eq!(all[1].name, b"b");
/// assert_eq!(all[1].value, b"two");
/// assert_eq!(all[2].value, b"x=y");
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CookiePair<'a> {
    /// The cookie's name, never empty.
    pub name: &'a [u8],
    /// The cookie's value, possibly empty.
    pub value: &'a [u8],
}

impl fmt::Debug for CookiePair<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookiePair")
            .field("name", &String::from_utf8_lossy(self.name))
            .field("value_len", &self.value.len())
            .finish()
    }
}

/// Every cookie of the `Cookie` header(s) `headers`, in the order sent, duplicates included
/// (see the [module documentation](self) for the rules).
///
/// ```
/// use cgi_session_core::cookie_header::pairs;
///
/// // Firefox's form, a piece without `=`, an empty name, and an empty value.
/// let names: Vec<&[u8]> = pairs([&b"a=1; flag; =x; b="[..]]).map(|c| c.name).collect();
/// assert_eq!(names, [&b"a"[..], &b"b"[..]]);
/// ```
pub fn pairs<'a, I>(headers: I) -> impl Iterator<Item = CookiePair<'a>>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    headers
        .into_iter()
        .flat_map(|header| header.split(|&b| b == b';'))
        .filter_map(parse_pair)
}

/// The value of the first cookie named `name` in `headers`, or `None` when there is none.
///
/// ```
/// use cgi_session_core::cookie_header::first_value;
///
/// let h: &[u8] = b"id=first; id=second";
/// assert_eq!(first_value([h], "id"), Some(&b"first"[..]));
/// assert_eq!(first_value([h], "other"), None);
/// ```
pub fn first_value<'a, I>(headers: I, name: &str) -> Option<&'a [u8]>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    pairs(headers)
        .find(|c| c.name == name.as_bytes())
        .map(|c| c.value)
}

/// What a request's `Cookie` header(s) say about the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCookie<'a> {
    /// No cookie of that name was sent.
    Absent,
    /// The (first) cookie of that name is empty (`CGISESSID=`).
    Empty,
    /// The (first) cookie of that name is not a well-formed session id (see
    /// [`SessionId::parse`](crate::SessionId::parse)): treat it as no session.
    Malformed,
    /// The (first) cookie of that name holds a well-formed session id (not necessarily a
    /// stored one).
    Id(&'a str),
}

impl<'a> SessionCookie<'a> {
    /// Classifies one cookie value (e.g. a signed cookie's value once its signature is
    /// checked).
    ///
    /// ```
    /// use cgi_session_core::cookie_header::SessionCookie;
    ///
    /// assert_eq!(SessionCookie::from_value(b"abc-123"), SessionCookie::Id("abc-123"));
    /// assert_eq!(SessionCookie::from_value(b""), SessionCookie::Empty);
    /// assert_eq!(SessionCookie::from_value(b"caf\xe9"), SessionCookie::Malformed);
    /// ```
    pub fn from_value(value: &'a [u8]) -> Self {
        if value.is_empty() {
            return Self::Empty;
        }
        if !well_formed_id(value) {
            return Self::Malformed;
        }
        // All ASCII, so always UTF-8.
        std::str::from_utf8(value).map_or(Self::Malformed, Self::Id)
    }

    /// Whether a cookie of that name was sent at all (even empty or malformed).
    pub fn was_sent(&self) -> bool {
        !matches!(self, Self::Absent)
    }

    /// The well-formed id, if any.
    pub fn id(&self) -> Option<&'a str> {
        match *self {
            Self::Id(id) => Some(id),
            _ => None,
        }
    }
}

/// The session cookie `name` of a request with the `Cookie` header(s) `headers`: its first
/// occurrence, classified (see the [module documentation](self)).
///
/// ```
/// use cgi_session_core::cookie_header::{session_cookie, SessionCookie};
///
/// // The first session cookie counts, as in CGI.pm, even when it is malformed.
/// let h: &[u8] = b"CGISESSID=a/b; CGISESSID=abc";
/// assert_eq!(session_cookie([h], "CGISESSID"), SessionCookie::Malformed);
/// let h: &[u8] = b"CGISESSID=\"abc\"; CGISESSID=a/b";
/// assert_eq!(session_cookie([h], "CGISESSID").id(), Some("abc"));
/// ```
pub fn session_cookie<'a, I>(headers: I, name: &str) -> SessionCookie<'a>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    first_value(headers, name).map_or(SessionCookie::Absent, SessionCookie::from_value)
}

/// [`SessionId::parse`](crate::SessionId::parse)'s rule (1 to [`MAX_ID_LEN`] bytes of `A-Z a-z 0-9 _ -`) without
/// making the id: the cookie is checked on every request.
fn well_formed_id(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

fn parse_pair(piece: &[u8]) -> Option<CookiePair<'_>> {
    let eq = piece.iter().position(|&b| b == b'=')?;
    let name = piece[..eq].trim_ascii();
    if name.is_empty() {
        return None;
    }
    let mut value = piece[eq + 1..].trim_ascii();
    if let [b'"', inner @ .., b'"'] = value {
        value = inner;
    }
    Some(CookiePair { name, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "5ee0c1d2a1b2c3d4e5f60718293a4b5c";

    #[test]
    fn a_value_is_an_id_exactly_when_session_id_parse_takes_it() {
        let long = "a".repeat(MAX_ID_LEN);
        let too_long = "a".repeat(MAX_ID_LEN + 1);
        let mut values: Vec<Vec<u8>> = [
            ID, "a", "A-z_9", "", " a", "a b", "a/b", "a.b", "é", &long, &too_long,
        ]
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect();
        values.extend((0..=255u8).map(|b| vec![b'x', b]));
        for value in values {
            let parsed = std::str::from_utf8(&value)
                .ok()
                .filter(|text| crate::SessionId::parse(text).is_ok());
            let expected = match parsed {
                _ if value.is_empty() => SessionCookie::Empty,
                Some(text) => SessionCookie::Id(text),
                None => SessionCookie::Malformed,
            };
            assert_eq!(SessionCookie::from_value(&value), expected, "{value:?}");
        }
    }

    fn find<'a>(headers: &[&'a [u8]]) -> SessionCookie<'a> {
        session_cookie(headers.iter().copied(), "CGISESSID")
    }

    #[test]
    fn browser_headers_find_the_session_cookie() {
        // Chrome: "; " separators, analytics cookies with `=` and `.` in values.
        let chrome = format!(
            "_ga=GA1.1.1234567890.1700000000; _ga_ABC=GS1.1.1700000000.1.0.1700000000.0.0.0; CGISESSID={ID}; prefs=eyJhIjoxfQ=="
        );
        assert_eq!(find(&[chrome.as_bytes()]), SessionCookie::Id(ID));
        // Firefox: the same format; a cookie set with an empty value and one without `=`.
        let firefox = format!("empty=; flag; CGISESSID={ID}");
        assert_eq!(find(&[firefox.as_bytes()]), SessionCookie::Id(ID));
        // No space after `;`, spaces around `=` (curl, hand-written clients).
        let tight = format!("a=1;CGISESSID = {ID} ;b=2");
        assert_eq!(find(&[tight.as_bytes()]), SessionCookie::Id(ID));
    }

    #[test]
    fn non_utf8_bytes_in_other_cookies_do_not_hide_the_session() {
        let mut header = b"lang=fran\xe7ais; CGISESSID=".to_vec();
        header.extend_from_slice(ID.as_bytes());
        header.extend_from_slice(b"; x=\xff\xfe\x80");
        assert_eq!(find(&[&header]), SessionCookie::Id(ID));
        let all: Vec<_> = pairs([&header[..]]).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].value, b"fran\xe7ais");
        // A non-UTF-8 session cookie is malformed, not a panic.
        assert_eq!(find(&[b"CGISESSID=\xe7\xe7"]), SessionCookie::Malformed);
        // A name that is not UTF-8 is just another cookie.
        assert_eq!(first_value([&b"\xe7=1; a=2"[..]], "a"), Some(&b"2"[..]));
    }

    #[test]
    fn several_headers_are_read_in_order() {
        let session = format!("CGISESSID={ID}");
        assert_eq!(
            find(&[b"a=1", b"lang=fran\xe7ais", session.as_bytes(), b"z=9"]),
            SessionCookie::Id(ID)
        );
        // The first header's session cookie counts.
        assert_eq!(
            find(&[b"CGISESSID=first", session.as_bytes()]),
            SessionCookie::Id("first")
        );
        assert_eq!(find(&[]), SessionCookie::Absent);
        assert_eq!(find(&[b"", b";"]), SessionCookie::Absent);
    }

    #[test]
    fn the_first_session_cookie_counts_as_in_cgi_pm() {
        let twice = format!("CGISESSID={ID}; CGISESSID=0123456789abcdef");
        assert_eq!(find(&[twice.as_bytes()]), SessionCookie::Id(ID));
        let empty_first = format!("CGISESSID=; CGISESSID={ID}");
        assert_eq!(find(&[empty_first.as_bytes()]), SessionCookie::Empty);
        let bad_first = format!("CGISESSID=a%20b; CGISESSID={ID}");
        assert_eq!(find(&[bad_first.as_bytes()]), SessionCookie::Malformed);
    }

    #[test]
    fn quotes_equals_signs_and_empty_values() {
        assert_eq!(
            find(&[format!("CGISESSID=\"{ID}\"").as_bytes()]),
            SessionCookie::Id(ID)
        );
        assert_eq!(find(&[b"CGISESSID=\"\""]), SessionCookie::Empty);
        assert_eq!(find(&[b"CGISESSID=\""]), SessionCookie::Malformed);
        assert_eq!(find(&[b"CGISESSID="]), SessionCookie::Empty);
        assert_eq!(find(&[b"CGISESSID"]), SessionCookie::Absent);
        assert_eq!(find(&[b"CGISESSID=abc=def"]), SessionCookie::Malformed);
        assert_eq!(
            first_value([&b"sig=ab+/cd==x"[..]], "sig"),
            Some(&b"ab+/cd==x"[..])
        );
        // Names are case-sensitive and must match whole.
        assert_eq!(
            find(&[b"cgisessid=abc; XCGISESSID=abc"]),
            SessionCookie::Absent
        );
        // Commas are part of values, not separators.
        assert_eq!(find(&[b"a=1, CGISESSID=abc"]), SessionCookie::Absent);
    }

    #[test]
    fn hostile_headers_never_panic() {
        let long = vec![b';'; 100_000];
        let mut mixed = Vec::new();
        for i in 0..=255u8 {
            mixed.extend_from_slice(&[i, b'=', i, b';', b'"', i, b'"', b'=']);
        }
        for h in [
            &b""[..],
            b"=",
            b"==",
            b"\"",
            b"=\"",
            b" ; ; ",
            b"\0=\0",
            b"CGISESSID=\r\n",
            &long,
            &mixed,
        ] {
            let _ = find(&[h]);
            let _ = pairs([h]).count();
        }
        let mut huge = b"CGISESSID=".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 200));
        assert_eq!(find(&[&huge]), SessionCookie::Malformed);
    }

    #[test]
    fn debug_hides_values() {
        let p = pairs([&b"CGISESSID=secretvalue"[..]]).next().unwrap();
        let dbg = format!("{p:?}");
        assert!(
            dbg.contains("CGISESSID") && !dbg.contains("secretvalue"),
            "{dbg}"
        );
    }
}
