//! The line editor: keys in, terminal output and a finished line out. It does no I/O of its
//! own (the terminal module feeds it keys and writes what it produces), so every behaviour
//! is unit-tested. Invariant: a line is handed on only whole and exactly as shown; a line
//! that grows past [`MAX_LINE_BYTES`], or takes an invalid UTF-8 byte or a control
//! character, is refused when Enter comes, never cut short or cleaned up.

use std::fmt::Write as _;

pub mod history;
pub mod keys;
mod layout;
mod line;

use history::History;
use keys::Key;
use layout::{advance, visible, Pos};
use line::Line;

use crate::parse::{forbidden_anywhere, Refusal, MAX_LINE_BYTES};

/// How reading a line ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Line(String),
    Refused(Refusal),
    /// Ctrl-C.
    Cancelled,
    /// Ctrl-D on an empty line.
    EndOfInput,
}

#[derive(Debug, Clone)]
enum Mode {
    Edit,
    /// Ctrl-R: the query, the entry it found (`None` before the first match) and the line
    /// to go back to.
    Search {
        query: String,
        found: Option<usize>,
        failed: bool,
        original: Line,
    },
    /// The line will be refused at Enter; further input is not kept.
    Refusing(Refusal),
}

/// Up and down through the history: the entry shown and the line being typed before.
#[derive(Debug, Clone)]
struct Browse {
    index: usize,
    typed: Line,
}

#[derive(Debug)]
pub struct Editor {
    prompt: String,
    /// Completion candidates, sorted.
    names: Vec<String>,
    cols: usize,
    line: Line,
    mode: Mode,
    browse: Option<Browse>,
    /// Rows between the first row of the prompt and the cursor, as last drawn.
    cursor_row: usize,
    /// The line changed since it was last drawn. Keys are handled in batches and the line
    /// drawn once per batch: drawing after each key of a 4 KiB paste would write
    /// megabytes.
    dirty: bool,
}

const BELL: &str = "\x07";

impl Editor {
    pub fn new(prompt: &str, mut names: Vec<String>) -> Editor {
        names.sort();
        names.dedup();
        Editor {
            prompt: prompt.to_string(),
            names,
            cols: 80,
            line: Line::default(),
            mode: Mode::Edit,
            browse: None,
            cursor_row: 0,
            dirty: false,
        }
    }

    /// Starts a new line on a terminal `cols` wide: moves to the start of a fresh row
    /// (output that did not end with a newline keeps its row) and draws the prompt.
    pub fn begin(&mut self, cols: usize, out: &mut String) {
        self.cols = cols.max(1);
        self.line = Line::default();
        self.mode = Mode::Edit;
        self.browse = None;
        self.cursor_row = 0;
        // A full row of spaces from column 0 leaves the cursor on that row (pending wrap),
        // from any other column it wraps to a fresh one; CR then goes to its start.
        out.push_str(&" ".repeat(self.cols));
        out.push_str("\r\x1b[K");
        self.refresh(out);
    }

    /// The terminal is now `cols` wide: draws the line again. Terminals rewrap the rows
    /// of a wrapped line, so the cursor's row is recomputed for the new width.
    pub fn resize(&mut self, cols: usize, out: &mut String) {
        self.cols = cols.max(1);
        self.cursor_row = self.cursor_pos().row;
        self.refresh(out);
    }

    /// Draws what changed since the last call.
    pub fn flush(&mut self, out: &mut String) {
        if self.dirty {
            self.refresh(out);
        }
    }

    /// Handles one key; returns the outcome once the line is finished. What the key
    /// changed on the screen is drawn by the next [`Editor::flush`].
    pub fn key(&mut self, key: Key, history: &History, out: &mut String) -> Option<Outcome> {
        match self.mode.clone() {
            Mode::Refusing(refusal) => match key {
                Key::Enter => Some(self.finish(Outcome::Refused(refusal), out)),
                Key::Interrupt => Some(self.cancel(out)),
                _ => None,
            },
            Mode::Search { .. } => self.search_key(key, history, out),
            Mode::Edit => self.edit_key(key, history, out),
        }
    }

