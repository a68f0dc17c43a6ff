//! Timeouts, rate limits and hostile input: short limits set per test, each refusal checked
//! on the wire, in the audit log and on /metrics, and no container left without a session.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

/// Ids of the sessions the server holds, from the admin API.
async fn live_sessions(server: &Server) -> HashSet<String> {
    let (_, body) = admin_json(server, reqwest::Method::GET, "/admin/sessions").await;
    body["sessions"]
        .as_array()
        .expect("a session list")
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// The session label of each of the server's containers.
fn container_sessions(server: &Server) -> Vec<String> {
    docker_ps(
        &format!("termcell.deployment={}", server.deployment),
        "{{.Label \"termcell.session\"}}",
    )
}

/// Every container of the server belongs to a live session (removal is asynchronous).
async fn assert_no_orphans(server: &Server) {
    let mut orphans = Vec::new();
    let none = eventually(T, async || {
        let live = live_sessions(server).await;
        orphans = container_sessions(server)
            .into_iter()
            .filter(|s| !live.contains(s))
            .collect();
        orphans.is_empty()
    })
    .await;
    assert!(none, "containers without a live session: {orphans:?}");
}

/// Sends one huge binary message from a separate task (the server stops reading it) and
/// reads what comes back until the close: (controls seen, close code and reason).
async fn send_huge(c: Client, bytes: usize) -> (Vec<Value>, Option<(u16, String)>) {
    let (mut sink, mut stream) = c.ws.split();
    let writer = tokio::spawn(async move {
        let _ = sink.send(Message::Binary(vec![b'a'; bytes])).await;
        // Kept open until the reader is done, so the close is not ours.
        tokio::time::sleep(T).await;
        drop(sink);
    });
    let mut controls = Vec::new();
    let close = loop {
        match tokio::time::timeout(T, stream.next()).await {
            Err(_) => panic!("no close within {T:?} after a {bytes}-byte message"),
            Ok(None) | Ok(Some(Err(_))) => break None,
            Ok(Some(Ok(Message::Close(frame)))) => {
                break frame.map(|f| (u16::from(f.code), f.reason.to_string()))
            }
            Ok(Some(Ok(Message::Binary(data)))) if data.starts_with(CTRL) => {
                controls.push(serde_json::from_slice(&data[CTRL.len()..]).unwrap());
            }
            Ok(Some(Ok(_))) => {}
        }
    };
    writer.abort();
    (controls, close)
}

/// Reads whatever arrives for `time` (or until the socket closes).
fn last_status(controls: &[Value]) -> &Value {
    controls
        .iter()
        .rev()
        .find(|v| v["type"] == "status")
        .expect("a status control")
}

#[tokio::test]
async fn idle_timeout_warns_then_closes_and_only_input_keeps_a_session() {
    let server = Server::start(&["--idle-timeout", "6", "--warn-before", "3"]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;

    // Typing every second keeps the session past the idle timeout, without a warning: the
    // time passing is the point here.
    let typing_from = Instant::now();
    let controls_before = c.controls.len();
    while typing_from.elapsed() < Duration::from_secs(9) {
        c.send_text(" ").await;
        drain_for(&mut c, Duration::from_secs(1)).await;
        assert!(
            c.closed.is_none(),
            "typing keeps the session: {:?}",
            c.closed
        );
    }
    assert!(
        !c.controls[controls_before..]
            .iter()
            .any(|v| v["type"] == "warning"),
        "no idle warning while typing: {:?}",
        c.controls
    );

    // Output alone does not keep it: a loop prints twice a second, nobody types.
    c.send_text("\x15while true; do echo tick; sleep 0.5; done\r")
        .await;
    let last_input = Instant::now();
    let warning = c.wait_control("warning", None, T).await;
    let warned_at = last_input.elapsed();
    assert_eq!(
        warning["reason"], "Session will end due to inactivity",
        "{warning}"
    );
    let left = warning["secondsLeft"].as_u64().expect("secondsLeft");
    assert!((1..=3).contains(&left), "{warning}");
    let ticks_at_warning = String::from_utf8_lossy(&c.output).matches("tick").count();
    let text = expect_idle_end(&mut c).await;
    let closed_at = last_input.elapsed();
    assert!(
        text.contains("[termcell] Session will end due to inactivity"),
        "the warning is also a visible line: {text:?}"
    );
    assert!(
        text.matches("tick").count() > ticks_at_warning,
        "output kept flowing until the end"
    );
    assert!(
        warned_at >= Duration::from_secs(2) && closed_at >= Duration::from_secs(5),
        "warning at {warned_at:?} and close at {closed_at:?} after the last input"
    );
    assert!(
        closed_at < Duration::from_secs(15),
        "closed at {closed_at:?}"
    );
    println!("idle: warned after {warned_at:?}, closed after {closed_at:?}");
    assert!(wait_gone(&id, T).await, "the container is removed");
    server.expect_one_end(&id, "idle_timeout").await;
    assert_no_orphans(&server).await;
}

#[tokio::test]
async fn max_duration_warns_then_closes_even_while_typing() {
    let server = Server::start(&["--max-session-duration", "8", "--warn-before", "4"]);
    let started = Instant::now();
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    // Typing until the end: input does not extend the maximum duration.
    while c.closed.is_none() && started.elapsed() < T {
        c.send_text(" ").await;
        drain_for(&mut c, Duration::from_millis(700)).await;
    }
    let warning = c
        .controls
        .iter()
        .find(|v| v["type"] == "warning")
        .cloned()
        .unwrap_or_else(|| panic!("a warning before the end: {:?}", c.controls));
    assert_eq!(
        warning["reason"], "Maximum session duration will be reached",
        "{warning}"
    );
    assert!((1..=4).contains(&warning["secondsLeft"].as_u64().unwrap()));
    expect_close(
        &mut c,
        "disconnected",
        1000,
        "Maximum session duration reached",
    )
    .await;
    let lasted = started.elapsed();
    assert!(
        lasted >= Duration::from_secs(7) && lasted < Duration::from_secs(20),
        "the session lasted {lasted:?}"
    );
    let text = String::from_utf8_lossy(&c.output).to_string();
    assert!(
        text.contains("[termcell] Maximum session duration will be reached"),
        "{text:?}"
    );
    assert!(wait_gone(&id, T).await, "the container is removed");
    server.expect_one_end(&id, "max_duration").await;
    assert_no_orphans(&server).await;
}

#[tokio::test]
async fn connection_bursts_get_429_per_address_and_forwarded_for_only_from_trusted_proxies() {
    let server = Server::start(&[
        "--connections-per-minute",
        "5",
        "--connection-burst",
        "3",
        "--trusted-proxies",
        "127.0.0.1",
    ]);
    // A burst of upgrades from one address: the 4th is refused with Retry-After.
    for i in 0..3 {
        connect_from(&server, LOCALHOST, &[])
            .await
            .unwrap_or_else(|r| panic!("upgrade {i} of the burst refused: {r:?}"));
    }
    let refused = connect_from(&server, LOCALHOST, &[])
        .await
        .err()
        .expect("the 4th upgrade is refused");
    assert_eq!(refused.status, 429);
    let retry: u64 = refused
        .retry_after
        .as_deref()
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");

    // Another address is unaffected (and, as an untrusted peer, its X-Forwarded-For is ignored).
    for i in 0..3 {
        let xff = format!("198.51.100.{}", i + 1);
        connect_from(&server, OTHER_LOCAL, &[("X-Forwarded-For", &xff)])
            .await
            .unwrap_or_else(|r| panic!("upgrade {i} from 127.0.0.2 refused: {r:?}"));
    }
    let refused = connect_from(
        &server,
        OTHER_LOCAL,
        &[("X-Forwarded-For", "198.51.100.99")],
    )
    .await
    .err()
    .expect("a new X-Forwarded-For from an untrusted peer does not reset its limit");
    assert_eq!(refused.status, 429);

    // Behind the trusted proxy, two forwarded addresses are limited separately.
    let from_a = [("X-Forwarded-For", "203.0.113.10")];
    for i in 0..3 {
        connect_from(&server, LOCALHOST, &from_a)
            .await
            .unwrap_or_else(|r| panic!("forwarded upgrade {i} refused: {r:?}"));
    }
    assert_eq!(
        connect_from(&server, LOCALHOST, &from_a)
            .await
            .err()
            .expect("the 4th upgrade for 203.0.113.10 is refused")
            .status,
        429
    );
    connect_from(&server, LOCALHOST, &[("X-Forwarded-For", "203.0.113.11")])
        .await
        .expect("another forwarded address has its own limit");

    let lines = server
        .wait_rejections("ratelimit.rejected", "connections", 3)
        .await;
    let clients: HashSet<&str> = lines.iter().filter_map(|l| l["client"].as_str()).collect();
    assert_eq!(
        clients,
        HashSet::from(["127.0.0.1", "127.0.0.2", "203.0.113.10"]),
        "each refusal names the limited address"
    );
    assert_eq!(rejections(&server, "connections").await, 3);
    assert!(
        server.containers().is_empty(),
        "upgrades alone create no container"
    );
    assert_no_orphans(&server).await;
}

#[tokio::test]
async fn forwarded_for_without_trusted_proxies_shares_one_limit() {
    let server = Server::start(&["--connections-per-minute", "5", "--connection-burst", "3"]);
    for i in 0..3 {
        let xff = format!("203.0.113.{}", i + 20);
        connect_from(&server, LOCALHOST, &[("X-Forwarded-For", &xff)])
            .await
            .unwrap_or_else(|r| panic!("upgrade {i} refused: {r:?}"));
    }
    let refused = connect_from(&server, LOCALHOST, &[("X-Forwarded-For", "203.0.113.99")])
        .await
        .err()
        .expect("forwarded addresses from an untrusted peer share the peer's limit");
    assert_eq!(refused.status, 429);
    assert!(refused.retry_after.is_some(), "Retry-After");
    let lines = server
        .wait_rejections("ratelimit.rejected", "connections", 1)
        .await;
    assert_eq!(lines[0]["client"], "127.0.0.1");
    assert_eq!(rejections(&server, "connections").await, 1);
}

#[tokio::test]
async fn sessions_per_address_are_limited_with_4003_and_no_container() {
    let server = Server::start(&["--max-sessions-per-ip", "2"]);
    let (mut a, id_a) = Client::session(&server).await;
    let (_b, _) = Client::session(&server).await;
    assert_eq!(server.containers().len(), 2);

    let mut third = Client::connect(&server).await;
    third.auth(json!({"apiKey": "app.key:secret"})).await;
    expect_close(
        &mut third,
        "error",
        4003,
        "2 sessions are open from your address; closed tabs count for 15s, lost connections for 300s",
    )
    .await;
    assert!(
        !third.controls.iter().any(|v| v["type"] == "hello"),
        "no session for the refused client"
    );
    assert_eq!(
        server.containers().len(),
        2,
        "no container for a refused session"
    );

    // The limit is per address: 127.0.0.2 still gets a session.
    let (mut other, other_id) = session_from(&server, OTHER_LOCAL).await;
    other.run("echo other-$((1+1))", "other-2").await;
    other.close(1000, "user-closed-tab").await;
    assert!(wait_gone(&other_id, T).await);

    // The refusal left the first session alone, and ending it frees its slot.
    a.run("echo first-$((1+1))", "first-2").await;
    a.close(1000, "user-closed-tab").await;
    assert!(wait_gone(&id_a, T).await);
    let (mut again, _) = Client::session(&server).await;
    again.run("echo again-$((1+1))", "again-2").await;

    let lines = server
        .wait_rejections("ratelimit.rejected", "concurrency", 1)
        .await;
    assert_eq!(lines[0]["client"], "127.0.0.1");
    assert_eq!(lines[0]["code"], 4003);
    assert_eq!(rejections(&server, "concurrency").await, 1);
    assert_no_orphans(&server).await;
}

#[tokio::test]
async fn global_capacity_refuses_with_4009_and_no_container() {
    let server = Server::start(&["--max-sessions", "2"]);
    let (mut a, _) = Client::session(&server).await;
    let (_b, _) = Client::session(&server).await;
    let mut third = Client::connect(&server).await;
    third.auth(json!({"apiKey": "app.key:secret"})).await;
    expect_close(&mut third, "error", 4009, "Server at capacity").await;
    assert_eq!(
        server.containers().len(),
        2,
        "no container for a refused session"
    );
    a.run("echo first-$((1+1))", "first-2").await;
    let lines = server
        .wait_rejections("ratelimit.rejected", "capacity", 1)
        .await;
    assert_eq!(lines[0]["code"], 4009);
    assert_eq!(rejections(&server, "capacity").await, 1);
    assert_no_orphans(&server).await;
}

#[tokio::test]
async fn commands_per_minute_refuse_the_fourth_line_with_a_notice() {
    let server = Server::start(&["--commands-per-minute", "3", "--command-burst", "3"]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    for n in 1..=3 {
        c.run(&format!("echo run-$(({n}-1+1))"), &format!("run-{n}"))
            .await;
    }
    c.send_text("echo run-$((3+1))\r").await;
    let text = c.wait_output("command rate limit reached", T).await;
    assert!(
        text.contains("[termcell] command rate limit reached (3 per minute): line not run"),
        "a visible notice line: {text:?}"
    );
    // The refused line does not run: nothing to wait for but time.
    drain_for(&mut c, Duration::from_secs(1)).await;
    let text = String::from_utf8_lossy(&c.output).to_string();
    assert!(!text.contains("run-4"), "the 4th command ran: {text:?}");
    assert!(
        c.closed.is_none(),
        "one refused line does not end a session"
    );

    let lines = server
        .wait_rejections("ratelimit.rejected", "commands", 1)
        .await;
    assert_eq!(lines[0]["session_id"], id.as_str(), "{}", lines[0]);
    assert_eq!(rejections(&server, "commands").await, 1);
    assert_no_orphans(&server).await;
}

#[tokio::test]
async fn input_flood_is_cut_with_a_notice_then_ends_with_4003() {
    let server = Server::start(&["--input-bytes-per-second", "1024"]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    // More than the burst in one paste: the rest is cut, with a notice.
    c.send_binary(vec![b'a'; 400 * 1024]).await;
    let text = c.wait_output("input rate limit reached", T).await;
    assert!(
        text.contains("[termcell] input rate limit reached (1 KiB/s):")
            && text.contains("bytes of input dropped"),
        "{:?}",
        &text[text.len().saturating_sub(300)..]
    );
    // Flooding on: the session ends with 4003 after about 10 s of dropped input.
    let flood_from = Instant::now();
    while c.closed.is_none() && flood_from.elapsed() < T {
        let _ = c.ws.send(Message::Binary(vec![b'b'; 4096])).await;
        drain_for(&mut c, Duration::from_millis(300)).await;
    }
    expect_close(&mut c, "error", 4003, "Rate limit exceeded").await;
    let took = flood_from.elapsed();
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(25),
        "ended after {took:?} of flooding"
    );
    assert!(wait_gone(&id, T).await, "the container is removed");
    let lines = server
        .wait_rejections("ratelimit.rejected", "input_abuse", 1)
        .await;
    assert_eq!(lines[0]["session_id"], id.as_str());
    assert_eq!(rejections(&server, "input_abuse").await, 1);
    assert!(rejections(&server, "input_flood").await >= 1);
    still_serves(&server).await;
    assert_no_orphans(&server).await;
}

#[tokio::test]
async fn resize_flood_keeps_the_session_responsive() {
    let server = Server::start(&[]);
    let (mut c, _id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    for i in 0..200u32 {
        c.send_text(&format!(
            r#"{{"type":"resize","cols":{},"rows":{}}}"#,
            40 + i,
            10 + i % 50
        ))
        .await;
    }
    // Resizes are applied asynchronously. No size of the flood is the default 30x100.
    let mut size = (30, 100);
    assert!(
        eventually(T, async || {
            size = c.tty_size().await;
            size != (30, 100)
        })
        .await,
        "a resize of the flood is applied"
    );
    let (rows, cols) = size;
    assert!(
        (40..=239).contains(&cols) && rows == 10 + (cols - 40) % 50,
        "a size from the flood: {rows}x{cols}"
    );
    let dropped = rejections(&server, "resizes").await;
    assert!(dropped >= 100, "excess resizes are dropped: {dropped}");
    // After a pause (the resize limiter refills at 10 a second: waiting is the point)
    // resizes pass again, and the last one is applied.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.send_text(r#"{"type":"resize","cols":123,"rows":45}"#)
        .await;
    assert!(
        eventually(T, async || c.tty_size().await == (45, 123)).await,
        "the resize after the pause is applied"
    );
    let health = reqwest::get(server.http("/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    println!("resize flood: {dropped} of 200 resizes dropped");
    assert_no_orphans(&server).await;
}

#[tokio::test]
async fn oversized_frames_close_1009_after_an_error_status() {
    let server = Server::start(&["--resume-grace", "2"]);
    let too_large =
        json!({"type": "status", "payload": "error", "code": 1009, "reason": "Message too large"});
    // As the first frame.
    let c = Client::connect(&server).await;
    let (controls, close) = send_huge(c, 2 << 20).await;
    assert_eq!(close, Some((1009, "Message too large".to_string())));
    assert_eq!(last_status(&controls), &too_large);
    // An auth frame over its own (smaller) limit.
    let mut c = Client::connect(&server).await;
    c.send_text(&format!(r#"{{"apiKey":"{}"}}"#, "k".repeat(100 * 1024)))
        .await;
    expect_close(&mut c, "error", 1009, "Message too large").await;
    assert!(server.containers().is_empty(), "no container was created");

    // In a live session: the socket closes 1009; the session waits for a resume, then ends.
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let (controls, close) = send_huge(c, 2 << 20).await;
    assert_eq!(close, Some((1009, "Message too large".to_string())));
    assert_eq!(last_status(&controls), &too_large);
    assert!(
        wait_gone(&id, Duration::from_secs(15)).await,
        "the dropped session ends after its grace period"
    );
    server
        .wait_rejections("ratelimit.rejected", "message_too_large", 2)
        .await;
    server
        .wait_rejections("auth.rejected", "auth_too_large", 1)
        .await;
    assert_eq!(rejections(&server, "message_too_large").await, 2);
    assert_eq!(rejections(&server, "auth_too_large").await, 1);
    still_serves(&server).await;
    assert_no_orphans(&server).await;
}

#[tokio::test]
async fn malformed_or_missing_auth_frames_are_refused() {
    let server = Server::start(&["--auth-timeout", "1"]);
    let bad = [
        "hello",
        "{not json",
        r#""a string""#,
        "[1,2,3]",
        "42",
        r#"{"apiKey":5}"#,
        r#"{"environmentVariables":"PS1"}"#,
        r#"{"environmentVariables":{"PS1":7}}"#,
        r#"{"sessionId":["x"]}"#,
        r#"{"usage":"yes"}"#,
    ];
    for frame in bad {
        let mut c = Client::connect(&server).await;
        c.send_text(frame).await;
        println!("auth frame {frame:?}");
        expect_close(&mut c, "error", 4008, "Invalid auth format").await;
    }
    // No auth frame at all: 1008 after the (1 s) deadline.
    let mut c = Client::connect(&server).await;
    let started = Instant::now();
    expect_close(&mut c, "error", 1008, "Authentication timeout").await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    assert!(
        server.containers().is_empty(),
        "no container for a refused client"
    );
    server
        .wait_rejections("auth.rejected", "auth_malformed", bad.len())
        .await;
    server
        .wait_rejections("auth.rejected", "auth_timeout", 1)
        .await;
    assert_eq!(
        rejections(&server, "auth_malformed").await as usize,
        bad.len()
    );
    assert_eq!(rejections(&server, "auth_timeout").await, 1);
    still_serves(&server).await;
    assert_no_orphans(&server).await;
}

#[tokio::test]
async fn invalid_utf8_text_frames_close_the_socket_and_nothing_else() {
    let server = Server::start(&["--resume-grace", "2"]);
    let invalid = masked_frame(0x1, b"\xc3\x28 \xff\xfe{\"apiKey\":\"x\"}");
    // As the auth frame.
    let mut c = Client::connect(&server).await;
    c.wait_control("status", Some("connecting"), T).await;
    c.ws.get_mut().write_all(&invalid).await.unwrap();
    expect_close(&mut c, "error", 1007, "Invalid UTF-8 in text frame").await;
    assert!(!c.controls.iter().any(|v| v["type"] == "hello"));

    // In a live session.
    let (mut c, id) = Client::session(&server).await;
    c.run("echo live-$((1+1))", "live-2").await;
    c.ws.get_mut().write_all(&invalid).await.unwrap();
    expect_close(&mut c, "error", 1007, "Invalid UTF-8 in text frame").await;
    assert!(
        wait_gone(&id, Duration::from_secs(15)).await,
        "the dropped session ends after its grace period"
    );
    assert!(!server.log().contains("panicked"), "{}", server.log());
    still_serves(&server).await;
    assert_no_orphans(&server).await;
}

#[tokio::test]
async fn binary_garbage_and_bad_resizes_keep_the_session_working() {
    let server = Server::start(&[]);
    let (mut c, _id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;

    // 2 KiB of pseudo-random bytes, without the keys that end a shell or a line
    // (Enter, ^C, ^D, ^Z, ^\) or stop the terminal (^S, ^Q, ^O, ^V): those are the user's.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let garbage: Vec<u8> = (0..2048)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match (state >> 24) as u8 {
                b'\r' | b'\n' | 0x03 | 0x04 | 0x1a | 0x1c | 0x13 | 0x11 | 0x0f | 0x16 => b'x',
                b => b,
            }
        })
        .collect();
    c.send_binary(garbage).await;
    // The shell's line editor may be inside an escape sequence the garbage began, which
    // would swallow what comes next until it gives up on it; nothing in the output says
    // when it has, so this waits a while. Then ^C abandons the garbage line.
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.send_text("\x03").await;
    c.run("echo alive-$((2+2))", "alive-4").await;

    // Out-of-range numbers are clamped to 1..=1000 columns and 1..=500 rows (busybox `stty`
    // shows a dimension of 1 as 24 rows or 80 columns). Each size differs from the one
    // before it, so the test can wait until it shows.
    let clamped = [
        (r#"{"type":"resize","cols":0,"rows":0}"#, (24, 80)),
        (
            r#"{"type":"resize","cols":100000,"rows":65535}"#,
            (500, 1000),
        ),
        (r#"{"type":"resize","cols":-5,"rows":-80}"#, (24, 80)),
        (
            r#"{"type":"resize","cols":1e300,"rows":-1e300}"#,
            (24, 1000),
        ),
    ];
    for (frame, want) in clamped {
        c.send_text(frame).await;
        let mut size = (0, 0);
        let shown = eventually(T, async || {
            size = c.tty_size().await;
            size == want
        })
        .await;
        assert!(shown, "after {frame}: {size:?}, not {want:?}");
    }
    // Non-numbers are ignored. A resize that changes nothing gives nothing to wait for: the
    // pause is there for a wrongly applied one to show.
    for frame in [
        r#"{"type":"resize","cols":"wide","rows":"tall"}"#,
        r#"{"type":"resize","data":{"cols":null,"rows":[1]}}"#,
        r#"{"type":"resize","data":"80x24"}"#,
        r#"{"type":"resize"}"#,
    ] {
        c.send_text(frame).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.tty_size().await, (24, 1000), "non-numbers are ignored");
    c.run("echo still-$((40+2))", "still-42").await;
    assert!(c.closed.is_none());
    assert!(!server.log().contains("panicked"), "{}", server.log());
    assert_no_orphans(&server).await;
}

#[tokio::test]
async fn cross_site_origins_are_refused_and_allowed_ones_work() {
    let server = Server::start(&["--allowed-origins", "https://docs.example.com"]);
    let refused = connect_from(&server, LOCALHOST, &[("Origin", "https://evil.example")])
        .await
        .err()
        .expect("a cross-site origin is refused");
    assert_eq!(refused.status, 403);
    let lines = server.wait_rejections("origin.rejected", "origin", 1).await;
    assert_eq!(lines[0]["client"], "127.0.0.1");
    assert_eq!(lines[0]["origin"], "https://evil.example");
    assert_eq!(rejections(&server, "origin").await, 1);
    assert!(server.containers().is_empty());

    for origin in [
        "https://docs.example.com".to_string(),
        format!("http://{}", server.addr),
    ] {
        let mut c = connect_from(&server, LOCALHOST, &[("Origin", &origin)])
            .await
            .unwrap_or_else(|r| panic!("origin {origin} refused: {r:?}"));
        c.auth(json!({"apiKey": "app.key:secret"})).await;
        c.wait_hello().await;
        c.run("echo origin-$((1+1))", "origin-2").await;
        c.close(1000, "user-closed-tab").await;
    }
    assert_no_orphans(&server).await;
}

#[tokio::test]
async fn a_connection_flood_leaks_no_container_and_little_memory() {
    let server = Server::start(&[
        "--resume-grace",
        "1",
        "--connections-per-minute",
        "6000",
        "--connection-burst",
        "400",
        "--max-sessions-per-ip",
        "50",
    ]);
    // Warm up the paths a connection takes before measuring.
    still_serves(&server).await;
    let rss_before = server.rss_kib();
    let started = Instant::now();
    let clients = futures_util::future::join_all((0..200).map(|_| Client::connect(&server))).await;
    let mut attached = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        match i % 20 {
            // A few start a session and vanish at once, a few once it is attached.
            0 | 10 => {
                c.auth(json!({"apiKey": "app.key:secret"})).await;
                if i % 20 == 0 {
                    // Long enough for the server to read the auth frame: the socket
                    // goes while its session is being opened.
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    c.reset();
                } else {
                    attached.push(c);
                }
            }
            1..=9 => c.reset(),
            _ => drop(c),
        }
    }
    for mut c in attached {
        c.wait_hello().await;
        c.reset();
    }
    let opened = started.elapsed();
    assert!(
        eventually(Duration::from_secs(60), async || server
            .containers()
            .is_empty())
        .await,
        "no container outlives its dropped session: {:?}",
        server.containers()
    );
    assert!(
        eventually(T, async || live_sessions(&server).await.is_empty()).await,
        "sessions of dropped sockets end"
    );
    let audit = server.audit_lines();
    let count = |event: &str| audit.iter().filter(|l| l["event"] == event).count();
    // The warm-up session, 10 attached ones, and those whose auth frame the server read.
    let (created, ended) = (count("session.created"), count("session.ended"));
    assert!(created >= 11, "{created} sessions created");
    assert_eq!(created, ended, "every session ended");
    let rss_after = server.rss_kib();
    println!(
        "connection flood: 200 sockets in {opened:?}, {created} sessions; server RSS {rss_before} KiB before, {rss_after} KiB after"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    still_serves(&server).await;
    assert_no_orphans(&server).await;
}
