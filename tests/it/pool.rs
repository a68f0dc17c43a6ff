//! The warm pool (issue 12): a claimed sandbox has exactly the profile of a cold one, is
//! handed out once (also under 20 concurrent claims), is replaced when killed while it
//! waits, and the pool's sandboxes go with the server.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

pub(crate) async fn pool_ready(server: &Server) -> f64 {
    metric(&scrape(server).await, "termcell_pool_ready", &[]).unwrap_or(-1.0)
}

pub(crate) async fn wait_pool(server: &Server, n: f64) {
    assert!(
        eventually(Duration::from_secs(60), async || pool_ready(server).await
            == n)
        .await,
        "the pool never had {n} ready; log:\n{}",
        server.log()
    );
}

/// The pool's waiting sandboxes of this server's deployment.
pub(crate) fn pool_containers(server: &Server) -> Vec<String> {
    docker_ps(
        &format!("termcell.deployment={}", server.deployment),
        "{{.ID}} {{.Label \"termcell.pool\"}}",
    )
    .into_iter()
    .filter_map(|l| {
        let (id, pool) = l.split_once(' ')?;
        (!pool.is_empty()).then(|| id.to_string())
    })
    .collect()
}

/// A session's container id, as the admin API says (a claimed sandbox has the pool's
/// label, not the session's).
async fn container_id(server: &Server, session: &str) -> String {
    let (status, info) =
        admin_json(server, Method::GET, &format!("/admin/sessions/{session}")).await;
    assert_eq!(status, 200, "{info}");
    info["container_id"]
        .as_str()
        .expect("a container")
        .to_string()
}

