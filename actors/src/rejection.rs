//! Every kind of refusal the server counts: its label on `termcell_rejections_total`, its
//! `kind` in the audit log and the audit event it belongs to. Invariant: a refusal is named
//! here and nowhere else, so metrics, audit and docs cannot drift apart.

use std::fmt;

/// Which limit or check refused something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Upgrades per minute from one address (HTTP 429).
    Connections,
    /// Open connections of one address over its cap (HTTP 429 at accept).
    ConnectionsPerIp,
    /// Open connections over the server's total (HTTP 503 at accept).
    ConnectionsTotal,
    /// A browser Origin that is not allowed (HTTP 403).
    Origin,
    /// Concurrent sessions of one address (4003).
    Concurrency,
    /// The server's session capacity (4009).
    Capacity,
    /// The server is draining (1001).
    Draining,
    /// An auth frame that is not valid (4008).
    AuthMalformed,
    /// An auth frame over its size limit (1009).
    AuthTooLarge,
    /// No auth frame in time (1008).
    AuthTimeout,
    /// Missing, malformed or expired credentials (4001).
    Credentials,
    /// A resume of a session that does not exist (4002).
    ResumeUnknown,
    /// A resume with other credentials than the session's (4001).
    ResumeCredentials,
    /// Resume attempts per session id and address (4003).
    ResumeAttempts,
    /// Failed resumes from one address (4003).
    ResumeGuessing,
    /// A continuation frame with no message to continue (4008).
    BadContinuation,
    /// A frame or message over the message limit (1009).
    MessageTooLarge,
    /// A WebSocket protocol error (1002, or 1007 for invalid UTF-8).
    ProtocolError,
    /// A server actor did not answer (1011).
    Internal,
    /// Enter presses over the commands per minute (a notice).
    Commands,
    /// Input bytes over the input rate (a notice).
    InputFlood,
    /// Input flooding that went on: the session ends (4003).
    InputAbuse,
    /// Resizes over their rate (ignored).
    Resizes,
    /// A process of a sandbox was killed at its memory limit.
    Oom,
    /// The restricted network's firewall is gone and cannot be put back (1011).
    NetworkUnenforced,
}

impl Rejection {
    pub const ALL: [Rejection; 25] = [
        Rejection::Connections,
        Rejection::ConnectionsPerIp,
        Rejection::ConnectionsTotal,
        Rejection::Origin,
        Rejection::Concurrency,
        Rejection::Capacity,
        Rejection::Draining,
        Rejection::AuthMalformed,
        Rejection::AuthTooLarge,
        Rejection::AuthTimeout,
        Rejection::Credentials,
        Rejection::ResumeUnknown,
        Rejection::ResumeCredentials,
        Rejection::ResumeAttempts,
        Rejection::ResumeGuessing,
        Rejection::BadContinuation,
        Rejection::MessageTooLarge,
        Rejection::ProtocolError,
        Rejection::Internal,
        Rejection::Commands,
        Rejection::InputFlood,
        Rejection::InputAbuse,
        Rejection::Resizes,
        Rejection::Oom,
        Rejection::NetworkUnenforced,
    ];

    /// The metrics label and the audit `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Connections => "connections",
            Rejection::ConnectionsPerIp => "connections_per_ip",
            Rejection::ConnectionsTotal => "connections_total",
            Rejection::Origin => "origin",
            Rejection::Concurrency => "concurrency",
            Rejection::Capacity => "capacity",
            Rejection::Draining => "draining",
            Rejection::AuthMalformed => "auth_malformed",
            Rejection::AuthTooLarge => "auth_too_large",
            Rejection::AuthTimeout => "auth_timeout",
            Rejection::Credentials => "credentials",
            Rejection::ResumeUnknown => "resume_unknown",
            Rejection::ResumeCredentials => "resume_credentials",
            Rejection::ResumeAttempts => "resume_attempts",
            Rejection::ResumeGuessing => "resume_guessing",
            Rejection::BadContinuation => "bad_continuation",
            Rejection::MessageTooLarge => "message_too_large",
            Rejection::ProtocolError => "protocol_error",
            Rejection::Internal => "internal",
            Rejection::Commands => "commands",
            Rejection::InputFlood => "input_flood",
            Rejection::InputAbuse => "input_abuse",
            Rejection::Resizes => "resizes",
            Rejection::Oom => "oom",
            Rejection::NetworkUnenforced => "network_unenforced",
        }
    }

    /// The audit event a refusal of this kind is written as.
    pub fn event(self) -> &'static str {
        match self {
            Rejection::Connections
            | Rejection::Concurrency
            | Rejection::Capacity
            | Rejection::Draining
            | Rejection::ResumeAttempts
            | Rejection::ResumeGuessing
            | Rejection::MessageTooLarge
            | Rejection::ProtocolError
            | Rejection::Commands
            | Rejection::InputFlood
            | Rejection::InputAbuse
            | Rejection::Resizes => "ratelimit.rejected",
            Rejection::ConnectionsPerIp | Rejection::ConnectionsTotal => "connection.rejected",
            Rejection::Origin => "origin.rejected",
            Rejection::AuthMalformed
            | Rejection::AuthTooLarge
            | Rejection::AuthTimeout
            | Rejection::Credentials
            | Rejection::ResumeUnknown
            | Rejection::ResumeCredentials
            | Rejection::BadContinuation
            | Rejection::Internal => "auth.rejected",
            Rejection::Oom => "security.oom",
            Rejection::NetworkUnenforced => "security.network_unenforced",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_snake_case_and_events_dotted() {
        let mut labels: Vec<&str> = Rejection::ALL.iter().map(|r| r.as_str()).collect();
        assert!(labels
            .iter()
            .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Rejection::ALL.len());
        assert!(Rejection::ALL.iter().all(|r| r.event().contains('.')));
        assert_eq!(Rejection::InputFlood.to_string(), "input_flood");
    }
}
