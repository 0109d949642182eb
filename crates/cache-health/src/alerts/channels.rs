//! Delivery: every notice goes first to a durable outbox in the state directory, one item per
//! channel, then is delivered; an item whose channel is down stays there and is retried with
//! exponential backoff (1 minute doubling to 1 hour) by later runs, and leaves the outbox only
//! once delivered. A receiver refusing an item for good (a 4xx answer other than 408 and 429:
//! the payload or the credentials are wrong, and sending it again cannot help) moves it to the
//! dead-letter list, `alerts/dead-letter.json`, and the round exits 1 (WARNING).
//!
//! Wire formats: the `log` channel appends JSON Lines to `alerts/log.jsonl`; `webhook` POSTs
//! the Alertmanager webhook payload (version 4; the alerts of one round grouped by `group_by`,
//! one POST per group; fingerprints computed as Alertmanager computes them), signed with
//! HMAC-SHA256 when a secret is set; `alertmanager` POSTs the alert list to Alertmanager's
//! `/api/v2/alerts`, as Prometheus does, and re-sends firing alerts every round;
//! `slack` POSTs an incoming-webhook message; `email` sends a text mail over SMTP (STARTTLS
//! unless configured otherwise).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use cache_core::config::{Channel, Config, SmtpTls};
use cache_core::state::StateDir;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{AlertStatus, Kind, Notice};

/// The outbox, in the state directory.
pub const OUTBOX_FILE: &str = "alerts/outbox.json";
/// Items a receiver refused for good (a 4xx other than 408 and 429).
pub const DEAD_LETTER_FILE: &str = "alerts/dead-letter.json";
/// The most items the dead-letter list keeps (the newest).
pub const DEAD_LETTER_MAX: usize = 200;
/// The `log` channel's file.
pub const LOG_FILE: &str = cache_core::alerting::flapping::LOG_FILE;
/// The header carrying a webhook body's signature.
pub const SIGNATURE_HEADER: &str = "X-Cache-Toolkit-Signature";

/// A notice waiting for one channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Unique id (alert, kind, time, channel): receivers can drop a repeat delivery.
    pub id: String,
    /// The channel.
    pub channel: String,
    /// What to deliver.
    pub notice: Notice,
    /// When it was queued.
    pub queued_at: DateTime<Utc>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before this.
    pub next_attempt: DateTime<Utc>,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When a receiver refused it for good (an item of the dead-letter list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_at: Option<DateTime<Utc>>,
}

/// Items a receiver refused for good, newest last, at most [`DEAD_LETTER_MAX`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadLetters {
    /// The items, each with its `last_error` and `dead_at`.
    pub items: Vec<Item>,
}

/// A delivery that sending again cannot fix: the receiver answered a 4xx other than 408
/// (timeout) and 429 (too many requests).
#[derive(Debug)]
pub struct Permanent(pub String);

impl std::fmt::Display for Permanent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Permanent {}

/// Whether an HTTP answer refuses a request for good.
pub fn is_permanent(status: reqwest::StatusCode) -> bool {
    status.is_client_error() && !matches!(status.as_u16(), 408 | 429)
}

/// The outbox.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Outbox {
    /// Items not delivered yet, oldest first.
    pub items: Vec<Item>,
}

/// The wait after `attempts` failures: 1 minute, doubling, at most an hour.
pub fn backoff(attempts: u32) -> chrono::Duration {
    chrono::Duration::minutes(1i64 << attempts.saturating_sub(1).min(6)).min(chrono::Duration::hours(1))
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Firing => "firing",
        Kind::Repeat => "repeat",
        Kind::Resolved => "resolved",
        Kind::Escalated => "escalated",
        Kind::Test => "test",
    }
}

impl Outbox {
    /// Queues each notice for each of its channels.
    pub fn enqueue(&mut self, notices: &[Notice], now: DateTime<Utc>) {
        for n in notices {
            for channel in &n.channels {
                self.items.push(Item {
                    id: format!("{}-{}-{}-{channel}", n.alert.id, kind_name(n.kind), now.timestamp_millis()),
                    channel: channel.clone(),
                    notice: n.clone(),
                    queued_at: now,
                    attempts: 0,
                    next_attempt: now,
                    last_error: None,
                    dead_at: None,
                });
            }
        }
    }
}

