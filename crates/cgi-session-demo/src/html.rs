//! Server-rendered pages: plain string building, every dynamic value escaped.

use std::fmt::Write as _;

use crate::SessionInfo;

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2026-01-31 12:00:00 UTC` for Unix seconds (proleptic Gregorian, no time zone data).
pub(crate) fn utc(unix: i64) -> String {
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
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn duration(secs: i64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;line-height:1.5}\
h1{font-size:1.5rem}section{border:1px solid #ccc;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}\
dt{font-weight:bold;float:left;clear:left;width:8rem}dd{margin-left:8rem}code{background:#eee;padding:0 .2rem}";

fn shell(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head>\n<body>\n<h1>{}</h1>\n{body}\n\
<footer><p><a href=\"/\">home</a> · <a href=\"/api/session\">/api/session</a> · <a href=\"/plain\">/plain</a></p></footer>\n\
</body></html>\n",
        escape(title),
        escape(title)
    )
}

/// The page of `GET /`.
pub(crate) fn home(info: &SessionInfo, expired: bool) -> String {
    let mut body = String::new();
    if expired {
        body.push_str("<p id=\"expired\"><strong>Your previous session expired.</strong></p>\n");
    }
    let greeting = match &info.greet_en {
        Some(g) => format!("<strong id=\"greeting\">{}</strong>", escape(g)),
        None => "<em id=\"greeting\">(not set)</em>".to_owned(),
    };
    let _ = writeln!(
        body,
        "<section><h2>greet_en</h2>\n<p>The Perl driver's example parameter: {greeting}</p>\n\
<form method=\"post\" action=\"/greet\"><label>New greeting <input id=\"greet-input\" name=\"greet_en\" maxlength=\"{max}\" value=\"{value}\"></label> \
<button id=\"greet-submit\" type=\"submit\">Set greet_en</button></form></section>",
        max = crate::MAX_FIELD_CHARS,
        value = escape(info.greet_en.as_deref().unwrap_or("Hi !")),
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
            let _ = writeln!(
                body,
                "<section><h2>Account</h2><p>Logged in as <strong id=\"user\">{}</strong>.</p>\
<form method=\"post\" action=\"/logout\"><button id=\"logout\" type=\"submit\">Log out</button></form>\
<p>Logging out deletes the session; the next page view starts a new one.</p></section>",
                escape(user)
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
        return shell("cgi-session demo", &body);
    }
    let expiry = match info.expire {
        Some(secs) if secs > 0 => format!(
            "after {} without a visit (until {})",
            duration(secs),
            utc(info.atime.saturating_add(secs))
        ),
        Some(_) => "at the next visit".to_owned(),
        None => "never (no idle timeout)".to_owned(),
    };
    let _ = writeln!(
        body,
        "<section><h2>Session</h2><dl>\
<dt>id</dt><dd><code id=\"id-prefix\">{}</code> (only a prefix is ever shown)</dd>\
<dt>created</dt><dd id=\"ctime\">{}</dd>\
<dt>last access</dt><dd id=\"atime\">{}</dd>\
<dt>expires</dt><dd id=\"expiry\">{}</dd></dl></section>",
        escape(info.id_prefix.as_deref().unwrap_or("")),
        utc(info.ctime),
        utc(info.atime),
        escape(&expiry),
    );
    shell("cgi-session demo", &body)
}

/// The page of `GET /plain`: the same shell, no session.
pub(crate) fn plain() -> String {
    shell(
        "cgi-session demo",
        "<section><h2>No session</h2><p>This page does not use the session: no store access, no cookie.</p></section>",
    )
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
