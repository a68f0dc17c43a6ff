//! Test support: start the real termcell binary on a free port against the real Docker
//! engine, talk to it over a real WebSocket, and look at its containers by label.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use prometheus_parse::{LineInfo, Sample, Scrape};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderName;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long a test waits for anything it expects to happen.
pub const T: Duration = Duration::from_secs(30);
pub const CTRL: &[u8] = b"\x00\x00ABLY_CTRL:";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const HANDSHAKE: &str =
    r#"{"stream":true,"stdin":true,"stdout":true,"stderr":true,"hijack":true}"#;

pub struct Server {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub deployment: String,
    pub dir: PathBuf,
    pub log: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Self::start_with(extra, &[])
    }

    pub fn start_with(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let deployment = format!("it-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let dir = std::env::temp_dir().join(format!("termcell-{deployment}"));
        std::fs::create_dir_all(&dir).unwrap();
        Self::start_in(&deployment, &dir, extra, env)
    }

    /// Starts a server for an existing deployment name (to test a restart).
    pub fn start_in(
        deployment: &str,
        dir: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let audit = dir.join("audit.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_termcell"));
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--deployment",
            deployment,
            "--audit-log",
            audit.to_str().unwrap(),
            // Tests open many connections from one address.
            "--connections-per-minute",
            "1000",
            "--connection-burst",
            "200",
            "--max-sessions-per-ip",
            "50",
            "--max-connections-per-ip",
            "1000",
            // Aggregated rejections are counted into their line within a second.
            "--audit-repeat-window",
            "1",
        ])
        .args(extra)
        .env("TERMCELL_ADMIN_TOKEN", ADMIN_TOKEN)
        // Tests find a session's container by its session label, which a warm pool's
        // sandbox does not carry: the pool's own tests turn it on (--pool-size).
        .env("TERMCELL_POOL_SIZE", "0")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start termcell");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("termcell listening on http://") {
                    let _ = tx.send(("public", addr.to_string()));
                }
                if let Some(addr) = line.strip_prefix("termcell admin API listening on http://") {
                    let _ = tx.send(("admin", addr.to_string()));
                }
                let mut log = sink.lock();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut addr = None;
        let mut admin = None;
        let deadline = Instant::now() + Duration::from_secs(120);
        while addr.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(("public", a)) => addr = Some(a.parse().unwrap()),
                Ok((_, a)) => admin = Some(a.parse().unwrap()),
                Err(_) => panic!("termcell did not start; its log:\n{}", log.lock()),
            }
        }
        Server {
            child: Some(child),
            addr: addr.unwrap(),
            admin,
            deployment: deployment.to_string(),
            dir: dir.to_path_buf(),
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The body of `GET /ready`: readiness, the runtime and the protections report.
    pub async fn ready(&self) -> Value {
        reqwest::get(self.http("/ready"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin.expect("admin listener"), path)
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    pub fn audit_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.audit_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// CPU seconds (user and system) the server process has used (the benches).
    #[allow(dead_code)]
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // The fields after the command name, which is in parentheses.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }

    /// Resident set size of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// The server's containers (all states).
    pub fn containers(&self) -> Vec<String> {
        containers_with_label(&format!("termcell.deployment={}", self.deployment))
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code, or None (and kills it) when
    /// it is still running after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let pid = child.id().to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(move || tx.send(child.wait().unwrap()));
            let status = rx.recv_timeout(within).ok();
            if status.is_none() {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
            status.map(|s| s.code().unwrap_or(-1))
        })
    }

    pub fn log(&self) -> String {
        self.log.lock().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_containers(&format!("termcell.deployment={}", self.deployment));
        remove_restricted_network(&self.deployment);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a killed server with `--network restricted` leaves: its Docker network and its
/// nftables table (a server that shut down cleanly has removed both).
pub fn remove_restricted_network(deployment: &str) {
    let _ = Command::new("docker")
        .args(["network", "rm", &format!("termcell-{deployment}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let table: String = deployment
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", &format!("termcell_{table}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The static in-container programs (termcell-rsh, termcell-probe, termcell-showargs),
/// built once per test run by docker/build-programs.sh; the directory that holds them.
pub fn sandbox_programs() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new("sh")
            .arg("docker/build-programs.sh")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run docker/build-programs.sh");
        assert!(
            out.status.success(),
            "docker/build-programs.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        assert!(
            dir.join("termcell-rsh").is_file(),
            "build-programs.sh printed {dir:?}"
        );
        dir
    })
    .clone()
}

/// [`sandbox_programs`] from async code.
pub async fn built_sandbox_programs() -> PathBuf {
    tokio::task::spawn_blocking(sandbox_programs).await.unwrap()
}

/// An image a test builds, under a tag of its own; removed on drop.
pub struct BuiltImage(pub String);

impl BuiltImage {
    fn tag() -> String {
        format!(
            "termcell-it-image-{}:test",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )
    }

    /// The default image as this checkout builds it (the shared `termcell-sandbox:latest`
    /// may be an older build).
    pub fn new() -> BuiltImage {
        let image = BuiltImage(Self::tag());
        succeed(
            Command::new(env!("CARGO_BIN_EXE_termcell"))
                .args(["build-image", "--admin-listen", "off", "--image", &image.0])
                .arg("--sandbox-programs")
                .arg(sandbox_programs()),
        );
        image
    }

    /// `docker build` of `dockerfile` with `files` (name, contents, mode) beside it.
    pub fn from_dockerfile(dockerfile: &str, files: &[(&str, &[u8], u32)]) -> BuiltImage {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
        for (name, contents, mode) in files {
            let path = dir.path().join(name);
            std::fs::write(&path, contents).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        let image = BuiltImage(Self::tag());
        succeed(
            Command::new("docker")
                .args(["build", "-q", "-t", &image.0])
                .arg(dir.path()),
        );
        image
    }
}

impl Drop for BuiltImage {
    /// Removes the image, waiting a minute at most: an image removal waits for every
    /// container's lock, and a container stuck in its start (another test's runtime
    /// trouble) would otherwise hold this test forever.
    fn drop(&mut self) {
        let Ok(mut rmi) = Command::new("docker")
            .args(["rmi", "-f", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while matches!(rmi.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = rmi.kill();
        let _ = rmi.wait();
    }
}

/// Runs `command`, which must succeed (else the test fails with its stderr).
pub fn succeed(command: &mut Command) {
    let out = command.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn containers_with_label(label: &str) -> Vec<String> {
    docker_ps(label, "{{.ID}}")
}

/// One line per container (any state) carrying `label`, formatted with a Go template.
pub fn docker_ps(label: &str, format: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &format!("label={label}"),
            "--format",
            format,
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

pub fn remove_containers(label: &str) {
    for id in containers_with_label(label) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub fn docker_inspect(id: &str) -> Value {
    let out = Command::new("docker")
        .args(["inspect", id])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0].clone()
}

/// What arrived on a client socket.
#[derive(Debug)]
pub enum Event {
    Control(Value),
    Output(Vec<u8>),
    Closed(Option<(u16, String)>),
}

pub struct Client {
    pub ws: WebSocketStream<TcpStream>,
    pub output: Vec<u8>,
    pub controls: Vec<Value>,
    pub closed: Option<Option<(u16, String)>>,
}

impl Client {
    pub async fn connect(server: &Server) -> Client {
        connect_from(server, LOCALHOST, &[])
            .await
            .unwrap_or_else(|refused| panic!("upgrade refused: {refused:?}"))
    }

    /// Connects and opens a session: waits for `hello` and returns the session id.
    pub async fn session(server: &Server) -> (Client, String) {
        let mut c = Client::connect(server).await;
        c.auth(json!({"apiKey": "app.key:secret"})).await;
        let id = c.wait_hello().await;
        (c, id)
    }

    pub async fn auth(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.to_string())).await.unwrap();
    }

    pub async fn send_binary(&mut self, data: Vec<u8>) {
        self.ws.send(Message::Binary(data)).await.unwrap();
    }

    pub async fn close(&mut self, code: u16, reason: &str) {
        let _ = self
            .ws
            .close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.to_string().into(),
            }))
            .await;
    }

    /// The next event, or None after `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        if self.closed.is_some() {
            return None;
        }
        let msg = tokio::time::timeout(within, self.ws.next()).await.ok()?;
        let event = match msg {
            None | Some(Err(_)) => Event::Closed(None),
            Some(Ok(Message::Close(frame))) => {
                Event::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
            }
            Some(Ok(Message::Binary(data))) => {
                if data.starts_with(CTRL) {
                    Event::Control(serde_json::from_slice(&data[CTRL.len()..]).unwrap())
                } else {
                    Event::Output(data)
                }
            }
            Some(Ok(Message::Text(text))) => Event::Output(text.into_bytes()),
            Some(Ok(_)) => return Some(Event::Output(Vec::new())),
        };
        match &event {
            Event::Control(v) => self.controls.push(v.clone()),
            Event::Output(d) => self.output.extend_from_slice(d),
            Event::Closed(c) => self.closed = Some(c.clone()),
        }
        Some(event)
    }

    /// Reads until a control message with this `type`/`payload` arrives.
    pub async fn wait_control(
        &mut self,
        kind: &str,
        payload: Option<&str>,
        within: Duration,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = self
                .controls
                .iter()
                .find(|v| v["type"] == kind && payload.is_none_or(|p| v["payload"] == p))
            {
                return found.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.next(left).await.is_none() {
                panic!(
                    "no {kind} {payload:?} control within {within:?}; controls {:?}, closed {:?}, output {:?}",
                    self.controls,
                    self.closed,
                    String::from_utf8_lossy(&self.output)
                );
            }
        }
    }

    pub async fn wait_hello(&mut self) -> String {
        let hello = self
            .wait_control("hello", None, Duration::from_secs(60))
            .await;
        hello["sessionId"].as_str().unwrap().to_string()
    }

    /// Reads output until it contains `needle` (searching all output so far).
    pub async fn wait_output(&mut self, needle: &str, within: Duration) -> String {
        self.wait_count(needle, 1, within).await
    }

    /// Reads output until `needle` occurs at least `times` times in all output so far.
    pub async fn wait_count(&mut self, needle: &str, times: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = String::from_utf8_lossy(&self.output).to_string();
            if text.matches(needle).count() >= times {
                return text;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.next(left).await.is_none() {
                panic!(
                    "output never contained {needle:?} {times} times within {within:?}; got {text:?}; controls {:?}, closed {:?}",
                    self.controls, self.closed
                );
            }
        }
    }

    /// Reads until the socket closes; returns the close code and reason.
    pub async fn wait_close(&mut self, within: Duration) -> Option<(u16, String)> {
        let deadline = Instant::now() + within;
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.next(left).await.is_none() && self.closed.is_none() {
                panic!(
                    "socket did not close within {within:?}; controls {:?}, output {:?}",
                    self.controls,
                    String::from_utf8_lossy(&self.output)
                );
            }
        }
        self.closed.clone().unwrap()
    }

    /// Reads output until `needle`, keeping only a short tail of it (searching all of a
    /// long print would be the bottleneck); panics if it is not printed `within`. Returns
    /// the bytes read and, with a `server`, its peak RSS in KiB, looked at every 4 MiB.
    pub async fn read_flood(
        &mut self,
        needle: &str,
        within: Duration,
        server: Option<&Server>,
    ) -> (u64, u64) {
        let deadline = Instant::now() + within;
        let (mut total, mut peak, mut next_rss) = (0u64, 0u64, 0u64);
        loop {
            let keep = self.output.len().saturating_sub(needle.len() + 64);
            self.output.drain(..keep);
            total += keep as u64;
            if let Some(server) = server.filter(|_| total >= next_rss) {
                peak = peak.max(server.rss_kib());
                next_rss = total + (4 << 20);
            }
            if String::from_utf8_lossy(&self.output).contains(needle) {
                return (total + self.output.len() as u64, peak);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                self.next(left).await.is_some(),
                "{needle:?} not printed within {within:?}"
            );
        }
    }

    /// Runs a command line in the shell and waits for a marker after it.
    pub async fn run(&mut self, command: &str, marker: &str) -> String {
        self.send_text(&format!("{command}\r")).await;
        self.wait_output(marker, Duration::from_secs(20)).await
    }

    /// Runs `cmd` in the shell and returns what it printed (between two markers the shell
    /// computes, so the TTY's echo of the typed line never matches them).
    pub async fn capture(&mut self, cmd: &str) -> String {
        static MARK: AtomicUsize = AtomicUsize::new(1);
        let n = MARK.fetch_add(1, Ordering::Relaxed);
        let (begin, end) = (format!("beg-{n}."), format!("end-{n}."));
        self.send_text(&format!(
            "echo beg-$(({n}+0)).; {cmd}; echo end-$(({n}+0)).\r"
        ))
        .await;
        let out = self.wait_output(&end, T).await;
        let start = out
            .find(&begin)
            .expect("begin marker before the end marker")
            + begin.len();
        let stop = out.rfind(&end).unwrap();
        out[start..stop].replace('\r', "").trim().to_string()
    }

    /// The TTY size the shell sees, as `stty size` prints it: (rows, cols).
    pub async fn tty_size(&mut self) -> (u32, u32) {
        let size = self.capture("stty size").await;
        let parsed = size
            .split_once(' ')
            .and_then(|(rows, cols)| Some((rows.parse().ok()?, cols.parse().ok()?)));
        parsed.unwrap_or_else(|| panic!("stty size printed {size:?}"))
    }

    /// Drops the TCP connection with a reset (no close frame).
    pub fn reset(self) {
        let tcp = self.ws.get_ref();
        socket2::SockRef::from(tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(self);
    }
}

/// The session's container id, by its session label.
pub fn container_of(session_id: &str) -> Option<String> {
    containers_with_label(&format!("termcell.session={session_id}"))
        .into_iter()
        .next()
}

/// Waits until the session's container is gone; false if it is still there after `within`.
pub async fn wait_gone(session_id: &str, within: Duration) -> bool {
    eventually(within, async || container_of(session_id).is_none()).await
}

/// How often `eventually` looks again.
const POLL: Duration = Duration::from_millis(100);

/// Waits until `condition` holds, looking again every 100 ms; false if `within` passes first.
pub async fn eventually(within: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs `docker exec` in a session container as the session user.
pub fn docker_exec(container: &str, script: &str) -> String {
    let out = Command::new("docker")
        .args(["exec", container, "/bin/sh", "-c", script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// Waits for the close and checks it was announced: the close has `code` and a reason
/// starting with `reason_prefix`, and the last control before it is a `status` `error` or
/// `disconnected` with the same code and reason. Returns the reason.
pub async fn expect_announced_close(
    c: &mut Client,
    code: u16,
    reason_prefix: &str,
    within: Duration,
) -> String {
    let close = c.wait_close(within).await;
    let (got_code, reason) = close.unwrap_or_else(|| {
        panic!(
            "expected close {code} {reason_prefix:?}, got no close frame; controls {:?}",
            c.controls
        )
    });
    assert_eq!(
        got_code, code,
        "close code (reason {reason:?}); controls {:?}",
        c.controls
    );
    assert!(
        reason.starts_with(reason_prefix),
        "close reason {reason:?} should start with {reason_prefix:?}"
    );
    let last = c
        .controls
        .last()
        .expect("a control message before the close");
    assert!(
        last["type"] == "status"
            && (last["payload"] == "error" || last["payload"] == "disconnected"),
        "the control before the close is a status error/disconnected: {last}"
    );
    assert_eq!(last["code"], code, "status code matches the close: {last}");
    assert_eq!(
        last["reason"],
        reason.as_str(),
        "status reason matches the close: {last}"
    );
    reason
}

/// Waits for the close and checks it exactly: `code` and `reason`, announced by a `status`
/// control with this `payload` (`error` for a refusal, `disconnected` when the server
/// ends a session) carrying the same code and reason.
pub async fn expect_close(c: &mut Client, payload: &str, code: u16, reason: &str) {
    let got = expect_announced_close(c, code, reason, T).await;
    assert_eq!(got, reason, "close reason");
    let last = c.controls.last().unwrap();
    assert_eq!(
        last["payload"], payload,
        "the status before the close: {last}"
    );
}

/// True while the kernel holds a TCP connection from `local` to `remote` (any state but
/// closed), read from /proc/net/tcp (IPv4 loopback tests only).
pub fn tcp_connection_exists(local: SocketAddr, remote: SocketAddr) -> bool {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => String::new(),
    };
    let (l, r) = (hex(local), hex(remote));
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 3 && f[1] == l && f[2] == r && f[3] != "07"
        })
}

impl Server {
    /// Waits for the first audit line with `event` (and `session_id`, when given).
    pub async fn wait_audit(
        &self,
        event: &str,
        session_id: Option<&str>,
        within: Duration,
    ) -> Value {
        let mut found = None;
        let seen = eventually(within, async || {
            found = self
                .audit_lines()
                .into_iter()
                .find(|l| l["event"] == event && session_id.is_none_or(|id| l["session_id"] == id));
            found.is_some()
        })
        .await;
        assert!(
            seen,
            "{event} audited within {within:?}; audit log: {:?}\nserver log:\n{}",
            self.audit_lines(),
            self.log()
        );
        found.unwrap()
    }

    /// Waits for the session's `session.ended` line and checks its cause, and that it is
    /// the session's only one.
    pub async fn expect_one_end(&self, session_id: &str, cause: &str) {
        let ended = self.wait_audit("session.ended", Some(session_id), T).await;
        assert_eq!(ended["cause"], cause, "{ended}");
        let ends = self
            .audit_lines()
            .into_iter()
            .filter(|l| l["event"] == "session.ended" && l["session_id"] == session_id)
            .count();
        assert_eq!(ends, 1, "one session.ended for {session_id}");
    }

    /// Waits until `at_least` rejections of `event` with this `kind` are audited, and
    /// returns their lines, each of which names its client address. Rejections without a
    /// session are aggregated: a line with `repeated` counts several.
    pub async fn wait_rejections(&self, event: &str, kind: &str, at_least: usize) -> Vec<Value> {
        let count = |lines: &[Value]| -> usize {
            lines
                .iter()
                .map(|l| l["repeated"].as_u64().map_or(1, |n| n as usize))
                .sum()
        };
        let mut found = Vec::new();
        let seen = eventually(Duration::from_secs(5), async || {
            found = self
                .audit_lines()
                .into_iter()
                .filter(|l| l["event"] == event && l["kind"] == kind)
                .collect();
            count(&found) >= at_least
        })
        .await;
        assert!(
            seen,
            "{at_least} {event} kind={kind} audited rejections expected, found {}: {:?}",
            count(&found),
            self.audit_lines()
        );
        for line in &found {
            assert!(
                line["client"].is_string(),
                "a rejection names its client address: {line}"
            );
        }
        found
    }
}

pub const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

/// Linux routes all of 127.0.0.0/8 to lo: a second client address without any setup.
pub const OTHER_LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// An upgrade the server refused before any WebSocket existed.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub retry_after: Option<String>,
}

/// Opens a WebSocket from the local address `local`, with extra request headers.
pub async fn connect_from(
    server: &Server,
    local: IpAddr,
    headers: &[(&str, &str)],
) -> Result<Client, Refused> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    let tcp = socket.connect(server.addr).await.expect("tcp connect");
    let mut request = server.url().into_client_request().unwrap();
    for (k, v) in headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let config = WebSocketConfig {
        max_message_size: Some(64 << 20),
        max_frame_size: Some(64 << 20),
        ..Default::default()
    };
    match tokio_tungstenite::client_async_with_config(request, tcp, Some(config)).await {
        Ok((ws, _)) => Ok(Client {
            ws,
            output: Vec::new(),
            controls: Vec::new(),
            closed: None,
        }),
        Err(WsError::Http(response)) => Err(Refused {
            status: response.status().as_u16(),
            retry_after: response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string()),
        }),
        Err(e) => panic!("upgrade failed in an unexpected way: {e}"),
    }
}

/// A new session from `local`: auth, then `hello`.
pub async fn session_from(server: &Server, local: IpAddr) -> (Client, String) {
    let mut c = connect_from(server, local, &[])
        .await
        .expect("upgrade accepted");
    c.auth(json!({"apiKey": "app.key:secret"})).await;
    let id = c.wait_hello().await;
    (c, id)
}

/// Opens a session on a fresh socket and runs a command in it: the server still serves.
pub async fn still_serves(server: &Server) {
    let (mut c, id) = Client::session(server).await;
    c.run("echo fresh-$((20+1))", "fresh-21").await;
    c.close(1000, "user-closed-tab").await;
    assert!(
        wait_gone(&id, T).await,
        "the fresh session's container is removed"
    );
}

/// The text of /metrics (checked to be served as text).
pub async fn metrics(server: &Server) -> String {
    let resp = reqwest::get(server.http("/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200, "/metrics answers 200");
    let ctype = resp.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(ctype.starts_with("text/plain"), "content type {ctype}");
    resp.text().await.unwrap()
}

/// The samples of /metrics, checked to be Prometheus text: every line a HELP, TYPE or
/// sample line, every sample of a family with a TYPE.
pub async fn scrape(server: &Server) -> Vec<Sample> {
    let text = metrics(server).await;
    for line in text.lines() {
        assert!(
            !matches!(LineInfo::parse(line), LineInfo::Ignored),
            "not a Prometheus text line: {line:?}"
        );
    }
    let samples = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap()
        .samples;
    // The parser files a histogram's `_sum` and `_count` lines as untyped samples.
    let histogram = |name: &str| {
        samples
            .iter()
            .any(|s| s.metric == name && matches!(s.value, prometheus_parse::Value::Histogram(_)))
    };
    for s in &samples {
        let typed = !matches!(s.value, prometheus_parse::Value::Untyped(_))
            || ["_sum", "_count"]
                .iter()
                .any(|suffix| s.metric.strip_suffix(suffix).is_some_and(histogram));
        assert!(typed, "{} has no TYPE:\n{text}", s.metric);
    }
    samples
}

/// The value of the sample (a counter, a gauge, or a histogram's `_sum` or `_count`) with
/// this name and exactly these labels.
pub fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    use prometheus_parse::Value::{Counter, Gauge, Untyped};
    samples
        .iter()
        .find(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .and_then(|s| match s.value {
            Counter(v) | Gauge(v) | Untyped(v) => Some(v),
            _ => None,
        })
}

/// The value of `termcell_rejections_total{kind="<kind>"}` (0 when absent).
pub async fn rejections(server: &Server, kind: &str) -> u64 {
    let samples = scrape(server).await;
    metric(&samples, "termcell_rejections_total", &[("kind", kind)]).unwrap_or(0.0) as u64
}

/// A client frame as the RFC requires it: final, masked.
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// An HTTP client for the server's listeners (no proxy, a bounded timeout).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// One admin request; `token` None sends no Authorization header.
pub async fn admin(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut req = http().request(method, server.admin_url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("admin request")
}

/// An admin request with the token; the status and the JSON body.
pub async fn admin_json(
    server: &Server,
    method: reqwest::Method,
    path: &str,
) -> (reqwest::StatusCode, Value) {
    let resp = admin(server, method, path, Some(ADMIN_TOKEN)).await;
    let status = resp.status();
    let body = resp.text().await.unwrap();
    let value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("admin {path} answered non-JSON ({e}): {body:?}"));
    (status, value)
}

/// Reads whatever arrives for `time` (or until the socket closes).
pub async fn drain_for(c: &mut Client, time: Duration) {
    let until = Instant::now() + time;
    while c.closed.is_none() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || c.next(left).await.is_none() {
            return;
        }
    }
}

/// Waits for the close of an idle session and returns everything its terminal showed.
pub async fn expect_idle_end(c: &mut Client) -> String {
    expect_close(
        c,
        "disconnected",
        1000,
        "Session timed out due to inactivity",
    )
    .await;
    String::from_utf8_lossy(&c.output).to_string()
}

/// Sets a failpoint of the server (a test build) through the admin API.
pub async fn set_failpoint(server: &Server, name: &str, actions: &str) {
    let resp = http()
        .put(server.admin_url(&format!("/admin/failpoints/{name}")))
        .bearer_auth(ADMIN_TOKEN)
        .body(actions.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        reqwest::StatusCode::OK,
        "failpoint {name} set: {}",
        resp.text().await.unwrap()
    );
}

/// Clears a failpoint set with `set_failpoint`.
pub async fn clear_failpoint(server: &Server, name: &str) {
    let (status, _) = admin_json(
        server,
        reqwest::Method::DELETE,
        &format!("/admin/failpoints/{name}"),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::OK);
}
