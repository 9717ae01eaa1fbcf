//! The simulated world of one deploy: a service with several operations (diurnal load,
//! heavy-tailed latencies, errors, child calls), the commits of the deploy's range with their
//! hunks, and the ground truth injected into one commit, or nothing.

use analysis::WindowStats;
use analysis::detect::{Guard, OperationWindows, VersionSplit};
use analysis::evidence::Sample;
use analysis::suspects::{Candidate, ChangedFile, ChangedHunk};
use model::{
    KeyValue, Resource, Scope, Span, SpanId, SpanKind, Status, StatusCode, TraceId, Value,
};
use std::sync::Arc;

/// A small, fast, deterministic generator (PCG-XSH-RR 64/32, two draws per f64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xda3e_39cb_94b9_5bdb);
        rng.next_u32();
        rng
    }

    fn next_u32(&mut self) -> u32 {
        let old = self.0;
        self.0 =
            old.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        xorshifted.rotate_right((old >> 59) as u32)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        let bits = (u64::from(self.next_u32()) << 21) ^ u64::from(self.next_u32());
        (bits & ((1 << 53) - 1)) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n.saturating_sub(1))
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Poisson by normal approximation (counts here are in the hundreds).
    pub fn poisson(&mut self, mean: f64) -> u64 {
        (mean + mean.sqrt() * self.normal()).round().max(0.0) as u64
    }
}

/// What was injected into a deploy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Injection {
    /// Nothing: an A/A deploy.
    None,
    /// The operation's latency is multiplied.
    Latency { multiplier: f64 },
    /// The operation's error rate rises by this much, with a new error type.
    Errors { added_rate: f64 },
    /// The operation calls its database once per item (N+1), adding this much latency.
    NPlusOne { calls: u32, multiplier: f64 },
}

impl Injection {
    pub fn name(&self) -> &'static str {
        match self {
            Injection::None => "none (A/A)",
            Injection::Latency { .. } => "latency",
            Injection::Errors { .. } => "error rate",
            Injection::NPlusOne { .. } => "N+1 queries",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub route: String,
    pub function: String,
    pub file: String,
    pub table: String,
    pub median_ms: f64,
    pub sigma: f64,
    /// Requests per second at the daily mean.
    pub rate: f64,
    pub error_rate: f64,
}

/// One operation's minutes around a deploy.
pub struct OperationTimeline {
    route: String,
    before: WindowStats,
    after: Vec<VersionSplit>,
    day_earlier: Vec<WindowStats>,
}

/// Every operation's minutes around a deploy.
pub struct Timeline {
    operations: Vec<OperationTimeline>,
}

impl Timeline {
    /// What detection sees `look` minutes after the deploy.
    pub fn windows(&self, look: u32) -> Vec<OperationWindows> {
        let look = look as usize;
        self.operations
            .iter()
            .map(|op| {
                let mut day = WindowStats::default();
                op.day_earlier[..look].iter().for_each(|m| day.merge(m));
                OperationWindows {
                    operation: op.route.clone(),
                    span_kind: "server".into(),
                    after: op.after[..look].to_vec(),
                    before: op.before.clone(),
                    guards: vec![Guard { label: "a day earlier".into(), stats: day }],
                }
            })
            .collect()
    }
}

/// One deploy to evaluate.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub operations: Vec<Operation>,
    /// The injected operation (when there is an injection).
    pub target: usize,
    pub injection: Injection,
    /// Oldest first; `culprit` indexes it when there is an injection.
    pub commits: Vec<Candidate>,
    pub culprit: Option<usize>,
    /// Minutes after the deploy during which the new version serves only `canary_share` of
    /// the traffic.
    pub canary_minutes: u32,
    pub canary_share: f64,
    /// Minute of the day the deploy starts (diurnal phase).
    pub start_minute_of_day: u32,
    /// Commits that only touch comments in the culprit's function and file (decoys).
    pub decoys: usize,
    /// Head sampling: one span in this many is kept and stands for this many (1: none).
    pub sample_one_in: u64,
    /// Mixed rates, as tail samplers do: errors and spans over twice the median kept at
    /// 100%, the rest at 10%.
    pub mixed_sampling: bool,
    /// Whether spans carry `code.line.number` (many instrumentations set only the function).
    pub line_numbers: bool,
}

