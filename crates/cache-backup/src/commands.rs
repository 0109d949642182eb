//! The commands: create, list, verify, restore, prune.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cache_core::app::{Context, JobResult};
use cache_core::archive;
use cache_core::clients::{memory::MemoryClient, postgres, redis as redis_client};
use cache_core::config::ConfigSource;
use cache_core::error::{NoneReachable, UsageError};
use cache_core::exit::{self, Convention, Reach, Tally};
use cache_core::messages::{MAX_LINE, clip, condense};
use cache_core::output::{Format, bytes};
use cache_core::runs::Outcome;
use cache_core::tier::{Tier, selected};
use chrono::Utc;
use serde::Serialize;

use crate::manifest::{self, ClusterLayout as _, Failed, File, Manifest, Source};
use crate::redis_dump::{self, Gzip};
use crate::store::{self, Backup, Store, Verification};
use crate::{Cli, Command, Part, pg_dump, retention};

/// One lock for every command that reads or changes backups, so prune never removes what a
/// restore is reading.
pub const JOB: &str = "backup";

/// Runs a command.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let ctx = Context::load(&cli.common, cli.format.format.into(), Convention::Standard)?;
    let store = Store::open(&ctx.config.backup.dir)?;
    match &cli.command {
        Command::List { remote: Some(name) } => return crate::remote::list(&ctx, name).await,
        Command::List { remote: None } => return list(&ctx, &store),
        _ => {}
    }
    if let Command::Schedule { set, enable, disable, reset } = &cli.command {
        let enabled = if *enable {
            Some(true)
        } else if *disable {
            Some(false)
        } else {
            None
        };
        return schedule(&ctx, set.as_deref(), enabled, *reset);
    }
    let (name, apply) = match &cli.command {
        Command::Create { .. } => ("create", true),
        Command::Verify { .. } => ("verify", true),
        Command::Restore { backup, .. } => {
            ("restore", cli.mutation.confirm(&format!("restore backup `{backup}` into the configured targets"))?)
        }
        Command::Prune => ("prune", cli.mutation.confirm("delete the backups no retention rule keeps")?),
        Command::Drill { .. } => ("drill", true),
        Command::List { .. } | Command::Schedule { .. } | Command::Completions(_) => unreachable!("handled before"),
    };
    // Only `create` is the backup job's run (what `cleanup-deep` waits for); the other
    // commands run under its lock but are recorded as themselves, and a dry run as none.
    let work = cache_core::app::Work::new(JOB, format!("cache-backup {name}")).dry_run(!apply);
    let job = ctx.begin(if name == "create" { work } else { work.recorded_as(format!("backup-{name}")) }).await?;
    let result = match &cli.command {
        Command::Create { only, level } => create(&ctx, &store, only, *level).await,
        Command::Verify { backup, remote: Some(name), .. } => crate::remote::verify(&ctx, name, backup).await,
        Command::Verify { backup, all, remote: None } => verify(&ctx, &store, backup, *all),
        Command::Restore {
            backup,
            date,
            postgres,
            extract_files,
            replace_dump,
            allow_partial,
            from_remote,
            identity,
        } => {
            let how = How {
                pg_mode: *postgres,
                extract_to: extract_files.as_deref(),
                replace_dump: *replace_dump,
                allow_partial: *allow_partial,
                identity: crate::crypt::identity_for(identity.as_deref(), &ctx.config),
            };
            let selector = date.as_deref().unwrap_or(backup);
            match from_remote {
                None => restore(&ctx, &store, selector, how, !apply).await,
                Some(name) => match crate::remote::fetch(&ctx.config, &store, name, selector).await {
                    Ok(id) => restore(&ctx, &store, &id, how, !apply).await,
                    Err(e) => Err(e),
                },
            }
        }
        Command::Prune => prune(&ctx, &store, !apply),
        Command::Drill { backup, identity } => {
            crate::drill::run(&ctx, &store, backup, crate::crypt::identity_for(identity.as_deref(), &ctx.config)).await
        }
        Command::List { .. } | Command::Schedule { .. } | Command::Completions(_) => unreachable!("handled before"),
    };
    job.finish(&ctx, result).await
}

fn gzip(ctx: &Context, level: Option<u32>) -> Gzip {
    let threads = match ctx.config.backup.threads {
        0 => std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
        n => n,
    };
    Gzip { level: level.unwrap_or(ctx.config.backup.level), threads }
}

/// One tar.gz of a backup: its file name, content kind, `(name in the archive, path)` items,
/// and paths left out.
struct Tarball {
    file: &'static str,
    content: &'static str,
    items: Vec<(String, PathBuf)>,
    exclude: Vec<PathBuf>,
}

/// What `create` reports.
#[derive(Debug, Serialize)]
struct Created<'a> {
    id: &'a str,
    dir: String,
    /// `complete`, or `partial` when a source or a cluster shard failed.
    outcome: &'static str,
    files: &'a [File],
    sources: &'a [Source],
    notes: Vec<String>,
    errors: Vec<String>,
    /// What failed, as the manifest records it.
    failed: &'a [Failed],
    seconds: f64,
    /// Whether the backup passed the verification that follows it (`None`: not verified, as
    /// `backup.prune_after_create` is off).
    verified: Option<bool>,
    /// What retention removed after the backup (`None`: not applied).
    pruned: Option<serde_json::Value>,
}

