//! The words every outlet writes the shapes in: short times, units, links.

/// `2026-11-21 13:10:04 UTC` from RFC 3339.
pub fn short_time(rfc3339: &str) -> String {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

pub fn unix_secs(rfc3339: &str) -> Option<f64> {
    rfc3339.parse::<jiff::Timestamp>().ok().map(|t| t.as_nanosecond() as f64 / 1e9)
}

pub fn ms_text(ms: f64) -> String {
    if ms >= 1000.0 { format!("{:.2} s", ms / 1000.0) } else { format!("{} ms", short_number(ms)) }
}

pub fn percent_text(fraction: f64) -> String {
    format!("{}%", short_number(fraction * 100.0))
}

/// A number for an axis: no trailing zeros, at most three significant digits.
pub fn short_number(value: f64) -> String {
    let text = if value >= 100.0 || value == 0.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else if value >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A service's page.
pub fn service_href(name: &str) -> String {
    format!("/services/{}", query_escape(name))
}

/// Whether `url` is an `http://` or `https://` address: the only links pages render.
pub fn is_web_url(url: &str) -> bool {
    let lower = url.trim_start().get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// A query-string or path component, percent-encoded (RFC 3986 unreserved characters stay).
pub fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
