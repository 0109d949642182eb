//! Validation, once and up front: one function per section, each error naming the source and
//! the dotted key.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{
    AlertSettings, BUILTIN_LOG_PATTERNS, BackupSettings, Channel, CleanupSettings, Config, DebugSettings, FilesTarget,
    HealthSettings, HttpTarget, LogsTarget, MemoryTarget, PostgresTarget, RULE_TARGET_KINDS, RedisTarget,
    SystemSettings,
};
use crate::error::ConfigError;

/// Checks `config` (read from `source`), returning the first error found.
pub(super) fn validate(config: &Config, source: &str) -> Result<(), ConfigError> {
    alerts(&config.alerts, source)?;
    scheduler(config, source)?;
    api(&config.api, source)?;
    if config.project_name.trim().is_empty() {
        return Err(ConfigError::new(source, "project_name", "must not be empty"));
    }
    redis(&config.redis, source)?;
    postgres(&config.postgres, source)?;
    memory(&config.memory, source)?;
    http(&config.http, source)?;
    files(&config.files, source)?;
    logs(&config.logs, source)?;
    system(&config.system, source)?;
    backup(&config.backup, source)?;
    cleanup(&config.cleanup, source)?;
    health(&config.health, source)?;
    debug(&config.debug, source)?;
    Ok(())
}

fn debug(debug: &DebugSettings, source: &str) -> Result<(), ConfigError> {
    let err = |key: String, msg: String| ConfigError::new(source, key, msg);
    let mut seen: BTreeSet<String> = BUILTIN_LOG_PATTERNS.iter().map(|(name, _)| (*name).to_owned()).collect();
    for (i, p) in debug.log_patterns.iter().enumerate() {
        let key = format!("debug.log_patterns[{i}]");
        if p.name.trim().is_empty() {
            return Err(err(format!("{key}.name"), "must not be empty".into()));
        }
        if !seen.insert(p.name.to_lowercase()) {
            let what = if BUILTIN_LOG_PATTERNS.iter().any(|(name, _)| name.eq_ignore_ascii_case(&p.name)) {
                "a built-in pattern's name"
            } else {
                "used twice in debug.log_patterns"
            };
            return Err(err(format!("{key}.name"), format!("`{}` is {what}", p.name)));
        }
        if p.fragments.is_empty() {
            return Err(err(format!("{key}.match"), "needs at least one fragment that a matching line holds".into()));
        }
        if let Some(j) = p.fragments.iter().position(|f| f.trim().is_empty()) {
            return Err(err(format!("{key}.match[{j}]"), "must not be empty (it would match every line)".into()));
        }
    }
    if debug.security_baseline.is_zero() {
        return Err(err("debug.security_baseline".into(), "must be greater than zero".into()));
    }
    Ok(())
}

