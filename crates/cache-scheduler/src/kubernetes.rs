//! `install --kubernetes`: a complete, deployable set of manifests, one YAML stream.
//!
//! - a ConfigMap with the configuration the installer read (its `{state_dir}` paths put back,
//!   `scheduler.bin_dir` dropped: in the image the tools sit side by side on the `PATH`), with
//!   the credentials of the first Redis, PostgreSQL and memory target taken out: the pods get
//!   them from a Secret the operator creates (`env` from `secretKeyRef`: `REDIS_URL`,
//!   `DATABASE_URL`, `MEM0_URL`, `MEM0_API_KEY`). A configuration holding other secrets (a
//!   second target's password, a channel's token) is mounted from a Secret made from the file
//!   instead. No secret value is ever in the output;
//! - a PersistentVolumeClaim for the state directory (history, cursors, locks, run records and,
//!   under it by default, the backups), mounted in every pod;
//! - a CronJob per enabled job and one for the every-minute tick, each with
//!   `concurrencyPolicy: Forbid`, the job's time zone and resource requests.
//!
//! A comment says when the fleet lock is needed: pods of different CronJobs may run at once on
//! different nodes, where the file locks of the state volume do not reach.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cache_core::config::{Config, STATE_DIR_PLACEHOLDER};
use cache_core::redact::{MASK, SafeUrl};
use cache_core::schedule::Effective;

use crate::render::{Invocation, TICK, argv, tick_argv, unit};

/// Where the configuration is mounted in the pods.
pub const CONFIG_DIR: &str = "/etc/cache-toolkit";
/// Where the state volume is mounted in the pods.
pub const STATE_DIR: &str = "/var/lib/cache-toolkit";
/// The Secret holding the first targets' URLs and the memory API key.
pub const SECRET: &str = "cache-toolkit-secrets";
/// The ConfigMap (or, with other secrets in it, the Secret) holding the configuration.
pub const CONFIG_OBJECT: &str = "cache-toolkit-config";
/// The PersistentVolumeClaim of the state directory.
pub const STATE_CLAIM: &str = "cache-toolkit-state";

/// What `install --kubernetes` was asked for.
#[derive(Clone, Debug)]
pub struct Options<'a> {
    /// The container image (with every tool on its `PATH`).
    pub image: &'a str,
    /// The namespace of every object.
    pub namespace: Option<&'a str>,
    /// The size of the state volume.
    pub storage: &'a str,
    /// The configuration file the installer read, if any (for the command making its Secret).
    pub config_file: Option<&'a Path>,
}

/// A JSON string, which is a valid YAML double-quoted scalar.
fn q(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("{text:?}"))
}

/// One environment variable a pod takes from [`SECRET`].
struct SecretEnv {
    var: &'static str,
    key: &'static str,
    of: String,
}

/// `url` without its password and query (whose values may be secrets).
fn without_credentials(url: &SafeUrl) -> anyhow::Result<SafeUrl> {
    let mut bare = url.url().clone();
    let _ = bare.set_password(None);
    bare.set_query(None);
    Ok(SafeUrl::parse(bare.as_str())?)
}

fn credentialed(url: &SafeUrl) -> bool {
    url.redacted() != url.expose()
}

fn relative_to_state(path: &mut PathBuf, root: &Path) {
    if let Ok(rest) = path.strip_prefix(root) {
        *path = Path::new(STATE_DIR_PLACEHOLDER).join(rest);
    }
}