#[tokio::test]
async fn a_claimed_sandbox_has_the_profile_of_a_cold_one() {
    let image = BuiltImage::new();
    let warm_server = Server::start(&["--image", &image.0, "--pool-size", "1"]);
    let cold_server = Server::start(&["--image", &image.0, "--pool-size", "0"]);
    wait_pool(&warm_server, 1.0).await;
    let waiting = pool_containers(&warm_server);
    assert_eq!(waiting.len(), 1, "{waiting:?}");

    // The first frame after the auth is a resize: the warm shell has that size. Keys
    // typed before the claim completes reach the shell after the hand-over.
    let mut warm = Client::connect(&warm_server).await;
    warm.auth(json!({"apiKey": "app.key:warm-one"})).await;
    warm.send_text(r#"{"type":"resize","cols":132,"rows":43}"#)
        .await;
    warm.send_text("echo warm-early-$((2*21))\r").await;
    let warm_id = warm.wait_hello().await;
    warm.wait_output("warm-early-42", T).await;
    // The resize is applied right after the hand-over: the shell sees it at once or
    // after its first SIGWINCH.
    let mut size = (0, 0);
    for _ in 0..20 {
        size = warm.tty_size().await;
        if size == (43, 132) {
            break;
        }
    }
    assert_eq!(size, (43, 132));
    assert_eq!(warm.capture("echo $ABLY_API_KEY").await, "app.key:warm-one");
    let warm_container = container_id(&warm_server, &warm_id).await;
    assert!(
        waiting[0].starts_with(&warm_container[..12]) || warm_container.starts_with(&waiting[0]),
        "the session took the waiting sandbox {waiting:?}, not {warm_container}"
    );
    let samples = scrape(&warm_server).await;
    assert_eq!(
        metric(
            &samples,
            "termcell_pool_claims_total",
            &[("result", "warm")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&samples, "termcell_pool_claim_seconds_count", &[]),
        Some(1.0)
    );
    let refills = metric(&samples, "termcell_pool_refill_seconds_count", &[]).unwrap_or(0.0);
    assert!(refills >= 1.0, "{refills}");

    let (mut cold, cold_id) = Client::session(&cold_server).await;
    cold.wait_output("$ ", T).await;
    let cold_container = container_of(&cold_id).expect("the cold session's container");

    let warm_inspect = docker_inspect(&warm_container);
    let cold_inspect = docker_inspect(&cold_container);
    let (warm_hc, cold_hc) = (&warm_inspect["HostConfig"], &cold_inspect["HostConfig"]);
    let fields = cold_hc.as_object().unwrap();
    assert!(fields.len() > 20, "{cold_hc}");
    for (field, value) in fields {
        assert_eq!(&warm_hc[field], value, "HostConfig.{field} differs");
    }
    assert_eq!(warm_hc.as_object().unwrap().len(), fields.len());
    for field in ["User", "Env", "Entrypoint", "Tty", "OpenStdin", "Image"] {
        assert_eq!(
            warm_inspect["Config"][field], cold_inspect["Config"][field],
            "Config.{field} differs"
        );
    }
    // The same shell behind the entry program; only how long the program waits differs.
    let shell = |inspect: &serde_json::Value| {
        let cmd = inspect["Config"]["Cmd"].as_array().unwrap().clone();
        let dashes = cmd
            .iter()
            .position(|w| w == "--")
            .expect("-- in the command");
        cmd[dashes..].to_vec()
    };
    assert_eq!(shell(&warm_inspect), shell(&cold_inspect));
    let env = warm_inspect["Config"]["Env"].to_string();
    assert!(!env.contains("warm-one"), "{env}");
}

#[tokio::test]
async fn a_sandbox_is_never_handed_out_twice_under_20_concurrent_claims() {
    let image = BuiltImage::new();
    let server = Server::start(&["--image", &image.0, "--pool-size", "4"]);
    wait_pool(&server, 4.0).await;
    let sessions = join_all((0..20).map(|i| {
        let server = &server;
        async move {
            let mut c = Client::connect(server).await;
            let key = format!("app.key:claim-{i}");
            c.auth(json!({ "apiKey": key })).await;
            let id = c.wait_hello().await;
            c.wait_output("$ ", T).await;
            let seen = c.capture("echo $ABLY_API_KEY").await;
            assert_eq!(seen, key, "session {i} has its own environment");
            (c, id)
        }
    }))
    .await;
    let mut containers = Vec::new();
    for (_, id) in &sessions {
        containers.push(container_id(&server, id).await);
    }
    let mut distinct = containers.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 20, "{containers:?}");
    let samples = scrape(&server).await;
    let warm = metric(
        &samples,
        "termcell_pool_claims_total",
        &[("result", "warm")],
    )
    .unwrap_or(0.0);
    let cold = metric(
        &samples,
        "termcell_pool_claims_total",
        &[("result", "cold")],
    )
    .unwrap_or(0.0);
    assert!(
        warm >= 4.0,
        "the pool's four were claimed: warm {warm} cold {cold}"
    );
    assert_eq!(warm + cold, 20.0);
}

#[tokio::test]
async fn a_killed_pool_sandbox_is_replaced_and_the_pool_goes_with_the_server() {
    let image = BuiltImage::new();
    let mut server = Server::start(&[
        "--image",
        &image.0,
        "--pool-size",
        "1",
        "--reap-interval",
        "1",
    ]);
    wait_pool(&server, 1.0).await;
    let first = pool_containers(&server);
    assert_eq!(first.len(), 1);
    succeed(std::process::Command::new("docker").args(["kill", &first[0]]));
    assert!(
        eventually(Duration::from_secs(60), async || {
            let now = pool_containers(&server);
            now.len() == 1 && now[0] != first[0] && pool_ready(&server).await == 1.0
        })
        .await,
        "not replaced: {:?}; log:\n{}",
        pool_containers(&server),
        server.log()
    );
    // The replacement serves a session, and the engine's events about it reach that
    // session although its container carries the pool's label.
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    assert_eq!(c.capture("echo $ABLY_API_KEY").await, "app.key:secret");
    c.send_text("awk 'BEGIN { s = \"x\"; while (1) s = s s }'; echo hog-rc=$?\r")
        .await;
    c.wait_output("hog-rc=137", Duration::from_secs(60)).await;
    server
        .wait_audit("security.oom", Some(&id), Duration::from_secs(20))
        .await;
    // The reaper (every second here) leaves the pool's sandboxes alone, the serving one
    // and the new waiting one: nothing is removed as an orphan. No event marks a reaper
    // pass, so this waits for a few of them.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(c.capture("echo still-$((1+1))").await, "still-2");
    let audit = std::fs::read_to_string(server.audit_path()).unwrap();
    assert!(!audit.contains("orphaned"), "{audit}");

    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(60)),
        Some(0),
        "{}",
        server.log()
    );
    let left = docker_ps(
        &format!("termcell.deployment={}", server.deployment),
        "{{.ID}}",
    );
    assert!(left.is_empty(), "containers left after shutdown: {left:?}");
}
