//! ClickHouse servers: one, or a cluster of single-replica shards that know each other
//! through `remote_servers` (cluster name [`ClickHouseCluster::NAME`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{binary, free_port, wait_until};

/// One `clickhouse-server` process.
pub struct ClickHouse {
    dir: tempfile::TempDir,
    http_port: u16,
    child: Option<Child>,
}

struct Ports {
    http: u16,
    tcp: u16,
    interserver: u16,
}

impl Ports {
    fn pick() -> Ports {
        Ports { http: free_port(), tcp: free_port(), interserver: free_port() }
    }
}

impl ClickHouse {
    /// A single server.
    pub fn start() -> ClickHouse {
        ClickHouse::start_with(&Ports::pick(), None)
    }

    fn start_with(ports: &Ports, cluster: Option<&[Ports]>) -> ClickHouse {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let root = dir.path();
        for sub in ["data", "tmp", "log", "user_files", "format_schemas"] {
            std::fs::create_dir_all(root.join(sub)).expect("creating the server's directories");
        }
        let remote_servers = cluster.map_or(String::new(), |nodes| {
            let shards: String = nodes
                .iter()
                .map(|node| {
                    format!(
                        "<shard><replica><host>127.0.0.1</host><port>{}</port></replica></shard>",
                        node.tcp
                    )
                })
                .collect();
            format!(
                "<remote_servers><{name}>{shards}</{name}></remote_servers>",
                name = ClickHouseCluster::NAME
            )
        });
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{root}/log/server.log</log><errorlog>{root}/log/error.log</errorlog><size>10M</size><count>1</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <interserver_http_port>{interserver}</interserver_http_port>
  <path>{root}/data/</path>
  <tmp_path>{root}/tmp/</tmp_path>
  <user_files_path>{root}/user_files/</user_files_path>
  <format_schema_path>{root}/format_schemas/</format_schema_path>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
  </users>
  <profiles><default></default></profiles>
  <quotas><default></default></quotas>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  {remote_servers}
</yandex>
"#,
            root = root.display(),
            http = ports.http,
            tcp = ports.tcp,
            interserver = ports.interserver,
        );
        std::fs::write(root.join("config.xml"), config).expect("writing the server's config");
        let mut server = ClickHouse { dir, http_port: ports.http, child: None };
        server.restart();
        server
    }

    /// The HTTP interface, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Runs `sql` and returns the answer's text (for assertions on the stored data).
    pub fn query(&self, sql: &str) -> String {
        let response = reqwest::blocking::Client::new()
            .post(self.url())
            .body(sql.to_owned())
            .send()
            .expect("ClickHouse answers");
        let status = response.status();
        let text = response.text().unwrap_or_default();
        assert!(status.is_success(), "`{sql}` failed: {text}");
        text
    }

    /// Stops the server at once (SIGKILL): an engine that vanishes.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts the server (again) on the same port and data; returns once it answers.
    pub fn restart(&mut self) {
        self.kill();
        let binary = binary("SPANBLAME_TEST_CLICKHOUSE", "clickhouse-server");
        let root = self.dir.path();
        let child = Command::new(&binary)
            .arg(format!("--config-file={}", root.join("config.xml").display()))
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        self.child = Some(child);
        let url = format!("{}/?query=SELECT%201", self.url());
        wait_until("clickhouse-server", &self.log(), || {
            reqwest::blocking::get(&url).is_ok_and(|r| r.status().is_success())
        });
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("log/error.log")
    }

    /// The server's data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Shards that are each one server, all knowing the cluster [`ClickHouseCluster::NAME`].
pub struct ClickHouseCluster {
    pub nodes: Vec<ClickHouse>,
}

impl ClickHouseCluster {
    /// The cluster's name in every node's `remote_servers`.
    pub const NAME: &'static str = "spanblame_test";

    pub fn start(shards: usize) -> ClickHouseCluster {
        let ports: Vec<Ports> = (0..shards).map(|_| Ports::pick()).collect();
        let nodes = ports.iter().map(|p| ClickHouse::start_with(p, Some(&ports))).collect();
        ClickHouseCluster { nodes }
    }

    /// Every node's HTTP URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(ClickHouse::url).collect()
    }
}
