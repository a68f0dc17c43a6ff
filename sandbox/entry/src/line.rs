//! The environment line: what the server writes to a waiting sandbox, and how it is read.
//! Invariant: a line is accepted whole or not at all, and reading never consumes a byte
//! after its newline (those are the user's early keystrokes, for the shell).
//!
//! Format (ASCII): `termcell-env/1` then, for each variable, a space, its name, `=` and
//! its value's bytes in lower-case hex; then `\n`. Names are `[A-Za-z_][A-Za-z0-9_]*`,
//! each at most once; values hold no NUL. Hex keeps every byte of a value away from the
//! terminal's control characters and from the separators.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

#[cfg(test)]
mod tests;

/// The first word of every line: a later format gets a new version.
pub const VERSION: &str = "termcell-env/1";
/// The longest line accepted, newline included.
pub const MAX_LINE: usize = 64 * 1024;
/// The most variables one line may set.
pub const MAX_VARS: usize = 256;

/// Why a line was refused. Never holds the line's contents (they are credentials).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("no environment line within {0} s")]
    Timeout(u64),
    #[error("the terminal closed before a whole environment line")]
    Eof,
    #[error("the environment line is longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("the environment line does not start with {VERSION}")]
    Version,
    #[error("variable {0} of the environment line is not NAME=HEX")]
    Malformed(usize),
    #[error("variable {0} of the environment line has an invalid name")]
    Name(usize),
    #[error("variable {0} of the environment line is not lower-case hex of bytes without NUL")]
    Value(usize),
    #[error("variable {0} of the environment line repeats a name")]
    Repeated(usize),
    #[error("the environment line sets more than {MAX_VARS} variables")]
    TooMany,
    #[error("reading the terminal failed: {0}")]
    Io(String),
}

/// The line (newline included) that sets `vars`; names must be valid and values free of
/// NUL (the server's allowlist and credential checks ensure both).
pub fn encode<'a>(vars: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut line = VERSION.as_bytes().to_vec();
    for (name, value) in vars {
        line.push(b' ');
        line.extend_from_slice(name.as_bytes());
        line.push(b'=');
        line.extend_from_slice(hex::encode(value).as_bytes());
    }
    line.push(b'\n');
    line
}

/// Parses one line (without its newline) into the variables it sets, in order.
pub fn parse(line: &[u8]) -> Result<Vec<(String, OsString)>, LineError> {
    if line.len() >= MAX_LINE {
        return Err(LineError::TooLong);
    }
    let mut words = line.split(|b| *b == b' ');
    if words.next() != Some(VERSION.as_bytes()) {
        return Err(LineError::Version);
    }
    let mut vars: Vec<(String, OsString)> = Vec::new();
    for (i, word) in words.enumerate() {
        let n = i + 1;
        if vars.len() == MAX_VARS {
            return Err(LineError::TooMany);
        }
        let eq = word
            .iter()
            .position(|b| *b == b'=')
            .ok_or(LineError::Malformed(n))?;
        let (name, hex_value) = (&word[..eq], &word[eq + 1..]);
        if !valid_name(name) {
            return Err(LineError::Name(n));
        }
        let name = String::from_utf8(name.to_vec()).map_err(|_| LineError::Name(n))?;
        let lower = hex_value
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
        let value = match hex::decode(hex_value) {
            Ok(v) if lower && !v.contains(&0) => v,
            _ => return Err(LineError::Value(n)),
        };
        if vars.iter().any(|(seen, _)| *seen == name) {
            return Err(LineError::Repeated(n));
        }
        vars.push((name, OsString::from_vec(value)));
    }
    Ok(vars)
}

fn valid_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        None => false,
    }
}

/// Reads one line from `fd`, a byte at a time so that nothing after its newline is taken,
/// within `timeout`; returns it without the newline.
pub fn read_line(fd: impl AsFd, timeout: Duration) -> Result<Vec<u8>, LineError> {
    let deadline = Instant::now() + timeout;
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(LineError::Timeout(timeout.as_secs()));
        }
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let wait = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        match poll(&mut fds, Some(&wait)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(LineError::Io(e.to_string())),
        }
        let mut byte = [0u8; 1];
        match rustix::io::read(&fd, &mut byte) {
            Ok(0) => return Err(LineError::Eof),
            Ok(_) if byte[0] == b'\n' => return Ok(line),
            Ok(_) if line.len() + 1 >= MAX_LINE => return Err(LineError::TooLong),
            Ok(_) => line.push(byte[0]),
            Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
            // A TTY whose other side is gone reads EIO.
            Err(rustix::io::Errno::IO) => return Err(LineError::Eof),
            Err(e) => return Err(LineError::Io(e.to_string())),
        }
    }
}
