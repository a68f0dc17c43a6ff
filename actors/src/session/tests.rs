use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::budget::Credit;
use crate::container::EngineFailure;
use crate::docker::fake::{Call, Op, Shell};
use crate::notice::{Notice, WarningKind};
use crate::testing::{ask, input, settings, within, Client, TestSession, World};
use crate::SessionSettings;

type Session = TestSession;

/// Opens a session and waits until its client is connected to the TTY.
async fn connected(world: &World, client: &mut Client) -> (Session, Shell) {
    let session = world.open(client);
    let shell = within("the TTY", world.fake.shell()).await;
    client.expect_connected(session.id).await;
    (session, shell)
}

impl Session {
    /// Waits for the session to unregister, then checks that it ended once, with `cause`,
    /// and that its container (if one was created) was removed once. Returns the
    /// session.ended audit line.
    async fn ended(&mut self, world: &World, container: Option<&str>, cause: &str) -> Value {
        let Unregister { id } = within("the unregister", self.unregistered.recv())
            .await
            .expect("the registry recorder lives");
        assert_eq!(id, self.id);
        match container {
            Some(container) => {
                let removed = Call::Remove(container.to_string());
                within(
                    "the container's removal",
                    world.fake.wait_for_calls(|calls| calls.contains(&removed)),
                )
                .await;
                assert_eq!(world.fake.removals(container), 1);
            }
            None => assert!(!world
                .fake
                .calls()
                .iter()
                .any(|c| matches!(c, Call::Remove(_)))),
        }
        let mut ended = world.audited("session.ended", self.id).await;
        assert_eq!(ended.len(), 1, "one session.ended event: {ended:?}");
        assert_eq!(ended[0]["cause"], cause);
        assert_eq!(world.audited("session.created", self.id).await.len(), 1);
        ended.remove(0)
    }

    async fn describe(&self) -> SessionInfo {
        ask(&self.addr, Describe).await
    }

    async fn send<M>(&self, msg: M)
    where
        M: Message<Result = ()> + Send + 'static,
        SessionActor: Handler<M>,
    {
        ask(&self.addr, msg).await
    }
}

#[actix_rt::test]
async fn shell_exit_ends_the_session() {
    let world = World::new(settings());
    let mut client = Client::new(1);
    let (mut session, mut shell) = connected(&world, &mut client).await;
    let container = shell.container_id.clone();
    assert_eq!(
        session.describe().await.container_id.as_deref(),
        Some(&*container)
    );
    shell.output(b"$ ").await;
    client.expect_output(b"$ ").await;
    session.send(input(b"exit\r")).await;
    shell.expect_input(b"exit\r").await;
    world.fake.exit(shell, 0);
    assert_eq!(client.expect_end().await, EndCause::ShellExited);
    let ended = session
        .ended(&world, Some(&container), "shell_exited")
        .await;
    assert_eq!(ended["bytes_in"], 5);
    assert_eq!(ended["bytes_out"], 2);
    // Attached before started, so the first prompt cannot be lost; sized after start.
    let calls = world.fake.calls();
    assert!(matches!(calls[0], Call::Create { .. }));
    assert_eq!(calls[1], Call::Attach(container.clone()));
    assert_eq!(calls[2], Call::Start(container.clone()));
    assert!(matches!(&calls[3], Call::Resize { id, .. } if *id == container));
}