/// What one delivery attempt did.
#[derive(Debug)]
pub struct Attempt {
    /// The item's id.
    pub id: String,
    /// The channel.
    pub channel: String,
    /// `None` when delivered.
    pub error: Option<String>,
    /// Refused for good: the item went to the dead-letter list.
    pub permanent: bool,
}

/// The key items are delivered together under: one request per channel, round and group
/// (`group_by` labels for a webhook, everything for Alertmanager's API, one item otherwise).
fn batch_key(config: &Config, item: &Item) -> String {
    let settings = &config.alerts;
    let group = match settings.channels.get(&item.channel) {
        Some(Channel::Webhook { group_by, .. }) => {
            let labels = labels(config, &item.notice);
            group_by
                .iter()
                .map(|l| format!("{l}={}", labels.get(l).map_or("", String::as_str)))
                .collect::<Vec<_>>()
                .join(",")
        }
        Some(Channel::Alertmanager { .. }) => String::new(),
        _ => item.id.clone(),
    };
    format!("{}\u{1f}{}\u{1f}{group}", item.channel, item.queued_at.timestamp_millis())
}

/// Delivers every due item; the delivered leave the outbox, the refused for good go to the
/// dead-letter list, the others wait for their backoff. Items of one channel queued in the
/// same round go in one request per group. The outbox is saved after each request.
pub async fn flush(
    state: &StateDir,
    config: &Config,
    outbox: &mut Outbox,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Attempt>> {
    let mut attempts = Vec::new();
    let mut dead: Vec<Item> = Vec::new();
    let mut i = 0;
    while i < outbox.items.len() {
        if outbox.items[i].next_attempt > now {
            i += 1;
            continue;
        }
        let key = batch_key(config, &outbox.items[i]);
        let members: Vec<usize> = (i..outbox.items.len())
            .filter(|&j| outbox.items[j].next_attempt <= now && batch_key(config, &outbox.items[j]) == key)
            .collect();
        let batch: Vec<Item> = members.iter().map(|&j| outbox.items[j].clone()).collect();
        let result = deliver_batch(state, config, &batch).await;
        let permanent = result.as_ref().err().is_some_and(|e| e.downcast_ref::<Permanent>().is_some());
        let error = result.err().map(|e| format!("{e:#}"));
        for item in &batch {
            attempts.push(Attempt {
                id: item.id.clone(),
                channel: item.channel.clone(),
                error: error.clone(),
                permanent,
            });
        }
        match (&error, permanent) {
            (None, _) | (Some(_), true) => {
                for &j in members.iter().rev() {
                    let mut item = outbox.items.remove(j);
                    if let Some(e) = &error {
                        item.attempts += 1;
                        item.last_error = Some(e.clone());
                        item.dead_at = Some(now);
                        dead.push(item);
                    }
                }
            }
            (Some(e), false) => {
                for &j in &members {
                    let it = &mut outbox.items[j];
                    it.attempts += 1;
                    it.next_attempt = now + backoff(it.attempts);
                    it.last_error = Some(e.clone());
                }
                i += 1;
            }
        }
        if !dead.is_empty() {
            let mut letters: DeadLetters = state.read_json(DEAD_LETTER_FILE)?.unwrap_or_default();
            letters.items.extend(dead.drain(..).rev());
            let excess = letters.items.len().saturating_sub(DEAD_LETTER_MAX);
            letters.items.drain(..excess);
            state.write_json(DEAD_LETTER_FILE, &letters)?;
        }
        state.write_json(OUTBOX_FILE, outbox)?;
    }
    Ok(attempts)
}

/// Delivers one item to its channel.
pub async fn deliver(state: &StateDir, config: &Config, item: &Item) -> anyhow::Result<()> {
    deliver_batch(state, config, std::slice::from_ref(item)).await
}

/// Delivers items of one channel in one request (one group of a webhook, one list for
/// Alertmanager; the other channels take them one by one).
pub async fn deliver_batch(state: &StateDir, config: &Config, items: &[Item]) -> anyhow::Result<()> {
    let Some(first) = items.first() else { return Ok(()) };
    let settings = &config.alerts;
    let channel = if first.channel == "log" {
        settings.channels.get("log").cloned().unwrap_or(Channel::Log)
    } else {
        settings
            .channels
            .get(&first.channel)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("channel `{}` is no longer configured", first.channel))?
    };
    let name = first.channel.as_str();
    let notices: Vec<&Notice> = items.iter().map(|i| &i.notice).collect();
    match channel {
        Channel::Webhook { url, hmac_secret, authorization, headers, group_by, timeout } => {
            let body = serde_json::to_vec(&webhook_payload(config, name, &notices, &group_by))?;
            let mut request = cache_core::clients::http::client_async()
                .await?
                .post(url.expose())
                .timeout(timeout)
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", &first.id);
            if let Some(secret) = hmac_secret {
                request = request.header(SIGNATURE_HEADER, format!("sha256={}", sign(secret.expose(), &body)));
            }
            if let Some(auth) = authorization {
                request = request.header("Authorization", auth.expose());
            }
            for (k, v) in &headers {
                request = request.header(k.as_str(), v.expose());
            }
            post(request.body(body), name).await
        }
        Channel::Alertmanager { .. } => {
            let now = cache_core::clock::now()?;
            let alerts: Vec<Value> = notices.iter().map(|n| postable(config, &channel, n, now)).collect();
            post_alertmanager(&channel, name, &alerts).await
        }
        _ => {
            for item in items {
                deliver_one(state, &channel, item).await?;
            }
            Ok(())
        }
    }
}

