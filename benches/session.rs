//! Session benchmarks against the real server and the real Docker engine. Prints figures;
//! asserts nothing about speed. Run: `cargo bench --bench session` (builds in release).
//!
//! Two servers run side by side, one with the screen model (the default) and one without
//! (`--screen-model false`), and every figure that the model could change is printed for
//! both, measured in turns in the same run:
//! - time from WebSocket open to the first prompt byte (new session), median of 10
//! - time from a resume's auth frame to the snapshot received, median of 10
//! - output throughput through the WebSocket: `head -c 64 MiB /dev/zero | tr '\0' x` and
//!   `seq 1 1000000` (short lines, every one scrolls), five turns each, the servers alternating
//! - server RSS: idle, with 10 sessions that filled their scrollback, and peak while one
//!   session prints flat out
//!
//! and, in this process, the memory of one screen model at the default size and scrollback
//! (a counting allocator): new, after a shell session, and at its worst (every scrollback
//! row full width and coloured, the alternate screen in use); and how fast one model
//! takes plain text, short lines (both floods it parses only the end of) and coloured
//! lines (parsed whole) on one thread.

#[allow(dead_code)]
#[path = "../tests/it/support.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Client, Server};
use termcell_actors::screen::{ScreenModel, Size};
use termcell_actors::{SessionSettings, DEFAULT_SCROLLBACK_LINES};

/// Counts the bytes allocated and not yet freed by this process.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        LIVE.fetch_add(size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const KEY: &str = "bench.key:secret";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn median_f(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Turns of each throughput workload per server.
const TURNS: usize = 5;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn first_prompt(server: &Server) -> (Duration, Client, String) {
    let t0 = Instant::now();
    let mut c = Client::connect(server).await;
    c.auth(json!({"apiKey": KEY, "client": "bench"})).await;
    let id = c.wait_hello().await;
    c.wait_output("$ ", Duration::from_secs(30)).await;
    (t0.elapsed(), c, id)
}

/// A session that printed `lines` numbered lines and a marker, dropped without a close.
async fn dropped_session(server: &Server, lines: u32) -> String {
    let (_, mut c, id) = first_prompt(server).await;
    c.run(
        &format!("seq 1 {lines}; echo mark-$((20+1))"),
        "mark-21\r\n",
    )
    .await;
    c.reset();
    id
}

/// From the resume's auth frame to its first output frame: the snapshot (which must hold
/// the marker), or without a model the bare clear.
async fn resume_time(server: &Server, id: &str, model: bool) -> Duration {
    let mut r = Client::connect(server).await;
    let t0 = Instant::now();
    r.auth(json!({"apiKey": KEY, "client": "bench", "sessionId": id}))
        .await;
    while r.output.is_empty() {
        r.next(Duration::from_secs(30))
            .await
            .expect("output after the resume");
    }
    let took = t0.elapsed();
    let first = String::from_utf8_lossy(&r.output).to_string();
    assert!(first.starts_with("\x1bc"), "{first:?}");
    assert_eq!(first.contains("mark-21"), model, "{first:?}");
    r.close(1000, "user-closed-bench").await;
    took
}

/// Runs `command` in a new session and reads its output as fast as possible until
/// `done`; returns MiB/s, the server's CPU milliseconds per MiB, and its peak RSS.
async fn throughput(server: &Server, command: &str, done: &str) -> (f64, f64, u64) {
    let (_, mut c, _) = first_prompt(server).await;
    c.send_text(&format!("{command}; echo {done}-$((1+1))\r"))
        .await;
    let marker = format!("{done}-2");
    let cpu0 = server.cpu_seconds();
    let t0 = Instant::now();
    let (bytes, peak) = c
        .read_flood(&marker, Duration::from_secs(600), Some(server))
        .await;
    let secs = t0.elapsed().as_secs_f64();
    let mib = bytes as f64 / (1024.0 * 1024.0);
    let cpu_ms_per_mib = (server.cpu_seconds() - cpu0) * 1000.0 / mib;
    c.close(1000, "user-closed-bench").await;
    (mib / secs, cpu_ms_per_mib, peak)
}

