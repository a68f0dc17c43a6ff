//! Session recording (`--record-dir`) and the live read-only view (the admin API's
//! `/admin/sessions/{id}/watch`), against the real server and engine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::support::*;

/// A server recording into its own directory, with `extra` flags.
fn recording_server(extra: &[&str]) -> (Server, PathBuf) {
    let dir = std::env::temp_dir().join(format!("termcell-rec-{}", uuid::Uuid::new_v4().simple()));
    let mut args = vec!["--record-dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    (server, dir)
}

/// `GET /admin/sessions/{id}/recording`: its status and body.
async fn recording_of(server: &Server, id: &str) -> (reqwest::StatusCode, Value) {
    admin_json(
        server,
        Method::GET,
        &format!("/admin/sessions/{id}/recording"),
    )
    .await
}

/// The lines of an asciicast file: its header, then its events.
fn cast(path: &Path) -> (Value, Vec<Value>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines().map(|l| {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}"))
    });
    let header = lines.next().expect("a header line");
    (header, lines.collect())
}

/// What events of `kind` carry, joined.
fn events_text(events: &[Value], kind: &str) -> String {
    events
        .iter()
        .filter(|e| e[1] == kind)
        .map(|e| e[2].as_str().unwrap().to_string())
        .collect()
}

/// Every event is `[time, kind, text]` with times that never go back.
fn assert_events_well_formed(events: &[Value]) {
    let mut last = 0.0;
    for e in events {
        let e = e
            .as_array()
            .unwrap_or_else(|| panic!("{e} is not an array"));
        assert_eq!(e.len(), 3, "{e:?}");
        let t = e[0].as_f64().expect("a time in seconds");
        assert!(t >= last, "times are monotonic: {t} after {last}");
        last = t;
        assert!(
            ["o", "i", "r", "m"].contains(&e[1].as_str().unwrap()),
            "{e:?}"
        );
        assert!(e[2].is_string());
    }
}

/// Types a line the shell does not echo (`read` with echo off) and waits for it to be read.
async fn type_unechoed(c: &mut Client, secret: &str, done: &str) {
    c.send_text(&format!(
        "stty -echo; read -r line; stty echo; echo {done}-$((1+1))\r"
    ))
    .await;
    // `read` is waiting once the command line was echoed and ran.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.send_text(&format!("{secret}\r")).await;
    c.wait_output(&format!("{done}-2"), T).await;
}

