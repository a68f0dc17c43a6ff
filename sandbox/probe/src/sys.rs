//! Process plumbing for the probe: run a closure in a forked child with a deadline and
//! report how it ended, so a blocked syscall that kills (SIGSYS) cannot kill the probe.

use std::io::{self, Write};

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEnd {
    Exited(i32),
    Signaled(i32),
}

/// Exit code a child uses when its own setup failed or it panicked; errno values are
/// all below it, so it cannot be mistaken for one.
pub const CHILD_SETUP_FAILED: i32 = 255;

/// The calling thread's errno.
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Maps a raw syscall return value to a child exit code: 0 on success, else errno.
pub fn syscall_code(ret: libc::c_long) -> i32 {
    if ret >= 0 {
        0
    } else {
        errno()
    }
}

/// Runs `f` in a forked child that is killed by SIGALRM after `timeout_s` seconds;
/// `f`'s return value is the child's exit code. The probe is single-threaded, so
/// fork is safe here.
pub fn in_child(timeout_s: u32, f: impl FnOnce() -> i32) -> io::Result<ChildEnd> {
    // Nothing buffered may be duplicated into the child.
    let _ = io::stdout().flush();
    // SAFETY: single-threaded process; the child only runs `f` and then `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: plain libc calls in the child; `_exit` never returns, so an unwinding
        // panic can never continue the parent's code in the child.
        unsafe { libc::alarm(timeout_s) };
        let code =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(CHILD_SETUP_FAILED);
        unsafe { libc::_exit(code) };
    }
    wait(pid)
}

/// Waits for `pid` and decodes its status.
pub fn wait(pid: libc::pid_t) -> io::Result<ChildEnd> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && errno() != libc::EINTR {
            return Err(io::Error::last_os_error());
        }
    }
    if libc::WIFEXITED(status) {
        Ok(ChildEnd::Exited(libc::WEXITSTATUS(status)))
    } else {
        Ok(ChildEnd::Signaled(libc::WTERMSIG(status)))
    }
}

/// A short symbolic name for the errno values the probe meets.
pub fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

/// A short symbolic name for a signal number.
pub fn signal_name(s: i32) -> String {
    let name = match s {
        libc::SIGKILL => "SIGKILL",
        libc::SIGSYS => "SIGSYS",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGALRM => "SIGALRM",
        libc::SIGABRT => "SIGABRT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        _ => return format!("signal {s}"),
    };
    name.to_string()
}

/// Verdict for a syscall that must be refused by the sandbox: EPERM, ENOSYS or death by
/// SIGSYS pass; success, another errno (the call reached the kernel, so the filter did
/// not stop it) or another signal fail.
pub fn denied(end: io::Result<ChildEnd>) -> (bool, String) {
    match end {
        Err(e) => (false, format!("could not fork a child: {e}")),
        Ok(ChildEnd::Exited(0)) => (false, "the call succeeded".into()),
        Ok(ChildEnd::Exited(CHILD_SETUP_FAILED)) => (false, "the child failed to set up".into()),
        Ok(ChildEnd::Exited(e)) if e == libc::EPERM || e == libc::ENOSYS => (true, errno_name(e)),
        Ok(ChildEnd::Exited(e)) => (
            false,
            format!(
                "failed with {} (reached the kernel unfiltered)",
                errno_name(e)
            ),
        ),
        Ok(ChildEnd::Signaled(s)) if s == libc::SIGSYS => (true, "killed by SIGSYS".into()),
        Ok(ChildEnd::Signaled(s)) => (false, format!("killed by {}", signal_name(s))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_exit_codes_and_signals_are_reported() {
        assert_eq!(in_child(5, || 7).unwrap(), ChildEnd::Exited(7));
        let end = in_child(5, || {
            // SAFETY: the child kills itself.
            unsafe { libc::raise(libc::SIGSYS) };
            0
        })
        .unwrap();
        assert_eq!(end, ChildEnd::Signaled(libc::SIGSYS));
    }

    #[test]
    fn a_panicking_child_exits_with_the_setup_code() {
        let end = in_child(5, || panic!("boom")).unwrap();
        assert_eq!(end, ChildEnd::Exited(CHILD_SETUP_FAILED));
    }

    #[test]
    fn a_hanging_child_is_stopped_by_its_deadline() {
        let end = in_child(1, || loop {
            // SAFETY: waits for a signal; SIGALRM ends the child.
            unsafe { libc::pause() };
        })
        .unwrap();
        assert_eq!(end, ChildEnd::Signaled(libc::SIGALRM));
    }

    #[test]
    fn syscall_codes() {
        // SAFETY: getpid has no preconditions.
        assert_eq!(syscall_code(unsafe { libc::syscall(libc::SYS_getpid) }), 0);
        // SAFETY: closing an invalid fd only sets errno.
        assert_eq!(
            syscall_code(unsafe { libc::syscall(libc::SYS_close, -1) }),
            libc::EBADF
        );
    }

    #[test]
    fn denial_verdicts() {
        assert!(denied(Ok(ChildEnd::Exited(libc::EPERM))).0);
        assert!(denied(Ok(ChildEnd::Exited(libc::ENOSYS))).0);
        assert!(denied(Ok(ChildEnd::Signaled(libc::SIGSYS))).0);
        assert!(!denied(Ok(ChildEnd::Exited(0))).0);
        let (ok, why) = denied(Ok(ChildEnd::Exited(libc::EINVAL)));
        assert!(!ok);
        assert!(why.contains("EINVAL"), "{why}");
        assert!(!denied(Ok(ChildEnd::Signaled(libc::SIGSEGV))).0);
        assert!(!denied(Ok(ChildEnd::Exited(CHILD_SETUP_FAILED))).0);
    }
}
