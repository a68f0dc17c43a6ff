//! The wire protocol of docs/protocol.md: encoding and decoding of every frame between the
//! browser client and the server. Pure functions, no I/O; no input makes them panic.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde_json::{Map, Value};
use uuid::Uuid;

/// Prefix of every server-to-client control frame; a JSON object follows it.
pub const CONTROL_PREFIX: &[u8] = b"\x00\x00ABLY_CTRL:";

/// Output line the 0.8 client waits for after `connected`/`hello` before it shows output.
pub const OUTPUT_HANDSHAKE: &str =
    r#"{"stream":true,"stdin":true,"stdout":true,"stderr":true,"hijack":true}"#;

/// Default upper bound of the auth frame, in bytes.
pub const DEFAULT_MAX_AUTH_FRAME: usize = 64 * 1024;

/// Terminal size bounds; a client resize outside them is clamped.
pub const MAX_COLS: u16 = 1000;
pub const MAX_ROWS: u16 = 500;

/// Close codes and reason texts of the close table in docs/protocol.md.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY_AUTH_TIMEOUT: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
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
    }
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
        Close::new(close::POLICY_AUTH_TIMEOUT, close::reason::AUTH_TIMEOUT)
    }
    pub fn too_big() -> Close {
        Close::new(close::TOO_BIG, close::reason::TOO_BIG)
    }
    pub fn invalid_auth() -> Close {
        Close::new(close::INVALID_AUTH, close::reason::INVALID_AUTH)
    }
    pub fn missing_credentials() -> Close {
        Close::new(close::BAD_CREDENTIALS, close::reason::MISSING_CREDENTIALS)
    }
    pub fn expired_token() -> Close {
        Close::new(close::BAD_CREDENTIALS, close::reason::EXPIRED_TOKEN)
    }
    pub fn credentials_mismatch() -> Close {
        Close::new(close::BAD_CREDENTIALS, close::reason::CREDENTIALS_MISMATCH)
    }
    pub fn resume_rejected() -> Close {
        Close::new(close::RESUME_REJECTED, close::reason::RESUME_REJECTED)
    }
    pub fn taken_over() -> Close {
        Close::new(close::RESUME_REJECTED, close::reason::TAKEN_OVER)
    }
    pub fn rate_limited() -> Close {
        Close::new(close::RATE_LIMITED, close::reason::RATE_LIMITED)
    }
    pub fn at_capacity() -> Close {
        Close::new(close::AT_CAPACITY, close::reason::AT_CAPACITY)
    }
    pub fn shell_exited() -> Close {
        Close::new(close::SHELL_EXITED, close::reason::SHELL_EXITED)
    }
    pub fn idle_timeout() -> Close {
        Close::new(close::NORMAL, close::reason::IDLE_TIMEOUT)
    }
    pub fn max_duration() -> Close {
        Close::new(close::NORMAL, close::reason::MAX_DURATION)
    }
    pub fn admin_kill() -> Close {
        Close::new(close::ADMIN_KILL, close::reason::ADMIN_KILL)
    }
    pub fn shutting_down() -> Close {
        Close::new(close::GOING_AWAY, close::reason::SHUTTING_DOWN)
    }
    /// Container creation failed: the text the original server used.
    pub fn create_failed() -> Close {
        Close::new(close::INTERNAL, close::reason::CREATE_FAILED)
    }
    pub fn internal(reason: impl Into<String>) -> Close {
        Close::new(close::INTERNAL, reason)
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
    (code == close::NORMAL && reason.starts_with("user-closed"))
        || (code == close::RESUME_REJECTED && reason == "inactivity-timeout")
}

/// The first client frame, as sent. Empty strings are stored as `None`.
#[derive(Clone, PartialEq, Default)]
pub struct AuthFrame {
    pub api_key: Option<String>,
    pub access_token: Option<String>,
    pub environment_variables: BTreeMap<String, String>,
    pub session_id: Option<String>,
    pub ci_auth_token: Option<String>,
    pub client: Option<String>,
}

// Hand-written so that logging a frame by mistake never leaks a credential or an env value.
impl fmt::Debug for AuthFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthFrame")
            .field("api_key", &redacted(&self.api_key))
            .field("access_token", &redacted(&self.access_token))
            .field(
                "environment_variables",
                &self.environment_variables.keys().collect::<Vec<_>>(),
            )
            .field("session_id", &redacted(&self.session_id))
            .field("ci_auth_token", &redacted(&self.ci_auth_token))
            .field("client", &self.client)
            .finish()
    }
}

fn redacted(value: &Option<String>) -> Option<&'static str> {
    value.as_ref().map(|_| "<redacted>")
}

/// Parses the auth frame: over `max_len` bytes is 1009, anything but a JSON object with
/// correctly typed known fields is 4008. Unknown fields are ignored.
pub fn parse_auth_frame(bytes: &[u8], max_len: usize) -> Result<AuthFrame, Close> {
    if bytes.len() > max_len {
        return Err(Close::too_big());
    }
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(bytes) else {
        return Err(Close::invalid_auth());
    };
    // `type` is legacy ("auth") and ignored, but a wrong type still marks a malformed frame.
    optional_string(&mut obj, "type")?;
    Ok(AuthFrame {
        api_key: optional_string(&mut obj, "apiKey")?,
        access_token: optional_string(&mut obj, "accessToken")?,
        environment_variables: string_map(&mut obj, "environmentVariables")?,
        session_id: optional_string(&mut obj, "sessionId")?,
        ci_auth_token: optional_string(&mut obj, "ciAuthToken")?,
        client: optional_string(&mut obj, "client")?,
    })
}

