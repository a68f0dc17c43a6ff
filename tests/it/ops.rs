//! Operations: the admin API, /metrics, /health and /ready, the audit log, the reapers
//! (at start and periodic), SIGTERM shutdown, and surviving a Docker engine restart.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::*;

async fn get(url: String) -> (StatusCode, String) {
    let resp = http().get(url).send().await.expect("GET");
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

/// A session opened with this apiKey; returns the client (after hello) and the id.
async fn session_with_key(server: &Server, key: &str) -> (Client, String) {
    let mut c = Client::connect(server).await;
    c.auth(json!({ "apiKey": key })).await;
    let id = c.wait_hello().await;
    (c, id)
}

/// A credential that appears nowhere else, so finding it in a file means a leak.
fn unique_key() -> String {
    format!("app.key:ops-secret-{}", uuid::Uuid::new_v4().simple())
}

fn events<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

fn session_events<'a>(lines: &'a [Value], event: &str, id: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["event"] == event && l["session_id"] == id)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Admin API.

#[tokio::test]
async fn admin_api_needs_the_token_on_every_endpoint() {
    let server = Server::start(&[]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let show = format!("/admin/sessions/{id}");
    let endpoints = [
        (Method::GET, "/admin/sessions"),
        (Method::GET, show.as_str()),
        (Method::DELETE, show.as_str()),
        (Method::POST, "/admin/drain"),
        (Method::GET, "/admin/status"),
    ];
    let same_length_wrong = "x".repeat(ADMIN_TOKEN.len());
    for (method, path) in &endpoints {
        for token in [None, Some("wrong-token"), Some(same_length_wrong.as_str())] {
            let resp = admin(&server, method.clone(), path, token).await;
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with token {token:?}"
            );
            assert_eq!(
                resp.headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .map(|v| v.to_str().unwrap()),
                Some("Bearer"),
                "{method} {path}: 401 names the scheme"
            );
            let body: Value = resp.json().await.unwrap();
            assert_eq!(
                body,
                json!({"error": "missing or wrong bearer token"}),
                "{method} {path}"
            );
        }
    }
    // A token in another scheme is not accepted either.
    let resp = http()
        .get(server.admin_url("/admin/status"))
        .header("Authorization", format!("Basic {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // None of the refused calls did anything: the session lives, nothing drains.
    c.run("echo alive-$((3+4))", "alive-7").await;
    let (status, body) = admin_json(&server, Method::GET, "/admin/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["capacity"]["draining"], false, "{body}");
    assert_eq!(body["capacity"]["active"], 1, "{body}");
    assert_eq!(body["deployment"], server.deployment.as_str());
    let container = docker_inspect(&container_of(&id).unwrap());
    assert_eq!(
        body["instance"], container["Config"]["Labels"]["termcell.instance"],
        "the instance is the one that labels its containers: {body}"
    );
    // Unknown admin paths need the token too, then 404.
    let resp = admin(&server, Method::GET, "/admin/nothing", None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = admin(&server, Method::GET, "/admin/nothing", Some(ADMIN_TOKEN)).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_lists_inspects_and_kills_sessions() {
    let server = Server::start(&[]);
    let key_a = unique_key();
    let key_b = unique_key();
    let (mut a, id_a) = session_with_key(&server, &key_a).await;
    let (mut b, id_b) = session_with_key(&server, &key_b).await;
    a.wait_output("$ ", T).await;
    b.wait_output("$ ", T).await;
    a.run("echo listed-$((5*5))", "listed-25").await;
    // B drops without a close: detached, waiting for a resume.
    b.reset();

    let mut list = Value::Null;
    let detached = eventually(T, async || {
        let (status, body) = admin_json(&server, Method::GET, "/admin/sessions").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        list = body;
        list["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["id"] == id_b.as_str() && s["state"] == "detached")
    })
    .await;
    assert!(detached, "B never showed as detached: {list}");
    let text = list.to_string();
    assert!(
        !text.contains(&key_a) && !text.contains(&key_b) && !text.contains("ops-secret"),
        "the listing never carries credentials: {text}"
    );
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{list}");
    let by_id = |id: &str| {
        sessions
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} listed: {list}"))
            .clone()
    };
    let (sa, sb) = (by_id(&id_a), by_id(&id_b));
    assert_eq!(sa["state"], "attached", "{sa}");
    assert_eq!(sb["state"], "detached", "{sb}");
    for (s, id) in [(&sa, &id_a), (&sb, &id_b)] {
        chrono::DateTime::parse_from_rfc3339(s["created"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("created is RFC 3339 ({e}): {s}"));
        assert_eq!(s["client_address"], "127.0.0.1", "{s}");
        assert_eq!(
            s["container_id"].as_str(),
            container_of(id).as_deref(),
            "the listed container is the session's: {s}"
        );
        assert_eq!(s["image"], "termcell-sandbox:latest", "{s}");
        assert!(s["bytes_out"].as_u64().unwrap() > 0, "output counted: {s}");
        let fp = s["credential_fingerprint"].as_str().unwrap();
        assert!(
            fp.len() == 8 && fp.chars().all(|c| c.is_ascii_hexdigit()),
            "fingerprint is 8 hex characters: {fp:?}"
        );
    }
    assert_ne!(
        sa["credential_fingerprint"], sb["credential_fingerprint"],
        "different keys, different fingerprints"
    );
    assert!(
        sa["bytes_in"].as_u64().unwrap() >= "echo listed-$((5*5))\r".len() as u64,
        "{sa}"
    );
    chrono::DateTime::parse_from_rfc3339(sa["last_input"].as_str().expect("A typed"))
        .expect("last_input is RFC 3339");
    assert_eq!(
        (&sb["bytes_in"], &sb["last_input"]),
        (&json!(0), &Value::Null),
        "B never typed: {sb}"
    );

    // One session by id.
    let (status, one) = admin_json(&server, Method::GET, &format!("/admin/sessions/{id_a}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["id"], id_a.as_str());
    assert_eq!(one["container_id"], sa["container_id"]);
    assert!(!one.to_string().contains(&key_a));

    // Malformed and unknown ids.
    let long = "a".repeat(1000);
    for method in [Method::GET, Method::DELETE] {
        for bad in ["..%2f..%2fetc", long.as_str(), "not-a-uuid"] {
            let (status, body) =
                admin_json(&server, method.clone(), &format!("/admin/sessions/{bad}")).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{method} of id {bad:.40}: {body}"
            );
        }
        let unknown = uuid::Uuid::new_v4();
        let (status, body) = admin_json(
            &server,
            method.clone(),
            &format!("/admin/sessions/{unknown}"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} unknown id: {body}");
    }

    // Kill A: the client is told 4004, the container goes, the session is gone.
    let container_a = container_of(&id_a).unwrap();
    let (status, body) =
        admin_json(&server, Method::DELETE, &format!("/admin/sessions/{id_a}")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    expect_close(
        &mut a,
        "disconnected",
        4004,
        "Session terminated by administrator",
    )
    .await;
    assert!(
        wait_gone(&id_a, T).await,
        "the killed session's container is removed"
    );
    assert!(
        containers_with_label(&format!("termcell.session={id_a}")).is_empty()
            && !docker_ps_all().contains(&container_a),
        "container {container_a} is gone"
    );
    let path = format!("/admin/sessions/{id_a}");
    assert!(
        eventually(T, async || admin_json(&server, Method::GET, &path).await.0
            == StatusCode::NOT_FOUND)
        .await,
        "killed session still listed"
    );
    let (status, _) = admin_json(&server, Method::DELETE, &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a second kill finds nothing");
    // B is untouched by A's kill.
    let (status, body) = admin_json(&server, Method::GET, &format!("/admin/sessions/{id_b}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.wait_audit("admin.kill", Some(&id_a), T).await;
    server.expect_one_end(&id_a, "admin_kill").await;
}

fn docker_ps_all() -> String {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--no-trunc"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn drain_warns_ends_sessions_and_refuses_new_ones() {
    let server = Server::start(&[]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let (status, body) = admin_json(&server, Method::POST, "/admin/drain?warn=3").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["draining"], true, "{body}");
    assert_eq!(body["sessions"], 1, "{body}");
    let warning = c
        .wait_control("warning", None, Duration::from_secs(10))
        .await;
    assert_eq!(warning["reason"], "Server is shutting down", "{warning}");
    assert!(
        warning["secondsLeft"].as_u64().is_some_and(|s| s <= 3),
        "{warning}"
    );
    // While draining: no new sessions, not ready.
    let mut late = Client::connect(&server).await;
    late.auth(json!({"apiKey": "app.key:secret"})).await;
    expect_close(&mut late, "error", 1001, "Server shutting down").await;
    assert!(
        !late.controls.iter().any(|v| v["type"] == "hello"),
        "no session while draining"
    );
    let (status, ready) = get(server.http("/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    let (_, st) = admin_json(&server, Method::GET, "/admin/status").await;
    assert_eq!(st["capacity"]["draining"], true, "{st}");
    // After the warning the live session ends with 1001.
    expect_close(&mut c, "disconnected", 1001, "Server shutting down").await;
    assert!(wait_gone(&id, T).await, "drained session container removed");
    assert!(
        eventually(T, async || server.containers().is_empty()).await,
        "nothing left after the drain"
    );
    assert_eq!(events(&server.audit_lines(), "admin.drain").len(), 1);
    server.expect_one_end(&id, "shutdown").await;
}

#[test]
fn admin_on_all_interfaces_without_token_refuses_to_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_termcell"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0"])
        .env_remove("TERMCELL_ADMIN_TOKEN")
        .env_remove("TERMCELL_ADMIN_TOKEN_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("admin-listen") && stderr.contains("TERMCELL_ADMIN_TOKEN"),
        "the message names the setting: {stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// Metrics and probes.

#[tokio::test]
async fn metrics_health_and_ready() {
    let server = Server::start(&[]);
    let (status, health) = get(server.http("/health")).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    let (status, ready) = get(server.http("/ready")).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["docker"], true, "{ready}");

    let before = scrape(&server).await;
    assert_eq!(
        metric(&before, "termcell_sessions_started_total", &[]),
        Some(0.0)
    );
    assert_eq!(metric(&before, "termcell_sessions_active", &[]), Some(0.0));
    assert!(before.iter().all(|s| s.metric.starts_with("termcell_")));

    let (mut c, _id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let typed = "echo metric-$((2+2))";
    c.run(typed, "metric-4").await;
    let during = scrape(&server).await;
    assert_eq!(
        metric(&during, "termcell_sessions_started_total", &[]),
        Some(1.0)
    );
    assert_eq!(metric(&during, "termcell_sessions_active", &[]), Some(1.0));
    assert_eq!(
        metric(&during, "termcell_container_create_seconds_count", &[]),
        Some(1.0),
        "one container created"
    );
    assert!(
        metric(&during, "termcell_container_create_seconds_sum", &[]).unwrap() > 0.0,
        "create time observed"
    );
    let bytes_in = metric(&during, "termcell_bytes_in_total", &[]).unwrap();
    assert_eq!(
        bytes_in,
        (typed.len() + 1) as f64,
        "the typed line and its Enter"
    );
    let bytes_out = metric(&during, "termcell_bytes_out_total", &[]).unwrap();
    assert!(bytes_out > typed.len() as f64, "bytes out {bytes_out}");

    c.send_text("exit\r").await;
    expect_close(&mut c, "disconnected", 4000, "Session ended by user").await;
    let mut after = Vec::new();
    let ended = eventually(T, async || {
        after = scrape(&server).await;
        metric(
            &after,
            "termcell_sessions_total",
            &[("cause", "shell_exited")],
        ) == Some(1.0)
    })
    .await;
    assert!(ended, "sessions_total{{cause=shell_exited}} reaches 1");
    assert_eq!(metric(&after, "termcell_sessions_active", &[]), Some(0.0));
    assert_eq!(
        metric(&after, "termcell_sessions_started_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        metric(&after, "termcell_bytes_in_total", &[]),
        Some(bytes_in + "exit\r".len() as f64),
        "then `exit` and its Enter"
    );
}

// ---------------------------------------------------------------------------------------
// Audit log.

/// Reads the raw audit file: every line JSON with an RFC 3339 `time` and an `event`.
fn checked_audit(server: &Server) -> (String, Vec<Value>) {
    let raw = std::fs::read_to_string(server.audit_path()).expect("audit file");
    let mut lines = Vec::new();
    for line in raw.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let time = v["time"]
            .as_str()
            .unwrap_or_else(|| panic!("no time: {line}"));
        chrono::DateTime::parse_from_rfc3339(time)
            .unwrap_or_else(|e| panic!("time is not RFC 3339 ({e}): {line}"));
        assert!(v["event"].is_string(), "no event: {line}");
        lines.push(v);
    }
    (raw, lines)
}

#[tokio::test]
async fn audit_log_records_each_end_once_with_its_cause() {
    let mut server = Server::start(&["--resume-grace", "1", "--shutdown-timeout", "5"]);
    let key = unique_key();
    let exited = async {
        let (mut c, id) = session_with_key(&server, &key).await;
        c.wait_output("$ ", T).await;
        c.send_text("exit\r").await;
        expect_close(&mut c, "disconnected", 4000, "Session ended by user").await;
        id
    };
    let closed = async {
        let (mut c, id) = session_with_key(&server, &key).await;
        c.wait_output("$ ", T).await;
        c.close(1000, "user-closed-x").await;
        // A real client waits for the answer; dropping at once may reset the socket first.
        let _ = c.wait_close(T).await;
        id
    };
    let killed = async {
        let (mut c, id) = session_with_key(&server, &key).await;
        c.wait_output("$ ", T).await;
        let (status, _) =
            admin_json(&server, Method::DELETE, &format!("/admin/sessions/{id}")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        expect_close(
            &mut c,
            "disconnected",
            4004,
            "Session terminated by administrator",
        )
        .await;
        id
    };
    let dropped = async {
        let (mut c, id) = session_with_key(&server, &key).await;
        c.wait_output("$ ", T).await;
        c.reset();
        id
    };
    let (exited, closed, killed, dropped) = tokio::join!(exited, closed, killed, dropped);
    let ids = [&exited, &closed, &killed, &dropped];
    assert!(
        eventually(T, async || {
            let lines = server.audit_lines();
            ids.iter()
                .all(|id| !session_events(&lines, "session.ended", id).is_empty())
        })
        .await,
        "every session ended: {:?}",
        server.audit_lines()
    );
    for id in ids {
        assert!(wait_gone(id, T).await, "container of {id} removed");
    }
    // The last one is live when the server stops.
    let (mut live, live_id) = session_with_key(&server, &key).await;
    live.wait_output("$ ", T).await;
    server.signal("TERM");
    expect_close(&mut live, "disconnected", 1001, "Server shutting down").await;
    assert_eq!(server.wait_exit(T), Some(0), "clean exit");

    let (raw, lines) = checked_audit(&server);
    assert!(
        !raw.contains(&key) && !raw.contains(key.split(':').nth(1).unwrap()),
        "no credential text in the audit log"
    );
    assert!(!server.log().contains(key.split(':').nth(1).unwrap()));
    assert_eq!(lines.first().unwrap()["event"], "server.start", "{raw}");
    assert_eq!(lines.last().unwrap()["event"], "server.stop", "{raw}");
    assert_eq!(events(&lines, "server.start").len(), 1);
    assert_eq!(events(&lines, "server.stop").len(), 1);
    let expected = [
        (&exited, "shell_exited"),
        (&closed, "client_closed"),
        (&killed, "admin_kill"),
        (&dropped, "grace_expired"),
        (&live_id, "shutdown"),
    ];
    for (id, cause) in expected {
        let ended = session_events(&lines, "session.ended", id);
        assert_eq!(ended.len(), 1, "one session.ended for {cause}: {ended:?}");
        assert_eq!(ended[0]["cause"], cause, "{}", ended[0]);
        assert_eq!(session_events(&lines, "session.created", id).len(), 1);
        let created = session_events(&lines, "container.created", id);
        let removed = session_events(&lines, "container.removed", id);
        assert_eq!(created.len(), 1, "{cause}: container.created {created:?}");
        assert_eq!(removed.len(), 1, "{cause}: container.removed {removed:?}");
        assert_eq!(created[0]["container_id"], removed[0]["container_id"]);
    }
    assert_eq!(events(&lines, "session.ended").len(), 5, "{raw}");
    assert!(server.containers().is_empty(), "nothing left behind");
}

#[tokio::test]
async fn audit_logging_false_writes_no_file() {
    let mut server = Server::start_with(&[], &[("AUDIT_LOGGING", "false")]);
    let (mut c, _id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    c.send_text("exit\r").await;
    expect_close(&mut c, "disconnected", 4000, "Session ended by user").await;
    server.signal("TERM");
    assert_eq!(server.wait_exit(T), Some(0));
    assert!(
        !server.audit_path().exists(),
        "no audit file with AUDIT_LOGGING=false"
    );
}

// ---------------------------------------------------------------------------------------
// Shutdown, restart, reapers.

#[tokio::test]
async fn sigterm_ends_sessions_removes_containers_and_exits_0() {
    let mut server = Server::start(&["--shutdown-timeout", "5"]);
    let (mut a, id_a) = Client::session(&server).await;
    let (mut b, id_b) = Client::session(&server).await;
    a.wait_output("$ ", T).await;
    b.wait_output("$ ", T).await;
    assert_eq!(server.containers().len(), 2);
    let signalled = Instant::now();
    server.signal("TERM");
    tokio::join!(
        expect_close(&mut a, "disconnected", 1001, "Server shutting down"),
        expect_close(&mut b, "disconnected", 1001, "Server shutting down")
    );
    let code = server.wait_exit(Duration::from_secs(20));
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "exit code; log:\n{}", server.log());
    assert!(
        took < Duration::from_secs(6),
        "exited within the 5 s shutdown timeout (took {took:?})"
    );
    assert!(server.containers().is_empty(), "no container left");
    let (_, lines) = checked_audit(&server);
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "server.stop", "{last}");
    assert_eq!(last["sessions_ended"], 2, "{last}");
    for id in [&id_a, &id_b] {
        let ended = session_events(&lines, "session.ended", id);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0]["cause"], "shutdown");
    }
    println!("shutdown with 2 sessions took {took:?}");
}

#[tokio::test]
async fn restart_after_kill_9_removes_the_orphans() {
    let mut first = Server::start(&[]);
    let (_a, _) = Client::session(&first).await;
    let (_b, _) = Client::session(&first).await;
    // A third session detached (its socket dropped), waiting for a resume.
    let (detached, detached_id) = Client::session(&first).await;
    drop(detached);
    let is_detached = eventually(T, async || {
        metric(&scrape(&first).await, "termcell_sessions_detached", &[]) == Some(1.0)
    })
    .await;
    assert!(is_detached, "{}", metrics(&first).await);
    let orphans = first.containers();
    assert_eq!(orphans.len(), 3);
    first.signal("KILL");
    // Taken out so that dropping `first` later does not kill anything; its containers stay.
    let mut child = first.child.take().unwrap();
    child.wait().unwrap();
    assert_eq!(
        first.containers().len(),
        3,
        "kill -9 leaves the containers behind"
    );
    let dir = std::env::temp_dir().join(format!("termcell-{}-second", first.deployment));
    std::fs::create_dir_all(&dir).unwrap();
    let second = Server::start_in(&first.deployment, &dir, &[], &[]);
    // The sweep runs before the listeners open.
    let left: Vec<_> = second
        .containers()
        .into_iter()
        .filter(|c| orphans.contains(c))
        .collect();
    assert!(left.is_empty(), "orphans removed at start: {left:?}");
    assert!(
        second.log().contains("removed 3 container(s)"),
        "{}",
        second.log()
    );
    // The detached session went with its container: a resume is refused.
    let mut late = Client::connect(&second).await;
    late.auth(json!({"apiKey": "app.key:secret", "sessionId": detached_id}))
        .await;
    let closed = late.wait_close(T).await;
    assert_eq!(
        closed.as_ref().map(|(code, _)| *code),
        Some(4002),
        "{closed:?}"
    );
    let (mut c, _) = Client::session(&second).await;
    c.run("echo second-$((1+1))", "second-2").await;
}

#[tokio::test]
async fn periodic_reaper_removes_unowned_containers_only() {
    let server = Server::start(&["--reap-interval", "1"]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let (_, status) = admin_json(&server, Method::GET, "/admin/status").await;
    let instance = status["instance"].as_str().expect("instance").to_string();
    let out = Command::new("docker")
        .args([
            "run",
            "-d",
            "--network",
            "none",
            "--label",
            "termcell.managed-by=termcell",
            "--label",
            &format!("termcell.deployment={}", server.deployment),
            "--label",
            &format!("termcell.instance={instance}"),
            "--label",
            &format!("termcell.session={}", uuid::Uuid::new_v4()),
            "termcell-sandbox:latest",
            "sleep",
            "300",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let orphan = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(15), async || !docker_ps_all()
            .contains(&orphan))
        .await,
        "the reaper removes the unowned container"
    );
    println!("orphan reaped after {:?}", started.elapsed());
    assert!(
        eventually(T, async || server
            .audit_lines()
            .iter()
            .any(|l| l["event"] == "container.removed"
                && l["container_id"] == orphan.as_str()
                && l["reason"] == "orphaned"))
        .await,
        "the reaping is audited"
    );
    // The sweep that took the orphan looked at the live session's container too.
    assert!(container_of(&id).is_some());
    c.run("echo owned-$((2+5))", "owned-7").await;
}

#[tokio::test]
async fn container_removed_from_outside_ends_the_session() {
    let server = Server::start(&[]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let container = container_of(&id).unwrap();
    let status = Command::new("docker")
        .args(["rm", "-f", &container])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    // `docker rm -f` kills the container, then removes it: the session finds it killed or
    // already being removed, whichever the engine is at when the TTY stream ends.
    let reason = expect_announced_close(&mut c, 1011, "Container died: ", T).await;
    assert!(
        reason == "Container died: container killed"
            || reason == "Container died: container removed",
        "{reason:?}"
    );
    assert_eq!(c.controls.last().unwrap()["payload"], "disconnected");
    server.expect_one_end(&id, "container_died").await;
}

// ---------------------------------------------------------------------------------------
// Docker engine restart (disruptive: run alone with `-- --ignored engine_restart`).

fn docker_up() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn dockerd_running() -> bool {
    Command::new("pidof")
        .arg("dockerd")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Blocking (it also runs in `DockerdGuard`'s drop): async code calls it through
/// `spawn_blocking`.
fn start_dockerd() {
    // The API socket closes before the old daemon has stopped its containers and exited; a
    // new one started meanwhile finds its pid file and quits.
    let deadline = Instant::now() + Duration::from_secs(60);
    while dockerd_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    // A daemon killed with SIGKILL leaves its pid file, and where nothing reaps it (no init
    // in this machine's process tree does) its zombie keeps that pid alive: the new daemon
    // would refuse to start. No dockerd runs now, so the file is stale.
    // Its containerd lives on without it and keeps the new daemon's from starting: it goes
    // too (the containers' shims stay, and the new containerd finds them).
    if !dockerd_running() {
        let _ = std::fs::remove_file("/var/run/docker.pid");
        let _ = Command::new("pkill")
            .args(["-KILL", "-x", "containerd"])
            .status();
        let _ = std::fs::remove_file("/var/run/docker/containerd/containerd.pid");
    }
    // As scripts/setup.sh does, in its own session so the test's process group is not its.
    let _ = Command::new("sh")
        .args([
            "-c",
            "setsid nohup dockerd >>/var/log/termcell-dockerd.log 2>&1 < /dev/null &",
        ])
        .status();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !docker_up() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Sends `signal` to the running dockerd.
fn signal_dockerd(signal: &str) {
    let out = Command::new("pidof").arg("dockerd").output().unwrap();
    let pid = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(!pid.is_empty(), "dockerd runs");
    assert!(Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap()
        .success());
}

/// With the engine gone: /ready says why, and a new session is refused with 1013.
async fn expect_engine_down(server: &Server) {
    let (status, ready) = get(server.http("/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["docker"], false, "{ready}");
    assert_eq!(
        ready["reasons"],
        json!(["the Docker engine does not answer"]),
        "{ready}"
    );
    let mut refused = Client::connect(server).await;
    refused.auth(json!({"apiKey": "app.key:secret"})).await;
    expect_close(
        &mut refused,
        "error",
        1013,
        "Container engine unavailable, try again later",
    )
    .await;
}

/// Starts dockerd again: /ready comes back without a restart of the server, and a new
/// session works.
async fn engine_back(server: &Server) -> (Client, String) {
    tokio::task::spawn_blocking(start_dockerd).await.unwrap();
    assert!(docker_up(), "dockerd is back");
    assert!(
        eventually(T, async || get(server.http("/ready")).await.0
            == StatusCode::OK)
        .await,
        "/ready comes back without a restart"
    );
    let (mut again, again_id) = Client::session(server).await;
    again.run("echo after-$((2+2))", "after-4").await;
    (again, again_id)
}

/// Brings dockerd back whatever happens to the test.
struct DockerdGuard;

impl Drop for DockerdGuard {
    fn drop(&mut self) {
        if !docker_up() {
            start_dockerd();
        }
    }
}

#[tokio::test]
#[ignore = "stops the Docker engine: run alone with `-- --ignored --test-threads 1 engine_`"]
async fn engine_restart_is_survived() {
    let mut server = Server::start(&["--reap-interval", "2"]);
    let (mut c, _) = Client::session(&server).await;
    c.run("echo before-$((1+1))", "before-2").await;

    let _guard = DockerdGuard;
    signal_dockerd("TERM");
    assert!(
        eventually(Duration::from_secs(60), async || !docker_up()).await,
        "dockerd stopped"
    );

    expect_engine_down(&server).await;
    assert!(
        server.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the server is still running; log:\n{}",
        server.log()
    );

    let (mut again, again_id) = engine_back(&server).await;
    // The Docker events stream reconnected: an OOM kill is audited again.
    again
        .send_text("awk 'BEGIN { s = \"x\"; while (1) s = s s }'; echo hog-rc=$?\r")
        .await;
    again
        .wait_output("hog-rc=137", Duration::from_secs(60))
        .await;
    server
        .wait_audit("security.oom", Some(&again_id), Duration::from_secs(20))
        .await;
    assert!(server.child.as_mut().unwrap().try_wait().unwrap().is_none());
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[tokio::test]
#[ignore = "kills the Docker engine: run alone with `-- --ignored --test-threads 1 engine_`"]
async fn engine_killed_mid_create_and_mid_session_is_survived() {
    let mut server = Server::start(&["--reap-interval", "2"]);
    let (mut running, running_id) = Client::session(&server).await;
    running.run("echo before-$((1+1))", "before-2").await;
    let _guard = DockerdGuard;
    // Sessions being created while the engine dies.
    let mut creating = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(&server).await;
        c.auth(json!({"apiKey": "app.key:secret"})).await;
        creating.push(c);
    }
    signal_dockerd("KILL");
    assert!(
        eventually(Duration::from_secs(60), async || !docker_up()).await,
        "dockerd is gone"
    );
    // The running session's TTY stream broke with the engine: 1011, its documented code.
    let closed = running.wait_close(Duration::from_secs(60)).await;
    assert_eq!(
        closed.as_ref().map(|(code, _)| *code),
        Some(1011),
        "{closed:?}"
    );
    // Those being created end as a failed create (1011) or an engine refusal (1013).
    for c in &mut creating {
        let closed = c.wait_close(Duration::from_secs(60)).await;
        assert!(
            matches!(closed.as_ref().map(|(code, _)| *code), Some(1011 | 1013)),
            "{closed:?}"
        );
    }
    expect_engine_down(&server).await;

    let (mut again, again_id) = engine_back(&server).await;
    // Nothing of the sessions the engine took with it is left: the reaper sweeps what could
    // not be removed while the engine was down.
    let only_the_new_one = eventually(Duration::from_secs(60), async || {
        server.containers() == vec![container_of(&again_id).unwrap_or_default()]
    })
    .await;
    assert!(only_the_new_one, "{:?}", server.containers());
    let ends = server
        .audit_lines()
        .iter()
        .filter(|l| l["event"] == "session.ended" && l["session_id"] == running_id.as_str())
        .count();
    assert_eq!(ends, 1, "the running session ended once");
    again.close(1000, "user-closed-tab").await;
    assert!(wait_gone(&again_id, T).await);
    assert!(server.child.as_mut().unwrap().try_wait().unwrap().is_none());
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[tokio::test]
async fn a_second_server_of_the_same_deployment_refuses_to_start() {
    let first = Server::start(&[]);
    let (mut c, id) = Client::session(&first).await;
    c.run("echo first-$((3+3))", "first-6").await;
    let container = container_of(&id).expect("the session's container");

    let second = Command::new(env!("CARGO_BIN_EXE_termcell"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--deployment",
            &first.deployment,
            "--audit-log",
            first.dir.join("second-audit.log").to_str().unwrap(),
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed if it serves instead (then its sweep would have taken the first's container).
    let pid = second.id().to_string();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
    });
    let second = second.wait_with_output().unwrap();
    drop(watchdog);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "refused at start: {stderr}");
    assert!(
        stderr.contains(&format!(
            "deployment {:?} is already served",
            first.deployment
        )) && stderr.contains(&format!("pid {}", first.pid()))
            && stderr.contains("--deployment"),
        "the refusal names the deployment, its holder and the flag: {stderr}"
    );
    assert!(
        !stderr.contains("listening"),
        "nothing was served: {stderr}"
    );

    // The first server's session lives on, in the same container.
    c.run("echo still-$((4+4))", "still-8").await;
    assert_eq!(container_of(&id).as_deref(), Some(container.as_str()));
    assert!(first
        .audit_lines()
        .iter()
        .all(|l| l["event"] != "session.ended"));
}

#[tokio::test]
#[ignore = "stops the Docker engine: run alone with `-- --ignored --test-threads 1 engine_`"]
async fn engine_restart_empties_and_refills_the_pool() {
    use crate::pool::{pool_containers, pool_ready, wait_pool};
    let image = BuiltImage::new();
    let server = Server::start(&[
        "--image",
        &image.0,
        "--pool-size",
        "2",
        "--reap-interval",
        "2",
    ]);
    wait_pool(&server, 2.0).await;
    let before = pool_containers(&server);

    let _guard = DockerdGuard;
    signal_dockerd("TERM");
    assert!(
        eventually(Duration::from_secs(60), async || !docker_up()).await,
        "dockerd stopped"
    );
    assert!(
        eventually(T, async || pool_ready(&server).await == 0.0).await,
        "the pool is emptied when its sandboxes' TTYs end"
    );
    let (mut again, _) = engine_back(&server).await;
    again.run("echo pooled-$((3+3))", "pooled-6").await;
    wait_pool(&server, 2.0).await;
    // The sandboxes that ended with the engine could not be removed while it was gone:
    // the reaper takes them once it is back; the pool holds only new ones.
    let mut after = Vec::new();
    assert!(
        eventually(T, async || {
            after = pool_containers(&server);
            after.iter().all(|id| !before.contains(id))
        })
        .await,
        "{before:?} {after:?}"
    );
    assert_eq!(pool_ready(&server).await, 2.0);
    assert!(!server.log().contains("panicked"), "{}", server.log());
}
