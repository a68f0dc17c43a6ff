use std::collections::VecDeque;

use unicode_width::UnicodeWidthChar;

use super::keys::Decoder;
use super::*;

/// A small xterm-like screen: enough of a terminal to check what the editor draws
/// (printing with pending wrap and wide characters, CR, LF, cursor moves, erasing) and
/// how a terminal rewraps lines when its width changes.
#[derive(Debug)]
struct Screen {
    cols: usize,
    rows: Vec<Row>,
    row: usize,
    col: usize,
    pending_wrap: bool,
}

#[derive(Debug, Clone, Default)]
struct Row {
    cells: Vec<Cell>,
    /// The row continues on the next one (the terminal wrapped it).
    wrapped: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Empty,
    Text(String),
    WideTail,
}

impl Screen {
    fn new(cols: usize) -> Screen {
        Screen {
            cols,
            rows: vec![Row::default()],
            row: 0,
            col: 0,
            pending_wrap: false,
        }
    }

    fn cell(&mut self, row: usize, col: usize) -> &mut Cell {
        while self.rows.len() <= row {
            self.rows.push(Row::default());
        }
        let cells = &mut self.rows[row].cells;
        if cells.len() <= col {
            cells.resize(col + 1, Cell::Empty);
        }
        &mut cells[col]
    }

    fn next_row(&mut self) {
        self.row += 1;
        self.cell(self.row, 0);
    }

    fn print(&mut self, c: char) {
        let width = c.width().unwrap_or(0);
        if width == 0 {
            let col = if self.pending_wrap {
                self.col
            } else {
                self.col.saturating_sub(1)
            };
            if let Cell::Text(s) = self.cell(self.row, col) {
                s.push(c);
            }
            return;
        }
        if self.pending_wrap || self.col + width > self.cols {
            self.rows[self.row].wrapped = true;
            self.next_row();
            self.col = 0;
            self.pending_wrap = false;
        }
        *self.cell(self.row, self.col) = Cell::Text(c.to_string());
        if width == 2 {
            *self.cell(self.row, self.col + 1) = Cell::WideTail;
        }
        self.col += width;
        if self.col >= self.cols {
            self.col = self.cols - 1;
            self.pending_wrap = true;
        }
    }

