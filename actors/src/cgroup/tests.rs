use std::path::{Path, PathBuf};

use super::*;

/// The `pids.events` file found from a `/proc/PID/cgroup` text.
fn events(proc_cgroup: &str) -> Option<PathBuf> {
    Cgroup::from_proc(proc_cgroup, Path::new("/sys/fs/cgroup"))?.pids_events()
}

#[test]
fn the_pids_counter_of_a_cgroup_v1_cgroupfs_container() {
    let id = "4f1c2b";
    let text = format!(
        "12:devices:/docker/{id}\n11:pids:/docker/{id}\n10:cpu,cpuacct:/docker/{id}\n\
         1:name=systemd:/docker/{id}\n0::/system.slice/containerd.service\n"
    );
    assert_eq!(
        events(&text),
        Some(PathBuf::from(format!(
            "/sys/fs/cgroup/pids/docker/{id}/pids.events"
        )))
    );
}

#[test]
fn the_pids_counter_of_a_cgroup_v1_systemd_container() {
    let text = "6:pids:/system.slice/docker-4f1c2b.scope\n\
                1:name=systemd:/system.slice/docker-4f1c2b.scope\n";
    assert_eq!(
        events(text),
        Some(PathBuf::from(
            "/sys/fs/cgroup/pids/system.slice/docker-4f1c2b.scope/pids.events"
        ))
    );
}

#[test]
fn the_pids_counter_of_a_cgroup_v2_container() {
    assert_eq!(
        events("0::/system.slice/docker-4f1c2b.scope\n"),
        Some(PathBuf::from(
            "/sys/fs/cgroup/system.slice/docker-4f1c2b.scope/pids.events"
        ))
    );
    assert_eq!(
        events("0::/docker/4f1c2b\n"),
        Some(PathBuf::from("/sys/fs/cgroup/docker/4f1c2b/pids.events"))
    );
}

#[test]
fn the_pids_counter_of_a_rootless_v2_container() {
    let text = "0::/user.slice/user-1000.slice/user@1000.service/docker-4f1c2b.scope\n";
    assert_eq!(
        events(text),
        Some(PathBuf::from(
            "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/docker-4f1c2b.scope/pids.events"
        ))
    );
}

#[test]
fn a_hybrid_host_counts_in_the_v1_pids_hierarchy() {
    // The unified line comes first here; the pids controller is still on v1.
    let text = "0::/system.slice/docker-4f1c2b.scope\n\
                5:pids:/system.slice/docker-4f1c2b.scope\n\
                1:name=systemd:/system.slice/docker-4f1c2b.scope\n";
    assert_eq!(
        events(text),
        Some(PathBuf::from(
            "/sys/fs/cgroup/pids/system.slice/docker-4f1c2b.scope/pids.events"
        ))
    );
}

#[test]
fn no_pids_controller_means_no_counter() {
    assert_eq!(
        events("3:memory:/docker/a\n1:name=systemd:/docker/a\n"),
        None
    );
    assert_eq!(events(""), None);
    assert_eq!(events("garbage\n"), None);
}

#[test]
fn pids_events_give_the_max_count() {
    assert_eq!(pids_limit_hits("max 17\n"), Some(17));
    assert_eq!(pids_limit_hits("max 0\n"), Some(0));
    assert_eq!(pids_limit_hits(""), None);
}

