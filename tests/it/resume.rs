//! Resume through the real server: after a drop, with other credentials, by guessing ids,
//! after the grace period, by takeover; the snapshot's bound; a client that stops reading;
//! a client that drops while its session prints at full speed. (What the snapshot draws is
//! tested cell for cell in redraw.rs.)

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

const KEY: &str = "app.key:secret";

/// Opens a socket and asks to resume `id` with `api_key`.
async fn resume(server: &Server, id: &str, api_key: &str) -> Client {
    let mut c = Client::connect(server).await;
    c.wait_control("status", Some("connecting"), T).await;
    c.auth(json!({"apiKey": api_key, "sessionId": id})).await;
    c
}

/// Reads until the output contains `needle`, keeping only a bounded tail of it (for
/// sessions that print megabytes). Returns how many bytes were read.
async fn drain_until(c: &mut Client, needle: &str, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    let mut total = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let before = c.output.len();
        match c.next(left).await {
            Some(Event::Output(_)) => {}
            Some(Event::Control(_)) => continue,
            Some(Event::Closed(close)) => panic!("closed while draining: {close:?}"),
            None => panic!(
                "no {needle:?} within {within:?}; controls {:?}, tail {:?}",
                c.controls,
                String::from_utf8_lossy(&c.output[c.output.len().saturating_sub(300)..])
            ),
        }
        total += c.output.len() - before;
        let from = before.saturating_sub(needle.len());
        if String::from_utf8_lossy(&c.output[from..]).contains(needle) {
            return total;
        }
        if c.output.len() > 256 * 1024 {
            let keep = c.output.split_off(c.output.len() - 1024);
            c.output = keep;
        }
    }
}

#[tokio::test]
async fn resume_after_a_drop_redraws_the_screen_and_takes_input() {
    let server = Server::start(&[]);
    let (mut a, id) = Client::session(&server).await;
    a.run("echo mark-$((5*5))", "mark-25").await;
    let container = container_of(&id).unwrap();
    a.reset();

    let mut b = resume(&server, &id, KEY).await;
    let hello = b.wait_control("hello", None, T).await;
    assert_eq!(hello["sessionId"], id.as_str(), "same session id");
    let connected = b
        .controls
        .iter()
        .position(|v| v["payload"] == "connected")
        .expect("connected");
    let hello_at = b
        .controls
        .iter()
        .position(|v| v["type"] == "hello")
        .unwrap();
    assert!(connected < hello_at, "{:?}", b.controls);
    let out = b.wait_output("mark-25", T).await;
    assert!(
        out.starts_with(HANDSHAKE),
        "the handshake line comes first, then the snapshot: {out:?}"
    );
    assert!(
        out[HANDSHAKE.len()..].starts_with("\x1bc"),
        "the snapshot clears the client's terminal first: {out:?}"
    );
    assert!(
        out[HANDSHAKE.len()..].contains("mark-25"),
        "the snapshot holds the output from before the drop"
    );
    b.run("echo after-$((6*7))", "after-42").await;
    assert_eq!(container_of(&id), Some(container), "the same container");
    server.wait_audit("session.resumed", Some(&id), T).await;
}

#[tokio::test]
async fn resume_with_other_credentials_closes_4001() {
    let server = Server::start(&[]);
    let (mut a, id) = Client::session(&server).await;
    a.run("echo mine-$((1+1))", "mine-2").await;
    a.reset();
    let mut thief = resume(&server, &id, "app.key:other").await;
    expect_close(
        &mut thief,
        "error",
        4001,
        "Credentials do not match original session",
    )
    .await;
    assert!(
        !String::from_utf8_lossy(&thief.output).contains("mine-2"),
        "no snapshot for other credentials"
    );
    // The owner still gets the session back.
    let mut b = resume(&server, &id, KEY).await;
    assert_eq!(b.wait_hello().await, id);
    b.wait_output("mine-2", T).await;
}

#[tokio::test]
async fn guessing_session_ids_gets_4002_then_4003() {
    let server = Server::start(&[]);
    // Ten failed resumes a minute per address (an id that is not a UUID counts too), then
    // the address is blocked: the eleventh failure is still told 4002, later guesses 4003.
    let mut closes = Vec::new();
    for n in 0..13 {
        let guess = match n {
            0 => "not-a-uuid".to_string(),
            _ => uuid::Uuid::new_v4().to_string(),
        };
        let mut c = resume(&server, &guess, KEY).await;
        let (code, reason) = c.wait_close(T).await.expect("a close frame");
        assert_eq!(
            c.controls.last().unwrap(),
            &json!({"type": "status", "payload": "error", "code": code, "reason": reason}),
            "the close is announced"
        );
        closes.push((code, reason));
    }
    let rejected = (4002, "Session resume rejected".to_string());
    let limited = (4003, "Rate limit exceeded".to_string());
    let expected: Vec<_> = std::iter::repeat_n(rejected, 11)
        .chain(std::iter::repeat_n(limited, 2))
        .collect();
    assert_eq!(closes, expected);
    server
        .wait_rejections("auth.rejected", "resume_unknown", 11)
        .await;
    let lines = server
        .wait_rejections("ratelimit.rejected", "resume_guessing", 2)
        .await;
    assert_eq!(lines[0]["client"], "127.0.0.1");
    assert_eq!(rejections(&server, "resume_unknown").await, 11);
    assert_eq!(rejections(&server, "resume_guessing").await, 2);
    assert!(server.containers().is_empty());
    // Guessing blocks resumes, not new sessions.
    still_serves(&server).await;

    // Guessing the same id is limited too (attempts per id), on a fresh server.
    let server = Server::start(&["--resume-max-attempts", "2"]);
    let guess = uuid::Uuid::new_v4().to_string();
    for (code, reason) in [
        (4002, "Session resume rejected"),
        (4002, "Session resume rejected"),
        (4003, "Rate limit exceeded"),
    ] {
        let mut c = resume(&server, &guess, KEY).await;
        expect_close(&mut c, "error", code, reason).await;
    }
}

