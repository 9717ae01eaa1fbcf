//! The parameter forms of Tempo's and Jaeger's APIs: times in Unix seconds, durations as Go
//! writes them (`1.5s`, `1m30s`, `250ms`), and tags as logfmt
//! (`service.name="cart" http.status_code=500`), each value read as the type it looks like.

use traceql::Static;

/// `start`/`end` in Unix seconds (whole or fractional) as Unix nanoseconds.
pub fn unix_seconds(key: &str, value: &str) -> Result<u64, String> {
    let seconds: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{key}` must be Unix seconds, as in 1733457600; got `{value}`"))?;
    if !seconds.is_finite() || !(0.0..=1e10).contains(&seconds) {
        return Err(format!("`{key}` must be Unix seconds after 1970; got `{value}`"));
    }
    Ok((seconds * 1e9) as u64)
}

/// A Go duration (`300ms`, `1.5s`, `1m30s`, `2h`) in nanoseconds.
pub fn go_duration_nanos(key: &str, text: &str) -> Result<u64, String> {
    let bad = || format!("`{key}` must be a duration such as 100ms, 1.5s or 1m30s; got `{text}`");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let number_len =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += number * nanos_per_unit;
    }
    if total > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(total.round() as u64)
}

/// logfmt pairs: `key=value`, `key="quoted value"`, separated by spaces.
pub fn logfmt_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if chars.next() != Some('=') || key.is_empty() {
            return Err(format!(
                "`tags` must be logfmt pairs such as service.name=\"cart\"; `{key}` has no value"
            ));
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => {
                        return Err(format!(
                            "`tags`: the value of `{key}` is never closed with \""
                        ));
                    }
                }
            }
            value
        } else {
            std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect()
        };
        pairs.push((key, value));
    }
}

/// A tag value as the type it reads as: `500` an integer, `true` a boolean, else text.
pub fn literal(value: &str) -> Static {
    if let Ok(n) = value.parse::<i64>() {
        Static::Int(n)
    } else if let Ok(b) = value.parse::<bool>() {
        Static::Bool(b)
    } else {
        Static::Str(value.to_owned())
    }
}
