//! `connections`: Redis CLIENT LIST summarised (by address, name, idle time, blocked) against
//! `maxclients`; PostgreSQL `pg_stat_activity` by state, with every session idle in a
//! transaction and its age, against `max_connections`; and the client settings the toolkit uses.

use std::collections::BTreeMap;

use cache_core::app::Context;
use cache_core::clients::postgres;
use cache_core::config::{PostgresTarget, RedisTarget};
use cache_core::messages::one_line;
use cache_core::output::Format;
use cache_core::tier::{Tier, selected};
use serde_json::{Value, json};

use crate::refused;

/// One CLIENT LIST line as `field → value`.
pub fn client_fields(line: &str) -> BTreeMap<&str, &str> {
    line.split_whitespace().filter_map(|kv| kv.split_once('=')).collect()
}

/// Summarises CLIENT LIST.
pub fn summarise_clients(list: &str) -> Value {
    let mut by_addr: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    let mut idle = [0u64; 3];
    let (mut total, mut blocked) = (0u64, 0u64);
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let f = client_fields(line);
        total += 1;
        let addr = f.get("addr").copied().unwrap_or("?");
        let ip = addr.rsplit_once(':').map_or(addr, |(ip, _)| ip);
        *by_addr.entry(ip.to_owned()).or_default() += 1;
        let name = f.get("name").copied().filter(|n| !n.is_empty()).unwrap_or("(no name)");
        *by_name.entry(name.to_owned()).or_default() += 1;
        let secs: u64 = f.get("idle").and_then(|i| i.parse().ok()).unwrap_or(0);
        idle[match secs {
            0..60 => 0,
            60..3600 => 1,
            _ => 2,
        }] += 1;
        if f.get("flags").is_some_and(|fl| fl.contains('b')) {
            blocked += 1;
        }
    }
    json!({
        "total": total,
        "blocked": blocked,
        "by_address": by_addr,
        "by_name": by_name,
        "idle": { "under_1m": idle[0], "1m_to_1h": idle[1], "over_1h": idle[2] },
    })
}

async fn redis_section(t: &RedisTarget) -> Value {
    let name = format!("redis/{}", t.name);
    let primaries = match cache_core::keyspace::primaries(t).await {
        Ok(p) => p,
        Err(e) => return crate::failed(&name, &e),
    };
    // Every primary's clients, and their limits added up.
    let (mut list, mut maxclients) = (String::new(), None::<u64>);
    let mut notes: Vec<String> = primaries.missing.iter().map(|m| format!("not read: {m}")).collect();
    // Every primary, several at once (the target's `concurrency`).
    let replies = primaries
        .visit(|node| async move {
            let mut conn = node.conn.clone();
            (node, redis::cmd("CLIENT").arg("LIST").query_async::<String>(&mut conn).await)
        })
        .await;
    for (node, reply) in replies {
        if let Some(max) = node.info.get("maxclients").and_then(|m| m.parse::<u64>().ok()) {
            maxclients = Some(maxclients.unwrap_or(0) + max);
        }
        match reply {
            Ok(text) => {
                list.push_str(&text);
                if !text.ends_with('\n') {
                    list.push('\n');
                }
            }
            Err(e) => notes.push(refused(&crate::on("CLIENT LIST", node.node.as_deref()), &e)),
        }
    }
    // A refusal repeated by every primary is one line with its count.
    let note = (!notes.is_empty()).then(|| one_line(&notes));
    let clients = match note {
        Some(note) if list.is_empty() => json!({ "note": note, "maxclients": maxclients }),
        note => {
            let mut s = summarise_clients(&list);
            if let Some(max) = maxclients {
                s["maxclients"] = json!(max);
                s["usage"] = json!(s["total"].as_f64().unwrap_or(0.0) / max as f64);
            }
            if let Some(note) = note {
                s["note"] = json!(note);
            }
            s
        }
    };
    json!({
        "target": name,
        "coverage": primaries.coverage(),
        "clients": clients,
        "toolkit_client": { "connect_timeout_ms": t.connect_timeout.as_millis() as u64, "response_timeout_ms": t.timeout.as_millis() as u64,
                             "connections": "one multiplexed connection per target and process" },
    })
}

async fn postgres_section(t: &PostgresTarget) -> Value {
    let name = format!("postgres/{}", t.name);
    let db = match postgres::connect(t).await {
        Ok(d) => d,
        Err(e) => return crate::failed(&name, &e),
    };
    let max: Option<i64> = db
        .query_one("SELECT setting::bigint FROM pg_settings WHERE name = 'max_connections'", &[])
        .await
        .ok()
        .map(|r| r.get(0));
    let by_state = match db
        .query(
            "SELECT coalesce(state, '(none)'), count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
             GROUP BY 1 ORDER BY 2 DESC",
            &[],
        )
        .await
    {
        Ok(rows) => json!(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1))).collect::<BTreeMap<_, _>>()),
        Err(e) => json!({ "note": postgres::error_text(&e) }),
    };
    let idle_in_tx = match db
        .query(
            "SELECT pid, coalesce(usename, ''), coalesce(datname, ''), coalesce(client_addr::text, 'local'), \
                    extract(epoch FROM now() - state_change)::float8, state, left(regexp_replace(query, '\\s+', ' ', 'g'), 80) \
               FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' ORDER BY 5 DESC",
            &[],
        )
        .await
    {
        Ok(rows) => json!(rows.iter().map(|r| json!({
            "pid": r.get::<_, i32>(0), "user": r.get::<_, String>(1), "database": r.get::<_, String>(2),
            "client": r.get::<_, String>(3), "age_seconds": r.get::<_, f64>(4), "state": r.get::<_, String>(5),
            "last_query": cache_core::redact::scrub(&r.get::<_, String>(6)).into_owned(),
        })).collect::<Vec<_>>()),
        Err(e) => json!({ "note": postgres::error_text(&e) }),
    };
    let total: i64 = by_state.as_object().map_or(0, |m| m.values().filter_map(Value::as_i64).sum());
    json!({
        "target": name,
        "max_connections": max,
        "client_backends": total,
        "usage": max.map(|m| total as f64 / m as f64),
        "by_state": by_state,
        "idle_in_transaction": idle_in_tx,
        "toolkit_client": { "connect_timeout_ms": t.connect_timeout.as_millis() as u64, "statement_timeout_ms": t.timeout.as_millis() as u64,
                             "connections": "one per target and process" },
    })
}

