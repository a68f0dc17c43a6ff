//! The bounded replay ring of a session: the last N bytes of output, replayed on resume.
//! Memory is bounded by its capacity, whatever the session prints.

use std::collections::VecDeque;

use bytes::Bytes;

pub struct ReplayRing {
    buf: VecDeque<u8>,
    capacity: usize,
}

impl ReplayRing {
    pub fn new(capacity: usize) -> Self {
        ReplayRing {
            buf: VecDeque::with_capacity(capacity.min(64 * 1024)),
            capacity,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        if self.capacity == 0 {
            return;
        }
        let data = if data.len() > self.capacity {
            &data[data.len() - self.capacity..]
        } else {
            data
        };
        let overflow = (self.buf.len() + data.len()).saturating_sub(self.capacity);
        self.buf.drain(..overflow);
        self.buf.extend(data);
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The buffered output, starting at a character boundary: bytes of a UTF-8 sequence
    /// whose start was overwritten are skipped.
    pub fn snapshot(&self) -> Bytes {
        let (a, b) = self.buf.as_slices();
        let mut out = Vec::with_capacity(self.buf.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        let skip = out
            .iter()
            .take(3)
            .take_while(|&&byte| (0x80..0xC0).contains(&byte))
            .count();
        out.drain(..skip);
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_capacity_bytes() {
        let mut ring = ReplayRing::new(8);
        ring.push(b"0123");
        ring.push(b"456789");
        assert_eq!(&ring.snapshot()[..], b"23456789");
        ring.push(b"abcdefghijkl");
        assert_eq!(&ring.snapshot()[..], b"efghijkl");
        assert_eq!(ring.len(), 8);
    }

    #[test]
    fn replay_starts_at_a_character_boundary() {
        let mut ring = ReplayRing::new(5);
        ring.push("a€bc".as_bytes()); // € is 3 bytes: 6 bytes total, the 'a' is dropped
        assert_eq!(&ring.snapshot()[..], "€bc".as_bytes());
        ring.push(b"d"); // drops the first byte of the euro sign
        assert_eq!(&ring.snapshot()[..], b"bcd");
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut ring = ReplayRing::new(0);
        ring.push(b"abc");
        assert!(ring.is_empty());
    }

    #[test]
    fn one_mebibyte_in_keeps_the_last_256_kib() {
        let mut ring = ReplayRing::new(256 * 1024);
        for i in 0..1024u32 {
            ring.push(&[(i % 251) as u8; 1024]);
        }
        let snap = ring.snapshot();
        assert_eq!(snap.len(), 256 * 1024);
        assert_eq!(snap[snap.len() - 1], (1023 % 251) as u8);
        assert_eq!(snap[0], (768 % 251) as u8);
    }
}
