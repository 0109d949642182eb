use std::collections::HashMap;

use super::*;
use crate::redact::SafeUrl;

struct MapEnv(HashMap<&'static str, &'static str>);

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|v| (*v).to_owned())
    }
}

fn no_env() -> MapEnv {
    MapEnv(HashMap::from([(EnvVars::HOME, "/nonexistent-home")]))
}

#[test]
fn embedded_default_matches_rust_defaults() {
    let parsed = parse(DEFAULT_CONFIG_TOML, "default").unwrap();
    assert_eq!(
        serde_json::to_value(&parsed).unwrap(),
        serde_json::to_value(Config::default()).unwrap(),
        "default-config.toml and Config::default() disagree"
    );
}

#[test]
fn unknown_key_names_the_full_key_and_line() {
    let text = "project_name = \"p\"\n\n[[redis]]\nname = \"main\"\nurl = \"redis://localhost\"\nurll = 1\n";
    let e = parse(text, "cfg.toml").unwrap_err();
    assert_eq!(e.source_name, "cfg.toml");
    assert_eq!(e.key, "redis[0].urll");
    assert!(e.message.contains("unknown field `urll`"), "{}", e.message);
    assert!(e.message.contains("line 6"), "{}", e.message);
}

#[test]
fn unknown_top_level_key_is_named() {
    let e = parse("colour = true\n", "c.toml").unwrap_err();
    assert_eq!(e.key, "colour");
}

#[test]
fn bad_value_names_its_key() {
    let e = parse("[health.latency]\nredis = \"fast\"\n", "c.toml").unwrap_err();
    assert_eq!(e.key, "health.latency.redis");
}

#[test]
fn validation_names_key() {
    let text = "[[redis]]\nname = \"a\"\nurl = \"http://x\"\n";
    let config = parse(text, "c.toml").unwrap();
    let e = validate(&config, "c.toml").unwrap_err();
    assert_eq!(e.key, "redis[0].url");
    let text = "[[redis]]\nname = \"a\"\nurl = \"redis://x\"\n[[redis]]\nname = \"a\"\nurl = \"redis://y\"\n";
    let e = validate(&parse(text, "c.toml").unwrap(), "c.toml").unwrap_err();
    assert_eq!(e.key, "redis[1].name");
    let e = validate(&parse("[health]\ndisk_percent = { warn = 99, crit = 90 }\n", "c").unwrap(), "c").unwrap_err();
    assert_eq!(e.key, "health.disk_percent");
    let e = validate(&parse("[[redis]]\nname = \"a\"\nurl = \"redis://x\"\nconcurrency = 0\n", "c").unwrap(), "c")
        .unwrap_err();
    assert_eq!(e.key, "redis[0].concurrency");
}

#[test]
fn no_file_means_embedded_default_with_expanded_state_dir() {
    let loaded = load(None, &no_env(), Path::new("/st")).unwrap();
    assert_eq!(loaded.source, ConfigSource::Embedded);
    assert!(loaded.config.redis.is_empty());
    assert_eq!(loaded.config.logs[0].path, PathBuf::from("/st/logs"));
}

#[test]
fn env_overrides_create_or_replace_first_target() {
    let env = MapEnv(HashMap::from([
        (EnvVars::HOME, "/nonexistent-home"),
        (EnvVars::REDIS_URL, "redis://:pw-from-env@h:1/0"),
        (EnvVars::MEM0_API_KEY, "m0-key-from-env"),
        (EnvVars::PROJECT_NAME, "proj"),
    ]));
    let loaded = load(None, &env, Path::new("/st")).unwrap();
    let c = &loaded.config;
    assert_eq!(c.redis[0].name, "default");
    assert_eq!(c.redis[0].url.expose(), "redis://:pw-from-env@h:1/0");
    assert_eq!(c.memory[0].url.expose(), "https://api.mem0.ai/");
    assert_eq!(c.memory[0].api_key.as_ref().unwrap().expose(), "m0-key-from-env");
    assert_eq!(c.memory_user_id(&c.memory[0]), "proj");
    assert_eq!(loaded.env_overrides, [EnvVars::PROJECT_NAME, EnvVars::REDIS_URL, EnvVars::MEM0_API_KEY]);
}

