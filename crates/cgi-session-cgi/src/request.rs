//! [`CgiRequest`]: the request a web server hands a CGI program (RFC 3875 meta-variables and
//! an `application/x-www-form-urlencoded` body), parsed without panics.

use std::fmt;
use std::io::{self, Read};

use cgi_session::client_addr::{ForwardedHeader, TrustedProxies};
use cgi_session::cookie::SigningKeys;
use cgi_session::cookie_header::{self, SessionCookie};

use crate::error::CgiError;
use crate::log;

/// Largest request body [`CgiRequest::from_env`] reads: 1 MiB. Larger bodies are refused with
/// [`CgiError::BodyTooLarge`] before anything is read.
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

/// The media type of HTML forms, the only POST body this crate parses.
pub const FORM_URLENCODED: &str = "application/x-www-form-urlencoded";

/// What a CGI program needs from its request: cookies, query-string and form parameters, the
/// client's address. CGI::Session's `$cgi` query object.
///
/// ```
/// use cgi_session_cgi::CgiRequest;
///
/// let env = [
///     ("REQUEST_METHOD", "POST"),
///     ("QUERY_STRING", "lang=en&CGISESSID=from-query"),
///     ("HTTP_COOKIE", "theme=dark; CGISESSID=from-cookie"),
///     ("CONTENT_TYPE", "application/x-www-form-urlencoded"),
///     ("CONTENT_LENGTH", "21"),
///     ("REMOTE_ADDR", "192.0.2.7"),
/// ];
/// let req = CgiRequest::from_parts(env, &b"greet_en=Hi+%21&x=%zz"[..], 1024).unwrap();
/// assert_eq!(req.cookie("theme"), Some("dark"));
/// assert_eq!(req.param("greet_en"), Some("Hi !"));
/// assert_eq!(req.param("x"), Some("%zz"));  // malformed escapes are kept, never a panic
/// assert_eq!(req.param("lang"), Some("en"));
/// assert_eq!(req.remote_addr(), Some("192.0.2.7"));
/// // CGI::Session's order: the cookie first, then the parameter.
/// assert_eq!(req.session_id("CGISESSID"), Some("from-cookie"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CgiRequest {
    method: String,
    /// `HTTP_COOKIE` as the server passed it (bytes: other cookies may not be UTF-8).
    cookie_header: Vec<u8>,
    cookies: Vec<(String, String)>,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
    remote_addr: Option<String>,
    /// `REMOTE_ADDR` as the server passed it, before [`CgiRequest::trust_proxies`].
    peer_addr: Option<String>,
    /// `HTTP_X_FORWARDED_FOR` and `HTTP_FORWARDED`, read only behind trusted proxies.
    x_forwarded_for: Option<Vec<u8>>,
    forwarded: Option<Vec<u8>>,
}

impl fmt::Debug for CgiRequest {
    /// Lists names only: cookie and parameter values may hold session ids or secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        f.debug_struct("CgiRequest")
            .field("method", &self.method)
            .field("cookies", &names(&self.cookies))
            .field("query", &names(&self.query))
            .field("form", &names(&self.form))
            .field("remote_addr", &self.remote_addr)
            .finish()
    }
}

impl CgiRequest {
    /// Reads the request from the process environment and, for an
    /// `application/x-www-form-urlencoded` POST, from standard input (at most
    /// [`DEFAULT_MAX_BODY`] bytes). Other bodies (e.g. `multipart/form-data`) are left unread
    /// on standard input.
    ///
    /// # Errors
    /// [`CgiError::BodyTooLarge`], [`CgiError::BadContentLength`],
    /// [`CgiError::TruncatedBody`], [`CgiError::Body`]: answer with
    /// [`CgiError::response`].
    pub fn from_env() -> Result<Self, CgiError> {
        Self::from_env_with_limit(DEFAULT_MAX_BODY)
    }

