//! One session's figures between samples: turns two cgroup readings into rates and
//! decides when an episode over a threshold begins (alert once) and ends. Pure: no clock
//! of its own, no I/O, so every rule is tested with made-up readings.

use std::collections::VecDeque;
use std::time::Instant;

use chrono::Utc;

use super::{round1, MonitorConfig, Usage};
use crate::cgroup::Reading;

/// The start of an episode over a threshold, with the figures that crossed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Alert {
    Memory {
        bytes: u64,
        limit: u64,
    },
    Pids {
        pids: u64,
        limit: u64,
    },
    Cpu {
        throttled_percent: f64,
        cpu_percent: f64,
    },
    Output {
        bytes_per_second: f64,
    },
}

impl Alert {
    pub fn kind(&self) -> &'static str {
        match self {
            Alert::Memory { .. } => "memory",
            Alert::Pids { .. } => "pids",
            Alert::Cpu { .. } => "cpu",
            Alert::Output { .. } => "output",
        }
    }
}

/// What one interval added: scheduler periods, throttled ones, CPU and output.
#[derive(Debug, Clone, Copy)]
struct Step {
    at: Instant,
    periods: u64,
    throttled: u64,
    /// Time spent throttled (periods throttled times their length), in microseconds.
    throttled_us: u64,
    cpu_ns: u64,
    out_bytes: u64,
}

/// Episodes open now, one flag per threshold.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Over {
    pub memory: bool,
    pub pids: bool,
    pub cpu: bool,
    pub output: bool,
}

pub struct Tracker {
    since: Instant,
    last: Option<(Instant, Reading, u64)>,
    steps: VecDeque<Step>,
    pub over: Over,
    cpu_delta_ns: u64,
}

impl Tracker {
    pub fn new(now: Instant) -> Tracker {
        Tracker {
            since: now,
            last: None,
            steps: VecDeque::new(),
            over: Over::default(),
            cpu_delta_ns: 0,
        }
    }

    /// CPU time the latest sample added (for the total CPU counter).
    pub fn cpu_delta_seconds(&self) -> f64 {
        self.cpu_delta_ns as f64 / 1e9
    }

    /// Takes a reading and the traffic totals `(in, out)` at `now`: the figures, and the
    /// alerts of episodes that begin with this sample.
    pub fn update(
        &mut self,
        reading: Reading,
        (bytes_in, bytes_out): (u64, u64),
        now: Instant,
        config: &MonitorConfig,
    ) -> (Usage, Vec<Alert>) {
        let mut usage = Usage {
            sampled_at: Utc::now(),
            cpu_seconds: round3(reading.cpu_ns as f64 / 1e9),
            memory_bytes: reading.memory_bytes,
            memory_limit_bytes: reading.memory_limit,
            memory_percent: reading
                .memory_limit
                .map(|l| round1(reading.memory_bytes as f64 * 100.0 / l.max(1) as f64)),
            pids: reading.pids,
            pids_limit: reading.pids_limit,
            pids_percent: reading
                .pids_limit
                .map(|l| round1(reading.pids as f64 * 100.0 / l.max(1) as f64)),
            bytes_in,
            bytes_out,
            ..Usage::default()
        };
        self.cpu_delta_ns = 0;
        if let Some((at, prev, prev_out)) = self.last {
            let secs = now.duration_since(at).as_secs_f64().max(1e-3);
            let step = Step {
                at: now,
                periods: reading.periods.saturating_sub(prev.periods),
                throttled: reading
                    .throttled_periods
                    .saturating_sub(prev.throttled_periods),
                throttled_us: reading
                    .throttled_periods
                    .saturating_sub(prev.throttled_periods)
                    * if reading.period_us == 0 {
                        DEFAULT_PERIOD_US
                    } else {
                        reading.period_us
                    },
                cpu_ns: reading.cpu_ns.saturating_sub(prev.cpu_ns),
                out_bytes: bytes_out.saturating_sub(prev_out),
            };
            self.cpu_delta_ns = step.cpu_ns;
            usage.cpu_percent = round1(step.cpu_ns as f64 / 1e9 / secs * 100.0);
            usage.cpu_throttled_percent = if step.periods == 0 {
                0.0
            } else {
                round1(step.throttled as f64 * 100.0 / step.periods as f64)
            };
            usage.output_bytes_per_second = round1(step.out_bytes as f64 / secs);
            self.steps.push_back(step);
        }
        self.last = Some((now, reading, bytes_out));
        // Keep the steps that end inside the window.
        while self
            .steps
            .front()
            .is_some_and(|s| now.duration_since(s.at) >= config.sustained)
        {
            self.steps.pop_front();
        }

        let mut alerts = Vec::new();
        let memory = reading.memory_limit.filter(|&limit| {
            reading.memory_bytes as u128 * 100 > limit as u128 * config.memory_percent as u128
        });
        if edge(&mut self.over.memory, memory.is_some()) {
            alerts.push(Alert::Memory {
                bytes: reading.memory_bytes,
                limit: memory.expect("over"),
            });
        }
        let pids = reading.pids_limit.filter(|&limit| {
            reading.pids as u128 * 100 > limit as u128 * config.pids_percent as u128
        });
        if edge(&mut self.over.pids, pids.is_some()) {
            alerts.push(Alert::Pids {
                pids: reading.pids,
                limit: pids.expect("over"),
            });
        }
        // The sustained rules need a whole window of samples behind them.
        let covered = now.duration_since(self.since) >= config.sustained;
        let (periods, throttled, throttled_us, cpu_ns, out_bytes) =
            self.steps
                .iter()
                .fold((0, 0, 0, 0, 0), |(p, t, tu, c, o), s| {
                    (
                        p + s.periods,
                        t + s.throttled,
                        tu + s.throttled_us,
                        c + s.cpu_ns,
                        o + s.out_bytes,
                    )
                });
        let window = config.sustained.as_secs_f64().max(1e-3);
        // Throttled for most of the window: a session that ran briefly and was throttled
        // in those few periods is not.
        let cpu_over = covered && throttled_us as u128 * 2 > config.sustained.as_micros();
        if edge(&mut self.over.cpu, cpu_over) {
            alerts.push(Alert::Cpu {
                throttled_percent: throttled as f64 * 100.0 / periods.max(1) as f64,
                cpu_percent: cpu_ns as f64 / 1e9 / window * 100.0,
            });
        }
        let rate = out_bytes as f64 / window;
        let output_over = covered && rate > config.output_bytes_per_second as f64;
        if edge(&mut self.over.output, output_over) {
            alerts.push(Alert::Output {
                bytes_per_second: rate,
            });
        }
        usage.over = [
            (self.over.memory, "memory"),
            (self.over.pids, "pids"),
            (self.over.cpu, "cpu"),
            (self.over.output, "output"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        (usage, alerts)
    }
}

/// The scheduler period when the cgroup does not say (the kernel's default, 100 ms).
const DEFAULT_PERIOD_US: u64 = 100_000;

/// Sets the episode flag; true when an episode begins now.
fn edge(open: &mut bool, over: bool) -> bool {
    let begins = over && !*open;
    *open = over;
    begins
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
