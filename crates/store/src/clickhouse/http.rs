//! ClickHouse's HTTP interface: one blocking request per query or insert.
//!
//! Inserts send `RowBinary` compressed with gzip (`Content-Encoding: gzip`); queries send
//! the SQL as the body and read the answer up to [`MAX_ANSWER_BYTES`]. Failures are sorted
//! into [`StoreError::Unavailable`] (no connection, a timeout, an overloaded server: the same
//! call may succeed later) and [`StoreError::Engine`] (the server refused the statement).
//! ClickHouse 18.16 has no server-side parameters, so values reach SQL through [`quote`].

use std::io::{Read, Write};
use std::time::Duration;

use crate::StoreError;

/// The most bytes one answer may have; larger answers are an error, not an allocation.
pub(crate) const MAX_ANSWER_BYTES: u64 = 512 * 1024 * 1024;

const ENGINE: &str = "ClickHouse";

/// ClickHouse exception codes that mean "not now" rather than "never": too many parts,
/// memory, concurrency and time limits, network trouble between shards, a read-only table.
const TRANSIENT_CODES: &[u32] = &[
    159, // TIMEOUT_EXCEEDED
    164, // READONLY
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    241, // MEMORY_LIMIT_EXCEEDED
    252, // TOO_MANY_PARTS
    279, // ALL_CONNECTION_TRIES_FAILED
    319, // UNKNOWN_STATUS_OF_INSERT
];

pub(crate) struct Http {
    client: reqwest::blocking::Client,
    user: Option<String>,
    password: Option<String>,
}

impl Http {
    pub(crate) fn new(
        user: Option<String>,
        password: Option<String>,
        timeout: Duration,
    ) -> Result<Http, StoreError> {
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Engine {
                engine: ENGINE,
                url: String::new(),
                reason: format!("building the HTTP client: {e}"),
            })?;
        Ok(Http { client, user, password })
    }

    /// Runs `sql` against `url` with `settings`, returning the answer's bytes.
    pub(crate) fn query(
        &self,
        url: &str,
        sql: &str,
        settings: &[(&str, &str)],
    ) -> Result<Vec<u8>, StoreError> {
        let request = self.client.post(url).query(settings).body(sql.to_owned());
        self.send(url, request)
    }

    /// `INSERT INTO {table} FORMAT RowBinary` with `rows`, gzip-compressed.
    pub(crate) fn insert(
        &self,
        url: &str,
        table: &str,
        rows: &[u8],
        settings: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let mut gzip = flate2::write::GzEncoder::new(
            Vec::with_capacity(rows.len() / 4),
            flate2::Compression::fast(),
        );
        gzip.write_all(rows).and_then(|()| gzip.flush()).map_err(|e| self.engine(url, e))?;
        let body = gzip.finish().map_err(|e| self.engine(url, e))?;
        let sql = format!("INSERT INTO {table} FORMAT RowBinary");
        let request = self
            .client
            .post(url)
            .query(&[("query", sql.as_str())])
            .query(settings)
            .header("Content-Encoding", "gzip")
            .body(body);
        self.send(url, request).map(drop)
    }

    fn send(
        &self,
        url: &str,
        mut request: reqwest::blocking::RequestBuilder,
    ) -> Result<Vec<u8>, StoreError> {
        if let Some(user) = &self.user {
            request = request.basic_auth(user, self.password.as_ref());
        }
        let response = request.send().map_err(|e| StoreError::Unavailable {
            engine: ENGINE,
            url: url.to_owned(),
            reason: error_chain(&e),
        })?;
        let status = response.status();
        let mut body = Vec::new();
        response.take(MAX_ANSWER_BYTES + 1).read_to_end(&mut body).map_err(|e| {
            StoreError::Unavailable {
                engine: ENGINE,
                url: url.to_owned(),
                reason: format!("reading the answer: {e}"),
            }
        })?;
        if body.len() as u64 > MAX_ANSWER_BYTES {
            return Err(self.engine(url, format!("the answer exceeds {MAX_ANSWER_BYTES} bytes")));
        }
        if status.is_success() {
            return Ok(body);
        }
        let text = String::from_utf8_lossy(&body);
        let reason = format!("HTTP {}: {}", status.as_u16(), text.trim());
        let transient = status.as_u16() == 503
            || status.as_u16() == 429
            || exception_code(&text).is_some_and(|code| TRANSIENT_CODES.contains(&code));
        Err(if transient {
            StoreError::Unavailable { engine: ENGINE, url: url.to_owned(), reason }
        } else {
            StoreError::Engine { engine: ENGINE, url: url.to_owned(), reason }
        })
    }

    fn engine(&self, url: &str, reason: impl std::fmt::Display) -> StoreError {
        StoreError::Engine { engine: ENGINE, url: url.to_owned(), reason: reason.to_string() }
    }
}

/// The code of a ClickHouse exception answer (`Code: 252, e.displayText() = ...`).
fn exception_code(text: &str) -> Option<u32> {
    let rest = text.trim_start().strip_prefix("Code: ")?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// `text` as a single-quoted ClickHouse string literal (backslash escapes, as both 18.16
/// and current releases read them).
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A ClickHouse identifier (database, table, cluster name) checked to need no quoting.
pub(crate) fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An error and its sources on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_codes_are_read() {
        assert_eq!(
            exception_code("Code: 252, e.displayText() = DB::Exception: Too many parts"),
            Some(252)
        );
        assert_eq!(exception_code("Code: 62, e.displayText() = Syntax error"), Some(62));
        assert_eq!(exception_code("<html>"), None);
    }

    #[test]
    fn quoting_escapes_what_ends_a_literal() {
        assert_eq!(quote("it's"), r"'it\'s'");
        assert_eq!(quote(r"a\'; DROP"), r"'a\\\'; DROP'");
        assert_eq!(quote("x\0y\n"), r"'x\0y\n'");
        assert!(is_identifier("spanblame_test_1"));
        assert!(!is_identifier("a-b") && !is_identifier("1a") && !is_identifier(""));
    }
}
