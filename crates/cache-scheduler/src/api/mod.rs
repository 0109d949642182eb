//! `serve`: the maintenance API (seed 003's routes under `/api/system/maintenance/`) and the
//! maintenance dashboard (`/maintenance`), over the state the toolkit keeps: the catalogue and
//! its gates ([`cache_core::maintenance`]), the run records ([`cache_core::runs::query`], as
//! `history` reads them), the windows ([`crate::windows::apply`], as `windows add|remove`
//! changes them), and jobs run through every gate as `run JOB` runs them
//! ([`crate::run::command_line`]), in the background.
//!
//! Every request is rate-limited per client address first ([`limit`]), then, once a token is
//! configured (`[api] token` or `CACHE_API_TOKEN`), must carry `Authorization: Bearer TOKEN`
//! (compared in constant time; 401 with `WWW-Authenticate` otherwise). Without a token the
//! server listens on loopback only. Errors are JSON: `{"error": {"status": N, "message": "..."}}`.
//! The routes are [`ROUTES`], which `docs/api/openapi.json` describes (a unit test keeps the two
//! equal).

pub mod http;
pub mod limit;
mod page;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use cache_core::app::Context;
use cache_core::cli::CommonArgs;
use cache_core::env::EnvVars;
use cache_core::error::UsageError;
use cache_core::exit::{self, Convention};
use cache_core::maintenance::Snapshot;
use cache_core::output::Format;
use cache_core::runs::{self, Outcome, Query, Trigger};
use cache_core::schedule;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use self::http::{Request, Response};
use self::limit::RateLimiter;
use crate::windows;

/// Where the API's routes are.
pub const PREFIX: &str = "/api/system/maintenance";
/// The most executions one page holds.
pub const MAX_PAGE: usize = 200;
/// Executions per page when none is asked for.
const DEFAULT_PAGE: usize = 50;
/// The furthest into the history paging goes.
const MAX_OFFSET: usize = 1_000_000;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// The longest request head.
const MAX_HEAD: usize = 16 * 1024;
/// Runs started by `execute` remembered until their record is written (and some after).
const MAX_LAUNCHED: usize = 1000;
/// The checked-in OpenAPI document, served at `GET /api/system/maintenance/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../../docs/api/openapi.json");

type Handler = fn(&Api, &Request, &[String]) -> anyhow::Result<Response>;

/// One route: a method and a path, whose `{name}` segments match one segment each.
pub struct Route {
    /// `GET`, `POST`, `DELETE`.
    pub method: &'static str,
    /// The path template.
    pub path: &'static str,
    handler: Handler,
}

/// Every route the server answers; `docs/api/openapi.json` lists the same.
pub static ROUTES: &[Route] = &[
    Route { method: "GET", path: "/api/system/maintenance/status", handler: status },
    Route { method: "GET", path: "/api/system/maintenance/tasks", handler: tasks },
    Route { method: "GET", path: "/api/system/maintenance/executions", handler: executions },
    Route { method: "GET", path: "/api/system/maintenance/executions/{id}", handler: execution },
    Route { method: "POST", path: "/api/system/maintenance/execute/{task}", handler: execute },
    Route { method: "GET", path: "/api/system/maintenance/windows", handler: windows_list },
    Route { method: "POST", path: "/api/system/maintenance/windows", handler: windows_add },
    Route { method: "DELETE", path: "/api/system/maintenance/windows/{name}", handler: windows_remove },
    Route { method: "GET", path: "/api/system/maintenance/next", handler: next },
    Route { method: "GET", path: "/api/system/maintenance/history", handler: history },
    Route { method: "GET", path: "/api/system/maintenance/metrics", handler: metrics },
    Route { method: "GET", path: "/api/system/maintenance/openapi.json", handler: openapi },
    Route { method: "GET", path: "/maintenance", handler: dashboard },
];

/// The parameters of `path` if it matches `template`.
fn matches(template: &str, path: &str) -> Option<Vec<String>> {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    if t.len() != p.len() {
        return None;
    }
    let mut params = Vec::new();
    for (t, p) in t.iter().zip(&p) {
        if t.starts_with('{') && t.ends_with('}') {
            if p.is_empty() {
                return None;
            }
            params.push((*p).to_owned());
        } else if t != p {
            return None;
        }
    }
    Some(params)
}

