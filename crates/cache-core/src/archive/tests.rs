use std::io::Write;

use super::*;

fn write_gz(path: &Path, data: &[u8], threads: usize) {
    let mut gz = gzip_writer(File::create(path).unwrap(), 6, threads);
    gz.write_all(data).unwrap();
    gz.finish().unwrap();
}

#[test]
fn parallel_gzip_round_trips_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> =
        (0..3_000_000u32).flat_map(|i| format!("line {i} of a log\n").into_bytes()).take(5 << 20).collect();
    write_gz(&dir.path().join("a.gz"), &data, 2);
    let mut back = Vec::new();
    flate2::read::MultiGzDecoder::new(File::open(dir.path().join("a.gz")).unwrap()).read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
    let (sha, bytes) = sha256_file(&dir.path().join("a.gz")).unwrap();
    let manifest = Manifest {
        schema_version: 1,
        id: "x".into(),
        created_at: Utc::now(),
        host: "h".into(),
        tool_version: "0".into(),
        sources: vec![],
        files: vec![ManifestFile::plain("a.gz".into(), "state", (sha, bytes))],
        failed: vec![],
        configured: vec![],
    };
    assert_eq!(verify(dir.path(), &manifest), vec![]);
    // One flipped byte in the middle: the checksum catches it.
    let mut raw = std::fs::read(dir.path().join("a.gz")).unwrap();
    let middle = raw.len() / 2;
    raw[middle] ^= 0x40;
    std::fs::write(dir.path().join("a.gz"), &raw).unwrap();
    let problems = verify(dir.path(), &manifest);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].problem.contains("SHA-256"), "{problems:?}");
}

#[test]
fn hashing_writer_matches_sha256_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let mut w = HashingWriter::new(File::create(&path).unwrap());
    w.write_all(b"hello world").unwrap();
    let (sha, bytes, _) = w.finish();
    assert_eq!(bytes, 11);
    assert_eq!(sha, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
    assert_eq!(sha256_file(&path).unwrap(), (sha, 11));
}

#[test]
fn rdb_magic_and_gzip_damage_are_found() {
    let dir = tempfile::tempdir().unwrap();
    write_gz(&dir.path().join("dump.rdb.gz"), b"NOT AN RDB", 1);
    let (sha, bytes) = sha256_file(&dir.path().join("dump.rdb.gz")).unwrap();
    let file = ManifestFile::plain("dump.rdb.gz".into(), "redis-rdb", (sha, bytes));
    let manifest = Manifest {
        schema_version: 1,
        id: "x".into(),
        created_at: Utc::now(),
        host: "h".into(),
        tool_version: "0".into(),
        sources: vec![],
        files: vec![file],
        failed: vec![],
        configured: vec![],
    };
    assert!(verify(dir.path(), &manifest)[0].problem.contains("REDIS magic"));
    // Truncated gzip with a matching manifest: the checksum passes, decompression does not.
    let raw = std::fs::read(dir.path().join("dump.rdb.gz")).unwrap();
    std::fs::write(dir.path().join("cut.gz"), &raw[..raw.len() - 6]).unwrap();
    let (sha, bytes) = sha256_file(&dir.path().join("cut.gz")).unwrap();
    let manifest = Manifest { files: vec![ManifestFile::plain("cut.gz".into(), "state", (sha, bytes))], ..manifest };
    assert!(verify(dir.path(), &manifest)[0].problem.contains("gzip data is damaged"));
}

/// An archive entry: name, kind, link target.
type Entry<'a> = (&'a str, tar::EntryType, Option<&'a str>);

