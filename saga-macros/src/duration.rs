//! Duration literals: `"5s"`, `"250ms"`, `"1m30s"`, parsed at compile time.

use std::time::Duration;

/// Parses a duration literal, or says what is wrong with it.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; expected e.g. \"5s\" or \"250ms\"".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "invalid duration \"{text}\": expected a number before a unit"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration \"{text}\": number too large"))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let part = match unit {
            "ns" => Duration::from_nanos(number),
            "us" | "µs" => Duration::from_micros(number),
            "ms" => Duration::from_millis(number),
            "s" | "sec" | "secs" => Duration::from_secs(number),
            "m" | "min" | "mins" => secs(number, 60, text)?,
            "h" | "hr" | "hrs" => secs(number, 3_600, text)?,
            "d" | "day" | "days" => secs(number, 86_400, text)?,
            "" => {
                return Err(format!(
                    "invalid duration \"{text}\": missing unit; expected one of ms, s, m, h, d"
                ))
            }
            "w" | "week" | "weeks" | "mo" | "month" | "months" | "y" | "year" | "years" => {
                return Err(format!(
                    "invalid duration \"{text}\": `{unit}` has no fixed length; use h or d"
                ))
            }
            _ => {
                return Err(format!(
                    "invalid duration \"{text}\": unknown unit `{unit}`; expected one of ms, s, m, h, d"
                ))
            }
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("invalid duration \"{text}\": too large"))?;
    }
    // What a `Duration` of whole nanoseconds in a `u64` holds, as the runtime's timers take it.
    if u64::try_from(total.as_nanos()).is_err() {
        return Err(format!(
            "invalid duration \"{text}\": too large; the most is \"18446744073s\" (about 584 years)"
        ));
    }
    Ok(total)
}

fn secs(number: u64, factor: u64, text: &str) -> Result<Duration, String> {
    number
        .checked_mul(factor)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("invalid duration \"{text}\": too large"))
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::Duration;

    #[test]
    fn accepts_units_and_compounds() {
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("2 h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_hold_in_u64_nanoseconds_or_are_refused() {
        assert_eq!(
            parse("18446744073s"),
            Ok(Duration::from_secs(18_446_744_073))
        );
        assert!(parse("18446744074s").unwrap_err().contains("584 years"));
        assert!(parse("213503982335d").unwrap_err().contains("too large"));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse("3 parsecs")
            .unwrap_err()
            .contains("unknown unit `parsecs`"));
        assert!(parse("1mo").unwrap_err().contains("no fixed length"));
        assert!(parse("10").unwrap_err().contains("missing unit"));
        assert!(parse("s").unwrap_err().contains("expected a number"));
        assert!(parse("").is_err());
        assert!(parse("99999999999999999999s")
            .unwrap_err()
            .contains("too large"));
    }
}
