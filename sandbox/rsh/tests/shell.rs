//! termcell-rsh as a user meets it: the real binary on a real pseudo-terminal (line
//! editing, history, completion, Ctrl-C during a command, a stopped command, Ctrl-D, a
//! resize), and
//! fed lines on a pipe (the injection attempts, checked to run nothing). Commands are
//! termcell-showargs, which prints exactly the argv and environment it got, and small
//! scripts in a temporary directory.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcsetwinsize, Winsize};

const RSH: &str = env!("CARGO_BIN_EXE_termcell-rsh");
const SHOWARGS: &str = env!("CARGO_BIN_EXE_termcell-showargs");
/// How long a test waits for output it expects.
const WAIT: Duration = Duration::from_secs(10);

/// A directory with the scripts the shell may run and the marker they leave.
struct Programs {
    dir: tempfile::TempDir,
}

impl Programs {
    fn new() -> Programs {
        let programs = Programs {
            // Under the target directory: a /tmp mounted noexec would stop the scripts.
            dir: tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap(),
        };
        let marker = programs.marker();
        // Leaves a mark: proves that a line ran it.
        programs.script("mark", &format!("echo ran >> {}", marker.display()));
        // Says when it runs, then waits to be interrupted.
        programs.script("wait", "echo waiting; exec sleep 60");
        // Stops itself (a stop the way Ctrl-Z does it, whatever the process group).
        programs.script("stop", "echo stopping; kill -STOP $$; echo continued");
        // Leaves the terminal raw and silent, and fails.
        programs.script("rawmode", "stty raw -echo; exit 3");
        programs
    }

    fn script(&self, name: &str, body: &str) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn marker(&self) -> PathBuf {
        self.dir.path().join("marker")
    }

    /// The shell's arguments: these programs, `showargs` and a prompt of its own.
    fn args(&self) -> Vec<String> {
        let mut args = vec!["--prompt".to_string(), "rsh> ".to_string()];
        for (name, path) in [
            ("mark", self.path("mark")),
            ("wait", self.path("wait")),
            ("stop", self.path("stop")),
            ("rawmode", self.path("rawmode")),
            ("showargs", PathBuf::from(SHOWARGS)),
        ] {
            args.push("--allow".into());
            args.push(format!("{name}={}", path.display()));
        }
        args
    }
}

/// The shell on the user side of a pseudo-terminal.
struct Terminal {
    master: File,
    child: Child,
    output: Receiver<Vec<u8>>,
    /// Everything read so far, and how much of it earlier expectations consumed.
    seen: Vec<u8>,
    consumed: usize,
}

