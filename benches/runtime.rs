//! The cost of gVisor, against the real server and the real Docker engine: two servers,
//! one with runc (the default) and one with `--runtime runsc`, measured in turns in the
//! same run so that the ratio holds on a noisy machine. Prints figures; asserts nothing
//! about speed. Run: `cargo bench --bench runtime` (needs the `runsc` runtime registered:
//! `TERMCELL_WITH_GVISOR=1 scripts/setup.sh`).
//!
//! - time from WebSocket open to the first prompt byte (a new session), median and p90 of 10
//! - keystroke echo round trip through the WebSocket, median and p99 of 200 keystrokes
//! - output throughput: `head -c 64 MiB /dev/zero | tr '\0' x`, three turns

#[allow(dead_code)]
#[path = "../tests/it/support.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Client, Event, Server};

const KEY: &str = "bench.key:secret";
const OPENS: usize = 10;
const KEYSTROKES: usize = 200;

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn first_prompt(server: &Server) -> (Duration, Client) {
    let t0 = Instant::now();
    let mut c = Client::connect(server).await;
    c.auth(json!({"apiKey": KEY, "client": "bench"})).await;
    c.wait_hello().await;
    c.wait_output("$ ", Duration::from_secs(60)).await;
    (t0.elapsed(), c)
}

/// Types one character at a time at the prompt and times each echo.
async fn echoes(c: &mut Client, n: usize) -> Vec<Duration> {
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        if i % 50 == 0 {
            // Keep the line short: ^U clears it.
            c.send_text("\x15").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            while c.next(Duration::from_millis(20)).await.is_some() {}
        }
        c.output.clear();
        let t0 = Instant::now();
        c.send_text("x").await;
        loop {
            match c.next(Duration::from_secs(10)).await {
                Some(Event::Output(_)) if c.output.contains(&b'x') => break,
                Some(_) => {}
                None => panic!("no echo within 10 s"),
            }
        }
        took.push(t0.elapsed());
    }
    c.send_text("\x15").await;
    took
}

/// MiB/s of 64 MiB printed by the session and read by this client.
async fn throughput(server: &Server) -> f64 {
    let (_, mut c) = first_prompt(server).await;
    c.send_text("head -c 67108864 /dev/zero | tr '\\0' x; echo done-$((1+1))\r")
        .await;
    let t0 = Instant::now();
    let mut bytes = 0usize;
    loop {
        let before = c.output.len();
        match c.next(Duration::from_secs(120)).await {
            Some(Event::Output(_)) => {}
            Some(Event::Control(_)) => continue,
            other => panic!("throughput: {other:?}"),
        }
        bytes += c.output.len() - before;
        let tail = String::from_utf8_lossy(&c.output[before.saturating_sub(8)..]).to_string();
        if tail.contains("done-2") {
            break;
        }
        if c.output.len() > 1 << 20 {
            let keep = c.output.split_off(c.output.len() - 16);
            c.output = keep;
        }
    }
    let took = t0.elapsed();
    c.close(1000, "user-closed-bench").await;
    bytes as f64 / (1024.0 * 1024.0) / took.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let runc = Server::start(&["--max-sessions", "100"]);
    let runsc = Server::start(&["--max-sessions", "100", "--runtime", "runsc"]);
    let servers = [("runc", &runc), ("runsc (gVisor)", &runsc)];
    println!("termcell runtime benchmarks: runc beside gVisor, measured in turns");
    for (_, server) in servers {
        let (_, mut warm) = first_prompt(server).await;
        warm.close(1000, "user-closed-bench").await;
    }

    let mut opens: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..OPENS {
        for (i, (_, server)) in servers.iter().enumerate() {
            let (took, mut c) = first_prompt(server).await;
            opens[i].push(took);
            c.close(1000, "user-closed-bench").await;
        }
    }
    let mut echo: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut clients = Vec::new();
    for (_, server) in servers {
        clients.push(first_prompt(server).await.1);
    }
    for _ in 0..(KEYSTROKES / 50) {
        for (i, c) in clients.iter_mut().enumerate() {
            echo[i].extend(echoes(c, 50).await);
        }
    }
    for mut c in clients {
        c.close(1000, "user-closed-bench").await;
    }
    let mut mibs: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..3 {
        for (i, (_, server)) in servers.iter().enumerate() {
            mibs[i].push(throughput(server).await);
        }
    }

    let best = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    println!(
        "{:<16} {:>22} {:>22} {:>14}",
        "runtime", "open→prompt med/p90", "echo med/p99", "MiB/s (best)"
    );
    for (i, (name, _)) in servers.iter().enumerate() {
        println!(
            "{:<16} {:>22} {:>22} {:>14.1}",
            name,
            format!(
                "{} / {}",
                ms(pct(opens[i].clone(), 0.5)),
                ms(pct(opens[i].clone(), 0.9))
            ),
            format!(
                "{} / {}",
                ms(pct(echo[i].clone(), 0.5)),
                ms(pct(echo[i].clone(), 0.99))
            ),
            best(&mibs[i])
        );
    }
    let med = |v: &[Duration]| pct(v.to_vec(), 0.5).as_secs_f64();
    println!(
        "gVisor / runc: open→prompt {:.2}x, echo {:.2}x, throughput {:.2}x",
        med(&opens[1]) / med(&opens[0]),
        med(&echo[1]) / med(&echo[0]),
        best(&mibs[1]) / best(&mibs[0])
    );
}