async fn create(ctx: &Context, store: &Store, only: &[Part], level: Option<u32>) -> anyhow::Result<JobResult> {
    let start = Instant::now();
    let config = &ctx.config;
    let wants = |part: Part| only.is_empty() || only.contains(&part);
    let gzip = gzip(ctx, level);
    let (id, partial) = store.begin(Utc::now())?;
    let steps = config.redis.len() * usize::from(wants(Part::Redis))
        + config.postgres.len() * usize::from(wants(Part::Postgres))
        + config.memory.len() * usize::from(wants(Part::Memory))
        + 3;
    let progress = ctx.printer.progress(steps as u64, "backup");
    let mut files = Vec::new();
    let mut sources = Vec::new();
    let (mut notes, mut errors) = (Vec::new(), Vec::new());
    // How each target fared: every one unreachable is exit 4, some is a partial backup.
    let mut tally = Tally::default();
    let mut failed: Vec<Failed> = Vec::new();
    let mut fail = |tier: &str, target: &str, error: &anyhow::Error| {
        failed.push(Failed {
            tier: tier.into(),
            target: target.into(),
            node: None,
            error: clip(&cache_core::redact::scrub(&format!("{error:#}")), MAX_LINE),
        });
    };
    let mut add = |path: &Path, content: &str, written: (String, u64)| {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        files.push(File::plain(name, content, written));
    };
    // Every source the backup is configured to take, with its result, for the manifest.
    let mut configured: Vec<archive::ManifestTaken> = Vec::new();
    let mut record = |tier: &str, target: &str, error: Option<String>| {
        configured.push(archive::ManifestTaken {
            tier: tier.into(),
            target: target.into(),
            result: if error.is_none() { "ok" } else { "failed" }.into(),
            error: error.map(|e| clip(&cache_core::redact::scrub(&e), MAX_LINE)),
        });
    };
    let mut redis_files = Vec::new();
    let mut redis_failed = Vec::new();
    // Targets cache-health took out of service are configured sources this backup lacks.
    for (tier, name, why) in disabled_targets(ctx)? {
        let part = match tier {
            Tier::Redis => Part::Redis,
            Tier::Postgres => Part::Postgres,
            Tier::Memory => Part::Memory,
            _ => continue,
        };
        if !wants(part) || !selected(&ctx.common.tiers, tier, &name) {
            continue;
        }
        tally.add(Reach::Unreachable);
        errors.push(format!("{tier}/{name}: {why}"));
        redis_failed.push(Failed { tier: tier.to_string(), target: name.clone(), node: None, error: why.clone() });
        record(tier.as_str(), &name, Some(why));
    }
    if wants(Part::Redis) {
        for target in config.redis.iter().filter(|t| selected(&ctx.common.tiers, Tier::Redis, &t.name)) {
            progress.set_message(format!("redis/{}", target.name));
            let done = backup_redis(&ctx.state, config, target, &partial, gzip).await;
            redis_files.extend(done.files);
            sources.extend(done.source);
            notes.extend(done.notes);
            errors.extend(done.errors);
            tally.add(if done.unreachable {
                Reach::Unreachable
            } else if done.failed.is_empty() {
                Reach::Done
            } else {
                Reach::Failed
            });
            let why: Vec<String> = done.failed.iter().map(|f| format!("{}: {}", f.label(), f.error)).collect();
            record("redis", &target.name, (!why.is_empty()).then(|| why.join("; ")));
            redis_failed.extend(done.failed);
            progress.inc(1);
        }
    }
    if wants(Part::Postgres) {
        for target in config.postgres.iter().filter(|t| selected(&ctx.common.tiers, Tier::Postgres, &t.name)) {
            progress.set_message(format!("postgres/{}", target.name));
            let taken = async {
                let db = postgres::connect(target).await?;
                let version: String = db.query_one("SHOW server_version", &[]).await?.get(0);
                // One snapshot for the figures a drill compares with and the data itself.
                db.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
                let schema = pg_dump::schema_sql(&db, &target.table).await?;
                let figures = crate::drill::table_figures(&db, &target.table).await?;
                let schema_path = partial.join(format!("postgres-{}.schema.sql", target.name));
                write_private(&schema_path, schema.as_bytes())?;
                let schema_written = archive::sha256_file(&schema_path)?;
                let data_path = partial.join(format!("postgres-{}.copy.gz", target.name));
                let (rows, data_written) = pg_dump::copy_out(&db, &target.table, &data_path, gzip).await?;
                db.batch_execute("COMMIT").await?;
                let figures =
                    archive::SourceFigures { rows: Some(figures.0), rows_md5: Some(figures.1), ..Default::default() };
                anyhow::Ok((version, schema_path, schema_written, data_path, data_written, rows, figures))
            };
            let taken = taken.await;
            tally.add(Reach::of(&taken));
            match taken {
                Ok((version, schema_path, schema_written, data_path, data_written, rows, figures)) => {
                    record("postgres", &target.name, None);
                    add(&schema_path, "postgres-schema", schema_written);
                    add(&data_path, "postgres-copy", data_written);
                    notes.push(format!("postgres/{}: {rows} rows of `{}`", target.name, target.table));
                    sources.push(Source {
                        tier: "postgres".into(),
                        target: target.name.clone(),
                        endpoint: target.url.to_string(),
                        server_version: Some(version),
                        method: "copy".into(),
                        shards: None,
                        figures: Some(figures),
                    });
                }
                Err(e) => {
                    record("postgres", &target.name, Some(format!("{e:#}")));
                    fail("postgres", &target.name, &e);
                    errors.push(format!("postgres/{}: {e:#}", target.name));
                }
            }
            progress.inc(1);
        }
    }
    if wants(Part::Memory) {
        for target in config.memory.iter().filter(|t| selected(&ctx.common.tiers, Tier::Memory, &t.name)) {
            progress.set_message(format!("memory/{}", target.name));
            let user = config.memory_user_id(target);
            let path = partial.join(format!("memory-{}.jsonl.gz", target.name));
            let taken = async {
                anyhow::ensure!(!user.trim().is_empty(), "no user to back up (set `user_id` or `project_name`)");
                let client = MemoryClient::new(target, user)?;
                crate::memory_dump::export(&client, &path, gzip).await
            };
            let taken = taken.await;
            tally.add(Reach::of(&taken));
            match taken {
                Ok((count, written)) => {
                    record("memory", &target.name, None);
                    add(&path, "memory-jsonl", written);
                    notes.push(format!("memory/{}: {count} memories of user `{user}`", target.name));
                    sources.push(Source {
                        tier: "memory".into(),
                        target: target.name.clone(),
                        endpoint: target.url.to_string(),
                        server_version: None,
                        method: "api".into(),
                        shards: None,
                        figures: None,
                    });
                }
                Err(e) => {
                    record("memory", &target.name, Some(format!("{e:#}")));
                    fail("memory", &target.name, &e);
                    errors.push(format!("memory/{}: {e:#}", target.name));
                }
            }
            progress.inc(1);
        }
    }
    let mut tarballs: Vec<Tarball> = Vec::new();
    if wants(Part::Config)
        && let ConfigSource::File(path) = &ctx.config_source
    {
        tarballs.push(Tarball {
            file: "config.tar.gz",
            content: "config",
            items: vec![("config.toml".into(), path.clone())],
            exclude: vec![],
        });
    }
    if wants(Part::State) {
        let root = ctx.state.root().to_path_buf();
        // Never the backups themselves, nor the lock files.
        let exclude = vec![store.dir().to_path_buf(), root.join("locks")];
        tarballs.push(Tarball { file: "state.tar.gz", content: "state", items: vec![("state".into(), root)], exclude });
    }
    if wants(Part::Paths) && !config.backup.paths.is_empty() {
        let items = config
            .backup
            .paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (format!("paths/{i}-{}", p.file_name().map_or("root".into(), |n| n.to_string_lossy())), p.clone())
            })
            .collect();
        tarballs.push(Tarball {
            file: "paths.tar.gz",
            content: "paths",
            items,
            exclude: vec![store.dir().to_path_buf()],
        });
    }
    for Tarball { file, content, items, exclude } in tarballs {
        progress.set_message(file);
        progress.inc(1);
        let path = partial.join(file);
        let written = archive::GzFile::create(&path, gzip.level, gzip.threads)
            .and_then(|gz| Ok(archive::tar_paths(gz, &items, &exclude)?))
            .and_then(archive::GzFile::finish);
        match written {
            Ok(written) => {
                record("files", content, None);
                add(&path, content, written);
            }
            Err(e) => {
                record("files", content, Some(format!("{e:#}")));
                fail("files", content, &e);
                errors.push(format!("{file}: {e:#}"));
            }
        }
    }
    progress.finish_and_clear();
    let files = [redis_files, files].concat();
    failed.splice(0..0, redis_failed);
    if files.is_empty() {
        let _ = std::fs::remove_dir_all(&partial);
        if tally.none_reached() {
            return Err(NoneReachable(format!(
                "nothing was backed up: every target was unreachable: {}",
                condense(&errors).join("; ")
            ))
            .into());
        }
        if errors.is_empty() {
            return Err(UsageError(
                "nothing was backed up: no part selected (`--only`, `--tier` and the configuration leave nothing)"
                    .into(),
            )
            .into());
        }
        bail!("nothing was backed up: {}", errors.join("; "));
    }
    let mut files = files;
    let recipients = &ctx.config.backup.encrypt_to;
    if !recipients.is_empty() {
        // At rest, here and on every remote: the identity is only needed to restore.
        crate::crypt::encrypt_all(&partial, &mut files, recipients)?;
        notes.push(format!(
            "every file encrypted (age) to {} recipient(s): a restore needs the identity",
            recipients.len()
        ));
    }
    let manifest = Manifest {
        schema_version: cache_core::state::SCHEMA_VERSION,
        id: id.clone(),
        created_at: Utc::now(),
        host: cache_core::system::hostname(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        sources,
        files,
        failed,
        configured,
    };
    let dir = store.commit(&partial, &manifest)?;
    let mut complete = errors.is_empty() && !manifest.is_partial();
    // Retention runs itself: the new backup is verified, and when it is complete and sound the
    // rules are applied (never to the newest verified complete backup: this one).
    let (mut verified, mut pruned) = (None, None);
    // (A partial backup is neither: it prunes nothing while a source is failing.)
    if config.backup.prune_after_create && complete {
        let v = check(ctx, &Backup { dir: dir.clone(), manifest: manifest.clone() })?;
        if !v.ok {
            errors.push(format!("backup {id} failed verification: {}", v.problems.join("; ")));
        } else {
            let done = apply_retention(ctx, store, false)?;
            errors.extend(done.errors.iter().map(|e| format!("prune: {e}")));
            pruned = Some(done);
        }
        verified = Some(v.ok);
    }
    let sound = verified != Some(false);
    if complete && sound && !ctx.config.backup.remotes.is_empty() {
        // Off-host copies of a backup that verifies, and their retention.
        let backup = store::Backup { dir: dir.clone(), manifest: manifest.clone() };
        let problems = if verified == Some(true) { Vec::new() } else { archive::verify(&dir, &manifest) };
        if problems.is_empty() {
            let copied = crate::remote::copy_everywhere(&ctx.config, &backup, retention_policy(ctx)).await;
            notes.extend(copied.notes);
            errors.extend(copied.errors);
        } else {
            let what: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.path, p.problem)).collect();
            errors.push(format!("not copied to the remotes: the backup does not verify ({})", what.join("; ")));
        }
        complete = errors.is_empty();
    }
    // Readable however a source failed: one line per kind of error, none over a few hundred
    // characters, in the text, the JSON and the run record alike.
    let errors = condense(&errors);
    let created = Created {
        id: &id,
        dir: dir.display().to_string(),
        outcome: if complete { "complete" } else { "partial" },
        files: &manifest.files,
        sources: &manifest.sources,
        notes,
        errors: errors.clone(),
        failed: &manifest.failed,
        seconds: start.elapsed().as_secs_f64(),
        verified,
        pruned: pruned.as_ref().map(|p| {
            serde_json::json!({
                "removed": p.removed,
                "kept": p.decisions.iter().filter(|d| d.keep).count(),
                "incomplete_removed": p.incomplete.len(),
            })
        }),
    };
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&created)?;
    } else if !printer.is_quiet() || !errors.is_empty() {
        let mut table = printer.table();
        table.set_header(["File", "Content", "Size", "SHA-256"]);
        for f in &manifest.files {
            table.add_row(vec![f.path.clone(), f.content.clone(), bytes(f.bytes), f.sha256[..16].to_owned()]);
        }
        let mut text = if !sound {
            format!("backup {id} FAILED verification after {:.2} s: {}\n{table}\n", created.seconds, dir.display())
        } else if complete {
            let verified = if verified == Some(true) { ", verified" } else { "" };
            format!("backup {id} complete{verified} in {:.2} s: {}\n{table}\n", created.seconds, dir.display())
        } else {
            let what: Vec<String> = manifest.missing().iter().map(Failed::label).collect();
            let what =
                if what.is_empty() { "every source was taken; see the errors".to_owned() } else { what.join(", ") };
            format!(
                "backup {id} PARTIAL in {:.2} s (not backed up: {what}): {}\n{table}\n",
                created.seconds,
                dir.display()
            )
        };
        for note in &created.notes {
            text.push_str(&format!("note: {note}\n"));
        }
        if let Some(pruned) = &pruned {
            for d in pruned.decisions.iter().filter(|d| !d.keep && pruned.removed.contains(&d.id)) {
                text.push_str(&format!("pruned: {} ({})\n", d.id, d.reason));
            }
        }
        for error in &errors {
            text.push_str(&format!("error: {error}\n"));
        }
        printer.always(&text)?;
    }
    // The archives (configuration, state, paths) are no target: a failed one makes the backup
    // partial, and every target unreachable is exit 4 however many archives were written.
    let exit_code = if !complete {
        tally.code_with(1)
    } else if !sound || !errors.is_empty() {
        exit::PARTIAL
    } else {
        exit::SUCCESS
    };
    Ok(JobResult {
        outcome: if !sound {
            Outcome::Failed
        } else if exit_code == exit::SUCCESS {
            Outcome::Success
        } else {
            Outcome::Partial
        },
        exit_code,
        summary: serde_json::json!({ "id": id, "outcome": created.outcome, "failed": manifest.failed, "files": manifest.files.len(), "bytes": manifest.files.iter().map(|f| f.bytes).sum::<u64>(), "errors": errors }),
    })
}