/// The configuration as the pods read it, the environment it needs from the Secret, and whether
/// it holds other secrets (then it must be mounted from a Secret itself).
fn pod_config(config: &Config, state_root: &Path) -> anyhow::Result<(String, Vec<SecretEnv>, bool)> {
    let mut c = config.clone();
    let mut env = Vec::new();
    if let Some(t) = c.redis.first_mut()
        && credentialed(&t.url)
    {
        env.push(SecretEnv { var: "REDIS_URL", key: "redis-url", of: format!("redis[0] `{}`", t.name) });
        t.url = without_credentials(&t.url)?;
    }
    if let Some(t) = c.postgres.first_mut()
        && credentialed(&t.url)
    {
        env.push(SecretEnv { var: "DATABASE_URL", key: "database-url", of: format!("postgres[0] `{}`", t.name) });
        t.url = without_credentials(&t.url)?;
    }
    if let Some(t) = c.memory.first_mut() {
        if credentialed(&t.url) {
            env.push(SecretEnv { var: "MEM0_URL", key: "mem0-url", of: format!("memory[0] `{}`", t.name) });
            t.url = without_credentials(&t.url)?;
        }
        if t.api_key.take().is_some() {
            env.push(SecretEnv {
                var: "MEM0_API_KEY",
                key: "mem0-api-key",
                of: format!("memory[0] `{}` api_key", t.name),
            });
        }
    }
    c.scheduler.bin_dir = None;
    // The pods run jobs, never the maintenance API: its token stays out of their configuration.
    c.api.token = None;
    c.files.iter_mut().for_each(|t| relative_to_state(&mut t.path, state_root));
    c.logs.iter_mut().for_each(|t| relative_to_state(&mut t.path, state_root));
    c.system.directories.iter_mut().for_each(|p| relative_to_state(p, state_root));
    relative_to_state(&mut c.backup.dir, state_root);
    c.backup.paths.iter_mut().for_each(|p| relative_to_state(p, state_root));
    let text = toml::to_string(&c)?;
    let other_secrets = text.contains(MASK);
    Ok((text, env, other_secrets))
}

fn metadata(out: &mut String, name: &str, namespace: Option<&str>, component: &str) {
    let _ = write!(out, "metadata:\n  name: {}\n", q(name));
    if let Some(ns) = namespace {
        let _ = writeln!(out, "  namespace: {}", q(ns));
    }
    let _ = write!(
        out,
        "  labels:\n    app.kubernetes.io/name: cache-toolkit\n    app.kubernetes.io/component: {}\n",
        q(component)
    );
}

fn list(words: &[String]) -> String {
    format!("[{}]", words.iter().map(|w| q(w)).collect::<Vec<_>>().join(", "))
}

struct CronJob<'a> {
    name: String,
    component: String,
    description: String,
    schedule: &'a str,
    argv: Vec<String>,
    heavy: bool,
}