#[test]
fn bad_env_url_names_the_variable() {
    let env = MapEnv(HashMap::from([(EnvVars::HOME, "/x"), (EnvVars::DATABASE_URL, "not a url")]));
    let e = load(None, &env, Path::new("/st")).unwrap_err();
    let e = e.downcast_ref::<ConfigError>().unwrap();
    assert_eq!(e.source_name, "environment variable DATABASE_URL");
}

#[test]
fn explicit_missing_file_is_an_error() {
    let e = load(Some(Path::new("/no/such/file.toml")), &no_env(), Path::new("/st")).unwrap_err();
    assert!(e.to_string().contains("/no/such/file.toml"), "{e}");
}

#[test]
fn alert_rules_are_validated_naming_the_rule_and_field() {
    let rule = |body: &str| format!("[[alerts.rules]]\nname = \"Low Hit Ratio\"\n{body}\n");
    let check = |text: String| validate(&parse(&text, "c.toml").unwrap(), "c.toml").unwrap_err();
    let e = check(rule("condition = \"hit_ratio <\""));
    assert_eq!(e.key, "alerts.rules[0] (\"Low Hit Ratio\").condition");
    assert!(e.message.contains("compared with a number"), "{}", e.message);
    let e = check(rule("condition = \"hit_rato < 70%\""));
    assert_eq!(e.key, "alerts.rules[0] (\"Low Hit Ratio\").condition");
    assert!(e.message.contains("`hit_rato` is not a metric"), "{}", e.message);
    let e = check(rule("condition = \"hit_ratio < 70%\"\nmessage = \"at {hit_ratio:.1q}\""));
    assert_eq!(e.key, "alerts.rules[0] (\"Low Hit Ratio\").message");
    let e = check(rule("condition = \"hit_ratio < 70%\"\nchannels = [\"pager\"]"));
    assert_eq!(e.key, "alerts.rules[0] (\"Low Hit Ratio\").channels");
    let e = check(rule("condition = \"hit_ratio < 70%\"\nfor = 0"));
    assert_eq!(e.key, "alerts.rules[0] (\"Low Hit Ratio\").for");
    let e = check(format!("{}{}", rule("condition = \"hit_ratio < 0.7\""), rule("condition = \"hit_ratio < 0.5\"")));
    assert_eq!(e.key, "alerts.rules[1] (\"Low Hit Ratio\").name");
    let e = parse(&rule("condition = \"x > 1\"\nseverity = \"loud\""), "c.toml").unwrap_err();
    assert!(e.key.starts_with("alerts.rules"), "{}", e.key);
    let e = check("[alerts.channels.chat]\ntype = \"slack\"\nurl = \"hooks.slack.com/x\"\n".into());
    assert_eq!(e.key, "alerts.channels.chat.url");
    let ok = rule(
        "condition = \"hit_ratio < 70%\"\nseverity = \"critical\"\nfor = 3\nauto_action = \"trigger_optimization\"",
    );
    validate(&parse(&ok, "c.toml").unwrap(), "c.toml").unwrap();
}

