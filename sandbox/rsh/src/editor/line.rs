//! The line being edited and its cursor. Invariant: the cursor is a byte offset on a
//! grapheme cluster boundary, so moving and deleting treat a character and its combining
//! marks (or an emoji sequence) as one.

use unicode_segmentation::UnicodeSegmentation;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line {
    text: String,
    cursor: usize,
}

impl Line {
    /// `text` with the cursor at its end.
    pub fn new(text: &str) -> Line {
        Line {
            text: text.to_string(),
            cursor: text.len(),
        }
    }

    /// `text` with the cursor at byte `cursor` (a character boundary).
    pub fn at(text: &str, cursor: usize) -> Line {
        Line {
            text: text.to_string(),
            cursor,
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub fn insert(&mut self, s: &str) {
        self.text.insert_str(self.cursor, s);
        self.cursor += s.len();
    }

    fn previous(&self) -> usize {
        self.text[..self.cursor]
            .grapheme_indices(true)
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    fn next(&self) -> usize {
        self.cursor
            + self.text[self.cursor..]
                .graphemes(true)
                .next()
                .map_or(0, str::len)
    }

    pub fn left(&mut self) {
        self.cursor = self.previous();
    }

    pub fn right(&mut self) {
        self.cursor = self.next();
    }

    pub fn home(&mut self) {
        self.cursor = 0;
    }

    pub fn end(&mut self) {
        self.cursor = self.text.len();
    }

    /// Start of the word before the cursor (words are runs of non-blanks).
    fn word_start(&self) -> usize {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end_matches([' ', '\t']);
        trimmed.rfind([' ', '\t']).map_or(0, |i| i + 1)
    }

    /// End of the word after the cursor.
    fn word_end(&self) -> usize {
        let after = &self.text[self.cursor..];
        let skipped = after.len() - after.trim_start_matches([' ', '\t']).len();
        let rest = &after[skipped..];
        self.cursor + skipped + rest.find([' ', '\t']).unwrap_or(rest.len())
    }

    pub fn word_left(&mut self) {
        self.cursor = self.word_start();
    }

    pub fn word_right(&mut self) {
        self.cursor = self.word_end();
    }

    /// Deletes the grapheme before the cursor; false at the start.
    pub fn backspace(&mut self) -> bool {
        let from = self.previous();
        self.remove(from, self.cursor)
    }

    /// Deletes the grapheme under the cursor; false at the end.
    pub fn delete(&mut self) -> bool {
        let to = self.next();
        self.remove(self.cursor, to)
    }

    pub fn kill_to_start(&mut self) -> bool {
        self.remove(0, self.cursor)
    }

    pub fn kill_to_end(&mut self) -> bool {
        self.remove(self.cursor, self.text.len())
    }

    pub fn kill_word_back(&mut self) -> bool {
        let from = self.word_start();
        self.remove(from, self.cursor)
    }

    fn remove(&mut self, from: usize, to: usize) -> bool {
        if from == to {
            return false;
        }
        self.text.replace_range(from..to, "");
        self.cursor = from;
        true
    }
}

#[cfg(test)]
mod tests;
