//! The wire protocol of docs/protocol.md: encoding and decoding of every frame between the
//! browser client and the server. Pure functions, no I/O; no input makes them panic.
//! Architecture invariant: only the protocol codec knows the wire format; the rest of the
//! server deals in the types re-exported here.

mod auth;
pub mod close;
mod frames;
mod utf8;

pub use auth::{
    jwt_expired, parse_auth_frame, validate_auth, AuthFrame, AuthPolicy, ValidatedAuth,
    DEFAULT_MAX_AUTH_FRAME,
};
pub use close::{client_close_departure, client_close_ends_session, Close, PAGE_CLOSED};
pub use frames::{
    decode_client_frame, encode_control, notice_line, notice_text, warning_line, warning_reason,
    ClientFrame, ServerControl, UsageReport, CONTROL_PREFIX, MAX_COLS, MAX_ROWS, OUTPUT_HANDSHAKE,
};
pub use utf8::Utf8Framer;

/// Cuts `text` to at most `max` bytes without splitting a character.
fn truncate_at_char(text: &mut String, max: usize) {
    let cut = termcell_actors::audit::cut_at_char(text, max).len();
    text.truncate(cut);
}
