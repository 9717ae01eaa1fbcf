//! Building a delivery exactly as each forge sends it (headers, body, signature), so tests
//! and local tooling can exercise the receivers with real payloads.

use model::ForgeKind;

use crate::verify::{hmac_sha256_hex, standard_webhook_signature};

/// The headers and body a forge sends for `event` with `json`, signed with `secret`.
/// `delivery_id` stands in for the forge's delivery UUID.
pub fn signed_delivery(
    kind: ForgeKind,
    secret: &str,
    event: &str,
    delivery_id: &str,
    json: &[u8],
) -> (Vec<(String, String)>, Vec<u8>) {
    let signature = hmac_sha256_hex(secret.as_bytes(), json);
    let header = |name: &str, value: &str| (name.to_owned(), value.to_owned());
    let mut headers = vec![header("Content-Type", "application/json")];
    match kind {
        ForgeKind::Gogs => headers.extend([
            header("X-Gogs-Event", event),
            header("X-Gogs-Delivery", delivery_id),
            header("X-Gogs-Signature", &signature),
            header("X-Github-Event", event),
            header("X-Github-Delivery", delivery_id),
        ]),
        ForgeKind::Gitea => headers.extend([
            header("X-Gitea-Event", event),
            header("X-Gitea-Delivery", delivery_id),
            header("X-Gitea-Signature", &signature),
            header("X-Gogs-Event", event),
            header("X-Gogs-Delivery", delivery_id),
            header("X-Gogs-Signature", &signature),
            header("X-Hub-Signature-256", &format!("sha256={signature}")),
            header("X-GitHub-Event", event),
            header("X-GitHub-Delivery", delivery_id),
        ]),
        ForgeKind::Github => headers.extend([
            header("X-GitHub-Event", event),
            header("X-GitHub-Delivery", delivery_id),
            header("X-Hub-Signature-256", &format!("sha256={signature}")),
            header("User-Agent", "GitHub-Hookshot/spanblame-test"),
        ]),
        ForgeKind::Gitlab => {
            headers.extend([
                header("X-Gitlab-Event", event),
                header("X-Gitlab-Webhook-UUID", delivery_id),
                header("Idempotency-Key", delivery_id),
            ]);
            // With a signing token GitLab signs (Standard Webhooks) instead of sending a token.
            match secret.strip_prefix("whsec_") {
                Some(key) => {
                    let timestamp = "1767225600";
                    let signature = standard_webhook_signature(key, delivery_id, timestamp, json)
                        .unwrap_or_default();
                    headers.extend([
                        header("webhook-id", delivery_id),
                        header("webhook-timestamp", timestamp),
                        header("webhook-signature", &signature),
                    ]);
                }
                None => headers.push(header("X-Gitlab-Token", secret)),
            }
        }
        ForgeKind::Phabricator => {
            headers.push(header("X-Phabricator-Webhook-Signature", &signature));
        }
    }
    (headers, json.to_vec())
}
