//! Off-host copies of the backups, against a real S3-compatible server (moto's server mode)
//! and a directory remote: uploads after verify with the manifest last, remote listing and
//! verification, retention there, and a restore from the remote alone.

use cache_tests::{RedisServer, S3Server, TestEnv};
use serde_json::Value;

use crate::BACKUP;

const SECRET: &str = "s3-secret-key-9f8e7d";

/// 3,000 keys of every shape, some with expiry times.
fn seed(redis: &RedisServer) {
    let mut conn = redis.connection();
    let mut pipe = redis::pipe();
    for i in 0..600 {
        pipe.cmd("SET").arg(format!("s:{i}")).arg(format!("value-{i}")).ignore();
        pipe.cmd("HSET").arg(format!("h:{i}")).arg("a").arg(i).arg("b").arg("x").ignore();
        pipe.cmd("RPUSH").arg(format!("l:{i}")).arg("1").arg("2").arg(i).ignore();
        pipe.cmd("SADD").arg(format!("set:{i}")).arg("m").arg(i).ignore();
        pipe.cmd("ZADD").arg(format!("z:{i}")).arg(1).arg("a").arg(i).arg("b").ignore();
        if i % 3 == 0 {
            pipe.cmd("PEXPIRE").arg(format!("s:{i}")).arg(3_600_000 + i).ignore();
        }
    }
    pipe.query::<()>(&mut conn).unwrap();
}

fn config(redis: &RedisServer, s3: &S3Server, dir: &std::path::Path, keep_last: u32) -> String {
    format!(
        "[[redis]]\nname = \"main\"\nurl = \"{}\"\n\
         [backup]\nkeep_last = {keep_last}\nkeep_daily = 0\nkeep_weekly = 0\n\
         [[backup.remote]]\nname = \"offsite\"\ntype = \"s3\"\nbucket = \"{}\"\nprefix = \"prod/cache\"\n\
         endpoint = \"{}\"\naccess_key_id = \"AKIATEST\"\nsecret_access_key = \"{SECRET}\"\ntimeout = \"30s\"\n\
         [[backup.remote]]\nname = \"nas\"\ntype = \"dir\"\npath = \"{}\"\n",
        redis.url(),
        s3.bucket(),
        s3.endpoint(),
        dir.display()
    )
}

