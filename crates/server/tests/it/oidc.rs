//! Sign-in against a real OpenID provider (the `oidc-provider` npm package on Node, installed
//! by `cargo xtask setup` and started here on 127.0.0.1): the full authorization-code flow
//! with PKCE driven without a browser, the session cookie, CSRF, sign-out; and bearer tokens
//! from the provider, accepted or refused (wrong audience, expired, unknown key, `alg: none`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use auth::IdentityMapping;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::Value;
use server::{AccessSettings, AuthMode, ChangeSettings, OidcSettings, ServiceOwnership};

use crate::support::{SECOND, TestApp};

const CLIENT_SECRET: &str = "spanblame-test-secret";

/// The provider process; killed when dropped.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_provider(redirect_uri: &str) -> Provider {
    let script = std::env::var("SPANBLAME_TEST_OIDC_PROVIDER").expect(
        "SPANBLAME_TEST_OIDC_PROVIDER is not set: run the tests with `cargo xtask test` (it installs the oidc-provider npm package), or run `cargo xtask setup` and set it to ~/.cache/spanblame/oidc/provider.mjs",
    );
    let mut child = Command::new("node")
        .arg(&script)
        .env("REDIRECT_URI", redirect_uri)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting node (Node.js 20 or newer)");
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    // Keep reading: the provider logs to stdout and dies of EPIPE if nobody listens.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let issuer = line
        .trim()
        .strip_prefix("issuer=")
        .unwrap_or_else(|| panic!("provider said {line:?}"))
        .to_owned();
    Provider { child, issuer }
}

/// spanblame serving the router on a real socket, in OIDC mode against `provider`.
async fn start_spanblame(listener: tokio::net::TcpListener, issuer: &str, base: &str) -> TestApp {
    let changes = ChangeSettings {
        services: vec![ServiceOwnership {
            service: "checkout".into(),
            repository: None,
            path_prefix: None,
            team: Some("payments".into()),
            deploy_from: Vec::new(),
        }],
        ..ChangeSettings::default()
    };
    let access = AccessSettings {
        mode: AuthMode::Oidc(OidcSettings {
            issuer: issuer.to_owned(),
            client_id: "spanblame".into(),
            client_secret: CLIENT_SECRET.into(),
            scopes: vec!["email".into(), "profile".into(), "groups".into()],
            audiences: vec!["spanblame-api".into()],
        }),
        identity: IdentityMapping {
            groups_claim: "groups".into(),
            admin_groups: vec!["sre-admins".into()],
            oncall_lead_groups: vec!["oncall-leads".into()],
            auditor_groups: vec![],
            teams: vec![("payments".into(), vec!["payments-eng".into()])],
        },
        ..AccessSettings::default()
    };
    let app = TestApp::build(changes, access, Some(base.to_owned()));
    // Tokens from the provider carry real times.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    app.clock.set(now.as_nanos() as u64);
    let router = server::router(Arc::clone(&app.state));
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap()
    });
    app
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

/// Cookies of one site, from `Set-Cookie` headers.
#[derive(Default)]
struct Jar(HashMap<String, String>);

impl Jar {
    fn take(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(SET_COOKIE) {
            let value = value.to_str().unwrap();
            let pair = value.split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                self.0.insert(name.trim().to_owned(), value.to_owned());
            }
        }
    }

    fn header(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }
}

fn location(response: &reqwest::Response, base: &str) -> String {
    let location = response.headers()[LOCATION].to_str().unwrap();
    if location.starts_with('/') { format!("{base}{location}") } else { location.to_owned() }
}

