//! CGI::Session's time syntax (`+10m`, `2h`, `-10s`, `1M`, `1y`, plain seconds).

use crate::error::ExpireParseError;

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