#[test]
fn ratios_take_a_fraction_or_a_percentage_and_refuse_a_bare_number_above_one() {
    let c = parse("[health]\nhit_ratio_min = \"70%\"\n[cleanup.smart]\ntargeted_hit_ratio = 0.6\n", "c.toml").unwrap();
    assert_eq!(c.health.hit_ratio_min, 0.7);
    assert_eq!(c.cleanup.smart.targeted_hit_ratio, 0.6);
    for (text, key) in [
        ("[cleanup.smart]\ntargeted_hit_ratio = 60\n", "cleanup.smart.targeted_hit_ratio"),
        ("[health]\nhit_ratio_min = 70\n", "health.hit_ratio_min"),
        ("[cleanup]\nmax_delete_share = 25\n", "cleanup.max_delete_share"),
        ("[optimizer]\nbloat_ratio = \"130%\"\n", "optimizer.bloat_ratio"),
    ] {
        let e = parse(text, "c.toml").unwrap_err();
        assert_eq!(e.key, key, "{text}");
        if !text.contains('%') {
            assert!(e.message.contains("0.") && e.message.contains("%\""), "{}", e.message);
        }
    }
    let rule = parse("[[alerts.rules]]\nname = \"Low\"\ncondition = \"hit_ratio < 70\"\n", "c.toml").unwrap();
    let e = validate(&rule, "c.toml").unwrap_err();
    assert_eq!(e.key, "alerts.rules[0] (\"Low\").condition");
    assert!(e.message.contains("70%"), "{}", e.message);
}

#[test]
fn targets_new_equal_a_file_entry_with_only_the_required_keys() {
    let text = "[[redis]]\nname = \"r\"\nurl = \"redis://h:1/0\"\n\
                [[postgres]]\nname = \"p\"\nurl = \"postgres://h/db\"\n\
                [[memory]]\nname = \"m\"\n\
                [[files]]\nname = \"f\"\npath = \"/f\"\n\
                [[logs]]\nname = \"l\"\npath = \"/l\"\n";
    let c = parse(text, "c.toml").unwrap();
    let url = |raw: &str| SafeUrl::parse(raw).unwrap();
    let same = |built: String, parsed: String| assert_eq!(built, parsed);
    same(format!("{:?}", RedisTarget::new("r", url("redis://h:1/0"))), format!("{:?}", c.redis[0]));
    same(format!("{:?}", PostgresTarget::new("p", url("postgres://h/db"))), format!("{:?}", c.postgres[0]));
    same(format!("{:?}", MemoryTarget::new("m")), format!("{:?}", c.memory[0]));
    same(format!("{:?}", FilesTarget::new("f", "/f")), format!("{:?}", c.files[0]));
    same(format!("{:?}", LogsTarget::new("l", "/l")), format!("{:?}", c.logs[0]));
    assert_eq!(c.postgres[0].connect_timeout, Duration::from_secs(2));
    assert_eq!(c.redis[0].connect_timeout, Duration::from_secs(2));
}

#[test]
fn env_creates_targets_with_the_file_defaults() {
    let env = MapEnv(HashMap::from([
        (EnvVars::HOME, "/nonexistent-home"),
        (EnvVars::REDIS_URL, "redis://h:1/0"),
        (EnvVars::DATABASE_URL, "postgres://h/db"),
        (EnvVars::MEM0_URL, "http://m:8000"),
    ]));
    let c = load(None, &env, Path::new("/st")).unwrap().config;
    let file = parse(
        "[[redis]]\nname = \"default\"\nurl = \"redis://h:1/0\"\n\
         [[postgres]]\nname = \"default\"\nurl = \"postgres://h/db\"\n\
         [[memory]]\nname = \"default\"\nurl = \"http://m:8000\"\n",
        "c.toml",
    )
    .unwrap();
    assert_eq!(format!("{:?}", c.redis), format!("{:?}", file.redis));
    assert_eq!(format!("{:?}", c.postgres), format!("{:?}", file.postgres));
    assert_eq!(format!("{:?}", c.memory), format!("{:?}", file.memory));
}