/// Signs in as `login_hint` through the provider; returns the callback URL spanblame is sent
/// back to (not yet visited).
async fn through_provider(
    http: &reqwest::Client,
    base: &str,
    issuer: &str,
    login_hint: &str,
) -> String {
    let login = http
        .get(format!("{base}/auth/login?login_hint={login_hint}&return_to=/api/v1/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303, "{:?}", login.text().await);
    let mut next = location(&login, base);
    assert!(next.starts_with(&format!("{issuer}/auth?")), "{next}");
    assert!(next.contains("code_challenge_method=S256") && next.contains("nonce="), "{next}");
    let mut jar = Jar::default();
    for _ in 0..10 {
        if next.starts_with(&format!("{base}/auth/callback")) {
            return next;
        }
        let response = http.get(&next).header(COOKIE, jar.header()).send().await.unwrap();
        jar.take(&response);
        assert!(response.status().is_redirection(), "{next}: {}", response.status());
        next = location(&response, issuer);
    }
    panic!("the provider never sent us back: {next}");
}

#[tokio::test]
async fn sign_in_through_a_real_provider_and_bearer_tokens_from_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let provider = start_provider(&format!("{base}/auth/callback"));
    let app = start_spanblame(listener, &provider.issuer, &base).await;
    let http = client();

    // The code flow, as alice (payments-eng).
    let callback = through_provider(&http, &base, &provider.issuer, "alice").await;
    let signed_in = http.get(&callback).send().await.unwrap();
    assert_eq!(signed_in.status(), 303, "{:?}", signed_in.text().await);
    assert_eq!(signed_in.headers()[LOCATION], "/api/v1/services");
    let cookie = signed_in.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_owned();

    let me: Value = http
        .get(format!("{base}/auth/me"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], "alice@example.test");
    assert_eq!(me["teams"], serde_json::json!(["payments"]));
    assert_eq!(me["services"], serde_json::json!(["checkout"]));
    let csrf = me["csrf_token"].as_str().unwrap().to_owned();
    let services =
        http.get(format!("{base}/api/v1/services")).header(COOKIE, &session).send().await.unwrap();
    assert_eq!(services.status(), 200);

    // The `state` is good once.
    assert_eq!(http.get(&callback).send().await.unwrap().status(), 401);

    // A state-changing request from the browser session needs its CSRF token.
    let acknowledge = |with_csrf: bool| {
        let mut request =
            http.post(format!("{base}/api/v1/findings/1/acknowledge")).header(COOKIE, &session);
        if with_csrf {
            request = request.header("x-csrf-token", &csrf);
        }
        request.send()
    };
    assert_eq!(acknowledge(false).await.unwrap().status(), 403);
    assert_eq!(acknowledge(true).await.unwrap().status(), 404, "allowed; there is no finding 1");

    // Sign-out ends the session here and sends the browser to the provider's logout.
    let out = http
        .post(format!("{base}/auth/logout"))
        .header(COOKIE, &session)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(location(&out, &base).starts_with(&format!("{}/session/end?", provider.issuer)));
    let after =
        http.get(format!("{base}/api/v1/services")).header(COOKIE, &session).send().await.unwrap();
    assert_eq!(after.status(), 401);

    // Scripts: the provider's access tokens as bearer tokens.
    let token = |resource: &'static str| {
        let http = http.clone();
        let url = format!("{}/token", provider.issuer);
        async move {
            let answer: Value = http
                .post(url)
                .basic_auth("spanblame", Some(CLIENT_SECRET))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", "spans:read"),
                    ("resource", resource),
                ])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["access_token"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned()
        }
    };
    let bearer = |jwt: String| {
        let http = http.clone();
        let url = format!("{base}/api/v1/services");
        async move {
            let response = http.get(url).bearer_auth(jwt).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let ours = token("urn:spanblame:api").await;
    assert_eq!(bearer(ours.clone()).await.0, 200);
    let (status, body) = bearer(token("urn:other:api").await).await;
    assert_eq!((status, body.contains("audience")), (401, true), "{body}");
    let rogue = http
        .get(format!("{}/test/rogue-token?sub=root", provider.issuer))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (status, body) = bearer(rogue).await;
    assert_eq!((status, body.contains("signature")), (401, true), "{body}");
    let claims = ours.split('.').nth(1).unwrap().to_owned();
    let none = format!(
        "{}.{claims}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt","kid":"test-key-1"}"#)
    );
    let (status, body) = bearer(none).await;
    assert_eq!((status, body.contains("`none` is not accepted")), (401, true), "{body}");
    app.clock.set(app.clock.get() + 2 * 3600 * SECOND);
    let (status, body) = bearer(ours).await;
    assert_eq!((status, body.contains("expired")), (401, true), "{body}");

    // Every sign-in and refusal is in the chained audit log.
    let records = app.store.accounts().audit_records(0, 0, 1000).unwrap();
    assert!(records.iter().any(|r| r.action == "auth.sign_in"
        && r.principal == "alice@example.test"
        && r.outcome.starts_with("ok")));
    assert!(records.iter().any(|r| r.action == "auth.sign_in" && r.outcome.starts_with("refused")));
    assert_eq!(app.store.accounts().verify_audit().unwrap(), Ok(records.len() as u64));
}
