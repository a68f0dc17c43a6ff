//! Sessions under gVisor (`--runtime runsc`, registered by scripts/setup.sh with
//! TERMCELL_WITH_GVISOR=1): a whole session through the real server, the memory and task
//! limits as the host enforces them on the whole sandbox, `termcell verify` with what gVisor
//! does differently stated, and the restricted network either working or refused at start.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

const KEY: &str = "app.key:secret";

/// gVisor starts a user-space kernel per sandbox: its first prompt takes longer.
const G: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_session_under_gvisor_works_end_to_end() {
    let server = Server::start(&["--runtime", "runsc"]);
    let (mut a, id) = Client::session(&server).await;
    a.wait_output("$ ", G).await;
    // The user-space kernel answers, not the host's.
    let kernel = a.capture("uname -r").await;
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_ne!(kernel, host.trim(), "the sandbox's kernel is gVisor's");
    a.run("echo sum-$((40+2))", "sum-42").await;
    let container = container_of(&id).expect("the session's container");
    let inspect = docker_inspect(&container);
    assert_eq!(inspect["HostConfig"]["Runtime"], "runsc", "{inspect}");
    assert_eq!(inspect["HostConfig"]["ReadonlyRootfs"], true);
    assert_eq!(inspect["HostConfig"]["Memory"], 268_435_456);

    a.send_text(r#"{"type":"resize","cols":132,"rows":43}"#)
        .await;
    assert_eq!(a.tty_size().await, (43, 132), "the TTY is resized");

    // A drop, then a resume of the same sandbox.
    a.reset();
    let mut b = Client::connect(&server).await;
    b.auth(json!({"apiKey": KEY, "sessionId": id})).await;
    let hello = b.wait_control("hello", None, G).await;
    assert_eq!(hello["sessionId"], id.as_str());
    b.wait_output("sum-42", G).await;
    b.run("echo again-$((6*7))", "again-42").await;
    assert_eq!(container_of(&id), Some(container), "the same sandbox");

    b.send_text("exit\r").await;
    expect_close(&mut b, "disconnected", 4000, "Session ended by user").await;
    assert!(wait_gone(&id, G).await, "the sandbox is removed");
    server.expect_one_end(&id, "shell_exited").await;

    // The protections report names the runtime as a user-space kernel.
    let ready = server.ready().await;
    assert_eq!(ready["runtime"]["name"], "runsc", "{ready}");
    assert_eq!(ready["runtime"]["user_space_kernel"], true, "{ready}");
}

#[tokio::test]
async fn under_gvisor_the_limits_end_the_whole_sandbox() {
    let server = Server::start(&["--runtime", "runsc"]);
    let (mut hog, hog_id) = Client::session(&server).await;
    let (mut bomb, bomb_id) = Client::session(&server).await;
    let (mut other, _) = Client::session(&server).await;
    for c in [&mut hog, &mut bomb, &mut other] {
        c.wait_output("$ ", G).await;
    }

    // Past the memory limit the host kills the sandbox, its kernel included: the session
    // ends as a container death, with the OOM audited.
    hog.send_text("awk 'BEGIN { s = \"x\"; while (1) s = s s }'\r")
        .await;
    let reason = expect_announced_close(&mut hog, 1011, "Container died: ", G).await;
    println!("memory limit under gVisor: {reason}");
    let oom = server.wait_audit("security.oom", Some(&hog_id), G).await;
    assert_eq!(oom["session_id"], hog_id.as_str(), "{oom}");
    assert!(wait_gone(&hog_id, G).await, "the hog's sandbox is removed");

    // A fork bomb reaches the host's task limit of the whole sandbox, which ends it: the
    // user-space kernel cannot create a thread and exits. The engine reports that exit
    // like any init's exit (code 2, not OOM, not killed), so the session ends as its
    // shell's end or, when the engine says more, as a container death.
    bomb.send_text("i=0; while [ $i -lt 400 ]; do sleep 300 & i=$((i+1)); done\r")
        .await;
    let (code, reason) = bomb.wait_close(G).await.expect("the bomb's session ends");
    println!("task limit under gVisor: {code} {reason}");
    assert!(
        code == 4000 || (code == 1011 && reason.starts_with("Container died: ")),
        "{code} {reason}"
    );
    assert!(
        wait_gone(&bomb_id, G).await,
        "the bomb's sandbox is removed"
    );
    let ended = server.wait_audit("session.ended", Some(&bomb_id), G).await;
    assert!(
        ended["cause"] == "shell_exited" || ended["cause"] == "container_died",
        "{ended}"
    );

    // Neither touched the other session or the server.
    other.run("echo other-$((2*21))", "other-42").await;
    still_serves(&server).await;
}

#[tokio::test]
async fn verify_under_gvisor_passes_and_states_what_differs() {
    crate::security::built_probe().await;
    let deployment = format!(
        "it-verify-gvisor-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_termcell"))
        .args(["verify", "--runtime", "runsc", "--deployment", &deployment])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .expect("run termcell verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert_eq!(out.status.code(), Some(0), "verify exits 0:\n{stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("FAIL ")), "{stdout}");
    for check in [
        "PASS capabilities:",
        "PASS no-new-privs:",
        "PASS seccomp-filter:",
        "PASS non-root:",
        "PASS rootfs-read-only:",
        "PASS tmp-noexec:",
        "PASS deny-unshare-user:",
        "PASS deny-mount:",
        "PASS deny-ptrace:",
        "PASS deny-bpf:",
        "PASS deny-io-uring-setup:",
        "PASS net-loopback-only:",
        "PASS no-runtime-socket:",
        // What gVisor does differently is said, never passed.
        "NOTE pids-limit: gVisor:",
        "NOTE memory-limit: gVisor:",
        "NOTE fork-bomb-held: gVisor: not run",
        "NOTE oom-kill: gVisor: not run",
    ] {
        assert!(stdout.contains(check), "{check} in:\n{stdout}");
    }
    assert!(
        stdout.contains("with 10 difference(s) of the runtime stated above")
            || stdout.contains("difference(s) of the runtime stated above"),
        "{stdout}"
    );
    assert!(
        containers_with_label(&format!("termcell.deployment={deployment}")).is_empty(),
        "verify leaves no container behind"
    );
}

