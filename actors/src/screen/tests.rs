//! The snapshot is checked by drawing it on a client terminal (a second emulator that
//! knows nothing of the first) and comparing what that client shows with the model:
//! every cell with its attributes, the scrollback, the cursor and the modes.

use proptest::prelude::*;

use super::*;

const SIZE: Size = Size { cols: 40, rows: 8 };

/// A model whose grids exist from the start (a new one keeps its first output as bytes).
fn with_grids(size: Size, scrollback: usize) -> ScreenModel {
    let mut screen = ScreenModel::new(size, scrollback);
    screen.emulator();
    assert!(screen.has_grids());
    screen
}

fn model(size: Size, scrollback: usize, output: &[&[u8]]) -> ScreenModel {
    let mut screen = ScreenModel::new(size, scrollback);
    for chunk in output {
        screen.feed(chunk);
    }
    screen
}

/// A terminal that has been shown `bytes` from the start.
fn terminal(size: Size, scrollback: usize, bytes: &[u8]) -> vt100::Parser {
    let mut parser = vt100::Parser::new(dimension(size.rows), dimension(size.cols), scrollback);
    parser.process(bytes);
    parser
}

/// Scrollback and screen with every attribute, then the cursor and the modes.
fn picture(screen: &vt100::Screen) -> String {
    let mut rows = String::new();
    screen
        .write_contents_formatted_basic(
            &mut rows,
            vt100::capture::BasicFormattedCaptureRange::Full(&mut Default::default()),
        )
        .unwrap();
    format!(
        "{rows}\n-- cursor {:?} hidden {} alternate {} modes {:?} attrs {:?}",
        screen.cursor_position(),
        screen.hide_cursor(),
        screen.alternate_screen(),
        screen.input_mode_formatted(),
        screen.attributes_formatted(),
    )
}

/// The model, as a terminal shown the same output from the start has it.
fn expected(size: Size, scrollback: usize, output: &[&[u8]]) -> vt100::Parser {
    terminal(size, scrollback, &output.concat())
}

/// Draws the snapshot on a client terminal that showed something else before and checks
/// it against a terminal that saw the whole output.
fn assert_round_trip(size: Size, scrollback: usize, output: &[&[u8]]) -> Bytes {
    let snapshot = model(size, scrollback, output).snapshot();
    let mut client = terminal(
        size,
        scrollback,
        b"\x1b[31mstale text\r\nmore\x1b[?1h\x1b[?25l",
    );
    client.process(&snapshot);
    let want = expected(size, scrollback, output);
    assert_eq!(
        picture(client.screen()),
        picture(want.screen()),
        "snapshot {:?}",
        String::from_utf8_lossy(&snapshot)
    );
    snapshot
}

#[test]
fn wide_characters_and_colours_round_trip() {
    let mut output: Vec<Vec<u8>> = Vec::new();
    for n in 0..20 {
        output.push(
            format!(
                "\x1b[38;5;{n}m{n:02} \x1b[1;4m漢字\x1b[22;24m \x1b[48;2;10;{n};200m🦀 wide\x1b[m é\u{301} \x1b[7minv\x1b[27m\r\n"
            )
            .into_bytes(),
        );
    }
    // A row that wraps, and a wide character that does not fit at the end of a row.
    output.push(format!("{}漢\r\n", "x".repeat(39)).into_bytes());
    output.push(b"\x1b[3;33mprompt $ \x1b[1m".to_vec());
    let output: Vec<&[u8]> = output.iter().map(Vec::as_slice).collect();
    let snapshot = assert_round_trip(SIZE, 100, &output);
    assert!(snapshot.starts_with(CLEAR.as_bytes()));
}

#[test]
fn scrollback_comes_before_the_screen_and_is_bounded() {
    let lines: Vec<Vec<u8>> = (1..=500)
        .map(|n| format!("line {n}\r\n").into_bytes())
        .collect();
    let output: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    assert_round_trip(SIZE, 50, &output);
    let mut screen = model(SIZE, 50, &output);
    let mut client = terminal(SIZE, 1000, &screen.snapshot());
    assert_eq!(client.screen().scrollback(), 0);
    client.screen_mut().set_scrollback(usize::MAX);
    assert_eq!(client.screen().scrollback(), 50, "the model keeps 50 rows");
    let top = client.screen().contents();
    assert!(top.starts_with("line 444\n"), "{top}");
}