/// The targets cache-health disabled whose time has not run out (`Context::load` left them
/// out of the configuration): tier, name, and why, for the manifest.
fn disabled_targets(ctx: &Context) -> anyhow::Result<Vec<(Tier, String, String)>> {
    let Some(disabled) = ctx.state.read_json::<cache_core::tier::Disabled>(cache_core::tier::DISABLED_FILE)? else {
        return Ok(Vec::new());
    };
    let now = cache_core::clock::now()?;
    Ok(disabled
        .targets
        .iter()
        .filter(|(_, d)| d.until > now)
        .filter_map(|(key, d)| {
            let (tier, name) = key.split_once('/')?;
            let why = format!(
                "disabled by cache-health until {} ({}): not backed up",
                d.until.format("%Y-%m-%d %H:%M:%S UTC"),
                d.reason
            );
            Some((tier.parse().ok()?, name.to_owned(), why))
        })
        .collect())
}

/// What backing up one Redis target gave.
#[derive(Default)]
struct RedisBackup {
    files: Vec<File>,
    source: Option<Source>,
    notes: Vec<String>,
    errors: Vec<String>,
    failed: Vec<Failed>,
    unreachable: bool,
}

impl RedisBackup {
    fn fail(&mut self, target: &str, node: Option<&str>, error: &anyhow::Error) {
        let label = match node {
            Some(node) => format!("redis/{target} shard {node}"),
            None => format!("redis/{target}"),
        };
        self.errors.push(format!("{label}: {error:#}"));
        self.failed.push(Failed {
            tier: "redis".into(),
            target: target.into(),
            node: node.map(str::to_owned),
            error: clip(&cache_core::redact::scrub(&format!("{error:#}")), MAX_LINE),
        });
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Backs up one Redis target: its server, or every primary of its cluster (one dump each, in
/// parallel, with node, node id and slots). A primary that fails, or slots no primary serves,
/// make the result partial.
async fn backup_redis(
    state: &cache_core::state::StateDir,
    config: &cache_core::config::Config,
    target: &cache_core::config::RedisTarget,
    partial: &Path,
    gzip: Gzip,
) -> RedisBackup {
    let (timeout, method) = (config.backup.bgsave_timeout, config.backup.redis_method);
    let mut out = RedisBackup::default();
    let layout = async {
        let mut conn = redis_client::connect(target).await?;
        let info = redis_client::info(&mut conn).await.unwrap_or_default();
        anyhow::Ok(redis_client::cluster_primaries(&mut conn, &info).await.context("CLUSTER NODES")?)
    };
    let nodes = match layout.await {
        Err(e) => {
            out.unreachable = Reach::of_error(&e) == Reach::Unreachable;
            out.fail(&target.name, None, &e);
            return out;
        }
        Ok(Some(nodes)) => nodes,
        Ok(None) => {
            let base = partial.join(format!("redis-{}", target.name));
            match crate::drill::take(state, target, &base, gzip, timeout, method).await {
                Ok((path, taken, figures)) => {
                    out.files.push(File::plain(file_name(&path), taken.content, taken.written));
                    out.notes.extend(taken.notes.into_iter().map(|n| format!("redis/{}: {n}", target.name)));
                    out.source = Some(Source {
                        tier: "redis".into(),
                        target: target.name.clone(),
                        endpoint: target.url.to_string(),
                        server_version: taken.version,
                        method: taken.method.into(),
                        shards: None,
                        figures: figures.map(|f| archive::SourceFigures { dumps: vec![f], ..Default::default() }),
                    });
                }
                Err(e) => {
                    out.unreachable = Reach::of_error(&e) == Reach::Unreachable;
                    out.fail(&target.name, None, &e);
                }
            }
            return out;
        }
    };
    let missing = manifest::uncovered(nodes.iter().flat_map(|n| n.slots.iter().copied()));
    if !missing.is_empty() {
        let e = anyhow::anyhow!(
            "slots {} are served by no primary of the cluster: their keys cannot be backed up",
            manifest::format_ranges(&missing)
        );
        out.fail(&target.name, None, &e);
    }
    if nodes.is_empty() {
        out.fail(&target.name, None, &anyhow::anyhow!("the cluster lists no primary serving slots"));
    }
    // Every primary at once: each dump is the server's own work (a fork, or its replication
    // stream), so the shards take about as long as the largest. (One task: the gzip writer is
    // not `Send`.)
    let results = futures::future::join_all(nodes.iter().map(|node| {
        let base = partial.join(manifest::shard_base(&target.name, &node.addr()));
        async move {
            if node.host.is_empty() {
                bail!("the cluster knows no address for node {} ({})", node.id, node.flags);
            }
            let shard = redis_client::node_target(target, &node.host, node.port)?;
            let taken = crate::drill::take(state, &shard, &base, gzip, timeout, method).await;
            let taken = match taken {
                Ok(taken) => taken,
                Err(e) if node.flags.contains("fail") => {
                    return Err(e.context(format!("the cluster flags it `{}`", node.flags)));
                }
                Err(e) => return Err(e),
            };
            let myid = async {
                let mut conn = redis_client::connect(&shard).await?;
                anyhow::Ok(redis::cmd("CLUSTER").arg("MYID").query_async::<String>(&mut conn).await?)
            };
            let myid = myid.await.unwrap_or_else(|_| node.id.clone());
            anyhow::Ok((taken, myid))
        }
    }))
    .await;
    let mut methods: Vec<&'static str> = Vec::new();
    let mut version = None;
    let mut shards = Vec::new();
    let mut dumps = Vec::new();
    // No shard reached at all: the target was unreachable.
    out.unreachable = !results.is_empty()
        && results.iter().all(|r| r.as_ref().err().is_some_and(|e| Reach::of_error(e) == Reach::Unreachable));
    for (node, result) in nodes.iter().zip(results) {
        let addr = node.addr();
        match result {
            Ok(((path, taken, figures), myid)) => {
                dumps.extend(figures);
                let (sha256, bytes) = taken.written;
                out.files.push(File {
                    path: file_name(&path),
                    content: taken.content.into(),
                    bytes,
                    sha256,
                    node: Some(addr.clone()),
                    node_id: Some(myid.clone()),
                    slots: Some(node.slots.clone()),
                    encrypted: None,
                });
                out.notes.extend(taken.notes.into_iter().map(|n| format!("redis/{} shard {addr}: {n}", target.name)));
                if !methods.contains(&taken.method) {
                    methods.push(taken.method);
                }
                version = version.or(taken.version);
                shards.push(manifest::Shard { node: addr, node_id: myid, slots: node.slots.clone() });
            }
            Err(e) => {
                out.fail(&target.name, Some(&addr), &e);
                shards.push(manifest::Shard { node: addr, node_id: node.id.clone(), slots: node.slots.clone() });
            }
        }
    }
    let taken = out.files.len();
    out.notes.push(format!(
        "redis/{}: Redis Cluster, {taken} of {} primaries backed up ({} of {} slots)",
        target.name,
        nodes.len(),
        out.files
            .iter()
            .flat_map(|f| f.slots.iter().flatten())
            .map(|(a, b)| u32::from(*b) - u32::from(*a) + 1)
            .sum::<u32>(),
        manifest::SLOTS
    ));
    out.source = Some(Source {
        tier: "redis".into(),
        target: target.name.clone(),
        endpoint: target.url.to_string(),
        server_version: version,
        method: if methods.is_empty() { "none".into() } else { methods.join("+") },
        shards: Some(shards),
        figures: Some(archive::SourceFigures { dumps, ..Default::default() }),
    });
    out
}

/// Writes `data` to the new file `path` (mode 0600) and syncs it.
fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = archive::private_file(path)?;
    file.write_all(data).and_then(|()| file.sync_all()).with_context(|| format!("writing `{}`", path.display()))
}

#[derive(Debug, Serialize)]
struct Listed {
    id: String,
    created_at: chrono::DateTime<Utc>,
    bytes: u64,
    contents: String,
    /// `complete`, or `partial`: the backup lacks a source it was configured to take.
    outcome: &'static str,
    /// What the backup lacks because it failed when it was taken (empty: complete).
    failed: Vec<String>,
    verified: Option<Verification>,
}

fn list(ctx: &Context, store: &Store) -> anyhow::Result<u8> {
    let verified = store::verifications(&ctx.state)?;
    let backups: Vec<Listed> = store
        .backups()?
        .into_iter()
        .rev()
        .map(|b| Listed {
            id: b.manifest.id.clone(),
            created_at: b.manifest.created_at,
            bytes: b.bytes(),
            contents: b.contents(),
            outcome: if b.manifest.is_partial() { "partial" } else { "complete" },
            failed: b.manifest.missing().iter().map(Failed::label).collect(),
            verified: verified.get(&b.manifest.id).cloned(),
        })
        .collect();
    let partials = store.partials()?;
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        let partials: Vec<String> = partials.iter().map(|p| p.display().to_string()).collect();
        printer.json(&serde_json::json!({ "backups": backups, "incomplete": partials }))?;
        return Ok(exit::SUCCESS);
    }
    let mut table = printer.table();
    table.set_header(["ID", "Age", "Size", "Contents", "Verified"]);
    let now = Utc::now();
    for b in &backups {
        let age = humantime::format_duration(Duration::from_secs((now - b.created_at).num_seconds().max(0) as u64));
        let verified = match &b.verified {
            None => "never".to_owned(),
            Some(v) if v.ok => format!("ok at {}", v.at.format("%Y-%m-%d %H:%M")),
            Some(v) => format!("FAILED at {}: {}", v.at.format("%Y-%m-%d %H:%M"), v.problems.join("; ")),
        };
        let contents = if b.failed.is_empty() {
            b.contents.clone()
        } else {
            format!("{} (PARTIAL: not {})", b.contents, b.failed.join(", "))
        };
        table.add_row(vec![b.id.clone(), age.to_string(), bytes(b.bytes), contents, verified]);
    }
    let mut text = format!("{} backups in {}\n{table}\n", backups.len(), store.dir().display());
    for p in &partials {
        text.push_str(&format!("incomplete (a failed or interrupted create; prune removes it): {}\n", p.display()));
    }
    printer.info(&text)?;
    Ok(exit::SUCCESS)
}

/// Keys in each logical export of a backup (by file name), as its verification counted them.
type LogicalKeys = std::collections::BTreeMap<String, u64>;

/// Verifies `backup`, also with `redis-check-rdb` when installed; records and returns the result.
pub(crate) fn check(ctx: &Context, backup: &Backup) -> anyhow::Result<Verification> {
    Ok(check_counting(ctx, backup)?.0)
}

/// [`check`], and the keys of each logical export it read.
fn check_counting(ctx: &Context, backup: &Backup) -> anyhow::Result<(Verification, LogicalKeys)> {
    let mut keys = LogicalKeys::new();
    let mut problems: Vec<String> = archive::verify(&backup.dir, &backup.manifest)
        .into_iter()
        .map(|p| format!("{}: {}", p.path, p.problem))
        .collect();
    // A cluster backup must hold every primary's shard, and its shards every slot.
    problems.extend(backup.manifest.cluster_problems());
    // An encrypted backup is checked as stored (sizes, SHA-256) without the key; its contents
    // when a restore decrypts it.
    if problems.is_empty() && !crate::crypt::is_encrypted(&backup.manifest) {
        for file in backup.manifest.files.iter().filter(|f| f.content == "redis-rdb" && f.node.is_none()) {
            if let Some(problem) = redis_check_rdb(&backup.dir.join(&file.path))? {
                problems.push(format!("{}: {problem}", file.path));
            }
        }
        // A logical export (format 1 or 2) is read to its end mark, every record checked.
        for file in backup.manifest.files.iter().filter(|f| f.content == "redis-logical") {
            match redis_dump::check_logical(&backup.dir.join(&file.path)) {
                Ok((_, n)) => {
                    keys.insert(file.path.clone(), n);
                }
                Err(e) => problems.push(format!("{}: not a sound logical export: {e:#}", file.path)),
            }
        }
    }
    let verification = Verification { at: Utc::now(), ok: problems.is_empty(), problems };
    store::record_verification(&ctx.state, &backup.manifest.id, verification.clone())?;
    Ok((verification, keys))
}

/// Runs `redis-check-rdb` on a compressed RDB when the tool is installed.
fn redis_check_rdb(rdb_gz: &Path) -> anyhow::Result<Option<String>> {
    let Some(tool) = cache_core::system::which("redis-check-rdb") else {
        return Ok(None);
    };
    let dir = tempfile::tempdir()?;
    let rdb = dir.path().join("dump.rdb");
    let mut input = flate2::read::MultiGzDecoder::new(std::fs::File::open(rdb_gz)?);
    std::io::copy(&mut input, &mut std::fs::File::create(&rdb)?)?;
    let output = std::process::Command::new(tool).arg(&rdb).output()?;
    Ok((!output.status.success()).then(|| {
        let text = String::from_utf8_lossy(&output.stdout);
        format!("redis-check-rdb: {}", text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("failed"))
    }))
}

fn verify(ctx: &Context, store: &Store, selector: &str, all: bool) -> anyhow::Result<JobResult> {
    let backups = if all { store.backups()? } else { vec![store.find(selector)?] };
    let mut results = Vec::new();
    let progress = ctx.printer.progress(backups.len() as u64, "verify");
    for backup in &backups {
        progress.set_message(backup.manifest.id.clone());
        results.push((backup.manifest.id.clone(), check(ctx, backup)?));
        progress.inc(1);
    }
    progress.finish_and_clear();
    let failed = results.iter().filter(|(_, v)| !v.ok).count();
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        let doc: Vec<_> =
            results.iter().map(|(id, v)| serde_json::json!({ "id": id, "ok": v.ok, "problems": v.problems })).collect();
        printer.json(&serde_json::json!({ "verified": doc }))?;
    } else if !printer.is_quiet() || failed > 0 {
        let mut text = String::new();
        for (id, v) in &results {
            if v.ok {
                text.push_str(&format!("{id}: ok\n"));
            } else {
                text.push_str(&format!("{id}: FAILED\n"));
                for p in &v.problems {
                    text.push_str(&format!("  {p}\n"));
                }
            }
        }
        printer.always(&text)?;
    }
    let (outcome, exit_code) =
        if failed == 0 { (Outcome::Success, exit::SUCCESS) } else { (Outcome::Failed, exit::PARTIAL) };
    Ok(JobResult { outcome, exit_code, summary: serde_json::json!({ "verified": results.len(), "failed": failed }) })
}

