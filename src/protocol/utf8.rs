//! UTF-8-safe output framing: every frame sent to the client ends on a character boundary
//! when the output is valid UTF-8, and no byte is ever dropped or reordered.

use bytes::Bytes;

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

#[cfg(test)]
mod tests;
