//! Recording benchmark against the real server and the real Docker engine. Prints figures;
//! asserts nothing about speed. Run: `cargo bench --bench recording`.
//!
//! Three servers run side by side: one recording nothing, one recording every session
//! (`--record-dir`) with the default per-session cap of 64 MiB, and one with a cap of
//! 2 GiB (so that the whole 20 s is recorded). In turns, a session on each prints flat out for
//! 20 s (`yes` of 40-character lines, stopped by `timeout`) while the client reads as fast
//! as it can; printed for each: the throughput, the server's CPU per MiB and its peak RSS,
//! and for the recorded one the file's size and whether it was cut at its cap.

#[allow(dead_code)]
#[path = "../tests/it/support.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Client, Server};

/// Turns per server.
const TURNS: usize = 3;
const SECONDS: u32 = 20;

struct Turn {
    mib_per_s: f64,
    cpu_ms_per_mib: f64,
    rss_peak_kib: u64,
    id: String,
}

async fn flood(server: &Server) -> Turn {
    let mut c = Client::connect(server).await;
    c.auth(json!({"apiKey": "bench.key:secret"})).await;
    let id = c.wait_hello().await;
    c.send_text(&format!(
        "timeout {SECONDS} yes 0123456789012345678901234567890123456789; echo flood-$((1+1))\r"
    ))
    .await;
    let cpu0 = server.cpu_seconds();
    let t0 = Instant::now();
    let (bytes, peak) = c
        .read_flood("flood-2", Duration::from_secs(120), Some(server))
        .await;
    let bytes = bytes as usize;
    let mib = bytes as f64 / (1024.0 * 1024.0);
    let turn = Turn {
        mib_per_s: mib / t0.elapsed().as_secs_f64(),
        cpu_ms_per_mib: (server.cpu_seconds() - cpu0) * 1000.0 / mib,
        rss_peak_kib: peak,
        id,
    };
    c.send_text("exit\r").await;
    c.wait_close(Duration::from_secs(30)).await;
    turn
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn describe(dir: &Path, id: &str) -> String {
    let path = dir.join(format!("{id}.cast"));
    let text = std::fs::read(&path).unwrap_or_default();
    let tail = String::from_utf8_lossy(&text[text.len().saturating_sub(256)..]).to_string();
    let cut = tail.contains("recording truncated");
    format!(
        "{:.1} MiB, {}",
        text.len() as f64 / (1024.0 * 1024.0),
        if cut {
            "marked truncated at its cap"
        } else {
            "complete"
        }
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = std::env::temp_dir().join(format!("termcell-bench-rec-{}", std::process::id()));
    let plain = Server::start(&[]);
    let capped = Server::start(&["--record-dir", dir.to_str().unwrap()]);
    let whole = Server::start(&[
        "--record-dir",
        dir.to_str().unwrap(),
        "--record-max-bytes",
        "2147483648",
        "--record-max-total-bytes",
        "4294967296",
    ]);
    let servers = [
        ("without recording", &plain),
        ("recording, 64 MiB cap", &capped),
        ("recording, 2 GiB cap", &whole),
    ];
    let mut rates: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for turn in 0..TURNS {
        for (i, (name, server)) in servers.iter().enumerate() {
            let t = flood(server).await;
            let file = if i > 0 {
                let file = format!("; recording {}", describe(&dir, &t.id));
                let _ = std::fs::remove_file(dir.join(format!("{}.cast", t.id)));
                file
            } else {
                String::new()
            };
            println!(
                "turn {}, {name}: {:.1} MiB/s for {SECONDS} s; server CPU {:.1} ms per MiB; server RSS peak {} KiB{file}",
                turn + 1,
                t.mib_per_s,
                t.cpu_ms_per_mib,
                t.rss_peak_kib
            );
            rates[i].push(t.mib_per_s);
        }
    }
    let off = median(&rates[0]);
    for (i, (name, _)) in servers.iter().enumerate().skip(1) {
        let on = median(&rates[i]);
        println!(
            "output throughput, {SECONDS} s of yes: without recording median {off:.1} MiB/s, {name} median {on:.1} MiB/s ({:.2}x)",
            on / off
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