fn redis(targets: &[RedisTarget], source: &str) -> Result<(), ConfigError> {
    let err = |key: String, msg: &str| ConfigError::new(source, key, msg);
    check_names(source, "redis", targets.iter().map(|t| t.name.as_str()))?;
    for (i, t) in targets.iter().enumerate() {
        if !matches!(
            t.url.scheme(),
            "redis" | "rediss" | "redis+unix" | "unix" | "upstash+https" | "upstash+http" | "https" | "http"
        ) {
            return Err(err(
                format!("redis[{i}].url"),
                "scheme must be redis://, rediss://, redis+unix://, or upstash+https:// for Upstash's REST API",
            ));
        }
        if t.is_rest() {
            rest_target(t, i, source)?;
        } else if t.token.is_some() {
            return Err(err(
                format!("redis[{i}].token"),
                "is the token of a REST target (upstash+https://); a redis:// URL carries its password itself",
            ));
        }
        for (j, seed) in t.urls.iter().enumerate() {
            if seed.scheme() != t.url.scheme() {
                return Err(err(format!("redis[{i}].urls[{j}]"), "must use the same scheme as `url`"));
            }
        }
        if let Some(ca) = &t.ca_file
            && !ca.is_file()
        {
            return Err(err(format!("redis[{i}].ca_file"), &format!("`{}` is not a readable file", ca.display())));
        }
        // Parsed as the client will, so that a bad database number or option is refused here,
        // naming the key, and not at every run as an unreachable target.
        for (key, url) in std::iter::once((format!("redis[{i}].url"), &t.url))
            .chain(t.urls.iter().enumerate().map(|(j, u)| (format!("redis[{i}].urls[{j}]"), u)))
            .filter(|_| !t.is_rest())
        {
            if let Err(e) = redis::Client::open(url.expose()) {
                return Err(err(key, &format!("not a usable Redis URL: {e}")));
            }
        }
        positive(source, format!("redis[{i}].timeout"), t.timeout)?;
        positive(source, format!("redis[{i}].connect_timeout"), t.connect_timeout)?;
        if !(1..=64).contains(&t.concurrency) {
            return Err(err(format!("redis[{i}].concurrency"), "must be between 1 and 64"));
        }
        for (j, rule) in t.prefixes.iter().enumerate() {
            if rule.prefix.is_empty() {
                return Err(err(
                    format!("redis[{i}].prefixes[{j}].prefix"),
                    "must not be empty: every key would match",
                ));
            }
            if rule.ttl.is_some_and(|d| d.as_secs() == 0) {
                return Err(err(format!("redis[{i}].prefixes[{j}].ttl"), "must be at least one second"));
            }
            match (rule.age_from, rule.max_age) {
                (Some(_), None) => {
                    return Err(err(
                        format!("redis[{i}].prefixes[{j}].max_age"),
                        "`age_from` needs `max_age`: the age past which keys go",
                    ));
                }
                (None, Some(_)) => {
                    return Err(err(
                        format!("redis[{i}].prefixes[{j}].age_from"),
                        "`max_age` needs `age_from` (\"timestamp\" or \"date\"): where the age is in the key's name",
                    ));
                }
                (_, Some(d)) if d.as_secs() == 0 => {
                    return Err(err(format!("redis[{i}].prefixes[{j}].max_age"), "must be at least one second"));
                }
                _ => {}
            }
        }
        if t.namespace.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(err(
                format!("redis[{i}].namespace"),
                "must not be empty: every key of the database would be the project's",
            ));
        }
    }
    Ok(())
}

