//! Off-host copies: each backup uploaded to S3-compatible object storage or another directory
//! (`[[backup.remote]]`), through the `object_store` crate.
//!
//! A remote holds the backup directory's layout under its prefix: `<prefix>/<id>/<file>` and
//! `<prefix>/<id>/manifest.json`. The manifest goes last, after every file it names arrived
//! whole (S3 checks each upload's SHA-256, `x-amz-checksum-sha256`, and the size is read back),
//! so an upload cut short is never listed: a remote backup is one whose manifest is there.
//! Deleting goes the other way, the manifest first. A download checks every file's size and
//! SHA-256 against the manifest before anything uses it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use cache_core::config::{RemoteKind, RemoteTarget};
use futures::StreamExt as _;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload, WriteMultipart};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::manifest::Manifest;
use crate::store::{Backup, MANIFEST};

/// Files up to this size go in one request; bigger ones in parts of [`PART_BYTES`].
const SINGLE_PUT_BYTES: u64 = 32 << 20;
/// Part size of a multipart upload.
const PART_BYTES: usize = 16 << 20;

/// One configured remote, opened.
pub struct Remote {
    /// Its name.
    pub name: String,
    store: Arc<dyn ObjectStore>,
    /// The key prefix everything is under (empty: the root).
    prefix: String,
    /// Where it is, for messages (no secret).
    pub location: String,
}

/// A backup a remote holds: its manifest was uploaded.
pub struct RemoteBackup {
    /// The backup's id.
    pub id: String,
    /// Its manifest.
    pub manifest: Manifest,
}

/// What a remote listing found.
pub struct Listing {
    /// Complete copies, oldest first.
    pub backups: Vec<RemoteBackup>,
    /// Ids with files but no manifest: uploads cut short (or deletions), never used.
    pub incomplete: Vec<String>,
}