async fn deliver_one(state: &StateDir, channel: &Channel, item: &Item) -> anyhow::Result<()> {
    match channel.clone() {
        Channel::Log => state.append_jsonl(
            LOG_FILE,
            &json!({ "time": item.queued_at, "id": item.id, "kind": item.notice.kind, "alert": item.notice.alert }),
        ),
        Channel::Slack { url, timeout } => {
            let body = json!({ "text": slack_text(&item.notice) });
            post(
                cache_core::clients::http::client_async().await?.post(url.expose()).timeout(timeout).json(&body),
                &item.channel,
            )
            .await
        }
        Channel::Email { server, port, starttls, ca_file, username, password, from, to, timeout } => {
            let smtp = Smtp {
                server: &server,
                port,
                tls: starttls,
                ca_file: ca_file.as_deref(),
                username: username.as_deref(),
                password: password.as_ref().map(|p| p.expose()),
                timeout,
            };
            send_mail(&smtp, &from, &to, &item.notice).await.with_context(|| format!("email through {server}:{port}"))
        }
        Channel::Webhook { .. } | Channel::Alertmanager { .. } => {
            anyhow::bail!("channel `{}` delivers in batches", item.channel)
        }
    }
}

async fn post(request: reqwest::RequestBuilder, channel: &str) -> anyhow::Result<()> {
    // Errors are shown without the URL: a webhook's URL is its credential.
    let response = request.send().await.map_err(|e| anyhow::anyhow!("channel `{channel}`: {}", e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let text = cache_core::redact::scrub(text.trim()).chars().take(300).collect::<String>();
    let said = if text.is_empty() { String::new() } else { format!(": {text}") };
    if is_permanent(status) {
        Err(Permanent(format!("channel `{channel}`: the receiver refused it ({status}{said}); not retried")).into())
    } else {
        anyhow::bail!("channel `{channel}`: the receiver answered {status}{said}")
    }
}

/// POSTs `alerts` to `/api/v2/alerts` of every Alertmanager of `channel` (as Prometheus does,
/// each gets every alert): delivered when one took them; refused for good when every one
/// refused them for good.
async fn post_alertmanager(channel: &Channel, name: &str, alerts: &[Value]) -> anyhow::Result<()> {
    let Channel::Alertmanager { username, password, bearer_token, ca_file, timeout, .. } = channel else {
        anyhow::bail!("channel `{name}` is no alertmanager channel");
    };
    let trust = cache_core::clients::tls::Trust { ca_file: ca_file.clone(), accept_invalid: false };
    let client = cache_core::clients::http::client_with(&trust).await?;
    let mut errors = Vec::new();
    let mut all_permanent = true;
    for base in channel.alertmanager_urls() {
        let mut url = base.url().clone();
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("channel `{name}`: {base} cannot take a path"))?
            .pop_if_empty()
            .extend(["api", "v2", "alerts"]);
        let mut request = client.post(url).timeout(*timeout).json(alerts);
        if let (Some(user), Some(pass)) = (username, password) {
            request = request.basic_auth(user, Some(pass.expose()));
        } else if let Some(token) = bearer_token {
            request = request.bearer_auth(token.expose());
        }
        match post(request, name).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                all_permanent &= e.downcast_ref::<Permanent>().is_some();
                errors.push(format!("{base}: {e:#}"));
            }
        }
    }
    let text = errors.join("; ");
    if all_permanent { Err(Permanent(text).into()) } else { Err(anyhow::anyhow!(text)) }
}