/// The manifests, one YAML stream.
pub fn render(jobs: &[Effective], config: &Config, state_root: &Path, opts: &Options<'_>) -> anyhow::Result<String> {
    let settings = &config.scheduler;
    let (text, env, other_secrets) = pod_config(config, state_root)?;
    let mut out = String::from(
        "# cache-toolkit on Kubernetes: written by `cache-scheduler install --kubernetes`; change it there.\n\
         # Apply with `kubectl apply -f`. Every CronJob reads the configuration below and keeps its state\n",
    );
    let _ = writeln!(out, "# (history, cursors, locks, run records, backups) on the volume `{STATE_CLAIM}`.");
    if !env.is_empty() {
        let _ = writeln!(out, "# Credentials are not in this file: create the Secret `{SECRET}` first, with");
        let literals: Vec<String> = env.iter().map(|e| format!("--from-literal={}=...", e.key)).collect();
        let _ = writeln!(out, "#   kubectl create secret generic {SECRET} {}", literals.join(" "));
        for e in &env {
            let _ = writeln!(out, "#   {}: the URL (or key) of {} (the pods read it as {})", e.key, e.of, e.var);
        }
    }
    if other_secrets {
        let _ = writeln!(
            out,
            "# The configuration holds other secrets (a second target's password, a channel's token): it is\n\
             # mounted from the Secret `{CONFIG_OBJECT}`, made from the file itself:\n\
             #   kubectl create secret generic {CONFIG_OBJECT} --from-file=config.toml={}",
            opts.config_file.map_or("PATH".to_owned(), |p| p.display().to_string())
        );
    }
    if !config.backup.dir.starts_with(state_root) && !config.backup.dir.starts_with(STATE_DIR_PLACEHOLDER) {
        let _ = writeln!(
            out,
            "# NOTE: backup.dir `{}` is outside the state directory: mount a volume there, or the backups go\n\
             # with each pod (and cleanup-deep, which needs a recent backup, never runs).",
            config.backup.dir.display()
        );
    }
    match &settings.fleet_lock {
        Some(target) => {
            let _ = writeln!(
                out,
                "# Several pods may run at once (each CronJob has its own, on any node): heavy jobs take the fleet\n\
                 # lock on redis `{target}` (scheduler.fleet_lock) and run once per tick."
            );
        }
        None => {
            let _ = writeln!(
                out,
                "# NOTE: the fleet lock is required here: several pods may run at once (each CronJob has its own,\n\
                 # on any node, where the file locks of the state volume do not reach). Set scheduler.fleet_lock\n\
                 # to a [[redis]] target so that heavy jobs take its lease and run once per tick."
            );
        }
    }
    // The configuration (unless it comes from the Secret made from the file).
    if !other_secrets {
        out.push_str("---\napiVersion: v1\nkind: ConfigMap\n");
        metadata(&mut out, CONFIG_OBJECT, opts.namespace, "config");
        out.push_str("data:\n  config.toml: |\n");
        for line in text.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    out.push_str("---\napiVersion: v1\nkind: PersistentVolumeClaim\n");
    metadata(&mut out, STATE_CLAIM, opts.namespace, "state");
    let _ = write!(
        out,
        "spec:\n  accessModes: [\"ReadWriteOnce\"]\n  resources:\n    requests:\n      storage: {}\n",
        q(opts.storage)
    );
    let inv = Invocation {
        bin_dir: None,
        config: Some(Path::new(CONFIG_DIR).join("config.toml")),
        state_dir: Some(PathBuf::from(STATE_DIR)),
    };
    let mut cronjobs: Vec<CronJob<'_>> = jobs
        .iter()
        .filter(|j| j.enabled)
        .map(|j| CronJob {
            name: unit(j),
            component: j.spec.name.to_string(),
            description: j.spec.description.to_string(),
            schedule: &j.schedule,
            argv: argv(j, &inv),
            heavy: j.spec.heavy,
        })
        .collect();
    cronjobs.push(CronJob {
        name: format!("cache-toolkit-{TICK}"),
        component: TICK.to_owned(),
        description: "One-off runs when due (cache-scheduler tick)".to_owned(),
        schedule: "* * * * *",
        argv: tick_argv(&inv),
        heavy: false,
    });
    for job in cronjobs {
        let _ = write!(out, "---\n# {}\napiVersion: batch/v1\nkind: CronJob\n", job.description);
        metadata(&mut out, &job.name, opts.namespace, &job.component);
        let (cpu, memory) = if job.heavy { ("500m", "512Mi") } else { ("100m", "128Mi") };
        let _ = write!(
            out,
            "spec:\n  schedule: {schedule}\n  timeZone: {tz}\n  concurrencyPolicy: Forbid\n  startingDeadlineSeconds: 300\n  \
             successfulJobsHistoryLimit: 3\n  failedJobsHistoryLimit: 3\n  jobTemplate:\n    spec:\n      backoffLimit: 0\n      \
             template:\n        metadata:\n          labels:\n            app.kubernetes.io/name: cache-toolkit\n            \
             app.kubernetes.io/component: {component}\n        spec:\n          restartPolicy: Never\n          containers:\n            \
             - name: {component}\n              image: {image}\n              command: {command}\n              args: {args}\n",
            schedule = q(job.schedule),
            tz = q(&settings.timezone),
            component = q(&job.component),
            image = q(opts.image),
            command = list(&job.argv[..1]),
            args = list(&job.argv[1..]),
        );
        if !env.is_empty() {
            out.push_str("              env:\n");
            for e in &env {
                let _ = write!(
                    out,
                    "                - name: {}\n                  valueFrom:\n                    secretKeyRef:\n                      \
                     name: {}\n                      key: {}\n",
                    e.var,
                    q(SECRET),
                    q(e.key)
                );
            }
        }
        let _ = write!(
            out,
            "              resources:\n                requests:\n                  cpu: {cpu}\n                  memory: {memory}\n              \
             volumeMounts:\n                - name: config\n                  mountPath: {CONFIG_DIR}\n                  readOnly: true\n                \
             - name: state\n                  mountPath: {STATE_DIR}\n          volumes:\n            - name: config\n",
            cpu = q(cpu),
            memory = q(memory),
        );
        if other_secrets {
            let _ = writeln!(out, "              secret:\n                secretName: {}", q(CONFIG_OBJECT));
        } else {
            let _ = writeln!(out, "              configMap:\n                name: {}", q(CONFIG_OBJECT));
        }
        let _ = writeln!(
            out,
            "            - name: state\n              persistentVolumeClaim:\n                claimName: {}",
            q(STATE_CLAIM)
        );
    }
    Ok(out)
}