impl Remote {
    /// Opens `target` (no request is made yet).
    pub fn open(target: &RemoteTarget) -> anyhow::Result<Self> {
        let options = object_store::ClientOptions::new()
            .with_timeout(target.timeout)
            .with_connect_timeout(cache_core::clients::http::CONNECT_TIMEOUT)
            .with_allow_http(true);
        let retry = object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: target.timeout,
            ..object_store::RetryConfig::default()
        };
        let (store, location): (Arc<dyn ObjectStore>, String) = match target.kind {
            RemoteKind::S3 => {
                let bucket = target.bucket.as_deref().context("an s3 remote needs its bucket")?;
                let mut builder = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(&target.region)
                    .with_access_key_id(target.access_key_id.as_deref().unwrap_or_default())
                    .with_secret_access_key(target.secret_access_key.as_ref().map(|s| s.expose()).unwrap_or_default())
                    .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
                    .with_client_options(options)
                    .with_retry(retry)
                    .with_http_connector(object_store::client::ReqwestConnector::default());
                let mut location = format!("s3://{bucket}");
                if let Some(endpoint) = &target.endpoint {
                    builder = builder.with_endpoint(endpoint.expose()).with_virtual_hosted_style_request(false);
                    location = format!("{location} at {endpoint}");
                }
                let store = builder.build().with_context(|| format!("remote `{}`", target.name))?;
                (Arc::new(store), location)
            }
            RemoteKind::Dir => {
                let path = target.path.as_deref().context("a dir remote needs its path")?;
                cache_core::state::create_private_dir(path)
                    .with_context(|| format!("remote `{}`: creating `{}`", target.name, path.display()))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(path)
                    .with_context(|| format!("remote `{}`: `{}`", target.name, path.display()))?;
                (Arc::new(store), path.display().to_string())
            }
        };
        Ok(Self { name: target.name.clone(), store, prefix: target.prefix.trim_matches('/').to_owned(), location })
    }

    fn key(&self, parts: &[&str]) -> Key {
        let mut all: Vec<&str> = Vec::new();
        if !self.prefix.is_empty() {
            all.extend(self.prefix.split('/'));
        }
        all.extend(parts);
        Key::from_iter(all)
    }

    /// Uploads `backup`: every file, each checked, then its manifest.
    pub async fn upload(&self, backup: &Backup) -> anyhow::Result<u64> {
        let id = &backup.manifest.id;
        let mut bytes = 0;
        for file in &backup.manifest.files {
            let local = backup.dir.join(&file.path);
            let key = self.key(&[id, &file.path]);
            self.put_file(&local, &key).await.with_context(|| format!("uploading `{}`", file.path))?;
            let meta = self.store.head(&key).await.with_context(|| format!("reading back `{}`", file.path))?;
            if meta.size != file.bytes {
                bail!("`{}` arrived as {} bytes of {}", file.path, meta.size, file.bytes);
            }
            bytes += file.bytes;
        }
        let manifest = std::fs::read(backup.dir.join(MANIFEST))
            .with_context(|| format!("reading `{}`", backup.dir.join(MANIFEST).display()))?;
        self.store
            .put(&self.key(&[id, MANIFEST]), PutPayload::from(manifest))
            .await
            .context("uploading the manifest")?;
        Ok(bytes)
    }

    async fn put_file(&self, local: &Path, key: &Key) -> anyhow::Result<()> {
        let size = std::fs::metadata(local).with_context(|| format!("reading `{}`", local.display()))?.len();
        let mut file = tokio::fs::File::open(local).await.with_context(|| format!("opening `{}`", local.display()))?;
        if size <= SINGLE_PUT_BYTES {
            let data = std::fs::read(local).with_context(|| format!("reading `{}`", local.display()))?;
            self.store.put(key, PutPayload::from(data)).await?;
            return Ok(());
        }
        let upload = self.store.put_multipart(key).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf)
                .await
                .with_context(|| format!("reading `{}`", local.display()))?;
            if n == 0 {
                break;
            }
            // At most two parts in flight: memory stays a few parts, whatever the file's size.
            writer.wait_for_capacity(2).await?;
            writer.write(&buf[..n]);
        }
        writer.finish().await?;
        Ok(())
    }

    /// The backups the remote holds (those whose manifest is there), oldest first, and the ids
    /// with files but no manifest.
    pub async fn list(&self) -> anyhow::Result<Listing> {
        let base = (!self.prefix.is_empty()).then(|| self.key(&[]));
        let found = self.store.list_with_delimiter(base.as_ref()).await.context("listing")?;
        let mut listing = Listing { backups: Vec::new(), incomplete: Vec::new() };
        let mut ids: Vec<String> =
            found.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_owned)).collect();
        ids.sort();
        for id in ids {
            match self.store.get(&self.key(&[&id, MANIFEST])).await {
                Ok(got) => {
                    let bytes = got.bytes().await.with_context(|| format!("reading `{id}/{MANIFEST}`"))?;
                    let manifest: Manifest = serde_json::from_slice(&bytes)
                        .with_context(|| format!("`{id}/{MANIFEST}` on remote `{}` is not a manifest", self.name))?;
                    listing.backups.push(RemoteBackup { id, manifest });
                }
                Err(object_store::Error::NotFound { .. }) => listing.incomplete.push(id),
                Err(e) => return Err(anyhow::Error::new(e).context(format!("reading `{id}/{MANIFEST}`"))),
            }
        }
        Ok(listing)
    }

    /// Downloads backup `id` into the new directory `into` (files, then the manifest), checking
    /// each file's size and SHA-256 against the manifest; a mismatch fails naming the file.
    pub async fn download(&self, id: &str, manifest: &Manifest, into: &Path) -> anyhow::Result<PathBuf> {
        cache_core::state::create_private_dir(into).with_context(|| format!("creating `{}`", into.display()))?;
        for file in &manifest.files {
            if file.path.contains('/') || file.path.starts_with('.') {
                bail!("the manifest names `{}`, which is not a file of the backup's own directory", file.path);
            }
            let local = into.join(&file.path);
            let got = self.store.get(&self.key(&[id, &file.path])).await.with_context(|| format!("`{}`", file.path))?;
            let mut stream = got.into_stream();
            let mut out =
                // Private, as every file of a backup is (the configuration archive holds secrets).
                tokio::fs::File::from_std(cache_core::archive::private_file(&local)?);
            let (mut hash, mut size) = (Sha256::new(), 0u64);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.with_context(|| format!("downloading `{}`", file.path))?;
                hash.update(&chunk);
                size += chunk.len() as u64;
                out.write_all(&chunk).await.with_context(|| format!("writing `{}`", local.display()))?;
            }
            out.sync_all().await.with_context(|| format!("writing `{}`", local.display()))?;
            let sha = hex::encode(hash.finalize());
            if size != file.bytes || sha != file.sha256 {
                bail!(
                    "`{}` on remote `{}` does not match its manifest ({size} bytes, SHA-256 {sha}; the manifest says {} bytes, {})",
                    file.path,
                    self.name,
                    file.bytes,
                    file.sha256
                );
            }
        }
        let text = serde_json::to_vec_pretty(manifest)?;
        cache_core::state::write_atomic(&into.join(MANIFEST), &text)?;
        Ok(into.to_path_buf())
    }

    /// Deletes backup `id`: its manifest first (so it is never listed half-deleted), then its
    /// files.
    pub async fn delete(&self, id: &str) -> anyhow::Result<()> {
        match self.store.delete(&self.key(&[id, MANIFEST])).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("deleting `{id}/{MANIFEST}`"))),
        }
        let under = self.key(&[id]);
        let keys: Vec<Key> = self
            .store
            .list(Some(&under))
            .map(|m| m.map(|m| m.location))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .with_context(|| format!("listing `{id}`"))?;
        for key in keys {
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(anyhow::Error::new(e).context(format!("deleting `{key}`"))),
            }
        }
        Ok(())
    }
}