#[test]
fn validation_errors_name_the_line_or_the_variable_that_set_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let load_text = |text: &str, env: &MapEnv| {
        std::fs::write(&file, text).unwrap();
        let e = load(Some(&file), env, Path::new("/st")).unwrap_err();
        e.downcast_ref::<ConfigError>().unwrap().clone()
    };
    let two = "project_name = \"p\"\n\n[[redis]]\nname = \"a\"\nurl = \"redis://x\"\n\n[[redis]]\nname = \"b\"\nurl = \"http://y\"\n";
    let e = load_text(two, &no_env());
    assert_eq!(e.key, "redis[1].url");
    assert!(e.message.ends_with("(line 9)"), "{}", e.message);
    let zero = "[[redis]]\nname = \"a\"\nurl = \"redis://x\"\ntimeout = \"0s\"\n";
    let e = load_text(zero, &no_env());
    assert_eq!(e.key, "redis[0].timeout");
    assert!(e.message.ends_with("(line 4)"), "{}", e.message);
    let health = "[health]\n# thresholds\ndisk_percent = { warn = 99, crit = 90 }\n";
    assert!(load_text(health, &no_env()).message.ends_with("(line 3)"));
    // A bad REDIS_URL is blamed on the variable, not on the file.
    let env = MapEnv(HashMap::from([(EnvVars::HOME, "/x"), (EnvVars::REDIS_URL, "http://from-env")]));
    let e = load_text("[[redis]]\nname = \"a\"\nurl = \"redis://x\"\n", &env);
    assert_eq!((e.source_name.as_str(), e.key.as_str()), ("environment variable REDIS_URL", "redis[0].url"));
}

#[test]
fn upstash_rest_targets_from_the_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let load_with = |text: &str, vars: &[(&'static str, &'static str)]| {
        std::fs::write(&file, text).unwrap();
        let mut env = HashMap::from([(EnvVars::HOME, "/x")]);
        env.extend(vars.iter().copied());
        load(Some(&file), &MapEnv(env), Path::new("/st"))
    };
    let error = |r: anyhow::Result<Loaded>| r.unwrap_err().downcast_ref::<ConfigError>().unwrap().clone();
    // `rest_url` and `token`; the token is never shown.
    let loaded =
        load_with("[[redis]]\nname = \"u\"\nrest_url = \"https://eu1.upstash.io\"\ntoken = \"tok-123\"\n", &[]);
    let target = &loaded.unwrap().config.redis[0];
    assert!(target.is_rest());
    let (endpoint, token) = target.rest_endpoint().unwrap();
    assert_eq!((endpoint.as_str(), token.expose()), ("https://eu1.upstash.io/", "tok-123"));
    assert!(!format!("{target:?}").contains("tok-123"));
    // The URL's password is the token too; `upstash+` is dropped from the endpoint.
    let loaded = load_with("[[redis]]\nname = \"u\"\nurl = \"upstash+https://:tok%2F9@h.upstash.io\"\n", &[]);
    let (endpoint, token) = loaded.unwrap().config.redis[0].rest_endpoint().unwrap();
    assert_eq!((endpoint.as_str(), token.expose()), ("https://h.upstash.io/", "tok/9"));
    // No token, plain http to another host, seeds: refused, naming the key.
    let e = error(load_with("[[redis]]\nname = \"u\"\nurl = \"upstash+https://h.upstash.io\"\n", &[]));
    assert_eq!(e.key, "redis[0].url");
    assert!(e.message.contains("needs its token") && e.message.ends_with("(line 3)"), "{}", e.message);
    let e = error(load_with("[[redis]]\nname = \"u\"\nurl = \"upstash+http://h.example\"\ntoken = \"t\"\n", &[]));
    assert!(e.message.contains("in clear"), "{}", e.message);
    let e = error(load_with("[[redis]]\nname = \"r\"\nurl = \"redis://h\"\ntoken = \"t\"\n", &[]));
    assert_eq!(e.key, "redis[0].token");
    // Upstash's variables (or the seed's) create `upstash` beside a RESP target.
    let resp = "[[redis]]\nname = \"main\"\nurl = \"redis://h\"\n";
    let loaded =
        load_with(resp, &[(EnvVars::UPSTASH_URL, "https://seed.upstash.io"), (EnvVars::UPSTASH_TOKEN, "seed-tok")])
            .unwrap();
    assert_eq!(loaded.config.redis.len(), 2);
    let upstash = &loaded.config.redis[1];
    assert_eq!((upstash.name.as_str(), upstash.url.scheme()), ("upstash", "upstash+https"));
    assert_eq!(upstash.rest_endpoint().unwrap().1.expose(), "seed-tok");
    assert_eq!(loaded.env_overrides, [EnvVars::UPSTASH_URL, EnvVars::UPSTASH_TOKEN]);
    // Upstash's own names win over the seed's; a file's REST target is the one they set.
    let file_rest = "[[redis]]\nname = \"up\"\nurl = \"upstash+https://old.upstash.io\"\ntoken = \"old\"\n";
    let loaded = load_with(
        file_rest,
        &[
            (EnvVars::UPSTASH_REDIS_REST_URL, "https://new.upstash.io"),
            (EnvVars::UPSTASH_URL, "https://seed.upstash.io"),
            (EnvVars::UPSTASH_REDIS_REST_TOKEN, "new"),
        ],
    )
    .unwrap();
    assert_eq!(loaded.config.redis.len(), 1);
    let (endpoint, token) = loaded.config.redis[0].rest_endpoint().unwrap();
    assert_eq!((endpoint.host_str(), token.expose()), (Some("new.upstash.io"), "new"));
    // A URL without a token is an error naming the missing variable, never ignored.
    let e = error(load_with(resp, &[(EnvVars::UPSTASH_URL, "https://seed.upstash.io")]));
    assert_eq!(e.key, EnvVars::UPSTASH_URL);
    assert!(e.message.contains("UPSTASH_REDIS_REST_TOKEN"), "{}", e.message);
    // A bad value is blamed on the variable.
    let e = error(load_with(
        resp,
        &[(EnvVars::UPSTASH_REDIS_REST_URL, "http://far.example"), (EnvVars::UPSTASH_REDIS_REST_TOKEN, "t")],
    ));
    assert_eq!(e.source_name, "environment variable UPSTASH_REDIS_REST_URL");
}

