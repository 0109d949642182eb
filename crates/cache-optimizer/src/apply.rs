//! `run` and `rollback`: applying recommendations, with a rollback point (seed 003).
//!
//! Before any change, `run` writes a rollback point to `optimizer/rollback/<id>.json`; before
//! each change it records the old value there (and syncs the file), then applies the change
//! and records how it went. `rollback ID` puts back every recorded value, newest first:
//! storage parameters and `CONFIG SET` values to what they were, pattern TTLs removed
//! (`PERSIST`) from exactly the keys that got them. ANALYZE, VACUUM, REINDEX and MEMORY PURGE
//! change no value, so they are recorded as not reversible.

use std::collections::HashMap;

use cache_core::app::{Context, JobResult, Work};
use cache_core::cli::CommonArgs;
use cache_core::clients::postgres;
use cache_core::config::{PostgresTarget, RedisTarget};
use cache_core::error::UsageError;
use cache_core::exit::{self, Convention, Reach, Tally};
use cache_core::keyspace::{Keyspace, Primaries, Router};
use cache_core::messages::{MAX_LINE, clip};
use cache_core::output::Format;
use cache_core::scan::{Method, ScanOptions, Scanner};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::analyze;
use crate::model::Action;

/// Rollback points, in the state directory.
pub const ROLLBACK_DIR: &str = "optimizer/rollback";
/// The job (and lock) `run` and `rollback` share.
pub const JOB: &str = "optimize";

/// Where a rollback point stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointStatus {
    /// Changes are being made (a run that died here left some applied).
    Open,
    /// The run finished.
    Applied,
    /// `rollback` restored it.
    RolledBack,
}

/// One change and what it replaced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Change {
    /// What was done.
    pub action: Action,
    /// Whether `rollback` can undo it.
    pub reversible: bool,
    /// The value before: a setting's old value (null: not set), or `{"keys": [...]}`.
    pub before: Value,
    /// `pending`, `applied`, or `failed: ...`.
    pub outcome: String,
    /// What `rollback` did, once it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<String>,
}

/// A rollback point.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RollbackPoint {
    /// Its id, e.g. `20261122-040000-812`.
    pub id: String,
    /// When the run started.
    pub created_at: DateTime<Utc>,
    /// Where it stands.
    pub status: PointStatus,
    /// When it was rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_at: Option<DateTime<Utc>>,
    /// The changes, in the order made.
    pub changes: Vec<Change>,
}

fn point_path(id: &str) -> String {
    format!("{ROLLBACK_DIR}/{id}.json")
}

/// Order of application: statistics and space first, then index rebuilds, then settings.
fn phase(a: &Action) -> u8 {
    match a {
        Action::PgVacuum { .. } => 0,
        Action::PgAnalyze { .. } => 1,
        Action::PgReindex { .. } => 2,
        Action::PgTableSetting { .. } => 3,
        Action::RedisConfig { .. } => 4,
        Action::RedisPatternTtl { .. } => 5,
        Action::RedisMemoryPurge { .. } => 6,
    }
}

/// A storage parameter name or value read back from a rollback point: only what the optimizer
/// itself writes (identifiers and numbers) is accepted, so an edited file cannot inject SQL.
fn plain(text: &str) -> anyhow::Result<&str> {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.')) {
        Ok(text)
    } else {
        anyhow::bail!("`{text}` is not a plain storage parameter or value")
    }
}

/// Escapes glob specials so a prefix matches itself in SCAN MATCH.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

struct Targets<'a> {
    ctx: &'a Context,
    pg: HashMap<String, tokio_postgres::Client>,
}

impl<'a> Targets<'a> {
    fn new(ctx: &'a Context) -> Self {
        Self { ctx, pg: HashMap::new() }
    }

    fn pg_target(&self, name: &str) -> anyhow::Result<&'a PostgresTarget> {
        self.ctx
            .config
            .postgres
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| anyhow::anyhow!("postgres target `{name}` is not in the configuration"))
    }

    fn redis_target(&self, name: &str) -> anyhow::Result<&'a RedisTarget> {
        self.ctx
            .config
            .redis
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| anyhow::anyhow!("redis target `{name}` is not in the configuration"))
    }

    async fn pg(&mut self, name: &str) -> anyhow::Result<&tokio_postgres::Client> {
        if !self.pg.contains_key(name) {
            let client = postgres::connect(self.pg_target(name)?).await?;
            self.pg.insert(name.to_owned(), client);
        }
        self.pg.get(name).ok_or_else(|| anyhow::anyhow!("postgres connection `{name}` lost"))
    }
}