#[test]
fn the_alternate_screen_comes_back_over_the_primary_one() {
    let output: &[&[u8]] = &[
        b"$ ls\r\n\x1b[32mfile\x1b[m\r\n$ vi file\r\n",
        b"\x1b[?1049h\x1b[H\x1b[2Jfirst line of the file\r\n~\r\n~\x1b[8;1H\"file\" 1L",
        b"\x1b[?1h\x1b=\x1b[?2004h\x1b[1;6H",
    ];
    assert_round_trip(SIZE, 100, output);
    // Leaving the alternate screen on the client shows the primary one as it was.
    let mut client = terminal(SIZE, 100, &model(SIZE, 100, output).snapshot());
    let mut want = expected(SIZE, 100, output);
    client.process(b"\x1b[?1049l");
    want.process(b"\x1b[?1049l");
    assert_eq!(picture(client.screen()), picture(want.screen()));
    assert!(client.screen().contents().contains("$ vi file"));
}

#[test]
fn modes_that_matter_for_redraw_come_back() {
    assert_round_trip(
        SIZE,
        100,
        &[b"\x1b[?25l\x1b[?1h\x1b=\x1b[?2004h\x1b[?1002h\x1b[?1006h\x1b[5 qtext"],
    );
    let mut screen = model(SIZE, 100, &[b"\x1b[?25l\x1b[?1000h\x1b[?1006h"]);
    let client = terminal(SIZE, 100, &screen.snapshot());
    assert!(client.screen().hide_cursor());
    assert_eq!(
        client.screen().mouse_protocol_mode(),
        vt100::MouseProtocolMode::PressRelease
    );
    assert_eq!(
        client.screen().mouse_protocol_encoding(),
        vt100::MouseProtocolEncoding::Sgr
    );
}

#[test]
fn a_cursor_past_the_last_column_comes_back() {
    assert_round_trip(SIZE, 100, &[format!("$ {}", "y".repeat(38)).as_bytes()]);
}

/// Every sequence in a snapshot is one that draws or sets a mode, never one a terminal
/// answers (cursor position, device attributes, status, mode or colour reports).
#[test]
fn a_snapshot_asks_the_terminal_nothing() {
    struct Sequences(Vec<String>);
    impl vte::Perform for Sequences {
        fn csi_dispatch(&mut self, params: &vte::Params, inter: &[u8], _: bool, action: char) {
            let params: Vec<Vec<u16>> = params.iter().map(<[u16]>::to_vec).collect();
            self.0.push(format!("CSI {inter:?} {params:?} {action}"));
            let allowed = matches!(
                (inter, action),
                (
                    [],
                    'm' | 'H' | 'J' | 'K' | 'X' | 'A' | 'B' | 'C' | 'D' | 'G' | 'd'
                ) | ([b'?'], 'h' | 'l')
                    | ([b' '], 'q')
            );
            assert!(allowed, "not a drawing sequence: {:?}", self.0.last());
        }
        fn osc_dispatch(&mut self, params: &[&[u8]], _: bool) {
            assert_eq!(params[0], b"2", "only the window title");
        }
        fn esc_dispatch(&mut self, inter: &[u8], _: bool, byte: u8) {
            assert!(
                inter.is_empty() && matches!(byte, b'c' | b'=' | b'>' | b'7' | b'8'),
                "escape {inter:?} {byte}"
            );
        }
        fn hook(&mut self, _: &vte::Params, _: &[u8], _: bool, _: char) {
            panic!("no device control string");
        }
    }
    let queries: &[&[u8]] = &[
        b"~ $ \x1b[6n",
        b"\x1b[c\x1b[>c\x1b[5n\x1b[?6n\x1b[18t\x1b[?2004$p\x1bP$qm\x1b\\",
        b"\x1b]10;?\x07\x1b]11;?\x1b\\\x1b]4;1;?\x07\x1b]2;title?\x07",
        b"\x1b[?1049h\x1b[6nfull screen\x1b[c",
    ];
    let snapshot = model(SIZE, 100, queries).snapshot();
    let mut sequences = Sequences(Vec::new());
    vte::Parser::new().advance(&mut sequences, &snapshot);
    assert!(!sequences.0.is_empty());
}

#[test]
fn the_title_comes_back_as_text() {
    // Control characters in a title are not kept (the terminal drops them too).
    let mut screen = model(SIZE, 100, &[b"\x1b]0;build\x08 log\x07$ "]);
    let snapshot = String::from_utf8(screen.snapshot().to_vec()).unwrap();
    assert_eq!(
        snapshot.matches("\x1b]2;build log\x07").count(),
        1,
        "{snapshot:?}"
    );
}

