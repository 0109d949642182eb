//! Big keys in a logical backup: a 200,000-field hash, a set, a sorted set and a list of
//! 100,000 elements and an 8 MiB string are backed up and restored in bounded chunks (HSCAN,
//! SSCAN, ZSCAN, LRANGE, GETRANGE; written into a temporary key, then renamed), exactly and
//! with their expiry times, and no command of the toolkit stalls the server. Format-1 exports
//! (one DUMP per key) still restore, and a logical export cut short fails verification.

use std::collections::BTreeMap;
use std::time::Duration;

use cache_tests::{RedisServer, TestEnv, wait_until};
use serde_json::Value;

use crate::BACKUP;
use crate::ledger::{counters, ledger};

/// The longest a command of the toolkit may block the server. A DUMP or RESTORE of the
/// 200,000-field hash takes it 60-100 ms, of the 8 MiB string about 40 ms, one chunk 1-2 ms.
///
/// The slow log times commands by the wall clock, so on a loaded machine a 1 ms command shows
/// 20-80 ms when the server was preempted while running it. Each command logged over the bound
/// is therefore run again alone (or an equivalent: the same command with as many arguments on a
/// scratch key), and fails the test when even its fastest of three runs is over the bound:
/// then its cost is its own, not the machine's.
const STALL_BOUND_US: i64 = 20_000;

/// A deterministic stream of pseudo-random numbers (xorshift).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `len` bytes, every byte value included (binary safety).
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.next() >> 24) as u8).collect()
    }
}

/// The big keys, and 3,000 ordinary ones (two thirds with TTLs); returns the big keys' names.
fn seed(redis: &RedisServer) -> Vec<&'static str> {
    let mut conn = redis.connection();
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut pipe = redis::pipe();
    for chunk in 0..200 {
        let mut cmd = redis::cmd("HSET");
        cmd.arg("big:hash");
        for i in chunk * 1000..(chunk + 1) * 1000 {
            let len = 20 + (noise.next() % 40) as usize;
            cmd.arg(format!("field:{i}")).arg(noise.bytes(len));
        }
        pipe.add_command(cmd).ignore();
    }
    for chunk in 0..100 {
        let (mut set, mut zset, mut list) = (redis::cmd("SADD"), redis::cmd("ZADD"), redis::cmd("RPUSH"));
        set.arg("big:set");
        zset.arg("big:zset");
        list.arg("big:list");
        for i in chunk * 1000..(chunk + 1) * 1000 {
            let mut member = format!("member:{i}:").into_bytes();
            member.extend(noise.bytes(8));
            set.arg(&member);
            // Integers, fractions, negatives, extremes and infinities.
            let score = match i % 7 {
                0 => "inf".to_owned(),
                1 => "-inf".to_owned(),
                2 => format!("{}", i as f64 * 0.1 - 5000.0),
                3 => format!("{:e}", (i as f64 + 1.0) * 1e290),
                4 => "5e-324".to_owned(),
                _ => format!("{}", noise.next() as i64 >> 11),
            };
            zset.arg(score).arg(&member);
            // Duplicates and empty elements, in order.
            list.arg(if i % 50 == 0 { Vec::new() } else { noise.bytes((i % 13) as usize + 4) });
        }
        pipe.add_command(set).ignore().add_command(zset).ignore().add_command(list).ignore();
    }
    pipe.cmd("SET").arg("big:string").arg(noise.bytes((8 << 20) + 4096)).ignore();
    pipe.cmd("PEXPIRE").arg("big:hash").arg(7_200_000).ignore();
    pipe.cmd("PEXPIREAT").arg("big:list").arg(chrono::Utc::now().timestamp_millis() + 86_400_000).ignore();
    pipe.cmd("PEXPIRE").arg("big:string").arg(3_600_123).ignore();
    for i in 0..3000 {
        match i % 5 {
            0 => pipe.cmd("SET").arg(format!("s:{i}")).arg(noise.bytes(i % 300)).ignore(),
            1 => pipe.cmd("HSET").arg(format!("h:{i}")).arg("a").arg(i).arg("b").arg(noise.bytes(20)).ignore(),
            2 => pipe.cmd("RPUSH").arg(format!("l:{i}")).arg("x").arg(i).arg("x").ignore(),
            3 => pipe.cmd("SADD").arg(format!("set:{i}")).arg(i).arg("m").ignore(),
            _ => pipe.cmd("ZADD").arg(format!("z:{i}")).arg(1.5).arg("a").arg(-2).arg(i).ignore(),
        };
        if i % 3 != 0 {
            pipe.cmd("PEXPIRE").arg(match i % 5 {
                0 => format!("s:{i}"),
                1 => format!("h:{i}"),
                2 => format!("l:{i}"),
                3 => format!("set:{i}"),
                _ => format!("z:{i}"),
            });
            pipe.arg(3_600_000 + i * 997).ignore();
        }
    }
    pipe.query::<()>(&mut conn).unwrap();
    vec!["big:hash", "big:set", "big:zset", "big:list", "big:string"]
}

