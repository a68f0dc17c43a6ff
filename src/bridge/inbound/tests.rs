//! Unit tests of the read side: frame boundaries through any split, refusal at the
//! header, the reader stopping at the cap and going on as frames are handled.

use super::*;
use futures_util::task::noop_waker;
use futures_util::{stream, StreamExt};
use proptest::prelude::*;

/// A client frame as a browser sends it: masked, with the shortest length encoding.
fn frame(opcode: u8, payload_len: u64) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload_len {
        0..=125 => out.push(0x80 | payload_len as u8),
        126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&payload_len.to_be_bytes());
        }
    }
    out.extend_from_slice(&[1, 2, 3, 4]);
    out.extend(std::iter::repeat_n(b'x', payload_len as usize));
    out
}

fn scan_all(chunks: &[&[u8]], max: u64) -> (Result<(), u64>, Vec<usize>) {
    let mut scan = FrameScan::default();
    let mut frames = VecDeque::new();
    for chunk in chunks {
        if let Err(declared) = scan.feed(chunk, max, &mut frames) {
            return (Err(declared), frames.into());
        }
    }
    (Ok(()), frames.into())
}

#[test]
fn frame_sizes_follow_every_length_encoding() {
    let wire: Vec<u8> = [frame(1, 7), frame(2, 300), frame(9, 0), frame(2, 70_000)].concat();
    let (result, frames) = scan_all(&[&wire], 1 << 20);
    assert_eq!(result, Ok(()));
    assert_eq!(frames, vec![2 + 4 + 7, 4 + 4 + 300, 2 + 4, 10 + 4 + 70_000]);
}

#[test]
fn an_oversized_declared_length_fails_at_its_header_before_any_payload() {
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 62).to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]);
    let (result, frames) = scan_all(&[&frame(1, 5), &header], 1024);
    assert_eq!(result, Err(1 << 62));
    assert_eq!(frames, vec![11], "the frame before it was complete");
    // One byte at a time: still refused the moment the length is known.
    let mut scan = FrameScan::default();
    let mut frames = VecDeque::new();
    let mut refused_at = None;
    for (i, b) in header.iter().enumerate() {
        if scan.feed(&[*b], 1024, &mut frames).is_err() {
            refused_at = Some(i);
            break;
        }
    }
    assert_eq!(refused_at, Some(13), "at the last byte of the mask key");
}

proptest! {
    #[test]
    fn any_split_of_the_stream_gives_the_same_frames(
        lens in prop::collection::vec(0u64..70_000, 1..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let wire: Vec<u8> = lens.iter().flat_map(|&n| frame(2, n)).collect();
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len())).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points.into_iter().chain([wire.len()]) {
            chunks.push(&wire[start..p]);
            start = p;
        }
        let (result, frames) = scan_all(&chunks, 1 << 20);
        prop_assert_eq!(result, Ok(()));
        let expected: Vec<usize> = lens.iter().map(|&n| frame(2, n).len()).collect();
        prop_assert_eq!(frames, expected);
    }
}

fn payload(chunks: Vec<Vec<u8>>) -> impl Stream<Item = Result<Bytes, PayloadError>> + Unpin {
    stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))))
}

#[test]
fn the_reader_stops_at_the_cap_and_goes_on_when_frames_are_handled() {
    let max = 1024;
    let inbound = Inbound::new(max);
    let cap = inbound.budget.cap();
    // Many small frames in one big chunk, far more than the cap.
    let wire: Vec<u8> = (0..20_000).flat_map(|_| frame(1, 7)).collect();
    let total = wire.len();
    let mut limited = inbound.limit(payload(vec![wire]));
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut read = 0;
    while let Poll::Ready(Some(Ok(chunk))) = limited.poll_next_unpin(&mut cx) {
        read += chunk.len();
    }
    assert_eq!(read, cap, "exactly up to the cap, no more");
    assert_eq!(inbound.budget.held(), cap);
    // Handling frames gives room back; the rest of the stream follows.
    let mut handled = 0;
    loop {
        match limited.poll_next_unpin(&mut cx) {
            Poll::Ready(Some(Ok(chunk))) => read += chunk.len(),
            Poll::Ready(None) => break,
            Poll::Ready(Some(Err(e))) => panic!("{e}"),
            Poll::Pending => {
                for _ in 0..100 {
                    inbound.frame_handled();
                    handled += 1;
                }
            }
        }
        assert!(inbound.budget.held() <= cap);
    }
    assert_eq!(read, total);
    while handled < 20_000 {
        inbound.frame_handled();
        handled += 1;
    }
    assert_eq!(inbound.budget.held(), 0);
}

#[test]
fn credits_held_by_the_session_keep_the_socket_unread() {
    let max = 1024;
    let inbound = Inbound::new(max);
    let credit = inbound.credit(inbound.budget.cap());
    let mut limited = inbound.limit(payload(vec![frame(1, 7)]));
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(limited.poll_next_unpin(&mut cx).is_pending());
    drop(credit);
    assert!(matches!(
        limited.poll_next_unpin(&mut cx),
        Poll::Ready(Some(Ok(_)))
    ));
}

#[test]
fn an_oversized_frame_ends_the_stream_with_an_overflow() {
    let max = 1024;
    let inbound = Inbound::new(max);
    let mut limited = inbound.limit(payload(vec![frame(2, 2000)]));
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(matches!(
        limited.poll_next_unpin(&mut cx),
        Poll::Ready(Some(Err(PayloadError::Overflow)))
    ));
    assert_eq!(inbound.oversized(), Some(2000));
    assert!(matches!(
        limited.poll_next_unpin(&mut cx),
        Poll::Ready(None)
    ));
    assert_eq!(inbound.budget.held(), 0);
}
