use std::net::Ipv4Addr;
use std::path::Path;

use super::*;
use crate::cgroup::Reading;
use crate::testing::World;
use crate::SessionSettings;

fn config() -> MonitorConfig {
    MonitorConfig {
        interval: Duration::from_secs(1),
        memory_percent: 90,
        pids_percent: 80,
        sustained: Duration::from_secs(5),
        output_bytes_per_second: 1000,
    }
}

const MIB: u64 = 1024 * 1024;

fn watch(session: Uuid, container: &str, traffic: Arc<Traffic>, audit_id: Option<u32>) -> Watch {
    Watch {
        session,
        container_id: container.into(),
        client: Ipv4Addr::LOCALHOST.into(),
        traffic,
        audit_id,
    }
}

fn reading(memory: u64, pids: u64) -> Reading {
    Reading {
        memory_bytes: memory,
        memory_limit: Some(100 * MIB),
        pids,
        pids_limit: Some(50),
        ..Reading::default()
    }
}

#[test]
fn memory_over_the_threshold_alerts_once_per_episode() {
    let cfg = config();
    let t0 = Instant::now();
    let mut t = Tracker::new(t0);
    let at = |s: u64| t0 + Duration::from_secs(s);
    let (usage, alerts) = t.update(reading(50 * MIB, 1), (0, 0), at(0), &cfg);
    assert!(alerts.is_empty());
    assert_eq!(usage.memory_percent, Some(50.0));
    let (usage, alerts) = t.update(reading(95 * MIB, 1), (0, 0), at(1), &cfg);
    assert_eq!(
        alerts,
        vec![Alert::Memory {
            bytes: 95 * MIB,
            limit: 100 * MIB
        }]
    );
    assert_eq!(usage.over, vec!["memory"]);
    // Still over: the same episode, no second alert.
    let (_, alerts) = t.update(reading(99 * MIB, 1), (0, 0), at(2), &cfg);
    assert!(alerts.is_empty());
    // Below, then over again: a new episode.
    let (usage, alerts) = t.update(reading(10 * MIB, 1), (0, 0), at(3), &cfg);
    assert!(alerts.is_empty() && usage.over.is_empty());
    let (_, alerts) = t.update(reading(91 * MIB, 1), (0, 0), at(4), &cfg);
    assert_eq!(alerts.len(), 1);
}

#[test]
fn processes_over_80_percent_of_the_pids_limit_alert() {
    let cfg = config();
    let t0 = Instant::now();
    let mut t = Tracker::new(t0);
    // 40 of 50 is exactly 80 %: not above.
    let (usage, alerts) = t.update(reading(0, 40), (0, 0), t0, &cfg);
    assert!(alerts.is_empty());
    assert_eq!(usage.pids_percent, Some(80.0));
    let (_, alerts) = t.update(reading(0, 41), (0, 0), t0 + Duration::from_secs(1), &cfg);
    assert_eq!(
        alerts,
        vec![Alert::Pids {
            pids: 41,
            limit: 50
        }]
    );
}

#[test]
fn no_limit_never_alerts() {
    let cfg = config();
    let t0 = Instant::now();
    let mut t = Tracker::new(t0);
    let r = Reading {
        memory_bytes: u64::MAX / 2,
        pids: 10_000,
        ..Reading::default()
    };
    let (usage, alerts) = t.update(r, (0, 0), t0, &cfg);
    assert!(alerts.is_empty());
    assert_eq!((usage.memory_percent, usage.pids_percent), (None, None));
}

/// Feeds one reading a second for `secs` seconds, with `throttled` of every 10 periods
/// throttled, half a CPU used and `out` bytes of output a second; returns every alert.
fn run(t: &mut Tracker, t0: Instant, secs: u64, throttled: u64, out: u64) -> Vec<Alert> {
    let cfg = config();
    let mut alerts = Vec::new();
    for s in 0..=secs {
        let r = Reading {
            cpu_ns: s * 500_000_000,
            periods: s * 10,
            throttled_periods: s * throttled,
            ..Reading::default()
        };
        let (_, a) = t.update(r, (0, s * out), t0 + Duration::from_secs(s), &cfg);
        alerts.extend(a);
    }
    alerts
}

