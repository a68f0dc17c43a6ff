use super::*;

const UPGRADED: &[u8] = b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n";

#[tokio::test]
async fn an_upgrade_with_headers_gives_an_empty_start() {
    let mut reader = UPGRADED;
    let initial = read_upgrade(&mut reader).await.unwrap();
    assert!(initial.is_empty());
}

#[tokio::test]
async fn tty_bytes_right_after_the_head_are_kept() {
    // Bytes 0, 1, 2 are TTY output here, not frame headers.
    let raw = [UPGRADED, b"\x01\x00\x00$ "].concat();
    let mut reader = &raw[..];
    let initial = read_upgrade(&mut reader).await.unwrap();
    assert_eq!(&initial[..], b"\x01\x00\x00$ ");
}

#[tokio::test]
async fn a_head_split_across_reads_is_reassembled() {
    // Each part of a chain is a separate read: the head arrives in three, split inside the
    // status line and between the CR and LF of the blank line.
    let (a, rest) = UPGRADED.split_at(11);
    let (b, c) = rest.split_at(rest.len() - 1);
    let c = [c, b"prompt"].concat();
    let mut reader = a.chain(b).chain(&c[..]);
    let initial = read_upgrade(&mut reader).await.unwrap();
    assert_eq!(&initial[..], b"prompt");
}

#[tokio::test]
async fn a_refusal_carries_the_status_and_the_engine_message() {
    let body = br#"{"message":"No such container: abc"}"#;
    let head = format!(
        "HTTP/1.1 404 Not Found\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len() + 1
    );
    // The body's last part (its newline) arrives in a later read.
    let first = [head.as_bytes(), &body[..]].concat();
    let mut reader = (&first[..]).chain(&b"\n"[..]);
    match read_upgrade(&mut reader).await {
        Err(UpgradeError::Refused {
            status,
            reason,
            message,
        }) => {
            assert_eq!(status, 404);
            assert_eq!(reason, "Not Found");
            assert_eq!(message, "No such container: abc");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn dockers_own_refusal_without_a_length_is_read_to_the_close() {
    // Docker 20.10's answer to an attach to a missing container, byte for byte: no
    // Content-Length, the text arriving after the head, then the connection closes.
    let head = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n";
    let mut reader = (&head[..]).chain(&b"No such container: nope\r\n"[..]);
    match read_upgrade(&mut reader).await {
        Err(UpgradeError::Refused {
            status, message, ..
        }) => {
            assert_eq!(status, 404);
            assert_eq!(message, "No such container: nope");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refusal_whose_body_never_ends_is_reported_in_time() {
    let head = b"HTTP/1.1 409 Conflict\r\n\r\ncontainer is paused";
    // The engine keeps the connection open and sends nothing more.
    let (_engine, pending) = tokio::io::duplex(64);
    let mut reader = (&head[..]).chain(pending);
    let started = std::time::Instant::now();
    match read_upgrade(&mut reader).await {
        Err(UpgradeError::Refused {
            status, message, ..
        }) => {
            assert_eq!(status, 409);
            assert_eq!(message, "container is paused");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(started.elapsed() < ERROR_BODY_WAIT * 3);
}

#[test]
fn a_refusal_keeps_its_status_as_a_docker_error() {
    let refused = UpgradeError::Refused {
        status: 409,
        reason: "Conflict".into(),
        message: "container abc is not running".into(),
    };
    let e = refused.into_docker("abc");
    assert_eq!(e.status(), Some(409));
    assert!(
        e.to_string().contains("container abc is not running"),
        "{e}"
    );
}

#[tokio::test]
async fn a_non_json_error_body_is_kept_as_text() {
    let raw = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 13\r\n\r\nengine broke\n";
    let mut reader = &raw[..];
    match read_upgrade(&mut reader).await {
        Err(UpgradeError::Refused {
            status, message, ..
        }) => {
            assert_eq!(status, 500);
            assert_eq!(message, "engine broke");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn an_oversized_head_is_refused() {
    let mut raw = b"HTTP/1.1 101 UPGRADED\r\n".to_vec();
    let padding = format!("X-Padding: {}\r\n", "a".repeat(1000));
    while raw.len() <= MAX_HEAD {
        raw.extend_from_slice(padding.as_bytes());
    }
    // Never ends: the reader must give up at the limit, not wait for the blank line.
    let mut reader = (&raw[..]).chain(tokio::io::repeat(b'a'));
    let result = read_upgrade(&mut reader).await;
    assert!(
        matches!(result, Err(UpgradeError::HeadTooLarge)),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_long_header_line_is_refused_at_the_limit() {
    let raw = b"HTTP/1.1 101 UPGRADED\r\nX-Long: ";
    let mut reader = (&raw[..]).chain(tokio::io::repeat(b'a'));
    let result = read_upgrade(&mut reader).await;
    assert!(
        matches!(result, Err(UpgradeError::HeadTooLarge)),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_head_cut_short_is_an_error() {
    let mut reader: &[u8] = b"HTTP/1.1 404 Not";
    let result = read_upgrade(&mut reader).await;
    assert!(matches!(result, Err(UpgradeError::Eof)), "{result:?}");
}

#[test]
fn too_many_header_lines_are_a_malformed_head() {
    let mut raw = b"HTTP/1.1 101 UPGRADED\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        raw.extend_from_slice(format!("X-{i}: a\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    let result = parse_head(&raw);
    assert!(
        matches!(
            result,
            Err(UpgradeError::Malformed(httparse::Error::TooManyHeaders))
        ),
        "{result:?}"
    );
}

#[test]
fn garbage_is_a_malformed_head() {
    let result = parse_head(b"SSH-2.0-OpenSSH\r\n\r\n");
    assert!(
        matches!(result, Err(UpgradeError::Malformed(_))),
        "{result:?}"
    );
}

#[test]
fn detach_keys_are_url_encoded() {
    assert_eq!(percent_encode("ctrl-^,ctrl-@"), "ctrl-%5E%2Cctrl-%40");
}