/// Re-sends to each `alertmanager` channel the alerts still firing that were not in this
/// round's notices, so that their `endsAt` moves on (Alertmanager resolves an alert whose
/// `endsAt` passed, as it does when Prometheus stops sending one). Failures are reported, not
/// queued: the next round sends them again.
pub async fn refresh(
    config: &Config,
    book: &super::Book,
    rules: &[cache_core::config::AlertRule],
    silenced: &[String],
    notices: &[Notice],
) -> Vec<Attempt> {
    let settings = &config.alerts;
    let now = match cache_core::clock::now() {
        Ok(now) => now,
        Err(e) => {
            return vec![Attempt {
                id: String::new(),
                channel: String::new(),
                error: Some(format!("{e:#}")),
                permanent: false,
            }];
        }
    };
    let mut attempts = Vec::new();
    for (name, channel) in &settings.channels {
        if !matches!(channel, Channel::Alertmanager { .. }) {
            continue;
        }
        let alerts: Vec<Value> = book
            .alerts
            .values()
            .filter(|a| a.status == AlertStatus::Firing && !silenced.contains(&a.rule))
            .filter(|a| rules.iter().any(|r| r.name == a.rule && super::channels_of(r, settings).contains(name)))
            .filter(|a| !notices.iter().any(|n| n.alert.fingerprint == a.fingerprint && n.channels.contains(name)))
            .map(|a| {
                postable(config, channel, &Notice { kind: Kind::Repeat, alert: a.clone(), channels: Vec::new() }, now)
            })
            .collect();
        if alerts.is_empty() {
            continue;
        }
        let result = post_alertmanager(channel, name, &alerts).await;
        let permanent = result.as_ref().err().is_some_and(|e| e.downcast_ref::<Permanent>().is_some());
        attempts.push(Attempt {
            id: format!("refresh-{name}"),
            channel: name.clone(),
            error: result.err().map(|e| format!("{e:#}")),
            permanent,
        });
    }
    attempts
}

