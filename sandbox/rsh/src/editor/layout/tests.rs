use super::*;

fn at(row: usize, col: usize) -> Pos {
    Pos { row, col }
}

#[test]
fn narrow_text_advances_by_its_width() {
    assert_eq!(advance(Pos::default(), "$ ls", 80), at(0, 4));
    assert_eq!(advance(at(0, 2), "", 80), at(0, 2));
}

#[test]
fn a_filled_row_continues_at_the_next_row() {
    assert_eq!(advance(Pos::default(), "abcd", 4), at(1, 0));
    assert_eq!(advance(Pos::default(), "abcde", 4), at(1, 1));
    assert_eq!(advance(Pos::default(), &"x".repeat(12), 4), at(3, 0));
}

#[test]
fn wide_characters_take_two_cells_and_never_split() {
    assert_eq!(advance(Pos::default(), "界界", 80), at(0, 4));
    // At the last column a wide character goes to the next row, leaving a gap.
    assert_eq!(advance(Pos::default(), "abc界", 4), at(1, 2));
    assert_eq!(advance(Pos::default(), "ab界", 4), at(1, 0));
    assert_eq!(advance(Pos::default(), "😀x", 80), at(0, 3));
}

#[test]
fn combining_marks_take_no_cell() {
    assert_eq!(advance(Pos::default(), "e\u{301}e\u{301}", 80), at(0, 2));
    assert_eq!(advance(Pos::default(), "abce\u{301}", 4), at(1, 0));
}

#[test]
fn prompt_colours_take_no_room() {
    assert_eq!(visible("\x1b[1;32mrsh\x1b[0m$ "), "rsh$ ");
    assert_eq!(visible("\x1b]0;title\x07> "), "> ");
    assert_eq!(visible("\x1b]0;title\x1b\\> "), "> ");
    assert_eq!(visible("plain"), "plain");
}