async fn pg_exec(db: &tokio_postgres::Client, sql: &str) -> anyhow::Result<()> {
    // One statement per call: VACUUM and REINDEX CONCURRENTLY refuse transaction blocks.
    db.batch_execute(sql).await.map_err(|e| anyhow::anyhow!("{}", postgres::error_text(&e)))
}

async fn table_setting(db: &tokio_postgres::Client, table: &str, setting: &str) -> anyhow::Result<Option<String>> {
    let row = db
        .query_opt(
            "SELECT option_value FROM pg_options_to_table((SELECT reloptions FROM pg_class WHERE oid = to_regclass($1)))
              WHERE option_name = $2",
            &[&table, &setting],
        )
        .await
        .map_err(|e| anyhow::anyhow!("{}", postgres::error_text(&e)))?;
    Ok(row.map(|r| r.get(0)))
}

async fn index_size(db: &tokio_postgres::Client, index: &str) -> i64 {
    db.query_one("SELECT pg_relation_size(to_regclass($1))", &[&index]).await.map_or(0, |r| r.get(0))
}

/// The keys under `prefix` without a TTL (and not protected), at most `limit`, on every
/// primary of the target (every shard of a cluster).
async fn ttl_less_keys(
    state: &cache_core::state::StateDir,
    primaries: &Primaries,
    keyspace: &Keyspace<'_>,
    prefix: &str,
    limit: u64,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    for node in &primaries.nodes {
        let opts = ScanOptions {
            pattern: Some(format!("{}*", glob_escape(prefix))),
            count: 1000,
            access: false,
            memory: false,
            // A script on a cluster node may only touch declared keys.
            method: primaries.cluster.then_some(Method::Pipeline),
            budget: keyspace.target.scan_budget(),
            ..ScanOptions::default()
        };
        let mut scanner = Scanner::new(node.conn.clone(), opts, 0).await?.recording(state, node.run_id());
        while let Some(batch) = scanner.next_batch().await? {
            for k in batch {
                if k.ttl_ms.is_none()
                    && !keyspace.is_protected(&k.key)
                    && let Ok(name) = String::from_utf8(k.key)
                {
                    keys.push(name);
                    if keys.len() as u64 >= limit {
                        return Ok(keys);
                    }
                }
            }
        }
    }
    Ok(keys)
}

/// Every primary of `target`, or an error naming those not reached: a server-wide change is made
/// on all of them or on none.
async fn complete_primaries(targets: &Targets<'_>, target: &str) -> anyhow::Result<Primaries> {
    let t = targets.redis_target(target)?;
    let primaries = cache_core::keyspace::primaries(t).await?;
    if !primaries.complete() {
        anyhow::bail!("not every primary was reached ({}): nothing changed", primaries.missing.join("; "));
    }
    Ok(primaries)
}

/// What [`per_key`] did.
#[derive(Debug, Default)]
struct PerKey {
    /// The keys the command answered 1 for.
    hit: Vec<String>,
    /// One message per key the server refused (a pipeline goes on past them).
    errors: Vec<String>,
}

impl PerKey {
    /// `Ok(done)`, or the refusals as one condensed line after `done`: what was done is said
    /// either way.
    fn result(&self, done: String) -> anyhow::Result<String> {
        if self.errors.is_empty() {
            Ok(done)
        } else {
            anyhow::bail!("{done}; {}", cache_core::messages::one_line(&self.errors))
        }
    }
}

/// Runs `command KEY ARGS...` on every key, each on the primary serving it, pipelined per
/// primary. A key the server refuses is one message in `errors` (the server's reply quotes the
/// key), and the others go on; `Err` only when a connection fails.
async fn per_key(
    state: &cache_core::state::StateDir,
    router: &Router,
    keys: &[String],
    command: &str,
    args: &[&str],
) -> anyhow::Result<PerKey> {
    let mut done = PerKey::default();
    let groups = router.group_by_server(keys);
    let routed: usize = groups.iter().map(|(_, _, g)| g.len()).sum();
    if routed < keys.len() {
        done.errors.push(format!("{} keys' slots are served by no reachable primary", keys.len() - routed));
    }
    for (mut conn, run_id, group) in groups {
        for chunk in group.chunks(1000) {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for k in chunk {
                pipe.cmd(command).arg(k.as_str()).arg(args);
            }
            let replies: Vec<redis::RedisResult<i64>> = pipe.query_async(&mut conn).await?;
            let own = cache_core::ledger::Lookups::commands(chunk.len() as u64);
            if let Err(e) = cache_core::ledger::record(state, &run_id, own) {
                tracing::warn!("recording the toolkit's own commands: {e:#}");
            }
            for (k, reply) in chunk.iter().zip(replies) {
                match reply {
                    Ok(1) => done.hit.push((*k).clone()),
                    Ok(_) => {}
                    Err(e) => done.errors.push(format!("{command} refused: {e}")),
                }
            }
        }
    }
    Ok(done)
}