/// A Redis target reached through Upstash's REST API: a token, no seeds, and plain HTTP only
/// to this host (the token would cross the network in clear).
fn rest_target(t: &RedisTarget, i: usize, source: &str) -> Result<(), ConfigError> {
    let err = |key: String, msg: &str| ConfigError::new(source, key, msg);
    // A bare http(s) URL is a REST endpoint only beside an explicit token: without one it is
    // more likely a mistyped Redis URL than Upstash.
    if matches!(t.url.scheme(), "http" | "https") && t.token.is_none() {
        return Err(err(
            format!("redis[{i}].url"),
            "scheme must be redis://, rediss:// or redis+unix://; for Upstash's REST API write \
             upstash+https://… (or give `token` beside an https:// `rest_url`)",
        ));
    }
    let Some((url, _)) = t.rest_endpoint() else {
        return Err(err(
            format!("redis[{i}].url"),
            "is a REST endpoint (Upstash), which needs its token: set `token` (or UPSTASH_REDIS_REST_TOKEN); \
             a Redis server's URL is redis:// or rediss://",
        ));
    };
    if !t.urls.is_empty() {
        return Err(err(format!("redis[{i}].urls"), "a REST target has one endpoint: no seed `urls`"));
    }
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]" | "::1"));
    if url.scheme() == "http" && !loopback {
        return Err(err(
            format!("redis[{i}].url"),
            "plain http:// would send the token in clear: use https:// (http:// only to this host)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(err(format!("redis[{i}].url"), "a REST endpoint takes no query or fragment"));
    }
    Ok(())
}

fn postgres(targets: &[PostgresTarget], source: &str) -> Result<(), ConfigError> {
    let err = |key: String, msg: &str| ConfigError::new(source, key, msg);
    check_names(source, "postgres", targets.iter().map(|t| t.name.as_str()))?;
    for (i, t) in targets.iter().enumerate() {
        if !matches!(t.url.scheme(), "postgres" | "postgresql") {
            return Err(err(format!("postgres[{i}].url"), "scheme must be postgres://"));
        }
        if let Err(e) = t.url.expose().parse::<tokio_postgres::Config>() {
            return Err(err(format!("postgres[{i}].url"), &format!("not a usable PostgreSQL URL: {e}")));
        }
        let valid_ident = !t.table.is_empty()
            && t.table.split('.').all(|part| {
                !part.is_empty()
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !part.starts_with(|c: char| c.is_ascii_digit())
            });
        if !valid_ident {
            return Err(err(
                format!("postgres[{i}].table"),
                "must be a plain identifier, optionally schema-qualified (letters, digits, _)",
            ));
        }
        positive(source, format!("postgres[{i}].timeout"), t.timeout)?;
        positive(source, format!("postgres[{i}].connect_timeout"), t.connect_timeout)?;
        let c = &t.columns;
        for (field, name) in [
            ("key", &c.key),
            ("expires_at", &c.expires_at),
            ("accessed_at", &c.accessed_at),
            ("category", &c.category),
            ("project", &c.project),
        ] {
            let plain = name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
            if !plain || (name.is_empty() && field != "project") {
                return Err(err(
                    format!("postgres[{i}].columns.{field}"),
                    "must be a plain column name (letters, digits, _)",
                ));
            }
        }
    }
    Ok(())
}

fn memory(targets: &[MemoryTarget], source: &str) -> Result<(), ConfigError> {
    check_names(source, "memory", targets.iter().map(|t| t.name.as_str()))?;
    for (i, t) in targets.iter().enumerate() {
        if !matches!(t.url.scheme(), "http" | "https") {
            return Err(ConfigError::new(source, format!("memory[{i}].url"), "scheme must be http:// or https://"));
        }
        positive(source, format!("memory[{i}].timeout"), t.timeout)?;
    }
    Ok(())
}

fn http(targets: &[HttpTarget], source: &str) -> Result<(), ConfigError> {
    let err = |key: String, msg: &str| ConfigError::new(source, key, msg);
    check_names(source, "http", targets.iter().map(|t| t.name.as_str()))?;
    for (i, t) in targets.iter().enumerate() {
        for (field, url) in [("url", Some(&t.url)), ("metrics_url", t.metrics_url.as_ref())] {
            if let Some(url) = url
                && !matches!(url.scheme(), "http" | "https")
            {
                return Err(err(format!("http[{i}].{field}"), "scheme must be http:// or https://"));
            }
        }
        if !(100..=599).contains(&t.expect_status) {
            return Err(err(format!("http[{i}].expect_status"), "must be an HTTP status (100-599)"));
        }
        positive(source, format!("http[{i}].timeout"), t.timeout)?;
    }
    Ok(())
}

fn files(targets: &[FilesTarget], source: &str) -> Result<(), ConfigError> {
    check_names(source, "files", targets.iter().map(|t| t.name.as_str()))
}

fn logs(targets: &[LogsTarget], source: &str) -> Result<(), ConfigError> {
    let err = |key: String, msg: &str| ConfigError::new(source, key, msg);
    check_names(source, "logs", targets.iter().map(|t| t.name.as_str()))?;
    for (i, t) in targets.iter().enumerate() {
        if t.compress_level > 9 {
            return Err(err(format!("logs[{i}].compress_level"), "must be 0 (no compression) to 9"));
        }
        if t.keep == 0 {
            return Err(err(format!("logs[{i}].keep"), "must be at least 1 (rotated logs are kept)"));
        }
        if t.pattern.is_empty() || t.pattern.contains('/') {
            return Err(err(format!("logs[{i}].pattern"), "must be a file-name glob such as `*.log`"));
        }
    }
    Ok(())
}

fn system(system: &SystemSettings, source: &str) -> Result<(), ConfigError> {
    for (i, endpoint) in system.endpoints.iter().enumerate() {
        let valid =
            endpoint.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(ConfigError::new(source, format!("system.endpoints[{i}]"), "must be `host:port`"));
        }
    }
    positive(source, "system.timeout".into(), system.timeout)
}

