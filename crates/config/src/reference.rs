//! The configuration reference (`docs/configuration.md`): every key of [`Config`] with its type,
//! default, environment variable, an example and what it does, generated from the types' JSON
//! schema (schemars reads the doc comments, serde's defaults and the `example`s), so the
//! reference changes with the code. `cargo xtask docs` writes it; a test fails when it differs.

use std::fmt::Write as _;

use serde_json::Value;

use super::{Config, SECTIONS, SUBTABLES};

/// The order tables appear in; a table missing here comes last, so none is ever left out.
const ORDER: &[&str] = &[
    "server",
    "storage",
    "retention",
    "ingest",
    "auth",
    "teams",
    "deploys",
    "integrations",
    "repositories",
    "services",
    "mirrors",
    "gate",
    "detection",
    "notifications",
    "alerts",
    "span_metrics",
];

/// One key as the reference shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// Its path from the top: `["auth", "oidc", "issuer"]`.
    pub path: Vec<String>,
    /// `duration`, `size`, `address`, `string`, `integer`, `list of strings`...
    pub kind: String,
    /// The default as TOML, or `None` when unset by default (or required).
    pub default: Option<String>,
    pub required: bool,
    /// `SPANBLAME_<SECTION>_<KEY>`, when the environment can set it.
    pub env: Option<String>,
    /// A TOML value to write: the documented example, else the default.
    pub example: Option<String>,
    pub description: String,
}

/// One table: `[server]`, `[auth.oidc]` or `[[integrations]]`.
#[derive(Debug, Clone)]
pub struct Table {
    pub path: Vec<String>,
    pub array: bool,
    pub description: String,
    pub keys: Vec<Key>,
}

impl Table {
    /// `[auth.oidc]` or `[[ingest.tokens]]`.
    pub fn header(&self) -> String {
        let dotted = self.path.join(".");
        if self.array { format!("[[{dotted}]]") } else { format!("[{dotted}]") }
    }
}

/// Every table of the configuration, in reference order.
pub fn tables() -> Vec<Table> {
    let schema = schemars::schema_for!(Config);
    let root = schema.as_value();
    let defs = root.get("$defs").cloned().unwrap_or(Value::Null);
    let mut names: Vec<&String> =
        root["properties"].as_object().map(|p| p.keys().collect()).unwrap_or_default();
    names.sort_by_key(|name| ORDER.iter().position(|o| o == name).unwrap_or(ORDER.len()));
    let mut tables = Vec::new();
    for name in names {
        walk(&defs, vec![name.clone()], &root["properties"][name.as_str()], &mut tables);
    }
    tables
}

/// Adds the table `property` describes (and the tables inside it) to `tables`.
fn walk(defs: &Value, path: Vec<String>, property: &Value, tables: &mut Vec<Table>) {
    let (object, array) = match table_of(defs, property) {
        Some(found) => found,
        None => return,
    };
    // What the containing key says of it first (`[[ingest.tokens]]`), else its type's own doc.
    let description = text(property.get("description").or(object.get("description")));
    let mut table = Table { path: path.clone(), array, description, keys: Vec::new() };
    let required: Vec<&str> = object["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut inner = Vec::new();
    for (name, key) in object["properties"].as_object().into_iter().flatten() {
        let mut key_path = path.clone();
        key_path.push(name.clone());
        if table_of(defs, key).is_some() {
            inner.push((key_path, key));
            continue;
        }
        table.keys.push(describe(defs, key_path, key, required.contains(&name.as_str()), array));
    }
    if !table.keys.is_empty() || inner.is_empty() {
        tables.push(table);
    }
    for (key_path, key) in inner {
        walk(defs, key_path, key, tables);
    }
}

/// The object schema a property holds as a table (`[x]`, optional `[x]`, or `[[x]]`), and
/// whether it is an array of tables.
fn table_of<'a>(defs: &'a Value, property: &'a Value) -> Option<(&'a Value, bool)> {
    let resolved = resolve(defs, property);
    if resolved.get("properties").is_some() {
        return Some((resolved, false));
    }
    if let Some(items) = resolved.get("items") {
        let item = resolve(defs, items);
        return item.get("properties").is_some().then_some((item, true));
    }
    None
}