impl Scenario {
    /// A random world and deploy of `injection`'s kind.
    pub fn generate(seed: u64, injection: Injection) -> Scenario {
        let mut rng = Rng::new(seed);
        let names =
            ["cart", "checkout", "search", "orders", "users", "pricing", "inventory", "payments"];
        let count = 3 + rng.below(6);
        let operations: Vec<Operation> = (0..count)
            .map(|i| {
                let name = names[i];
                Operation {
                    route: format!("/{name}/{{id}}"),
                    function: format!("shop.{name}.handle_{name}"),
                    file: format!("src/shop/{name}.py"),
                    table: format!("{name}_rows"),
                    median_ms: 10.0 * (20.0f64).powf(rng.uniform()),
                    sigma: 0.3 + 0.4 * rng.uniform(),
                    rate: 10.0 + 40.0 * rng.uniform(),
                    error_rate: 0.002 + 0.01 * rng.uniform(),
                }
            })
            .collect();
        let target = rng.below(count);
        let num_commits = 1 + rng.below(20);
        let culprit = (injection != Injection::None).then(|| rng.below(num_commits));
        let commits = (0..num_commits)
            .map(|i| {
                let sha = format!("{:016x}{:024x}", seed, i);
                if Some(i) == culprit {
                    culprit_commit(sha, &operations[target], injection, &mut rng)
                } else {
                    distractor_commit(sha, &operations, target, &mut rng)
                }
            })
            .collect();
        Scenario {
            seed,
            operations,
            target,
            injection,
            commits,
            culprit,
            canary_minutes: if rng.chance(0.3) { 10 } else { 0 },
            canary_share: 0.2,
            start_minute_of_day: rng.below(24 * 60) as u32,
            decoys: 0,
            sample_one_in: 1,
            mixed_sampling: false,
            line_numbers: true,
        }
    }

    /// The same deploy as a canary serving `share` of the traffic for its whole first half
    /// hour.
    pub fn canary(mut self, share: f64) -> Scenario {
        self.canary_minutes = 30;
        self.canary_share = share;
        self
    }

    /// The same deploy through a tail sampler keeping errors and slow spans at 100% and the
    /// rest at 10%.
    pub fn mixed_sampling(mut self) -> Scenario {
        self.mixed_sampling = true;
        self
    }

    /// The same deploy with spans that name their function and file but no line.
    pub fn without_line_numbers(mut self) -> Scenario {
        self.line_numbers = false;
        self
    }

    /// The same deploy seen through a head sampler keeping one trace in `n` (each kept span
    /// standing for `n`, as an `ot=th` threshold says).
    pub fn sampled(mut self, n: u64) -> Scenario {
        self.sample_one_in = n.max(1);
        self
    }

    /// The same deploy with the target made fast (2–5 ms, the case where an absolute floor
    /// hides a real slowdown).
    pub fn fast(mut self) -> Scenario {
        let mut rng = Rng::new(self.seed ^ 0xfa57);
        self.operations[self.target].median_ms = 2.0 + 3.0 * rng.uniform();
        self
    }

    /// The same deploy with four more commits on the culprit's function and file: three that
    /// change only comments (a `# noqa` on its `def` line, a docstring, a TODO after the last
    /// function) and one that changes only its signature. Their hunks are classified by the
    /// real `syntax` crate from Python texts.
    pub fn with_comment_decoys(mut self) -> Scenario {
        let Some(mut culprit) = self.culprit else { return self };
        let mut rng = Rng::new(self.seed ^ 0xdec0);
        let op = self.operations[self.target].clone();
        let (decoys, culprit_hunk) = comment_decoys(&op);
        // The culprit's change is one line in the handler's body, smaller than any decoy.
        self.commits[culprit].files = vec![file(&op.file, vec![culprit_hunk])];
        for (i, decoy) in decoys.into_iter().enumerate() {
            let at = rng.below(self.commits.len() + 1);
            let sha = format!("{:016x}{:024x}", self.seed, 1000 + i);
            let commit = Candidate {
                sha,
                subject: decoy.0.into(),
                files: vec![file(&op.file, vec![decoy.1])],
                ignored_for_blame: false,
            };
            self.commits.insert(at, commit);
            if at <= culprit {
                culprit += 1;
            }
        }
        self.culprit = Some(culprit);
        self.decoys = 4;
        self
    }

