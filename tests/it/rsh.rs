//! The restricted shell in real sessions (`--shell restricted`): the default image as this
//! checkout builds it runs termcell-rsh, which refuses a shell and shell syntax, runs an
//! allowed command, redraws on a resize, lets Ctrl-C interrupt a command and Ctrl-Z not
//! stop it for good, and ends the session on Ctrl-D; a test image with termcell-showargs shows that typed arguments arrive
//! exactly and that loader variables sent by the client change nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// An image FROM `base` with termcell-showargs as the allowed command `showargs` (and
/// `echo`).
fn with_showargs(base: &str) -> BuiltImage {
    let showargs = std::fs::read(sandbox_programs().join("termcell-showargs")).unwrap();
    BuiltImage::from_dockerfile(
        &format!(
            "FROM {base}\nCOPY showargs /usr/local/bin/showargs\n\
             COPY rsh.conf /etc/termcell/rsh.conf\n"
        ),
        &[
            ("showargs", &showargs, 0o755),
            (
                "rsh.conf",
                b"prompt = \"rsh> \"\n[commands]\nshowargs = \"/usr/local/bin/showargs\"\n\
                  echo = \"/bin/echo\"\n",
                0o644,
            ),
        ],
    )
}

/// Sends `line` and Enter, then waits until the output holds `expected` once more than
/// before.
async fn typed(c: &mut Client, line: &str, expected: &str) -> String {
    let before = String::from_utf8_lossy(&c.output).matches(expected).count();
    c.send_text(&format!("{line}\r")).await;
    c.wait_count(expected, before + 1, T).await
}

