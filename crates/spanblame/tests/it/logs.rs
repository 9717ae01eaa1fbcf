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
    let output = spanblame(&["check-config", "--log-format", "json"], dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let valid = events
        .iter()
        .find(|e| e["fields"]["message"] == "configuration is valid")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(valid["level"], "INFO");
    assert!(valid["fields"]["auth"].as_str().unwrap().starts_with("none"), "{valid}");
    assert!(!stderr.contains('\u{1b}'), "no colour codes in JSON: {stderr}");

    let config = dir.path().join("spanblame.toml");
    std::fs::write(
        &config,
        "[server]\nhttp_addr = \"nowhere\"\n\n[retention]\nspans = \"forever\"\n",
    )
    .unwrap();
    let output = spanblame(&["check-config", "--config", config.to_str().unwrap()], dir.path());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("2 problems in the configuration"), "{stderr}");
    assert!(
        stderr.contains("`server.http_addr`") && stderr.contains("`retention.spans`"),
        "{stderr}"
    );
}
