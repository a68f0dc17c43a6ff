//! Restricted-network benchmark against the real server (release build): how long a DNS
//! lookup takes through termcell's resolver, beside the same query sent straight to the
//! upstream in the same run. Prints figures; asserts nothing about speed. Needs root and
//! `nft`. Run: `cargo bench --bench network`.
//!
//! - baseline: A query for an allowed name straight to the upstream (a DNS server of this
//!   program's own on loopback)
//! - allowed, new address: the same query through the resolver when the answer is an
//!   address not granted yet (allowlist, forward to the upstream, the firewall grant
//!   through `nft`, answer): the first lookup a session makes
//! - allowed, repeated: the same answer again while its grant has more than half its
//!   lifetime left (no `nft` call): most lookups
//! - refused: a name outside the allowlist through the resolver (NXDOMAIN at once)
//!
//! Queries are paced under the resolver's per-source rate limit (20 a second).

#[allow(dead_code)]
#[path = "../tests/it/support.rs"]
mod support;
#[allow(dead_code)]
#[path = "../tests/it/testnet.rs"]
mod testnet;

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use support::Server;
use tokio::net::UdpSocket;

const QUERIES: usize = 100;
const PACE: Duration = Duration::from_millis(60);

/// One A query to `server`: how long the answer took and its response code.
async fn query(server: SocketAddr, name: &str, id: u16) -> (Duration, ResponseCode) {
    let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(
            Name::from_str(&format!("{name}.")).unwrap(),
            RecordType::A,
        ));
    let bytes = message.to_bytes().unwrap();
    let t0 = Instant::now();
    socket.send_to(&bytes, server).await.unwrap();
    let mut buf = [0u8; 1500];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    let took = t0.elapsed();
    let reply = Message::from_bytes(&buf[..n]).unwrap();
    assert_eq!(reply.id(), id);
    (took, reply.response_code())
}

fn summary(label: &str, mut v: Vec<Duration>, baseline: Option<Duration>) -> Duration {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let beside = baseline
        .map(|b| format!(" ({:+.2} ms beside the baseline)", ms(at(0.5)) - ms(b)))
        .unwrap_or_default();
    println!(
        "{label}: median {:.2} ms, p90 {:.2} ms, max {:.2} ms (n={}){beside}",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(1.0)),
        v.len()
    );
    at(0.5)
}

/// `QUERIES` paced lookups of `name`; `before` runs before each (e.g. to change the answer).
async fn series(
    server: SocketAddr,
    name: &str,
    want: ResponseCode,
    mut before: impl FnMut(usize),
) -> Vec<Duration> {
    let mut took = Vec::with_capacity(QUERIES);
    for i in 0..QUERIES {
        before(i);
        let (t, code) = query(server, name, i as u16).await;
        assert_eq!(code, want, "{name} at {server}");
        took.push(t);
        tokio::time::sleep(PACE).await;
    }
    took
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (zone, upstream, _dns) = testnet::dns_upstream().await;
    // Never connected to: only looked up.
    zone.set("allowed.test", &[Ipv4Addr::new(198, 18, 200, 2)], 60);
    let server = Server::start(&[
        "--network",
        "restricted",
        "--egress-allow",
        "allowed.test",
        "--dns-upstream",
        &upstream.to_string(),
    ]);
    let ready = server.ready().await;
    let resolver: SocketAddr = ready["network"]["resolver"]
        .as_str()
        .expect("the resolver's address on /ready")
        .parse()
        .unwrap();
    println!("termcell restricted-network benchmark (resolver {resolver}, upstream {upstream})");

    // Warm both paths once.
    query(upstream, "allowed.test", 1).await;
    query(resolver, "allowed.test", 1).await;

    let base = summary(
        "lookup straight to the upstream (baseline)",
        series(upstream, "allowed.test", ResponseCode::NoError, |_| {}).await,
        None,
    );
    summary(
        "allowed name, new address (forward + nft grant)",
        series(resolver, "allowed.test", ResponseCode::NoError, |i| {
            zone.set(
                "allowed.test",
                &[Ipv4Addr::new(198, 18, 201, i as u8 + 1)],
                60,
            )
        })
        .await,
        Some(base),
    );
    summary(
        "allowed name, repeated answer (forward, grant reused)",
        series(resolver, "allowed.test", ResponseCode::NoError, |_| {}).await,
        Some(base),
    );
    summary(
        "refused name (NXDOMAIN, nothing forwarded)",
        series(resolver, "refused.test", ResponseCode::NXDomain, |_| {}).await,
        Some(base),
    );
}
