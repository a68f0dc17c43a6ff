//! ScreenModel: the server's model of one session's screen, kept by a terminal emulator
//! (the vt100 crate, no escape parser of ours). The session feeds it every byte of output
//! it hands to a client, in order, and resizes it where it resizes the TTY; a client that
//! comes back gets the screen redrawn from it (`snapshot`) instead of a replay of raw
//! bytes. Invariant: a snapshot reflects exactly the output and resizes fed before it,
//! and holds no terminal query; memory is bounded by the grids (rows × cols, twice when
//! the alternate screen was used) and `scrollback` rows. Until a session has printed
//! `LAZY_BYTES` the model is only that output (and the resizes between it), so that an
//! idle session at its prompt costs its bytes, not its grids; a snapshot of it is drawn by
//! an emulator that lives for that snapshot.
//!
//! Output is parsed in place, on the session's thread, after the chunk has been handed to
//! the client: the session waits for its client anyway, and a worker thread cost more in
//! hand-offs than the parsing itself (docs/benchmarks.md). A flood of plain text (printable
//! ASCII, carriage returns and line feeds: `cat` of a log, `seq`, `yes`) is not parsed
//! whole: only its last rows can still be seen, so it is held back and only enough of its
//! end to fill the screen, the scrollback and a margin is parsed (`hold`).

use std::collections::VecDeque;
use std::num::NonZeroU16;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;

#[cfg(test)]
mod tests;

/// Raw output kept to find an escape sequence or a character cut by the end of the output
/// so far: the snapshot ends with it, so that the live bytes after it complete it.
const TAIL: usize = 512;
/// The longest window title a snapshot carries, in characters.
const TITLE_MAX: usize = 256;

/// Clears a client's terminal before a snapshot: full reset (modes, both screens, and in
/// xterm.js the scrollback), then screen and scrollback erased for terminals whose reset
/// keeps them.
pub const CLEAR: &str = "\x1bc\x1b[H\x1b[2J\x1b[3J";
/// Plain text held back at most; past it, its front is parsed.
const RUN_CAP: usize = 128 * 1024;
/// Rows of a flood of plain text parsed beyond the screen and the scrollback. Above the
/// scrollback, what the emulator remembers of rows gone by is their number, used when the
/// screen grows (up to 500 rows) to pull rows back: more than that many are parsed.
const RUN_MARGIN_ROWS: usize = 502;
/// Puts two marks in the top rows of a copy of the model (origin mode off, so that they
/// land there) and a line feed on its last row: the first row then holds the second mark
/// only if the scroll region is the whole screen.
const REGION_PROBE: &[u8] = b"\x1b[?6l\x1b[1;1HA\x1b[2;1HB\x1b[999;1H\n";
/// Leaves the alternate screen of a copy of the model, to read the primary one.
const LEAVE_ALTERNATE: &[u8] = b"\x1b[?47l";
/// Saves the cursor and switches the client to a cleared alternate screen.
const ENTER_ALTERNATE: &str = "\x1b[?1049h";

/// A terminal size, as the TTY has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub cols: u16,
    pub rows: u16,
}

/// Output a model keeps as bytes before it builds its grids: a session that has printed
/// little (an idle one at its prompt) costs those bytes, not rows × cols cells (32 bytes
/// each: 96 KiB at 100x30).
const LAZY_BYTES: usize = 16 * 1024;
/// Resizes a model without grids keeps between its bytes; past them it builds the grids.
const LAZY_RESIZES: usize = 16;

/// One session's screen.
pub struct ScreenModel {
    state: State,
}

enum State {
    /// No grids yet: the output so far, replayed into an emulator when a snapshot needs one
    /// (for the length of the snapshot) or when it outgrows `LAZY_BYTES` (for good).
    Unparsed(Unparsed),
    Parsed(Box<Emulator>),
}

struct Unparsed {
    /// The size before the first output.
    size: Size,
    scrollback: usize,
    output: Vec<u8>,
    /// Each resize after some output: how much output came before it, and the new size.
    resizes: Vec<(usize, Size)>,
}

impl Unparsed {
    /// An emulator shown this output, resized where the TTY was: the same screen as one
    /// fed all along (chunking changes nothing, see `floods_of_plain_text_end_as_if_parsed_whole`).
    fn replay(&self) -> Emulator {
        let mut emulator = Emulator::new(self.size, self.scrollback);
        let mut from = 0;
        for &(at, size) in &self.resizes {
            emulator.feed(&self.output[from..at]);
            emulator.resize(size);
            from = at;
        }
        emulator.feed(&self.output[from..]);
        emulator
    }
}

