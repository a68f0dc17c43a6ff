//! Close codes and reason texts of the close table in docs/protocol.md, and the `Close`
//! the server sends. Every close the server sends is built here, so code and text stay paired.

use std::fmt;

use termcell_actors::session::Departure;

use super::truncate_at_char;

pub const NORMAL: u16 = 1000;
pub const GOING_AWAY: u16 = 1001;
pub const PROTOCOL_ERROR: u16 = 1002;
pub const INVALID_PAYLOAD: u16 = 1007;
pub const POLICY_AUTH_TIMEOUT: u16 = 1008;
pub const TOO_BIG: u16 = 1009;
pub const INTERNAL: u16 = 1011;
pub const TRY_AGAIN_LATER: u16 = 1013;
pub const SHELL_EXITED: u16 = 4000;
pub const BAD_CREDENTIALS: u16 = 4001;
pub const RESUME_REJECTED: u16 = 4002;
pub const RATE_LIMITED: u16 = 4003;
pub const ADMIN_KILL: u16 = 4004;
pub const INVALID_AUTH: u16 = 4008;
pub const AT_CAPACITY: u16 = 4009;

/// Reason texts. The 0.8 client matches `inactiv` / `timed out` to stop retrying, so
/// the idle text must keep those words.
pub mod reason {
    pub const AUTH_TIMEOUT: &str = "Authentication timeout";
    pub const TOO_BIG: &str = "Message too large";
    pub const INVALID_AUTH: &str = "Invalid auth format";
    pub const MISSING_CREDENTIALS: &str = "Missing credentials";
    pub const EXPIRED_TOKEN: &str = "Invalid or expired access token";
    pub const CREDENTIALS_MISMATCH: &str = "Credentials do not match original session";
    pub const RESUME_REJECTED: &str = "Session resume rejected";
    pub const TAKEN_OVER: &str = "Session taken over";
    pub const RATE_LIMITED: &str = "Rate limit exceeded";
    pub const AT_CAPACITY: &str = "Server at capacity";
    pub const SHELL_EXITED: &str = "Session ended by user";
    pub const IDLE_TIMEOUT: &str = "Session timed out due to inactivity";
    pub const MAX_DURATION: &str = "Maximum session duration reached";
    pub const ADMIN_KILL: &str = "Session terminated by administrator";
    pub const SHUTTING_DOWN: &str = "Server shutting down";
    pub const CREATE_FAILED: &str = "Failed to create session environment";
    pub const ENGINE_UNAVAILABLE: &str = "Container engine unavailable, try again later";
    pub const SERVER_ERROR: &str = "Server error";
    pub const INVALID_UTF8: &str = "Invalid UTF-8 in text frame";
    pub const PROTOCOL_ERROR: &str = "WebSocket protocol error";
}

/// A WebSocket close code with its reason, also sent before the close as a status message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

/// RFC 6455 limits the close payload to 125 bytes, two of which are the code.
const MAX_CLOSE_REASON: usize = 123;

