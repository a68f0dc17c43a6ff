//! Session recordings: each session's output and resizes (and its input only when the
//! operator asks for it) as an asciicast v2 file, `<session id>.cast` in the recording
//! directory. A session only enqueues encoded lines; one writer thread writes every
//! recording. Invariant: a recording never blocks its session and never holds more than
//! `buffer_bytes` of queued lines; output it cannot keep (queue full, size cap reached)
//! is left out and the file says so with a truncation marker.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::screen::Size;

mod files;
mod writer;

pub use files::{RecordingFile, RecordingsError};
use writer::Job;

/// The text of the marker a truncated recording ends with (an `m` event, and shown as
/// output so that a player that ignores markers shows it too).
pub const TRUNCATED_MARKER: &str = "termcell: recording truncated";

/// Where and how sessions are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingConfig {
    pub dir: PathBuf,
    /// Also record what the user typed (it can carry secrets).
    pub input: bool,
    /// A session's file stops growing here (the truncation marker is written past it).
    pub max_bytes: u64,
    /// Recordings last written more than this many days ago are deleted (0 keeps them).
    pub retention_days: u32,
    /// The recordings together stay under this; the oldest finished ones go first.
    pub max_total_bytes: Option<u64>,
    /// Lines one session may have queued for the writer; more is dropped (truncated).
    pub buffer_bytes: usize,
}

impl RecordingConfig {
    pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
    pub const DEFAULT_RETENTION_DAYS: u32 = 30;
    pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 10 * 1024 * 1024 * 1024;
    pub const DEFAULT_BUFFER_BYTES: usize = 4 * 1024 * 1024;

    pub fn new(dir: PathBuf) -> RecordingConfig {
        RecordingConfig {
            dir,
            input: false,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            retention_days: Self::DEFAULT_RETENTION_DAYS,
            max_total_bytes: Some(Self::DEFAULT_MAX_TOTAL_BYTES),
            buffer_bytes: Self::DEFAULT_BUFFER_BYTES,
        }
    }
}

/// Recording and live-view metrics, registered with the server's metrics.
#[derive(Clone)]
pub struct RecordingMetrics {
    pub recordings_active: IntGauge,
    pub recorded_bytes: IntCounter,
    pub recordings_truncated: IntCounterVec,
    pub recording_write_errors: IntCounter,
    pub viewers_active: IntGauge,
    pub viewers_started: IntCounter,
    pub viewers_dropped: IntCounterVec,
}

impl RecordingMetrics {
    pub fn new(metrics: &Metrics) -> RecordingMetrics {
        let m = RecordingMetrics {
            recordings_active: IntGauge::new("recordings_active", "Sessions being recorded now")
                .expect("valid"),
            recorded_bytes: IntCounter::new(
                "recorded_bytes_total",
                "Bytes of asciicast lines queued for recording files",
            )
            .expect("valid"),
            recordings_truncated: IntCounterVec::new(
                Opts::new(
                    "recordings_truncated_total",
                    "Recordings marked truncated, by reason (size_cap, backlog)",
                ),
                &["reason"],
            )
            .expect("valid"),
            recording_write_errors: IntCounter::new(
                "recording_write_errors_total",
                "Recording files that could not be created or written",
            )
            .expect("valid"),
            viewers_active: IntGauge::new("viewers_active", "Live read-only views open now")
                .expect("valid"),
            viewers_started: IntCounter::new("viewers_total", "Live read-only views opened")
                .expect("valid"),
            viewers_dropped: IntCounterVec::new(
                Opts::new(
                    "viewers_dropped_total",
                    "Live views dropped by the server, by reason (slow, limit)",
                ),
                &["reason"],
            )
            .expect("valid"),
        };
        metrics.register(Box::new(m.recordings_active.clone()));
        metrics.register(Box::new(m.recorded_bytes.clone()));
        metrics.register(Box::new(m.recordings_truncated.clone()));
        metrics.register(Box::new(m.recording_write_errors.clone()));
        metrics.register(Box::new(m.viewers_active.clone()));
        metrics.register(Box::new(m.viewers_started.clone()));
        metrics.register(Box::new(m.viewers_dropped.clone()));
        m
    }
}

/// The server's recordings: disabled (no directory), or the config and the writer.
#[derive(Clone)]
pub struct Recordings {
    inner: Option<Arc<Inner>>,
    pub metrics: RecordingMetrics,
}

struct Inner {
    cfg: RecordingConfig,
    jobs: Mutex<Sender<Job>>,
    /// Sessions whose file is open (not to be deleted or swept by retention).
    live: Arc<Mutex<HashSet<Uuid>>>,
}

/// What a session's header says about it.
pub struct RecordingHeader<'a> {
    pub session_id: Uuid,
    pub started: DateTime<Utc>,
    pub size: Size,
    pub image: &'a str,
    pub client: IpAddr,
}

/// A recording: its file, its size and whether it was cut (for `session.ended` and the
/// admin API).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecordingSummary {
    pub file: String,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<&'static str>,
}

