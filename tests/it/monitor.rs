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
/// can hold more), half a CPU, 50 processes.
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
    "0.5",
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
    // One CPU's worth of spinning against half a CPU of quota: throttled every period.
    spinner.send_text("while :; do :; done &\r").await;

    let memory = wait_usage(&server, &hog_id, "memory over 90 %", |u| {
        u["memory_percent"].as_f64().unwrap_or(0.0) > 90.0
    })
    .await;
    assert_eq!(memory["memory_limit_bytes"], 100 * 1024 * 1024, "{memory}");
    assert!(
        memory["memory_bytes"].as_u64().unwrap() >= 93 * 1024 * 1024,
        "{memory}"
    );
    let pids = wait_usage(&server, &forker_id, "44 processes", |u| {
        u["pids"].as_u64().unwrap_or(0) >= 44
    })
    .await;
    assert_eq!(pids["pids_limit"], 50, "{pids}");
    assert!(pids["pids_percent"].as_f64().unwrap() >= 88.0, "{pids}");
    let cpu = wait_usage(&server, &spinner_id, "CPU throttled", |u| {
        u["cpu_throttled_percent"].as_f64().unwrap_or(0.0) > 50.0
    })
    .await;
    assert!(cpu["cpu_percent"].as_f64().unwrap() > 20.0, "{cpu}");
    assert!(
        cpu["cpu_percent"].as_f64().unwrap() < 70.0,
        "half a CPU at most: {cpu}"
    );

    let ev = server.wait_audit("resource.memory", Some(&hog_id), T).await;
    assert_eq!(ev["memory_limit_bytes"], 100 * 1024 * 1024, "{ev}");
    assert!(ev["percent"].as_f64().unwrap() > 90.0, "{ev}");
    assert_eq!(ev["threshold_percent"], 90, "{ev}");
    let ev = server
        .wait_audit("resource.pids", Some(&forker_id), T)
        .await;
    assert!(
        ev["pids"].as_u64().unwrap() >= 44 && ev["pids_limit"] == 50,
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
        assert_eq!(events.len(), 1, "one {kind} for {id}: {events:?}");
        assert_eq!(events[0]["event"], kind);
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