impl Close {
    /// A close with `reason` cut to the WebSocket limit at a char boundary.
    pub fn new(code: u16, reason: impl Into<String>) -> Close {
        let mut reason = reason.into();
        truncate_at_char(&mut reason, MAX_CLOSE_REASON);
        Close { code, reason }
    }
    pub fn auth_timeout() -> Close {
        Close::new(POLICY_AUTH_TIMEOUT, reason::AUTH_TIMEOUT)
    }
    pub fn too_big() -> Close {
        Close::new(TOO_BIG, reason::TOO_BIG)
    }
    pub fn invalid_auth() -> Close {
        Close::new(INVALID_AUTH, reason::INVALID_AUTH)
    }
    pub fn missing_credentials() -> Close {
        Close::new(BAD_CREDENTIALS, reason::MISSING_CREDENTIALS)
    }
    pub fn expired_token() -> Close {
        Close::new(BAD_CREDENTIALS, reason::EXPIRED_TOKEN)
    }
    pub fn credentials_mismatch() -> Close {
        Close::new(BAD_CREDENTIALS, reason::CREDENTIALS_MISMATCH)
    }
    pub fn resume_rejected() -> Close {
        Close::new(RESUME_REJECTED, reason::RESUME_REJECTED)
    }
    pub fn taken_over() -> Close {
        Close::new(RESUME_REJECTED, reason::TAKEN_OVER)
    }
    pub fn rate_limited() -> Close {
        Close::new(RATE_LIMITED, reason::RATE_LIMITED)
    }
    /// Over the per-address session limit: the real cause and how long the places of
    /// closed tabs (and of dropped connections) are held.
    pub fn too_many_sessions(open: u32, closed_page_grace: u64, resume_grace: u64) -> Close {
        Close::new(
            RATE_LIMITED,
            format!(
                "{open} sessions are open from your address; closed tabs count for {closed_page_grace}s, lost connections for {resume_grace}s"
            ),
        )
    }
    pub fn at_capacity() -> Close {
        Close::new(AT_CAPACITY, reason::AT_CAPACITY)
    }
    pub fn shell_exited() -> Close {
        Close::new(SHELL_EXITED, reason::SHELL_EXITED)
    }
    pub fn idle_timeout() -> Close {
        Close::new(NORMAL, reason::IDLE_TIMEOUT)
    }
    pub fn max_duration() -> Close {
        Close::new(NORMAL, reason::MAX_DURATION)
    }
    pub fn admin_kill() -> Close {
        Close::new(ADMIN_KILL, reason::ADMIN_KILL)
    }
    pub fn shutting_down() -> Close {
        Close::new(GOING_AWAY, reason::SHUTTING_DOWN)
    }
    /// Container creation failed: the text the original server used.
    pub fn create_failed() -> Close {
        Close::new(INTERNAL, reason::CREATE_FAILED)
    }
    /// The container engine does not answer (down or restarting): a retry may succeed.
    pub fn engine_unavailable() -> Close {
        Close::new(TRY_AGAIN_LATER, reason::ENGINE_UNAVAILABLE)
    }
    /// A failure inside the server (a panic it contained).
    pub fn server_error() -> Close {
        Close::new(INTERNAL, reason::SERVER_ERROR)
    }
    pub fn internal(reason: impl Into<String>) -> Close {
        Close::new(INTERNAL, reason)
    }
    /// The close for a WebSocket stream error. actix-web-actors reports a text frame with
    /// invalid UTF-8 only as an I/O error's text, so the text is all there is to go by.
    pub fn for_stream_error(error_text: &str) -> Close {
        if error_text.to_ascii_lowercase().contains("utf-8") {
            Close::new(INVALID_PAYLOAD, reason::INVALID_UTF8)
        } else {
            Close::new(PROTOCOL_ERROR, reason::PROTOCOL_ERROR)
        }
    }
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.reason)
    }
}

/// True for the client closes that mean the user is done (end the session now instead of
/// keeping it for resume): 1000 `user-closed-*` and 4002 `inactivity-timeout`.
pub fn client_close_ends_session(code: u16, reason: &str) -> bool {
    (code == NORMAL && reason.starts_with("user-closed"))
        || (code == RESUME_REJECTED && reason == "inactivity-timeout")
}

/// The reason of the close (code 1000) by which the built-in page says it is closing (a
/// closed tab or a reload). The 0.8 client never sends it; its session waits only the
/// short closed-page grace.
pub const PAGE_CLOSED: &str = "page-closed";

/// How a client's close frame leaves its session.
pub fn client_close_departure(code: u16, reason: &str) -> Departure {
    if client_close_ends_session(code, reason) {
        Departure::UserDone
    } else if code == NORMAL && reason == PAGE_CLOSED {
        Departure::PageClosed
    } else {
        Departure::Dropped
    }
}

#[cfg(test)]
mod tests;