    fn write(&mut self, out: &str) {
        let mut chars = out.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => {
                    self.col = 0;
                    self.pending_wrap = false;
                }
                '\n' => {
                    self.next_row();
                    self.pending_wrap = false;
                }
                '\x07' => {}
                '\x1b' => {
                    assert_eq!(chars.next(), Some('['), "only CSI sequences: {out:?}");
                    let mut params = String::new();
                    let final_char = loop {
                        let c = chars.next().expect("a final byte");
                        if c.is_ascii_digit() || c == ';' {
                            params.push(c);
                        } else {
                            break c;
                        }
                    };
                    let n: usize = params.parse().unwrap_or(1).max(1);
                    self.pending_wrap = false;
                    match final_char {
                        'A' => self.row = self.row.checked_sub(n).expect("moved above the top"),
                        'B' => {
                            self.row += n;
                            self.cell(self.row, 0);
                        }
                        'C' => self.col = (self.col + n).min(self.cols - 1),
                        'J' if params == "2" => {
                            self.rows = vec![Row::default(); self.rows.len()];
                        }
                        'J' => {
                            self.rows.truncate(self.row + 1);
                            self.rows[self.row].cells.truncate(self.col);
                            self.rows[self.row].wrapped = false;
                        }
                        'K' => self.rows[self.row].cells.truncate(self.col),
                        'H' => (self.row, self.col) = (0, 0),
                        // Colours.
                        'm' => {}
                        other => panic!("unexpected CSI {params}{other}"),
                    }
                }
                c if c.is_control() => panic!("control character {c:?} written"),
                c => self.print(c),
            }
        }
    }

    fn text(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .rows
            .iter()
            .map(|r| {
                r.cells
                    .iter()
                    .map(|c| match c {
                        Cell::Empty => " ",
                        Cell::Text(s) => s.as_str(),
                        Cell::WideTail => "",
                    })
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect();
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        lines
    }

    fn cursor(&self) -> (usize, usize) {
        (self.row, self.col)
    }

    /// Where the next character would go.
    fn next_cell(&self) -> (usize, usize) {
        if self.pending_wrap {
            (self.row + 1, 0)
        } else {
            (self.row, self.col)
        }
    }

    /// A width change, rewrapping wrapped rows as xterm.js does; the cursor keeps its
    /// place in its line.
    fn resize(&mut self, cols: usize) {
        let mut lines: Vec<Vec<Cell>> = vec![Vec::new()];
        let mut cursor = (0, 0);
        for (i, row) in self.rows.iter().enumerate() {
            let index = lines.len() - 1;
            let line = &mut lines[index];
            if i == self.row {
                let before = row.cells.iter().take(self.col);
                cursor = (
                    index,
                    line.len() + before.filter(|c| **c != Cell::WideTail).count(),
                );
            }
            let mut cells: Vec<Cell> = row
                .cells
                .iter()
                .filter(|c| **c != Cell::WideTail)
                .cloned()
                .collect();
            if row.wrapped {
                while cells.last() == Some(&Cell::Empty) {
                    cells.pop();
                }
            }
            line.extend(cells);
            if !row.wrapped {
                lines.push(Vec::new());
            }
        }
        let mut screen = Screen::new(cols);
        let mut at = (0, 0);
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                screen.write("\r\n");
            }
            for (j, cell) in line.iter().enumerate() {
                if (i, j) == cursor {
                    at = screen.next_cell();
                }
                match cell {
                    Cell::Text(s) => s.chars().for_each(|c| screen.print(c)),
                    _ => screen.print(' '),
                }
            }
            if i == cursor.0 && cursor.1 >= line.len() {
                let (row, col) = screen.next_cell();
                at = (row, col + cursor.1 - line.len());
            }
        }
        screen.cell(at.0, 0);
        (screen.row, screen.col) = at;
        screen.pending_wrap = false;
        *self = screen;
    }
}

/// An editor on a screen, with a history.
struct Fixture {
    editor: Editor,
    history: History,
    screen: Screen,
    decoder: Decoder,
}

impl Fixture {
    fn new(cols: usize) -> Fixture {
        Fixture::with_prompt("$ ", cols)
    }

    fn with_prompt(prompt: &str, cols: usize) -> Fixture {
        let names = [
            "ably", "apt", "cat", "echo", "exit", "help", "history", "clear",
        ]
        .map(String::from)
        .to_vec();
        let mut f = Fixture {
            editor: Editor::new(prompt, names),
            history: History::new(100),
            screen: Screen::new(cols),
            decoder: Decoder::default(),
        };
        f.begin();
        f
    }

    fn begin(&mut self) {
        let mut out = String::new();
        self.editor.begin(self.screen.cols, &mut out);
        self.screen.write(&out);
    }

    /// Types `bytes`; returns the outcomes of the lines they finish.
    fn typed(&mut self, bytes: &[u8]) -> Vec<Outcome> {
        let mut keys = VecDeque::new();
        self.decoder.feed(bytes, &mut keys);
        self.decoder.flush(&mut keys);
        let mut outcomes = Vec::new();
        let mut out = String::new();
        for key in keys {
            if let Some(outcome) = self.editor.key(key, &self.history, &mut out) {
                self.screen.write(&std::mem::take(&mut out));
                if let Outcome::Line(line) = &outcome {
                    self.history.add(line);
                }
                outcomes.push(outcome);
                self.begin();
            }
        }
        self.editor.flush(&mut out);
        self.screen.write(&out);
        outcomes
    }

    fn line(&self) -> (&str, usize) {
        self.editor.state()
    }

    fn resize(&mut self, cols: usize) {
        self.screen.resize(cols);
        let mut out = String::new();
        self.editor.resize(cols, &mut out);
        self.screen.write(&out);
    }
}