/// Every key's value digest (`DEBUG DIGEST-VALUE`, over the contents whatever the encoding)
/// and absolute expiry (PEXPIRETIME, -1: none).
fn snapshot(redis: &RedisServer) -> BTreeMap<Vec<u8>, (String, i64)> {
    let mut conn = redis.connection();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    let mut all = BTreeMap::new();
    for chunk in keys.chunks(1000) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("DEBUG").arg("DIGEST-VALUE").arg(key).cmd("PEXPIRETIME").arg(key);
        }
        let replies: Vec<redis::Value> = pipe.query(&mut conn).unwrap();
        for (key, r) in chunk.iter().zip(replies.chunks(2)) {
            let digest = match &r[0] {
                redis::Value::Array(d) => format!("{d:?}"),
                other => panic!("DEBUG DIGEST-VALUE: {other:?}"),
            };
            let redis::Value::Int(at) = r[1] else { panic!("PEXPIRETIME: {:?}", r[1]) };
            all.insert(key.clone(), (digest, at));
        }
    }
    all
}

/// The same keys, the same contents, expiry times within a second.
fn assert_same(before: &BTreeMap<Vec<u8>, (String, i64)>, after: &BTreeMap<Vec<u8>, (String, i64)>, what: &str) {
    let name = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
    let missing: Vec<String> = before.keys().filter(|k| !after.contains_key(*k)).map(|k| name(k)).take(5).collect();
    let extra: Vec<String> = after.keys().filter(|k| !before.contains_key(*k)).map(|k| name(k)).take(5).collect();
    assert!(missing.is_empty() && extra.is_empty(), "{what}: missing {missing:?}, unexpected {extra:?}");
    let mut worst = 0;
    for (key, (digest, at)) in before {
        let (digest2, at2) = &after[key];
        assert_eq!(digest, digest2, "{what}: the contents of `{}` differ", name(key));
        assert_eq!(*at < 0, *at2 < 0, "{what}: `{}` gained or lost its TTL", name(key));
        worst = worst.max((at - at2).abs());
    }
    assert!(worst <= 1000, "{what}: an expiry time moved by {worst} ms");
}

/// Resets the slow log: every command over 10 ms is logged from now on.
fn slowlog_reset(conn: &mut redis::Connection) {
    slowlog_threshold(conn, 10_000);
    let _: () = redis::cmd("CONFIG").arg("SET").arg("slowlog-max-len").arg(10_000).query(conn).unwrap();
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query(conn).unwrap();
}

fn slowlog_threshold(conn: &mut redis::Connection, micros: i64) {
    let _: () = redis::cmd("CONFIG").arg("SET").arg("slowlog-log-slower-than").arg(micros).query(conn).unwrap();
}

/// A command in the slow log: how long it ran (µs) and its arguments, as the slow log keeps
/// them (at most 32, each at most 128 bytes, then a `... (N more ...)` note).
#[derive(Clone, Debug)]
struct Slow {
    micros: i64,
    args: Vec<Vec<u8>>,
}

impl std::fmt::Display for Slow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let words: Vec<String> =
            self.args.iter().take(3).map(|a| String::from_utf8_lossy(&a[..a.len().min(60)]).into_owned()).collect();
        write!(f, "{} µs `{}`", self.micros, words.join(" "))
    }
}

