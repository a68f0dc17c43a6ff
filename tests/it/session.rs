//! The walking skeleton: one hardened container per WebSocket session, end to end.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// Runs the binary (no admin listener) until it exits: its exit code and stderr.
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_termcell"))
        .args(args)
        .args(["--admin-listen", "off"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn session_starts_prompts_and_echoes() {
    let server = Server::start(&[]);
    let mut c = Client::connect(&server).await;
    // `connecting` arrives right after the upgrade, before any auth frame.
    let first = c.wait_control("status", Some("connecting"), T).await;
    assert_eq!(first["payload"], "connecting");
    c.auth(json!({"apiKey": "app.key:secret"})).await;
    let hello = c.wait_control("hello", None, T).await;
    let id = hello["sessionId"].as_str().unwrap();
    let uuid = uuid::Uuid::parse_str(id).expect("session id is a UUID");
    assert_eq!(uuid.get_version_num(), 4);
    // connected comes before hello, both with the control prefix.
    let connected_at = c
        .controls
        .iter()
        .position(|v| v["payload"] == "connected")
        .unwrap();
    let hello_at = c
        .controls
        .iter()
        .position(|v| v["type"] == "hello")
        .unwrap();
    assert!(connected_at < hello_at);
    // Input right after hello is not lost.
    c.send_text("echo typed-$((6*7))\r").await;
    let out = c.wait_output("typed-42", T).await;
    // The handshake line comes first, and the shell's prompt arrived without input.
    assert!(
        out.starts_with(HANDSHAKE),
        "output starts with the handshake: {out:?}"
    );
    let after = &out[HANDSHAKE.len()..];
    let prompt_at = after.find("$ ").expect("a prompt");
    assert!(
        prompt_at < after.find("echo typed").unwrap_or(usize::MAX)
            || after.contains("$ echo typed")
    );
    assert!(container_of(id).is_some());
}

#[tokio::test]
async fn resize_reaches_the_tty() {
    let server = Server::start(&[]);
    let (mut c, _id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    assert_eq!(c.tty_size().await, (30, 100), "the default size");
    c.send_text(r#"{"type":"resize","cols":132,"rows":43}"#)
        .await;
    assert!(
        eventually(T, async || c.tty_size().await == (43, 132)).await,
        "the TTY is resized to 43 rows, 132 columns"
    );
}

#[tokio::test]
async fn low_bytes_in_output_pass_unchanged() {
    let server = Server::start(&[]);
    let (mut c, _id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    let out = c
        .run(
            r"printf 'A\001\002\000\001Z'; echo; echo after-$((2+3))",
            "after-5",
        )
        .await;
    let bytes = out.as_bytes();
    let needle = b"A\x01\x02\x00\x01Z";
    assert!(
        bytes.windows(needle.len()).any(|w| w == needle),
        "raw bytes arrive unchanged: {out:?}"
    );
    // The session keeps working after them.
    c.run("echo still-$((40+2))", "still-42").await;
}

#[tokio::test]
async fn exit_closes_4000_and_removes_the_container() {
    let server = Server::start(&[]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    assert!(container_of(&id).is_some());
    c.send_text("exit\r").await;
    expect_close(&mut c, "disconnected", 4000, "Session ended by user").await;
    assert!(wait_gone(&id, T).await, "container removed");
    server.expect_one_end(&id, "shell_exited").await;
}

#[tokio::test]
async fn client_close_removes_the_container() {
    let server = Server::start(&[]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    c.close(1000, "user-closed-tab").await;
    assert!(wait_gone(&id, T).await, "container removed");
    server.expect_one_end(&id, "client_closed").await;
}

#[tokio::test]
async fn two_sessions_are_two_containers() {
    let server = Server::start(&[]);
    let (mut a, id_a) = Client::session(&server).await;
    let (mut b, id_b) = Client::session(&server).await;
    assert_ne!(id_a, id_b);
    let (ca, cb) = (container_of(&id_a).unwrap(), container_of(&id_b).unwrap());
    assert_ne!(ca, cb);
    a.wait_output("$ ", T).await;
    b.wait_output("$ ", T).await;
    a.run("echo secret > /tmp/mine && echo wrote-$((1+1))", "wrote-2")
        .await;
    let out = b
        .run("cat /tmp/mine 2>&1; echo checked-$((1+1))", "checked-2")
        .await;
    assert!(out.contains("No such file"), "{out:?}");
}

#[tokio::test]
async fn missing_engine_is_a_clear_startup_error() {
    let started = Instant::now();
    let (code, stderr) = run_to_exit(
        &["--listen", "127.0.0.1:0"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no Docker engine answers"), "{stderr}");
    assert!(
        stderr.contains("DOCKER_HOST") && stderr.contains("dockerd"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn missing_custom_image_is_a_clear_startup_error() {
    let (code, stderr) = run_to_exit(
        &[
            "--listen",
            "127.0.0.1:0",
            "--image",
            "termcell-no-such-image:1",
        ],
        &[],
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("termcell-no-such-image:1") && stderr.contains("not present"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_startup_error_after_the_actors_started() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let deployment = format!("it-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    // With the default warm pool: a start that fails leaves no sandbox behind.
    let (code, stderr) = run_to_exit(
        &[
            "--listen",
            &addr,
            "--audit-log",
            audit.to_str().unwrap(),
            "--deployment",
            &deployment,
        ],
        &[],
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        containers_with_label(&format!("termcell.deployment={deployment}")).is_empty(),
        "no container left behind"
    );
}

#[tokio::test]
async fn no_static_busybox_says_how_to_get_one() {
    let (code, stderr) = run_to_exit(&["build-image", "--busybox", "/bin/ls"], &[]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("apt-get install busybox-static") && stderr.contains("/bin/ls"),
        "{stderr}"
    );
}

#[tokio::test]
async fn original_environment_names_are_honoured() {
    // MAX_SESSIONS of the original server's config.env caps this server at one session.
    let server = Server::start_with(&[], &[("MAX_SESSIONS", "1")]);
    let (_first, _id) = Client::session(&server).await;
    let mut second = Client::connect(&server).await;
    second.auth(json!({"apiKey": "app.key:secret"})).await;
    expect_close(&mut second, "error", 4009, "Server at capacity").await;

    // An invalid value stops the server at start and names the setting.
    let (code, stderr) = run_to_exit(
        &["--listen", "127.0.0.1:0"],
        &[("SESSION_TIMEOUT_MS", "ten minutes")],
    );
    assert_eq!(code, Some(2));
    assert!(stderr.contains("SESSION_TIMEOUT_MS"), "{stderr}");
}
