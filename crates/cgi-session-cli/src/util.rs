//! Formatting and decoding helpers.

use std::fmt::Write as _;
use std::io::Write;
use std::ops::ControlFlow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cgi_session::record::Record;
use cgi_session::{Driver, DriverError, JsonSerializer, SerializeError, Serializer, SessionId};
use cgi_session_dumper::DataDumperSerializer;

/// The serializers `show` tries, in order: the first that decodes the bytes wins. Adding a
/// format is one line here.
fn serializers() -> Vec<Box<dyn Serializer>> {
    vec![
        Box::new(JsonSerializer),
        Box::new(DataDumperSerializer::new()),
        Box::new(cgi_session::StorableSerializer::new()),
    ]
}

/// Decodes stored session bytes in whichever known format they are in: the format's name and
/// the record.
pub(crate) fn decode(bytes: &[u8]) -> Result<(&'static str, Record), String> {
    let mut errors = Vec::new();
    for serializer in serializers() {
        match Record::decode(serializer.as_ref(), bytes) {
            Ok(record) => return Ok((serializer.name(), record)),
            Err(e @ SerializeError::NotARecord(_)) => {
                return Err(format!("{} format, but {e}", serializer.name()));
            }
            Err(e) => errors.push(format!("{}: {e}", serializer.name())),
        }
    }
    Err(format!(
        "the stored bytes are in no known format ({})",
        errors.join("; ")
    ))
}

/// When the session was last used: the later of its record's `_SESSION_ATIME` and the store's
/// last access, when the store tracks one (what [`Record::expires_at`] counts from).
pub(crate) fn last_access(record: &Record, store_last_access: Option<i64>) -> i64 {
    store_last_access.map_or(record.atime, |at| at.max(record.atime))
}

/// How many sessions `driver` lists, and the bytes they take as far as it knows.
pub(crate) async fn count_sessions(driver: &dyn Driver) -> Result<(u64, u64), DriverError> {
    let (mut sessions, mut bytes) = (0, 0);
    driver
        .list(&mut |listed| {
            sessions += 1;
            bytes += listed.size.unwrap_or(0);
            ControlFlow::Continue(())
        })
        .await?;
    Ok((sessions, bytes))
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `2026-11-27 09:07:34 UTC`.
pub(crate) fn fmt_time(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}

/// `1h 2m 3s`.
pub(crate) fn fmt_secs(secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let text = humantime::format_duration(Duration::from_secs(secs.unsigned_abs())).to_string();
    if secs < 0 {
        format!("-{text}")
    } else {
        text
    }
}

/// `2026-11-27 09:07:34 UTC (12s ago)` or `(in 5m)`.
pub(crate) fn fmt_when(unix: i64, now: i64) -> String {
    let diff = now.saturating_sub(unix);
    let rel = if diff >= 0 {
        format!("{} ago", fmt_secs(diff))
    } else {
        format!("in {}", fmt_secs(-diff))
    };
    format!("{} ({rel})", fmt_time(unix))
}

/// `532 B`, `1.2 KiB`, `64.0 MiB`.
pub(crate) fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// An id as it may be shown: whole with `--full-ids`, otherwise 8 characters and `…`.
pub(crate) fn show_id(raw: &str, full: bool) -> String {
    if full {
        return escape(raw);
    }
    match SessionId::parse(raw) {
        Ok(id) => id.redacted(),
        Err(_) => {
            let prefix: String = raw.chars().take(8).collect();
            format!("{}…", escape(&prefix))
        }
    }
}

/// Characters that must not reach a terminal as they are: control characters (C0, DEL, C1:
/// ESC starts escape sequences, CR overwrites the line, U+009B is a one-character CSI) and
/// Unicode's bidirectional controls, which reorder what the operator sees.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Text from a store or the command line (parameter names, ids, addresses), as it may be
/// printed: characters a terminal would act on become Rust-style escapes (`\r`, `\n`, `\t`,
/// `\u{1b}`), and `\` becomes `\\` so an escape cannot be faked.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// An error message for the terminal: control characters escaped (a last line of defence;
/// the parts that come from the store or the command line are escaped where they are put in),
/// backslashes left as they are (paths).
pub(crate) fn escape_message(text: &str) -> String {
    text.chars()
        .map(|c| {
            if needs_escape(c) {
                format!("\\u{{{:x}}}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// JSON text from `serde_json` made safe for a terminal, still valid JSON that decodes to the
/// same strings: serde_json escapes C0 controls, this escapes the rest (DEL, C1, bidirectional
/// controls) as `\uXXXX`.
pub(crate) fn escape_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if needs_escape(c) && c != '\n' {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes to standard output, ignoring a closed pipe (`cgi-session ls | head`).
pub(crate) fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_time(-5), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_secs(3723), "1h 2m 3s");
        assert_eq!(fmt_secs(-60), "-1m");
        assert_eq!(fmt_when(100, 160), "1970-01-01 00:01:40 UTC (1m ago)");
        assert_eq!(fmt_when(220, 160), "1970-01-01 00:03:40 UTC (in 1m)");
        assert_eq!(fmt_bytes(532), "532 B");
        assert_eq!(fmt_bytes(64 * 1024 * 1024), "64.0 MiB");
        assert_eq!(show_id("0123456789abcdef", false), "01234567…");
        assert_eq!(show_id("0123456789abcdef", true), "0123456789abcdef");
        assert_eq!(show_id("../../etc/passwd", false), "../../et…");
    }

    #[test]
    fn escapes_what_a_terminal_would_act_on() {
        assert_eq!(escape("plain name é"), "plain name é");
        assert_eq!(escape("a\x1b[31mb\r\n\t"), "a\\u{1b}[31mb\\r\\n\\t");
        assert_eq!(
            escape("\u{9b}2J\u{7f}\u{202e}"),
            "\\u{9b}2J\\u{7f}\\u{202e}"
        );
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        assert_eq!(show_id("ab\x1bcd", true), "ab\\u{1b}cd");
        assert_eq!(show_id("\x1b[2J\rxxxxxxx", false), "\\u{1b}[2J\\rxxx…");

        let json = serde_json::to_string(&serde_json::json!({"k\u{9b}": "v\u{202e}\x1b"})).unwrap();
        let safe = escape_json(&json);
        assert!(!safe.chars().any(needs_escape), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, serde_json::json!({"k\u{9b}": "v\u{202e}\x1b"}));
    }

    #[test]
    fn decodes_json_and_perl_default_and_refuses_garbage() {
        let (format, r) = decode(br#"{"_SESSION_ID":"abc","_SESSION_CTIME":1,"a":1}"#).unwrap();
        assert_eq!((format, r.id.as_str()), ("json", "abc"));
        let perl = b"$D = {'user' => 'alice','_SESSION_ID' => '12830b38d71787550572d3cb587ddae7','_SESSION_ATIME' => 1795762418,'_SESSION_CTIME' => 1795762418,'_SESSION_REMOTE_ADDR' => ''};;$D";
        let (format, r) = decode(perl).unwrap();
        assert_eq!(format, "default");
        assert_eq!(r.params["user"], "alice");
        for bad in [&b""[..], b"\xff", b"{\"a\":1}", b"$D = system('x');;$D"] {
            assert!(decode(bad).is_err());
        }
    }
}
