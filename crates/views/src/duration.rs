//! The one duration syntax of the configuration and the API: a whole number and a unit.

const SECOND_NANOS: u64 = 1_000_000_000;
const DAY_NANOS: u64 = 24 * 3600 * SECOND_NANOS;

/// A duration that did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    NotANumber,
    UnknownUnit(String),
    TooLong,
}

/// Parses a whole number and a unit (`500ms`, `30s`, `15m`, `12h`, `90d`, `2w`) into
/// nanoseconds: the one duration syntax of the configuration and the API.
pub fn parse_duration_nanos(text: &str) -> Result<u64, DurationError> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| DurationError::NotANumber)?;
    let unit_nanos = match unit.trim() {
        "ms" => 1_000_000,
        "s" => SECOND_NANOS,
        "m" => 60 * SECOND_NANOS,
        "h" => 3600 * SECOND_NANOS,
        "d" => DAY_NANOS,
        "w" => 7 * DAY_NANOS,
        other => return Err(DurationError::UnknownUnit(other.to_owned())),
    };
    number.checked_mul(unit_nanos).ok_or(DurationError::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_nanos("90d"), Ok(90 * DAY_NANOS));
        assert_eq!(parse_duration_nanos("0s"), Ok(0));
        assert_eq!(parse_duration_nanos("12h"), Ok(12 * 3600 * 1_000_000_000));
        for bad in ["", "d", "12", "1y", "-1d", "99999999999999999999d"] {
            assert!(parse_duration_nanos(bad).is_err(), "{bad}");
        }
    }
}