    /// The daily load factor at `minute` after the deploy (`minute` may be negative).
    fn load(&self, minute: i64) -> f64 {
        let of_day = (i64::from(self.start_minute_of_day) + minute).rem_euclid(24 * 60) as f64;
        1.0 + 0.5 * (std::f64::consts::TAU * of_day / 1440.0).sin()
    }

    /// Latency grows a little with load (queueing), as real services do.
    fn latency_factor(&self, minute: i64) -> f64 {
        1.0 + 0.08 * (self.load(minute) - 1.0)
    }

    /// One minute of one operation for the new (`injected`) or old version.
    fn minute(
        &self,
        op: usize,
        minute: i64,
        share: f64,
        injected: bool,
        rng: &mut Rng,
    ) -> WindowStats {
        let operation = &self.operations[op];
        let mut stats = WindowStats::default();
        let n = rng.poisson(operation.rate * 60.0 * self.load(minute) * share);
        let (multiplier, added_errors) = match (injected && op == self.target, self.injection) {
            (true, Injection::Latency { multiplier }) => (multiplier, 0.0),
            (true, Injection::NPlusOne { multiplier, .. }) => (multiplier, 0.0),
            (true, Injection::Errors { added_rate }) => (1.0, added_rate),
            _ => (1.0, 0.0),
        };
        let median = operation.median_ms * 1e6 * self.latency_factor(minute) * multiplier;
        for _ in 0..n {
            let mut nanos = median * (operation.sigma * rng.normal()).exp();
            if rng.chance(0.01) {
                nanos *= 3.0 + 5.0 * rng.uniform(); // a heavy tail: GC pauses, retries
            }
            let base_error = rng.chance(operation.error_rate);
            let new_error = !base_error && rng.chance(added_errors);
            let kind = if new_error { "TaxLookupError" } else { "TimeoutError" };
            let failed = base_error || new_error;
            if self.mixed_sampling {
                if failed || nanos > 2.0 * median {
                    stats.add_sampled(nanos as u64, Some(kind), failed, 1);
                } else if rng.chance(0.1) {
                    stats.add_sampled(nanos as u64, Some(kind), failed, 10);
                }
            } else if self.sample_one_in == 1 {
                stats.add(nanos as u64, Some(kind), base_error || new_error);
            } else if rng.chance(1.0 / self.sample_one_in as f64) {
                stats.add_sampled(
                    nanos as u64,
                    Some(kind),
                    base_error || new_error,
                    self.sample_one_in,
                );
            }
        }
        stats
    }

    /// Every minute of every operation from an hour before the deploy to the last look,
    /// and the same clock minutes a day earlier.
    pub fn timeline(&self, rng_seed: u64) -> Timeline {
        let mut rng = Rng::new(rng_seed);
        let last = i64::from(analysis::detect::LAST_LOOK_MINUTES);
        let operations = (0..self.operations.len())
            .map(|op| {
                let mut before = WindowStats::default();
                for minute in -60..0 {
                    before.merge(&self.minute(op, minute, 1.0, false, &mut rng));
                }
                let after = (0..last)
                    .map(|minute| {
                        let canary = minute < i64::from(self.canary_minutes);
                        let new_share = if canary { self.canary_share } else { 1.0 };
                        VersionSplit {
                            deployed: self.minute(op, minute, new_share, true, &mut rng),
                            others: if canary {
                                self.minute(op, minute, 1.0 - new_share, false, &mut rng)
                            } else {
                                WindowStats::default()
                            },
                        }
                    })
                    .collect();
                let day_earlier = (0..last)
                    .map(|minute| self.minute(op, minute - 1440, 1.0, false, &mut rng))
                    .collect();
                OperationTimeline {
                    route: self.operations[op].route.clone(),
                    before,
                    after,
                    day_earlier,
                }
            })
            .collect();
        Timeline { operations }
    }

