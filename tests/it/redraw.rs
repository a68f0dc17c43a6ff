//! A resumed client is drawn the screen as it was (through the real server and engine).
//! The client's terminal is played by a second emulator fed with every output byte the
//! client received, in order: one that kept what it showed before the drop (as the
//! reference's browser client does) and one that starts blank (a reloaded page).
//! Queries in what a client receives are answered as xterm.js answers them, so that a
//! query drawn twice would reach the shell as stray input.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

const KEY: &str = "app.key:secret";
const COLS: u16 = 100;
const ROWS: u16 = 30;

/// A session of a client that says who it is (no handshake line in its output).
async fn open(server: &Server) -> (Client, String) {
    let mut c = Client::connect(server).await;
    c.auth(json!({"apiKey": KEY, "client": "it-redraw"})).await;
    let id = c.wait_hello().await;
    c.wait_output("$ ", T).await;
    (c, id)
}

async fn resume(server: &Server, id: &str) -> Client {
    let mut c = Client::connect(server).await;
    c.auth(json!({"apiKey": KEY, "client": "it-redraw", "sessionId": id}))
        .await;
    assert_eq!(c.wait_hello().await, id);
    c
}

/// A terminal of `cols` × `rows` that was shown `parts` in order.
fn terminal(cols: u16, rows: u16, parts: &[&[u8]]) -> vt100::Parser {
    let mut t = vt100::Parser::new(rows.try_into().unwrap(), cols.try_into().unwrap(), 10_000);
    for part in parts {
        t.process(part);
    }
    t
}

/// Every line of a terminal, scrollback first, as plain text.
fn all_lines(t: &vt100::Parser) -> Vec<String> {
    let mut rows = String::new();
    t.screen()
        .write_contents_formatted_basic(
            &mut rows,
            vt100::capture::BasicFormattedCaptureRange::Full(&mut Default::default()),
        )
        .unwrap();
    rows.lines()
        .map(|l| vt100::capture::basic_formatted_to_plain(l).collect::<String>())
        .collect()
}

/// The visible screen, cell for cell (text and attributes), and the cursor.
fn picture(t: &vt100::Parser) -> String {
    let screen = t.screen();
    let rows: Vec<String> = screen.rows_formatted(0, screen.size().1.get()).collect();
    format!(
        "{}\n-- cursor {:?}, alternate screen {}",
        rows.join("\n"),
        screen.cursor_position(),
        screen.alternate_screen()
    )
}

/// The queries a terminal answers (cursor position, status, device attributes) in
/// `bytes`, with xterm.js's answers.
fn answers(bytes: &[u8]) -> Vec<&'static str> {
    struct Queries(Vec<&'static str>);
    impl vte::Perform for Queries {
        fn csi_dispatch(&mut self, params: &vte::Params, inter: &[u8], _: bool, action: char) {
            let first = params.iter().next().map(|p| p[0]).unwrap_or(0);
            match (inter, action, first) {
                (_, 'n', 6) => self.0.push("\x1b[1;1R"),
                (_, 'n', 5) => self.0.push("\x1b[0n"),
                ([], 'c', _) => self.0.push("\x1b[?1;2c"),
                ([b'>'], 'c', _) => self.0.push("\x1b[>0;276;0c"),
                _ => {}
            }
        }
    }
    let mut queries = Queries(Vec::new());
    vte::Parser::new().advance(&mut queries, bytes);
    queries.0
}

/// Reads until a terminal shown `before` and then this client's output satisfies `done`.
async fn until_drawn(
    c: &mut Client,
    before: &[u8],
    what: &str,
    done: impl Fn(&vt100::Parser) -> bool,
) -> vt100::Parser {
    let ok = eventually(T, async || {
        if done(&terminal(COLS, ROWS, &[before, &c.output])) {
            return true;
        }
        c.next(Duration::from_millis(200)).await;
        false
    })
    .await;
    let t = terminal(COLS, ROWS, &[before, &c.output]);
    assert!(ok, "{what} never drawn; screen:\n{}", picture(&t));
    t
}

