//! The reference against the code: the checked-in file is current, every key is described and
//! has an example, every example is a valid value of its key, every environment variable it
//! names sets that key, and the README's TOML is configuration that loads.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::*;

fn workspace_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn keys() -> Vec<Key> {
    tables().into_iter().flat_map(|table| table.keys).collect()
}

/// The value at `path` (array tables: their first entry) in a configuration as JSON.
fn at<'a>(config: &'a Value, path: &[String]) -> &'a Value {
    let mut value = config;
    for part in path {
        value = &value[part.as_str()];
        if let Value::Array(entries) = value
            && entries.first().is_some_and(Value::is_object)
        {
            value = &entries[0];
        }
    }
    value
}

#[test]
fn the_checked_in_reference_is_current() {
    let path = workspace_file("docs/configuration.md");
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = markdown();
    if written != generated {
        let first = written
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(written.lines().count().min(generated.lines().count()));
        panic!(
            "{} is stale (first difference at line {}: `{}`); run `cargo xtask docs` and commit it",
            path.display(),
            first + 1,
            generated.lines().nth(first).unwrap_or("(end of file)")
        );
    }
}

#[test]
fn every_key_is_described_and_has_an_example() {
    let keys = keys();
    assert!(keys.len() > 150, "only {} keys: the schema walk lost some", keys.len());
    for key in &keys {
        let name = key.path.join(".");
        assert!(!key.description.is_empty(), "`{name}` has no doc comment");
        assert!(
            key.example.is_some(),
            "`{name}` has neither a default nor `#[schemars(example = ...)]`"
        );
    }
    let with = |path: &str| keys.iter().find(|k| k.path.join(".") == path).unwrap().clone();
    let addr = with("server.http_addr");
    assert_eq!(addr.kind, "address");
    assert_eq!(addr.default.as_deref(), Some("\"127.0.0.1:7420\""));
    assert_eq!(addr.env.as_deref(), Some("SPANBLAME_SERVER_HTTP_ADDR"));
    assert_eq!(with("retention.spans").kind, "duration");
    assert_eq!(with("ingest.max_body").kind, "size");
    assert_eq!(with("auth.oidc.issuer").env.as_deref(), Some("SPANBLAME_AUTH_OIDC_ISSUER"));
    assert!(with("auth.oidc.issuer").required);
    assert_eq!(with("integrations.kind").env, None, "arrays of tables are file only");
    assert_eq!(with("gate.required").env, None, "lists are file only");
    assert!(with("storage.clickhouse_nodes").env.is_some(), "a comma-separated list");
}

#[test]
fn every_example_is_a_valid_value_of_its_key() {
    let mut text = String::new();
    for table in tables() {
        text.push_str(&format!("{}\n", table.header()));
        for key in &table.keys {
            let name = key.path.last().unwrap();
            text.push_str(&format!("{name} = {}\n", key.example.as_ref().unwrap()));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("every-key.toml");
    std::fs::write(&file, &text).unwrap();
    let config =
        crate::load(Some(&file), &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:#}\nin:\n{text}"));
    let loaded = serde_json::to_value(&config).unwrap();
    let written = serde_json::to_value(toml::from_str::<toml::Table>(&text).unwrap()).unwrap();
    for key in keys() {
        assert_eq!(at(&loaded, &key.path), at(&written, &key.path), "`{}`", key.path.join("."));
    }
}

/// A key's example as an environment variable's text, and as the JSON it loads as.
fn env_value(key: &Key) -> (String, Value) {
    let example: toml::Value =
        toml::from_str::<toml::Table>(&format!("v = {}", key.example.as_ref().unwrap()))
            .unwrap()
            .remove("v")
            .unwrap();
    let raw = match &example {
        toml::Value::String(text) => text.clone(),
        toml::Value::Array(items) => {
            items.iter().filter_map(toml::Value::as_str).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    };
    let loaded = match serde_json::to_value(&example).unwrap() {
        Value::Array(_) => Value::String(raw.clone()),
        value => value,
    };
    (raw, loaded)
}

#[test]
fn every_environment_variable_sets_its_key() {
    let keys = keys();
    let mut checked = 0;
    for key in &keys {
        let Some(var) = &key.env else { continue };
        let (raw, expected) = env_value(key);
        // A sub-table's required keys come along (`[auth.oidc]` needs its `issuer`).
        let table = &key.path[..key.path.len() - 1];
        let mut env: BTreeMap<String, String> = keys
            .iter()
            .filter(|other| other.required && other.path.starts_with(table))
            .filter_map(|other| Some((other.env.clone()?, env_value(other).0)))
            .collect();
        env.insert(var.clone(), raw.clone());
        let config = crate::load(None, &env).unwrap_or_else(|e| panic!("{var}={raw}: {e:#}"));
        let loaded = serde_json::to_value(&config).unwrap();
        assert_eq!(at(&loaded, &key.path), &expected, "{var}={raw}");
        checked += 1;
    }
    assert!(checked > 80, "only {checked} keys have an environment variable");
}

#[test]
fn the_readme_toml_is_configuration_and_its_configuration_block_works_as_is() {
    let readme = std::fs::read_to_string(workspace_file("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(blocks.len() >= 5, "the README's TOML blocks were not found");
    for block in &blocks {
        let table: toml::Table =
            toml::from_str(block).unwrap_or_else(|e| panic!("a README TOML block: {e}\n{block}"));
        Config::deserialize(toml::Value::Table(table))
            .unwrap_or_else(|e| panic!("a README TOML block is no configuration: {e}\n{block}"));
    }
    let section = readme.split("\n## Configuration\n").nth(1).unwrap();
    let block = blocks.iter().find(|b| section.contains(b.as_str())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spanblame.toml");
    std::fs::write(&file, block).unwrap();
    let config = crate::load(Some(&file), &BTreeMap::new()).unwrap();
    crate::resolve(&config, &BTreeMap::new())
        .unwrap_or_else(|e| panic!("the README's configuration, copied as is: {e:#}"));
    // Its values are the defaults (a key unset by default may show an example).
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let shown = serde_json::to_value(toml::from_str::<toml::Table>(block).unwrap()).unwrap();
    for (section, keys) in shown.as_object().unwrap() {
        for (name, value) in keys.as_object().unwrap() {
            let default = &defaults[section][name];
            assert!(
                default.is_null() || default == value,
                "the README shows `{section}.{name} = {value}`, but the default is {default}"
            );
        }
    }
}
