//! Running an allowlisted program: spawned directly (execve of its absolute path, which is
//! also its `argv[0]`), with the filtered environment and the shell's terminal, and waited
//! for. Invariant: no shell and no `PATH` lookup stand between the typed line and the
//! program; the arguments are exactly the parsed words.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::io::Errno;
use rustix::process::{kill_process, waitpid, Pid, Signal, WaitOptions};

use crate::command::Invocation;

/// How a program ended.
#[derive(Debug)]
pub enum Ended {
    Code(i32),
    Signal(i32),
    /// It could not be started (missing, not executable, ...).
    NotStarted(std::io::Error),
    /// Waiting for it failed; how it ended is unknown.
    Lost(std::io::Error),
}

/// Runs `invocation` with exactly `env` and waits for it. A program stopped by a signal
/// (Ctrl-Z) is continued: there is no job control to resume it later, and the shell
/// would otherwise wait forever.
pub fn run(invocation: &Invocation, env: &[(OsString, OsString)]) -> Ended {
    let child = Command::new(&invocation.path)
        .arg0(&invocation.path)
        .args(&invocation.args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => return Ended::NotStarted(e),
    };
    let pid = Pid::from_child(&child);
    loop {
        match waitpid(Some(pid), WaitOptions::UNTRACED) {
            Ok(Some((_, status))) if status.stopped() => {
                let _ = kill_process(pid, Signal::CONT);
            }
            Ok(Some((_, status))) => {
                if let Some(signal) = status.terminating_signal() {
                    return Ended::Signal(signal);
                }
                return Ended::Code(status.exit_status().unwrap_or(0));
            }
            Ok(None) | Err(Errno::INTR) => continue,
            Err(e) => return Ended::Lost(e.into()),
        }
    }
}

/// What the user is told about an end, or nothing for a plain success.
pub fn describe(invocation: &Invocation, ended: &Ended) -> Option<String> {
    let name = &invocation.name;
    match ended {
        Ended::Code(0) => None,
        Ended::Code(code) => Some(format!("{name}: exit status {code}")),
        Ended::Signal(signal) => Some(format!(
            "{name}: ended by signal {signal}{}",
            signal_name(*signal)
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        )),
        Ended::NotStarted(e) => Some(format!("{name}: cannot run {}: {e}", invocation.path)),
        Ended::Lost(e) => Some(format!("{name}: lost track of it: {e}")),
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        31 => "SIGSYS",
        _ => return None,
    })
}