    fn edit_key(&mut self, key: Key, history: &History, out: &mut String) -> Option<Outcome> {
        let changed = match key {
            Key::Char(c) => {
                self.insert(c, out);
                true
            }
            Key::Invalid(byte) => {
                let offset = self.line.cursor() + 1;
                self.refuse(Refusal::InvalidUtf8 { byte, offset }, out);
                true
            }
            Key::Enter => {
                let text = self.line.text().to_string();
                return Some(self.finish(Outcome::Line(text), out));
            }
            Key::Interrupt => return Some(self.cancel(out)),
            Key::EndOfInput if self.line.is_empty() => {
                return Some(self.finish(Outcome::EndOfInput, out))
            }
            Key::EndOfInput | Key::Delete => self.line.delete(),
            Key::Backspace => self.line.backspace(),
            Key::Left => move_cursor(&mut self.line, Line::left),
            Key::Right => move_cursor(&mut self.line, Line::right),
            Key::WordLeft => move_cursor(&mut self.line, Line::word_left),
            Key::WordRight => move_cursor(&mut self.line, Line::word_right),
            Key::Home => move_cursor(&mut self.line, Line::home),
            Key::End => move_cursor(&mut self.line, Line::end),
            Key::KillToStart => self.line.kill_to_start(),
            Key::KillToEnd => self.line.kill_to_end(),
            Key::KillWordBack => self.line.kill_word_back(),
            Key::Up => self.history_step(history, true),
            Key::Down => self.history_step(history, false),
            Key::Tab => return self.complete(out),
            Key::Search => {
                self.mode = Mode::Search {
                    query: String::new(),
                    found: None,
                    failed: false,
                    original: self.line.clone(),
                };
                true
            }
            Key::ClearScreen => {
                out.push_str("\x1b[H\x1b[2J");
                self.cursor_row = 0;
                true
            }
            Key::Abort | Key::Ignored => false,
        };
        if changed {
            self.dirty = true;
        } else if key != Key::Ignored {
            out.push_str(BELL);
        }
        None
    }

    fn insert(&mut self, c: char, out: &mut String) {
        if c.is_control() {
            let position = self.line.text()[..self.line.cursor()].chars().count() + 1;
            if let Err(refusal) = forbidden_anywhere(c, None, position) {
                return self.refuse(refusal, out);
            }
        }
        if self.line.text().len() + c.len_utf8() > MAX_LINE_BYTES {
            return self.refuse(Refusal::TooLong, out);
        }
        self.line.insert(c.encode_utf8(&mut [0; 4]));
    }

    fn refuse(&mut self, refusal: Refusal, out: &mut String) {
        if !matches!(self.mode, Mode::Refusing(_)) {
            out.push_str(BELL);
        }
        self.mode = Mode::Refusing(refusal);
    }

    /// Up (`older`) or down through the history; false at either end.
    fn history_step(&mut self, history: &History, older: bool) -> bool {
        let current = self.browse.as_ref().map(|b| b.index);
        let next = match (current, older) {
            (None, true) => history.len().checked_sub(1),
            (None, false) => None,
            (Some(i), true) => i.checked_sub(1),
            (Some(i), false) if i + 1 < history.len() => Some(i + 1),
            (Some(_), false) => {
                // Past the newest entry: back to what was being typed.
                let typed = self.browse.take().map(|b| b.typed).unwrap_or_default();
                self.line = typed;
                return true;
            }
        };
        let Some(index) = next else {
            return false;
        };
        let typed = match self.browse.take() {
            Some(b) => b.typed,
            None => self.line.clone(),
        };
        self.browse = Some(Browse { index, typed });
        self.line = Line::new(history.get(index).unwrap_or_default());
        true
    }

    fn search_key(&mut self, key: Key, history: &History, out: &mut String) -> Option<Outcome> {
        let Mode::Search {
            mut query,
            found,
            original,
            ..
        } = self.mode.clone()
        else {
            return None;
        };
        let newest = history.len().saturating_sub(1);
        let next = match key {
            // No entry is longer than a line: a longer query finds nothing.
            Key::Char(c) if !c.is_control() && query.len() < MAX_LINE_BYTES => {
                query.push(c);
                history.find(&query, found.unwrap_or(newest))
            }
            Key::Char(c) if !c.is_control() => {
                out.push_str(BELL);
                return None;
            }
            Key::Backspace => {
                query.pop();
                history.find(&query, newest)
            }
            Key::Search => match found {
                Some(i) => i.checked_sub(1).and_then(|i| history.find(&query, i)),
                None => history.find(&query, newest),
            },
            Key::Abort => {
                self.mode = Mode::Edit;
                self.line = original;
                self.dirty = true;
                return None;
            }
            Key::Interrupt => return Some(self.cancel(out)),
            _ => {
                // Any other key takes the found line and does its usual work on it.
                self.mode = Mode::Edit;
                if let Some(entry) = found.and_then(|i| history.get(i)) {
                    self.line = Line::new(entry);
                }
                return self.edit_key(key, history, out);
            }
        };
        let failed = next.is_none() && !query.is_empty();
        let found = next.or(found);
        self.line = match found.and_then(|i| history.get(i)) {
            Some(entry) => Line::at(entry, entry.find(&query).unwrap_or(entry.len())),
            None => original.clone(),
        };
        self.mode = Mode::Search {
            query,
            found,
            failed,
            original,
        };
        if failed {
            out.push_str(BELL);
        }
        self.dirty = true;
        None
    }