/// The slow log's entries, slowest first.
fn slowlog(conn: &mut redis::Connection) -> Vec<Slow> {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(10_000).query(conn).unwrap();
    let mut out: Vec<Slow> = entries
        .iter()
        .filter_map(|e| {
            let redis::Value::Array(fields) = e else { return None };
            let redis::Value::Int(micros) = fields.get(2)? else { return None };
            let redis::Value::Array(args) = fields.get(3)? else { return None };
            let args = args
                .iter()
                .map(|a| match a {
                    redis::Value::BulkString(b) => b.clone(),
                    other => format!("{other:?}").into_bytes(),
                })
                .collect();
            Some(Slow { micros: *micros, args })
        })
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.micros));
    out
}

/// `N` in the slow log's `... (N more arguments)` or `... (N more bytes)` note ending `arg`.
fn more(arg: &[u8], what: &str) -> Option<usize> {
    let text = String::from_utf8_lossy(arg);
    let (_, tail) = text.rsplit_once("... (")?;
    tail.strip_suffix(&format!(" more {what})"))?.parse().ok()
}

/// The server's own time for `cmd` (its slow log entry, everything logged), the fastest of 3
/// runs, each after `setup`.
fn server_time(
    conn: &mut redis::Connection,
    name: &str,
    cmd: &redis::Cmd,
    setup: &dyn Fn(&mut redis::Connection),
) -> i64 {
    let name = Some(name.to_owned());
    let mut best = i64::MAX;
    for _ in 0..3 {
        setup(conn);
        slowlog_threshold(conn, 0);
        let _: () = redis::cmd("SLOWLOG").arg("RESET").query(conn).unwrap();
        let _: redis::RedisResult<redis::Value> = cmd.query(conn);
        slowlog_threshold(conn, 10_000);
        let took = slowlog(conn)
            .into_iter()
            .filter(|e| e.args.first().map(|a| String::from_utf8_lossy(a).to_ascii_uppercase()) == name)
            .map(|e| e.micros)
            .max()
            .unwrap_or(0);
        best = best.min(took);
    }
    best
}

/// What the logged command costs the server on its own (µs): the fastest of three runs of it
/// (a read), or of an equivalent (a RESTORE of the key's payload, or a chunk written with as
/// many arguments, into a scratch key). `None`: a write that cannot be run again (UNLINK,
/// RENAME, PEXPIREAT, PERSIST, PEXPIRE, MULTI, EXEC: O(1)).
fn cost_alone(conn: &mut redis::Connection, slow: &Slow) -> Option<i64> {
    const SCRATCH: &str = "bigkeys:cost-alone";
    let name = String::from_utf8_lossy(&slow.args[0]).to_ascii_uppercase();
    let more_args = slow.args.last().and_then(|a| more(a, "arguments"));
    let shown = slow.args.len() - usize::from(more_args.is_some());
    let truncated = more_args.is_some() || slow.args.iter().any(|a| more(a, "bytes").is_some());
    let unlink = |conn: &mut redis::Connection| redis::cmd("UNLINK").arg(SCRATCH).exec(conn).unwrap();
    let reads = [
        "HSCAN",
        "SSCAN",
        "ZSCAN",
        "LRANGE",
        "GETRANGE",
        "DUMP",
        "TYPE",
        "MEMORY",
        "PEXPIRETIME",
        "PTTL",
        "SCAN",
        "HLEN",
        "SCARD",
        "ZCARD",
        "LLEN",
        "STRLEN",
        "INFO",
        "EXISTS",
        "DBSIZE",
    ];
    if reads.contains(&name.as_str()) && !truncated {
        let mut cmd = redis::cmd(&name);
        for arg in &slow.args[1..] {
            cmd.arg(arg);
        }
        return Some(server_time(conn, &name, &cmd, &|_| {}));
    }
    if name == "RESTORE" {
        let payload: Option<Vec<u8>> = redis::cmd("DUMP").arg(&slow.args[1]).query(conn).unwrap();
        let mut cmd = redis::cmd("RESTORE");
        cmd.arg(SCRATCH).arg(0).arg(payload?);
        let cost = server_time(conn, &name, &cmd, &unlink);
        unlink(conn);
        return Some(cost);
    }
    let building = slow.args.get(1).is_some_and(|k| String::from_utf8_lossy(k).contains("cache-backup:restoring"));
    if !building || !["HSET", "SADD", "ZADD", "RPUSH", "SETRANGE"].contains(&name.as_str()) {
        return None;
    }
    let elements = shown + more_args.unwrap_or(0) - 2;
    let mut cmd = redis::cmd(&name);
    cmd.arg(SCRATCH);
    match name.as_str() {
        "SETRANGE" => {
            let arg = &slow.args[3];
            cmd.arg(&slow.args[2]).arg(vec![b'x'; more(arg, "bytes").map_or(arg.len(), |n| n + 128)]);
        }
        "HSET" | "ZADD" => {
            for i in 0..elements / 2 {
                cmd.arg(i).arg(format!("element {i} {}", "x".repeat(32)));
            }
        }
        _ => {
            for i in 0..elements {
                cmd.arg(format!("element {i} {}", "x".repeat(32)));
            }
        }
    }
    let cost = server_time(conn, &name, &cmd, &unlink);
    unlink(conn);
    Some(cost)
}

