use super::*;

fn line(text: &str, cursor: usize) -> Line {
    Line::at(text, cursor)
}

#[test]
fn moves_go_by_grapheme_cluster() {
    let mut l = Line::new("ae\u{301}界");
    l.left();
    assert_eq!(l.cursor(), "ae\u{301}".len());
    l.left();
    assert_eq!(l.cursor(), 1, "the e and its accent are one step");
    l.home();
    l.right();
    l.right();
    assert_eq!(l.cursor(), "ae\u{301}".len());
    l.end();
    l.right();
    assert_eq!(l.cursor(), l.text().len());
}

#[test]
fn backspace_and_delete_remove_a_whole_cluster() {
    let mut l = Line::new("xe\u{301}");
    assert!(l.backspace());
    assert_eq!(l.text(), "x");
    let mut l = line("e\u{301}x", 0);
    assert!(l.delete());
    assert_eq!(l.text(), "x");
    assert!(!Line::new("").backspace());
    assert!(
        !Line::new("ab").delete(),
        "nothing under the cursor at the end"
    );
}

#[test]
fn kills_cut_to_the_start_the_end_and_the_word_before() {
    let mut l = line("ably channels list", 5);
    assert!(l.kill_to_end());
    assert_eq!((l.text(), l.cursor()), ("ably ", 5));
    let mut l = line("ably channels list", 5);
    assert!(l.kill_to_start());
    assert_eq!((l.text(), l.cursor()), ("channels list", 0));
    let mut l = Line::new("ably channels  ");
    assert!(l.kill_word_back());
    assert_eq!(l.text(), "ably ");
    assert!(l.kill_word_back());
    assert_eq!(l.text(), "");
    assert!(!l.kill_word_back());
}

#[test]
fn word_moves_skip_blanks_then_a_word() {
    let mut l = Line::new("ably channels list");
    l.word_left();
    assert_eq!(l.cursor(), 14);
    l.word_left();
    assert_eq!(l.cursor(), 5);
    l.word_right();
    assert_eq!(l.cursor(), 13);
    l.word_right();
    assert_eq!(l.cursor(), 18);
}

#[test]
fn insert_goes_at_the_cursor() {
    let mut l = line("ay", 1);
    l.insert("bl");
    assert_eq!((l.text(), l.cursor()), ("ably", 3));
}
