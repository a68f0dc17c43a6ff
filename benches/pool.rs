//! Warm pool and entry program benchmarks (issue 12) against the real server and the real
//! Docker engine, each figure beside a baseline measured in the same run. Prints figures;
//! asserts nothing about speed. Run: `cargo bench --bench pool` (release), or with
//! `--profile dev` for a debug server (its figures are then an upper bound).
//!
//! - time to prompt (WebSocket open → first output byte of the shell): cold
//!   (`--pool-size 0`) and warm (a pool, given time to refill between sessions); baselines:
//!   raw Docker API create + attach + start of the same image and profile (to its first
//!   output byte), and exec create + start of a shell in a running container
//! - keystroke echo round trip: one byte typed, its echo back; baseline: the same through a
//!   raw Docker attach of a container of the same image and profile
//! - output throughput of `head -c N /dev/zero | tr '\0' a` read as fast as possible;
//!   baseline: the same through a raw attach
//!   (and the server's CPU time per MB)
//! - sessions opened (to the prompt) and closed back to back, per minute: cold and warm
//! - server RSS per idle session, and per pool sandbox (server side and the container's
//!   own memory as the engine counts it)
//!
//! Each figure is the median and p99 (the largest value when n < 100) over the stated
//! number of runs.

#[allow(dead_code)]
#[path = "../tests/it/support.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;
use serde_json::json;
use support::{metric, scrape, BuiltImage, Client, Event, Server};
use termcell_actors::docker::{DockerEngine, RawTty};
use termcell_actors::profile::{labels, ContainerSpec, SecurityProfile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "bench.key:secret";
const RUNS: usize = 20;
const ECHOES: usize = 200;
const THROUGHPUT_BYTES: usize = 200_000_000;
const THROUGHPUT_TURNS: usize = 3;
const IDLE_SESSIONS: usize = 50;
const POOL: usize = 10;

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn line(what: &str, unit: &str, v: &[f64]) -> (f64, f64) {
    let (m, p) = (quantile(v, 0.5), quantile(v, 0.99));
    println!(
        "{what:<48} median {m:>9.2} {unit}  p99 {p:>9.2} {unit}  (n={})",
        v.len()
    );
    (m, p)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The create body of a raw baseline container: the session profile, the image's shell.
fn raw_body(image: &str, deployment: &str) -> bollard::models::ContainerCreateBody {
    let spec = ContainerSpec {
        image,
        entrypoint: None,
        cmd: None,
        env: vec!["TERM=xterm-256color".into(), "HOME=/home/user".into()],
        labels: HashMap::from([
            (
                labels::MANAGED_BY.to_string(),
                labels::MANAGED_BY_VALUE.to_string(),
            ),
            (labels::DEPLOYMENT.to_string(), deployment.to_string()),
        ]),
        cols: 100,
        rows: 30,
    };
    SecurityProfile::default().create_body(&spec)
}

/// Reads a raw TTY until its output holds `needle` (or `bytes` bytes); returns all read.
async fn read_until(tty: &mut RawTty, seen: &mut Vec<u8>, needle: &[u8]) {
    let mut buf = vec![0u8; 64 * 1024];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let n = tokio::time::timeout(Duration::from_secs(60), tty.reader.read(&mut buf))
            .await
            .expect("output in time")
            .expect("the TTY reads");
        assert!(n > 0, "the TTY ended");
        seen.extend_from_slice(&buf[..n]);
    }
}

/// Create + attach + start of a raw container to its first output byte.
async fn raw_start(
    engine: &DockerEngine,
    image: &str,
    deployment: &str,
) -> (Duration, String, RawTty) {
    let name = format!("termcell-bench-raw-{}", uuid::Uuid::new_v4().simple());
    let t0 = Instant::now();
    let id = engine
        .create(&name, raw_body(image, deployment))
        .await
        .unwrap();
    let mut tty = engine.attach_raw(&id).await.unwrap();
    engine.start(&id).await.unwrap();
    if tty.initial.is_empty() {
        let mut byte = [0u8; 1];
        tty.reader.read_exact(&mut byte).await.unwrap();
    }
    (t0.elapsed(), id, tty)
}

/// Exec create + start of a shell with a TTY in a running container, to its first byte.
async fn exec_start(docker: &bollard::Docker, id: &str) -> Duration {
    let t0 = Instant::now();
    let exec = docker
        .create_exec(
            id,
            CreateExecOptions {
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(true),
                cmd: Some(vec!["/bin/sh"]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let started = docker
        .start_exec(
            &exec.id,
            Some(StartExecOptions {
                tty: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        panic!("exec detached");
    };
    output.next().await.expect("exec output").unwrap();
    let elapsed = t0.elapsed();
    let _ = input.write_all(b"exit\r").await;
    elapsed
}

/// WebSocket open → the first output byte of the shell.
async fn session_prompt(server: &Server) -> (Duration, Client) {
    let t0 = Instant::now();
    let mut c = Client::connect(server).await;
    c.auth(json!({"apiKey": KEY})).await;
    loop {
        match c.next(Duration::from_secs(60)).await {
            Some(Event::Output(d)) if !d.is_empty() => break,
            Some(Event::Closed(why)) => panic!("closed {why:?}"),
            None => panic!("no prompt"),
            _ => {}
        }
    }
    (t0.elapsed(), c)
}

async fn pool_ready(server: &Server) -> f64 {
    metric(&scrape(server).await, "termcell_pool_ready", &[]).unwrap_or(0.0)
}

async fn wait_pool(server: &Server, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while pool_ready(server).await < n {
        assert!(Instant::now() < deadline, "the pool did not fill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Echo round trips through termcell: one letter typed, wait for it; then the line cleared.
async fn session_echo(c: &mut Client) -> Vec<f64> {
    let mut v = Vec::new();
    for i in 0..ECHOES {
        let letter = [b'a' + (i % 26) as u8];
        c.output.clear();
        let t0 = Instant::now();
        c.send_binary(letter.to_vec()).await;
        while !c.output.contains(&letter[0]) {
            c.next(Duration::from_secs(10)).await.expect("echo");
        }
        v.push(ms(t0.elapsed()));
        if i % 20 == 19 {
            c.send_binary(vec![0x15]).await;
        }
    }
    c.send_binary(vec![0x15]).await;
    v
}

async fn raw_echo(tty: &mut RawTty) -> Vec<f64> {
    let mut v = Vec::new();
    let mut buf = [0u8; 4096];
    for i in 0..ECHOES {
        let letter = b'a' + (i % 26) as u8;
        let t0 = Instant::now();
        tty.writer.write_all(&[letter]).await.unwrap();
        loop {
            let n = tty.reader.read(&mut buf).await.unwrap();
            if buf[..n].contains(&letter) {
                break;
            }
        }
        v.push(ms(t0.elapsed()));
        if i % 20 == 19 {
            tty.writer.write_all(&[0x15]).await.unwrap();
        }
    }
    tty.writer.write_all(&[0x15]).await.unwrap();
    v
}

fn flood() -> String {
    format!("head -c {THROUGHPUT_BYTES} /dev/zero | tr '\\0' a; echo DONE-$((1+1))\r")
}

/// Sessions opened to their prompt and closed, one after the other, for `n` sessions.
async fn per_minute(server: &Server, n: usize) -> f64 {
    let t0 = Instant::now();
    for _ in 0..n {
        let (_, mut c) = session_prompt(server).await;
        c.close(1000, "user-closed-bench").await;
    }
    n as f64 * 60.0 / t0.elapsed().as_secs_f64()
}

async fn session_throughput(c: &mut Client) -> f64 {
    c.output.clear();
    c.send_text(&flood()).await;
    let t0 = Instant::now();
    let mut bytes = 0usize;
    let mut tail = Vec::new();
    while !tail.windows(6).any(|w| w == b"DONE-2") {
        match c.next(Duration::from_secs(60)).await {
            Some(Event::Output(d)) => {
                bytes += d.len();
                tail = d[d.len().saturating_sub(64)..].to_vec();
                c.output.clear();
            }
            Some(_) => {}
            None => panic!("flood stalled"),
        }
    }
    bytes as f64 / 1e6 / t0.elapsed().as_secs_f64()
}

async fn raw_throughput(tty: &mut RawTty) -> f64 {
    tty.writer.write_all(flood().as_bytes()).await.unwrap();
    let t0 = Instant::now();
    let mut bytes = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let mut tail = Vec::new();
    while !tail.windows(6).any(|w| w == b"DONE-2") {
        let n = tty.reader.read(&mut buf).await.unwrap();
        assert!(n > 0);
        bytes += n;
        tail = [&tail[tail.len().saturating_sub(8)..], &buf[..n]].concat();
    }
    bytes as f64 / 1e6 / t0.elapsed().as_secs_f64()
}

/// The memory the engine counts for a container (cgroup v1 usage), in KiB.
fn container_memory_kib(id: &str) -> Option<u64> {
    let path = format!("/sys/fs/cgroup/memory/docker/{id}/memory.usage_in_bytes");
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse::<u64>().ok().map(|b| b / 1024)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let image = BuiltImage::new();
    let engine = DockerEngine::connect().await.unwrap();
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    let deployment = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let cold = Server::start(&[
        "--image",
        &image.0,
        "--pool-size",
        "0",
        "--max-sessions",
        "100",
        // The idle sessions of the memory figure, from one address.
        "--max-sessions-per-ip",
        "100",
    ]);
    let warm = Server::start(&[
        "--image",
        &image.0,
        "--pool-size",
        "2",
        "--max-sessions",
        "100",
    ]);
    println!(
        "termcell pool benchmarks: image {}, {RUNS} runs per time-to-prompt figure, in turns",
        image.0
    );

    // Time to prompt, the four paths in turns so that they see the same load.
    let (mut t_raw, mut t_exec, mut t_cold, mut t_warm) = (vec![], vec![], vec![], vec![]);
    let (_, running, mut running_tty) = raw_start(&engine, &image.0, &deployment).await;
    for _ in 0..RUNS {
        let (t, id, _tty) = raw_start(&engine, &image.0, &deployment).await;
        t_raw.push(ms(t));
        engine.remove(&id).await.unwrap();
        t_exec.push(ms(exec_start(&docker, &running).await));
        let (t, mut c) = session_prompt(&cold).await;
        t_cold.push(ms(t));
        c.close(1000, "user-closed-bench").await;
        wait_pool(&warm, 2.0).await;
        let (t, mut c) = session_prompt(&warm).await;
        t_warm.push(ms(t));
        c.close(1000, "user-closed-bench").await;
    }
    println!("-- time to prompt (ms)");
    let (raw_m, raw_p) = line("raw Docker create + attach + start", "ms", &t_raw);
    line("exec create + start on a running container", "ms", &t_exec);
    let (cold_m, cold_p) = line("termcell cold (--pool-size 0)", "ms", &t_cold);
    line("termcell warm (pool)", "ms", &t_warm);
    println!(
        "cold / raw: median {:.2}x, p99 {:.2}x",
        cold_m / raw_m,
        cold_p / raw_p
    );

    // Echo and throughput: termcell (a warm session) against the raw attach, in turns.
    let (_, mut c) = session_prompt(&warm).await;
    c.wait_output("$ ", Duration::from_secs(10)).await;
    let mut ignored = Vec::new();
    read_until(&mut running_tty, &mut ignored, b"$ ").await;
    let (mut e_raw, mut e_tc) = (vec![], vec![]);
    for _ in 0..2 {
        e_raw.extend(raw_echo(&mut running_tty).await);
        e_tc.extend(session_echo(&mut c).await);
    }
    println!("-- keystroke echo round trip (ms)");
    let (er_m, er_p) = line("raw Docker attach", "ms", &e_raw);
    let (et_m, et_p) = line("termcell WebSocket", "ms", &e_tc);
    println!(
        "termcell / raw: median {:.2}x, p99 {:.2}x",
        et_m / er_m,
        et_p / er_p
    );

    let (mut f_raw, mut f_tc) = (vec![], vec![]);
    let mut cpu = 0.0;
    for _ in 0..THROUGHPUT_TURNS {
        f_raw.push(raw_throughput(&mut running_tty).await);
        let before = warm.cpu_seconds();
        f_tc.push(session_throughput(&mut c).await);
        cpu += warm.cpu_seconds() - before;
    }
    println!(
        "-- output throughput, {} MB (MB/s)",
        THROUGHPUT_BYTES / 1_000_000
    );
    let (fr, _) = line("raw Docker attach", "MB/s", &f_raw);
    let (ft, _) = line("termcell WebSocket", "MB/s", &f_tc);
    println!("termcell / raw: median {:.2}x", ft / fr);
    println!(
        "termcell server CPU: {:.1} ms per MB",
        cpu * 1000.0 / (THROUGHPUT_TURNS * THROUGHPUT_BYTES / 1_000_000) as f64
    );
    c.close(1000, "user-closed-bench").await;
    engine.remove(&running).await.unwrap();

    println!("-- sessions opened to the prompt and closed, back to back ({RUNS} each)");
    println!("cold: {:.0} per minute", per_minute(&cold, RUNS).await);
    wait_pool(&warm, 2.0).await;
    println!(
        "warm (pool of 2, refilled meanwhile): {:.0} per minute",
        per_minute(&warm, RUNS).await
    );

    // Memory: idle sessions on the cold server; pool sandboxes on a server of their own.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = cold.rss_kib();
    let mut idle = Vec::new();
    for _ in 0..IDLE_SESSIONS {
        let (_, mut c) = session_prompt(&cold).await;
        c.wait_output("$ ", Duration::from_secs(10)).await;
        idle.push(c);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with = cold.rss_kib();
    println!("-- memory");
    println!(
        "server RSS per idle session: {:.1} KiB ({IDLE_SESSIONS} sessions: {base} -> {with} KiB)",
        (with as f64 - base as f64) / IDLE_SESSIONS as f64
    );
    drop(idle);
    let none = Server::start(&["--image", &image.0, "--pool-size", "0"]);
    let pooled = Server::start(&["--image", &image.0, "--pool-size", &POOL.to_string()]);
    wait_pool(&pooled, POOL as f64).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (r0, r1) = (none.rss_kib(), pooled.rss_kib());
    println!(
        "server RSS per pool sandbox: {:.1} KiB (pool of {POOL}: {r1} KiB, no pool: {r0} KiB)",
        (r1 as f64 - r0 as f64) / POOL as f64
    );
    let out = std::process::Command::new("docker")
        .args(["ps", "-q", "--no-trunc", "--filter"])
        .arg(format!("label=termcell.deployment={}", pooled.deployment))
        .output()
        .unwrap();
    let mems: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(container_memory_kib)
        .map(|k| k as f64)
        .collect();
    if mems.is_empty() {
        println!("container memory per pool sandbox: not readable here (cgroup v1 path)");
    } else {
        line("container memory per pool sandbox (cgroup)", "KiB", &mems);
    }
}