/// Bytes a closure leaves allocated.
fn allocated_by<T>(make: impl FnOnce() -> T) -> (isize, T) {
    let before = LIVE.load(Ordering::Relaxed);
    let value = make();
    (LIVE.load(Ordering::Relaxed) - before, value)
}

fn model_memory() {
    let d = SessionSettings::default();
    let size = Size {
        cols: d.default_cols,
        rows: d.default_rows,
    };
    let kib = |n: isize| format!("{:.0} KiB", n as f64 / 1024.0);
    let (fresh, model) = allocated_by(|| ScreenModel::new(size, DEFAULT_SCROLLBACK_LINES));
    // A shell session: prompts, a coloured listing, numbered lines.
    let mut model = model;
    let (shell, _) = allocated_by(|| {
        for n in 0..300 {
            model.feed(
                format!(
                    "~ $ ls\r\n\x1b[1;34mbin\x1b[m  \x1b[1;32mrun.sh\x1b[m  notes.txt  {n}\r\n"
                )
                .as_bytes(),
            );
        }
        model.snapshot()
    });
    drop(model);
    // The worst: every row of scrollback full and each cell coloured, then the alternate
    // screen filled too.
    let mut row = String::new();
    for col in 0..size.cols {
        row.push_str(&format!(
            "\x1b[38;5;{}m{}",
            col % 256,
            (b'a' + (col % 26) as u8) as char
        ));
    }
    row.push_str("\r\n");
    let (worst, mut model) = allocated_by(|| {
        let mut model = ScreenModel::new(size, DEFAULT_SCROLLBACK_LINES);
        for _ in 0..(DEFAULT_SCROLLBACK_LINES + 2 * size.rows as usize) {
            model.feed(row.as_bytes());
        }
        model.feed(b"\x1b[?1049h");
        for _ in 0..size.rows {
            model.feed(row.as_bytes());
        }
        model
    });
    let (snapshot_bytes, took) = {
        let t0 = Instant::now();
        let snapshot = model.snapshot();
        (snapshot.len(), t0.elapsed())
    };
    println!(
        "screen model memory ({}x{}, {} rows of scrollback): new {}, after a shell session {}, worst {} (full-width coloured rows, alternate screen in use)",
        size.cols,
        size.rows,
        DEFAULT_SCROLLBACK_LINES,
        kib(fresh),
        kib(fresh + shell),
        kib(worst)
    );
    println!(
        "snapshot of the worst case: {} KiB drawn in {:.2} ms",
        snapshot_bytes / 1024,
        took.as_secs_f64() * 1000.0
    );
}

