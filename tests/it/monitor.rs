//! Resource monitoring on real sessions: a memory hog, a session near its pids limit and a
//! CPU spinner each show their figures in the admin API and produce their one
//! `resource.*` audit event; a quiet session produces none. Blocked system calls: the
//! protections report and /ready say whether they can be seen, and a session calling
//! `unshare` and `mount` is checked against that statement.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::support::*;

/// One sample a second; sustained rules after 4 s. 100 MiB of memory (with a /tmp that
/// can hold more), a fifth of a CPU (a spinner is throttled even on a busy host), 50
/// processes.
const MONITORED: &[&str] = &[
    "--monitor-interval",
    "1",
    "--alert-sustained",
    "4",
    "--memory-mb",
    "100",
    "--tmp-size",
    "128m",
    "--cpus",
    "0.2",
];

async fn usage(server: &Server, id: &str) -> Value {
    let (status, info) = admin_json(server, Method::GET, &format!("/admin/sessions/{id}")).await;
    assert!(status.is_success(), "{status}: {info}");
    info["usage"].clone()
}

/// Waits until the session's sampled usage satisfies `ok`; returns it.
async fn wait_usage(server: &Server, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let seen = eventually(T, async || {
        last = usage(server, id).await;
        ok(&last)
    })
    .await;
    assert!(seen, "{what}: last usage {last}");
    last
}

fn resource_events(server: &Server, id: &str) -> Vec<Value> {
    server
        .audit_lines()
        .into_iter()
        .filter(|l| {
            l["session_id"] == id && l["event"].as_str().unwrap_or("").starts_with("resource.")
        })
        .collect()
}

#[tokio::test]
async fn memory_pids_and_cpu_hogs_show_their_figures_and_alert_once_each() {
    let server = Server::start(MONITORED);
    let (mut quiet, quiet_id) = Client::session(&server).await;
    let (mut hog, hog_id) = Client::session(&server).await;
    let (mut forker, forker_id) = Client::session(&server).await;
    let (mut spinner, spinner_id) = Client::session(&server).await;
    for c in [&mut quiet, &mut hog, &mut forker, &mut spinner] {
        c.wait_output("$ ", T).await;
    }

    // 93 MiB in the tmpfs: charged to the sandbox's memory and held without a process.
    hog.run(
        "head -c 97517568 /dev/zero > /tmp/fill; echo filled-$((1+1))",
        "filled-2",
    )
    .await;
    // 42 sleepers: with the shell and init, 44 of 50 processes (88 %), under the limit.
    forker
        .run(
            "for i in $(seq 42); do sleep 600 & done; echo forked-$((2+2))",
            "forked-4",
        )
        .await;
    // Spinning against a fifth of a CPU of quota: throttled every period.
    spinner.send_text("while :; do :; done &\r").await;

    let memory = wait_usage(&server, &hog_id, "memory over 90 %", |u| {
        u["memory_percent"].as_f64().unwrap_or(0.0) > 90.0
    })
    .await;
    assert_eq!(memory["memory_limit_bytes"], 100 * 1024 * 1024, "{memory}");
    // Sampled maybe while the file was still being written: above 90 MiB, up to 93 and more.
    assert!(
        memory["memory_bytes"].as_u64().unwrap() > 90 * 1024 * 1024,
        "{memory}"
    );
    let pids = wait_usage(&server, &forker_id, "44 processes", |u| {
        u["pids"].as_u64().unwrap_or(0) >= 44
    })
    .await;
    assert_eq!(pids["pids_limit"], 50, "{pids}");
    assert!(pids["pids_percent"].as_f64().unwrap() >= 88.0, "{pids}");
    // Spinning for the whole window: over the CPU threshold, at its quota.
    let cpu = wait_usage(&server, &spinner_id, "CPU throttled for the window", |u| {
        u["over"] == serde_json::json!(["cpu"]) && u["cpu_percent"].as_f64().unwrap_or(0.0) > 10.0
    })
    .await;
    assert!(
        cpu["cpu_throttled_percent"].as_f64().unwrap() > 50.0,
        "{cpu}"
    );
    assert!(
        cpu["cpu_percent"].as_f64().unwrap() < 30.0,
        "a fifth of a CPU at most: {cpu}"
    );

    let ev = server.wait_audit("resource.memory", Some(&hog_id), T).await;
    assert_eq!(ev["memory_limit_bytes"], 100 * 1024 * 1024, "{ev}");
    assert!(ev["percent"].as_f64().unwrap() > 90.0, "{ev}");
    assert_eq!(ev["threshold_percent"], 90, "{ev}");
    let ev = server
        .wait_audit("resource.pids", Some(&forker_id), T)
        .await;
    // The figures at the crossing: above 80 % of 50, maybe while the loop still forked.
    assert!(
        ev["pids"].as_u64().unwrap() > 40 && ev["pids_limit"] == 50,
        "{ev}"
    );
    let ev = server
        .wait_audit("resource.cpu", Some(&spinner_id), T)
        .await;
    assert!(ev["throttled_percent"].as_f64().unwrap() > 50.0, "{ev}");
    assert_eq!(ev["window_seconds"], 4, "{ev}");

    // The episodes go on for several more samples: still one event each.
    let samples = |u: &Value| u["sampled_at"].as_str().unwrap_or("").to_string();
    let before = samples(&usage(&server, &hog_id).await);
    assert!(
        eventually(T, async || {
            let now = samples(&usage(&server, &hog_id).await);
            now > before && {
                tokio::time::sleep(Duration::from_secs(3)).await;
                true
            }
        })
        .await
    );
    for (id, kind) in [
        (&hog_id, "resource.memory"),
        (&forker_id, "resource.pids"),
        (&spinner_id, "resource.cpu"),
    ] {
        let events = resource_events(&server, id);
        let of_kind = events.iter().filter(|e| e["event"] == kind).count();
        assert_eq!(of_kind, 1, "one {kind} for {id}: {events:?}");
        // Filling its memory at a fifth of a CPU, the hog may also run at its CPU quota
        // for the window on a loaded machine: that is an episode of its own. Nothing else.
        assert!(
            events
                .iter()
                .all(|e| e["event"] == kind || (id == &hog_id && e["event"] == "resource.cpu")),
            "{kind} session {id}: {events:?}"
        );
    }

    // The quiet session: sampled, small figures, never audited.
    let q = usage(&server, &quiet_id).await;
    assert!(q["memory_percent"].as_f64().unwrap() < 20.0, "{q}");
    assert!(q["pids"].as_u64().unwrap() < 10, "{q}");
    assert_eq!(q["over"], serde_json::json!([]), "{q}");
    assert!(q["bytes_out"].as_u64().unwrap() > 0, "its prompt: {q}");
    assert!(resource_events(&server, &quiet_id).is_empty());

    // The list shows usage too; /metrics only aggregates, without a session label.
    let (_, list) = admin_json(&server, Method::GET, "/admin/sessions").await;
    let listed = list["sessions"].as_array().unwrap();
    assert_eq!(listed.len(), 4);
    assert!(
        listed.iter().all(|s| s["usage"]["sampled_at"].is_string()),
        "{list}"
    );
    let samples = scrape(&server).await;
    for kind in ["memory", "pids", "cpu"] {
        assert_eq!(
            metric(
                &samples,
                "termcell_resource_alerts_total",
                &[("threshold", kind)]
            ),
            Some(1.0),
            "{kind}"
        );
    }
    assert!(metric(&samples, "termcell_session_cpu_seconds_total", &[]).unwrap() > 1.0);
    let text = metrics(&server).await;
    assert!(!text.contains(&hog_id), "no per-session label in /metrics");

    // The memory episode ends when the memory is freed; a new one is a new event.
    hog.run("rm /tmp/fill; echo freed-$((3+3))", "freed-6")
        .await;
    wait_usage(&server, &hog_id, "memory back down", |u| {
        u["over"] == serde_json::json!([])
    })
    .await;
    assert_eq!(resource_events(&server, &hog_id).len(), 1);
}

