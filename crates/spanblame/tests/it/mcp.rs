//! `spanblame mcp` over stdio, driven by the MCP SDK's own client as an assistant would start
//! it: it relays to the running server with the token it was given, so the tools and their
//! scope are the server's; a bad token fails to start with a message saying what to check.

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::TokioChildProcess;
use serde_json::{Map, json};

use crate::support::TestServer;

pub(crate) fn mcp_command(server: &TestServer, token: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_spanblame"));
    command
        .arg("mcp")
        .env("SPANBLAME_SERVER", server.url(""))
        .env("SPANBLAME_TOKEN", token)
        .env("SPANBLAME_LOG", "warn");
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn an_assistant_on_stdio_reaches_the_servers_tools_as_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let created = reqwest::Client::new()
        .post(server.url("/api/v1/tokens"))
        .json(&json!({"name": "assistant", "scopes": ["read"], "services": ["checkout"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let token =
        created.json::<serde_json::Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();

    let child = TokioChildProcess::new(mcp_command(&server, &token)).unwrap();
    let client = ClientConfig::default().serve(child).await.expect("initialize over stdio");
    let info = client.peer().peer_info().expect("the server described itself");
    assert_eq!(info.server_info.as_ref().map(|s| s.name.as_str()), Some("spanblame"));
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "draft_rollback"), "{tools:?}");

    let listed = client
        .call_tool(CallToolRequestParams::new("list_findings").with_arguments(Map::new()))
        .await
        .unwrap();
    assert_eq!(listed.structured_content.unwrap(), json!({"findings": []}));
    let mut arguments = Map::new();
    arguments.insert("id".into(), json!(42));
    let missing = client
        .call_tool(CallToolRequestParams::new("get_finding").with_arguments(arguments))
        .await
        .unwrap();
    assert_eq!(missing.is_error, Some(true));
    client.cancel().await.unwrap();

    // The server's audit log has the call, as the token.
    let audit: serde_json::Value =
        reqwest::get(server.url("/api/v1/audit")).await.unwrap().json().await.unwrap();
    let calls: Vec<&serde_json::Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "mcp.get_finding")
        .collect();
    assert_eq!(calls.len(), 1, "{audit}");
    let prefix = token.split('_').nth(1).unwrap();
    assert_eq!(calls[0]["principal"], format!("token:{prefix}"), "{}", calls[0]);

    // A wrong token: the relay cannot connect, and says what to check.
    let output = mcp_command(&server, "sbt_00000000_wrong")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SPANBLAME_TOKEN"), "{stderr}");
}