#[test]
fn the_api_section_is_checked_and_its_token_comes_from_the_environment_too() {
    let key = |text: &str| validate(&parse(text, "c").unwrap(), "c").unwrap_err().key;
    assert_eq!(key("[api]\nlisten = \"localhost\"\n"), "api.listen");
    assert_eq!(key("[api]\ntoken = \"short\"\n"), "api.token");
    assert_eq!(key("[api]\ntoken = \"with a space 0123456789\"\n"), "api.token");
    assert_eq!(key("[api]\nrate_limit = 0\n"), "api.rate_limit");
    assert_eq!(key("[api]\nmax_body = \"1 GiB\"\n"), "api.max_body");
    assert_eq!(key("[api]\nread_timeout = \"0s\"\n"), "api.read_timeout");
    validate(&parse("[api]\nlisten = \"[::1]:9000\"\ntoken = \"0123456789abcdef\"\n", "c").unwrap(), "c").unwrap();
    let env = MapEnv(HashMap::from([(EnvVars::HOME, "/x"), (EnvVars::CACHE_API_TOKEN, "tok-from-env-0123456789")]));
    let loaded = load(None, &env, Path::new("/st")).unwrap();
    assert!(loaded.config.api.token.as_ref().unwrap().matches(b"tok-from-env-0123456789"));
    assert_eq!(loaded.env_overrides, [EnvVars::CACHE_API_TOKEN]);
    let short = MapEnv(HashMap::from([(EnvVars::HOME, "/x"), (EnvVars::CACHE_API_TOKEN, "short")]));
    let e = load(None, &short, Path::new("/st")).unwrap_err();
    let e = e.downcast_ref::<ConfigError>().unwrap();
    assert_eq!((e.source_name.as_str(), e.key.as_str()), ("environment variable CACHE_API_TOKEN", "api.token"));
    assert!(!e.to_string().contains("short"), "{e}");
}