struct Emulator {
    parser: vt100::Parser<Title>,
    size: Size,
    scrollback: usize,
    /// The last `TAIL` bytes of output.
    tail: VecDeque<u8>,
    /// Plain text at the end of the output so far, not parsed yet.
    run: Vec<u8>,
    /// The length of `run` at which its front is next looked at: twice what was kept the
    /// last time, so that dropping costs a constant per byte.
    trim_at: usize,
}

/// Printable ASCII, carriage return and line feed: a printable byte takes one cell, and
/// nothing changes but the cells written and the cursor.
fn plain(byte: &u8) -> bool {
    matches!(byte, 0x20..=0x7e | b'\r' | b'\n')
}

/// The window title the session's programs set (OSC 0 or 2), as printable text.
#[derive(Default)]
struct Title(String);

impl vt100::Callbacks for Title {
    fn set_window_title(&mut self, _: &mut vt100::Screen, title: &[u8]) {
        self.0 = String::from_utf8_lossy(title)
            .chars()
            .filter(|c| !c.is_control())
            .take(TITLE_MAX)
            .collect();
    }
}

fn dimension(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

impl ScreenModel {
    /// An empty screen of `size` that keeps at most `scrollback` rows above it.
    pub fn new(size: Size, scrollback: usize) -> ScreenModel {
        ScreenModel {
            state: State::Unparsed(Unparsed {
                size,
                scrollback,
                output: Vec::new(),
                resizes: Vec::new(),
            }),
        }
    }

    /// Output, in the order the client is given it.
    pub fn feed(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Unparsed(u) if u.output.len() + data.len() <= LAZY_BYTES => {
                u.output.extend_from_slice(data);
            }
            State::Unparsed(_) => self.emulator().feed(data),
            State::Parsed(e) => e.feed(data),
        }
    }

    /// The TTY's new size, between the output before and after it.
    pub fn resize(&mut self, size: Size) {
        match &mut self.state {
            State::Unparsed(u) if u.output.is_empty() => u.size = size,
            State::Unparsed(u) if u.resizes.len() < LAZY_RESIZES => {
                u.resizes.push((u.output.len(), size));
            }
            State::Unparsed(_) => self.emulator().resize(size),
            State::Parsed(e) => e.resize(size),
        }
    }

    /// Bytes that redraw a terminal as this screen is, after everything fed so far:
    /// clear, window title, scrollback and primary screen, then the alternate screen if
    /// it is in use, cursor, attributes and input modes, then the start of an escape
    /// sequence or character that the output so far left unfinished.
    pub fn snapshot(&mut self) -> Bytes {
        match &mut self.state {
            // Drawn from an emulator that lives for this snapshot only.
            State::Unparsed(u) => u.replay().snapshot(),
            State::Parsed(e) => e.snapshot(),
        }
    }

    /// Whether output is held back unparsed: the session settles the model once output
    /// pauses, so that an idle session holds nothing but its screen. (Output kept as bytes
    /// before the grids exist is not held back: it is the whole model.)
    pub fn holds_output(&self) -> bool {
        match &self.state {
            State::Unparsed(_) => false,
            State::Parsed(e) => e.holds(),
        }
    }

    /// Parses the output held back.
    pub fn settle(&mut self) {
        if let State::Parsed(e) = &mut self.state {
            e.flush_run();
        }
    }

    /// Whether the grids exist (for tests and benchmarks of memory).
    pub fn has_grids(&self) -> bool {
        matches!(self.state, State::Parsed(_))
    }

    /// The plain text of the visible screen (for tests).
    pub fn contents(&mut self) -> String {
        let emulator = self.emulator();
        emulator.flush_run();
        emulator.parser.screen().contents()
    }

    /// The emulator, built from the output kept so far if there is none yet.
    fn emulator(&mut self) -> &mut Emulator {
        if let State::Unparsed(u) = &self.state {
            self.state = State::Parsed(Box::new(u.replay()));
        }
        match &mut self.state {
            State::Parsed(e) => e,
            State::Unparsed(_) => unreachable!("built just above"),
        }
    }
}