/// The `blocked_syscalls_audited` entry of /ready's protections report.
async fn blocked_calls_report(server: &Server) -> Value {
    let ready = server.ready().await;
    ready["protections"]
        .as_array()
        .expect("a protections report")
        .iter()
        .find(|p| p["name"] == "blocked_syscalls_audited")
        .cloned()
        .unwrap_or_else(|| panic!("no blocked_syscalls_audited in {ready}"))
}

fn seccomp_events(server: &Server, id: &str) -> Vec<Value> {
    server
        .audit_lines()
        .into_iter()
        .filter(|l| l["event"] == "security.seccomp" && l["session_id"] == id)
        .collect()
}

#[tokio::test]
async fn by_default_refused_calls_fail_with_eperm_and_the_report_says_they_are_not_visible() {
    let server = Server::start(&[]);
    let report = blocked_calls_report(&server).await;
    assert_eq!(report["enforced"], false, "{report}");
    assert!(
        report["detail"]
            .as_str()
            .unwrap()
            .starts_with("not visible"),
        "{report}"
    );
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let out = c.capture("unshare -U true; echo rc=$?").await;
    assert!(
        out.contains("Operation not permitted") && out.contains("rc=1"),
        "{out}"
    );
    // The session's next command runs after the refused call was made: nothing audited.
    c.capture("echo after").await;
    server.audit_lines();
    assert!(seccomp_events(&server, &id).is_empty());
}