/// A job started by `execute`, until its run record says how it went.
#[derive(Clone, Debug)]
struct Launched {
    task: String,
    pid: u32,
    launched_at: DateTime<Utc>,
    /// Its exit code once it ended (-1: killed by a signal).
    exit: Option<i32>,
}

/// The server's state: the configuration and state directory, the rate limiter, the runs it
/// started.
pub struct Api {
    ctx: Context,
    limiter: RateLimiter,
    launched: Arc<Mutex<BTreeMap<String, Launched>>>,
    counter: AtomicU64,
}

impl Api {
    fn new(ctx: Context) -> Self {
        let limiter = RateLimiter::new(ctx.config.api.rate_limit, ctx.config.api.burst);
        Self { ctx, limiter, launched: Arc::new(Mutex::new(BTreeMap::new())), counter: AtomicU64::new(0) }
    }

    fn snapshot(&self) -> anyhow::Result<Snapshot> {
        Snapshot::read(&self.ctx.config.scheduler, &self.ctx.state, cache_core::clock::now()?)
    }

    /// Answers one request: rate limit, then the token, then the route.
    pub fn handle(&self, request: &Request) -> Response {
        if let Err(wait) = self.limiter.take(request.peer, Instant::now()) {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Response::error(
                429,
                &format!(
                    "too many requests from {}: at most {} a minute ({} at once); retry in {seconds} s",
                    request.peer, self.ctx.config.api.rate_limit, self.ctx.config.api.burst
                ),
            )
            .with_header("Retry-After", seconds.max(1).to_string());
        }
        if let Some(token) = &self.ctx.config.api.token {
            let given = request.header("authorization").and_then(|v| {
                let (scheme, credentials) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| credentials.trim())
            });
            let challenge = "Bearer realm=\"cache-toolkit maintenance\"";
            match given {
                None => {
                    return Response::error(401, "this API needs `Authorization: Bearer TOKEN` (the [api] token)")
                        .with_header("WWW-Authenticate", challenge);
                }
                Some(given) if !token.matches(given.as_bytes()) => {
                    return Response::error(401, "the bearer token is wrong")
                        .with_header("WWW-Authenticate", format!("{challenge}, error=\"invalid_token\""));
                }
                Some(_) => {}
            }
        }
        let mut allowed = Vec::new();
        for route in ROUTES {
            let Some(params) = matches(route.path, &request.path) else { continue };
            if route.method != request.method {
                allowed.push(route.method);
                continue;
            }
            return match (route.handler)(self, request, &params) {
                Ok(response) => response,
                Err(e) => failure(&e),
            };
        }
        if allowed.is_empty() {
            Response::error(
                404,
                &format!(
                    "no route `{}`; the routes are under {PREFIX}/ ({PREFIX}/openapi.json lists them) and the \
                     dashboard is /maintenance",
                    request.path
                ),
            )
        } else {
            Response::error(405, &format!("`{}` takes {}, not {}", request.path, allowed.join(", "), request.method))
                .with_header("Allow", allowed.join(", "))
        }
    }
}

/// The answer to an error: a usage error (bad input named) is 400, anything else 500.
fn failure(e: &anyhow::Error) -> Response {
    let message = format!("{e:#}");
    if e.downcast_ref::<UsageError>().is_some() {
        return Response::error(400, &message);
    }
    tracing::warn!("answering a request: {message}");
    Response::error(500, &message)
}

fn bad(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// Refuses query parameters other than `known`, naming the first.
fn only_params(request: &Request, known: &[&str]) -> anyhow::Result<()> {
    if let Some((name, _)) = request.query.iter().find(|(n, _)| !known.contains(&n.as_str())) {
        let takes = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
        return Err(bad(format!("unknown query parameter `{name}`; this route takes: {takes}")));
    }
    Ok(())
}

/// A whole number query parameter between `min` and `max`.
fn number(request: &Request, name: &str, min: usize, max: usize) -> anyhow::Result<Option<usize>> {
    let Some(raw) = request.param(name) else { return Ok(None) };
    match raw.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(bad(format!("`{name}={raw}`: a whole number from {min} to {max} is needed"))),
    }
}