/// Runs `connections`.
pub async fn run(ctx: &Context) -> anyhow::Result<u8> {
    let filters = &ctx.common.tiers;
    let redis = futures::future::join_all(
        ctx.config.redis.iter().filter(|t| selected(filters, Tier::Redis, &t.name)).map(redis_section),
    );
    let pg = futures::future::join_all(
        ctx.config.postgres.iter().filter(|t| selected(filters, Tier::Postgres, &t.name)).map(postgres_section),
    );
    let (redis, pg) = tokio::join!(redis, pg);
    // Every target unreachable: 4; any section with an error: 1.
    let code = crate::code(redis.iter().chain(&pg));
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&json!({ "redis": redis, "postgres": pg }))?;
        return Ok(code);
    }
    let mut out = String::new();
    for s in &redis {
        let target = s["target"].as_str().unwrap_or_default();
        if let Some(e) = s["error"].as_str() {
            out.push_str(&format!("{target}: {e}\n\n"));
            continue;
        }
        let c = &s["clients"];
        if let (Some(n), false) = (c["note"].as_str(), c["total"].is_number()) {
            out.push_str(&format!("{target}: {n}\n\n"));
            continue;
        }
        out.push_str(&format!(
            "{target}: {} clients of maxclients {} ({}), {} blocked; idle <1m {}, 1m-1h {}, >1h {}\n",
            c["total"],
            c["maxclients"],
            c["usage"].as_f64().map_or("n/a".into(), |u| format!("{:.1}%", u * 100.0)),
            c["blocked"],
            c["idle"]["under_1m"],
            c["idle"]["1m_to_1h"],
            c["idle"]["over_1h"]
        ));
        let mut t = printer.table();
        t.set_header(["Address", "Clients"]);
        for (addr, n) in c["by_address"].as_object().into_iter().flatten() {
            t.add_row(vec![addr.clone(), n.to_string()]);
        }
        let mut names = printer.table();
        names.set_header(["Client name", "Clients"]);
        for (name, n) in c["by_name"].as_object().into_iter().flatten() {
            names.add_row(vec![name.clone(), n.to_string()]);
        }
        out.push_str(&format!("{t}\n{names}\n"));
        if let Some(n) = c["note"].as_str() {
            out.push_str(&format!("note: {n}\n"));
        }
        out.push('\n');
    }
    for s in &pg {
        let target = s["target"].as_str().unwrap_or_default();
        if let Some(e) = s["error"].as_str() {
            out.push_str(&format!("{target}: {e}\n\n"));
            continue;
        }
        out.push_str(&format!(
            "{target}: {} client backends of max_connections {} ({})\n",
            s["client_backends"],
            s["max_connections"],
            s["usage"].as_f64().map_or("n/a".into(), |u| format!("{:.1}%", u * 100.0))
        ));
        let mut t = printer.table();
        t.set_header(["State", "Backends"]);
        for (state, n) in s["by_state"].as_object().into_iter().flatten() {
            t.add_row(vec![state.clone(), n.to_string()]);
        }
        out.push_str(&format!("{t}\n"));
        if let Some(list) = s["idle_in_transaction"].as_array().filter(|l| !l.is_empty()) {
            let mut t = printer.table();
            t.set_header(["Pid", "User", "Database", "Client", "Idle in transaction for", "Last query"]);
            for x in list {
                t.add_row(vec![
                    x["pid"].to_string(),
                    x["user"].as_str().unwrap_or_default().to_owned(),
                    x["database"].as_str().unwrap_or_default().to_owned(),
                    x["client"].as_str().unwrap_or_default().to_owned(),
                    format!("{:.0} s", x["age_seconds"].as_f64().unwrap_or(0.0)),
                    x["last_query"].as_str().unwrap_or_default().to_owned(),
                ]);
            }
            out.push_str(&format!("Sessions idle in a transaction (they hold locks and block VACUUM):\n{t}\n"));
        }
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("no Redis or PostgreSQL target configured\n");
    }
    printer.always(out.trim_end())?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_list_summary() {
        let list = "id=3 addr=127.0.0.1:5000 laddr=127.0.0.1:6379 fd=8 name=app age=9 idle=0 flags=N db=0 cmd=get\n\
                    id=4 addr=127.0.0.1:5001 laddr=127.0.0.1:6379 fd=9 name= age=900 idle=700 flags=b db=0 cmd=blpop\n\
                    id=5 addr=10.0.0.2:6000 laddr=127.0.0.1:6379 fd=10 name=app age=9000 idle=7200 flags=N db=0 cmd=get\n";
        let s = summarise_clients(list);
        assert_eq!(s["total"], 3);
        assert_eq!(s["blocked"], 1);
        assert_eq!(s["by_address"]["127.0.0.1"], 2);
        assert_eq!(s["by_name"]["app"], 2);
        assert_eq!(s["idle"], json!({ "under_1m": 1, "1m_to_1h": 1, "over_1h": 1 }));
    }
}