    /// TAB: completes the command name under the cursor; lists the names when several
    /// fit and nothing more can be added.
    fn complete(&mut self, out: &mut String) -> Option<Outcome> {
        let before = &self.line.text()[..self.line.cursor()];
        let prefix = before.trim_start_matches([' ', '\t']);
        let at_end = self.line.cursor() == self.line.text().len();
        if prefix.contains([' ', '\t', '\'', '"', '\\']) {
            out.push_str(BELL);
            return None;
        }
        let matches: Vec<String> = self
            .names
            .iter()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect();
        let common = match matches.as_slice() {
            [] => {
                out.push_str(BELL);
                return None;
            }
            [only] => {
                let mut add = only[prefix.len()..].to_string();
                if at_end {
                    add.push(' ');
                }
                add
            }
            [first, rest @ ..] => {
                let mut len = first.len();
                for name in rest {
                    len = len.min(
                        first
                            .bytes()
                            .zip(name.bytes())
                            .take_while(|(a, b)| a == b)
                            .count(),
                    );
                }
                first[prefix.len()..len].to_string()
            }
        };
        if !common.is_empty() {
            self.line.insert(&common);
            self.dirty = true;
            return None;
        }
        // Several names and nothing to add: show them, then the line again below.
        self.flush(out);
        self.move_to_end(out);
        out.push_str("\r\n");
        let width = matches.iter().map(|n| n.len()).max().unwrap_or(0) + 2;
        let per_row = (self.cols / width).max(1);
        for (i, name) in matches.iter().enumerate() {
            let _ = write!(out, "{name:width$}");
            if (i + 1) % per_row == 0 || i + 1 == matches.len() {
                out.push_str("\r\n");
            }
        }
        self.cursor_row = 0;
        self.dirty = true;
        None
    }

    fn cancel(&mut self, out: &mut String) -> Outcome {
        self.flush(out);
        self.move_to_end(out);
        out.push_str("^C\r\n");
        self.cursor_row = 0;
        Outcome::Cancelled
    }

    /// Leaves the cursor at the start of the row after the line.
    fn finish(&mut self, outcome: Outcome, out: &mut String) -> Outcome {
        self.flush(out);
        self.move_to_end(out);
        out.push_str("\r\n");
        self.cursor_row = 0;
        outcome
    }

    /// The prompt and text as shown in the current mode, and the cursor's offset in the text.
    fn shown(&self) -> (String, String, usize) {
        match &self.mode {
            Mode::Edit => (
                self.prompt.clone(),
                self.line.text().to_string(),
                self.line.cursor(),
            ),
            Mode::Search { query, failed, .. } => (
                format!(
                    "({}search)'{query}': ",
                    if *failed { "failed " } else { "" }
                ),
                self.line.text().to_string(),
                self.line.cursor(),
            ),
            Mode::Refusing(refusal) => {
                let note = format!("[refused: {refusal}; press Enter]");
                let len = note.len();
                (self.prompt.clone(), note, len)
            }
        }
    }

    fn positions(&self) -> (Pos, Pos) {
        let (prompt, text, cursor) = self.shown();
        let start = advance(Pos::default(), &visible(&prompt), self.cols);
        (
            advance(start, &text[..cursor], self.cols),
            advance(start, &text, self.cols),
        )
    }

    fn cursor_pos(&self) -> Pos {
        self.positions().0
    }

    fn move_to_end(&mut self, out: &mut String) {
        let (cursor, end) = self.positions();
        move_between(out, cursor, end);
        self.cursor_row = end.row;
    }

    /// Draws the prompt and the line from the prompt's first row and puts the cursor
    /// where it belongs.
    fn refresh(&mut self, out: &mut String) {
        self.dirty = false;
        let (prompt, text, _) = self.shown();
        if self.cursor_row > 0 {
            let _ = write!(out, "\x1b[{}A", self.cursor_row);
        }
        out.push_str("\r\x1b[J");
        out.push_str(&prompt);
        out.push_str(&text);
        let (cursor, end) = self.positions();
        if end.col == 0 && end.row > 0 {
            // The text ended exactly at the right margin: the terminal waits there to
            // wrap; make it go to the next row, where the layout says the end is.
            out.push_str("\r\n");
        }
        move_between(out, end, cursor);
        self.cursor_row = cursor.row;
    }

    /// For tests: the line and the cursor offset.
    #[cfg(test)]
    fn state(&self) -> (&str, usize) {
        (self.line.text(), self.line.cursor())
    }
}

/// Moves the terminal's cursor from one position of the drawn line to another.
fn move_between(out: &mut String, from: Pos, to: Pos) {
    if to.row > from.row {
        let _ = write!(out, "\x1b[{}B", to.row - from.row);
    } else if from.row > to.row {
        let _ = write!(out, "\x1b[{}A", from.row - to.row);
    }
    out.push('\r');
    if to.col > 0 {
        let _ = write!(out, "\x1b[{}C", to.col);
    }
}

/// A cursor move; true when the cursor moved.
fn move_cursor(line: &mut Line, step: fn(&mut Line)) -> bool {
    let before = line.cursor();
    step(line);
    line.cursor() != before
}

#[cfg(test)]
mod tests;