    /// Sampled traces of one operation before or after the deploy, as the server reads them.
    pub fn sample(&self, op: usize, injected: bool, seed: u64) -> Sample {
        let mut rng = Rng::new(seed);
        let operation = &self.operations[op];
        let resource = Arc::new(Resource {
            attributes: vec![KeyValue::new("service.name", Value::String("shop".into()))],
            ..Resource::default()
        });
        let scope = Arc::new(Scope::default());
        let is_target = injected && op == self.target;
        let (multiplier, calls, fails) = match (is_target, self.injection) {
            (true, Injection::Latency { multiplier }) => (multiplier, 1, 0.0),
            (true, Injection::NPlusOne { calls, multiplier }) => (multiplier, calls, 0.0),
            (true, Injection::Errors { added_rate }) => (1.0, 1, added_rate),
            _ => (1.0, 1, 0.0),
        };
        let mut traces = Vec::new();
        let mut spans = Vec::new();
        for t in 0..200u64 {
            let trace_id = TraceId::from_bytes([(t as u8).wrapping_add(1); 16]).expect("non-zero");
            let id = |k: u64| SpanId::from_bytes((t * 64 + k + 1).to_be_bytes()).expect("non-zero");
            let start = 1_000_000_000_000 + t * 1_000_000_000;
            let work = (operation.median_ms * 1e6 * (operation.sigma * rng.normal()).exp()) as u64;
            let db_each = (0.1 * operation.median_ms * 1e6 / f64::from(calls)) as u64;
            let code = (work as f64 * 0.8 * multiplier) as u64;
            let total = code + db_each * u64::from(calls) + work / 5;
            let span = |span_id,
                        parent: Option<SpanId>,
                        name: &str,
                        kind,
                        start,
                        nanos: u64,
                        attributes| Span {
                trace_id,
                span_id,
                parent_span_id: parent,
                trace_state: String::new(),
                flags: 0,
                name: name.to_owned(),
                kind,
                start_time_unix_nanos: start,
                end_time_unix_nanos: start + nanos,
                attributes,
                dropped_attributes_count: 0,
                events: Vec::new(),
                dropped_events_count: 0,
                links: Vec::new(),
                dropped_links_count: 0,
                status: Status { code: StatusCode::Unset, message: String::new() },
                resource: Arc::clone(&resource),
                scope: Arc::clone(&scope),
            };
            let root = span(
                id(0),
                None,
                &operation.route,
                SpanKind::Server,
                start,
                total,
                vec![KeyValue::new("http.route", Value::String(operation.route.clone()))],
            );
            let mut trace = vec![root.clone()];
            let function = operation.function.rsplit('.').next().unwrap_or(&operation.function);
            let mut handler = span(
                id(1),
                Some(id(0)),
                function,
                SpanKind::Internal,
                start + 1,
                code,
                [
                    KeyValue::new("code.function.name", Value::String(operation.function.clone())),
                    KeyValue::new("code.file.path", Value::String(operation.file.clone())),
                    KeyValue::new("code.line.number", Value::Int(12)),
                ]
                .into_iter()
                .filter(|kv| self.line_numbers || kv.key != "code.line.number")
                .collect(),
            );
            if rng.chance(fails) {
                handler.status =
                    Status { code: StatusCode::Error, message: "TaxLookupError".into() };
            }
            trace.push(handler);
            for call in 0..u64::from(calls) {
                trace.push(span(
                    id(2 + call),
                    Some(id(0)),
                    &format!("SELECT {}", operation.table),
                    SpanKind::Client,
                    start + 2 + call,
                    db_each,
                    vec![KeyValue::new("db.system.name", Value::String("postgresql".into()))],
                ));
            }
            // As the server samples: failing traces first, then a spread.
            let failed = trace.iter().any(Span::is_error);
            spans.push(root);
            if t % 5 == 0 || (failed && traces.len() < 60) {
                traces.push(trace);
            }
        }
        spans.sort_by_key(|s| std::cmp::Reverse(s.duration_nanos()));
        Sample { spans, traces }
    }
}