#[test]
fn cpu_throttled_in_most_periods_for_the_whole_window_alerts_once() {
    let t0 = Instant::now();
    let mut t = Tracker::new(t0);
    // Four seconds of a five-second window: not yet.
    assert!(run(&mut t, t0, 4, 8, 0).is_empty());
    let mut t = Tracker::new(t0);
    let alerts = run(&mut t, t0, 12, 8, 0);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let Alert::Cpu {
        throttled_percent,
        cpu_percent,
    } = alerts[0]
    else {
        panic!("{alerts:?}");
    };
    assert!(
        (throttled_percent - 80.0).abs() < 0.1,
        "{throttled_percent}"
    );
    assert!((cpu_percent - 50.0).abs() < 0.1, "{cpu_percent}");
}

#[test]
fn cpu_throttled_in_a_minority_of_periods_does_not_alert() {
    let t0 = Instant::now();
    let mut t = Tracker::new(t0);
    assert!(run(&mut t, t0, 12, 4, 0).is_empty());
}

#[test]
fn a_short_burst_throttled_in_its_few_periods_does_not_alert() {
    // Runnable in 1 period a second and throttled in each: 100 % of its periods, but
    // throttled for a tenth of the window.
    let cfg = config();
    let t0 = Instant::now();
    let mut t = Tracker::new(t0);
    for s in 0..=12 {
        let r = Reading {
            periods: s,
            throttled_periods: s,
            period_us: 100_000,
            ..Reading::default()
        };
        let (_, alerts) = t.update(r, (0, 0), t0 + Duration::from_secs(s), &cfg);
        assert!(alerts.is_empty(), "{alerts:?}");
    }
}

#[test]
fn output_above_the_rate_for_the_window_alerts_and_below_does_not() {
    let t0 = Instant::now();
    let mut t = Tracker::new(t0);
    let alerts = run(&mut t, t0, 12, 0, 5000);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(matches!(alerts[0], Alert::Output { bytes_per_second } if bytes_per_second >= 4000.0));
    let mut t = Tracker::new(t0);
    assert!(run(&mut t, t0, 12, 0, 500).is_empty());
}

#[test]
fn rates_come_from_the_last_interval() {
    let cfg = config();
    let t0 = Instant::now();
    let mut t = Tracker::new(t0);
    let r0 = Reading {
        cpu_ns: 1_000_000_000,
        periods: 100,
        throttled_periods: 10,
        ..Reading::default()
    };
    t.update(r0, (5, 100), t0, &cfg);
    let r1 = Reading {
        cpu_ns: 1_500_000_000,
        periods: 120,
        throttled_periods: 15,
        ..Reading::default()
    };
    let (usage, _) = t.update(r1, (7, 2100), t0 + Duration::from_secs(2), &cfg);
    assert_eq!(usage.cpu_seconds, 1.5);
    assert_eq!(usage.cpu_percent, 25.0);
    assert_eq!(usage.cpu_throttled_percent, 25.0);
    assert_eq!(usage.output_bytes_per_second, 1000.0);
    assert_eq!((usage.bytes_in, usage.bytes_out), (7, 2100));
    assert_eq!(t.cpu_delta_seconds(), 0.5);
}

