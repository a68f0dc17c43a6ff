//! termcell-entry: the sandbox's first program (under the init). It turns echo off on its
//! terminal, says it is ready, reads exactly one line — the session's environment, which
//! the server writes — restores the terminal and execs the session's shell with that
//! environment added. Invariant: the shell runs only after a whole valid line; anything
//! else (a malformed or overlong line, none in time, a closed terminal) exits non-zero,
//! and nothing of the line is ever echoed or printed.
//!
//! Usage: termcell-entry [--timeout SECONDS] -- PROGRAM [ARG...]

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::time::Duration;

use rustix::termios::{isatty, tcgetattr, tcsetattr, OptionalActions, Termios};
use termcell_entry::{line, READY};

/// How long the line is awaited unless `--timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Exit codes: the arguments are wrong; the line was refused; the shell could not be run.
const USAGE: u8 = 2;
const REFUSED: u8 = 3;
const EXEC_FAILED: u8 = 126;

#[derive(Debug, PartialEq, Eq)]
struct Args {
    timeout: Duration,
    program: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut timeout = DEFAULT_TIMEOUT;
    let mut rest = args;
    loop {
        match rest {
            [flag, value, tail @ ..] if flag == "--timeout" => {
                let secs: u64 =
                    value.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("--timeout takes whole seconds > 0, not {value:?}")
                    })?;
                timeout = Duration::from_secs(secs);
                rest = tail;
            }
            [dashes, program @ ..] if dashes == "--" && !program.is_empty() => {
                return Ok(Args {
                    timeout,
                    program: program.to_vec(),
                })
            }
            _ => {
                return Err("usage: termcell-entry [--timeout SECONDS] -- PROGRAM [ARG...]".into())
            }
        }
    }
}

/// The terminal's settings while the line is read: no echo, no line editing, no signal
/// or flow-control characters, no CR translation: the bytes arrive exactly as written.
fn quiet(original: &Termios) -> Termios {
    let mut raw = original.clone();
    raw.make_raw();
    raw
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("termcell-entry: {e}");
            return ExitCode::from(USAGE);
        }
    };
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    // Without a terminal (a pipe) there is nothing to echo: the line is read as it is.
    let original = if isatty(fd) {
        match tcgetattr(fd) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("termcell-entry: reading the terminal's settings failed: {e}");
                return ExitCode::from(REFUSED);
            }
        }
    } else {
        None
    };
    if let Some(original) = &original {
        if let Err(e) = tcsetattr(fd, OptionalActions::Now, &quiet(original)) {
            eprintln!("termcell-entry: turning echo off failed: {e}");
            return ExitCode::from(REFUSED);
        }
    }
    let _ = rustix::io::write(std::io::stdout(), READY);
    let read = line::read_line(fd, args.timeout);
    // `Now`, never a flush: bytes after the line are the user's, for the shell.
    if let Some(original) = &original {
        let _ = tcsetattr(fd, OptionalActions::Now, original);
    }
    let vars = match read.and_then(|l| line::parse(&l)) {
        Ok(vars) => vars,
        Err(e) => {
            eprintln!("termcell-entry: {e}");
            return ExitCode::from(REFUSED);
        }
    };
    let error = Command::new(&args.program[0])
        .args(&args.program[1..])
        .envs(vars)
        .exec();
    eprintln!("termcell-entry: cannot run {}: {error}", args.program[0]);
    ExitCode::from(EXEC_FAILED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Result<Args, String> {
        parse_args(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn arguments_name_a_program_after_dashes() {
        assert_eq!(
            args(&["--", "/bin/sh", "-l"]).unwrap(),
            Args {
                timeout: DEFAULT_TIMEOUT,
                program: vec!["/bin/sh".into(), "-l".into()]
            }
        );
        assert_eq!(
            args(&["--timeout", "3600", "--", "/bin/sh"])
                .unwrap()
                .timeout,
            Duration::from_secs(3600)
        );
        for bad in [
            &[][..],
            &["--"][..],
            &["/bin/sh"][..],
            &["--timeout", "0", "--", "sh"][..],
            &["--timeout", "x", "--", "sh"][..],
            &["--timeout"][..],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }
}
