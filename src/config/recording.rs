//! The recording and live-view settings: `--record-*` into a `RecordingConfig` (or none),
//! and `--max-viewers`. Every error names its setting.

use termcell_actors::recording::RecordingConfig;
use termcell_actors::SessionSettings;

use super::{invalid, ConfigError, Settings};

/// Viewers one session may have at most, whatever is configured.
const MAX_VIEWERS: usize = 64;

/// `None` without `--record-dir`; the other `--record-*` settings then do nothing.
pub(super) fn config(s: &Settings) -> Result<Option<RecordingConfig>, ConfigError> {
    let Some(dir) = s.record_dir.clone() else {
        return Ok(None);
    };
    if dir.as_os_str().is_empty() {
        return Err(invalid("record-dir", "an empty path"));
    }
    let mut cfg = RecordingConfig::new(dir);
    cfg.input = s.record_input.unwrap_or(false);
    cfg.max_bytes = s.record_max_bytes.unwrap_or(cfg.max_bytes);
    if cfg.max_bytes < 4096 {
        return Err(invalid("record-max-bytes", "at least 4096"));
    }
    cfg.retention_days = s.record_retention_days.unwrap_or(cfg.retention_days);
    let total = s
        .record_max_total_bytes
        .unwrap_or(RecordingConfig::DEFAULT_MAX_TOTAL_BYTES);
    if total < cfg.max_bytes.saturating_mul(2) {
        return Err(invalid(
            "record-max-total-bytes",
            format!(
                "{total} is less than twice --record-max-bytes ({})",
                cfg.max_bytes
            ),
        ));
    }
    cfg.max_total_bytes = Some(total);
    Ok(Some(cfg))
}

pub(super) fn max_viewers(s: &Settings) -> Result<usize, ConfigError> {
    let n = s
        .max_viewers
        .unwrap_or(SessionSettings::default().max_viewers);
    if !(1..=MAX_VIEWERS).contains(&n) {
        return Err(invalid(
            "max-viewers",
            format!("between 1 and {MAX_VIEWERS}"),
        ));
    }
    Ok(n)
}