/// What a restore did, kept in `backup/restores.jsonl`.
#[derive(Debug, Default, Serialize)]
struct Recovery {
    /// `restore` (a drill records `drill`).
    kind: &'static str,
    /// When it ended.
    at: Option<chrono::DateTime<Utc>>,
    /// The host it ran on.
    host: String,
    backup: String,
    dry_run: bool,
    /// `complete`, `partial` (something skipped, or left to do by hand) or `dry_run`.
    outcome: &'static str,
    /// The restored targets checked after the restore: each answers, and what it holds now.
    checks: Vec<String>,
    restored: Vec<String>,
    skipped: Vec<String>,
    /// What is left to do by hand to finish the restore (restart the servers whose new dump
    /// file is in place but not loaded).
    actions: Vec<String>,
    /// Sources of the backup that `--tier` left out.
    left_out: Vec<String>,
    /// Newer partial backups passed over for this one.
    notes: Vec<String>,
    extracted: Vec<String>,
    seconds: f64,
}

/// How a restore puts data back.
struct How<'a> {
    pg_mode: Option<pg_dump::Mode>,
    extract_to: Option<&'a Path>,
    replace_dump: bool,
    allow_partial: bool,
    /// The age identity file of an encrypted backup.
    identity: Option<std::path::PathBuf>,
}