fn write_v2(dir: &Path, memory: u64, pids: u64) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in [
        (
            "cpu.stat",
            "usage_usec 2000000\nnr_periods 0\nnr_throttled 0\n".to_string(),
        ),
        ("memory.current", format!("{memory}\n")),
        ("memory.max", format!("{}\n", 100 * MIB)),
        ("pids.current", format!("{pids}\n")),
        ("pids.max", "50\n".to_string()),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

#[actix_rt::test]
async fn a_pass_audits_each_episode_once_and_shows_the_figures() {
    let world = World::new(SessionSettings::default());
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("docker/c1");
    write_v2(&dir, 95 * MIB, 45);
    world.fake.set_cgroup(Cgroup::V2(dir.clone()));
    let hog = Uuid::new_v4();
    let traffic = Arc::new(Traffic::default());
    traffic.add_out(300);
    world.shared.monitor.watch(watch(hog, "c1", traffic, None));
    let mut monitor = MonitorActor::new(world.shared.clone(), config());
    monitor.sample();
    monitor.sample();
    let usage = world.shared.monitor.usage(hog).expect("sampled");
    assert_eq!(usage.memory_bytes, 95 * MIB);
    assert_eq!(usage.pids, 45);
    assert_eq!(usage.cpu_seconds, 2.0);
    assert_eq!(usage.bytes_out, 300);
    assert_eq!(usage.over, vec!["memory", "pids"]);

    let memory = world.audited("resource.memory", hog).await;
    assert_eq!(memory.len(), 1, "{memory:?}");
    assert_eq!(memory[0]["memory_bytes"], 95 * MIB);
    assert_eq!(memory[0]["percent"], 95.0);
    assert_eq!(memory[0]["threshold_percent"], 90);
    assert_eq!(memory[0]["container_id"], "c1");
    let pids = world.audited("resource.pids", hog).await;
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert_eq!(pids[0]["pids"], 45);
    assert_eq!(pids[0]["pids_limit"], 50);

    let text = world.shared.metrics.render();
    assert!(
        text.contains("termcell_resource_alerts_total{threshold=\"memory\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("termcell_sessions_over_threshold{threshold=\"pids\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("termcell_session_memory_used_ratio_count 2"),
        "{text}"
    );

    // Unwatched, the session is forgotten and the gauges come down.
    world.shared.monitor.unwatch(hog);
    monitor.sample();
    assert_eq!(world.shared.monitor.usage(hog), None);
    let text = world.shared.metrics.render();
    assert!(
        text.contains("termcell_sessions_over_threshold{threshold=\"pids\"} 0"),
        "{text}"
    );
}

#[actix_rt::test]
async fn a_quiet_session_is_sampled_and_never_audited() {
    let world = World::new(SessionSettings::default());
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("docker/c2");
    write_v2(&dir, 5 * MIB, 2);
    world.fake.set_cgroup(Cgroup::V2(dir));
    let quiet = Uuid::new_v4();
    world
        .shared
        .monitor
        .watch(watch(quiet, "c2", Arc::default(), None));
    let mut monitor = MonitorActor::new(world.shared.clone(), config());
    for _ in 0..3 {
        monitor.sample();
    }
    assert_eq!(
        world.shared.monitor.usage(quiet).unwrap().memory_percent,
        Some(5.0)
    );
    let events: Vec<_> = world
        .audit()
        .await
        .into_iter()
        .filter(|l| l["event"].as_str().unwrap_or("").starts_with("resource."))
        .collect();
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn seccomp_records_name_the_call_and_the_login_uid() {
    let line = "6,1234,20212970540,-;audit: type=1326 audit(1796342076.110:42): auid=3000000123 \
                uid=1000 gid=1000 ses=2 pid=23452 comm=\"unshare\" exe=\"/bin/busybox\" sig=31 \
                arch=c000003e syscall=272 compat=0 ip=0x7f91d6aa10f7 code=0x80000000";
    assert_eq!(
        seccomp::parse_record(line),
        Some(seccomp::Blocked {
            audit_id: 3_000_000_123,
            syscall: "unshare".into(),
            comm: "unshare".into(),
        })
    );
    // No login uid: not a session's process.
    let unset = line.replace("auid=3000000123", "auid=4294967295");
    assert_eq!(seccomp::parse_record(&unset), None);
    // Another architecture's call is named by its number.
    let i386 = line
        .replace("arch=c000003e", "arch=40000003")
        .replace("syscall=272", "syscall=102");
    assert_eq!(
        seccomp::parse_record(&i386).unwrap().syscall,
        "40000003:102"
    );
    assert_eq!(
        seccomp::parse_record("6,1,2,-;oom-kill:constraint=CONSTRAINT_MEMCG"),
        None
    );
    assert_eq!(seccomp::parse_record("audit: type=1326 auid=x"), None);
}

#[test]
fn the_killing_profile_kills_only_calls_the_profile_refuses() {
    let profile = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
        {"names":["read","ptrace"],"action":"SCMP_ACT_ALLOW"}]}"#;
    let (json, killed) = seccomp::killing_profile(profile).unwrap();
    assert!(killed.contains(&"unshare".to_string()) && killed.contains(&"mount".to_string()));
    assert!(
        !killed.contains(&"ptrace".to_string()),
        "allowed calls stay allowed"
    );
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rules = value["syscalls"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[1]["action"], "SCMP_ACT_KILL_PROCESS");
    assert_eq!(rules[1]["names"].as_array().unwrap().len(), killed.len());
    // The bundled allowlist refuses every dangerous call.
    let (_, killed) = seccomp::killing_profile(crate::profile::BUNDLED_SECCOMP).unwrap();
    assert_eq!(killed.len(), seccomp::DANGEROUS.len());
}

#[actix_rt::test]
async fn a_killed_call_is_audited_once_per_session_and_call() {
    let world = World::new(SessionSettings::default());
    let prober = Uuid::new_v4();
    world
        .shared
        .monitor
        .watch(watch(prober, "c3", Arc::default(), Some(42)));
    let mut monitor = MonitorActor::new(world.shared.clone(), config());
    let call = |syscall: &str, audit_id| seccomp::Blocked {
        audit_id,
        syscall: syscall.into(),
        comm: "busybox".into(),
    };
    for _ in 0..5 {
        monitor.blocked(call("unshare", 42));
    }
    monitor.blocked(call("mount", 42));
    monitor.blocked(call("mount", 7));
    let events = world.audited("security.seccomp", prober).await;
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["syscall"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["unshare", "mount"], "{events:?}");
    assert_eq!(events[0]["container_id"], "c3");
    let text = world.shared.metrics.render();
    assert!(
        text.contains("termcell_seccomp_killed_total{attributed=\"true\"} 6"),
        "{text}"
    );
    assert!(
        text.contains("termcell_seccomp_killed_total{attributed=\"false\"} 1"),
        "{text}"
    );
}

#[test]
fn tagging_sets_the_login_uid_before_the_command() {
    let monitor = Monitor::new(true);
    let mut body = bollard::models::ContainerCreateBody::default();
    let first = monitor.tag(&mut body).unwrap();
    let entry = body.entrypoint.unwrap();
    assert_eq!(entry[0], "/bin/sh");
    assert_eq!(
        entry[2],
        format!("{{ echo {first} > /proc/self/loginuid; }} 2>/dev/null; exec \"$@\"")
    );
    assert_eq!(
        body.cmd,
        Some(vec!["/bin/sh".to_string()]),
        "the image's command"
    );
    let second = monitor.tag(&mut bollard::models::ContainerCreateBody::default());
    assert_eq!(second, Some(first + 1));
    assert_eq!(Monitor::default().tag(&mut Default::default()), None);
}

#[test]
fn tagging_keeps_an_entry_program_in_front_of_the_command() {
    let monitor = Monitor::new(true);
    let mut body = bollard::models::ContainerCreateBody {
        entrypoint: Some(vec!["/usr/local/bin/termcell-entry".into(), "--".into()]),
        cmd: Some(vec!["/bin/sh".into()]),
        ..Default::default()
    };
    monitor.tag(&mut body).unwrap();
    let entry = body.entrypoint.unwrap();
    assert_eq!(entry[0], "/bin/sh");
    assert_eq!(entry[3], "termcell", "$0 of the tag");
    assert_eq!(entry[4..], ["/usr/local/bin/termcell-entry", "--"]);
    assert_eq!(body.cmd, Some(vec!["/bin/sh".to_string()]));
}
