//! 1,000 idle hardened sessions open at once (issue 12) on one server and the real engine:
//! sessions are opened to their prompt, `AT_ONCE` at a time, and held open; the run stops at
//! `TARGET`, at the first session that fails, or after `BOUND`. Prints how many were open,
//! how long it took, the server's RSS against its 100 MiB target, the host's memory (the
//! sandboxes and the engine's shims), and what stopped it. Then every session is closed and
//! the run waits until no container of its deployment is left. Asserts nothing about speed.
//!
//! Run: `cargo bench --bench idle` (release). Needs about 12 GiB of free memory for the
//! engine's side and a descriptor limit of a few thousand for the benchmark and the server
//! (`ulimit -n 8192`).

#[allow(dead_code)]
#[path = "../tests/it/support.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::json;
use support::{connect_from, containers_with_label, Client, Server};

const TARGET: usize = 1000;
const AT_ONCE: usize = 8;
/// The whole opening phase; a run that has not reached `TARGET` by then reports how far it got.
const BOUND: Duration = Duration::from_secs(15 * 60);
/// Sessions per client address: the harness allows 50 per address.
const PER_ADDRESS: usize = 50;

/// The host's available memory (MemAvailable), in KiB.
fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Session `i`, from an address of its own block of `PER_ADDRESS`, open to its prompt.
async fn open(server: &Server, i: usize) -> Result<Client, String> {
    let from = IpAddr::V4(Ipv4Addr::new(127, 0, 3, (i / PER_ADDRESS) as u8 + 1));
    let mut c = connect_from(server, from, &[])
        .await
        .map_err(|refused| format!("upgrade refused: {refused:?}"))?;
    c.auth(json!({"apiKey": "bench.key:secret"})).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&c.output).contains("$ ") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || c.next(left).await.is_none() {
            return Err(format!(
                "no prompt: closed {:?}, controls {:?}",
                c.closed, c.controls
            ));
        }
    }
    Ok(c)
}

#[tokio::main]
async fn main() {
    let server = Server::start(&[
        "--max-sessions",
        &TARGET.to_string(),
        "--max-connections",
        &(TARGET + 100).to_string(),
    ]);
    let label = format!("termcell.deployment={}", server.deployment);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss0, avail0) = (server.rss_kib(), mem_available_kib());
    println!(
        "termcell idle sessions: up to {TARGET}, {AT_ONCE} at a time, within {BOUND:?}; \
         server RSS {rss0} KiB at start"
    );

    let started = Instant::now();
    let mut held = Vec::with_capacity(TARGET);
    let mut stopped_by = format!("reached {TARGET}");
    let mut opening = stream::iter(0..TARGET)
        .map(|i| open(&server, i))
        .buffer_unordered(AT_ONCE);
    while let Some(result) = opening.next().await {
        match result {
            Ok(c) => held.push(c),
            Err(why) => {
                stopped_by = format!("session {} failed: {why}", held.len() + 1);
                break;
            }
        }
        if held.len() % 100 == 0 {
            println!(
                "  {:>4} open after {:>6.1} s, server RSS {} KiB",
                held.len(),
                started.elapsed().as_secs_f64(),
                server.rss_kib()
            );
        }
        if started.elapsed() > BOUND {
            stopped_by = format!("the bound of {BOUND:?}");
            break;
        }
    }
    drop(opening);
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss1, avail1) = (server.rss_kib(), mem_available_kib());
    let n = held.len().max(1) as f64;
    println!("-- {} sessions open at once", held.len());
    println!(
        "opened in {:.1} s ({:.0} per minute); stopped by: {stopped_by}",
        took.as_secs_f64(),
        held.len() as f64 * 60.0 / took.as_secs_f64()
    );
    println!(
        "server RSS {:.1} MiB (target < 100 MiB): {:.1} KiB per session beyond the {rss0} KiB at start",
        rss1 as f64 / 1024.0,
        (rss1 as f64 - rss0 as f64) / n
    );
    println!(
        "host memory used by the sessions (MemAvailable fell by): {:.1} MiB, {:.2} MiB per session",
        (avail0 as f64 - avail1 as f64) / 1024.0,
        (avail0 as f64 - avail1 as f64) / 1024.0 / n
    );

    // Close all; the server removes every sandbox.
    let closing = Instant::now();
    for c in &mut held {
        c.close(1000, "user-closed-bench").await;
    }
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut left = containers_with_label(&label).len();
    while left > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        left = containers_with_label(&label).len();
    }
    println!(
        "closed: {left} containers left after {:.1} s; server RSS {} KiB",
        closing.elapsed().as_secs_f64(),
        server.rss_kib()
    );
    support::remove_containers(&label);
}
