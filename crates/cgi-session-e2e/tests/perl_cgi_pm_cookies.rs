//! The shared `Cookie` parser picks the same session id as the real CGI.pm, which is what
//! CGI::Session uses (`$cgi->cookie($name) || $cgi->param($name)`), for headers as browsers
//! send them: a Perl page and a Rust page of one site see the same session. Needs `perl` with
//! CGI.pm (Debian: `apt-get install libcgi-pm-perl`, pulled in by `libcgi-session-perl`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use cgi_session_cgi::CgiRequest;

const ID: &str = "5ee0c1d2a1b2c3d4e5f60718293a4b5c";
const OTHER: &str = "0123456789abcdef0123456789abcdef";

/// The id CGI::Session would take from this request, per the real CGI.pm.
fn cgi_pm_session_id(cookie: &[u8], query: &str) -> Option<String> {
    let out = Command::new("perl")
        .arg("-MCGI")
        .arg("-e")
        .arg(
            r#"binmode STDOUT; my $q = CGI->new;
               my $id = $q->cookie('CGISESSID') || $q->param('CGISESSID');
               print defined $id ? "id:$id" : "none";"#,
        )
        .env_clear()
        .env("REQUEST_METHOD", "GET")
        .env("QUERY_STRING", query)
        .env("HTTP_COOKIE", OsStr::from_bytes(cookie))
        .output()
        .expect("perl not found: install it (and CGI.pm: apt-get install libcgi-pm-perl)");
    assert!(
        out.status.success(),
        "perl with CGI.pm failed (apt-get install libcgi-pm-perl): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.strip_prefix("id:").map(str::to_owned)
}

#[test]
fn browser_cookie_headers_give_the_session_cgi_pm_gives() {
    let cat = |parts: &[&[u8]]| parts.concat();
    let id = ID.as_bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "Chrome with analytics cookies",
            cat(&[
                b"_ga=GA1.1.1234567890.1700000000; _gid=GA1.2.3.4; CGISESSID=",
                id,
                b"; prefs=eyJhIjoxfQ==",
            ]),
            "",
        ),
        (
            "a latin-1 byte in another cookie",
            cat(&[b"lang=fran\xe7ais; CGISESSID=", id]),
            "",
        ),
        (
            "UTF-8 and invalid bytes after the session cookie",
            cat(&[b"CGISESSID=", id, b"; lang=fran\xc3\xa7ais; x=\xff\xfe"]),
            "",
        ),
        (
            "Firefox: an empty cookie, a cookie without `=`",
            cat(&[b"empty=; flag; CGISESSID=", id]),
            "",
        ),
        (
            "no space after `;`",
            cat(&[b"a=1;CGISESSID=", id, b";b=2"]),
            "",
        ),
        (
            "the session cookie twice: the first counts",
            cat(&[b"CGISESSID=", id, b"; CGISESSID=", OTHER.as_bytes()]),
            "",
        ),
        (
            "an empty session cookie first: the query parameter",
            cat(&[b"CGISESSID=; CGISESSID=", OTHER.as_bytes()]),
            ID,
        ),
        (
            "no session cookie: the query parameter",
            b"lang=fran\xe7ais".to_vec(),
            ID,
        ),
        (
            "a cookie beats the query parameter",
            cat(&[b"CGISESSID=", id]),
            OTHER,
        ),
    ];
    for (what, cookie, query_id) in &cases {
        let query = if query_id.is_empty() {
            String::new()
        } else {
            format!("CGISESSID={query_id}")
        };
        let perl = cgi_pm_session_id(cookie, &query);
        let request = CgiRequest::from_parts(
            [
                ("REQUEST_METHOD", &b"GET"[..]),
                ("QUERY_STRING", query.as_bytes()),
                ("HTTP_COOKIE", cookie),
            ],
            std::io::empty(),
            0,
        )
        .unwrap();
        let rust = request.session_id("CGISESSID");
        assert_eq!(rust, perl.as_deref(), "{what}");
        assert!(rust.is_some(), "{what}");
    }
}
