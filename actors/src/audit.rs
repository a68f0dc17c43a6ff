//! The audit log: one `AuditSink` actor on its own thread appends JSON lines to a rotated file.
//! Callers only enqueue (never block a session), and credential fields never reach the file.

use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, SecondsFormat, Utc};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

mod files;
mod repeats;

use files::{apply_retention, rotated_path, LiveFile};
use repeats::Repeats;

/// Keys that would carry a credential; dropped wherever they appear in an event's fields.
const CREDENTIAL_KEYS: [&str; 6] = [
    "apiKey",
    "accessToken",
    "api_key",
    "access_token",
    "password",
    "token",
];
/// Keys every line has; an event field cannot replace them.
const RESERVED_KEYS: [&str; 4] = ["time", "event", "session_id", "client"];
/// Text a client sent (an Origin header, a name) is cut to this many bytes in the log.
pub const MAX_CLIENT_TEXT: usize = 256;

/// Where and how the audit log is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// `AUDIT_LOGGING`; when false nothing is opened or written.
    pub enabled: bool,
    /// The live file; rotated files are written next to it.
    pub path: PathBuf,
    /// Rotate before a line would make the live file larger than this.
    pub max_file_bytes: Option<u64>,
    /// Rotate at the first event of a new UTC day.
    pub rotate_daily: bool,
    /// `AUDIT_LOG_RETENTION_DAYS`: rotated files older than this are deleted (0 keeps them all).
    pub retention_days: u32,
    /// The audit files together (live and rotated) stay under this; the oldest rotated
    /// files are deleted first.
    pub max_total_bytes: Option<u64>,
    /// Rejections without a session are counted per client and kind over this window.
    pub repeat_window: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            path: PathBuf::from("/var/log/termcell/audit.log"),
            max_file_bytes: Some(100 * 1024 * 1024),
            rotate_daily: true,
            retention_days: 365,
            max_total_bytes: Some(1024 * 1024 * 1024),
            repeat_window: Duration::from_secs(60),
        }
    }
}

/// One audited fact. Its time is taken when it is built, not when the sink writes it.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    event: &'static str,
    time: DateTime<Utc>,
    session_id: Option<Uuid>,
    client: Option<IpAddr>,
    fields: Map<String, Value>,
}

impl AuditEvent {
    /// `event` is a dotted name such as `session.created` or `ratelimit.rejected`.
    pub fn new(event: &'static str) -> Self {
        AuditEvent {
            event,
            time: Utc::now(),
            session_id: None,
            client: None,
            fields: Map::new(),
        }
    }

    /// A refusal of `kind`: its audit event with its `kind` field.
    pub fn rejection(kind: crate::rejection::Rejection) -> Self {
        AuditEvent::new(kind.event()).field("kind", kind.as_str())
    }

    pub fn session(mut self, id: Uuid) -> Self {
        self.session_id = Some(id);
        self
    }

    pub fn client(mut self, ip: IpAddr) -> Self {
        self.client = Some(ip);
        self
    }

    /// Adds a field to the line. Credential-looking keys are dropped (also inside nested
    /// objects) with a warning, as are the reserved keys and values that fail to serialize.
    pub fn field(mut self, key: &str, value: impl Serialize) -> Self {
        if is_credential_key(key) {
            log::warn!(
                "audit: dropped field {key:?} of {}: credentials are never audited",
                self.event
            );
            return self;
        }
        if RESERVED_KEYS.contains(&key) {
            log::warn!(
                "audit: dropped field {key:?} of {}: reserved key",
                self.event
            );
            return self;
        }
        match serde_json::to_value(value) {
            Ok(mut value) => {
                scrub_credentials(&mut value, self.event);
                self.fields.insert(key.to_owned(), value);
            }
            Err(e) => log::warn!("audit: dropped field {key:?} of {}: {e}", self.event),
        }
        self
    }

    /// Adds text that came from a client, cut to `MAX_CLIENT_TEXT` bytes; a cut value is
    /// marked by a `<key>_bytes` field with its full length.
    pub fn client_text(self, key: &str, text: &str) -> Self {
        if text.len() <= MAX_CLIENT_TEXT {
            return self.field(key, text);
        }
        self.field(key, cut_at_char(text, MAX_CLIENT_TEXT))
            .field(&format!("{key}_bytes"), text.len())
    }