/// A string field, or null/absent/empty as `None`; any other type is a malformed frame.
fn optional_string(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>, Close> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Close::invalid_auth()),
    }
}

fn string_map(obj: &mut Map<String, Value>, key: &str) -> Result<BTreeMap<String, String>, Close> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(name, value)| match value {
                Value::String(value) => Ok((name, value)),
                _ => Err(Close::invalid_auth()),
            })
            .collect(),
        Some(_) => Err(Close::invalid_auth()),
    }
}

/// Which client environment variables may reach the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPolicy {
    /// `apiKey` or `accessToken` must be present (the original server's behaviour).
    pub require_credentials: bool,
    pub env_allow_names: Vec<String>,
    pub env_allow_prefixes: Vec<String>,
    /// Longest accepted value, in bytes.
    pub env_max_value_len: usize,
    /// Most variables accepted; the rest are rejected.
    pub env_max_vars: usize,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        AuthPolicy {
            require_credentials: false,
            env_allow_names: [
                "ABLY_WEB_CLI_MODE",
                "PS1",
                "TERM",
                "LANG",
                "COLUMNS",
                "LINES",
            ]
            .map(String::from)
            .to_vec(),
            env_allow_prefixes: vec!["ABLY_".to_owned()],
            env_max_value_len: 1024,
            env_max_vars: 64,
        }
    }
}

/// The auth frame after the checks of docs/protocol.md, ready for session setup.
#[derive(Clone, PartialEq, Default)]
pub struct ValidatedAuth {
    pub api_key: Option<String>,
    pub access_token: Option<String>,
    /// Accepted client variables, sorted by name.
    pub env: Vec<(String, String)>,
    /// Names dropped by the filter, for the audit log (never their values).
    pub rejected_env: Vec<String>,
    /// The resume target, if the frame carried a well-formed one.
    pub session_id: Option<Uuid>,
    /// The frame asked to resume with an id that is not a UUID: answer 4002, since it names
    /// a session that cannot exist (the client then starts a new one).
    pub resume_requested_invalid: bool,
    /// Passed through; only meaningful when the server is configured to check it.
    pub ci_auth_token: Option<String>,
    /// The client said who it is, so it does not need the output handshake line.
    pub announces_client: bool,
    /// The client's self-description, cut to 64 bytes, for the audit log.
    pub client: Option<String>,
}

impl fmt::Debug for ValidatedAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatedAuth")
            .field("api_key", &redacted(&self.api_key))
            .field("access_token", &redacted(&self.access_token))
            .field(
                "env",
                &self.env.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("rejected_env", &self.rejected_env)
            .field("session_id", &self.session_id.map(|_| "<redacted>"))
            .field("resume_requested_invalid", &self.resume_requested_invalid)
            .field("ci_auth_token", &redacted(&self.ci_auth_token))
            .field("announces_client", &self.announces_client)
            .field("client", &self.client)
            .finish()
    }
}

const MAX_CLIENT_LABEL: usize = 64;

/// Applies, in the order of docs/protocol.md: required credentials (4001), an expired JWT
/// access token (4001), then the environment filter (which drops, never fails).
pub fn validate_auth(
    frame: AuthFrame,
    policy: &AuthPolicy,
    now_unix: i64,
) -> Result<ValidatedAuth, Close> {
    if policy.require_credentials && frame.api_key.is_none() && frame.access_token.is_none() {
        return Err(Close::missing_credentials());
    }
    if let Some(token) = &frame.access_token {
        if jwt_expired(token, now_unix) {
            return Err(Close::expired_token());
        }
    }

    let mut env = Vec::new();
    let mut rejected_env = Vec::new();
    for (name, value) in frame.environment_variables {
        let acceptable = env_name_allowed(&name, policy)
            && value.len() <= policy.env_max_value_len
            && !value.contains('\0')
            && env.len() < policy.env_max_vars;
        if acceptable {
            env.push((name, value));
        } else {
            rejected_env.push(name);
        }
    }

    let (session_id, resume_requested_invalid) = match &frame.session_id {
        None => (None, false),
        Some(id) => match Uuid::try_parse(id) {
            Ok(uuid) => (Some(uuid), false),
            Err(_) => (None, true),
        },
    };
    let client = frame.client.map(|mut label| {
        truncate_at_char(&mut label, MAX_CLIENT_LABEL);
        label
    });

    Ok(ValidatedAuth {
        api_key: frame.api_key,
        access_token: frame.access_token,
        env,
        rejected_env,
        session_id,
        resume_requested_invalid,
        ci_auth_token: frame.ci_auth_token,
        announces_client: client.is_some(),
        client,
    })
}

/// Names that change what runs before or inside the shell (loader, shell start-up files,
/// interpreter hooks) or that would overwrite the credentials: refused whatever the
/// allowlist says, so a broad configured prefix cannot let them through.
const NEVER_ACCEPTED: &[&str] = &[
    "BASH_ENV",
    "ENV",
    "NODE_OPTIONS",
    "NODE_PATH",
    "PATH",
    "HOME",
    "SHELL",
    "USER",
    "IFS",
    "PS4",
    "PROMPT_COMMAND",
    "RUBYOPT",
    "RUBYLIB",
    "PERLLIB",
    "SHELLOPTS",
    "BASHOPTS",
    "CDPATH",
    "GLOBIGNORE",
    "GLIBC_TUNABLES",
    "GCONV_PATH",
    "LOCPATH",
    "HOSTALIASES",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "ABLY_API_KEY",
    "ABLY_ACCESS_TOKEN",
];
const NEVER_ACCEPTED_PREFIXES: &[&str] = &["LD_", "DYLD_", "PYTHON", "PERL5", "BASH_FUNC_"];