fn line(s: &str) -> Outcome {
    Outcome::Line(s.to_string())
}

#[test]
fn typed_text_is_shown_and_enter_hands_it_on() {
    let mut f = Fixture::new(40);
    assert_eq!(f.screen.text(), ["$"]);
    assert_eq!(f.screen.cursor(), (0, 2));
    assert!(f.typed(b"ably 'a b'").is_empty());
    assert_eq!(f.screen.text(), ["$ ably 'a b'"]);
    assert_eq!(f.screen.cursor(), (0, 12));
    assert_eq!(f.typed(b"\r"), [line("ably 'a b'")]);
    assert_eq!(f.screen.text(), ["$ ably 'a b'", "$"]);
    assert_eq!(f.screen.cursor(), (1, 2));
}

#[test]
fn cursor_keys_and_kills_edit_where_the_cursor_is() {
    let mut f = Fixture::new(40);
    f.typed(b"ably list");
    f.typed(b"\x1b[D\x1b[D\x1b[D\x1b[D");
    assert_eq!(f.line(), ("ably list", 5));
    f.typed(b"channels ");
    assert_eq!(f.screen.text(), ["$ ably channels list"]);
    assert_eq!(f.screen.cursor(), (0, 16));
    f.typed(b"\x01");
    assert_eq!(f.line().1, 0);
    f.typed(b"\x1b[3~");
    assert_eq!(f.line().0, "bly channels list");
    f.typed(b"a\x05");
    assert_eq!(f.line(), ("ably channels list", 18));
    f.typed(b"\x17");
    assert_eq!(f.line().0, "ably channels ");
    f.typed(b"\x7f\x7f");
    assert_eq!(f.line().0, "ably channel");
    f.typed(b"\x1b[H\x1b[C\x1b[C\x1b[C\x1b[C\x0b");
    assert_eq!(f.line(), ("ably", 4));
    f.typed(b"\x1bOD\x1bOD\x15");
    assert_eq!(f.line(), ("ly", 0));
    f.typed(b"\x1b[F\x1b[1~\x1b[4~");
    assert_eq!(f.line(), ("ly", 2));
    assert_eq!(f.screen.text(), ["$ ly"]);
    assert_eq!(f.screen.cursor(), (0, 4));
}

#[test]
fn ctrl_c_cancels_and_ctrl_d_exits_only_on_an_empty_line() {
    let mut f = Fixture::new(40);
    assert_eq!(f.typed(b"ably\x03"), [Outcome::Cancelled]);
    assert_eq!(f.screen.text(), ["$ ably^C", "$"]);
    assert_eq!(f.typed(b"ab\x01\x04"), Vec::<Outcome>::new());
    assert_eq!(f.line(), ("b", 0), "Ctrl-D deletes on a non-empty line");
    assert_eq!(f.typed(b"\x05\x15\x04"), [Outcome::EndOfInput]);
}

#[test]
fn history_goes_up_and_down_and_back_to_the_typed_line() {
    let mut f = Fixture::new(40);
    f.typed(b"one\rtwo\rthree\r");
    f.typed(b"fo");
    f.typed(b"\x1b[A");
    assert_eq!(f.line(), ("three", 5));
    f.typed(b"\x1b[A\x1b[A");
    assert_eq!(f.line().0, "one");
    f.typed(b"\x1b[A");
    assert_eq!(f.line().0, "one", "the oldest stays");
    f.typed(b"\x1b[B");
    assert_eq!(f.line().0, "two");
    f.typed(b"\x1b[B\x1b[B");
    assert_eq!(f.line(), ("fo", 2), "past the newest: the line being typed");
    assert_eq!(f.screen.text().last().unwrap(), "$ fo");
    f.typed(b"\x10\x10");
    assert_eq!(f.line().0, "two", "Ctrl-P too");
    assert_eq!(f.typed(b"\r"), [line("two")]);
}