#[tokio::test]
async fn numbered_lines_come_back_once_and_nothing_is_typed_for_the_client() {
    let server = Server::start(&[]);
    let (mut a, id) = open(&server).await;
    // `cat -v` reads the TTY from now on: any answer to a query would show up as `^[`.
    a.run(
        "for i in $(seq 1 50); do echo line-$i.; done; cat -v",
        "line-50.",
    )
    .await;
    let before = std::mem::take(&mut a.output);
    assert!(
        !answers(&before).is_empty(),
        "the shell asked the terminal where its cursor is (busybox does at each prompt)"
    );
    a.reset();

    let mut b = resume(&server, &id).await;
    b.wait_output("line-50.", T).await;
    assert!(b.output.starts_with(b"\x1bc"), "the snapshot clears first");
    for answer in answers(&b.output) {
        b.send_text(answer).await;
    }
    let snapshot = b.output.clone();
    for t in [
        terminal(COLS, ROWS, &[&before, &snapshot]),
        terminal(COLS, ROWS, &[&snapshot]),
    ] {
        let lines = all_lines(&t);
        for n in 1..=50 {
            let line = format!("line-{n}.");
            assert_eq!(
                lines.iter().filter(|l| **l == line).count(),
                1,
                "{line} once in {lines:#?}"
            );
        }
    }

    // What `cat -v` got since the resume is only what is typed now.
    b.send_text("typed-after\r").await;
    b.wait_count("typed-after", 2, T).await;
    b.send_text("\x04").await;
    b.run("echo done-$((2+2))", "done-4").await;
    let after = String::from_utf8_lossy(&b.output[snapshot.len()..]).to_string();
    assert!(
        !after.contains("^["),
        "stray input reached the shell: {after:?}"
    );
}

/// Opens busybox vi on a file, drops, resumes: the screen matches cell for cell, and `:q`
/// goes back to the shell. `first` runs before vi.
async fn vi_comes_back(first: &str) {
    let server = Server::start(&[]);
    let (mut a, id) = open(&server).await;
    if !first.is_empty() {
        a.send_text(&format!("{first}; echo first-$((1+1))\r"))
            .await;
        let mut read = 0usize;
        while !String::from_utf8_lossy(&a.output[a.output.len().saturating_sub(4096)..])
            .contains("first-2")
        {
            let before = a.output.len();
            assert!(a.next(T).await.is_some(), "no output from {first:?}");
            read += a.output.len() - before;
            if a.output.len() > 1 << 20 {
                a.output.drain(..a.output.len() - (64 << 10));
            }
        }
        eprintln!("{first:?} printed {read} bytes");
        a.output.clear();
    }
    a.send_text("printf 'alpha-%s\\nbeta\\ngamma\\n' $((6*7)) > /tmp/f; vi /tmp/f\r")
        .await;
    let before_drop = until_drawn(&mut a, b"", "vi", |t| {
        let text = t.screen().contents();
        t.screen().alternate_screen() && text.contains("alpha-42") && text.contains("1/3")
    })
    .await;
    let seen = a.output.clone();
    a.reset();

    let mut b = resume(&server, &id).await;
    for (what, shown_before) in [("a blank terminal", &b""[..]), ("the old terminal", &seen)] {
        let t = until_drawn(&mut b, shown_before, "the snapshot", |t| {
            t.screen().contents().contains("alpha-42")
        })
        .await;
        assert_eq!(picture(&t), picture(&before_drop), "on {what}");
    }
    assert!(answers(&b.output).is_empty(), "no query in the snapshot");

    b.send_text(":q\r").await;
    b.run("echo after-vi-$((3*3))", "after-vi-9").await;
    let t = terminal(COLS, ROWS, &[&b.output]);
    assert!(!t.screen().alternate_screen());
    let lines = all_lines(&t);
    assert!(
        lines.iter().any(|l| l.ends_with("vi /tmp/f")),
        "the shell's screen from before vi is back: {lines:#?}"
    );
}