/// How a test ends a connected session.
enum Ending {
    /// The shell exits with this code.
    Exit(i64),
    /// The container's init is killed, out of memory or not.
    Kill { oom: bool },
    /// The container is removed from outside.
    Vanish,
    /// The engine reports this event about the container.
    Event(&'static str),
    /// An end from outside (admin kill, shutdown).
    End(EndCause),
    /// The socket goes away.
    Detach(Departure),
    /// Nothing: a timer ends the session.
    Wait,
}

/// What an ended session left: its session.ended audit line and what its client was told
/// before the end.
struct Ended {
    audit: Value,
    before: Vec<ToClient>,
}

/// Connects a session under `settings`, ends it as `ending` says and checks the end: the
/// client is told `told` (`None`: the client had gone, nobody is told), one session.ended
/// event with `cause`, the container removed once.
async fn end_with(
    settings: SessionSettings,
    ending: Ending,
    told: Option<EndCause>,
    cause: &str,
) -> Ended {
    let world = World::new(settings);
    let mut client = Client::new(1);
    let (mut session, shell) = connected(&world, &mut client).await;
    let container = shell.container_id.clone();
    match ending {
        Ending::Exit(code) => world.fake.exit(shell, code),
        Ending::Kill { oom } => world.fake.kill(shell, oom),
        Ending::Vanish => world.fake.vanish(shell),
        Ending::Event(action) => {
            session
                .send(ContainerEventNotice {
                    action: action.into(),
                })
                .await
        }
        Ending::End(cause) => session.send(End(cause)).await,
        Ending::Detach(departure) => {
            session
                .send(Detach {
                    conn_id: 1,
                    departure,
                })
                .await
        }
        Ending::Wait => {}
    }
    let mut before = Vec::new();
    if let Some(told) = told {
        let (messages, end) = client.until_end().await;
        assert_eq!(end, told);
        before = messages;
    }
    Ended {
        audit: session.ended(&world, Some(&container), cause).await,
        before,
    }
}

#[actix_rt::test]
async fn shell_exit_with_an_error_code_is_still_a_shell_exit() {
    let told = Some(EndCause::ShellExited);
    end_with(settings(), Ending::Exit(1), told, "shell_exited").await;
}

#[actix_rt::test]
async fn killed_container_ends_with_container_died() {
    let told = Some(EndCause::ContainerDied(ContainerDeath::Killed));
    let ended = end_with(
        settings(),
        Ending::Kill { oom: false },
        told,
        "container_died",
    )
    .await;
    assert_eq!(ended.audit["detail"], "container killed");
}

#[actix_rt::test]
async fn out_of_memory_kill_ends_with_container_died() {
    let told = Some(EndCause::ContainerDied(ContainerDeath::OutOfMemory));
    let ended = end_with(
        settings(),
        Ending::Kill { oom: true },
        told,
        "container_died",
    )
    .await;
    assert_eq!(ended.audit["detail"], "out of memory");
}

#[actix_rt::test]
async fn container_removed_from_outside_ends_with_container_died() {
    let told = Some(EndCause::ContainerDied(ContainerDeath::Removed));
    let ended = end_with(settings(), Ending::Vanish, told, "container_died").await;
    assert_eq!(ended.audit["detail"], "container removed");
}

#[actix_rt::test]
async fn destroy_event_ends_with_container_died() {
    let told = Some(EndCause::ContainerDied(ContainerDeath::Removed));
    end_with(settings(), Ending::Event("destroy"), told, "container_died").await;
}

#[actix_rt::test]
async fn idle_session_is_warned_then_ended() {
    let s = SessionSettings {
        idle_timeout: Duration::from_millis(400),
        ..settings()
    };
    let told = Some(EndCause::IdleTimeout);
    let ended = end_with(s, Ending::Wait, told, "idle_timeout").await;
    assert!(matches!(
        &ended.before[..],
        [ToClient::Warning {
            kind: WarningKind::Idle,
            ..
        }]
    ));
}

#[actix_rt::test]
async fn long_session_is_warned_then_ended_at_its_maximum_duration() {
    let s = SessionSettings {
        max_duration: Duration::from_millis(400),
        ..settings()
    };
    let told = Some(EndCause::MaxDuration);
    let ended = end_with(s, Ending::Wait, told, "max_duration").await;
    assert!(matches!(
        &ended.before[..],
        [ToClient::Warning {
            kind: WarningKind::MaxDuration,
            ..
        }]
    ));
}

#[actix_rt::test]
async fn admin_kill_ends_the_session() {
    let kill = Ending::End(EndCause::AdminKill);
    end_with(settings(), kill, Some(EndCause::AdminKill), "admin_kill").await;
}

#[actix_rt::test]
async fn shutdown_ends_the_session() {
    let shutdown = Ending::End(EndCause::Shutdown);
    end_with(settings(), shutdown, Some(EndCause::Shutdown), "shutdown").await;
}

#[actix_rt::test]
async fn dropped_socket_ends_with_grace_expired_when_nobody_resumes() {
    let s = SessionSettings {
        resume_grace: Duration::from_millis(300),
        ..settings()
    };
    let dropped = Ending::Detach(Departure::Dropped);
    end_with(s, dropped, None, "grace_expired").await;
}

#[actix_rt::test]
async fn dropped_socket_ends_at_once_without_a_grace_period() {
    let s = SessionSettings {
        resume_grace: Duration::ZERO,
        ..settings()
    };
    let dropped = Ending::Detach(Departure::Dropped);
    end_with(s, dropped, None, "grace_expired").await;
}

#[actix_rt::test]
async fn closed_page_ends_after_the_short_grace() {
    let s = SessionSettings {
        resume_grace: Duration::from_secs(300),
        closed_page_grace: Duration::from_millis(300),
        ..settings()
    };
    let closed = Ending::Detach(Departure::PageClosed);
    end_with(s, closed, None, "grace_expired").await;
}

#[actix_rt::test]
async fn user_close_ends_with_client_closed() {
    let closed = Ending::Detach(Departure::UserDone);
    end_with(settings(), closed, None, "client_closed").await;
}

#[actix_rt::test]
async fn oom_event_tells_the_user_and_is_audited() {
    let world = World::new(settings());
    let mut client = Client::new(1);
    let (mut session, shell) = connected(&world, &mut client).await;
    session
        .send(ContainerEventNotice {
            action: "oom".into(),
        })
        .await;
    assert!(matches!(client.next().await, ToClient::Notice(n) if n == [Notice::MemoryKill]));
    session.send(End(EndCause::AdminKill)).await;
    assert_eq!(client.expect_end().await, EndCause::AdminKill);
    session
        .ended(&world, Some(&shell.container_id), "admin_kill")
        .await;
    let oom = world.audited("security.oom", session.id).await;
    assert_eq!(oom.len(), 1);
    assert_eq!(oom[0]["container_id"], shell.container_id);
}

#[actix_rt::test]
async fn server_warnings_reach_the_client() {
    let world = World::new(settings());
    let mut client = Client::new(1);
    let (session, _shell) = connected(&world, &mut client).await;
    session
        .send(ServerWarning {
            kind: WarningKind::ServerShutdown,
            seconds_left: 5,
        })
        .await;
    assert!(matches!(
        client.next().await,
        ToClient::Warning {
            seconds_left: 5,
            ..
        }
    ));
}

#[actix_rt::test]
async fn a_second_end_does_not_change_the_cause() {
    let world = World::new(settings());
    let mut client = Client::new(1);
    let (mut session, shell) = connected(&world, &mut client).await;
    // Both are queued before the first is handled: the first wins.
    session.addr.do_send(End(EndCause::AdminKill));
    session.addr.do_send(End(EndCause::Shutdown));
    assert_eq!(client.expect_end().await, EndCause::AdminKill);
    session
        .ended(&world, Some(&shell.container_id), "admin_kill")
        .await;
}

#[actix_rt::test]
async fn enter_flood_ends_with_rate_limited() {
    let mut s = settings();
    s.limits.commands_per_minute = 1;
    s.limits.command_burst = 1;
    let world = World::new(s);
    let mut client = Client::new(1);
    let (mut session, mut shell) = connected(&world, &mut client).await;
    session.send(input(b"ls\r")).await;
    shell.expect_input(b"ls\r").await;
    // Every refused press after the first is a strike; enough strikes end the session.
    for _ in 0..50 {
        let sent = within("the session to take input", session.addr.send(input(b"\r"))).await;
        if sent.is_err() {
            break;
        }
    }
    assert_eq!(client.expect_end().await, EndCause::RateLimited);
    session
        .ended(&world, Some(&shell.container_id), "rate_limited")
        .await;
    let refusals = world.audited("ratelimit.rejected", session.id).await;
    assert!(refusals.iter().any(|l| l["kind"] == "input_abuse"));
    assert!(refusals.iter().any(|l| l["kind"] == "commands"));
}

#[actix_rt::test]
async fn create_failure_ends_with_create_failed() {
    let world = World::new(settings());
    world.fake.fail(Op::Create);
    let mut client = Client::new(1);
    let mut session = world.open(&client);
    match client.expect_end().await {
        EndCause::CreateFailed(SandboxError::Create(EngineFailure { status, .. })) => {
            assert_eq!(status, Some(500))
        }
        other => panic!("expected a create failure, got {other:?}"),
    }
    let ended = session.ended(&world, None, "create_failed").await;
    let detail = ended["detail"].as_str().expect("a detail");
    assert!(
        detail.starts_with("could not create the container"),
        "{detail}"
    );
}

#[actix_rt::test]
async fn attach_failure_removes_the_created_container() {
    let world = World::new(settings());
    world.fake.fail(Op::Attach);
    let mut client = Client::new(1);
    let mut session = world.open(&client);
    assert!(matches!(
        client.expect_end().await,
        EndCause::CreateFailed(SandboxError::Attach(_))
    ));
    let container = created_container(&world);
    session
        .ended(&world, Some(&container), "create_failed")
        .await;
    assert!(!world
        .fake
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Start(_))));
}