fn ids(listing: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        listing["backups"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

#[test]
fn backups_go_off_host_and_come_back_from_the_remote_alone() {
    let Some(s3) = S3Server::start("cache-backups") else { return };
    let Some(redis) = RedisServer::start() else { return };
    seed(&redis);
    let env = TestEnv::new();
    let nas = env.path("nas");
    env.write_config(&config(&redis, &s3, &nas, 2));
    // Three backups (retention keeps the newest two locally and on each remote).
    let mut created = Vec::new();
    for _ in 0..3 {
        let out = env.run(BACKUP, &["create", "--only", "redis", "--format", "json"]);
        out.expect_code(0);
        let report = out.json();
        assert!(report["notes"].to_string().contains("remote/offsite: uploaded"), "{}", out.dump());
        assert!(!out.stdout.contains(SECRET) && !out.stderr.contains(SECRET), "{}", out.dump());
        created.push(report["id"].as_str().unwrap().to_owned());
        // Ids are by the second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    for remote in ["offsite", "nas"] {
        let listing = env.run(BACKUP, &["list", "--remote", remote, "--format", "json"]);
        listing.expect_code(0);
        assert_eq!(ids(&listing.json()), created[1..], "{remote}: {}", listing.dump());
    }
    // Every object is under the prefix, each backup's manifest with its files.
    let keys = s3.keys();
    assert!(keys.iter().all(|k| k.starts_with("prod/cache/")), "{keys:?}");
    for id in &created[1..] {
        assert!(keys.contains(&format!("prod/cache/{id}/manifest.json")), "{keys:?}");
        assert!(keys.contains(&format!("prod/cache/{id}/redis-main.rdb.gz")), "{keys:?}");
    }
    assert!(!keys.iter().any(|k| k.contains(&created[0])), "retention applies remotely: {keys:?}");
    // An upload cut short (files, no manifest) is never listed as a backup.
    let half = "prod/cache/20990101T000000Z/redis-main.rdb.gz";
    s3.put_object(half, b"half");
    let listing = env.run(BACKUP, &["list", "--remote", "offsite", "--format", "json"]).json();
    assert_eq!(ids(&listing), created[1..]);
    assert_eq!(listing["incomplete"], serde_json::json!(["20990101T000000Z"]));
    // Verified by download; a damaged copy fails, naming its file.
    env.run(BACKUP, &["verify", "--remote", "offsite"]).expect_code(0);
    env.run(BACKUP, &["verify", "--remote", "nas", &created[1]]).expect_code(0);
    s3.put_object(&format!("prod/cache/{}/redis-main.rdb.gz", created[1]), b"not the dump");
    let out = env.run(BACKUP, &["verify", "--remote", "offsite", &created[1], "--format", "json"]);
    out.expect_code(1);
    assert!(out.stdout.contains("redis-main.rdb.gz") && out.stdout.contains("does not match"), "{}", out.dump());
    // A flipped byte on the directory remote too.
    let on_nas = nas.join(&created[1]).join("redis-main.rdb.gz");
    let mut bytes = std::fs::read(&on_nas).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&on_nas, bytes).unwrap();
    let out = env.run(BACKUP, &["verify", "--remote", "nas", &created[1]]);
    out.expect_code(1);
    assert!(out.stdout.contains("does not match"), "{}", out.dump());
    // The host loses its backups and its data: the remote alone brings the dataset back.
    let digest = redis.digest();
    std::fs::remove_dir_all(env.state_dir().join("backups")).unwrap();
    let Some(fresh) = RedisServer::start() else { return };
    env.write_config(&config(&fresh, &s3, &nas, 2));
    let out = env.run(BACKUP, &["restore", "--from-remote", "offsite", "--yes", "--format", "json"]);
    out.expect_code(0);
    assert_eq!(fresh.digest(), digest, "{}", out.dump());
    assert_eq!(fresh.keys().len(), 3000);
    // What came down is a local backup again, private as any, which verifies.
    use std::os::unix::fs::PermissionsExt as _;
    let fetched = env.state_dir().join("backups").join(&created[2]);
    for entry in std::fs::read_dir(&fetched).unwrap().map(Result::unwrap) {
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", entry.path().display());
    }
    let local = env.run(BACKUP, &["list", "--format", "json"]).json();
    assert_eq!(ids(&local), [created[2].clone()]);
    env.run(BACKUP, &["verify"]).expect_code(0);
    // An unknown remote is a usage error naming the configured ones.
    let out = env.run(BACKUP, &["list", "--remote", "elsewhere"]);
    out.expect_code(2);
    assert!(out.stderr.contains("offsite, nas"), "{}", out.dump());
}

#[test]
fn a_remote_that_refuses_the_upload_makes_the_run_partial_and_keeps_the_local_backup() {
    let Some(s3) = S3Server::start("cache-backups") else { return };
    let Some(redis) = RedisServer::start() else { return };
    seed(&redis);
    let env = TestEnv::new();
    let nas = env.path("nas");
    // A bucket that does not exist: every upload is refused.
    let text = config(&redis, &s3, &nas, 7).replace("bucket = \"cache-backups\"", "bucket = \"no-such-bucket\"");
    env.write_config(&text);
    let out = env.run(BACKUP, &["create", "--only", "redis", "--format", "json"]);
    out.expect_code(1);
    let report = out.json();
    assert_eq!(report["outcome"], "partial", "{}", out.dump());
    assert!(report["errors"].to_string().contains("remote/offsite"), "{}", out.dump());
    assert!(report["notes"].to_string().contains("remote/nas: uploaded"), "{}", out.dump());
    assert!(!out.stdout.contains(SECRET) && !out.stderr.contains(SECRET));
    // The local backup is whole and listed.
    let local = env.run(BACKUP, &["list", "--format", "json"]).json();
    assert_eq!(ids(&local).len(), 1);
    env.run(BACKUP, &["verify"]).expect_code(0);
}

/// An age key pair made by the real `age-keygen`: (identity file, recipient).
pub(crate) fn age_key(env: &TestEnv, name: &str) -> Option<(std::path::PathBuf, String)> {
    if cache_tests::find_binary("age-keygen", &[]).is_none() {
        cache_tests::missing("age-keygen (Debian package age)")?;
    }
    let path = env.path(name);
    let out = std::process::Command::new("age-keygen").arg("-o").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = std::process::Command::new("age-keygen").arg("-y").arg(&path).output().unwrap();
    Some((path, String::from_utf8(public.stdout).unwrap().trim().to_owned()))
}

#[test]
fn encrypted_backups_hold_ciphertext_only_and_restore_only_with_the_identity() {
    let Some(redis) = RedisServer::start() else { return };
    seed(&redis);
    let env = TestEnv::new();
    let Some((key, recipient)) = age_key(&env, "backup.key") else { return };
    let Some((other_key, _)) = age_key(&env, "other.key") else { return };
    let nas = env.path("nas");
    let config = |url: &str| {
        format!(
            "[[redis]]\nname = \"main\"\nurl = \"{url}\"\n[backup]\nencrypt_to = [\"{recipient}\"]\n\
             [[backup.remote]]\nname = \"nas\"\ntype = \"dir\"\npath = \"{}\"\n",
            nas.display()
        )
    };
    env.write_config(&config(&redis.url()));
    let out = env.run(BACKUP, &["create", "--only", "redis", "--format", "json"]);
    out.expect_code(0);
    let id = out.json()["id"].as_str().unwrap().to_owned();
    // Every stored file, here and on the remote, is an age file; the manifest says so.
    let dir = env.state_dir().join("backups").join(&id);
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    for copy in [&dir, &nas.join(&id)] {
        for entry in std::fs::read_dir(copy).unwrap().map(Result::unwrap) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "manifest.json" {
                continue;
            }
            assert!(name.ends_with(".age"), "{name} in {}", copy.display());
            let head = std::fs::read(entry.path()).unwrap();
            assert!(head.starts_with(b"age-encryption.org/v1\n"), "{name} is not an age file");
        }
    }
    let file = &manifest["files"][0];
    assert_eq!(file["encrypted"]["scheme"], "age");
    assert_eq!(file["encrypted"]["recipients"][0], recipient.as_str());
    // The real `age` decrypts it to the plaintext the manifest names.
    let sealed = dir.join(file["path"].as_str().unwrap());
    let out = std::process::Command::new("age").arg("-d").arg("-i").arg(&key).arg(&sealed).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&out.stdout))
    };
    assert_eq!(digest, file["encrypted"]["plain_sha256"].as_str().unwrap());
    assert_eq!(out.stdout.len() as u64, file["encrypted"]["plain_bytes"].as_u64().unwrap());
    // Verify needs no key: sizes and SHA-256 of what is stored.
    env.run(BACKUP, &["verify"]).expect_code(0);
    // A restore needs the identity, the right one.
    let Some(fresh) = RedisServer::start() else { return };
    env.write_config(&config(&fresh.url()));
    let out = env.run(BACKUP, &["restore", "--yes"]);
    assert_ne!(out.code(), 0);
    assert!(out.stderr.contains("encrypted") && out.stderr.contains("--identity"), "{}", out.dump());
    let out = env.run(BACKUP, &["restore", "--yes", "--identity", other_key.to_str().unwrap()]);
    assert_ne!(out.code(), 0);
    assert!(out.stderr.contains("decrypting") && out.stderr.contains(".age"), "{}", out.dump());
    assert!(fresh.keys().is_empty());
    let out = env.run(BACKUP, &["restore", "--yes", "--identity", key.to_str().unwrap()]);
    out.expect_code(0);
    assert_eq!(fresh.digest(), redis.digest(), "{}", out.dump());
    // No plaintext is left behind.
    let left: Vec<String> = std::fs::read_dir(env.state_dir().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, std::slice::from_ref(&id), "{left:?}");
    // A recipient that is no key is refused at load, naming it.
    env.write_config(&config(&fresh.url()).replace(&recipient, "age1notakey"));
    let out = env.run(BACKUP, &["list"]);
    out.expect_code(3);
    assert!(out.stderr.contains("backup.encrypt_to[0]"), "{}", out.dump());
}
