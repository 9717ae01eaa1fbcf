//! PostgreSQL servers from Debian's `postgresql-15` (`SPANBLAME_TEST_POSTGRES` names its
//! `bin` directory). PostgreSQL refuses to run as root, so under root the server runs as the
//! package's `postgres` user, in a data directory handed to that user.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{binary, free_port, wait_until};

/// One `postgres` server with trust authentication for `postgres` on 127.0.0.1.
pub struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    child: Option<Child>,
}

impl Postgres {
    /// A new cluster (`initdb`), started.
    pub fn start() -> Postgres {
        let bin = binary("SPANBLAME_TEST_POSTGRES", "postgresql-15");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let owner = server_user();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("handing the data directory to the postgres user");
        }
        let server = Postgres { dir, port: free_port(), bin, owner, child: None };
        let log = server.log();
        let status = server
            .command("initdb")
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-sync"])
            .arg("--pgdata")
            .arg(server.data())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("creating the initdb log"))
            .status()
            .unwrap_or_else(|e| panic!("running initdb from {}: {e}", server.bin.display()));
        assert!(
            status.success(),
            "initdb failed: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let mut server = server;
        server.restart();
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates database `name`; returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let status = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", name])
            .status()
            .expect("running createdb");
        assert!(status.success(), "createdb {name} failed");
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops every server process at once (SIGKILL to the process group): a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status().ok();
            child.wait().ok();
        }
    }

    /// Starts the server (again) on the same port and data; returns once it accepts
    /// connections (after crash recovery, if it was killed).
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("opening the server log");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k", ""])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "max_connections=200", "-c", "shared_buffers=32MB"])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting postgres from {}: {e}", self.bin.display()));
        self.child = Some(child);
        let (ready, port) = (self.bin.join("pg_isready"), self.port.to_string());
        wait_until("postgres", &self.log(), || {
            Command::new(&ready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
                .status()
                .is_ok_and(|s| s.success())
        });
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// A program from the server's `bin` directory, as the server's user.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command.current_dir(self.dir.path());
        command
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Under root, the `postgres` user's uid and gid (from `/etc/passwd`); otherwise `None`.
fn server_user() -> Option<(u32, u32)> {
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !is_root {
        return None;
    }
    let passwd = std::fs::read_to_string(Path::new("/etc/passwd")).unwrap_or_default();
    let entry = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"postgres") && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    });
    Some(entry.expect(
        "running as root, PostgreSQL needs the `postgres` user that Debian's postgresql-15 creates",
    ))
}
