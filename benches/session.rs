//! Session benchmarks against the real server and the real Docker engine. Prints figures;
//! asserts nothing about speed. Run: `cargo bench --bench session` (builds in release).
//!
//! - time from WebSocket open to the first prompt byte (new session), median of 10
//! - time to resume a session on a new socket (auth to replayed output), median of 10
//! - output throughput through the WebSocket (`head -c 64 MiB /dev/zero` in the session)
//! - server RSS: idle, with 10 live sessions, and peak while one session prints flat out

#[allow(dead_code)]
#[path = "../tests/it/support.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Client, Event, Server};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn first_prompt(server: &Server) -> (Duration, Client, String) {
    let t0 = Instant::now();
    let mut c = Client::connect(server).await;
    c.auth(json!({"apiKey": "bench.key:secret", "client": "bench"}))
        .await;
    let id = c.wait_hello().await;
    c.wait_output("$ ", Duration::from_secs(30)).await;
    (t0.elapsed(), c, id)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let server = Server::start(&["--max-sessions", "100"]);
    println!("termcell session benchmarks (server pid {})", server.pid());
    println!("server RSS idle: {} KiB", server.rss_kib());

    // Warm the engine's caches once.
    let (_, mut warm, _) = first_prompt(&server).await;
    warm.close(1000, "user-closed-bench").await;

    let mut opens = Vec::new();
    for _ in 0..10 {
        let (took, mut c, _) = first_prompt(&server).await;
        opens.push(took);
        c.close(1000, "user-closed-bench").await;
    }
    println!(
        "open to first prompt byte: median {} (min {}, max {}, n=10)",
        ms(median(opens.clone())),
        ms(*opens.iter().min().unwrap()),
        ms(*opens.iter().max().unwrap())
    );

    let mut resumes = Vec::new();
    for _ in 0..10 {
        let (_, mut c, id) = first_prompt(&server).await;
        c.run("echo mark-$((20+1))", "mark-21").await;
        c.reset();
        let t0 = Instant::now();
        let mut r = Client::connect(&server).await;
        r.auth(json!({"apiKey": "bench.key:secret", "client": "bench", "sessionId": id}))
            .await;
        r.wait_output("mark-21", Duration::from_secs(30)).await;
        resumes.push(t0.elapsed());
        r.close(1000, "user-closed-bench").await;
    }
    println!(
        "resume on a new socket to replayed output: median {}",
        ms(median(resumes))
    );

    let mut live = Vec::new();
    for _ in 0..10 {
        live.push(first_prompt(&server).await.1);
    }
    println!("server RSS with 10 live sessions: {} KiB", server.rss_kib());
    for mut c in live {
        c.close(1000, "user-closed-bench").await;
    }

    let (_, mut c, _) = first_prompt(&server).await;
    let total: usize = 64 * 1024 * 1024;
    c.send_text("head -c 67108864 /dev/zero | tr '\\0' x; echo; echo done-$((1+1))\r")
        .await;
    let t0 = Instant::now();
    let mut bytes = 0usize;
    let mut peak = 0u64;
    let mut tail = String::new();
    while !tail.contains("done-2") {
        match c.next(Duration::from_secs(60)).await {
            Some(Event::Output(data)) => {
                bytes += data.len();
                tail = String::from_utf8_lossy(&data[data.len().saturating_sub(64)..]).to_string();
                c.output.clear();
            }
            Some(_) => {}
            None => break,
        }
        if bytes % (4 << 20) < 16 * 1024 {
            peak = peak.max(server.rss_kib());
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "output throughput: {:.1} MiB/s ({} MiB in {:.2} s)",
        bytes as f64 / secs / (1024.0 * 1024.0),
        total >> 20,
        secs
    );
    println!("server RSS peak while printing: {peak} KiB");
    c.close(1000, "user-closed-bench").await;
}