fn backup(backup: &BackupSettings, source: &str) -> Result<(), ConfigError> {
    if !(1..=9).contains(&backup.level) {
        return Err(ConfigError::new(source, "backup.level", "must be 1 (fast) to 9 (small)"));
    }
    positive(source, "backup.bgsave_timeout".into(), backup.bgsave_timeout)?;
    for (i, recipient) in backup.encrypt_to.iter().enumerate() {
        // An age X25519 recipient: `age1` and 58 lower-case bech32 characters.
        let bech32 = |c: char| "qpzry9x8gf2tvdw0s3jn54khce6mua7l".contains(c);
        let well_formed = recipient.len() == 62 && recipient.starts_with("age1") && recipient[4..].chars().all(bech32);
        if !well_formed {
            return Err(ConfigError::new(
                source,
                format!("backup.encrypt_to[{i}]"),
                "is not an age recipient (`age1…`, the public key `age-keygen` prints)",
            ));
        }
    }
    check_names(source, "backup.remote", backup.remotes.iter().map(|r| r.name.as_str()))?;
    for (i, remote) in backup.remotes.iter().enumerate() {
        let err = |key: &str, msg: &str| ConfigError::new(source, format!("backup.remote[{i}].{key}"), msg);
        positive(source, format!("backup.remote[{i}].timeout"), remote.timeout)?;
        match remote.kind {
            super::RemoteKind::S3 => {
                if remote.bucket.as_deref().is_none_or(|b| b.trim().is_empty()) {
                    return Err(err("bucket", "an s3 remote needs its bucket"));
                }
                if remote.access_key_id.is_none() || remote.secret_access_key.is_none() {
                    return Err(err("access_key_id", "an s3 remote needs `access_key_id` and `secret_access_key`"));
                }
                if remote.prefix.starts_with('/') || remote.prefix.split('/').any(|s| s == "..") {
                    return Err(err("prefix", "is a key prefix inside the bucket: no leading `/`, no `..`"));
                }
                if remote.endpoint.as_ref().is_some_and(|u| !matches!(u.scheme(), "http" | "https")) {
                    return Err(err("endpoint", "scheme must be http:// or https://"));
                }
                if remote.path.is_some() {
                    return Err(err("path", "is for a `dir` remote"));
                }
            }
            super::RemoteKind::Dir => {
                let Some(path) = &remote.path else { return Err(err("path", "a dir remote needs its `path`")) };
                if !path.is_absolute() {
                    return Err(err("path", "must be absolute"));
                }
                if path.starts_with(&backup.dir) || backup.dir.starts_with(path) {
                    return Err(err("path", "must be outside `backup.dir` (a copy in the same place is no copy)"));
                }
                if remote.bucket.is_some() || remote.access_key_id.is_some() {
                    return Err(err("bucket", "is for an `s3` remote"));
                }
            }
        }
    }
    Ok(())
}

fn cleanup(c: &CleanupSettings, source: &str) -> Result<(), ConfigError> {
    let err = |key: String, msg: &str| ConfigError::new(source, key, msg);
    if c.batch_size == 0 || c.batch_size > 100_000 {
        return Err(err("cleanup.batch_size".into(), "must be between 1 and 100000"));
    }
    if c.memory_batch_size == 0 || c.memory_batch_size > 1000 {
        return Err(err("cleanup.memory_batch_size".into(), "must be between 1 and 1000"));
    }
    if !(0.0..=1.0).contains(&c.memory_similarity) || c.memory_similarity < 0.5 {
        return Err(err("cleanup.memory_similarity".into(), "must be between 0.5 and 1"));
    }
    positive(source, "cleanup.max_statement".into(), c.max_statement)?;
    if c.max_delete_share <= 0.0 {
        return Err(err("cleanup.max_delete_share".into(), "must be above 0 (0 would forbid every deletion)"));
    }
    if c.smart.moderate_usage > c.smart.aggressive_usage {
        return Err(err("cleanup.smart.moderate_usage".into(), "must not be above `aggressive_usage`"));
    }
    for (name, mode) in [
        ("light", &c.modes.light),
        ("moderate", &c.modes.moderate),
        ("targeted", &c.modes.targeted),
        ("aggressive", &c.modes.aggressive),
        ("evict", &c.modes.evict),
    ] {
        // A zero idle time would select every key: an unscoped delete-everything.
        if mode.idle.is_some_and(|d| d.is_zero()) {
            return Err(err(
                format!("cleanup.modes.{name}.idle"),
                "must be greater than zero (zero selects every key)",
            ));
        }
        if mode.memory_stale.is_some_and(|d| d.is_zero()) {
            return Err(err(format!("cleanup.modes.{name}.memory_stale"), "must be greater than zero"));
        }
        if mode.memory_target_percent.is_some_and(|p| !(1.0..=100.0).contains(&p)) {
            return Err(err(format!("cleanup.modes.{name}.memory_target_percent"), "must be between 1 and 100"));
        }
    }
    Ok(())
}