    fn to_line(&self) -> serde_json::Result<Vec<u8>> {
        #[derive(Serialize)]
        struct Line<'a> {
            time: String,
            event: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            session_id: Option<Uuid>,
            #[serde(skip_serializing_if = "Option::is_none")]
            client: Option<IpAddr>,
            #[serde(flatten)]
            fields: &'a Map<String, Value>,
        }
        let mut line = serde_json::to_vec(&Line {
            time: self.time.to_rfc3339_opts(SecondsFormat::Millis, true),
            event: self.event,
            session_id: self.session_id,
            client: self.client,
            fields: &self.fields,
        })?;
        line.push(b'\n');
        Ok(line)
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub fn cut_at_char(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn is_credential_key(key: &str) -> bool {
    CREDENTIAL_KEYS.iter().any(|c| c.eq_ignore_ascii_case(key))
}

fn scrub_credentials(value: &mut Value, event: &str) {
    match value {
        Value::Object(map) => {
            map.retain(|key, _| {
                let credential = is_credential_key(key);
                if credential {
                    log::warn!(
                        "audit: dropped nested field {key:?} of {event}: credentials are never audited"
                    );
                }
                !credential
            });
            map.values_mut().for_each(|v| scrub_credentials(v, event));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scrub_credentials(v, event)),
        _ => {}
    }
}

/// The cheap, cloneable handle every component holds. Disabled, it does nothing.
#[derive(Clone)]
pub struct Audit {
    sink: Option<Addr<AuditSink>>,
    write_errors: Arc<AtomicU64>,
    repeats: Arc<Mutex<Repeats>>,
    cap_reached: Arc<AtomicBool>,
    max_total_bytes: Option<u64>,
}

impl Audit {
    /// Opens (creating it and its directory) the live file now, so a bad path fails start-up,
    /// deletes rotated files past retention, then starts the sink on its own arbiter thread.
    /// The thread ends once every handle is dropped and the queued events are written.
    /// Call it inside a running actix `System` (as `actix_web::main` provides).
    pub fn start(cfg: AuditConfig) -> io::Result<Audit> {
        if !cfg.enabled {
            return Ok(Audit::disabled());
        }
        let live = LiveFile::open(&cfg.path)?;
        let cap_reached = Arc::new(AtomicBool::new(apply_retention(&cfg)));
        let write_errors = Arc::new(AtomicU64::new(0));
        let repeats = Arc::new(Mutex::new(Repeats::default()));
        let max_total_bytes = cfg.max_total_bytes;
        let sink = AuditSink {
            live: Some(live),
            cfg,
            write_errors: Arc::clone(&write_errors),
            repeats: Arc::clone(&repeats),
            cap_reached: Arc::clone(&cap_reached),
        };
        let arbiter = Arbiter::try_new()?;
        let addr = AuditSink::start_in_arbiter(&arbiter.handle(), move |_| sink);
        Ok(Audit {
            sink: Some(addr),
            write_errors,
            repeats,
            cap_reached,
            max_total_bytes,
        })
    }

    pub fn disabled() -> Audit {
        Audit {
            sink: None,
            write_errors: Arc::default(),
            repeats: Arc::default(),
            cap_reached: Arc::default(),
            max_total_bytes: None,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Queues the event; never waits for the file.
    pub fn record(&self, ev: AuditEvent) {
        if let Some(sink) = &self.sink {
            sink.do_send(Record(ev));
        }
    }

    /// Queues a rejection that has no session, in aggregate: the first of its event, kind
    /// and client in the window is written, the others are counted into one line when the
    /// window closes. No request rate can grow the log faster than a bounded rate.
    pub fn rejected(&self, ev: AuditEvent) {
        if let Some(sink) = &self.sink {
            if self.repeats.lock().first(&ev) {
                sink.do_send(Record(ev));
            }
        }
    }

    /// Whether rotated files have been deleted to keep under the size cap, and the cap.
    pub fn size_cap(&self) -> (Option<u64>, bool) {
        (
            self.max_total_bytes,
            self.cap_reached.load(Ordering::Relaxed),
        )
    }

    /// Resolves once every event recorded before this call is written and synced to disk.
    pub async fn flush(&self) {
        if let Some(sink) = &self.sink {
            // An error means the sink is gone; there is nothing left to wait for.
            let _ = sink.send(Flush).await;
        }
    }

    /// Events lost to write errors since start (for a metric).
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Record(AuditEvent);

#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

/// Writes the audit log. Runs alone on its arbiter, so blocking file calls block nobody else.
pub struct AuditSink {
    cfg: AuditConfig,
    /// `None` after a write error: the next event opens the file again.
    live: Option<LiveFile>,
    write_errors: Arc<AtomicU64>,
    repeats: Arc<Mutex<Repeats>>,
    cap_reached: Arc<AtomicBool>,
}

impl Actor for AuditSink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.cfg.repeat_window, |sink, _| sink.write_repeats());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.write_repeats();
        self.sync();
        // The arbiter exists only for this actor.
        Arbiter::current().stop();
    }
}

impl Handler<Record> for AuditSink {
    type Result = ();

    fn handle(&mut self, Record(ev): Record, _: &mut Self::Context) {
        // A failure loses this event (counted as a write error), not the audit log.
        if crate::fault::contain("audit::record", || {
            fail::fail_point!("audit::record");
            self.write(&ev)
        })
        .is_none()
        {
            self.failed(format_args!("cannot record {}", ev.event));
        }
    }
}

impl Handler<Flush> for AuditSink {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Self::Context) {
        crate::fault::contain("audit::flush", || {
            fail::fail_point!("audit::flush");
            self.write_repeats();
            self.sync();
        });
    }
}

impl AuditSink {
    /// Closes the window of aggregated rejections: one line per key that repeated.
    fn write_repeats(&mut self) {
        let lines = self
            .repeats
            .lock()
            .close_window(self.cfg.repeat_window.as_secs());
        for line in &lines {
            self.write(line);
        }
    }

