//! The Model Context Protocol at `/mcp` (streamable HTTP, through the official `rmcp` SDK): the
//! tools an AI assistant uses to read findings, suspects, traces and commit impact, to draft a
//! rollback, to flag a regression on the suspect's review (`flag_review`, with the right to
//! change that service's findings), and to propose its revert on the forge (`propose_revert`,
//! with the right to propose reverts for that service).
//!
//! Every tool runs as the caller the access guard authenticated for that HTTP request (a
//! bearer token, a proxy assertion or a session), through the same view functions as the API,
//! so visibility and redaction are the API's; each call is audited as `mcp.<tool>`. Something
//! the caller may not see is "not found", as in the API. `spanblame mcp` relays stdio to this
//! endpoint for assistants that only speak stdio.
//!
//! May depend on: `edge` (the guard, the caller, the audit), `views`, `jobs` and below.
//! **Never:** a route table, or a view of its own: every answer is a view the API shows too.

use std::net::SocketAddr;
use std::sync::Arc;

use model::TraceId;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler};
use serde_json::{Map, Value as Json_, json};
use store::StoreError;

use edge::Guard;
use edge::access::{Caller, append_audit};

/// The tower service behind `/mcp`.
type McpService = StreamableHttpService<Tools, LocalSessionManager>;

/// The MCP endpoint of one server: its service, made at its first request.
pub struct Mcp {
    guard: Arc<Guard>,
    /// Hosts this server answers as: loopback, the bound address and `server.public_url`'s.
    hosts: Vec<String>,
    service: std::sync::OnceLock<McpService>,
}

impl Mcp {
    /// The endpoint of a server listening on `http_addr` and reached at `public_url`.
    pub fn new(guard: Arc<Guard>, http_addr: SocketAddr, public_url: Option<&str>) -> Mcp {
        let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        hosts.push(http_addr.ip().to_string());
        if let Some(host) = public_url.and_then(authority) {
            hosts.push(host);
        }
        Mcp { guard, hosts, service: std::sync::OnceLock::new() }
    }

    /// `POST`, `GET` and `DELETE /mcp`, after the guard put the caller in the request.
    pub async fn handle(&self, request: axum::extract::Request) -> axum::response::Response {
        use tower::ServiceExt;
        let service = self.service.get_or_init(|| self.service()).clone();
        match service.oneshot(request).await {
            Ok(response) => response.map(axum::body::Body::new),
            Err(never) => match never {},
        }
    }

    fn service(&self) -> McpService {
        let config = StreamableHttpServerConfig::default()
            .with_allowed_hosts(self.hosts.clone())
            .with_json_response(true)
            .with_sse_keep_alive(None);
        let guard = Arc::clone(&self.guard);
        StreamableHttpService::new(
            move || Ok(Tools { guard: Arc::clone(&guard) }),
            Arc::new(LocalSessionManager::default()),
            config,
        )
    }
}

/// `host` (and `host:port`) of a URL.
fn authority(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    Some(authority.split(':').next().unwrap_or(authority).to_owned())
}

/// The tool set, one per MCP session; state is shared.
#[derive(Clone)]
struct Tools {
    guard: Arc<Guard>,
}

/// A tool: its name, what it does, and its arguments as JSON Schema properties.
struct ToolSpec {
    name: &'static str,
    description: &'static str,
    properties: fn() -> Json_,
    required: &'static [&'static str],
}