/// The body as JSON of type `T`: JSON content type, whole and known fields only.
fn body<T: for<'de> Deserialize<'de>>(request: &Request) -> anyhow::Result<Result<T, Response>> {
    let json = request
        .header("content-type")
        .is_some_and(|t| t.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    if !json {
        return Ok(Err(Response::error(415, "send the body as JSON (`Content-Type: application/json`)")));
    }
    let mut de = serde_json::Deserializer::from_slice(&request.body);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => match de.end() {
            Ok(()) => Ok(Ok(v)),
            Err(e) => Err(bad(format!("the body is no valid request: {e}"))),
        },
        Err(e) => {
            let at = e.path().to_string();
            let at = if at == "." { String::new() } else { format!(" at `{at}`") };
            Err(bad(format!("the body is no valid request{at}: {}", e.into_inner())))
        }
    }
}

fn status(api: &Api, request: &Request, _: &[String]) -> anyhow::Result<Response> {
    only_params(request, &[])?;
    let state = &api.ctx.state;
    let snap = api.snapshot()?;
    let running = snap.running(state)?;
    let tasks = snap.tasks(state, &running)?;
    let recent = runs::query(state, &Query { limit: 10, ..Query::default() })?;
    let (installed, installed_text) = schedule::installed_status(state)?;
    let flagged: Vec<Value> =
        tasks.iter().filter(|t| !t.flags.is_empty()).map(|t| json!({ "task": t.name, "flags": t.flags })).collect();
    Ok(Response::json(
        200,
        &json!({
            "generated_at": snap.now,
            "overall": cache_core::maintenance::overall(&tasks, &running),
            "automation": snap.automation(),
            "installed": { "installed": installed, "text": installed_text },
            "timezone": snap.settings.timezone,
            "running": running,
            "next_window": snap.next_window()?,
            "recent_executions": recent.executions.iter().map(|r| json!({
                "id": r.id, "job": r.job, "outcome": r.outcome, "started_at": r.started_at,
                "duration_ms": r.duration_ms, "trigger": r.trigger,
            })).collect::<Vec<_>>(),
            "tasks": { "total": tasks.len(), "enabled": tasks.iter().filter(|t| t.enabled).count(), "flagged": flagged },
            "problems": snap.problems,
        }),
    ))
}

fn tasks(api: &Api, request: &Request, _: &[String]) -> anyhow::Result<Response> {
    only_params(request, &[])?;
    let snap = api.snapshot()?;
    let running = snap.running(&api.ctx.state)?;
    let tasks = snap.tasks(&api.ctx.state, &running)?;
    Ok(Response::json(200, &json!({ "generated_at": snap.now, "tasks": tasks })))
}

/// `since`/`until` of a query: a time, a date or an age, as `history --since` takes them.
fn when(request: &Request, name: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
    request.param(name).map(|raw| crate::parse_since(raw).map_err(|e| bad(format!("`{name}`: {e}")))).transpose()
}

fn executions(api: &Api, request: &Request, _: &[String]) -> anyhow::Result<Response> {
    only_params(request, &["job", "outcome", "since", "until", "limit", "offset", "page", "per_page"])?;
    let by_offset = request.param("limit").is_some() || request.param("offset").is_some();
    let by_page = request.param("page").is_some() || request.param("per_page").is_some();
    if by_offset && by_page {
        return Err(bad("page with `limit` and `offset`, or with `page` and `per_page`, not both"));
    }
    let (limit, offset, page) = if by_page {
        let per_page = number(request, "per_page", 1, MAX_PAGE)?.unwrap_or(DEFAULT_PAGE);
        let page = number(request, "page", 1, MAX_OFFSET / per_page)?.unwrap_or(1);
        (per_page, (page - 1) * per_page, Some(page))
    } else {
        (
            number(request, "limit", 1, MAX_PAGE)?.unwrap_or(DEFAULT_PAGE),
            number(request, "offset", 0, MAX_OFFSET)?.unwrap_or(0),
            None,
        )
    };
    let outcome = request
        .param("outcome")
        .map(|o| o.parse::<Outcome>().map_err(|e| bad(format!("`outcome`: {e}"))))
        .transpose()?;
    let (since, until) = (when(request, "since")?, when(request, "until")?);
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        return Err(bad("`since` must be before `until`"));
    }
    let query = Query { job: request.param("job").map(str::to_owned), since, until, outcome, offset, limit };
    let found = runs::query(&api.ctx.state, &query)?;
    let next_offset = (offset + found.executions.len() < found.matched).then_some(offset + found.executions.len());
    let mut doc = json!({
        "executions": found.executions,
        "total": found.matched,
        "limit": limit,
        "offset": offset,
        "next_offset": next_offset,
        "bad_lines": found.bad_lines,
        "unread_bytes": found.unread_bytes,
    });
    if let Some(page) = page {
        doc["page"] = json!(page);
        doc["per_page"] = json!(limit);
    }
    Ok(Response::json(200, &doc))
}

