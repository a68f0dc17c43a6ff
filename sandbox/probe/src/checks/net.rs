//! The restricted network's checks (`--network restricted`): from inside, the host, the
//! cloud metadata address and IPv6 are out of reach and names go only through termcell's
//! resolver, which refuses names outside the allowlist. Each check skips on other modes.
//! Only the gateway, the metadata address and a documentation address are ever contacted;
//! a drop shows as a timed-out connect, a reply from the host as a refused one.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use super::{read, Ctx, Verdict};
use crate::parse;

/// How long a connect may wait before it counts as dropped.
const CONNECT_WAIT: Duration = Duration::from_secs(2);
/// A name no allowlist holds (`.invalid` is reserved).
const REFUSED_NAME: &str = "probe.termcell.invalid";
/// The cloud metadata service's address.
const METADATA: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// What the restricted network looks like from inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restricted {
    /// The bridge's gateway: the host, where termcell's resolver listens.
    pub gateway: Ipv4Addr,
}

fn restricted(ctx: &Ctx) -> Result<Restricted, Verdict> {
    ctx.network
        .ok_or_else(|| Verdict::Skip("the sandbox is not on the restricted network".into()))
}

/// A TCP connect that must not get through: a timeout (dropped) or an unreachable
/// destination passes; a connection or a refusal (something answered) fails.
fn unreachable(addr: SocketAddr) -> Verdict {
    match TcpStream::connect_timeout(&addr, CONNECT_WAIT) {
        Ok(_) => Verdict::Fail(format!("connected to {addr}")),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Verdict::Fail(format!(
            "{addr} refused the connection: it was reached, not dropped"
        )),
        Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock => {
            Verdict::Pass(format!("{addr}: dropped (no answer in {CONNECT_WAIT:?})"))
        }
        Err(e) => Verdict::Pass(format!("{addr}: {e}")),
    }
}

pub fn host_dropped(ctx: &Ctx) -> Verdict {
    match restricted(ctx) {
        // Port 1: no service, so a reply could only be the host's own refusal.
        Ok(net) => unreachable(SocketAddr::new(IpAddr::V4(net.gateway), 1)),
        Err(skip) => skip,
    }
}

pub fn metadata_dropped(ctx: &Ctx) -> Verdict {
    match restricted(ctx) {
        Ok(_) => unreachable(SocketAddr::new(IpAddr::V4(METADATA), 80)),
        Err(skip) => skip,
    }
}

pub fn no_ipv6(ctx: &Ctx) -> Verdict {
    if let Err(skip) = restricted(ctx) {
        return skip;
    }
    let global: Vec<String> = read("/proc/net/if_inet6")
        .map(|t| parse::global_ipv6_addresses(&t))
        .unwrap_or_default();
    if !global.is_empty() {
        return Verdict::Fail(format!("global IPv6 addresses: {}", global.join(", ")));
    }
    // 2001:db8::/32 is the documentation range: nothing answers there.
    let doc = SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        443,
    );
    match unreachable(doc) {
        Verdict::Pass(d) => Verdict::Pass(format!("no global IPv6 address; {d}")),
        other => other,
    }
}

/// Asks `server` for `REFUSED_NAME` and returns the answer's response code.
fn rcode_of_refused_name(server: SocketAddr) -> Result<u8, String> {
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let id = (std::process::id() & 0xffff) as u16;
    let query = parse::dns_query_a(id, REFUSED_NAME);
    socket.send_to(&query, server).map_err(|e| e.to_string())?;
    let mut reply = [0u8; 512];
    let (n, _) = socket
        .recv_from(&mut reply)
        .map_err(|e| format!("no answer from {server}: {e}"))?;
    parse::dns_reply_rcode(&reply[..n], id).ok_or_else(|| format!("not an answer from {server}"))
}

/// NXDOMAIN, as the resolver answers names outside the allowlist.
const NXDOMAIN: u8 = 3;

fn refuses_names(server: SocketAddr, via: &str) -> Verdict {
    match rcode_of_refused_name(server) {
        Ok(NXDOMAIN) => Verdict::Pass(format!("{REFUSED_NAME} is NXDOMAIN {via}")),
        Ok(code) => Verdict::Fail(format!(
            "{REFUSED_NAME} answered with code {code} {via}, not NXDOMAIN"
        )),
        Err(e) => Verdict::Fail(e),
    }
}

pub fn resolver_refuses_names(ctx: &Ctx) -> Verdict {
    match restricted(ctx) {
        Ok(net) => refuses_names(
            SocketAddr::new(IpAddr::V4(net.gateway), 53),
            "at termcell's resolver",
        ),
        Err(skip) => skip,
    }
}

/// The path every program takes: the nameserver of /etc/resolv.conf (Docker's embedded
/// server on a user-defined network, which forwards to termcell's resolver).
pub fn system_resolver_refuses_names(ctx: &Ctx) -> Verdict {
    if let Err(skip) = restricted(ctx) {
        return skip;
    }
    let conf = read("/etc/resolv.conf").unwrap_or_default();
    let Some(server) = parse::first_nameserver(&conf) else {
        return Verdict::Fail("no nameserver in /etc/resolv.conf".into());
    };
    refuses_names(
        SocketAddr::new(server, 53),
        &format!("through the sandbox's nameserver {server}"),
    )
}