const TOOLS: &[ToolSpec] = &[
    ToolSpec {
        name: "list_incidents",
        description: "Incidents, newest first: each a deploy whose changes made latency or errors worse, with its status (open, acknowledged, resolved), the operations and metrics that regressed, the worst effect and the top suspect commit. Start here during an incident. Filter by service, environment or status (open by default; all for every status).",
        properties: || {
            json!({
                "service": {"type": "string"}, "environment": {"type": "string"},
                "status": {"type": "string", "enum": ["open", "acknowledged", "resolved", "all"]},
                "limit": {"type": "integer", "minimum": 1, "maximum": 200},
            })
        },
        required: &[],
    },
    ToolSpec {
        name: "get_incident",
        description: "One incident in full: the deploy and its commit range, every regressed operation and metric with before/after and effect, the suspects ranked once with reasons (including which commit last changed the code the slow spans run), exemplar traces and the rollback draft.",
        properties: || json!({"id": {"type": "integer", "description": "the incident id (its deploy's id)"}}),
        required: &["id"],
    },
    ToolSpec {
        name: "list_findings",
        description: "Regressions and other verdicts spanblame found after deploys, newest first: service, environment, operation, metric, verdict, status, numbers and top suspects. Filter by service, environment, verdict (regressed, improved, no_change, inconclusive) or status (open, acknowledged, resolved).",
        properties: || {
            json!({
                "service": {"type": "string"}, "environment": {"type": "string"},
                "verdict": {"type": "string", "enum": ["regressed", "improved", "no_change", "inconclusive"]},
                "status": {"type": "string", "enum": ["open", "acknowledged", "resolved"]},
                "limit": {"type": "integer", "minimum": 1, "maximum": 200},
            })
        },
        required: &[],
    },
    ToolSpec {
        name: "get_finding",
        description: "One finding in full: before/after numbers with confidence intervals, the deploy and its commit range, suspects ranked with reasons and reviews, evidence, exemplar trace ids, the rollback draft and notification status.",
        properties: || json!({"id": {"type": "integer", "description": "the finding id"}}),
        required: &["id"],
    },
    ToolSpec {
        name: "draft_rollback",
        description: "The rollback draft for a finding: the previous good version, the commits to revert, the `git revert` (and, for Phabricator, `arc diff`) commands and the revert patch.",
        properties: || json!({"finding_id": {"type": "integer"}}),
        required: &["finding_id"],
    },
    ToolSpec {
        name: "flag_review",
        description: "Flag a regression where the change was reviewed: post the finding's evidence (before/after, effect, the suspect's reasons, example traces, the rollback draft, links) as a comment on the suspect's review (a Phabricator revision, a pull or merge request; the commit when it had no review), the same comment spanblame's notifier posts, once per review. Give the finding and, to pick another suspect than the top one, its commit. Needs the right to change findings of that service.",
        properties: || {
            json!({
                "finding_id": {"type": "integer"},
                "commit": {"type": "string", "description": "a suspect's commit sha (or a prefix); default: the top suspect"},
            })
        },
        required: &["finding_id"],
    },
    ToolSpec {
        name: "propose_revert",
        description: "Propose the revert of a regression's suspect commit(s) where the change was reviewed: spanblame makes the revert on the repository's head (or says which files conflict) and opens it for review as a new Phabricator/Phorge revision, reviewed by the original author and reviewers, its summary linking the finding and the original review and naming you. Asking again proposes nothing new. Give the finding and, to revert other suspects than the top one, their commits. Needs the right to propose reverts for that service (on-call leads, admins, engineers of its team, tokens with the `revert` scope).",
        properties: || {
            json!({
                "finding_id": {"type": "integer"},
                "commits": {"type": "array", "items": {"type": "string"}, "description": "suspects' commit shas (or prefixes); default: the top suspect"},
            })
        },
        required: &["finding_id"],
    },
    ToolSpec {
        name: "get_trace",
        description: "A trace's spans, each with its change context (version, commit, review, owner). Spans of services outside your scope are redacted timing stubs.",
        properties: || json!({"trace_id": {"type": "string", "description": "32 hex digits"}}),
        required: &["trace_id"],
    },
    ToolSpec {
        name: "search_traces",
        description: "Traces matching a search, newest first, as in GET /api/v1/traces.",
        properties: || {
            json!({
                "service": {"type": "string"}, "operation": {"type": "string"},
                "environment": {"type": "string"}, "version": {"type": "string"},
                "min_duration_ms": {"type": "number"}, "max_duration_ms": {"type": "number"},
                "status": {"type": "string", "enum": ["ok", "error", "unset"]},
                "start": {"type": "string", "description": "RFC 3339; default: an hour before `end`"},
                "end": {"type": "string", "description": "RFC 3339; default: now"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100},
            })
        },
        required: &[],
    },
    ToolSpec {
        name: "commit_impact",
        description: "What a commit did after it shipped: its review, the deploys that carried it, and the findings that moved after them.",
        properties: || json!({"sha": {"type": "string", "description": "a full or abbreviated commit sha"}}),
        required: &["sha"],
    },
    ToolSpec {
        name: "list_deploys",
        description: "Deploys, newest first, with their commits and commit ranges.",
        properties: || json!({"service": {"type": "string"}, "environment": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "maximum": 200}}),
        required: &[],
    },
    ToolSpec {
        name: "dora_metrics",
        description: "DORA metrics (deployment frequency, lead time for changes, change failure rate, time to restore) with their bands, for a service, a team or everything you may see.",
        properties: || json!({"service": {"type": "string"}, "team": {"type": "string"}, "environment": {"type": "string"}, "window": {"type": "string", "description": "e.g. 30d"}}),
        required: &[],
    },
];