#[tokio::test]
async fn vi_comes_back_cell_for_cell_and_quits() {
    vi_comes_back("").await;
}

#[tokio::test]
async fn a_full_screen_program_after_more_output_than_the_old_ring_comes_back() {
    vi_comes_back("seq 1 200000").await;
}

#[tokio::test]
async fn a_client_that_resumes_at_another_size_is_drawn_at_that_size() {
    let server = Server::start(&[]);
    let (mut a, id) = open(&server).await;
    a.run("for i in $(seq 1 40); do echo row-$i.; done", "row-40.")
        .await;
    a.reset();

    // The window changed while the socket was down: the client says its size as soon as
    // it is connected (as the built-in page does).
    let mut b = Client::connect(&server).await;
    b.auth(json!({"apiKey": KEY, "client": "it-redraw", "sessionId": id}))
        .await;
    b.wait_control("status", Some("connected"), T).await;
    b.send_text(r#"{"type":"resize","cols":60,"rows":20}"#)
        .await;
    b.wait_count("\x1bc", 2, T).await;
    let second = b.output.windows(2).rposition(|w| w == b"\x1bc").unwrap();
    b.wait_count("row-40.", 2, T).await;
    assert_eq!(b.tty_size().await, (20, 60));

    // Drawn from the second snapshot alone, a 60 × 20 terminal shows the end of the output
    // above the prompt, and one that saw everything shows the same.
    let t = terminal(60, 20, &[&b.output[second..]]);
    let lines = all_lines(&t);
    for n in 1..=40 {
        let line = format!("row-{n}.");
        assert_eq!(
            lines.iter().filter(|l| **l == line).count(),
            1,
            "{lines:#?}"
        );
    }
    assert_eq!(
        picture(&t),
        picture(&terminal(60, 20, &[&b.output])),
        "the first snapshot leaves no trace"
    );
}

/// The old replay ring kept the last 256 KiB of output: once a full-screen program had
/// printed more, the switch to the alternate screen was gone from it.
#[tokio::test]
async fn a_full_screen_program_that_printed_more_than_the_old_ring_comes_back() {
    let server = Server::start(&[]);
    let (mut a, id) = open(&server).await;
    a.send_text("seq 1 200000 > /tmp/s; vi /tmp/s\r").await;
    until_drawn(&mut a, b"", "vi", |t| {
        t.screen().alternate_screen() && t.screen().contents().contains("/200000")
    })
    .await;
    // Page forward, one page at a time (vi draws once for keys that arrive together),
    // until vi has printed more than the old ring held. The client's terminal is fed as
    // output arrives.
    let mut t = terminal(COLS, ROWS, &[&a.output]);
    let start = a.output.len();
    let first_line = |t: &vt100::Parser| -> u32 {
        let contents = t.screen().contents();
        contents
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut shown = first_line(&t);
    while a.output.len() - start < 300 * 1024 {
        a.send_text("\x06").await;
        while first_line(&t) == shown {
            let fed = a.output.len();
            assert!(
                a.next(T).await.is_some(),
                "vi stopped paging at line {shown}"
            );
            t.process(&a.output[fed..]);
        }
        shown = first_line(&t);
    }
    let read = a.output.len() - start;
    // The status line after the last page.
    a.send_text("\x07").await;
    let before_drop = until_drawn(&mut a, b"", "the status line", |t| {
        t.screen().contents().contains(&format!("{shown}/200000"))
    })
    .await;
    eprintln!("vi printed {read} bytes");
    assert!(shown > 1000, "vi paged forward: line {shown}");
    a.reset();

    let mut b = resume(&server, &id).await;
    let t = until_drawn(&mut b, b"", "the snapshot", |t| {
        t.screen().alternate_screen()
    })
    .await;
    assert_eq!(picture(&t), picture(&before_drop));
    b.send_text(":q\r").await;
    b.run("echo after-vi-$((4*4))", "after-vi-16").await;
}