#[tokio::test]
async fn a_restricted_session_refuses_a_shell_and_runs_allowed_commands() {
    let image = BuiltImage::new();
    let server = Server::start(&["--image", &image.0, "--shell", "restricted"]);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("termcell restricted shell", T).await;
    c.wait_output("$ ", T).await;
    let container = container_of(&id).expect("the session's container");
    let inspect = docker_inspect(&container);
    // The entry program in front of the restricted shell: it takes the environment.
    assert_eq!(
        inspect["Config"]["Entrypoint"],
        json!(["/usr/local/bin/termcell-entry"]),
        "{inspect}"
    );
    let cmd = inspect["Config"]["Cmd"]
        .as_array()
        .expect("a command")
        .clone();
    assert_eq!(
        cmd[cmd.len() - 2..],
        [json!("--"), json!("/usr/local/bin/termcell-rsh")],
        "{inspect}"
    );

    typed(&mut c, "sh", "refused: sh: not an allowed command").await;
    typed(
        &mut c,
        "/bin/sh",
        "refused: /bin/sh: commands are run by their name, never by a path",
    )
    .await;
    typed(
        &mut c,
        "echo hi; sh",
        "refused: ';' at position 8: one command per line",
    )
    .await;
    typed(
        &mut c,
        "echo $(sh)",
        "refused: '$' at position 6: command substitution is not supported",
    )
    .await;
    typed(
        &mut c,
        "busybox sh",
        "refused: busybox: not an allowed command",
    )
    .await;
    let out = typed(
        &mut c,
        "echo 'restricted' \"shell\" ok",
        "restricted shell ok",
    )
    .await;
    assert!(!out.contains("refused: echo"), "{out}");
    typed(&mut c, "help", "Built-ins: help clear history exit").await;

    // A resize (SIGWINCH in the container) draws the line being typed again.
    c.send_text("echo 'resized' line").await;
    c.wait_count("$ echo 'resized' line", 1, T).await;
    c.send_text(r#"{"type":"resize","cols":40,"rows":20}"#)
        .await;
    c.wait_count("\x1b[J$ echo 'resized' line", 2, T).await;
    typed(&mut c, "", "resized line").await;

    // Ctrl-C interrupts a running command, and the shell stays.
    c.send_text("sleep 30\r").await;
    let running = || docker_exec(&container, "ps").contains("sleep 30");
    assert!(
        eventually(T, async || running()).await,
        "sleep runs in the session"
    );
    c.send_text("\x03").await;
    c.wait_output("sleep: ended by signal 2 (SIGINT)", T).await;
    assert!(eventually(T, async || !running()).await);

    // Ctrl-Z stops the command, and the shell continues it (there is no job control to
    // resume it later), so Ctrl-C still ends it.
    c.send_text("sleep 30\r").await;
    assert!(eventually(T, async || running()).await);
    c.send_text("\x1a").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.send_text("\x03").await;
    c.wait_count("sleep: ended by signal 2 (SIGINT)", 2, T)
        .await;
    typed(&mut c, "echo still 'here'", "still here").await;

    // Ctrl-D on an empty line ends the shell, and with it the session.
    c.send_text("\x04").await;
    let (code, _) = c.wait_close(T).await.expect("a close frame");
    assert_eq!(code, 4000, "the shell exited");
    assert!(wait_gone(&id, T).await, "the container is removed");
}

#[tokio::test]
async fn typed_arguments_arrive_exactly_and_client_loader_variables_change_nothing() {
    let base = BuiltImage::new();
    let image = with_showargs(&base.0);
    // The operator lets clients set OPERATOR_SETTING; the shell's own allowlist still
    // keeps it from commands.
    let server = Server::start(&[
        "--image",
        &image.0,
        "--shell",
        "restricted",
        "--env-allow",
        "OPERATOR_SETTING",
    ]);
    let mut c = Client::connect(&server).await;
    c.auth(json!({
        "apiKey": "app.key:secret",
        "environmentVariables": {
            "BASH_ENV": "/tmp/rc",
            "ENV": "/tmp/rc",
            "LD_PRELOAD": "/tmp/x.so",
            "NODE_OPTIONS": "--require /tmp/x.js",
            "ABLY_WEB_CLI_MODE": "cli",
            "OPERATOR_SETTING": "kept-by-the-server",
            "TERM": "xterm-256color",
        }
    }))
    .await;
    let id = c.wait_hello().await;
    c.wait_output("rsh> ", T).await;
    // The server passes the allowed variable (through the entry program, not the
    // container's config) and none of the loader variables.
    let container = container_of(&id).expect("the session's container");
    let config_env = docker_inspect(&container)["Config"]["Env"].to_string();
    assert!(!config_env.contains("OPERATOR_SETTING"), "{config_env}");
    let container_env = docker_exec(&container, "cat /proc/[0-9]*/environ | tr '\\0' '\\n'");
    assert!(
        container_env.contains("OPERATOR_SETTING=kept-by-the-server"),
        "{container_env}"
    );
    for name in ["BASH_ENV", "ENV=", "LD_PRELOAD", "NODE_OPTIONS"] {
        assert!(!container_env.contains(name), "{name} in {container_env}");
    }

    let out = typed(
        &mut c,
        r#"showargs plain 'single quoted' "double quoted" esc\ aped '' '*' ~ '{"a": 1}' "it's" --end"#,
        // The last line showargs prints (it sorts the environment; every name the shell
        // should have dropped sorts before it).
        "env \"TERM\"=",
    )
    .await;
    let listed = out
        .rsplit("rsh> showargs")
        .next()
        .unwrap()
        .replace('\r', "");
    let argv: Vec<&str> = listed.lines().filter(|l| l.starts_with("argv[")).collect();
    assert_eq!(
        argv,
        [
            r#"argv[0]="/usr/local/bin/showargs""#,
            r#"argv[1]="plain""#,
            r#"argv[2]="single quoted""#,
            r#"argv[3]="double quoted""#,
            r#"argv[4]="esc aped""#,
            r#"argv[5]="""#,
            r#"argv[6]="*""#,
            r#"argv[7]="~""#,
            r#"argv[8]="{\"a\": 1}""#,
            r#"argv[9]="it's""#,
            r#"argv[10]="--end""#,
        ],
        "{listed}"
    );
    let env_names: BTreeSet<String> = listed
        .lines()
        .filter_map(|l| l.strip_prefix("env \""))
        .filter_map(|l| l.split_once('"').map(|(name, _)| name.to_string()))
        .collect();
    let expected: BTreeSet<String> = [
        "ABLY_API_KEY",
        "ABLY_WEB_CLI_MODE",
        "HOME",
        "HOSTNAME",
        "LANG",
        "PATH",
        "TERM",
    ]
    .map(String::from)
    .into();
    assert_eq!(env_names, expected, "{listed}");
    assert!(
        listed.contains(r#"env "TERM"="xterm-256color""#),
        "{listed}"
    );
    typed(&mut c, "sh -c id", "refused: sh: not an allowed command").await;
}

#[tokio::test]
async fn a_start_on_an_image_without_the_restricted_shell_fails_with_the_fix() {
    let showargs = std::fs::read(sandbox_programs().join("termcell-showargs")).unwrap();
    let image = BuiltImage::from_dockerfile(
        "FROM scratch\nCOPY showargs /showargs\nCMD [\"/showargs\"]\n",
        &[("showargs", &showargs, 0o755)],
    );
    let deployment = format!("it-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_termcell"))
        .args(["--image", &image.0, "--shell", "restricted"])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .args(["--deployment", &deployment, "--audit-log"])
        .arg(dir.path().join("audit.log"))
        .output();
    let out = tokio::time::timeout(T, out).await.expect("exits").unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "--shell restricted: image {} has no /usr/local/bin/termcell-rsh",
            image.0
        )) && err.contains("termcell build-image"),
        "{err}"
    );
    assert!(
        containers_with_label(&format!("termcell.deployment={deployment}")).is_empty(),
        "the check left no container"
    );
}