/// A `$ref` followed into `$defs`, or an `Option<T>` (`anyOf [T, null]`) unwrapped to `T`.
fn resolve<'a>(defs: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(name) = schema.get("$ref").and_then(Value::as_str) {
        return resolve(defs, &defs[name.trim_start_matches("#/$defs/")]);
    }
    if let Some(options) = schema.get("anyOf").and_then(Value::as_array) {
        let not_null: Vec<&Value> =
            options.iter().filter(|o| o.get("type") != Some(&Value::from("null"))).collect();
        if let [one] = not_null.as_slice() {
            return resolve(defs, one);
        }
    }
    schema
}

fn describe(
    defs: &Value,
    path: Vec<String>,
    schema: &Value,
    required: bool,
    in_array: bool,
) -> Key {
    let resolved = resolve(defs, schema);
    let default = schema.get("default").filter(|d| !d.is_null());
    let example = schema.get("examples").and_then(|e| e.get(0)).or(default);
    let kind = kind(resolved, &path, example);
    let scalar = !kind.starts_with("list");
    let env = (!in_array && (scalar || kind.contains("comma-separated")))
        .then(|| env_var(&path))
        .flatten();
    Key {
        description: text(schema.get("description").or(resolved.get("description"))),
        default: default.map(toml_literal),
        example: example.map(toml_literal),
        required,
        env,
        kind,
        path,
    }
}

/// The environment variable that sets `path`, as [`crate::load`] reads them: a key of a
/// section, or of one of its sub-tables.
fn env_var(path: &[String]) -> Option<String> {
    let section = path.first()?;
    if !SECTIONS.contains(&section.as_str()) {
        return None;
    }
    let addressable = match path {
        [_, _] => true,
        [section, table, _] => SUBTABLES.contains(&(section.as_str(), table.as_str())),
        _ => false,
    };
    addressable.then(|| format!("SPANBLAME_{}", path.join("_").to_ascii_uppercase()))
}

/// What a value is, in words: the JSON type, refined by the name and the value shown.
fn kind(schema: &Value, path: &[String], example: Option<&Value>) -> String {
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let name = path.last().map(String::as_str).unwrap_or("");
    if schema.get("anyOf").is_some() {
        return "list of strings (or one comma-separated string)".to_owned();
    }
    if types.contains(&"array") {
        return "list of strings".to_owned();
    }
    if types.contains(&"boolean") {
        return "boolean".to_owned();
    }
    if types.contains(&"integer") {
        return "integer".to_owned();
    }
    if types.contains(&"number") {
        return "number".to_owned();
    }
    if name.ends_with("_env") {
        return "environment variable name".to_owned();
    }
    if name.ends_with("_file") || name.ends_with("_dir") || name == "path" {
        return "path".to_owned();
    }
    let value = example.and_then(Value::as_str).unwrap_or("");
    if value.parse::<std::net::SocketAddr>().is_ok() {
        "address".to_owned()
    } else if super::parse_duration_nanos(value).is_ok() {
        "duration".to_owned()
    } else if value.contains(|c: char| c.is_ascii_alphabetic()) && super::parse_bytes(value).is_ok()
    {
        "size".to_owned()
    } else {
        "string".to_owned()
    }
}

/// A JSON value written as TOML.
fn toml_literal(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{text:?}"),
        Value::Array(items) => {
            format!("[{}]", items.iter().map(toml_literal).collect::<Vec<_>>().join(", "))
        }
        other => other.to_string(),
    }
}