/// Panics unless every command in `slow` over the bound was slow only because the machine was
/// busy ([`cost_alone`] within the bound); returns the costs measured alone.
fn assert_never_stalled(conn: &mut redis::Connection, what: &str, slow: &[Slow]) -> Vec<String> {
    let mut alone = Vec::new();
    for entry in slow.iter().filter(|e| e.micros > STALL_BOUND_US) {
        let name = String::from_utf8_lossy(&entry.args[0]).to_ascii_uppercase();
        match cost_alone(conn, entry) {
            Some(micros) => {
                assert!(
                    micros <= STALL_BOUND_US,
                    "the {what} blocked the server: {entry}, {micros} µs when run alone (bound {STALL_BOUND_US} µs)"
                );
                alone.push(format!("{entry} ({micros} µs alone)"));
            }
            None => {
                let constant = ["UNLINK", "RENAME", "PEXPIREAT", "PERSIST", "PEXPIRE", "MULTI", "EXEC", "DEL"];
                assert!(constant.contains(&name.as_str()), "the {what} blocked the server: {entry}");
                alone.push(format!("{entry} (O(1))"));
            }
        }
    }
    alone
}

fn logical_config(url: &str) -> String {
    format!(
        "[[redis]]\nname = \"main\"\nurl = \"{url}\"\n[backup]\nredis_method = \"logical\"\nthreads = 2\nlevel = 1\n"
    )
}

/// The restore report's `N keys restored ... (E had expired)` figures.
fn restored(report: &Value) -> (u64, u64) {
    let text = report["restored"].to_string();
    let re = regex::Regex::new(r"(\d+) keys restored with their expiry times \((\d+) had expired\)").unwrap();
    let c = re.captures(&text).unwrap_or_else(|| panic!("{report:#}"));
    (c[1].parse().unwrap(), c[2].parse().unwrap())
}