#[test]
fn ctrl_r_searches_backwards_and_enter_runs_the_match() {
    let mut f = Fixture::new(60);
    f.typed(b"ably channels list\recho hi\rably apps list\r");
    f.typed(b"\x12list");
    assert_eq!(f.line().0, "ably apps list");
    assert_eq!(
        f.screen.text().last().unwrap(),
        "(search)'list': ably apps list"
    );
    f.typed(b"\x12");
    assert_eq!(
        f.line().0,
        "ably channels list",
        "Ctrl-R again: an older match"
    );
    f.typed(b"\x12");
    assert_eq!(f.line().0, "ably channels list");
    assert!(f
        .screen
        .text()
        .last()
        .unwrap()
        .starts_with("(failed search)'list'"));
    assert_eq!(f.typed(b"\r"), [line("ably channels list")]);

    // Escape gives back the line as it was; another key edits the match.
    f.typed(b"typed\x12echo");
    assert_eq!(f.line().0, "echo hi");
    f.typed(b"\x1b");
    assert_eq!(f.line().0, "typed");
    assert_eq!(f.screen.text().last().unwrap(), "$ typed");
    f.typed(b"\x15\x12apps\x05!");
    assert_eq!(f.line().0, "ably apps list!");
    assert_eq!(f.typed(b"\x12zzz\x03"), [Outcome::Cancelled]);
}

#[test]
fn tab_completes_command_names() {
    let mut f = Fixture::new(40);
    f.typed(b"ec\t");
    assert_eq!(f.line().0, "echo ");
    f.typed(b"\x15e\t");
    assert_eq!(f.line().0, "e", "echo and exit: nothing in common to add");
    assert!(f
        .screen
        .text()
        .iter()
        .any(|l| l.contains("echo") && l.contains("exit")));
    assert_eq!(
        f.screen.text().last().unwrap(),
        "$ e",
        "the line again below the list"
    );
    f.typed(b"\x15h\t");
    assert_eq!(f.line().0, "h", "help and history");
    f.typed(b"i\t");
    assert_eq!(f.line().0, "history ");
    f.typed(b"\x15  ca\t");
    assert_eq!(f.line().0, "  cat ");
    f.typed(b"ably\t");
    assert_eq!(f.line().0, "  cat ably", "arguments are not completed");
    f.typed(b"\x15zz\t");
    assert_eq!(f.line().0, "zz");
}

#[test]
fn an_overlong_line_is_refused_whole_at_enter() {
    let mut f = Fixture::new(80);
    let mut input = vec![b'a'; MAX_LINE_BYTES + 10];
    input.extend_from_slice(b"\rls\r");
    assert_eq!(
        f.typed(&input),
        [Outcome::Refused(Refusal::TooLong), line("ls")]
    );
    let mut f = Fixture::new(80);
    f.typed(&vec![b'a'; MAX_LINE_BYTES + 1]);
    assert!(f
        .screen
        .text()
        .last()
        .unwrap()
        .contains("[refused: the line is longer"));
    assert_eq!(f.typed(b"more\x03"), [Outcome::Cancelled]);
    assert_eq!(f.typed(&vec![b'a'; MAX_LINE_BYTES]).len(), 0);
    assert_eq!(
        f.line().0.len(),
        MAX_LINE_BYTES,
        "exactly the limit is accepted"
    );
}

#[test]
fn invalid_utf8_and_control_characters_refuse_the_line() {
    let mut f = Fixture::new(80);
    assert_eq!(
        f.typed(b"ls \xff tail\r"),
        [Outcome::Refused(Refusal::InvalidUtf8 {
            byte: 0xff,
            offset: 4
        })]
    );
    assert_eq!(
        f.typed("ls \u{9b}31m\r".as_bytes()),
        [Outcome::Refused(Refusal::Forbidden {
            ch: '\u{9b}',
            position: 4,
            why: "control characters are not accepted"
        })]
    );
    assert_eq!(f.typed(b"ls\r"), [line("ls")], "the next line is fine");
}