/// Applies one action, recording the old value in `change.before` first through `save`.
async fn apply(
    targets: &mut Targets<'_>,
    change: &mut Change,
    save: &mut dyn FnMut(&Change) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    let ctx = targets.ctx;
    match change.action.clone() {
        Action::PgAnalyze { target, table } => {
            pg_exec(targets.pg(&target).await?, &format!("ANALYZE {table}")).await?;
            Ok("analyzed".into())
        }
        Action::PgVacuum { target, table } => {
            pg_exec(targets.pg(&target).await?, &format!("VACUUM {table}")).await?;
            Ok("vacuumed".into())
        }
        Action::PgReindex { target, index } => {
            let db = targets.pg(&target).await?;
            let before = index_size(db, &index).await;
            pg_exec(db, &format!("REINDEX INDEX CONCURRENTLY {index}")).await?;
            let after = index_size(db, &index).await;
            Ok(format!(
                "rebuilt: {} → {}",
                cache_core::output::bytes(before as u64),
                cache_core::output::bytes(after as u64)
            ))
        }
        Action::PgTableSetting { target, table, setting, value } => {
            let db = targets.pg(&target).await?;
            let old = table_setting(db, &table, &setting).await?;
            change.before = json!(old);
            save(change)?;
            pg_exec(db, &format!("ALTER TABLE {table} SET ({} = {})", plain(&setting)?, plain(&value)?)).await?;
            Ok(format!("{setting}: {} → {value}", old.as_deref().unwrap_or("(default)")))
        }
        Action::RedisConfig { target, parameter, value } => {
            // Configuration is per server: every primary of a cluster gets it, each old value
            // recorded (standalone: the old value itself, as before).
            let primaries = complete_primaries(targets, &target).await?;
            let mut old = serde_json::Map::new();
            for node in &primaries.nodes {
                let got: Vec<String> =
                    redis::cmd("CONFIG").arg("GET").arg(&parameter).query_async(&mut node.conn.clone()).await?;
                let got =
                    got.get(1).cloned().ok_or_else(|| anyhow::anyhow!("CONFIG GET {parameter}: no such parameter"))?;
                old.insert(node.node.clone().unwrap_or_default(), json!(got));
            }
            let shown = old.values().filter_map(Value::as_str).collect::<std::collections::BTreeSet<_>>();
            let shown = shown.into_iter().collect::<Vec<_>>().join("/");
            change.before = if primaries.cluster {
                json!({ "per_node": old })
            } else {
                old.into_values().next().unwrap_or(Value::Null)
            };
            save(change)?;
            for node in &primaries.nodes {
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg(&parameter)
                    .arg(&value)
                    .query_async::<()>(&mut node.conn.clone())
                    .await?;
            }
            Ok(format!("{parameter}: {shown} → {value} ({})", primaries.coverage()))
        }
        Action::RedisPatternTtl { target, prefix, ttl_ms } => {
            let t = targets.redis_target(&target)?;
            let keyspace = Keyspace::new(&ctx.config, t);
            let primaries = keyspace.primaries().await?;
            if !primaries.complete() {
                anyhow::bail!("not every primary was reached ({}): no TTL set", primaries.missing.join("; "));
            }
            let keys =
                ttl_less_keys(&ctx.state, &primaries, &keyspace, &prefix, ctx.config.optimizer.ttl_max_keys).await?;
            // Recorded before any is changed: a run that dies midway can still be rolled back.
            change.before = json!({ "keys": keys });
            save(change)?;
            let router = primaries.router().await?;
            let ttl = ttl_ms.to_string();
            let done = per_key(&ctx.state, &router, &keys, "PEXPIRE", &[&ttl, "NX"]).await?;
            // Only the keys this run changed: one that got a TTL meanwhile is not ours to undo.
            let n = done.hit.len();
            change.before = json!({ "keys": done.hit });
            let text = if done.errors.is_empty() {
                format!("TTL set on {n} keys ({})", primaries.coverage())
            } else {
                format!("TTL set on {n} of {} keys ({})", keys.len(), primaries.coverage())
            };
            done.result(text)
        }
        Action::RedisMemoryPurge { target } => {
            let primaries = complete_primaries(targets, &target).await?;
            for node in &primaries.nodes {
                redis::cmd("MEMORY").arg("PURGE").query_async::<()>(&mut node.conn.clone()).await?;
            }
            Ok(format!("purged ({})", primaries.coverage()))
        }
    }
}