impl ToolSpec {
    fn tool(&self) -> Tool {
        let mut schema = Map::new();
        schema.insert("type".into(), "object".into());
        schema.insert("properties".into(), (self.properties)());
        schema.insert("required".into(), json!(self.required));
        schema.insert("additionalProperties".into(), false.into());
        Tool::new(self.name, self.description, Arc::new(schema))
    }
}

/// What a tool call gave: data, or a message for the assistant (not a protocol error).
enum Answer {
    Data(Json_),
    NotFound(String),
    Invalid(String),
    /// The caller may see it but not act on it.
    Denied(String),
}

impl Answer {
    /// A view as the JSON the assistant reads.
    fn data(view: impl serde::Serialize) -> Answer {
        Answer::Data(serde_json::to_value(view).expect("views serialise"))
    }
}

impl ServerHandler for Tools {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("spanblame", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "spanblame links spans to the deploy, commit, review and author behind them. Start with list_findings (verdict=regressed, status=open), then get_finding for suspects and evidence, get_trace for exemplar traces, and draft_rollback. You see only what the person or token you act for may see.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(TOOLS.iter().map(ToolSpec::tool).collect()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
            .cloned()
            .ok_or_else(|| {
                ErrorData::internal_error("no authenticated caller on this request", None)
            })?;
        let name = request.name.to_string();
        if !TOOLS.iter().any(|t| t.name == name) {
            return Err(ErrorData::invalid_params(format!("no tool `{name}`"), None));
        }
        let arguments = request.arguments.unwrap_or_default();
        let state = Arc::clone(&self.guard);
        let blocking_caller = caller.clone();
        let (answer, resource) = tokio::task::spawn_blocking(move || {
            let resource = resource_of(&name, &arguments);
            (call(&state, &blocking_caller, &name, &arguments), resource)
        })
        .await
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let answer = answer.map_err(|e| {
            tracing::error!(error = %e, "an MCP tool failed");
            ErrorData::internal_error("the store failed; try again", None)
        })?;
        let outcome = match &answer {
            Answer::Data(_) => "ok",
            Answer::NotFound(_) => "not found",
            Answer::Invalid(_) => "invalid",
            Answer::Denied(_) => "denied",
        };
        let record = caller.audit(
            self.guard.ctx().clock.now_unix_nanos(),
            &format!("mcp.{}", request.name),
            &resource,
            outcome,
        );
        append_audit(&self.guard, vec![record])
            .await
            .map_err(|e| ErrorData::internal_error(e.message, None))?;
        Ok(match answer {
            Answer::Data(value) => CallToolResult::structured(value),
            Answer::NotFound(message) | Answer::Invalid(message) | Answer::Denied(message) => {
                CallToolResult::error(vec![ContentBlock::text(message)])
            }
        }
        .into())
    }
}

/// The resource an audit record names: the tool and its arguments.
fn resource_of(name: &str, arguments: &Map<String, Json_>) -> String {
    if arguments.is_empty() {
        format!("mcp/{name}")
    } else {
        format!("mcp/{name} {}", Json_::Object(arguments.clone()))
    }
}

