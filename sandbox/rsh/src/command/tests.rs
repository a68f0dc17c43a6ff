use proptest::prelude::*;

use super::*;
use crate::parse::check_bytes;
use crate::parse::tests::{hostile_char, render, Style};

fn allowed() -> BTreeMap<String, String> {
    [
        ("ably", "/usr/local/bin/ably"),
        ("echo", "/bin/echo"),
        ("ls", "/bin/ls"),
    ]
    .into_iter()
    .map(|(n, p)| (n.to_string(), p.to_string()))
    .collect()
}

/// A line as typed: the byte checks, then the plan.
fn attempt(bytes: &[u8]) -> Result<Action, Refusal> {
    plan(check_bytes(bytes)?, &allowed())
}

fn forbidden(ch: char, position: usize) -> String {
    let shown = crate::parse::describe(ch);
    format!("{shown} at position {position}: ")
}

/// Injection attempts: each is refused, with a message that names the offending character
/// and its position (or the command), and nothing is planned to run.
#[test]
fn injection_attempts_are_refused_with_the_right_message() {
    let long = "a".repeat(10 * 1024);
    let cases: Vec<(&[u8], String)> = vec![
        (b"ably; sh", forbidden(';', 5)),
        (b"ably;sh", forbidden(';', 5)),
        (b"ably && sh", forbidden('&', 6)),
        (b"ably & sh", forbidden('&', 6)),
        (b"ably &", forbidden('&', 6)),
        (b"ably | sh", forbidden('|', 6)),
        (b"ably || sh", forbidden('|', 6)),
        (b"ably > /tmp/x", forbidden('>', 6)),
        (b"ably >> /tmp/x", forbidden('>', 6)),
        (b"ably 2>&1", forbidden('>', 7)),
        (b"ably < /etc/passwd", forbidden('<', 6)),
        (b"ably <<EOF", forbidden('<', 6)),
        (b"$(sh)", forbidden('$', 1) + "command substitution"),
        (
            b"ably \"$(sh)\"",
            forbidden('$', 7) + "command substitution",
        ),
        (b"ably '$(sh)'", forbidden('$', 7) + "command substitution"),
        (b"ably \\$(sh)", forbidden('$', 7) + "command substitution"),
        (b"`sh`", forbidden('`', 1)),
        (b"ably \"`sh`\"", forbidden('`', 7)),
        (
            b"ably $HOME",
            forbidden('$', 6) + "variables are not expanded",
        ),
        (
            b"ably \"$HOME\"",
            forbidden('$', 7) + "variables are not expanded",
        ),
        (
            b"ably ${IFS}sh",
            forbidden('$', 6) + "variables are not expanded",
        ),
        (
            b"ably $'\\x73h'",
            forbidden('$', 6) + "variables are not expanded",
        ),
        (b"ably ';'", forbidden(';', 7)),
        (b"ably \\;", forbidden(';', 7)),
        (b"ably\t;", forbidden(';', 6)),
        (b"sh", "sh: not an allowed command".into()),
        (b"sh -c ably", "sh: not an allowed command".into()),
        (b"busybox sh", "busybox: not an allowed command".into()),
        (b"exec sh", "exec: not an allowed command".into()),
        (b"ABLY", "ABLY: not an allowed command".into()),
        (b"ably*", "ably*: not an allowed command".into()),
        (b"{ably,sh}", "{ably,sh}: not an allowed command".into()),
        (
            b"/bin/sh",
            "/bin/sh: commands are run by their name, never by a path".into(),
        ),
        (
            b"../../bin/sh",
            "../../bin/sh: commands are run by their name".into(),
        ),
        (b"./ably", "./ably: commands are run by their name".into()),
        (b"~/ably", "~/ably: commands are run by their name".into()),
        (
            b"/usr/local/bin/ably",
            "/usr/local/bin/ably: commands are run by their name".into(),
        ),
        (b"ably\nsh", forbidden('\n', 5)),
        (b"ably\rsh", forbidden('\r', 5)),
        (b"ably\0sh", forbidden('\0', 5)),
        (b"ably \x1b[31mred", forbidden('\x1b', 6)),
        (b"ably \x1b]52;c;c2g=\x07", forbidden('\x1b', 6)),
        (b"ably \x7f", forbidden('\x7f', 6)),
        ("ably \u{9b}31m".as_bytes(), forbidden('\u{9b}', 6)),
        ("ably\u{85}sh".as_bytes(), forbidden('\u{85}', 5)),
        (b"ably\x0bsh", forbidden('\x0b', 5)),
        (long.as_bytes(), "the line is longer than 4096 bytes".into()),
        (
            b"ably \xff\xfe",
            "not valid UTF-8 (byte 0xFF at byte 6)".into(),
        ),
        (
            b"ably \xc0\xaf",
            "not valid UTF-8 (byte 0xC0 at byte 6)".into(),
        ),
        (
            b"env LD_PRELOAD=/tmp/x.so ably",
            "env: not an allowed command".into(),
        ),
        (
            b"LD_PRELOAD=/tmp/x.so ably",
            "LD_PRELOAD=/tmp/x.so: variables cannot be set".into(),
        ),
        (
            b"BASH_ENV=/tmp/rc ably",
            "BASH_ENV=/tmp/rc: variables cannot be set".into(),
        ),
        (b"'a'\"b\"", "ab: not an allowed command".into()),
        (b"'s'\"h\"", "sh: not an allowed command".into()),
        (b"s\\h", "sh: not an allowed command".into()),
        (
            b"ably 'unbalanced",
            "unterminated ' quote (opened at position 6)".into(),
        ),
        (
            b"ably \"unbalanced",
            "unterminated \" quote (opened at position 6)".into(),
        ),
        (
            b"ably \"a\"b'c",
            "unterminated ' quote (opened at position 10)".into(),
        ),
        (
            b"ably \\",
            "a backslash at the end of the line (position 6)".into(),
        ),
        (
            "ably\u{a0}sh".as_bytes(),
            "ably\u{a0}sh: not an allowed command".into(),
        ),
        (
            "ably\u{2028}sh".as_bytes(),
            "ably\u{2028}sh: not an allowed command".into(),
        ),
        (b"'' ably", "an empty command name".into()),
        (b"exit now", "exit takes no arguments".into()),
        (b"help me", "help takes no arguments".into()),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for (line, expected) in cases {
        let shown = String::from_utf8_lossy(line);
        match attempt(line) {
            Err(refusal) => assert!(
                refusal.to_string().contains(&expected),
                "{shown:?}: {refusal} (wanted {expected:?})"
            ),
            Ok(action) => panic!("{shown:?} was not refused: {action:?}"),
        }
    }
}

#[test]
fn allowed_commands_get_exactly_the_typed_arguments() {
    assert_eq!(
        attempt(br#"ably channels publish test '{"x": 1}' "two words" a\ b '' --x=y"#),
        Ok(Action::Run(Invocation {
            name: "ably".into(),
            path: "/usr/local/bin/ably".into(),
            args: [
                "channels",
                "publish",
                "test",
                "{\"x\": 1}",
                "two words",
                "a b",
                "",
                "--x=y"
            ]
            .map(String::from)
            .to_vec(),
        }))
    );
    // Quoting the name is still the exact name.
    assert!(matches!(attempt(b"'ably'"), Ok(Action::Run(i)) if i.path == "/usr/local/bin/ably"));
    assert_eq!(attempt(b"  "), Ok(Action::Nothing));
    assert_eq!(attempt(b"history"), Ok(Action::Builtin(Builtin::History)));
}

fn arguments() -> impl Strategy<Value = Vec<(String, Style)>> {
    let style = prop_oneof![
        Just(Style::Single),
        Just(Style::Double),
        Just(Style::Backslashes)
    ];
    prop::collection::vec(
        (
            prop::collection::vec(hostile_char(), 0..10).prop_map(|c| c.into_iter().collect()),
            style,
        ),
        0..5,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Whatever is typed, the only program ever planned is an allowlisted one, at its
    /// configured path, with exactly the words after its name as arguments.
    #[test]
    fn only_allowlisted_programs_run_with_exactly_the_parsed_arguments(
        bytes in prop::collection::vec(
            prop_oneof![
                3 => hostile_char().prop_map(|c| c.to_string().into_bytes()),
                1 => prop::sample::select(vec!["ably ", "echo ", "ls ", "sh ", "/bin/ls "])
                    .prop_map(|s| s.as_bytes().to_vec()),
                1 => any::<u8>().prop_map(|b| vec![b]),
            ],
            0..30,
        ).prop_map(|parts| parts.concat()),
    ) {
        if let Ok(Action::Run(run)) = attempt(&bytes) {
            let line = std::str::from_utf8(&bytes).unwrap();
            let allowed = allowed();
            prop_assert_eq!(allowed.get(&run.name), Some(&run.path));
            let mut expected = vec![run.name.clone()];
            expected.extend(run.args.iter().cloned());
            prop_assert_eq!(crate::parse::words(line), Ok(expected));
            prop_assert!(!line.contains("$("));
            prop_assert!(!line.chars().any(|c| (c.is_control() && c != '\t') || ";|&><`".contains(c)));
        }
    }

    /// An allowed name followed by any arguments, however quoted, runs with exactly those
    /// arguments, or the line is refused as a whole.
    #[test]
    fn typed_arguments_arrive_unchanged(
        name in prop::sample::select(vec!["ably", "echo", "ls"]),
        args in arguments(),
    ) {
        let line = std::iter::once(name.to_string())
            .chain(args.iter().map(|(a, s)| render(a, *s)))
            .collect::<Vec<_>>()
            .join(" ");
        match attempt(line.as_bytes()) {
            Ok(Action::Run(run)) => {
                prop_assert_eq!(run.name.as_str(), name);
                let typed: Vec<String> = args.into_iter().map(|(a, _)| a).collect();
                prop_assert_eq!(run.args, typed);
            }
            Ok(other) => prop_assert!(false, "{line:?} → {other:?}"),
            Err(Refusal::Forbidden { .. }) => {}
            Err(Refusal::TooLong) => {}
            Err(other) => prop_assert!(false, "{line:?}: {other}"),
        }
    }
}
