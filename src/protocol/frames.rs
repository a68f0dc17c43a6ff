//! Frames after the auth frame: client frames decoded into `ClientFrame`, server control
//! messages encoded behind `CONTROL_PREFIX`, and the notices written into the output. A
//! client frame is only ever input or a known control message, never an error.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use termcell_actors::notice::{Notice, WarningKind};
use uuid::Uuid;

use super::close::Close;

/// Prefix of every server-to-client control frame; a JSON object follows it.
pub const CONTROL_PREFIX: &[u8] = b"\x00\x00ABLY_CTRL:";

/// Output line the 0.8 client waits for after `connected`/`hello` before it shows output.
pub const OUTPUT_HANDSHAKE: &str =
    r#"{"stream":true,"stdin":true,"stdout":true,"stderr":true,"hijack":true}"#;

/// Terminal size bounds; a client resize outside them is clamped.
pub const MAX_COLS: u16 = 1000;
pub const MAX_ROWS: u16 = 500;

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
    /// Input a per-session limit removed, and why (also a line in the terminal).
    Notice {
        reason: String,
    },
    Pong {
        ts: Option<Value>,
    },
    /// The session's resource use at the latest sample, for a client that asked for it.
    Usage(UsageReport),
}

/// What a `usage` control message carries: the figures a user can act on, no thresholds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    /// CPU used over the last sampling interval, in percent of one CPU (one decimal).
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    pub pids: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u64>,
}

impl From<&termcell_actors::monitor::Usage> for UsageReport {
    fn from(u: &termcell_actors::monitor::Usage) -> Self {
        UsageReport {
            cpu_percent: (u.cpu_percent * 10.0).round() / 10.0,
            memory_bytes: u.memory_bytes,
            memory_limit_bytes: u.memory_limit_bytes,
            pids: u.pids,
            pids_limit: u.pids_limit,
        }
    }
}

/// The control frame: `CONTROL_PREFIX` and compact JSON with the keys in the documented
/// order.
pub fn encode_control(msg: &ServerControl) -> Bytes {
    let json = match msg {
        ServerControl::Connecting => ControlJson::status("connecting", None),
        ServerControl::Connected => ControlJson::status("connected", None),
        ServerControl::Hello { session_id } => ControlJson::Hello {
            session_id: *session_id,
        },
        ServerControl::Error(close) => ControlJson::status("error", Some(close)),
        ServerControl::Disconnected(close) => ControlJson::status("disconnected", Some(close)),
        ServerControl::Warning {
            reason,
            seconds_left,
        } => ControlJson::Warning {
            reason,
            seconds_left: *seconds_left,
        },
        ServerControl::Notice { reason } => ControlJson::Notice { reason },
        ServerControl::Pong { ts } => ControlJson::Pong { ts: ts.as_ref() },
        ServerControl::Usage(report) => ControlJson::Usage(report),
    };
    let mut frame = CONTROL_PREFIX.to_vec();
    // Writing into a Vec cannot fail, and none of these types has a fallible `Serialize`.
    serde_json::to_writer(&mut frame, &json).expect("control JSON always serializes");
    Bytes::from(frame)
}

/// The JSON of a control message. serde writes the `type` tag first, then the fields in
/// the order declared here, which is the order docs/protocol.md gives.
#[derive(Serialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
enum ControlJson<'a> {
    Status {
        payload: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
    },
    Hello {
        session_id: Uuid,
    },
    Warning {
        reason: &'a str,
        seconds_left: u64,
    },
    Notice {
        reason: &'a str,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        ts: Option<&'a Value>,
    },
    Usage(&'a UsageReport),
}

impl<'a> ControlJson<'a> {
    fn status(payload: &'static str, close: Option<&'a Close>) -> Self {
        ControlJson::Status {
            payload,
            reason: close.map(|close| close.reason.as_str()),
            code: close.map(|close| close.code),
        }
    }
}

/// The visible terminal line that accompanies every `warning` control message, for clients
/// that ignore unknown control messages.
pub fn warning_line(reason: &str, seconds_left: u64) -> Bytes {
    notice_line(&format!("{reason} (in {seconds_left}s)"))
}

/// The words of a warning, in the terminal and in the `warning` control message.
pub fn warning_reason(kind: WarningKind) -> &'static str {
    match kind {
        WarningKind::Idle => "Session will end due to inactivity",
        WarningKind::MaxDuration => "Maximum session duration will be reached",
        WarningKind::ServerShutdown => "Server is shutting down",
    }
}

/// The words of a notice; several facts share one line.
pub fn notice_text(notices: &[Notice]) -> String {
    let words: Vec<String> = notices
        .iter()
        .map(|notice| match notice {
            Notice::InputDropped {
                kib_per_second,
                bytes,
            } => format!(
                "input rate limit reached ({kib_per_second} KiB/s): {bytes} bytes of input dropped"
            ),
            Notice::LinesRefused {
                per_minute,
                lines,
                wait_seconds,
            } => {
                let what = if *lines == 1 {
                    "line not run".to_owned()
                } else {
                    format!("{lines} lines not run")
                };
                format!(
                    "command rate limit reached ({per_minute} per minute): {what}, wait {wait_seconds}s"
                )
            }
            Notice::MemoryKill => {
                "a process was killed: the sandbox's memory limit was reached".to_owned()
            }
        })
        .collect();
    words.join("; ")
}

/// A server notice written into the terminal output (yellow, on its own line). Control
/// characters are removed so a notice can never carry a terminal escape sequence.
pub fn notice_line(text: &str) -> Bytes {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    Bytes::from(format!("\r\n\x1b[33m[termcell] {clean}\x1b[0m\r\n"))
}

#[cfg(test)]
mod tests;
