//! The writer thread of every recording: it alone touches the files, so a slow disk slows
//! no session. It takes what is queued, writes it, then flushes once per batch (so that a
//! download of a live recording sees what was recorded up to a moment ago).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use parking_lot::Mutex;
use uuid::Uuid;

use super::files::{apply_retention, file_name};
use super::{RecordingConfig, RecordingMetrics};

pub(super) enum Job {
    Open {
        id: Uuid,
        header: Vec<u8>,
    },
    Write {
        id: Uuid,
        data: Vec<u8>,
        /// The recorder's queued-bytes count, lowered once `data` is written.
        queued: Arc<AtomicUsize>,
    },
    Close {
        id: Uuid,
    },
    Retention,
    Flush(Sender<()>),
}

struct Writer {
    cfg: RecordingConfig,
    live: Arc<Mutex<HashSet<Uuid>>>,
    metrics: RecordingMetrics,
    /// `None`: the file could not be opened or written; the session's lines are dropped.
    open: HashMap<Uuid, Option<BufWriter<File>>>,
}

pub(super) fn start(
    cfg: RecordingConfig,
    live: Arc<Mutex<HashSet<Uuid>>>,
    metrics: RecordingMetrics,
) -> io::Result<Sender<Job>> {
    let (tx, rx) = mpsc::channel();
    let mut writer = Writer {
        cfg,
        live,
        metrics,
        open: HashMap::new(),
    };
    std::thread::Builder::new()
        .name("termcell-recorder".into())
        .spawn(move || writer.run(rx))?;
    Ok(tx)
}

impl Writer {
    /// Runs until every sender is gone (the server stopped).
    fn run(&mut self, rx: Receiver<Job>) {
        while let Ok(job) = rx.recv() {
            let mut waiting = Vec::new();
            self.handle(job, &mut waiting);
            while let Ok(job) = rx.try_recv() {
                self.handle(job, &mut waiting);
            }
            self.flush_all();
            for done in waiting {
                let _ = done.send(());
            }
        }
        self.flush_all();
    }

    fn handle(&mut self, job: Job, waiting: &mut Vec<Sender<()>>) {
        match job {
            Job::Open { id, header } => {
                let mut file = self.create(id);
                if let Some(out) = &mut file {
                    if let Err(e) = out.write_all(&header) {
                        self.failed(id, &e);
                        file = None;
                    }
                }
                self.open.insert(id, file);
            }
            Job::Write { id, data, queued } => {
                if let Some(Some(out)) = self.open.get_mut(&id) {
                    if let Err(e) = out.write_all(&data) {
                        self.failed(id, &e);
                        self.open.insert(id, None);
                    }
                }
                queued.fetch_sub(data.len(), Ordering::AcqRel);
            }
            Job::Close { id } => {
                if let Some(Some(mut out)) = self.open.remove(&id) {
                    if let Err(e) = out.flush().and_then(|()| out.get_ref().sync_data()) {
                        self.failed(id, &e);
                    }
                }
                self.live.lock().remove(&id);
                self.retention();
            }
            Job::Retention => self.retention(),
            Job::Flush(done) => waiting.push(done),
        }
    }

    fn create(&self, id: Uuid) -> Option<BufWriter<File>> {
        let path = self.cfg.dir.join(file_name(id));
        let mut options = OpenOptions::new();
        options.create(true).write(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o640);
        }
        match options.open(&path) {
            Ok(file) => Some(BufWriter::with_capacity(64 * 1024, file)),
            Err(e) => {
                self.failed(id, &e);
                None
            }
        }
    }

    fn flush_all(&mut self) {
        let mut failed = Vec::new();
        for (id, out) in &mut self.open {
            if let Some(writer) = out {
                if let Err(e) = writer.flush() {
                    failed.push((*id, e));
                }
            }
        }
        for (id, e) in failed {
            self.failed(id, &e);
            self.open.insert(id, None);
        }
    }

    fn retention(&self) {
        let live = self.live.lock().clone();
        apply_retention(&self.cfg, &live);
    }

    fn failed(&self, id: Uuid, e: &io::Error) {
        self.metrics.recording_write_errors.inc();
        log::error!("recording of session {}: {e}", crate::session::short(id));
    }
}
