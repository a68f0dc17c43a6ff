//! The deployment files in config/ as they are shipped: Caddy (Debian's package) in front of
//! the real server with TLS from Caddy's internal CA, sessions, resume, headers and per-client
//! limits through it; the server image and compose file run end to end; the systemd unit,
//! the environment and TOML examples, check-config, the alert rules and the Docker daemon
//! example checked by the tools that read them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, SupportedCipherSuite};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderName;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::support::*;

/// The name Caddy serves in these tests; nothing resolves it, the client connects to
/// loopback and sends it as SNI and Host.
const SITE: &str = "term.test";
const KEY: &str = "app.key:secret";

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A port Caddy can bind on all addresses. Picked below Linux's ephemeral range
/// (32768-60999): the other tests' client sockets take ports from that range, and Caddy's
/// wildcard bind would collide with any of them.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 20_000 + (std::process::id() % 4000) as u16;
    loop {
        let port = start + NEXT.fetch_add(1, Ordering::Relaxed) % 8000;
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "termcell-deploy-{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Caddy running config/Caddyfile unchanged, its placeholders set for a loopback test.
struct Caddy {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Caddy {
    fn env(dir: &Path, port: u16, upstream: SocketAddr) -> Vec<(String, String)> {
        [
            ("SITE_ADDRESS", format!("https://{SITE}:{port}")),
            ("TERMCELL_UPSTREAM", upstream.to_string()),
            ("TLS_ISSUER", "internal".to_string()),
            ("CADDY_ADMIN", "off".to_string()),
            ("CADDY_HTTP_PORT", free_port().to_string()),
            (
                "CADDY_ACCESS_LOG",
                dir.join("access.log").display().to_string(),
            ),
            ("HOME", dir.display().to_string()),
            ("XDG_DATA_HOME", dir.join("data").display().to_string()),
            ("XDG_CONFIG_HOME", dir.join("config").display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Caddy on 127.0.0.1:`port` (chosen before termcell starts: termcell's --public-url
    /// names it) proxying to `upstream`; returns once it completes a TLS handshake.
    async fn start(port: u16, upstream: SocketAddr) -> Caddy {
        // The redirect port is picked anew when another process took it meanwhile.
        for attempt in 1.. {
            let dir = temp_dir("caddy");
            let log = std::fs::File::create(dir.join("caddy.log")).unwrap();
            let child = Command::new("caddy")
                .args(["run", "--adapter", "caddyfile", "--config"])
                .arg(repo_file("config/Caddyfile"))
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(Self::env(&dir, port, upstream))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start caddy (apt-get install caddy)");
            let mut caddy = Caddy { child, port, dir };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if caddy.root_cert().exists()
                    && caddy.connect_with(LOCALHOST, caddy.tls(None)).await.is_ok()
                {
                    return caddy;
                }
                let exited = caddy.child.try_wait().unwrap();
                if exited.is_some() && attempt < 3 && caddy.log().contains("address already in use")
                {
                    break;
                }
                assert!(
                    exited.is_none() && Instant::now() < deadline,
                    "caddy did not start ({exited:?}); its log:\n{}",
                    caddy.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        unreachable!()
    }

    fn root_cert(&self) -> PathBuf {
        self.dir.join("data/caddy/pki/authorities/local/root.crt")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("caddy.log")).unwrap_or_default()
    }

    fn tls(&self, suites: Option<&[SupportedCipherSuite]>) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.root_cert()).unwrap())
            .unwrap();
        let mut provider = rustls::crypto::ring::default_provider();
        let versions: &[&rustls::SupportedProtocolVersion] = match suites {
            Some(suites) => {
                provider.cipher_suites = suites.to_vec();
                &[&rustls::version::TLS12]
            }
            None => rustls::ALL_VERSIONS,
        };
        let config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }

    /// A TLS connection to Caddy from the loopback address `local`.
    async fn connect(&self, local: IpAddr) -> TlsStream<TcpStream> {
        self.connect_with(local, self.tls(None))
            .await
            .unwrap_or_else(|e| panic!("TLS to caddy: {e}; its log:\n{}", self.log()))
    }

    async fn connect_with(
        &self,
        local: IpAddr,
        tls: TlsConnector,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(local, 0)).unwrap();
        let tcp = socket
            .connect(SocketAddr::from(([127, 0, 0, 1], self.port)))
            .await?;
        tls.connect(ServerName::try_from(SITE).unwrap(), tcp).await
    }

    fn origin(&self) -> String {
        format!("https://{SITE}:{}", self.port)
    }

    /// GET `path` over TLS; the status line and headers (lower-cased names) and the body.
    async fn get(&self, path: &str) -> (u16, Vec<(String, String)>, String) {
        let mut tls = self.connect(LOCALHOST).await;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {SITE}:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        // Caddy may end the TLS stream without close_notify after the response.
        let _ = tls.read_to_end(&mut raw).await;
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (status, headers, body.to_string())
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A WebSocket client: through Caddy over TLS, or plain (`Wss<TcpStream>`).
struct Wss<S = TlsStream<TcpStream>> {
    ws: WebSocketStream<S>,
    output: Vec<u8>,
    controls: Vec<Value>,
    closed: Option<Option<(u16, String)>>,
}

impl Wss {
    async fn connect(caddy: &Caddy, local: IpAddr, headers: &[(&str, &str)]) -> Result<Wss, u16> {
        let tls = caddy.connect(local).await;
        let mut request = format!("wss://{SITE}:{}/", caddy.port)
            .into_client_request()
            .unwrap();
        for (k, v) in headers {
            request.headers_mut().insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        match tokio_tungstenite::client_async(request, tls).await {
            Ok((ws, _)) => Ok(Wss {
                ws,
                output: Vec::new(),
                controls: Vec::new(),
                closed: None,
            }),
            Err(WsError::Http(response)) => Err(response.status().as_u16()),
            Err(e) => panic!("websocket through caddy: {e}; caddy log:\n{}", caddy.log()),
        }
    }

    /// Connects and sends an auth frame.
    async fn open(caddy: &Caddy, local: IpAddr, auth: Value) -> Wss {
        let mut c = Wss::connect(caddy, local, &[("Origin", &caddy.origin())])
            .await
            .expect("upgrade accepted through caddy");
        c.send(&auth.to_string()).await;
        c
    }

    /// Drops the connection without a close frame.
    fn reset(self) {
        let tcp = self.ws.get_ref().get_ref().0;
        socket2::SockRef::from(tcp)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(self);
    }
}

impl Wss<TcpStream> {
    /// A plain WebSocket to termcell itself at `addr`.
    async fn plain(addr: SocketAddr) -> Wss<TcpStream> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
            .await
            .expect("websocket handshake");
        Wss {
            ws,
            output: Vec::new(),
            controls: Vec::new(),
            closed: None,
        }
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Wss<S> {
    async fn send(&mut self, text: &str) {
        self.ws.send(Message::Text(text.to_string())).await.unwrap();
    }

    /// Reads one message; false once the socket is closed or nothing came within `within`.
    async fn read(&mut self, within: Duration) -> bool {
        if self.closed.is_some() {
            return false;
        }
        let Ok(msg) = tokio::time::timeout(within, self.ws.next()).await else {
            return false;
        };
        match msg {
            None | Some(Err(_)) => self.closed = Some(None),
            Some(Ok(Message::Close(frame))) => {
                self.closed = Some(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
            }
            Some(Ok(Message::Binary(data))) if data.starts_with(CTRL) => self
                .controls
                .push(serde_json::from_slice(&data[CTRL.len()..]).unwrap()),
            Some(Ok(Message::Binary(data))) => self.output.extend_from_slice(&data),
            Some(Ok(Message::Text(text))) => self.output.extend_from_slice(text.as_bytes()),
            Some(Ok(_)) => {}
        }
        true
    }

    async fn until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + T;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero() && self.read(left).await,
                "no {what} through caddy; controls {:?}, closed {:?}, output {:?}",
                self.controls,
                self.closed,
                String::from_utf8_lossy(&self.output)
            );
        }
    }

    async fn hello(&mut self) -> String {
        self.until("hello", |c| c.controls.iter().any(|v| v["type"] == "hello"))
            .await;
        let hello = self.controls.iter().find(|v| v["type"] == "hello").unwrap();
        hello["sessionId"].as_str().unwrap().to_string()
    }

    async fn run(&mut self, command: &str, marker: &str) -> String {
        self.send(&format!("{command}\r")).await;
        self.until(marker, |c| {
            String::from_utf8_lossy(&c.output).contains(marker)
        })
        .await;
        String::from_utf8_lossy(&self.output).to_string()
    }

    async fn close_code(&mut self) -> Option<u16> {
        self.until("close", |c| c.closed.is_some()).await;
        self.closed.clone().unwrap().map(|(code, _)| code)
    }
}

const CLIENT_A: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const CLIENT_B: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// termcell as config/Caddyfile expects it: on loopback, Caddy trusted, the public URL set.
fn server_behind(caddy_port: u16, extra: &[&str]) -> Server {
    let public_url = format!("https://{SITE}:{caddy_port}");
    let mut args = vec![
        "--trusted-proxies",
        "127.0.0.1",
        "--public-url",
        &public_url,
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn caddyfile_validates_and_is_formatted() {
    let dir = temp_dir("validate");
    let file = repo_file("config/Caddyfile");
    // As shipped (defaults for every placeholder) and as the tests run it.
    for env in [
        vec![],
        Caddy::env(&dir, free_port(), SocketAddr::from(([127, 0, 0, 1], 8080))),
    ] {
        let out = Command::new("caddy")
            .args(["validate", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .envs(env)
            .output()
            .expect("caddy validate (apt-get install caddy)");
        assert!(
            out.status.success(),
            "caddy validate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new("caddy")
        .arg("fmt")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(&file).unwrap(),
        "config/Caddyfile is as `caddy fmt` writes it"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn session_and_resume_through_caddy_with_tls_and_headers() {
    let port = free_port();
    let server = server_behind(port, &[]);
    let caddy = Caddy::start(port, server.addr).await;

    // The page, with the security headers, over TLS.
    let (status, headers, body) = caddy.get("/").await;
    assert_eq!(status, 200, "{headers:?}");
    assert!(
        body.contains("<title>termcell</title>"),
        "the built-in page"
    );
    let header = |name: &str| {
        let values: Vec<&str> = headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(values.len(), 1, "one {name} header: {headers:?}");
        values[0].to_string()
    };
    assert_eq!(
        header("strict-transport-security"),
        "max-age=31536000; includeSubDomains; preload"
    );
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("referrer-policy"), "strict-origin-when-cross-origin");
    let csp = header("content-security-policy");
    // Everything the page's own meta policy allows, and no more.
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!headers.iter().any(|(k, _)| k == "server"), "{headers:?}");
    // The scripts and styles the page loads come from the same origin.
    for asset in ["/app.js", "/app.css", "/favicon.svg"] {
        assert_eq!(caddy.get(asset).await.0, 200, "{asset}");
    }
    assert_eq!(caddy.get("/metrics").await.0, 404, "metrics stay internal");
    assert_eq!(caddy.get("/admin/sessions").await.0, 404);

    // A session from the page's origin: the prompt, a command.
    let mut a = Wss::open(&caddy, CLIENT_A, json!({"apiKey": KEY})).await;
    let id = a.hello().await;
    a.run("echo via-caddy-$((40+2))", "via-caddy-42").await;
    let created = server.wait_audit("session.created", Some(&id), T).await;
    assert_eq!(
        created["client"], "127.0.0.2",
        "the client address from X-Forwarded-For: {created}"
    );

    // Dropped without a close: resumed through Caddy with the screen drawn again, then live.
    a.reset();
    let mut b = Wss::open(&caddy, CLIENT_A, json!({"apiKey": KEY, "sessionId": id})).await;
    assert_eq!(b.hello().await, id, "the same session");
    b.until("the snapshot", |c| {
        String::from_utf8_lossy(&c.output).contains("via-caddy-42")
    })
    .await;
    b.run("echo resumed-$((6*7))", "resumed-42").await;
    server.wait_audit("session.resumed", Some(&id), T).await;

    // Caddy's access log has the client's address for the evidence.
    let access = std::fs::read_to_string(caddy.dir.join("access.log")).unwrap_or_default();
    assert!(
        access
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|l| l["request"]["remote_ip"] == "127.0.0.2"),
        "access log: {access}"
    );

    // A page on another origin is refused at the upgrade, through Caddy too.
    let refused = Wss::connect(&caddy, CLIENT_B, &[("Origin", "https://evil.example")]).await;
    assert_eq!(refused.err(), Some(403));
}

#[tokio::test]
async fn tls_versions_and_ciphers_are_the_configured_ones() {
    let port = free_port();
    let server = server_behind(port, &[]);
    let caddy = Caddy::start(port, server.addr).await;
    let tls = caddy.connect(LOCALHOST).await;
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3),
        "a modern client gets TLS 1.3"
    );
    use rustls::crypto::ring::cipher_suite as cs;
    let tls12 = caddy
        .connect_with(
            LOCALHOST,
            caddy.tls(Some(&[
                cs::TLS13_AES_256_GCM_SHA384,
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ])),
        )
        .await
        .expect("TLS 1.2 with ECDHE-ECDSA-AES256-GCM");
    assert_eq!(
        tls12.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    for weaker in [
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ] {
        let refused = caddy
            .connect_with(
                LOCALHOST,
                caddy.tls(Some(&[cs::TLS13_AES_256_GCM_SHA384, weaker])),
            )
            .await;
        assert!(refused.is_err(), "TLS 1.2 with {weaker:?} is refused");
    }
}

#[tokio::test]
async fn an_idle_session_through_caddy_outlives_the_heartbeat() {
    let port = free_port();
    let server = server_behind(port, &[]);
    let caddy = Caddy::start(port, server.addr).await;
    let mut c = Wss::open(&caddy, CLIENT_A, json!({"apiKey": KEY})).await;
    c.hello().await;
    // No input for longer than termcell's 15 s ping interval: Caddy keeps the socket (and
    // passes the pings and pongs), the session stays.
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        c.read(until.saturating_duration_since(Instant::now()))
            .await;
        assert!(c.closed.is_none(), "closed while idle: {:?}", c.closed);
    }
    c.run("echo still-$((3*3))", "still-9").await;
}

/// Two clients from two addresses, one session each, under --max-sessions-per-ip 1: the
/// second gets its session only when termcell trusts Caddy's X-Forwarded-For.
async fn second_client_close(trusted: bool) -> Option<u16> {
    let port = free_port();
    let public_url = format!("https://{SITE}:{port}");
    let mut args = vec!["--public-url", &public_url, "--max-sessions-per-ip", "1"];
    if trusted {
        args.extend_from_slice(&["--trusted-proxies", "127.0.0.1"]);
    }
    let server = Server::start(&args);
    let caddy = Caddy::start(port, server.addr).await;
    let mut a = Wss::open(&caddy, CLIENT_A, json!({"apiKey": KEY})).await;
    a.hello().await;
    // A header the client forges is replaced by Caddy, not believed.
    let mut b = Wss::connect(
        &caddy,
        CLIENT_B,
        &[
            ("Origin", &caddy.origin()),
            ("X-Forwarded-For", "192.0.2.7"),
        ],
    )
    .await
    .expect("upgrade accepted");
    b.send(&json!({"apiKey": KEY}).to_string()).await;
    b.until("hello or close", |c| {
        c.closed.is_some() || c.controls.iter().any(|v| v["type"] == "hello")
    })
    .await;
    if trusted {
        let deadline = Instant::now() + T;
        loop {
            let clients: Vec<Value> = server
                .audit_lines()
                .into_iter()
                .filter(|l| l["event"] == "session.created")
                .map(|l| l["client"].clone())
                .collect();
            if clients.len() == 2 {
                assert_eq!(clients, [json!("127.0.0.2"), json!("127.0.0.3")]);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "two sessions audited: {clients:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    if b.closed.is_some() {
        b.close_code().await
    } else {
        None
    }
}

#[tokio::test]
async fn per_client_limits_apply_behind_caddy_only_when_it_is_trusted() {
    assert_eq!(
        second_client_close(true).await,
        None,
        "trusted: each client address has its own session"
    );
    assert_eq!(
        second_client_close(false).await,
        Some(4003),
        "untrusted: every client counts as Caddy"
    );
}

/// Runs the built binary with exactly `env` (nothing inherited) and `args`.
fn termcell_with_env(env: &[(String, String)], args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_termcell"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap()
}

/// The KEY=value lines of config/termcell.env.example, as systemd reads them.
fn env_example() -> Vec<(String, String)> {
    std::fs::read_to_string(repo_file("config/termcell.env.example"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=value: {l}"));
            assert!(
                !v.contains(['"', '\'', '$', '`']),
                "no quotes or expansion (systemd takes values as they are): {l}"
            );
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// check-config's output without the per-process instance id.
fn stable(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim_start().starts_with("instance:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn env_example_parses_names_every_setting_and_holds_the_defaults() {
    let example = env_example();
    let out = termcell_with_env(&example, &["check-config"]);
    assert!(
        out.status.success(),
        "check-config with the example: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("listen: 127.0.0.1:8080"), "{shown}");
    assert!(
        shown.contains("trusted_proxies: [\n        127.0.0.1,"),
        "{shown}"
    );

    // Every TERMCELL_* name of --help is in the example (set or commented).
    let help = termcell_with_env(&[], &["--help"]);
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    let text = std::fs::read_to_string(repo_file("config/termcell.env.example")).unwrap();
    let names: std::collections::BTreeSet<&str> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("TERMCELL_"))
        .collect();
    assert!(names.len() > 50, "{names:?}");
    let missing: Vec<_> = names.iter().filter(|n| !text.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "not in termcell.env.example: {missing:?}"
    );

    // Its values are the defaults: without the one deployment line it configures what no
    // environment at all does.
    let defaults: Vec<_> = example
        .iter()
        .filter(|(k, _)| k != "TERMCELL_TRUSTED_PROXIES")
        .cloned()
        .collect();
    assert_eq!(
        stable(&termcell_with_env(&defaults, &["check-config"])),
        stable(&termcell_with_env(&[], &["check-config"])),
        "every value in the example is the default"
    );
}

#[test]
fn toml_example_parses_and_holds_the_defaults() {
    let file = repo_file("config/termcell.toml");
    let out = termcell_with_env(&[], &["--config", file.to_str().unwrap(), "check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stable(&out),
        stable(&termcell_with_env(&[], &["check-config"])),
        "every value in config/termcell.toml is the default"
    );
}

#[test]
fn check_config_prints_no_secret_and_names_a_bad_setting() {
    let token = "a-very-secret-admin-token-42";
    let env = [("TERMCELL_ADMIN_TOKEN".to_string(), token.to_string())];
    let out = termcell_with_env(&env, &["check-config", "--max-sessions", "7"]);
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!shown.contains(token), "the token is not printed: {shown}");
    assert!(
        shown.contains("admin_token: Some(\n        \"<set>\""),
        "{shown}"
    );
    assert!(shown.contains("max_sessions: 7"), "{shown}");
    assert!(
        shown.contains("bytes of JSON>"),
        "the seccomp profile by size"
    );

    let unset = termcell_with_env(&[], &["check-config"]);
    assert!(String::from_utf8_lossy(&unset.stdout).contains("admin_token: None"));

    let bad = termcell_with_env(
        &[("MAX_SESSION_DURATION_MS".to_string(), "soon".to_string())],
        &["check-config"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(bad.stdout.is_empty());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("MAX_SESSION_DURATION_MS"), "{err}");
    let bad = termcell_with_env(&[], &["check-config", "--max-sessions", "0"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("max-sessions"));
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(repo_file("config/termcell.service")).unwrap();
    for line in [
        "User=termcell",
        "SupplementaryGroups=docker",
        "EnvironmentFile=/etc/termcell/termcell.env",
        "ExecStartPre=/usr/local/bin/termcell check-config",
        "ExecStart=/usr/local/bin/termcell serve",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/log/termcell",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(unit.contains(line), "{line:?} in termcell.service");
    }
    assert!(
        !unit
            .lines()
            .any(|l| l.starts_with("Environment=") && l.contains('$')),
        "no expansion in Environment="
    );
    // systemd-analyze wants the binary to exist: the same unit pointing at the test build.
    let dir = temp_dir("systemd");
    let path = dir.join("termcell.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/termcell", env!("CARGO_BIN_EXE_termcell")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on unknown keys and bad values too; it must print nothing about them.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("termcell.service"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    let out = Command::new("systemd-analyze")
        // The threshold is on systemd's 0-100 scale (it prints a tenth of it).
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "exposure at most 2 of 10: {}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn alert_rules_check_and_fire_in_their_unit_tests() {
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(repo_file("config"))
            .output()
            .expect("promtool (apt-get install prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every termcell metric an alert uses is one /metrics serves.
    let rules = std::fs::read_to_string(repo_file("config/alerts.yml")).unwrap();
    let served = ["actors/src/metrics.rs", "actors/src/monitor/metrics.rs"]
        .map(|f| std::fs::read_to_string(repo_file(f)).unwrap())
        .concat();
    for name in rules
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
        .flat_map(|l| l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|w| w.starts_with("termcell_"))
    {
        let bare = name
            .trim_start_matches("termcell_")
            .trim_end_matches("_bucket");
        assert!(
            served.contains(&format!("\"{bare}\"")),
            "{name} is not a metric"
        );
    }
}

#[test]
fn daemon_json_example_is_what_dockerd_accepts() {
    let path = repo_file("config/daemon.json.example");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["icc"], false);
    assert_eq!(v["no-new-privileges"], true);
    assert_eq!(v["live-restore"], true);
    assert_eq!(v["userland-proxy"], false);
    assert_eq!(v["userns-remap"], "default");
    assert!(v["runtimes"]["runsc"]["path"].is_string());
    // dockerd (20.10 has no --validate) loads and checks its config file before anything
    // else; a bad --log-level then stops it before it touches the host. So the error tells
    // whether the file passed: every key known and of the right type.
    let validate = |file: &Path| {
        let out = Command::new("dockerd")
            .arg("--config-file")
            .arg(file)
            .args(["--log-level", "not-a-level"])
            .output()
            .expect("dockerd");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = validate(&path);
    assert!(
        err.contains("unable to parse logging level")
            && !err.contains("configure the Docker daemon"),
        "dockerd accepts the file: {err}"
    );
    // The check can fail: an unknown key is caught.
    let dir = temp_dir("dockerd");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"icc": false, "no-such-key": 1}"#).unwrap();
    assert!(validate(&bad).contains("don't match any configuration option"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `docker-compose` with the project name and the variables config/compose.yml reads.
fn compose(project: &str, vars: &[(&str, String)], args: &[&str]) -> std::process::Output {
    Command::new("docker-compose")
        .arg("-f")
        .arg(repo_file("config/compose.yml"))
        .args(["-p", project])
        .args(args)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("docker-compose (apt-get install docker-compose)")
}

#[tokio::test]
async fn server_image_built_without_a_registry_runs_under_compose() {
    let name = format!("it-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let tag = format!("termcell-server:{name}");
    let out = Command::new(repo_file("config/server-image.sh"))
        .args([env!("CARGO_BIN_EXE_termcell"), &tag])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "server-image.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The example environment, on a free port, with its own deployment name.
    let dir = temp_dir("compose");
    let port = free_port();
    let mut env: Vec<String> = env_example()
        .into_iter()
        .filter(|(k, _)| {
            !["PORT", "TERMCELL_ADMIN_LISTEN", "TERMCELL_DEPLOYMENT"].contains(&k.as_str())
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.extend([
        format!("PORT={port}"),
        "TERMCELL_ADMIN_LISTEN=off".to_string(),
        format!("TERMCELL_DEPLOYMENT={name}"),
    ]);
    let env_file = dir.join("termcell.env");
    std::fs::write(&env_file, env.join("\n") + "\n").unwrap();
    let gid = Command::new("stat")
        .args(["-c", "%g", "/var/run/docker.sock"])
        .output()
        .unwrap();
    let vars = [
        ("TERMCELL_SERVER_IMAGE", tag.clone()),
        ("TERMCELL_ENV_FILE", env_file.display().to_string()),
        (
            "DOCKER_GID",
            String::from_utf8_lossy(&gid.stdout).trim().to_string(),
        ),
    ];
    let project = name.replace('-', "");
    let up = compose(&project, &vars, &["up", "-d"]);
    let cleanup = |project: &str| {
        compose(project, &vars, &["down", "-v", "-t", "40"]);
        remove_containers(&format!("termcell.deployment={name}"));
        let _ = Command::new("docker").args(["rmi", &tag]).output();
        let _ = std::fs::remove_dir_all(&dir);
    };
    if !up.status.success() {
        cleanup(&project);
        panic!("compose up: {}", String::from_utf8_lossy(&up.stderr));
    }
    let container = format!("{project}_termcell_1");
    let logs = || {
        let out = Command::new("docker")
            .args(["logs", &container])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).to_string()
    };

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            let log = logs();
            cleanup(&project);
            panic!("the server in the container did not listen; its log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut c = Wss::plain(addr).await;
    c.send(&json!({"apiKey": KEY}).to_string()).await;
    let id = c.hello().await;
    c.run("echo in-compose-$((8*8))", "in-compose-64").await;
    // The session's sandbox is a cold one or a claimed pool sandbox (the example
    // environment keeps a pool of 2), so the deployment's label finds it either way.
    let deployment = format!("termcell.deployment={name}");
    let sandboxes = containers_with_label(&deployment);
    let inspect = docker_inspect(&container);
    let host = &inspect["HostConfig"];
    let confined = host["ReadonlyRootfs"] == true
        && host["CapDrop"] == json!(["ALL"])
        && inspect["Config"]["User"] == "10001:10001";
    let audit = Command::new("docker")
        .args([
            "exec",
            &container,
            "/bin/busybox",
            "cat",
            "/var/log/termcell/audit.log",
        ])
        .output()
        .unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout).to_string();

    // Stopping the service drains: the session ends, its sandbox is removed.
    let down = compose(&project, &vars, &["stop", "-t", "40"]);
    let closed = c.close_code().await;
    let left = containers_with_label(&deployment);
    cleanup(&project);
    assert!(
        !sandboxes.is_empty(),
        "the session's sandbox carries the deployment label"
    );
    assert!(confined, "read-only, no capabilities, not root: {host}");
    assert!(
        audit.contains("\"session.created\""),
        "audit in the volume: {audit}"
    );
    assert!(down.status.success());
    assert_eq!(closed, Some(1001), "SIGTERM from compose drains");
    assert!(
        left.is_empty(),
        "session {id}: every sandbox of {sandboxes:?} removed at stop, left {left:?}"
    );
}