#[tokio::test]
async fn grace_expiry_removes_the_container() {
    let server = Server::start(&["--resume-grace", "2"]);
    let (mut a, id) = Client::session(&server).await;
    a.wait_output("$ ", T).await;
    assert!(container_of(&id).is_some());
    let dropped = Instant::now();
    a.reset();
    assert!(
        wait_gone(&id, Duration::from_secs(15)).await,
        "container removed after the grace period"
    );
    let gone_after = dropped.elapsed();
    assert!(
        gone_after >= Duration::from_millis(1500),
        "not before the grace period: {gone_after:?}"
    );
    let mut late = resume(&server, &id, KEY).await;
    expect_close(&mut late, "error", 4002, "Session resume rejected").await;
    server.expect_one_end(&id, "grace_expired").await;
}

#[tokio::test]
async fn takeover_closes_the_first_socket_with_4002() {
    let server = Server::start(&[]);
    let (mut a, id) = Client::session(&server).await;
    a.run("echo first-$((1+1))", "first-2").await;
    let mut b = resume(&server, &id, KEY).await;
    assert_eq!(b.wait_hello().await, id);
    expect_close(&mut a, "disconnected", 4002, "Session taken over").await;
    b.wait_output("first-2", T).await;
    b.run("echo second-$((2+2))", "second-4").await;
    assert!(container_of(&id).is_some(), "the session lives on");
}

