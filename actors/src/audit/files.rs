//! The audit log's files: the live file, rotated names next to it, and what is deleted
//! by age or by the directory's size cap. Invariant: only the live file and files with
//! exactly a rotated name of it are ever touched.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDate, Utc};

use super::AuditConfig;

/// `YYYYMMDDTHHMMSSZ`, the timestamp in rotated file names.
const ROTATED_STAMP: &str = "%Y%m%dT%H%M%SZ";
const ROTATED_STAMP_LEN: usize = 16;

/// The open live file, its size and the UTC day it belongs to (for daily rotation).
pub(super) struct LiveFile {
    pub(super) file: File,
    pub(super) size: u64,
    pub(super) day: NaiveDate,
}

impl LiveFile {
    pub(super) fn open(path: &Path) -> io::Result<LiveFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Client addresses and session ids are personal data: not world-readable.
            options.mode(0o640);
        }
        let file = options.open(path)?;
        let meta = file.metadata()?;
        let day = match meta.modified() {
            Ok(modified) if meta.len() > 0 => DateTime::<Utc>::from(modified).date_naive(),
            _ => Utc::now().date_naive(),
        };
        Ok(LiveFile {
            file,
            size: meta.len(),
            day,
        })
    }
}

/// `<stem>-<YYYYMMDDTHHMMSSZ>[-N].<ext>` next to the live file, N counting collisions.
pub(super) fn rotated_path(live: &Path, now: DateTime<Utc>) -> PathBuf {
    let (stem, ext) = name_parts(live);
    let stamp = now.format(ROTATED_STAMP);
    let dir = live.parent().unwrap_or(Path::new(""));
    let mut candidate = dir.join(format!("{stem}-{stamp}{ext}"));
    let mut n = 1u32;
    while candidate.exists() {
        candidate = dir.join(format!("{stem}-{stamp}-{n}{ext}"));
        n += 1;
    }
    candidate
}

/// The live file's stem and extension (with its dot, or empty).
pub(super) fn name_parts(live: &Path) -> (String, String) {
    let stem = live
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = live
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

/// Whether `name` is exactly a rotated name of the live file (so other files are never deleted).
pub(super) fn is_rotated_name(name: &str, stem: &str, ext: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(stem)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix(ext))
    else {
        return false;
    };
    let (stamp, counter) = rest.split_at(rest.len().min(ROTATED_STAMP_LEN));
    let stamp_ok = stamp.len() == ROTATED_STAMP_LEN
        && stamp.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    let counter_ok = counter.is_empty()
        || counter
            .strip_prefix('-')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    stamp_ok && counter_ok
}

/// Deletes rotated files last modified more than `retention_days` ago, then, while the
/// directory's audit files with room for one more full live file are over
/// `max_total_bytes`, the oldest rotated files. Never the live file. True when a file was
/// deleted for the size cap.
pub(super) fn apply_retention(cfg: &AuditConfig) -> bool {
    let (stem, ext) = name_parts(&cfg.path);
    let dir = match cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            log::warn!("audit retention: cannot list {}: {e}", dir.display());
            return false;
        }
    };
    let max_age = (cfg.retention_days > 0)
        .then(|| Duration::from_secs(u64::from(cfg.retention_days) * 24 * 60 * 60));
    let now = SystemTime::now();
    let mut kept: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_rotated_name(name, &stem, &ext) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let modified = meta.modified().unwrap_or(now);
        let expired =
            max_age.is_some_and(|max| now.duration_since(modified).is_ok_and(|age| age > max));
        if expired {
            remove(&entry.path(), "retention");
        } else {
            kept.push((modified, meta.len(), entry.path()));
        }
    }
    let Some(cap) = cfg.max_total_bytes else {
        return false;
    };
    // The live file is new (or about to be rotated): leave room for a whole one.
    let room = cap.saturating_sub(cfg.max_file_bytes.unwrap_or(0));
    let mut total: u64 = kept.iter().map(|(_, len, _)| len).sum();
    kept.sort();
    let mut capped = false;
    for (_, len, path) in kept {
        if total <= room {
            break;
        }
        remove(&path, "size cap");
        total -= len;
        capped = true;
    }
    capped
}

fn remove(path: &Path, why: &str) {
    match fs::remove_file(path) {
        Ok(()) => log::info!("audit {why}: deleted {}", path.display()),
        Err(e) => log::warn!("audit {why}: cannot delete {}: {e}", path.display()),
    }
}
