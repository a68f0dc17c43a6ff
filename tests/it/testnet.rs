//! Test hosts for the restricted network: network namespaces with a veth pair each
//! (198.18.N.0/24 and 2001:2:0:N::/64, the benchmarking ranges), a TCP and UDP listener
//! inside that reports every connection and datagram, a DNS upstream of the test's own on
//! loopback, and a listener on the host itself. Nothing here sends traffic anywhere else.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Header, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record};
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use parking_lot::Mutex;

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One connection a listener accepted (or one datagram it received): over which transport,
/// to which local address and port, and the first bytes the peer sent.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub proto: &'static str,
    pub local: SocketAddr,
    pub data: String,
}

/// Accepts TCP and receives UDP on every address of its namespace, on each port, and
/// reports what came in (a datagram's local address from IP_PKTINFO).
const LISTENER: &str = r#"
import socket, sys, threading
IP_PKTINFO = 8  # Linux; Python's socket module does not export it
def serve_udp(s, port):
    while True:
        data, anc, _, _ = s.recvmsg(512, socket.CMSG_SPACE(12))
        local = "0.0.0.0"
        for level, kind, value in anc:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                local = socket.inet_ntoa(value[8:12])
        print("udp %s %d %s" % (local, port, data.hex()), flush=True)
def serve(s):
    while True:
        c, peer = s.accept()
        def read(c=c):
            c.settimeout(3)
            data = b""
            try:
                while len(data) < 512:
                    chunk = c.recv(512)
                    if not chunk: break
                    data += chunk
            except Exception:
                pass
            local = c.getsockname()
            print("tcp %s %d %s" % (local[0], local[1], data.hex()), flush=True)
            c.close()
        threading.Thread(target=read, daemon=True).start()
for port in sys.argv[1:]:
    for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, int(port)))
        s.listen(64)
        threading.Thread(target=serve, args=(s,), daemon=True).start()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    u.bind(("0.0.0.0", int(port)))
    threading.Thread(target=serve_udp, args=(u, int(port)), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// A test host: a network namespace behind a veth pair, with a listener.
pub struct TestHost {
    ns: String,
    veth: String,
    n: u8,
    listener: Child,
    accepted: Arc<Mutex<Vec<Accepted>>>,
}

static NEXT: AtomicU8 = AtomicU8::new(0);
static SWEEP: std::sync::Once = std::sync::Once::new();

/// Removes the test hosts of test processes that are gone (killed before their hosts were
/// dropped): their listeners, and their namespaces with the veth pairs in them.
fn sweep_orphaned_hosts() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("tcn")
            .and_then(|rest| rest.rsplit_once('-'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &name]).output() {
            for inside in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", inside]).output();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
    }
}