#[actix_rt::test]
async fn start_failure_removes_the_created_container() {
    let world = World::new(settings());
    world.fake.fail(Op::Start);
    let mut client = Client::new(1);
    let mut session = world.open(&client);
    assert!(matches!(
        client.expect_end().await,
        EndCause::CreateFailed(SandboxError::Start(_))
    ));
    let container = created_container(&world);
    session
        .ended(&world, Some(&container), "create_failed")
        .await;
}

/// The id of the one container the engine attached to.
fn created_container(world: &World) -> String {
    world
        .fake
        .calls()
        .iter()
        .find_map(|c| match c {
            Call::Attach(id) => Some(id.clone()),
            _ => None,
        })
        .expect("one container was created and attached")
}

#[actix_rt::test]
async fn resume_redraws_the_screen_and_carries_on() {
    let world = World::new(settings());
    let mut first = Client::new(1);
    let (mut session, mut shell) = connected(&world, &mut first).await;
    shell.output(b"hello ").await;
    first.expect_output(b"hello ").await;
    session
        .send(Detach {
            conn_id: 1,
            departure: Departure::Dropped,
        })
        .await;
    assert_eq!(session.describe().await.state, SessionState::Detached);
    assert_eq!(world.shared.metrics.sessions_detached.get(), 1);

    let mut second = Client::new(2);
    session.send(Attach(second.handle.clone())).await;
    second.expect_connected(session.id).await;
    assert_eq!(second.expect_redraw(100, 30).await, "hello ");
    let info = session.describe().await;
    assert_eq!(info.state, SessionState::Attached);
    assert_eq!(info.client_address, second.handle.ip);
    assert_eq!(world.shared.metrics.sessions_detached.get(), 0);

    shell.output(b"world").await;
    second.expect_output(b"world").await;
    session.send(input(b"x")).await;
    shell.expect_input(b"x").await;
    session.send(End(EndCause::AdminKill)).await;
    assert_eq!(second.expect_end().await, EndCause::AdminKill);
    session
        .ended(&world, Some(&shell.container_id), "admin_kill")
        .await;
    assert_eq!(world.audited("session.resumed", session.id).await.len(), 1);
}

