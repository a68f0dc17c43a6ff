//! The soak: 1,000 sessions through the real server, several at a time, in a mix of every
//! way a session ends (exit, client close, abrupt drop, resume then exit, idle timeout,
//! maximum duration, admin kill) and of refused ones (a malformed auth frame, a resume of
//! an unknown session). At the end nothing is left: no container, the server's memory and
//! descriptors back where they started, and exactly one `session.ended` per session.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

const SESSIONS: usize = 1000;
const AT_ONCE: usize = 12;
const KINDS: usize = 8;

/// The server's open descriptors: all of them, and the sockets among them.
fn descriptors(server: &Server) -> (usize, usize) {
    let links: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    let sockets = links.iter().filter(|l| l.starts_with("socket:")).count();
    (links.len(), sockets)
}

/// One session of kind `i % KINDS`, to its end; returns its id when one was created.
async fn one(server: &Server, i: usize) -> (usize, Option<String>) {
    let kind = i % KINDS;
    let end = Duration::from_secs(30);
    let code = |closed: Option<(u16, String)>| closed.map(|(code, _)| code);
    if kind == 7 {
        // Refused, from addresses of their own (resume guessing is limited per address).
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 1, (i / KINDS % 200) as u8 + 1));
        let mut c = connect_from(server, from, &[]).await.expect("upgrade");
        if i % 2 == 0 {
            c.send_text("{not json").await;
            assert_eq!(code(c.wait_close(end).await), Some(4008));
        } else {
            let unknown = uuid::Uuid::new_v4().to_string();
            c.auth(json!({"apiKey": "app.key:secret", "sessionId": unknown}))
                .await;
            let got = code(c.wait_close(end).await);
            assert!(matches!(got, Some(4002 | 4003)), "{got:?}");
        }
        return (kind, None);
    }
    let (mut c, id) = Client::session(server).await;
    c.wait_output("$ ", end).await;
    match kind {
        0 => {
            c.send_text("exit\r").await;
            assert_eq!(code(c.wait_close(end).await), Some(4000));
        }
        1 => c.close(1000, "user-closed-tab").await,
        2 => c.reset(),
        3 => {
            c.reset();
            let mut r = Client::connect(server).await;
            r.auth(json!({"apiKey": "app.key:secret", "sessionId": id}))
                .await;
            r.send_text("exit\r").await;
            assert_eq!(code(r.wait_close(end).await), Some(4000));
        }
        4 => {
            let closed = c.wait_close(end).await;
            assert_eq!(code(closed), Some(1000));
        }
        5 => {
            // Typing keeps it from going idle; the maximum duration ends it anyway.
            let deadline = Instant::now() + end;
            while c.closed.is_none() && Instant::now() < deadline {
                c.send_text(" ").await;
                let pause = Instant::now() + Duration::from_millis(700);
                while c.closed.is_none() && Instant::now() < pause {
                    let _ = c
                        .next(pause.saturating_duration_since(Instant::now()))
                        .await;
                }
            }
            assert_eq!(code(c.closed.clone().flatten()), Some(1000));
        }
        _ => {
            let (status, _) =
                admin_json(server, Method::DELETE, &format!("/admin/sessions/{id}")).await;
            assert!(status.is_success(), "admin kill: {status}");
            assert_eq!(code(c.wait_close(end).await), Some(4004));
        }
    }
    (kind, Some(id))
}

#[tokio::test]
async fn a_thousand_sessions_leave_nothing_behind() {
    let server = Server::start(&[
        "--idle-timeout",
        "4",
        "--max-session-duration",
        "6",
        "--warn-before",
        "2",
        "--resume-grace",
        "2",
        "--max-sessions",
        "100",
        "--connections-per-minute",
        "5000",
        "--connection-burst",
        "500",
    ]);
    // Warm up (the workers' runtimes and the engine's pooled connections), then measure.
    for i in 0..KINDS {
        one(&server, i).await;
    }
    let ended_before = |server: &Server| {
        server
            .audit_lines()
            .iter()
            .filter(|l| l["event"] == "session.ended")
            .count()
    };
    assert!(eventually(T, async || ended_before(&server) == KINDS - 1).await);
    assert!(eventually(T, async || server.containers().is_empty()).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_start, (fds_start, sockets_start)) = (server.rss_kib(), descriptors(&server));

    let started = Instant::now();
    let results: Vec<(usize, Option<String>)> = futures_util::stream::iter(0..SESSIONS)
        .map(|i| one(&server, i))
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let took = started.elapsed();
    let ids: Vec<&String> = results.iter().filter_map(|(_, id)| id.as_ref()).collect();
    let mut per_kind: HashMap<usize, usize> = HashMap::new();
    for (kind, _) in &results {
        *per_kind.entry(*kind).or_default() += 1;
    }

    // Everything settles: containers gone, one end per session.
    let gone = eventually(Duration::from_secs(60), async || {
        server.containers().is_empty()
    })
    .await;
    let ends = || {
        let mut ends: HashMap<String, usize> = HashMap::new();
        for l in server.audit_lines() {
            if l["event"] == "session.ended" {
                *ends
                    .entry(l["session_id"].as_str().unwrap_or_default().to_string())
                    .or_default() += 1;
            }
        }
        ends
    };
    let all_ended = eventually(Duration::from_secs(30), async || {
        let ends = ends();
        ids.iter().all(|id| ends.contains_key(id.as_str()))
    })
    .await;
    let settled = eventually(Duration::from_secs(30), async || {
        descriptors(&server).1 <= sockets_start
    })
    .await;
    let (rss_end, (fds_end, sockets_end)) = (server.rss_kib(), descriptors(&server));
    println!(
        "soak: {} sessions ({} created, {} refused) {AT_ONCE} at a time in {took:.1?}; \
         containers left: {}; server RSS {rss_start} KiB at start, {rss_end} KiB at the end; \
         descriptors {fds_start} at start, {fds_end} at the end (sockets {sockets_start}, \
         {sockets_end})",
        SESSIONS,
        ids.len(),
        SESSIONS - ids.len(),
        server.containers().len()
    );
    assert!(gone, "containers left: {:?}", server.containers());
    assert!(all_ended, "a session without session.ended");
    let ends = ends();
    let twice: Vec<_> = ends.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "ended more than once: {twice:?}");
    assert_eq!(per_kind.len(), KINDS);
    assert!(
        settled,
        "sockets {sockets_start} at start, {sockets_end} at the end"
    );
    assert!(
        fds_end <= fds_start + 8,
        "descriptors {fds_start} at start, {fds_end} at the end"
    );
    assert!(
        rss_end <= rss_start + 10 * 1024,
        "RSS {rss_start} KiB at start, {rss_end} KiB at the end"
    );
    still_serves(&server).await;
}
