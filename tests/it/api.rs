//! The maintenance API and dashboard (`cache-scheduler serve`), driven over real HTTP against
//! a real redis-server as the configured target, with run records made by really running jobs
//! (`cache-scheduler run`, and `execute` itself): every route of `cache_scheduler::api::ROUTES`,
//! each answer checked against `docs/api/openapi.json`, auth refusals, bad input, the rate
//! limit, the read timeout, and the dashboard rendered by headless Chromium.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::{Duration, Instant};

use cache_tests::{RedisServer, TestEnv, find_binary, free_port, missing, wait_until};
use serde_json::{Value, json};

use crate::SCHEDULER;

const PREFIX: &str = "/api/system/maintenance";
const TOKEN: &str = "api-token-7f3a9c2e51d04b88";

/// Sends `signal` (`TERM`, `STOP`, `CONT`) to `pid`.
fn signal(pid: u32, signal: &str) {
    assert!(
        std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap().success()
    );
}

/// An answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The error message of a JSON error, checking its shape.
    fn error(&self) -> String {
        let doc = self.json();
        assert_eq!(doc["error"]["status"], self.status, "{doc:#}");
        doc["error"]["message"].as_str().unwrap().to_owned()
    }
}

/// One HTTP/1.1 request on its own connection.
fn raw(port: u16, head: &str, body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413, say) before reading a body it refuses.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(": ")).map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
    Reply { status, headers, body: body.to_owned() }
}

/// The OpenAPI document, and the routes seen answered.
struct Client {
    port: u16,
    token: Option<String>,
    doc: Value,
    seen: std::cell::RefCell<BTreeSet<(String, String)>>,
}

impl Client {
    fn new(port: u16, token: Option<&str>) -> Self {
        let doc = serde_json::from_str(cache_scheduler::api::OPENAPI).unwrap();
        Self { port, token: token.map(str::to_owned), doc, seen: Default::default() }
    }

    fn send(&self, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(t) = content_type {
            head.push_str(&format!("Content-Type: {t}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let reply = raw(self.port, &head, body);
        self.check(method, path, &reply);
        reply
    }

    fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None, b"")
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        self.send("POST", path, Some("application/json"), body.to_string().as_bytes())
    }

    /// Checks `reply` against the document: the route's declared answer, or the error shape.
    fn check(&self, method: &str, path: &str, reply: &Reply) {
        let path = path.split('?').next().unwrap();
        let template = self.doc["paths"].as_object().unwrap().keys().find(|t| template_matches(t, path)).cloned();
        let Some(template) = template else {
            assert!(matches!(reply.status, 401 | 404 | 429), "{method} {path}: no route but {reply:?}");
            return;
        };
        let operation = &self.doc["paths"][&template][method.to_lowercase()];
        if operation.is_null() {
            assert!(matches!(reply.status, 401 | 405 | 429), "{method} {path}: {reply:?}");
            return;
        }
        if (200..300).contains(&reply.status) {
            self.seen.borrow_mut().insert((method.to_owned(), template.clone()));
        }
        let declared = &operation["responses"][reply.status.to_string()];
        assert!(
            !declared.is_null(),
            "{method} {template} answered {}, which the document does not declare",
            reply.status
        );
        let declared = self.resolve(declared);
        let (ctype, media) = declared["content"].as_object().unwrap().iter().next().unwrap();
        assert!(
            reply.header("Content-Type").is_some_and(|t| t.starts_with(ctype.as_str())),
            "{method} {path}: Content-Type {:?}, declared {ctype}",
            reply.header("Content-Type")
        );
        if ctype == "application/json" {
            conforms(&self.doc, &media["schema"], &reply.json(), "$")
                .unwrap_or_else(|e| panic!("{method} {path} ({}): {e}\n{}", reply.status, reply.body));
        }
        for (name, _) in declared["headers"].as_object().into_iter().flatten() {
            assert!(reply.header(name).is_some(), "{method} {path}: no `{name}` header: {reply:?}");
        }
    }

    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v["$ref"].as_str() {
            Some(r) => self.resolve(pointer(&self.doc, r)),
            None => v,
        }
    }
}

fn template_matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

fn pointer<'a>(doc: &'a Value, r: &str) -> &'a Value {
    doc.pointer(r.trim_start_matches('#')).unwrap_or_else(|| panic!("no {r} in the document"))
}