async fn restore(
    ctx: &Context,
    store: &Store,
    selector: &str,
    how: How<'_>,
    dry_run: bool,
) -> anyhow::Result<JobResult> {
    let How { pg_mode, extract_to, replace_dump, allow_partial, identity } = how;
    let start = Instant::now();
    let (backup, passed_over) = choose(ctx, store, selector, allow_partial, extract_to.is_some())?;
    let lacking = lacks(ctx, &backup.manifest, extract_to.is_some());
    // An encrypted backup is restored from its plaintexts, decrypted into a private temporary
    // directory beside it and checked against the manifest.
    let plain = match crate::crypt::is_encrypted(&backup.manifest) {
        true => Some(crate::crypt::decrypt(&backup, identity.as_deref(), store.dir())?),
        false => None,
    };
    let backup = plain.as_ref().map_or(backup, |p| p.backup.clone());
    let (verification, logical_keys) = check_counting(ctx, &backup)?;
    if !verification.ok {
        bail!(
            "backup {} failed verification, so nothing was restored: {}",
            backup.manifest.id,
            verification.problems.join("; ")
        );
    }
    // A table mode is needed only when a table of the backup goes back into a selected,
    // configured target: `--tier redis` restores the keys alone.
    let restores_table = backup.manifest.sources.iter().any(|s| {
        s.tier == "postgres"
            && backup.manifest.files.iter().any(|f| f.path == format!("postgres-{}.copy.gz", s.target))
            && ctx
                .config
                .postgres
                .iter()
                .any(|t| t.name == s.target && selected(&ctx.common.tiers, Tier::Postgres, &t.name))
    });
    if restores_table && pg_mode.is_none() && !dry_run {
        return Err(UsageError(format!(
            "backup {} holds a cache table: choose --postgres truncate (the table becomes the backup) or --postgres merge (add the missing rows)",
            backup.manifest.id
        ))
        .into());
    }
    let mut recovery = Recovery { backup: backup.manifest.id.clone(), dry_run, ..Recovery::default() };
    recovery.notes = passed_over;
    // What a partial backup lacks of this restore is not restored: said, and partial.
    recovery.skipped.extend(lacking.iter().map(|f| {
        format!(
            "{}: not in backup {} (it failed when the backup was taken: {})",
            f.label(),
            backup.manifest.id,
            f.error
        )
    }));
    let progress = ctx.printer.progress(backup.manifest.sources.len() as u64, "restore");
    for source in &backup.manifest.sources {
        let label = format!("{}/{}", source.tier, source.target);
        progress.set_message(label.clone());
        progress.inc(1);
        let tier = source.tier.parse::<Tier>().ok();
        if let Some(tier) = tier
            && !selected(&ctx.common.tiers, tier, &source.target)
        {
            recovery.left_out.push(format!("{label}: not selected by --tier"));
            continue;
        }
        match source.tier.as_str() {
            "memory" => {
                let Some(target) = ctx.config.memory.iter().find(|t| t.name == source.target) else {
                    recovery.skipped.push(format!("{label}: no such target in the configuration"));
                    continue;
                };
                let user = ctx.config.memory_user_id(target);
                let file = format!("memory-{}.jsonl.gz", source.target);
                let memories = crate::memory_dump::read(&backup.dir.join(&file))?;
                let client = MemoryClient::new(target, user)?;
                let done = crate::memory_dump::restore(&client, user, &memories, &backup.manifest.id, dry_run).await?;
                let verb = if dry_run { "would re-create" } else { "re-created" };
                let mut line = format!(
                    "{label}: {} memories {verb} for user `{user}`, {} already present",
                    done.restored, done.present
                );
                if done.foreign > 0 {
                    line.push_str(&format!(", {} of another user left out", done.foreign));
                }
                recovery.restored.push(line);
            }
            "redis" => {
                let Some(target) = ctx
                    .config
                    .redis
                    .iter()
                    .find(|t| t.name == source.target && selected(&ctx.common.tiers, Tier::Redis, &t.name))
                else {
                    recovery.skipped.push(format!("{label}: no such target selected in the configuration"));
                    continue;
                };
                let files = backup.manifest.redis_files(&source.target);
                if files.is_empty() {
                    bail!("{label}: the manifest lists no file for it");
                }
                let shards = files.iter().filter(|f| f.node.is_some()).count();
                if replace_dump && shards > 0 {
                    if shards != files.len() {
                        bail!("{label}: the manifest mixes cluster shards and a standalone dump");
                    }
                    let timeout = ctx.config.backup.bgsave_timeout;
                    let done = crate::cluster_dump::replace(target, &backup.dir, &files, timeout, dry_run)
                        .await
                        .with_context(|| label.clone())?;
                    recovery.restored.extend(done.done.iter().map(|line| format!("{label}: {line}")));
                    recovery.actions.extend(done.actions.iter().map(|line| format!("{label}: {line}")));
                    continue;
                }
                if replace_dump {
                    let [file] = files[..] else {
                        bail!(
                            "{label}: --replace-dump puts one server's dump file in place, and the manifest lists \
                             {} dump files for it: restore key by key instead (without --replace-dump)",
                            files.len()
                        );
                    };
                    if file.content != "redis-rdb" {
                        bail!("{label}: --replace-dump needs an RDB, and this backup holds a logical export");
                    }
                    let path = backup.dir.join(&file.path);
                    // Prove it loads first, as for any restore.
                    drop(crate::scratch::Scratch::load(&path, ctx.config.backup.bgsave_timeout).await?);
                    if dry_run {
                        recovery.restored.push(format!("{label}: would replace the dump file and reload it"));
                        continue;
                    }
                    let mut conn = redis_client::connect(target).await?;
                    let info = redis_client::info(&mut conn).await.unwrap_or_default();
                    if info.get("cluster_enabled").map(String::as_str) == Some("1") {
                        bail!(
                            "{label}: the target is a Redis Cluster, whose keys live on several primaries: \
                             restore key by key instead (without --replace-dump)"
                        );
                    }
                    let done = redis_dump::replace_dump(target, &path, ctx.config.backup.bgsave_timeout).await?;
                    recovery.restored.push(format!("{label}: {}", done.done));
                    recovery.actions.extend(done.action.map(|line| format!("{label}: {line}")));
                    continue;
                }
                // Key by key, each key on the primary serving its slot (a standalone server
                // takes them all), whatever the shape the backup was taken from.
                let router = if dry_run {
                    None
                } else {
                    let keyspace = cache_core::keyspace::Keyspace::new(&ctx.config, target);
                    let primaries = keyspace.primaries().await?;
                    if !primaries.complete() {
                        bail!(
                            "{label}: {} reached, so some keys would have nowhere to go: {}",
                            primaries.coverage(),
                            primaries.missing.join("; ")
                        );
                    }
                    Some((primaries.router().await?, primaries.coverage()))
                };
                // Record by record: what is held is a batch of small keys or one chunk of a
                // big one, never the dataset.
                let mut restorer = router.as_ref().map(|(router, _)| redis_dump::Restorer::new(router));
                let mut read = 0u64;
                for file in &files {
                    let path = backup.dir.join(&file.path);
                    let restoring = format!("{label}: restoring `{}`", file.path);
                    if file.content == "redis-rdb" {
                        // Prove the RDB loads, then read every key back from the scratch server.
                        let scratch = crate::scratch::Scratch::load(&path, ctx.config.backup.bgsave_timeout).await?;
                        let mut from = redis_client::connect(&scratch_target(target, &scratch.url())?).await?;
                        match &mut restorer {
                            Some(restorer) => {
                                redis_dump::copy_keys(&mut from, restorer).await.context(restoring)?;
                            }
                            None => read += redis::cmd("DBSIZE").query_async::<u64>(&mut from).await?,
                        }
                    } else {
                        match &mut restorer {
                            Some(restorer) => redis_dump::restore_logical(&path, restorer).await.context(restoring)?,
                            None => {
                                read += match logical_keys.get(&file.path) {
                                    Some(n) => *n,
                                    None => tokio::task::block_in_place(|| redis_dump::check_logical(&path))?.1,
                                }
                            }
                        }
                    }
                }
                let total = match restorer {
                    Some(restorer) => {
                        let (total, keys) = restorer.finish().await.with_context(|| label.clone())?;
                        read += keys;
                        total
                    }
                    None => redis_dump::Routed::default(),
                };
                let from = if shards > 0 { format!(" from {shards} cluster shards") } else { String::new() };
                let Some((_, coverage)) = router else {
                    recovery.restored.push(format!("{label}: would restore {read} keys{from}"));
                    continue;
                };
                recovery.restored.push(format!(
                    "{label}: {} keys restored with their expiry times ({} had expired){from} into {coverage}",
                    total.restored, total.expired
                ));
                if total.unrouted > 0 {
                    recovery.skipped.push(format!(
                        "{label}: {} keys not restored: no primary of the target serves their slots",
                        total.unrouted
                    ));
                }
                if total.failed > 0 {
                    // One reply per refused key: folded by kind, so a server refusing every key
                    // is one line with a count, not one line (or one huge line) per key.
                    recovery
                        .skipped
                        .push(format!("{label}: {} keys not restored: the target refused them", total.failed));
                    recovery.skipped.extend(
                        cache_core::messages::condense(&total.errors)
                            .into_iter()
                            .map(|line| format!("{label}: {line}")),
                    );
                }
            }
            "postgres" => {
                let Some(target) = ctx
                    .config
                    .postgres
                    .iter()
                    .find(|t| t.name == source.target && selected(&ctx.common.tiers, Tier::Postgres, &t.name))
                else {
                    recovery.skipped.push(format!("{label}: no such target selected in the configuration"));
                    continue;
                };
                let schema =
                    std::fs::read_to_string(backup.dir.join(format!("postgres-{}.schema.sql", source.target)))?;
                let data = backup.dir.join(format!("postgres-{}.copy.gz", source.target));
                let Some(mode) = pg_mode else {
                    recovery.restored.push(format!("{label}: would load `{}`", target.table));
                    continue;
                };
                if dry_run {
                    recovery.restored.push(format!("{label}: would load `{}` ({mode:?})", target.table));
                    continue;
                }
                let mut db = postgres::connect(target).await?;
                let rows = pg_dump::restore(&mut db, &target.table, &schema, &data, mode).await?;
                recovery.restored.push(format!("{label}: {rows} rows loaded into `{}` ({mode:?})", target.table));
            }
            _ => {}
        }
    }
    progress.finish_and_clear();
    if let Some(dest) = extract_to {
        for file in backup.manifest.files.iter().filter(|f| f.path.ends_with(".tar.gz")) {
            let archive = backup.dir.join(&file.path);
            if dry_run {
                let entries = archive::check_tar_gz(&archive)?;
                recovery.extracted.push(format!(
                    "{}: would extract {} entries into {}",
                    file.path,
                    entries.len(),
                    dest.display()
                ));
            } else {
                let entries = archive::extract_tar_gz(&archive, dest)?;
                recovery.extracted.push(format!(
                    "{}: {} entries extracted into {}",
                    file.path,
                    entries.len(),
                    dest.display()
                ));
            }
        }
    }
    if !dry_run {
        recovery.checks = after_restore(ctx, &backup.manifest).await;
    }
    recovery.seconds = start.elapsed().as_secs_f64();
    recovery.kind = "restore";
    recovery.at = Some(Utc::now());
    recovery.host = cache_core::system::hostname();
    recovery.outcome = if dry_run {
        "dry_run"
    } else if recovery.skipped.is_empty() && recovery.actions.is_empty() {
        "complete"
    } else {
        "partial"
    };
    // Dry runs too: the record says what was tried, and when.
    ctx.state.append_jsonl("backup/restores.jsonl", &recovery)?;
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&recovery)?;
    } else if !printer.is_quiet() || !recovery.actions.is_empty() || !recovery.skipped.is_empty() {
        let mut text = format!("restore of backup {}{}:\n", recovery.backup, if dry_run { " (dry run)" } else { "" });
        for line in
            recovery.restored.iter().chain(&recovery.extracted).chain(&recovery.skipped).chain(&recovery.left_out)
        {
            text.push_str(&format!("  {line}\n"));
        }
        for note in &recovery.notes {
            text.push_str(&format!("note: {note}\n"));
        }
        if !recovery.actions.is_empty() {
            text.push_str(
                "not finished: restart each of these servers, which loads its new dump file as it starts (until \
                 then its automatic saves are off, so that none writes the old data over it):\n",
            );
            for line in &recovery.actions {
                text.push_str(&format!("  {line}\n"));
            }
        }
        printer.always(&text)?;
    }
    let exit_code =
        if recovery.skipped.is_empty() && recovery.actions.is_empty() { exit::SUCCESS } else { exit::PARTIAL };
    Ok(JobResult {
        outcome: if exit_code == 0 { Outcome::Success } else { Outcome::Partial },
        exit_code,
        summary: serde_json::to_value(&recovery)?,
    })
}

