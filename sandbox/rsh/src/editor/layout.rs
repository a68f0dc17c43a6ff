//! Where text lands on a terminal `cols` cells wide, as xterm-like terminals place it:
//! each grapheme cluster takes its Unicode width (combining marks 0, East Asian wide and
//! emoji 2); one that does not fit on the row goes to the next. Invariant: a position
//! never has `col == cols`: a row filled exactly continues at the next row's start.

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    pub row: usize,
    pub col: usize,
}

/// Where the cursor is after `text` is written from `from`.
pub fn advance(from: Pos, text: &str, cols: usize) -> Pos {
    let cols = cols.max(1);
    let Pos { mut row, mut col } = from;
    for grapheme in text.graphemes(true) {
        let width = grapheme.width().min(cols);
        if col + width > cols {
            row += 1;
            col = 0;
        }
        col += width;
        if col == cols {
            row += 1;
            col = 0;
        }
    }
    Pos { row, col }
}

/// `prompt` without its escape sequences (colours): what takes room on the screen.
pub fn visible(prompt: &str) -> String {
    let mut shown = String::new();
    let mut chars = prompt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            shown.push(c);
            continue;
        }
        match chars.next() {
            // CSI: parameters up to a final byte.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ESC \.
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    shown
}

#[cfg(test)]
mod tests;
