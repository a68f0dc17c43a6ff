//! The server log: env_logger, with the lines that clients cause (refused connections,
//! malformed HTTP requests reported by actix-http) rate limited. Invariant: no request rate
//! grows the log faster than `BURST` lines plus `PER_SECOND` a second, and every dropped
//! line is counted in the next one that passes.

use std::time::Instant;

use log::{Log, Metadata, Record};
use parking_lot::Mutex;

/// The log target of lines a client causes.
pub const CLIENT: &str = "termcell::client";
/// Client-caused lines let through at once, then per second.
const BURST: f64 = 20.0;
const PER_SECOND: f64 = 2.0;

/// Whether a line was caused by a client rather than by the server's own work.
fn client_caused(target: &str) -> bool {
    target == CLIENT || target.starts_with("actix_http::h1") || target.starts_with("actix_http::h2")
}

/// A token bucket for client-caused lines, and how many it dropped.
struct Bucket {
    tokens: f64,
    at: Instant,
    dropped: u64,
}

impl Bucket {
    /// `Some(dropped since the last line let through)` when this line may be written.
    fn take(&mut self, now: Instant) -> Option<u64> {
        let refill = now.duration_since(self.at).as_secs_f64() * PER_SECOND;
        self.tokens = (self.tokens + refill).min(BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.dropped))
        } else {
            self.dropped += 1;
            None
        }
    }
}

struct Throttled {
    inner: env_logger::Logger,
    bucket: Mutex<Bucket>,
}

impl Log for Throttled {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.inner.matches(record) {
            return;
        }
        if !client_caused(record.target()) {
            return self.inner.log(record);
        }
        let Some(dropped) = self.bucket.lock().take(Instant::now()) else {
            return;
        };
        if dropped > 0 {
            self.inner.log(
                &Record::builder()
                    .args(format_args!(
                        "{dropped} client-caused log lines were dropped (rate limit)"
                    ))
                    .level(log::Level::Warn)
                    .target(CLIENT)
                    .build(),
            );
        }
        self.inner.log(record);
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Installs the logger. `LOG_LEVEL` (the original server's name: a level name or 0-4) or
/// `RUST_LOG` set the filter; the default is `info`.
pub fn init() {
    let level = std::env::var("LOG_LEVEL").ok().map(|v| match v.trim() {
        "0" => "error".to_string(),
        "1" => "warn".to_string(),
        "2" => "info".to_string(),
        "3" => "debug".to_string(),
        "4" => "trace".to_string(),
        other => other.to_ascii_lowercase(),
    });
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or(level)
        .unwrap_or_else(|| "info".into());
    let inner = env_logger::Builder::new()
        .parse_filters(&filter)
        .format_timestamp_millis()
        .build();
    let max = inner.filter();
    let logger = Throttled {
        inner,
        bucket: Mutex::new(Bucket {
            tokens: BURST,
            at: Instant::now(),
            dropped: 0,
        }),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_a_steady_rate_and_the_dropped_are_counted() {
        let start = Instant::now();
        let mut bucket = Bucket {
            tokens: BURST,
            at: start,
            dropped: 0,
        };
        let passed = (0..10_000).filter(|_| bucket.take(start).is_some()).count();
        assert_eq!(passed, BURST as usize);
        // One second later: two more, the first of which reports what was dropped.
        let later = start + Duration::from_secs(1);
        assert_eq!(bucket.take(later), Some(10_000 - BURST as u64));
        assert_eq!(bucket.take(later), Some(0));
        assert_eq!(bucket.take(later), None);
    }

    #[test]
    fn only_client_caused_targets_are_throttled() {
        assert!(client_caused(CLIENT));
        assert!(client_caused("actix_http::h1::dispatcher"));
        assert!(!client_caused("termcell::server"));
        assert!(!client_caused("termcell_actors::session"));
    }
}
