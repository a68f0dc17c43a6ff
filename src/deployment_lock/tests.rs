use super::*;

#[test]
fn a_second_holder_is_refused_and_named_until_the_first_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let locks = dir.path().join("locks");
    let first = DeploymentLock::acquire(&locks, "shop").expect("first lock");
    assert_eq!(first.path(), locks.join("shop.lock"));
    let pid = std::fs::read_to_string(first.path()).unwrap();
    assert_eq!(pid.trim(), std::process::id().to_string());

    // flock locks belong to the open file: a second open in this process conflicts too.
    let err = DeploymentLock::acquire(&locks, "shop").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LockError::Held { .. }), "{text}");
    assert!(text.contains("\"shop\""), "names the deployment: {text}");
    assert!(text.contains("--deployment"), "says what to do: {text}");
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "names the holder: {text}"
    );

    // Another deployment is independent.
    let other = DeploymentLock::acquire(&locks, "docs").expect("another deployment");
    drop(other);

    drop(first);
    let again = DeploymentLock::acquire(&locks, "shop").expect("free again once dropped");
    drop(again);
}

#[test]
fn an_unusable_directory_is_an_error_that_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let err = DeploymentLock::acquire(&file, "shop").unwrap_err();
    assert!(matches!(err, LockError::Io { .. }), "{err}");
    assert!(err.to_string().contains("--lock-dir"), "{err}");
}