fn string(arguments: &Map<String, Json_>, key: &str) -> Option<String> {
    arguments.get(key).and_then(|v| match v {
        Json_::String(s) => Some(s.clone()),
        Json_::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn id(arguments: &Map<String, Json_>, key: &str) -> Result<u64, Answer> {
    arguments
        .get(key)
        .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
        .ok_or_else(|| Answer::Invalid(format!("`{key}` must be a number")))
}

/// Runs one tool as `caller`.
fn call(
    state: &Guard,
    caller: &Caller,
    name: &str,
    arguments: &Map<String, Json_>,
) -> Result<Answer, StoreError> {
    let params = |keys: &[&str]| -> Vec<(String, String)> {
        keys.iter().filter_map(|k| string(arguments, k).map(|v| (k.to_string(), v))).collect()
    };
    let invalid = |e: views::Invalid| Ok(Answer::Invalid(e.message));
    Ok(match name {
        "list_findings" => {
            let filter = match views::findings::parse_filter(params(&[
                "service",
                "environment",
                "verdict",
                "status",
                "limit",
            ])) {
                Ok(filter) => filter,
                Err(e) => return invalid(e),
            };
            Answer::Data(
                json!({"findings": views::findings::list(state.ctx(), &caller.visibility, filter)?}),
            )
        }
        "list_incidents" => {
            let given = params(&["service", "environment", "status", "limit"]);
            let filter = match views::incidents::parse_filter(given) {
                Ok(filter) => filter,
                Err(e) => return invalid(e),
            };
            let incidents = views::incidents::list(state.ctx(), &caller.visibility, &filter)?;
            Answer::Data(json!({"incidents": incidents}))
        }
        "get_incident" => {
            let id = match id(arguments, "id") {
                Ok(id) => id,
                Err(answer) => return Ok(answer),
            };
            match views::incidents::incident(state.ctx(), &caller.visibility, id)? {
                Some(incident) => Answer::data(incident),
                None => Answer::NotFound(format!("no incident {id} (or you may not see it)")),
            }
        }
        "get_finding" | "draft_rollback" => {
            let key = if name == "get_finding" { "id" } else { "finding_id" };
            let id = match id(arguments, key) {
                Ok(id) => id,
                Err(answer) => return Ok(answer),
            };
            match views::findings::finding(state.ctx(), &caller.visibility, id)? {
                None => Answer::NotFound(format!("no finding {id} (or you may not see it)")),
                Some(finding) if name == "get_finding" => Answer::data(finding),
                Some(finding) => {
                    let suspects = finding.explanation.suspects.as_ref().map(|suspects| {
                        let brief = |s: &shapes::SuspectJ| json!({"commit": s.commit, "score": s.score, "reasons": s.reasons, "review": s.review});
                        suspects.iter().take(3).map(brief).collect::<Vec<_>>()
                    });
                    Answer::Data(json!({
                        "finding_id": id,
                        "service": finding.service,
                        "deploy": {"id": finding.deploy_id, "version": finding.deploy.as_ref().map(|d| &d.version)},
                        "suspects": suspects,
                        "rollback": finding.explanation.rollback,
                    }))
                }
            }
        }
        "flag_review" => {
            let id = match id(arguments, "finding_id") {
                Ok(id) => id,
                Err(answer) => return Ok(answer),
            };
            let commit = string(arguments, "commit");
            if let Some(commit) = commit.as_deref().filter(|c| !model::looks_like_sha(c)) {
                return Ok(Answer::Invalid(format!(
                    "`{commit}` is not a commit sha (7 to 64 hex digits)"
                )));
            }
            flag_review(state, caller, id, commit.as_deref())?
        }
        "propose_revert" => {
            let id = match id(arguments, "finding_id") {
                Ok(id) => id,
                Err(answer) => return Ok(answer),
            };
            let commits: Vec<String> = match arguments.get("commits") {
                None => Vec::new(),
                Some(Json_::Array(items)) => {
                    items.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect()
                }
                Some(_) => return Ok(Answer::Invalid("`commits` must be a list of shas".into())),
            };
            if let Some(bad) = commits.iter().find(|c| !model::looks_like_sha(c)) {
                return Ok(Answer::Invalid(format!("`{bad}` is not a commit sha")));
            }
            propose_revert(state, caller, id, &commits)?
        }
        "get_trace" => {
            let text = string(arguments, "trace_id").unwrap_or_default();
            let Ok(trace_id) = TraceId::from_hex(&text) else {
                return Ok(Answer::Invalid(format!("`{text}` is not a trace id (32 hex digits)")));
            };
            let spans =
                views::traces::trace_spans(state.ctx(), &caller.visibility, &trace_id, false)?;
            if spans.is_empty() {
                Answer::NotFound(format!("no trace {text} (or you may not see it)"))
            } else {
                Answer::Data(json!({"trace_id": text, "spans": spans}))
            }
        }
        "search_traces" => {
            let query = params(&[
                "service",
                "operation",
                "environment",
                "version",
                "min_duration_ms",
                "status",
                "last",
                "limit",
            ]);
            match views::traces::parse_search(&query, state.ctx().clock.now_unix_nanos()) {
                Ok(query) => Answer::Data(
                    json!({"traces": views::traces::search(state.ctx(), &caller.visibility, query)?}),
                ),
                Err(e) => return invalid(e),
            }
        }
        "commit_impact" => {
            let sha = string(arguments, "sha").unwrap_or_default();
            if !model::looks_like_sha(&sha) {
                return Ok(Answer::Invalid(format!(
                    "`{sha}` is not a commit sha (7 to 64 hex digits)"
                )));
            }
            match views::deploys::impact(state.ctx(), &caller.visibility, &sha)? {
                Some(impact) => Answer::data(impact),
                None => {
                    Answer::NotFound(format!("no commit {sha} is known (or you may not see it)"))
                }
            }
        }
        "list_deploys" => {
            let limit = arguments.get("limit").and_then(Json_::as_u64).unwrap_or(50).clamp(1, 200);
            let service = string(arguments, "service");
            let environment = string(arguments, "environment");
            let deploys = views::deploys::deploys(
                state.ctx(),
                &caller.visibility,
                service.as_deref(),
                environment.as_deref(),
                limit as usize,
            )?;
            Answer::Data(json!({"deploys": deploys}))
        }
        "dora_metrics" => {
            match views::dora::parse_query(params(&["service", "team", "environment", "window"])) {
                Ok(query) => {
                    Answer::data(views::dora::dora_view(state.ctx(), &caller.visibility, &query)?)
                }
                Err(e) => return invalid(e),
            }
        }
        _ => Answer::Invalid(format!("no tool `{name}`")),
    })
}

/// Whether `caller` may act on finding `id` with `need`: `Ok(None)` when it may (the finding
/// exists and is within its reach), else the answer to give.
fn may_act(
    state: &Guard,
    caller: &Caller,
    id: u64,
    need: auth::Need,
    doing: &str,
) -> Result<Option<Answer>, StoreError> {
    let not_found = || Answer::NotFound(format!("no finding {id} (or you may not see it)"));
    let Some(stored) = state.ctx().store.finding(id)? else { return Ok(Some(not_found())) };
    if !caller.visibility.allows(&stored.service, Some(&stored.environment)) {
        return Ok(Some(not_found()));
    }
    let who = &caller.principal.id;
    Ok(match auth::authorize(&caller.principal, need, &state.policy) {
        auth::Decision::Allow(reach)
            if reach.allows(&stored.service, Some(&stored.environment)) =>
        {
            None
        }
        auth::Decision::Allow(_) => Some(Answer::Denied(format!(
            "`{who}` may not {doing} for `{}`: it may do so for other services only",
            stored.service
        ))),
        auth::Decision::Deny(refusal) => {
            Some(Answer::Denied(format!("{doing}: {}", refusal.reason)))
        }
    })
}

/// `propose_revert`, as the person or token the assistant acts for.
fn propose_revert(
    state: &Guard,
    caller: &Caller,
    id: u64,
    commits: &[String],
) -> Result<Answer, StoreError> {
    let need = auth::Need::ProposeRevert;
    if let Some(answer) = may_act(state, caller, id, need, "propose reverts")? {
        return Ok(answer);
    }
    let by = format!("{} (through an assistant)", caller.principal.id);
    Ok(match jobs::revert::propose(&state.jobs, id, commits, &by)? {
        Ok(proposed) => Answer::data(proposed.view()),
        Err(jobs::revert::Refused::NotFound(message)) => Answer::NotFound(message),
        Err(refused) => Answer::Invalid(refused.message().to_owned()),
    })
}

/// `flag_review`: the finding must be one the caller may see, and one of a service it may
/// change findings of (the same right as acknowledging or resolving it).
fn flag_review(
    state: &Guard,
    caller: &Caller,
    id: u64,
    commit: Option<&str>,
) -> Result<Answer, StoreError> {
    if let Some(answer) = may_act(state, caller, id, auth::Need::ChangeFinding, "flag reviews")? {
        return Ok(answer);
    }
    Ok(match jobs::notify::flag_review(&state.jobs, id, commit)? {
        Ok(flagged) => Answer::Data(json!({
            "finding_id": id,
            "target": flagged.target,
            "integration": flagged.integration,
            "idempotency_key": flagged.idempotency_key,
            "status": if flagged.new { "queued" } else { "already flagged" },
            "message": if flagged.new {
                format!("the comment on {} is queued; GET /api/v1/notifications?finding={id} shows its delivery", flagged.target)
            } else {
                format!("{} already has (or is getting) this comment; nothing new was queued", flagged.target)
            },
        })),
        Err(why) => Answer::Invalid(why),
    })
}