    fn write(&mut self, ev: &AuditEvent) {
        let line = match ev.to_line() {
            Ok(line) => line,
            Err(e) => {
                self.failed(format_args!("cannot encode {}: {e}", ev.event));
                return;
            }
        };
        let now = Utc::now();
        if self.rotation_due(now, line.len() as u64) {
            self.rotate(now);
        }
        let mut live = match self.live.take() {
            Some(live) => live,
            None => match LiveFile::open(&self.cfg.path) {
                Ok(live) => live,
                Err(e) => {
                    self.failed(format_args!("cannot open {}: {e}", self.cfg.path.display()));
                    return;
                }
            },
        };
        match live.file.write_all(&line) {
            Ok(()) => {
                live.size += line.len() as u64;
                self.live = Some(live);
            }
            Err(e) => {
                self.failed(format_args!(
                    "cannot write {}: {e}",
                    self.cfg.path.display()
                ));
            }
        }
    }

    fn rotation_due(&self, now: DateTime<Utc>, line_len: u64) -> bool {
        let Some(live) = &self.live else {
            return false;
        };
        let too_big = self
            .cfg
            .max_file_bytes
            .is_some_and(|max| live.size + line_len > max);
        let new_day = self.cfg.rotate_daily && now.date_naive() > live.day;
        live.size > 0 && (too_big || new_day)
    }

    /// Renames the live file to its rotated name, opens a fresh one and applies retention.
    fn rotate(&mut self, now: DateTime<Utc>) {
        self.sync();
        self.live = None;
        let rotated = rotated_path(&self.cfg.path, now);
        match fs::rename(&self.cfg.path, &rotated) {
            Ok(()) => log::info!("audit log rotated to {}", rotated.display()),
            // Keep appending to the live file rather than lose events.
            Err(e) => log::error!("audit log rotation to {} failed: {e}", rotated.display()),
        }
        match LiveFile::open(&self.cfg.path) {
            Ok(live) => {
                self.live = Some(LiveFile {
                    day: now.date_naive(),
                    ..live
                })
            }
            Err(e) => log::error!("cannot open {}: {e}", self.cfg.path.display()),
        }
        if apply_retention(&self.cfg) {
            self.cap_reached.store(true, Ordering::Relaxed);
        }
    }

    fn sync(&mut self) {
        if let Some(live) = &self.live {
            if let Err(e) = live.file.sync_data() {
                self.live = None;
                self.failed(format_args!("cannot sync {}: {e}", self.cfg.path.display()));
            }
        }
    }

    fn failed(&self, what: std::fmt::Arguments<'_>) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        log::error!("audit: {what}");
    }
}

#[cfg(test)]
mod tests;