/// Writes `files` (name, text) into `dir`.
fn write(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

#[test]
fn separate_v1_cpu_and_cpuacct_hierarchies_are_both_found() {
    let text = "8:pids:/docker/abc\n4:memory:/docker/abc\n2:cpuacct:/docker/abc\n\
                1:cpu:/docker/abc\n0::/docker/abc\n";
    let cg = Cgroup::from_proc(text, Path::new("/r")).unwrap();
    assert_eq!(
        cg,
        Cgroup::V1 {
            cpu: Some(PathBuf::from("/r/cpu/docker/abc")),
            cpuacct: Some(PathBuf::from("/r/cpuacct/docker/abc")),
            memory: Some(PathBuf::from("/r/memory/docker/abc")),
            pids: Some(PathBuf::from("/r/pids/docker/abc")),
        }
    );
    assert!(cg.names("abc"));
    assert!(!cg.names("other"));
}

#[test]
fn a_comounted_v1_hierarchy_is_found_under_its_joined_name() {
    let cg = Cgroup::from_proc("3:cpu,cpuacct:/docker/abc\n", Path::new("/r")).unwrap();
    let Cgroup::V1 { cpu, cpuacct, .. } = cg else {
        panic!("v1 expected");
    };
    assert_eq!(cpu, Some(PathBuf::from("/r/cpu,cpuacct/docker/abc")));
    assert_eq!(cpu, cpuacct);
}

#[test]
fn a_v1_cgroup_reads_every_counter() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    write(
        &r.join("cpu/docker/abc"),
        &[
            (
                "cpu.stat",
                "nr_periods 40\nnr_throttled 30\nthrottled_time 99\n",
            ),
            ("cpu.cfs_period_us", "100000\n"),
        ],
    );
    write(
        &r.join("cpuacct/docker/abc"),
        &[("cpuacct.usage", "2500000000\n")],
    );
    write(
        &r.join("memory/docker/abc"),
        &[
            ("memory.usage_in_bytes", "1000000\n"),
            ("memory.limit_in_bytes", "4000000\n"),
            (
                "memory.stat",
                "cache 5\ninactive_file 1\ntotal_inactive_file 200000\n",
            ),
        ],
    );
    write(
        &r.join("pids/docker/abc"),
        &[
            ("pids.current", "7\n"),
            ("pids.max", "50\n"),
            ("pids.events", "max 3\n"),
        ],
    );
    let text =
        "8:pids:/docker/abc\n4:memory:/docker/abc\n2:cpuacct:/docker/abc\n1:cpu:/docker/abc\n";
    let reading = Cgroup::from_proc(text, r).unwrap().read().unwrap();
    assert_eq!(
        reading,
        Reading {
            cpu_ns: 2_500_000_000,
            periods: 40,
            throttled_periods: 30,
            period_us: 100_000,
            memory_bytes: 800_000,
            memory_limit: Some(4_000_000),
            pids: 7,
            pids_limit: Some(50),
            pids_limit_hits: 3,
        }
    );
}

#[test]
fn a_v2_cgroup_reads_every_counter_and_max_is_no_limit() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("system.slice/docker-abc.scope");
    write(
        &dir,
        &[
            (
                "cpu.stat",
                "usage_usec 1500000\nuser_usec 1\nnr_periods 10\nnr_throttled 6\n",
            ),
            ("cpu.max", "20000 50000\n"),
            ("memory.current", "3000\n"),
            ("memory.max", "max\n"),
            ("memory.stat", "anon 1\ninactive_file 1000\n"),
            ("pids.current", "2\n"),
            ("pids.max", "max\n"),
        ],
    );
    let cg = Cgroup::from_proc("0::/system.slice/docker-abc.scope\n", root.path()).unwrap();
    let reading = cg.read().unwrap();
    assert_eq!(reading.cpu_ns, 1_500_000_000);
    assert_eq!((reading.periods, reading.throttled_periods), (10, 6));
    assert_eq!(reading.period_us, 50_000);
    assert_eq!(reading.memory_bytes, 2000);
    assert_eq!(reading.memory_limit, None);
    assert_eq!(
        (reading.pids, reading.pids_limit, reading.pids_limit_hits),
        (2, None, 0)
    );
}

#[test]
fn a_removed_cgroup_fails_to_read() {
    let root = tempfile::tempdir().unwrap();
    let cg = Cgroup::from_proc("0::/docker/gone\n", root.path()).unwrap();
    assert!(cg.read().is_err());
}