#[test]
fn big_keys_are_backed_up_and_restored_exactly_in_chunks_without_stalling_the_server() {
    let Some(redis) = RedisServer::start() else { return };
    let big = seed(&redis);
    let mut conn = redis.connection();
    // A big key whose time passes between the backup and the restore.
    let mut pipe = redis::pipe();
    for i in 0..40_000 {
        pipe.cmd("SADD").arg("big:short-lived").arg(format!("m{i}")).ignore();
    }
    pipe.cmd("PEXPIRE").arg("big:short-lived").arg(6_000).ignore();
    pipe.query::<()>(&mut conn).unwrap();
    let mut before = snapshot(&redis);
    before.remove(b"big:short-lived".as_slice());
    let keys = before.len() as u64;
    let env = TestEnv::new();
    env.watch_log("redis", redis.dir().join("redis.log"));
    env.write_config(&logical_config(&redis.url()));

    slowlog_reset(&mut conn);
    let (counted_before, recorded_before) = (counters(&mut conn), ledger(&env));
    let out = env.run(BACKUP, &["create", "--only", "redis", "--format", "json"]);
    out.expect_code(0);
    let create_time = out.elapsed;
    let create_slow = slowlog(&mut conn);
    let (counted_after, recorded_after) = (counters(&mut conn), ledger(&env));
    // Present when the export ended, so exported (SCAN returns every key present throughout).
    let exported: bool = redis::cmd("EXISTS").arg("big:short-lived").query(&mut conn).unwrap();
    assert_eq!(out.json()["sources"][0]["method"], "logical", "{}", out.dump());
    // The export's commands are the toolkit's lookups, exactly as Redis counted them.
    let counted = (counted_after.0 - counted_before.0, counted_after.1 - counted_before.1);
    let recorded = (recorded_after.0 - recorded_before.0, recorded_after.1 - recorded_before.1);
    assert_eq!(recorded, counted, "Redis counted {counted:?} lookups, the ledger {recorded:?}");
    let create_alone = assert_never_stalled(&mut conn, "backup", &create_slow);
    // The dry run verifies the backup (the export read to its end) and counts its keys.
    let dry = env.run(BACKUP, &["restore", "--dry-run", "--format", "json"]);
    dry.expect_code(0);
    let listed = dry.json()["restored"].to_string();
    let would = |n: u64| listed.contains(&format!("would restore {n} keys"));
    assert!(would(keys + 1) || (!exported && would(keys)), "{}", dry.dump());

    // The short-lived key's time passes; everything goes; the restore puts the rest back.
    assert!(
        wait_until(Duration::from_secs(20), || !redis.keys().contains(&"big:short-lived".to_owned())),
        "big:short-lived never expired"
    );
    // KEYS only hides a key whose time has passed; DEBUG DIGEST still counts it until it is
    // deleted. A lookup deletes it (lazy expiry), so that the digest is of the live keys.
    let gone: bool = redis::cmd("EXISTS").arg("big:short-lived").query(&mut conn).unwrap();
    assert!(!gone);
    let digest = redis.digest();
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    slowlog_reset(&mut conn);
    let out = env.run(BACKUP, &["restore", "--yes", "--format", "json"]);
    out.expect_code(0);
    let restore_time = out.elapsed;
    let restore_slow = slowlog(&mut conn);
    let (count, expired) = restored(&out.json());
    assert_eq!(count, keys, "{}", out.dump());
    // It expired after the export read it: skipped.
    assert!(expired == 1 || !exported, "{}", out.dump());
    assert_same(&before, &snapshot(&redis), "after restore");
    assert_eq!(redis.digest(), digest, "the dataset differs after restore");
    // No temporary key is left behind.
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(dbsize, keys);
    let encoding: String = redis::cmd("OBJECT").arg("ENCODING").arg("big:hash").query(&mut conn).unwrap();
    assert_eq!(encoding, "hashtable");
    let restore_alone = assert_never_stalled(&mut conn, "restore", &restore_slow);

    let slowest = |slow: &[Slow]| slow.first().map_or("none over 10 ms".to_owned(), Slow::to_string);
    eprintln!(
        "figures: {keys} keys ({big:?} big): create {create_time:?}, slowest {}, over the bound {create_alone:?}; \
         restore {restore_time:?}, slowest {}, over the bound {restore_alone:?}",
        slowest(&create_slow),
        slowest(&restore_slow),
    );
}

/// Writes `keys` (name, absolute expiry or -1, DUMP payload) as a format-1 logical export.
fn write_format_1(path: &std::path::Path, keys: &[(Vec<u8>, i64, Vec<u8>)]) {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    gz.write_all(b"CACHE-TOOLKIT-LOGICAL-1\n").unwrap();
    for (key, at, dump) in keys {
        gz.write_all(&(key.len() as u32).to_be_bytes()).unwrap();
        gz.write_all(key).unwrap();
        gz.write_all(&at.to_be_bytes()).unwrap();
        gz.write_all(&(dump.len() as u32).to_be_bytes()).unwrap();
        gz.write_all(dump).unwrap();
    }
    gz.write_all(&u32::MAX.to_be_bytes()).unwrap();
    gz.finish().unwrap();
}

