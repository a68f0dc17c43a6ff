//! The security profile, proved on the containers the server itself creates: `docker
//! inspect` of a session's container, checks typed in the session, the probe in a sibling
//! container built from the session's own HostConfig, `termcell verify`, and abuse (fork
//! bomb, memory hog, an output flood) that must stay inside its own session.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use termcell::verify::{probe_env, run_probe, PROBE_IMAGE};
use termcell_actors::docker::DockerEngine;
use termcell_actors::profile::SecurityProfile;

use crate::support::*;

const LIMIT_256_MIB: i64 = 256 * 1024 * 1024;

/// The static probe (docker/build-programs.sh builds it once per test run); also used by
/// the restricted network's verify test.
pub async fn built_probe() -> PathBuf {
    built_sandbox_programs().await.join("termcell-probe")
}

fn options(tmpfs: &Value, path: &str) -> BTreeSet<String> {
    tmpfs[path]
        .as_str()
        .unwrap_or_else(|| panic!("no tmpfs at {path}: {tmpfs}"))
        .split(',')
        .map(str::to_string)
        .collect()
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[tokio::test]
async fn session_container_has_the_profile_in_docker_inspect() {
    let server = Server::start(&[]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let container = container_of(&id).expect("the session's container");
    let info = docker_inspect(&container);
    let hc = &info["HostConfig"];

    assert_eq!(hc["ReadonlyRootfs"], true, "root filesystem read-only");
    let tmpfs = &hc["Tmpfs"];
    for (path, size) in [("/tmp", "size=64m"), ("/run", "size=32m")] {
        let opts = options(tmpfs, path);
        for want in ["rw", "noexec", "nosuid", "nodev", size] {
            assert!(opts.contains(want), "{path} tmpfs has {want}: {opts:?}");
        }
    }
    let config_dir = options(tmpfs, "/home/user/.ably");
    for want in ["noexec", "nosuid", "nodev", "mode=0700", "uid=1000"] {
        assert!(
            config_dir.contains(want),
            "config dir tmpfs has {want}: {config_dir:?}"
        );
    }
    assert!(
        config_dir.iter().any(|o| o.starts_with("size=")),
        "config dir tmpfs is sized: {config_dir:?}"
    );

    assert_eq!(hc["PidsLimit"], 50, "pids limit");
    assert_eq!(hc["Memory"], LIMIT_256_MIB, "memory limit");
    assert_eq!(hc["MemorySwap"], LIMIT_256_MIB, "no swap beyond memory");
    assert_eq!(hc["NanoCpus"], 1_000_000_000i64, "one CPU");
    assert_eq!(
        hc["CapDrop"],
        serde_json::json!(["ALL"]),
        "all caps dropped"
    );
    assert!(is_empty(&hc["CapAdd"]), "no caps added: {}", hc["CapAdd"]);
    assert_eq!(hc["Privileged"], false, "not privileged");

    let security_opt: Vec<&str> = hc["SecurityOpt"]
        .as_array()
        .expect("SecurityOpt")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        security_opt
            .iter()
            .any(|o| *o == "no-new-privileges" || *o == "no-new-privileges:true"),
        "no-new-privileges in {security_opt:?}"
    );
    let seccomp = security_opt
        .iter()
        .find_map(|o| o.strip_prefix("seccomp="))
        .expect("an inline seccomp profile");
    let seccomp: Value = serde_json::from_str(seccomp).expect("seccomp is JSON text, not a path");
    assert_eq!(
        seccomp["architectures"],
        serde_json::json!(["SCMP_ARCH_X86_64"]),
        "x86_64 only: no i386 compat entry"
    );
    assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ERRNO", "an allowlist");

    assert_eq!(hc["NetworkMode"], "none", "no network");
    assert_eq!(info["Config"]["User"], "1000:1000", "non-root user");
    assert_eq!(
        docker_exec(&container, "id -u").trim(),
        "1000",
        "even a docker exec into the container is not root"
    );
    assert_eq!(hc["Init"], true, "an init reaps zombies");
    assert_eq!(
        hc["LogConfig"]["Type"], "none",
        "no log driver filling the disk"
    );
    assert_eq!(hc["RestartPolicy"]["Name"], "no", "never restarted");
    for field in ["Binds", "PortBindings", "Devices", "Mounts"] {
        assert!(is_empty(&hc[field]), "{field} is empty: {}", hc[field]);
    }
    assert!(is_empty(&info["Mounts"]), "no volumes: {}", info["Mounts"]);
    let masked: Vec<&str> = hc["MaskedPaths"]
        .as_array()
        .expect("MaskedPaths kept")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        masked.contains(&"/proc/keys") && masked.contains(&"/proc/timer_list"),
        "Docker's default masks kept: {masked:?}"
    );
    assert!(
        !is_empty(&hc["ReadonlyPaths"]),
        "Docker's default read-only paths kept"
    );

    let labels = &info["Config"]["Labels"];
    assert_eq!(labels["termcell.managed-by"], "termcell");
    assert_eq!(labels["termcell.deployment"], server.deployment.as_str());
    assert_eq!(labels["termcell.session"], id.as_str());
    let (_, status) = admin_json(&server, reqwest::Method::GET, "/admin/status").await;
    assert_eq!(
        labels["termcell.instance"], status["instance"],
        "the instance label names the server that made it"
    );
    let created = labels["termcell.created-at"].as_str().unwrap_or("");
    let created = chrono::DateTime::parse_from_rfc3339(created)
        .unwrap_or_else(|e| panic!("created-at {created:?} is RFC 3339: {e}"));
    let age = chrono::Utc::now().signed_duration_since(created);
    assert!(
        age.num_seconds().abs() < 120,
        "created-at is the creation time: {created}"
    );
}