fn execution(api: &Api, request: &Request, params: &[String]) -> anyhow::Result<Response> {
    only_params(request, &[])?;
    let id = &params[0];
    if let Some(record) = runs::find(&api.ctx.state, id)? {
        let mut doc = serde_json::to_value(&record)?;
        doc["status"] = json!("finished");
        return Ok(Response::json(200, &doc));
    }
    let snap = api.snapshot()?;
    if let Some(running) = snap.running(&api.ctx.state)?.into_iter().find(|r| &r.id == id) {
        let mut doc = serde_json::to_value(&running)?;
        doc["status"] = json!("running");
        return Ok(Response::json(200, &doc));
    }
    let launched = api.launched.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned();
    if let Some(l) = launched {
        let mut doc = json!({
            "id": id, "job": l.task, "pid": l.pid, "launched_at": l.launched_at, "trigger": Trigger::Api,
        });
        match l.exit {
            // Started, not yet past its lock: its record or lock names it soon.
            None => doc["status"] = json!("starting"),
            Some(code) => {
                doc["status"] = json!("ended");
                doc["exit_code"] = json!(code);
                doc["error"] = json!(format!(
                    "it ended with exit code {code} before it recorded a run (its error is in the server's log)"
                ));
            }
        }
        return Ok(Response::json(200, &doc));
    }
    Ok(Response::error(404, &format!("no execution `{id}`")))
}

/// `execute/{task}`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteBody {
    /// Run a heavy job even outside the windows.
    #[serde(default)]
    emergency: bool,
}

fn execute(api: &Api, request: &Request, params: &[String]) -> anyhow::Result<Response> {
    only_params(request, &[])?;
    let task = &params[0];
    let settings = &api.ctx.config.scheduler;
    if !schedule::names(settings).contains(task) {
        return Ok(Response::error(
            404,
            &format!("no task `{task}`; the tasks are: {}", schedule::names(settings).join(", ")),
        ));
    }
    let options = if request.body.is_empty() {
        ExecuteBody::default()
    } else {
        match body::<ExecuteBody>(request)? {
            Ok(b) => b,
            Err(response) => return Ok(response),
        }
    };
    let job = schedule::effective(settings, &api.ctx.state, task)?;
    let now = cache_core::clock::now()?;
    let n = api.counter.fetch_add(1, Ordering::SeqCst);
    let id = format!("{}-{n}", runs::run_id(now, std::process::id()));
    let words = crate::run::command_line(&api.ctx, &job, Trigger::Api, options.emergency, Some(&id))?;
    let (program, args) = words.split_first().context("an empty command")?;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("running `{program}` for task `{task}`"))?;
    let pid = child.id();
    {
        let mut launched = api.launched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        launched.insert(id.clone(), Launched { task: task.clone(), pid, launched_at: now, exit: None });
        // The oldest go first (ids begin with their time); their records outlive them.
        while launched.len() > MAX_LAUNCHED {
            launched.pop_first();
        }
    }
    // Reaped in the background; its run record says the rest.
    let (launched, reaped) = (Arc::clone(&api.launched), id.clone());
    std::thread::spawn(move || {
        let code = child.wait().map_or(-1, |s| s.code().unwrap_or(-1));
        if let Some(l) = launched.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_mut(&reaped) {
            l.exit = Some(code);
        }
    });
    let href = format!("{PREFIX}/executions/{id}");
    Ok(Response::json(
        202,
        &json!({
            "id": id, "task": task, "status": "started", "pid": pid, "emergency": options.emergency,
            "trigger": Trigger::Api, "href": href,
        }),
    )
    .with_header("Location", href))
}

fn windows_list(api: &Api, request: &Request, _: &[String]) -> anyhow::Result<Response> {
    only_params(request, &[])?;
    let snap = api.snapshot()?;
    Ok(Response::json(200, &json!({ "generated_at": snap.now, "windows": snap.windows()? })))
}

/// `POST windows`' body: a window, as `windows add` takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowBody {
    name: String,
    /// Five-field cron.
    start: String,
    /// `"4h"`, `"90min"`.
    duration: String,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    tasks: Vec<String>,
    #[serde(default = "one")]
    max_heavy: u32,
    #[serde(default)]
    silence: Vec<String>,
    #[serde(default)]
    force: bool,
}

