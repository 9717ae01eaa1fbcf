//! The one HTTP client spanblame uses to call out (forge APIs): TLS by rustls with the system's
//! root certificates, bounded timeouts, and answers read under a size cap.

use std::time::Duration;

/// How long a forge may take to answer one request; Phabricator's own webhook timeout is 15 s.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the shared client. It fails only when the system has no root certificates to
/// trust (no `ca-certificates`), which the caller reports.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("spanblame/", env!("CARGO_PKG_VERSION")))
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
}

/// Reads a response body, failing once it passes `max_bytes` instead of buffering more.
pub async fn read_capped(
    mut response: reqwest::Response,
    max_bytes: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(ReadError::TooLarge { max_bytes });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error with its causes: reqwest's `error sending request` hides `connection refused` in
/// its source chain.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Transport(reqwest::Error),
    #[error("the answer is larger than {max_bytes} bytes")]
    TooLarge { max_bytes: usize },
}
