//! The heart, end to end over the running binary: spans of `checkout` at version 1.0.0, a
//! deploy of 1.1.0 made of three commits (built with git in a test repository) one of which
//! makes `price_cart` 40% slower, then spans at 1.1.0. The server must find the regression,
//! name that commit first with a reason naming the code path, link exemplar traces, and draft
//! a rollback whose patch reverts cleanly (`git apply -R`) on the mirror.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mirror::testing::{commit_file, git};
use serde_json::{Value, json};

use crate::support::TestServer;

pub(crate) const MINUTE: u64 = 60_000_000_000;

const CHECKOUT_V1: &str = "\
\"\"\"Checkout: price the cart, then charge it.\"\"\"
from shop import db, tax


def price_cart(cart):
    total = 0
    for item in cart.items:
        total += item.price * item.quantity
    return total + tax.for_region(cart.region, total)


def handle_checkout(request):
    cart = db.load_cart(request.cart_id)
    return {\"total\": price_cart(cart)}
";

const SEARCH_V1: &str = "\
from shop import db


def query(text):
    return db.search_products(text)


def reindex():
    pass
";

/// The repository: a base commit (version 1.0.0), then three commits (version 1.1.0).
pub(crate) struct Repo {
    pub(crate) base: String,
    pub(crate) docs: String,
    pub(crate) slow: String,
    pub(crate) search: String,
}

pub(crate) fn build_repo(dir: &Path) -> Repo {
    git(dir, &["init", "-q", "-b", "main"]);
    commit_file(dir, "README.md", "# shop\n", "Start the shop");
    commit_file(dir, "shop/search.py", SEARCH_V1, "Search products");
    let base = commit_file(dir, "shop/checkout.py", CHECKOUT_V1, "Check out carts");
    let docs =
        commit_file(dir, "README.md", "# shop\n\nRun `make serve`.\n", "Say how to run the shop");
    let slow = commit_file(
        dir,
        "shop/checkout.py",
        &CHECKOUT_V1.replace(
            "    for item in cart.items:\n        total += item.price * item.quantity\n",
            "    for item in cart.items:\n        rate = tax.lookup_item_rate(item.sku, cart.region)\n        total += item.price * item.quantity * (1 + rate)\n",
        ),
        "Price carts with per-item tax rates",
    );
    let search = commit_file(
        dir,
        "shop/search.py",
        &SEARCH_V1.replace(
            "def reindex():\n    pass\n",
            "def reindex():\n    db.rebuild_search_index()\n",
        ),
        "Rebuild the search index on demand",
    );
    Repo { base, docs, slow, search }
}

/// Deterministic jitter in [0.8, 1.25] (a product of uniforms, so right-skewed).
struct Jitter(u64);

impl Jitter {
    fn next(&mut self) -> f64 {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let u = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        0.8 * (1.25f64 / 0.8).powf(u * u)
    }
}

fn attribute(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

fn span(
    trace: &str,
    id: u64,
    parent: Option<u64>,
    name: &str,
    kind: u8,
    (start, nanos): (u64, u64),
    attributes: Vec<Value>,
) -> Value {
    let mut span = json!({
        "traceId": trace, "spanId": format!("{id:016x}"), "name": name, "kind": kind,
        "startTimeUnixNano": start.to_string(), "endTimeUnixNano": (start + nanos).to_string(),
        "attributes": attributes,
    });
    if let Some(parent) = parent {
        span["parentSpanId"] = format!("{parent:016x}").into();
    }
    span
}

/// One `POST /checkout` trace: the handler, `price_cart` (its code location on the span), and
/// the cart query. `price_factor` slows `price_cart` down.
fn checkout_trace(n: u64, start: u64, price_factor: f64, jitter: &mut Jitter) -> Vec<Value> {
    let trace = format!("{:032x}", 0x00c0_ffee_0000_0000_u64 + n);
    let db = (5e6 * jitter.next()) as u64;
    let price = (40e6 * price_factor * jitter.next()) as u64;
    let root = 10_000_000 + db + price;
    let base = n * 16;
    vec![
        span(
            &trace,
            base + 1,
            None,
            "POST /checkout",
            2,
            (start, root),
            vec![attribute("http.route", "/checkout"), attribute("http.request.method", "POST")],
        ),
        span(
            &trace,
            base + 2,
            Some(base + 1),
            "SELECT carts",
            3,
            (start + 1_000_000, db),
            vec![attribute("db.system.name", "postgresql")],
        ),
        span(
            &trace,
            base + 3,
            Some(base + 1),
            "price_cart",
            1,
            (start + 2_000_000 + db, price),
            vec![
                attribute("code.function.name", "shop.checkout.price_cart"),
                attribute("code.file.path", "shop/checkout.py"),
                json!({"key": "code.line.number", "value": {"intValue": "5"}}),
            ],
        ),
    ]
}

fn search_trace(n: u64, start: u64, jitter: &mut Jitter) -> Vec<Value> {
    let trace = format!("{:032x}", 0x005e_a4c4_0000_0000_u64 + n);
    let query = (20e6 * jitter.next()) as u64;
    let base = n * 16;
    vec![
        span(
            &trace,
            base + 1,
            None,
            "GET /search",
            2,
            (start, query + 3_000_000),
            vec![attribute("http.route", "/search")],
        ),
        span(
            &trace,
            base + 2,
            Some(base + 1),
            "query",
            1,
            (start + 1_000_000, query),
            vec![
                attribute("code.function.name", "shop.search.query"),
                attribute("code.file.path", "shop/search.py"),
            ],
        ),
    ]
}

/// Sends spans of `checkout` at `version` from `from` to `to`: a checkout a second, a search
/// every two.
pub(crate) fn send_traffic(
    server: &TestServer,
    version: &str,
    commit: &str,
    from: u64,
    to: u64,
    price_factor: f64,
    seed: u64,
) {
    send_service_traffic(server, "checkout", version, commit, (from, to), price_factor, seed);
}

/// [`send_traffic`] for another service (same operations).
pub(crate) fn send_service_traffic(
    server: &TestServer,
    service: &str,
    version: &str,
    commit: &str,
    (from, to): (u64, u64),
    price_factor: f64,
    seed: u64,
) {
    let client = reqwest::blocking::Client::new();
    let resource = json!({"attributes": [
        attribute("service.name", service),
        attribute("service.version", version),
        attribute("deployment.environment.name", "production"),
        attribute("vcs.ref.head.revision", commit),
    ]});
    let mut jitter = Jitter(seed);
    let mut batch = Vec::new();
    let flush = |batch: &mut Vec<Value>| {
        if batch.is_empty() {
            return;
        }
        let body = json!({"resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": {"name": "shop"}, "spans": batch}]}]});
        let response = client.post(server.url("/v1/traces")).json(&body).send().unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().unwrap());
        batch.clear();
    };
    let mut n = seed * 1_000_000;
    let mut t = from;
    while t < to {
        n += 1;
        batch.extend(checkout_trace(n, t, price_factor, &mut jitter));
        if n.is_multiple_of(2) {
            batch.extend(search_trace(n, t + 300_000_000, &mut jitter));
        }
        if batch.len() >= 1_500 {
            flush(&mut batch);
        }
        t += 1_000_000_000;
    }
    flush(&mut batch);
}

