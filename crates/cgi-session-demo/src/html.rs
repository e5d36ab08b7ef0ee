//! Server-rendered pages: plain string building into one buffer per page (no intermediate
//! strings), every dynamic value escaped.

use std::fmt::Write as _;

use crate::SessionInfo;

/// Room for a whole page: the home page is about 2.3 KB, so one allocation serves it.
const PAGE_CAPACITY: usize = 3072;

/// Appends `text` escaped for HTML element content and quoted attribute values.
pub(crate) fn escape_into(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// `text` escaped for HTML element content and quoted attribute values.
#[cfg(test)]
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

/// Appends `2026-01-31 12:00:00 UTC` for Unix seconds (proleptic Gregorian, no time zone
/// data).
pub(crate) fn utc_into(out: &mut String, unix: i64) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if (0..=9999).contains(&year) {
        // The common case without the formatting machinery: fixed-width digits.
        digits(out, year, 4);
        out.push('-');
        digits(out, month, 2);
        out.push('-');
        digits(out, day, 2);
        out.push(' ');
        digits(out, secs / 3600, 2);
        out.push(':');
        digits(out, secs % 3600 / 60, 2);
        out.push(':');
        digits(out, secs % 60, 2);
        out.push_str(" UTC");
    } else {
        let _ = write!(
            out,
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        );
    }
}

/// Appends the `width` last decimal digits of `n` (0 or more), zero-padded.
fn digits(out: &mut String, n: i64, width: u32) {
    for k in (0..width).rev() {
        let d = (n / 10_i64.pow(k)) % 10;
        out.push(char::from(b'0' + u8::try_from(d).unwrap_or(0)));
    }
}

/// `2026-01-31 12:00:00 UTC` for Unix seconds.
#[cfg(test)]
pub(crate) fn utc(unix: i64) -> String {
    let mut out = String::new();
    utc_into(&mut out, unix);
    out
}

fn duration_into(out: &mut String, secs: i64) {
    let _ = match secs {
        s if s % 86_400 == 0 => write!(out, "{} d", s / 86_400),
        s if s % 3600 == 0 => write!(out, "{} h", s / 3600),
        s if s % 60 == 0 => write!(out, "{} min", s / 60),
        s => write!(out, "{s} s"),
    };
}

