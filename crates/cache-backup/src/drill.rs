//! The disaster-recovery drill: `cache-backup drill [latest|ID]` restores a backup into scratch
//! servers (never a configured target) and compares what comes back with the figures its
//! manifest recorded when it was taken: per Redis dump file the key count and a sample of keys
//! (a SHA-256 of each one's logical value, and its absolute expiry time), per cache table its
//! row count and checksum. The result lands in `backup/restores.jsonl` as kind `drill`.
//!
//! The figures are taken by [`take`] around each dump: `DBSIZE` before and after, and a sample
//! of at most [`SAMPLE_KEYS`] keys read before and again after the dump, keeping only the keys
//! that did not change meanwhile (so a key written while the dump ran is not a false alarm).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cache_core::app::{Context, JobResult};
use cache_core::archive::{DumpFigures, SampledKey, SourceFigures};
use cache_core::clients::redis as redis_client;
use cache_core::config::{RedisBackupMethod, RedisTarget};
use cache_core::exit;
use cache_core::ledger::Lookups;
use cache_core::output::Format;
use cache_core::runs::Outcome;
use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::manifest::ClusterLayout as _;
use crate::redis_dump::{self, Gzip, Taken};
use crate::store::{Backup, Store};

/// At most this many keys are sampled per dump.
pub const SAMPLE_KEYS: usize = 20;
/// Keys with more elements than this (or strings longer than [`SAMPLE_MAX_BYTES`]) are not
/// sampled, so that reading a sample stays a handful of cheap commands.
const SAMPLE_MAX_ELEMENTS: u64 = 1000;
const SAMPLE_MAX_BYTES: u64 = 64 * 1024;

/// Takes `target`'s dataset as [`redis_dump::take`] does, and the figures a drill compares
/// with: `None` when the server refused the commands they need (the backup is still taken).
pub async fn take(
    state: &cache_core::state::StateDir,
    target: &RedisTarget,
    out_base: &Path,
    gzip: Gzip,
    timeout: Duration,
    method: RedisBackupMethod,
) -> anyhow::Result<(PathBuf, Taken, Option<DumpFigures>)> {
    // The sample's lookups are the toolkit's, not the application's: recorded in the ledger
    // as Redis counts them.
    let mut lookups = Lookups::default();
    let before = async {
        let mut conn = redis_client::connect(target).await?;
        let run_id = redis_client::info(&mut conn).await?.get("run_id").cloned().unwrap_or_default();
        let keys = dbsize(&mut conn, &mut lookups).await?;
        let candidates = pick_keys(&mut conn, &mut lookups).await?;
        let sample = digest_keys(&mut conn, &candidates, &mut lookups).await?;
        anyhow::Ok((conn, run_id, keys, sample))
    };
    let before = before.await.ok();
    let taken = redis_dump::take(state, target, out_base, gzip, timeout, method).await;
    let figures = match before {
        None => None,
        Some((mut conn, run_id, keys_before, sample_before)) => {
            let after = if taken.is_ok() {
                async {
                    let keys_after = dbsize(&mut conn, &mut lookups).await?;
                    let expiring = expiring(&mut conn, &mut lookups).await?;
                    let names: Vec<String> = sample_before.iter().map(|k| k.key.clone()).collect();
                    let sample_after = digest_keys(&mut conn, &names, &mut lookups).await?;
                    anyhow::Ok((keys_after, expiring, sample_after))
                }
                .await
                .ok()
            } else {
                None
            };
            if let Err(e) = cache_core::ledger::record(state, &run_id, lookups) {
                tracing::warn!("recording the toolkit's own lookups: {e:#}");
            }
            let path = taken.as_ref().map(|(p, _)| p.clone()).unwrap_or_default();
            after.map(|(keys_after, expiring, sample_after)| DumpFigures {
                file: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                keys_before,
                keys_after,
                expiring,
                // Only the keys that did not change while the dump ran.
                sample: sample_before.into_iter().filter(|k| sample_after.contains(k)).collect(),
            })
        }
    };
    let (path, taken) = taken?;
    Ok((path, taken, figures))
}