/// The labels of a notice's alert, as Alertmanager sees them.
pub fn labels(config: &Config, n: &Notice) -> BTreeMap<String, String> {
    let a = &n.alert;
    let severity =
        serde_json::to_value(a.severity).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    [
        ("alertname", a.rule.clone()),
        ("severity", severity),
        ("target", a.target.clone()),
        ("project", config.project_name.clone()),
        ("instance", cache_core::system::hostname()),
        ("job", "cache-toolkit".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn annotations(n: &Notice) -> Value {
    let a = &n.alert;
    let mut annotations = json!({ "summary": a.message, "description": description(n), "kind": kind_name(n.kind) });
    if let Some(url) = &a.runbook_url {
        annotations["runbook_url"] = json!(url);
    }
    annotations
}

fn description(n: &Notice) -> String {
    let a = &n.alert;
    let mut text = format!("{} on {}", a.rule, a.target);
    if !a.values.is_empty() {
        let values: Vec<String> = a.values.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        text.push_str(&format!(": {}", values.join(", ")));
    }
    text
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One alert of `POST /api/v2/alerts` (Alertmanager's `postableAlert`): a firing alert ends
/// `resend_intervals` monitor intervals from `now` (each round sends it again), a resolved one
/// when it resolved.
pub fn postable(config: &Config, channel: &Channel, n: &Notice, now: DateTime<Utc>) -> Value {
    let a = &n.alert;
    let intervals = match channel {
        Channel::Alertmanager { resend_intervals, .. } => *resend_intervals,
        _ => 3,
    };
    let ahead = chrono::Duration::from_std(config.alerts.interval * intervals).unwrap_or(chrono::Duration::minutes(3));
    let ends = if status_of(n) == "resolved" { a.ended_at.unwrap_or(now) } else { now + ahead };
    json!({
        "labels": labels(config, n),
        "annotations": annotations(n),
        "startsAt": rfc3339(a.started_at.unwrap_or(a.since)),
        "endsAt": rfc3339(ends),
        "generatorURL": config.alerts.external_url.clone().unwrap_or_default(),
    })
}

/// Alertmanager's fingerprint of a label set: FNV-1a (64 bits) over the labels sorted by name,
/// each name and value followed by the byte 255, as 16 hex digits.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes.iter().chain([&0xffu8]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    // A BTreeMap iterates sorted by name, byte-wise, as Go sorts strings.
    for (name, value) in labels {
        add(name.as_bytes());
        add(value.as_bytes());
    }
    format!("{h:016x}")
}

/// HMAC-SHA256 of `body` with `secret`, in hex.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn status_of(n: &Notice) -> &'static str {
    if n.kind == Kind::Resolved || n.alert.status == AlertStatus::Resolved { "resolved" } else { "firing" }
}

/// The Alertmanager webhook payload (version 4) of one group of notices.
pub fn webhook_payload(config: &Config, receiver: &str, notices: &[&Notice], group_by: &[String]) -> Value {
    let all: Vec<(BTreeMap<String, String>, &Notice)> = notices.iter().map(|n| (labels(config, n), *n)).collect();
    let common = |maps: Vec<BTreeMap<String, Value>>| -> BTreeMap<String, Value> {
        let mut it = maps.into_iter();
        let first = it.next().unwrap_or_default();
        it.fold(first, |acc, m| acc.into_iter().filter(|(k, v)| m.get(k) == Some(v)).collect())
    };
    let as_values = |m: &BTreeMap<String, String>| m.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let common_labels = common(all.iter().map(|(l, _)| as_values(l)).collect());
    let common_annotations = common(
        all.iter()
            .map(|(_, n)| serde_json::from_value::<BTreeMap<String, Value>>(annotations(n)).unwrap_or_default())
            .collect(),
    );
    let group_labels: BTreeMap<String, Value> =
        group_by.iter().filter_map(|g| common_labels.get(g).map(|v| (g.clone(), v.clone()))).collect();
    let group_key =
        format!("{{}}:{{{}}}", group_labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "));
    let status = if all.iter().any(|(_, n)| status_of(n) == "firing") { "firing" } else { "resolved" };
    let external = config.alerts.external_url.clone().unwrap_or_default();
    let alerts: Vec<Value> = all
        .iter()
        .map(|(labels, n)| {
            let a = &n.alert;
            json!({
                "status": status_of(n),
                "labels": labels,
                "annotations": annotations(n),
                "startsAt": rfc3339(a.started_at.unwrap_or(a.since)),
                "endsAt": a.ended_at.map_or("0001-01-01T00:00:00Z".to_owned(), rfc3339),
                "generatorURL": external,
                "fingerprint": fingerprint(labels),
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": common_annotations,
        "externalURL": external,
        "alerts": alerts,
    })
}

/// The one-line text of a notice (Slack, email subject).
pub fn headline(n: &Notice) -> String {
    let a = &n.alert;
    let severity =
        serde_json::to_value(a.severity).ok().and_then(|v| v.as_str().map(str::to_uppercase)).unwrap_or_default();
    let what = match n.kind {
        Kind::Firing | Kind::Repeat => "FIRING",
        Kind::Resolved => "RESOLVED",
        Kind::Escalated => "ESCALATED",
        Kind::Test => "TEST",
    };
    format!("[{what}] [{severity}] {} on {}", a.rule, a.target)
}

fn slack_text(n: &Notice) -> String {
    let mut text = format!("*{}*\n{}", headline(n), n.alert.message);
    if let Some(url) = &n.alert.runbook_url {
        text.push_str(&format!("\nRunbook: <{url}>"));
    }
    text
}

/// How to reach an SMTP server.
struct Smtp<'a> {
    server: &'a str,
    port: u16,
    tls: SmtpTls,
    ca_file: Option<&'a std::path::Path>,
    username: Option<&'a str>,
    password: Option<&'a str>,
    timeout: Duration,
}

async fn send_mail(smtp: &Smtp<'_>, from: &str, to: &[String], n: &Notice) -> anyhow::Result<()> {
    let Smtp { server, port, tls, ca_file, username, password, timeout } = *smtp;
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let mut message = Message::builder()
        .from(from.parse::<Mailbox>().with_context(|| format!("from address `{from}`"))?)
        .subject(headline(n))
        .header(ContentType::TEXT_PLAIN);
    for rcpt in to {
        message = message.to(rcpt.parse::<Mailbox>().with_context(|| format!("recipient `{rcpt}`"))?);
    }
    let mut body = format!("{}\n\n{}\n", headline(n), n.alert.message);
    for (k, v) in &n.alert.values {
        body.push_str(&format!("{k} = {v}\n"));
    }
    if let Some(url) = &n.alert.runbook_url {
        body.push_str(&format!("\nRunbook: {url}\n"));
    }
    body.push_str(&format!("\nSince {} (alert {})\n", n.alert.since.to_rfc3339(), n.alert.id));
    let message = message.body(body)?;
    let parameters = || -> anyhow::Result<TlsParameters> {
        let mut builder = TlsParameters::builder(server.to_owned());
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).with_context(|| format!("reading ca_file `{}`", path.display()))?;
            builder = builder.add_root_certificate(lettre::transport::smtp::client::Certificate::from_pem(&pem)?);
        }
        Ok(builder.build()?)
    };
    let tls = match tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Opportunistic => Tls::Opportunistic(parameters()?),
        SmtpTls::Required => Tls::Required(parameters()?),
    };
    let mut transport =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server).port(port).tls(tls).timeout(Some(timeout));
    if let (Some(user), Some(pass)) = (username, password) {
        transport = transport.credentials(Credentials::new(user.to_owned(), pass.to_owned()));
    }
    tokio::time::timeout(timeout, transport.build().send(message))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {}", humantime::format_duration(timeout)))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_an_hour() {
        let m = |n| backoff(n).num_minutes();
        assert_eq!([m(1), m(2), m(3), m(6), m(7), m(30)], [1, 2, 4, 32, 60, 60]);
    }

    const FP_X: &str = "d240efc3896bf266";
    const FP_HMU: &str = "54a391ef4610a70e";

    #[test]
    fn fingerprints_are_alertmanagers() {
        let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        // FNV-1a of nothing is its offset basis.
        assert_eq!(fingerprint(&BTreeMap::new()), "cbf29ce484222325");
        // Values Alertmanager 0.25 gave for these label sets (GET /api/v2/alerts).
        assert_eq!(fingerprint(&labels(&[("alertname", "x")])), FP_X);
        assert_eq!(fingerprint(&labels(&[("alertname", "High Memory Usage"), ("target", "redis/main")])), FP_HMU);
    }

    #[test]
    fn only_lasting_4xx_answers_are_permanent() {
        let p = |code| is_permanent(reqwest::StatusCode::from_u16(code).unwrap());
        assert_eq!(
            [p(400), p(401), p(404), p(408), p(429), p(500), p(503)],
            [true, true, true, false, false, false, false]
        );
    }

    #[test]
    fn signatures_are_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