/// The health of what a restore put back: each selected, configured Redis target of the
/// backup answers PING and holds N keys; each PostgreSQL target's table holds N rows.
async fn after_restore(ctx: &Context, manifest: &Manifest) -> Vec<String> {
    let mut checks = Vec::new();
    for source in &manifest.sources {
        let label = format!("{}/{}", source.tier, source.target);
        match source.tier.as_str() {
            "redis" => {
                let Some(target) = ctx
                    .config
                    .redis
                    .iter()
                    .find(|t| t.name == source.target && selected(&ctx.common.tiers, Tier::Redis, &t.name))
                else {
                    continue;
                };
                let keyspace = cache_core::keyspace::Keyspace::new(&ctx.config, target);
                let line = match keyspace.primaries().await {
                    Ok(primaries) => {
                        let mut keys = 0u64;
                        let mut answered = 0;
                        for node in &primaries.nodes {
                            if let Ok(n) = redis::cmd("DBSIZE").query_async::<u64>(&mut node.conn.clone()).await {
                                keys += n;
                                answered += 1;
                            }
                        }
                        format!(
                            "{label}: answers ({answered} of {} primaries), {keys} keys after the restore",
                            primaries.nodes.len()
                        )
                    }
                    Err(e) => format!("{label}: does not answer after the restore: {e:#}"),
                };
                checks.push(clip(&line, MAX_LINE));
            }
            "postgres" => {
                let Some(target) = ctx
                    .config
                    .postgres
                    .iter()
                    .find(|t| t.name == source.target && selected(&ctx.common.tiers, Tier::Postgres, &t.name))
                else {
                    continue;
                };
                let line = match cache_core::clients::postgres::connect(target).await {
                    Ok(db) => {
                        let sql = format!(
                            "SELECT count(*)::bigint FROM {}",
                            cache_core::clients::postgres::quote_ident(&target.table)
                        );
                        match db.query_one(&sql, &[]).await {
                            Ok(row) => format!(
                                "{label}: answers, `{}` holds {} rows after the restore",
                                target.table,
                                row.get::<_, i64>(0)
                            ),
                            Err(e) => format!(
                                "{label}: answers, but `{}` cannot be counted: {}",
                                target.table,
                                cache_core::clients::postgres::error_text(&e)
                            ),
                        }
                    }
                    Err(e) => format!("{label}: does not answer after the restore: {e:#}"),
                };
                checks.push(clip(&line, MAX_LINE));
            }
            _ => {}
        }
    }
    checks
}

