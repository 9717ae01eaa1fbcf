//! Alert receivers as configured: where each is, how it authenticates spanblame, and the
//! secret a webhook's alerts are signed with. Secrets never reach a log.

/// An Alertmanager (its base URL) or a generic JSON webhook (its full URL, which for chat
/// services holds a secret: it is never logged).
#[derive(Clone, Default)]
pub struct AlertSink {
    pub name: String,
    pub url: String,
    /// A webhook's Standard Webhooks signing secret, base64 (what follows `whsec_`): each
    /// alert then carries `webhook-id`, `webhook-timestamp` and `webhook-signature`.
    pub signing_secret: Option<String>,
    /// The receiver's credentials, sent as the `Authorization` header.
    pub auth: Option<SinkAuth>,
}

/// How a receiver authenticates spanblame.
#[derive(Clone, PartialEq, Eq)]
pub enum SinkAuth {
    Bearer(String),
    Basic { username: String, password: String },
}

impl std::fmt::Debug for SinkAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkAuth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            SinkAuth::Basic { username, .. } => {
                write!(f, "Basic {{ username: {username:?}, password: <redacted> }}")
            }
        }
    }
}

impl std::fmt::Debug for AlertSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = &self.auth;
        f.debug_struct("AlertSink")
            .field("name", &self.name)
            .field("url", &"<redacted>")
            .field("signed", &self.signing_secret.is_some())
            .field("auth", &auth)
            .finish()
    }
}