/// Whether `value` conforms to the OpenAPI 3.0 `schema` (the subset the document uses: `$ref`,
/// `allOf`, `oneOf`, `nullable`, `type`, `enum`, `required`, `properties`, `items`,
/// `additionalProperties`, `minimum`, `maximum`).
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        return conforms(doc, pointer(doc, r), value, at);
    }
    if value.is_null() && schema["nullable"] == true {
        return Ok(());
    }
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            conforms(doc, s, value, at)?;
        }
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let fits: Vec<Result<(), String>> = one.iter().map(|s| conforms(doc, s, value, at)).collect();
        let n = fits.iter().filter(|f| f.is_ok()).count();
        if n != 1 {
            return Err(format!("{at}: matches {n} of oneOf, not one: {fits:?}"));
        }
    }
    if let Some(wanted) = schema["type"].as_str() {
        let ok = match wanted {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            other => return Err(format!("{at}: type `{other}` unknown to this check")),
        };
        if !ok {
            return Err(format!("{at}: {value} is no {wanted}"));
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} is none of {options:?}"));
    }
    if let (Some(n), Some(min)) = (value.as_f64(), schema["minimum"].as_f64())
        && n < min
    {
        return Err(format!("{at}: {n} < {min}"));
    }
    if let (Some(n), Some(max)) = (value.as_f64(), schema["maximum"].as_f64())
        && n > max
    {
        return Err(format!("{at}: {n} > {max}"));
    }
    if let Some(object) = value.as_object() {
        for field in schema["required"].as_array().into_iter().flatten() {
            let field = field.as_str().unwrap();
            if !object.contains_key(field) {
                return Err(format!("{at}: no `{field}` in {value}"));
            }
        }
        let properties = schema["properties"].as_object();
        for (k, v) in object {
            match properties.and_then(|p| p.get(k)) {
                Some(s) => conforms(doc, s, v, &format!("{at}.{k}"))?,
                None => match &schema["additionalProperties"] {
                    Value::Bool(false) => return Err(format!("{at}: `{k}` is not in the schema")),
                    s @ Value::Object(_) => conforms(doc, s, v, &format!("{at}.{k}"))?,
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(schema)) = (value.as_array(), schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            conforms(doc, schema, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// `cache-scheduler serve` on a loopback port, stopped with SIGTERM on drop.
struct Server {
    child: Option<Child>,
    port: u16,
    log: std::path::PathBuf,
}

impl Server {
    fn start(env: &TestEnv, extra_env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let log = env.path(&format!("serve-{port}.log"));
        let mut cmd = env.command(SCHEDULER, &["serve", "--listen", &format!("127.0.0.1:{port}")]);
        cmd.envs(extra_env.iter().copied());
        cmd.stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap());
        let mut child = cmd.spawn().unwrap();
        let up = wait_until(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok() || child.try_wait().unwrap().is_some()
        });
        assert!(up && child.try_wait().unwrap().is_none(), "serve did not listen: {}", Self::output_of(&log));
        Self { child: Some(child), port, log }
    }

    fn output_of(log: &std::path::Path) -> String {
        format!(
            "stdout: {}\nstderr: {}",
            std::fs::read_to_string(log).unwrap_or_default(),
            std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
        )
    }

    fn output(&self) -> String {
        Self::output_of(&self.log)
    }

    /// Stops it with SIGTERM; it exits 0.
    fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        signal(child.id(), "TERM");
        let exited = wait_until(Duration::from_secs(10), || child.try_wait().unwrap().is_some());
        assert!(exited, "serve did not stop on SIGTERM");
        assert_eq!(child.wait().unwrap().code(), Some(0), "{}", self.output());
        self.output()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A 10 MiB log that compresses well (as logs do), in `dir`.
fn write_big_log(dir: &std::path::Path) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    let mut text = String::with_capacity(11 << 20);
    let mut i: u64 = 0;
    while text.len() < 10 << 20 {
        i += 1;
        text.push_str(&format!(
            "2026-11-22T10:{:02}:{:02}Z INFO GET /api/items/{} 200 took=12ms request={i}\n",
            (i / 600) % 60,
            (i / 10) % 60,
            i % 50,
        ));
    }
    std::fs::write(dir.join("app.log"), &text).unwrap();
    text.len() as u64
}

fn config(env: &TestEnv, redis: &RedisServer, logs: &std::path::Path, api: &str) {
    let bin = env.path("bin");
    let bin = if bin.exists() { bin } else { crate::scheduler::tool_dir(env) };
    env.write_config(&format!(
        "project_name = \"shop\"\n[[redis]]\nname = \"main\"\nurl = \"{}\"\ntimeout = \"60s\"\nconnect_timeout = \"60s\"\n\
         [[logs]]\nname = \"app\"\npath = \"{}\"\nrotate_size = \"1 MiB\"\n\
         [scheduler]\nbin_dir = \"{}\"\n[system]\ngpu = false\n[api]\n{api}",
        redis.url(),
        logs.display(),
        bin.display()
    ));
}

/// Polls `executions/{id}` until `done` says so (60 s at most); the last answer.
fn follow(client: &Client, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = client.get(&format!("{PREFIX}/executions/{id}"));
        assert_eq!(reply.status, 200, "{reply:?}");
        let doc = reply.json();
        if done(&doc) {
            return doc;
        }
        assert!(Instant::now() < deadline, "execution {id} never got there: {doc:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs headless Chromium on `url` with `args` (a minute at most); its stdout.
fn chromium(chrome: &std::path::Path, env: &TestEnv, url: &str, args: &[&str]) -> String {
    let mut child = std::process::Command::new(chrome)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", env.path("chromium-profile").display()))
        .args(args)
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let exited = wait_until(Duration::from_secs(60), || child.try_wait().unwrap().is_some());
    if !exited {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(exited, "chromium did not finish in 60 s");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn now_minus(minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes)).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[test]
fn the_maintenance_api_answers_every_route_as_documented_and_the_dashboard_renders_real_runs() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    let logs = env.path("logs");
    let size = write_big_log(&logs);
    config(&env, &redis, &logs, "read_timeout = \"2s\"\nrate_limit = 100000\nburst = 10000\n");
    env.watch_log("redis", redis.log());

    // Real runs first: the light cleanup rotates the 10 MiB log; collection gives a typical
    // duration for the progress of the one frozen below.
    let cleanup = env.run(SCHEDULER, &["run", "cleanup-light"]);
    cleanup.expect_code(0);
    let gz = std::fs::metadata(logs.join("app.log.1.gz")).unwrap().len();
    let freed = size - gz;
    assert!(freed > 9 << 20, "a 10 MiB log compressed to {gz} B frees {freed} B");
    env.run(SCHEDULER, &["run", "analytics-collect"]).expect_code(0);
    env.run(SCHEDULER, &["run", "analytics-collect"]).expect_code(0);

    let server = Server::start(&env, &[]);
    let api = Client::new(server.port, None);

    // Status and the catalogue.
    let status = api.get(&format!("{PREFIX}/status"));
    assert_eq!(status.status, 200, "{status:?}");
    let s = status.json();
    assert_eq!((s["automation"]["running"].as_bool(), s["running"].as_array().map(Vec::len)), (Some(true), Some(0)));
    assert_eq!((s["overall"].as_str(), s["next_window"].clone()), (Some("healthy"), Value::Null), "{s:#}");
    assert_eq!(s["recent_executions"][0]["job"], "analytics-collect", "{s:#}");
    let tasks = api.get(&format!("{PREFIX}/tasks")).json();
    let task =
        |doc: &Value, name: &str| doc["tasks"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap().clone();
    let light = task(&tasks, "cleanup-light");
    assert_eq!(
        (
            light["type"].as_str(),
            light["heavy"].as_bool(),
            light["lock"].as_str(),
            light["last_run"]["outcome"].as_str()
        ),
        (Some("cleanup"), Some(false), Some("cleanup"), Some("success")),
        "{light:#}"
    );
    assert!(light["next_run"].is_string() && light["skipped"].is_null(), "{light:#}");
    assert_eq!(task(&tasks, "cleanup-deep")["requires"]["job"], "backup");
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), cache_core::schedule::DEFAULT_JOBS.len());

    // Executions: the run records, as `history` lists them, paged and filtered.
    let all = api.get(&format!("{PREFIX}/executions")).json();
    assert_eq!(all["total"], 3, "{all:#}");
    let history = env.run(SCHEDULER, &["history", "--format", "json"]);
    let ids = |doc: &Value| -> Vec<String> {
        doc["executions"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(&all), ids(&history.json()), "the API and `history` list the same runs");
    let second = api.get(&format!("{PREFIX}/executions?limit=1&offset=1")).json();
    assert_eq!((ids(&second), second["next_offset"].as_u64()), (vec![ids(&all)[1].clone()], Some(2)));
    let page = api.get(&format!("{PREFIX}/executions?page=2&per_page=2")).json();
    assert_eq!((ids(&page), page["next_offset"].clone()), (vec![ids(&all)[2].clone()], Value::Null));
    let filtered =
        api.get(&format!("{PREFIX}/executions?job=cleanup-light&outcome=success&since={}", now_minus(60))).json();
    assert_eq!(filtered["total"], 1, "{filtered:#}");
    assert_eq!(api.get(&format!("{PREFIX}/executions?until={}", now_minus(60))).json()["total"], 0);
    for (query, says) in [
        ("limit=0", "`limit=0`"),
        ("limit=201", "from 1 to 200"),
        ("offset=-1", "`offset=-1`"),
        ("page=0", "`page=0`"),
        ("limit=5&page=2", "not both"),
        ("outcome=fine", "`fine` is no outcome"),
        ("since=last%20tuesday", "`since`"),
        ("since=2026-12-02&until=2026-12-01", "before `until`"),
        ("sort=asc", "unknown query parameter `sort`"),
    ] {
        let bad = api.get(&format!("{PREFIX}/executions?{query}"));
        assert_eq!(bad.status, 400, "{query}: {bad:?}");
        assert!(bad.error().contains(says), "{query}: {}", bad.error());
    }
    let cleanup_id = ids(&filtered)[0].clone();
    let one = api.get(&format!("{PREFIX}/executions/{cleanup_id}")).json();
    assert_eq!((one["status"].as_str(), one["outcome"].as_str()), (Some("finished"), Some("success")));
    let log_target = one["summary"]["targets"].as_array().unwrap().iter().find(|t| t["tier"] == "logs").unwrap();
    assert_eq!(log_target["bytes_freed"].as_u64(), Some(freed), "what compression saved: {log_target:#}");
    let missing_one = api.get(&format!("{PREFIX}/executions/20261122T010000.000Z-1"));
    assert_eq!(missing_one.status, 404);
    assert!(missing_one.error().contains("no execution"));

    // Windows through the same checks as `windows add`: one open all the time for cleanups
    // leaves the backups admitted by none, refused until forced.
    let window = json!({ "name": "always", "start": "0 * * * *", "duration": "1h", "tasks": ["cleanup"] });
    let refused = api.post(&format!("{PREFIX}/windows"), &window);
    assert_eq!(refused.status, 409, "{refused:?}");
    assert!(refused.error().contains("`backup`") && refused.error().contains("\"force\": true"), "{}", refused.error());
    assert!(api.get(&format!("{PREFIX}/windows")).json()["windows"].as_array().unwrap().is_empty());
    let mut forced = window.clone();
    forced["force"] = json!(true);
    let saved = api.post(&format!("{PREFIX}/windows"), &forced);
    assert_eq!(saved.status, 201, "{saved:?}");
    let saved = saved.json();
    assert_eq!(saved["window"]["open"], true, "{saved:#}");
    assert_eq!(saved["window"]["admits"], json!(["cleanup-deep"]));
    assert!(saved["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("`backup`")));
    let cli = env.run(SCHEDULER, &["windows", "list", "--format", "json"]).json();
    assert_eq!(cli["windows"][0]["name"], "always", "the CLI sees the window the API saved");
    for (body, says) in [
        (json!({ "name": "w", "start": "every day", "duration": "1h" }), "not a five-field cron"),
        (json!({ "name": "w", "start": "0 1 * * *", "duration": "soon" }), "`duration`"),
        (json!({ "name": "w", "start": "0 1 * * *", "duration": "0s" }), "more than zero"),
        (json!({ "name": "w", "start": "0 1 * * *", "duration": "1h", "tasks": ["nope"] }), "--task `nope`"),
        (json!({ "name": "w", "start": "0 1 * * *", "duration": "1h", "timezone": "Mars/Olympus" }), "IANA"),
        (json!({ "name": "w b", "start": "0 1 * * *", "duration": "1h" }), "window name"),
        (json!({ "name": "w", "start": "0 1 * * *", "duration": "1h", "colour": "red" }), "unknown field `colour`"),
        (json!({ "start": "0 1 * * *", "duration": "1h" }), "missing field `name`"),
    ] {
        let bad = api.post(&format!("{PREFIX}/windows"), &body);
        assert_eq!(bad.status, 400, "{body}: {bad:?}");
        assert!(bad.error().contains(says), "{body}: {}", bad.error());
    }
    let not_json = api.send("POST", &format!("{PREFIX}/windows"), Some("text/plain"), b"name=w");
    assert_eq!(not_json.status, 415, "{not_json:?}");
    let broken = api.send("POST", &format!("{PREFIX}/windows"), Some("application/json"), b"{\"name\": ");
    assert_eq!(broken.status, 400, "{broken:?}");
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(70 * 1024));
    let too_large = api.send("POST", &format!("{PREFIX}/windows"), Some("application/json"), huge.as_bytes());
    assert_eq!(too_large.status, 413, "{too_large:?}");
    assert!(too_large.error().contains("65536"), "{}", too_large.error());

    // The next window and what it admits; the backups are skipped, never coming.
    let next = api.get(&format!("{PREFIX}/next")).json();
    assert_eq!((next["window"]["name"].as_str(), next["window"]["open"].as_bool()), (Some("always"), Some(true)));
    let skipped: Vec<&str> = next["skipped"].as_array().unwrap().iter().map(|s| s["task"].as_str().unwrap()).collect();
    assert!(skipped.contains(&"backup") && !skipped.contains(&"cleanup-light"), "{next:#}");
    let heavy: Vec<&str> = next["heavy_runs"].as_array().unwrap().iter().map(|s| s["task"].as_str().unwrap()).collect();
    assert!(heavy.contains(&"cleanup-deep") && !heavy.contains(&"backup"), "{next:#}");
    let backup = task(&api.get(&format!("{PREFIX}/tasks")).json(), "backup");
    assert!(backup["next_run"].is_null() && backup["skipped"].as_str().unwrap().contains("no maintenance window"));

    // Execute: through every gate. The backup, heavy and admitted by no window, is skipped by
    // its gate; the light cleanup runs; both are real run records under the id answered.
    let unknown = api.post(&format!("{PREFIX}/execute/nosuchjob"), &json!({}));
    assert_eq!(unknown.status, 404);
    assert!(unknown.error().contains("no task `nosuchjob`; the tasks are: analytics-collect"), "{}", unknown.error());
    let bad_body = api.post(&format!("{PREFIX}/execute/backup"), &json!({ "emergency": "yes" }));
    assert_eq!(bad_body.status, 400, "{bad_body:?}");
    let started = api.send("POST", &format!("{PREFIX}/execute/backup"), None, b"");
    assert_eq!(started.status, 202, "{started:?}");
    let id = started.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(started.header("Location"), Some(format!("{PREFIX}/executions/{id}").as_str()));
    let gated = follow(&api, &id, |d| d["status"] == "finished");
    assert_eq!((gated["outcome"].as_str(), gated["trigger"].as_str()), (Some("skipped"), Some("api")), "{gated:#}");
    assert!(gated["error"].as_str().unwrap().contains("no maintenance window allowing it is open"), "{gated:#}");
    let started = api.post(&format!("{PREFIX}/execute/cleanup-light"), &json!({}));
    assert_eq!(started.status, 202, "{started:?}");
    let light_id = started.json()["id"].as_str().unwrap().to_owned();
    let ran = follow(&api, &light_id, |d| d["status"] == "finished");
    assert_eq!((ran["id"].as_str(), ran["outcome"].as_str()), (Some(light_id.as_str()), Some("success")), "{ran:#}");
    assert!(ids(&api.get(&format!("{PREFIX}/executions?limit=2")).json()).contains(&light_id));

    // A run in progress: with Redis frozen, collection waits on it, holding its lock.
    let chrome = ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|b| find_binary(b, &[]));
    signal(redis.pid(), "STOP");
    let started = api.post(&format!("{PREFIX}/execute/analytics-collect"), &json!({}));
    let frozen_id = started.json()["id"].as_str().unwrap().to_owned();
    let running = follow(&api, &frozen_id, |d| d["status"] == "running");
    let page_dom = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_eq!((running["job"].as_str(), running["trigger"].as_str()), (Some("analytics-collect"), Some("api")));
        assert!(running["typical_ms"].as_u64().is_some() && running["progress"].as_f64().is_some(), "{running:#}");
        let status = api.get(&format!("{PREFIX}/status")).json();
        // Running, but the backups no window admits are the issue that shows.
        assert_eq!(
            (status["overall"].as_str(), status["running"][0]["id"].as_str()),
            (Some("issues"), Some(frozen_id.as_str()))
        );
        let flagged = status["tasks"]["flagged"].as_array().unwrap();
        assert!(
            flagged.iter().any(|f| f["task"] == "backup"
                && f["flags"].as_array().unwrap().contains(&json!("never admitted by any window"))),
            "{status:#}"
        );
        assert_eq!(task(&api.get(&format!("{PREFIX}/tasks")).json(), "analytics-collect")["running"], true);
        let page = api.get("/maintenance");
        assert_eq!(page.status, 200);
        assert!(page.header("Content-Security-Policy").is_some_and(|c| c.contains("default-src 'none'")));
        chrome.as_ref().map(|chrome| {
            let url = format!("http://127.0.0.1:{}/maintenance", server.port);
            let dom = chromium(chrome, &env, &url, &["--dump-dom"]);
            let shot = env.path("maintenance-1400.png");
            chromium(chrome, &env, &url, &[&format!("--screenshot={}", shot.display()), "--window-size=1400,900"]);
            (dom, std::fs::read(&shot).unwrap())
        })
    }));
    signal(redis.pid(), "CONT");
    let page_dom = page_dom.unwrap_or_else(|p| std::panic::resume_unwind(p));
    let collected = follow(&api, &frozen_id, |d| d["status"] == "finished");
    assert_eq!(collected["outcome"], "success", "{collected:#}");

    // What the page showed, rendered by a browser: the window and what it admits, the run in
    // progress, the executions of the real runs, the backups marked skipped (not coming), and
    // the space freed by what the rotation really freed.
    let html = api.get("/maintenance").body;
    for outside in ["src=", "href=", "<link", "@import", "url(", "<script"] {
        assert!(!html.contains(outside), "the page loads `{outside}`");
    }
    assert!(
        html.contains(&format!(
            "<tr class=\"freed\" data-tier=\"logs\"><td>logs</td><td>{}</td>",
            cache_core::output::bytes(freed)
        )),
        "{html}"
    );
    match (page_dom, &chrome) {
        (Some((dom, png)), _) => {
            assert!(dom.contains("<tr class=\"window\" data-window=\"always\">"), "{dom}");
            assert!(dom.contains("cleanup-deep"), "the window admits the deep cleanup: {dom}");
            assert!(dom.contains(&format!("<tr class=\"running\" data-execution=\"{frozen_id}\"")), "{dom}");
            assert!(dom.contains("% of a typical"), "the run in progress shows its progress: {dom}");
            for id in [&cleanup_id, &light_id, &id] {
                assert!(dom.contains(&format!("<tr class=\"execution\" data-execution=\"{id}\"")), "{id}: {dom}");
            }
            assert!(dom.contains("<tr class=\"skipped\" data-task=\"backup\">"), "{dom}");
            assert!(
                !dom.contains("<tr class=\"upcoming\" data-task=\"backup\">"),
                "a skipped job is not coming: {dom}"
            );
            assert!(dom.contains("<tr class=\"upcoming\" data-task=\"cleanup-light\">"), "{dom}");
            assert!(dom.contains(&cache_core::output::bytes(freed)), "{dom}");
            assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000, "screenshot of {} bytes", png.len());
            let shot = env.path("maintenance-390.png");
            let url = format!("http://127.0.0.1:{}/maintenance", server.port);
            chromium(
                chrome.as_ref().unwrap(),
                &env,
                &url,
                &[&format!("--screenshot={}", shot.display()), "--window-size=390,844"],
            );
            let narrow = std::fs::read(&shot).unwrap();
            assert!(
                narrow.starts_with(b"\x89PNG\r\n\x1a\n") && narrow.len() > 10_000,
                "screenshot of {} bytes",
                narrow.len()
            );
            let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
            std::fs::write(kept.join("maintenance-1400.png"), &png).unwrap();
            std::fs::write(kept.join("maintenance-390.png"), &narrow).unwrap();
        }
        (None, _) => {
            missing("chromium (Debian package chromium)");
        }
    }

    // Metrics and history of those runs.
    let metrics = api.get(&format!("{PREFIX}/metrics")).json();
    let job = |name: &str| metrics["jobs"].as_array().unwrap().iter().find(|j| j["job"] == name).unwrap().clone();
    let light = job("cleanup-light");
    assert_eq!(
        (light["last_7_days"]["runs"].as_u64(), light["last_30_days"]["success_rate"].as_f64()),
        (Some(2), Some(1.0))
    );
    assert!(light["last_7_days"]["mean_duration_ms"].as_u64().is_some());
    assert_eq!(job("backup")["last_7_days"]["skipped"], 1, "{metrics:#}");
    assert_eq!(job("analytics-collect")["last_30_days"]["runs"], 3);
    assert_eq!(metrics["totals"]["last_7_days"]["interrupted"], 0);
    assert_eq!(metrics["space_freed"]["last_7_days"]["logs"].as_u64(), Some(freed), "{metrics:#}");
    let always = &metrics["windows"][0];
    assert_eq!((always["window"].as_str(), always["admitted_runs"].as_u64()), (Some("always"), Some(0)), "{always:#}");
    assert!(always["open_ms"].as_u64().unwrap() > 0 && always["utilisation"] == 0.0, "{always:#}");
    let days = api.get(&format!("{PREFIX}/history?days=2")).json();
    assert_eq!(days["days"].as_array().unwrap().len(), 2);
    let today = &days["days"][0];
    assert_eq!((today["runs"].as_u64(), today["skipped"].as_u64()), (Some(5), Some(1)), "{today:#}");
    assert_eq!(today["bytes_freed"].as_u64(), Some(freed));
    for bad in ["days=0", "days=31", "days=x", "weeks=1"] {
        assert_eq!(api.get(&format!("{PREFIX}/history?{bad}")).status, 400, "{bad}");
    }

    // Automation stopped: every run would be skipped, so none is coming, and one asked for is
    // recorded skipped by its gate.
    env.run(SCHEDULER, &["stop", "--reason", "migration"]).expect_code(0);
    let stopped = api.get(&format!("{PREFIX}/tasks")).json();
    for t in stopped["tasks"].as_array().unwrap() {
        assert!(t["next_run"].is_null(), "{t:#}");
        assert!(t["skipped"].as_str().unwrap().contains("automation is stopped") || t["enabled"] == false, "{t:#}");
    }
    assert!(!api.get("/maintenance").body.contains("<tr class=\"upcoming\""), "nothing is coming while stopped");
    let started = api.post(&format!("{PREFIX}/execute/cleanup-light"), &json!({}));
    let held = follow(&api, started.json()["id"].as_str().unwrap(), |d| d["status"] == "finished");
    assert_eq!(held["outcome"], "skipped");
    assert!(held["error"].as_str().unwrap().contains("migration"), "{held:#}");
    env.run(SCHEDULER, &["start"]).expect_code(0);
    assert!(task(&api.get(&format!("{PREFIX}/tasks")).json(), "cleanup-light")["next_run"].is_string());

    // Removing the window (through the same code as `windows remove`); a missing one is 404.
    assert_eq!(api.send("DELETE", &format!("{PREFIX}/windows/nope"), None, b"").status, 404);
    let bad_force = api.send("DELETE", &format!("{PREFIX}/windows/always?force=maybe"), None, b"");
    assert_eq!(bad_force.status, 400);
    let removed = api.send("DELETE", &format!("{PREFIX}/windows/always"), None, b"");
    assert_eq!(removed.status, 200, "{removed:?}");
    assert!(
        cache_core::gate::windows(&cache_core::state::StateDir::open(env.state_dir()).unwrap())
            .unwrap()
            .windows
            .is_empty()
    );

    // Routes and methods the server does not have; the document it serves is the checked-in one.
    let nope = api.get(&format!("{PREFIX}/nope"));
    assert_eq!(nope.status, 404);
    assert!(nope.error().contains("openapi.json"));
    let wrong = api.send("DELETE", &format!("{PREFIX}/tasks"), None, b"");
    assert_eq!((wrong.status, wrong.header("Allow")), (405, Some("GET")), "{wrong:?}");
    let wrong = api.send("PUT", &format!("{PREFIX}/windows"), Some("application/json"), b"{}");
    assert_eq!((wrong.status, wrong.header("Allow")), (405, Some("GET, POST")), "{wrong:?}");
    assert_eq!(api.get(&format!("{PREFIX}/openapi.json")).json(), api.doc);

    // A request not sent in time is answered 408 (read_timeout = 2s), and a slow client holds
    // nothing: the server answers the next one at once.
    let t0 = Instant::now();
    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    slow.write_all(format!("GET {PREFIX}/status HTTP/1.1\r\nHost: x\r\n").as_bytes()).unwrap();
    assert_eq!(api.get(&format!("{PREFIX}/tasks")).status, 200);
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(t0.elapsed() >= Duration::from_secs(2) && t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());

    // Every route the server has was answered, and checked against the document.
    let served: BTreeSet<(String, String)> =
        cache_scheduler::api::ROUTES.iter().map(|r| (r.method.to_owned(), r.path.to_owned())).collect();
    let seen = api.seen.borrow().clone();
    assert_eq!(served, seen, "routes not driven: {:?}", served.difference(&seen).collect::<Vec<_>>());
    server.stop();
}

#[test]
fn the_api_refuses_without_its_token_past_its_rate_and_beyond_loopback_without_a_token() {
    let Some(redis) = RedisServer::start() else { return };
    let env = TestEnv::new();
    let logs = env.path("logs");
    std::fs::create_dir_all(&logs).unwrap();

    // Beyond loopback, no token: refused at start, naming what is needed.
    config(&env, &redis, &logs, "");
    let port = free_port();
    let out = env.run(SCHEDULER, &["serve", "--listen", &format!("0.0.0.0:{port}")]);
    out.expect_code(i32::from(cache_core::exit::USAGE));
    assert!(
        out.stderr.contains("beyond loopback the API needs a token") && out.stderr.contains("CACHE_API_TOKEN"),
        "{}",
        out.dump()
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "nothing listens");
    let out = env.run(SCHEDULER, &["serve", "--listen", "localhost"]);
    out.expect_code(2);

    // A short token is a configuration error naming the key, never echoing the value.
    config(&env, &redis, &logs, "token = \"tooshort\"\n");
    let out = env.run(SCHEDULER, &["serve"]);
    out.expect_code(i32::from(cache_core::exit::CONFIG));
    assert!(out.stderr.contains("api.token") && !out.stderr.contains("tooshort"), "{}", out.dump());

    // With a token, every route needs it, the unknown ones too; it is never printed.
    config(&env, &redis, &logs, &format!("token = \"{TOKEN}\"\n"));
    let server = Server::start(&env, &[]);
    let anonymous = Client::new(server.port, None);
    for path in [format!("{PREFIX}/status"), format!("{PREFIX}/nope"), "/maintenance".to_owned()] {
        let refused = anonymous.get(&path);
        assert_eq!(refused.status, 401, "{path}: {refused:?}");
        assert_eq!(refused.header("WWW-Authenticate"), Some("Bearer realm=\"cache-toolkit maintenance\""));
        assert!(refused.error().contains("Authorization: Bearer"));
    }
    let refused = anonymous.post(&format!("{PREFIX}/execute/health-check"), &json!({}));
    assert_eq!(refused.status, 401, "{refused:?}");
    let wrong = Client::new(server.port, Some("api-token-7f3a9c2e51d04b89"));
    let refused = wrong.get(&format!("{PREFIX}/tasks"));
    assert_eq!(refused.status, 401);
    assert!(refused.header("WWW-Authenticate").unwrap().contains("error=\"invalid_token\""));
    let basic = raw(
        server.port,
        &format!("GET {PREFIX}/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {TOKEN}\r\n\r\n"),
        b"",
    );
    assert_eq!(basic.status, 401, "only a bearer token is taken");
    let api = Client::new(server.port, Some(TOKEN));
    assert_eq!(api.get(&format!("{PREFIX}/status")).status, 200);
    assert_eq!(api.get(&format!("{PREFIX}/nope")).status, 404);
    let lower = raw(
        server.port,
        &format!("GET {PREFIX}/tasks HTTP/1.1\r\nHost: x\r\nauthorization: bearer {TOKEN}\r\n\r\n"),
        b"",
    );
    assert_eq!(lower.status, 200, "the scheme is case-insensitive");
    // No record of any request was refused for the runs: nothing was executed.
    assert!(!env.state_dir().join("runs.jsonl").exists());
    let output = server.stop();
    assert!(!output.contains(TOKEN), "the token was printed: {output}");

    // The token from CACHE_API_TOKEN; with it, beyond loopback is allowed.
    config(&env, &redis, &logs, "");
    let port = free_port();
    let mut cmd = env.command(SCHEDULER, &["serve", "--listen", &format!("0.0.0.0:{port}")]);
    cmd.env(cache_core::env::EnvVars::CACHE_API_TOKEN, TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "serve did not listen"
    );
    assert_eq!(Client::new(port, None).get(&format!("{PREFIX}/status")).status, 401);
    assert_eq!(Client::new(port, Some(TOKEN)).get(&format!("{PREFIX}/status")).status, 200);
    signal(child.id(), "TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));

    // The rate limit: 3 at once, then 429 with Retry-After, per client address.
    config(&env, &redis, &logs, "rate_limit = 6\nburst = 3\n");
    let server = Server::start(&env, &[]);
    let api = Client::new(server.port, None);
    for _ in 0..3 {
        assert_eq!(api.get(&format!("{PREFIX}/tasks")).status, 200);
    }
    let limited = api.get(&format!("{PREFIX}/tasks"));
    assert_eq!(limited.status, 429, "{limited:?}");
    let retry: u64 = limited.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry), "Retry-After: {retry}");
    assert!(limited.error().contains("at most 6 a minute"), "{}", limited.error());
    server.stop();
}

#[test]
fn the_openapi_document_is_valid_openapi() {
    let Some(validator) = find_binary("openapi-spec-validator", &[]) else {
        missing("openapi-spec-validator (PyPI package openapi-spec-validator; cargo xtask ci installs it)");
        return;
    };
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api/openapi.json");
    let out = std::process::Command::new(validator).arg(&doc).output().unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
