//! The recording directory: one `<session id>.cast` per session, what is in it, and what
//! retention deletes (by age, then the oldest while over the size cap). Invariant: only
//! files named exactly `<uuid>.cast` are ever read or deleted, and never one still open.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{RecordingConfig, TRUNCATED_MARKER};

const EXTENSION: &str = ".cast";

#[derive(Debug, thiserror::Error)]
pub enum RecordingsError {
    #[error("recording is off (no --record-dir)")]
    Off,
    #[error("no recording of this session")]
    NotFound,
    #[error("the session is still being recorded")]
    StillRecording,
    #[error("recording directory: {0}")]
    Io(String),
}

/// A recording file as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecordingFile {
    pub session_id: Uuid,
    pub file: String,
    pub bytes: u64,
    pub modified: String,
    /// Still being written (the session is live).
    pub recording: bool,
    /// The file ends with the truncation marker.
    pub truncated: bool,
}

pub(super) fn file_name(id: Uuid) -> String {
    format!("{}{EXTENSION}", id.hyphenated())
}

/// The session a file name is the recording of, if it is one.
pub(super) fn session_of(name: &str) -> Option<Uuid> {
    let stem = name.strip_suffix(EXTENSION)?;
    (stem.len() == 36)
        .then(|| Uuid::parse_str(stem).ok())
        .flatten()
}

/// Creates the directory if it is missing, readable by its owner and group only
/// (recordings are personal data; an existing directory keeps the mode its operator gave
/// it), and checks that it can be written.
pub(super) fn prepare_dir(dir: &Path) -> io::Result<()> {
    if !dir.is_dir() {
        fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o750))?;
        }
    }
    let probe = dir.join(".termcell-write-check");
    fs::write(&probe, b"")?;
    fs::remove_file(&probe)
}

pub(super) fn describe(dir: &Path, id: Uuid, live: bool) -> Result<RecordingFile, RecordingsError> {
    let name = file_name(id);
    let path = dir.join(&name);
    let meta = match fs::metadata(&path) {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => return Err(RecordingsError::NotFound),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(RecordingsError::NotFound),
        Err(e) => return Err(RecordingsError::Io(e.to_string())),
    };
    let modified: DateTime<Utc> = meta.modified().unwrap_or_else(|_| SystemTime::now()).into();
    Ok(RecordingFile {
        session_id: id,
        file: name,
        bytes: meta.len(),
        modified: modified.to_rfc3339_opts(SecondsFormat::Millis, true),
        recording: live,
        truncated: ends_truncated(&path),
    })
}

pub(super) fn list(
    dir: &Path,
    live: &HashSet<Uuid>,
) -> Result<Vec<RecordingFile>, RecordingsError> {
    let entries = fs::read_dir(dir).map_err(|e| RecordingsError::Io(e.to_string()))?;
    let mut found: Vec<RecordingFile> = entries
        .flatten()
        .filter_map(|entry| session_of(entry.file_name().to_str()?))
        .filter_map(|id| describe(dir, id, live.contains(&id)).ok())
        .collect();
    found.sort_by(|a, b| b.modified.cmp(&a.modified));
    Ok(found)
}

/// Whether the file's last lines hold the truncation marker.
fn ends_truncated(path: &Path) -> bool {
    let tail = || -> io::Result<String> {
        let mut file = fs::File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(512)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    tail().is_ok_and(|t| t.contains(TRUNCATED_MARKER))
}

/// Deletes finished recordings older than the retention period, then the oldest while
/// the directory's recordings are over the size cap. Returns how many were deleted.
pub(super) fn apply_retention(cfg: &RecordingConfig, live: &HashSet<Uuid>) -> usize {
    let entries = match fs::read_dir(&cfg.dir) {
        Ok(entries) => entries,
        Err(e) => {
            log::warn!(
                "recording retention: cannot list {}: {e}",
                cfg.dir.display()
            );
            return 0;
        }
    };
    let max_age = (cfg.retention_days > 0)
        .then(|| Duration::from_secs(u64::from(cfg.retention_days) * 86_400));
    let now = SystemTime::now();
    let mut deleted = 0;
    let mut total = 0u64;
    let mut finished = Vec::new();
    for entry in entries.flatten() {
        let Some(id) = entry.file_name().to_str().and_then(session_of) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        total += meta.len();
        if live.contains(&id) {
            continue;
        }
        let modified = meta.modified().unwrap_or(now);
        let age = now.duration_since(modified).unwrap_or_default();
        if max_age.is_some_and(|max| age > max) {
            deleted += usize::from(delete(&entry.path(), "retention"));
            total -= meta.len();
        } else {
            finished.push((modified, meta.len(), entry.path()));
        }
    }
    if let Some(cap) = cfg.max_total_bytes {
        finished.sort();
        for (_, len, path) in finished {
            if total <= cap {
                break;
            }
            deleted += usize::from(delete(&path, "size cap"));
            total -= len;
        }
    }
    deleted
}

fn delete(path: &Path, why: &str) -> bool {
    match fs::remove_file(path) {
        Ok(()) => {
            log::info!("recording {why}: deleted {}", path.display());
            true
        }
        Err(e) => {
            log::warn!("recording {why}: cannot delete {}: {e}", path.display());
            false
        }
    }
}