/// The remote named `name` in the configuration, opened.
pub fn named(config: &cache_core::config::Config, name: &str) -> anyhow::Result<Remote> {
    match config.backup.remotes.iter().find(|r| r.name == name) {
        Some(target) => Remote::open(target),
        None => Err(cache_core::error::UsageError(format!(
            "no remote `{name}` in the configuration (configured: {})",
            if config.backup.remotes.is_empty() {
                "none; add a [[backup.remote]]".to_owned()
            } else {
                config.backup.remotes.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
            }
        ))
        .into()),
    }
}

/// The remote backup `selector` names: `latest` (the newest complete one: a partial backup
/// is never chosen for it), an id, or a date (the newest complete one of that day).
pub fn find<'l>(listing: &'l Listing, selector: &str, remote: &str) -> anyhow::Result<&'l RemoteBackup> {
    let complete = |b: &&RemoteBackup| !b.manifest.is_partial();
    let found = if selector == "latest" {
        listing.backups.iter().rev().find(complete)
    } else if let Ok(day) = chrono::NaiveDate::parse_from_str(selector, "%Y-%m-%d") {
        listing.backups.iter().rev().filter(complete).find(|b| b.manifest.created_at.date_naive() == day)
    } else {
        listing.backups.iter().find(|b| b.id == selector)
    };
    match found {
        Some(b) => Ok(b),
        None if listing.backups.is_empty() => bail!("remote `{remote}` holds no backup"),
        None => {
            bail!("no backup on remote `{remote}` matches `{selector}` (try `cache-backup list --remote {remote}`)")
        }
    }
}

/// What the remotes did after a create: notes, and errors (each makes the run partial).
#[derive(Default)]
pub struct Copied {
    /// One line per remote: uploaded, and what retention removed there.
    pub notes: Vec<String>,
    /// One line per remote that failed.
    pub errors: Vec<String>,
}

/// After a complete backup verified: uploads it to every remote, then applies the retention
/// rules there (never removing the newest complete copy, nor the one just uploaded).
pub async fn copy_everywhere(
    config: &cache_core::config::Config,
    backup: &Backup,
    policy: crate::retention::Policy,
) -> Copied {
    let mut copied = Copied::default();
    for target in &config.backup.remotes {
        let done = async {
            let remote = Remote::open(target)?;
            let bytes = remote.upload(backup).await?;
            let removed = prune_remote(&remote, policy, &backup.manifest.id).await?;
            anyhow::Ok((remote.location, bytes, removed))
        };
        match done.await {
            Ok((location, bytes, removed)) => copied.notes.push(format!(
                "remote/{}: uploaded {} to {location}{}",
                target.name,
                cache_core::output::bytes(bytes),
                if removed.is_empty() { String::new() } else { format!("; retention removed {}", removed.join(", ")) }
            )),
            Err(e) => copied.errors.push(format!("remote/{}: {e:#}", target.name)),
        }
    }
    copied
}

/// Deletes the remote's backups no retention rule keeps; a copy there counts as verified (its
/// files were checked on arrival). Never `keep`, never the newest complete copy.
async fn prune_remote(remote: &Remote, policy: crate::retention::Policy, keep: &str) -> anyhow::Result<Vec<String>> {
    let listing = remote.list().await?;
    let candidates: Vec<crate::retention::Candidate> = listing
        .backups
        .iter()
        .map(|b| crate::retention::Candidate {
            id: b.id.clone(),
            created_at: b.manifest.created_at,
            verified: !b.manifest.is_partial(),
            complete: !b.manifest.is_partial(),
            holds: b.manifest.sources.iter().map(|s| format!("{}/{}", s.tier, s.target)).collect(),
        })
        .collect();
    let mut removed = Vec::new();
    for decision in crate::retention::plan(&candidates, policy, chrono::Utc::now()) {
        if decision.keep || decision.id == keep {
            continue;
        }
        remote.delete(&decision.id).await?;
        removed.push(decision.id);
    }
    Ok(removed)
}