#[test]
fn wide_and_combining_characters_keep_the_cursor_in_place() {
    let mut f = Fixture::new(40);
    f.typed("echo 界e\u{301}x".as_bytes());
    assert_eq!(f.screen.text(), ["$ echo 界e\u{301}x"]);
    assert_eq!(f.screen.cursor(), (0, 11));
    f.typed(b"\x1b[D\x1b[D");
    assert_eq!(f.screen.cursor(), (0, 9), "one step over e and its accent");
    f.typed(b"\x1b[D");
    assert_eq!(
        f.screen.cursor(),
        (0, 7),
        "one step over the wide character"
    );
    f.typed(b"\x7f");
    assert_eq!(f.line().0, "echo界e\u{301}x");
    f.typed(b"\x1b[C\x7f");
    assert_eq!(f.line().0, "echoe\u{301}x");
    assert_eq!(f.screen.text(), ["$ echoe\u{301}x"]);
}

#[test]
fn long_lines_wrap_and_the_cursor_follows_across_rows() {
    let mut f = Fixture::new(10);
    f.typed(b"echo 12345678901234");
    assert_eq!(f.screen.text(), ["$ echo 123", "4567890123", "4"]);
    assert_eq!(f.screen.cursor(), (2, 1));
    f.typed(b"\x01");
    assert_eq!(f.screen.cursor(), (0, 2));
    f.typed(b"\x05\x7f");
    assert_eq!(f.screen.text(), ["$ echo 123", "4567890123"]);
    assert_eq!(
        f.screen.cursor(),
        (2, 0),
        "a full row: the cursor on the next one"
    );
    f.typed("界".as_bytes());
    assert_eq!(f.screen.text(), ["$ echo 123", "4567890123", "界"]);
    f.typed(b"\x15");
    assert_eq!(f.screen.text(), ["$"]);
    // A wide character that does not fit at the end of a row goes to the next.
    f.typed("echo 界界".as_bytes());
    assert_eq!(f.screen.text(), ["$ echo 界", "界"]);
    assert_eq!(f.screen.cursor(), (1, 2));
    assert_eq!(f.typed(b"\r"), [line("echo 界界")]);
    assert_eq!(f.screen.text(), ["$ echo 界", "界", "$"]);
}

#[test]
fn a_resize_redraws_the_line_for_the_new_width() {
    let mut f = Fixture::new(20);
    f.typed(b"echo one two three four five");
    assert_eq!(f.screen.text(), ["$ echo one two three", " four five"]);
    f.resize(12);
    assert_eq!(f.screen.text(), ["$ echo one t", "wo three fou", "r five"]);
    assert_eq!(f.screen.cursor(), (2, 6));
    f.typed(b"\x01");
    assert_eq!(f.screen.cursor(), (0, 2));
    f.resize(40);
    assert_eq!(f.screen.text(), ["$ echo one two three four five"]);
    assert_eq!(f.screen.cursor(), (0, 2));
    f.typed(b"\x05!");
    assert_eq!(f.screen.text(), ["$ echo one two three four five!"]);
}

#[test]
fn the_prompt_starts_on_a_fresh_row_after_output_without_a_newline() {
    let mut f = Fixture::new(20);
    f.screen.write("printf abc\r\nabc");
    f.begin();
    assert_eq!(f.screen.text(), ["$ printf abc", "abc", "$"]);
    f.typed(b"ls");
    assert_eq!(f.screen.text().last().unwrap(), "$ ls");
}

#[test]
fn coloured_prompts_count_only_their_visible_width() {
    let mut f = Fixture::with_prompt("\x1b[1;32mrsh\x1b[0m> ", 40);
    f.typed(b"ls");
    assert_eq!(f.screen.cursor(), (0, 7));
}

#[test]
fn ctrl_l_clears_the_screen_and_keeps_the_line() {
    let mut f = Fixture::new(40);
    f.typed(b"one\rtw");
    f.typed(b"\x0c");
    assert_eq!(f.screen.text(), ["$ tw"]);
    assert_eq!(f.screen.cursor(), (0, 4));
}