#[actix_rt::test]
async fn attach_while_attached_takes_the_session_over() {
    let world = World::new(settings());
    let mut first = Client::new(1);
    let (mut session, mut shell) = connected(&world, &mut first).await;
    shell.output(b"a").await;
    first.expect_output(b"a").await;

    let mut second = Client::new(2);
    session.send(Attach(second.handle.clone())).await;
    assert!(matches!(first.next().await, ToClient::TakenOver));
    second.expect_connected(session.id).await;
    assert_eq!(second.expect_redraw(100, 30).await, "a");

    // The old socket closing afterwards is not the session's client closing.
    session
        .send(Detach {
            conn_id: 1,
            departure: Departure::UserDone,
        })
        .await;
    assert_eq!(session.describe().await.state, SessionState::Attached);
    session.send(input(b"y")).await;
    shell.expect_input(b"y").await;
    shell.output(b"b").await;
    second.expect_output(b"b").await;

    let container = shell.container_id.clone();
    world.fake.exit(shell, 0);
    assert_eq!(second.expect_end().await, EndCause::ShellExited);
    session
        .ended(&world, Some(&container), "shell_exited")
        .await;
}

#[actix_rt::test]
async fn the_first_resize_after_a_resume_redraws_at_the_new_size() {
    let world = World::new(settings());
    let mut first = Client::new(1);
    let (mut session, mut shell) = connected(&world, &mut first).await;
    shell
        .output(b"a line that is longer than forty columns, wrapped\r\n$ ")
        .await;
    first
        .expect_output(b"a line that is longer than forty columns, wrapped\r\n$ ")
        .await;
    session
        .send(Detach {
            conn_id: 1,
            departure: Departure::Dropped,
        })
        .await;

    // The window changed while the socket was down: the client resumes, then says its size.
    let mut second = Client::new(2);
    session.send(Attach(second.handle.clone())).await;
    second.expect_connected(session.id).await;
    second.expect_redraw(100, 30).await;
    session
        .send(Resize {
            cols: 40,
            rows: 10,
            credit: Credit::none(),
        })
        .await;
    // The model narrows as vt100 does: rows are cut at the new width (no reflow).
    assert_eq!(
        second.expect_redraw(40, 10).await,
        "a line that is longer than forty columns\n$ "
    );
    within(
        "the TTY resize",
        world.fake.wait_for_calls(|calls| {
            calls.iter().any(|c| {
                matches!(
                    c,
                    Call::Resize {
                        cols: 40,
                        rows: 10,
                        ..
                    }
                )
            })
        }),
    )
    .await;
    // Only the first resize after the snapshot redraws, and output carries on after it.
    session
        .send(Resize {
            cols: 50,
            rows: 10,
            credit: Credit::none(),
        })
        .await;
    shell.output(b"live").await;
    second.expect_output(b"live").await;

    // A client that resumes at the size the TTY has is drawn once.
    let mut third = Client::new(3);
    session.send(Attach(third.handle.clone())).await;
    third.expect_connected(session.id).await;
    third.expect_redraw(50, 10).await;
    session
        .send(Resize {
            cols: 50,
            rows: 10,
            credit: Credit::none(),
        })
        .await;
    shell.output(b"!").await;
    third.expect_output(b"!").await;
    session.send(End(EndCause::AdminKill)).await;
    session
        .ended(&world, Some(&shell.container_id), "admin_kill")
        .await;
}

