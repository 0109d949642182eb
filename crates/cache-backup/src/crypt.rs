//! Encryption at rest (`backup.encrypt_to`): every file of a backup encrypted to age recipients
//! (<https://age-encryption.org/v1>, X25519), so that neither the backup directory nor a remote
//! copy holds a readable dataset; only a restore needs the identity.
//!
//! Each file `F` becomes `F.age`, streamed through the encryptor (the plaintext removed once the
//! ciphertext is written and synced). Its manifest entry keeps the ciphertext's size and SHA-256
//! (so `verify` and a remote's checks need no key) and records the scheme, the recipients and
//! the plaintext's size and SHA-256. A restore decrypts into a private temporary directory and
//! checks each plaintext against those before anything uses it. The files are standard age
//! files: `age -d -i key.txt F.age` decrypts them too.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use anyhow::{Context as _, bail};
use cache_core::archive::{Encrypted, sha256_file};
use sha2::{Digest as _, Sha256};

use crate::manifest::{File, Manifest};
use crate::store::Backup;

/// The scheme recorded in manifests.
pub const SCHEME: &str = "age";

/// Parses the configured recipients, naming the one that is not a key.
pub fn recipients(keys: &[String]) -> anyhow::Result<Vec<age::x25519::Recipient>> {
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            age::x25519::Recipient::from_str(key)
                .map_err(|e| anyhow::anyhow!("backup.encrypt_to[{i}] is not an age recipient: {e}"))
        })
        .collect()
}

/// Encrypts every file of `files` in `dir` to `keys`, in place (`F` → `F.age`), updating each
/// entry.
pub fn encrypt_all(dir: &Path, files: &mut [File], keys: &[String]) -> anyhow::Result<()> {
    let parsed = recipients(keys)?;
    for file in files.iter_mut() {
        let plain = dir.join(&file.path);
        let sealed_name = format!("{}.age", file.path);
        let sealed = dir.join(&sealed_name);
        encrypt_file(&plain, &sealed, &parsed).with_context(|| format!("encrypting `{}`", file.path))?;
        let (sha256, bytes) = sha256_file(&sealed).with_context(|| format!("reading `{}`", sealed.display()))?;
        std::fs::remove_file(&plain).with_context(|| format!("removing `{}`", plain.display()))?;
        file.encrypted = Some(Encrypted {
            scheme: SCHEME.into(),
            recipients: keys.to_vec(),
            plain_bytes: file.bytes,
            plain_sha256: std::mem::take(&mut file.sha256),
        });
        file.path = sealed_name;
        file.sha256 = sha256;
        file.bytes = bytes;
    }
    Ok(())
}

fn encrypt_file(plain: &Path, sealed: &Path, recipients: &[age::x25519::Recipient]) -> anyhow::Result<()> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient)).context("no recipient")?;
    let mut input =
        BufReader::new(std::fs::File::open(plain).with_context(|| format!("opening `{}`", plain.display()))?);
    let out = cache_core::archive::private_file(sealed)?;
    let mut writer = encryptor.wrap_output(BufWriter::new(out)).context("starting the encryption")?;
    std::io::copy(&mut input, &mut writer).with_context(|| format!("writing `{}`", sealed.display()))?;
    let out = writer.finish().context("finishing the encryption")?;
    let file =
        out.into_inner().map_err(|e| e.into_error()).with_context(|| format!("writing `{}`", sealed.display()))?;
    file.sync_all().with_context(|| format!("writing `{}`", sealed.display()))?;
    Ok(())
}

/// Whether any file of the backup is encrypted.
pub fn is_encrypted(manifest: &Manifest) -> bool {
    manifest.files.iter().any(|f| f.encrypted.is_some())
}

/// The identities of the age identity file `path`.
fn identities(path: &Path) -> anyhow::Result<Vec<Box<dyn age::Identity + Send + Sync>>> {
    let file = age::IdentityFile::from_file(path.display().to_string())
        .with_context(|| format!("reading the age identity file `{}`", path.display()))?;
    file.into_identities().with_context(|| format!("reading the age identity file `{}`", path.display()))
}

/// A decrypted view of an encrypted backup: its files in a private temporary directory, with
/// a manifest naming the plaintexts (removed on drop).
pub struct Plain {
    /// The view, as a backup.
    pub backup: Backup,
    _dir: tempfile::TempDir,
}

/// Decrypts `backup` with the identity file `identity` into a temporary directory under
/// `scratch_in`, checking each plaintext's size and SHA-256 against the manifest.
pub fn decrypt(backup: &Backup, identity: Option<&Path>, scratch_in: &Path) -> anyhow::Result<Plain> {
    let Some(identity) = identity else {
        bail!(
            "backup {} is encrypted (age): give the identity that decrypts it with --identity FILE or backup.identity_file",
            backup.manifest.id
        );
    };
    let ids = identities(identity)?;
    // A restore killed while it held plaintexts left them here: the job lock is held, so no
    // other restore is using them.
    if let Ok(entries) = std::fs::read_dir(scratch_in) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_name().to_string_lossy().starts_with(".decrypted-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = tempfile::Builder::new()
        .prefix(".decrypted-")
        .tempdir_in(scratch_in)
        .with_context(|| format!("creating a private directory in `{}`", scratch_in.display()))?;
    let mut manifest = backup.manifest.clone();
    for file in &mut manifest.files {
        let Some(enc) = file.encrypted.take() else {
            std::fs::copy(backup.dir.join(&file.path), dir.path().join(&file.path))
                .with_context(|| format!("copying `{}`", file.path))?;
            continue;
        };
        let name = file.path.strip_suffix(".age").unwrap_or(&file.path).to_owned();
        let out = dir.path().join(&name);
        let (sha, bytes) = decrypt_file(&backup.dir.join(&file.path), &out, &ids)
            .with_context(|| format!("decrypting `{}` with `{}`", file.path, identity.display()))?;
        if sha != enc.plain_sha256 || bytes != enc.plain_bytes {
            bail!("`{}` decrypts to {bytes} bytes that do not match its manifest", file.path);
        }
        file.path = name;
        file.sha256 = sha;
        file.bytes = bytes;
    }
    Ok(Plain { backup: Backup { dir: dir.path().to_path_buf(), manifest }, _dir: dir })
}

fn decrypt_file(
    sealed: &Path,
    plain: &Path,
    ids: &[Box<dyn age::Identity + Send + Sync>],
) -> anyhow::Result<(String, u64)> {
    let input = BufReader::new(std::fs::File::open(sealed).with_context(|| format!("opening `{}`", sealed.display()))?);
    let decryptor = age::Decryptor::new(input).context("not an age file")?;
    let mut reader =
        decryptor.decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = BufWriter::new(cache_core::archive::private_file(plain)?);
    let (mut hash, mut bytes) = (Sha256::new(), 0u64);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).context("decrypting (the file is damaged or truncated)")?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        bytes += n as u64;
        out.write_all(&buf[..n]).with_context(|| format!("writing `{}`", plain.display()))?;
    }
    out.flush().with_context(|| format!("writing `{}`", plain.display()))?;
    Ok((hex::encode(hash.finalize()), bytes))
}

/// The identity a restore uses: `--identity`, else `backup.identity_file`.
pub fn identity_for(cli: Option<&Path>, config: &cache_core::config::Config) -> Option<PathBuf> {
    cli.map(Path::to_path_buf).or_else(|| config.backup.identity_file.clone())
}