#[tokio::test]
async fn session_shell_runs_confined() {
    let server = Server::start(&[]);
    let (mut c, _id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;

    let status = c
        .capture("grep -E '^(Cap(Eff|Prm|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status")
        .await;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("{name} in /proc/self/status: {status:?}"))
    };
    for cap in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(field(cap), "0000000000000000", "{cap} is empty");
    }
    assert_eq!(field("NoNewPrivs"), "1", "no-new-privileges");
    assert_eq!(field("Seccomp"), "2", "a seccomp filter is active");

    let ids = c.capture("id -u; id -g").await;
    let ids: Vec<&str> = ids.lines().map(str::trim).collect();
    assert_eq!(ids, ["1000", "1000"], "uid and gid are 1000, not 0");

    let write = c.capture("touch /owned 2>&1; echo rc=$?").await;
    assert!(
        write.contains("Read-only file system") && !write.contains("rc=0"),
        "writing to / fails: {write:?}"
    );

    let exec = c
        .capture("cp /bin/busybox /tmp/bb && chmod 755 /tmp/bb && /tmp/bb true 2>&1; echo rc=$?")
        .await;
    assert!(
        exec.contains("Permission denied") && exec.contains("rc=126"),
        "a binary copied to /tmp cannot run: {exec:?}"
    );

    let cgroup = c
        .capture(
            "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes \
         /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
        )
        .await;
    let values: Vec<&str> = cgroup.lines().map(str::trim).collect();
    assert_eq!(
        values,
        ["50", "268435456", "268435456"],
        "pids.max, memory and memsw limits (cgroup v1)"
    );

    let net = c.capture("cat /proc/net/dev").await;
    let interfaces: Vec<&str> = net
        .lines()
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim()))
        .collect();
    assert_eq!(interfaces, ["lo"], "only loopback: {net:?}");

    let socket = c
        .capture("ls -l /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock 2>&1")
        .await;
    assert_eq!(
        socket.matches("No such file or directory").count(),
        3,
        "no runtime socket: {socket:?}"
    );
}