/// Undoes one applied change.
async fn restore(targets: &mut Targets<'_>, change: &Change) -> anyhow::Result<String> {
    match &change.action {
        Action::PgTableSetting { target, table, setting, .. } => {
            let db = targets.pg(target).await?;
            let setting = plain(setting)?;
            match change.before.as_str() {
                Some(old) => {
                    pg_exec(db, &format!("ALTER TABLE {table} SET ({setting} = {})", plain(old)?)).await?;
                    Ok(format!("{setting} = {old} again"))
                }
                None => {
                    pg_exec(db, &format!("ALTER TABLE {table} RESET ({setting})")).await?;
                    Ok(format!("{setting} reset to the default"))
                }
            }
        }
        Action::RedisConfig { target, parameter, .. } => {
            let primaries = complete_primaries(targets, target).await?;
            let mut restored = Vec::new();
            for node in &primaries.nodes {
                let old = match (&change.before, &node.node) {
                    (Value::String(old), _) => old.clone(),
                    (before, Some(label)) => before["per_node"][label]
                        .as_str()
                        .ok_or_else(|| {
                            anyhow::anyhow!("no old value recorded for primary {label} (the cluster changed since?)")
                        })?
                        .to_owned(),
                    (_, None) => anyhow::bail!("no old value recorded"),
                };
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg(parameter)
                    .arg(&old)
                    .query_async::<()>(&mut node.conn.clone())
                    .await?;
                restored.push(old);
            }
            restored.dedup();
            Ok(format!("{parameter} = {} again ({})", restored.join("/"), primaries.coverage()))
        }
        Action::RedisPatternTtl { target, .. } => {
            let keys: Vec<String> = serde_json::from_value(change.before["keys"].clone()).unwrap_or_default();
            let t = targets.redis_target(target)?;
            let primaries = Keyspace::new(&targets.ctx.config, t).primaries().await?;
            let done = per_key(&targets.ctx.state, &primaries.router().await?, &keys, "PERSIST", &[]).await?;
            let persisted = done.hit.len();
            done.result(format!(
                "TTL removed from {persisted} of {} keys (the others expired or changed since)",
                keys.len()
            ))
        }
        other => Ok(format!("nothing to restore ({})", other.describe())),
    }
}

/// A change's recorded old value for people: a count of keys rather than every key.
fn before_text(before: &Value) -> String {
    match before["keys"].as_array() {
        Some(keys) => format!("the TTL-less state of {} keys", keys.len()),
        None => clip(&before.to_string(), MAX_LINE),
    }
}

fn new_id(now: DateTime<Utc>) -> String {
    format!("{}-{}", now.format("%Y%m%d-%H%M%S"), std::process::id())
}

/// Runs `run`.
pub async fn run(common: &CommonArgs, format: Format, apply_config: bool, dry_run: bool) -> anyhow::Result<u8> {
    let ctx = Context::load(common, format, Convention::Standard)?;
    let job = ctx.begin(Work::new(JOB, "cache-optimizer run").dry_run(dry_run)).await?;
    let result = run_job(&ctx, apply_config, dry_run).await;
    job.finish(&ctx, result).await
}

