//! termcell-actors: the supervision tree of termcell (registry, sessions with their
//! container and timers, rate limiter, audit sink) and the Docker adapter. No HTTP here.

#![forbid(unsafe_code)]

pub mod audit;
pub mod budget;
pub mod cgroup;
pub mod container;
pub mod credentials;
pub mod docker;
pub mod entry;
pub mod fault;
pub mod metrics;
pub mod monitor;
pub mod network;
pub mod notice;
pub mod pool;
pub mod profile;
pub mod ratelimit;
pub mod recording;
pub mod registry;
pub mod rejection;
pub mod runtime;
pub mod screen;
pub mod session;
#[cfg(test)]
mod testing;
pub mod timeout;
pub mod viewers;

use std::time::Duration;

/// Rows of scrollback a session's screen model keeps by default: with the default size,
/// the model stays under 512 KiB even with every row full (docs/benchmarks.md).
pub const DEFAULT_SCROLLBACK_LINES: usize = 80;

/// Sandboxes the warm pool keeps by default: two cover a pair of sessions arriving within
/// one refill (about a cold start, 0.2 s) at the cost of two idle containers (a few MiB
/// each, docs/benchmarks.md); a larger pool only helps bursts.
pub const DEFAULT_POOL_SIZE: usize = 2;

/// Session behaviour settings, fixed at start.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub image: String,
    /// Command of the session's shell; `None` uses the image's default.
    pub cmd: Option<Vec<String>>,
    pub profile: profile::SecurityProfile,
    /// Names this server's containers (label `termcell.deployment`); one per host and server.
    pub deployment: String,
    /// Random per process (label `termcell.instance`): tells this run from earlier ones.
    pub instance: String,
    pub idle_timeout: Duration,
    pub max_duration: Duration,
    pub resume_grace: Duration,
    /// The grace of a session whose page said it was closing (`Departure::PageClosed`).
    pub closed_page_grace: Duration,
    pub warn_before: Duration,
    /// Keep a model of each session's screen to draw a resumed client (screen.rs).
    pub screen_model: bool,
    /// Rows of scrollback the screen model keeps above the screen (drawn on resume).
    pub scrollback_lines: usize,
    pub default_cols: u16,
    pub default_rows: u16,
    /// A client that takes no output for this long counts as dropped.
    pub client_stall_timeout: Duration,
    /// Environment every sandbox gets before the client's allowlisted variables.
    pub base_env: Vec<String>,
    pub max_sessions: usize,
    /// Sandboxes the warm pool keeps waiting (pool.rs); 0: every session starts its own.
    pub pool_size: usize,
    /// Operators that may watch one session at once (the live read-only view).
    pub max_viewers: usize,
    pub reap_interval: Duration,
    pub limits: ratelimit::RateLimitConfig,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            image: "termcell-sandbox:latest".into(),
            cmd: None,
            profile: profile::SecurityProfile::default(),
            deployment: "termcell".into(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            idle_timeout: Duration::from_secs(600),
            max_duration: Duration::from_secs(1800),
            resume_grace: Duration::from_secs(300),
            closed_page_grace: Duration::from_secs(15),
            warn_before: Duration::from_secs(60),
            screen_model: true,
            scrollback_lines: DEFAULT_SCROLLBACK_LINES,
            default_cols: 100,
            default_rows: 30,
            client_stall_timeout: Duration::from_secs(45),
            base_env: vec![
                "TERM=xterm-256color".into(),
                "HOME=/home/user".into(),
                "LANG=C.UTF-8".into(),
            ],
            max_sessions: 50,
            pool_size: DEFAULT_POOL_SIZE,
            max_viewers: 4,
            reap_interval: Duration::from_secs(60),
            limits: ratelimit::RateLimitConfig::default(),
        }
    }
}

/// What every actor shares: the engine, the settings, the audit log and the metrics.
pub struct Shared {
    pub engine: docker::DockerEngine,
    pub settings: SessionSettings,
    pub audit: audit::Audit,
    pub metrics: metrics::Metrics,
    /// The warm pool, once started, and the sandboxes it owns.
    pub pool: pool::PoolLink,
    /// Sessions whose use is sampled, and their latest figures.
    pub monitor: monitor::Monitor,
    /// Session recordings (off without `--record-dir`) and the live-view metrics.
    pub recordings: recording::Recordings,
}
