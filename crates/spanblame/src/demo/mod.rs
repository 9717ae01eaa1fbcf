//! `spanblame serve --demo`: a small shop (four services calling each other, a git repository
//! whose changes each went through a review, three hours of traffic, five deploys, one of
//! which makes a code path slower), sent to the running server through the doors production
//! uses: OTLP/HTTP for spans, signed Gitea webhooks for pushes and pull requests, and the
//! deploy API. Nothing is written into the store directly, so detection, attribution and the
//! UI run exactly as they would on real input.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use self::sources::{CART_V1, PROMOTIONS_SLOW, PROMOTIONS_V1, QUOTE_V1, STOCK_V1, STOREFRONT_V1};

mod sources;

const MINUTE_NANOS: u64 = 60_000_000_000;
const SECOND_NANOS: u64 = 1_000_000_000;
/// The history the demo starts with.
const HISTORY_MINUTES: u64 = 180;
const ENVIRONMENT: &str = "production";
const REPOSITORY: &str = "acme/shop";
/// Where the imaginary forge would be: links in the demo point here.
const FORGE_WEB_URL: &str = "https://git.example.com/acme/shop";
const INTEGRATION: &str = "demo-gitea";
/// Spans per OTLP request (well under the 16 MiB body cap).
const SPANS_PER_REQUEST: usize = 4_000;

/// The people who wrote and reviewed the shop's changes.
const ADA: (&str, &str, &str) = ("Ada Lovelace", "ada@example.com", "ada");
const GRACE: (&str, &str, &str) = ("Grace Hopper", "grace@example.com", "grace");
const LINUS: (&str, &str, &str) = ("Linus Pauling", "linus@example.com", "linus");
const MARGARET: (&str, &str, &str) = ("Margaret Hamilton", "margaret@example.com", "margaret");
const KEN: (&str, &str, &str) = ("Ken Iverson", "ken@example.com", "ken");

/// A directory with the demo's repository, webhook secret and configuration file.
pub(crate) struct World {
    pub(crate) config_path: PathBuf,
    pub(crate) data_dir: PathBuf,
    secret: String,
    changes: Vec<Change>,
}

