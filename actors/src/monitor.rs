//! Resource monitoring of every session: one `MonitorActor` samples each watched session's
//! cgroup (CPU, throttling, memory, processes) and its WebSocket traffic every interval,
//! keeps the latest figures for the admin API, feeds aggregate metrics (no label per
//! session) and audits a `resource.*` event once per episode over a threshold.
//! Invariant: one timer for all sessions; sessions only register and count bytes, they
//! never wait for the monitor, and the monitor never touches a session's actor.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::Serialize;
use uuid::Uuid;

use crate::audit::AuditEvent;
use crate::cgroup::Cgroup;
use crate::Shared;

mod metrics;
pub mod seccomp;
mod tracker;

pub use metrics::MonitorMetrics;
pub use tracker::{Alert, Tracker};

#[cfg(test)]
mod tests;

/// How often sessions are sampled and when their use counts as an episode to audit.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// Time between two samples of every session.
    pub interval: Duration,
    /// Memory in use above this share of the limit (percent) is an episode.
    pub memory_percent: u8,
    /// Processes above this share of the pids limit (percent) is an episode.
    pub pids_percent: u8,
    /// CPU throttled in most scheduler periods, or output above the rate, for this long
    /// is an episode.
    pub sustained: Duration,
    /// Output to the client above this many bytes a second (averaged over `sustained`).
    pub output_bytes_per_second: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            interval: Duration::from_secs(5),
            memory_percent: 90,
            pids_percent: 80,
            sustained: Duration::from_secs(60),
            output_bytes_per_second: 1024 * 1024,
        }
    }
}

/// Bytes a session moved over its WebSocket; the session adds, the monitor reads.
#[derive(Debug, Default)]
pub struct Traffic {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Traffic {
    pub fn add_in(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn add_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn totals(&self) -> (u64, u64) {
        (
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        )
    }
}

/// A session's use at its latest sample, as the admin API shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    pub sampled_at: DateTime<Utc>,
    /// CPU time used since the sandbox started.
    pub cpu_seconds: f64,
    /// CPU used over the last interval, in percent of one CPU.
    pub cpu_percent: f64,
    /// Scheduler periods in which the sandbox ran out of CPU quota over the last
    /// interval, in percent.
    pub cpu_throttled_percent: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: Option<u64>,
    pub memory_percent: Option<f64>,
    pub pids: u64,
    pub pids_limit: Option<u64>,
    pub pids_percent: Option<f64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Output over the last interval.
    pub output_bytes_per_second: f64,
    /// Thresholds this session is over now (`memory`, `pids`, `cpu`, `output`).
    pub over: Vec<&'static str>,
}

struct Watched {
    container_id: String,
    client: IpAddr,
    traffic: Arc<Traffic>,
    /// The audit login uid of the session's processes (`seccomp::tag`).
    audit_id: Option<u32>,
    usage: Option<Usage>,
}

/// A session being watched: what the monitor needs to sample it and name its records.
pub struct Watch {
    pub session: Uuid,
    pub container_id: String,
    pub client: IpAddr,
    pub traffic: Arc<Traffic>,
    pub audit_id: Option<u32>,
}

/// The handle sessions and the admin side hold: who is watched and their latest figures.
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Monitor {
    watched: Arc<Mutex<HashMap<Uuid, Watched>>>,
    /// The next container audit id; `None` when blocked calls are not audited.
    audit_ids: Option<Arc<AtomicU32>>,
}

impl Monitor {
    /// `audit_calls`: tag every container so that killed calls name their session.
    pub fn new(audit_calls: bool) -> Monitor {
        // Ids start at a random point so that a container of an earlier run is not
        // taken for one of this run's.
        let first = 1_000_000_000 + (Uuid::new_v4().as_u128() % 2_000_000_000) as u32;
        Monitor {
            watched: Arc::default(),
            audit_ids: audit_calls.then(|| Arc::new(AtomicU32::new(first))),
        }
    }

    /// Whether blocked calls are audited (each sandbox is tagged when it is created).
    pub fn audits_calls(&self) -> bool {
        self.audit_ids.is_some()
    }

    /// Tags a container's create body with a fresh audit id (when blocked calls are
    /// audited) and returns it.
    pub fn tag(&self, body: &mut bollard::models::ContainerCreateBody) -> Option<u32> {
        let id = self.audit_ids.as_ref()?.fetch_add(1, Ordering::Relaxed);
        seccomp::tag(body, id);
        Some(id)
    }

    /// Starts sampling a session whose sandbox is running.
    pub fn watch(&self, w: Watch) {
        self.watched.lock().insert(
            w.session,
            Watched {
                container_id: w.container_id,
                client: w.client,
                traffic: w.traffic,
                audit_id: w.audit_id,
                usage: None,
            },
        );
    }

    pub fn unwatch(&self, session: Uuid) {
        self.watched.lock().remove(&session);
    }

    /// The session's figures at its latest sample; `None` before the first one.
    pub fn usage(&self, session: Uuid) -> Option<Usage> {
        self.watched.lock().get(&session)?.usage.clone()
    }