fn health(h: &HealthSettings, source: &str) -> Result<(), ConfigError> {
    for (key, level) in [
        ("memory_percent", h.memory_percent),
        ("disk_percent", h.disk_percent),
        ("load_per_cpu", h.load_per_cpu),
        ("redis_memory_percent", h.redis_memory_percent),
        ("postgres_connections_percent", h.postgres_connections_percent),
        ("redis_clients_percent", h.redis_clients_percent),
        ("directory_percent", h.directory_percent),
        ("gpu_temperature_celsius", h.gpu_temperature_celsius),
        ("gpu_memory_percent", h.gpu_memory_percent),
        ("gpu_utilization_percent", h.gpu_utilization_percent),
    ] {
        if !(level.warn >= 0.0 && level.warn <= level.crit) {
            return Err(ConfigError::new(source, format!("health.{key}"), "needs 0 <= warn <= crit"));
        }
    }
    if !(0.0..=1.0).contains(&h.hit_ratio_min) {
        return Err(ConfigError::new(source, "health.hit_ratio_min", "must be between 0 and 1"));
    }
    Ok(())
}

fn scheduler(config: &Config, source: &str) -> Result<(), ConfigError> {
    let s = &config.scheduler;
    if s.timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(ConfigError::new(
            source,
            "scheduler.timezone",
            format!("`{}` is not an IANA time zone", s.timezone),
        ));
    }
    deadline(source, "scheduler.job_deadline".into(), s.job_deadline)?;
    for (name, job) in &s.jobs {
        if let Some(d) = job.deadline {
            deadline(source, format!("scheduler.jobs.{name}.deadline"), d)?;
        }
    }
    // Jobs added or changed, their commands, and their dependencies (no cycle).
    crate::schedule::check_settings(s).map_err(|(key, message)| ConfigError::new(source, key, message))?;
    if let Some(target) = &s.fleet_lock
        && !config.redis.iter().any(|t| &t.name == target)
    {
        return Err(ConfigError::new(source, "scheduler.fleet_lock", format!("no [[redis]] target named `{target}`")));
    }
    positive(source, "scheduler.lease".into(), s.lease)?;
    if !(s.min_factor > 0.0 && s.min_factor <= 1.0 && s.max_factor >= 1.0) {
        return Err(ConfigError::new(source, "scheduler.min_factor", "need 0 < min_factor <= 1 <= max_factor"));
    }
    Ok(())
}

fn api(api: &super::ApiSettings, source: &str) -> Result<(), ConfigError> {
    if api.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(ConfigError::new(
            source,
            "api.listen",
            format!("`{}` is no address and port, like 127.0.0.1:8430 or [::1]:8430", api.listen),
        ));
    }
    if let Some(token) = &api.token {
        let t = token.expose();
        if t.chars().count() < super::MIN_TOKEN_LEN || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::new(
                source,
                "api.token",
                format!(
                    "must be at least {} characters, with no spaces (e.g. `openssl rand -hex 32`)",
                    super::MIN_TOKEN_LEN
                ),
            ));
        }
    }
    if api.rate_limit == 0 || api.burst == 0 {
        let key = if api.rate_limit == 0 { "api.rate_limit" } else { "api.burst" };
        return Err(ConfigError::new(source, key, "must be at least 1"));
    }
    if api.max_body.as_u64() == 0 || api.max_body.as_u64() > 16 << 20 {
        return Err(ConfigError::new(source, "api.max_body", "must be between 1 B and 16 MiB"));
    }
    positive(source, "api.read_timeout".into(), api.read_timeout)?;
    Ok(())
}

