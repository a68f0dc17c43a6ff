//! The terminal: raw mode while a line is edited, the terminal's own settings while
//! anything else runs, its width, and the signals a shell must live through. Invariant:
//! the terminal is in raw mode only inside [`Terminal::read_line`] (commands, built-ins
//! and messages always see the settings the shell started with), and no signal the
//! terminal sends on a key (Ctrl-C, Ctrl-\, Ctrl-Z) ends or stops the shell.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::termios::{isatty, tcgetattr, tcgetwinsize, tcsetattr, OptionalActions, Termios};
use signal_hook::consts::{SIGINT, SIGQUIT, SIGTSTP, SIGWINCH};

use crate::editor::history::History;
use crate::editor::keys::{Decoder, Key};
use crate::editor::{Editor, Outcome};

/// How long the rest of an escape sequence or of a UTF-8 character may take to arrive
/// before what came is taken as it is (ESC alone is the Escape key).
const KEY_TIMEOUT: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 100_000_000,
};

/// Gives SIGINT, SIGQUIT and SIGTSTP a handler that does nothing. A handler, not "ignore":
/// the terminal sends these to the shell and the command it runs alike (same process
/// group), and exec resets a handled signal to its default in the command, which therefore
/// stops or ends as usual, whereas an ignored signal would stay ignored there.
pub fn survive_terminal_signals() -> std::io::Result<()> {
    let unused = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGQUIT, SIGTSTP] {
        signal_hook::flag::register(signal, Arc::clone(&unused))?;
    }
    Ok(())
}

pub struct Terminal {
    original: Termios,
    raw: Termios,
    /// Readable after each SIGWINCH.
    resized: UnixStream,
    decoder: Decoder,
    /// Keys read but not yet handled (the rest of a paste after a finished line).
    keys: VecDeque<Key>,
}

impl Terminal {
    /// The terminal on stdin and stdout, or `None` when either is not one.
    pub fn open() -> std::io::Result<Option<Terminal>> {
        let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
        if !isatty(stdin.as_fd()) || !isatty(stdout.as_fd()) {
            return Ok(None);
        }
        let original = tcgetattr(stdin.as_fd())?;
        let mut raw = original.clone();
        raw.make_raw();
        let (resized, notify) = UnixStream::pair()?;
        resized.set_nonblocking(true)?;
        signal_hook::low_level::pipe::register(SIGWINCH, notify)?;
        Ok(Some(Terminal {
            original,
            raw,
            resized,
            decoder: Decoder::default(),
            keys: VecDeque::new(),
        }))
    }

    /// Columns of the terminal (80 when it does not say).
    pub fn width(&self) -> usize {
        match tcgetwinsize(std::io::stdout().as_fd()) {
            Ok(size) if size.ws_col > 0 => size.ws_col.into(),
            _ => 80,
        }
    }

    /// Puts the terminal's own settings back (after a command that changed them).
    pub fn restore(&self) -> std::io::Result<()> {
        tcsetattr(
            std::io::stdin().as_fd(),
            OptionalActions::Now,
            &self.original,
        )?;
        Ok(())
    }

    /// Reads one line with `editor`; the terminal is back in its own mode on return.
    pub fn read_line(
        &mut self,
        editor: &mut Editor,
        history: &History,
    ) -> std::io::Result<Outcome> {
        tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.raw)?;
        let outcome = self.edit(editor, history);
        self.restore()?;
        outcome
    }

    fn edit(&mut self, editor: &mut Editor, history: &History) -> std::io::Result<Outcome> {
        let mut out = String::new();
        editor.begin(self.width(), &mut out);
        write_out(&out)?;
        let stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            out.clear();
            while let Some(key) = self.keys.pop_front() {
                if let Some(outcome) = editor.key(key, history, &mut out) {
                    write_out(&out)?;
                    return Ok(outcome);
                }
            }
            editor.flush(&mut out);
            write_out(&out)?;
            let timeout = self.decoder.has_pending().then_some(&KEY_TIMEOUT);
            let (input_ready, resized) = {
                let mut fds = [
                    PollFd::new(&stdin, PollFlags::IN),
                    PollFd::new(&self.resized, PollFlags::IN),
                ];
                match poll(&mut fds, timeout) {
                    Ok(0) => {
                        self.decoder.flush(&mut self.keys);
                        continue;
                    }
                    Ok(_) => (!fds[0].revents().is_empty(), !fds[1].revents().is_empty()),
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            if resized {
                while (&self.resized).read(&mut buf).is_ok_and(|n| n > 0) {}
                out.clear();
                editor.resize(self.width(), &mut out);
                write_out(&out)?;
            }
            if input_ready {
                // Straight from the descriptor: a buffer in between would hold bytes that
                // poll no longer reports.
                match rustix::io::read(stdin.as_fd(), &mut buf) {
                    // The terminal is gone (hangup): like Ctrl-D.
                    Ok(0) | Err(Errno::IO) => return Ok(Outcome::EndOfInput),
                    Ok(n) => self.decoder.feed(&buf[..n], &mut self.keys),
                    Err(Errno::INTR | Errno::AGAIN) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}

fn write_out(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}