fn env_name_allowed(name: &str, policy: &AuthPolicy) -> bool {
    if !is_env_name(name) {
        return false;
    }
    // Case-insensitive on purpose: refusing `path` too costs nothing.
    let upper = name.to_ascii_uppercase();
    if NEVER_ACCEPTED.contains(&upper.as_str())
        || NEVER_ACCEPTED_PREFIXES
            .iter()
            .any(|prefix| upper.starts_with(prefix))
    {
        return false;
    }
    policy.env_allow_names.iter().any(|allowed| allowed == name)
        || policy
            .env_allow_prefixes
            .iter()
            .any(|prefix| name.len() > prefix.len() && name.starts_with(prefix.as_str()))
}

/// `[A-Za-z_][A-Za-z0-9_]*`
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// True if `token` is a three-part JWT whose payload has a numeric `exp` at or before
/// `now_unix`. The signature is not checked (the server does not verify credentials); a
/// token that is not a JWT, or has no numeric `exp`, is not expired.
pub fn jwt_expired(token: &str, now_unix: i64) -> bool {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some(json) = base64url_decode(payload) else {
        return false;
    };
    match serde_json::from_slice::<Value>(&json) {
        Ok(Value::Object(claims)) => match claims.get("exp").and_then(Value::as_f64) {
            // i64 -> f64 rounds above 2^53 s, which no clock reaches.
            Some(exp) => exp <= now_unix as f64,
            None => false,
        },
        _ => false,
    }
}

/// Base64url without padding (trailing `=` and the standard alphabet are tolerated).
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'-' | b'+' => Some(62),
            b'_' | b'/' => Some(63),
            _ => None,
        }
    }
    let text = text.trim_end_matches('=').as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    for chunk in text.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | sextet(c)?;
        }
        // Left-align a short final chunk to a full 24 bits, then emit its whole bytes.
        acc <<= 6 * (4 - chunk.len() as u32);
        let [_, b0, b1, b2] = acc.to_be_bytes();
        out.extend_from_slice(&[b0, b1, b2][..chunk.len() - 1]);
    }
    Some(out)
}

/// One client frame after the auth frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    /// Bytes for the TTY.
    Input(Bytes),
    /// Already clamped to 1..=MAX_COLS, 1..=MAX_ROWS.
    Resize { cols: u16, rows: u16 },
    /// To be answered with `ServerControl::Pong` carrying the same `ts`.
    Ping { ts: Option<Value> },
    /// A known control message with unusable fields: do nothing.
    Ignored,
}

/// Longest string `ts` echoed back in a pong; anything longer or not a number is dropped.
const MAX_PING_TS: usize = 64;

/// Classifies a client frame. A frame is a control message only if it is a JSON object with
/// a known `type`; everything else, invalid UTF-8 included, is input of the exact bytes.
pub fn decode_client_frame(bytes: &[u8]) -> ClientFrame {
    let input = || ClientFrame::Input(Bytes::copy_from_slice(bytes));
    // Fast path: keystrokes never start with `{`, so most frames skip the JSON parser.
    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return input();
    }
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(bytes) else {
        return input();
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("resize") => decode_resize(&obj),
        Some("data") => match obj.get("data") {
            Some(Value::String(text)) => ClientFrame::Input(Bytes::from(text.clone().into_bytes())),
            _ => ClientFrame::Ignored,
        },
        Some("readline-control") => {
            let keys: &'static [u8] = match obj.get("action").and_then(Value::as_str) {
                Some("complete") => b"\t",
                Some("history-up") => b"\x1b[A",
                Some("history-down") => b"\x1b[B",
                Some("history-search") => b"\x12",
                _ => return ClientFrame::Ignored,
            };
            ClientFrame::Input(Bytes::from_static(keys))
        }
        Some("ping") => {
            let ts = match obj.get("ts") {
                Some(Value::Number(n)) => Some(Value::Number(n.clone())),
                Some(Value::String(s)) if s.len() <= MAX_PING_TS => Some(Value::String(s.clone())),
                _ => None,
            };
            ClientFrame::Ping { ts }
        }
        _ => input(),
    }
}

/// Both shapes: `{"cols","rows"}` at the top level, or inside `data`.
fn decode_resize(obj: &Map<String, Value>) -> ClientFrame {
    let dims = if obj.contains_key("cols") || obj.contains_key("rows") {
        obj
    } else {
        match obj.get("data") {
            Some(Value::Object(data)) => data,
            _ => return ClientFrame::Ignored,
        }
    };
    let clamp = |key: &str, max: u16| {
        dims.get(key)
            .and_then(Value::as_f64)
            // Float-to-int `as` saturates; the clamp keeps the result in 1..=max.
            .map(|n| n.clamp(1.0, f64::from(max)) as u16)
    };
    match (clamp("cols", MAX_COLS), clamp("rows", MAX_ROWS)) {
        (Some(cols), Some(rows)) => ClientFrame::Resize { cols, rows },
        _ => ClientFrame::Ignored,
    }
}

/// A server-to-client control message.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerControl {
    Connecting,
    Connected,
    Hello {
        session_id: Uuid,
    },
    /// A rejection; the close with the same code and reason follows.
    Error(Close),
    /// The server ends the session; the close with the same code and reason follows.
    Disconnected(Close),
    Warning {
        reason: String,
        seconds_left: u64,
    },
    Pong {
        ts: Option<Value>,
    },
}

