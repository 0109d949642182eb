//! `[alerts]`: alert rules, notification channels and self-healing limits.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::default_timeout;
use crate::redact::{SafeUrl, Secret};

/// Alerting: rules over the health metrics, where notifications go, and self-healing.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSettings {
    /// Time between two rounds of `monitor` (seed 002: 60 s).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A firing alert is sent again after this (seed 002: 30 minutes); rules may override.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Seed 000's and seed 002's rules apply when `rules` is empty.
    pub default_rules: bool,
    /// Channels of rules that name none (and of the default rules).
    pub default_channels: Vec<String>,
    /// The rules.
    pub rules: Vec<AlertRule>,
    /// Named channels; `log` (JSON Lines in the state directory) always exists.
    pub channels: BTreeMap<String, Channel>,
    /// Self-healing limits.
    pub remediation: Remediation,
    /// The dashboard or runbook index the alerts link to: Alertmanager's `generatorURL` and the
    /// webhook payload's `externalURL` (none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_url: Option<String>,
    /// A dead-man's switch (healthchecks.io style) pinged by every monitor round: `/start`
    /// when it begins, the bare URL when it went well, `/fail` or `/<exit code>` otherwise
    /// (see `cache_core::heartbeat`). A secret: its path is the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_url: Option<Secret>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            cooldown: Duration::from_secs(30 * 60),
            default_rules: true,
            default_channels: vec!["log".into()],
            rules: Vec::new(),
            channels: BTreeMap::new(),
            remediation: Remediation::default(),
            external_url: None,
            ping_url: None,
        }
    }
}

/// How bad an alert is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information.
    Info,
    /// Needs attention.
    #[default]
    Warning,
    /// Needs attention now.
    Critical,
}

/// What `monitor` does by itself when a rule fires (seed 000 `auto_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoAction {
    /// `cache-cleanup smart --yes -q`
    TriggerCleanup,
    /// `cache-optimizer run --yes -q`
    TriggerOptimization,
    /// `cache-optimizer run --yes -q --tier postgres`: the index and statistics maintenance
    PostgresMaintenance,
    /// Mark the failing target disabled for `remediation.disable_for`, so other tools skip it
    DisableTier,
}

/// One alert rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Its name, unique.
    pub name: String,
    /// When it is bad (see `cache_core::alerting`).
    pub condition: String,
    /// How bad.
    #[serde(default)]
    pub severity: Severity,
    /// Where notifications go (default: `alerts.default_channels`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// The message, with `{metric:.1%}` placeholders and `{target}`, `{rule}`.
    #[serde(default = "default_message")]
    pub message: String,
    /// Where the runbook is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
    /// Consecutive bad rounds before it fires.
    #[serde(default = "one", rename = "for")]
    pub for_rounds: u32,
    /// Overrides `alerts.cooldown`.
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Duration>,
    /// Send a notice when the condition clears.
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// What to do by itself when it fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_action: Option<AutoAction>,
    /// Only targets of these kinds (`redis`, `postgres`, `memory`, `http`, `files`, `logs`,
    /// `system`, `job`); empty: every target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<String>,
}

/// The kinds of target a rule's `tiers` may name: the part before `/` of `tier/name`.
pub const RULE_TARGET_KINDS: &[&str] = &["redis", "postgres", "memory", "http", "files", "logs", "system", "job"];

impl AlertRule {
    /// Whether the rule judges `target` (`tier/name`, or `all`).
    pub fn applies_to(&self, target: &str) -> bool {
        self.tiers.is_empty() || target == "all" || self.tiers.iter().any(|t| target.split('/').next() == Some(t))
    }
}

