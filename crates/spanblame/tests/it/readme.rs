//! The README's commands, run as a newcomer would paste them: every `curl` and `spanblame`
//! line of its shell blocks, and every `spanblame …` it names in the text, against a server
//! that has a deploy, a regression, an incident, a dead notification and tokens to act on.
//! Only the README's sample ids, host and paths are swapped for this world's; a command the
//! README gains that this test does not know fails it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::findings::{MINUTE, build_repo, explained_regression, post_deploy, send_traffic};
use crate::support::{TestServer, manifest_dir};

/// README commands run by other tests, and which.
const ELSEWHERE: [(&str, &str); 5] = [
    ("cargo run --release -- serve --demo", "browser (`spanblame serve --demo`)"),
    ("spanblame serve --demo", "browser"),
    ("cargo xtask test", "CI itself (`.ci/run`)"),
    ("spanblame mcp", "mcp"),
    (
        "spanblame gate --service cart --commit \"$GIT_COMMIT\" --environment staging --server https://spanblame.example.com",
        "gate (each exit code, against a repository and spans of its own)",
    ),
];

/// The README's commands: lines of its `sh` blocks that start with `curl` or `spanblame`
/// (continuations joined, comments dropped), then the `spanblame …` code spans of its text.
fn readme_commands(readme: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let code = strip_comment(line).trim();
        if let Some(start) = code.strip_suffix('\\') {
            pending.push_str(start.trim());
            pending.push(' ');
            continue;
        }
        let command = format!("{pending}{code}");
        pending.clear();
        if command.starts_with("curl ")
            || command.starts_with("spanblame ")
            || command.starts_with("cargo ")
        {
            commands.push(command);
        }
    }
    for span in readme.split('`').skip(1).step_by(2) {
        if span.starts_with("spanblame ") && span.len() > "spanblame ".len() {
            commands.push(span.to_owned());
        }
    }
    commands.dedup();
    commands
}

/// `line` without a trailing `# comment` (a `#` inside quotes is kept).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (c, quote) {
            ('\'' | '"', None) => quote = Some(c),
            (c, Some(q)) if c == q => quote = None,
            ('#', None) if line[..i].ends_with(char::is_whitespace) => return &line[..i],
            _ => {}
        }
    }
    line
}

/// What the README's sample values stand for here.
struct World {
    server: TestServer,
    cwd: tempfile::TempDir,
    finding: u64,
    incident: u64,
    notification: u64,
    trace_id: String,
    commit: String,
    /// A `deploy` token, as `$SPANBLAME_CI_TOKEN`.
    ci_token: String,
    token_prefix: Option<String>,
}

impl World {
    /// The command as it runs here: each of its forms (`[--flag]`: without, then with).
    fn prepare(&self, command: &str) -> Vec<String> {
        let host = self.server.http.to_string();
        let fresh = self.cwd.path().join("fresh-data");
        let mut text = command
            .replace("http://spanblame.internal:7420", &self.server.url(""))
            .replace("localhost:7420", &host)
            .replace("findings/42", &format!("findings/{}", self.finding))
            .replace("finding=42", &format!("finding={}", self.finding))
            .replace("incidents/8", &format!("incidents/{}", self.incident))
            .replace("notifications/7", &format!("notifications/{}", self.notification))
            .replace("5b8efff798038103d269b633813fc60c", &self.trace_id)
            .replace("commits/4522cbc", &format!("commits/{}", &self.commit[..7]))
            .replace("/var/lib/spanblame", &fresh.display().to_string())
            .replace("./spanblame-data", &self.server.data_dir.display().to_string())
            // Fail on an HTTP error and show it, where the README keeps quiet.
            .replace("curl -s ", "curl -sS --fail-with-body ");
        if let Some(prefix) = &self.token_prefix {
            text = text.replace("1a2b3c4d", prefix);
        }
        match (text.find(" ["), text.find(']')) {
            (Some(open), Some(close)) if open < close => {
                let flag = &text[open + 2..close];
                vec![
                    format!("{}{}", &text[..open], &text[close + 1..]),
                    format!("{} {flag}{}", &text[..open], &text[close + 1..]),
                ]
            }
            _ => vec![text],
        }
    }