/// Puts the size and SHA-256 of the file `name` into the backup's manifest.
fn reseal(dir: &std::path::Path, name: &str) {
    use sha2::Digest as _;
    let data = std::fs::read(dir.join(name)).unwrap();
    let path = dir.join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let file = manifest["files"].as_array_mut().unwrap().iter_mut().find(|f| f["path"] == name).unwrap();
    file["bytes"] = data.len().into();
    file["sha256"] = hex::encode(sha2::Sha256::digest(&data)).into();
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

/// A logical backup and its directory.
fn logical_backup(env: &TestEnv) -> std::path::PathBuf {
    let out = env.run(BACKUP, &["create", "--only", "redis", "--format", "json"]);
    out.expect_code(0);
    env.state_dir().join("backups").join(out.json()["id"].as_str().unwrap())
}

#[test]
fn a_format_1_logical_export_still_verifies_and_restores() {
    let Some(redis) = RedisServer::start() else { return };
    let mut conn = redis.connection();
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET").arg(format!("s:{i}")).arg(format!("v{i}")).ignore();
        pipe.cmd("HSET").arg(format!("h:{i}")).arg("a").arg(i).ignore();
        if i % 2 == 0 {
            pipe.cmd("PEXPIRE").arg(format!("s:{i}")).arg(3_600_000 + i).ignore();
        }
    }
    // A big key, as format 1 holds it: one DUMP.
    for chunk in 0..30 {
        let mut cmd = redis::cmd("HSET");
        cmd.arg("big:hash");
        for i in chunk * 1000..(chunk + 1) * 1000 {
            cmd.arg(format!("f{i}")).arg(format!("value {i}"));
        }
        pipe.add_command(cmd).ignore();
    }
    pipe.query::<()>(&mut conn).unwrap();
    let env = TestEnv::new();
    env.write_config(&logical_config(&redis.url()));
    let dir = logical_backup(&env);
    // The same keys, written as the earlier version wrote them.
    let names: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    let mut keys = Vec::new();
    for name in names {
        let dump: Vec<u8> = redis::cmd("DUMP").arg(&name).query(&mut conn).unwrap();
        let at: i64 = redis::cmd("PEXPIRETIME").arg(&name).query(&mut conn).unwrap();
        keys.push((name, at, dump));
    }
    let file = "redis-main.logical.gz";
    std::fs::remove_file(dir.join(file)).unwrap();
    write_format_1(&dir.join(file), &keys);
    reseal(&dir, file);
    let before = snapshot(&redis);
    let digest = redis.digest();
    env.run(BACKUP, &["verify"]).expect_code(0);
    let dry = env.run(BACKUP, &["restore", "--dry-run", "--format", "json"]);
    dry.expect_code(0);
    assert!(dry.json()["restored"].to_string().contains("would restore 1001 keys"), "{}", dry.dump());
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    let out = env.run(BACKUP, &["restore", "--yes", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(restored(&out.json()), (1001, 0), "{}", out.dump());
    assert_same(&before, &snapshot(&redis), "format 1");
    assert_eq!(redis.digest(), digest);
}

#[test]
fn a_logical_export_cut_short_fails_verification_and_restores_nothing() {
    let Some(redis) = RedisServer::start() else { return };
    let mut conn = redis.connection();
    let mut pipe = redis::pipe();
    for chunk in 0..40 {
        let mut cmd = redis::cmd("SADD");
        cmd.arg("big:set");
        for i in chunk * 1000..(chunk + 1) * 1000 {
            cmd.arg(format!("member {i}"));
        }
        pipe.add_command(cmd).ignore();
    }
    pipe.cmd("SET").arg("small").arg("v").ignore();
    pipe.query::<()>(&mut conn).unwrap();
    let env = TestEnv::new();
    env.write_config(&logical_config(&redis.url()));
    let dir = logical_backup(&env);
    let file = "redis-main.logical.gz";
    // The export, decompressed, cut in the middle of the big key, and compressed again: the
    // gzip data and the manifest agree, the records do not end.
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(std::fs::File::open(dir.join(file)).unwrap()),
        &mut raw,
    )
    .unwrap();
    assert!(raw.starts_with(b"CACHE-TOOLKIT-LOGICAL-2\n"), "{:?}", &raw[..30.min(raw.len())]);
    std::fs::remove_file(dir.join(file)).unwrap();
    {
        use std::io::Write as _;
        let mut gz =
            flate2::write::GzEncoder::new(std::fs::File::create(dir.join(file)).unwrap(), flate2::Compression::fast());
        gz.write_all(&raw[..raw.len() / 2]).unwrap();
        gz.finish().unwrap();
    }
    reseal(&dir, file);
    let out = env.run(BACKUP, &["verify"]);
    out.expect_code(1);
    assert!(out.stdout.contains(file) && out.stdout.contains("logical export"), "{}", out.dump());
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    let out = env.run(BACKUP, &["restore", "--yes"]);
    out.expect_code(1);
    assert!(out.stderr.contains("failed verification, so nothing was restored"), "{}", out.dump());
    assert!(redis.keys().is_empty());
}

/// Big keys with and without hash tags (some whose names have a `}` but no tag) restored into a
/// three-primary cluster: each chunked key is built on the primary serving its slot, from a
/// logical export and from an RDB read back through the scratch server.
#[test]
fn chunked_keys_are_rebuilt_on_the_primary_serving_their_slot() {
    let Some(source) = RedisServer::start() else { return };
    let Some(cluster) = cache_tests::RedisCluster::start() else { return };
    let names = ["{user:7}:big", "plain:big", "odd}name{", "a{}b}c", "{}{x}", "str}ing"];
    let mut conn = source.connection();
    let mut pipe = redis::pipe();
    for (n, name) in names.iter().enumerate() {
        if n == 5 {
            let mut noise = Noise(7);
            pipe.cmd("SET").arg(name).arg(noise.bytes(3 << 20)).ignore();
        }
        for chunk in (0..30).filter(|_| n < 5) {
            let mut cmd = redis::cmd(["HSET", "SADD", "RPUSH", "ZADD", "HSET"][n]);
            cmd.arg(name);
            for i in chunk * 1000..(chunk + 1) * 1000 {
                match n {
                    0 | 4 => cmd.arg(format!("field {i}")).arg(format!("value {i} of {name}")),
                    3 => cmd.arg(i).arg(format!("member {i}")),
                    _ => cmd.arg(format!("element {i} of {name}")),
                };
            }
            pipe.add_command(cmd).ignore();
        }
        pipe.cmd("PEXPIRE").arg(name).arg(3_600_000 * (n + 1)).ignore();
        pipe.cmd("SET").arg(format!("small:{n}")).arg(n).ignore();
    }
    pipe.query::<()>(&mut conn).unwrap();
    let before = snapshot(&source);
    let env = TestEnv::new();
    for method in ["logical", "bgsave"] {
        env.write_config(&format!(
            "[[redis]]\nname = \"main\"\nurl = \"{}\"\n[backup]\nredis_method = \"{method}\"\nthreads = 2\n",
            source.url()
        ));
        let id = env.run(BACKUP, &["create", "--only", "redis", "--format", "json"]).json()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for node in cluster.nodes() {
            let _: () = redis::cmd("FLUSHALL").query(&mut node.connection()).unwrap();
        }
        env.write_config(&format!("[[redis]]\nname = \"main\"\nurl = \"{}\"\n", cluster.nodes()[1].url()));
        let out = env.run(BACKUP, &["restore", &id, "--yes", "--format", "json"]);
        out.expect_code(0);
        assert_eq!(restored(&out.json()), (before.len() as u64, 0), "{method}: {}", out.dump());
        let mut after = BTreeMap::new();
        for node in cluster.nodes() {
            after.extend(snapshot(node));
        }
        assert_same(&before, &after, &format!("{method} → cluster"));
        for name in names {
            assert!(
                cluster.node_for(name).keys().contains(&name.to_owned()),
                "{method}: `{name}` on the wrong primary"
            );
        }
        // Restored over changed keys (REPLACE): each becomes the backup's again, its TTL too.
        let change = |name: &str, cmd: &mut redis::Cmd| {
            let _: () = cmd.query(&mut cluster.node_for(name).connection()).unwrap();
        };
        change(names[0], redis::cmd("HSET").arg(names[0]).arg("extra").arg("x"));
        change(names[0], redis::cmd("PERSIST").arg(names[0]));
        change(names[1], redis::cmd("DEL").arg(names[1]));
        change(names[2], redis::cmd("SET").arg(names[2]).arg("now a string"));
        change(names[3], redis::cmd("ZREM").arg(names[3]).arg("member 7"));
        change(names[4], redis::cmd("PEXPIRE").arg(names[4]).arg(1_000_000_000));
        change(names[5], redis::cmd("APPEND").arg(names[5]).arg("extra"));
        let out = env.run(BACKUP, &["restore", &id, "--yes", "--format", "json"]);
        out.expect_code(0);
        let mut after = BTreeMap::new();
        for node in cluster.nodes() {
            after.extend(snapshot(node));
        }
        assert_same(&before, &after, &format!("{method} → cluster, over changed keys"));
    }
}