    pub fn watched(&self) -> usize {
        self.watched.lock().len()
    }
}

/// One session to sample, taken out of the table so that no lock is held while reading.
struct Due {
    session: Uuid,
    container_id: String,
    client: IpAddr,
    traffic: Arc<Traffic>,
}

/// Samples every watched session each interval. Runs on its own arbiter: its file reads
/// never delay a session.
pub struct MonitorActor {
    shared: Arc<Shared>,
    config: MonitorConfig,
    metrics: MonitorMetrics,
    trackers: HashMap<Uuid, Tracker>,
    /// Blocked calls audited per session and call in the current minute.
    blocked_audited: HashMap<(Uuid, String), Instant>,
}

/// A session's blocked calls are audited once per call name per this period (each is
/// counted in /metrics).
const BLOCKED_AUDIT_EVERY: Duration = Duration::from_secs(60);
/// At most this many distinct calls a session is audited for per period.
const BLOCKED_NAMES_PER_PERIOD: usize = 16;

impl MonitorActor {
    pub fn new(shared: Arc<Shared>, config: MonitorConfig) -> MonitorActor {
        let metrics = MonitorMetrics::new(&shared.metrics);
        MonitorActor {
            shared,
            config,
            metrics,
            trackers: HashMap::new(),
            blocked_audited: HashMap::new(),
        }
    }

    /// One pass over every watched session.
    pub fn sample(&mut self) {
        let started = Instant::now();
        let due: Vec<Due> = self
            .shared
            .monitor
            .watched
            .lock()
            .iter()
            .map(|(id, w)| Due {
                session: *id,
                container_id: w.container_id.clone(),
                client: w.client,
                traffic: w.traffic.clone(),
            })
            .collect();
        let live: std::collections::HashSet<Uuid> = due.iter().map(|d| d.session).collect();
        self.trackers.retain(|id, _| live.contains(id));
        let now = Instant::now();
        let mut sampled = Vec::with_capacity(due.len());
        for d in &due {
            let Some(reading) = self
                .shared
                .engine
                .cgroup(&d.container_id)
                .and_then(|cg: Cgroup| cg.read().ok())
            else {
                continue;
            };
            let tracker = self
                .trackers
                .entry(d.session)
                .or_insert_with(|| Tracker::new(now));
            let (usage, alerts) = tracker.update(reading, d.traffic.totals(), now, &self.config);
            self.metrics.observe(&usage, tracker.cpu_delta_seconds());
            for alert in alerts {
                self.metrics.alert(alert.kind());
                self.shared.audit.record(
                    alert
                        .event(&self.config)
                        .session(d.session)
                        .client(d.client)
                        .field("container_id", &d.container_id),
                );
            }
            sampled.push((d.session, usage));
        }
        self.metrics.near_limits(self.trackers.values());
        {
            let mut watched = self.shared.monitor.watched.lock();
            for (id, usage) in sampled {
                if let Some(w) = watched.get_mut(&id) {
                    w.usage = Some(usage);
                }
            }
        }
        self.metrics
            .pass_seconds
            .observe(started.elapsed().as_secs_f64());
    }
}

impl Actor for MonitorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.config.interval, |act, _| {
            // A failed pass loses one sample, not the monitor.
            crate::fault::contain("monitor::sample", || act.sample());
        });
    }
}

impl Handler<seccomp::Blocked> for MonitorActor {
    type Result = ();

    fn handle(&mut self, blocked: seccomp::Blocked, _: &mut Context<Self>) {
        crate::fault::contain("monitor::blocked", || self.blocked(blocked));
    }
}

impl MonitorActor {
    /// A killed call: counted, and audited for its session once per call and period.
    fn blocked(&mut self, blocked: seccomp::Blocked) {
        let owner = self
            .shared
            .monitor
            .watched
            .lock()
            .iter()
            .find(|(_, w)| w.audit_id == Some(blocked.audit_id))
            .map(|(id, w)| (*id, w.client, w.container_id.clone()));
        self.metrics.blocked(owner.is_some());
        let Some((session, client, container_id)) = owner else {
            log::debug!("seccomp record of no live session: {blocked:?}");
            return;
        };
        let now = Instant::now();
        self.blocked_audited
            .retain(|_, at| now.duration_since(*at) < BLOCKED_AUDIT_EVERY);
        let key = (session, blocked.syscall.clone());
        let names = self
            .blocked_audited
            .keys()
            .filter(|(s, _)| *s == session)
            .count();
        if self.blocked_audited.contains_key(&key) || names >= BLOCKED_NAMES_PER_PERIOD {
            return;
        }
        self.blocked_audited.insert(key, now);
        self.shared.audit.record(
            AuditEvent::new("security.seccomp")
                .session(session)
                .client(client)
                .field("syscall", &blocked.syscall)
                .field("command", &blocked.comm)
                .field("action", "killed")
                .field("container_id", &container_id),
        );
    }
}

impl Alert {
    /// The `resource.*` audit event of this alert with its figures.
    fn event(&self, config: &MonitorConfig) -> AuditEvent {
        match *self {
            Alert::Memory { bytes, limit } => AuditEvent::new("resource.memory")
                .field("memory_bytes", bytes)
                .field("memory_limit_bytes", limit)
                .field("percent", percent(bytes, limit))
                .field("threshold_percent", config.memory_percent),
            Alert::Pids { pids, limit } => AuditEvent::new("resource.pids")
                .field("pids", pids)
                .field("pids_limit", limit)
                .field("percent", percent(pids, limit))
                .field("threshold_percent", config.pids_percent),
            Alert::Cpu {
                throttled_percent,
                cpu_percent,
            } => AuditEvent::new("resource.cpu")
                .field("throttled_percent", round1(throttled_percent))
                .field("cpu_percent", round1(cpu_percent))
                .field("window_seconds", config.sustained.as_secs()),
            Alert::Output { bytes_per_second } => AuditEvent::new("resource.output")
                .field("bytes_per_second", bytes_per_second.round() as u64)
                .field("threshold_bytes_per_second", config.output_bytes_per_second)
                .field("window_seconds", config.sustained.as_secs()),
        }
    }
}

fn percent(used: u64, limit: u64) -> f64 {
    round1(used as f64 * 100.0 / limit.max(1) as f64)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
