//! `config`: the merged configuration, secrets redacted (as the types serialize them), and
//! where each value came from: the configuration file, an environment variable, or the
//! default.

use std::collections::BTreeSet;

use cache_core::app::Context;
use cache_core::config::{self, ConfigSource, ProcessEnv};
use cache_core::env::EnvVars;
use cache_core::exit;
use cache_core::output::Format;
use serde_json::{Value, json};

/// The key each environment override sets, and the table it may create.
fn env_key(var: &str) -> Option<(&'static str, &'static str)> {
    match var {
        v if v == EnvVars::REDIS_URL => Some(("redis[0].url", "redis[0]")),
        v if v == EnvVars::DATABASE_URL => Some(("postgres[0].url", "postgres[0]")),
        v if v == EnvVars::MEM0_URL => Some(("memory[0].url", "memory[0]")),
        v if v == EnvVars::MEM0_API_KEY => Some(("memory[0].api_key", "memory[0]")),
        v if v == EnvVars::PROJECT_NAME => Some(("project_name", "project_name")),
        v if v == EnvVars::CACHE_API_TOKEN => Some(("api.token", "api")),
        _ => None,
    }
}

/// Flattens a document into `(dotted key, leaf)`: tables by name, arrays of tables by index,
/// other arrays and scalars as leaves.
pub fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        leaf => out.push((prefix.to_owned(), leaf.clone())),
    }
}

/// Runs `config`.
pub fn run(ctx: &Context) -> anyhow::Result<u8> {
    let loaded = config::load(ctx.common.config.as_deref(), &ProcessEnv, ctx.state.root())?;
    let mut entries = Vec::new();
    flatten("", &serde_json::to_value(&loaded.config)?, &mut entries);
    let mut in_file = BTreeSet::new();
    if let ConfigSource::File(path) = &loaded.source {
        let text = std::fs::read_to_string(path)?;
        let doc: toml::Table = toml::from_str(&text)?;
        let mut file_entries = Vec::new();
        flatten("", &serde_json::to_value(doc)?, &mut file_entries);
        in_file.extend(file_entries.into_iter().map(|(k, _)| k));
    }
    let env: Vec<(&str, &str, &str)> =
        loaded.env_overrides.iter().filter_map(|v| env_key(v).map(|(key, table)| (*v, key, table))).collect();
    let source = |key: &str| -> String {
        for (var, k, table) in &env {
            let created = !in_file.iter().any(|f| f.starts_with(table));
            if key == *k || (created && key.starts_with(&format!("{table}."))) {
                return format!("environment ({var})");
            }
        }
        if in_file.contains(key) || in_file.iter().any(|f| f.starts_with(&format!("{key}["))) {
            "file".into()
        } else {
            "default".into()
        }
    };
    let rows: Vec<Value> = entries
        .iter()
        .map(|(k, v)| {
            let shown = match v {
                Value::String(s) => cache_core::redact::scrub(s).into_owned(),
                other => cache_core::redact::scrub(&other.to_string()).into_owned(),
            };
            json!({ "key": k, "value": shown, "source": source(k) })
        })
        .collect();
    let file = match &loaded.source {
        ConfigSource::File(p) => json!(p),
        ConfigSource::Embedded => Value::Null,
    };
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&json!({ "file": file, "environment": loaded.env_overrides, "entries": rows }))?;
        return Ok(exit::SUCCESS);
    }
    let mut table = printer.table();
    table.set_header(["Key", "Value", "From"]);
    for r in &rows {
        table.add_row(vec![
            r["key"].as_str().unwrap_or_default().to_owned(),
            r["value"].as_str().unwrap_or_default().to_owned(),
            r["source"].as_str().unwrap_or_default().to_owned(),
        ]);
    }
    let from = match &loaded.source {
        ConfigSource::File(p) => format!("configuration file {}", p.display()),
        ConfigSource::Embedded => "the embedded default (no configuration file)".to_owned(),
    };
    printer.always(&format!("{from}; secrets are shown as ********\n{table}"))?;
    Ok(exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_names_tables_and_arrays_of_tables() {
        let mut out = Vec::new();
        flatten("", &json!({ "a": { "b": 1 }, "r": [{ "url": "x" }], "list": ["p", "q"] }), &mut out);
        let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a.b", "r[0].url", "list"]);
    }
}
