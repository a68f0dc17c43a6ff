use super::*;

fn all(input: &[u8]) -> Vec<Result<String, Refusal>> {
    let mut reader = std::io::BufReader::with_capacity(64, input);
    std::iter::from_fn(|| next(&mut reader).unwrap()).collect()
}

#[test]
fn lines_split_on_newline_and_the_last_needs_none() {
    assert_eq!(
        all(b"ls\n\necho 'a b'\nexit"),
        [
            Ok("ls".to_string()),
            Ok(String::new()),
            Ok("echo 'a b'".to_string()),
            Ok("exit".to_string())
        ]
    );
    assert!(all(b"").is_empty());
}

#[test]
fn an_overlong_line_is_refused_whole_and_the_next_one_reads_normally() {
    let mut input = vec![b'a'; 10 * 1024];
    input.extend_from_slice(b"\nls\n");
    assert_eq!(all(&input), [Err(Refusal::TooLong), Ok("ls".to_string())]);
    let exactly = vec![b'a'; MAX_LINE_BYTES];
    assert_eq!(all(&exactly), [Ok("a".repeat(MAX_LINE_BYTES))]);
}

#[test]
fn invalid_utf8_is_refused_with_its_byte_and_offset() {
    assert_eq!(
        all(b"ls \xff\nls\n"),
        [
            Err(Refusal::InvalidUtf8 {
                byte: 0xff,
                offset: 4
            }),
            Ok("ls".to_string())
        ]
    );
}