impl Emulator {
    fn new(size: Size, scrollback: usize) -> Emulator {
        Emulator {
            parser: vt100::Parser::new_with_callbacks(
                dimension(size.rows),
                dimension(size.cols),
                scrollback,
                Title::default(),
            ),
            size,
            scrollback,
            tail: VecDeque::with_capacity(TAIL),
            run: Vec::new(),
            trim_at: 0,
        }
    }

    /// Runs `f` on the emulator. The output comes from the sandbox: should the emulator
    /// fail on it (a bug of the crate), the screen starts again blank rather than taking
    /// the session down.
    fn guarded<T>(&mut self, what: &str, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(value) => Some(value),
            Err(_) => {
                log::warn!("the screen model failed ({what}); it starts again blank");
                *self = Emulator::new(self.size, self.scrollback);
                None
            }
        }
    }

    fn resize(&mut self, size: Size) {
        self.flush_run();
        self.size = size;
        self.guarded("resize", |e| {
            e.parser
                .set_size(dimension(size.rows), dimension(size.cols))
        });
    }

    fn feed(&mut self, data: &[u8]) {
        let mut data = data;
        if !self.run.is_empty() {
            let more = data.iter().take_while(|b| plain(b)).count();
            self.hold(&data[..more]);
            data = &data[more..];
            if data.is_empty() {
                return;
            }
            self.flush_run();
        }
        // Plain text at the end of this chunk may be the start of a flood.
        let text = data.iter().rev().take_while(|b| plain(b)).count();
        let (head, text) = data.split_at(data.len() - text);
        self.parse(head);
        if text.len() >= usize::from(self.size.cols) && self.may_hold() {
            self.hold(text);
        } else {
            self.parse(text);
        }
    }

    fn parse(&mut self, data: &[u8]) {
        self.guarded("output", |e| e.parser.process(data));
        self.remember(data);
    }

    fn remember(&mut self, data: &[u8]) {
        let keep = &data[data.len().saturating_sub(TAIL)..];
        let overflow = (self.tail.len() + keep.len()).saturating_sub(TAIL);
        self.tail.drain(..overflow);
        self.tail.extend(keep);
    }

    /// Plain text may be held back only where it would print from the first byte on (no
    /// sequence or character is unfinished) and scroll the whole screen into the
    /// scrollback (the scroll region is the whole screen).
    fn may_hold(&self) -> bool {
        if !self.unfinished().is_empty() {
            return false;
        }
        let mut probe = vt100::Parser::default();
        *probe.screen_mut() = self.parser.screen().clone();
        probe.process(REGION_PROBE);
        probe
            .screen()
            .cell(0, 0)
            .is_some_and(|c| c.contents() == "B")
    }

    /// Holds plain text back, and drops from its front what cannot be seen any more once
    /// the rest is parsed: the rest writes the whole screen, the scrollback and
    /// `RUN_MARGIN_ROWS` more rows from where the dropped part would have left the cursor.
    /// - Text alone: whole rows' worth are dropped. Each byte takes one cell, so what is
    ///   kept lands in the same columns, and once it alone scrolls the screen, the
    ///   scrollback and the margin out, the rows that differ are gone either way.
    /// - Lines: what is kept starts with a carriage return (after it the cursor is in the
    ///   first column either way) followed by enough line feeds to reach the last row from
    ///   anywhere, then to scroll out the screen, the scrollback and the margin.
    fn hold(&mut self, text: &[u8]) {
        self.run.extend_from_slice(text);
        self.remember(text);
        if self.run.len() < self.trim_at {
            return;
        }
        let cols = usize::from(self.size.cols);
        let rows = usize::from(self.size.rows);
        let beyond = self.scrollback.max(RUN_MARGIN_ROWS);
        let drop = if self.run.iter().any(|b| matches!(b, b'\r' | b'\n')) {
            let wanted = 2 * rows + beyond + 2;
            let mut feeds = 0;
            let mut from = 0;
            for (i, byte) in self.run.iter().enumerate().rev() {
                if *byte == b'\n' {
                    feeds += 1;
                } else if *byte == b'\r' && feeds >= wanted {
                    from = i;
                    break;
                }
            }
            from
        } else {
            let keep = (beyond + rows + 2) * cols;
            self.run.len().saturating_sub(keep) / cols * cols
        };
        self.run.drain(..drop);
        // Long lines with few line feeds: parsing the front keeps what is held bounded.
        if self.run.len() > RUN_CAP / 2 {
            let front: Vec<u8> = self.run.drain(..self.run.len() - RUN_CAP / 4).collect();
            self.guarded("output", |e| e.parser.process(&front));
        }
        self.trim_at = (2 * self.run.len()).max(16 * 1024);
    }

    /// Whether plain text is held back (parsed by `settle` or the next snapshot).
    fn holds(&self) -> bool {
        !self.run.is_empty()
    }

    /// Parses what is held back.
    fn flush_run(&mut self) {
        self.trim_at = 0;
        if !self.run.is_empty() {
            let run = std::mem::take(&mut self.run);
            self.guarded("output", |e| e.parser.process(&run));
        }
    }

    fn snapshot(&mut self) -> Bytes {
        self.flush_run();
        self.guarded("snapshot", |e| e.draw())
            .unwrap_or_else(|| Bytes::from_static(CLEAR.as_bytes()))
    }

    fn draw(&self) -> Bytes {
        let screen = self.parser.screen();
        let mut out = String::with_capacity(16 * 1024);
        out.push_str(CLEAR);
        let title = &self.parser.callbacks().0;
        if !title.is_empty() {
            out.push_str("\x1b]2;");
            out.push_str(title);
            out.push('\x07');
        }
        if screen.alternate_screen() {
            // The primary screen lies under the alternate one, unchanged since the switch:
            // a copy of the model that leaves the alternate screen shows it.
            let mut primary = vt100::Parser::default();
            *primary.screen_mut() = screen.clone();
            primary.process(LEAVE_ALTERNATE);
            write_primary(primary.screen(), &mut out);
            out.push_str(ENTER_ALTERNATE);
            out.push_str(&screen.contents_formatted());
        } else {
            write_primary(screen, &mut out);
        }
        out.push_str(&screen.input_mode_formatted());
        let mut out = out.into_bytes();
        out.extend(self.unfinished());
        Bytes::from(out)
    }

    /// The end of the output that a terminal has not acted on yet: an escape sequence or
    /// a UTF-8 character whose rest is still to come. Found by running a fresh parser over
    /// the tail and noting where the last complete thing ended.
    fn unfinished(&self) -> Vec<u8> {
        #[derive(Default)]
        struct Ends(bool);
        impl vte::Perform for Ends {
            fn print(&mut self, _: char) {
                self.0 = true;
            }
            fn execute(&mut self, _: u8) {
                self.0 = true;
            }
            fn unhook(&mut self) {
                self.0 = true;
            }
            fn osc_dispatch(&mut self, _: &[&[u8]], _: bool) {
                self.0 = true;
            }
            fn csi_dispatch(&mut self, _: &vte::Params, _: &[u8], _: bool, _: char) {
                self.0 = true;
            }
            fn esc_dispatch(&mut self, _: &[u8], _: bool, _: u8) {
                self.0 = true;
            }
        }
        let mut parser = vte::Parser::new();
        let mut ends = Ends::default();
        let mut complete = 0;
        for (i, byte) in self.tail.iter().enumerate() {
            parser.advance(&mut ends, &[*byte]);
            if std::mem::take(&mut ends.0) {
                complete = i + 1;
            }
        }
        self.tail.iter().skip(complete).copied().collect()
    }
}

