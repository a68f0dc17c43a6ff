//! Unit tests of UTF-8-safe framing, including property tests over any split.

use proptest::prelude::*;

use super::*;

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