#[test]
fn an_unfinished_sequence_is_finished_by_the_live_output() {
    for (before, after) in [
        (&b"red: \x1b[3"[..], &b"1mX\x1b[m"[..]),
        (&b"wide: \xe6\xbc"[..], &b"\xa2 end"[..]),
        (&b"title \x1b]2;ab"[..], &b"c\x07done"[..]),
        (&b"esc \x1b"[..], &b"[1mbold"[..]),
    ] {
        let mut screen = model(SIZE, 100, &[before]);
        let mut client = terminal(SIZE, 100, &screen.snapshot());
        client.process(after);
        let want = expected(SIZE, 100, &[before, after]);
        assert_eq!(
            picture(client.screen()),
            picture(want.screen()),
            "{before:?} then {after:?}"
        );
    }
    // Complete output leaves nothing unfinished.
    let mut screen = model(SIZE, 100, &[b"done \x1b[1m\xe6\xbc\xa2\r\n"]);
    assert_eq!(screen.emulator().unfinished(), b"");
}

#[test]
fn a_resize_applies_between_the_output_before_and_after_it() {
    let small = Size { cols: 20, rows: 5 };
    let mut screen = model(SIZE, 100, &[b"before the resize, a long line\r\n"]);
    screen.resize(small);
    screen.feed(b"after\r\n$ ");
    let mut want = terminal(SIZE, 100, b"before the resize, a long line\r\n");
    want.set_size(dimension(small.rows), dimension(small.cols));
    want.process(b"after\r\n$ ");
    let client = terminal(small, 100, &screen.snapshot());
    assert_eq!(picture(client.screen()), picture(want.screen()));
}

#[test]
fn what_comes_after_a_snapshot_is_not_in_it() {
    let mut screen = model(SIZE, 100, &[b"one\r\n"]);
    let first = screen.snapshot();
    screen.feed(b"two\r\n");
    let mut client = terminal(SIZE, 100, &first);
    client.process(b"two\r\n");
    assert_eq!(
        picture(client.screen()),
        picture(expected(SIZE, 100, &[b"one\r\ntwo\r\n"]).screen())
    );
    assert_eq!(client.screen().contents().matches("one").count(), 1);
}

#[test]
fn an_emulator_that_fails_starts_again_blank() {
    let mut screen = model(SIZE, 100, &[b"before"]);
    let failed = screen
        .emulator()
        .guarded("a test", |_| panic!("the emulator failed"));
    assert!(failed.is_none());
    assert_eq!(screen.contents(), "");
    screen.feed(b"after");
    assert_eq!(screen.contents(), "after");
}

/// Pieces of terminal output: text (wide, combining), line ends, colours and attributes,
/// cursor moves, erasing, scrolling and scroll regions, modes, both screens, titles and
/// queries.
fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "word ",
        "漢字",
        "🦀",
        "e\u{301}",
        "\r\n",
        "\r",
        "\n",
        "\t",
        "\x08",
        "\x1b[31m",
        "\x1b[1;4m",
        "\x1b[38;5;200m",
        "\x1b[48;2;1;2;3m",
        "\x1b[7m",
        "\x1b[m",
        "\x1b[H",
        "\x1b[5;10H",
        "\x1b[3A",
        "\x1b[2C",
        "\x1b[K",
        "\x1b[1K",
        "\x1b[2J",
        "\x1b[J",
        "\x1b[3J",
        "\x1b[2L",
        "\x1b[M",
        "\x1b[3P",
        "\x1b[2@",
        "\x1b[S",
        "\x1b[T",
        "\x1bM",
        "\x1b7",
        "\x1b8",
        "\x1b[?25l",
        "\x1b[?25h",
        "\x1b[?1h",
        "\x1b=",
        "\x1b[?2004h",
        "\x1b[?1000h",
        "\x1b[?1006h",
        "\x1b[?1049h",
        "\x1b[?1049l",
        "\x1b[?47h",
        "\x1b[?47l",
        "\x1b]2;t\x07",
        "\x1b[6n",
        "\x1b[c",
        "\x1b[2;5r",
        "\x1b[r",
        "\x1b[?6h",
        "\x1b[?6l",
        "\x1b(0",
        "\x1b(B",
        "\x1b[4h",
        "\x1b[?7l",
        "\x1b[?7h",
        "a long line of text that wraps past the end of the row ",
        FLOOD,
        // Longer than what is kept of a run at 20 × 6 with 30 rows of scrollback.
        Box::leak(FLOOD.repeat(14).into_boxed_str()),
        Box::leak("numbered\r\n".repeat(600).into_boxed_str()),
        Box::leak(
            "a line longer than the row\r\n"
                .repeat(600)
                .into_boxed_str(),
        ),
        Box::leak("feeds\n".repeat(600).into_boxed_str()),
    ])
}

