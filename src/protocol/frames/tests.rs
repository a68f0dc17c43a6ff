//! Unit tests of frame decoding and control encoding, with the exact bytes on the wire.

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn control_json(msg: &ServerControl) -> String {
    let frame = encode_control(msg);
    assert!(frame.starts_with(CONTROL_PREFIX), "{frame:?}");
    String::from_utf8(frame[CONTROL_PREFIX.len()..].to_vec()).unwrap()
}

fn input(bytes: &[u8]) -> ClientFrame {
    ClientFrame::Input(Bytes::copy_from_slice(bytes))
}

#[test]
fn resize_in_both_shapes() {
    assert_eq!(
        decode_client_frame(br#"{"type":"resize","cols":120,"rows":40}"#),
        ClientFrame::Resize {
            cols: 120,
            rows: 40
        }
    );
    assert_eq!(
        decode_client_frame(br#"{"type":"resize","data":{"cols":80,"rows":24}}"#),
        ClientFrame::Resize { cols: 80, rows: 24 }
    );
}

#[test]
fn resize_is_clamped() {
    let cases = [
        (r#"{"type":"resize","cols":0,"rows":0}"#, 1, 1),
        (r#"{"type":"resize","cols":-5,"rows":-1e300}"#, 1, 1),
        (r#"{"type":"resize","cols":5000,"rows":900}"#, 1000, 500),
        (
            r#"{"type":"resize","cols":1e300,"rows":99999999999999999999999}"#,
            1000,
            500,
        ),
        (r#"{"type":"resize","cols":80.7,"rows":24.2}"#, 80, 24),
        (r#"{"type":"resize","cols":0.5,"rows":500.9}"#, 1, 500),
    ];
    for (text, cols, rows) in cases {
        assert_eq!(
            decode_client_frame(text.as_bytes()),
            ClientFrame::Resize { cols, rows },
            "{text}"
        );
    }
}

#[test]
fn resize_with_non_numbers_is_ignored() {
    for text in [
        r#"{"type":"resize","cols":"80","rows":24}"#,
        r#"{"type":"resize","cols":80,"rows":null}"#,
        r#"{"type":"resize","cols":80}"#,
        r#"{"type":"resize"}"#,
        r#"{"type":"resize","data":"80x24"}"#,
        r#"{"type":"resize","data":{"cols":[80],"rows":24}}"#,
    ] {
        assert_eq!(
            decode_client_frame(text.as_bytes()),
            ClientFrame::Ignored,
            "{text}"
        );
    }
}

#[test]
fn data_messages_are_input() {
    assert_eq!(
        decode_client_frame(br#"{"type":"data","data":"ls -l\r\u00e9"}"#),
        input("ls -l\ré".as_bytes())
    );
    assert_eq!(
        decode_client_frame(br#"{"type":"data","data":""}"#),
        input(b"")
    );
    assert_eq!(
        decode_client_frame(br#"{"type":"data","data":5}"#),
        ClientFrame::Ignored
    );
    assert_eq!(
        decode_client_frame(br#"{"type":"data"}"#),
        ClientFrame::Ignored
    );
}

#[test]
fn each_readline_action_writes_its_keys() {
    let cases: [(&str, &[u8]); 4] = [
        ("complete", b"\t"),
        ("history-up", b"\x1b[A"),
        ("history-down", b"\x1b[B"),
        ("history-search", b"\x12"),
    ];
    for (action, keys) in cases {
        let text = format!(r#"{{"type":"readline-control","action":"{action}"}}"#);
        assert_eq!(
            decode_client_frame(text.as_bytes()),
            input(keys),
            "{action}"
        );
    }
    for text in [
        r#"{"type":"readline-control","action":"rm -rf"}"#,
        r#"{"type":"readline-control","action":1}"#,
        r#"{"type":"readline-control"}"#,
    ] {
        assert_eq!(
            decode_client_frame(text.as_bytes()),
            ClientFrame::Ignored,
            "{text}"
        );
    }
}

#[test]
fn ping_carries_its_timestamp() {
    assert_eq!(
        decode_client_frame(br#"{"type":"ping","ts":1712345678901}"#),
        ClientFrame::Ping {
            ts: Some(json!(1712345678901u64))
        }
    );
    assert_eq!(
        decode_client_frame(br#"{"type":"ping","ts":"abc"}"#),
        ClientFrame::Ping {
            ts: Some(json!("abc"))
        }
    );
    assert_eq!(
        decode_client_frame(br#"{"type":"ping"}"#),
        ClientFrame::Ping { ts: None }
    );
    // Only a small value is echoed back.
    assert_eq!(
        decode_client_frame(br#"{"type":"ping","ts":{"a":[1,2,3]}}"#),
        ClientFrame::Ping { ts: None }
    );
    let long = format!(r#"{{"type":"ping","ts":"{}"}}"#, "x".repeat(65));
    assert_eq!(
        decode_client_frame(long.as_bytes()),
        ClientFrame::Ping { ts: None }
    );
}

#[test]
fn other_json_and_non_json_are_input_of_the_exact_bytes() {
    let frames: [&[u8]; 14] = [
        b"ls\r",
        b"",
        b"\x1b[A",
        b"{",
        b"{\"type\":\"resize\"",
        b"[1,2]",
        b"\"resize\"",
        b"{}",
        b"{\"type\":\"auth\",\"apiKey\":\"x\"}",
        b"{\"type\":\"unknown\"}",
        b"{\"type\":7}",
        b"{\"cols\":80,\"rows\":24}",
        b"  {\"type\":\"nope\"}\n",
        b"{\"type\":\"resize\",\"cols\":1,\"rows\":1} trailing",
    ];
    for bytes in frames {
        assert_eq!(
            decode_client_frame(bytes),
            input(bytes),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn invalid_utf8_is_input() {
    for bytes in [
        &b"\xff\xfe\x00"[..],
        b"{\"type\":\"data\",\"data\":\"\xff\"}",
        b"\xc3",
    ] {
        assert_eq!(decode_client_frame(bytes), input(bytes));
    }
}

#[test]
fn leading_whitespace_before_a_control_message_is_allowed() {
    assert_eq!(
        decode_client_frame(b" \r\n\t{\"type\":\"resize\",\"cols\":2,\"rows\":3}"),
        ClientFrame::Resize { cols: 2, rows: 3 }
    );
}

#[test]
fn control_messages_are_encoded_exactly_as_documented() {
    let id = Uuid::parse_str("6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b").unwrap();
    let cases = [
        (ServerControl::Connecting, r#"{"type":"status","payload":"connecting"}"#.to_owned()),
        (ServerControl::Connected, r#"{"type":"status","payload":"connected"}"#.to_owned()),
        (
            ServerControl::Hello { session_id: id },
            r#"{"type":"hello","sessionId":"6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"}"#.to_owned(),
        ),
        (
            ServerControl::Error(Close::at_capacity()),
            r#"{"type":"status","payload":"error","reason":"Server at capacity","code":4009}"#
                .to_owned(),
        ),
        (
            ServerControl::Disconnected(Close::idle_timeout()),
            r#"{"type":"status","payload":"disconnected","reason":"Session timed out due to inactivity","code":1000}"#
                .to_owned(),
        ),
        (
            ServerControl::Warning { reason: "Idle".into(), seconds_left: 60 },
            r#"{"type":"warning","reason":"Idle","secondsLeft":60}"#.to_owned(),
        ),
        (
            ServerControl::Notice { reason: "3 lines not run".into() },
            r#"{"type":"notice","reason":"3 lines not run"}"#.to_owned(),
        ),
        (
            ServerControl::Pong { ts: Some(json!(1712345678901u64)) },
            r#"{"type":"pong","ts":1712345678901}"#.to_owned(),
        ),
        (ServerControl::Pong { ts: Some(json!("a\"b")) }, r#"{"type":"pong","ts":"a\"b"}"#.to_owned()),
        (ServerControl::Pong { ts: None }, r#"{"type":"pong"}"#.to_owned()),
        (
            ServerControl::Usage(UsageReport {
                cpu_percent: 12.5,
                memory_bytes: 1024,
                memory_limit_bytes: Some(268_435_456),
                pids: 3,
                pids_limit: Some(256),
            }),
            r#"{"type":"usage","cpuPercent":12.5,"memoryBytes":1024,"memoryLimitBytes":268435456,"pids":3,"pidsLimit":256}"#
                .to_owned(),
        ),
        (
            ServerControl::Usage(UsageReport {
                cpu_percent: 0.0,
                memory_bytes: 0,
                memory_limit_bytes: None,
                pids: 1,
                pids_limit: None,
            }),
            r#"{"type":"usage","cpuPercent":0.0,"memoryBytes":0,"pids":1}"#.to_owned(),
        ),
    ];
    for (msg, expected) in cases {
        assert_eq!(control_json(&msg), expected);
    }
    assert_eq!(&CONTROL_PREFIX[..2], b"\0\0");
}

#[test]
fn reasons_are_json_escaped() {
    let msg = ServerControl::Error(Close::internal("bad \"quote\"\n\\ é"));
    let parsed: Value = serde_json::from_str(&control_json(&msg)).unwrap();
    assert_eq!(parsed["reason"], "bad \"quote\"\n\\ é");
    assert_eq!(parsed["code"], 1011);
}

#[test]
fn escaped_reasons_and_extreme_numbers_have_exact_bytes() {
    let cases = [
        (
            ServerControl::Warning {
                reason: "a\"b\\c\nd\u{1}é/<".into(),
                seconds_left: u64::MAX,
            },
            r#"{"type":"warning","reason":"a\"b\\c\nd\u0001é/<","secondsLeft":18446744073709551615}"#,
        ),
        (
            ServerControl::Disconnected(Close::new(4000, "tab\there")),
            r#"{"type":"status","payload":"disconnected","reason":"tab\there","code":4000}"#,
        ),
        (
            ServerControl::Pong {
                ts: Some(json!(-1.5e-7)),
            },
            r#"{"type":"pong","ts":-1.5e-7}"#,
        ),
    ];
    for (msg, expected) in cases {
        assert_eq!(control_json(&msg), expected);
    }
}

#[test]
fn output_handshake_is_the_docker_attach_options_in_order() {
    let keys: Vec<&str> = ["stream", "stdin", "stdout", "stderr", "hijack"].to_vec();
    let mut at = 0;
    for key in keys {
        let found = OUTPUT_HANDSHAKE[at..]
            .find(&format!("\"{key}\":true"))
            .unwrap();
        at += found + 1;
    }
    assert!(serde_json::from_str::<Value>(OUTPUT_HANDSHAKE)
        .unwrap()
        .is_object());
}

#[test]
fn warning_and_notice_lines_are_visible_and_escape_free() {
    assert_eq!(
        &warning_line("Session will end due to inactivity", 60)[..],
        b"\r\n\x1b[33m[termcell] Session will end due to inactivity (in 60s)\x1b[0m\r\n"
    );
    assert_eq!(
        &notice_line("Input rate limit exceeded")[..],
        b"\r\n\x1b[33m[termcell] Input rate limit exceeded\x1b[0m\r\n"
    );
    assert_eq!(
        &notice_line("a\x1b]0;pwned\x07b\r\n")[..],
        b"\r\n\x1b[33m[termcell] a]0;pwnedb\x1b[0m\r\n"
    );
}
proptest! {
    #[test]
    fn decode_client_frame_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_client_frame(&bytes);
    }

    #[test]
    fn arbitrary_json_ish_frames_decode_to_the_bytes_or_a_control(
        text in r#"\{"type":"(resize|data|ping|readline-control|x)"(,"(cols|rows|data|ts|action)":(-?[0-9]{1,30}(\.[0-9]+)?(e[0-9]{1,3})?|"[a-z-]{0,16}"|null|\{"cols":-?[0-9e.]{1,8},"rows":[0-9]{1,5}\})){0,4}\}"#
    ) {
        match decode_client_frame(text.as_bytes()) {
            ClientFrame::Input(bytes) => {
                let known_input = text.starts_with(r#"{"type":"data""#)
                    || text.starts_with(r#"{"type":"readline-control""#);
                prop_assert!(known_input || bytes == text.as_bytes());
            }
            ClientFrame::Resize { cols, rows } => {
                prop_assert!((1..=MAX_COLS).contains(&cols));
                prop_assert!((1..=MAX_ROWS).contains(&rows));
            }
            ClientFrame::Ping { .. } | ClientFrame::Ignored => {}
        }
    }

    #[test]
    fn resize_is_always_within_bounds(cols in any::<f64>(), rows in any::<i64>()) {
        prop_assume!(cols.is_finite());
        let text = json!({"type": "resize", "data": {"cols": cols, "rows": rows}}).to_string();
        match decode_client_frame(text.as_bytes()) {
            ClientFrame::Resize { cols, rows } => {
                prop_assert!((1..=MAX_COLS).contains(&cols));
                prop_assert!((1..=MAX_ROWS).contains(&rows));
            }
            other => prop_assert!(false, "{other:?} for {text}"),
        }
    }
}

#[test]
fn notices_and_warnings_have_their_words_here() {
    use termcell_actors::notice::{Notice, WarningKind};
    assert_eq!(
        notice_text(&[Notice::LinesRefused {
            per_minute: 3,
            lines: 1,
            wait_seconds: 20
        }]),
        "command rate limit reached (3 per minute): line not run, wait 20s"
    );
    assert_eq!(
        notice_text(&[
            Notice::InputDropped {
                kib_per_second: 1,
                bytes: 6000
            },
            Notice::LinesRefused {
                per_minute: 2,
                lines: 2,
                wait_seconds: 30
            }
        ]),
        "input rate limit reached (1 KiB/s): 6000 bytes of input dropped; \
         command rate limit reached (2 per minute): 2 lines not run, wait 30s"
    );
    assert_eq!(
        notice_text(&[Notice::MemoryKill]),
        "a process was killed: the sandbox's memory limit was reached"
    );
    // The original client stops retrying on "inactiv": the idle warning keeps the word.
    assert!(warning_reason(WarningKind::Idle).contains("inactivity"));
    assert_eq!(
        warning_reason(WarningKind::ServerShutdown),
        "Server is shutting down"
    );
}
