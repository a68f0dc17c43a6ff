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
    ws.writer
        .write_all(&frame_header(0x82, 1 << 62))
        .await
        .unwrap();
    ws.writer.write_all(&[0u8; 1024]).await.unwrap();
    assert_eq!(
        ws.reader.close(T).await,
        Some((1009, "Message too large".into()))
    );

    // The same frame followed by 384 MiB: the server closes and reads no further.
    let mut ws = RawWs::open(&server, local(1)).await;
    ws.writer
        .write_all(&frame_header(0x82, 1 << 62))
        .await
        .unwrap();
    let sent = pump(&mut ws.writer, &vec![0u8; MIB], 384 * MIB, T).await;
    let close = ws.reader.close(T).await;
    let rss_flood = server.rss_kib();

    // After authentication, in a live session.
    let mut ws = RawWs::session(&server, local(1)).await;
    ws.writer
        .write_all(&frame_header(0x82, 1 << 62))
        .await
        .unwrap();
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
        server.wait_no_containers(T),
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