#[tokio::test]
async fn with_syscall_audit_unshare_and_mount_are_killed_and_audited_for_their_session() {
    let server = Server::start(&["--syscall-audit"]);
    let report = blocked_calls_report(&server).await;
    let detail = report["detail"].as_str().unwrap().to_string();
    let (mut prober, prober_id) = Client::session(&server).await;
    let (mut quiet, quiet_id) = Client::session(&server).await;
    prober.wait_output("$ ", T).await;
    quiet.wait_output("$ ", T).await;

    let out = prober
        .capture("unshare -U true; echo rc=$?; mount -t tmpfs x /tmp; echo rc=$?")
        .await;
    // Killed by SIGSYS (128 + 31), whether or not the host shows the records.
    assert_eq!(out.matches("rc=159").count(), 2, "{out}");
    assert!(out.contains("Bad system call"), "{out}");
    // The session's shell lives on: only the caller died.
    assert_eq!(prober.capture("echo alive-$((1+1))").await, "alive-2");

    if report["enforced"] == false {
        // This host cannot show the records: the report says so, and nothing is claimed.
        assert!(detail.starts_with("not visible"), "{report}");
        assert!(seccomp_events(&server, &prober_id).is_empty());
        return;
    }
    assert!(
        detail.contains("unshare") && detail.contains("mount"),
        "{report}"
    );
    let mut names = Vec::new();
    let seen = eventually(T, async || {
        names = seccomp_events(&server, &prober_id)
            .iter()
            .map(|e| e["syscall"].as_str().unwrap_or("").to_string())
            .collect();
        names.len() >= 2
    })
    .await;
    assert!(
        seen,
        "security.seccomp for unshare and mount: {names:?}\n{}",
        server.log()
    );
    assert_eq!(names, ["unshare", "mount"]);
    let ev = &seccomp_events(&server, &prober_id)[0];
    assert_eq!(ev["command"], "unshare", "{ev}");
    assert_eq!(ev["action"], "killed", "{ev}");
    assert!(ev["client"].is_string(), "{ev}");

    // Again within the minute: counted, not audited again.
    prober.capture("unshare -U true; echo again").await;
    let killed = eventually(T, async || {
        metric(
            &scrape(&server).await,
            "termcell_seccomp_killed_total",
            &[("attributed", "true")],
        )
        .unwrap_or(0.0)
            >= 3.0
    })
    .await;
    assert!(killed, "the third kill is counted");
    assert_eq!(seccomp_events(&server, &prober_id).len(), 2);
    assert!(seccomp_events(&server, &quiet_id).is_empty());
    assert_eq!(quiet.capture("echo quiet").await, "quiet");
}

#[tokio::test]
async fn a_client_that_asks_gets_its_usage_and_other_clients_get_nothing_new() {
    let server = Server::start(&["--monitor-interval", "1", "--memory-mb", "100"]);
    let mut asking = Client::connect(&server).await;
    asking
        .auth(serde_json::json!({"apiKey": "app.key:secret", "client": "it", "usage": true}))
        .await;
    asking.wait_hello().await;
    let mut plain = Client::connect(&server).await;
    plain
        .auth(serde_json::json!({"apiKey": "app.key:secret"}))
        .await;
    let plain_id = plain.wait_hello().await;

    // 20 MiB in the tmpfs, charged to the sandbox: the next samples show it.
    asking
        .run(
            "head -c 20971520 /dev/zero > /tmp/held; echo held-$((1+1))",
            "held-2",
        )
        .await;
    let holding = |v: &Value| {
        v["type"] == "usage" && v["memoryBytes"].as_u64().unwrap_or(0) > 20 * 1024 * 1024
    };
    let deadline = std::time::Instant::now() + T;
    while !asking.controls.iter().any(holding) && std::time::Instant::now() < deadline {
        asking.next(Duration::from_millis(500)).await;
    }
    let reports: Vec<Value> = asking
        .controls
        .iter()
        .filter(|v| v["type"] == "usage")
        .cloned()
        .collect();
    let held = reports
        .iter()
        .find(|v| holding(v))
        .unwrap_or_else(|| panic!("no usage with the 20 MiB held: {reports:?}"));
    assert_eq!(held["memoryLimitBytes"], 100 * 1024 * 1024, "{held}");
    assert!(
        held["pids"].as_u64().unwrap() >= 2,
        "init and the shell: {held}"
    );
    assert!(held["pidsLimit"].as_u64().unwrap() > 0, "{held}");
    assert!(held["cpuPercent"].as_f64().is_some(), "{held}");
    assert!(
        held.get("over").is_none(),
        "figures, not the server's thresholds: {held}"
    );
    let first = |kind: &str| asking.controls.iter().position(|v| v["type"] == kind);
    assert!(
        first("hello").unwrap() < first("usage").unwrap(),
        "usage only after hello"
    );
    // One message per sample, never the same sample twice: at most about one a second.
    drain_for(&mut asking, Duration::from_secs(3)).await;
    let sent = asking
        .controls
        .iter()
        .filter(|v| v["type"] == "usage")
        .count();
    assert!(
        (reports.len() + 1..=reports.len() + 5).contains(&sent),
        "{} then {sent} usage messages in 3 s of 1 s samples",
        reports.len()
    );

    // The client that did not ask (the reference's published client does not) sees nothing
    // new on the wire, while its session is sampled like the other.
    drain_for(&mut plain, Duration::from_secs(1)).await;
    assert!(
        plain.controls.iter().all(|v| v["type"] != "usage"),
        "{:?}",
        plain.controls
    );
    assert!(
        usage(&server, &plain_id).await["sampled_at"].is_string(),
        "sampled all the same"
    );
}