    /// Runs `command` with `sh` in the world's directory; its stdout, or a failure naming it.
    fn run(&self, command: &str) -> String {
        let bin = Path::new(env!("CARGO_BIN_EXE_spanblame")).parent().unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let output = Command::new("sh")
            .args(["-c", command])
            .current_dir(self.cwd.path())
            .env("PATH", path)
            .env("SPANBLAME_SERVER", self.server.url(""))
            .env("SPANBLAME_CI_TOKEN", &self.ci_token)
            .env("GIT_COMMIT", &self.commit)
            .env("NO_COLOR", "1")
            .env_remove("SPANBLAME_CONFIG")
            .env_remove("SPANBLAME_TOKEN")
            .output()
            .expect("running sh");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "the README's `{command}` failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

#[test]
fn every_command_in_the_readme_runs() {
    let readme = std::fs::read_to_string(manifest_dir().join("../../README.md")).unwrap();
    let commands = readme_commands(&readme);
    assert!(commands.len() >= 25, "the README's commands were not found: {commands:?}");

    // A world: a repository, a configuration in the working directory, a slow deploy whose
    // alert cannot be delivered.
    let cwd = tempfile::tempdir().unwrap();
    let upstream = cwd.path().join("shop");
    std::fs::create_dir_all(&upstream).unwrap();
    let repo = build_repo(&upstream);
    std::fs::write(
        cwd.path().join("spanblame.toml"),
        format!(
            "[detection]\ninterval = \"1s\"\n\n[notifications]\nmax_attempts = 1\n\n\
             [[alerts.webhook]]\nname = \"gone\"\nurl = \"http://127.0.0.1:9/hook\"\n\n\
             [[repositories]]\nname = \"shop\"\nurl = \"{}\"\n\n\
             [[services]]\nname = \"checkout\"\nrepository = \"shop\"\nteam = \"payments\"\n",
            upstream.display()
        ),
    )
    .unwrap();
    let config = cwd.path().join("spanblame.toml");
    let server = TestServer::start_with(
        &cwd.path().join("data"),
        &["--config", config.to_str().unwrap()],
        &[],
    );
    let now = jiff::Timestamp::now().as_nanosecond() as u64;
    let deploy = now - 25 * MINUTE;
    send_traffic(&server, "1.0.0", &repo.base, deploy - 70 * MINUTE, deploy, 1.0, 1);
    send_traffic(&server, "1.1.0", &repo.search, deploy + 500_000_000, now, 1.4, 2);
    post_deploy(&server, "1.0.0", &repo.base, deploy - 75 * MINUTE);
    post_deploy(&server, "1.1.0", &repo.search, deploy);
    let finding = explained_regression(&server, Duration::from_secs(90));
    let notification = dead_notification(&server, Duration::from_secs(30));
    let mut world = World {
        finding: finding["id"].as_u64().unwrap(),
        incident: finding["deploy_id"].as_u64().unwrap(),
        notification,
        trace_id: finding["exemplars"]["after"]["slowest"]["trace_id"].as_str().unwrap().to_owned(),
        commit: repo.slow.clone(),
        ci_token: String::new(),
        token_prefix: None,
        server,
        cwd,
    };
    // The CI token the deploy line sends.
    world.ci_token = world.run("spanblame token create --name ci --scope deploy").trim().into();

    let elsewhere = |command: &str| ELSEWHERE.iter().find(|(c, _)| *c == command);
    let mut ran = 0;
    for command in &commands {
        if elsewhere(command).is_some() || command.starts_with("spanblame serve --config") {
            // The world's own server runs `serve --config spanblame.toml`.
            continue;
        }
        // A command named in the text, whose full form a block shows.
        if command == "spanblame deploy" || command == "spanblame gate" {
            assert!(commands.iter().any(|c| c.starts_with(&format!("{command} --"))));
            continue;
        }
        for prepared in world.prepare(command) {
            let stdout = world.run(&prepared);
            check(command, &stdout, &mut world);
            ran += 1;
        }
    }
    assert!(ran >= 25, "ran only {ran} of the README's commands");
}

/// What a command's output must show beyond success, and what later commands need of it.
fn check(command: &str, stdout: &str, world: &mut World) {
    if command.starts_with("spanblame token create --name otel-collector") {
        let secret = stdout.trim();
        let prefix = secret.strip_prefix("sbt_").and_then(|rest| rest.split('_').next());
        world.token_prefix = Some(prefix.unwrap_or_else(|| panic!("no token: {stdout}")).into());
    } else if command.starts_with("spanblame token list") {
        assert!(stdout.contains("PREFIX"), "{stdout}");
    } else if command.starts_with("spanblame deploy") {
        assert!(stdout.contains("recorded: cart 1.4.2 to production"), "{stdout}");
    } else if command.starts_with("spanblame backup verify") {
        assert!(stdout.contains("is intact"), "{stdout}");
    } else if command.starts_with("spanblame backup") {
        assert!(stdout.contains("backed") && stdout.contains(" block"), "{stdout}");
    } else if command.starts_with("spanblame restore") {
        assert!(stdout.contains("restored"), "{stdout}");
    } else if command.starts_with("spanblame audit verify") {
        assert!(stdout.starts_with("audit log intact"), "{stdout}");
    } else if command.starts_with("spanblame audit export") {
        let exported = std::fs::read_to_string(world.cwd.path().join("audit.jsonl")).unwrap();
        assert!(exported.lines().any(|l| l.contains("token.create")), "{exported}");
    } else if command.contains("/api/v1/") {
        let body: Value = serde_json::from_str(stdout)
            .unwrap_or_else(|e| panic!("`{command}` answered no JSON ({e}): {stdout}"));
        assert!(body.get("error").is_none(), "{body}");
    }
}

/// Waits for the regression's alert to be dead-lettered; its id.
fn dead_notification(server: &TestServer, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let (_, body) = server.get_json("/api/v1/notifications?state=dead");
        if let Some(id) = body["notifications"][0]["id"].as_u64() {
            return id;
        }
        assert!(Instant::now() < deadline, "no dead notification: {body}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn commands_are_read_from_blocks_and_text() {
    let readme = "Run `spanblame check-config` first.\n\n```sh\ncurl -s 'a?b#c'   # note\nspanblame deploy --x \\\n  --y 1\n```\n\n```toml\nspanblame = 1\n```\n";
    assert_eq!(
        readme_commands(readme),
        ["curl -s 'a?b#c'", "spanblame deploy --x --y 1", "spanblame check-config"]
    );
}