/// A table's row count and checksum, on `db`, in the transaction that also copies it out (the
/// caller's `REPEATABLE READ` transaction, so both see one snapshot).
pub async fn table_figures(db: &tokio_postgres::Client, table: &str) -> anyhow::Result<(u64, String)> {
    let t = cache_core::clients::postgres::quote_ident(table);
    let row = db
        .query_one(
            &format!(
                "SELECT count(*)::bigint, md5(coalesce(string_agg(h, '' ORDER BY h), '')) \
                 FROM (SELECT md5(x::text) AS h FROM {t} AS x) AS rows"
            ),
            &[],
        )
        .await
        .with_context(|| format!("counting and checksumming `{table}`"))?;
    let rows: i64 = row.get(0);
    Ok((rows.max(0) as u64, row.get(1)))
}

async fn dbsize(conn: &mut redis_client::Connection, lookups: &mut Lookups) -> anyhow::Result<u64> {
    let n = redis::cmd("DBSIZE").query_async::<u64>(conn).await?;
    lookups.commands += 1;
    Ok(n)
}

/// INFO keyspace `expires` of db0.
async fn expiring(conn: &mut redis_client::Connection, lookups: &mut Lookups) -> anyhow::Result<u64> {
    let info = redis_client::info(conn).await?;
    lookups.commands += 1;
    Ok(info
        .get("db0")
        .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("expires=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// Up to [`SAMPLE_KEYS`] UTF-8 keys from the first few SCAN pages, sorted.
async fn pick_keys(conn: &mut redis_client::Connection, lookups: &mut Lookups) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    for _ in 0..4 {
        let (next, batch): (u64, Vec<Vec<u8>>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(200).query_async(conn).await?;
        lookups.commands += 1;
        keys.extend(batch.into_iter().filter_map(|k| String::from_utf8(k).ok()));
        cursor = next;
        if cursor == 0 || keys.len() >= SAMPLE_KEYS * 4 {
            break;
        }
    }
    keys.sort();
    keys.dedup();
    keys.truncate(SAMPLE_KEYS);
    Ok(keys)
}

/// Each of `keys` that exists, is small and of a plain type: its type, the SHA-256 of its
/// logical value and its absolute expiry. Three pipelines, whatever the number of keys.
async fn digest_keys(
    conn: &mut redis_client::Connection,
    keys: &[String],
    lookups: &mut Lookups,
) -> anyhow::Result<Vec<SampledKey>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for key in keys {
        pipe.cmd("TYPE").arg(key).cmd("PEXPIRETIME").arg(key);
    }
    let typed: Vec<redis::Value> = pipe.query_async(conn).await?;
    let mut found = Vec::new();
    for (key, pair) in keys.iter().zip(typed.chunks(2)) {
        let kind: String = redis::from_redis_value_ref(&pair[0]).unwrap_or_default();
        let expiry: i64 = redis::from_redis_value_ref(&pair[1]).unwrap_or(-2);
        // TYPE and PEXPIRETIME each look the key up.
        lookup(lookups, kind != "none");
        lookup(lookups, expiry != -2);
        let length = match kind.as_str() {
            "string" => "STRLEN",
            "hash" => "HLEN",
            "set" => "SCARD",
            "zset" => "ZCARD",
            "list" => "LLEN",
            _ => continue,
        };
        found.push((key, kind, (expiry >= 0).then_some(expiry), length));
    }
    let mut pipe = redis::pipe();
    for (key, _, _, length) in &found {
        pipe.cmd(length).arg(*key);
    }
    let lengths: Vec<u64> = if found.is_empty() { Vec::new() } else { pipe.query_async(conn).await? };
    for n in &lengths {
        // A collection is never empty; a string may be (and is then found).
        lookup(lookups, *n > 0);
    }
    let small: Vec<_> = found
        .into_iter()
        .zip(lengths)
        .filter(|((_, kind, _, _), n)| *n <= if kind == "string" { SAMPLE_MAX_BYTES } else { SAMPLE_MAX_ELEMENTS })
        .map(|(k, _)| k)
        .collect();
    if small.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for (key, kind, _, _) in &small {
        match kind.as_str() {
            "string" => pipe.cmd("GET").arg(*key),
            "hash" => pipe.cmd("HGETALL").arg(*key),
            "set" => pipe.cmd("SMEMBERS").arg(*key),
            "zset" => pipe.cmd("ZRANGE").arg(*key).arg(0).arg(-1).arg("WITHSCORES"),
            _ => pipe.cmd("LRANGE").arg(*key).arg(0).arg(-1),
        };
    }
    let values: Vec<redis::Value> = pipe.query_async(conn).await?;
    let mut sample = Vec::new();
    for ((key, kind, expires_at_ms, _), value) in small.into_iter().zip(values) {
        lookup(
            lookups,
            !matches!(&value, redis::Value::Nil) && !matches!(&value, redis::Value::Array(a) if a.is_empty()),
        );
        let mut elements: Vec<Vec<u8>> = match &value {
            redis::Value::Nil => continue,
            redis::Value::BulkString(b) => vec![b.clone()],
            _ => match redis::from_redis_value_ref::<Vec<Vec<u8>>>(&value) {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        match kind.as_str() {
            "hash" => {
                let mut pairs: Vec<Vec<u8>> = elements.chunks(2).map(|p| p.concat_with_len()).collect();
                pairs.sort();
                elements = pairs;
            }
            "set" => elements.sort(),
            _ => {}
        }
        let mut hash = Sha256::new();
        hash.update(kind.as_bytes());
        for e in &elements {
            hash.update((e.len() as u64).to_le_bytes());
            hash.update(e);
        }
        sample.push(SampledKey { key: key.clone(), kind, sha256: hex::encode(hash.finalize()), expires_at_ms });
    }
    Ok(sample)
}

/// Counts one command that looked a key up: a hit when the key was there.
fn lookup(lookups: &mut Lookups, found: bool) {
    lookups.commands += 1;
    if found {
        lookups.hits += 1;
    } else {
        lookups.misses += 1;
    }
}

/// Joins a hash field and its value, each with its length, into one sortable element.
trait ConcatWithLen {
    fn concat_with_len(&self) -> Vec<u8>;
}

impl ConcatWithLen for [Vec<u8>] {
    fn concat_with_len(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in self {
            out.extend((e.len() as u64).to_le_bytes());
            out.extend(e);
        }
        out
    }
}

/// What a drill found, as recorded in `backup/restores.jsonl`.
#[derive(Debug, Default, Serialize)]
struct Drill {
    kind: &'static str,
    at: String,
    host: String,
    backup: String,
    /// `pass`, `partial` (something could not be checked) or `fail`.
    result: &'static str,
    /// Each figure compared, with what was recorded and what came back.
    compared: Vec<String>,
    /// What could not be checked, and why.
    not_checked: Vec<String>,
    /// Why the drill failed.
    failures: Vec<String>,
    seconds: f64,
}

/// Runs the drill on the backup `selector` names.
pub async fn run(ctx: &Context, store: &Store, selector: &str, identity: Option<PathBuf>) -> anyhow::Result<JobResult> {
    let start = Instant::now();
    let now = cache_core::clock::now()?;
    let backup = store.find(selector)?;
    let mut drill = Drill {
        kind: "drill",
        at: now.to_rfc3339(),
        host: cache_core::system::hostname(),
        backup: backup.manifest.id.clone(),
        ..Drill::default()
    };
    for failed in backup.manifest.missing() {
        drill.not_checked.push(format!("{}: not in this backup (it failed when it was taken)", failed.label()));
    }
    let outcome = async {
        if crate::crypt::is_encrypted(&backup.manifest) && identity.is_none() {
            // Not the backup's fault: this host lacks the key, so nothing could be checked.
            drill.not_checked.push(format!(
                "backup {} is encrypted (age): give the identity that decrypts it with --identity FILE or \
                 backup.identity_file",
                backup.manifest.id
            ));
            return anyhow::Ok(());
        }
        let plain = match crate::crypt::is_encrypted(&backup.manifest) {
            true => Some(crate::crypt::decrypt(&backup, identity.as_deref(), store.dir())?),
            false => None,
        };
        let backup = plain.as_ref().map_or(backup.clone(), |p| p.backup.clone());
        let verification = crate::commands::check(ctx, &backup)?;
        if !verification.ok {
            drill.failures.push(format!("the backup fails verification: {}", verification.problems.join("; ")));
            return anyhow::Ok(());
        }
        drill_sources(ctx, &backup, &mut drill).await;
        anyhow::Ok(())
    };
    if let Err(e) = outcome.await {
        drill.failures.push(format!("{e:#}"));
    }
    drill.result = if !drill.failures.is_empty() {
        "fail"
    } else if !drill.not_checked.is_empty() {
        "partial"
    } else {
        "pass"
    };
    drill.seconds = start.elapsed().as_secs_f64();
    ctx.state.append_jsonl("backup/restores.jsonl", &drill)?;
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&drill)?;
    } else if !printer.is_quiet() || drill.result != "pass" {
        let verdict = match drill.result {
            "pass" => "PASS",
            "partial" => "PARTIAL (not everything could be checked)",
            _ => "FAILED",
        };
        let mut text = format!("drill of backup {}: {verdict}\n", drill.backup);
        for line in &drill.compared {
            text.push_str(&format!("  {line}\n"));
        }
        for line in &drill.not_checked {
            text.push_str(&format!("  not checked: {line}\n"));
        }
        for line in &drill.failures {
            text.push_str(&format!("  FAILED: {line}\n"));
        }
        printer.always(&text)?;
    }
    let (outcome, exit_code) = match drill.result {
        "pass" => (Outcome::Success, exit::SUCCESS),
        "partial" => (Outcome::Partial, exit::PARTIAL),
        _ => (Outcome::Failed, exit::MISMATCH),
    };
    Ok(JobResult { outcome, exit_code, summary: serde_json::to_value(&drill)? })
}

async fn drill_sources(ctx: &Context, backup: &Backup, drill: &mut Drill) {
    let manifest = &backup.manifest;
    for source in &manifest.sources {
        let label = format!("{}/{}", source.tier, source.target);
        match source.tier.as_str() {
            "redis" => {
                let files = manifest.redis_files(&source.target);
                if files.is_empty() {
                    drill.failures.push(format!("{label}: the manifest lists no dump file for it"));
                }
                for file in files {
                    let recorded = source.figures.as_ref().and_then(|f| f.dumps.iter().find(|d| d.file == file.path));
                    let path = backup.dir.join(&file.path);
                    let what = format!("{label} `{}`", file.path);
                    if let Err(e) = drill_dump(ctx, &path, &file.content, recorded, &what, drill).await {
                        drill.failures.push(format!("{what}: {e:#}"));
                    }
                }
            }
            "postgres" => {
                if let Err(e) = drill_table(ctx, backup, source, &label, drill).await {
                    drill.failures.push(format!("{label}: {e:#}"));
                }
            }
            "memory" => drill
                .not_checked
                .push(format!("{label}: memories are not drilled (there is no scratch memory API to load them into)")),
            _ => {}
        }
    }
}

/// Loads one Redis dump file into its own scratch server and compares it with `recorded`.
async fn drill_dump(
    ctx: &Context,
    path: &Path,
    content: &str,
    recorded: Option<&DumpFigures>,
    what: &str,
    drill: &mut Drill,
) -> anyhow::Result<()> {
    let timeout = ctx.config.backup.bgsave_timeout;
    let (scratch, expired) = if content == "redis-rdb" {
        // Every key the RDB holds, those expired since included, so the count is exact.
        (crate::scratch::Scratch::load_keeping_expired(path, timeout).await?, 0)
    } else {
        // A logical export goes into an empty scratch server through the restore's own path.
        let scratch = crate::scratch::Scratch::empty(timeout).await?;
        let target = scratch_target(&scratch)?;
        let keyspace = cache_core::keyspace::Keyspace::new(&ctx.config, &target);
        let router = keyspace.primaries().await?.router().await?;
        let mut restorer = redis_dump::Restorer::new(&router);
        redis_dump::restore_logical(path, &mut restorer).await.context("restoring the logical export")?;
        let (done, _) = restorer.finish().await?;
        if done.failed > 0 {
            bail!(
                "the scratch server refused {} keys: {}",
                done.failed,
                cache_core::messages::condense(&done.errors).join("; ")
            );
        }
        (scratch, done.expired)
    };
    let mut conn = redis_client::connect(&scratch_target(&scratch)?).await?;
    // The scratch server's lookups are nobody's: counted in a ledger that is thrown away.
    let scratch_lookups = &mut Lookups::default();
    let loaded = dbsize(&mut conn, scratch_lookups).await?;
    let Some(recorded) = recorded else {
        drill.compared.push(format!("{what}: loads, {loaded} keys"));
        drill.not_checked.push(format!("{what}: key count and sample not recorded in this backup"));
        return Ok(());
    };
    // Keys that expired since the backup: a logical restore skips them and counts them; an
    // RDB loaded into a replica keeps them (`DBSIZE` counts them). Either way the count is
    // the backup's own, to compare with DBSIZE before and after the dump.
    let (low, high) = (recorded.keys_before.min(recorded.keys_after), recorded.keys_before.max(recorded.keys_after));
    let counted = loaded + expired;
    let recorded_text = if low == high { format!("{low}") } else { format!("{low}-{high}") };
    let loaded_text = match expired {
        0 => format!("{loaded} keys loaded"),
        n => format!("{loaded} keys loaded and {n} expired since"),
    };
    if counted > high || counted < low {
        drill.failures.push(format!("{what}: {loaded_text}, the backup recorded {recorded_text}"));
    } else {
        drill.compared.push(format!("{what}: {loaded_text}, recorded {recorded_text}"));
    }
    let names: Vec<String> = recorded.sample.iter().map(|k| k.key.clone()).collect();
    let found = digest_keys(&mut conn, &names, scratch_lookups).await?;
    let now_ms = Utc::now().timestamp_millis();
    let (mut same, mut gone) = (0usize, 0usize);
    for want in &recorded.sample {
        match found.iter().find(|k| k.key == want.key) {
            Some(got) if got == want => same += 1,
            Some(got) if got.sha256 != want.sha256 || got.kind != want.kind => {
                drill.failures.push(format!("{what}: key `{}` has another value than the backup recorded", want.key));
            }
            Some(got) => drill.failures.push(format!(
                "{what}: key `{}` expires at {} ms, the backup recorded {}",
                want.key,
                got.expires_at_ms.map_or("never".into(), |t| t.to_string()),
                want.expires_at_ms.map_or("never".into(), |t| t.to_string()),
            )),
            None if want.expires_at_ms.is_some_and(|t| t <= now_ms) => gone += 1,
            None => drill.failures.push(format!("{what}: key `{}` is missing", want.key)),
        }
    }
    drill.compared.push(format!(
        "{what}: {same} of {} sampled keys have their recorded value and expiry time{}",
        recorded.sample.len(),
        if gone > 0 { format!(" ({gone} expired since, not compared)") } else { String::new() }
    ));
    Ok(())
}

/// A Redis target for the scratch server (no credentials).
fn scratch_target(scratch: &crate::scratch::Scratch) -> anyhow::Result<RedisTarget> {
    let url = scratch.url();
    let mut target: RedisTarget = serde_json::from_value(serde_json::json!({ "name": "drill-scratch", "url": url }))
        .context("describing the scratch server")?;
    target.name = "drill-scratch".into();
    Ok(target)
}

async fn drill_table(
    ctx: &Context,
    backup: &Backup,
    source: &crate::manifest::Source,
    label: &str,
    drill: &mut Drill,
) -> anyhow::Result<()> {
    let schema_file = format!("postgres-{}.schema.sql", source.target);
    let data = backup.dir.join(format!("postgres-{}.copy.gz", source.target));
    let schema =
        std::fs::read_to_string(backup.dir.join(&schema_file)).with_context(|| format!("reading `{schema_file}`"))?;
    let Some(pg) = ScratchPg::start(ctx.config.backup.bgsave_timeout).await? else {
        drill.not_checked.push(format!("{label}: no PostgreSQL binaries usable (initdb, postgres)"));
        return Ok(());
    };
    let mut db = pg.connect().await?;
    // The same table name as the backup's (from its schema), so the schema applies as it is.
    let table = table_of(&schema).context("the schema file names no table")?;
    let rows = crate::pg_dump::restore(&mut db, &table, &schema, &data, crate::pg_dump::Mode::Truncate)
        .await
        .context("loading the table into the scratch PostgreSQL")?;
    let (counted, md5) = table_figures(&db, &table).await?;
    let Some(SourceFigures { rows: Some(want_rows), rows_md5: Some(want_md5), .. }) = &source.figures else {
        drill.compared.push(format!("{label}: loads, {rows} rows"));
        drill.not_checked.push(format!("{label}: row count and checksum not recorded in this backup"));
        return Ok(());
    };
    if counted != *want_rows {
        drill.failures.push(format!("{label}: {counted} rows loaded, the backup recorded {want_rows}"));
    } else if md5 != *want_md5 {
        drill.failures.push(format!("{label}: the rows' checksum {md5} differs from the recorded {want_md5}"));
    } else {
        drill.compared.push(format!("{label}: {counted} rows loaded, checksum {md5} as recorded"));
    }
    Ok(())
}

/// The table a schema file creates: the name after its first `CREATE TABLE`.
fn table_of(schema: &str) -> Option<String> {
    let rest = schema.split("CREATE TABLE ").nth(1)?;
    let name = rest.split([' ', '(', '\n']).next()?.trim();
    let name = name.strip_prefix("public.").unwrap_or(name);
    Some(name.trim_matches('"').replace("\"\"", "\""))
}

/// A scratch PostgreSQL cluster in a temporary directory, on a Unix socket there; as root, run
/// as the `postgres` user (PostgreSQL refuses root). Stopped on drop.
struct ScratchPg {
    child: tokio::process::Child,
    dir: tempfile::TempDir,
}

fn pg_binaries() -> Option<(PathBuf, PathBuf)> {
    let initdb = cache_core::system::which("initdb").or_else(|| {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin/initdb"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found.pop()
    })?;
    let postgres = initdb.with_file_name("postgres");
    postgres.is_file().then_some((initdb, postgres))
}

/// uid and gid of `postgres` from /etc/passwd.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.split(':').next() == Some("postgres"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

impl ScratchPg {
    /// `None` when no usable binaries are installed.
    async fn start(timeout: Duration) -> anyhow::Result<Option<Self>> {
        let Some((initdb, postgres)) = pg_binaries() else { return Ok(None) };
        let owner = if rustix::process::geteuid().is_root() {
            match postgres_user() {
                Some(owner) => Some(owner),
                None => return Ok(None),
            }
        } else {
            None
        };
        let dir = tempfile::Builder::new().prefix("cache-drill-pg-").tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
        }
        let as_owner = |command: &mut tokio::process::Command| {
            if let Some((uid, gid)) = owner {
                command.uid(uid).gid(gid);
            }
        };
        let mut init = tokio::process::Command::new(&initdb);
        init.args(["-N", "-A", "trust", "-U", "drill", "-E", "UTF8", "-D"]).arg(&data);
        as_owner(&mut init);
        let out = init.output().await.with_context(|| format!("running `{}`", initdb.display()))?;
        if !out.status.success() {
            bail!("`{}` failed: {}", initdb.display(), String::from_utf8_lossy(&out.stderr).trim());
        }
        let mut server = tokio::process::Command::new(&postgres);
        server
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("postgres.log"))?)
            .kill_on_drop(true);
        as_owner(&mut server);
        let child = server.spawn().with_context(|| format!("starting `{}`", postgres.display()))?;
        let mut pg = Self { child, dir };
        let deadline = Instant::now() + timeout;
        loop {
            if pg.connect().await.is_ok() {
                return Ok(Some(pg));
            }
            if let Ok(Some(status)) = pg.child.try_wait() {
                let log = std::fs::read_to_string(pg.dir.path().join("postgres.log")).unwrap_or_default();
                bail!("the scratch PostgreSQL exited ({status}): {}", log.lines().last().unwrap_or(""));
            }
            if Instant::now() > deadline {
                bail!("the scratch PostgreSQL did not start within {}", humantime::format_duration(timeout));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::Config::new()
            .host_path(self.dir.path())
            .user("drill")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(5))
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(connection);
        Ok(client)
    }
}

impl Drop for ScratchPg {
    fn drop(&mut self) {
        // A fast shutdown (SIGINT), so its backends end with it; SIGKILL if it lingers.
        if let Some(pid) = self.child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.start_kill();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_table_a_schema_creates() {
        assert_eq!(super::table_of("CREATE TABLE cache_entries (\n  key text").as_deref(), Some("cache_entries"));
        assert_eq!(super::table_of("CREATE TABLE public.\"x\" (").as_deref(), Some("x"));
        assert_eq!(super::table_of("nothing"), None);
    }
}