/// Plain text long enough that a run of it is not parsed whole (see `hold`).
const FLOOD: &str = concat!(
    "flood of plain text without line ends, held back and dropped from the front; ",
    "flood of plain text without line ends, held back and dropped from the front; ",
    "flood of plain text without line ends, held back and dropped from the front; ",
    "flood of plain text without line ends, held back and dropped from the front; ",
    "flood of plain text without line ends, held back and dropped from the front; ",
    "flood of plain text without line ends, held back and dropped from the front; ",
    "flood of plain text without line ends, held back and dropped from the front; ",
    "flood of plain text without line ends, held back and dropped from the front; ",
    "flood of plain text without line ends, held back and dropped from the front; ",
    "flood of plain text without line ends, held back and dropped from the front; ",
);

/// Every row, scrollback first, cell by cell (contents and attributes; an empty cell and a
/// space look the same), then the cursor and the modes. Unlike `picture`, blind to whether
/// a row is marked soft-wrapped, which the emulator's redraw does not always carry for a
/// row that ends blank (it matters only when a client reflows that row).
fn cells(screen: &vt100::Screen) -> Vec<String> {
    let mut screen = screen.clone();
    let (rows, cols) = screen.size();
    let row = |screen: &vt100::Screen, r: u16| -> String {
        (0..cols.get())
            .map(|c| match screen.cell(r, c) {
                Some(cell) => format!(
                    "{}{:?}{:?}{}{}{}{}{}|",
                    if cell.has_contents() {
                        cell.contents()
                    } else {
                        " "
                    },
                    cell.fgcolor(),
                    cell.bgcolor(),
                    u8::from(cell.bold()),
                    u8::from(cell.dim()),
                    u8::from(cell.italic()),
                    u8::from(cell.underline()),
                    u8::from(cell.inverse()),
                ),
                None => format!(
                    " {:?}{:?}00000|",
                    vt100::Color::Default,
                    vt100::Color::Default
                ),
            })
            .collect()
    };
    let mut out = Vec::new();
    for offset in (1..=screen.scrollback_len()).rev() {
        screen.set_scrollback(offset);
        out.push(row(&screen, 0));
    }
    screen.set_scrollback(0);
    out.extend((0..rows.get()).map(|r| row(&screen, r)));
    out.push(picture(&screen).lines().last().unwrap().to_string());
    out
}