fn one() -> u32 {
    1
}

/// A change the windows gate refused: 409, saying how to force it.
fn refused(refusal: &windows::Refused) -> Response {
    let message = refusal.0.replace("pass --force", "send \"force\": true");
    Response::error(409, &message)
}

fn windows_add(api: &Api, request: &Request, _: &[String]) -> anyhow::Result<Response> {
    only_params(request, &[])?;
    let spec = match body::<WindowBody>(request)? {
        Ok(b) => b,
        Err(response) => return Ok(response),
    };
    let duration = humantime::parse_duration(&spec.duration)
        .map_err(|e| bad(format!("`duration`: `{}` is no duration (\"4h\", \"90min\"): {e}", spec.duration)))?;
    let change = windows::Change::Add(windows::Spec {
        name: spec.name,
        start: spec.start,
        duration,
        timezone: spec.timezone,
        tasks: spec.tasks,
        max_heavy: spec.max_heavy,
        silence: spec.silence,
    });
    match windows::apply(&api.ctx, change, spec.force, "cache-scheduler serve (POST windows)")? {
        Ok(applied) => {
            let name = applied.window.as_ref().map(|w| w.name.clone()).unwrap_or_default();
            let view = api.snapshot()?.windows()?.into_iter().find(|v| v.window.name == name);
            Ok(Response::json(
                201,
                &json!({ "message": applied.message, "window": view, "warnings": applied.warnings }),
            )
            .with_header("Location", format!("{PREFIX}/windows/{name}")))
        }
        Err(refusal) => Ok(refused(&refusal)),
    }
}

fn windows_remove(api: &Api, request: &Request, params: &[String]) -> anyhow::Result<Response> {
    only_params(request, &["force"])?;
    let name = &params[0];
    let force = match request.param("force") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(bad(format!("`force={other}`: true or false"))),
    };
    if !windows::exists(&api.ctx, name)? {
        return Ok(Response::error(404, &format!("no window `{name}`")));
    }
    match windows::apply(
        &api.ctx,
        windows::Change::Remove(name.clone()),
        force,
        "cache-scheduler serve (DELETE windows)",
    )? {
        Ok(applied) => Ok(Response::json(200, &json!({ "message": applied.message, "warnings": applied.warnings }))),
        Err(refusal) => Ok(refused(&refusal)),
    }
}

fn next(api: &Api, request: &Request, _: &[String]) -> anyhow::Result<Response> {
    only_params(request, &[])?;
    let state = &api.ctx.state;
    let snap = api.snapshot()?;
    let running = snap.running(state)?;
    let tasks = snap.tasks(state, &running)?;
    let window = snap.next_window()?;
    let mut upcoming: Vec<Value> = tasks
        .iter()
        .filter(|t| t.heavy)
        .filter_map(|t| t.next_run.map(|at| json!({ "task": t.name, "at": at, "window": t.window })))
        .collect();
    upcoming.sort_by(|a, b| a["at"].as_str().cmp(&b["at"].as_str()));
    let skipped: Vec<Value> = tasks
        .iter()
        .filter_map(|t| t.skipped.as_ref().map(|why| json!({ "task": t.name, "next_run": t.next_run, "why": why })))
        .collect();
    let message = match &window {
        Some(w) if w.open => format!("window `{}` is open", w.window.name),
        Some(w) => format!("window `{}` opens next", w.window.name),
        None => "no maintenance windows: heavy jobs run at their scheduled times".to_owned(),
    };
    Ok(Response::json(
        200,
        &json!({ "generated_at": snap.now, "message": message, "window": window, "heavy_runs": upcoming, "skipped": skipped }),
    ))
}

fn history(api: &Api, request: &Request, _: &[String]) -> anyhow::Result<Response> {
    only_params(request, &["days"])?;
    let days = number(request, "days", 1, 30)?.unwrap_or(7);
    let snap = api.snapshot()?;
    let days = snap.daily(u32::try_from(days).unwrap_or(7));
    Ok(Response::json(200, &json!({ "generated_at": snap.now, "days": days, "problems": snap.problems })))
}

fn metrics(api: &Api, request: &Request, _: &[String]) -> anyhow::Result<Response> {
    only_params(request, &[])?;
    let snap = api.snapshot()?;
    Ok(Response::json(200, &serde_json::to_value(snap.metrics()?)?))
}