pub(crate) fn post_deploy(server: &TestServer, version: &str, commit: &str, started_at: u64) {
    post_service_deploy(server, "checkout", version, commit, started_at);
}

pub(crate) fn post_service_deploy(
    server: &TestServer,
    service: &str,
    version: &str,
    commit: &str,
    started_at: u64,
) {
    let started = jiff::Timestamp::from_nanosecond(i128::from(started_at)).unwrap().to_string();
    let body = json!({"service": service, "environment": "production", "version": version, "commit": commit, "started_at": started});
    let response = reqwest::blocking::Client::new()
        .post(server.url("/api/v1/deploys"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().unwrap());
}

/// Polls `server` until the regression of `/checkout`'s p50 is explained (has suspects);
/// returns the finding in full.
pub(crate) fn explained_regression(server: &TestServer, limit: Duration) -> Value {
    explained_service_regression(server, "checkout", limit)
}

/// [`explained_regression`] of another service.
pub(crate) fn explained_service_regression(
    server: &TestServer,
    service: &str,
    limit: Duration,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = server.get_json(&format!(
            "/api/v1/findings?service={service}&environment=production&verdict=regressed"
        ));
        assert_eq!(status, 200, "{body}");
        let found = body["findings"].as_array().unwrap().iter().find(|f| {
            f["operation"] == "/checkout"
                && f["metric"] == "latency_p50"
                && !f["suspects"].as_array().unwrap().is_empty()
        });
        if let Some(found) = found {
            let (status, full) = server.get_json(found["url"].as_str().unwrap());
            assert_eq!(status, 200, "{full}");
            return full;
        }
        assert!(
            Instant::now() < deadline,
            "no explained regression of {service} on /checkout: {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub(crate) fn post(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let response =
        reqwest::blocking::Client::new().post(server.url(path)).json(body).send().unwrap();
    (response.status().as_u16(), response.json().unwrap())
}

#[test]
fn a_slower_commit_is_found_named_and_reverted() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("shop");
    std::fs::create_dir_all(&upstream).unwrap();
    let repo = build_repo(&upstream);
    let config = dir.path().join("spanblame.toml");
    std::fs::write(
        &config,
        format!(
            "[detection]\ninterval = \"1s\"\n\n[[repositories]]\nname = \"shop\"\nurl = \"{}\"\n\n[[services]]\nname = \"checkout\"\nrepository = \"shop\"\nteam = \"payments\"\n",
            upstream.display()
        ),
    )
    .unwrap();
    let server = TestServer::start_with_env(
        &dir.path().join("data"),
        &[("SPANBLAME_CONFIG", config.to_str().unwrap())],
    );

    // 70 minutes of 1.0.0, then 25 of 1.1.0 (recorded after the fact, as a late CI report is).
    let now = jiff::Timestamp::now().as_nanosecond() as u64;
    let deploy_b = now - 25 * MINUTE;
    send_traffic(&server, "1.0.0", &repo.base, deploy_b - 70 * MINUTE, deploy_b, 1.0, 1);
    send_traffic(&server, "1.1.0", &repo.search, deploy_b + 500_000_000, now, 1.4, 2);
    post_deploy(&server, "1.0.0", &repo.base, deploy_b - 75 * MINUTE);
    post_deploy(&server, "1.1.0", &repo.search, deploy_b);

    // The detection job runs every second; explanation waits for the mirror's first fetch.
    let finding = explained_regression(&server, Duration::from_secs(90));

    // The operator's log says each step once, at info: the deploy, the verdict, the regression.
    server.wait_for_log("deploy recorded deploy=2 service=checkout", Duration::from_secs(5));
    server.wait_for_log("finding verdict changed deploy=2", Duration::from_secs(5));
    server.wait_for_log("to=regressed", Duration::from_secs(5));
    server.wait_for_log("regression found", Duration::from_secs(5));

    // What got worse, by how much, how sure.
    assert_eq!(finding["verdict"], "regressed", "{finding}");
    assert_eq!(finding["deploy"]["version"], "1.1.0");
    let effect = &finding["effect"];
    assert_eq!(effect["kind"], "ratio");
    let (low, estimate, high) = (
        effect["low"].as_f64().unwrap(),
        effect["estimate"].as_f64().unwrap(),
        effect["high"].as_f64().unwrap(),
    );
    // price_cart is 40 of ~55 ms: the whole request is about 29% slower.
    assert!(
        low > 1.0 && low <= estimate && estimate <= high && (1.15..1.45).contains(&estimate),
        "{effect}"
    );
    assert!(
        finding["before"]["spans"].as_u64().unwrap() >= 1_000
            && finding["after"]["spans"].as_u64().unwrap() >= 1_000,
        "{finding}"
    );
    assert!(finding["before"]["value_ms"].as_f64().unwrap() > 40.0);
    let search = server.get_json("/api/v1/findings?service=checkout&verdict=regressed").1;
    assert!(
        search["findings"].as_array().unwrap().iter().all(|f| f["operation"] != "/search"),
        "{search}"
    );

    // Which commit, and why: the change first.
    let top = &finding["suspects"][0];
    assert_eq!(top["commit"]["sha"], repo.slow.as_str(), "{finding}");
    assert_eq!(top["commit"]["subject"], "Price carts with per-item tax rates");
    let reasons: Vec<&str> =
        top["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(reasons[0].contains("price_cart"), "{reasons:?}");
    // Blame of the slow spans' function at the deployed version points at the same commit.
    assert!(
        reasons.iter().any(|r| r.starts_with("`shop.checkout.price_cart`")
            && r.contains("(shop/checkout.py lines 5-")
            && r.ends_with("was last changed by this commit, inside the deploy's range")),
        "{reasons:?}"
    );
    assert!(finding["ranking"]["separated"].as_bool().unwrap(), "{}", finding["ranking"]);
    let listed: Vec<&str> = finding["suspects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["commit"]["sha"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 3, "exactly the deploy's range: {listed:?}");
    assert!(listed.contains(&repo.docs.as_str()) && listed.contains(&repo.search.as_str()));

    // Exemplars before and after, each a stored trace.
    for side in ["before", "after"] {
        for which in ["slowest", "typical"] {
            let trace_id = finding["exemplars"][side][which]["trace_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{side} {which}: {finding}"));
            let (status, trace) = server.get_json(&format!("/api/v1/traces/{trace_id}"));
            assert_eq!(status, 200, "{trace}");
        }
    }
    let slowest_after = finding["exemplars"]["after"]["slowest"]["duration_ms"].as_f64().unwrap();
    let typical_before = finding["exemplars"]["before"]["typical"]["duration_ms"].as_f64().unwrap();
    assert!(slowest_after > typical_before);

    // The rollback draft: previous version, commands, and a patch that reverts on the mirror.
    let rollback = &finding["rollback"];
    assert_eq!(rollback["previous_version"], "1.0.0");
    assert_eq!(rollback["revert_commits"], json!([repo.slow]));
    let commands: Vec<&str> =
        rollback["commands"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(
        commands.contains(&format!("git revert --no-edit {}", repo.slow).as_str()),
        "{commands:?}"
    );
    let work = dir.path().join("work");
    let mirror = server.data_dir.join("mirrors/shop.git");
    let output =
        Command::new("git").args(["clone", "-q"]).arg(&mirror).arg(&work).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    git(&work, &["checkout", "-q", &repo.search]);
    let patch = dir.path().join("revert.patch");
    std::fs::write(&patch, rollback["patch"].as_str().unwrap()).unwrap();
    git(&work, &["apply", "-R", "--check", patch.to_str().unwrap()]);
    git(&work, &["apply", "-R", patch.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(work.join("shop/checkout.py")).unwrap(), CHECKOUT_V1);

    // People acknowledge and resolve; bad requests are named.
    let id = finding["id"].as_u64().unwrap();
    let (status, acknowledged) = post(
        &server,
        &format!("/api/v1/findings/{id}/acknowledge"),
        &json!({"by": "oncall", "note": "rolling back"}),
    );
    assert_eq!(
        (status, &acknowledged["status"], &acknowledged["status_by"]),
        (200, &json!("acknowledged"), &json!("oncall"))
    );
    let (status, error) = post(&server, &format!("/api/v1/findings/{id}/shrug"), &json!({}));
    assert_eq!((status, &error["error"]["code"]), (404, &json!("not_found")), "{error}");
    let (status, error) = server.get_json("/api/v1/findings/999999");
    assert_eq!((status, &error["error"]["code"]), (404, &json!("not_found")));
    let (status, error) = server.get_json("/api/v1/findings?verdict=worse");
    assert!(
        status == 400 && error["error"]["message"].as_str().unwrap().contains("regressed"),
        "{error}"
    );
}