fn default_message() -> String {
    "{rule} on {target}".into()
}
fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// A notification channel.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Channel {
    /// JSON Lines in `alerts/log.jsonl`.
    Log,
    /// A POST of the Alertmanager webhook JSON.
    Webhook {
        /// Where to POST.
        url: Secret,
        /// Signs the body: `X-Cache-Toolkit-Signature: sha256=<hex HMAC>`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hmac_secret: Option<Secret>,
        /// The `Authorization` header's value (`Bearer ...`, `Basic ...`): a secret.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authorization: Option<Secret>,
        /// More headers (name = value); their values are secrets.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, Secret>,
        /// The labels alerts of one round are grouped by, one POST per group (Alertmanager's
        /// `group_by`; default: `["alertname"]`, one POST per rule per round).
        #[serde(default = "default_group_by")]
        group_by: Vec<String>,
        /// Time allowed for the request.
        #[serde(default = "default_timeout", with = "humantime_serde")]
        timeout: Duration,
    },
    /// Alertmanager's own API: `POST /api/v2/alerts`, as Prometheus sends alerts.
    Alertmanager {
        /// The Alertmanager base URL (`http://alertmanager:9093`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<SafeUrl>,
        /// Several Alertmanagers (a cluster): each gets every alert; one answering is enough.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        urls: Vec<SafeUrl>,
        /// Basic authentication: the user...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        /// ...and its password.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<Secret>,
        /// Bearer authentication instead.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bearer_token: Option<Secret>,
        /// An extra CA certificate (PEM) to trust.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_file: Option<PathBuf>,
        /// A firing alert's `endsAt` is this many monitor intervals ahead (re-sent each round).
        #[serde(default = "three")]
        resend_intervals: u32,
        /// Time allowed for each request.
        #[serde(default = "default_timeout", with = "humantime_serde")]
        timeout: Duration,
    },
    /// A Slack incoming webhook.
    Slack {
        /// The webhook URL (a secret: its path is the credential).
        url: Secret,
        /// Time allowed for the request.
        #[serde(default = "default_timeout", with = "humantime_serde")]
        timeout: Duration,
    },
    /// Email over SMTP.
    Email {
        /// SMTP server host.
        server: String,
        /// Port (587 for STARTTLS).
        #[serde(default = "smtp_port")]
        port: u16,
        /// `required` (STARTTLS or nothing), `opportunistic`, or `none`.
        #[serde(default)]
        starttls: SmtpTls,
        /// An extra CA certificate (PEM) to trust, for a relay with a private CA.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_file: Option<PathBuf>,
        /// Login, when the server wants one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        /// Its password.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<Secret>,
        /// Sender.
        from: String,
        /// Recipients.
        to: Vec<String>,
        /// Time allowed for the whole exchange.
        #[serde(default = "default_timeout", with = "humantime_serde")]
        timeout: Duration,
    },
}

fn default_group_by() -> Vec<String> {
    vec!["alertname".into()]
}
fn three() -> u32 {
    3
}

impl Channel {
    /// The Alertmanager base URLs of an `alertmanager` channel (`url` and `urls`).
    pub fn alertmanager_urls(&self) -> Vec<&SafeUrl> {
        match self {
            Channel::Alertmanager { url, urls, .. } => url.iter().chain(urls).collect(),
            _ => Vec::new(),
        }
    }
}

fn smtp_port() -> u16 {
    587
}

/// SMTP transport security.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS, or no mail at all.
    #[default]
    Required,
    /// STARTTLS when offered.
    Opportunistic,
    /// Plain SMTP (a relay on localhost).
    None,
}

/// Self-healing limits (Monit's "if N restarts within M cycles").
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Remediation {
    /// At most this many auto-actions per rule...
    pub max_actions: u32,
    /// ...within this many rounds; past it the rule's actions stop and an alert says so.
    pub rounds: u32,
    /// Time between an action and the check that verifies it.
    #[serde(with = "humantime_serde")]
    pub verify_delay: Duration,
    /// How long `disable_tier` keeps a target disabled.
    #[serde(with = "humantime_serde")]
    pub disable_for: Duration,
    /// When a target is disabled, the entries of the remaining tiers live this much longer
    /// (seed 000: Redis TTLs when the memory API or PostgreSQL fails, cache-table expiry when
    /// Redis fails); none by default.
    #[serde(with = "humantime_serde::option")]
    pub extend_ttl: Option<Duration>,
    /// The command lines of the actions; empty: the sibling binaries next to this one. The
    /// alert's target is always appended as `--tier TIER:NAME`.
    pub commands: BTreeMap<String, Vec<String>>,
    /// Where the sibling tools are (default: beside this binary, then PATH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools_dir: Option<PathBuf>,
}

impl Default for Remediation {
    fn default() -> Self {
        Self {
            max_actions: 3,
            rounds: 10,
            verify_delay: Duration::from_secs(30),
            disable_for: Duration::from_secs(600),
            extend_ttl: None,
            commands: BTreeMap::new(),
            tools_dir: None,
        }
    }
}
