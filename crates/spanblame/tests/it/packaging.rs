//! What the packaging ships, checked as installed: the configuration is valid as shipped
//! (`check-config`), the systemd unit passes `systemd-analyze verify` (Debian's `systemd`,
//! which `cargo xtask test` installs) with the hardening the service promises, and the `.deb`
//! installs, serves and purges in a clean Debian root.

use std::process::Command;

use crate::support::{manifest_dir, run_ok};

/// `check-config` on the shipped configuration with `env` on top, which must pass; what it
/// printed. The data directory is a temporary one (where the unit would let it write).
fn check_shipped_config(env: &[(String, String)]) -> String {
    let data = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_spanblame"))
            .args(["check-config", "--config"])
            .arg(manifest_dir().join("../../packaging/spanblame.toml"))
            .env("SPANBLAME_STORAGE_DATA_DIR", data.path())
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(k, v)| (k, v))),
    )
}

#[test]
fn the_shipped_configuration_is_valid_as_shipped() {
    let said = check_shipped_config(&[]);
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
    // Debian's systemd, which `cargo xtask test` installs.
    let said = run_ok(Command::new("systemd-analyze").args(["verify"]).arg(&copy));
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");
}

/// The `.deb` that `packaging/dist.sh` makes of the binary under test, installed with `dpkg -i`
/// into a copy of a clean Debian root (`debootstrap --variant=minbase --include=systemd`,
/// which `cargo xtask test` makes once): its dependencies are there, the unit verifies in that
/// root, the server runs as the `spanblame` user on the shipped configuration and answers
/// `/readyz`, and a purge keeps the data directory unless `SPANBLAME_PURGE_DATA=yes` asks for
/// it to go.
#[test]
fn deb_package_installs_into_a_clean_root_serves_as_its_user_and_purges_without_the_data() {
    let clean = std::env::var_os("SPANBLAME_TEST_DEBIAN_ROOT").expect(
        "SPANBLAME_TEST_DEBIAN_ROOT is not set: run through `cargo xtask test`, which makes a clean \
         Debian root with debootstrap (or skips tests named deb_package, saying why)",
    );
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    run_ok(Command::new("cp").arg("-a").arg(&clean).arg(&root));

    // What `cargo xtask dist` makes, from the binary under test.
    let dist = work.path().join("dist");
    run_ok(
        Command::new("bash")
            .arg(manifest_dir().join("../../packaging/dist.sh"))
            .arg(env!("CARGO_BIN_EXE_spanblame"))
            .arg(&dist),
    );
    run_ok(
        Command::new("sha256sum").args(["--check", "--strict", "SHA256SUMS"]).current_dir(&dist),
    );
    let named = |suffix: &str| {
        std::fs::read_dir(&dist)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| path.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("no *{suffix} in {}", dist.display()))
    };
    let listed = run_ok(Command::new("tar").arg("-tzf").arg(named(".tar.gz")));
    for file in ["/spanblame", "/spanblame.service", "/spanblame.toml", "/spanblame.env"] {
        assert!(
            listed.lines().any(|line| line.ends_with(file)),
            "no {file} in the tarball:\n{listed}"
        );
    }
    let debug = named(".debug");
    let sections = run_ok(Command::new("objdump").arg("-h").arg(&debug));
    assert!(sections.contains(".debug_line"), "the debug file has no line tables:\n{sections}");

    // Installed as an administrator would.
    let deb = named(".deb");
    std::fs::copy(&deb, root.join("tmp/spanblame.deb")).unwrap();
    let installed = run_ok(&mut chroot(&root, &["dpkg", "-i", "/tmp/spanblame.deb"]));
    assert!(installed.contains("systemctl enable --now spanblame"), "{installed}");
    let binary = root.join("usr/bin/spanblame");
    let sections = run_ok(Command::new("objdump").arg("-h").arg(&binary));
    assert!(
        !sections.contains(".debug_info")
            && !sections.contains(".debug_line")
            && sections.contains(".gnu_debuglink"),
        "the installed binary keeps debug info or lost its debuglink:\n{sections}"
    );
    let version = run_ok(&mut chroot(&root, &["spanblame", "--version"]));
    let status = run_ok(&mut chroot(
        &root,
        &["dpkg-query", "-W", "-f", "${Version} ${Conffiles}", "spanblame"],
    ));
    assert!(version.contains(status.split_whitespace().next().unwrap()), "{version} / {status}");
    for conffile in ["/etc/spanblame/spanblame.toml", "/etc/spanblame/spanblame.env"] {
        assert!(status.contains(conffile), "{conffile} is not a conffile: {status}");
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env_file = std::fs::metadata(root.join("etc/spanblame/spanblame.env")).unwrap();
    assert_eq!(env_file.permissions().mode() & 0o777, 0o600, "the environment file holds secrets");
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let user: Vec<&str> = passwd
        .lines()
        .find(|line| line.starts_with("spanblame:"))
        .expect("postinst made no spanblame user")
        .split(':')
        .collect();
    let (uid, gid) = (user[2], user[3]);
    assert!(uid.parse::<u32>().unwrap() < 1000, "not a system user: {user:?}");
    let data = root.join("var/lib/spanblame");
    let meta = std::fs::metadata(&data).unwrap();
    assert_eq!(meta.uid().to_string(), uid, "/var/lib/spanblame is not the user's");
    assert_eq!(meta.permissions().mode() & 0o777, 0o750);

    // The unit, verified against that root's binary and users.
    let unit = run_ok(
        Command::new("systemd-analyze")
            .arg(format!("--root={}", root.display()))
            .args(["verify", "spanblame.service"]),
    );
    assert!(unit.trim().is_empty(), "systemd-analyze verify: {unit}");

    // The service's command, as its user, on the shipped configuration; only the listeners are
    // moved to ports the OS picks (as an EnvironmentFile= line would move them).
    let mut serve = Command::new("/usr/sbin/chroot");
    serve
        .arg(format!("--userspec={uid}:{gid}"))
        .arg(&root)
        .args(["/usr/bin/spanblame", "serve", "--config", "/etc/spanblame/spanblame.toml"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("NO_COLOR", "1")
        .env("SPANBLAME_SERVER_HTTP_ADDR", "127.0.0.1:0")
        .env("SPANBLAME_SERVER_OTLP_GRPC_ADDR", "127.0.0.1:0")
        .env("SPANBLAME_SERVER_OTLP_HTTP_ADDR", "127.0.0.1:0")
        .env("SPANBLAME_SERVER_ZIPKIN_ADDR", "127.0.0.1:0");
    let server = crate::support::TestServer::spawn(serve, &data);
    let ready = reqwest::blocking::get(server.url("/readyz")).unwrap();
    assert_eq!(ready.status(), 200, "/readyz of the installed server");
    let format = std::fs::metadata(data.join("FORMAT")).expect("the server wrote no FORMAT");
    assert_eq!(format.uid().to_string(), uid, "the server did not run as the spanblame user");
    server.kill();

    // A purge keeps the data; asked, it removes it too.
    let purged = run_ok(&mut chroot(&root, &["dpkg", "--purge", "spanblame"]));
    assert!(purged.contains("kept /var/lib/spanblame"), "{purged}");
    assert!(data.join("FORMAT").exists(), "the purge removed the data directory");
    assert!(!binary.exists() && !root.join("etc/spanblame").exists(), "the purge left files");
    run_ok(&mut chroot(&root, &["dpkg", "-i", "/tmp/spanblame.deb"]));
    let mut purge = chroot(&root, &["dpkg", "--purge", "spanblame"]);
    run_ok(purge.env("SPANBLAME_PURGE_DATA", "yes"));
    assert!(!data.exists(), "SPANBLAME_PURGE_DATA=yes kept the data directory");
}

/// `command` inside `root`, with a plain environment.
fn chroot(root: &std::path::Path, command: &[&str]) -> Command {
    let mut chroot = Command::new("/usr/sbin/chroot");
    chroot
        .arg(root)
        .args(command)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive");
    chroot
}

/// `KEY=VALUE` settings of the Dockerfile's `ENV` instructions (continued lines included).
fn dockerfile_env(dockerfile: &str) -> Vec<(String, String)> {
    let joined = dockerfile.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|line| line.strip_prefix("ENV "))
        .flat_map(str::split_whitespace)
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// The environment every replica of `compose.yaml` gets (the `x-spanblame` block's mapping).
fn compose_env(compose: &str) -> Vec<(String, String)> {
    let block = compose.split("\nx-spanblame:").nth(1).expect("compose.yaml has no x-spanblame");
    let env = block.split("\n  environment:\n").nth(1).expect("x-spanblame has no environment");
    env.lines()
        .take_while(|line| line.starts_with("    "))
        .filter_map(|line| line.trim().split_once(": "))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// The container image and the compose fleet cannot be built here (no container engine), so
/// their settings are checked instead: the image's `ENV` on the shipped configuration is valid,
/// its health check asks `/readyz` on the port it serves, its volume is the data directory and
/// it runs as a user; each compose replica's environment is a valid cluster configuration that
/// `check-config` connects with to a real PostgreSQL and ClickHouse.
#[test]
fn the_container_image_and_the_compose_fleet_carry_valid_configurations() {
    let root = manifest_dir().join("../..");
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let image_env = dockerfile_env(&dockerfile);
    let http = &image_env.iter().find(|(k, _)| k == "SPANBLAME_SERVER_HTTP_ADDR").unwrap().1;
    let port = http.rsplit(':').next().unwrap();
    for line in [
        "COPY packaging/spanblame.toml /etc/spanblame/spanblame.toml",
        "USER spanblame",
        "VOLUME /var/lib/spanblame",
        "CMD [\"serve\", \"--config\", \"/etc/spanblame/spanblame.toml\"]",
    ] {
        assert!(dockerfile.lines().any(|l| l == line), "no `{line}` in the Dockerfile");
    }
    assert!(
        dockerfile.contains(&format!("http://127.0.0.1:{port}/readyz")),
        "the health check does not ask /readyz on {http}"
    );
    let shipped = std::fs::read_to_string(root.join("packaging/spanblame.toml")).unwrap();
    assert!(
        shipped.contains("data_dir = \"/var/lib/spanblame\""),
        "the volume is not the data dir"
    );

    let said = check_shipped_config(&image_env);
    assert!(said.contains(&format!("http           0.0.0.0:{port}")), "{said}");

    // Each replica: the image's environment, then the fleet's, with the compose hosts and
    // credentials replaced by the test's own PostgreSQL and ClickHouse (whose only user is
    // ClickHouse's `default`, without a password).
    let postgres = testbed::Postgres::start();
    let clickhouse = testbed::ClickHouse::start();
    let compose = std::fs::read_to_string(root.join("compose.yaml")).unwrap();
    let mut env = image_env.clone();
    for (key, value) in compose_env(&compose) {
        let value = match key.as_str() {
            "SPANBLAME_STORAGE_CLICKHOUSE_URL" => {
                assert_eq!(value, "http://clickhouse:8123", "the compose service's address");
                clickhouse.url()
            }
            "SPANBLAME_PG_URL" => {
                assert!(value.contains("@postgres:5432/spanblame"), "{value}");
                postgres.create_database("spanblame")
            }
            "SPANBLAME_STORAGE_CLICKHOUSE_USER" => "default".to_owned(),
            "SPANBLAME_CH_PASSWORD" => String::new(),
            _ => value,
        };
        env.push((key, value));
    }
    let said = check_shipped_config(&env);
    assert!(
        said.contains("metadata       PostgreSQL at") && said.contains(&clickhouse.url()),
        "{said}"
    );
}