#[tokio::test]
async fn the_snapshot_is_bounded_and_ends_with_the_latest_output() {
    let server = Server::start(&[]);
    let (mut a, id) = Client::session(&server).await;
    a.wait_output("$ ", T).await;
    a.send_text("head -c 1048576 /dev/zero | tr '\\0' a; echo end-$((1+1))\r")
        .await;
    // The prompt after the marker, and busybox's cursor-position query after the prompt,
    // are the last output.
    let end = "end-2\r\n~ $ \x1b[6n";
    let read = drain_until(&mut a, end, Duration::from_secs(60)).await;
    assert!(read >= 1 << 20, "the whole MiB arrived live: {read}");
    a.reset();

    let mut b = resume(&server, &id, KEY).await;
    b.wait_hello().await;
    b.wait_output("~ $ ", T).await;
    let out = &b.output;
    assert!(out.starts_with(HANDSHAKE.as_bytes()));
    let snapshot = String::from_utf8_lossy(&out[HANDSHAKE.len()..]).to_string();
    // 80 rows of scrollback and 30 of screen, 100 columns each, the screen drawn twice
    // (once to push the scrollback up, once in place): about 14 KB of a's.
    assert!(
        snapshot.len() < 32 * 1024,
        "the snapshot holds the screen and scrollback, not the raw output: {} bytes",
        snapshot.len()
    );
    assert!(
        snapshot.matches(&"a".repeat(100)).count() >= 100,
        "full rows of a's above the marker: {snapshot:?}"
    );
    let end_at = snapshot.rfind("end-2").expect("the marker");
    assert!(
        snapshot[end_at..].contains("~ $ "),
        "the prompt after the marker: {:?}",
        &snapshot[end_at..]
    );
    assert!(
        !snapshot.contains("\x1b[6n"),
        "the prompt's query is not asked again: {:?}",
        &snapshot[end_at..]
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_keeps_server_memory_bounded() {
    let server = Server::start(&[]);
    let (mut c, _id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let baseline = server.rss_kib();
    c.send_text("yes\r").await;
    drain_until(&mut c, "y\r\ny\r\ny\r\n", T).await;
    // Read nothing for 20 s while the session prints at full speed.
    let mut peak = baseline;
    let stop_at = Instant::now() + Duration::from_secs(20);
    while Instant::now() < stop_at {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(server.rss_kib());
    }
    eprintln!(
        "server RSS: baseline {} KiB, peak while the client read nothing for 20 s {} KiB",
        baseline, peak
    );
    // The design keeps one 16 KiB chunk per session in flight plus socket buffers.
    assert!(
        peak < 64 * 1024,
        "server RSS stays under 64 MiB while a client reads nothing: peak {peak} KiB"
    );
    assert!(
        peak - baseline < 16 * 1024,
        "server RSS grows by less than 16 MiB: baseline {baseline} KiB, peak {peak} KiB"
    );
    // Read again, stop `yes`, and the session answers.
    c.send_text("\x03").await;
    let backlog = drain_until(&mut c, "$ ", Duration::from_secs(60)).await;
    eprintln!("backlog read after the pause: {backlog} bytes");
    c.send_text("echo back-$((1+1))\r").await;
    drain_until(&mut c, "back-2", T).await;
    assert!(c.closed.is_none(), "the session survived the pause");
}

/// Host pids of processes named `yes` owned by uid 1000.
fn host_yes_pids() -> Vec<u32> {
    let out = std::process::Command::new("pgrep")
        .args(["-u", "1000", "-x", "yes"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Host pids of the processes in a container (from `docker top`).
fn container_pids(container: &str) -> Option<Vec<u32>> {
    let out = std::process::Command::new("docker")
        .args(["top", container, "-o", "pid"])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| l.trim().parse().ok())
            .collect(),
    )
}

#[tokio::test]
async fn a_drop_during_full_speed_output_leaves_no_process() {
    let server = Server::start(&["--resume-grace", "2"]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let container = container_of(&id).unwrap();
    c.send_text("yes\r").await;
    drain_until(&mut c, "y\r\ny\r\ny\r\n", T).await;
    let in_container = container_pids(&container).expect("docker top on a live container");
    let yes_pids: Vec<u32> = host_yes_pids()
        .into_iter()
        .filter(|p| in_container.contains(p))
        .collect();
    assert_eq!(
        yes_pids.len(),
        1,
        "one `yes` of uid 1000 runs in the container: {in_container:?}"
    );
    c.reset();
    assert!(
        wait_gone(&id, Duration::from_secs(20)).await,
        "container removed after the grace period"
    );
    assert!(
        container_pids(&container).is_none(),
        "docker top fails: the container is gone"
    );
    let left = host_yes_pids();
    assert!(
        yes_pids.iter().all(|p| !left.contains(p)),
        "the container's `yes` ({yes_pids:?}) is gone from the host: {left:?}"
    );
}

#[tokio::test]
async fn a_socket_that_stops_answering_pings_counts_as_dropped() {
    let server = Server::start(&[
        "--heartbeat-interval",
        "1",
        "--client-timeout",
        "3",
        "--resume-grace",
        "1",
    ]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", Duration::from_secs(30)).await;
    // The client stops reading: tungstenite answers pings only while it reads, so no
    // pong (and no other frame) reaches the server from now on.
    let silent_since = Instant::now();
    assert!(
        wait_gone(&id, Duration::from_secs(30)).await,
        "the silent socket counted as dropped and the grace period ended the session"
    );
    assert!(
        silent_since.elapsed() >= Duration::from_secs(3),
        "not before the client timeout: {:?}",
        silent_since.elapsed()
    );
    server.expect_one_end(&id, "grace_expired").await;
    // The gauges follow the session through detach and end.
    let samples = scrape(&server).await;
    for gauge in ["termcell_sessions_detached", "termcell_sessions_active"] {
        assert_eq!(metric(&samples, gauge, &[]), Some(0.0), "{gauge}");
    }
    drop(c);
}

#[tokio::test]
async fn the_server_drops_a_connection_whose_client_stopped_reading() {
    let server = Server::start(&["--client-timeout", "3", "--resume-grace", "60"]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let client_addr = c.ws.get_ref().local_addr().unwrap();
    c.send_text("yes\r").await;
    // Read nothing: the server's send window fills and stays shut. The server's end of
    // the connection goes away (TCP_USER_TIMEOUT = --client-timeout) while the client
    // still reads nothing: a stalled client does not hold the server's socket forever.
    assert!(tcp_connection_exists(server.addr, client_addr));
    assert!(
        eventually(Duration::from_secs(30), async || !tcp_connection_exists(
            server.addr,
            client_addr
        ))
        .await,
        "the server still holds the stalled connection"
    );
    // Draining what was buffered ends with the connection gone, not with a hang.
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.closed.is_none() {
        assert!(
            Instant::now() < deadline,
            "the stalled connection was never dropped"
        );
        let event = c.next(Duration::from_secs(5)).await;
        assert!(
            event.is_some() || c.closed.is_some(),
            "no data and no close for 5 s: the server kept the stalled connection"
        );
        c.output.clear();
    }
    // The session was only detached: it resumes, and answers once `yes` is stopped.
    let mut r = Client::connect(&server).await;
    r.auth(json!({"apiKey": KEY, "sessionId": id})).await;
    r.wait_control("hello", None, T).await;
    r.send_text("\x03").await;
    r.run("echo resumed-$((1+1))", "resumed-2").await;
}
