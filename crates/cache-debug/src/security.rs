//! `security`: seed 004's audit. Permissions of the configuration, state and backup
//! directories; every configured file-cache and log directory (a model cache is a `[[files]]`
//! target) and what is inside it: world-writable, or owned by someone other than the running user
//! or root; the toolkit's own binaries and their directories (world-writable: anyone could
//! replace what cron runs); Redis without a password or without protected mode (each server's own
//! setting: every primary of a cluster and every replica it lists, findings naming the node, the
//! nodes not reached said, and the coverage stated: "3 of 3 primaries"); plaintext connections
//! where TLS is expected (anything beyond loopback); PostgreSQL `trust` authentication on
//! non-local addresses. Each finding comes with its fix; the score is `cache_core::audit`'s.
//!
//! An audit of everything (no `--tier`) is recorded in `security/audits.jsonl`, for
//! cache-health's score-drop rule; `--fail-under SCORE` makes a score under SCORE exit
//! [`exit::MISMATCH`], a gate for cron and CI.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cache_core::app::Context;
use cache_core::audit::AuditRecord;
pub use cache_core::audit::{Finding, Severity, score};
use cache_core::clients::redis::Connection;
use cache_core::clients::{postgres, redis as redis_client};
use cache_core::config::{Channel, ConfigSource, DirTarget, RedisTarget};
use cache_core::exit::{self, Reach, Tally};
use cache_core::messages::{MAX_LINE, clip, condense};
use cache_core::output::Format;
use cache_core::system::{euid, user_label};
use cache_core::tier::{Tier, selected};
use serde::Serialize;
use serde_json::json;

/// What the audit of one Redis target covered: every primary of a cluster, and its replicas
/// where the topology lists them.
#[derive(Debug, Serialize)]
pub struct Coverage {
    /// `redis/<name>`.
    pub target: String,
    /// `standalone`, or `3 of 3 primaries` (`and 3 of 3 replicas` where there are replicas).
    pub coverage: String,
    /// The cluster nodes audited, `host:port` (none for a standalone server).
    pub audited: Vec<String>,
    /// The nodes listed but not audited, and why.
    pub not_audited: Vec<String>,
}

/// A Redis server to audit.
struct Server {
    /// `host:port` of a cluster node; `None` for a standalone server.
    node: Option<String>,
    /// Who findings name: `redis/main`, `redis/main 127.0.0.1:7001`, or
    /// `redis/main 127.0.0.1:7004 (replica)`.
    subject: String,
    conn: Connection,
}

/// The servers of `target`: the server itself, or every primary of its cluster and every
/// replica the cluster lists. `Err` only when the target cannot be reached at all.
async fn redis_servers(target: &RedisTarget, subject: &str) -> anyhow::Result<(Vec<Server>, Coverage)> {
    let primaries = cache_core::keyspace::primaries(target).await?;
    let mut servers: Vec<Server> = primaries
        .nodes
        .iter()
        .map(|n| Server {
            node: n.node.clone(),
            subject: n.node.as_ref().map_or_else(|| subject.to_owned(), |node| format!("{subject} {node}")),
            conn: n.conn.clone(),
        })
        .collect();
    let mut covered = Coverage {
        target: subject.to_owned(),
        coverage: primaries.coverage(),
        audited: primaries.nodes.iter().filter_map(|n| n.node.clone()).collect(),
        not_audited: primaries.missing.iter().map(|m| clip(m, MAX_LINE)).collect(),
    };
    let Some(first) = primaries.nodes.first().filter(|_| primaries.cluster) else { return Ok((servers, covered)) };
    let listed = match redis::cmd("CLUSTER").arg("NODES").query_async::<String>(&mut first.conn.clone()).await {
        Ok(text) => redis_client::parse_cluster_nodes(&text),
        Err(e) => {
            covered.not_audited.push(clip(&format!("replicas: CLUSTER NODES: {e}"), MAX_LINE));
            return Ok((servers, covered));
        }
    };
    let replicas: Vec<_> =
        listed.into_iter().filter(|n| n.flags.split(',').any(|f| f == "slave") && !n.host.is_empty()).collect();
    // Every replica at once: a cluster's connect timeouts do not add up.
    let reached = futures::future::join_all(replicas.iter().map(|n| async move {
        let node = redis_client::node_target(target, &n.host, n.port)?;
        redis_client::connect(&node).await
    }))
    .await;
    let mut audited = 0;
    for (replica, result) in replicas.iter().zip(reached) {
        let addr = replica.addr();
        match result {
            Ok(conn) => {
                audited += 1;
                servers.push(Server { subject: format!("{subject} {addr} (replica)"), node: Some(addr.clone()), conn });
                covered.audited.push(addr);
            }
            Err(e) => covered.not_audited.push(clip(&format!("replica {addr}: {e:#}"), MAX_LINE)),
        }
    }
    if !replicas.is_empty() {
        covered.coverage = format!("{} and {audited} of {} replicas", covered.coverage, replicas.len());
    }
    Ok((servers, covered))
}