async fn run_job(ctx: &Context, apply_config: bool, dry_run: bool) -> anyhow::Result<JobResult> {
    let findings = analyze::findings(ctx).await?;
    let mut actions: Vec<Action> = findings.recommendations.iter().filter_map(|r| r.action.clone()).collect();
    actions.sort_by_key(phase);
    let (todo, held): (Vec<Action>, Vec<Action>) = actions.into_iter().partition(|a| a.is_safe() || apply_config);
    let printer = &ctx.printer;
    let mut table = printer.table();
    table.set_header(["Change", "Result"]);
    if dry_run {
        for a in &todo {
            table.add_row(vec![a.describe(), "would be done".into()]);
        }
        for a in &held {
            table.add_row(vec![a.describe(), "needs --apply".into()]);
        }
        let doc = json!({ "dry_run": true, "would_apply": todo, "needs_apply": held, "notes": findings.notes });
        if printer.format() == Format::Json {
            printer.json(&doc)?;
        } else {
            printer.info(&format!("cache-optimizer run (dry run: nothing changed)\n{table}"))?;
        }
        // Every target unreachable: nothing was judged (4); some: partial (1).
        let exit_code = findings.reach.code();
        return Ok(JobResult { outcome: Tally::outcome(exit_code), exit_code, summary: doc });
    }
    let now = Utc::now();
    let mut point = RollbackPoint {
        id: new_id(now),
        created_at: now,
        status: PointStatus::Open,
        rolled_back_at: None,
        changes: vec![],
    };
    let rel = point_path(&point.id);
    if !todo.is_empty() {
        ctx.state.write_json(&rel, &point)?;
    }
    let mut targets = Targets::new(ctx);
    let mut failed = 0;
    for action in todo {
        let reversible = !matches!(
            action,
            Action::PgAnalyze { .. }
                | Action::PgVacuum { .. }
                | Action::PgReindex { .. }
                | Action::RedisMemoryPurge { .. }
        );
        let mut change = Change {
            action: action.clone(),
            reversible,
            before: Value::Null,
            outcome: "pending".into(),
            restored: None,
        };
        let mut save = |c: &Change| -> anyhow::Result<()> {
            let mut p = point.clone();
            p.changes.push(c.clone());
            ctx.state.write_json(&rel, &p)
        };
        let result = apply(&mut targets, &mut change, &mut save).await;
        let text = match result {
            Ok(text) => {
                change.outcome = "applied".into();
                text
            }
            Err(e) => {
                failed += 1;
                change.outcome = format!("failed: {}", clip(&format!("{e:#}"), MAX_LINE));
                change.outcome.clone()
            }
        };
        table.add_row(vec![action.describe(), text]);
        point.changes.push(change);
        ctx.state.write_json(&rel, &point)?;
    }
    for a in &held {
        table.add_row(vec![a.describe(), "not applied: configuration changes need --apply".into()]);
    }
    let applied = point.changes.iter().filter(|c| c.outcome == "applied").count();
    if !point.changes.is_empty() {
        point.status = PointStatus::Applied;
        ctx.state.write_json(&rel, &point)?;
    }
    let doc = json!({
        "rollback_point": (!point.changes.is_empty()).then_some(&point.id),
        "changes": point.changes,
        "needs_apply": held,
        "notes": findings.notes,
    });
    if printer.format() == Format::Json {
        printer.json(&doc)?;
    } else if !printer.is_quiet() || failed > 0 {
        let mut text = format!("cache-optimizer run: {applied} change(s) applied, {failed} failed\n");
        if point.changes.is_empty() && held.is_empty() {
            text.push_str("nothing to do\n");
        } else {
            text.push_str(&format!("{table}\n"));
        }
        if !point.changes.is_empty() {
            text.push_str(&format!("rollback point {} (undo with: cache-optimizer rollback {})\n", point.id, point.id));
        }
        for n in &findings.notes {
            text.push_str(&format!("note: {n}\n"));
        }
        printer.always(&text)?;
    }
    // Every target unreachable: nothing was judged or changed (4); some, or a change that
    // failed: partial (1).
    let code = findings.reach.code_with(failed);
    Ok(JobResult {
        outcome: Tally::outcome(code),
        exit_code: code,
        summary: json!({ "rollback_point": point.id, "applied": applied, "failed": failed, "needs_apply": held.len() }),
    })
}

/// Every rollback point, oldest first.
pub fn points(ctx: &Context) -> anyhow::Result<Vec<RollbackPoint>> {
    let dir = ctx.state.path(ROLLBACK_DIR);
    let mut ids: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_owned))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(anyhow::anyhow!("reading `{}`: {e}", dir.display())),
    };
    ids.sort();
    let mut out = Vec::new();
    for id in ids {
        if let Some(p) = ctx.state.read_json::<RollbackPoint>(&point_path(&id))? {
            out.push(p);
        }
    }
    Ok(out)
}

