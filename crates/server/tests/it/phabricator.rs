//! Phabricator end to end: a signed Herald webhook makes the server fetch, through Conduit, the
//! revision or commit it names, and the stored revision then appears on traces of that commit.
//!
//! No Phabricator can run here (it needs PHP, MySQL and a web server), so Conduit is a local
//! HTTP server that replays the real responses in `crates/forge/test_data/forges/`. It keeps
//! Conduit's rules: form-encoded bodies only, the token inside `params`, HTTP 200 with
//! `error_code` for errors, `constraints` that filter, and cursor paging (one item per page,
//! so the client's paging is exercised). The fixtures come from unrelated objects of Mozilla's
//! test suite; [`SAME_OBJECTS`] renames their PHIDs so they describe one story, revision D51
//! landed as one commit, and [`scenario`] adds what no fixture has (the landing edges, the
//! users, the repository), in the shape Phabricator's source gives them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use model::ForgeKind;
use serde_json::{Value, json};
use server::{ChangeSettings, Integration, RepositorySettings, ServiceOwnership};

use crate::support::{T0, TestApp, fixture};

const SECRET: &str = "a-herald-hmac-key-for-the-tests";
const TOKEN: &str = "api-abcdefghijklmnopqrstuvwxyzab";
const REVISION: &str = "PHID-DREV-azcDeadbeef";
const COMMIT: &str = "PHID-CMIT-aaaaaaaaaaaaaaaaaaaa";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// PHID renames that make the fixtures name the same objects.
const SAME_OBJECTS: &[(&str, &str)] = &[
    // The commit lives in the revision's repository.
    ("PHID-REPO-bbbbbbbbbbbbbbbbbbbb", "PHID-REPO-coffeee"),
    // The diff fixture is the revision's active diff.
    ("PHID-DIFF-testABcd12", "PHID-DIFF-test"),
    ("PHID-DREV-zzzzz", REVISION),
    // The edge fixture's `revision.parent` edge leaves the same revision (and must be ignored).
    ("\"PHID-DREV-deadbeef\"", "\"PHID-DREV-azcDeadbeef\""),
];

/// The `result.data` of a Conduit fixture, with [`SAME_OBJECTS`] applied.
fn fixture_data(path: &str) -> Vec<Value> {
    let mut text = String::from_utf8(fixture(path)).unwrap();
    for (from, to) in SAME_OBJECTS {
        text = text.replace(from, to);
    }
    let envelope: Value = serde_json::from_str(&text).unwrap();
    envelope["result"]["data"].as_array().unwrap().clone()
}

/// What each Conduit method knows.
fn scenario() -> HashMap<String, Vec<Value>> {
    let mut edges = fixture_data("phabricator/conduit_edge.search.mozilla-code-review.json");
    edges.push(
        json!({"sourcePHID": REVISION, "edgeType": "revision.commit", "destinationPHID": COMMIT}),
    );
    edges.push(
        json!({"sourcePHID": COMMIT, "edgeType": "commit.revision", "destinationPHID": REVISION}),
    );
    // `PhabricatorUser::getFieldValuesForConduit` and `PhabricatorRepository`'s, with its `uris`
    // attachment (`PhabricatorRepositoryURI::getFieldValuesForConduit`).
    let user = |phid: &str, username: &str, real_name: &str| {
        json!({"id": 1, "type": "USER", "phid": phid, "fields": {
            "username": username, "realName": real_name, "roles": ["verified", "approved", "activated"],
            "dateCreated": 1_500_000_000, "dateModified": 1_500_000_000, "policy": {"view": "public", "edit": "no-one"}},
            "attachments": {}})
    };
    let repository = json!({"id": 7, "type": "REPO", "phid": "PHID-REPO-coffeee", "fields": {
        "name": "Web", "vcs": "git", "callsign": "WEB", "shortName": "web", "status": "active",
        "isImporting": false, "almanacServicePHID": null, "refRules": {}, "spacePHID": null,
        "dateCreated": 1_500_000_000, "dateModified": 1_500_000_000, "policy": {"view": "users"}},
        "attachments": {"uris": {"uris": [{"id": 20, "type": "RURI", "phid": "PHID-RURI-x", "fields": {
            "repositoryPHID": "PHID-REPO-coffeee",
            "uri": {"raw": "https://phab.example.com/source/web.git", "display": "https://phab.example.com/source/web.git",
                "effective": "https://phab.example.com/source/web.git", "normalized": "phab.example.com/source/web"},
            "io": {"raw": "default", "default": "readwrite", "effective": "readwrite"},
            "display": {"raw": "default", "default": "always", "effective": "always"},
            "credentialPHID": null, "disabled": false, "builtin": {"protocol": "https", "identifier": "shortname"}}}]}}});
    HashMap::from([
        (
            "differential.revision.search".to_owned(),
            fixture_data(
                "phabricator/conduit_differential.revision.search.mozilla-code-review.json",
            ),
        ),
        (
            "differential.diff.search".to_owned(),
            fixture_data("phabricator/conduit_differential.diff.search.mozilla-code-review.json"),
        ),
        (
            "diffusion.commit.search".to_owned(),
            fixture_data("synthesized/conduit_diffusion.commit.search.SHAPE-ONLY.json"),
        ),
        ("edge.search".to_owned(), edges),
        (
            "user.search".to_owned(),
            vec![
                user("PHID-USER-crasher", "crasher", "Crash Reporter"),
                user("PHID-USER-dddddddddddddddddddd", "alice", "Alice Liddell"),
            ],
        ),
        ("diffusion.repository.search".to_owned(), vec![repository]),
    ])
}