fn hunk(section: &str, start: u32, lines: &[String]) -> ChangedHunk {
    ChangedHunk {
        new_start: start,
        new_lines: lines.iter().filter(|l| l.starts_with('+')).count() as u32,
        section: section.to_owned(),
        lines: lines.to_vec(),
        syntax: None,
    }
}

fn file(path: &str, hunks: Vec<ChangedHunk>) -> ChangedFile {
    ChangedFile { path: path.to_owned(), hunks }
}

/// The commit that carries the injected change.
fn culprit_commit(sha: String, op: &Operation, injection: Injection, rng: &mut Rng) -> Candidate {
    let function = op.function.rsplit('.').next().unwrap_or(&op.function);
    // A "ghost" (about 15%, as in the research's blame study): the change is in a helper no
    // span names, so only the file and the trace structure point at it.
    let section = if rng.chance(0.15) {
        format!("def helper_{}(rows):", op.table)
    } else {
        format!("def {function}(request):")
    };
    let lines: Vec<String> = match injection {
        Injection::NPlusOne { .. } => vec![
            "-    rows = db.load_all(request.ids)".into(),
            "+    rows = []".into(),
            "+    for item_id in request.ids:".into(),
            format!("+        rows.append(db.fetch_{}(item_id))", op.table),
        ],
        Injection::Errors { .. } => vec![
            "+    if not tax.available(request.region):".into(),
            "+        raise TaxLookupError(request.region)".into(),
        ],
        _ => vec![
            "-    total = price(request.items)".into(),
            "+    total = sum(price_with_rules(item) for item in request.items)".into(),
        ],
    };
    let mut files = vec![file(&op.file, vec![hunk(&section, 10 + rng.below(4) as u32, &lines)])];
    if rng.chance(0.3) {
        files.push(file(
            &format!("tests/test_{}.py", op.table),
            vec![hunk("", 1, &["+def test_it():".into(), "+    assert True".into()])],
        ));
    }
    Candidate { sha, subject: "Change the request handler".into(), files, ignored_for_blame: false }
}

/// The target's file as the decoys find it: a helper, then the handler (last in the file).
fn handler_file(op: &Operation) -> (String, String) {
    let function = op.function.rsplit('.').next().unwrap_or(&op.function).to_owned();
    let text = format!(
        "from shop import db\n\n\ndef helper_{}(rows):\n    return rows\n\n\ndef {function}(request):\n    total = price(request.items)\n    return respond(total)\n",
        op.table
    );
    (function, text)
}