/// One reviewed change: its commit and pull request, and the deploy that shipped it.
struct Change {
    sha: String,
    parent: String,
    author: (&'static str, &'static str, &'static str),
    reviewer: &'static str,
    subject: &'static str,
    files: Vec<&'static str>,
    pull_request: u64,
    time_unix_secs: i64,
}

/// The versions of each service over time, and how fast each piece of code is.
struct Timeline {
    /// (service, version, commit, from unix nanos), oldest first.
    deploys: Vec<(&'static str, &'static str, String, u64)>,
}

impl Timeline {
    fn version_at(&self, service: &str, t: u64) -> (&'static str, &str) {
        self.deploys
            .iter()
            .rfind(|(s, _, _, from)| *s == service && *from <= t)
            .map_or(("1.0.0", ""), |(_, version, commit, _)| (*version, commit.as_str()))
    }
}

/// Builds the demo's world under `dir`, which must be empty or new.
pub(crate) fn prepare(dir: &Path) -> anyhow::Result<World> {
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!(
            "`{}` is not empty; the demo builds its world in an empty or new directory (leave out `--data-dir` for a temporary one)",
            dir.display()
        );
    }
    let repository = dir.join("world/shop");
    std::fs::create_dir_all(&repository)
        .with_context(|| format!("creating `{}`", repository.display()))?;
    let now_secs = jiff::Timestamp::now().as_second();
    let first_commit_secs = now_secs - 60 * 60 * 24 * 3;
    git(&repository, &["init", "-q", "-b", "main"], ADA, first_commit_secs)?;
    let mut minute = first_commit_secs;
    let mut commit = |files: &[(&str, &str)],
                      subject: &str,
                      body: &str,
                      author: (&str, &str, &str)|
     -> anyhow::Result<(String, i64)> {
        minute += 60 * 47;
        for (path, text) in files {
            let file = repository.join(path);
            std::fs::create_dir_all(file.parent().expect("a file in the repository"))?;
            std::fs::write(&file, text)?;
            git(&repository, &["add", "--", path], author, minute)?;
        }
        let message =
            if body.is_empty() { subject.to_owned() } else { format!("{subject}\n\n{body}") };
        git(&repository, &["commit", "-q", "-m", &message], author, minute)?;
        Ok((git(&repository, &["rev-parse", "HEAD"], author, minute)?, minute))
    };
    let (base, _) = commit(
        &[
            ("README.md", "# shop\n\nFour services: storefront, checkout, pricing, inventory.\n"),
            ("storefront/app.py", STOREFRONT_V1),
            ("checkout/cart.py", CART_V1),
            ("checkout/promotions.py", PROMOTIONS_V1),
            ("pricing/quote.py", QUOTE_V1),
            ("inventory/stock.py", STOCK_V1),
        ],
        "Start the shop",
        "",
        ADA,
    )?;
    let mut changes = Vec::new();
    let mut parent = base.clone();
    let mut pull_request = 0;
    let mut change = |files: Vec<(&'static str, String)>,
                      subject: &'static str,
                      author: (&'static str, &'static str, &'static str),
                      reviewer: &'static str|
     -> anyhow::Result<String> {
        pull_request += 1;
        let borrowed: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
        let body = format!("Reviewed-on: {FORGE_WEB_URL}/pulls/{pull_request}");
        let (sha, time) = commit(&borrowed, subject, &body, author)?;
        changes.push(Change {
            sha: sha.clone(),
            parent: std::mem::replace(&mut parent, sha.clone()),
            author,
            reviewer,
            subject,
            files: files.iter().map(|(p, _)| *p).collect(),
            pull_request,
            time_unix_secs: time,
        });
        Ok(sha)
    };
    change(
        vec![(
            "pricing/quote.py",
            QUOTE_V1.replace(
                "def quote(cart):\n",
                "@cache(minutes=5)\ndef price_list(skus):\n    return db.select_prices(skus)\n\n\ndef quote(cart):\n",
            ),
        )],
        "Cache price lists for five minutes",
        GRACE,
        "ada",
    )?;
    change(
        vec![(
            "inventory/stock.py",
            STOCK_V1.replace(
                "    for item in items:\n        db.update_stock(item.sku, -item.quantity)\n",
                "    db.update_stock_many([(item.sku, -item.quantity) for item in items])\n",
            ),
        )],
        "Reserve stock for a cart in one statement",
        LINUS,
        "grace",
    )?;
    change(
        vec![(
            "checkout/cart.py",
            CART_V1.replace(
                "    return {\"total\": quote.total, \"currency\": quote.currency}\n",
                "    return {\"total\": quote.total, \"tax\": quote.tax, \"currency\": quote.currency}\n",
            ),
        )],
        "Show the tax in the order total",
        KEN,
        "margaret",
    )?;
    change(
        vec![(
            "README.md",
            "# shop\n\nFour services: storefront, checkout, pricing, inventory.\n\nRun one with `make serve SERVICE=checkout`.\n".into(),
        )],
        "Say how to run one service",
        ADA,
        "ken",
    )?;
    change(
        vec![("checkout/promotions.py", PROMOTIONS_SLOW.into())],
        "Apply first-order promotions only to first orders",
        MARGARET,
        "linus",
    )?;
    change(
        vec![(
            "checkout/cart.py",
            CART_V1.replace(
                "    return {\"total\": quote.total, \"currency\": quote.currency}\n",
                "    return {\"total\": quote.total, \"tax\": quote.tax, \"currency\": quote.currency, \"items\": len(cart.items)}\n",
            )
            .replace("request.promotion_codes", "request.promotion_codes or []"),
        )],
        "Count the items in the checkout response for the mobile app",
        KEN,
        "ada",
    )?;

    let secret = auth::random_string(24).context("reading the system's random source")?;
    let secret_path = dir.join("world/webhook.secret");
    std::fs::write(&secret_path, &secret)?;
    let data_dir = dir.join("data");
    let config_path = dir.join("spanblame.toml");
    let config = format!(
        r#"# Written by `spanblame serve --demo`: the configuration the demo runs with.

[storage]
data_dir = "{data_dir}"

[detection]
interval = "2s"

[span_metrics]
enabled = true               # /metrics/spans and the /services/graph page

[[integrations]]
name = "{INTEGRATION}"       # webhooks: POST /hooks/gitea/{INTEGRATION}
kind = "gitea"
secret_file = "{secret_path}"

[[repositories]]
name = "{REPOSITORY}"
url = "{repository}"
web_url = "{FORGE_WEB_URL}"   # imaginary: the demo's forge does not exist
forge = "gitea"

[[services]]
name = "storefront"
repository = "{REPOSITORY}"
team = "web"

[[services]]
name = "checkout"
repository = "{REPOSITORY}"
team = "payments"

[[services]]
name = "pricing"
repository = "{REPOSITORY}"
team = "payments"

[[services]]
name = "inventory"
repository = "{REPOSITORY}"
team = "fulfilment"
"#,
        data_dir = data_dir.display(),
        secret_path = secret_path.display(),
        repository = repository.display(),
    );
    std::fs::write(&config_path, config)
        .with_context(|| format!("writing `{}`", config_path.display()))?;
    Ok(World { config_path, data_dir, secret, changes })
}

/// Runs git in the demo repository as `author` at `time_unix_secs`, without the user's
/// configuration; returns trimmed stdout.
fn git(
    dir: &Path,
    args: &[&str],
    (name, email, _): (&str, &str, &str),
    time_unix_secs: i64,
) -> anyhow::Result<String> {
    let date = format!("@{time_unix_secs} +0000");
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", name)
        .env("GIT_AUTHOR_EMAIL", email)
        .env("GIT_COMMITTER_NAME", name)
        .env("GIT_COMMITTER_EMAIL", email)
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .context("running git (the demo builds a real repository; install git)")?;
    if !output.status.success() {
        bail!("git {args:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Feeds the world to the server at `base_url`: webhooks, three hours of traffic and the
/// deploys, then a trickle of live traffic until `stop` is set.
pub(crate) fn drive(base_url: &str, world: &World, stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the demo's HTTP client")?;
    let post = |path: &str, headers: &[(&str, &str)], body: Vec<u8>| -> anyhow::Result<()> {
        let mut request = client
            .post(format!("{base_url}{path}"))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().with_context(|| format!("POST {path}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!("POST {path} answered {status}: {}", response.text().unwrap_or_default());
        }
        Ok(())
    };

    // The forge: a push and a merged pull request per change.
    for change in &world.changes {
        for (event, body) in
            [("push", push_event(change)), ("pull_request", pull_request_event(change))]
        {
            let body = body.to_string().into_bytes();
            let signature = forge::hmac_sha256_hex(world.secret.as_bytes(), &body);
            let delivery = format!("demo-{event}-{}", change.pull_request);
            post(
                &format!("/hooks/gitea/{INTEGRATION}"),
                &[
                    ("x-gitea-event", event),
                    ("x-gitea-delivery", &delivery),
                    ("x-gitea-signature", &signature),
                ],
                body,
            )?;
        }
    }

    let now = jiff::Timestamp::now().as_nanosecond() as u64;
    let sha = |subject: &str| {
        world
            .changes
            .iter()
            .find(|c| c.subject == subject)
            .map(|c| c.sha.clone())
            .unwrap_or_default()
    };
    let base = world.changes.first().map(|c| c.parent.clone()).unwrap_or_default();
    let start = now - HISTORY_MINUTES * MINUTE_NANOS;
    let mut deploys = vec![
        ("storefront", "1.0.0", base.clone(), start),
        ("checkout", "1.0.0", base.clone(), start),
        ("pricing", "1.0.0", base.clone(), start),
        ("inventory", "1.0.0", base.clone(), start),
    ];
    deploys.push((
        "pricing",
        "1.1.0",
        sha("Cache price lists for five minutes"),
        now - 150 * MINUTE_NANOS,
    ));
    deploys.push((
        "inventory",
        "1.1.0",
        sha("Reserve stock for a cart in one statement"),
        now - 120 * MINUTE_NANOS,
    ));
    deploys.push((
        "checkout",
        "1.1.0",
        sha("Show the tax in the order total"),
        now - 90 * MINUTE_NANOS,
    ));
    deploys.push((
        "checkout",
        "1.2.0",
        sha("Count the items in the checkout response for the mobile app"),
        now - 25 * MINUTE_NANOS,
    ));
    let timeline = Timeline { deploys };

    // Three hours of history, then the deploys as CI reports them (after the fact).
    let mut traffic = Traffic::new(now);
    let mut t = start;
    while t < now {
        traffic.second(&timeline, t);
        if traffic.spans >= SPANS_PER_REQUEST {
            post("/v1/traces", &[], traffic.take_body())?;
        }
        t += SECOND_NANOS;
    }
    post("/v1/traces", &[], traffic.take_body())?;
    for (service, version, commit, started) in &timeline.deploys {
        let body = json!({
            "service": service,
            "environment": ENVIRONMENT,
            "version": version,
            "commit": commit,
            "repository": REPOSITORY,
            "started_at": jiff::Timestamp::from_nanosecond(i128::from(*started))?.to_string(),
            "deployer": "ci",
        });
        post("/api/v1/deploys", &[], body.to_string().into_bytes())?;
    }
    tracing::info!(
        "demo: sent {HISTORY_MINUTES} minutes of traffic, {} reviewed changes and {} deploys; live traffic continues",
        world.changes.len(),
        timeline.deploys.len()
    );

    // Live traffic, a little every second.
    let mut last = now;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
        let now = jiff::Timestamp::now().as_nanosecond() as u64;
        while last + SECOND_NANOS <= now {
            last += SECOND_NANOS;
            traffic.second(&timeline, last);
        }
        if let Err(e) = post("/v1/traces", &[], traffic.take_body()) {
            tracing::warn!("demo: live traffic: {e:#}");
        }
    }
    Ok(())
}

fn person(who: (&str, &str, &str)) -> Value {
    json!({"name": who.0, "email": who.1, "username": who.2, "full_name": who.0, "login": who.2})
}

fn repository_json() -> Value {
    json!({"full_name": REPOSITORY, "html_url": FORGE_WEB_URL, "clone_url": format!("{FORGE_WEB_URL}.git")})
}

fn push_event(change: &Change) -> Value {
    let time = jiff::Timestamp::from_second(change.time_unix_secs)
        .map(|t| t.to_string())
        .unwrap_or_default();
    json!({
        "ref": "refs/heads/main",
        "before": change.parent,
        "after": change.sha,
        "total_commits": 1,
        "commits": [{
            "id": change.sha,
            "message": format!("{}\n\nReviewed-on: {FORGE_WEB_URL}/pulls/{}\n", change.subject, change.pull_request),
            "url": format!("{FORGE_WEB_URL}/commit/{}", change.sha),
            "timestamp": time,
            "author": person(change.author),
            "committer": person(change.author),
            "added": [],
            "removed": [],
            "modified": change.files,
        }],
        "repository": repository_json(),
        "pusher": person(change.author),
    })
}

fn pull_request_event(change: &Change) -> Value {
    json!({
        "action": "closed",
        "number": change.pull_request,
        "pull_request": {
            "number": change.pull_request,
            "title": change.subject,
            "html_url": format!("{FORGE_WEB_URL}/pulls/{}", change.pull_request),
            "user": person(change.author),
            "state": "closed",
            "merged": true,
            "merge_commit_sha": change.sha,
            "head": {"ref": format!("pr-{}", change.pull_request), "sha": change.sha},
            "requested_reviewers": [{"login": change.reviewer, "username": change.reviewer}],
        },
        "repository": repository_json(),
    })
}

/// A resource: service, version, commit.
type ResourceKey = (&'static str, String, String);

/// Generates traces: a checkout and a product page every second.
struct Traffic {
    /// Deterministic pseudo-random state.
    state: u64,
    next_id: u64,
    /// Spans per (service, version, commit), waiting to be sent.
    pending: Vec<(ResourceKey, Vec<Value>)>,
    spans: usize,
}

/// One span to add: who, what, when, how long, and its attributes.
struct SpanSpec {
    service: &'static str,
    name: String,
    /// OTLP's span kind: 1 internal, 2 server, 3 client.
    kind: u8,
    start: u64,
    nanos: u64,
    attributes: Vec<Value>,
    /// The exception type when the span failed.
    error: Option<&'static str>,
}

impl SpanSpec {
    fn new(service: &'static str, name: String, kind: u8, start: u64, nanos: u64) -> SpanSpec {
        SpanSpec { service, name, kind, start, nanos, attributes: Vec::new(), error: None }
    }

    /// An HTTP server span for `method` on `route`.
    fn server(
        service: &'static str,
        method: &str,
        route: &str,
        start: u64,
        nanos: u64,
    ) -> SpanSpec {
        SpanSpec::new(service, format!("{method} {route}"), 2, start, nanos)
            .with(attr("http.route", route))
            .with(attr("http.request.method", method))
    }

    /// An HTTP client span calling `peer`.
    fn call(service: &'static str, method: &str, peer: &str, start: u64, nanos: u64) -> SpanSpec {
        SpanSpec::new(service, method.to_owned(), 3, start, nanos)
            .with(attr("server.address", peer))
            .with(attr("http.request.method", method))
    }

    /// A PostgreSQL query span: `operation` on `table`.
    fn query(
        service: &'static str,
        operation: &str,
        table: &str,
        start: u64,
        nanos: u64,
    ) -> SpanSpec {
        SpanSpec::new(service, format!("{operation} {table}"), 3, start, nanos)
            .with(attr("db.system.name", "postgresql"))
            .with(attr("db.collection.name", table))
    }

    fn internal(service: &'static str, name: &str, start: u64, nanos: u64) -> SpanSpec {
        SpanSpec::new(service, name.to_owned(), 1, start, nanos)
    }

    fn with(mut self, attribute: Value) -> SpanSpec {
        self.attributes.push(attribute);
        self
    }

    fn failing(mut self, error: Option<&'static str>) -> SpanSpec {
        self.error = error;
        self
    }
}

impl Traffic {
    fn new(seed: u64) -> Traffic {
        Traffic { state: seed | 1, next_id: seed.rotate_left(17), pending: Vec::new(), spans: 0 }
    }

    /// A factor in [0.8, 1.25], right-skewed, with an occasional slow outlier.
    fn jitter(&mut self) -> f64 {
        let u = self.uniform();
        let tail = if self.uniform() < 0.02 { 2.5 } else { 1.0 };
        0.8 * (1.25f64 / 0.8).powf(u * u) * tail
    }

    fn uniform(&mut self) -> f64 {
        self.state = self
            .state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.state >> 11) as f64 / (1u64 << 53) as f64
    }

    fn id(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.next_id | 1
    }

    /// One second of traffic at `t`.
    fn second(&mut self, timeline: &Timeline, t: u64) {
        self.checkout(timeline, t);
        self.product(timeline, t + 400_000_000);
    }

    fn add(
        &mut self,
        timeline: &Timeline,
        trace: &str,
        parent: Option<u64>,
        spec: SpanSpec,
    ) -> u64 {
        let id = self.id();
        let (version, commit) = timeline.version_at(spec.service, spec.start);
        let mut span = json!({
            "traceId": trace,
            "spanId": format!("{id:016x}"),
            "name": spec.name,
            "kind": spec.kind,
            "startTimeUnixNano": spec.start.to_string(),
            "endTimeUnixNano": (spec.start + spec.nanos).to_string(),
            "attributes": spec.attributes,
        });
        if let Some(parent) = parent {
            span["parentSpanId"] = format!("{parent:016x}").into();
        }
        if let Some(error) = spec.error {
            span["status"] = json!({"code": 2, "message": error});
            span["events"] = json!([{
                "name": "exception",
                "timeUnixNano": (spec.start + spec.nanos).to_string(),
                "attributes": [attr("exception.type", error), attr("exception.message", "not enough stock")],
            }]);
        }
        let key = (spec.service, version.to_owned(), commit.to_owned());
        match self.pending.iter_mut().find(|(k, _)| *k == key) {
            Some((_, spans)) => spans.push(span),
            None => self.pending.push((key, vec![span])),
        }
        self.spans += 1;
        id
    }

    fn trace_id(&mut self) -> String {
        format!("{:016x}{:016x}", self.id(), self.id())
    }

    /// storefront POST /checkout → checkout POST /cart/checkout → promotions, pricing, inventory.
    fn checkout(&mut self, timeline: &Timeline, t: u64) {
        let trace = self.trace_id();
        let ms = |x: f64| (x * 1e6) as u64;
        let (checkout_version, _) = timeline.version_at("checkout", t);
        let slow_promotions = checkout_version == "1.2.0";
        let items = 2 + (self.uniform() * 4.0) as u64;
        // Promotions: one query; after the slow change, one order-history query per item.
        let promo_start = t + ms(4.0);
        let promo_own = ms(3.0 * self.jitter());
        let history: Vec<u64> = if slow_promotions {
            (0..items).map(|_| ms(5.0 * self.jitter())).collect()
        } else {
            Vec::new()
        };
        let promo = promo_own + history.iter().sum::<u64>();
        let (pricing_version, _) = timeline.version_at("pricing", t);
        let prices = ms(if pricing_version == "1.0.0" { 9.0 } else { 2.5 } * self.jitter());
        let quote = prices + ms(1.5 * self.jitter());
        let (inventory_version, _) = timeline.version_at("inventory", t);
        let per_item = if inventory_version == "1.0.0" { 3.0 } else { 1.0 };
        let update = ms((4.0 + per_item * items as f64) * self.jitter());
        let reserve = update + ms(1.0 * self.jitter());
        let out_of_stock = self.uniform() < 0.01;
        let cart = ms(2.0) + promo + quote + reserve + ms(3.0 * self.jitter());
        let front = cart + ms(6.0 * self.jitter());

        let failed = out_of_stock.then_some("OutOfStock");
        let status = if out_of_stock { 409 } else { 200 };
        let spec = SpanSpec::server("storefront", "POST", "/checkout", t, front)
            .with(int_attr("http.response.status_code", status));
        let root = self.add(timeline, &trace, None, spec);
        let spec = SpanSpec::call("storefront", "POST", "checkout", t + ms(2.0), cart + ms(1.0));
        let call = self.add(timeline, &trace, Some(root), spec);
        let spec = SpanSpec::server("checkout", "POST", "/cart/checkout", t + ms(2.5), cart)
            .with(int_attr("cart.items", items as i64))
            .failing(failed);
        let server = self.add(timeline, &trace, Some(call), spec);
        let spec = SpanSpec::internal("checkout", "apply_promotions", promo_start, promo)
            .with(attr("code.function.name", "checkout.promotions.apply_promotions"))
            .with(attr("code.file.path", "checkout/promotions.py"))
            .with(int_attr("code.line.number", 5));
        let promotions = self.add(timeline, &trace, Some(server), spec);
        let mut at = promo_start + promo_own;
        for nanos in history {
            let spec = SpanSpec::query("checkout", "SELECT", "order_history", at, nanos);
            self.add(timeline, &trace, Some(promotions), spec);
            at += nanos;
        }
        let quote_start = promo_start + promo + ms(0.5);
        let spec = SpanSpec::call("checkout", "POST", "pricing", quote_start, quote + ms(0.4));
        let pricing_call = self.add(timeline, &trace, Some(server), spec);
        let spec = SpanSpec::server("pricing", "POST", "/quote", quote_start + ms(0.2), quote);
        let pricing = self.add(timeline, &trace, Some(pricing_call), spec);
        let spec = SpanSpec::query("pricing", "SELECT", "prices", quote_start + ms(0.8), prices);
        self.add(timeline, &trace, Some(pricing), spec);
        let reserve_start = quote_start + quote + ms(0.8);
        let spec =
            SpanSpec::call("checkout", "POST", "inventory", reserve_start, reserve + ms(0.4))
                .failing(failed);
        let inventory_call = self.add(timeline, &trace, Some(server), spec);
        let spec =
            SpanSpec::server("inventory", "POST", "/reserve", reserve_start + ms(0.2), reserve)
                .failing(failed);
        let inventory = self.add(timeline, &trace, Some(inventory_call), spec);
        let spec = SpanSpec::query("inventory", "UPDATE", "stock", reserve_start + ms(0.6), update);
        self.add(timeline, &trace, Some(inventory), spec);
    }

    /// storefront GET /product/{id} → inventory GET /stock/{sku}.
    fn product(&mut self, timeline: &Timeline, t: u64) {
        let trace = self.trace_id();
        let ms = |x: f64| (x * 1e6) as u64;
        let select = ms(3.0 * self.jitter());
        let stock = select + ms(1.0 * self.jitter());
        let page = stock + ms(8.0 * self.jitter());
        let spec = SpanSpec::server("storefront", "GET", "/product/{id}", t, page)
            .with(int_attr("http.response.status_code", 200));
        let root = self.add(timeline, &trace, None, spec);
        let spec = SpanSpec::call("storefront", "GET", "inventory", t + ms(3.0), stock + ms(0.5));
        let call = self.add(timeline, &trace, Some(root), spec);
        let spec = SpanSpec::server("inventory", "GET", "/stock/{sku}", t + ms(3.2), stock);
        let server = self.add(timeline, &trace, Some(call), spec);
        let spec = SpanSpec::query("inventory", "SELECT", "stock", t + ms(3.6), select);
        self.add(timeline, &trace, Some(server), spec);
    }

    /// The pending spans as one OTLP/JSON request body.
    fn take_body(&mut self) -> Vec<u8> {
        let resource_spans: Vec<Value> = self
            .pending
            .drain(..)
            .map(|((service, version, commit), spans)| {
                let mut attributes = vec![
                    attr("service.name", service),
                    attr("service.version", &version),
                    attr("deployment.environment.name", ENVIRONMENT),
                    attr("vcs.repository.url.full", &format!("{FORGE_WEB_URL}.git")),
                ];
                if !commit.is_empty() {
                    attributes.push(attr("vcs.ref.head.revision", &commit));
                }
                json!({
                    "resource": {"attributes": attributes},
                    "scopeSpans": [{"scope": {"name": "shop", "version": version}, "spans": spans}],
                })
            })
            .collect();
        self.spans = 0;
        json!({"resourceSpans": resource_spans}).to_string().into_bytes()
    }
}

fn attr(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

fn int_attr(key: &str, value: i64) -> Value {
    json!({"key": key, "value": {"intValue": value.to_string()}})
}