/// What `manifest` lacks that a restore with these `--tier` filters would put back: a source
/// that failed when the backup was taken, of a selected tier and a configured target (a tier
/// not selected, or a target this configuration does not have, would not be restored anyway);
/// an archive, when extracting.
fn lacks(ctx: &Context, manifest: &Manifest, extracting: bool) -> Vec<Failed> {
    let config = &ctx.config;
    manifest
        .missing()
        .into_iter()
        .filter(|f| match f.tier.parse::<Tier>() {
            Ok(tier) => {
                let configured = match tier {
                    Tier::Redis => config.redis.iter().any(|t| t.name == f.target),
                    Tier::Postgres => config.postgres.iter().any(|t| t.name == f.target),
                    Tier::Memory => config.memory.iter().any(|t| t.name == f.target),
                    _ => false,
                };
                configured && selected(&ctx.common.tiers, tier, &f.target)
            }
            // The configuration, state and path archives.
            Err(_) => extracting,
        })
        .collect()
}

/// The backup `selector` names, for a restore. `latest` and a date never take a backup that
/// lacks something this restore would put back (see [`lacks`]) unless `allow_partial`: they
/// take the newest complete one, and say which partial ones were passed over. A partial backup
/// named by its id is refused unless `allow_partial`.
fn choose(
    ctx: &Context,
    store: &Store,
    selector: &str,
    allow_partial: bool,
    extracting: bool,
) -> anyhow::Result<(Backup, Vec<String>)> {
    let newest = store.find(selector)?;
    let lacking = |b: &Backup| lacks(ctx, &b.manifest, extracting);
    let what = |b: &Backup| lacking(b).iter().map(Failed::label).collect::<Vec<_>>().join(", ");
    if allow_partial || lacking(&newest).is_empty() {
        return Ok((newest, Vec::new()));
    }
    let by_name = selector != "latest" && chrono::NaiveDate::parse_from_str(selector, "%Y-%m-%d").is_err();
    if by_name {
        bail!(
            "backup {} is partial (not backed up: {}): restore it with --allow-partial, or choose a complete backup              (`cache-backup list`)",
            newest.manifest.id,
            what(&newest)
        );
    }
    let backups = store.backups()?;
    let day = chrono::NaiveDate::parse_from_str(selector, "%Y-%m-%d").ok();
    let candidates: Vec<&Backup> =
        backups.iter().rev().filter(|b| day.is_none_or(|d| b.manifest.created_at.date_naive() == d)).collect();
    let mut passed = Vec::new();
    for b in candidates {
        if lacking(b).is_empty() {
            return Ok((b.clone(), passed));
        }
        passed.push(format!("passed over partial backup {} (not backed up: {})", b.manifest.id, what(b)));
    }
    bail!(
        "every backup matching `{selector}` is partial, the newest {} (not backed up: {}): restore it with          --allow-partial",
        newest.manifest.id,
        what(&newest)
    )
}

