//! Expiry: CGI::Session's time syntax (`+10m`, `2h`, `-10s`, `1M`, `1y`, plain seconds) and
//! the typed [`Expiry`] beside it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::ExpireParseError;

/// How a session expires, typed (tower-sessions' `Expiry`), for
/// [`Session::set_expiry`](crate::Session::set_expiry). The Perl-style setters
/// ([`Session::set_expire`](crate::Session::set_expire), `"+30m"`) set the idle timeout only.
///
/// | kind | the stored session ends | the cookie |
/// |---|---|---|
/// | [`OnInactivity`](Self::OnInactivity) | after that long without a request | `Max-Age` = the timeout |
/// | [`AtDateTime`](Self::AtDateTime) | at that time, however active (the store's item goes then too) | `Expires` = that time, `Max-Age` = what is left |
/// | [`OnSessionEnd`](Self::OnSessionEnd) | by its idle timeout (the store's default if it had none) | no `Max-Age`, no `Expires`: the browser drops it when it closes |
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::{Duration, SystemTime};
/// use cgi_session_core::{Expiry, MemoryDriver, SessionStore};
///
/// let store = SessionStore::builder(MemoryDriver::new()).default_expire(1800).build();
/// let mut s = store.new_session(None, None).await.unwrap();
/// s.set_expiry(Expiry::OnSessionEnd);
/// assert_eq!(s.cookie().unwrap().max_age(), None, "a browser-session cookie");
/// assert_eq!(s.expire(), Some(1800), "the stored session still has its idle timeout");
///
/// s.set_expiry(Expiry::AtDateTime(SystemTime::now() + Duration::from_secs(3600)));
/// assert!(s.cookie().unwrap().expires_datetime().is_some());
/// assert_eq!(s.expire(), None, "no idle timeout: only the absolute expiry");
///
/// s.set_expiry(Expiry::OnInactivity(Duration::from_secs(600)));
/// assert_eq!(s.expire(), Some(600));
/// assert_eq!(s.cookie().unwrap().max_age(), Some(cookie::time::Duration::seconds(600)));
/// s.flush().await.unwrap();
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expiry {
    /// Idle expiry: the session ends after this long without a request (rounded up to whole
    /// seconds; `Duration::ZERO` means never); no absolute expiry; a persistent cookie.
    OnInactivity(Duration),
    /// Absolute expiry: the session ends at this time however active it is; no idle timeout;
    /// a persistent cookie until then.
    AtDateTime(SystemTime),
    /// A browser-session cookie (no `Max-Age`, no `Expires`). The stored session keeps its
    /// idle timeout (or gets the store's default when it has none) and has no absolute
    /// expiry.
    OnSessionEnd,
}

/// Whole seconds in `d`, rounded up (so that a sub-second timeout is not "none"), at most
/// `i64::MAX`.
pub(crate) fn duration_secs(d: Duration) -> i64 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// `t` as Unix seconds (rounded down; times before 1970 are negative).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -duration_secs(e.duration()),
    }
}

/// Unix seconds as a [`SystemTime`].
pub(crate) fn system_time(unix: i64) -> SystemTime {
    let magnitude = Duration::from_secs(unix.unsigned_abs());
    if unix >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// Parses CGI::Session's expiry syntax into seconds.
///
/// A signed integer is seconds; otherwise a signed integer followed by one unit:
/// `s` = 1, `m` = 60, `h` = 3600, `d` = 86400, `w` = 604800, `M` = 2592000 (30 days),
/// `y` = 31536000 (365 days). No spaces are allowed (`"10 m"` is an error, as in CGI::Session).
/// A negative value expires a session at its next load.
///
/// ```
/// use cgi_session_core::parse_expire;
///
/// assert_eq!(parse_expire("+10m").unwrap(), 600);
/// assert_eq!(parse_expire("2h").unwrap(), 7200);
/// assert_eq!(parse_expire("-10s").unwrap(), -10);
/// assert_eq!(parse_expire("1M").unwrap(), 2_592_000);
/// assert_eq!(parse_expire("3600").unwrap(), 3600);
/// assert!(parse_expire("10 m").is_err());
/// assert!(parse_expire("5x").is_err());
/// ```
///
/// # Errors
/// [`ExpireParseError`] naming the problem: bad syntax, unknown unit or overflow.
pub fn parse_expire(input: &str) -> Result<i64, ExpireParseError> {
    let syntax = || ExpireParseError::Syntax {
        input: input.to_owned(),
    };
    let (negative, rest) = match input.as_bytes().first() {
        Some(b'+') => (false, &input[1..]),
        Some(b'-') => (true, &input[1..]),
        _ => (false, input),
    };
    let digits_end = rest
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    if digits_end == 0 {
        return Err(syntax());
    }
    let (digits, unit) = rest.split_at(digits_end);
    let mut unit_chars = unit.chars();
    let multiplier: i64 = match (unit_chars.next(), unit_chars.next()) {
        (None, _) => 1,
        (Some(u), None) => match u {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            'M' => 2_592_000,
            'y' => 31_536_000,
            c if c.is_alphabetic() => {
                return Err(ExpireParseError::Unit {
                    input: input.to_owned(),
                    unit: c,
                })
            }
            _ => return Err(syntax()),
        },
        _ => return Err(syntax()),
    };
    let overflow = || ExpireParseError::Overflow {
        input: input.to_owned(),
    };
    let n: i64 = digits.parse().map_err(|_| overflow())?;
    let secs = n.checked_mul(multiplier).ok_or_else(overflow)?;
    Ok(if negative { -secs } else { secs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_session_test_suite_values() {
        // The values CGI::Session's driver test suite checks.
        for (s, v) in [
            ("+1s", 1),
            ("+1m", 60),
            ("2h", 7200),
            ("5d", 432_000),
            ("-10s", -10),
            ("1s", 1),
            ("1w", 604_800),
            ("1M", 2_592_000),
            ("1y", 31_536_000),
            ("0", 0),
            ("-5", -5),
        ] {
            assert_eq!(parse_expire(s).unwrap(), v, "{s}");
        }
    }

    #[test]
    fn durations_round_up_and_times_convert_both_ways() {
        assert_eq!(duration_secs(Duration::from_millis(1)), 1);
        assert_eq!(duration_secs(Duration::from_secs(60)), 60);
        assert_eq!(duration_secs(Duration::ZERO), 0);
        assert_eq!(duration_secs(Duration::MAX), i64::MAX);
        for unix in [0, 1_795_762_418, -5] {
            assert_eq!(unix_secs(system_time(unix)), unix);
        }
    }

    #[test]
    fn bad_strings_get_clear_errors() {
        for bad in [
            "", "+", "-", "m", "10 m", " 10m", "10m ", "1.5h", "10mm", "++1", "1e3",
        ] {
            assert!(parse_expire(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            parse_expire("10x"),
            Err(ExpireParseError::Unit { unit: 'x', .. })
        ));
        assert!(matches!(
            parse_expire("99999999999999999999"),
            Err(ExpireParseError::Overflow { .. })
        ));
        assert!(matches!(
            parse_expire("999999999999999y"),
            Err(ExpireParseError::Overflow { .. })
        ));
        let msg = parse_expire("10 m").unwrap_err().to_string();
        assert!(msg.contains("s m h d w M y"), "{msg}");
    }
}
