//! What every forge's fuzz target runs: reading a delivery (form or JSON bodies), verifying
//! its signature (an HMAC secret and a Standard Webhooks signing token) and parsing every
//! event must never panic. The first byte picks the event and the content type, the rest is
//! the body.

use model::ForgeKind;

const EVENTS: &[&str] = &[
    "push",
    "pull_request",
    "Push Hook",
    "Merge Request Hook",
    "ping",
    "herald",
    "create",
    "release",
];

pub fn run(kind: ForgeKind, data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else { return };
    let event = EVENTS[usize::from(selector / 16) % EVENTS.len()];
    let content_type =
        if selector & 1 == 0 { "application/json" } else { "application/x-www-form-urlencoded" };
    let headers: forge::Headers = [
        ("Content-Type", content_type),
        ("X-Gogs-Event", event),
        ("X-Gitea-Event", event),
        ("X-GitHub-Event", event),
        ("X-Gitlab-Event", event),
        ("X-Gogs-Signature", "00"),
        ("X-Hub-Signature-256", "sha256=00"),
        ("X-Gitlab-Token", "secret"),
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", "1700000000"),
        ("webhook-signature", "v1,AAAA"),
    ]
    .into_iter()
    .collect();
    let _ = forge::verify(kind, b"secret", &headers, body);
    let _ = forge::verify(kind, b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &headers, body);
    if let Ok(delivery) = forge::read_delivery(kind, &headers, body) {
        let _ = forge::parse(kind, &delivery.event, &delivery.json);
    }
    let _ = forge::parse(kind, event, body);
}
