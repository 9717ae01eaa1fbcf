//! What the packaging ships, checked as installed: the configuration is valid as shipped
//! (`check-config`), and the systemd unit passes `systemd-analyze verify` (Debian's `systemd`,
//! which `cargo xtask test` installs) with the hardening the service promises.

use std::process::Command;

use crate::support::manifest_dir;

#[test]
fn the_shipped_configuration_is_valid_as_shipped() {
    let config = manifest_dir().join("../../packaging/spanblame.toml");
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_spanblame"))
        .args(["check-config", "--config"])
        .arg(&config)
        // Where the unit would let it write; the rest as shipped.
        .env("SPANBLAME_STORAGE_DATA_DIR", data.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "check-config on the shipped file: {said}");
    assert!(said.contains("127.0.0.1:7420"), "{said}");
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit =
        std::fs::read_to_string(manifest_dir().join("../../packaging/spanblame.service")).unwrap();
    for directive in [
        "User=spanblame",
        "ExecStart=/usr/bin/spanblame serve --config /etc/spanblame/spanblame.toml",
        "EnvironmentFile=-/etc/spanblame/spanblame.env",
        "Restart=on-failure",
        "LimitNOFILE=",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/spanblame",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(directive)), "no `{directive}` in the unit");
    }
    // `verify` wants the command to exist: the binary under test stands in for the installed one.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("spanblame.service");
    std::fs::write(&copy, unit.replace("/usr/bin/spanblame", env!("CARGO_BIN_EXE_spanblame")))
        .unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian's systemd, which `cargo xtask test` installs)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}