/// Runs `rollback`.
pub async fn rollback(
    common: &CommonArgs,
    format: Format,
    id: Option<&str>,
    list: bool,
    dry_run: bool,
) -> anyhow::Result<u8> {
    let ctx = Context::load(common, format, Convention::Standard)?;
    let printer = &ctx.printer;
    if list {
        let all = points(&ctx)?;
        if printer.format() == Format::Json {
            printer.json(&json!({ "points": all }))?;
            return Ok(exit::SUCCESS);
        }
        let mut table = printer.table();
        table.set_header(["Id", "Created", "Status", "Changes"]);
        for p in &all {
            table.add_row(vec![
                p.id.clone(),
                p.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                format!("{:?}", p.status).to_lowercase(),
                p.changes.iter().map(|c| c.action.describe()).collect::<Vec<_>>().join("\n"),
            ]);
        }
        printer.always(&format!("{table}"))?;
        return Ok(exit::SUCCESS);
    }
    let id = id.ok_or_else(|| UsageError("name a rollback point (an id, or `latest`), or pass --list".into()))?;
    let job =
        ctx.begin(Work::new(JOB, "cache-optimizer rollback").recorded_as("optimize-rollback").dry_run(dry_run)).await?;
    let result = rollback_job(&ctx, id, dry_run).await;
    job.finish(&ctx, result).await
}

async fn rollback_job(ctx: &Context, id: &str, dry_run: bool) -> anyhow::Result<JobResult> {
    let mut point = if id == "latest" {
        points(ctx)?.into_iter().rev().find(|p| p.status != PointStatus::RolledBack).ok_or_else(|| {
            UsageError("no rollback point that has not been rolled back (cache-optimizer rollback --list)".into())
        })?
    } else {
        if id.contains('/') || id.contains("..") {
            return Err(UsageError(format!("`{id}` is not a rollback point id")).into());
        }
        ctx.state.read_json::<RollbackPoint>(&point_path(id))?.ok_or_else(|| {
            UsageError(format!("no rollback point `{id}` (cache-optimizer rollback --list shows them)"))
        })?
    };
    if point.status == PointStatus::RolledBack {
        let when = point.rolled_back_at.map(|t| t.to_rfc3339()).unwrap_or_default();
        return Err(UsageError(format!("rollback point `{}` was already rolled back at {when}", point.id)).into());
    }
    let rel = point_path(&point.id);
    let mut targets = Targets::new(ctx);
    let mut table = ctx.printer.table();
    table.set_header(["Change", "Restored"]);
    let mut failed = 0;
    // How each restore fared: every one unreachable is exit 4.
    let mut tally = Tally::default();
    for i in (0..point.changes.len()).rev() {
        let change = point.changes[i].clone();
        // A pending change may have been partly made before the run died: undo it too; and a
        // pattern TTL that failed on some keys still gave the others theirs (recorded in `before`).
        let partly = change.outcome.starts_with("failed")
            && matches!(change.action, Action::RedisPatternTtl { .. })
            && change.before["keys"].as_array().is_some_and(|keys| !keys.is_empty());
        let undo = change.reversible && (change.outcome == "applied" || change.outcome == "pending" || partly);
        let text = if !undo {
            "nothing to restore".to_owned()
        } else if dry_run {
            format!("would restore {}", before_text(&change.before))
        } else {
            let restored = restore(&mut targets, &change).await;
            tally.add(Reach::of(&restored));
            match restored {
                Ok(t) => {
                    point.changes[i].restored = Some(t.clone());
                    t
                }
                Err(e) => {
                    failed += 1;
                    format!("failed: {}", clip(&format!("{e:#}"), MAX_LINE))
                }
            }
        };
        table.add_row(vec![change.action.describe(), text]);
    }
    if !dry_run && failed == 0 {
        point.status = PointStatus::RolledBack;
        point.rolled_back_at = Some(Utc::now());
    }
    if !dry_run {
        ctx.state.write_json(&rel, &point)?;
    }
    if ctx.printer.format() == Format::Json {
        ctx.printer.json(&point)?;
    } else {
        let dry = if dry_run { " (dry run: nothing changed)" } else { "" };
        ctx.printer.always(&format!("rollback of {}{dry}\n{table}", point.id))?;
    }
    let code = tally.code();
    Ok(JobResult {
        outcome: Tally::outcome(code),
        exit_code: code,
        summary: json!({ "rollback_point": point.id, "failed": failed }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_parameters_come_back_from_a_point() {
        assert_eq!(plain("autovacuum_vacuum_scale_factor").unwrap(), "autovacuum_vacuum_scale_factor");
        assert_eq!(plain("0.05").unwrap(), "0.05");
        assert!(plain("0); DROP TABLE x; --").is_err());
        assert!(plain("").is_err());
    }

    #[test]
    fn prefixes_match_themselves() {
        assert_eq!(glob_escape("app:[v1]*?"), "app:\\[v1\\]\\*\\?");
    }
}
