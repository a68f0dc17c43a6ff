use super::*;

fn stopped(exit_code: i64, oom_killed: bool) -> ContainerState {
    ContainerState {
        status: Some(Status::EXITED),
        running: Some(false),
        exit_code: Some(exit_code),
        oom_killed: Some(oom_killed),
        ..ContainerState::default()
    }
}

#[test]
fn a_shell_that_exits_is_no_death_whatever_its_code() {
    assert_eq!(ContainerDeath::of(&stopped(0, false)), None);
    assert_eq!(ContainerDeath::of(&stopped(1, false)), None);
    assert_eq!(ContainerDeath::of(&stopped(130, false)), None);
}

#[test]
fn sigkill_is_a_kill_and_with_oom_an_out_of_memory() {
    assert_eq!(
        ContainerDeath::of(&stopped(137, false)),
        Some(ContainerDeath::Killed)
    );
    assert_eq!(
        ContainerDeath::of(&stopped(137, true)),
        Some(ContainerDeath::OutOfMemory)
    );
}

#[test]
fn an_earlier_oom_kill_of_another_process_is_no_death() {
    // A memory hog was killed, the shell lived on and exited normally.
    assert_eq!(ContainerDeath::of(&stopped(0, true)), None);
}

#[test]
fn a_container_being_removed_is_removed() {
    for status in [Status::REMOVING, Status::DEAD] {
        let state = ContainerState {
            status: Some(status),
            ..ContainerState::default()
        };
        assert_eq!(ContainerDeath::of(&state), Some(ContainerDeath::Removed));
    }
}

#[test]
fn sandbox_errors_name_the_step_and_keep_the_engine_status() {
    let engine = DockerError::Api(bollard::errors::Error::DockerResponseServerError {
        status_code: 404,
        message: "No such image: termcell-sandbox:latest".into(),
    });
    let error = SandboxError::Create(engine.into());
    assert_eq!(error.operation(), "create");
    assert!(matches!(
        &error,
        SandboxError::Create(EngineFailure {
            status: Some(404),
            ..
        })
    ));
    let text = error.to_string();
    assert!(
        text.starts_with("could not create the container: "),
        "{text}"
    );
    assert!(text.contains("No such image"), "{text}");
    let io = DockerError::Io(std::io::Error::other("socket closed"));
    let error = SandboxError::Attach(io.into());
    assert_eq!(error.operation(), "attach");
    assert!(matches!(
        &error,
        SandboxError::Attach(EngineFailure { status: None, .. })
    ));
}

mod entry_program {
    use termcell_entry::READY;

    use super::*;
    use crate::docker::fake::Call;
    use crate::testing::{input, settings, within, Client, World};

    fn with_entry() -> crate::SessionSettings {
        let mut s = settings();
        s.profile.entry = Some("/usr/local/bin/termcell-entry".into());
        s.cmd = Some(vec!["/bin/sh".into()]);
        s
    }

    #[actix_rt::test]
    async fn credentials_go_over_the_tty_never_in_the_config() {
        let world = World::new(with_entry());
        let client = Client::new(1);
        let setup = ContainerSetup::new(&world.shared, Uuid::new_v4(), &world.request(&client));
        let env = setup.body.env.clone().unwrap().join(" ");
        assert!(!env.contains("key-one"), "{env}");
        assert_eq!(
            setup.body.entrypoint,
            Some(vec!["/usr/local/bin/termcell-entry".to_string()])
        );
        assert_eq!(
            setup.env_line.as_deref(),
            Some(&entry::encode_line([("ABLY_API_KEY", &b"key-one"[..])])[..])
        );

        let world = World::new(settings());
        let setup = ContainerSetup::new(&world.shared, Uuid::new_v4(), &world.request(&client));
        assert!(setup.env_line.is_none());
        assert!(setup
            .body
            .env
            .unwrap()
            .contains(&"ABLY_API_KEY=key-one".to_string()));
    }

    #[actix_rt::test]
    async fn input_before_the_hand_over_comes_after_the_line() {
        let world = World::new(with_entry());
        let mut client = Client::new(1);
        let session = world.open(&client);
        session.addr.do_send(input(b"ls\r"));
        let mut shell = within("the TTY", world.fake.shell()).await;
        shell.output(READY).await;
        shell
            .expect_input(&entry::encode_line([("ABLY_API_KEY", &b"key-one"[..])]))
            .await;
        client.expect_connected(session.id).await;
        shell.expect_input(b"ls\r").await;
        shell.output(b"$ ").await;
        client.expect_output(b"$ ").await;
    }

    #[actix_rt::test]
    async fn output_other_than_the_marker_fails_the_session_and_removes_its_sandbox() {
        let world = World::new(with_entry());
        let mut client = Client::new(1);
        let _session = world.open(&client);
        let mut shell = within("the TTY", world.fake.shell()).await;
        let container = shell.container_id.clone();
        shell.output(b"/ $ ").await;
        assert_eq!(
            client.expect_end().await,
            EndCause::CreateFailed(SandboxError::Entry(EntryError::Unexpected))
        );
        let removed = Call::Remove(container);
        within(
            "the removal",
            world.fake.wait_for_calls(|calls| calls.contains(&removed)),
        )
        .await;
    }
}
