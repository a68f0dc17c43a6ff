//! The wire protocol through the real server: the control messages, auth-frame handling
//! and credential checks, environment filtering and UTF-8 framing. The closes that end a
//! session are tested where their cause is: limits (timeouts, rate limits, hostile
//! frames), ops (admin, shutdown, the engine), resume and session.

use std::time::Instant;

use serde_json::json;

use crate::support::*;

/// Base64url without padding, for building JWTs.
fn b64url(data: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn jwt(exp: i64) -> String {
    format!(
        "{}.{}.{}",
        b64url(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64url(json!({"sub": "user", "exp": exp}).to_string().as_bytes()),
        b64url(b"not-a-real-signature")
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Connects, checks `connecting` arrives first, and sends `auth`.
async fn connect_and_auth(server: &Server, auth: serde_json::Value) -> Client {
    let mut c = Client::connect(server).await;
    let first = c.wait_control("status", Some("connecting"), T).await;
    assert_eq!(first["payload"], "connecting");
    c.auth(auth).await;
    c
}

#[test]
fn base64url_matches_known_values() {
    assert_eq!(b64url(b"f"), "Zg");
    assert_eq!(b64url(b"fo"), "Zm8");
    assert_eq!(b64url(b"foo"), "Zm9v");
    assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
}

#[tokio::test]
async fn fresh_session_controls_come_in_order_and_ping_gets_pong() {
    let server = Server::start(&[]);
    let (mut c, id) = Client::session(&server).await;
    let kinds: Vec<String> = c
        .controls
        .iter()
        .map(|v| match v["type"].as_str().unwrap() {
            "status" => v["payload"].as_str().unwrap().to_string(),
            other => other.to_string(),
        })
        .collect();
    assert_eq!(
        kinds,
        ["connecting", "connected", "hello"],
        "{:?}",
        c.controls
    );
    assert_eq!(c.controls[2]["sessionId"], id.as_str());
    c.wait_output("$ ", T).await;
    c.send_text(r#"{"type":"ping","ts":123}"#).await;
    let pong = c.wait_control("pong", None, T).await;
    assert_eq!(pong, json!({"type": "pong", "ts": 123}));
    // The ping was not typed into the shell.
    c.run("echo alive-$((1+1))", "alive-2").await;
    assert!(
        !String::from_utf8_lossy(&c.output).contains("ping"),
        "the ping control never reaches the TTY"
    );
}

#[tokio::test]
async fn oversized_message_closes_1009() {
    let server = Server::start(&["--max-message-bytes", "8192"]);
    let (mut c, _id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    c.send_binary(vec![b'x'; 16 * 1024]).await;
    expect_close(&mut c, "error", 1009, "Message too large").await;
}

#[tokio::test]
async fn missing_credentials_close_4001_when_required() {
    let server = Server::start(&["--require-credentials"]);
    for auth in [
        json!({}),
        json!({"apiKey": "", "accessToken": ""}),
        json!({"environmentVariables": {"PS1": "$ "}}),
    ] {
        let mut c = connect_and_auth(&server, auth).await;
        expect_close(&mut c, "error", 4001, "Missing credentials").await;
    }
    assert!(server.containers().is_empty(), "no container was created");
    // An access token alone is enough.
    let mut c = connect_and_auth(&server, json!({"accessToken": "opaque-token"})).await;
    c.wait_hello().await;
}

#[tokio::test]
async fn expired_jwt_closes_4001_and_a_valid_one_is_accepted() {
    let server = Server::start(&[]);
    let mut c = connect_and_auth(
        &server,
        json!({"apiKey": "app.key:secret", "accessToken": jwt(now() - 3600)}),
    )
    .await;
    expect_close(&mut c, "error", 4001, "Invalid or expired access token").await;
    assert!(server.containers().is_empty(), "no container was created");

    let mut c = connect_and_auth(&server, json!({"accessToken": jwt(now() + 3600)})).await;
    c.wait_hello().await;
}

#[tokio::test]
async fn input_sent_with_the_auth_frame_is_not_lost() {
    let server = Server::start(&[]);
    let mut c = Client::connect(&server).await;
    // Back to back, before the container exists.
    c.auth(json!({"apiKey": "app.key:secret"})).await;
    c.send_text("echo early-$((3*3))\r").await;
    c.wait_hello().await;
    let out = c.wait_output("early-9", T).await;
    assert_eq!(out.matches("early-9").count(), 1, "delivered once: {out:?}");
}

#[tokio::test]
async fn original_client_auth_frame_env_filter_and_readline_controls() {
    let server = Server::start(&[]);
    let api_key = "appid.keyid:Cr3dSecretValue42";
    let token = "opaque-access-token-Zq81";
    let mut c = connect_and_auth(
        &server,
        json!({
            "apiKey": api_key,
            "accessToken": token,
            "environmentVariables": {
                "ABLY_WEB_CLI_MODE": "true",
                "PS1": "$ ",
                "BASH_ENV": "/tmp/evil.sh",
                "LD_PRELOAD": "/tmp/evil.so",
                "PATH": "/evil",
            }
        }),
    )
    .await;
    c.wait_hello().await;
    c.wait_output("$ ", T).await;
    let out = c.run("env | sort; echo env-$((1+1))", "env-2").await;
    assert!(out.contains("ABLY_WEB_CLI_MODE=true"), "{out}");
    assert!(out.contains(&format!("ABLY_API_KEY={api_key}")), "{out}");
    assert!(out.contains(&format!("ABLY_ACCESS_TOKEN={token}")), "{out}");
    assert!(
        !out.contains("BASH_ENV"),
        "BASH_ENV reached the shell: {out}"
    );
    assert!(
        !out.contains("LD_PRELOAD"),
        "LD_PRELOAD reached the shell: {out}"
    );
    assert!(!out.contains("PATH=/evil"), "PATH reached the shell: {out}");

    // readline-control: history-up recalls the last line, Enter runs it again.
    let line = "echo hist-$((2+2))";
    let out = c.run(line, "hist-4").await;
    let (typed, ran) = (out.matches(line).count(), out.matches("hist-4").count());
    c.send_text(r#"{"type":"readline-control","action":"history-up"}"#)
        .await;
    // The shell redraws the recalled line.
    c.wait_count(line, typed + 1, T).await;
    c.send_text("\r").await;
    c.wait_count("hist-4", ran + 1, T).await;
    for action in ["complete", "history-down", "history-search"] {
        c.send_text(&json!({"type": "readline-control", "action": action}).to_string())
            .await;
    }
    // Ctrl-C leaves the history search; the session still works.
    c.send_text("\x03").await;
    c.run("echo rl-$((3+3))", "rl-6").await;
    c.send_text("exit\r").await;
    expect_close(&mut c, "disconnected", 4000, "Session ended by user").await;

    let rejected = server.wait_audit("env.rejected", None, T).await;
    let names: Vec<&str> = rejected["names"]
        .as_array()
        .unwrap_or_else(|| panic!("names in {rejected}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for name in ["BASH_ENV", "LD_PRELOAD", "PATH"] {
        assert!(names.contains(&name), "{name} in {rejected}");
    }
    assert!(!names.contains(&"PS1") && !names.contains(&"ABLY_WEB_CLI_MODE"));
    server.wait_audit("session.ended", None, T).await;
    let raw = std::fs::read_to_string(server.audit_path()).unwrap();
    assert!(
        !raw.contains("Cr3dSecretValue42") && !raw.contains(token),
        "credentials in the audit log"
    );
    assert!(!server.log().contains("Cr3dSecretValue42") && !server.log().contains(token));
}

#[tokio::test]
async fn utf8_sequences_never_split_across_frames() {
    let server = Server::start(&[]);
    let (mut c, _id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    // A 4-byte character right after 16383, 16382 and 16381 bytes, then long runs of it
    // after an odd prefix: some read boundary lands inside a character.
    let line = concat!(
        "for k in 16383 16382 16381; do head -c $k /dev/zero | tr '\\0' a; ",
        "printf '\\360\\237\\230\\200\\n'; done; ",
        "e=$(printf '\\360\\237\\230\\200'); for k in 1 2 3; do head -c $k /dev/zero | tr '\\0' b; ",
        "yes \"$e\" | head -n 5000 | tr -d '\\n'; echo; done; echo utf-$((4+4))"
    );
    c.send_text(&format!("{line}\r")).await;
    let start = c.output.len();
    let deadline = Instant::now() + T;
    let mut frames = 0;
    loop {
        match c
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            Some(Event::Output(data)) => {
                frames += 1;
                assert!(
                    std::str::from_utf8(&data).is_ok(),
                    "output frame {frames} of {} bytes is not valid UTF-8 on its own: ends {:?}",
                    data.len(),
                    &data[data.len().saturating_sub(8)..]
                );
            }
            Some(_) => {}
            None => panic!("no utf-8 marker within {T:?}"),
        }
        if String::from_utf8_lossy(&c.output[start..]).contains("utf-8") {
            break;
        }
    }
    let text = std::str::from_utf8(&c.output[start..]).expect("whole output is UTF-8");
    let smiles = text.matches('\u{1F600}').count();
    assert!(smiles >= 3 + 3 * 5000, "{smiles} characters arrived whole");
    assert!(frames > 3, "output came in {frames} frames");
    for k in [16383, 16382, 16381] {
        let run = format!("{}\u{1F600}", "a".repeat(k));
        assert!(text.contains(&run), "{k} bytes then the character");
    }
}

/// Reads until the server's close frame; its code.
async fn close_frame(c: &mut Client) -> u16 {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(T, c.ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map_or(1005, |f| f.code.into()),
            Ok(Some(Ok(_))) => {}
            other => panic!("no close frame: {other:?}"),
        }
    }
}

/// After a close frame has arrived, how long until the server's side of the TCP connection
/// is gone (the next read sees its end), seen from the client.
async fn tcp_gone_after(c: &mut Client) -> std::time::Duration {
    use futures_util::StreamExt;
    let t0 = Instant::now();
    // The next read also sends the client's reply when the server closed first.
    let end = tokio::time::timeout(T, c.ws.next()).await;
    assert!(
        matches!(end, Ok(None) | Ok(Some(Err(_)))),
        "nothing but the end of the connection after the close handshake: {end:?}"
    );
    t0.elapsed()
}

#[tokio::test]
async fn tcp_connection_goes_at_once_after_the_close_handshake() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::Message;

    let server = Server::start(&[]);
    let mut took = Vec::new();
    for round in 0..3 {
        // The client closes first: the server's close frame answers, then the connection ends.
        let (mut c, id) = Client::session(&server).await;
        c.ws.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "user-closed-tab".into(),
        })))
        .await
        .unwrap();
        assert_eq!(
            close_frame(&mut c).await,
            1000,
            "the server echoes the close"
        );
        let client_first = tcp_gone_after(&mut c).await;
        server.expect_one_end(&id, "client_closed").await;

        // The server closes first (the shell exits): the client's reply completes the
        // handshake, then the connection ends.
        let (mut c, id) = Client::session(&server).await;
        c.send_text("exit\r").await;
        assert_eq!(close_frame(&mut c).await, 4000, "shell exit closes 4000");
        let server_first = tcp_gone_after(&mut c).await;
        server.expect_one_end(&id, "shell_exited").await;
        println!("round {round}: connection gone {client_first:?} after the server's close reply, {server_first:?} after the client's");
        took.extend([client_first, server_first]);
    }
    let slowest = took.iter().max().unwrap();
    assert!(
        *slowest < std::time::Duration::from_millis(50),
        "the TCP connection is gone within 50 ms of the close handshake: {took:?}"
    );
}
