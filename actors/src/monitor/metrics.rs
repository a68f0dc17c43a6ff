//! The monitor's metrics: aggregates over sessions, never a label per session (the
//! number of series stays fixed however many sessions run).

use prometheus::{Counter, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts};

use super::{Tracker, Usage};
use crate::metrics::Metrics;

const SHARE_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 0.75, 0.8, 0.9, 0.95, 0.99, 1.0];

pub struct MonitorMetrics {
    memory_used: Histogram,
    pids_used: Histogram,
    cpu_seconds: Counter,
    near_limit: IntGaugeVec,
    alerts: IntCounterVec,
    blocked: IntCounterVec,
    pub pass_seconds: Histogram,
}

impl MonitorMetrics {
    /// Registers the monitor's metrics with the server's.
    pub fn new(metrics: &Metrics) -> MonitorMetrics {
        let share = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(SHARE_BUCKETS.to_vec()))
                .expect("static histogram options are valid")
        };
        let m = MonitorMetrics {
            memory_used: share(
                "session_memory_used_ratio",
                "Samples of each session's memory in use as a share of its limit",
            ),
            pids_used: share(
                "session_pids_used_ratio",
                "Samples of each session's processes as a share of its pids limit",
            ),
            cpu_seconds: Counter::new(
                "session_cpu_seconds_total",
                "CPU time used by all sessions' sandboxes, as sampled",
            )
            .expect("valid"),
            near_limit: IntGaugeVec::new(
                Opts::new(
                    "sessions_over_threshold",
                    "Sessions over a monitoring threshold now, by threshold",
                ),
                &["threshold"],
            )
            .expect("valid"),
            alerts: IntCounterVec::new(
                Opts::new(
                    "resource_alerts_total",
                    "Episodes over a monitoring threshold (one resource.* audit event each), by threshold",
                ),
                &["threshold"],
            )
            .expect("valid"),
            blocked: IntCounterVec::new(
                Opts::new(
                    "seccomp_killed_total",
                    "Blocked system calls that killed their caller (--syscall-audit), by whether a live session made them",
                ),
                &["attributed"],
            )
            .expect("valid"),
            pass_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "monitor_pass_seconds",
                    "Time of one sampling pass over every session",
                )
                .buckets(vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5]),
            )
            .expect("valid"),
        };
        for kind in ["memory", "pids", "cpu", "output"] {
            m.near_limit.with_label_values(&[kind]).set(0);
            m.alerts.with_label_values(&[kind]);
        }
        metrics.register(Box::new(m.memory_used.clone()));
        metrics.register(Box::new(m.pids_used.clone()));
        metrics.register(Box::new(m.cpu_seconds.clone()));
        metrics.register(Box::new(m.near_limit.clone()));
        metrics.register(Box::new(m.alerts.clone()));
        metrics.register(Box::new(m.blocked.clone()));
        metrics.register(Box::new(m.pass_seconds.clone()));
        m
    }

    pub fn observe(&self, usage: &Usage, cpu_delta_seconds: f64) {
        if let Some(p) = usage.memory_percent {
            self.memory_used.observe(p / 100.0);
        }
        if let Some(p) = usage.pids_percent {
            self.pids_used.observe(p / 100.0);
        }
        self.cpu_seconds.inc_by(cpu_delta_seconds);
    }

    pub fn blocked(&self, attributed: bool) {
        let label = if attributed { "true" } else { "false" };
        self.blocked.with_label_values(&[label]).inc();
    }

    pub fn alert(&self, kind: &str) {
        self.alerts.with_label_values(&[kind]).inc();
    }

    /// Sets the over-threshold gauges from every tracked session.
    pub fn near_limits<'a>(&self, trackers: impl Iterator<Item = &'a Tracker>) {
        let mut counts = [0i64; 4];
        for t in trackers {
            for (i, on) in [t.over.memory, t.over.pids, t.over.cpu, t.over.output]
                .into_iter()
                .enumerate()
            {
                counts[i] += on as i64;
            }
        }
        for (kind, n) in ["memory", "pids", "cpu", "output"].iter().zip(counts) {
            self.near_limit.with_label_values(&[kind]).set(n);
        }
    }
}