#[tokio::test]
async fn the_restricted_network_under_gvisor_works_or_is_refused_at_start() {
    let deployment = format!(
        "it-gvnet-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_termcell"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--runtime",
            "runsc-net",
            "--network",
            "restricted",
            "--egress-allow",
            "api.termcell.test",
            "--deployment",
            &deployment,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .kill_on_drop(true)
        .output();
    // A server that starts keeps running: then gVisor's networking works on this host and
    // the egress tests' guarantees are the runtime's too. Otherwise it must stop at once.
    match tokio::time::timeout(Duration::from_secs(90), out).await {
        Ok(out) => {
            let out = out.expect("run termcell");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains("--runtime runsc-net is gVisor, and a gVisor sandbox on network")
                    && stderr.contains("does not start on this host")
                    && stderr.contains("--network none"),
                "the refusal says why and what to do: {stderr}"
            );
            println!("refused: {stderr}");
            // A refused start takes down what it set up.
            assert!(
                containers_with_label(&format!("termcell.deployment={deployment}")).is_empty(),
                "no container left behind"
            );
            let networks = std::process::Command::new("docker")
                .args(["network", "ls", "--format", "{{.Name}}"])
                .output()
                .expect("docker network ls");
            assert!(
                !String::from_utf8_lossy(&networks.stdout)
                    .lines()
                    .any(|n| n == format!("termcell-{deployment}")),
                "no network left behind"
            );
            let tables = std::process::Command::new("nft")
                .args(["list", "tables"])
                .output()
                .expect("nft");
            let table = format!("termcell_{}", deployment.replace('-', "_"));
            assert!(
                !String::from_utf8_lossy(&tables.stdout).contains(&table),
                "no firewall table left behind"
            );
        }
        Err(_) => {
            println!("gVisor's networking works on this host: the server started");
            remove_containers(&format!("termcell.deployment={deployment}"));
        }
    }
    remove_restricted_network(&deployment);
}