#[actix_rt::test]
async fn without_a_screen_model_a_resumed_client_is_only_cleared() {
    let world = World::new(SessionSettings {
        screen_model: false,
        ..settings()
    });
    let mut first = Client::new(1);
    let (mut session, mut shell) = connected(&world, &mut first).await;
    shell.output(b"before").await;
    first.expect_output(b"before").await;
    let mut second = Client::new(2);
    session.send(Attach(second.handle.clone())).await;
    assert!(matches!(first.next().await, ToClient::TakenOver));
    second.expect_connected(session.id).await;
    second.expect_output(CLEAR.as_bytes()).await;
    session
        .send(Resize {
            cols: 40,
            rows: 10,
            credit: Credit::none(),
        })
        .await;
    shell.output(b"after").await;
    second.expect_output(b"after").await;
    session.send(End(EndCause::AdminKill)).await;
    session
        .ended(&world, Some(&shell.container_id), "admin_kill")
        .await;
}

#[actix_rt::test]
async fn input_and_resize_before_ready_reach_the_tty_once_it_is_attached() {
    let world = World::new(settings());
    world.fake.hold_start();
    let mut client = Client::new(1);
    let mut session = world.open(&client);
    let mut shell = within("the TTY", world.fake.shell()).await;
    let container = shell.container_id.clone();
    within(
        "the start",
        world
            .fake
            .wait_for_calls(|calls| calls.iter().any(|c| matches!(c, Call::Start(_)))),
    )
    .await;
    session.send(input(b"echo early\r")).await;
    session
        .send(Resize {
            cols: 132,
            rows: 43,
            credit: Credit::none(),
        })
        .await;
    assert_eq!(session.describe().await.state, SessionState::Starting);

    world.fake.release_start();
    client.expect_connected(session.id).await;
    shell.expect_input(b"echo early\r").await;
    let resized = Call::Resize {
        id: container.clone(),
        cols: 132,
        rows: 43,
    };
    within(
        "the queued resize",
        world.fake.wait_for_calls(|calls| calls.contains(&resized)),
    )
    .await;
    session.send(End(EndCause::AdminKill)).await;
    assert_eq!(client.expect_end().await, EndCause::AdminKill);
    session.ended(&world, Some(&container), "admin_kill").await;
}

