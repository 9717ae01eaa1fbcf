//! The CLI's calls to a running server (`spanblame deploy`, `spanblame gate`): one JSON POST
//! with an optional bearer token, the server's JSON errors turned into plain messages.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// A JSON request to one of the server's API paths.
pub(crate) struct ApiCall<'a> {
    /// `--server`: `http://host:port`, or `https://` behind a TLS proxy.
    pub(crate) server: &'a str,
    pub(crate) path: &'a str,
    pub(crate) token: Option<&'a str>,
    pub(crate) timeout: Duration,
    /// What sending it is, for errors: "sending the deploy to", "asking".
    pub(crate) sending: &'a str,
    /// What the server may refuse, for errors: "the deploy", "the request".
    pub(crate) refused: &'a str,
}

impl ApiCall<'_> {
    /// POSTs `body`; the answer's JSON (`Null` when it is none) and its text, or an error that
    /// names the URL or the server's own message.
    pub(crate) fn post(&self, body: &Value) -> anyhow::Result<(Value, String)> {
        let server = self.server.trim_end_matches('/');
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            bail!("`--server` = `{server}` must start with `http://` or `https://`");
        }
        let url = format!("{server}{}", self.path);
        let client = reqwest::blocking::Client::builder()
            .timeout(self.timeout)
            .build()
            .context("building the HTTP client")?;
        let mut request = client.post(&url).json(body);
        if let Some(token) = self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().with_context(|| format!("{} `{url}`", self.sending))?;
        let status = response.status();
        let text = response.text().with_context(|| format!("reading the answer from `{url}`"))?;
        let answer: Value = serde_json::from_str(&text).unwrap_or_default();
        if !status.is_success() {
            let message = answer["error"]["message"].as_str().unwrap_or(text.trim());
            bail!("the server refused {} ({status}): {message}", self.refused);
        }
        Ok((answer, text))
    }
}