/// A doc comment as one paragraph.
fn text(description: Option<&Value>) -> String {
    let raw = description.and_then(Value::as_str).unwrap_or("");
    raw.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How values are written and overridden, ahead of the tables.
const RULES: &str = "\
# Configuration reference

Generated from the configuration's types (`crates/config`) by `cargo xtask docs`; a test fails \
when this file and the code differ. The README's \"Configuration\" section has a short file to \
start from.

## How values are set

- **The file.** `spanblame serve --config spanblame.toml` (and `check-config`, `migrate`) read \
one TOML file; without one, every key has its default. Unknown keys are errors. \
`spanblame check-config --config FILE` validates the file and the environment and names every \
problem with its key and the fix.
- **The environment.** A key of a section is overridden by `SPANBLAME_<SECTION>_<KEY>`: \
`SPANBLAME_STORAGE_DATA_DIR=/var/lib/spanblame` sets `[storage] data_dir`; keys of \
`[auth.oidc]` and `[auth.proxy]` by `SPANBLAME_AUTH_OIDC_<KEY>` and `SPANBLAME_AUTH_PROXY_<KEY>`. \
A value that reads as a TOML number or boolean (`42`, `true`) is one; anything else is a string. \
The environment wins over the file, and `serve`'s flags (`--data-dir`, `--http-addr`, \
`--otlp-grpc-addr`, `--otlp-http-addr`, `--zipkin-addr`) win over both. `SPANBLAME_CONFIG` names \
the file when `--config` does not.
- **What the environment cannot set.** Lists (`gate.required`, `auth.oidc.scopes`...) are \
written in the file, except `storage.clickhouse_nodes`, which also takes one comma-separated \
string. Arrays of tables (`[[teams]]`, `[[integrations]]`, `[[repositories]]`, `[[services]]`, \
`[[ingest.tokens]]`, `[[deploys.tokens]]`, `[[alerts.alertmanager]]`, `[[alerts.webhook]]`) \
come from the file only; their secrets still come from the environment, through their `*_env` \
keys. Other `SPANBLAME_*` variables (`SPANBLAME_LOG`, and those `*_env` keys name) are not \
overrides.
- **Secrets never go in the file.** Each secret has a pair of keys: `<name>_env` names an \
environment variable that holds it, `<name>_file` a file that holds it (its surrounding \
whitespace is trimmed, so `echo` and editors are safe). Set one of the two, not both. Tokens and \
webhook secrets (`[[ingest.tokens]]`, `[[deploys.tokens]]`, `[[integrations]] secret_env`) must \
be at least 16 characters: `openssl rand -hex 32` makes a good one. An alert signing secret is \
`whsec_` and the base64 of 24 to 64 random bytes: `echo whsec_$(openssl rand -base64 32)`.
- **Durations** are a whole number and a unit: `ms`, `s`, `m`, `h`, `d` or `w` (`500ms`, `90s`, \
`7d`). **Sizes** are a whole number and `B`, `KB`, `MB`, `GB`, `TB`, `KiB`, `MiB`, `GiB` or \
`TiB` (`16MiB`, `50GiB`). **Addresses** are `IP:port`; port 0 lets the system pick one.
";

/// The whole reference, as Markdown.
pub fn markdown() -> String {
    let mut out = String::from(RULES);
    for table in tables() {
        let _ = write!(out, "\n## `{}`\n\n", table.header());
        if !table.description.is_empty() {
            let _ = writeln!(out, "{}\n", table.description);
        }
        if table.array {
            let _ = writeln!(
                out,
                "An array of tables: write one `{}` per entry, in the file only.\n",
                table.header()
            );
        }
        for key in &table.keys {
            let name = key.path.last().map(String::as_str).unwrap_or("");
            let default = match (&key.default, key.required) {
                (_, true) => "required".to_owned(),
                (Some(default), false) => format!("default `{default}`"),
                (None, false) => "unset by default".to_owned(),
            };
            let env = match &key.env {
                Some(var) => format!("`{var}`"),
                None => "file only".to_owned(),
            };
            let _ = writeln!(out, "- **`{name}`**: {}, {default}; {env}.", key.kind);
            if !key.description.is_empty() {
                let _ = writeln!(out, "  {}", key.description);
            }
            if let Some(example) = &key.example {
                let _ = writeln!(out, "  Example: `{name} = {example}`");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