    /// [`CgiRequest::from_env`] with another body size limit.
    ///
    /// # Errors
    /// As [`CgiRequest::from_env`].
    pub fn from_env_with_limit(max_body: u64) -> Result<Self, CgiError> {
        log::ensure_installed();
        // Values as bytes: `HTTP_COOKIE` may hold bytes that are not UTF-8 (a latin-1 `ç` in
        // another cookie of the site), which must not spoil the session cookie.
        let vars = std::env::vars_os()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.into_encoded_bytes()));
        Self::from_parts(vars, io::stdin().lock(), max_body)
    }

    /// Builds a request from CGI meta-variables and a body reader (what
    /// [`CgiRequest::from_env`] does with the real environment and standard input); for
    /// tests and for servers that hand over the variables another way.
    ///
    /// Values are text (`&str`, `String`) or bytes (`&[u8]`, `Vec<u8>`): `HTTP_COOKIE` is read
    /// as bytes, so a cookie that is not UTF-8 is passed as the browser sent it; other
    /// variables are read as text (invalid UTF-8 replaced by `U+FFFD`).
    ///
    /// ```
    /// use cgi_session_cgi::CgiRequest;
    ///
    /// // A Perl page set `lang` in latin-1: the session cookie is still found.
    /// let env: [(&str, &[u8]); 1] =
    ///     [("HTTP_COOKIE", b"lang=fran\xe7ais; CGISESSID=5ee0c1d2a1b2c3d4e5f60718293a4b5c")];
    /// let req = CgiRequest::from_parts(env, std::io::empty(), 0)?;
    /// assert_eq!(req.session_id("CGISESSID"), Some("5ee0c1d2a1b2c3d4e5f60718293a4b5c"));
    /// assert_eq!(req.cookie("lang"), Some("fran\u{FFFD}ais"));
    /// # Ok::<(), cgi_session_cgi::CgiError>(())
    /// ```
    ///
    /// # Errors
    /// As [`CgiRequest::from_env`].
    pub fn from_parts<I, K, V>(
        vars: I,
        mut body: impl Read,
        max_body: u64,
    ) -> Result<Self, CgiError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let mut req = CgiRequest::default();
        let mut content_type = String::new();
        let mut content_length = String::new();
        for (k, v) in vars {
            let raw = v.as_ref();
            if k.as_ref() == "HTTP_COOKIE" {
                req.cookie_header = raw.to_vec();
                req.cookies = cookie_header::pairs([raw])
                    .map(|c| {
                        (
                            String::from_utf8_lossy(c.name).into_owned(),
                            String::from_utf8_lossy(c.value).into_owned(),
                        )
                    })
                    .collect();
                continue;
            }
            let v = String::from_utf8_lossy(raw);
            let v = v.as_ref();
            match k.as_ref() {
                "REQUEST_METHOD" => req.method = v.trim().to_ascii_uppercase(),
                "QUERY_STRING" => req.query = parse_urlencoded(raw),
                "REMOTE_ADDR" => {
                    req.remote_addr = Some(v.trim().to_owned()).filter(|a| !a.is_empty());
                    req.peer_addr.clone_from(&req.remote_addr);
                }
                "HTTP_X_FORWARDED_FOR" => req.x_forwarded_for = Some(raw.to_vec()),
                "HTTP_FORWARDED" => req.forwarded = Some(raw.to_vec()),
                "CONTENT_TYPE" => content_type = v.to_owned(),
                "CONTENT_LENGTH" => content_length = v.trim().to_owned(),
                _ => {}
            }
        }
        let media_type = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if req.method == "POST" && media_type == FORM_URLENCODED && !content_length.is_empty() {
            let length: u64 = content_length
                .parse()
                .map_err(|_| CgiError::BadContentLength(content_length.clone()))?;
            if length > max_body {
                return Err(CgiError::BodyTooLarge {
                    length,
                    limit: max_body,
                });
            }
            let mut bytes = Vec::new();
            (&mut body)
                .take(length)
                .read_to_end(&mut bytes)
                .map_err(CgiError::Body)?;
            let read = bytes.len() as u64;
            if read < length {
                return Err(CgiError::TruncatedBody {
                    expected: length,
                    read,
                });
            }
            req.form = parse_urlencoded(&bytes);
        }
        Ok(req)
    }

    /// The request method (`GET`, `POST`...), upper-cased; empty when the server gave none.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The value of the first cookie named `name`, as sent (not percent-decoded; one pair of
    /// surrounding double quotes removed; bytes that are not UTF-8 replaced by `U+FFFD`).
    /// `HTTP_COOKIE` is parsed by the parser every adapter shares
    /// ([`cgi_session::cookie_header`]).
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All cookies in the order sent.
    pub fn cookies(&self) -> impl Iterator<Item = (&str, &str)> {
        self.cookies.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The first value of parameter `name` (CGI.pm's `param($name)`): form fields of a POST
    /// body first, then the query string.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// Every value of parameter `name`, form fields first.
    pub fn param_all(&self, name: &str) -> Vec<&str> {
        self.params()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
            .collect()
    }

    /// All parameters, form fields of a POST body first, then the query string (CGI.pm's
    /// order), with repeats. Pass it to
    /// [`CgiSession::save_params`](crate::CgiSession::save_params) for CGI::Session's
    /// `save_param`.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.form
            .iter()
            .chain(self.query.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The client's address (used for ip matching): `REMOTE_ADDR`, or behind trusted proxies
    /// the address they forwarded ([`CgiRequest::trust_proxies`]).
    pub fn remote_addr(&self) -> Option<&str> {
        self.remote_addr.as_deref()
    }

    /// `REMOTE_ADDR` as the web server passed it: the connection's address (a proxy's, behind
    /// one).
    pub fn peer_addr(&self) -> Option<&str> {
        self.peer_addr.as_deref()
    }

    /// Behind reverse proxies: when `REMOTE_ADDR` is one of `proxies`, the client address
    /// ([`CgiRequest::remote_addr`], which [`CgiSession`](crate::CgiSession) uses for ip
    /// matching) becomes the rightmost untrusted address the proxies forwarded in
    /// `HTTP_X_FORWARDED_FOR` (or `HTTP_FORWARDED`, as [`TrustedProxies::header`] says), by the
    /// rule every adapter shares ([`TrustedProxies::client_addr`]). From any other address the
    /// headers are ignored: clients can send them too.
    ///
    /// ```
    /// use cgi_session_cgi::{CgiRequest, TrustedProxies};
    ///
    /// let proxies = TrustedProxies::parse("127.0.0.1")?;
    /// let env = [("REMOTE_ADDR", "127.0.0.1"), ("HTTP_X_FORWARDED_FOR", "198.51.100.1, 192.0.2.7")];
    /// let req = CgiRequest::from_parts(env, std::io::empty(), 0)?.trust_proxies(&proxies);
    /// assert_eq!(req.remote_addr(), Some("192.0.2.7"));
    /// assert_eq!(req.peer_addr(), Some("127.0.0.1"));
    ///
    /// // The same header from a client that is not a trusted proxy: ignored.
    /// let env = [("REMOTE_ADDR", "203.0.113.5"), ("HTTP_X_FORWARDED_FOR", "192.0.2.7")];
    /// let req = CgiRequest::from_parts(env, std::io::empty(), 0)?.trust_proxies(&proxies);
    /// assert_eq!(req.remote_addr(), Some("203.0.113.5"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn trust_proxies(mut self, proxies: &TrustedProxies) -> Self {
        let Some(peer) = self
            .peer_addr
            .as_deref()
            .and_then(|p| p.parse::<std::net::IpAddr>().ok())
        else {
            return self;
        };
        let value = match proxies.forwarded_header() {
            ForwardedHeader::Forwarded => self.forwarded.as_deref(),
            _ => self.x_forwarded_for.as_deref(),
        };
        let client = proxies.client_addr(peer, value);
        self.remote_addr = Some(client.to_string());
        self
    }

    /// The session id the client claims, in CGI::Session's order (`$cgi->cookie($name) ||
    /// $cgi->param($name)`): the first cookie `name` when it is a well-formed id (stored or
    /// not); no id at all (a fresh session) when that cookie is malformed; the parameter
    /// `name` when no such cookie was sent or it is empty.
    ///
    /// The cookie is found by [`cgi_session::cookie_header::session_cookie`], the parser every
    /// adapter shares: other cookies may hold any bytes, and when the session cookie appears
    /// twice the first one counts, as in CGI.pm.
    ///
    /// ```
    /// use cgi_session_cgi::CgiRequest;
    ///
    /// let env = [
    ///     ("HTTP_COOKIE", "CGISESSID=; theme=dark"),
    ///     ("QUERY_STRING", "CGISESSID=from-query"),
    /// ];
    /// let req = CgiRequest::from_parts(env, std::io::empty(), 0)?;
    /// assert_eq!(req.session_id("CGISESSID"), Some("from-query")); // an empty cookie falls through
    /// let env = [("HTTP_COOKIE", "CGISESSID=a/b"), ("QUERY_STRING", "CGISESSID=from-query")];
    /// let req = CgiRequest::from_parts(env, std::io::empty(), 0)?;
    /// assert_eq!(req.session_id("CGISESSID"), None); // a malformed cookie: a fresh session
    /// # Ok::<(), cgi_session_cgi::CgiError>(())
    /// ```
    pub fn session_id(&self, name: &str) -> Option<&str> {
        match cookie_header::session_cookie([&self.cookie_header[..]], name) {
            SessionCookie::Id(id) => Some(id),
            SessionCookie::Malformed => None,
            _ => self.param(name).filter(|v| !v.is_empty()),
        }
    }

    /// The session id the request claims when ids travel signed ([`SigningKeys`]): the
    /// cookie `name`, then the parameter `name` (CGI::Session's order), verified with `keys`.
    /// A value that does not verify (altered, unsigned, or signed with a key no longer in
    /// `keys`) counts as no id. The second value is `true` when an older key signed it (send
    /// the cookie again signed with the newest; [`CgiSession::header`](crate::CgiSession::header)
    /// always does).
    ///
    /// ```
    /// use cgi_session::cookie::{Key, SigningKeys};
    /// use cgi_session::CookieConfig;
    /// use cgi_session_cgi::CgiRequest;
    ///
    /// let keys = SigningKeys::new(Key::generate());
    /// let id = "5ee0c1d2a1b2c3d4e5f60718293a4b5c";
    /// let signed = keys.sign(CookieConfig::default().session_cookie(id, None));
    /// let header = format!("CGISESSID={}", signed.value());
    /// let req = CgiRequest::from_parts([("HTTP_COOKIE", header.as_str())], std::io::empty(), 0)?;
    /// assert_eq!(req.signed_session_id("CGISESSID", &keys), Some((id.to_owned(), false)));
    /// let forged = format!("CGISESSID={id}");
    /// let req = CgiRequest::from_parts([("HTTP_COOKIE", forged.as_str())], std::io::empty(), 0)?;
    /// assert_eq!(req.signed_session_id("CGISESSID", &keys), None, "unsigned");
    /// # Ok::<(), cgi_session_cgi::CgiError>(())
    /// ```
    pub fn signed_session_id(&self, name: &str, keys: &SigningKeys) -> Option<(String, bool)> {
        let raw = match cookie_header::first_value([&self.cookie_header[..]], name) {
            Some(value) if !value.is_empty() => std::str::from_utf8(value).ok()?,
            _ => self.param(name).filter(|v| !v.is_empty())?,
        };
        let Some(verified) = keys.verify(name, raw) else {
            tracing::debug!(
                "session id failed signature verification; treating the request as having no session"
            );
            return None;
        };
        let id = SessionCookie::from_value(verified.value.as_bytes()).id()?;
        Some((id.to_owned(), !verified.by_newest))
    }
}

fn parse_urlencoded(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes)
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn req(
        vars: &[(&str, &str)],
        body: &[u8],
        limit: u64,
    ) -> Result<CgiRequest, CgiError> {
        CgiRequest::from_parts(vars.iter().copied(), body, limit)
    }

    const ID: &str = "5ee0c1d2a1b2c3d4e5f60718293a4b5c";

    /// `HTTP_COOKIE` as raw bytes, as `from_env` passes it.
    pub(crate) fn with_cookie(header: &[u8]) -> CgiRequest {
        CgiRequest::from_parts([("HTTP_COOKIE", header)], std::io::empty(), 0).unwrap()
    }

    #[test]
    fn cookie_beats_parameter_and_empty_cookie_falls_through() {
        let r = req(
            &[
                ("HTTP_COOKIE", "CGISESSID=stale"),
                ("QUERY_STRING", "CGISESSID=fresh"),
            ],
            b"",
            0,
        )
        .unwrap();
        assert_eq!(r.session_id("CGISESSID"), Some("stale"));
        let r = req(
            &[
                ("HTTP_COOKIE", "CGISESSID=; other=1"),
                ("QUERY_STRING", "CGISESSID=fresh"),
            ],
            b"",
            0,
        )
        .unwrap();
        assert_eq!(r.session_id("CGISESSID"), Some("fresh"));
        let r = req(&[], b"", 0).unwrap();
        assert_eq!(r.session_id("CGISESSID"), None);
    }

    #[test]
    fn form_fields_come_before_the_query_string() {
        let body = b"CGISESSID=posted&a=1&a=2";
        let len = body.len().to_string();
        let r = req(
            &[
                ("REQUEST_METHOD", "post"),
                (
                    "CONTENT_TYPE",
                    "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
                ),
                ("CONTENT_LENGTH", &len),
                ("QUERY_STRING", "CGISESSID=query&a=3"),
            ],
            body,
            1024,
        )
        .unwrap();
        assert_eq!(r.method(), "POST");
        assert_eq!(r.session_id("CGISESSID"), Some("posted"));
        assert_eq!(r.param_all("a"), ["1", "2", "3"]);
    }

    #[test]
    fn malformed_cookies_and_escapes_never_panic() {
        for header in [
            "",
            ";;;",
            "=",
            "=value",
            "novalue",
            "a=\"",
            "a=\"\"",
            "CGISESSID=\u{0}\r\n",
            "CGISESSID=%ZZ%",
            "\u{FFFD}=\u{263A}; x",
        ] {
            let r = req(&[("HTTP_COOKIE", header)], b"", 0).unwrap();
            let _ = r.session_id("CGISESSID");
        }
        let r = req(&[("HTTP_COOKIE", " a = \"quoted\" ;b=c=d")], b"", 0).unwrap();
        assert_eq!(r.cookie("a"), Some("quoted"));
        assert_eq!(r.cookie("b"), Some("c=d"));
        for qs in ["%", "%%%", "a=%E9%", "=x&&&", "a=b=c", "%FF%FE=%C3"] {
            let _ = req(&[("QUERY_STRING", qs)], b"", 0).unwrap();
        }
        let r = req(&[("QUERY_STRING", "a=%E9x&b=%zz")], b"", 0).unwrap();
        assert_eq!(r.param("a"), Some("\u{FFFD}x"));
        assert_eq!(r.param("b"), Some("%zz"));
    }

    #[test]
    fn bodies_over_the_limit_or_malformed_lengths_are_refused() {
        let post = |len: &str| {
            req(
                &[
                    ("REQUEST_METHOD", "POST"),
                    ("CONTENT_TYPE", FORM_URLENCODED),
                    ("CONTENT_LENGTH", len),
                ],
                b"a=1",
                2,
            )
        };
        let e = post("3").unwrap_err();
        assert!(
            matches!(
                e,
                CgiError::BodyTooLarge {
                    length: 3,
                    limit: 2
                }
            ),
            "{e}"
        );
        assert_eq!(e.http_status(), 413);
        for bad in ["-1", "two", "1e3", "99999999999999999999999"] {
            let e = post(bad).unwrap_err();
            assert!(matches!(e, CgiError::BadContentLength(_)), "{bad}: {e}");
            assert_eq!(e.http_status(), 400);
        }
        let e = req(
            &[
                ("REQUEST_METHOD", "POST"),
                ("CONTENT_TYPE", FORM_URLENCODED),
                ("CONTENT_LENGTH", "10"),
            ],
            b"a=1",
            100,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                CgiError::TruncatedBody {
                    expected: 10,
                    read: 3
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn other_bodies_are_left_unread() {
        let mut body: &[u8] = b"--boundary";
        let r = CgiRequest::from_parts(
            [
                ("REQUEST_METHOD", "POST"),
                ("CONTENT_TYPE", "multipart/form-data; boundary=x"),
                ("CONTENT_LENGTH", "99999999"),
            ],
            &mut body,
            10,
        )
        .unwrap();
        assert_eq!(r.params().count(), 0);
        assert_eq!(body, b"--boundary");
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let fwd = proxies.clone().header(ForwardedHeader::Forwarded);
        /// (CGI variables, the proxy list, the client address expected).
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            &'a TrustedProxies,
            Option<&'a str>,
        );
        let cases: &[Case<'_>] = &[
            (
                &[
                    ("REMOTE_ADDR", "10.0.0.1"),
                    ("HTTP_X_FORWARDED_FOR", "192.0.2.7, 10.0.0.2"),
                ],
                &proxies,
                Some("192.0.2.7"),
            ),
            (
                &[
                    ("REMOTE_ADDR", "10.0.0.1"),
                    ("HTTP_X_FORWARDED_FOR", "[2001:db8::7]:80"),
                ],
                &proxies,
                Some("2001:db8::7"),
            ),
            (
                &[
                    ("REMOTE_ADDR", "192.0.2.9"),
                    ("HTTP_X_FORWARDED_FOR", "192.0.2.7"),
                ],
                &proxies,
                Some("192.0.2.9"),
            ),
            (
                &[
                    ("REMOTE_ADDR", "10.0.0.1"),
                    ("HTTP_FORWARDED", "for=192.0.2.7"),
                ],
                &proxies,
                Some("10.0.0.1"),
            ),
            (
                &[
                    ("REMOTE_ADDR", "10.0.0.1"),
                    ("HTTP_FORWARDED", "for=\"[2001:db8::7]:80\""),
                ],
                &fwd,
                Some("2001:db8::7"),
            ),
            (
                &[
                    ("REMOTE_ADDR", "10.0.0.1"),
                    ("HTTP_X_FORWARDED_FOR", "192.0.2.7"),
                ],
                &fwd,
                Some("10.0.0.1"),
            ),
            (
                &[
                    ("REMOTE_ADDR", "10.0.0.1"),
                    ("HTTP_X_FORWARDED_FOR", "garbage\u{0}"),
                ],
                &proxies,
                Some("10.0.0.1"),
            ),
            (
                &[
                    ("REMOTE_ADDR", "10.0.0.1"),
                    ("HTTP_FORWARDED", "for=_hidden"),
                ],
                &fwd,
                Some("10.0.0.1"),
            ),
            (
                &[
                    ("REMOTE_ADDR", "not an ip"),
                    ("HTTP_X_FORWARDED_FOR", "192.0.2.7"),
                ],
                &proxies,
                Some("not an ip"),
            ),
            (&[("HTTP_X_FORWARDED_FOR", "192.0.2.7")], &proxies, None),
            (
                &[
                    ("REMOTE_ADDR", "10.0.0.1"),
                    ("HTTP_X_FORWARDED_FOR", "192.0.2.7"),
                ],
                &TrustedProxies::none(),
                Some("10.0.0.1"),
            ),
        ];
        for (vars, proxies, expected) in cases {
            let r = req(vars, b"", 0).unwrap().trust_proxies(proxies);
            assert_eq!(r.remote_addr(), *expected, "{vars:?}");
            assert_eq!(
                r.peer_addr(),
                vars.iter()
                    .find(|(k, _)| *k == "REMOTE_ADDR")
                    .map(|(_, v)| *v)
            );
        }
    }

    #[test]
    fn debug_does_not_show_values() {
        let r = req(&[("HTTP_COOKIE", "CGISESSID=secretvalue123")], b"", 0).unwrap();
        let dbg = format!("{r:?}");
        assert!(
            dbg.contains("CGISESSID") && !dbg.contains("secretvalue123"),
            "{dbg}"
        );
    }

    #[test]
    fn cookie_headers_as_browsers_send_them_find_the_session() {
        let cases: Vec<Vec<u8>> = vec![
            // Chrome, with analytics cookies (dots, `=` padding) around the session cookie.
            format!("_ga=GA1.1.1234567890.1700000000; CGISESSID={ID}; prefs=eyJhIjoxfQ==")
                .into_bytes(),
            // Firefox, with an empty cookie and one set without `=`.
            format!("empty=; flag; CGISESSID={ID}").into_bytes(),
            // A Perl page set `lang` in latin-1: the byte 0xE7 is not UTF-8.
            [&b"lang=fran\xe7ais; CGISESSID="[..], ID.as_bytes()].concat(),
            // Quoted (RFC 6265), and a second session cookie, which CGI.pm ignores.
            format!("CGISESSID=\"{ID}\"; CGISESSID=0123456789abcdef").into_bytes(),
        ];
        for header in &cases {
            let r = with_cookie(header);
            assert_eq!(
                r.session_id("CGISESSID"),
                Some(ID),
                "{}",
                String::from_utf8_lossy(header)
            );
        }
        let r = with_cookie(&cases[2]);
        assert_eq!(r.cookie("lang"), Some("fran\u{FFFD}ais"));
        let r = with_cookie(&cases[0]);
        assert_eq!(r.cookie("prefs"), Some("eyJhIjoxfQ=="));
        // The first session cookie counts: empty falls through to the parameter, malformed
        // gives no id.
        let r = CgiRequest::from_parts(
            [
                ("HTTP_COOKIE", format!("CGISESSID=; CGISESSID={ID}")),
                ("QUERY_STRING", "CGISESSID=fromquery".to_owned()),
            ],
            std::io::empty(),
            0,
        )
        .unwrap();
        assert_eq!(r.session_id("CGISESSID"), Some("fromquery"));
        let r = with_cookie(format!("CGISESSID=a%2Fb; CGISESSID={ID}").as_bytes());
        assert_eq!(r.session_id("CGISESSID"), None);
    }
}