#[tokio::test]
async fn probe_passes_in_a_sibling_of_a_session_container() {
    let probe = built_probe().await;
    let server = Server::start(&[]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let container = container_of(&id).expect("the session's container");
    let engine = DockerEngine::connect().await.expect("Docker engine");
    let inspected = engine.inspect(&container).await.expect("inspect");
    let host_config = inspected.host_config.expect("the session's HostConfig");
    let user = inspected
        .config
        .and_then(|c| c.user)
        .expect("the session's user");
    termcell::image::build_probe(&engine, PROBE_IMAGE, &probe)
        .await
        .expect("build the probe image");
    // Its own deployment label, so the server's orphan sweep never takes the sibling.
    let deployment = format!("{}-probe", server.deployment);
    let run = run_probe(
        &engine,
        host_config,
        &user,
        probe_env(&SecurityProfile::default()),
        &deployment,
    )
    .await
    .expect("the probe ran");
    println!("{}", run.output);
    let (passed, failed) = (run.count("PASS"), run.count("FAIL"));
    assert_eq!(failed, 0, "no check fails:\n{}", run.output);
    assert!(
        passed >= 55,
        "the probe ran its checks ({passed} passed):\n{}",
        run.output
    );
    assert_eq!(run.exit_code, 0, "probe exit code:\n{}", run.output);
    assert!(
        containers_with_label(&format!("termcell.deployment={deployment}")).is_empty(),
        "the sibling container is removed"
    );
}

#[tokio::test]
async fn verify_command_passes_and_cleans_up() {
    built_probe().await;
    let deployment = format!(
        "it-verify-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_termcell"))
        .args(["verify", "--deployment", &deployment])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .expect("run termcell verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify exits 0:\n{stdout}\n{stderr}"
    );
    let passed = stdout.lines().filter(|l| l.starts_with("PASS ")).count();
    assert!(passed >= 55, "{passed} PASS lines:\n{stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("FAIL ")), "{stdout}");
    for check in [
        "PASS capabilities:",
        "PASS seccomp-filter:",
        "PASS rootfs-read-only:",
        "PASS pids-limit:",
        "PASS memory-limit:",
        "PASS deny-i386-socketcall:",
        "PASS net-loopback-only:",
        "PASS no-runtime-socket:",
    ] {
        assert!(stdout.contains(check), "{check} in:\n{stdout}");
    }
    assert!(
        stdout.contains("verify: the server's sandbox profile holds on this host"),
        "{stdout}"
    );
    assert!(
        containers_with_label(&format!("termcell.deployment={deployment}")).is_empty(),
        "verify leaves no container behind"
    );
}

#[tokio::test]
async fn start_reports_what_the_host_enforces() {
    let server = Server::start(&[]);
    let ready = server.ready().await;
    let protections = ready["protections"].as_array().expect("protections");
    let names: Vec<&str> = protections
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "read_only_rootfs",
            "capabilities",
            "seccomp",
            "user_space_kernel",
            "resource_limits",
            "network_isolation",
            "non_root_user",
            "apparmor",
            "user_namespaces",
            "blocked_syscalls_audited",
            "credentials_out_of_config",
            "cgroup",
        ],
        "every protection is reported"
    );
    // runc by default: the host kernel, said so rather than claimed.
    assert_eq!(ready["runtime"]["name"], "runc", "{ready}");
    assert_eq!(ready["runtime"]["user_space_kernel"], false, "{ready}");
    let enforced = |name: &str| {
        protections
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {protections:?}"))["enforced"]
            .as_bool()
            .unwrap()
    };
    for name in [
        "read_only_rootfs",
        "capabilities",
        "seccomp",
        "resource_limits",
        "network_isolation",
        "non_root_user",
    ] {
        assert!(enforced(name), "{name} is enforced on this host");
    }
    // Whatever /ready says is not enforced, the log said at start, and the other way round.
    let log = server.log();
    for p in protections {
        let name = p["name"].as_str().unwrap();
        let line = format!("protection {name}: NOT enforced");
        assert_eq!(
            log.contains(&line),
            !p["enforced"].as_bool().unwrap(),
            "{name}: the start log and /ready agree:\n{log}"
        );
    }
    println!(
        "not enforced here: {:?}",
        protections
            .iter()
            .filter(|p| p["enforced"] == false)
            .map(|p| format!("{}: {}", p["name"], p["detail"]))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn fork_bomb_stays_inside_its_session() {
    let server = Server::start(&[]);
    let (mut bomb, bomb_id) = Client::session(&server).await;
    let (mut other, _) = Client::session(&server).await;
    bomb.wait_output("$ ", T).await;
    other.wait_output("$ ", T).await;

    bomb.send_text("i=0; while [ $i -lt 200 ]; do sleep 300 & i=$((i+1)); done\r")
        .await;
    bomb.wait_output("can't fork", T).await;
    let started = bomb.capture("echo $i").await;
    let started: u32 = started.parse().unwrap_or_else(|_| panic!("{started:?}"));
    assert!(
        started < 50,
        "the pids limit stopped the loop after {started} processes"
    );

    // While the bomb holds every pid of its sandbox, the rest keeps working.
    let out = other.capture("ls / | wc -l").await;
    assert!(
        out.trim().parse::<u32>().unwrap_or(0) > 3,
        "the other session forks: {out:?}"
    );
    let health = reqwest::get(server.http("/health")).await.unwrap();
    assert!(health.status().is_success(), "the server answers");
    let (mut third, _) = Client::session(&server).await;
    third.run("echo third-$((1+2))", "third-3").await;

    // The bombed session recovers once its processes are gone.
    bomb.send_text("kill -9 -1\r").await;
    let after = bomb.capture("sleep 0 && ls / | wc -l").await;
    assert!(
        after
            .lines()
            .last()
            .unwrap_or("")
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
            > 3,
        "the bombed session forks again: {after:?}"
    );
    assert!(container_of(&bomb_id).is_some());

    // The hits on the pids limit are audited while the session lives.
    let pids = server
        .wait_audit("security.pids", Some(&bomb_id), Duration::from_secs(15))
        .await;
    assert!(pids["limit_hits"].as_u64().unwrap_or(0) > 0, "{pids}");
}

#[tokio::test]
async fn memory_hog_is_killed_and_audited() {
    let server = Server::start(&[]);
    let (mut hog, hog_id) = Client::session(&server).await;
    let (mut other, other_id) = Client::session(&server).await;
    hog.wait_output("$ ", T).await;
    other.wait_output("$ ", T).await;

    // One awk process doubling a string until it passes 256 MiB.
    hog.send_text("awk 'BEGIN { s = \"x\"; while (1) s = s s }'; echo hog-rc=$?\r")
        .await;
    let out = other.capture("echo concurrent").await;
    assert_eq!(out, "concurrent", "the other session answers meanwhile");
    let out = hog.wait_output("hog-rc=137", T).await;
    assert!(out.contains("Killed"), "the user sees the kill: {out:?}");
    hog.wait_output("memory limit was reached", T).await;

    let oom = server
        .wait_audit("security.oom", None, Duration::from_secs(15))
        .await;
    assert_eq!(oom["session_id"], hog_id.as_str(), "{oom}");
    assert_ne!(oom["session_id"], other_id.as_str());

    let after = hog.capture("echo still-here").await;
    assert_eq!(after, "still-here", "the hog's session keeps its shell");
    let after = other.capture("ls / | wc -l").await;
    assert!(after.parse::<u32>().unwrap_or(0) > 3, "{after:?}");
    let health = reqwest::get(server.http("/health")).await.unwrap();
    assert!(health.status().is_success(), "the server answers");
}

#[tokio::test]
async fn output_flood_keeps_server_memory_bounded() {
    const BOUND_KIB: u64 = 64 * 1024;
    let server = Server::start(&[]);
    let (mut c, _id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let baseline = server.rss_kib();

    c.send_text("yes\r").await;
    let started = Instant::now();
    let mut next_sample = started;
    let (mut peak, mut received) = (baseline, 0usize);
    while started.elapsed() < Duration::from_secs(30) {
        // The client reads normally; what it read is counted and dropped.
        c.next(Duration::from_millis(100)).await;
        received += c.output.len();
        c.output.clear();
        assert!(c.closed.is_none(), "the session stays open: {:?}", c.closed);
        if Instant::now() >= next_sample {
            peak = peak.max(server.rss_kib());
            next_sample += Duration::from_millis(500);
        }
    }
    println!(
        "yes for 30 s: {} MiB received, server RSS baseline {} KiB, peak {} KiB",
        received >> 20,
        baseline,
        peak
    );
    assert!(received > 1 << 20, "output flowed: {received} bytes");
    assert!(
        peak < BOUND_KIB,
        "server RSS peak {peak} KiB stays under {BOUND_KIB} KiB"
    );

    c.send_text("\x03").await;
    let deadline = Instant::now() + T;
    loop {
        c.output.clear();
        c.send_text("echo stopped-$((6*7))\r").await;
        let quiet = Instant::now() + Duration::from_secs(2);
        while Instant::now() < quiet {
            if c.next(Duration::from_millis(200)).await.is_none() && c.closed.is_some() {
                break;
            }
            if String::from_utf8_lossy(&c.output).contains("stopped-42") {
                break;
            }
        }
        if String::from_utf8_lossy(&c.output).contains("stopped-42") {
            break;
        }
        assert!(Instant::now() < deadline, "Ctrl-C stopped yes");
    }
    c.output.clear();
    let out = c.capture("echo answer").await;
    assert_eq!(out, "answer", "the session answers after Ctrl-C");
}