/// The control frame: `CONTROL_PREFIX` and compact JSON with the keys in the documented
/// order (the JSON is written by hand because `serde_json::Map` sorts keys).
pub fn encode_control(msg: &ServerControl) -> Bytes {
    let json = match msg {
        ServerControl::Connecting => r#"{"type":"status","payload":"connecting"}"#.to_owned(),
        ServerControl::Connected => r#"{"type":"status","payload":"connected"}"#.to_owned(),
        ServerControl::Hello { session_id } => {
            format!(
                r#"{{"type":"hello","sessionId":"{}"}}"#,
                session_id.hyphenated()
            )
        }
        ServerControl::Error(close) => status_with_close("error", close),
        ServerControl::Disconnected(close) => status_with_close("disconnected", close),
        ServerControl::Warning {
            reason,
            seconds_left,
        } => format!(
            r#"{{"type":"warning","reason":{},"secondsLeft":{}}}"#,
            json_string(reason),
            seconds_left
        ),
        ServerControl::Pong { ts: Some(ts) } => format!(r#"{{"type":"pong","ts":{ts}}}"#),
        ServerControl::Pong { ts: None } => r#"{"type":"pong"}"#.to_owned(),
    };
    let mut frame = Vec::with_capacity(CONTROL_PREFIX.len() + json.len());
    frame.extend_from_slice(CONTROL_PREFIX);
    frame.extend_from_slice(json.as_bytes());
    Bytes::from(frame)
}

fn status_with_close(payload: &str, close: &Close) -> String {
    format!(
        r#"{{"type":"status","payload":"{payload}","reason":{},"code":{}}}"#,
        json_string(&close.reason),
        close.code
    )
}

fn json_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// The visible terminal line that accompanies every `warning` control message, for clients
/// that ignore unknown control messages.
pub fn warning_line(reason: &str, seconds_left: u64) -> Bytes {
    notice_line(&format!("{reason} (in {seconds_left}s)"))
}

/// A server notice written into the terminal output (yellow, on its own line). Control
/// characters are removed so a notice can never carry a terminal escape sequence.
pub fn notice_line(text: &str) -> Bytes {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    Bytes::from(format!("\r\n\x1b[33m[termcell] {clean}\x1b[0m\r\n"))
}

/// Cuts output into frames that never end inside a UTF-8 sequence: the 0.8 client decodes
/// each frame with a fresh `TextDecoder`, so a split character would show as two U+FFFD.
/// Only a trailing sequence that may still become valid is carried (1-3 bytes); invalid
/// bytes pass through at once, so nothing is ever dropped or held for long.
#[derive(Debug, Default)]
pub struct Utf8Framer {
    carry: [u8; 3],
    carry_len: u8,
}

impl Utf8Framer {
    /// The bytes to send now (carry from the last call + `chunk`, minus a new incomplete
    /// tail), or `None` if there is nothing to send yet.
    pub fn push(&mut self, chunk: &[u8]) -> Option<Bytes> {
        if chunk.is_empty() {
            return None;
        }
        let carried = usize::from(self.carry_len);
        let mut data = Vec::with_capacity(carried + chunk.len());
        data.extend_from_slice(&self.carry[..carried]);
        data.extend_from_slice(chunk);
        let tail = incomplete_tail(&data);
        let keep = data.len() - tail;
        self.carry[..tail].copy_from_slice(&data[keep..]);
        self.carry_len = tail as u8;
        data.truncate(keep);
        (!data.is_empty()).then(|| Bytes::from(data))
    }

    /// Hands out whatever is carried (at the end of the stream).
    pub fn flush(&mut self) -> Option<Bytes> {
        let carried = usize::from(std::mem::take(&mut self.carry_len));
        (carried > 0).then(|| Bytes::copy_from_slice(&self.carry[..carried]))
    }

    /// Number of bytes carried to the next frame.
    pub fn pending(&self) -> usize {
        usize::from(self.carry_len)
    }
}

/// Length (0-3) of the trailing bytes of `data` that are a proper prefix of a valid UTF-8
/// sequence, i.e. a character the next chunk may complete.
fn incomplete_tail(data: &[u8]) -> usize {
    for back in 1..=data.len().min(3) {
        let start = data.len() - back;
        let lead = data[start];
        if (0x80..=0xBF).contains(&lead) {
            continue; // a continuation byte: look further back for the lead
        }
        let needed = match lead {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return 0,
        };
        if back >= needed {
            return 0; // complete (or invalid) already: nothing to wait for
        }
        // The second byte's range depends on the lead (no overlongs, surrogates, > U+10FFFF).
        let second_ok = |b: u8| match lead {
            0xE0 => (0xA0..=0xBF).contains(&b),
            0xED => (0x80..=0x9F).contains(&b),
            0xF0 => (0x90..=0xBF).contains(&b),
            0xF4 => (0x80..=0x8F).contains(&b),
            _ => (0x80..=0xBF).contains(&b),
        };
        let valid_prefix = data.get(start + 1).is_none_or(|&b| second_ok(b));
        return if valid_prefix { back } else { 0 };
    }
    0
}

/// Cuts `text` to at most `max` bytes without splitting a character.
fn truncate_at_char(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn base64url(data: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let mut acc = 0u32;
            for (i, &b) in chunk.iter().enumerate() {
                acc |= u32::from(b) << (16 - 8 * i);
            }
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(acc >> (18 - 6 * i) & 63) as usize]));
            }
        }
        out
    }

    fn jwt(claims: &Value) -> String {
        format!(
            "{}.{}.{}",
            base64url(br#"{"alg":"HS256","typ":"JWT"}"#),
            base64url(claims.to_string().as_bytes()),
            base64url(b"signature-not-checked")
        )
    }

    fn control_json(msg: &ServerControl) -> String {
        let frame = encode_control(msg);
        assert!(frame.starts_with(CONTROL_PREFIX), "{frame:?}");
        String::from_utf8(frame[CONTROL_PREFIX.len()..].to_vec()).unwrap()
    }

    fn auth(json: &str) -> Result<AuthFrame, Close> {
        parse_auth_frame(json.as_bytes(), DEFAULT_MAX_AUTH_FRAME)
    }

    fn frame_with_env(env: &[(&str, &str)]) -> AuthFrame {
        AuthFrame {
            environment_variables: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..AuthFrame::default()
        }
    }

    fn input(bytes: &[u8]) -> ClientFrame {
        ClientFrame::Input(Bytes::copy_from_slice(bytes))
    }

    // --- close table ---

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
    fn user_done_closes_end_the_session_others_keep_it() {
        assert!(client_close_ends_session(1000, "user-closed-tab"));
        assert!(client_close_ends_session(4002, "inactivity-timeout"));
        assert!(!client_close_ends_session(1000, ""));
        assert!(!client_close_ends_session(1001, "user-closed-tab"));
        assert!(!client_close_ends_session(1006, ""));
        assert!(!client_close_ends_session(4002, "other"));
    }

    // --- auth frame ---

    #[test]
    fn the_original_client_auth_frame_is_accepted_with_both_env_vars() {
        let token = jwt(&json!({"sub": "u", "exp": NOW + 3600}));
        let text = format!(
            r#"{{"apiKey":"a.b:c","accessToken":"{token}","environmentVariables":{{"ABLY_WEB_CLI_MODE":"true","PS1":"$ "}}}}"#
        );
        let frame = auth(&text).unwrap();
        assert_eq!(frame.api_key.as_deref(), Some("a.b:c"));
        assert_eq!(frame.access_token.as_deref(), Some(token.as_str()));
        let policy = AuthPolicy {
            require_credentials: true,
            ..AuthPolicy::default()
        };
        let ok = validate_auth(frame, &policy, NOW).unwrap();
        assert_eq!(ok.api_key.as_deref(), Some("a.b:c"));
        assert_eq!(ok.access_token.as_deref(), Some(token.as_str()));
        assert_eq!(
            ok.env,
            vec![
                ("ABLY_WEB_CLI_MODE".to_owned(), "true".to_owned()),
                ("PS1".to_owned(), "$ ".to_owned())
            ]
        );
        assert!(ok.rejected_env.is_empty());
        assert_eq!(ok.session_id, None);
        assert!(!ok.resume_requested_invalid);
        assert!(!ok.announces_client);
    }

    #[test]
    fn all_fields_are_read_and_unknown_fields_ignored() {
        let id = Uuid::new_v4();
        let frame = auth(&format!(
            r#"{{"type":"auth","apiKey":"k","sessionId":"{id}","ciAuthToken":"ci","client":"termcell-web/1","extra":[1,{{}}]}}"#
        ))
        .unwrap();
        assert_eq!(frame.session_id, Some(id.to_string()));
        assert_eq!(frame.ci_auth_token.as_deref(), Some("ci"));
        assert_eq!(frame.client.as_deref(), Some("termcell-web/1"));
        let ok = validate_auth(frame, &AuthPolicy::default(), NOW).unwrap();
        assert_eq!(ok.session_id, Some(id));
        assert!(ok.announces_client);
        assert_eq!(ok.client.as_deref(), Some("termcell-web/1"));
        assert_eq!(ok.ci_auth_token.as_deref(), Some("ci"));
    }

    #[test]
    fn empty_and_null_fields_count_as_absent() {
        let frame = auth(
            r#"{"apiKey":"","accessToken":null,"environmentVariables":null,"sessionId":"","client":""}"#,
        )
        .unwrap();
        assert_eq!(frame, AuthFrame::default());
        assert_eq!(auth("{}").unwrap(), AuthFrame::default());
        assert_eq!(auth(" \n{}\t").unwrap(), AuthFrame::default());
    }

    #[test]
    fn a_frame_that_is_not_a_json_object_is_invalid_auth_format() {
        for text in [
            "",
            "null",
            "[]",
            "\"x\"",
            "42",
            "{",
            "not json",
            "{\"apiKey\":\"a\"} x",
        ] {
            assert_eq!(auth(text), Err(Close::invalid_auth()), "{text:?}");
        }
        assert_eq!(
            parse_auth_frame(b"{\"apiKey\":\"\xff\"}", 100),
            Err(Close::invalid_auth())
        );
    }

    #[test]
    fn a_known_field_of_the_wrong_type_is_invalid_auth_format() {
        let wrong = [
            r#"{"apiKey":1}"#,
            r#"{"apiKey":{}}"#,
            r#"{"accessToken":true}"#,
            r#"{"sessionId":["x"]}"#,
            r#"{"ciAuthToken":1.5}"#,
            r#"{"client":{}}"#,
            r#"{"type":1}"#,
            r#"{"environmentVariables":"PS1=x"}"#,
            r#"{"environmentVariables":[]}"#,
            r#"{"environmentVariables":{"PS1":1}}"#,
            r#"{"environmentVariables":{"PS1":null}}"#,
        ];
        for text in wrong {
            assert_eq!(auth(text), Err(Close::invalid_auth()), "{text}");
        }
    }

    #[test]
    fn an_oversize_auth_frame_is_1009() {
        let text = format!(r#"{{"apiKey":"{}"}}"#, "k".repeat(100));
        assert!(parse_auth_frame(text.as_bytes(), text.len()).is_ok());
        assert_eq!(
            parse_auth_frame(text.as_bytes(), text.len() - 1),
            Err(Close::too_big())
        );
        // Size is checked before parsing: even garbage over the limit is 1009.
        assert_eq!(parse_auth_frame(&[0xff; 10], 9), Err(Close::too_big()));
    }

    #[test]
    fn missing_credentials_only_when_required() {
        let required = AuthPolicy {
            require_credentials: true,
            ..AuthPolicy::default()
        };
        let empty = auth(r#"{"apiKey":"","accessToken":""}"#).unwrap();
        assert_eq!(
            validate_auth(empty.clone(), &required, NOW),
            Err(Close::missing_credentials())
        );
        assert!(validate_auth(empty, &AuthPolicy::default(), NOW).is_ok());
        let key_only = auth(r#"{"apiKey":"a.b:c"}"#).unwrap();
        assert!(validate_auth(key_only, &required, NOW).is_ok());
        let token_only = auth(r#"{"accessToken":"opaque"}"#).unwrap();
        assert!(validate_auth(token_only, &required, NOW).is_ok());
    }

    #[test]
    fn missing_credentials_is_checked_before_the_token() {
        let required = AuthPolicy {
            require_credentials: true,
            ..AuthPolicy::default()
        };
        let expired = jwt(&json!({"exp": NOW - 1}));
        let frame = AuthFrame {
            access_token: Some(expired),
            ..AuthFrame::default()
        };
        assert_eq!(
            validate_auth(frame, &required, NOW),
            Err(Close::expired_token())
        );
        assert_eq!(
            validate_auth(AuthFrame::default(), &required, NOW),
            Err(Close::missing_credentials())
        );
    }

    #[test]
    fn an_expired_jwt_is_rejected_an_unexpired_one_passes() {
        let expired = jwt(&json!({"exp": NOW - 60}));
        let frame = AuthFrame {
            api_key: Some("a.b:c".into()),
            access_token: Some(expired),
            ..AuthFrame::default()
        };
        assert_eq!(
            validate_auth(frame, &AuthPolicy::default(), NOW),
            Err(Close::expired_token())
        );
        let fresh = jwt(&json!({"exp": NOW + 60}));
        let frame = AuthFrame {
            access_token: Some(fresh.clone()),
            ..AuthFrame::default()
        };
        let ok = validate_auth(frame, &AuthPolicy::default(), NOW).unwrap();
        assert_eq!(ok.access_token, Some(fresh));
    }

    #[test]
    fn jwt_expiry_rules() {
        assert!(
            jwt_expired(&jwt(&json!({"exp": NOW})), NOW),
            "exp == now is expired"
        );
        assert!(jwt_expired(&jwt(&json!({"exp": NOW - 1})), NOW));
        assert!(jwt_expired(&jwt(&json!({"exp": 1.5})), NOW));
        assert!(!jwt_expired(&jwt(&json!({"exp": NOW + 1})), NOW));
        assert!(!jwt_expired(&jwt(&json!({"exp": 1e300})), NOW));
        // Not a JWT, or no numeric exp: passed through to the container.
        assert!(!jwt_expired(&jwt(&json!({"sub": "x"})), NOW));
        assert!(!jwt_expired(&jwt(&json!({"exp": "1"})), NOW));
        assert!(!jwt_expired(&jwt(&json!([1, 2])), NOW));
        assert!(!jwt_expired("opaque-ably-token", NOW));
        assert!(!jwt_expired("a.b", NOW));
        assert!(!jwt_expired("a.b.c.d", NOW));
        assert!(!jwt_expired("a.!!!.c", NOW));
        assert!(!jwt_expired("a.A.c", NOW));
        assert!(!jwt_expired("", NOW));
        // Padded and standard-alphabet payloads are tolerated.
        let padded = format!("h.{}==.s", base64url(br#"{"exp":1}"#));
        assert!(jwt_expired(&padded, NOW));
    }

    #[test]
    fn base64url_decodes_every_length() {
        for len in 0..20 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 200) as u8).collect();
            assert_eq!(base64url_decode(&base64url(&data)), Some(data));
        }
        assert_eq!(base64url_decode("-_-_"), Some(vec![0xfb, 0xff, 0xbf]));
        assert_eq!(base64url_decode("+/+/"), Some(vec![0xfb, 0xff, 0xbf]));
    }

    #[test]
    fn dangerous_env_names_are_dropped_into_rejected_env() {
        let policy = AuthPolicy {
            // Even a misconfigured catch-all prefix does not let them through.
            env_allow_prefixes: vec!["ABLY_".into(), "".into()],
            env_allow_names: vec!["PATH".into(), "PS1".into(), "BASH_ENV".into()],
            ..AuthPolicy::default()
        };
        let names = [
            "BASH_ENV",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "PATH",
            "path",
            "HOME",
            "SHELL",
            "USER",
            "IFS",
            "PS4",
            "ENV",
            "NODE_OPTIONS",
            "PROMPT_COMMAND",
            "PYTHONSTARTUP",
            "PERL5OPT",
            "RUBYOPT",
            "DYLD_INSERT_LIBRARIES",
            "ABLY_API_KEY",
            "ABLY_ACCESS_TOKEN",
        ];
        let mut env: Vec<(&str, &str)> = names.iter().map(|n| (*n, "x")).collect();
        env.push(("PS1", "$ "));
        let ok = validate_auth(frame_with_env(&env), &policy, NOW).unwrap();
        assert_eq!(ok.env, vec![("PS1".to_owned(), "$ ".to_owned())]);
        let mut rejected = ok.rejected_env.clone();
        rejected.sort();
        let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        expected.sort();
        assert_eq!(rejected, expected);
    }

    #[test]
    fn the_default_allowlist_and_ably_prefix() {
        let env = [
            ("TERM", "xterm-256color"),
            ("LANG", "C.UTF-8"),
            ("COLUMNS", "100"),
            ("LINES", "30"),
            ("ABLY_ENDPOINT", "x"),
            ("ABLY_", "bare prefix"),
            ("EDITOR", "vim"),
            ("BAD-NAME", "x"),
            ("1ABC", "x"),
            ("", "x"),
            ("PS1\n", "x"),
        ];
        let ok = validate_auth(frame_with_env(&env), &AuthPolicy::default(), NOW).unwrap();
        let names: Vec<&str> = ok.env.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["ABLY_ENDPOINT", "COLUMNS", "LANG", "LINES", "TERM"]);
        let mut rejected = ok.rejected_env;
        rejected.sort();
        assert_eq!(
            rejected,
            ["", "1ABC", "ABLY_", "BAD-NAME", "EDITOR", "PS1\n"]
        );
    }

    #[test]
    fn env_values_too_long_or_with_nul_are_rejected() {
        let policy = AuthPolicy {
            env_max_value_len: 4,
            ..AuthPolicy::default()
        };
        let env = [("PS1", "1234"), ("TERM", "12345"), ("LANG", "a\0b")];
        let ok = validate_auth(frame_with_env(&env), &policy, NOW).unwrap();
        assert_eq!(ok.env, vec![("PS1".to_owned(), "1234".to_owned())]);
        assert_eq!(ok.rejected_env, ["LANG", "TERM"]);
    }

    #[test]
    fn env_vars_beyond_the_limit_are_rejected() {
        let policy = AuthPolicy {
            env_max_vars: 2,
            ..AuthPolicy::default()
        };
        let env = [
            ("ABLY_A", "1"),
            ("ABLY_B", "2"),
            ("ABLY_C", "3"),
            ("PATH", "/"),
        ];
        let ok = validate_auth(frame_with_env(&env), &policy, NOW).unwrap();
        let names: Vec<&str> = ok.env.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["ABLY_A", "ABLY_B"]);
        assert_eq!(ok.rejected_env, ["ABLY_C", "PATH"]);
    }

    #[test]
    fn an_invalid_session_id_asks_for_a_rejected_resume() {
        let frame = auth(r#"{"sessionId":"../../etc/passwd"}"#).unwrap();
        let ok = validate_auth(frame, &AuthPolicy::default(), NOW).unwrap();
        assert_eq!(ok.session_id, None);
        assert!(ok.resume_requested_invalid);
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let frame = auth(
            r#"{"apiKey":"app.key:SECRET1","accessToken":"SECRET2","ciAuthToken":"SECRET3","environmentVariables":{"PS1":"SECRET4"}}"#,
        )
        .unwrap();
        let shown = format!("{frame:?}");
        assert!(shown.contains("PS1"), "{shown}");
        let validated = validate_auth(frame, &AuthPolicy::default(), NOW).unwrap();
        let shown = format!("{shown} {validated:?}");
        for secret in ["SECRET1", "SECRET2", "SECRET3", "SECRET4"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    // --- client frames ---

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

    // --- server control messages ---

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
                ServerControl::Pong { ts: Some(json!(1712345678901u64)) },
                r#"{"type":"pong","ts":1712345678901}"#.to_owned(),
            ),
            (ServerControl::Pong { ts: Some(json!("a\"b")) }, r#"{"type":"pong","ts":"a\"b"}"#.to_owned()),
            (ServerControl::Pong { ts: None }, r#"{"type":"pong"}"#.to_owned()),
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

    // --- UTF-8 framing ---

    fn frame_all(chunks: &[&[u8]]) -> (Vec<Bytes>, Vec<u8>) {
        let mut framer = Utf8Framer::default();
        let mut frames: Vec<Bytes> = chunks.iter().filter_map(|c| framer.push(c)).collect();
        frames.extend(framer.flush());
        assert_eq!(framer.pending(), 0);
        let joined = frames.iter().flat_map(|f| f.iter().copied()).collect();
        (frames, joined)
    }

    #[test]
    fn a_four_byte_char_split_at_each_point_arrives_whole() {
        let text = "a😀b".as_bytes();
        for split in 1..text.len() {
            let mut framer = Utf8Framer::default();
            let first = framer.push(&text[..split]);
            let second = framer.push(&text[split..]).unwrap();
            for frame in first.iter().chain([&second]) {
                std::str::from_utf8(frame).unwrap();
            }
            let mut all = first.map(|b| b.to_vec()).unwrap_or_default();
            all.extend_from_slice(&second);
            assert_eq!(all, text, "split at {split}");
            assert_eq!(framer.flush(), None);
        }
    }

    #[test]
    fn a_char_fed_byte_by_byte_is_held_until_complete() {
        let mut framer = Utf8Framer::default();
        for (i, &b) in "😀".as_bytes()[..3].iter().enumerate() {
            assert_eq!(framer.push(&[b]), None);
            assert_eq!(framer.pending(), i + 1);
        }
        assert_eq!(framer.push(&[0x80]).as_deref(), Some("😀".as_bytes()));
        assert_eq!(framer.pending(), 0);
        assert_eq!(framer.push(b""), None);
    }

    #[test]
    fn invalid_bytes_pass_through_at_once() {
        let mut framer = Utf8Framer::default();
        // Lone continuation bytes, bytes that never start a sequence, and leads whose second
        // byte rules out a valid character (overlong, surrogate, above U+10FFFF).
        for bytes in [
            &b"\x80"[..],
            b"x\xbf\xbf\xbf",
            b"\xff",
            b"\xc0",
            b"\xc1",
            b"\xf5",
            b"\xe0\x80",
            b"\xed\xa0",
            b"\xf0\x80",
            b"\xf4\x90",
            b"\xc3\xa9",
        ] {
            assert_eq!(framer.push(bytes).as_deref(), Some(bytes), "{bytes:?}");
            assert_eq!(framer.pending(), 0);
        }
        // A held prefix that turns out invalid goes out with the next chunk, nothing lost.
        assert_eq!(framer.push(b"ok\xe2\x82"), Some(Bytes::from_static(b"ok")));
        assert_eq!(framer.push(b"A"), Some(Bytes::from_static(b"\xe2\x82A")));
        assert_eq!(framer.push(b"\xf0\x9f"), None);
        assert_eq!(framer.flush(), Some(Bytes::from_static(b"\xf0\x9f")));
        assert_eq!(framer.flush(), None);
    }

    #[test]
    fn framed_output_concatenates_to_the_input() {
        let input = "héllo wörld 😀 ✓".as_bytes();
        let chunks: Vec<&[u8]> = input.chunks(3).collect();
        let (frames, joined) = frame_all(&chunks);
        assert_eq!(joined, input);
        assert!(frames.iter().all(|f| std::str::from_utf8(f).is_ok()));
    }

    fn split_points(len: usize, cuts: &[usize]) -> Vec<usize> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
        points.extend([0, len]);
        points.sort_unstable();
        points
    }

    fn split<'a>(data: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
        points.windows(2).map(|w| &data[w[0]..w[1]]).collect()
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

        #[test]
        fn parse_and_validate_auth_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            max_len in 0usize..600,
            now in any::<i64>(),
        ) {
            if let Ok(frame) = parse_auth_frame(&bytes, max_len) {
                let _ = validate_auth(frame, &AuthPolicy::default(), now);
            }
        }

        #[test]
        fn validate_auth_never_panics_and_keeps_only_allowed_env(
            env in proptest::collection::btree_map("[A-Za-z_0-9=\\-]{0,12}", "[ -~\\x00é]{0,8}", 0..80),
            api_key in proptest::option::of(".{0,20}"),
            access_token in proptest::option::of("[A-Za-z0-9_.=-]{0,40}"),
            session_id in proptest::option::of(".{0,40}"),
            client in proptest::option::of(".{0,100}"),
            require_credentials in any::<bool>(),
            now in any::<i64>(),
        ) {
            let total = env.len();
            let frame = AuthFrame {
                api_key,
                access_token,
                environment_variables: env,
                session_id,
                ci_auth_token: None,
                client,
            };
            let policy = AuthPolicy { require_credentials, env_max_value_len: 6, ..AuthPolicy::default() };
            if let Ok(ok) = validate_auth(frame, &policy, now) {
                prop_assert_eq!(ok.env.len() + ok.rejected_env.len(), total);
                prop_assert!(ok.env.len() <= policy.env_max_vars);
                for (name, value) in &ok.env {
                    prop_assert!(env_name_allowed(name, &policy));
                    prop_assert!(value.len() <= 6 && !value.contains('\0'));
                }
                prop_assert!(ok.client.as_ref().is_none_or(|c| c.len() <= MAX_CLIENT_LABEL));
            }
        }

        #[test]
        fn jwt_expired_never_panics(token in ".{0,200}", now in any::<i64>()) {
            let _ = jwt_expired(&token, now);
        }

        #[test]
        fn jwt_expired_matches_exp(exp in any::<i64>(), now in any::<i64>()) {
            let token = jwt(&json!({"exp": exp}));
            prop_assert_eq!(jwt_expired(&token, now), (exp as f64) <= (now as f64));
        }

        #[test]
        fn framer_output_concatenates_to_any_input(
            data in proptest::collection::vec(any::<u8>(), 0..256),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let points = split_points(data.len(), &cuts);
            let (frames, joined) = frame_all(&split(&data, &points));
            prop_assert_eq!(joined, data);
            prop_assert!(frames.iter().all(|f| !f.is_empty()));
        }

        #[test]
        fn framer_emits_only_valid_utf8_for_valid_input(
            text in "\\PC{0,64}",
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let data = text.as_bytes();
            let points = split_points(data.len(), &cuts);
            let (frames, joined) = frame_all(&split(data, &points));
            prop_assert_eq!(&joined[..], data);
            for frame in &frames {
                prop_assert!(std::str::from_utf8(frame).is_ok(), "{:?}", frame);
            }
        }

        #[test]
        fn framer_carries_at_most_three_bytes(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..20)) {
            let mut framer = Utf8Framer::default();
            for chunk in &chunks {
                let _ = framer.push(chunk);
                prop_assert!(framer.pending() <= 3);
            }
        }
    }
}