/// `target` pointed at the scratch server (same timeouts, no credentials).
fn scratch_target(
    target: &cache_core::config::RedisTarget,
    url: &str,
) -> anyhow::Result<cache_core::config::RedisTarget> {
    let mut scratch = target.clone();
    scratch.url = cache_core::redact::SafeUrl::parse(url)?;
    scratch.name = format!("{}-scratch", target.name);
    Ok(scratch)
}

/// The retention rules of the configuration.
fn retention_policy(ctx: &Context) -> retention::Policy {
    let settings = &ctx.config.backup;
    retention::Policy {
        keep_last: settings.keep_last,
        keep_daily: settings.keep_daily,
        keep_weekly: settings.keep_weekly,
        max_age: settings.max_age,
    }
}

/// What retention did (or, in a dry run, would do).
#[derive(Debug, Default, Serialize)]
struct Pruned {
    decisions: Vec<retention::Decision>,
    removed: Vec<String>,
    /// Directories left by failed or killed creates.
    incomplete: Vec<PathBuf>,
    errors: Vec<String>,
}

/// Applies the retention rules of `[backup]` to the backups in `store` (under the job lock, so
/// no create is running and `.partial-` directories are leftovers).
fn apply_retention(ctx: &Context, store: &Store, dry_run: bool) -> anyhow::Result<Pruned> {
    let verified = store::verifications(&ctx.state)?;
    let backups = store.backups()?;
    let candidates: Vec<retention::Candidate> = backups
        .iter()
        .map(|b| retention::Candidate {
            id: b.manifest.id.clone(),
            created_at: b.manifest.created_at,
            verified: verified.get(&b.manifest.id).is_some_and(|v| v.ok),
            complete: !b.manifest.is_partial(),
            holds: b.manifest.sources.iter().map(|s| format!("{}/{}", s.tier, s.target)).collect(),
        })
        .collect();
    let mut pruned =
        Pruned { decisions: retention::plan(&candidates, retention_policy(ctx), Utc::now()), ..Pruned::default() };
    pruned.incomplete = store.partials()?;
    if dry_run {
        return Ok(pruned);
    }
    for decision in pruned.decisions.iter().filter(|d| !d.keep) {
        match std::fs::remove_dir_all(store.dir().join(&decision.id)) {
            Ok(()) => pruned.removed.push(decision.id.clone()),
            Err(e) => pruned.errors.push(format!("{}: {e}", decision.id)),
        }
    }
    for p in &pruned.incomplete {
        if let Err(e) = std::fs::remove_dir_all(p) {
            pruned.errors.push(format!("{}: {e}", p.display()));
        }
    }
    store::forget_verifications(&ctx.state, &pruned.removed)?;
    Ok(pruned)
}

fn prune(ctx: &Context, store: &Store, dry_run: bool) -> anyhow::Result<JobResult> {
    let Pruned { decisions, removed, incomplete: partials, errors } = apply_retention(ctx, store, dry_run)?;
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&serde_json::json!({ "dry_run": dry_run, "decisions": decisions, "removed": removed, "incomplete_removed": if dry_run { 0 } else { partials.len() }, "errors": errors }))?;
    } else if !printer.is_quiet() || !errors.is_empty() {
        let mut text = String::new();
        for d in &decisions {
            let verb = match (d.keep, dry_run) {
                (true, _) => "keep",
                (false, true) => "would delete",
                (false, false) => "delete",
            };
            text.push_str(&format!("{verb:>12} {}: {}\n", d.id, d.reason));
        }
        for p in &partials {
            text.push_str(&format!(
                "{:>12} {} (incomplete)\n",
                if dry_run { "would delete" } else { "delete" },
                p.display()
            ));
        }
        for e in &errors {
            text.push_str(&format!("error: {e}\n"));
        }
        printer.always(&text)?;
    }
    let exit_code = if errors.is_empty() { exit::SUCCESS } else { exit::PARTIAL };
    Ok(JobResult {
        outcome: if exit_code == 0 { Outcome::Success } else { Outcome::Partial },
        exit_code,
        summary: serde_json::json!({ "dry_run": dry_run, "kept": decisions.iter().filter(|d| d.keep).count(), "removed": removed.len() }),
    })
}

/// The backup job's name in the schedule table.
const SCHEDULED_JOB: &str = "backup";

fn schedule(ctx: &Context, set: Option<&str>, enabled: Option<bool>, reset: bool) -> anyhow::Result<u8> {
    use cache_core::schedule;
    let by = "cache-backup schedule";
    let job = if reset {
        schedule::reset(&ctx.config.scheduler, &ctx.state, SCHEDULED_JOB)?
    } else if set.is_some() || enabled.is_some() {
        schedule::change(&ctx.config.scheduler, &ctx.state, SCHEDULED_JOB, set, enabled, by)?
    } else {
        schedule::effective(&ctx.config.scheduler, &ctx.state, SCHEDULED_JOB)?
    };
    let next = if job.enabled {
        schedule::next_runs_in(&job.schedule, Utc::now(), 3, &ctx.config.scheduler.timezone)?
    } else {
        Vec::new()
    };
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&serde_json::json!({ "job": job, "next_runs": next }))?;
        return Ok(exit::SUCCESS);
    }
    let origin = match &job.changed {
        None => "the documented schedule".to_owned(),
        Some(c) => format!("changed {} by {}", c.changed_at.format("%Y-%m-%d %H:%M UTC"), c.changed_by),
    };
    let mut text = format!(
        "job `{}`: `{}` ({origin}), {}
  runs: {}
",
        job.spec.name,
        job.schedule,
        if job.enabled { "enabled" } else { "DISABLED" },
        job.spec.command
    );
    for run in &next {
        text.push_str(&format!("  next: {}\n", run.format("%Y-%m-%d %H:%M UTC")));
    }
    printer.info(&text)?;
    Ok(exit::SUCCESS)
}