#[cfg(test)]
fn duration(secs: i64) -> String {
    let mut out = String::new();
    duration_into(&mut out, secs);
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;line-height:1.5}\
h1{font-size:1.5rem}section{border:1px solid #ccc;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}\
dt{font-weight:bold;float:left;clear:left;width:8rem}dd{margin-left:8rem}code{background:#eee;padding:0 .2rem}";

/// The page title (no markup in it: it is written as is).
const TITLE: &str = "cgi-session demo";

/// The page's start, up to its body (the title needs no escaping).
const HEAD: &str = concat!(
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
    "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
    "<title>cgi-session demo</title><style>",
);

/// The page's end, after its body.
const FOOT: &str = "\n<footer><p><a href=\"/\">home</a> · <a href=\"/api/session\">/api/session</a> · <a href=\"/plain\">/plain</a></p></footer>\n\
</body></html>\n";

/// A page: the shell's start; the caller appends the body, then [`FOOT`].
fn page() -> String {
    let mut out = String::with_capacity(PAGE_CAPACITY);
    out.push_str(HEAD);
    out.push_str(STYLE);
    out.push_str("</style></head>\n<body>\n<h1>");
    out.push_str(TITLE);
    out.push_str("</h1>\n");
    out
}

/// The page of `GET /`.
pub(crate) fn home(info: &SessionInfo, expired: bool) -> String {
    let mut body = page();
    if expired {
        body.push_str("<p id=\"expired\"><strong>Your previous session expired.</strong></p>\n");
    }
    body.push_str("<section><h2>greet_en</h2>\n<p>The Perl driver's example parameter: ");
    match &info.greet_en {
        Some(g) => {
            body.push_str("<strong id=\"greeting\">");
            escape_into(&mut body, g);
            body.push_str("</strong>");
        }
        None => body.push_str("<em id=\"greeting\">(not set)</em>"),
    }
    let _ = write!(
        body,
        "</p>\n<form method=\"post\" action=\"/greet\"><label>New greeting <input id=\"greet-input\" name=\"greet_en\" maxlength=\"{max}\" value=\"",
        max = crate::MAX_FIELD_CHARS,
    );
    escape_into(&mut body, info.greet_en.as_deref().unwrap_or("Hi !"));
    body.push_str(
        "\"></label> <button id=\"greet-submit\" type=\"submit\">Set greet_en</button></form></section>\n",
    );
    let stored = info.id_prefix.is_some();
    let _ = writeln!(
        body,
        "<section><h2>Visits</h2><p>Views of this page in this session: <span id=\"counter\">{}</span></p>\
<p>{}</p></section>",
        info.counter,
        if stored {
            "Reload the page to count one more."
        } else {
            "Not counted yet: nothing is stored for an anonymous visitor (no session, no cookie). \
Set a greeting or log in to start a session; from then on your views are counted."
        }
    );
    match &info.user {
        Some(user) => {
            body.push_str("<section><h2>Account</h2><p>Logged in as <strong id=\"user\">");
            escape_into(&mut body, user);
            body.push_str(
                "</strong>.</p>\
<form method=\"post\" action=\"/logout\"><button id=\"logout\" type=\"submit\">Log out</button></form>\
<p>Logging out deletes the session; the next page view starts a new one.</p></section>\n",
            );
        }
        None => {
            let _ = writeln!(
                body,
                "<section><h2>Account</h2><form method=\"post\" action=\"/login\"><label>User name \
<input id=\"username\" name=\"username\" maxlength=\"{}\" required></label> \
<button id=\"login\" type=\"submit\">Log in</button></form>\
<p>Logging in gives the session a new id (against session fixation) and keeps its data.</p></section>",
                crate::MAX_FIELD_CHARS
            );
        }
    }
    if !stored {
        body.push_str(
            "<section><h2>Session</h2><p id=\"no-session\">No session is stored for you: \
nothing worth keeping yet.</p></section>\n",
        );
        body.push_str(FOOT);
        return body;
    }
    body.push_str("<section><h2>Session</h2><dl><dt>id</dt><dd><code id=\"id-prefix\">");
    escape_into(&mut body, info.id_prefix.as_deref().unwrap_or(""));
    body.push_str("</code> (only a prefix is ever shown)</dd><dt>created</dt><dd id=\"ctime\">");
    utc_into(&mut body, info.ctime);
    body.push_str("</dd><dt>last access</dt><dd id=\"atime\">");
    utc_into(&mut body, info.atime);
    body.push_str("</dd><dt>expires</dt><dd id=\"expiry\">");
    // The expiry text holds no markup: digits, units and a date.
    match info.expire {
        Some(secs) if secs > 0 => {
            body.push_str("after ");
            duration_into(&mut body, secs);
            body.push_str(" without a visit (until ");
            utc_into(&mut body, info.atime.saturating_add(secs));
            body.push(')');
        }
        Some(_) => body.push_str("at the next visit"),
        None => body.push_str("never (no idle timeout)"),
    }
    body.push_str("</dd></dl></section>\n");
    body.push_str(FOOT);
    body
}

/// The page of `GET /plain`: the same shell, no session.
pub(crate) fn plain() -> String {
    let mut body = page();
    body.push_str(
        "<section><h2>No session</h2><p>This page does not use the session: no store access, no cookie.</p></section>",
    );
    body.push_str(FOOT);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn formats_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
        // Extreme values do not panic.
        let _ = utc(i64::MAX);
        let _ = utc(i64::MIN);
    }

    #[test]
    fn formats_durations() {
        assert_eq!(duration(1800), "30 min");
        assert_eq!(duration(7200), "2 h");
        assert_eq!(duration(86_400), "1 d");
        assert_eq!(duration(61), "61 s");
    }
}
