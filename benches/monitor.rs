//! Resource monitor benchmark on the real Docker engine: the CPU one sampling pass costs
//! with 50 idle sandboxes (the containers the server creates, with its security profile),
//! and with 200 sessions (the 50 cgroups each watched four times: the same files read per
//! session as with 200 containers). Prints figures; asserts nothing about speed.
//! Run: `cargo bench --bench monitor`.
//!
//! - monitor pass: CPU time of the sampling thread per pass (from
//!   /proc/thread-self/schedstat), median and worst of 100 passes, and its share of one
//!   CPU at the default 5 s interval
//! - baseline: what Docker's stats API costs for the same 50 containers once
//!   (`docker stats --no-stream`): its wall time and the engine's CPU time
//!   (/proc/PID/stat of dockerd)

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use termcell_actors::audit::Audit;
use termcell_actors::docker::DockerEngine;
use termcell_actors::metrics::Metrics;
use termcell_actors::monitor::{Monitor, MonitorActor, MonitorConfig, Traffic, Watch};
use termcell_actors::profile::{labels, ContainerSpec};
use termcell_actors::{SessionSettings, Shared};
use uuid::Uuid;

const CONTAINERS: usize = 50;
const PASSES: usize = 100;
const DEPLOYMENT: &str = "termcell-bench-monitor";

/// CPU time this thread has used, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("schedstat")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

/// CPU time (user + system) of a process, in milliseconds.
fn process_cpu_ms(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<u64> = after_comm
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 after the comm).
    (fields[11] + fields[12]) * 1000 / 100
}

fn remove_leftovers() {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label={}={DEPLOYMENT}", labels::DEPLOYMENT),
        ])
        .output()
        .expect("docker ps");
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
}

/// CPU per pass (median, worst) with `sessions` watched.
fn passes(monitor: &mut MonitorActor) -> (Duration, Duration) {
    let mut cpu: Vec<u64> = (0..PASSES)
        .map(|_| {
            let before = thread_cpu_ns();
            monitor.sample();
            thread_cpu_ns() - before
        })
        .collect();
    cpu.sort();
    (
        Duration::from_nanos(cpu[cpu.len() / 2]),
        Duration::from_nanos(cpu[cpu.len() - 1]),
    )
}

fn watch_all(shared: &Shared, ids: &[String], times: usize) {
    for _ in 0..times {
        for id in ids {
            shared.monitor.watch(Watch {
                session: Uuid::new_v4(),
                container_id: id.clone(),
                client: std::net::Ipv4Addr::LOCALHOST.into(),
                traffic: Arc::new(Traffic::default()),
                audit_id: None,
            });
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    remove_leftovers();
    let engine = DockerEngine::connect().await.expect("the Docker engine");
    let settings = SessionSettings {
        deployment: DEPLOYMENT.into(),
        ..SessionSettings::default()
    };
    let mut ids = Vec::new();
    let t0 = Instant::now();
    for n in 0..CONTAINERS {
        let spec = ContainerSpec {
            image: &settings.image,
            entrypoint: None,
            cmd: None,
            env: settings.base_env.clone(),
            labels: [
                (labels::MANAGED_BY, labels::MANAGED_BY_VALUE),
                (labels::DEPLOYMENT, DEPLOYMENT),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            cols: 80,
            rows: 24,
        };
        let body = settings.profile.create_body(&spec);
        let id = engine
            .create(&format!("{DEPLOYMENT}-{n}"), body)
            .await
            .expect("create");
        engine.start(&id).await.expect("start");
        ids.push(id);
    }
    println!(
        "{CONTAINERS} idle sandboxes started in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        ids.iter().all(|id| engine.cgroup(id).is_some()),
        "every sandbox's cgroup is found (run as root on the engine's host)"
    );

    let metrics = Metrics::new();
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        settings,
        audit: Audit::disabled(),
        recordings: termcell_actors::recording::Recordings::disabled(&metrics),
        metrics,
        pool: Default::default(),
        monitor: Monitor::default(),
    });
    let interval = MonitorConfig::default().interval;
    let mut monitor = MonitorActor::new(shared.clone(), MonitorConfig::default());
    for (sessions, times) in [(CONTAINERS, 1), (4 * CONTAINERS, 3)] {
        watch_all(&shared, &ids, times);
        assert_eq!(shared.monitor.watched(), sessions);
        let (median, worst) = passes(&mut monitor);
        println!(
            "monitor pass, {sessions} sessions: CPU {:.2} ms median, {:.2} ms worst of {PASSES}; \
             {:.3} % of one CPU at the {} s interval",
            median.as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3,
            median.as_secs_f64() / interval.as_secs_f64() * 100.0,
            interval.as_secs()
        );
    }

    let dockerd = String::from_utf8_lossy(
        &Command::new("pidof")
            .arg("dockerd")
            .output()
            .expect("pidof")
            .stdout,
    )
    .trim()
    .to_string();
    if dockerd.is_empty() || dockerd.contains(' ') {
        println!("baseline: dockerd's pid not found; skipped");
    } else {
        let before = process_cpu_ms(&dockerd);
        let t = Instant::now();
        let out = Command::new("docker")
            .args(["stats", "--no-stream", "--format", "{{.ID}}"])
            .args(&ids)
            .output()
            .expect("docker stats");
        assert!(out.status.success(), "docker stats failed");
        println!(
            "baseline, docker stats --no-stream for the {CONTAINERS}: {:.2} s wall, dockerd CPU {} ms",
            t.elapsed().as_secs_f64(),
            process_cpu_ms(&dockerd) - before
        );
    }

    for id in &ids {
        let _ = engine.remove(id).await;
    }
    remove_leftovers();
}
