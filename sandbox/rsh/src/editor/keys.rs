//! Terminal input bytes to keys: UTF-8 characters, control keys and the escape sequences
//! of xterm-like terminals (xterm.js included). Invariant: every byte ends up in exactly one
//! key; a byte that is not valid UTF-8 becomes `Invalid` (never dropped, never guessed),
//! and an unknown or overlong escape sequence is consumed whole as `Ignored`.

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Enter,
    Tab,
    Backspace,
    Delete,
    /// Ctrl-D: end of input on an empty line, else delete.
    EndOfInput,
    Left,
    Right,
    WordLeft,
    WordRight,
    Home,
    End,
    Up,
    Down,
    KillToStart,
    KillToEnd,
    KillWordBack,
    Search,
    /// Ctrl-C.
    Interrupt,
    /// Ctrl-G, or Escape alone.
    Abort,
    ClearScreen,
    Invalid(u8),
    Ignored,
}

/// An escape sequence longer than this is not one a terminal sends: it is dropped.
const MAX_SEQUENCE: usize = 32;

/// Decodes a byte stream that may arrive in arbitrary pieces.
#[derive(Debug, Default)]
pub struct Decoder {
    pending: Vec<u8>,
    /// The last key was a CR: a LF right after it is the same Enter (CR LF from a paste).
    after_cr: bool,
}

enum Step {
    Key(Key, usize),
    /// The pending bytes may be the start of a longer key.
    NeedMore,
}

impl Decoder {
    /// Appends the keys that `bytes` complete.
    pub fn feed(&mut self, bytes: &[u8], keys: &mut VecDeque<Key>) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while start < self.pending.len() {
            match step(&self.pending[start..]) {
                Step::Key(key, used) => {
                    let byte = self.pending[start];
                    start += used;
                    let lf_after_cr = byte == b'\n' && self.after_cr;
                    self.after_cr = byte == b'\r';
                    if !lf_after_cr {
                        keys.push_back(key);
                    }
                }
                Step::NeedMore => break,
            }
        }
        self.pending.drain(..start);
    }

    /// True while bytes wait for the rest of a key; the caller calls
    /// [`Decoder::flush`] when nothing more comes soon.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Ends what is pending: ESC alone is Escape, an unfinished sequence is dropped, an
    /// unfinished UTF-8 character is invalid.
    pub fn flush(&mut self, keys: &mut VecDeque<Key>) {
        let pending = std::mem::take(&mut self.pending);
        let Some(&first) = pending.first() else {
            return;
        };
        let key = match (first, pending.len()) {
            (0x1b, 1) => Key::Abort,
            (0x1b, _) => Key::Ignored,
            (b, _) => Key::Invalid(b),
        };
        self.after_cr = false;
        keys.push_back(key);
        // The bytes after an invalid lead byte are read again on their own.
        if first != 0x1b && pending.len() > 1 {
            self.feed(&pending[1..], keys);
            self.flush(keys);
        }
    }
}

/// One key from the start of `bytes` (not empty).
fn step(bytes: &[u8]) -> Step {
    let b = bytes[0];
    let key = match b {
        0x01 => Key::Home,
        0x02 => Key::Left,
        0x03 => Key::Interrupt,
        0x04 => Key::EndOfInput,
        0x05 => Key::End,
        0x06 => Key::Right,
        0x07 => Key::Abort,
        0x08 | 0x7f => Key::Backspace,
        0x09 => Key::Tab,
        0x0a | 0x0d => Key::Enter,
        0x0b => Key::KillToEnd,
        0x0c => Key::ClearScreen,
        0x0e => Key::Down,
        0x10 => Key::Up,
        0x12 => Key::Search,
        0x15 => Key::KillToStart,
        0x17 => Key::KillWordBack,
        0x1b => return escape(bytes),
        0x00..=0x1f => Key::Ignored,
        0x20..=0x7e => Key::Char(b as char),
        _ => return utf8(bytes),
    };
    Step::Key(key, 1)
}

fn utf8(bytes: &[u8]) -> Step {
    let len = match bytes[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        b => return Step::Key(Key::Invalid(b), 1),
    };
    // Checked byte by byte so that a bad continuation is found before all bytes arrive.
    for (i, &b) in bytes.iter().enumerate().take(len).skip(1) {
        if b & 0xc0 != 0x80 {
            return Step::Key(Key::Invalid(bytes[0]), 1);
        }
        if std::str::from_utf8(&bytes[..=i]).is_err_and(|e| e.error_len().is_some()) {
            return Step::Key(Key::Invalid(bytes[0]), 1);
        }
    }
    if bytes.len() < len {
        return Step::NeedMore;
    }
    match std::str::from_utf8(&bytes[..len]) {
        Ok(s) => {
            let ch = s.chars().next().expect("one character");
            // C1 control characters come through as characters: the line refuses them.
            Step::Key(Key::Char(ch), len)
        }
        Err(_) => Step::Key(Key::Invalid(bytes[0]), 1),
    }
}

fn escape(bytes: &[u8]) -> Step {
    let Some(&kind) = bytes.get(1) else {
        return Step::NeedMore;
    };
    match kind {
        b'[' => csi(bytes),
        b'O' => match bytes.get(2) {
            None => Step::NeedMore,
            Some(&f) => Step::Key(final_key(f, &[]), 3),
        },
        b'b' | b'B' => Step::Key(Key::WordLeft, 2),
        b'f' | b'F' => Step::Key(Key::WordRight, 2),
        // ESC ESC: the first is an Escape of its own.
        0x1b => Step::Key(Key::Abort, 1),
        _ => Step::Key(Key::Ignored, 2),
    }
}

/// `ESC [ params intermediates final`.
fn csi(bytes: &[u8]) -> Step {
    for (i, &b) in bytes.iter().enumerate().skip(2) {
        if i >= MAX_SEQUENCE {
            return Step::Key(Key::Ignored, i);
        }
        match b {
            0x20..=0x3f => continue,
            0x40..=0x7e => {
                let params: Vec<u32> = std::str::from_utf8(&bytes[2..i])
                    .unwrap_or("")
                    .split(';')
                    .map(|p| p.parse().unwrap_or(0))
                    .collect();
                return Step::Key(final_key(b, &params), i + 1);
            }
            // Not part of a sequence: drop what came so far, read this byte again.
            _ => return Step::Key(Key::Ignored, i),
        }
    }
    Step::NeedMore
}

fn final_key(final_byte: u8, params: &[u32]) -> Key {
    // xterm's modifier parameter: 3 is Alt, 5 is Ctrl.
    let word = matches!(params.get(1), Some(3 | 5));
    match (final_byte, params.first().copied().unwrap_or(0)) {
        (b'A', _) => Key::Up,
        (b'B', _) => Key::Down,
        (b'C', _) if word => Key::WordRight,
        (b'D', _) if word => Key::WordLeft,
        (b'C', _) => Key::Right,
        (b'D', _) => Key::Left,
        (b'H', _) => Key::Home,
        (b'F', _) => Key::End,
        (b'~', 1 | 7) => Key::Home,
        (b'~', 4 | 8) => Key::End,
        (b'~', 3) => Key::Delete,
        _ => Key::Ignored,
    }
}

#[cfg(test)]
mod tests;
