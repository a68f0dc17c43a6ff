//! The entry program (issue 12): a session's credentials reach its shell over the TTY and
//! appear nowhere else (container config, engine events, audit log, screen snapshot, other
//! sessions' /proc); input sent before the hand-over comes after it; the program refuses
//! bad lines; an image without it keeps the environment in the config, and says so.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

const KEY_A: &str = "appA.keyA:entry-secret-AAAA-1b2e9";
const KEY_B: &str = "appB.keyB:entry-secret-BBBB-77c1d";

/// The engine's events of `deployment` since `since` (Unix seconds), as JSON lines.
fn engine_events(deployment: &str, since: u64) -> String {
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let out = Command::new("docker")
        .args(["events", "--since", &since.to_string(), "--until"])
        .arg(until.to_string())
        .args([
            "--filter",
            &format!("label=termcell.deployment={deployment}"),
        ])
        .args(["--format", "{{json .}}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn protection(ready: &Value, name: &str) -> Value {
    ready["protections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {ready}"))
        .clone()
}

#[tokio::test]
async fn credentials_reach_the_shell_and_nowhere_else() {
    let image = BuiltImage::new();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let server = Server::start(&["--image", &image.0]);
    let ready = server.ready().await;
    assert_eq!(
        protection(&ready, "credentials_out_of_config")["enforced"],
        true
    );

    let mut a = Client::connect(&server).await;
    a.auth(json!({"apiKey": KEY_A, "environmentVariables": {"ABLY_WEB_CLI_MODE": "t1"}}))
        .await;
    let id_a = a.wait_hello().await;
    a.wait_output("$ ", T).await;
    let container_a = container_of(&id_a).expect("session A's container");

    // B types before its sandbox is ready: the keystrokes arrive after the hand-over,
    // as the shell's input (not as the environment line, which would fail the session).
    let mut b = Client::connect(&server).await;
    b.auth(json!({"apiKey": KEY_B})).await;
    b.send_text("echo early-$((20+22)) $ABLY_API_KEY\r").await;
    b.wait_hello().await;
    let early = b.wait_output(&format!("early-42 {KEY_B}"), T).await;
    assert!(!early.contains("termcell-entry"), "{early:?}");
    // A's credentials are not in anything B can read in /proc.
    let proc = b
        .capture("cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n' | grep -c 'entry-secret-AAA[A]'")
        .await;
    assert_eq!(proc, "0", "B sees A's key in /proc");

    // Nothing of the hand-over reached A's screen: no echoed line, no marker.
    let shown = String::from_utf8_lossy(&a.output).to_string();
    assert!(
        !shown.contains("entry-secret") && !shown.contains("termcell-env"),
        "{shown:?}"
    );
    assert!(
        !shown.contains("\x1b_"),
        "the ready marker reached the client: {shown:?}"
    );

    // The snapshot a resumed client is drawn has no credentials either.
    a.reset();
    let mut r = Client::connect(&server).await;
    r.auth(json!({"apiKey": KEY_A, "sessionId": id_a})).await;
    r.wait_hello().await;
    r.wait_output("$ ", T).await;
    let snapshot = String::from_utf8_lossy(&r.output).to_string();
    assert!(!snapshot.contains("entry-secret"), "{snapshot:?}");

    // The shell has them.
    assert_eq!(r.capture("echo $ABLY_API_KEY").await, KEY_A);
    assert_eq!(r.capture("echo $ABLY_WEB_CLI_MODE").await, "t1");

    let inspect = docker_inspect(&container_a).to_string();
    assert!(
        !inspect.contains("entry-secret"),
        "docker inspect: {inspect}"
    );
    assert!(inspect.contains("termcell-entry"), "{inspect}");
    let events = engine_events(&server.deployment, since);
    assert!(
        events.contains(&container_a),
        "events of A's container: {events}"
    );
    assert!(!events.contains("entry-secret"), "docker events: {events}");
    let audit = std::fs::read_to_string(server.audit_path()).unwrap();
    assert!(audit.contains(&id_a));
    assert!(!audit.contains("entry-secret"), "audit log: {audit}");
    let log = server.log();
    assert!(!log.contains("entry-secret"), "server log: {log}");
}

/// Runs the image's entry program with `stdin` as its input (no TTY: the line is read the
/// same way); returns its exit code and output.
fn entry_run(image: &str, args: &[&str], stdin: &[u8], hold_open: Duration) -> (i32, String) {
    let mut child = Command::new("docker")
        .args(["run", "-i", "--rm", "--network", "none", "--label"])
        .arg("termcell.test=entry")
        .args(["--entrypoint", "/usr/local/bin/termcell-entry", image])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    std::thread::sleep(hold_open);
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn the_entry_program_refuses_bad_lines() {
    let image = BuiltImage::new();
    let shell = [
        "--timeout",
        "2",
        "--",
        "/bin/sh",
        "-c",
        "echo shell-ran-$FOO",
    ];
    let none = Duration::ZERO;
    let (code, out) = entry_run(&image.0, &shell, b"termcell-env/1 FOO=6f6b\n", none);
    assert_eq!((code, out.contains("shell-ran-ok")), (0, true), "{out}");
    let overlong = [b"termcell-env/1 FOO=".as_slice(), &[b'6'; 70_000], b"\n"].concat();
    for (what, line, hold) in [
        ("malformed", b"FOO=bar\n".to_vec(), none),
        ("bad hex", b"termcell-env/1 FOO=zz\n".to_vec(), none),
        ("overlong", overlong, none),
        ("cut short", b"termcell-env/1 FOO=6f".to_vec(), none),
        ("missing", Vec::new(), Duration::from_secs(4)),
    ] {
        let started = Instant::now();
        let (code, out) = entry_run(&image.0, &shell, &line, hold);
        assert_eq!(code, 3, "{what}: {out}");
        assert!(!out.contains("shell-ran"), "{what}: the shell ran: {out}");
        assert!(out.contains("termcell-entry: "), "{what}: says why: {out}");
        assert!(
            !out.contains("6f6b") && !out.contains("666"),
            "{what}: {out}"
        );
        if what == "missing" {
            assert!(out.contains("within 2 s"), "{out}");
            assert!(started.elapsed() < Duration::from_secs(30));
        }
    }
    let (code, out) = entry_run(&image.0, &["/bin/sh"], b"", none);
    assert_eq!(code, 2, "usage: {out}");
}

#[tokio::test]
async fn an_image_without_the_entry_program_keeps_the_environment_in_its_config() {
    let base = BuiltImage::new();
    let image = BuiltImage::from_dockerfile(
        &format!(
            "FROM {}\nUSER 0\nRUN [\"/bin/busybox\", \"rm\", \"/usr/local/bin/termcell-entry\"]\nUSER 1000:1000\n",
            base.0
        ),
        &[],
    );
    let server = Server::start(&["--image", &image.0]);
    let ready = server.ready().await;
    let p = protection(&ready, "credentials_out_of_config");
    assert_eq!(p["enforced"], false, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("docker inspect"),
        "{p}"
    );
    assert!(
        server
            .log()
            .contains("credentials_out_of_config: NOT enforced"),
        "{}",
        server.log()
    );
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    assert_eq!(c.capture("echo $ABLY_API_KEY").await, "app.key:secret");
    let env = docker_inspect(&container_of(&id).unwrap())["Config"]["Env"].to_string();
    assert!(env.contains("ABLY_API_KEY=app.key:secret"), "{env}");
}
