//! Delivery: every notice goes first to a durable outbox in the state directory, one item per
//! channel, then is delivered; an item whose channel is down stays there and is retried with
//! exponential backoff (1 minute doubling to 1 hour) by later runs, and leaves the outbox only
//! once delivered.
//!
//! Wire formats: the `log` channel appends JSON Lines to `alerts/log.jsonl`; `webhook` POSTs
//! the Alertmanager webhook payload (version 4), signed with HMAC-SHA256 when a secret is set;
//! `slack` POSTs an incoming-webhook message; `email` sends a text mail over SMTP (STARTTLS
//! unless configured otherwise).

use std::time::Duration;

use anyhow::Context as _;
use cache_core::config::{AlertSettings, Channel, SmtpTls};
use cache_core::state::StateDir;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{AlertStatus, Kind, Notice};

/// The outbox, in the state directory.
pub const OUTBOX_FILE: &str = "alerts/outbox.json";
/// The `log` channel's file.
pub const LOG_FILE: &str = "alerts/log.jsonl";
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
}

/// Delivers every due item; the delivered leave the outbox, the others wait for their backoff.
/// The outbox is saved after each attempt.
pub async fn flush(
    state: &StateDir,
    settings: &AlertSettings,
    outbox: &mut Outbox,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Attempt>> {
    let mut attempts = Vec::new();
    let mut i = 0;
    while i < outbox.items.len() {
        if outbox.items[i].next_attempt > now {
            i += 1;
            continue;
        }
        let item = outbox.items[i].clone();
        let result = deliver(state, settings, &item).await;
        match result {
            Ok(()) => {
                outbox.items.remove(i);
                attempts.push(Attempt { id: item.id, channel: item.channel, error: None });
            }
            Err(e) => {
                let text = format!("{e:#}");
                let it = &mut outbox.items[i];
                it.attempts += 1;
                it.next_attempt = now + backoff(it.attempts);
                it.last_error = Some(text.clone());
                attempts.push(Attempt { id: item.id, channel: item.channel, error: Some(text) });
                i += 1;
            }
        }
        state.write_json(OUTBOX_FILE, outbox)?;
    }
    Ok(attempts)
}

/// Delivers one item to its channel.
pub async fn deliver(state: &StateDir, settings: &AlertSettings, item: &Item) -> anyhow::Result<()> {
    let channel = if item.channel == "log" {
        settings.channels.get("log").cloned().unwrap_or(Channel::Log)
    } else {
        settings
            .channels
            .get(&item.channel)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("channel `{}` is no longer configured", item.channel))?
    };
    match channel {
        Channel::Log => state.append_jsonl(
            LOG_FILE,
            &json!({ "time": item.queued_at, "id": item.id, "kind": item.notice.kind, "alert": item.notice.alert }),
        ),
        Channel::Webhook { url, hmac_secret, timeout } => {
            let body = serde_json::to_vec(&alertmanager(&item.channel, &item.notice))?;
            let mut request = cache_core::clients::http::client()?
                .post(url.expose())
                .timeout(timeout)
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", &item.id);
            if let Some(secret) = hmac_secret {
                request = request.header(SIGNATURE_HEADER, format!("sha256={}", sign(secret.expose(), &body)));
            }
            post(request.body(body), &item.channel).await
        }
        Channel::Slack { url, timeout } => {
            let body = json!({ "text": slack_text(&item.notice) });
            post(cache_core::clients::http::client()?.post(url.expose()).timeout(timeout).json(&body), &item.channel)
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
    }
}

async fn post(request: reqwest::RequestBuilder, channel: &str) -> anyhow::Result<()> {
    // Errors are shown without the URL: a webhook's URL is its credential.
    let response = request.send().await.map_err(|e| anyhow::anyhow!("channel `{channel}`: {}", e.without_url()))?;
    let status = response.status();
    if status.is_success() { Ok(()) } else { anyhow::bail!("channel `{channel}`: the receiver answered {status}") }
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

/// The Alertmanager webhook payload (version 4) for one notice.
pub fn alertmanager(receiver: &str, n: &Notice) -> Value {
    let a = &n.alert;
    let severity = serde_json::to_value(a.severity).unwrap_or(Value::Null);
    let labels = json!({
        "alertname": a.rule,
        "severity": severity,
        "target": a.target,
        "instance": cache_core::system::hostname(),
        "job": "cache-toolkit",
    });
    let mut annotations = json!({ "summary": a.message, "kind": kind_name(n.kind) });
    if let Some(url) = &a.runbook_url {
        annotations["runbook_url"] = json!(url);
    }
    let status = status_of(n);
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", a.rule),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": { "alertname": a.rule },
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": a.started_at.unwrap_or(a.since).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "endsAt": a.ended_at.map_or("0001-01-01T00:00:00Z".to_owned(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "generatorURL": "",
            "fingerprint": a.id,
        }],
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

    #[test]
    fn signatures_are_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