/// Three comment-only commits and a signature-only one on the target's handler, each as one
/// classified hunk, and the culprit's one-line change to the handler's body.
fn comment_decoys(op: &Operation) -> (Vec<(&'static str, ChangedHunk)>, ChangedHunk) {
    let (function, base) = handler_file(op);
    let def = format!("def {function}(request):");
    let old_lines: Vec<&str> = base.lines().collect();
    let def_line = old_lines.iter().position(|l| *l == def).map_or(8, |i| i as u32 + 1);
    let last = old_lines.len() as u32;
    // (subject, new text, removed lines, added lines, git's section header)
    let edits = [
        (
            "Silence the docstring lint",
            base.replacen(&def, &format!("{def}  # noqa: D103"), 1),
            vec![def_line],
            vec![def_line],
            String::new(),
        ),
        (
            "Document the handler",
            base.replacen(
                &format!("{def}\n"),
                &format!(
                    "{def}\n    \"\"\"Answer a request.\n\n    Prices the items, then responds.\n    \"\"\"\n"
                ),
                1,
            ),
            vec![],
            vec![def_line + 1, def_line + 2, def_line + 3, def_line + 4],
            def.clone(),
        ),
        (
            "Note a TODO",
            format!("{base}\n\n# TODO: cache prices per region\n# (see the pricing service)\n"),
            vec![],
            vec![last + 1, last + 2, last + 3, last + 4],
            def.clone(),
        ),
        (
            "Accept a locale in the handler",
            base.replacen(&def, &def.replace("(request)", "(request, locale=None)"), 1),
            vec![def_line],
            vec![def_line],
            String::new(),
        ),
        (
            "Audit every request",
            base.replacen(
                "    return respond(total)",
                "    audit_log.write(request)\n    return respond(total)",
                1,
            ),
            vec![],
            vec![def_line + 2],
            def.clone(),
        ),
    ];
    let mut hunks: Vec<(&'static str, ChangedHunk)> = edits
        .into_iter()
        .map(|(subject, new, removed, added, section)| {
            let new_lines: Vec<&str> = new.lines().collect();
            let mut lines: Vec<String> =
                removed.iter().map(|&l| format!("-{}", old_lines[l as usize - 1])).collect();
            lines.extend(added.iter().map(|&l| format!("+{}", new_lines[l as usize - 1])));
            let change = syntax::FileChange {
                path: &op.file,
                old_text: Some(&base),
                new_text: Some(&new),
                hunks: vec![syntax::HunkLines { removed: removed.clone(), added: added.clone() }],
            };
            let syntax = syntax::classify(&[change]).remove(0).and_then(|mut h| h.pop());
            let start = added.first().or(removed.first()).copied().unwrap_or(1);
            let mut hunk = hunk(&section, start, &lines);
            hunk.syntax = syntax;
            (subject, hunk)
        })
        .collect();
    let culprit = hunks.pop().map(|(_, h)| h).expect("the culprit's edit is last");
    (hunks, culprit)
}

/// Another commit of the range: docs, tests, dependencies, config, other operations, or,
/// now and then, the target's own file or function (the hard cases).
fn distractor_commit(
    sha: String,
    operations: &[Operation],
    target: usize,
    rng: &mut Rng,
) -> Candidate {
    // Another operation's code (the target's own file comes in the cases below).
    let other = &operations[(target + 1 + rng.below(operations.len() - 1)) % operations.len()];
    let other_function = other.function.rsplit('.').next().unwrap_or(&other.function).to_owned();
    let target_op = &operations[target];
    let target_function =
        target_op.function.rsplit('.').next().unwrap_or(&target_op.function).to_owned();
    let change = |a: &str, b: &str| vec![format!("-{a}"), format!("+{b}")];
    let roll = rng.uniform();
    let (files, ignored) = if roll < 0.15 {
        (
            vec![file("docs/operations.md", vec![hunk("", 3, &change("old words", "new words"))])],
            false,
        )
    } else if roll < 0.25 {
        (
            vec![file(
                &format!("tests/test_{}.py", other.table),
                vec![hunk("def test_it():", 4, &change("    assert x", "    assert x == 1"))],
            )],
            false,
        )
    } else if roll < 0.35 {
        (
            vec![file(
                "requirements.txt",
                vec![hunk("", 7, &change("requests==2.31.0", "requests==2.32.3"))],
            )],
            false,
        )
    } else if roll < 0.42 {
        (
            vec![file("deploy/app.yaml", vec![hunk("", 2, &change("replicas: 3", "replicas: 4"))])],
            false,
        )
    } else if roll < 0.52 {
        // The target's file, another function in it.
        let section = format!("def helper_{}(rows):", target_op.table);
        (
            vec![file(
                &target_op.file,
                vec![hunk(&section, 40, &change("    return rows", "    return list(rows)"))],
            )],
            false,
        )
    } else if roll < 0.57 {
        // A formatting-only pass over the target's function.
        let section = format!("def {target_function}(request):");
        (
            vec![file(
                &target_op.file,
                vec![hunk(
                    &section,
                    11,
                    &change("    total=price(request.items)", "    total = price(request.items)"),
                )],
            )],
            rng.chance(0.5),
        )
    } else {
        let section = format!("def {other_function}(request):");
        let lines = change("    return respond(result)", "    return respond(result, cache=True)");
        (vec![file(&other.file, vec![hunk(&section, 20, &lines)])], false)
    };
    Candidate { sha, subject: "Another change".into(), files, ignored_for_blame: ignored }
}