fn tarball(path: &Path, entries: &[Entry<'_>]) {
    let gz = flate2::write::GzEncoder::new(File::create(path).unwrap(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (name, kind, link) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        let data: &[u8] = if kind.is_file() { b"payload" } else { b"" };
        header.set_size(data.len() as u64);
        // Write names raw: `set_path` would refuse the malicious ones we need.
        let name_field = &mut header.as_old_mut().name;
        name_field[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            header.set_link_name(link).unwrap();
        }
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}

#[test]
fn extraction_refuses_escapes_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    let cases: &[(&str, &[Entry<'_>], &str)] = &[
        (
            "dotdot",
            &[("ok.txt", tar::EntryType::Regular, None), ("../evil.txt", tar::EntryType::Regular, None)],
            "`..`",
        ),
        ("absolute", &[("/tmp/evil-abs.txt", tar::EntryType::Regular, None)], "absolute"),
        (
            "symlink",
            &[("link", tar::EntryType::Symlink, Some("/etc")), ("link/passwd", tar::EntryType::Regular, None)],
            "leads outside",
        ),
        ("updown", &[("a/link", tar::EntryType::Symlink, Some("../../outside"))], "leads outside"),
        ("hardlink", &[("h", tar::EntryType::Link, Some("/etc/passwd"))], "leads outside"),
        (
            "chained links",
            &[
                ("p/q/r", tar::EntryType::Symlink, Some("../..")),
                ("e", tar::EntryType::Symlink, Some("p/q/r/..")),
                ("e/evil.txt", tar::EntryType::Regular, None),
            ],
            "through the archive's links",
        ),
    ];
    for (name, entries, why) in cases {
        let archive = dir.path().join(format!("{name}.tar.gz"));
        tarball(&archive, entries);
        let err = extract_tar_gz(&archive, &dest).unwrap_err().to_string();
        assert!(err.contains(why), "{name}: {err}");
        assert!(!dest.exists(), "{name}: something was written");
    }
    assert!(!dir.path().join("evil.txt").exists());
    assert!(!Path::new("/tmp/evil-abs.txt").exists());
    // A link that stays inside is fine.
    let archive = dir.path().join("fine.tar.gz");
    tarball(&archive, &[("d/file", tar::EntryType::Regular, None), ("d/link", tar::EntryType::Symlink, Some("file"))]);
    assert_eq!(extract_tar_gz(&archive, &dest).unwrap().len(), 2);
    assert_eq!(std::fs::read(dest.join("d/link")).unwrap(), b"payload");
}

#[test]
fn directories_are_archived_without_following_links() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("state");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/a.json"), b"{}").unwrap();
    std::os::unix::fs::symlink("/etc", src.join("etc-link")).unwrap();
    let archive = dir.path().join("state.tar.gz");
    let items = [("state".to_owned(), src.clone())];
    let gz = gzip_writer(File::create(&archive).unwrap(), 6, 2);
    let mut gz = tar_paths(gz, &items, &[]).unwrap();
    gz.finish().unwrap();
    // The link to /etc is stored as a link, and extraction refuses it as an escape.
    let err = extract_tar_gz(&archive, &dir.path().join("out")).unwrap_err().to_string();
    assert!(err.contains("state/etc-link") && err.contains("leads outside"), "{err}");
    std::fs::remove_file(src.join("etc-link")).unwrap();
    // GzFile: the same bytes, hashed while written.
    std::fs::remove_file(&archive).unwrap();
    let gz = GzFile::create(&archive, 6, 1).unwrap();
    let (sha, bytes) = tar_paths(gz, &items, &[]).unwrap().finish().unwrap();
    assert_eq!(sha256_file(&archive).unwrap(), (sha, bytes));
    let paths = extract_tar_gz(&archive, &dir.path().join("out")).unwrap();
    assert!(paths.iter().any(|p| p.ends_with("sub/a.json")));
    assert_eq!(std::fs::read(dir.path().join("out/state/sub/a.json")).unwrap(), b"{}");
}

#[test]
fn extraction_is_all_or_nothing_and_drops_setuid_bits() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    // The target already holds a symlink where the archive has a file: nothing is extracted,
    // not even the entries before it.
    let dest = dir.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), dest.join("b.txt")).unwrap();
    let archive = dir.path().join("two.tar.gz");
    tarball(&archive, &[("a.txt", tar::EntryType::Regular, None), ("b.txt", tar::EntryType::Regular, None)]);
    let err = extract_tar_gz(&archive, &dest).unwrap_err().to_string();
    assert!(err.contains("already holds `b.txt`"), "{err}");
    assert!(!dest.join("a.txt").exists() && !dir.path().join("elsewhere").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".extract-"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind");
    // A setuid entry comes out without the bit.
    let archive = dir.path().join("suid.tar.gz");
    let gz = flate2::write::GzEncoder::new(File::create(&archive).unwrap(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_path("tool").unwrap();
    header.set_mode(0o4777);
    header.set_size(7);
    header.set_cksum();
    builder.append(&header, &b"payload"[..]).unwrap();
    builder.into_inner().unwrap().finish().unwrap();
    let fresh = dir.path().join("fresh");
    extract_tar_gz(&archive, &fresh).unwrap();
    assert_eq!(std::fs::metadata(fresh.join("tool")).unwrap().permissions().mode() & 0o7777, 0o777);
}

#[test]
fn a_manifest_lacking_a_configured_source_is_partial_and_old_ones_read_as_they_were() {
    let old = r#"{"schema_version":1,"id":"x","created_at":"2026-01-01T00:00:00Z","host":"h","tool_version":"0",
        "sources":[],"files":[],"failed":[{"tier":"postgres","target":"main","error":"down"}]}"#;
    let old: Manifest = serde_json::from_str(old).unwrap();
    assert!(old.configured.is_empty() && old.is_partial());
    assert_eq!(old.missing()[0].label(), "postgres/main");
    let older = r#"{"schema_version":1,"id":"x","created_at":"2026-01-01T00:00:00Z","host":"h","tool_version":"0",
        "sources":[],"files":[]}"#;
    assert!(!serde_json::from_str::<Manifest>(older).unwrap().is_partial());
    let taken = |target: &str, error: Option<&str>| ManifestTaken {
        tier: "redis".into(),
        target: target.into(),
        result: if error.is_some() { "failed" } else { "ok" }.into(),
        error: error.map(str::to_owned),
    };
    let mut manifest =
        Manifest { configured: vec![taken("a", None), taken("b", Some("refused"))], failed: vec![], ..old };
    assert_eq!(manifest.missing().len(), 1);
    assert_eq!((manifest.missing()[0].label(), manifest.missing()[0].error.as_str()), ("redis/b".into(), "refused"));
    manifest.configured.pop();
    assert!(!manifest.is_partial());
}