#[test]
fn floods_of_plain_text_are_parsed_only_for_their_last_rows() {
    let size = Size { cols: 20, rows: 6 };
    let mut screen = with_grids(size, 30);
    let flood = FLOOD.repeat(200);
    for chunk in flood.as_bytes().chunks(4096) {
        screen.feed(chunk);
    }
    // 510 rows of 20 columns are kept; the front is looked at again once that doubled.
    let kept = screen.emulator().run.len();
    assert!(
        (10_200..=2 * 10_220 + 4096).contains(&kept),
        "about 510 rows of 20 columns held back, not {kept} bytes"
    );
    // A prompt with a colour ends the run: it is parsed, then the prompt.
    screen.feed(b"\r\n\x1b[1m$ ");
    assert!(screen.emulator().run.is_empty());
    let want = expected(size, 30, &[flood.as_bytes(), b"\r\n\x1b[1m$ "]);
    assert_eq!(
        cells(screen.emulator().parser.screen()),
        cells(want.screen())
    );

    // Lines: what is kept starts with a carriage return followed by 2 × 6 + 502 + 2 line
    // feeds.
    let mut screen = with_grids(size, 30);
    let lines: String = (0..5000).map(|n| format!("{n}\r\n")).collect();
    for chunk in lines.as_bytes().chunks(1000) {
        screen.feed(chunk);
    }
    let held = &screen.emulator().run;
    assert_eq!(held[0], b'\r');
    let feeds = held.iter().filter(|b| **b == b'\n').count();
    assert!(feeds >= 516, "{feeds} line feeds held");
    assert!(held.len() <= 16 * 1024 + 1000, "{} bytes held", held.len());
    screen.settle();
    assert!(!screen.holds_output());
    let want = expected(size, 30, &[lines.as_bytes()]);
    assert_eq!(
        cells(screen.emulator().parser.screen()),
        cells(want.screen())
    );

    // Not while the scroll region is not the whole screen, nor inside a sequence.
    for before in [&b"\x1b[2;5r"[..], b"\x1b]2;"] {
        let mut screen = with_grids(size, 30);
        screen.feed(before);
        screen.feed(flood.as_bytes());
        assert!(screen.emulator().run.is_empty(), "{before:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Holding plain text back and dropping rows' worth of it changes nothing: after any
    /// output, fed in chunks of any size, and then the tallest screen, the model is what a
    /// terminal shown all of it is.
    #[test]
    fn floods_of_plain_text_end_as_if_parsed_whole(
        pieces in prop::collection::vec(piece(), 0..200),
        chunk in 1usize..5000,
    ) {
        let output = pieces.concat();
        let size = Size { cols: 20, rows: 6 };
        let mut screen = with_grids(size, 30);
        for part in output.as_bytes().chunks(chunk) {
            screen.feed(part);
        }
        let mut want = expected(size, 30, &[output.as_bytes()]);
        screen.resize(Size { cols: 20, rows: 500 });
        want.set_size(dimension(500), dimension(20));
        screen.emulator().flush_run();
        prop_assert_eq!(
            cells(screen.emulator().parser.screen()),
            cells(want.screen()),
            "output {:?}",
            output
        );
    }

    /// Whatever the output, a client drawn the snapshot shows what a terminal shown the
    /// whole output shows, cell for cell.
    #[test]
    fn any_output_round_trips(pieces in prop::collection::vec(piece(), 0..120)) {
        let output = pieces.concat();
        let size = Size { cols: 20, rows: 6 };
        let snapshot = model(size, 30, &[output.as_bytes()]).snapshot();
        let client = terminal(size, 30, &snapshot);
        let want = expected(size, 30, &[output.as_bytes()]);
        prop_assert_eq!(cells(client.screen()), cells(want.screen()), "output {:?}", output);
    }

    /// A model that keeps its first output as bytes draws the same snapshot as one with
    /// grids from the start, whatever the output, its chunking and the resizes in it, and
    /// before and after it outgrows the bytes it keeps.
    #[test]
    fn a_model_without_grids_draws_what_one_with_grids_draws(
        steps in prop::collection::vec(
            prop_oneof![
                4 => piece().prop_map(|p| (p.as_bytes().to_vec(), None)),
                1 => (1u16..60, 1u16..20).prop_map(|(cols, rows)| (Vec::new(), Some(Size { cols, rows }))),
                1 => (1usize..3000).prop_map(|n| ("x".repeat(n).into_bytes(), None)),
            ],
            0..60,
        ),
    ) {
        let size = Size { cols: 20, rows: 6 };
        let mut lazy = ScreenModel::new(size, 30);
        let mut eager = with_grids(size, 30);
        for (bytes, resize) in &steps {
            match resize {
                Some(size) => {
                    lazy.resize(*size);
                    eager.resize(*size);
                }
                None => {
                    lazy.feed(bytes);
                    eager.feed(bytes);
                }
            }
        }
        let grids = lazy.has_grids();
        prop_assert_eq!(lazy.snapshot(), eager.snapshot());
        prop_assert_eq!(lazy.has_grids(), grids, "a snapshot builds no grids for good");
    }
}

#[test]
fn a_model_keeps_little_output_as_bytes_and_builds_its_grids_past_it() {
    let mut screen = ScreenModel::new(SIZE, 100);
    screen.resize(Size { cols: 30, rows: 8 });
    screen.feed(b"\x1b[1mwelcome\x1b[0m\r\n$ ");
    screen.resize(SIZE);
    screen.feed(b"ls\r\nbin  etc\r\n$ ");
    assert!(
        !screen.has_grids(),
        "a prompt and a short listing are kept as bytes"
    );
    let mut want = terminal(
        Size { cols: 30, rows: 8 },
        100,
        b"\x1b[1mwelcome\x1b[0m\r\n$ ",
    );
    want.set_size(dimension(SIZE.rows), dimension(SIZE.cols));
    want.process(b"ls\r\nbin  etc\r\n$ ");
    let client = terminal(SIZE, 100, &screen.snapshot());
    assert_eq!(picture(client.screen()), picture(want.screen()));
    assert!(
        !screen.has_grids(),
        "a snapshot draws from a passing emulator"
    );

    screen.feed(&[b'y'; LAZY_BYTES]);
    assert!(
        screen.has_grids(),
        "more than {LAZY_BYTES} bytes of output build the grids"
    );
    assert!(screen.contents().ends_with("yyyy"));

    // Each resize is kept until there are too many of them.
    let mut screen = model(SIZE, 100, &[b"$ "]);
    for i in 0..LAZY_RESIZES {
        screen.resize(Size {
            cols: 30 + i as u16,
            rows: 8,
        });
    }
    assert!(!screen.has_grids());
    screen.resize(SIZE);
    assert!(screen.has_grids());
    assert_eq!(screen.contents(), "$ ");
}
