use proptest::prelude::*;

use super::*;

fn ok(line: &str) -> Vec<String> {
    words(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

#[test]
fn words_split_on_blanks_and_quotes_group() {
    assert_eq!(ok("ably channels  list"), ["ably", "channels", "list"]);
    assert_eq!(ok(" \tably\t-v "), ["ably", "-v"]);
    assert_eq!(ok("echo 'a b' \"c d\""), ["echo", "a b", "c d"]);
    assert_eq!(ok("echo 'a'\"b\"c"), ["echo", "abc"]);
    assert_eq!(ok("echo '' \"\""), ["echo", "", ""]);
    assert_eq!(ok(""), Vec::<String>::new());
    assert_eq!(ok("   "), Vec::<String>::new());
}

#[test]
fn a_backslash_escapes_the_next_character_except_in_single_quotes() {
    assert_eq!(ok(r"echo a\ b"), ["echo", "a b"]);
    assert_eq!(ok(r#"echo \' \" \\"#), ["echo", "'", "\"", "\\"]);
    assert_eq!(ok(r#"echo "a\"b""#), ["echo", "a\"b"]);
    assert_eq!(ok(r"echo 'a\b'"), ["echo", r"a\b"]);
    assert_eq!(ok(r"echo \$HOME"), ["echo", "$HOME"]);
}

#[test]
fn nothing_expands() {
    assert_eq!(
        ok("echo * ? [a] {a,b} ~ ~/x a=b '$HOME' #x"),
        ["echo", "*", "?", "[a]", "{a,b}", "~", "~/x", "a=b", "$HOME", "#x"]
    );
    assert_eq!(ok("echo '{\"a\":1}'"), ["echo", "{\"a\":1}"]);
}

#[test]
fn refusals_name_the_character_and_its_position_in_characters() {
    let e = words("échö ü;").unwrap_err();
    assert_eq!(
        e,
        Refusal::Forbidden {
            ch: ';',
            position: 7,
            why: OPERATORS
        }
    );
    assert_eq!(
        e.to_string(),
        "';' at position 7: one command per line: ';' does not chain commands"
    );
    assert_eq!(
        words("a\u{1b}[31m").unwrap_err().to_string(),
        "control character U+001B (ESC) at position 2: control characters are not accepted"
    );
    assert_eq!(
        words("a\u{9b}").unwrap_err().to_string(),
        "control character U+009B at position 2: control characters are not accepted"
    );
    assert_eq!(
        words("echo 'abc").unwrap_err().to_string(),
        "unterminated ' quote (opened at position 6)"
    );
    assert_eq!(
        words("echo abc\\").unwrap_err().to_string(),
        "a backslash at the end of the line (position 9) escapes nothing"
    );
    assert_eq!(
        words(r#"echo "abc\"#).unwrap_err(),
        Refusal::UnterminatedQuote {
            quote: '"',
            position: 6
        }
    );
}

#[test]
fn the_first_offending_character_is_named() {
    assert_eq!(
        words("a $x ; b").unwrap_err(),
        Refusal::Forbidden {
            ch: '$',
            position: 3,
            why: VARIABLE
        }
    );
    assert_eq!(
        words("a 'b ; c").unwrap_err(),
        Refusal::Forbidden {
            ch: ';',
            position: 6,
            why: OPERATORS
        },
        "inside an open quote too"
    );
}

#[test]
fn byte_checks_come_before_the_grammar() {
    assert_eq!(check_bytes(b"ls -l"), Ok("ls -l"));
    assert_eq!(
        check_bytes(b"ls \xc3\x28"),
        Err(Refusal::InvalidUtf8 {
            byte: 0xc3,
            offset: 4
        })
    );
    assert_eq!(
        check_bytes(&[b'a'; MAX_LINE_BYTES + 1]),
        Err(Refusal::TooLong)
    );
    assert!(check_bytes(&[b'a'; MAX_LINE_BYTES]).is_ok());
    assert_eq!(
        words(&"a".repeat(MAX_LINE_BYTES + 1)),
        Err(Refusal::TooLong)
    );
}

/// How a word is written on the line.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Style {
    Single,
    Double,
    Backslashes,
}

/// `word` written in `style` so that [`words`] should read it back unchanged.
pub(crate) fn render(word: &str, style: Style) -> String {
    match style {
        Style::Single => format!("'{}'", word.replace('\'', r"'\''")),
        Style::Double => {
            let mut s = String::from("\"");
            for c in word.chars() {
                if matches!(c, '"' | '\\' | '$') {
                    s.push('\\');
                }
                s.push(c);
            }
            s.push('"');
            s
        }
        Style::Backslashes if word.is_empty() => "''".to_string(),
        Style::Backslashes => {
            let mut s = String::new();
            for c in word.chars() {
                if matches!(c, ' ' | '\t' | '\'' | '"' | '\\' | '$') {
                    s.push('\\');
                }
                s.push(c);
            }
            s
        }
    }
}

/// True when the line holds something refused wherever it stands.
fn has_forbidden(line: &str) -> bool {
    line.contains("$(")
        || line
            .chars()
            .any(|c| (c.is_control() && c != '\t') || ";|&><`".contains(c))
}

/// Characters a hostile line is made of: shell syntax, quotes, blanks, controls, and some
/// letters and wide or combining characters.
pub(crate) fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(vec![
            ' ', '\t', '\'', '"', '\\', '$', '(', ')', ';', '|', '&', '>', '<', '`', '*', '?',
            '~', '{', '}', '[', ']', '#', '=', '/', '.', '-', '\n', '\r', '\0', '\x1b', '\x7f',
            '\u{85}', '\u{9b}', '\u{a0}', '\u{301}', '\u{2028}', '\u{202e}', '界', '😀',
        ]),
        3 => prop::char::range('a', 'z'),
        1 => any::<char>(),
    ]
}

fn style() -> impl Strategy<Value = Style> {
    prop_oneof![
        Just(Style::Single),
        Just(Style::Double),
        Just(Style::Backslashes)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any words, written with any quoting, read back exactly, unless the line holds a
    /// character that is refused wherever it stands.
    #[test]
    fn quoted_words_read_back_exactly(
        parts in prop::collection::vec(
            (prop::collection::vec(hostile_char(), 0..12), style()),
            1..6,
        ),
        separator in prop::sample::select(vec![" ", "\t", "  ", " \t "]),
    ) {
        let expected: Vec<String> = parts.iter().map(|(w, _)| w.iter().collect()).collect();
        let line = expected
            .iter()
            .zip(parts.iter().map(|(_, s)| *s))
            .map(|(w, s)| render(w, s))
            .collect::<Vec<_>>()
            .join(separator);
        let parsed = words(&line);
        if has_forbidden(&line) {
            prop_assert!(
                matches!(parsed, Err(Refusal::Forbidden { .. })),
                "{line:?} → {parsed:?}"
            );
        } else {
            prop_assert_eq!(parsed, Ok(expected), "{:?}", line);
        }
    }

    /// Whatever the line, the parser never panics, and a refusal points inside the line
    /// at a character that really is there.
    #[test]
    fn refusals_point_at_the_character(chars in prop::collection::vec(hostile_char(), 0..40)) {
        let line: String = chars.iter().collect();
        match words(&line) {
            Ok(words) => {
                prop_assert!(!has_forbidden(&line), "{line:?} accepted: {words:?}");
                for w in words {
                    prop_assert!(!w.chars().any(|c| c.is_control() && c != '\t'));
                }
            }
            Err(Refusal::Forbidden { ch, position, .. }) => {
                prop_assert_eq!(chars.get(position - 1), Some(&ch), "{:?}", line);
            }
            Err(Refusal::UnterminatedQuote { quote, position }) => {
                prop_assert_eq!(chars.get(position - 1), Some(&quote), "{:?}", line);
            }
            Err(Refusal::TrailingBackslash { position }) => {
                prop_assert_eq!(position, chars.len());
                prop_assert_eq!(chars.last(), Some(&'\\'));
            }
            Err(other) => prop_assert!(false, "{line:?}: unexpected {other:?}"),
        }
    }
}
