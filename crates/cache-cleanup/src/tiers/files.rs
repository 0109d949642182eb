//! File caches: files past their TTL (by modification or access time) are removed during a
//! parallel walk, then the oldest files go until the directory is under its size cap.
//! Symbolic links are never followed; protected globs are never touched.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use cache_core::config::FilesTarget;
use cache_core::output::bytes;
use cache_core::tier::Tier;
use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::report::{Action, Item, TargetReport};

/// A file kept by the TTL pass, a candidate for the size cap.
struct Kept {
    age: SystemTime,
    size: u64,
    path: PathBuf,
}

/// Cleans one files target. Blocking: run it on a blocking thread.
pub fn run(target: &FilesTarget, dry_run: bool, sample: usize, threads: usize) -> TargetReport {
    let mut report = TargetReport::new(Tier::Files, &target.name);
    // A glob path covers what it matches in its base, and nothing else there.
    let scope = cache_core::config::DirTarget::scope(target);
    if !scope.base.is_dir() {
        report.notes.push(format!("`{}` does not exist: nothing to clean", scope.base.display()));
        return report;
    }
    let protected = match globs(&target.protected) {
        Ok(set) => set,
        Err(e) => {
            report.errors.push(format!("protected patterns: {e}"));
            return report;
        }
    };
    let now = SystemTime::now();
    let examined = AtomicU64::new(0);
    let selected = AtomicU64::new(0);
    let removed = AtomicU64::new(0);
    let freed = AtomicU64::new(0);
    let protected_count = AtomicU64::new(0);
    let shared = Mutex::new((Vec::<Item>::new(), Vec::<String>::new(), Vec::<Kept>::new()));
    let listed = if dry_run { sample } else { 0 };
    let keep_for_cap = target.max_size.is_some();

    let base = scope.base.clone();
    let walk_scope = scope.clone();
    let walker = ignore::WalkBuilder::new(&scope.base)
        .standard_filters(false)
        .hidden(false)
        .follow_links(false)
        .threads(threads)
        .filter_entry(move |e| e.depth() == 0 || walk_scope.may_hold(e.path().strip_prefix(&base).unwrap_or(e.path())))
        .build_parallel();
    walker.run(|| {
        Box::new(|entry| {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    lock(&shared).1.push(e.to_string());
                    return ignore::WalkState::Continue;
                }
            };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                return ignore::WalkState::Continue;
            }
            let path = entry.path();
            let relative = path.strip_prefix(&scope.base).unwrap_or(path);
            if !scope.contains(relative) {
                return ignore::WalkState::Continue;
            }
            examined.fetch_add(1, Ordering::Relaxed);
            if protected.is_match(relative) {
                protected_count.fetch_add(1, Ordering::Relaxed);
                return ignore::WalkState::Continue;
            }
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) => {
                    lock(&shared).1.push(format!("{}: {e}", path.display()));
                    return ignore::WalkState::Continue;
                }
            };
            let stamp = if target.use_atime { meta.accessed() } else { meta.modified() }.unwrap_or(now);
            let size = allocated(&meta);
            let age = now.duration_since(stamp).unwrap_or_default();
            if let Some(ttl) = target.ttl.filter(|ttl| age >= *ttl) {
                if !dry_run && let Err(e) = std::fs::remove_file(path) {
                    lock(&shared).1.push(format!("removing {}: {e}", path.display()));
                    return ignore::WalkState::Continue;
                }
                selected.fetch_add(1, Ordering::Relaxed);
                removed.fetch_add(u64::from(!dry_run), Ordering::Relaxed);
                freed.fetch_add(size, Ordering::Relaxed);
                let mut guard = lock(&shared);
                if guard.0.len() < listed {
                    let which = if target.use_atime { "read" } else { "modified" };
                    let reason = format!(
                        "not {which} for {} (TTL {})",
                        humantime::format_duration(std::time::Duration::from_secs(age.as_secs())),
                        humantime::format_duration(ttl)
                    );
                    guard.0.push(Item {
                        name: path.display().to_string(),
                        action: Action::Delete,
                        reason,
                        bytes: Some(size),
                    });
                }
                return ignore::WalkState::Continue;
            }
            if keep_for_cap {
                lock(&shared).2.push(Kept { age: stamp, size, path: path.to_path_buf() });
            }
            ignore::WalkState::Continue
        })
    });
    let (mut items, errors, mut kept) = shared.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    report.examined = examined.into_inner();
    report.removed = removed.into_inner();
    report.bytes_freed = freed.into_inner();
    report.protected = protected_count.into_inner();
    report.selected = selected.into_inner();
    report.errors.extend(errors);

    if let Some(cap) = target.max_size.map(|s| s.as_u64()) {
        let mut total: u64 = kept.iter().map(|k| k.size).sum();
        if total > cap {
            kept.sort_by_key(|k| k.age);
            for file in kept {
                if total <= cap {
                    break;
                }
                if !dry_run {
                    if let Err(e) = std::fs::remove_file(&file.path) {
                        report.errors.push(format!("removing {}: {e}", file.path.display()));
                        continue;
                    }
                    report.removed += 1;
                }
                total -= file.size;
                report.bytes_freed += file.size;
                report.selected += 1;
                if items.len() < listed {
                    let reason = format!("over the {} cap: oldest first", bytes(cap));
                    items.push(Item {
                        name: file.path.display().to_string(),
                        action: Action::Delete,
                        reason,
                        bytes: Some(file.size),
                    });
                }
            }
        }
    }
    report.items = items;
    report
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn allocated(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.blocks() * 512
}

fn globs(patterns: &[String]) -> Result<GlobSet, globset::Error> {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        builder.add(Glob::new(p)?);
    }
    builder.build()
}