/// Scrollback and primary screen. The scrollback rows go out one after the other, each
/// ending with a line break, so that the client scrolls exactly them above its screen; a
/// row that the model has soft-wrapped runs on into the next instead when both are full at
/// the seam, so that a client can still reflow it. The visible rows are then drawn in
/// place, with the cursor and attributes.
fn write_primary(screen: &vt100::Screen, out: &mut String) {
    let (rows, cols) = screen.size();
    let last = cols.get() - 1;
    let scrollback = screen.scrollback_len();
    // The model's view scrolled back so that a scrollback row is its top row.
    let mut view = screen.clone();
    for n in 0..scrollback {
        view.set_scrollback(scrollback - n);
        if let Some(row) = view.rows_formatted(0, cols.get()).next() {
            out.push_str(&row);
        }
        out.push_str("\x1b[m");
        let runs_on = n + 1 < scrollback
            && view.row_wrapped(0)
            && view.cell(0, last).is_some_and(vt100::Cell::has_contents)
            && view.cell(1, 0).is_some_and(vt100::Cell::has_contents);
        if !runs_on {
            out.push_str("\r\n");
        }
    }
    if scrollback > 0 {
        // Down to the last row, so that the client has scrolled exactly the scrollback.
        for _ in 1..rows.get() {
            out.push_str("\r\n");
        }
    }
    out.push_str(&screen.contents_formatted());
}