fn openapi(_: &Api, request: &Request, _: &[String]) -> anyhow::Result<Response> {
    only_params(request, &[])?;
    let doc: Value = serde_json::from_str(OPENAPI).context("the OpenAPI document built in")?;
    Ok(Response::json(200, &doc))
}

fn dashboard(api: &Api, request: &Request, _: &[String]) -> anyhow::Result<Response> {
    only_params(request, &[])?;
    let state = &api.ctx.state;
    let snap = api.snapshot()?;
    let running = snap.running(state)?;
    let data = page::Data {
        project: api.ctx.config.project_name.clone(),
        tasks: snap.tasks(state, &running)?,
        windows: snap.windows()?,
        metrics: snap.metrics()?,
        installed: schedule::installed_status(state)?,
        recent: runs::query(state, &Query { limit: 50, ..Query::default() })?.executions,
        automation: snap.automation(),
        problems: snap.problems.clone(),
        running,
        now: snap.now,
    };
    Ok(Response::html(page::render(&data)))
}

/// Runs `serve`: listens on `listen` (else `api.listen`) until SIGTERM or SIGINT.
pub async fn serve(common: &CommonArgs, listen: Option<SocketAddr>) -> anyhow::Result<u8> {
    let ctx = Context::load_all(common, Format::Text, Convention::Standard)?;
    let settings = ctx.config.api.clone();
    let addr = match listen {
        Some(addr) => addr,
        None => settings.listen.parse().map_err(|_| bad(format!("api.listen `{}` is no address", settings.listen)))?,
    };
    if !addr.ip().is_loopback() && settings.token.is_none() {
        return Err(bad(format!(
            "--listen {addr}: beyond loopback the API needs a token; set [api] token (or {}) first, or listen on \
             127.0.0.1",
            EnvVars::CACHE_API_TOKEN
        )));
    }
    let listener = TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    // SIGTERM (systemd) and Ctrl-C stop the server here, not at an await of `app::main`.
    cache_core::app::stops_on_signals_itself();
    let auth = if settings.token.is_some() { "bearer token required" } else { "no token: loopback only" };
    ctx.printer.always(&format!(
        "serving the maintenance API on http://{local}{PREFIX}/ and the dashboard on http://{local}/maintenance \
         ({auth}); SIGTERM or Ctrl-C stops"
    ))?;
    let limits = http::Limits {
        read_timeout: settings.read_timeout,
        max_head: MAX_HEAD,
        max_body: settings.max_body.as_u64(),
        max_connections: MAX_CONNECTIONS,
    };
    let api = Arc::new(Api::new(ctx));
    let stop = Arc::new(AtomicBool::new(false));
    let handler: Arc<http::Handler> = {
        let api = Arc::clone(&api);
        Arc::new(move |request: &Request| api.handle(request))
    };
    let server = {
        let stop = Arc::clone(&stop);
        tokio::task::spawn_blocking(move || http::serve(listener, limits, stop, handler))
    };
    let signal = stopped().await;
    tracing::info!("{signal}: stopping the maintenance API");
    stop.store(true, Ordering::SeqCst);
    // Wake the accept: a connection to ourselves.
    let wake = if local.ip().is_unspecified() {
        SocketAddr::new(
            if local.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() },
            local.port(),
        )
    } else {
        local
    };
    let _ = std::net::TcpStream::connect_timeout(&wake, std::time::Duration::from_secs(1));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    Ok(exit::SUCCESS)
}

/// Waits for SIGTERM or SIGINT, and names it.
async fn stopped() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_one_segment_per_parameter() {
        assert_eq!(matches("/a/{id}", "/a/x1"), Some(vec!["x1".to_owned()]));
        assert_eq!(matches("/a/{id}", "/a/"), None);
        assert_eq!(matches("/a/{id}", "/a/x/y"), None);
        assert_eq!(matches("/a/b", "/a/b"), Some(vec![]));
        assert_eq!(matches("/a/b", "/a/b/"), None);
    }

    /// The routes the server answers are the document's, and the document's are the server's.
    #[test]
    fn every_route_is_in_the_openapi_document_and_every_documented_route_is_served() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
        let mut documented = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys().filter(|k| k.as_str() != "parameters") {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
        let served: std::collections::BTreeSet<(String, String)> =
            ROUTES.iter().map(|r| (r.method.to_owned(), r.path.to_owned())).collect();
        assert_eq!(served, documented);
    }
}