/// What one server's own configuration shows: findings naming it, and what it would not say.
async fn audit_server(target: &str, server: &Server) -> (Vec<Finding>, Vec<String>) {
    let (mut findings, mut notes) = (Vec::new(), Vec::new());
    let mut conn = server.conn.clone();
    match redis::cmd("CONFIG").arg("GET").arg("protected-mode").query_async::<Vec<String>>(&mut conn).await {
        Ok(v) if v.get(1).is_some_and(|m| m == "no") => findings.push(Finding {
            severity: Severity::Medium,
            subject: server.subject.clone(),
            finding: "protected-mode is off".into(),
            fix: "CONFIG SET protected-mode yes (and bind to the interfaces clients use)".into(),
        }),
        Ok(_) => {}
        Err(e) => notes.push(crate::refused(
            &format!("{target}: {}", crate::on("CONFIG GET protected-mode", server.node.as_deref())),
            &e,
        )),
    }
    (findings, notes)
}

fn is_local(host: Option<&str>) -> bool {
    match host {
        None | Some("") => true,
        Some(h) => h == "localhost" || h.starts_with("127.") || h == "[::1]" || h == "::1" || h.starts_with('/'),
    }
}

fn mode_finding(out: &mut Vec<Finding>, path: &Path, what: &str, want: u32, severity: Severity) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 & !want != 0 {
        out.push(Finding {
            severity,
            subject: format!("{what} {}", path.display()),
            finding: format!("mode {mode:04o}: readable or writable by others"),
            fix: format!("chmod {want:04o} {}", path.display()),
        });
    }
}

/// Entries looked at inside one directory target, at most.
pub const WALK_ENTRIES: usize = 10_000;
/// Time allowed for the walk of one directory target.
pub const WALK_TIME: Duration = Duration::from_secs(2);
/// Entries a glob target's pattern matches that are audited, at most.
const GLOB_ROOTS: usize = 100;

/// The roots of a directory target: its directory, or what its glob matches in its base (never
/// the base itself: `/tmp/benchmark_*` is not `/tmp`).
fn roots(target: &dyn DirTarget) -> Vec<PathBuf> {
    let scope = target.scope();
    if scope.is_whole() {
        return vec![scope.base];
    }
    walkdir::WalkDir::new(&scope.base)
        .min_depth(scope.pattern.len())
        .max_depth(scope.pattern.len())
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.path().strip_prefix(&scope.base).is_ok_and(|rel| scope.may_hold(rel)))
        .flatten()
        .filter(|e| e.path().strip_prefix(&scope.base).is_ok_and(|rel| scope.contains(rel)))
        .take(GLOB_ROOTS)
        .map(walkdir::DirEntry::into_path)
        .collect()
}

/// What others may do to one directory (or file) of ours: write to it (world-writable), or own
/// it (neither the running user nor root).
fn access_findings(out: &mut Vec<Finding>, subject: &str, path: &Path, meta: &std::fs::Metadata) {
    let mode = meta.permissions().mode();
    if mode & 0o002 != 0 {
        let sticky = if meta.is_dir() && mode & 0o1000 != 0 {
            " (sticky: others cannot replace what is there, but can add to it)"
        } else {
            ""
        };
        out.push(Finding {
            severity: Severity::High,
            subject: format!("{subject} {}", path.display()),
            finding: format!("mode {:04o}: world-writable{sticky}", mode & 0o7777),
            fix: format!("chmod o-w {}", path.display()),
        });
    }
    let (owner, me) = (meta.uid(), euid());
    if owner != me && owner != 0 {
        out.push(Finding {
            severity: Severity::Medium,
            subject: format!("{subject} {}", path.display()),
            finding: format!(
                "owned by {}, neither the running user ({}) nor root: its owner can change what is in it",
                user_label(owner),
                user_label(me)
            ),
            fix: format!(
                "chown {} {} (or run the toolkit as its owner, when the directory is that user's)",
                cache_core::system::user_name(me).unwrap_or_else(|| me.to_string()),
                path.display()
            ),
        });
    }
}

