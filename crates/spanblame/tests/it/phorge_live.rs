//! The Phabricator integration against a real Phorge (`../shared/phorge/setup-phorge.sh`, run
//! by `cargo xtask test`): Phorge's own daemons deliver the Herald webhooks, its Conduit
//! answers every call, and its `transaction.search` shows the comments spanblame posted.
//!
//! One run: a revision made with `arc diff` and landed, three commits pushed without review,
//! four services deployed from them that each get 40% slower, so that spanblame comments on
//! the revision (`differential.revision.edit`), on a commit named by callsign (`rSHOP<sha>`)
//! and by repository id (`R1:<sha>`) (`diffusion.commit.edit`), and sees a comment refused for
//! a bad token dead-lettered at once with Phorge's message, the token redacted, on the finding
//! page. The stored review (title, author, state, landed commit) can only have come from
//! `edge.search`, `differential.revision.search`, `diffusion.commit.search`,
//! `differential.diff.search`, `user.search` and `diffusion.repository.search`. A second
//! webhook signed with another key is answered 401, as Phorge's request log records it. A
//! Harbormaster build plan (`tests/phorge/harbormaster.php` sets it up as an administrator
//! would) asks the tagging gate about the revision and passes on `harbormaster.sendmessage`;
//! a deploy plan run on the landed commit ends with a step that records one deploy, linked to
//! its build; and the revert of cart's suspect, proposed through the API and again through an
//! assistant's `propose_revert`, becomes one new revision whose diff removes the landed lines
//! and whose summary links the original.
//!
//! Where `cargo xtask test` found no Phorge to set up (a clone without `../shared/phorge`, or
//! no root), it skips this module by name and says why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mirror::testing::git;
use serde_json::{Value, json};

use crate::findings::{
    MINUTE, explained_service_regression, post_service_deploy, send_service_traffic,
};
use crate::support::TestServer;

/// A token Phorge never issued (its shape is valid: `api-` and 28 letters or digits).
const BAD_TOKEN: &str = "api-notissuedbythisphorge0000000";
/// The key of a webhook spanblame was not told about.
const WRONG_HOOK_KEY: &str = "wrongwrongwrongwrongwrongwrong12";

/// The Phorge `setup-phorge.sh` brought up, as its `phorge.env` describes it.
struct Phorge {
    env: BTreeMap<String, String>,
    /// `phorge-helper.php`, beside the setup script.
    helper: PathBuf,
    http: reqwest::blocking::Client,
}