impl Terminal {
    fn start(args: &[String], env: &[(&str, &str)]) -> Terminal {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        set_size(&master, 80, 24);
        let user = File::options()
            .read(true)
            .write(true)
            .open(Path::new(name.to_str().unwrap()))
            .unwrap();
        let mut command = Command::new(RSH);
        command
            .args(args)
            .env_clear()
            .env("HOME", "/home/tester")
            .env("PATH", "/usr/bin:/bin")
            .env("TERM", "xterm-256color")
            .envs(env.iter().copied())
            .stdin(Stdio::from(user.try_clone().unwrap()))
            .stdout(Stdio::from(user.try_clone().unwrap()))
            .stderr(Stdio::from(user));
        // SAFETY: setsid and the TIOCSCTTY ioctl are single system calls, safe between
        // fork and exec; fd 0 is the terminal by then.
        unsafe {
            command.pre_exec(|| {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(BorrowedFd::borrow_raw(0))?;
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        let master = File::from(master);
        let mut reader = master.try_clone().unwrap();
        let (tx, output) = channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            master,
            child,
            output,
            seen: Vec::new(),
            consumed: 0,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Waits until the output after the last expectation contains `text`; returns that
    /// output up to and including it.
    fn expect(&mut self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let fresh = &self.seen[self.consumed..];
            if let Some(at) = find(fresh, text.as_bytes()) {
                let end = self.consumed + at + text.len();
                let got = String::from_utf8_lossy(&self.seen[self.consumed..end]).to_string();
                self.consumed = end;
                return got;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.seen.extend(chunk),
                Err(_) => panic!(
                    "no {text:?} in the output; after the last match it was:\n{:?}",
                    String::from_utf8_lossy(&self.seen[self.consumed..])
                ),
            }
        }
    }

    /// Types `line` and Enter, and waits for the next prompt; returns what came between.
    fn run(&mut self, line: &str) -> String {
        self.send(line.as_bytes());
        self.send(b"\r");
        self.expect("\r\n");
        self.expect("rsh> ")
    }

    fn resize(&self, cols: u16, rows: u16) {
        set_size(self.master.as_fd(), cols, rows);
    }

    /// Waits for the shell to exit; its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the shell did not exit");
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_size(fd: impl AsFd, cols: u16, rows: u16) {
    tcsetwinsize(
        fd,
        Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The argv lines showargs printed.
fn argv(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|l| l.starts_with("argv["))
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect()
}

fn expected_argv(args: &[&str]) -> Vec<String> {
    std::iter::once(SHOWARGS)
        .chain(args.iter().copied())
        .enumerate()
        .map(|(i, a)| format!("argv[{i}]={a:?}"))
        .collect()
}

/// The shell on a terminal, allowing [`Programs`], at its first prompt.
fn shell() -> (Programs, Terminal) {
    let programs = Programs::new();
    let mut t = Terminal::start(&programs.args(), &[]);
    t.expect("rsh> ");
    (programs, t)
}

#[test]
fn line_editing_history_and_completion_on_a_terminal() {
    let (_programs, mut t) = shell();

    // TAB completes the name; quotes group; editing keys move inside the line.
    t.send(b"sho\t");
    t.expect("showargs ");
    t.send(b"'a b' d");
    t.send(b"\x1b[D"); // left, before d
    t.send(b"c\\ ");
    t.send(b"\x01\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C\x1b[C"); // home, 8 × right
                                                                     // Delete takes the blank after the name away, and a blank typed puts it back.
    t.send(b"\x1b[3~");
    t.send(b" ");
    let out = t.run("\x05 \"e\"'f'");
    assert_eq!(argv(&out), expected_argv(&["a b", "c d", "ef"]), "{out}");

    // Ctrl-U, Ctrl-K and Ctrl-W.
    t.send(b"junk\x15showargs one two three\x17\x17\x1b[D\x1b[D\x0b");
    let out = t.run("\x05X");
    assert_eq!(argv(&out), expected_argv(&["onX"]), "{out}");

    // Up recalls the last line, twice the one before; Ctrl-R finds by a part.
    let out = t.run("\x1b[A\x1b[A");
    assert_eq!(argv(&out), expected_argv(&["a b", "c d", "ef"]), "{out}");
    let out = t.run("\x12onX");
    assert_eq!(argv(&out), expected_argv(&["onX"]), "{out}");
    let out = t.run("history");
    assert!(out.contains("1  showargs 'a b' c\\ d \"e\"'f'"), "{out}");
    assert!(out.contains("5  history"), "{out}");

    // Wide and combining characters arrive as typed.
    let out = t.run("showargs 界xe\u{301}\x1b[D\x7f");
    assert_eq!(argv(&out), expected_argv(&["界e\u{301}"]), "{out}");

    // A resize redraws the line; Enter still runs exactly what was typed.
    t.send(b"showargs 0123456789 0123456789 0123456789 0123456789 0123456789 0123456789");
    t.expect("56789");
    t.resize(40, 24);
    t.expect("\x1b[J");
    t.expect("rsh> showargs");
    let out = t.run("");
    assert_eq!(argv(&out).len(), 7, "{out}");
    t.send(b"exit\r");
    assert_eq!(t.exit_code(), Some(0));
}

#[test]
fn ctrl_c_interrupts_a_command_and_the_shell_survives() {
    let (programs, mut t) = shell();

    // On a line: cancelled, nothing runs.
    t.send(b"mark\x03");
    t.expect("^C\r\n");
    t.expect("rsh> ");

    // During a command: the command gets SIGINT and ends; the shell is still there.
    t.send(b"wait\r");
    t.expect("waiting");
    t.send(b"\x03");
    t.expect("wait: ended by signal 2 (SIGINT)");
    t.expect("rsh> ");

    // A stopped command is continued: there is no job control to resume it later.
    let out = t.run("stop");
    assert!(
        out.contains("stopping") && out.contains("continued"),
        "{out}"
    );
    assert!(!out.contains("stop:"), "it ended normally: {out}");

    // A command that leaves the terminal raw: the shell's message still ends its line.
    let out = t.run("rawmode");
    assert!(out.contains("rawmode: exit status 3\r\n"), "{out:?}");

    let out = t.run("showargs still-here");
    assert_eq!(argv(&out), expected_argv(&["still-here"]), "{out}");
    assert!(
        !programs.marker().exists(),
        "the cancelled line did not run"
    );
    drop(t);
}

#[test]
fn ctrl_d_exits_only_on_an_empty_line() {
    let (_programs, mut t) = shell();
    t.send(b"abc\x04");
    std::thread::sleep(Duration::from_millis(200));
    assert!(t.child.try_wait().unwrap().is_none(), "still running");
    t.send(b"\x15\x04");
    assert_eq!(t.exit_code(), Some(0));
}

#[test]
fn refused_lines_on_a_terminal_run_nothing() {
    let (programs, mut t) = shell();
    let out = t.run("mark; mark");
    assert!(
        out.contains("refused: ';' at position 5: one command per line"),
        "{out}"
    );
    let out = t.run("sh");
    assert!(out.contains("refused: sh: not an allowed command"), "{out}");
    // A paste of 10 KiB and a line with an invalid UTF-8 byte.
    let mut paste = b"mark ".to_vec();
    paste.extend(std::iter::repeat_n(b'x', 10 * 1024));
    t.send(&paste);
    let out = t.run("");
    assert!(
        out.contains("refused: the line is longer than 4096 bytes"),
        "{out}"
    );
    t.send(b"mark \xff");
    let out = t.run("");
    assert!(
        out.contains("refused: the line is not valid UTF-8 (byte 0xFF at byte 6)"),
        "{out}"
    );
    assert!(!programs.marker().exists(), "nothing ran");
    t.run("mark");
    assert!(programs.marker().exists(), "the marker works");
}

/// Feeds `input` to the shell on a pipe; its stdout and stderr.
fn batch(args: &[String], env: &[(&str, &str)], input: &[u8]) -> (String, String) {
    let mut child = Command::new(RSH)
        .args(args)
        .env_clear()
        .env("HOME", "/home/tester")
        .env("PATH", "/usr/bin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn injection_attempts_run_nothing() {
    let programs = Programs::new();
    let attempts: &[&[u8]] = &[
        b"mark; mark",
        b"mark && mark",
        b"mark | mark",
        b"mark > /tmp/x",
        b"mark < /etc/passwd",
        b"$(mark)",
        b"`mark`",
        b"mark $HOME",
        b"mark \"$(mark)\"",
        b"mark '`mark`'",
        b"sh",
        b"sh -c mark",
        b"/bin/sh",
        b"../../bin/sh",
        b"./mark",
        b"mark\rsh",
        b"mark\x00sh",
        b"mark \x1b[31m",
        b"mark \xff",
        b"env LD_PRELOAD=/tmp/x.so mark",
        b"LD_PRELOAD=/tmp/x.so mark",
        b"'mark",
        b"mark \\",
    ];
    let mut input = Vec::new();
    for a in attempts {
        input.extend_from_slice(a);
        input.push(b'\n');
    }
    input.extend(std::iter::repeat_n(b'a', 10 * 1024));
    input.push(b'\n');
    let (out, err) = batch(&programs.args(), &[], &input);
    assert!(out.is_empty(), "{out}");
    let refusals: Vec<&str> = err.lines().filter(|l| l.starts_with("refused: ")).collect();
    assert_eq!(refusals.len(), attempts.len() + 1, "{err}");
    assert!(!programs.marker().exists(), "nothing ran: {err}");
}

#[test]
fn allowed_commands_get_exactly_the_typed_arguments_and_an_allowlisted_environment() {
    let programs = Programs::new();
    let env = [
        ("LANG", "C.UTF-8"),
        ("ABLY_API_KEY", "key"),
        ("LD_PRELOAD", "/nonexistent/preload.so"),
        ("LD_LIBRARY_PATH", "/tmp"),
        ("BASH_ENV", "/tmp/rc"),
        ("ENV", "/tmp/rc"),
        ("NODE_OPTIONS", "--require /tmp/x.js"),
        ("PYTHONSTARTUP", "/tmp/x.py"),
        ("SECRET_OF_THE_HOST", "x"),
    ];
    let (out, err) = batch(
        &programs.args(),
        &env,
        b"showargs plain 'single quoted' \"double quoted\" esc\\ aped '' \"\" '*' ~ {a,b} 'a\"b' \"c'd\" --flag=x\n",
    );
    assert_eq!(
        argv(&out),
        expected_argv(&[
            "plain",
            "single quoted",
            "double quoted",
            "esc aped",
            "",
            "",
            "*",
            "~",
            "{a,b}",
            "a\"b",
            "c'd",
            "--flag=x",
        ]),
        "{out}{err}"
    );
    let env_lines: Vec<&str> = out.lines().filter(|l| l.starts_with("env ")).collect();
    assert_eq!(
        env_lines,
        [
            "env \"ABLY_API_KEY\"=\"key\"",
            "env \"HOME\"=\"/home/tester\"",
            "env \"LANG\"=\"C.UTF-8\"",
            "env \"PATH\"=\"/usr/bin:/bin\"",
        ],
        "{out}"
    );
}

#[test]
fn a_bad_configuration_stops_the_shell_with_its_reason() {
    let out = Command::new(RSH)
        .args(["--allow", "sh=bin/sh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"bin/sh\" is not an absolute path"), "{err}");
}
