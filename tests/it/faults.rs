//! Faults injected into the running server (the test build's failpoints, set through the
//! admin API): every engine call, the TTY's read and write, and every actor's handlers.
//! Each fault ends at most the session it hit, with its documented close and one
//! `session.ended` naming the cause, leaves no container, keeps the gauges right, and the
//! server serves the others. Two servers, each taking its cases one after another while a
//! bystander session waits idle.

use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::*;

/// Grace period of a dropped session here: long enough to resume, short to expire.
const GRACE: &str = "3";

fn server() -> Server {
    Server::start(&["--reap-interval", "1", "--resume-grace", GRACE])
}

/// What a case does to its session to reach the failpoint.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    /// The fault hits while the session opens.
    Open,
    /// Types a command (input, echo, output).
    Input,
    Resize,
    /// Types `exit`.
    Exit,
    /// Drops the socket and resumes on a new one.
    Resume,
    /// Drops the socket and lets the grace period expire.
    GraceExpiry,
    AdminKill,
    /// Asks the admin API about the session.
    AdminShow,
    /// Sends the container a harmless signal (a Docker `kill` event).
    Signal,
    /// Removes the container from outside.
    RemoveFromOutside,
}

/// How the client is told, when one is attached.
#[derive(Clone, Copy, Debug)]
enum Told {
    Close(u16, &'static str),
    /// No socket attached when it ends.
    Nobody,
}

struct Case {
    point: &'static str,
    action: &'static str,
    trigger: Trigger,
    told: Told,
    /// The `session.ended` cause.
    cause: &'static str,
}

const SERVER_ERROR: Told = Told::Close(1011, "Server error");
const CREATE_FAILED: Told = Told::Close(1011, "Failed to create session environment");
const STREAM_BROKE: Told = Told::Close(1011, "Container died: the terminal stream broke");
const CONTAINER_DIED: Told = Told::Close(1011, "Container died: ");
const SHELL_EXITED: Told = Told::Close(4000, "Session ended by user");

fn case(
    point: &'static str,
    action: &'static str,
    trigger: Trigger,
    told: Told,
    cause: &'static str,
) -> Case {
    Case {
        point,
        action,
        trigger,
        told,
        cause,
    }
}

/// Opens the victim's session and waits for its prompt; with `Trigger::Open` the
/// failpoint is set first. The hello is not awaited where the fault may come before it.
async fn open_victim(server: &Server, c: &Case) -> (Client, Option<String>) {
    if matches!(c.trigger, Trigger::Open) {
        set_failpoint(server, c.point, c.action).await;
        let mut client = Client::connect(server).await;
        client.auth(json!({"apiKey": "app.key:secret"})).await;
        return (client, None);
    }
    let (mut client, id) = Client::session(server).await;
    client.wait_output("$ ", T).await;
    set_failpoint(server, c.point, c.action).await;
    (client, Some(id))
}

async fn resume(server: &Server, id: &str) -> Client {
    let mut c = Client::connect(server).await;
    c.auth(json!({"apiKey": "app.key:secret", "sessionId": id}))
        .await;
    c
}

/// The id of the newest session the audit log knows.
fn newest_session(server: &Server) -> Option<String> {
    server
        .audit_lines()
        .into_iter()
        .rev()
        .find(|l| l["event"] == "session.created")
        .and_then(|l| l["session_id"].as_str().map(str::to_string))
}

fn live(client: &mut Option<Client>) -> &mut Client {
    client.as_mut().expect("the victim's socket")
}

/// Prints the server's log when a case fails.
struct LogOnFailure<'a>(&'a Server);

impl Drop for LogOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("server log:\n{}", self.0.log());
        }
    }
}