/// `cache-backup list --remote NAME`.
pub async fn list(ctx: &cache_core::app::Context, name: &str) -> anyhow::Result<u8> {
    let remote = named(&ctx.config, name)?;
    let listing = remote.list().await.with_context(|| format!("remote `{name}` ({})", remote.location))?;
    let printer = &ctx.printer;
    if printer.format() == cache_core::output::Format::Json {
        let backups: Vec<serde_json::Value> = listing
            .backups
            .iter()
            .rev()
            .map(|b| {
                serde_json::json!({
                    "id": b.id,
                    "created_at": b.manifest.created_at,
                    "bytes": b.manifest.files.iter().map(|f| f.bytes).sum::<u64>(),
                    "files": b.manifest.files.len(),
                    "partial": b.manifest.is_partial(),
                })
            })
            .collect();
        printer.json(&serde_json::json!({ "remote": name, "location": remote.location, "backups": backups, "incomplete": listing.incomplete }))?;
        return Ok(cache_core::exit::SUCCESS);
    }
    let mut table = printer.table();
    table.set_header(["ID", "Created", "Size", "Files"]);
    for b in listing.backups.iter().rev() {
        let size: u64 = b.manifest.files.iter().map(|f| f.bytes).sum();
        let partial = if b.manifest.is_partial() { " (PARTIAL)" } else { "" };
        table.add_row(vec![
            format!("{}{partial}", b.id),
            b.manifest.created_at.format("%Y-%m-%d %H:%M").to_string(),
            cache_core::output::bytes(size),
            b.manifest.files.len().to_string(),
        ]);
    }
    let mut text = format!("{} backups on remote `{name}` ({})\n{table}\n", listing.backups.len(), remote.location);
    for id in &listing.incomplete {
        text.push_str(&format!("incomplete (files without a manifest: an upload cut short): {id}\n"));
    }
    printer.info(&text)?;
    Ok(cache_core::exit::SUCCESS)
}

/// `cache-backup verify --remote NAME [BACKUP]`: downloads the backup into a temporary
/// directory and checks every file (size, SHA-256, gzip integrity) against its manifest.
pub async fn verify(
    ctx: &cache_core::app::Context,
    name: &str,
    selector: &str,
) -> anyhow::Result<cache_core::app::JobResult> {
    use cache_core::runs::Outcome;
    let remote = named(&ctx.config, name)?;
    let listing = remote.list().await.with_context(|| format!("remote `{name}` ({})", remote.location))?;
    let chosen = find(&listing, selector, name)?;
    let scratch = tempfile::tempdir().context("creating a temporary directory")?;
    let into = scratch.path().join(&chosen.id);
    let mut problems: Vec<String> = match remote.download(&chosen.id, &chosen.manifest, &into).await {
        Ok(dir) => cache_core::archive::verify(&dir, &chosen.manifest)
            .into_iter()
            .map(|p| format!("{}: {}", p.path, p.problem))
            .collect(),
        Err(e) => vec![format!("{e:#}")],
    };
    problems.iter_mut().for_each(|p| *p = cache_core::messages::clip(p, cache_core::messages::MAX_LINE));
    let ok = problems.is_empty();
    let printer = &ctx.printer;
    if printer.format() == cache_core::output::Format::Json {
        printer.json(&serde_json::json!({ "remote": name, "id": chosen.id, "ok": ok, "problems": problems }))?;
    } else {
        let mut text = if ok {
            format!(
                "remote `{name}`: backup {} ok: {} files downloaded and checked\n",
                chosen.id,
                chosen.manifest.files.len()
            )
        } else {
            format!("remote `{name}`: backup {} FAILED verification\n", chosen.id)
        };
        for p in &problems {
            text.push_str(&format!("  {p}\n"));
        }
        printer.always(&text)?;
    }
    Ok(cache_core::app::JobResult {
        outcome: if ok { Outcome::Success } else { Outcome::Failed },
        exit_code: if ok { cache_core::exit::SUCCESS } else { cache_core::exit::PARTIAL },
        summary: serde_json::json!({ "remote": name, "id": chosen.id, "ok": ok }),
    })
}

/// `restore --from-remote NAME`: brings the chosen backup from the remote into the local
/// backup directory (checked file by file, built under a partial name and renamed into place,
/// as a create does), and returns its id for the restore to use. A backup already there
/// locally is used as it is.
pub async fn fetch(
    config: &cache_core::config::Config,
    store: &crate::store::Store,
    name: &str,
    selector: &str,
) -> anyhow::Result<String> {
    let remote = named(config, name)?;
    let listing = remote.list().await.with_context(|| format!("remote `{name}` ({})", remote.location))?;
    let chosen = find(&listing, selector, name)?;
    if store.backups()?.iter().any(|b| b.manifest.id == chosen.id) {
        return Ok(chosen.id.clone());
    }
    let partial = store.dir().join(format!("{}{}", crate::store::PARTIAL_PREFIX, chosen.id));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).with_context(|| format!("removing `{}`", partial.display()))?;
    }
    remote.download(&chosen.id, &chosen.manifest, &partial).await?;
    let dir = store.dir().join(&chosen.id);
    std::fs::rename(&partial, &dir).with_context(|| format!("moving the download to `{}`", dir.display()))?;
    Ok(chosen.id.clone())
}