/// The audit of one file-cache or log directory target: each root, and the world-writable
/// entries inside it (a walk of at most [`WALK_ENTRIES`] within [`WALK_TIME`], links not
/// followed; what the walk left is said).
fn dir_target_findings(out: &mut Vec<Finding>, notes: &mut Vec<String>, tier: Tier, target: &dyn DirTarget) {
    let subject = format!("{tier}/{}", target.name());
    let roots = roots(target);
    if roots.is_empty() {
        notes.push(format!("{subject}: nothing matches `{}`", target.path().display()));
    }
    for root in roots {
        let meta = match std::fs::metadata(&root) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                notes.push(format!("{subject}: `{}` does not exist", root.display()));
                continue;
            }
            Err(e) => {
                notes.push(clip(&format!("{subject}: {e}: `{}`", root.display()), MAX_LINE));
                continue;
            }
        };
        access_findings(out, &subject, &root, &meta);
        if !meta.is_dir() {
            continue;
        }
        let deadline = Instant::now() + WALK_TIME;
        let (mut seen, mut writable, mut first, mut cut) = (0usize, 0usize, None, false);
        for entry in walkdir::WalkDir::new(&root).min_depth(1).follow_links(false).into_iter().flatten() {
            if seen == WALK_ENTRIES || Instant::now() >= deadline {
                cut = true;
                break;
            }
            seen += 1;
            // A link's own mode is always 0777 and means nothing.
            if entry.path_is_symlink() {
                continue;
            }
            if entry.metadata().is_ok_and(|m| m.permissions().mode() & 0o002 != 0) {
                writable += 1;
                first.get_or_insert_with(|| entry.into_path());
            }
        }
        if let Some(first) = first {
            let at_least = if cut { "at least " } else { "" };
            out.push(Finding {
                severity: Severity::High,
                subject: format!("{subject} {}", root.display()),
                finding: clip(
                    &format!("{at_least}{writable} world-writable entries inside (first: `{}`)", first.display()),
                    MAX_LINE,
                ),
                fix: format!("chmod -R o-w {}", root.display()),
            });
        }
        if cut {
            notes.push(format!(
                "{subject}: looked inside `{}` at the first {seen} entries only (at most {WALK_ENTRIES}, within {}s)",
                root.display(),
                WALK_TIME.as_secs()
            ));
        }
    }
}