fn alerts(alerts: &AlertSettings, source: &str) -> Result<(), ConfigError> {
    let channel_known = |c: &str| c == "log" || alerts.channels.contains_key(c);
    for (i, c) in alerts.default_channels.iter().enumerate() {
        if !channel_known(c) {
            return Err(ConfigError::new(
                source,
                format!("alerts.default_channels[{i}]"),
                format!("no channel `{c}` in [alerts.channels]"),
            ));
        }
    }
    positive(source, "alerts.interval".into(), alerts.interval)?;
    if let Some(url) = &alerts.ping_url
        && !(url.expose().starts_with("http://") || url.expose().starts_with("https://"))
    {
        return Err(ConfigError::new(source, "alerts.ping_url", "must be an http:// or https:// URL"));
    }
    let mut seen = BTreeSet::new();
    for (i, rule) in alerts.rules.iter().enumerate() {
        let key = |field: &str| format!("alerts.rules[{i}] (\"{}\").{field}", rule.name);
        let err = |field: &str, msg: String| ConfigError::new(source, key(field), msg);
        if rule.name.trim().is_empty() {
            return Err(ConfigError::new(source, format!("alerts.rules[{i}].name"), "must not be empty"));
        }
        if !seen.insert(rule.name.as_str()) {
            return Err(err("name", "another rule has this name".into()));
        }
        let condition = crate::alerting::parse(&rule.condition).map_err(|e| err("condition", e.to_string()))?;
        crate::alerting::check_ratios(&condition).map_err(|e| err("condition", e.to_string()))?;
        for t in &rule.tiers {
            if !RULE_TARGET_KINDS.contains(&t.as_str()) {
                return Err(err("tiers", format!("`{t}` is not one of {}", RULE_TARGET_KINDS.join(", "))));
            }
        }
        crate::alerting::check_template(&rule.message).map_err(|e| err("message", e.to_string()))?;
        for c in &rule.channels {
            if !channel_known(c) {
                return Err(err("channels", format!("no channel `{c}` in [alerts.channels]")));
            }
        }
        if rule.for_rounds == 0 {
            return Err(err("for", "must be at least 1 (rounds in a row)".into()));
        }
    }
    for (name, channel) in &alerts.channels {
        let err = |field: &str, msg: &str| ConfigError::new(source, format!("alerts.channels.{name}.{field}"), msg);
        match channel {
            Channel::Webhook { url, .. } | Channel::Slack { url, .. } => {
                if !(url.expose().starts_with("http://") || url.expose().starts_with("https://")) {
                    return Err(err("url", "must be an http:// or https:// URL"));
                }
            }
            Channel::Email { to, from, .. } => {
                if to.is_empty() {
                    return Err(err("to", "needs at least one recipient"));
                }
                if !from.contains('@') {
                    return Err(err("from", "must be an email address"));
                }
            }
            Channel::Alertmanager { url, urls, password, username, resend_intervals, .. } => {
                let all = channel.alertmanager_urls();
                if url.is_none() && urls.is_empty() {
                    return Err(err("url", "needs the Alertmanager base URL (`url` or `urls`)"));
                }
                if all.iter().any(|u| !matches!(u.scheme(), "http" | "https")) {
                    return Err(err("url", "must be an http:// or https:// URL"));
                }
                if password.is_some() != username.is_some() {
                    return Err(err("username", "basic authentication needs both `username` and `password`"));
                }
                if *resend_intervals == 0 {
                    return Err(err("resend_intervals", "must be at least 1"));
                }
            }
            Channel::Log => {}
        }
    }
    Ok(())
}

fn check_names<'a>(source: &str, tier: &str, names: impl Iterator<Item = &'a str>) -> Result<(), ConfigError> {
    let mut seen = BTreeSet::new();
    for (i, name) in names.enumerate() {
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(ConfigError::new(
                source,
                format!("{tier}[{i}].name"),
                "must be non-empty letters, digits, `-`, `_` or `.`",
            ));
        }
        if !seen.insert(name) {
            return Err(ConfigError::new(
                source,
                format!("{tier}[{i}].name"),
                format!("`{name}` is used twice in [[{tier}]]"),
            ));
        }
    }
    Ok(())
}

/// The longest timeout, lease or interval accepted: anything longer is as good as no bound at
/// all (every network wait is bounded), and far enough out it overflows the clock.
const LONGEST_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// A job's deadline: greater than zero and at most a week (a backup of a big dataset may take
/// more than a day; a job running for longer than a week is hung).
fn deadline(source: &str, key: String, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() || d > Duration::from_secs(7 * 24 * 60 * 60) {
        return Err(ConfigError::new(source, key, "must be greater than zero and at most 7days"));
    }
    Ok(())
}

/// A timeout, lease or interval: greater than zero and at most [`LONGEST_WAIT`].
fn positive(source: &str, key: String, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::new(source, key, "must be greater than zero"));
    }
    if d > LONGEST_WAIT {
        return Err(ConfigError::new(source, key, "must be at most 1day (a longer wait is as good as none)"));
    }
    Ok(())
}