async fn run_case(server: &Server, c: &Case) {
    println!("case {} = {} on {:?}", c.point, c.action, c.trigger);
    let _log = LogOnFailure(server);
    let known = newest_session(server);
    let (victim, mut id) = open_victim(server, c).await;
    let mut client = Some(victim);
    match c.trigger {
        Trigger::Open => {}
        Trigger::Input => live(&mut client).send_text("echo in-$((40+2))\r").await,
        Trigger::Resize => {
            live(&mut client)
                .send_text(&json!({"type": "resize", "cols": 91, "rows": 27}).to_string())
                .await
        }
        Trigger::Exit => live(&mut client).send_text("exit\r").await,
        Trigger::Resume => {
            client.take().unwrap().reset();
            client = Some(resume(server, id.as_deref().unwrap()).await);
        }
        Trigger::GraceExpiry => client.take().unwrap().reset(),
        Trigger::AdminKill => {
            let path = format!("/admin/sessions/{}", id.as_deref().unwrap());
            let resp = admin(server, Method::DELETE, &path, Some(ADMIN_TOKEN)).await;
            assert_eq!(resp.status(), StatusCode::ACCEPTED);
        }
        Trigger::AdminShow => {
            let path = format!("/admin/sessions/{}", id.as_deref().unwrap());
            let resp = admin(server, Method::GET, &path, Some(ADMIN_TOKEN)).await;
            // The session crashed while describing itself: it is gone.
            assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        }
        Trigger::Signal | Trigger::RemoveFromOutside => {
            let container = container_of(id.as_deref().unwrap()).unwrap();
            let args: &[&str] = if matches!(c.trigger, Trigger::Signal) {
                &["kill", "--signal", "WINCH", &container]
            } else {
                &["rm", "-f", &container]
            };
            assert!(Command::new("docker")
                .args(args)
                .output()
                .unwrap()
                .status
                .success());
        }
    }
    match c.told {
        Told::Close(code, reason) => {
            let said = expect_announced_close(live(&mut client), code, reason, T).await;
            println!("  closed {code} {said:?}");
        }
        Told::Nobody => {}
    }
    if id.is_none() {
        // Opened under the fault: the session the audit log names next.
        assert!(
            eventually(T, async || newest_session(server) != known).await,
            "the session was created"
        );
        id = newest_session(server);
    }
    let id = id.unwrap();
    // Cleared once it has acted (a grace expiry comes seconds after the trigger).
    server.expect_one_end(&id, c.cause).await;
    clear_failpoint(server, c.point).await;
    assert!(
        wait_gone(&id, T).await,
        "{}: the container of {id} is removed",
        c.point
    );
}

/// After the cases: the bystander was never touched and still works, the gauges count it
/// alone, and a new session works.
async fn check_the_others(server: &Server, bystander: &mut Client, bystander_id: &str) {
    assert!(
        server
            .audit_lines()
            .iter()
            .all(|l| !(l["event"] == "session.ended" && l["session_id"] == bystander_id)),
        "the bystander's session did not end"
    );
    bystander.run("echo alive-$((6*7))", "alive-42").await;
    let gauges_right = eventually(T, async || {
        let samples = scrape(server).await;
        metric(&samples, "termcell_sessions_active", &[]) == Some(1.0)
            && metric(&samples, "termcell_sessions_detached", &[]) == Some(0.0)
    })
    .await;
    assert!(gauges_right, "{}", metrics(server).await);
    // The registry forgets an ended session when its actor has stopped, a moment after the
    // gauges come down.
    let mut last = (Value::Null, Value::Null);
    let one_active = eventually(T, async || {
        let (_, status) = admin_json(server, Method::GET, "/admin/status").await;
        let (_, sessions) = admin_json(server, Method::GET, "/admin/sessions").await;
        let one = status["capacity"]["active"] == 1;
        last = (status, sessions);
        one
    })
    .await;
    assert!(one_active, "{} {}", last.0, last.1);
    still_serves(server).await;
    assert!(
        server.child.is_some(),
        "the server is still running; log:\n{}",
        server.log()
    );
}

