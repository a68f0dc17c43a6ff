//! The restricted network: which names a session may reach (`allow`), the resolver that
//! answers only those (`resolver`), the host firewall that enforces what it answered
//! (`nft`), and the NetworkGuard that owns both (`guard`).

pub mod allow;
pub mod guard;
pub mod nft;
pub mod resolver;

use std::net::SocketAddr;
use std::time::Duration;

/// `--network restricted`: what sessions may reach and how names are looked up.
#[derive(Debug, Clone, PartialEq)]
pub struct RestrictedNetwork {
    pub allow: allow::EgressAllow,
    /// Where allowed names are looked up; empty: the nameservers of /etc/resolv.conf.
    pub upstream: Vec<SocketAddr>,
    pub ttl_min: Duration,
    pub ttl_max: Duration,
}