#[tokio::test]
async fn a_recording_plays_holds_no_credential_or_unechoed_input_and_is_named_at_the_end() {
    let (server, dir) = recording_server(&[]);
    let (mut c, id) = Client::session(&server).await;
    c.send_text(&json!({"type": "resize", "cols": 91, "rows": 27}).to_string())
        .await;
    c.run("echo rec-$((40+2))", "rec-42").await;
    type_unechoed(&mut c, "typed-unechoed-XYZ", "read").await;
    // Live: its inspect names the file and its size so far, no viewer.
    let (_, info) = admin_json(&server, Method::GET, &format!("/admin/sessions/{id}")).await;
    assert_eq!(info["recording"]["file"], format!("{id}.cast"), "{info}");
    assert!(info["recording"]["bytes"].as_u64().unwrap() > 0, "{info}");
    assert_eq!(info["viewers"], 0, "{info}");
    // Listed as being recorded, and not deletable.
    let (status, live) = recording_of(&server, &id).await;
    assert_eq!(status, 200, "{live}");
    assert_eq!(live["recording"], true);
    let (status, refused) = admin_json(
        &server,
        Method::DELETE,
        &format!("/admin/sessions/{id}/recording"),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["error"]
        .as_str()
        .unwrap()
        .contains("still being recorded"));

    c.send_text("exit\r").await;
    c.wait_close(T).await;
    let ended = server.wait_audit("session.ended", Some(&id), T).await;
    let file = format!("{id}.cast");
    assert_eq!(ended["recording"]["file"], file.as_str(), "{ended}");
    assert!(ended["recording"].get("truncated").is_none(), "{ended}");
    let path = dir.join(&file);
    assert!(
        eventually(T, async || recording_of(&server, &id).await.1["recording"]
            == false)
        .await,
        "the recording is closed once the session ended"
    );

    let (header, events) = cast(&path);
    assert_eq!(header["version"], 2);
    assert_eq!(header["session_id"], id.as_str());
    assert_eq!(header["client_address"], "127.0.0.1");
    assert!(
        header["image"].as_str().unwrap().contains("termcell"),
        "{header}"
    );
    assert!(header["timestamp"].as_i64().unwrap() > 1_700_000_000);
    assert!(header["width"].as_u64().unwrap() > 0);
    assert_events_well_formed(&events);
    let output = events_text(&events, "o");
    assert!(output.contains("rec-42"), "{output:?}");
    assert!(
        events.iter().any(|e| e[1] == "r" && e[2] == "91x27"),
        "the resize is recorded"
    );
    assert!(
        events.iter().all(|e| e[1] != "i"),
        "no input without --record-input"
    );
    let raw = std::fs::read_to_string(&path).unwrap();
    assert!(
        !raw.contains("typed-unechoed-XYZ"),
        "typed text the shell did not echo is absent"
    );
    assert!(
        !raw.contains("app.key:secret"),
        "the credentials never appear"
    );

    // It plays: asciinema prints the session's output (it wants a terminal: script(1)).
    let played = Command::new("script")
        .args([
            "-qec",
            &format!("asciinema cat {}", path.display()),
            "/dev/null",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script and asciinema (scripts/setup.sh installs it)");
    let printed = String::from_utf8_lossy(&played.stdout);
    assert!(played.status.success(), "asciinema cat: {printed}");
    assert!(
        printed.contains("rec-42"),
        "asciinema cat printed {printed:?}"
    );

    // The admin API: listed, downloaded as it is on disk, deleted (audited), then gone.
    let (status, list) = admin_json(&server, Method::GET, "/admin/recordings").await;
    assert_eq!(status, 200);
    assert!(
        list["recordings"].as_array().unwrap().iter().any(
            |r| r["session_id"] == id.as_str() && r["bytes"].as_u64() == Some(raw.len() as u64)
        ),
        "{list}"
    );
    let resp = admin(
        &server,
        Method::GET,
        &format!("/admin/sessions/{id}/recording.cast"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-asciicast");
    assert_eq!(resp.text().await.unwrap(), raw);
    server
        .wait_audit("recording.downloaded", Some(&id), T)
        .await;
    let (status, deleted) = admin_json(
        &server,
        Method::DELETE,
        &format!("/admin/sessions/{id}/recording"),
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    assert!(!path.exists());
    let audited = server.wait_audit("recording.deleted", Some(&id), T).await;
    assert_eq!(audited["admin_client"], "127.0.0.1");
    for (method, suffix) in [
        (Method::GET, "recording"),
        (Method::GET, "recording.cast"),
        (Method::DELETE, "recording"),
    ] {
        let (status, body) =
            admin_json(&server, method, &format!("/admin/sessions/{id}/{suffix}")).await;
        assert_eq!(status, 404, "{suffix}: {body}");
        assert_eq!(body["error"], "no recording of this session");
    }
}

#[tokio::test]
async fn the_recording_api_refuses_without_the_token_and_bad_ids() {
    let (server, _dir) = recording_server(&[]);
    let id = uuid::Uuid::new_v4();
    for (method, path) in [
        (Method::GET, "/admin/recordings".to_string()),
        (Method::GET, format!("/admin/sessions/{id}/recording")),
        (Method::GET, format!("/admin/sessions/{id}/recording.cast")),
        (Method::DELETE, format!("/admin/sessions/{id}/recording")),
        (Method::GET, format!("/admin/sessions/{id}/watch")),
    ] {
        for token in [None, Some("wrong-token-wrong-token-wrong")] {
            let resp = admin(&server, method.clone(), &path, token).await;
            assert_eq!(resp.status(), 401, "{method} {path} with {token:?}");
        }
    }
    for path in [
        "/admin/sessions/..%2f..%2fetc%2fpasswd/recording.cast",
        "/admin/sessions/not-a-uuid/recording",
    ] {
        let (status, body) = admin_json(&server, Method::GET, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"], "session id must be a UUID");
    }
}

#[tokio::test]
async fn input_is_recorded_when_asked_and_a_recording_is_cut_at_its_cap() {
    let (server, dir) = recording_server(&["--record-input", "--record-max-bytes", "65536"]);
    let (mut c, id) = Client::session(&server).await;
    type_unechoed(&mut c, "typed-recorded-XYZ", "read").await;
    // About 590 KB of output: far past the cap.
    c.run("seq 1 100000; echo big-$((5+5))", "big-10").await;
    c.run("echo after-$((6+6))", "after-12").await;
    c.send_text("exit\r").await;
    c.wait_close(T).await;
    let ended = server.wait_audit("session.ended", Some(&id), T).await;
    assert_eq!(ended["recording"]["truncated"], "size_cap", "{ended}");
    let path = dir.join(format!("{id}.cast"));
    assert!(
        eventually(T, async || recording_of(&server, &id).await.1["truncated"]
            == true)
        .await
    );
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(
        size <= 65536 + 1024,
        "the file stays at its cap: {size} bytes"
    );
    let (_, events) = cast(&path);
    assert_events_well_formed(&events);
    assert!(
        events_text(&events, "i").contains("typed-recorded-XYZ"),
        "input is recorded with --record-input"
    );
    let last = events.last().unwrap();
    assert_eq!(
        last[1], "m",
        "the file ends with the truncation marker: {last}"
    );
    assert!(last[2].as_str().unwrap().contains("recording truncated"));
    assert!(
        !events_text(&events, "o").contains("after-12"),
        "nothing is written past the cap"
    );
    let samples = scrape(&server).await;
    assert_eq!(
        metric(
            &samples,
            "termcell_recordings_truncated_total",
            &[("reason", "size_cap")]
        ),
        Some(1.0)
    );
}

/// Prints about `mb` MB in the session and returns the rate in MB/s the client got it at.
async fn print_rate(c: &mut Client, lines: u32, marker: u32) -> f64 {
    c.output.clear();
    let started = Instant::now();
    c.send_text(&format!("seq 1 {lines}; echo done-$(({marker}+1))\r"))
        .await;
    let (bytes, _) = c
        .read_flood(
            &format!("done-{}", marker + 1),
            Duration::from_secs(120),
            None,
        )
        .await;
    bytes as f64 / 1e6 / started.elapsed().as_secs_f64()
}

/// A watcher's socket: JSON events (text frames) and terminal output (binary frames).
struct Watcher {
    ws: WebSocketStream<tokio::net::TcpStream>,
    events: Vec<Value>,
    output: Vec<u8>,
    closed: Option<(u16, String)>,
}

/// Opens a watch of `id`; `Err(status)` when the upgrade is refused. A small receive
/// buffer makes a watcher that stops reading fill up quickly.
async fn watch(
    server: &Server,
    id: &str,
    token: Option<&str>,
    recv_buffer: Option<u32>,
) -> Result<Watcher, u16> {
    watch_as(server, id, token.map(Auth::Bearer), recv_buffer).await
}

/// How a watcher gives the admin token: the header, or (as a browser must) a subprotocol.
enum Auth<'a> {
    Bearer(&'a str),
    Protocol(&'a str),
}

async fn watch_as(
    server: &Server,
    id: &str,
    auth: Option<Auth<'_>>,
    recv_buffer: Option<u32>,
) -> Result<Watcher, u16> {
    let addr: SocketAddr = server.admin.unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let tcp = socket.connect(addr).await.unwrap();
    let mut request = format!("ws://{addr}/admin/sessions/{id}/watch?operator=alice")
        .into_client_request()
        .unwrap();
    use base64::Engine as _;
    let header = match auth {
        Some(Auth::Bearer(token)) => Some(("authorization", format!("Bearer {token}"))),
        Some(Auth::Protocol(token)) => Some((
            "sec-websocket-protocol",
            format!(
                "termcell.watch, termcell.token.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
            ),
        )),
        None => None,
    };
    if let Some((name, value)) = header {
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    match tokio_tungstenite::client_async(request, tcp).await {
        Ok((ws, _)) => Ok(Watcher {
            ws,
            events: Vec::new(),
            output: Vec::new(),
            closed: None,
        }),
        Err(WsError::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("watch upgrade failed: {e}"),
    }
}

impl Watcher {
    /// Reads one frame; false once closed or after `within`.
    async fn read(&mut self, within: Duration) -> bool {
        if self.closed.is_some() {
            return false;
        }
        match tokio::time::timeout(within, self.ws.next()).await {
            Err(_) => false,
            Ok(Some(Ok(Message::Text(t)))) => {
                self.events.push(serde_json::from_str(&t).unwrap());
                true
            }
            Ok(Some(Ok(Message::Binary(b)))) => {
                self.output.extend_from_slice(&b);
                true
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                self.closed = Some(
                    frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new())),
                );
                false
            }
            Ok(Some(Ok(_))) => true,
            Ok(None) | Ok(Some(Err(_))) => {
                self.closed = Some((1006, String::new()));
                false
            }
        }
    }

    async fn wait_output(&mut self, needle: &str) {
        let deadline = Instant::now() + T;
        while !String::from_utf8_lossy(&self.output).contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                self.read(left).await,
                "watcher never saw {needle:?}; events {:?}, closed {:?}",
                self.events,
                self.closed
            );
        }
    }

    async fn wait_close(&mut self) -> (u16, String) {
        let deadline = Instant::now() + T;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                self.read(left).await || self.closed.is_some(),
                "watcher not closed; events {:?}",
                self.events
            );
        }
        self.closed.clone().unwrap()
    }
}

#[tokio::test]
async fn a_watcher_sees_the_screen_then_live_output_cannot_type_and_is_audited() {
    let server = Server::start(&["--max-viewers", "1"]);
    let (mut c, id) = Client::session(&server).await;
    c.run("echo before-$((1+1))", "before-2").await;

    assert_eq!(
        watch(&server, &id, None, None).await.err(),
        Some(401),
        "no token, no view"
    );
    assert_eq!(
        watch(
            &server,
            &uuid::Uuid::new_v4().to_string(),
            Some(ADMIN_TOKEN),
            None
        )
        .await
        .err(),
        Some(404)
    );
    assert_eq!(
        watch(&server, "not-a-uuid", Some(ADMIN_TOKEN), None)
            .await
            .err(),
        Some(400)
    );

    // A browser offers the token as a subprotocol; the server selects `termcell.watch`.
    assert_eq!(
        watch_as(
            &server,
            &id,
            Some(Auth::Protocol("wrong-token-wrong-token")),
            None
        )
        .await
        .err(),
        Some(401)
    );
    let mut browser = watch_as(&server, &id, Some(Auth::Protocol(ADMIN_TOKEN)), None)
        .await
        .expect("a subprotocol token is accepted");
    browser.wait_output("before-2").await;
    browser.ws.close(None).await.unwrap();
    let closed = server.wait_audit("session.watch_ended", Some(&id), T).await;
    assert_eq!(closed["reason"], "closed", "{closed}");
    // The viewer page itself is served on the admin listener without the token.
    let page = http()
        .get(server.admin_url("/admin/viewer"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("watch-form"));

    let mut w = watch(&server, &id, Some(ADMIN_TOKEN), None)
        .await
        .expect("watch accepted");
    // The screen as it is first: what ran before the watcher came.
    w.wait_output("before-2").await;
    assert_eq!(w.events[0]["type"], "watching", "{:?}", w.events);
    assert_eq!(w.events[0]["session_id"], id.as_str());
    assert_eq!(w.events[0]["read_only"], true);
    let watched = server.wait_audit("session.watched", Some(&id), T).await;
    assert_eq!(watched["client"], "127.0.0.1", "{watched}");
    assert_eq!(watched["operator"], "alice", "{watched}");
    assert!(watched["time"].is_string());
    // The admin API's inspect counts the viewer; nothing is recorded on this server.
    let (_, info) = admin_json(&server, Method::GET, &format!("/admin/sessions/{id}")).await;
    assert_eq!(info["viewers"], 1, "{info}");
    assert!(info["recording"].is_null(), "{info}");

    // Then live output, as the user runs commands.
    let sent = Instant::now();
    c.send_text("echo live-$((2+3))\r").await;
    w.wait_output("live-5").await;
    println!(
        "watcher saw the user's command output {:?} after it was typed",
        sent.elapsed()
    );
    c.wait_output("live-5", T).await;

    // Input and resize from the watcher never reach the session; the first is answered.
    w.ws.send(Message::Binary(b"echo typed-by-$((7*6))-viewer\r".to_vec()))
        .await
        .unwrap();
    w.ws.send(Message::Text(
        json!({"type": "resize", "cols": 40, "rows": 10}).to_string(),
    ))
    .await
    .unwrap();
    w.ws.send(Message::Text("echo typed-by-$((7*6))-viewer\r".into()))
        .await
        .unwrap();
    while !w.events.iter().any(|e| e["type"] == "error") {
        assert!(
            w.read(T).await,
            "an error event for the watcher's input; {:?}",
            w.events
        );
    }
    let error = w.events.iter().find(|e| e["type"] == "error").unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("read-only"),
        "{error}"
    );
    let out = c.capture("echo checked").await;
    assert_eq!(out, "checked");
    assert!(
        !String::from_utf8_lossy(&c.output).contains("typed-by-42-viewer"),
        "the watcher's input is not run"
    );
    assert_eq!(
        c.tty_size().await,
        (30, 100),
        "the watcher's resize is not applied"
    );
    assert_eq!(
        w.events.iter().filter(|e| e["type"] == "error").count(),
        1,
        "answered once"
    );

    // One viewer at most here: a second one is closed with 4009.
    let mut second = watch(&server, &id, Some(ADMIN_TOKEN), None)
        .await
        .expect("upgrade accepted");
    let (code, reason) = second.wait_close().await;
    assert_eq!(code, 4009, "{reason}");
    assert!(reason.contains("Too many viewers"), "{reason}");

    // The session ends: the watcher is told why, then closed normally; the view's end is audited.
    c.send_text("exit\r").await;
    let (code, reason) = w.wait_close().await;
    assert_eq!((code, reason.as_str()), (1000, "Session ended"));
    assert!(
        w.events
            .iter()
            .any(|e| e["type"] == "ended" && e["cause"] == "shell_exited"),
        "{:?}",
        w.events
    );
    let ended_views = async || {
        server
            .audit_lines()
            .into_iter()
            .filter(|l| l["event"] == "session.watch_ended" && l["reason"] == "session_ended")
            .count()
    };
    assert!(
        eventually(T, async || ended_views().await == 1).await,
        "the view's end is audited"
    );
    let samples = scrape(&server).await;
    assert_eq!(metric(&samples, "termcell_viewers_total", &[]), Some(2.0));
    assert_eq!(metric(&samples, "termcell_viewers_active", &[]), Some(0.0));
    // Without --record-dir there is no recording to name or list.
    assert!(server
        .wait_audit("session.ended", Some(&id), T)
        .await
        .get("recording")
        .is_none());
    let (status, body) = admin_json(&server, Method::GET, "/admin/recordings").await;
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("recording is off"),
        "{body}"
    );
}

#[tokio::test]
async fn a_watcher_that_stops_reading_is_dropped_while_the_session_goes_on() {
    let server = Server::start(&[]);
    let (mut c, id) = Client::session(&server).await;
    c.run("echo ready-$((1+1))", "ready-2").await;
    let mut w = watch(&server, &id, Some(ADMIN_TOKEN), Some(4096))
        .await
        .expect("watch accepted");
    w.read(T).await;
    assert_eq!(w.events[0]["type"], "watching");
    let rss_before = server.rss_kib();
    // The watcher reads nothing more; the user prints about 7 MB twice and takes it all.
    let stalled = print_rate(&mut c, 1_000_000, 10).await;
    let after = print_rate(&mut c, 1_000_000, 20).await;
    println!("session output with a stalled watcher: {stalled:.1} MB/s; once it is dropped: {after:.1} MB/s");
    let dropped = server.wait_audit("session.watch_ended", Some(&id), T).await;
    assert_eq!(dropped["reason"], "slow", "{dropped}");
    let samples = scrape(&server).await;
    assert_eq!(
        metric(
            &samples,
            "termcell_viewers_dropped_total",
            &[("reason", "slow")]
        ),
        Some(1.0)
    );
    assert_eq!(metric(&samples, "termcell_viewers_active", &[]), Some(0.0));
    let rss_after = server.rss_kib();
    println!("server RSS {rss_before} KiB before, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory stays bounded: {rss_before} -> {rss_after} KiB"
    );
    // The session goes on: attached, answering.
    c.run("echo still-$((8+1))", "still-9").await;
    let (_, info) = admin_json(&server, Method::GET, &format!("/admin/sessions/{id}")).await;
    assert_eq!(info["state"], "attached", "{info}");
    // Once it reads again, the watcher finds it was dropped, with 4010.
    let (code, reason) = w.wait_close().await;
    assert_eq!(code, 4010, "{reason}");
    assert!(
        reason.contains("not reading output fast enough"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_shutdown_writes_the_recordings_of_the_sessions_it_ends() {
    let (mut server, dir) = recording_server(&[]);
    let (mut c, id) = Client::session(&server).await;
    c.run("echo last-words-$((3*3))", "last-words-9").await;
    server.signal("TERM");
    assert_eq!(server.wait_exit(T), Some(0), "{}", server.log());
    let ended = server
        .audit_lines()
        .into_iter()
        .find(|l| l["event"] == "session.ended" && l["session_id"] == id.as_str())
        .expect("session.ended");
    assert_eq!(ended["cause"], "shutdown");
    assert_eq!(ended["recording"]["file"], format!("{id}.cast").as_str());
    let (_, events) = cast(&dir.join(format!("{id}.cast")));
    assert_events_well_formed(&events);
    assert!(events_text(&events, "o").contains("last-words-9"));
}

#[tokio::test]
async fn a_fault_while_watching_ends_only_that_session_with_its_recording_closed() {
    let (server, dir) = recording_server(&[]);
    let (mut c, id) = Client::session(&server).await;
    c.run("echo seen-$((2+2))", "seen-4").await;
    let resp = http()
        .put(server.admin_url("/admin/failpoints/session::watch"))
        .bearer_auth(ADMIN_TOKEN)
        .body("1*panic")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut w = watch(&server, &id, Some(ADMIN_TOKEN), None)
        .await
        .expect("upgrade accepted");
    assert_eq!(w.wait_close().await, (1000, "Session ended".to_string()));
    let closed = c.wait_close(T).await.expect("a close frame");
    assert_eq!(closed.0, 1011, "{closed:?}");
    server.expect_one_end(&id, "crashed").await;
    let ended = server.wait_audit("session.ended", Some(&id), T).await;
    assert_eq!(ended["recording"]["file"], format!("{id}.cast").as_str());
    let path = dir.join(format!("{id}.cast"));
    assert!(
        eventually(T, async || std::fs::read_to_string(&path)
            .is_ok_and(|t| t.contains("seen-4")))
        .await,
        "the crashed session's recording is written"
    );
    assert_eq!(
        metric(&scrape(&server).await, "termcell_viewers_active", &[]),
        Some(0.0)
    );
    still_serves(&server).await;
}

#[test]
fn an_unusable_recording_directory_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("a-file");
    std::fs::write(&not_a_dir, b"").unwrap();
    let deployment = format!("it-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let out = Command::new(env!("CARGO_BIN_EXE_termcell"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .args(["--deployment", &deployment])
        .arg("--audit-log")
        .arg(dir.path().join("audit.log"))
        .arg("--record-dir")
        .arg(&not_a_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot use the recording directory") && stderr.contains("a-file"),
        "{stderr}"
    );
}
