use std::io;

use super::*;

fn start(args: &[&str], files: &[(&str, &str)]) -> Result<Start, ConfigError> {
    let files: BTreeMap<String, String> = files
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    from_args(args.iter().map(|a| a.to_string()), move |path| {
        files
            .get(path.to_str().unwrap())
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    })
}

fn config(args: &[&str], files: &[(&str, &str)]) -> Config {
    match start(args, files) {
        Ok(Start::Shell(c)) => c,
        other => panic!("{other:?}"),
    }
}

fn error(args: &[&str], files: &[(&str, &str)]) -> String {
    start(args, files).unwrap_err().to_string()
}

const FILE: &str = r#"
banner = "Welcome"
prompt = "rsh$ "
history_size = 10
env = ["HOME", "ABLY_*"]
[commands]
ably = "/usr/local/bin/ably"
ls = "/bin/ls"
"#;

#[test]
fn the_default_file_is_read_without_arguments() {
    let c = config(&[], &[(DEFAULT_CONFIG, FILE)]);
    assert_eq!(c.commands["ably"], "/usr/local/bin/ably");
    assert_eq!(c.banner.as_deref(), Some("Welcome"));
    assert_eq!(c.prompt, "rsh$ ");
    assert_eq!(c.history_size, 10);
    assert!(c.env.allows("ABLY_API_KEY") && !c.env.allows("PATH"));
    assert!(error(&[], &[]).contains("cannot read /etc/termcell/rsh.conf"));
}

#[test]
fn arguments_add_commands_and_override_the_file() {
    let c = config(
        &[
            "--config",
            "/x.conf",
            "--allow",
            "ls=/usr/bin/ls",
            "--allow=cat=/bin/cat",
            "--prompt",
            "> ",
        ],
        &[("/x.conf", FILE)],
    );
    assert_eq!(c.commands["ls"], "/usr/bin/ls");
    assert_eq!(c.commands["cat"], "/bin/cat");
    assert_eq!(c.commands["ably"], "/usr/local/bin/ably");
    assert_eq!(c.prompt, "> ");
    assert_eq!(c.banner.as_deref(), Some("Welcome"));

    // --allow alone reads no file and takes the defaults.
    let c = config(&["--allow", "ls=/bin/ls", "--banner", "hi"], &[]);
    assert_eq!(c.commands.len(), 1);
    assert_eq!((c.prompt.as_str(), c.banner.as_deref()), ("$ ", Some("hi")));
    assert_eq!(c.history_size, 500);
    assert!(c.env.allows("PATH") && !c.env.allows("LD_PRELOAD"));
    assert!(matches!(start(&["--help"], &[]), Ok(Start::Usage)));
}

#[test]
fn bad_configurations_are_refused_with_what_is_wrong() {
    let cases: &[(&[&str], &str)] = &[
        (&["--allow", "ls"], "use NAME=PATH"),
        (&["--allow", "ls=bin/ls"], "is not an absolute path"),
        (&["--allow", "ls=/bin/../bin/sh"], "is not normalised"),
        (&["--allow", "ls=/bin//ls"], "is not normalised"),
        (&["--allow", "ls=/bin/"], "is not normalised"),
        (&["--allow", "ls=/bin/l\ns"], "is not a usable path"),
        (&["--allow", "a/b=/bin/ls"], "is not a command name"),
        (&["--allow", "-x=/bin/ls"], "is not a command name"),
        (&["--allow", "a b=/bin/ls"], "is not a command name"),
        (&["--allow", "=/bin/ls"], "is not a command name"),
        (&["--allow", "exit=/bin/ls"], "exit is a built-in"),
        (
            &["--allow", "ls=/bin/ls", "--prompt", "a\nb"],
            "control character",
        ),
        (&["--config"], "--config needs a value"),
        (&["--shell"], "unknown argument"),
    ];
    for (args, expected) in cases {
        let e = error(args, &[]);
        assert!(e.contains(expected), "{args:?}: {e}");
    }
    let e = error(&["--config", "/x"], &[("/x", "commands = 1\n")]);
    assert!(e.contains("/x is not a valid configuration"), "{e}");
    let e = error(&["--config", "/x"], &[("/x", "shell = \"sh\"\n")]);
    assert!(e.contains("unknown field"), "{e}");
    let e = error(&["--config", "/x"], &[("/x", "env = [\"LD_*X\"]\n")]);
    assert!(e.contains("not an environment variable name"), "{e}");
    let e = error(&["--config", "/x"], &[("/x", "history_size = 100000\n")]);
    assert!(e.contains("history_size"), "{e}");
}

#[test]
fn the_default_image_configuration_is_valid() {
    let text = include_str!("../../../../docker/rsh.conf");
    let c = config(&[], &[(DEFAULT_CONFIG, text)]);
    assert!(c.banner.is_some());
    for (name, path) in &c.commands {
        // The busybox applets of the default image; never a way back to a shell.
        assert!(path.starts_with("/bin/"), "{name} → {path}");
        for escape in [
            "sh", "ash", "busybox", "env", "find", "xargs", "awk", "sed", "vi", "less", "more",
            "nice", "timeout", "nohup", "setsid", "chroot", "time", "script", "wget", "watch",
            "nc", "top",
        ] {
            assert_ne!(name, escape, "{name} can run other programs");
        }
    }
}
