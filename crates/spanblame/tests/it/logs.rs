//! Logs as a log collector reads them: `--log-format json` writes one JSON object per line
//! on stderr, with the level, the message and the event's fields; and a configuration with
//! several problems names each of them in one run.

use std::process::Command;

fn spanblame(args: &[&str], data_dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spanblame"))
        .args(args)
        .env("SPANBLAME_STORAGE_DATA_DIR", data_dir)
        .env_remove("SPANBLAME_LOG")
        .env_remove("SPANBLAME_LOG_FORMAT")
        .output()
        .expect("running spanblame")
}

#[test]
fn json_logs_are_one_object_per_line_and_every_problem_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // The result on stdout, as JSON for a machine; nothing but JSON lines on stderr.
    let output = spanblame(&["check-config", "--json", "--log-format", "json"], dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    assert_eq!(report["valid"], true, "{report}");
    assert!(report["auth"].as_str().unwrap().starts_with("none"), "{report}");
    assert!(report["metadata"]["state"].as_str().unwrap().starts_with("empty"), "{report}");
    let human = spanblame(&["check-config"], dir.path());
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.starts_with("configuration is valid\n") && text.contains("  auth"), "{text}");
    assert!(
        text.contains(
            "  tagging gate   requires review, service, spans; spans looked for in none (last 30m)"
        ),
        "{text}"
    );
    assert_eq!(report["gate"]["window"], "30m", "{report}");

    let config = dir.path().join("spanblame.toml");
    std::fs::write(
        &config,
        "[server]\nhttp_addr = \"nowhere\"\n\n[retention]\nspans = \"forever\"\n",
    )
    .unwrap();
    let path = config.to_str().unwrap();
    let output = spanblame(&["check-config", "--config", path, "--log-format", "json"], dir.path());
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no report for an invalid configuration");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let error = events.iter().find(|e| e["level"] == "ERROR").unwrap_or_else(|| panic!("{stderr}"));
    let message = error["fields"]["message"].as_str().unwrap();
    assert!(message.contains("2 problems in the configuration"), "{message}");
    assert!(
        message.contains("`server.http_addr`") && message.contains("`retention.spans`"),
        "{message}"
    );
    assert!(!stderr.contains('\u{1b}'), "no colour codes in JSON: {stderr}");
}