impl Phorge {
    fn from_env() -> Phorge {
        let path = std::env::var("SPANBLAME_TEST_PHORGE_ENV").expect(
            "SPANBLAME_TEST_PHORGE_ENV is not set: run the tests with `cargo xtask test` (it runs ../shared/phorge/setup-phorge.sh and skips this suite by name where that is absent)",
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let helper = PathBuf::from(
            std::env::var("SPANBLAME_TEST_PHORGE_HELPER")
                .expect("SPANBLAME_TEST_PHORGE_HELPER: phorge-helper.php beside the setup script"),
        );
        Phorge { env, helper, http: reqwest::blocking::Client::new() }
    }

    fn var(&self, key: &str) -> &str {
        self.env.get(key).unwrap_or_else(|| panic!("phorge.env has no {key}"))
    }

    fn root(&self) -> PathBuf {
        Path::new(self.var("PHORGE_DIR")).join("phorge")
    }

    /// A Conduit call as `token`; the result, or a panic with Phorge's error.
    fn conduit(&self, token: &str, method: &str, mut params: Value) -> Value {
        params["__conduit__"] = json!({"token": token});
        let url = format!("{}/api/{method}", self.var("PHORGE_URL"));
        let response = self
            .http
            .post(&url)
            .form(&[
                ("params", params.to_string().as_str()),
                ("output", "json"),
                ("__conduit__", "1"),
            ])
            .send()
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let body: Value = response.json().unwrap();
        assert!(body["error_code"].is_null(), "{method}: {body}");
        body["result"].clone()
    }

    /// A Harbormaster build plan whose one step calls `step_uri` with the webhook's key as its
    /// credential (waiting for a message, or not), run on `object` (`D12`, `rSHOP<sha>`) until
    /// it passes: the plan's PHID and the build.
    fn run_plan(
        &self,
        admin: &str,
        name: &str,
        step_uri: &str,
        wait: bool,
        object: &str,
    ) -> (String, Value) {
        let helper = crate::support::manifest_dir().join("tests/phorge/harbormaster.php");
        let mut command = Command::new("php");
        command.arg(&helper).arg(self.root()).args([name, step_uri, self.var("HOOK_HMAC")]);
        if !wait {
            command.arg("no-wait");
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let plan = String::from_utf8(output.stdout).unwrap();
        let (plan_id, plan_phid) = plan.trim().split_once('\t').unwrap();
        let output = Command::new(self.root().join("bin/harbormaster"))
            .args(["build", object, "--plan", plan_id])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let build =
            within(Duration::from_secs(120), &format!("the build of {name} did not pass"), || {
                let found = self.conduit(
                    admin,
                    "harbormaster.build.search",
                    json!({"constraints": {"plans": [plan_phid]}}),
                );
                let status = &found["data"][0]["fields"]["buildStatus"]["value"];
                if *status == "passed" {
                    Ok(found["data"][0].clone())
                } else {
                    Err(found.to_string())
                }
            });
        (plan_phid.to_owned(), build)
    }

    /// Creates or updates the Herald webhook `name` (`firehose` or `disabled`).
    fn webhook(&self, name: &str, uri: &str, key: &str, status: &str) -> String {
        let output = Command::new("php")
            .arg(&self.helper)
            .arg(self.root())
            .args(["webhook", name, uri, key, status])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let line = String::from_utf8(output.stdout).unwrap();
        line.split('\t').next().unwrap().to_owned()
    }

    /// Comments on an object (`D12`, `rSHOP<sha>`, `R1:<sha>`): author PHID and raw text.
    fn comments(&self, object: &str) -> Vec<(String, String)> {
        let result = self.conduit(
            self.var("ADMIN_TOKEN"),
            "transaction.search",
            json!({"objectIdentifier": object}),
        );
        let mut out = Vec::new();
        for transaction in result["data"].as_array().unwrap() {
            for comment in transaction["comments"].as_array().into_iter().flatten() {
                out.push((
                    transaction["authorPHID"].as_str().unwrap_or_default().to_owned(),
                    comment["content"]["raw"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        out
    }

    /// The HTTP status each of a webhook's requests since `since` (epoch seconds) got, as
    /// Herald's request log records it.
    fn hook_results(&self, hook_phid: &str, since: i64) -> Vec<String> {
        let query = format!(
            "SELECT properties FROM phabricator_herald.herald_webhookrequest \
             WHERE webhookPHID = '{hook_phid}' AND dateModified >= {since}"
        );
        let output = Command::new("mariadb").args(["-N", "-B", "-e", &query]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|p| format!("{}:{}", p["errorType"].as_str().unwrap_or("-"), p["errorCode"]))
            .collect()
    }
}

/// Webhooks (name, URL, key) of one run, disabled when the run ends, passed or not: its
/// server is gone then.
struct RunHooks<'a> {
    phorge: &'a Phorge,
    hooks: Vec<(String, String, String)>,
}

impl RunHooks<'_> {
    /// Sets every hook to Firehose; the last one's PHID.
    fn enable(&self) -> String {
        let phids: Vec<String> = self
            .hooks
            .iter()
            .map(|(name, url, key)| self.phorge.webhook(name, url, key, "firehose"))
            .collect();
        phids.last().unwrap().clone()
    }
}

impl Drop for RunHooks<'_> {
    fn drop(&mut self) {
        for (name, url, key) in &self.hooks {
            self.phorge.webhook(name, url, key, "disabled");
        }
    }
}

/// Polls `probe` every half second until it returns `Ok`, or panics with `what` and the last
/// thing it saw.
fn within<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match probe() {
            Ok(found) => return found,
            Err(seen) => assert!(Instant::now() < deadline, "{what} within {limit:?}: {seen}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn commit_change(work: &Path, file: &str, text: &str, message: &str) -> String {
    std::fs::create_dir_all(work.join(file).parent().unwrap()).unwrap();
    std::fs::write(work.join(file), text).unwrap();
    git(work, &["add", file]);
    git(work, &["commit", "-q", "-m", message]);
    head(work)
}

fn head(work: &Path) -> String {
    let output =
        Command::new("git").args(["rev-parse", "HEAD"]).current_dir(work).output().unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A span of `service` at `commit`, sent now; its trace id.
fn probe_span(server: &TestServer, service: &str, commit: &str) -> String {
    let now = jiff::Timestamp::now().as_nanosecond() as u64;
    let trace = format!("{:032x}", now);
    let attribute = |k: &str, v: &str| json!({"key": k, "value": {"stringValue": v}});
    let body = json!({"resourceSpans": [{"resource": {"attributes": [
        attribute("service.name", service), attribute("service.version", "2.0.0"),
        attribute("deployment.environment.name", "staging"),
        attribute("vcs.ref.head.revision", commit),
    ]}, "scopeSpans": [{"spans": [{
        "traceId": trace, "spanId": "00000000000000a1", "name": "POST /checkout", "kind": 2,
        "startTimeUnixNano": now.to_string(), "endTimeUnixNano": (now + 1_000_000).to_string(),
    }]}]}]});
    let response =
        reqwest::blocking::Client::new().post(server.url("/v1/traces")).json(&body).send().unwrap();
    assert_eq!(response.status(), 200);
    trace
}

#[test]
fn phorge_live_reviews_comments_and_refusals_round_trip_through_a_real_phorge() {
    let phorge = Phorge::from_env();
    let admin = phorge.var("ADMIN_TOKEN").to_owned();
    let repo_id = phorge.var("REPO_ID").to_owned();
    let repo_path = Path::new(phorge.var("PHORGE_DIR")).join("repo").join(&repo_id);
    let started = jiff::Timestamp::now().as_second();

    // Phorge publishes (Herald, closing landed revisions) only once a repository's first
    // import is over.
    within(Duration::from_secs(240), "rSHOP's first import did not finish", || {
        let found = phorge.conduit(
            &admin,
            "diffusion.repository.search",
            json!({"constraints": {"callsigns": ["SHOP"]}}),
        );
        let importing = &found["data"][0]["fields"]["isImporting"];
        if *importing == false { Ok(()) } else { Err(format!("isImporting: {importing}")) }
    });

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("spanblame.toml");
    let repo = repo_path.display();
    let url = phorge.var("PHORGE_URL");
    std::fs::write(
        &config,
        format!(
            r#"[detection]
interval = "1s"

[notifications]
max_attempts = 3
initial_backoff = "1s"

[[integrations]]
name = "phab"
kind = "phabricator"
secret_env = "PHORGE_HOOK_KEY"
api_url = "{url}"
api_token_env = "PHORGE_BOT_TOKEN"
comment_on_findings = true

[[integrations]]
name = "phab-bad-token"
kind = "phabricator"
secret_env = "PHORGE_HOOK_KEY"
api_url = "{url}"
api_token_env = "PHORGE_BAD_TOKEN"
comment_on_findings = true

[[repositories]]
name = "shop"
path = "{repo}"
forge = "phabricator"
web_url = "{url}"
monogram = "rSHOP"
integration = "phab"

[[repositories]]
name = "shop-by-id"
path = "{repo}"
forge = "phabricator"
web_url = "{url}"
monogram = "R{repo_id}"
integration = "phab"

[[repositories]]
name = "shop-bad-token"
path = "{repo}"
forge = "phabricator"
web_url = "{url}"
monogram = "R{repo_id}"
integration = "phab-bad-token"

[[services]]
name = "cart"
repository = "shop"
path_prefix = "src"
team = "payments"

[[services]]
name = "pay"
repository = "shop"

[[services]]
name = "storefront"
repository = "shop"
deploy_from = ["deployment:production"]

[[services]]
name = "ship"
repository = "shop-by-id"

[[services]]
name = "tax"
repository = "shop-bad-token"
"#
        ),
    )
    .unwrap();
    let server = TestServer::start_with_env(
        &dir.path().join("data"),
        &[
            ("SPANBLAME_CONFIG", config.to_str().unwrap()),
            ("PHORGE_HOOK_KEY", phorge.var("HOOK_HMAC")),
            ("PHORGE_BOT_TOKEN", phorge.var("BOT_TOKEN")),
            ("PHORGE_BAD_TOKEN", BAD_TOKEN),
        ],
    );
    // Firehose hooks of this run call this server, one signed with a key it does not know.
    // New hooks, since Phorge holds back a hook's requests for five minutes after ten failures
    // (the setup's own hook pointed nowhere; earlier runs' servers are gone).
    let run = format!("{:x}", jiff::Timestamp::now().as_millisecond());
    let hook_url = server.url("/hooks/phabricator/phab");
    phorge.webhook("spanblame", phorge.var("HOOK_URL"), "", "disabled");
    let (hook, wrong_hook) = (format!("spanblame-{run}"), format!("spanblame-{run}-wrong-key"));
    let hooks = RunHooks {
        phorge: &phorge,
        hooks: vec![
            (hook, hook_url.clone(), phorge.var("HOOK_HMAC").to_owned()),
            (wrong_hook, hook_url.clone(), WRONG_HOOK_KEY.to_owned()),
        ],
    };
    let wrong_hook_phid = hooks.enable();

    // A revision through `arc diff`, landed, then three commits pushed without review.
    let work = dir.path().join("work");
    let cloned = Command::new("git").arg("clone").arg("-q").arg(&repo_path).arg(&work).output();
    assert!(cloned.unwrap().status.success());
    git(&work, &["config", "user.name", "Ada Admin"]);
    git(&work, &["config", "user.email", "admin@example.com"]);
    let previous = head(&work);
    git(&work, &["checkout", "-q", "-b", &format!("tax-{run}")]);
    commit_change(
        &work,
        &format!("src/runs/{run}/tax.py"),
        "def tax(cart):\n    return sum(rate(i) for i in cart.items)\n",
        &format!(
            "Price tax per item ({run})\n\nSummary: Looks the tax rate up for every item.\n\nTest Plan: ran the cart tests.\n\nReviewers: spanblame-bot"
        ),
    );
    let arc_home = dir.path().join("arc-home");
    std::fs::create_dir_all(&arc_home).unwrap();
    std::fs::write(
        arc_home.join(".arcrc"),
        json!({"hosts": {format!("{url}/api/"): {"token": admin}}}).to_string(),
    )
    .unwrap();
    // arc asks before reading an `.arcrc` others may read.
    let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(arc_home.join(".arcrc"), private).unwrap();
    let arc = Path::new(phorge.var("PHORGE_DIR")).join("arcanist/bin/arc");
    let output = Command::new(&arc)
        .args(["diff", "--verbatim", "--nolint", "--nounit", "master"])
        .current_dir(&work)
        .env("HOME", &arc_home)
        .env("EDITOR", "true")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "arc diff: {}", String::from_utf8_lossy(&output.stderr));
    let reviewed = head(&work);
    let message =
        Command::new("git").args(["log", "-1", "--format=%B"]).current_dir(&work).output();
    let message = String::from_utf8(message.unwrap().stdout).unwrap();
    let revision = message
        .lines()
        .find_map(|l| l.strip_prefix("Differential Revision: "))
        .and_then(|uri| uri.rsplit('/').next())
        .unwrap_or_else(|| panic!("arc diff did not amend the commit: {message}"))
        .to_owned();
    git(&work, &["checkout", "-q", "master"]);
    git(&work, &["merge", "-q", "--ff-only", &format!("tax-{run}")]);
    let unreviewed: Vec<String> = ["pay", "ship", "tax"]
        .iter()
        .map(|service| {
            commit_change(
                &work,
                // Not the revision's `tax.py`: its revert must apply on top of these.
                &format!("src/runs/{run}/{service}_handler.py"),
                "def handle(request):\n    return slow_path(request)\n",
                &format!("Take the slow path in {service} ({run})"),
            )
        })
        .collect();
    let pushed = Command::new("git")
        .args(["push", "-q"])
        .arg(&repo_path)
        .arg("master:master")
        .current_dir(&work)
        .env("PHABRICATOR_USER", "admin")
        .output()
        .unwrap();
    assert!(pushed.status.success(), "push: {}", String::from_utf8_lossy(&pushed.stderr));
    let _ = Command::new(phorge.root().join("bin/repository")).args(["update", "rSHOP"]).output();

    // Herald tells spanblame, which follows the pointers through Conduit: a span of the landed
    // commit shows its review with title, author and state.
    let trace = probe_span(&server, "cart", &reviewed);
    let review = within(
        // Phorge's one taskmaster delivers a webhook every few seconds, slower under load.
        Duration::from_secs(300),
        "spans of the landed commit did not show its revision",
        || {
            let (status, body) = server.get_json(&format!("/api/v1/traces/{trace}"));
            let review = &body["spans"][0]["change"]["review"];
            // The revision as Conduit gave it once landed, not only the commit message's
            // `Differential Revision:` line (which the mirror may show first) or the revision
            // before it closed (Herald announces both).
            if status == 200 && review["id"] == revision.as_str() && review["state"] == "merged" {
                Ok(review.clone())
            } else {
                Err(format!("{status} {body}"))
            }
        },
    );
    assert_eq!(review["kind"], "phabricator", "{review}");
    assert_eq!(review["title"], format!("Price tax per item ({run})"), "{review}");
    // The author's real name comes from `user.search`; "merged" from the landed commit.
    assert_eq!(review["author"], "Ada Admin", "{review}");
    assert_eq!(review["url"], format!("{url}/{revision}"), "{review}");
    assert_eq!(review["state"], "merged", "{review}");
    let (_, trace_body) = server.get_json(&format!("/api/v1/traces/{trace}"));
    let change = &trace_body["spans"][0]["change"];
    assert_eq!(change["commit"]["sha"], reviewed.as_str(), "{change}");
    assert_eq!(change["commit"]["url"], format!("{url}/rSHOP{reviewed}"), "{change}");

    // The webhook signed with another key was refused, as Phorge records it.
    within(Duration::from_secs(120), "Phorge recorded no 401 for the wrong key", || {
        let results = phorge.hook_results(&wrong_hook_phid, started);
        if results.iter().any(|r| r == "http:401") { Ok(()) } else { Err(format!("{results:?}")) }
    });

    // Four deploys, one commit each, every one 40% slower than the last version.
    let now = jiff::Timestamp::now().as_nanosecond() as u64;
    let deploy = now - 25 * MINUTE;
    let ranges = [
        ("cart", &previous, &reviewed),
        ("pay", &reviewed, &unreviewed[0]),
        ("ship", &unreviewed[0], &unreviewed[1]),
        ("tax", &unreviewed[1], &unreviewed[2]),
    ];
    for (n, (service, before, after)) in (0u64..).zip(ranges) {
        let window = (deploy - 70 * MINUTE, deploy);
        send_service_traffic(&server, service, "1.0.0", before, window, 1.0, 10 + 2 * n);
        let window = (deploy + 500_000_000, now);
        send_service_traffic(&server, service, "1.1.0", after, window, 1.4, 11 + 2 * n);
        post_service_deploy(&server, service, "1.0.0", before, deploy - 75 * MINUTE);
        post_service_deploy(&server, service, "1.1.0", after, deploy);
    }
    let findings: BTreeMap<&str, Value> = ranges
        .iter()
        .map(|(service, ..)| {
            (*service, explained_service_regression(&server, service, Duration::from_secs(120)))
        })
        .collect();

    // The revision, and the commits by callsign and by id, each get the regression comment
    // from the bot.
    let bot = phorge.var("BOT_PHID").to_owned();
    let commented = |object: &str, service: &str| {
        within(Duration::from_secs(120), &format!("no comment by the bot on {object}"), || {
            let comments = phorge.comments(object);
            let heading = format!("**spanblame: {service} regressed after deploy 1.1.0");
            let found = comments.iter().find(|(by, text)| *by == bot && text.contains(&heading));
            let (_, deliveries) = server.get_json("/api/v1/notifications");
            found
                .cloned()
                .ok_or_else(|| format!("{comments:?}; spanblame's deliveries: {deliveries}"))
        })
    };
    let (_, text) = commented(&revision, "cart");
    assert!(text.contains("Rollback draft"), "{text}");
    assert!(text.contains(&format!("git revert --no-edit {reviewed}")), "{text}");
    commented(&format!("rSHOP{}", unreviewed[0]), "pay");
    commented(&format!("R{repo_id}:{}", unreviewed[1]), "ship");

    // The bad token's comment is dead at once, with Phorge's words and without the token, on
    // the API and on the finding page.
    // A deploy's review comments are filed under whichever of its findings was announced
    // first: ask by deploy.
    let tax = findings["tax"]["id"].as_u64().unwrap();
    let tax_deploy = findings["tax"]["deploy"]["id"].as_u64().unwrap();
    let dead =
        within(Duration::from_secs(120), "the refused comment was not dead-lettered", || {
            let (_, body) = server.get_json(&format!("/api/v1/notifications?deploy={tax_deploy}"));
            let rows = body["notifications"].as_array().unwrap();
            let dead = rows.iter().find(|n| n["kind"] == "comment" && n["state"] == "dead");
            dead.cloned().ok_or_else(|| format!("{body}"))
        });
    assert_eq!(dead["attempts"], 1, "{dead}");
    let error = dead["last_error"].as_str().unwrap();
    assert!(error.contains("ERR-INVALID-AUTH") && error.contains("is not valid"), "{error}");
    assert!(!error.contains(BAD_TOKEN), "{error}");
    let page =
        reqwest::blocking::get(server.url(&format!("/findings/{tax}"))).unwrap().text().unwrap();
    assert!(page.contains("badge dead") && page.contains("ERR-INVALID-AUTH"), "{page}");
    assert!(!page.contains(BAD_TOKEN));
    assert!(phorge.comments(&format!("R{repo_id}:{}", unreviewed[2])).is_empty());

    // Harbormaster asks the tagging gate about the revision, and gets its answer back: a
    // build plan whose "Make HTTP Request" step calls spanblame with the integration's secret
    // as its credential and waits for the message.
    let step_uri = server.url(
        "/hooks/phabricator/phab/harbormaster?target=${target.phid}&revision=${buildable.revision}&commit=${buildable.commit}&repository=${repository.callsign}&service=cart",
    );
    let plan_name = format!("spanblame tagging {run}");
    let (plan_phid, build) = phorge.run_plan(&admin, &plan_name, &step_uri, true, &revision);
    let (_, sent) = server.get_json("/api/v1/notifications?state=delivered");
    let gate = sent["notifications"].as_array().unwrap().iter().find(|n| n["kind"] == "gate");
    let gate = gate.unwrap_or_else(|| panic!("no gate answer delivered: {sent}"));
    assert_eq!(gate["target"], format!("Harbormaster build of {revision}"), "{gate}");
    assert!(gate["summary"].as_str().unwrap().starts_with("tagging gate passed"), "{gate}");
    assert_eq!(build["fields"]["buildPlanPHID"], plan_phid.as_str(), "{build}");

    // A deploy plan run on the landed commit ends with a step that tells spanblame: one deploy
    // of the service whose `deploy_from` takes production deployments, linked to the build.
    let step_uri = server.url(
        "/hooks/phabricator/phab/deployed?environment=production&build=${build.id}&commit=${buildable.commit}&repository=${repository.callsign}",
    );
    let plan_name = format!("spanblame deploy {run}");
    let landed = format!("rSHOP{reviewed}");
    let (_, build) = phorge.run_plan(&admin, &plan_name, &step_uri, false, &landed);
    let (_, listed) = server.get_json("/api/v1/deploys?service=storefront");
    let deploys = listed["deploys"].as_array().unwrap();
    assert_eq!(deploys.len(), 1, "{listed}");
    assert_eq!(deploys[0]["environment"], "production", "{listed}");
    assert_eq!(deploys[0]["commit_sha"], reviewed.as_str(), "{listed}");
    let event = &deploys[0]["forge_event"];
    assert_eq!(event["description"], format!("Phabricator build {}", build["id"]), "{listed}");
    assert_eq!(event["url"], format!("{url}/harbormaster/build/{}/", build["id"]), "{listed}");

    // The on-call engineer proposes the revert of cart's suspect, the landed revision: a new
    // revision whose diff deletes what the landed commit added and whose summary links the
    // original and the finding. Asking again proposes nothing new.
    let cart = findings["cart"]["id"].as_u64().unwrap();
    let client = reqwest::blocking::Client::new();
    let propose = || {
        let response = client
            .post(server.url(&format!("/api/v1/findings/{cart}/revert")))
            .json(&json!({"by": "oncall@example.com"}))
            .send()
            .unwrap();
        (response.status().as_u16(), response.json::<Value>().unwrap())
    };
    let (status, proposed) = propose();
    assert_eq!(status, 202, "{proposed}");
    assert_eq!(proposed["status"], "queued", "{proposed}");
    assert_eq!(proposed["commits"], json!([reviewed]), "{proposed}");
    let notification = proposed["notification"].as_u64().unwrap();
    let made = within(Duration::from_secs(120), "the revert revision was not made", || {
        let (_, body) = server.get_json(&format!("/api/v1/notifications?finding={cart}"));
        let rows = body["notifications"].as_array().unwrap();
        let row = rows.iter().find(|n| n["id"] == notification).cloned().unwrap_or_default();
        match (row["state"].as_str(), row["result"].as_str()) {
            (Some("delivered"), Some(result)) => Ok(result.to_owned()),
            (Some("dead"), _) => panic!("Phorge refused the revert: {row}"),
            _ => Err(format!("{row}")),
        }
    });
    let monogram = made.split(' ').next().unwrap().to_owned();
    assert!(made.ends_with(&format!("{url}/{monogram}")), "{made}");
    let id: u64 = monogram.trim_start_matches('D').parse().unwrap();
    let found = phorge.conduit(
        &admin,
        "differential.revision.search",
        json!({"constraints": {"ids": [id]}, "attachments": {"reviewers": true}}),
    );
    let fields = &found["data"][0]["fields"];
    assert_eq!(fields["title"], format!("Revert \"Price tax per item ({run})\""), "{found}");
    let summary = fields["summary"].as_str().unwrap();
    assert!(summary.contains(&format!("This reverts commit {reviewed} ({revision})")), "{summary}");
    assert!(summary.contains(&format!("/findings/{cart}")), "{summary}");
    assert!(summary.contains("Proposed by oncall@example.com"), "{summary}");
    assert_eq!(fields["authorPHID"], bot, "the bot opened it");
    let reviewers = found["data"][0]["attachments"]["reviewers"]["reviewers"].to_string();
    assert!(
        reviewers.contains(phorge.var("ADMIN_PHID")),
        "the original author reviews it: {reviewers}"
    );
    let diffs = phorge.conduit(
        &admin,
        "differential.diff.search",
        json!({"constraints": {"phids": [fields["diffPHID"].clone()]}}),
    );
    let diff_id = diffs["data"][0]["id"].clone();
    let raw = phorge.conduit(&admin, "differential.getrawdiff", json!({"diffID": diff_id}));
    let raw = raw.as_str().unwrap_or_default().to_owned();
    assert!(raw.contains(&format!("src/runs/{run}/tax.py")), "{raw}");
    assert!(
        raw.contains("-    return sum(rate(i) for i in cart.items)"),
        "the revert removes the landed lines: {raw}"
    );
    let (status, again) = propose();
    assert_eq!((status, again["status"].as_str()), (202, Some("already proposed")), "{again}");
    assert_eq!(again["notification"], notification);
    // An assistant's `propose_revert` (the MCP SDK's client over `spanblame mcp`, with a
    // `revert` token) is the same proposal: nothing new on Phorge.
    let created = client
        .post(server.url("/api/v1/tokens"))
        .json(&json!({"name": "assistant", "scopes": ["read", "revert"]}))
        .send()
        .unwrap();
    let token = created.json::<Value>().unwrap()["secret"].as_str().unwrap().to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(async {
        use rmcp::ServiceExt;
        let child =
            rmcp::transport::TokioChildProcess::new(crate::mcp::mcp_command(&server, &token))
                .unwrap();
        let assistant = rmcp::model::ClientConfig::default().serve(child).await.unwrap();
        let arguments: serde_json::Map<String, Value> =
            serde_json::from_value(json!({"finding_id": cart})).unwrap();
        let request =
            rmcp::model::CallToolRequestParams::new("propose_revert").with_arguments(arguments);
        let answer = assistant.call_tool(request).await.unwrap();
        assistant.cancel().await.unwrap();
        answer
    });
    let answer = answer.structured_content.clone().unwrap_or_else(|| panic!("{answer:?}"));
    assert_eq!(answer["status"], "already proposed", "{answer}");
    assert_eq!(answer["notification"], notification);

    drop(hooks);
}