struct Replay {
    data: HashMap<String, Vec<Value>>,
    /// While set, every call gets HTTP 503 (a Phabricator being restarted).
    unavailable: AtomicBool,
    /// Every call: method and decoded `params`.
    calls: Mutex<Vec<(String, Value)>>,
}

fn conduit_error(code: &str, info: &str) -> Json<Value> {
    Json(json!({"result": null, "error_code": code, "error_info": info}))
}

async fn answer(
    State(replay): State<Arc<Replay>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Json<Value>, StatusCode> {
    if replay.unavailable.load(Ordering::SeqCst) {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    Ok(conduit(&replay, &method, &headers, &form))
}

fn conduit(
    replay: &Replay,
    method: &str,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Json<Value> {
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-www-form-urlencoded")
    {
        return conduit_error("ERR-CONDUIT-CORE", "Conduit takes form-encoded parameters");
    }
    let Some(params) = form.get("params").and_then(|p| serde_json::from_str::<Value>(p).ok())
    else {
        return conduit_error("ERR-CONDUIT-CORE", "no `params`");
    };
    replay.calls.lock().unwrap().push((method.to_owned(), params.clone()));
    if form.get("output").map(String::as_str) != Some("json") {
        return conduit_error("ERR-CONDUIT-CORE", "`output` must be json");
    }
    if params["__conduit__"]["token"] != TOKEN {
        return conduit_error("ERR-INVALID-AUTH", "API token is not valid.");
    }
    let Some(items) = replay.data.get(method) else {
        return conduit_error(
            "ERR-CONDUIT-CALL",
            &format!("Conduit method \"{method}\" does not exist."),
        );
    };
    let wanted = |key: &str| params.pointer(key).and_then(Value::as_array).cloned();
    let matching: Vec<&Value> = items
        .iter()
        .filter(|item| match method {
            "edge.search" => {
                wanted("/sourcePHIDs").is_some_and(|s| s.contains(&item["sourcePHID"]))
                    && wanted("/types").is_some_and(|t| t.contains(&item["edgeType"]))
            }
            _ => wanted("/constraints/phids").is_none_or(|phids| phids.contains(&item["phid"])),
        })
        .collect();
    // One item per page; `after` is the index of the next one.
    let start: usize = params["after"].as_str().and_then(|a| a.parse().ok()).unwrap_or(0);
    let page: Vec<&Value> = matching.iter().skip(start).take(1).copied().collect();
    let after = (start + 1 < matching.len()).then(|| (start + 1).to_string());
    Json(json!({
        "result": {"data": page, "maps": {}, "query": {"queryKey": null},
            "cursor": {"limit": 1, "after": after, "before": null, "order": null}},
        "error_code": null, "error_info": null,
    }))
}

async fn start_replay() -> (SocketAddr, Arc<Replay>) {
    let replay = Arc::new(Replay {
        data: scenario(),
        unavailable: AtomicBool::new(false),
        calls: Mutex::new(Vec::new()),
    });
    let router = Router::new().route("/api/{method}", post(answer)).with_state(Arc::clone(&replay));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (addr, replay)
}

fn settings(api_url: &str, token: &str) -> ChangeSettings {
    ChangeSettings {
        integrations: vec![Integration {
            name: "phab".into(),
            kind: ForgeKind::Phabricator,
            secret: SECRET.as_bytes().to_vec(),
            api_url: Some(api_url.into()),
            api_token: Some(token.into()),
        }],
        repositories: vec![RepositorySettings {
            name: "web".into(),
            forge: Some(ForgeKind::Phabricator),
            web_url: Some(api_url.into()),
            monogram: Some("rWEB".into()),
            ..RepositorySettings::default()
        }],
        services: vec![ServiceOwnership {
            service: "checkout".into(),
            repository: Some("web".into()),
            path_prefix: None,
            team: Some("team-web".into()),
            deploy_from: Vec::new(),
        }],
        mirrors: Default::default(),
        gate: Default::default(),
    }
}

/// The real Herald body layout, naming `object_type` `object_phid`.
fn herald_body(object_type: &str, object_phid: &str) -> Vec<u8> {
    let body = String::from_utf8(fixture("synthesized/phabricator_herald_webhook.revision.body"))
        .unwrap()
        .replace("\"DREV\"", &format!("\"{object_type}\""))
        .replace("PHID-DREV-q6i2xy6nkmqcgeqwr5zb", object_phid);
    body.into_bytes()
}

async fn deliver(app: &TestApp, body: &[u8]) -> (StatusCode, Value) {
    let (headers, body) =
        forge::signed_delivery(ForgeKind::Phabricator, SECRET, "herald", "", body);
    app.post_raw("/hooks/phabricator/phab", &headers, body).await
}

/// What a trace of the landed commit shows.
async fn change_of_landed_commit(app: &TestApp) -> Value {
    app.export_span(
        "dddddddddddddddddddddddddddddddd",
        &[("service.name", "checkout"), ("service.version", SHA)],
        T0,
    )
    .await;
    let (status, trace) = app.get("/api/v1/traces/dddddddddddddddddddddddddddddddd").await;
    assert_eq!(status, StatusCode::OK, "{trace}");
    trace["spans"][0]["change"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_herald_revision_webhook_stores_the_revision_linked_to_its_landed_commit() {
    let (addr, replay) = start_replay().await;
    let base = format!("http://{addr}");
    let app = TestApp::with_changes(settings(&base, TOKEN));

    let body = herald_body("DREV", REVISION);
    let (status, answer) = deliver(&app, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "applied", "{answer}");
    assert_eq!((answer["commits"].as_u64(), answer["reviews"].as_u64()), (Some(1), Some(1)));

    let stored = app.store.review("web", "D51").unwrap().expect("D51 is stored in `web`");
    let review = &stored.review;
    assert_eq!(review.title, "Static Analysis tests");
    assert_eq!(review.url.as_deref(), Some(format!("{base}/D51").as_str()));
    assert_eq!(review.author.username.as_deref(), Some("crasher"));
    assert_eq!(review.author.name.as_deref(), Some("Crash Reporter"));
    assert_eq!(review.state, model::ReviewState::Open, "needs-review is open");
    assert_eq!(
        review.head_sha.as_deref(),
        Some("dcfebedebe9f18bce45f9bfc0339fe8255e5468b"),
        "the active diff's uploaded commit"
    );
    assert_eq!(review.merge_commit_sha, None, "not published yet");
    assert!(review.commits.contains(&SHA.to_owned()), "{:?}", review.commits);
    let commit = app.store.commit("web", SHA).unwrap().expect("the landed commit is stored");
    assert_eq!(commit.commit.subject(), "Fix timeout in checkout service");
    assert_eq!(commit.commit.author.username.as_deref(), Some("alice"));
    assert_eq!(commit.commit.url.as_deref(), Some(format!("{base}/rWEB{SHA}").as_str()));

    let change = change_of_landed_commit(&app).await;
    assert_eq!(change["commit"]["subject"], "Fix timeout in checkout service", "{change}");
    assert_eq!(change["commit"]["author"], "Alice", "{change}");
    assert_eq!(change["commit"]["url"], format!("{base}/rWEB{SHA}"), "{change}");
    assert_eq!(change["review"]["kind"], "phabricator", "{change}");
    assert_eq!(change["review"]["id"], "D51", "{change}");
    assert_eq!(change["review"]["title"], "Static Analysis tests", "{change}");
    assert_eq!(change["review"]["url"], format!("{base}/D51"), "{change}");
    assert_eq!(change["owner"], "team-web", "{change}");

    // Every call was form-encoded with the token inside `params` (the replay refuses anything
    // else), and each method Herald's pointer needs was used.
    let calls = replay.calls.lock().unwrap().clone();
    let methods: std::collections::BTreeSet<&str> = calls.iter().map(|(m, _)| m.as_str()).collect();
    for method in [
        "differential.revision.search",
        "differential.diff.search",
        "diffusion.commit.search",
        "diffusion.repository.search",
        "edge.search",
        "user.search",
    ] {
        assert!(methods.contains(method), "{method} was not called: {methods:?}");
    }
    assert!(calls.iter().all(|(_, params)| params["__conduit__"]["token"] == TOKEN));

    // Phabricator retries with identical bytes: a redelivery changes nothing, and is known
    // before any Conduit call.
    let calls_before = replay.calls.lock().unwrap().len();
    let (status, answer) = deliver(&app, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "duplicate", "{answer}");
    assert_eq!(
        replay.calls.lock().unwrap().len(),
        calls_before,
        "no Conduit call for a redelivery"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_herald_commit_webhook_finds_the_revision_through_its_edge() {
    let (addr, _replay) = start_replay().await;
    let base = format!("http://{addr}");
    let app = TestApp::with_changes(settings(&base, TOKEN));

    let (status, answer) = deliver(&app, &herald_body("CMIT", COMMIT)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let stored = app.store.review("web", "D51").unwrap().expect("the commit's revision");
    assert!(stored.review.commits.contains(&SHA.to_owned()));
    let change = change_of_landed_commit(&app).await;
    assert_eq!(change["review"]["id"], "D51", "{change}");
}

#[tokio::test(flavor = "multi_thread")]
async fn conduit_failures_answer_502_and_store_nothing() {
    let (addr, replay) = start_replay().await;
    let base = format!("http://{addr}");

    // A refused token: Conduit says so with HTTP 200 and `error_code`.
    let app = TestApp::with_changes(settings(&base, "api-notthetokenphabricatorknows"));
    let (status, answer) = deliver(&app, &herald_body("DREV", REVISION)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert_eq!(answer["error"]["code"], "bad_gateway");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("ERR-INVALID-AUTH") && message.contains("api_token"), "{message}");
    assert!(app.store.review("web", "D51").unwrap().is_none());
    assert!(app.store.find_commit(SHA).unwrap().is_none());

    // Conduit unreachable.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let app = TestApp::with_changes(settings(&format!("http://{closed}"), TOKEN));
    let (status, answer) = deliver(&app, &herald_body("DREV", REVISION)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert!(app.store.find_commit(SHA).unwrap().is_none());

    // Conduit answering 503: nothing is stored, not even the delivery key, so Phabricator's
    // retry of the same bytes is applied once Conduit is back.
    let app = TestApp::with_changes(settings(&base, TOKEN));
    replay.unavailable.store(true, Ordering::SeqCst);
    let (status, answer) = deliver(&app, &herald_body("DREV", REVISION)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("HTTP 503"), "{answer}");
    assert!(app.store.review("web", "D51").unwrap().is_none());
    replay.unavailable.store(false, Ordering::SeqCst);
    let (status, answer) = deliver(&app, &herald_body("DREV", REVISION)).await;
    assert_eq!((status, answer["status"].as_str()), (StatusCode::OK, Some("applied")), "{answer}");
    assert!(app.store.review("web", "D51").unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_other_than_revisions_and_commits_are_ignored_without_calls() {
    let (addr, replay) = start_replay().await;
    let app = TestApp::with_changes(settings(&format!("http://{addr}"), TOKEN));
    let (status, answer) =
        deliver(&app, &herald_body("TASK", "PHID-TASK-abcdefghijklmnopqrst")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["status"], "ignored");
    assert!(replay.calls.lock().unwrap().is_empty());
    // Repositories and diffs, which Firehose also sends, are said to be unused, not unseen.
    for (kind, phid) in
        [("REPO", "PHID-REPO-abcdefghijklmnopqrst"), ("DIFF", "PHID-DIFF-abcdefghijklmnopqrst")]
    {
        let (status, answer) = deliver(&app, &herald_body(kind, phid)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains("is not used") && !message.contains("can see"), "{message}");
    }
    assert!(replay.calls.lock().unwrap().is_empty());
    // A revision the token cannot see: also 202, after looking.
    let (status, answer) = deliver(&app, &herald_body("DREV", "PHID-DREV-notvisible")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}
