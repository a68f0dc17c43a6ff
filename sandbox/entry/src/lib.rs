//! The entry program's protocol, shared with the server that speaks it: the ready marker
//! the program prints once its terminal no longer echoes, and the environment line
//! (`line`). Invariant: the server and the program use these very definitions.

pub mod line;

/// Printed once echo is off and the line is awaited: the server writes the line only after
/// it (never while the terminal would echo it) and removes it from the output. An APC
/// string: a terminal that sees it anyway shows nothing.
pub const READY: &[u8] = b"\x1b_termcell-entry ready\x1b\\";