impl Recordings {
    pub fn disabled(metrics: &Metrics) -> Recordings {
        Recordings {
            inner: None,
            metrics: RecordingMetrics::new(metrics),
        }
    }

    /// Creates the directory (so a bad one fails start-up), applies retention and starts
    /// the writer thread.
    pub fn start(cfg: RecordingConfig, metrics: &Metrics) -> std::io::Result<Recordings> {
        files::prepare_dir(&cfg.dir)?;
        let live = Arc::new(Mutex::new(HashSet::new()));
        let metrics = RecordingMetrics::new(metrics);
        let jobs = writer::start(cfg.clone(), live.clone(), metrics.clone())?;
        jobs.send(Job::Retention).ok();
        Ok(Recordings {
            inner: Some(Arc::new(Inner {
                cfg,
                jobs: Mutex::new(jobs),
                live,
            })),
            metrics,
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn config(&self) -> Option<&RecordingConfig> {
        self.inner.as_ref().map(|i| &i.cfg)
    }

    /// Starts recording a session, or `None` when recording is off.
    pub fn begin(&self, header: RecordingHeader<'_>) -> Option<Recorder> {
        let inner = self.inner.as_ref()?;
        let file = files::file_name(header.session_id);
        let line = header_line(&header);
        inner.live.lock().insert(header.session_id);
        let mut recorder = Recorder {
            id: header.session_id,
            jobs: inner.jobs.lock().clone(),
            file,
            start: Instant::now(),
            queued: Arc::new(AtomicUsize::new(0)),
            written: 0,
            max_bytes: inner.cfg.max_bytes,
            buffer_bytes: inner.cfg.buffer_bytes,
            record_input: inner.cfg.input,
            out_carry: Vec::new(),
            in_carry: Vec::new(),
            truncated: None,
            closed: false,
            metrics: self.metrics.clone(),
        };
        recorder.send(Job::Open {
            id: header.session_id,
            header: line,
        });
        self.metrics.recordings_active.inc();
        Some(recorder)
    }

    /// The recording of a session: its file's facts, whether it is still being written.
    pub fn find(&self, id: Uuid) -> Result<RecordingFile, RecordingsError> {
        let inner = self.inner.as_ref().ok_or(RecordingsError::Off)?;
        let live = inner.live.lock().contains(&id);
        files::describe(&inner.cfg.dir, id, live)
    }

    /// Every recording in the directory, newest first.
    pub fn list(&self) -> Result<Vec<RecordingFile>, RecordingsError> {
        let inner = self.inner.as_ref().ok_or(RecordingsError::Off)?;
        let live = inner.live.lock().clone();
        files::list(&inner.cfg.dir, &live)
    }

    /// The path of a session's file, to download it.
    pub fn path(&self, id: Uuid) -> Result<PathBuf, RecordingsError> {
        let inner = self.inner.as_ref().ok_or(RecordingsError::Off)?;
        let path = inner.cfg.dir.join(files::file_name(id));
        if !path.is_file() {
            return Err(RecordingsError::NotFound);
        }
        Ok(path)
    }

    /// Deletes a finished recording; one still being written is refused.
    pub fn delete(&self, id: Uuid) -> Result<RecordingFile, RecordingsError> {
        let inner = self.inner.as_ref().ok_or(RecordingsError::Off)?;
        let live = inner.live.lock();
        if live.contains(&id) {
            return Err(RecordingsError::StillRecording);
        }
        let file = files::describe(&inner.cfg.dir, id, false)?;
        std::fs::remove_file(inner.cfg.dir.join(&file.file))
            .map_err(|e| RecordingsError::Io(e.to_string()))?;
        Ok(file)
    }

    /// Resolves once every line queued before this call is written (tests, shutdown).
    pub fn flush(&self, within: Duration) {
        if let Some(inner) = &self.inner {
            let (tx, rx) = mpsc::channel();
            if inner.jobs.lock().send(Job::Flush(tx)).is_ok() {
                let _ = rx.recv_timeout(within);
            }
        }
    }
}

fn header_line(h: &RecordingHeader<'_>) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({
        "version": 2,
        "width": h.size.cols,
        "height": h.size.rows,
        // The recording's own start (its event times count from it); `started` is the
        // session's.
        "timestamp": Utc::now().timestamp(),
        "title": format!("termcell session {}", h.session_id),
        "env": {"TERM": "xterm-256color"},
        "session_id": h.session_id,
        "started": h.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "image": h.image,
        "client_address": h.client,
    }))
    .expect("a JSON value serializes");
    line.push(b'\n');
    line
}

/// One session's recording. Dropping it without `finish` closes the file too.
pub struct Recorder {
    id: Uuid,
    jobs: Sender<Job>,
    file: String,
    start: Instant,
    /// Bytes handed to the writer and not yet written: bounded by `buffer_bytes`.
    queued: Arc<AtomicUsize>,
    /// Bytes of the file so far (header and events), bounded by `max_bytes`.
    written: u64,
    max_bytes: u64,
    buffer_bytes: usize,
    record_input: bool,
    out_carry: Vec<u8>,
    in_carry: Vec<u8>,
    truncated: Option<&'static str>,
    closed: bool,
    metrics: RecordingMetrics,
}

