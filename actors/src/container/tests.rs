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
