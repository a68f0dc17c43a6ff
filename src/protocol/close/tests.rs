//! Unit tests of the close table: codes, reason texts and their length limit.

use super::*;

#[test]
fn every_close_of_the_table_has_its_code_and_text() {
    let table = [
        (
            Close::idle_timeout(),
            1000,
            "Session timed out due to inactivity",
        ),
        (
            Close::max_duration(),
            1000,
            "Maximum session duration reached",
        ),
        (Close::shutting_down(), 1001, "Server shutting down"),
        (Close::auth_timeout(), 1008, "Authentication timeout"),
        (Close::too_big(), 1009, "Message too large"),
        (
            Close::create_failed(),
            1011,
            "Failed to create session environment",
        ),
        (
            Close::internal("Container was OOM-killed"),
            1011,
            "Container was OOM-killed",
        ),
        (Close::shell_exited(), 4000, "Session ended by user"),
        (Close::missing_credentials(), 4001, "Missing credentials"),
        (
            Close::expired_token(),
            4001,
            "Invalid or expired access token",
        ),
        (
            Close::credentials_mismatch(),
            4001,
            "Credentials do not match original session",
        ),
        (Close::resume_rejected(), 4002, "Session resume rejected"),
        (Close::taken_over(), 4002, "Session taken over"),
        (Close::rate_limited(), 4003, "Rate limit exceeded"),
        (
            Close::admin_kill(),
            4004,
            "Session terminated by administrator",
        ),
        (Close::invalid_auth(), 4008, "Invalid auth format"),
        (Close::at_capacity(), 4009, "Server at capacity"),
    ];
    for (close, code, reason) in table {
        assert_eq!((close.code, close.reason.as_str()), (code, reason));
    }
    // The 0.8 client stops retrying on these words in a 1000 close.
    assert!(Close::idle_timeout().reason.contains("inactiv"));
    assert_eq!(Close::too_big().to_string(), "1009 Message too large");
}

#[test]
fn close_reason_is_cut_to_123_bytes_at_a_char_boundary() {
    let close = Close::internal("é".repeat(100));
    assert_eq!(close.reason.len(), 122);
    assert!(close.reason.chars().all(|c| c == 'é'));
    assert_eq!(Close::new(4000, "x".repeat(200)).reason.len(), 123);
    assert_eq!(Close::new(4000, "short").reason, "short");
}

#[test]
fn too_many_sessions_names_the_cause_and_the_waits_within_the_reason_limit() {
    let close = Close::too_many_sessions(5, 15, 300);
    assert_eq!(close.code, 4003);
    assert_eq!(
        close.reason,
        "5 sessions are open from your address; closed tabs count for 15s, lost connections for 300s"
    );
    let long = Close::too_many_sessions(u32::MAX, 31_536_000, 31_536_000);
    assert!(long.reason.len() <= 123, "{}", long.reason);
}

#[test]
fn a_closing_page_gets_the_short_grace_and_nothing_else_does() {
    assert_eq!(
        client_close_departure(1000, "page-closed"),
        Departure::PageClosed
    );
    assert_eq!(
        client_close_departure(1000, "user-closed-tab"),
        Departure::UserDone
    );
    assert_eq!(
        client_close_departure(4100, "page-closed"),
        Departure::Dropped
    );
    assert_eq!(
        client_close_departure(1000, "page-closed-x"),
        Departure::Dropped
    );
    assert_eq!(client_close_departure(1001, ""), Departure::Dropped);
}

#[test]
fn user_done_closes_end_the_session_others_keep_it() {
    assert!(client_close_ends_session(1000, "user-closed-tab"));
    assert!(client_close_ends_session(4002, "inactivity-timeout"));
    assert!(!client_close_ends_session(1000, ""));
    assert!(!client_close_ends_session(1001, "user-closed-tab"));
    assert!(!client_close_ends_session(1006, ""));
    assert!(!client_close_ends_session(4002, "other"));
}

#[test]
fn stream_errors_close_1007_for_invalid_utf8_and_1002_otherwise() {
    let utf8 = Close::for_stream_error("invalid utf-8 sequence of 1 bytes from index 0");
    assert_eq!(
        (utf8.code, utf8.reason.as_str()),
        (1007, reason::INVALID_UTF8)
    );
    let other = Close::for_stream_error("Continuation is not started.");
    assert_eq!(
        (other.code, other.reason.as_str()),
        (1002, reason::PROTOCOL_ERROR)
    );
}
