use super::*;

fn decode(chunks: &[&[u8]]) -> Vec<Key> {
    let mut decoder = Decoder::default();
    let mut keys = VecDeque::new();
    for chunk in chunks {
        decoder.feed(chunk, &mut keys);
    }
    decoder.flush(&mut keys);
    keys.into_iter().collect()
}

#[test]
fn control_keys_map_to_editing_actions() {
    assert_eq!(
        decode(&[b"\x01\x05\x02\x06\x0b\x15\x17\x12\x03\x04\x07\x0c\x10\x0e\x08\x7f\x09"]),
        [
            Key::Home,
            Key::End,
            Key::Left,
            Key::Right,
            Key::KillToEnd,
            Key::KillToStart,
            Key::KillWordBack,
            Key::Search,
            Key::Interrupt,
            Key::EndOfInput,
            Key::Abort,
            Key::ClearScreen,
            Key::Up,
            Key::Down,
            Key::Backspace,
            Key::Backspace,
            Key::Tab,
        ]
    );
    assert_eq!(decode(&[b"\x1a\x1c"]), [Key::Ignored, Key::Ignored]);
}

#[test]
fn cr_lf_is_one_enter_and_lf_alone_is_enter() {
    assert_eq!(
        decode(&[b"a\r\nb\nc\r"]),
        [
            Key::Char('a'),
            Key::Enter,
            Key::Char('b'),
            Key::Enter,
            Key::Char('c'),
            Key::Enter,
        ]
    );
    assert_eq!(decode(&[b"\r", b"\n"]), [Key::Enter], "split across reads");
    assert_eq!(decode(&[b"\r\r"]), [Key::Enter, Key::Enter]);
}

#[test]
fn escape_sequences_of_xterm_and_vt_keys() {
    let cases: &[(&[u8], Key)] = &[
        (b"\x1b[A", Key::Up),
        (b"\x1b[B", Key::Down),
        (b"\x1b[C", Key::Right),
        (b"\x1b[D", Key::Left),
        (b"\x1bOA", Key::Up),
        (b"\x1bOD", Key::Left),
        (b"\x1b[H", Key::Home),
        (b"\x1b[F", Key::End),
        (b"\x1bOH", Key::Home),
        (b"\x1bOF", Key::End),
        (b"\x1b[1~", Key::Home),
        (b"\x1b[7~", Key::Home),
        (b"\x1b[4~", Key::End),
        (b"\x1b[8~", Key::End),
        (b"\x1b[3~", Key::Delete),
        (b"\x1b[1;5C", Key::WordRight),
        (b"\x1b[1;3D", Key::WordLeft),
        (b"\x1bb", Key::WordLeft),
        (b"\x1bf", Key::WordRight),
        (b"\x1b[2~", Key::Ignored),
        (b"\x1b[200~", Key::Ignored),
        (b"\x1bx", Key::Ignored),
    ];
    for (bytes, key) in cases {
        assert_eq!(decode(&[bytes]), [*key], "{bytes:?}");
    }
}

#[test]
fn a_sequence_split_across_reads_is_one_key() {
    assert_eq!(decode(&[b"\x1b", b"[", b"3", b"~"]), [Key::Delete]);
    assert_eq!(decode(&[b"\x1b[1;", b"5C"]), [Key::WordRight]);
}

#[test]
fn escape_alone_is_abort_once_nothing_follows() {
    let mut decoder = Decoder::default();
    let mut keys = VecDeque::new();
    decoder.feed(b"\x1b", &mut keys);
    assert!(keys.is_empty() && decoder.has_pending());
    decoder.flush(&mut keys);
    assert_eq!(keys, [Key::Abort]);
    assert!(!decoder.has_pending());
    assert_eq!(decode(&[b"\x1b\x1b[A"]), [Key::Abort, Key::Up]);
}

#[test]
fn an_overlong_or_broken_sequence_is_dropped_whole() {
    let mut long = b"\x1b[".to_vec();
    long.extend(std::iter::repeat_n(b'1', 100));
    long.push(b'x');
    let keys = decode(&[&long]);
    assert!(keys
        .iter()
        .all(|k| *k == Key::Ignored || *k == Key::Char('x') || *k == Key::Char('1')));
    assert!(!keys.contains(&Key::Enter));
    // A control byte inside a sequence ends it and is read as itself.
    assert_eq!(decode(&[b"\x1b[1\r"]), [Key::Ignored, Key::Enter]);
}

#[test]
fn utf8_characters_whole_or_split() {
    assert_eq!(
        decode(&["é界😀".as_bytes()]),
        [Key::Char('é'), Key::Char('界'), Key::Char('😀')]
    );
    let bytes = "界".as_bytes();
    assert_eq!(
        decode(&[&bytes[..1], &bytes[1..2], &bytes[2..]]),
        [Key::Char('界')]
    );
    assert_eq!(decode(&["\u{85}".as_bytes()]), [Key::Char('\u{85}')]);
}

#[test]
fn invalid_utf8_bytes_become_invalid_keys() {
    assert_eq!(
        decode(&[b"a\xffb"]),
        [Key::Char('a'), Key::Invalid(0xff), Key::Char('b')]
    );
    assert_eq!(decode(&[b"\x80"]), [Key::Invalid(0x80)]);
    // Overlong and surrogate encodings.
    assert_eq!(
        decode(&[b"\xc0\xaf"]),
        [Key::Invalid(0xc0), Key::Invalid(0xaf)]
    );
    assert_eq!(decode(&[b"\xed\xa0\x80"])[0], Key::Invalid(0xed));
    // A lead byte followed by a non-continuation byte.
    assert_eq!(decode(&[b"\xe7x"]), [Key::Invalid(0xe7), Key::Char('x')]);
    // A character cut off at the end of the input.
    assert_eq!(
        decode(&[b"\xe7\x95"]),
        [Key::Invalid(0xe7), Key::Invalid(0x95)]
    );
}