impl TestHost {
    /// A host with `extra` more IPv4 addresses (198.18.N.3, .4, ...) and a listener on
    /// `ports` of every address.
    pub fn new(extra: u8, ports: &[u16]) -> TestHost {
        // Several test processes may run at once: the pid spreads their blocks apart.
        let n = ((std::process::id() % 50) as u8) * 5 + 1 + NEXT.fetch_add(1, Ordering::SeqCst) % 5;
        SWEEP.call_once(sweep_orphaned_hosts);
        let tag = format!("{:x}{n:02x}", std::process::id() % 0xfff);
        // The full pid in the name tells a later run whose host this is.
        let ns = format!("tcn{tag}-{}", std::process::id());
        let (host_if, ns_if) = (format!("tch{tag}"), format!("tcs{tag}"));
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        run(&["ip", "netns", "add", &ns]);
        run(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        run(&["ip", "link", "set", &ns_if, "netns", &ns]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("198.18.{n}.1/24"),
            "dev",
            &host_if,
        ]);
        run(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("2001:2:0:{n:x}::1/64"),
            "dev",
            &host_if,
            "nodad",
        ]);
        run(&["ip", "link", "set", &host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut full = vec!["ip", "netns", "exec", &ns];
            full.extend_from_slice(args);
            run(&full);
        };
        inside(&["ip", "link", "set", "lo", "up"]);
        for k in 0..=extra {
            inside(&[
                "ip",
                "addr",
                "add",
                &format!("198.18.{n}.{}/24", 2 + k),
                "dev",
                &ns_if,
            ]);
        }
        inside(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("2001:2:0:{n:x}::2/64"),
            "dev",
            &ns_if,
            "nodad",
        ]);
        inside(&["ip", "link", "set", &ns_if, "up"]);
        inside(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &format!("198.18.{n}.1"),
        ]);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, "python3", "-c", LISTENER]);
        cmd.args(ports.iter().map(u16::to_string));
        let mut listener = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 for the test listener");
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sink = accepted.clone();
        let stdout = listener.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "ready" {
                    let _ = ready_tx.send(());
                    continue;
                }
                let f: Vec<&str> = line.split(' ').collect();
                if let [proto @ ("tcp" | "udp"), addr, port, hex] = f.as_slice() {
                    let local = SocketAddr::new(addr.parse().unwrap(), port.parse().unwrap());
                    let bytes = hex::decode(hex).unwrap_or_default();
                    sink.lock().push(Accepted {
                        proto: if *proto == "tcp" { "tcp" } else { "udp" },
                        local,
                        data: String::from_utf8_lossy(&bytes).into_owned(),
                    });
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the test listener started");
        TestHost {
            ns,
            veth: host_if,
            n,
            listener,
            accepted,
        }
    }

    /// The host's k-th address (0 is 198.18.N.2).
    pub fn addr(&self, k: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.n, 2 + k)
    }

    pub fn addr6(&self) -> String {
        format!("2001:2:0:{:x}::2", self.n)
    }

    /// The address of the host's side of the veth pair (the test machine itself).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.n, 1)
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.accepted.lock().clone()
    }

    /// TCP connections to `addr:port` that carried `needle`.
    pub fn saw(&self, addr: IpAddr, port: u16, needle: &str) -> bool {
        self.saw_over("tcp", addr, port, needle)
    }

    /// Connections or datagrams over `proto` to `addr:port` that carried `needle`.
    pub fn saw_over(&self, proto: &str, addr: IpAddr, port: u16, needle: &str) -> bool {
        self.accepted().iter().any(|a| {
            a.proto == proto
                && a.local.ip() == addr
                && a.local.port() == port
                && a.data.contains(needle)
        })
    }

    /// Whether anything at all reached `port`.
    pub fn any_on(&self, port: u16) -> bool {
        self.accepted().iter().any(|a| a.local.port() == port)
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = self.listener.kill();
        let _ = self.listener.wait();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// The DNS upstream of a test: A records per name, changeable while it runs, and the
/// names it was asked.
#[derive(Default)]
pub struct Zone {
    records: Mutex<HashMap<String, (Vec<Ipv4Addr>, u32)>>,
    asked: Mutex<Vec<String>>,
}

impl Zone {
    pub fn set(&self, name: &str, addrs: &[Ipv4Addr], ttl: u32) {
        self.records
            .lock()
            .insert(name.to_string(), (addrs.to_vec(), ttl));
    }

    pub fn asked(&self, name: &str) -> usize {
        self.asked.lock().iter().filter(|n| *n == name).count()
    }
}

pub struct ZoneHandler(Arc<Zone>);

impl RequestHandler for ZoneHandler {
    fn handle_request<'a, 'b, 'c, R>(
        &'a self,
        request: &'b Request,
        response: R,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ResponseInfo> + Send + 'c>>
    where
        R: 'c + ResponseHandler,
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        Box::pin(self.answer(request, response))
    }
}

impl ZoneHandler {
    async fn answer<R: ResponseHandler>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let name = request
            .request_info()
            .map(|i| i.query.name().to_string())
            .unwrap_or_default()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        self.0.asked.lock().push(name.clone());
        let found = self.0.records.lock().get(&name).cloned();
        let mut header = Header::response_from_request(request.header());
        header.set_response_code(if found.is_some() {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        });
        let owner = Name::from_str(&format!("{name}.")).unwrap_or_default();
        let records: Vec<Record> = found
            .map(|(addrs, ttl)| {
                addrs
                    .into_iter()
                    .map(|a| Record::from_rdata(owner.clone(), ttl, RData::A(A(a))))
                    .collect()
            })
            .unwrap_or_default();
        let message = MessageResponseBuilder::from_message_request(request).build(
            header,
            records.iter(),
            None,
            None,
            None,
        );
        response.send_response(message).await.unwrap()
    }
}

/// Starts the upstream on 127.0.0.1 (UDP and TCP on one ephemeral port). Keep the server
/// alive for as long as it is needed.
pub async fn dns_upstream() -> (Arc<Zone>, SocketAddr, ServerFuture<ZoneHandler>) {
    let zone = Arc::new(Zone::default());
    let mut server = ServerFuture::new(ZoneHandler(zone.clone()));
    // UDP first; then TCP on the same port (retry on the rare clash).
    for _ in 0..20 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
            server.register_socket(udp);
            server.register_listener(tcp, Duration::from_secs(5));
            return (zone, addr, server);
        }
    }
    panic!("no free loopback port for the DNS upstream");
}

/// A TCP listener on every address of the test machine: nothing from a session may reach
/// it.
pub struct HostListener {
    listener: std::net::TcpListener,
}

impl HostListener {
    pub fn new() -> HostListener {
        let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        HostListener { listener }
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    /// Whether any connection arrived so far.
    pub fn reached(&self) -> bool {
        self.listener.accept().is_ok()
    }
}