/// The toolkit's own binaries: this one and every tool beside it, and in `scheduler.bin_dir`
/// (where the installed schedule runs them from), with their directories. World-writable, any
/// of them lets anyone replace what cron runs.
fn binary_findings(out: &mut Vec<Finding>, notes: &mut Vec<String>, bin_dir: Option<&Path>) {
    let exe = std::env::current_exe();
    let mut dirs: Vec<PathBuf> = Vec::new();
    match &exe {
        Ok(exe) => {
            if let Ok(meta) = std::fs::metadata(exe) {
                world_writable(out, "binary", exe, &meta);
            }
            dirs.extend(exe.parent().map(Path::to_path_buf));
        }
        Err(e) => notes.push(format!("binaries: this program's path cannot be read: {e}")),
    }
    if let Some(dir) = bin_dir {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in &dirs {
        match std::fs::metadata(dir) {
            Ok(meta) => world_writable(out, "binary directory", dir, &meta),
            Err(e) => {
                notes.push(clip(&format!("binaries: {e}: `{}`", dir.display()), MAX_LINE));
                continue;
            }
        }
        for tool in cache_core::schedule::tools() {
            let path = dir.join(tool);
            if exe.as_ref().is_ok_and(|exe| *exe == path) {
                continue;
            }
            if let Ok(meta) = std::fs::metadata(&path)
                && meta.is_file()
            {
                world_writable(out, "binary", &path, &meta);
            }
        }
    }
}

/// A binary or its directory that anyone may write to.
fn world_writable(out: &mut Vec<Finding>, what: &str, path: &Path, meta: &std::fs::Metadata) {
    let mode = meta.permissions().mode();
    if mode & 0o002 != 0 {
        out.push(Finding {
            severity: Severity::High,
            subject: format!("{what} {}", path.display()),
            finding: format!("mode {:04o}: world-writable: anyone can replace what cron runs", mode & 0o7777),
            fix: format!("chmod o-w {}", path.display()),
        });
    }
}

/// Runs `security`: exit [`exit::MISMATCH`] when `fail_under` is given and the score is under
/// it, else the code of the targets' tally.
pub async fn run(ctx: &Context, fail_under: Option<u32>) -> anyhow::Result<u8> {
    let config = &ctx.config;
    let mut findings = Vec::new();
    let mut notes = Vec::new();
    let mut coverage = Vec::new();
    // The targets audited, and those not reached: every one unreachable is exit 4, some 1.
    let mut tally = Tally::default();
    if let ConfigSource::File(path) = &ctx.config_source {
        mode_finding(&mut findings, path, "configuration", 0o600, Severity::High);
    }
    mode_finding(&mut findings, ctx.state.root(), "state directory", 0o700, Severity::Medium);
    mode_finding(&mut findings, &config.backup.dir, "backup directory", 0o700, Severity::Medium);
    binary_findings(&mut findings, &mut notes, config.scheduler.bin_dir.as_deref());
    let filters = &ctx.common.tiers;
    for t in config.files.iter().filter(|t| selected(filters, Tier::Files, &t.name)) {
        dir_target_findings(&mut findings, &mut notes, Tier::Files, t);
    }
    for t in config.logs.iter().filter(|t| selected(filters, Tier::Logs, &t.name)) {
        dir_target_findings(&mut findings, &mut notes, Tier::Logs, t);
    }
    for t in &config.redis {
        let subject = format!("redis/{}", t.name);
        let url = t.url.url();
        let local = is_local(url.host_str()) || matches!(t.url.scheme(), "redis+unix" | "unix");
        if t.url.scheme() == "redis" && !local {
            findings.push(Finding {
                severity: Severity::Medium,
                subject: subject.clone(),
                finding: format!("plaintext connection to {}", url.host_str().unwrap_or_default()),
                fix: "use rediss:// (TLS) for servers beyond this host".into(),
            });
        }
        let (servers, covered) = match redis_servers(t, &subject).await {
            Ok(found) => found,
            Err(e) => {
                tally.add(unreached(&e));
                notes.push(clip(&format!("{subject}: not audited: {e:#}"), MAX_LINE));
                continue;
            }
        };
        tally.add(if servers.is_empty() { Reach::Unreachable } else { Reach::Done });
        if t.is_rest() {
            // The REST API must refuse a request without its token: try one that is not it.
            let mut probe = t.clone();
            probe.token = Some(cache_core::redact::Secret::new("cache-toolkit-audit-not-the-token"));
            match redis_client::connect(&probe).await {
                Ok(_) => findings.push(Finding {
                    severity: Severity::High,
                    subject: subject.clone(),
                    finding: "the REST API answers a request with a wrong token".into(),
                    fix: "put the endpoint behind its token (Upstash always checks it; check the proxy in front)"
                        .into(),
                }),
                Err(e) if format!("{e:#}").contains("refused the token") => {}
                Err(e) => notes.push(clip(&format!("{subject}: token check not done: {e:#}"), MAX_LINE)),
            }
        } else if url.password().is_none() && url.username().is_empty() {
            findings.push(Finding {
                severity: if local { Severity::Medium } else { Severity::High },
                subject: subject.clone(),
                finding: "accepts commands without a password".into(),
                fix: "set requirepass (or ACL users) and put the password in the URL".into(),
            });
        }
        // Every server at once: what each one's own configuration says.
        let audits = futures::future::join_all(servers.iter().map(|s| audit_server(&subject, s))).await;
        let mut target_notes: Vec<String> =
            covered.not_audited.iter().map(|n| format!("{subject}: not audited: {n}")).collect();
        for (found, server_notes) in audits {
            findings.extend(found);
            target_notes.extend(server_notes);
        }
        // A refusal repeated by every node is one line with its count.
        notes.extend(condense(&target_notes));
        coverage.push(covered);
    }
    for t in &config.postgres {
        let subject = format!("postgres/{}", t.name);
        let url = t.url.url();
        let sslmode = url
            .query_pairs()
            .find(|(k, _)| k == "sslmode")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| "prefer".into());
        if !is_local(url.host_str()) && !matches!(sslmode.as_str(), "require" | "verify-ca" | "verify-full") {
            findings.push(Finding {
                severity: Severity::Medium,
                subject: subject.clone(),
                finding: format!(
                    "sslmode={sslmode} to {}: the connection may be plaintext",
                    url.host_str().unwrap_or_default()
                ),
                fix: "add ?sslmode=require to the URL (and tls.ca_file to verify the server)".into(),
            });
        }
        let db = postgres::connect(t).await;
        tally.add(db.as_ref().map_or_else(unreached, |_| Reach::Done));
        match db {
            Ok(db) => match db
                .query(
                    "SELECT line_number, type, array_to_string(database, ','), coalesce(address, '') FROM pg_hba_file_rules \
                     WHERE auth_method = 'trust' AND type LIKE 'host%' AND coalesce(address, '') NOT IN ('127.0.0.1', '::1', 'localhost', 'samehost')",
                    &[],
                )
                .await
            {
                Ok(rows) => {
                    for r in rows {
                        findings.push(Finding {
                            severity: Severity::High,
                            subject: subject.clone(),
                            finding: format!(
                                "pg_hba.conf line {}: trust authentication for {} from {}",
                                r.get::<_, i32>(0),
                                r.get::<_, String>(2),
                                r.get::<_, String>(3)
                            ),
                            fix: "use scram-sha-256 for every non-local address".into(),
                        });
                    }
                }
                Err(e) => notes.push(clip(&format!("{subject}: pg_hba rules not readable ({}); needs a superuser", postgres::error_text(&e)), MAX_LINE)),
            },
            Err(e) => notes.push(clip(&format!("{subject}: {e:#}"), MAX_LINE)),
        }
    }
    for t in &config.memory {
        let url = t.url.url();
        if url.scheme() == "http" && !is_local(url.host_str()) {
            findings.push(Finding {
                severity: Severity::High,
                subject: format!("memory/{}", t.name),
                finding: "the API key goes over plain HTTP".into(),
                fix: "use https://".into(),
            });
        }
    }
    for (name, channel) in &config.alerts.channels {
        if let Channel::Webhook { url, .. } | Channel::Slack { url, .. } = channel {
            let parsed = url::Url::parse(url.expose()).ok();
            if parsed.as_ref().is_some_and(|u| u.scheme() == "http" && !is_local(u.host_str())) {
                findings.push(Finding {
                    severity: Severity::Medium,
                    subject: format!("alerts.channels.{name}"),
                    finding: "alerts go over plain HTTP".into(),
                    fix: "use an https:// URL".into(),
                });
            }
        }
    }
    findings.sort_by_key(|f| f.severity);
    let score = score(&findings);
    // An audit of everything is the history's; one of some tiers never stands for the whole.
    let recorded = filters.is_empty();
    if recorded {
        let at = cache_core::clock::now()?;
        let complete = tally.failed == 0 && tally.unreachable == 0;
        ctx.state.append_jsonl(cache_core::audit::AUDITS, &AuditRecord::new(at, &findings, complete))?;
    }
    let code = match fail_under {
        Some(min) if score < min => exit::MISMATCH,
        _ => tally.code(),
    };
    let printer = &ctx.printer;
    if printer.format() == Format::Json {
        printer.json(&json!({
            "score": score,
            "fail_under": fail_under,
            "passed": fail_under.is_none_or(|min| score >= min),
            "findings": findings,
            "redis": coverage,
            "notes": notes,
            "recorded": recorded,
        }))?;
        return Ok(code);
    }
    let mut table = printer.table();
    table.set_header(["Severity", "Subject", "Finding", "Fix"]);
    for f in &findings {
        table.add_row(vec![
            format!("{:?}", f.severity).to_lowercase(),
            f.subject.clone(),
            f.finding.clone(),
            f.fix.clone(),
        ]);
    }
    let mut text = format!("security score {score}/100, {} finding(s)\n", findings.len());
    for c in &coverage {
        text.push_str(&format!("audited {}: {}\n", c.target, c.coverage));
    }
    if !findings.is_empty() {
        text.push_str(&format!("{table}\n"));
    }
    for n in &notes {
        text.push_str(&format!("note: {n}\n"));
    }
    if let Some(min) = fail_under.filter(|min| score < *min) {
        text.push_str(&format!("security score {score} is under --fail-under {min}\n"));
    }
    printer.always(text.trim_end())?;
    Ok(code)
}

/// A target the audit could not reach is [`Reach::Unreachable`]; one that failed otherwise
/// was reached (its failure is a note, as a refused query is), so [`Reach::Done`].
fn unreached(e: &anyhow::Error) -> Reach {
    match Reach::of_error(e) {
        Reach::Unreachable => Reach::Unreachable,
        _ => Reach::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_sockets_are_local() {
        assert!(is_local(Some("127.0.0.1")) && is_local(None) && !is_local(Some("10.0.0.5")));
    }
}
