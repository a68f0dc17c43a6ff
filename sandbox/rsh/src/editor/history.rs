//! The lines entered in this session, oldest first, for up/down, Ctrl-R and `history`.
//! Invariant: at most `max` entries, none empty, no entry equal to the one before it.

use std::collections::VecDeque;

#[derive(Debug, Clone, Default)]
pub struct History {
    entries: VecDeque<String>,
    max: usize,
}

impl History {
    pub fn new(max: usize) -> History {
        History {
            entries: VecDeque::new(),
            max,
        }
    }

    pub fn add(&mut self, line: &str) {
        if self.max == 0
            || line.trim_matches([' ', '\t']).is_empty()
            || self.entries.back().is_some_and(|last| last == line)
        {
            return;
        }
        if self.entries.len() == self.max {
            self.entries.pop_front();
        }
        self.entries.push_back(line.to_string());
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, index: usize) -> Option<&str> {
        self.entries.get(index).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(String::as_str)
    }

    /// The newest entry at or before `upto` that contains `query`.
    pub fn find(&self, query: &str, upto: usize) -> Option<usize> {
        (0..=upto.min(self.entries.len().checked_sub(1)?))
            .rev()
            .find(|&i| self.entries[i].contains(query))
    }
}