/// Parsing speed of one model on one thread: the CPU the model adds per MiB of output.
fn model_speed() {
    let d = SessionSettings::default();
    let size = Size {
        cols: d.default_cols,
        rows: d.default_rows,
    };
    let plain = vec![b'x'; 64 << 20];
    let mut lines = Vec::with_capacity(64 << 20);
    let mut n = 0u64;
    while lines.len() < 64 << 20 {
        n += 1;
        lines.extend_from_slice(format!("{n}\r\n").as_bytes());
    }
    // Colour makes every line more than plain text: parsed whole.
    let mut coloured = Vec::with_capacity(64 << 20);
    while coloured.len() < 64 << 20 {
        coloured.extend_from_slice(
            b"\x1b[1;34mbin\x1b[m  \x1b[1;32mrun.sh\x1b[m  notes.txt  \x1b[33msrc\x1b[m\r\n",
        );
    }
    for (what, output) in [
        ("64 MiB of x", &plain),
        ("64 MiB of numbered lines", &lines),
        ("64 MiB of coloured lines", &coloured),
    ] {
        let mut model = ScreenModel::new(size, DEFAULT_SCROLLBACK_LINES);
        let t0 = Instant::now();
        for chunk in output.chunks(16 * 1024) {
            model.feed(chunk);
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "screen model parsing, {what}: {:.1} MiB/s on one thread ({:.1} ms per MiB)",
            64.0 / secs,
            secs * 1000.0 / 64.0
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    model_memory();
    model_speed();

    let plain = Server::start(&["--max-sessions", "100", "--screen-model", "false"]);
    let model = Server::start(&["--max-sessions", "100"]);
    let servers = [("without model", &plain), ("with model", &model)];
    println!(
        "termcell session benchmarks (server pids {} without the model, {} with it)",
        plain.pid(),
        model.pid()
    );
    for (name, server) in servers {
        println!("server RSS idle, {name}: {} KiB", server.rss_kib());
        // Warm the engine's caches once.
        let (_, mut warm, _) = first_prompt(server).await;
        warm.close(1000, "user-closed-bench").await;
    }

    // In turns, so that both servers see the same load on the machine.
    let mut opens: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..10 {
        for (i, (_, server)) in servers.iter().enumerate() {
            let (took, mut c, _) = first_prompt(server).await;
            opens[i].push(took);
            c.close(1000, "user-closed-bench").await;
        }
    }
    for (i, (name, _)) in servers.iter().enumerate() {
        let opens = &opens[i];
        println!(
            "open to first prompt byte, {name}: median {} (min {}, max {}, n=10)",
            ms(median(opens.clone())),
            ms(*opens.iter().min().unwrap()),
            ms(*opens.iter().max().unwrap())
        );
    }

    for lines in [10, 1000] {
        let mut resumes: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..10 {
            for (i, (_, server)) in servers.iter().enumerate() {
                let id = dropped_session(server, lines).await;
                resumes[i].push(resume_time(server, &id, i == 1).await);
            }
        }
        for (i, (name, _)) in servers.iter().enumerate() {
            let resumes = &resumes[i];
            println!(
                "resume auth frame to first output frame (the snapshot; without the model a clear) after {lines} lines, {name}: median {} (max {})",
                ms(median(resumes.clone())),
                ms(*resumes.iter().max().unwrap())
            );
        }
    }

    for (name, server) in servers {
        let mut ids = Vec::new();
        let before = server.rss_kib();
        for _ in 0..10 {
            ids.push(dropped_session(server, 1000).await);
        }
        let after = server.rss_kib();
        println!(
            "server RSS with 10 detached sessions that printed 1000 lines, {name}: {after} KiB ({:+} KiB per session)",
            (after as i64 - before as i64) / 10
        );
        for id in ids {
            let mut r = Client::connect(server).await;
            r.auth(json!({"apiKey": KEY, "client": "bench", "sessionId": id}))
                .await;
            r.wait_hello().await;
            r.close(1000, "user-closed-bench").await;
        }
    }

    let workloads = [
        (
            "64 MiB of x",
            "head -c 67108864 /dev/zero | tr '\\0' x",
            "done",
        ),
        (
            "seq 1 1000000 (6.9 MB of lines)",
            "seq 1 1000000",
            "seqdone",
        ),
    ];
    for (what, command, done) in workloads {
        let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let mut cpu: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let mut peaks = [0u64; 2];
        for turn in 0..TURNS {
            // Alternate which server goes first.
            for k in 0..2 {
                let i = (k + turn) % 2;
                let (rate, ms, peak) = throughput(servers[i].1, command, done).await;
                rates[i].push(rate);
                cpu[i].push(ms);
                peaks[i] = peaks[i].max(peak);
            }
        }
        let mean = |r: &Vec<f64>| r.iter().sum::<f64>() / r.len() as f64;
        for (i, (name, _)) in servers.iter().enumerate() {
            let r = &rates[i];
            println!(
                "output throughput, {what}, {name}: mean {:.1} MiB/s, median {:.1} (turns {}); server CPU {:.1} ms per MiB; server RSS peak {} KiB",
                mean(r),
                median_f(r),
                r.iter()
                    .map(|x| format!("{x:.1}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                mean(&cpu[i]),
                peaks[i]
            );
        }
        println!(
            "output throughput, {what}: with the model {:.2}x without it (medians {:.2}x); server CPU per MiB {:.2}x",
            mean(&rates[1]) / mean(&rates[0]),
            median_f(&rates[1]) / median_f(&rates[0]),
            mean(&cpu[1]) / mean(&cpu[0])
        );
    }
}