impl Recorder {
    pub fn output(&mut self, data: &[u8]) {
        if self.truncated.is_none() {
            let text = utf8_text(&mut self.out_carry, data);
            self.event("o", &text);
        }
    }

    /// Records typed input, only when the operator asked for it.
    pub fn input(&mut self, data: &[u8]) {
        if self.record_input && self.truncated.is_none() {
            let text = utf8_text(&mut self.in_carry, data);
            self.event("i", &text);
        }
    }

    pub fn resize(&mut self, size: Size) {
        if self.truncated.is_none() {
            self.event("r", &format!("{}x{}", size.cols, size.rows));
        }
    }

    /// Whether the recording was cut, and why (`size_cap` or `backlog`).
    pub fn truncated(&self) -> Option<&'static str> {
        self.truncated
    }

    /// The file, its size so far and whether it was cut.
    pub fn summary(&self) -> RecordingSummary {
        RecordingSummary {
            file: self.file.clone(),
            bytes: self.written,
            truncated: self.truncated,
        }
    }

    /// Closes the file and says how the recording ended.
    pub fn finish(mut self) -> RecordingSummary {
        let summary = self.summary();
        self.close();
        summary
    }

    fn close(&mut self) {
        if !std::mem::replace(&mut self.closed, true) {
            self.send(Job::Close { id: self.id });
            self.metrics.recordings_active.dec();
        }
    }

    fn elapsed(&self) -> f64 {
        (self.start.elapsed().as_micros() as f64) / 1e6
    }

    fn event(&mut self, kind: &str, text: &str) {
        if text.is_empty() {
            return;
        }
        let mut line =
            serde_json::to_vec(&(self.elapsed(), kind, text)).expect("an event serializes");
        line.push(b'\n');
        let len = line.len();
        if self.written + len as u64 > self.max_bytes {
            return self.cut("size_cap");
        }
        if self.queued.load(Ordering::Acquire) + len > self.buffer_bytes {
            return self.cut("backlog");
        }
        self.written += len as u64;
        self.send_line(line);
    }

    /// Ends the recording's content with the truncation marker (always written: it is
    /// small and the last line of the file).
    fn cut(&mut self, reason: &'static str) {
        self.truncated = Some(reason);
        self.metrics
            .recordings_truncated
            .with_label_values(&[reason])
            .inc();
        log::warn!(
            "session {}: recording truncated ({reason})",
            crate::session::short(self.id)
        );
        let t = self.elapsed();
        let text = format!("{TRUNCATED_MARKER} ({reason})");
        let mut lines = Vec::new();
        for event in [
            json!([t, "o", format!("\r\n[{text}]\r\n")]),
            json!([t, "m", text]),
        ] {
            serde_json::to_writer(&mut lines, &event).expect("an event serializes");
            lines.push(b'\n');
        }
        self.written += lines.len() as u64;
        self.send_line(lines);
    }

    fn send_line(&mut self, line: Vec<u8>) {
        self.metrics.recorded_bytes.inc_by(line.len() as u64);
        self.queued.fetch_add(line.len(), Ordering::AcqRel);
        self.send(Job::Write {
            id: self.id,
            data: line,
            queued: self.queued.clone(),
        });
    }

    fn send(&mut self, job: Job) {
        // The writer outlives every session; a send fails only once the server is gone.
        let _ = self.jobs.send(job);
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.close();
    }
}

/// The text of `data` after what `carry` held back; a character cut at the end of a chunk
/// is held back for the next, invalid bytes become U+FFFD (asciicast is JSON: UTF-8 only).
/// Borrowed, without a copy, in the common case: nothing carried and the chunk valid.
fn utf8_text<'a>(carry: &mut Vec<u8>, data: &'a [u8]) -> Cow<'a, str> {
    if carry.is_empty() {
        if let Ok(text) = std::str::from_utf8(data) {
            return Cow::Borrowed(text);
        }
    }
    let mut bytes = std::mem::take(carry);
    bytes.extend_from_slice(data);
    let mut text = String::with_capacity(bytes.len());
    let mut chunks = bytes.utf8_chunks().peekable();
    while let Some(chunk) = chunks.next() {
        text.push_str(chunk.valid());
        let bad = chunk.invalid();
        if bad.is_empty() {
            continue;
        }
        let cut_short = chunks.peek().is_none()
            && std::str::from_utf8(bad).is_err_and(|e| e.error_len().is_none());
        if cut_short {
            carry.extend_from_slice(bad);
        } else {
            text.push(char::REPLACEMENT_CHARACTER);
        }
    }
    Cow::Owned(text)
}

#[cfg(test)]
mod tests;
