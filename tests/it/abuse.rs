//! Abuse with nothing but a socket, before and after authentication: what it costs the
//! server in memory, file descriptors, audit log and engine load stays bounded, and the
//! server keeps serving everyone else. Every figure is printed beside its baseline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::*;

/// One of the many loopback addresses (127.0.0.0/8 all routes to lo).
fn local(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

async fn tcp_from(server: &Server, from: IpAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(server.addr).await
}

/// A WebSocket spoken byte by byte: the test writes whatever frames it likes.
struct RawWs {
    reader: Reader,
    writer: OwnedWriteHalf,
}

/// The server's side of a raw WebSocket, frame by frame.
struct Reader {
    half: OwnedReadHalf,
    /// Bytes read and not yet parsed.
    buf: Vec<u8>,
}

/// A frame from the server (never masked).
enum ServerFrame {
    Control(Value),
    Data(Vec<u8>),
    Close(u16, String),
    Other,
}

impl RawWs {
    async fn open(server: &Server, from: IpAddr) -> RawWs {
        let mut tcp = tcp_from(server, from).await.expect("tcp connect");
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            server.addr
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        let (reader, writer) = tcp.into_split();
        RawWs {
            reader: Reader {
                half: reader,
                buf: buf.split_off(head_end),
            },
            writer,
        }
    }

    /// An authenticated session: auth frame, then `hello`.
    async fn session(server: &Server, from: IpAddr) -> RawWs {
        let mut ws = RawWs::open(server, from).await;
        let auth = json!({"apiKey": "app.key:secret"}).to_string();
        ws.writer
            .write_all(&masked_frame(0x1, auth.as_bytes()))
            .await
            .unwrap();
        loop {
            match ws.reader.next(T).await {
                Some(ServerFrame::Control(c)) if c["type"] == "hello" => return ws,
                Some(ServerFrame::Close(code, reason)) => panic!("closed {code} {reason}"),
                None => panic!("no hello"),
                _ => {}
            }
        }
    }
}

impl RawWs {
    /// Writes the header of a binary frame that declares 2^62 payload bytes.
    async fn declare_exabytes(&mut self) {
        self.writer
            .write_all(&frame_header(0x82, 1 << 62))
            .await
            .unwrap();
    }
}

impl Reader {
    async fn next(&mut self, within: Duration) -> Option<ServerFrame> {
        let deadline = Instant::now() + within;
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let mut chunk = vec![0u8; 64 * 1024];
            match tokio::time::timeout(left, self.half.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// Reads until the close frame (its code and reason), or None if the socket ends first.
    async fn close(&mut self, within: Duration) -> Option<(u16, String)> {
        loop {
            match self.next(within).await? {
                ServerFrame::Close(code, reason) => return Some((code, reason)),
                _ => continue,
            }
        }
    }
}

fn parse_server_frame(buf: &[u8]) -> Option<(ServerFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (len, start) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < start + len {
        return None;
    }
    let payload = &buf[start..start + len];
    let frame = match buf[0] & 0x0f {
        0x2 if payload.starts_with(CTRL) => {
            ServerFrame::Control(serde_json::from_slice(&payload[CTRL.len()..]).unwrap())
        }
        0x1 | 0x2 => ServerFrame::Data(payload.to_vec()),
        0x8 if payload.len() >= 2 => ServerFrame::Close(
            u16::from_be_bytes([payload[0], payload[1]]),
            String::from_utf8_lossy(&payload[2..]).into_owned(),
        ),
        0x8 => ServerFrame::Close(1005, String::new()),
        _ => ServerFrame::Other,
    };
    Some((frame, start + len))
}

/// The header of a masked client frame that declares `len` payload bytes.
fn frame_header(first_byte: u8, len: u64) -> Vec<u8> {
    let mut h = vec![first_byte, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
    h
}

/// Writes `chunk` over and over until `total` bytes are sent, the server stops taking
/// them for `stall`, the socket fails, or `limit` has passed: the bytes it sent.
async fn pump(writer: &mut OwnedWriteHalf, chunk: &[u8], total: usize, limit: Duration) -> usize {
    let stall = Duration::from_secs(3);
    let deadline = Instant::now() + limit;
    let mut sent = 0;
    while sent < total && Instant::now() < deadline {
        match tokio::time::timeout(stall, writer.write_all(chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            _ => break,
        }
    }
    sent
}

/// The server's open file descriptors.
/// The server's open sockets (listeners, the engine's, clients').
fn sockets(server: &Server) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|p| p.to_string_lossy().starts_with("socket:"))
        .count()
}

fn fds(server: &Server) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count()
}

const MIB: usize = 1 << 20;

#[tokio::test]
async fn a_frame_declaring_exabytes_closes_1009_at_its_header_and_costs_no_memory() {
    let server = Server::start(&["--resume-grace", "2"]);
    let rss_before = server.rss_kib();

    // Before authentication: refused within the first KiB after the header.
    let mut ws = RawWs::open(&server, local(1)).await;
    ws.declare_exabytes().await;
    ws.writer.write_all(&[0u8; 1024]).await.unwrap();
    assert_eq!(
        ws.reader.close(T).await,
        Some((1009, "Message too large".into()))
    );

    // The same frame followed by 384 MiB: the server closes; what follows is discarded as it
    // arrives, never held.
    let mut ws = RawWs::open(&server, local(1)).await;
    ws.declare_exabytes().await;
    let sent = pump(&mut ws.writer, &vec![0u8; MIB], 384 * MIB, T).await;
    let close = ws.reader.close(T).await;
    let rss_flood = server.rss_kib();

    // After authentication, in a live session.
    let mut ws = RawWs::session(&server, local(1)).await;
    ws.declare_exabytes().await;
    let sent_live = pump(&mut ws.writer, &vec![0u8; MIB], 384 * MIB, T).await;
    let close_live = ws.reader.close(T).await;

    // A fragmented message that never finishes: 1009 once it passes the message limit.
    let mut ws = RawWs::session(&server, local(1)).await;
    ws.writer
        .write_all(&masked_frame_fin(0x2, false, &[b'a'; 60_000]))
        .await
        .unwrap();
    let fragment = masked_frame_fin(0x0, false, &[b'a'; 60_000]);
    let sent_fragments = pump(&mut ws.writer, &fragment, 384 * MIB, T).await;
    let close_fragments = ws.reader.close(T).await;

    let rss_after = server.rss_kib();
    println!(
        "declared 2^62 bytes: server took {} KiB of {} MiB sent before authentication, {} KiB \
         of {} MiB after, fragments: {} KiB; RSS {rss_before} KiB before, {rss_flood} KiB \
         after the first flood, {rss_after} KiB at the end",
        sent / 1024,
        384,
        sent_live / 1024,
        384,
        sent_fragments / 1024,
    );
    for (what, close) in [
        ("before authentication", close),
        ("in a session", close_live),
        ("fragments", close_fragments),
    ] {
        assert_eq!(
            close,
            Some((1009, "Message too large".into())),
            "close {what}"
        );
    }
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert!(
        eventually(T, async || server.containers().is_empty()).await,
        "both sessions end after their grace"
    );
}

/// A masked client frame with the FIN bit as given (for fragments).
fn masked_frame_fin(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = masked_frame(opcode, payload);
    if !fin {
        frame[0] &= 0x7f;
    }
    frame
}

#[tokio::test]
async fn a_flood_of_tiny_frames_after_authentication_is_read_no_faster_than_it_is_handled() {
    let server = Server::start(&[]);
    let rss_before = server.rss_kib();
    let RawWs {
        mut reader,
        mut writer,
    } = RawWs::session(&server, local(1)).await;
    let tiny = masked_frame(0x1, b"abcdefg");
    let chunk: Vec<u8> = tiny
        .iter()
        .copied()
        .cycle()
        .take(tiny.len() * 80_000)
        .collect();
    let started = Instant::now();
    let flood = tokio::spawn(async move {
        let sent = pump(&mut writer, &chunk, 256 * MIB, Duration::from_secs(20)).await;
        (sent, writer)
    });
    // Reads what the server sends meanwhile, as a browser would, until it closes or the
    // flood is over.
    let mut close = None;
    while !flood.is_finished() && close.is_none() {
        if let Some(ServerFrame::Close(code, reason)) =
            reader.next(Duration::from_millis(200)).await
        {
            close = Some((code, reason));
        }
    }
    let rss_peak = server.rss_kib();
    let (sent, mut writer) = flood.await.unwrap();
    let elapsed = started.elapsed();
    println!(
        "tiny frames: {} MiB ({} frames) taken in {elapsed:?}; RSS {rss_before} KiB before, \
         {rss_peak} KiB during; close {close:?}",
        sent / MIB,
        sent / tiny.len()
    );
    assert!(
        rss_peak < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss_peak} KiB"
    );
    match close {
        Some((code, _)) => assert_eq!(code, 4003, "ended as rate-limited input"),
        None => {
            // Still a working session: a fresh line runs.
            writer
                .write_all(&masked_frame(0x1, b"\x15echo tiny-$((40+2))\r"))
                .await
                .unwrap();
            let deadline = Instant::now() + T;
            let mut out = Vec::new();
            while !String::from_utf8_lossy(&out).contains("tiny-42") {
                assert!(Instant::now() < deadline, "the session does not answer");
                match reader.next(T).await {
                    Some(ServerFrame::Data(d)) => out.extend_from_slice(&d),
                    Some(ServerFrame::Close(code, r)) => {
                        assert_eq!(code, 4003, "ended as rate-limited input: {r}");
                        break;
                    }
                    None => panic!("the socket ended without a close"),
                    _ => {}
                }
            }
        }
    }
    still_serves(&server).await;
}

/// Sends `request` on a fresh connection from `from` and returns the response's status
/// line ("" when the server closed without answering).
async fn http_status(server: &Server, from: IpAddr, request: &[u8]) -> String {
    let mut tcp = tcp_from(server, from).await.expect("tcp connect");
    tcp.write_all(request).await.unwrap();
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout(T, tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&head);
    text.lines().next().unwrap_or_default().to_string()
}

fn upgrade_request(server: &Server, host: &str, extra: &str) -> Vec<u8> {
    let host = if host.is_empty() {
        server.addr.to_string()
    } else {
        host.to_string()
    };
    format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

fn audit_bytes(server: &Server) -> u64 {
    std::fs::metadata(server.audit_path()).map_or(0, |m| m.len())
}

/// Stops the server (which writes the aggregated counts) and returns its audit lines.
fn stop_and_read_audit(mut server: Server) -> (Vec<Value>, u64) {
    server.signal("TERM");
    assert_eq!(server.wait_exit(T), Some(0));
    (server.audit_lines(), audit_bytes(&server))
}

#[tokio::test]
async fn refused_upgrades_with_huge_origins_grow_the_audit_log_by_a_bounded_amount() {
    let server = Server::start(&["--audit-repeat-window", "60"]);
    let before = audit_bytes(&server);
    let origin = format!("Origin: https://{}.example\r\n", "o".repeat(60_000));
    let mut statuses = Vec::new();
    for n in 0..400u32 {
        let from = local(11 + (n % 4) as u8);
        statuses.push(http_status(&server, from, &upgrade_request(&server, "", &origin)).await);
    }
    assert!(
        statuses.iter().all(|s| s.starts_with("HTTP/1.1 403")),
        "{:?}",
        statuses.iter().find(|s| !s.starts_with("HTTP/1.1 403"))
    );
    let (lines, after) = stop_and_read_audit(server);
    let grown = after - before;
    println!(
        "400 upgrades with a 60 KB Origin from 4 addresses: audit log {before} -> {after} bytes \
         (+{grown}; {} MB of headers sent)",
        400 * 60_000 / 1_000_000
    );
    assert!(grown < 1024 * 1024, "the audit log grew by {grown} bytes");
    let origin_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "origin.rejected")
        .collect();
    // Per address: the first in full (cut and marked), then one count.
    assert_eq!(origin_lines.len(), 8, "{origin_lines:?}");
    let repeated: u64 = origin_lines
        .iter()
        .map(|l| l["repeated"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(repeated, 400);
    for first in origin_lines.iter().filter(|l| l.get("repeated").is_none()) {
        assert!(first["origin"].as_str().unwrap().len() <= 256);
        assert_eq!(first["origin_bytes"], 60_000 + "https://.example".len());
    }
}

#[tokio::test]
async fn a_burst_of_refused_upgrades_adds_a_bounded_number_of_audit_lines() {
    let server = Server::start(&[
        "--connections-per-minute",
        "5",
        "--connection-burst",
        "5",
        "--audit-repeat-window",
        "60",
    ]);
    let lines_before = server.audit_lines().len();
    let started = Instant::now();
    let mut refused = 0;
    for _ in 0..3000 {
        let status = http_status(&server, local(15), &upgrade_request(&server, "", "")).await;
        refused += usize::from(status.starts_with("HTTP/1.1 429"));
    }
    let elapsed = started.elapsed();
    let (lines, _) = stop_and_read_audit(server);
    let added = lines.len() - lines_before;
    println!("3000 upgrades in {elapsed:?}: {refused} refused with 429, {added} audit lines added");
    assert_eq!(refused, 2995);
    // The first 429 in full and one count, five sessions that never authenticated (each
    // refused once at its deadline would come later: they are closed by the test's drop),
    // and the server's stop line.
    assert!(added <= 12, "{added} lines: {:?}", &lines[lines_before..]);
    let counted: u64 = lines
        .iter()
        .filter(|l| l["event"] == "ratelimit.rejected" && l["kind"] == "connections")
        .map(|l| l["repeated"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(counted, 2995);
}

#[tokio::test]
async fn idle_connections_from_one_address_are_capped_and_others_are_served_at_once() {
    let server = Server::start(&["--max-connections-per-ip", "64"]);
    let fds_before = fds(&server);
    let pid = server.pid();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::task::spawn_blocking(move || {
            let mut most = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(
                    std::fs::read_dir(format!("/proc/{pid}/fd"))
                        .unwrap()
                        .count(),
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            most
        })
    };
    let mut idle = Vec::new();
    for _ in 0..3000 {
        idle.push(tcp_from(&server, local(21)).await.expect("connect"));
    }
    // Another address while they are open.
    let health_started = Instant::now();
    let health = reqwest::get(server.http("/health")).await.unwrap();
    let health_took = health_started.elapsed();
    assert_eq!(health.status(), 200);
    let (mut c, _) = session_from(&server, local(22)).await;
    c.run("echo other-$((1+2))", "other-3").await;
    // A refused socket is answered with 429 and closed; an admitted one stays silent until
    // the server closes it at its request timeout.
    let reads = futures_util::future::join_all(idle.iter_mut().map(|tcp| async move {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(T, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if buf[..n].starts_with(b"HTTP/1.1 429") => "refused",
            // actix-web answers a request that never came with 408 and closes.
            Ok(Ok(n)) if buf[..n].starts_with(b"HTTP/1.1 408") => "closed idle",
            Ok(Ok(0)) | Ok(Err(_)) => "closed idle",
            Ok(Ok(_)) => "other answer",
            Err(_) => "still open",
        }
    }))
    .await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let fds_most = sampler.await.unwrap();
    let count = |what| reads.iter().filter(|r| **r == what).count();
    println!(
        "3000 idle connections from one address: {} refused at once, {} admitted and closed \
         when idle; server fds {fds_before} before, at most {fds_most} meanwhile; /health from \
         another address in {health_took:?}",
        count("refused"),
        count("closed idle")
    );
    assert_eq!(
        (count("refused"), count("closed idle")),
        (3000 - 64, 64),
        "the per-address cap is 64"
    );
    // Refused sockets are held only from accept until their worker drops them: some
    // hundreds while 3000 arrive at once, not one per connection attempt.
    assert!(
        fds_most < fds_before + 64 + 1024,
        "fds {fds_before} -> {fds_most}"
    );
    c.close(1000, "user-closed-tab").await;
}

#[tokio::test]
async fn wrong_credentials_from_other_addresses_do_not_lock_the_owner_out() {
    let server = Server::start(&["--resume-max-attempts", "3"]);
    let (c, id) = session_from(&server, LOCALHOST).await;
    c.reset();
    for from in 2..=4 {
        let mut guess = connect_from(&server, local(from), &[]).await.unwrap();
        guess
            .auth(json!({"apiKey": "other.key:guess", "sessionId": id}))
            .await;
        expect_announced_close(&mut guess, 4001, "", T).await;
    }
    let mut owner = connect_from(&server, LOCALHOST, &[]).await.unwrap();
    owner
        .auth(json!({"apiKey": "app.key:secret", "sessionId": id}))
        .await;
    assert_eq!(
        owner.wait_hello().await,
        id,
        "the owner resumes its session"
    );
    owner.run("echo mine-$((2+2))", "mine-4").await;
    owner.close(1000, "user-closed-tab").await;
}

#[tokio::test]
async fn a_rebound_host_name_is_not_the_page_s_own_host() {
    let port = |s: &Server| s.addr.port();
    let server = Server::start(&["--public-url", "https://term.example.com"]);
    let p = port(&server);
    let status = |host: String, origin: String| {
        let request = upgrade_request(&server, &host, &format!("Origin: {origin}\r\n"));
        let server = &server;
        async move { http_status(server, LOCALHOST, &request).await }
    };
    // DNS rebinding: evil.example now resolves to this server.
    let rebound = status(
        format!("evil.example:{p}"),
        format!("http://evil.example:{p}"),
    )
    .await;
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    let public = status("term.example.com".into(), "https://term.example.com".into()).await;
    assert!(public.starts_with("HTTP/1.1 101"), "{public}");
    let loopback = status(format!("127.0.0.1:{p}"), format!("http://127.0.0.1:{p}")).await;
    assert!(loopback.starts_with("HTTP/1.1 101"), "{loopback}");
    let localhost = status(format!("localhost:{p}"), format!("http://localhost:{p}")).await;
    assert!(localhost.starts_with("HTTP/1.1 101"), "{localhost}");
}

async fn ready_checks(server: &Server) -> u64 {
    let samples = scrape(server).await;
    metric(&samples, "termcell_ready_checks_total", &[]).unwrap_or(0.0) as u64
}

#[tokio::test]
async fn a_flood_of_ready_requests_makes_at_most_one_engine_check_a_second() {
    let server = Server::start(&[]);
    let checks_before = ready_checks(&server).await;
    let client = reqwest::Client::new();
    let url = server.http("/ready");
    let started = Instant::now();
    let mut answered = 0;
    let mut stamps = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let batch = futures_util::future::join_all((0..20).map(|_| {
            let request = client.get(&url).send();
            async move { request.await.unwrap().json::<Value>().await.unwrap() }
        }))
        .await;
        for body in batch {
            assert_eq!(body["ready"], true);
            stamps.insert(body["checked_at"].as_str().unwrap().to_string());
            answered += 1;
        }
    }
    let elapsed = started.elapsed();
    let checks = ready_checks(&server).await - checks_before;
    println!(
        "/ready: {answered} requests in {elapsed:?} ({:.0}/s), {checks} engine checks",
        answered as f64 / elapsed.as_secs_f64()
    );
    let most = elapsed.as_secs() + 2;
    assert!(checks <= most, "{checks} checks in {elapsed:?}");
    assert_eq!(stamps.len() as u64, checks);
}

#[tokio::test]
async fn malformed_requests_cannot_flood_the_server_log() {
    let server = Server::start(&[]);
    let lines_before = server.log().lines().count();
    let started = Instant::now();
    for _ in 0..2000 {
        let status = http_status(
            &server,
            local(31),
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        )
        .await;
        assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    }
    let elapsed = started.elapsed();
    let added = server.log().lines().count() - lines_before;
    // Once the allowance refills, the next such line says how many were dropped.
    let deadline = Instant::now() + T;
    while !server
        .log()
        .contains("client-caused log lines were dropped")
    {
        assert!(Instant::now() < deadline, "no line counts the dropped ones");
        http_status(
            &server,
            local(31),
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("2000 malformed requests in {elapsed:?}: {added} log lines");
    let allowed = 20 + 2 * (elapsed.as_secs() as usize + 1) + 5;
    assert!(
        added <= allowed,
        "{added} lines, at most {allowed} expected"
    );
}

#[tokio::test]
async fn silent_and_dribbling_clients_cost_bounded_memory_and_go_at_the_auth_deadline() {
    let server = Server::start(&["--auth-timeout", "3"]);
    // Warm up: the workers' runtimes open their descriptors on their first connections.
    let mut warm = Vec::new();
    for _ in 0..8 {
        warm.push(RawWs::open(&server, local(40)).await);
    }
    for mut ws in warm {
        assert!(ws.reader.close(T).await.is_some());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // the close's 1 s wait for a reply
    let (fds_before, rss_before) = (fds(&server), server.rss_kib());
    let sockets_before = sockets(&server);
    let opened = Instant::now();
    // 150 WebSockets that never send a byte, and 30 that send an auth frame one byte a
    // second (it would take over a minute to arrive).
    let mut silent = Vec::new();
    for _ in 0..150 {
        silent.push(RawWs::open(&server, local(41)).await);
    }
    let mut dribbling = Vec::new();
    for _ in 0..30 {
        dribbling.push(RawWs::open(&server, local(42)).await);
    }
    let auth = masked_frame(
        0x1,
        json!({"apiKey": "app.key:secret"}).to_string().as_bytes(),
    );
    let dribblers = futures_util::future::join_all(dribbling.into_iter().map(|mut ws| {
        let auth = auth.clone();
        async move {
            for byte in &auth {
                if ws.writer.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                if !ws.reader.buf.is_empty() || opened.elapsed() > Duration::from_secs(10) {
                    break;
                }
                // Anything from the server ends the dribble: read without waiting.
                let mut peek = [0u8; 256];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(1), ws.reader.half.read(&mut peek))
                        .await
                {
                    ws.reader.buf.extend_from_slice(&peek[..n]);
                    if n == 0 {
                        break;
                    }
                }
            }
            ws
        }
    }));
    let fds_open = fds(&server);
    let rss_open = server.rss_kib();
    let dribbling = dribblers.await;
    // Every one of them is told why and closed at the deadline.
    let mut closes = Vec::new();
    for mut ws in silent.into_iter().chain(dribbling) {
        closes.push(ws.reader.close(T).await);
    }
    let took = opened.elapsed();
    assert!(
        closes.iter().all(
            |c| c.as_ref().map(|(code, reason)| (*code, reason.as_str()))
                == Some((1008, "Authentication timeout"))
        ),
        "{closes:?}"
    );
    assert!(took < Duration::from_secs(15), "closed after {took:?}");
    // Every connection's socket is closed (runtimes may still open an event fd or two).
    let settled = eventually(T, async || sockets(&server) <= sockets_before).await;
    let rss_after = server.rss_kib();
    println!(
        "150 silent + 30 dribbling WebSockets: server fds {fds_before} before, {fds_open} open, \
         {} after; RSS {rss_before} KiB before, {rss_open} KiB open, {rss_after} KiB after; all \
         closed 1008 within {took:?}",
        fds(&server)
    );
    let open_fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    assert!(settled, "sockets back to {sockets_before}: {open_fds:?}");
    assert!(
        rss_open.saturating_sub(rss_before) < 32 * 1024,
        "RSS grew {} KiB",
        rss_open - rss_before
    );
    assert!(
        containers_with_label(&format!("termcell.deployment={}", server.deployment)).is_empty()
    );
}