#[tokio::test]
async fn faults_in_the_engine_the_tty_and_a_sessions_actors_end_only_that_session() {
    use Trigger::*;
    let server = server();
    let (mut bystander, bystander_id) = Client::session(&server).await;
    bystander.wait_output("$ ", T).await;
    let cases = [
        // Engine calls.
        case(
            "docker::create",
            "1*return",
            Open,
            CREATE_FAILED,
            "create_failed",
        ),
        case("docker::create", "1*panic", Open, SERVER_ERROR, "crashed"),
        case(
            "docker::attach",
            "1*return",
            Open,
            CREATE_FAILED,
            "create_failed",
        ),
        case("docker::attach", "1*panic", Open, SERVER_ERROR, "crashed"),
        case(
            "docker::start",
            "1*return",
            Open,
            CREATE_FAILED,
            "create_failed",
        ),
        case("docker::start", "1*panic", Open, SERVER_ERROR, "crashed"),
        case(
            "docker::inspect",
            "1*return",
            Exit,
            Told::Close(1011, "Container died: the engine did not say how it ended"),
            "container_died",
        ),
        case("docker::inspect", "1*panic", Exit, SERVER_ERROR, "crashed"),
        case("docker::resize", "1*panic", Resize, SERVER_ERROR, "crashed"),
        // A failed removal is retried by the reaper; the user saw a normal end.
        case(
            "docker::remove",
            "1*return",
            Exit,
            SHELL_EXITED,
            "shell_exited",
        ),
        case(
            "docker::remove",
            "1*panic",
            Exit,
            SHELL_EXITED,
            "shell_exited",
        ),
        // The events stream fails; the TTY still tells the session its container went.
        case(
            "docker::events",
            "1*return",
            RemoveFromOutside,
            CONTAINER_DIED,
            "container_died",
        ),
        case(
            "docker::events",
            "1*panic",
            RemoveFromOutside,
            CONTAINER_DIED,
            "container_died",
        ),
        // The TTY.
        case(
            "tty::read",
            "1*return",
            Input,
            STREAM_BROKE,
            "container_died",
        ),
        case("tty::read", "1*panic", Input, SERVER_ERROR, "crashed"),
        case(
            "tty::write",
            "1*return",
            Input,
            STREAM_BROKE,
            "container_died",
        ),
        case("tty::write", "1*panic", Input, SERVER_ERROR, "crashed"),
        // The session actor's handlers.
        case("session::input", "1*panic", Input, SERVER_ERROR, "crashed"),
        case(
            "session::resize",
            "1*panic",
            Resize,
            SERVER_ERROR,
            "crashed",
        ),
        case(
            "session::detach",
            "1*panic",
            GraceExpiry,
            Told::Nobody,
            "crashed",
        ),
        case(
            "session::attach",
            "1*panic",
            Resume,
            Told::Close(4002, "Session resume rejected"),
            "crashed",
        ),
        case(
            "session::end",
            "1*panic",
            AdminKill,
            SERVER_ERROR,
            "crashed",
        ),
        case(
            "session::describe",
            "1*panic",
            AdminShow,
            SERVER_ERROR,
            "crashed",
        ),
        case(
            "session::container_status",
            "1*panic",
            Open,
            SERVER_ERROR,
            "crashed",
        ),
        case(
            "session::container_event",
            "1*panic",
            Signal,
            SERVER_ERROR,
            "crashed",
        ),
        case(
            "session::container_output",
            "1*panic",
            Input,
            SERVER_ERROR,
            "crashed",
        ),
        case(
            "session::timer_event",
            "1*panic",
            GraceExpiry,
            Told::Nobody,
            "crashed",
        ),
        // The session vanishes without ending: the reaper ends it.
        case(
            "session::vanish",
            "1*return",
            Exit,
            SHELL_EXITED,
            "vanished",
        ),
        // The container actor's.
        case(
            "container::launched",
            "1*panic",
            Open,
            SERVER_ERROR,
            "crashed",
        ),
        case(
            "container::resize",
            "1*panic",
            Resize,
            SERVER_ERROR,
            "crashed",
        ),
        case(
            "container::stop",
            "1*panic",
            Exit,
            SHELL_EXITED,
            "shell_exited",
        ),
        // The timers'.
        case("timer::update", "1*panic", Input, SERVER_ERROR, "crashed"),
        case(
            "timer::fire",
            "1*panic",
            GraceExpiry,
            Told::Nobody,
            "crashed",
        ),
        // The bridge's.
        case("bridge::frame", "1*panic", Input, SERVER_ERROR, "crashed"),
        case(
            "bridge::to_client",
            "1*panic",
            Input,
            SERVER_ERROR,
            "crashed",
        ),
    ];
    for c in &cases {
        run_case(&server, c).await;
    }

    // A failed resize costs a resize, not the session.
    let errors = |samples: &[prometheus_parse::Sample]| {
        metric(samples, "termcell_docker_errors_total", &[("op", "resize")]).unwrap_or(0.0)
    };
    let before = errors(&scrape(&server).await);
    let (mut c, id) = Client::session(&server).await;
    c.wait_output("$ ", T).await;
    set_failpoint(&server, "docker::resize", "1*return").await;
    c.send_text(&json!({"type": "resize", "cols": 91, "rows": 27}).to_string())
        .await;
    assert!(
        eventually(T, async || errors(&scrape(&server).await) == before + 1.0).await,
        "the failed resize is counted"
    );
    clear_failpoint(&server, "docker::resize").await;
    c.run("echo after-resize-$((1+1))", "after-resize-2").await;
    c.send_text("exit\r").await;
    expect_announced_close(&mut c, 4000, "Session ended by user", T).await;
    server.expect_one_end(&id, "shell_exited").await;

    check_the_others(&server, &mut bystander, &bystander_id).await;

    // Last, because it drains the server: the registry's warning round fails (contained);
    // the drain goes on and ends the session as a drain does.
    set_failpoint(&server, "registry::warn_all", "1*panic").await;
    let resp = admin(
        &server,
        Method::POST,
        "/admin/drain?warn=1",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    expect_announced_close(&mut bystander, 1001, "Server shutting down", T).await;
    server.expect_one_end(&bystander_id, "shutdown").await;
    assert!(server.log().contains("registry::warn_all failed"));
}

#[tokio::test]
async fn faults_in_the_server_wide_actors_refuse_one_request_and_leave_the_sessions() {
    let server = server();
    let (mut bystander, bystander_id) = Client::session(&server).await;
    bystander.wait_output("$ ", T).await;

    // The registry refuses an open it failed on; no session, no container.
    set_failpoint(&server, "registry::open", "1*panic").await;
    let before = server.containers().len();
    let mut refused = Client::connect(&server).await;
    refused.auth(json!({"apiKey": "app.key:secret"})).await;
    expect_close(&mut refused, "error", 1011, "Server error").await;
    assert_eq!(server.containers().len(), before, "no container for it");
    clear_failpoint(&server, "registry::open").await;

    // Resume: refused once by the registry, once by the limiter, then taken.
    let (mut victim, id) = Client::session(&server).await;
    victim.wait_output("$ ", T).await;
    victim.reset();
    for (point, code, reason) in [
        ("registry::resume", 1011, "Server error"),
        ("limiter::resume", 4003, "Rate limit exceeded"),
    ] {
        set_failpoint(&server, point, "1*panic").await;
        let mut c = resume(&server, &id).await;
        expect_close(&mut c, "error", code, reason).await;
        clear_failpoint(&server, point).await;
    }
    // A failed resume's bookkeeping fails; the refusal is the usual one.
    set_failpoint(&server, "limiter::resume_failed", "1*panic").await;
    let mut c = resume(&server, &uuid::Uuid::new_v4().to_string()).await;
    expect_close(&mut c, "error", 4002, "Session resume rejected").await;
    clear_failpoint(&server, "limiter::resume_failed").await;
    let mut victim = resume(&server, &id).await;
    assert_eq!(victim.wait_hello().await, id);

    // The admin API answers 503 for what the registry failed on; the session lives.
    for (point, method, path) in [
        ("registry::list", Method::GET, "/admin/sessions".to_string()),
        (
            "registry::get",
            Method::GET,
            format!("/admin/sessions/{id}"),
        ),
        (
            "registry::end",
            Method::DELETE,
            format!("/admin/sessions/{id}"),
        ),
    ] {
        set_failpoint(&server, point, "1*panic").await;
        let resp = admin(&server, method, &path, Some(ADMIN_TOKEN)).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{point}");
        clear_failpoint(&server, point).await;
    }
    set_failpoint(&server, "registry::capacity", "1*panic").await;
    let ready = http().get(server.http("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["reasons"], json!(["the registry does not answer"]));
    clear_failpoint(&server, "registry::capacity").await;

    // An event the registry failed to route is lost; the next one is routed.
    set_failpoint(&server, "registry::event", "1*panic").await;
    let container = container_of(&id).unwrap();
    assert!(Command::new("docker")
        .args(["kill", "--signal", "WINCH", &container])
        .status()
        .unwrap()
        .success());
    assert!(
        eventually(T, async || server.log().contains("registry::event failed")).await,
        "the event handler failed"
    );
    clear_failpoint(&server, "registry::event").await;

    // Unregistering fails: the session still ends once, and the reaper gives its
    // capacity back.
    set_failpoint(&server, "registry::unregister", "1*panic").await;
    victim.send_text("exit\r").await;
    expect_announced_close(&mut victim, 4000, "Session ended by user", T).await;
    server.expect_one_end(&id, "shell_exited").await;
    clear_failpoint(&server, "registry::unregister").await;
    assert!(wait_gone(&id, T).await);

    // The limiter fails closed: an upgrade it failed on is refused, a session slot too.
    set_failpoint(&server, "limiter::connection", "1*panic").await;
    let refused = connect_from(&server, LOCALHOST, &[]).await;
    assert_eq!(refused.err().map(|r| r.status), Some(429));
    clear_failpoint(&server, "limiter::connection").await;
    set_failpoint(&server, "limiter::session_slot", "1*panic").await;
    let mut c = Client::connect(&server).await;
    c.auth(json!({"apiKey": "app.key:secret"})).await;
    expect_close(&mut c, "error", 4003, "Rate limit exceeded").await;
    clear_failpoint(&server, "limiter::session_slot").await;

    // The audit sink loses the one event it failed on (counted), not the log.
    let (_, status) = admin_json(&server, Method::GET, "/admin/status").await;
    let write_errors = status["audit_write_errors"].as_u64().unwrap();
    set_failpoint(&server, "audit::record", "1*panic").await;
    let (mut c, id) = Client::session(&server).await;
    clear_failpoint(&server, "audit::record").await;
    c.send_text("exit\r").await;
    expect_announced_close(&mut c, 4000, "Session ended by user", T).await;
    server.expect_one_end(&id, "shell_exited").await;
    let (_, status) = admin_json(&server, Method::GET, "/admin/status").await;
    assert_eq!(status["audit_write_errors"], write_errors + 1, "{status}");

    check_the_others(&server, &mut bystander, &bystander_id).await;

    // Last, because it drains the server: the drain's own failpoint is contained, and
    // the warning fails for one of the two sessions (it ends, crashed); the other is
    // drained as usual.
    let (mut victim, victim_id) = Client::session(&server).await;
    victim.wait_output("$ ", T).await;
    set_failpoint(&server, "registry::drain", "1*panic").await;
    set_failpoint(&server, "session::server_warning", "1*panic").await;
    let resp = admin(
        &server,
        Method::POST,
        "/admin/drain?warn=1",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let mut crashed = 0;
    for (c, id) in [(&mut victim, &victim_id), (&mut bystander, &bystander_id)] {
        let (code, _) = c.wait_close(T).await.expect("a close frame");
        let cause = if code == 1011 { "crashed" } else { "shutdown" };
        crashed += usize::from(code == 1011);
        server.expect_one_end(id, cause).await;
        assert!(wait_gone(id, T).await);
    }
    assert_eq!(crashed, 1, "one session crashed on its warning");
    assert!(server.log().contains("registry::drain failed"));

    // The flush at shutdown fails; the server still stops cleanly.
    set_failpoint(&server, "audit::flush", "1*panic").await;
    server.signal("TERM");
    let mut server = server;
    assert_eq!(server.wait_exit(T), Some(0), "{}", server.log());
    assert!(
        server.log().contains("audit::flush failed"),
        "{}",
        server.log()
    );
}
