//! The audit log: one `AuditSink` actor on its own thread appends JSON lines to a rotated file.
//! Callers only enqueue (never block a session), and credential fields never reach the file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

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
/// `YYYYMMDDTHHMMSSZ`, the timestamp in rotated file names.
const ROTATED_STAMP: &str = "%Y%m%dT%H%M%SZ";
const ROTATED_STAMP_LEN: usize = 16;

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
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            path: PathBuf::from("audit.log"),
            max_file_bytes: Some(100 * 1024 * 1024),
            rotate_daily: true,
            retention_days: 365,
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
        delete_expired(&cfg);
        let write_errors = Arc::new(AtomicU64::new(0));
        let sink = AuditSink {
            live: Some(live),
            cfg,
            write_errors: Arc::clone(&write_errors),
        };
        let arbiter = Arbiter::try_new()?;
        let addr = AuditSink::start_in_arbiter(&arbiter.handle(), move |_| sink);
        Ok(Audit {
            sink: Some(addr),
            write_errors,
        })
    }

    pub fn disabled() -> Audit {
        Audit {
            sink: None,
            write_errors: Arc::default(),
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

/// The open live file, its size and the UTC day it belongs to (for daily rotation).
struct LiveFile {
    file: File,
    size: u64,
    day: NaiveDate,
}

impl LiveFile {
    fn open(path: &Path) -> io::Result<LiveFile> {
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

/// Writes the audit log. Runs alone on its arbiter, so blocking file calls block nobody else.
pub struct AuditSink {
    cfg: AuditConfig,
    /// `None` after a write error: the next event opens the file again.
    live: Option<LiveFile>,
    write_errors: Arc<AtomicU64>,
}

impl Actor for AuditSink {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.sync();
        // The arbiter exists only for this actor.
        Arbiter::current().stop();
    }
}

impl Handler<Record> for AuditSink {
    type Result = ();

    fn handle(&mut self, Record(ev): Record, _: &mut Self::Context) {
        self.write(&ev);
    }
}

impl Handler<Flush> for AuditSink {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Self::Context) {
        self.sync();
    }
}

impl AuditSink {
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
        delete_expired(&self.cfg);
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

/// `<stem>-<YYYYMMDDTHHMMSSZ>[-N].<ext>` next to the live file, N counting collisions.
fn rotated_path(live: &Path, now: DateTime<Utc>) -> PathBuf {
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
fn name_parts(live: &Path) -> (String, String) {
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
fn is_rotated_name(name: &str, stem: &str, ext: &str) -> bool {
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

/// Deletes rotated files last modified more than `retention_days` ago; never the live file.
fn delete_expired(cfg: &AuditConfig) {
    if cfg.retention_days == 0 {
        return;
    }
    let max_age = Duration::from_secs(u64::from(cfg.retention_days) * 24 * 60 * 60);
    let (stem, ext) = name_parts(&cfg.path);
    let dir = match cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            log::warn!("audit retention: cannot list {}: {e}", dir.display());
            return;
        }
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_rotated_name(name, &stem, &ext) {
            continue;
        }
        let expired = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|modified| now.duration_since(modified).is_ok_and(|age| age > max_age));
        if expired {
            match fs::remove_file(entry.path()) {
                Ok(()) => log::info!("audit retention: deleted {name}"),
                Err(e) => log::warn!("audit retention: cannot delete {name}: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::net::Ipv4Addr;

    /// A fresh directory under the system temp dir, removed at the end of the test.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("termcell-audit-{}", Uuid::new_v4()));
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn config(dir: &TempDir) -> AuditConfig {
        AuditConfig {
            enabled: true,
            path: dir.0.join("audit.log"),
            max_file_bytes: None,
            rotate_daily: false,
            retention_days: 365,
        }
    }

    fn lines(path: &Path) -> Vec<Value> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn file_names(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    fn set_age(path: &Path, days: u64) {
        let when = SystemTime::now() - Duration::from_secs(days * 24 * 60 * 60);
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    #[actix_rt::test]
    async fn events_are_json_lines_with_time_event_session_client_and_fields() {
        let dir = TempDir::new();
        let cfg = config(&dir);
        let audit = Audit::start(cfg.clone()).unwrap();
        let id = Uuid::new_v4();
        let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));

        let before = Utc::now();
        let ended = AuditEvent::new("session.ended")
            .session(id)
            .client(ip)
            .field("cause", "idle_timeout")
            .field("duration_ms", 1234u64);
        let recorded_at = Utc::now();
        // Written after a delay, the line still carries the time the event was recorded.
        tokio::time::sleep(Duration::from_millis(30)).await;
        audit.record(ended);
        audit.record(AuditEvent::new("server.start").field("version", "0.1.0"));
        audit.flush().await;

        let text = fs::read_to_string(&cfg.path).unwrap();
        assert!(text.ends_with('\n'));
        let got = lines(&cfg.path);
        assert_eq!(got.len(), 2);

        let ended = got[0].as_object().unwrap();
        assert_eq!(ended["event"], "session.ended");
        assert_eq!(ended["session_id"], id.to_string());
        assert_eq!(ended["client"], "203.0.113.9");
        assert_eq!(ended["cause"], "idle_timeout");
        assert_eq!(ended["duration_ms"], 1234);
        assert_eq!(ended.len(), 6);
        let time = ended["time"].as_str().unwrap();
        assert_eq!(time.len(), "2026-01-01T00:00:00.000Z".len(), "{time}");
        assert!(time.ends_with('Z'));
        let time = DateTime::parse_from_rfc3339(time).unwrap();
        let ms = chrono::Duration::milliseconds(1);
        assert!(time >= before - ms && time <= recorded_at, "{time}");

        let start = got[1].as_object().unwrap();
        assert_eq!(start["event"], "server.start");
        assert_eq!(start["version"], "0.1.0");
        assert!(!start.contains_key("session_id") && !start.contains_key("client"));
        assert_eq!(audit.write_errors(), 0);
    }

    #[actix_rt::test]
    async fn credentials_and_reserved_keys_never_reach_the_file() {
        let dir = TempDir::new();
        let cfg = config(&dir);
        let audit = Audit::start(cfg.clone()).unwrap();
        audit.record(
            AuditEvent::new("env.rejected")
                .field("apiKey", "app.key:SECRET1")
                .field("ACCESS_TOKEN", "SECRET2")
                .field("token", "SECRET3")
                .field("event", "forged")
                .field(
                    "env",
                    serde_json::json!({"PS1": "$ ", "password": "SECRET4",
                        "nested": [{"api_key": "SECRET5", "ok": 1}]}),
                )
                .field("names", ["LD_PRELOAD"]),
        );
        audit.flush().await;

        let text = fs::read_to_string(&cfg.path).unwrap();
        assert!(!text.contains("SECRET"), "{text}");
        let line = &lines(&cfg.path)[0];
        assert_eq!(line["event"], "env.rejected");
        assert_eq!(
            line["env"],
            serde_json::json!({"PS1": "$ ", "nested": [{"ok": 1}]})
        );
        assert_eq!(line["names"], serde_json::json!(["LD_PRELOAD"]));
    }

    #[actix_rt::test]
    async fn flush_waits_for_every_prior_event() {
        let dir = TempDir::new();
        let cfg = config(&dir);
        let audit = Audit::start(cfg.clone()).unwrap();
        let senders: Vec<_> = (0..4)
            .map(|t| {
                let audit = audit.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        audit.record(AuditEvent::new("admin.kill").field("n", t * 1000 + i));
                    }
                })
            })
            .collect();
        senders.into_iter().for_each(|t| t.join().unwrap());
        audit.flush().await;
        assert_eq!(lines(&cfg.path).len(), 1000);
    }

    #[actix_rt::test]
    async fn size_rotation_keeps_every_line_exactly_once() {
        let dir = TempDir::new();
        let cfg = AuditConfig {
            max_file_bytes: Some(400),
            ..config(&dir)
        };
        let audit = Audit::start(cfg.clone()).unwrap();
        for seq in 0..40 {
            audit.record(AuditEvent::new("container.created").field("seq", seq));
        }
        audit.flush().await;

        let names = file_names(&dir.0);
        assert!(names.len() > 2, "{names:?}");
        assert!(names.contains("audit.log"));
        let mut seqs = Vec::new();
        for name in &names {
            assert!(
                name == "audit.log" || is_rotated_name(name, "audit", ".log"),
                "{name}"
            );
            let path = dir.0.join(name);
            assert!(fs::metadata(&path).unwrap().len() <= 400, "{name}");
            seqs.extend(lines(&path).iter().map(|l| l["seq"].as_u64().unwrap()));
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (0..40).collect::<Vec<u64>>());
    }

    #[actix_rt::test]
    async fn a_live_file_from_an_earlier_day_is_rotated_at_the_first_event() {
        let dir = TempDir::new();
        let cfg = AuditConfig {
            rotate_daily: true,
            ..config(&dir)
        };
        fs::write(&cfg.path, "{\"event\":\"server.stop\"}\n").unwrap();
        set_age(&cfg.path, 2);

        let audit = Audit::start(cfg.clone()).unwrap();
        audit.record(AuditEvent::new("server.start"));
        audit.record(AuditEvent::new("session.created"));
        audit.flush().await;

        let names = file_names(&dir.0);
        assert_eq!(names.len(), 2, "{names:?}");
        let rotated = names.iter().find(|n| *n != "audit.log").unwrap();
        assert!(is_rotated_name(rotated, "audit", ".log"), "{rotated}");
        assert_eq!(lines(&dir.0.join(rotated))[0]["event"], "server.stop");
        let live = lines(&cfg.path);
        assert_eq!(live.len(), 2);
        assert_eq!(live[0]["event"], "server.start");
    }

    #[actix_rt::test]
    async fn retention_deletes_old_rotated_files_at_start_and_at_rotation() {
        let dir = TempDir::new();
        let cfg = AuditConfig {
            max_file_bytes: Some(200),
            retention_days: 30,
            ..config(&dir)
        };
        let path = |name: &str| dir.0.join(name);
        for (name, age) in [
            ("audit.log", 400),
            ("audit-20240101T000000Z.log", 400),
            ("audit-20240101T000000Z-1.log", 31),
            ("audit-20260101T000000Z.log", 29),
            ("audit-notes.log", 400),
            ("other-20240101T000000Z.log", 400),
        ] {
            fs::write(path(name), "{}\n").unwrap();
            set_age(&path(name), age);
        }

        let audit = Audit::start(cfg.clone()).unwrap();
        let expected: BTreeSet<String> = [
            "audit.log",
            "audit-20260101T000000Z.log",
            "audit-notes.log",
            "other-20240101T000000Z.log",
        ]
        .map(String::from)
        .into();
        assert_eq!(file_names(&dir.0), expected);

        // A file that expires while the server runs goes at the next rotation.
        set_age(&path("audit-20260101T000000Z.log"), 31);
        for seq in 0..4 {
            audit.record(AuditEvent::new("admin.drain").field("seq", seq));
        }
        audit.flush().await;
        let names = file_names(&dir.0);
        assert!(!names.contains("audit-20260101T000000Z.log"), "{names:?}");
        assert!(names.contains("audit.log") && names.contains("audit-notes.log"));
        assert!(
            names
                .iter()
                .filter(|n| is_rotated_name(n, "audit", ".log"))
                .count()
                >= 1
        );
    }

    #[actix_rt::test]
    async fn disabled_writes_nothing() {
        let dir = TempDir::new();
        let cfg = AuditConfig {
            enabled: false,
            path: dir.0.join("sub").join("audit.log"),
            ..config(&dir)
        };
        for audit in [Audit::start(cfg).unwrap(), Audit::disabled()] {
            assert!(!audit.is_enabled());
            audit.record(AuditEvent::new("server.start"));
            audit.flush().await;
            assert_eq!(audit.write_errors(), 0);
        }
        assert!(file_names(&dir.0).is_empty());
    }

    #[actix_rt::test]
    async fn start_creates_the_directory_and_fails_on_a_bad_path() {
        let dir = TempDir::new();
        let cfg = AuditConfig {
            path: dir.0.join("a").join("b").join("audit.jsonl"),
            ..config(&dir)
        };
        Audit::start(cfg.clone()).unwrap();
        assert!(cfg.path.is_file());

        fs::write(dir.0.join("plain"), "").unwrap();
        let bad = AuditConfig {
            path: dir.0.join("plain").join("audit.log"),
            ..config(&dir)
        };
        assert!(Audit::start(bad).is_err());
    }

    #[actix_rt::test]
    async fn a_failed_write_is_counted_and_the_file_is_opened_again() {
        let dir = TempDir::new();
        let cfg = config(&dir);
        let audit = Audit::start(cfg.clone()).unwrap();
        audit.record(AuditEvent::new("server.start"));
        audit.flush().await;

        // Replace the live file by a directory: opening it for appending fails.
        fs::remove_file(&cfg.path).unwrap();
        fs::create_dir(&cfg.path).unwrap();
        let sink = audit.sink.clone().unwrap();
        sink.send(Fail).await.unwrap();
        audit.record(AuditEvent::new("admin.kill"));
        audit.flush().await;
        assert_eq!(audit.write_errors(), 1);

        fs::remove_dir(&cfg.path).unwrap();
        audit.record(AuditEvent::new("server.stop"));
        audit.flush().await;
        let got = lines(&cfg.path);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["event"], "server.stop");
    }

    #[actix_rt::test]
    async fn write_errors_are_counted_without_panicking() {
        let cfg = AuditConfig {
            path: PathBuf::from("/dev/full"),
            max_file_bytes: None,
            rotate_daily: false,
            retention_days: 0,
            enabled: true,
        };
        let audit = Audit::start(cfg).unwrap();
        audit.record(AuditEvent::new("server.start"));
        audit.record(AuditEvent::new("server.stop"));
        audit.flush().await;
        assert_eq!(audit.write_errors(), 2);
    }

    /// Drops the sink's open file as a failed write does.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Fail;

    impl Handler<Fail> for AuditSink {
        type Result = ();

        fn handle(&mut self, _: Fail, _: &mut Self::Context) {
            self.live = None;
        }
    }

    #[test]
    fn rotated_names_are_recognised_exactly() {
        let live = Path::new("/var/log/termcell/audit.log");
        let when = DateTime::parse_from_rfc3339("2026-03-04T05:06:07Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            rotated_path(live, when),
            Path::new("/var/log/termcell/audit-20260304T050607Z.log")
        );
        assert_eq!(
            rotated_path(Path::new("audit"), when),
            Path::new("audit-20260304T050607Z")
        );
        assert!(is_rotated_name(
            "audit-20260304T050607Z.log",
            "audit",
            ".log"
        ));
        assert!(is_rotated_name(
            "audit-20260304T050607Z-12.log",
            "audit",
            ".log"
        ));
        assert!(is_rotated_name("audit-20260304T050607Z", "audit", ""));
        for other in [
            "audit.log",
            "audit-2026030T050607Z.log",
            "audit-20260304X050607Z.log",
            "audit-20260304T050607Z-.log",
            "audit-20260304T050607Z-x.log",
            "audit-20260304T050607Z.log.gz",
            "audits-20260304T050607Z.log",
        ] {
            assert!(!is_rotated_name(other, "audit", ".log"), "{other}");
        }
    }
}
