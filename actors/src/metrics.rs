//! Prometheus metrics of the server, registered once and shared by every actor.
//! Names are prefixed `termcell_`; the HTTP side only renders them.

use crate::rejection::Rejection;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub sessions_active: IntGauge,
    pub sessions_detached: IntGauge,
    pub sessions_started: IntCounter,
    pub sessions_ended: IntCounterVec,
    pub container_create_seconds: Histogram,
    pub container_start_seconds: Histogram,
    pub first_output_seconds: Histogram,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub rejections: IntCounterVec,
    pub resumes: IntCounter,
    pub docker_errors: IntCounterVec,
    pub connections_open: IntGauge,
    pub ready_checks: IntCounter,
    pub egress_denied: IntCounterVec,
    pub dns_queries: IntCounterVec,
    pub dns_lookup_seconds: Histogram,
    pub firewall_restores: IntCounter,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("termcell".into()), None)
            .expect("static registry options are valid");
        let histogram = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()))
                .expect("static histogram options are valid")
        };
        let m = Metrics {
            sessions_active: IntGauge::new("sessions_active", "Sessions alive now").expect("valid"),
            sessions_detached: IntGauge::new(
                "sessions_detached",
                "Sessions without a socket, waiting for a resume",
            )
            .expect("valid"),
            sessions_started: IntCounter::new("sessions_started_total", "Sessions started")
                .expect("valid"),
            sessions_ended: IntCounterVec::new(
                Opts::new("sessions_total", "Sessions ended, by end cause"),
                &["cause"],
            )
            .expect("valid"),
            container_create_seconds: histogram(
                "container_create_seconds",
                "Time to create a sandbox container",
            ),
            container_start_seconds: histogram(
                "container_start_seconds",
                "Time to start a sandbox container (after create and attach)",
            ),
            first_output_seconds: histogram(
                "time_to_first_output_seconds",
                "Time from the session request to the first output byte",
            ),
            bytes_in: IntCounter::new("bytes_in_total", "Input bytes written to sandboxes")
                .expect("valid"),
            bytes_out: IntCounter::new("bytes_out_total", "Output bytes read from sandboxes")
                .expect("valid"),
            rejections: IntCounterVec::new(
                Opts::new("rejections_total", "Requests refused, by kind"),
                &["kind"],
            )
            .expect("valid"),
            resumes: IntCounter::new("resumes_total", "Sessions resumed on a new socket")
                .expect("valid"),
            docker_errors: IntCounterVec::new(
                Opts::new(
                    "docker_errors_total",
                    "Docker engine calls that failed, by operation",
                ),
                &["op"],
            )
            .expect("valid"),
            connections_open: IntGauge::new(
                "connections_open",
                "Client TCP connections open now (HTTP and WebSocket)",
            )
            .expect("valid"),
            ready_checks: IntCounter::new(
                "ready_checks_total",
                "Engine checks made for /ready (at most one a second)",
            )
            .expect("valid"),
            egress_denied: IntCounterVec::new(
                Opts::new(
                    "egress_denied_total",
                    "Restricted network: packets dropped and lookups refused, by kind",
                ),
                &["kind"],
            )
            .expect("valid"),
            dns_queries: IntCounterVec::new(
                Opts::new(
                    "dns_queries_total",
                    "Restricted network: queries to the sessions' resolver, by result",
                ),
                &["result"],
            )
            .expect("valid"),
            dns_lookup_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "dns_lookup_seconds",
                    "Restricted network: time to answer an allowed lookup (upstream and firewall)",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ]),
            )
            .expect("valid"),
            firewall_restores: IntCounter::new(
                "egress_firewall_restores_total",
                "Restricted network: times the firewall table was found deleted from outside and put back",
            )
            .expect("valid"),
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.sessions_active.clone()))
            .expect("unique");
        r.register(Box::new(m.sessions_detached.clone()))
            .expect("unique");
        r.register(Box::new(m.sessions_started.clone()))
            .expect("unique");
        r.register(Box::new(m.sessions_ended.clone()))
            .expect("unique");
        r.register(Box::new(m.container_create_seconds.clone()))
            .expect("unique");
        r.register(Box::new(m.container_start_seconds.clone()))
            .expect("unique");
        r.register(Box::new(m.first_output_seconds.clone()))
            .expect("unique");
        r.register(Box::new(m.bytes_in.clone())).expect("unique");
        r.register(Box::new(m.bytes_out.clone())).expect("unique");
        r.register(Box::new(m.rejections.clone())).expect("unique");
        r.register(Box::new(m.resumes.clone())).expect("unique");
        r.register(Box::new(m.docker_errors.clone()))
            .expect("unique");
        r.register(Box::new(m.connections_open.clone()))
            .expect("unique");
        r.register(Box::new(m.ready_checks.clone()))
            .expect("unique");
        r.register(Box::new(m.egress_denied.clone()))
            .expect("unique");
        r.register(Box::new(m.dns_queries.clone())).expect("unique");
        r.register(Box::new(m.dns_lookup_seconds.clone()))
            .expect("unique");
        r.register(Box::new(m.firewall_restores.clone()))
            .expect("unique");
        m
    }

    /// Registers a module's own metrics (recording.rs) beside these.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        self.registry.register(collector).expect("unique");
    }

    pub fn reject(&self, kind: Rejection) {
        self.rejections.with_label_values(&[kind.as_str()]).inc();
    }

    pub fn docker_error(&self, op: &str) {
        self.docker_errors.with_label_values(&[op]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_names_and_moves() {
        let m = Metrics::new();
        m.sessions_started.inc();
        m.sessions_ended.with_label_values(&["shell_exited"]).inc();
        m.reject(Rejection::Connections);
        let text = m.render();
        assert!(text.contains("termcell_sessions_started_total 1"));
        assert!(text.contains("termcell_sessions_total{cause=\"shell_exited\"} 1"));
        assert!(text.contains("termcell_rejections_total{kind=\"connections\"} 1"));
        assert!(text.contains("# TYPE termcell_container_create_seconds histogram"));
    }
}
