//! What a session tells its user in the terminal, as facts. The protocol codec
//! (src/protocol/frames.rs) chooses the words. Invariant: no user-facing text is built in
//! the actors crate.

/// A notice line about the user's own session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Input over the byte rate was dropped.
    InputDropped { kib_per_second: u32, bytes: usize },
    /// Enter presses over the command rate were not run.
    LinesRefused {
        per_minute: u32,
        lines: usize,
        wait_seconds: u64,
    },
    /// A process of the sandbox was killed at its memory limit (the shell lives on).
    MemoryKill,
}

/// Why a session will end soon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarningKind {
    Idle,
    MaxDuration,
    ServerShutdown,
}