#[actix_rt::test]
async fn a_socket_that_resumes_while_starting_is_connected_when_ready() {
    let world = World::new(settings());
    world.fake.hold_start();
    let first = Client::new(1);
    let mut session = world.open(&first);
    let shell = within("the TTY", world.fake.shell()).await;
    session
        .send(Detach {
            conn_id: 1,
            departure: Departure::Dropped,
        })
        .await;
    let mut second = Client::new(2);
    session.send(Attach(second.handle.clone())).await;
    assert_eq!(session.describe().await.state, SessionState::Starting);
    world.fake.release_start();
    second.expect_connected(session.id).await;
    session.send(End(EndCause::AdminKill)).await;
    assert_eq!(second.expect_end().await, EndCause::AdminKill);
    session
        .ended(&world, Some(&shell.container_id), "admin_kill")
        .await;
}

#[actix_rt::test]
async fn pids_limit_hits_are_audited_when_the_session_ends() {
    let world = World::new(settings());
    world.fake.set_pids_hits(3);
    let mut client = Client::new(1);
    let (mut session, shell) = connected(&world, &mut client).await;
    session.send(End(EndCause::AdminKill)).await;
    session
        .ended(&world, Some(&shell.container_id), "admin_kill")
        .await;
    let hits = world.audited("security.pids", session.id).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["limit_hits"], 3);
}

#[actix_rt::test]
async fn a_tty_end_the_engine_cannot_explain_is_no_shell_exit() {
    let world = World::new(settings());
    let mut client = Client::new(1);
    let (mut session, shell) = connected(&world, &mut client).await;
    let container = shell.container_id.clone();
    // The engine restarts: the stream ends and inspect fails.
    world.fake.fail(Op::Inspect);
    world.fake.exit(shell, 0);
    assert_eq!(
        client.expect_end().await,
        EndCause::ContainerDied(ContainerDeath::Unknown)
    );
    session
        .ended(&world, Some(&container), "container_died")
        .await;
}

/// Makes the session actor panic, as a bug in a handler would.
#[derive(Message)]
#[rtype(result = "()")]
struct Boom;

impl Handler<Boom> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: Boom, _: &mut Context<Self>) {
        panic!("a bug in a session handler");
    }
}

#[actix_rt::test]
async fn a_panicking_session_still_ends_once_tells_its_client_and_removes_its_container() {
    let world = World::new(settings());
    let mut client = Client::new(1);
    let (mut session, shell) = connected(&world, &mut client).await;
    let container = shell.container_id.clone();
    let active = world.shared.metrics.sessions_active.get();
    session.addr.do_send(Boom);
    assert_eq!(client.expect_end().await, EndCause::Crashed);
    session.ended(&world, Some(&container), "crashed").await;
    assert_eq!(world.shared.metrics.sessions_active.get(), active - 1);
}
